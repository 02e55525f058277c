import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Cluster
import Hammer2Format

struct CheckCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "For cron: verify every block's check code on every node and summarize divergence in one line.",
    discussion: clusterExitHelp + " Nothing is printed with --quiet when healthy.")

  @OptionGroup var cluster: ClusterOptions

  @Flag(help: "Print nothing when everything is in sync and undamaged.")
  var quiet = false

  @OptionGroup var output: OutputOptions

  @Option(help: "Write Prometheus textfile metrics here (atomically: temp file + rename).")
  var metrics: String?

  @Option(help: "Throttle reads to this many bytes per second (e.g. 50M).")
  var maxRate: String?

  @Flag(
    help:
      "Also cross-check each image's freemap against its tree (referenced blocks marked free are damage; unreferenced allocated chunks are reported as reclaimable)."
  )
  var freemap = false

  @Option(help: "Lock file that keeps overlapping runs apart.")
  var lockFile: String = "/tmp/h2resync-check.lock"

  func run() throws {
    let lock = open(lockFile, O_CREAT | O_RDWR, 0o644)
    guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
      throw CouldNotRun.checkRunning(lockFile: lockFile)
    }
    defer { close(lock) }
    let rate = try maxRate.map(parseRate)
    let started = Date()
    let clock = ContinuousClock()
    let t0 = clock.now
    let group = try cluster.discover()
    let progress = Progress(phase: "check", total: Progress.deepWalkTotal(group))
    var options = cluster.analysis(mode: .deep)
    options.keepDifferences = output.json
    options.onBytes = { bytes in
      progress.add(bytes)
      if let rate, rate > 0 {
        // Sleep until the average rate is back under the limit.
        let ahead = Double(progress.done) / Double(rate) - (clock.now - t0).seconds
        if ahead > 0.01 { usleep(useconds_t(min(ahead, 1.0) * 1_000_000)) }
      }
    }
    let report = try ClusterReport.analyze(group, options)
    progress.finish()
    let fm = freemap ? FreemapReport(report, overwriteSoftMasters: cluster.overwriteSoftMasters) : nil
    let verdict = fm?.exit(combining: report.exit) ?? report.exit
    let elapsed = (clock.now - t0).seconds
    if let metrics {
      try MetricsReport(report, started: started, duration: elapsed, exit: verdict, extra: fm?.metrics(clid: group.clid.description) ?? "")
        .write(to: metrics)
    }
    if output.json {
      let json = JSONReport(report, command: "check")
      if let fm { printJSON(FreemapReport.WithFreemap(report: json, freemap: fm.json)) } else { printJSON(json) }
    } else if !(quiet && verdict == .ok) {
      let stats = report.stats
      let damaged = stats.damagedBlocks.reduce(0, +)
      let checked = stats.blocksChecked.reduce(0, +)
      let label: String
      switch verdict {
      case .ok: label = "OK"
      case .findings: label = "WARNING"
      case .needsHuman: label = "CRITICAL"
      }
      let nodeStates = report.nodeStates
      let states = group.nodes.map { "\($0.label)=\(nodeStates[$0.index].rawValue)" }.joined(separator: " ")
      let softLocal = stats.nodeSoftLocal.reduce(0, +)
      let local = softLocal > 0 ? ", \(softLocal) soft-local paths (soft masters' own changes)" : ""
      print(
        "H2RESYNC \(label): cluster \(group.clid) \(states); \(stats.countedDifferences) differing paths\(local), \(damaged) damaged blocks, \(checked) blocks checked in \(String(format: "%.1f", elapsed)) s\(fm?.summary ?? "") | differences=\(stats.countedDifferences) soft_local=\(softLocal) damaged=\(damaged) blocks=\(checked)\(fm?.perfdata ?? "")"
      )
      fm?.printLines()
    }
    try finish(verdict)
  }

  func parseRate(_ s: String) throws -> UInt64 {
    guard let n = Spellings.byteSize(s) else { throw ValidationError("--max-rate takes bytes per second, e.g. 50M") }
    return n
  }
}
