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

/// Options shared by diff, check and resync.
struct ClusterOptions: ParsableArguments {
  @Argument(help: "Every device image of the PFS cluster (opened read-only by diff and check).")
  var images: [String]

  @Option(help: "The PFS label (when several clusters share the images).")
  var pfs: String?

  @Option(help: "The cluster id (pfs_clid) to use.")
  var clid: String?

  @Option(help: "Block cache budget in MiB (memory is bounded by it, not by image size).")
  var cacheMib: Int = 64

  @Option(help: "Threads for the directory walk of diff and resync (check walks on one).")
  var threads: Int = 2

  @Flag(help: "Treat soft masters like any other node: their differences count, and resync overwrites them (by default their own changes are soft-local and left alone).")
  var overwriteSoftMasters = false

  func validate() throws {
    if images.isEmpty { throw ValidationError("give the images of the cluster") }
    if !(1...64).contains(threads) { throw ValidationError("--threads must be 1 to 64") }
    if let clid, H2UUID(string: clid) == nil { throw ValidationError("--clid must be a UUID") }
  }

  func discover() throws -> ClusterGroup {
    do {
      return try ClusterGroup.discover(images: images, name: pfs, clid: clid.flatMap { H2UUID(string: $0) }, cacheBudget: cacheMib << 20, opener: deviceOpener)
    } catch let e as ClusterError {
      throw CouldNotRun("h2resync: \(e.message)")
    }
  }
}

/// A failure that maps to exit 3 with a message.
struct CouldNotRun: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// The versioned JSON report of diff and check (`output_version` 1).
struct ClusterReport: Codable {
  struct PFS: Codable { var name: String; var clid: String }
  struct Vote: Codable { var root_modify_tid: UInt64; var nodes: [String]; var masters: Int }
  struct Quorum: Codable {
    var masters: Int
    var masters_present: Int
    var nquorum: Int
    var has_quorum: Bool
    var votes: [Vote]
  }
  struct Node: Codable {
    var image: String
    var name: String
    var fsid: String
    var type: String
    var pfs_nmasters: Int
    var root_modify_tid: UInt64
    var state: String
  }
  struct Diff: Codable {
    var path: String
    var inum: UInt64
    var element: String
    var nodes: [String: String]
    var details: [String: [String]]
  }
  struct Summary: Codable {
    var differences: Int
    var classes: [String: Int]
    var bytes_to_write: [String: UInt64]
    var blocks_checked: [String: UInt64]
    var bytes_checked: [String: UInt64]
    var damaged_blocks: [String: UInt64]
    var exit_code: Int32
    /// Per node: paths that are a soft master's own local changes (`soft-local`).
    var soft_local: [String: Int]
    /// Per node: paths whose copy differs from the focus's in modify_tid alone.
    var tids_only: [String: Int]
    /// Per node: bytes a resync of this plan would allocate there (an upper estimate,
    /// with the snapshot) and bytes its freemap can still allocate.
    var space_needed: [String: UInt64]
    var space_free: [String: UInt64]
  }
  struct Excluded: Codable { var image: String; var reason: String }
  var output_version: Int
  var command: String
  var mode: String
  var pfs: PFS
  var quorum: Quorum
  var nodes: [Node]
  var focus: String?
  var differences: [Diff]
  var summary: Summary
  var excluded: [Excluded]
  var notes: [String]
  var findings: [String]

  enum CodingKeys: String, CodingKey {
    case output_version, command, mode, pfs, quorum, nodes, focus, differences, summary, excluded, notes, findings
  }

  /// Explicit so that a missing focus is written as `"focus": null`, not left out.
  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(output_version, forKey: .output_version)
    try c.encode(command, forKey: .command)
    try c.encode(mode, forKey: .mode)
    try c.encode(pfs, forKey: .pfs)
    try c.encode(quorum, forKey: .quorum)
    try c.encode(nodes, forKey: .nodes)
    if let focus { try c.encode(focus, forKey: .focus) } else { try c.encodeNil(forKey: .focus) }
    try c.encode(differences, forKey: .differences)
    try c.encode(summary, forKey: .summary)
    try c.encode(excluded, forKey: .excluded)
    try c.encode(notes, forKey: .notes)
    try c.encode(findings, forKey: .findings)
  }
}

/// Runs a walk and builds the report; shared by diff, check and resync.
struct ClusterAnalysis {
  let group: ClusterGroup
  let walker: ClusterWalker
  var differences: [Difference] = []
  var exit: ExitStatus = .ok

  init(group: ClusterGroup, mode: WalkMode, threads: Int, overwriteSoftMasters: Bool = false, keepDifferences: Bool = true,
       onBytes: ((UInt64) -> Void)? = nil, onDifference: ((Difference) -> Void)? = nil) {
    self.group = group
    walker = ClusterWalker(group: group, mode: mode)
    walker.threads = threads
    walker.overwriteSoftMasters = overwriteSoftMasters
    walker.onBytes = onBytes
    var diffs: [Difference] = []
    walker.run { d in
      onDifference?(d)
      if keepDifferences { diffs.append(d) }
    }
    differences = diffs
    exit = Self.status(walker)
  }

  static func status(_ w: ClusterWalker) -> ExitStatus {
    if w.root.resolution.focus == nil { return w.stats.differences == 0 && w.findings.isEmpty ? .ok : .needsHuman }
    let counts = w.stats.counts
    if counts.keys.contains(where: { !$0.repairable }) { return .needsHuman }
    // A soft master's own changes never count (damage on it does: it is a finding).
    if w.stats.countedDifferences > 0 || !w.findings.isEmpty { return .findings }
    return .ok
  }

  /// The soft masters whose own local changes the walk found, with how many paths.
  var softMastersWithLocalChanges: [(node: ClusterNode, paths: Int)] {
    group.nodes.compactMap { n in walker.stats.nodeSoftLocal[n.index] > 0 ? (n, walker.stats.nodeSoftLocal[n.index]) : nil }
  }

  /// One line per soft master left alone (its own changes are not the cluster's).
  var softMasterLines: [String] {
    softMastersWithLocalChanges.map { n, k in
      "soft master \(n.image) left alone: \(k) paths differ there (soft-local: its own changes; --overwrite-soft-masters writes them)"
    }
  }

  func report(command: String, mode: WalkMode) -> ClusterReport {
    let nodes = group.nodes
    let space = walker.spaceNeeds(snapshot: true)
    let states = walker.nodeStates
    let r = walker.root
    let votes = r.versions.map { v in
      ClusterReport.Vote(root_modify_tid: v.version.tid, nodes: v.nodes.map { nodes[$0].image },
                         masters: v.nodes.filter { nodes[$0].role == .master }.count)
    }
    let byImage: ([UInt64]) -> [String: UInt64] = { arr in
      Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, arr[$0.index]) })
    }
    return ClusterReport(
      output_version: 1, command: command, mode: mode == .deep ? "deep" : "fast",
      pfs: .init(name: walker.focus?.pfs.name ?? nodes[0].pfs.name, clid: group.clid.description),
      quorum: .init(masters: group.configured, masters_present: nodes.filter { $0.role == .master }.count,
                    nquorum: group.nquorum, has_quorum: r.resolution.focus != nil, votes: votes),
      nodes: nodes.map { n in
        .init(image: n.image, name: n.pfs.name, fsid: n.pfs.fsid.description, type: n.pfs.typeName,
              pfs_nmasters: Int(n.pfs.nmasters), root_modify_tid: n.pfs.rootModifyTid,
              state: states[n.index].rawValue)
      },
      focus: walker.focus?.image,
      differences: differences.map { d in
        .init(path: d.path, inum: d.inum, element: d.element,
              nodes: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, d.classes[$0.index].rawValue) }),
              details: Dictionary(uniqueKeysWithValues: nodes.compactMap { n in d.details[n.index].isEmpty || d.classes[n.index] == .inSync ? nil : (n.image, d.details[n.index]) }))
      },
      summary: .init(
        differences: walker.stats.differences,
        classes: Dictionary(uniqueKeysWithValues: walker.stats.counts.map { ($0.key.rawValue, $0.value) }),
        bytes_to_write: byImage(walker.stats.bytesToWrite), blocks_checked: byImage(walker.stats.blocksChecked),
        bytes_checked: byImage(walker.stats.bytesChecked), damaged_blocks: byImage(walker.stats.damagedBlocks),
        exit_code: exit.rawValue,
        soft_local: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, walker.stats.nodeSoftLocal[$0.index]) }),
        tids_only: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, walker.stats.nodeTidsOnly[$0.index]) }),
        space_needed: Dictionary(uniqueKeysWithValues: space.map { ($0.image, $0.needed) }),
        space_free: Dictionary(uniqueKeysWithValues: space.map { ($0.image, $0.free) })),
      excluded: group.excluded.map { .init(image: $0.image, reason: $0.reason) },
      notes: group.notes + softMasterLines,
      findings: walker.findings.map(\.description))
  }

  /// Text: nodes, focus with evidence, one line per differing path per node, summary.
  func printText(limit: Int = .max) {
    let nodes = group.nodes
    let space = walker.spaceNeeds(snapshot: true)
    let states = walker.nodeStates
    print("cluster \(group.clid)  nodes \(nodes.count)  masters \(nodes.filter { $0.role == .master }.count) of \(group.configured)  quorum \(group.nquorum)")
    printTable([["NODE", "IMAGE", "PFS", "TYPE", "FSID", "ROOT_MODIFY_TID", "STATE"]] + nodes.map { n in
      [n.label, n.image, n.pfs.name, n.pfs.typeName, n.pfs.fsid.description, String(n.pfs.rootModifyTid), states[n.index].rawValue]
    })
    for (image, reason) in group.excluded { print("excluded: \(image): \(reason)") }
    for note in group.notes { print("note: \(note)") }
    let votes = walker.root.versions.map { v in
      "tid \(v.version.tid): \(v.nodes.map { nodes[$0].label + (nodes[$0].role == .master ? "" : "(\(nodes[$0].role.rawValue.lowercased()))") }.joined(separator: ","))"
    }
    if let f = walker.focus {
      print("focus: \(f.image) (root modify_tid \(f.pfs.rootModifyTid), \(walker.root.resolution.votes) of \(group.nquorum) needed master votes; \(votes.joined(separator: "; ")))")
    } else {
      print("focus: none: no version has a quorum of \(group.nquorum) masters (\(votes.joined(separator: "; ")))")
    }
    var printed = 0
    // Padded once: one line per differing path and node (tens of thousands in a resync).
    let labels = nodes.map { n in n.label + String(repeating: " ", count: max(0, 8 - n.label.count)) }
    func column(_ c: PathClass) -> String { c.rawValue + String(repeating: " ", count: max(0, 14 - c.rawValue.count)) }
    for d in differences {
      for n in nodes where d.classes[n.index] != .inSync {
        if printed < limit {
          let what = d.details[n.index].isEmpty ? "" : "  (" + d.details[n.index].joined(separator: ",") + ")"
          print("\(labels[n.index])  \(column(d.classes[n.index]))  \(d.path)\(what)")
        }
        printed += 1
      }
    }
    if printed > limit { print("... \(printed - limit) more lines (use --json for all)") }
    let counts = walker.stats.counts.sorted { $0.key < $1.key }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
    print("summary: \(walker.stats.differences) differing paths\(counts.isEmpty ? "" : " (" + counts + ")")")
    for n in nodes where walker.stats.bytesToWrite[n.index] > 0 || walker.stats.damagedBlocks[n.index] > 0 {
      print("  \(n.label): resync would write \(walker.stats.bytesToWrite[n.index]) bytes of file data; \(walker.stats.damagedBlocks[n.index]) damaged blocks")
    }
    for n in nodes where walker.stats.nodeTidsOnly[n.index] > 0 {
      print("  \(n.label): \(walker.stats.nodeTidsOnly[n.index]) paths differ in modify_tid only (resync stamps the focus's tids, no data)")
    }
    for (n, need) in zip(nodes, space) where need.needed > 0 {
      print("  \(n.label): resync needs about \(need.needed) bytes of free space, \(need.free) free\(need.fits ? "" : ": does not fit, resync refuses before writing any node")")
    }
    for line in softMasterLines { print("  " + line) }
    for f in walker.findings.prefix(50) { print("damage: \(f)") }
  }
}

struct DiffCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Dry run: walk every node of the cluster together and report what differs from the focus.",
    discussion: clusterExitHelp)

  @OptionGroup var cluster: ClusterOptions

  @Flag(help: "Print the versioned JSON report.")
  var json = false

  @Flag(help: "Read and verify every block and compare content (default: trust equal modify_tids).")
  var deep = false

  func run() throws {
    let group = try cluster.discover()
    let mode: WalkMode = deep ? .deep : .fast
    let a = ClusterAnalysis(group: group, mode: mode, threads: cluster.threads, overwriteSoftMasters: cluster.overwriteSoftMasters)
    if json {
      printJSON(a.report(command: "diff", mode: mode))
    } else {
      a.printText()
    }
    try finish(a.exit)
  }
}

func printJSON<T: Encodable>(_ value: T) {
  let enc = JSONEncoder()
  enc.outputFormatting = [.prettyPrinted, .sortedKeys]
  // Safe: the report types are plain Codable structs.
  print(String(decoding: try! enc.encode(value), as: UTF8.self))
}
