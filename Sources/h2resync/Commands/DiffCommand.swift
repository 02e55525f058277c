import ArgumentParser
import Foundation
import Hammer2Cluster
import Hammer2Format

let clusterExitHelp = """
  Exit codes (Nagios-compatible): 0 all nodes in sync (the focus's content and modify_tids) \
  and undamaged, soft masters' own changes aside; 1 differences or damage that a resync \
  can repair; 2 needs a human (no quorum, conflict, unrepairable damage); 3 could not run \
  (bad arguments, unreadable image). A soft master's differences are its own local \
  changes (soft-local): they set no exit code unless --overwrite-soft-masters; damage on \
  it does.
  """

struct DiffCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Dry run: walk every node of the cluster together and report what differs from the focus.",
    discussion: clusterExitHelp)

  @OptionGroup var cluster: ClusterOptions
  @OptionGroup var output: OutputOptions
  @OptionGroup var walk: WalkOptions

  func run() throws {
    let group = try cluster.discover()
    var options = cluster.analysis(mode: walk.mode)
    let progress = Progress(phase: "diff --deep", total: Progress.deepWalkTotal(group), enabled: walk.deep && isatty(2) != 0)
    if progress.enabled { options.onScanBytes = progress.add }
    let report = try ClusterReport.analyze(group, options)
    progress.finish()
    if output.json {
      printJSON(JSONReport(report, command: "diff"))
    } else {
      TextReport(report).print()
    }
    try finish(report.exit)
  }
}
