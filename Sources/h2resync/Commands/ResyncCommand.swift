import ArgumentParser
import Foundation
import Hammer2Cluster
import Hammer2Format

struct ResyncCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "resync",
    abstract: "Bring stale masters and slaves back in line with the focus (unmounted images only).",
    discussion: clusterExitHelp + """
       The plan is exactly what `diff` reports; --dry-run prints it and writes nothing. \
      Without --yes the plan is shown and confirmed on a terminal; non-interactive runs need --yes. \
      Each changed node keeps its old content as a snapshot PFS unless --no-snapshot. \
      After applying, all nodes are walked again: exit 0 only if they are in sync.
      """)

  @OptionGroup var cluster: ClusterOptions
  @OptionGroup var walk: WalkOptions
  @OptionGroup var output: OutputOptions

  @Flag(help: "Print the plan (identical to diff) and write nothing.")
  var dryRun = false

  @Flag(help: "Apply without asking.")
  var yes = false

  @Flag(help: "Do not keep a snapshot of each changed node's old content.")
  var noSnapshot = false

  @Flag(help: "Allow rolling back nodes that are ahead without a snapshot.")
  var allowRollback = false

  @Option(help: "Trust this image as the focus when no version has a quorum (a conflict).")
  var from: String?

  @Option(help: "Name of the snapshot PFS taken on each changed node.")
  var snapshotName: String?

  var json: Bool { output.json }

  var resyncOptions: ResyncOptions {
    var options = ResyncOptions()
    options.snapshot = !noSnapshot
    options.snapshotName = snapshotName
    options.allowRollback = allowRollback
    options.overwriteSoftMasters = cluster.overwriteSoftMasters
    options.time = UInt64(Date().timeIntervalSince1970) * 1_000_000
    return options
  }

  func run() throws {
    if !dryRun { try requireWritableRemoteNodes(cluster.images) }
    let group = try cluster.discover()
    var analysis = cluster.analysis(mode: walk.mode)
    if let from {
      // The operator's choice stands in for the quorum: the one walk resolves against it.
      guard let f = group.nodes.first(where: { $0.image == from }) else {
        throw CouldNotRun.fromNotANode(image: from)
      }
      analysis.trusted = f.pfs.fsid
    }
    let walkProgress = walk.progress(phase: "resync: walk", group)
    if walkProgress.enabled { analysis.onScanBytes = walkProgress.add }
    let report = try ClusterReport.analyze(group, analysis)
    walkProgress.finish()
    let plan = ResyncPlan(report: report, options: resyncOptions)
    let text = TextReport(report)
    if dryRun {
      if json { printJSON(JSONReport(report, command: "resync --dry-run")) } else { text.print() }
      // The same space check the real run makes, with the same exit code.
      if let e = plan.spaceProblem { throw CouldNotRun.noSpace(e, dryRun: true) }
      try finish(report.exit)
      return
    }
    guard plan.focus != nil else {
      if from != nil { throw CouldNotRun.fromNotApplied }
      if !json { text.print() }
      if let r = plan.refusal { Diagnostics.emit(Wording.refusal(r)) }
      throw ExitCode(ExitStatus.needsHuman.rawValue)
    }
    if plan.isEmpty {
      if !json {
        text.print()
        print("nothing to do: every node that may be written is in sync")
        for line in text.softMasterLines { print(line) }
      }
      try finish(plan.exitWhenEmpty)
      return
    }
    if let r = plan.refusal {
      if !json { text.print() }
      Diagnostics.emit(Wording.refusal(r))
      throw ExitCode(ExitStatus.needsHuman.rawValue)
    }
    if !json { text.print() }
    // Every target must hold what the plan writes before any node is written.
    if let e = plan.spaceProblem { throw CouldNotRun.noSpace(e, dryRun: false) }
    if !yes {
      guard isatty(0) != 0 else {
        throw CouldNotRun.needsConfirmation
      }
      print("apply this plan to \(plan.targets.map(\.node.image).joined(separator: ", "))? [y/N] ", terminator: "")
      guard let answer = readLine(), answer.lowercased().hasPrefix("y") else {
        print("nothing written")
        throw ExitCode(ExitStatus.findings.rawValue)
      }
    }
    let outcomes: [NodeOutcome]
    do {
      let applyProgress = Progress(
        phase: "resync: apply", total: UInt64(plan.targets.reduce(0) { $0 + $1.actions.count }), unit: .actions)
      outcomes = try Resyncer.apply(plan) { done, _ in applyProgress.update(UInt64(done)) }
      applyProgress.finish()
    } catch let e as FormatError {
      throw CouldNotRun.resyncStopped(e)
    }
    for o in outcomes where !json {
      print(
        "resynced \(o.image): \(o.pathsChanged) paths, \(o.writes) writes, \(o.bytesWritten) bytes, volume header slot \(o.committedSlot.map(String.init) ?? "-"), \(o.tidsStamped) tids-only\(o.snapshot.map { ", old content kept as PFS \($0)" } ?? "")"
      )
      print(
        "  bytes written by block type: " + o.bytesByType.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
      )
      for s in o.skipped { print("  left for a human: \(s)") }
    }
    // Walk again, as the cluster now is (the quorum decides again): in sync, or say what
    // is left.
    let after = try ClusterGroup.discover(
      images: group.nodes.map(\.image), name: cluster.pfs, clid: group.clid, cacheBudget: cluster.cacheBudget, opener: group.opener)
    var verify = cluster.analysis(mode: walk.mode)
    let verifyProgress = walk.progress(phase: "resync: verify", after)
    if verifyProgress.enabled { verify.onScanBytes = verifyProgress.add }
    let check = try ClusterReport.analyze(after, verify)
    verifyProgress.finish()
    if json {
      printJSON(JSONReport(check, command: "resync"))
    } else {
      let left = TextReport(check).softMasterLines
      print(
        check.exit != .ok
          ? "after resync: differences remain:"
          : left.isEmpty ? "after resync: all nodes in sync" : "after resync: every node resync may write is in sync")
      if check.exit != .ok { TextReport(check).print(limit: 50) }
      for line in left { print(line) }
    }
    try finish(check.exit)
  }
}
