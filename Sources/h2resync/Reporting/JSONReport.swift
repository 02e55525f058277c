import Foundation
import Hammer2Cluster
import Hammer2Format

/// The versioned JSON report of diff and check (`output_version` 1).
struct JSONReport: Codable {
  struct PFS: Codable {
    var name: String
    var clid: String
  }
  struct Vote: Codable {
    var root_modify_tid: UInt64
    var nodes: [String]
    var masters: Int
  }
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
  struct Excluded: Codable {
    var image: String
    var reason: String
  }
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

extension JSONReport {
  /// The JSON rendering of `report`, for `command` ("diff", "check", "resync
  /// --dry-run", "resync").
  init(_ report: ClusterReport, command: String) {
    let nodes = report.group.nodes
    let roles = report.voting.roles
    let space = report.spaceNeeds(snapshot: true)
    let stats = report.stats
    let r = report.root
    let votes = r.versions.map { v in
      Vote(root_modify_tid: v.version.tid, nodes: v.nodes.map { nodes[$0].image }, masters: v.nodes.filter { roles[$0] == .master }.count)
    }
    let byImage: ([UInt64]) -> [String: UInt64] = { arr in
      Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, arr[$0.index]) })
    }
    self.init(
      output_version: 1, command: command, mode: report.mode == .deep ? "deep" : "fast",
      pfs: .init(name: report.focus?.pfs.name ?? nodes[0].pfs.name, clid: report.group.clid.description),
      quorum: .init(
        masters: report.voting.configured, masters_present: report.voting.masters,
        nquorum: report.voting.nquorum, has_quorum: r.resolution.focus != nil, votes: votes),
      nodes: nodes.map { n in
        .init(
          image: n.image, name: n.pfs.name, fsid: n.pfs.fsid.description, type: n.pfs.typeName,
          pfs_nmasters: Int(n.pfs.nmasters), root_modify_tid: n.pfs.rootModifyTid,
          state: report.nodeStates[n.index].rawValue)
      },
      focus: report.focus?.image,
      differences: report.differences.map { d in
        .init(
          path: d.path, inum: d.inum, element: d.element,
          nodes: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, d.classes[$0.index].rawValue) }),
          details: Dictionary(
            uniqueKeysWithValues: nodes.compactMap { n in
              d.details[n.index].isEmpty || d.classes[n.index] == .inSync ? nil : (n.image, d.details[n.index])
            }))
      },
      summary: .init(
        differences: stats.differences,
        classes: Dictionary(uniqueKeysWithValues: stats.counts.map { ($0.key.rawValue, $0.value) }),
        bytes_to_write: byImage(stats.bytesToWrite), blocks_checked: byImage(stats.blocksChecked),
        bytes_checked: byImage(stats.bytesChecked), damaged_blocks: byImage(stats.damagedBlocks),
        exit_code: report.exit.rawValue,
        soft_local: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, stats.nodeSoftLocal[$0.index]) }),
        tids_only: Dictionary(uniqueKeysWithValues: nodes.map { ($0.image, stats.nodeTidsOnly[$0.index]) }),
        space_needed: Dictionary(uniqueKeysWithValues: space.map { ($0.image, $0.needed) }),
        space_free: Dictionary(uniqueKeysWithValues: space.map { ($0.image, $0.free) })),
      excluded: report.group.excluded.map { .init(image: $0.image, reason: $0.reason) },
      notes: report.notes.map(Wording.note) + TextReport(report).softMasterLines,
      findings: report.findings.map(\.description))
  }
}

/// Prints `value` as pretty JSON with sorted keys.
func printJSON<T: Encodable>(_ value: T) {
  let enc = JSONEncoder()
  enc.outputFormatting = [.prettyPrinted, .sortedKeys]
  // Safe: the report types are plain Codable structs.
  print(String(decoding: try! enc.encode(value), as: UTF8.self))
}
