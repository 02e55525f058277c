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

  @Flag(help: "Print the plan (identical to diff) and write nothing.")
  var dryRun = false

  @Flag(help: "Apply without asking.")
  var yes = false

  @Flag(help: "Compare content of every block (default: trust equal modify_tids, as diff).")
  var deep = false

  @Flag(help: "Do not keep a snapshot of each changed node's old content.")
  var noSnapshot = false

  @Flag(help: "Allow rolling back nodes that are ahead without a snapshot.")
  var allowRollback = false

  @Option(help: "Trust this image as the focus when no version has a quorum (a conflict).")
  var from: String?

  @Option(help: "Name of the snapshot PFS taken on each changed node.")
  var snapshotName: String?

  @Flag(help: "Print the plan and result as JSON.")
  var json = false

  func run() throws {
    if !dryRun { try requireWritableRemoteNodes(cluster.images) }
    let group = try cluster.discover()
    let mode: WalkMode = deep ? .deep : .fast
    let a = ClusterAnalysis(group: group, mode: mode, threads: cluster.threads, overwriteSoftMasters: cluster.overwriteSoftMasters)
    if dryRun {
      if json { printJSON(a.report(command: "resync --dry-run", mode: mode)) } else { a.printText() }
      // The same space check the real run makes, with the same exit code.
      if let focus = a.walker.focus {
        var options = ResyncOptions()
        options.overwriteSoftMasters = cluster.overwriteSoftMasters
        let resyncer = Resyncer(group: group, focus: focus, options: options)
        let targets = resyncer.targets(states: a.walker.nodeStates, differences: a.differences)
        do {
          try resyncer.checkSpace(targets: targets, needs: a.walker.spaceNeeds(snapshot: !noSnapshot))
        } catch {
          throw CouldNotRun("h2resync: \(error.description); a resync would refuse before writing any node")
        }
      }
      try finish(a.exit)
      return
    }
    var focus = a.walker.focus
    if let from {
      guard let f = group.nodes.first(where: { $0.image == from }) else {
        throw CouldNotRun("h2resync: --from \(from) is not one of the cluster's images")
      }
      focus = f
    }
    guard let focus else {
      if !json { a.printText() }
      warn("h2resync: no version has a quorum of \(group.nquorum) masters: nothing written. Decide which node to trust and run again with --from IMAGE.")
      throw ExitCode(ExitStatus.needsHuman.rawValue)
    }
    if from != nil && a.walker.focus == nil {
      // Reclassify against the chosen node.
      return try applyWithChosenFocus(group: group, focus: focus, mode: mode)
    }
    try apply(group: group, analysis: a, focus: focus, mode: mode)
  }

  func applyWithChosenFocus(group: ClusterGroup, focus: ClusterNode, mode: WalkMode) throws {
    // The operator's choice stands in for the quorum: resolve against that node alone.
    let forced = try ClusterGroup.discover(images: group.nodes.map(\.image), name: cluster.pfs, clid: group.clid,
                                           cacheBudget: cluster.cacheMib << 20, trusting: focus.pfs.fsid, opener: group.opener)
    let a = ClusterAnalysis(group: forced, mode: mode, threads: cluster.threads, overwriteSoftMasters: cluster.overwriteSoftMasters)
    guard let f = a.walker.focus else { throw CouldNotRun("h2resync: --from could not be applied") }
    try apply(group: forced, analysis: a, focus: f, mode: mode)
  }

  func apply(group: ClusterGroup, analysis a: ClusterAnalysis, focus: ClusterNode, mode: WalkMode) throws {
    var options = ResyncOptions()
    options.snapshot = !noSnapshot
    options.snapshotName = snapshotName
    options.allowRollback = allowRollback
    options.overwriteSoftMasters = cluster.overwriteSoftMasters
    options.time = UInt64(Date().timeIntervalSince1970) * 1_000_000
    let resyncer = Resyncer(group: group, focus: focus, options: options)
    let states = a.walker.nodeStates
    let targets = resyncer.targets(states: states, differences: a.differences)
    if targets.isEmpty {
      if !json { a.printText() }
      if !json {
        print("nothing to do: every node that may be written is in sync")
        for line in a.softMasterLines { print(line) }
      }
      try finish(a.exit == .findings ? .ok : a.exit)
      return
    }
    do {
      try resyncer.check(targets: targets, states: states)
    } catch let r as ResyncRefusal {
      if !json { a.printText() }
      warn("h2resync: \(r.description)")
      throw ExitCode(ExitStatus.needsHuman.rawValue)
    }
    if !json { a.printText() }
    // Every target must hold what the plan writes before any node is written.
    do {
      try resyncer.checkSpace(targets: targets, needs: a.walker.spaceNeeds(snapshot: !noSnapshot))
    } catch {
      throw CouldNotRun("h2resync: \(error.description); nothing written")
    }
    if !yes {
      guard isatty(0) != 0 else {
        throw CouldNotRun("h2resync: not a terminal: add --yes to apply the plan above (or --dry-run to only print it)")
      }
      print("apply this plan to \(targets.map(\.image).joined(separator: ", "))? [y/N] ", terminator: "")
      guard let answer = readLine(), answer.lowercased().hasPrefix("y") else {
        print("nothing written")
        throw ExitCode(ExitStatus.findings.rawValue)
      }
    }
    // Close the read-only views before writing: each image is written under its lock.
    let outcomes: [NodeOutcome]
    do {
      outcomes = try resyncer.apply(targets: targets, differences: a.differences)
    } catch let e as FormatError {
      throw CouldNotRun("h2resync: resync stopped, nothing committed on the image being written: \(e.description)")
    }
    for o in outcomes where !json {
      print("resynced \(o.image): \(o.pathsChanged) paths, \(o.writes) writes, \(o.bytesWritten) bytes, volume header slot \(o.committedSlot.map(String.init) ?? "-"), \(o.tidsStamped) tids-only\(o.snapshot.map { ", old content kept as PFS \($0)" } ?? "")")
      print("  bytes written by block type: " + o.bytesByType.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
      for s in o.skipped { print("  left for a human: \(s)") }
    }
    // Walk again: in sync, or say what is left.
    let after = try ClusterGroup.discover(images: group.nodes.map(\.image), name: cluster.pfs, clid: group.clid, cacheBudget: cluster.cacheMib << 20, opener: group.opener)
    let check = ClusterAnalysis(group: after, mode: mode, threads: cluster.threads, overwriteSoftMasters: cluster.overwriteSoftMasters)
    if json {
      printJSON(check.report(command: "resync", mode: mode))
    } else {
      let left = check.softMasterLines
      print(check.exit != .ok ? "after resync: differences remain:" : left.isEmpty ? "after resync: all nodes in sync" : "after resync: every node resync may write is in sync")
      if check.exit != .ok { check.printText(limit: 50) }
      for line in left { print(line) }
    }
    try finish(check.exit)
  }
}
