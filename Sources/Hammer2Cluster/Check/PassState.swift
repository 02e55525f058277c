import Foundation
import Hammer2Format

/// The state file of a resumable check (`check --state`): where each node's pass got to
/// and what the pass found so far, as versioned JSON. Bounded: per node a key and at
/// most one index block per index level; counters; the first `PassTotals.maxFindings`
/// findings and `PassTotals.maxSeen` reported locations.
public struct PassState: Codable, Sendable {
  public static let currentVersion = 1

  struct Node: Codable, Sendable {
    /// The node's identity in the pass (pfs_fsid: unique per node of a cluster).
    var pfs_fsid: String
    /// What says its volume did not change: the volume's fsid, the image's name and the
    /// volume header's mirror_tid (raised by every flush).
    var fsid: String
    var label: String
    var mirror_tid: UInt64
    /// The key its next run starts from (`UInt64.max`: its pass is done).
    var next: UInt64
    var frontier: [UInt64]
    var classes: [String]
    var blocks_checked: UInt64
    var bytes_checked: UInt64
    var damaged_blocks: UInt64
    var bytes_to_write: UInt64
    var media_bytes_to_write: UInt64
    var differences: Int
    var soft_local: Int
    var tids_only: Int
  }
  struct StoredLocation: Codable, Sendable {
    var image: String
    var offset: UInt64?
    var structure: String
  }
  struct StoredFinding: Codable, Sendable {
    var severity: String
    var location: StoredLocation
    var message: String
    var path: String?
  }

  var version: Int
  var clid: String
  var pfs: String
  /// When the pass's first run started (Unix seconds).
  var pass_started: Double
  /// Runs of this pass so far (this one included).
  var runs: Int
  var nodes: [Node]
  var counts: [String: Int]
  var differences: Int
  var counted_differences: Int
  var findings: [StoredFinding]
  var seen: [StoredLocation]

  /// Every node's pass is done.
  public var complete: Bool { nodes.allSatisfy { $0.next == .max } }
  public var passStarted: Date { Date(timeIntervalSince1970: pass_started) }
  public var runCount: Int { runs }

  /// The state after a run of the pass (`report` made with a `ScanWindow`).
  public init(_ report: ClusterReport, passStarted: Date, runs: Int) {
    let group = report.group
    let outcome = report.scan?.outcome
    let totals = report.scan?.totals ?? PassTotals(nodes: group.nodes.count)
    let st = totals.stats
    version = Self.currentVersion
    clid = group.clid.description
    pfs = group.nodes.first?.pfs.name ?? ""
    pass_started = passStarted.timeIntervalSince1970
    self.runs = runs
    nodes = group.nodes.map { n in
      let i = n.index
      return Node(
        pfs_fsid: n.pfs.inode.meta.pfsFsid.description, fsid: n.volume.header.fsid.description, label: n.label,
        mirror_tid: n.volume.header.mirrorTid, next: outcome?.next[i] ?? .max, frontier: (outcome?.frontier[i] ?? []).sorted(),
        classes: totals.nodeClasses[i].map(\.rawValue).sorted(), blocks_checked: st.blocksChecked[i], bytes_checked: st.bytesChecked[i],
        damaged_blocks: st.damagedBlocks[i], bytes_to_write: st.bytesToWrite[i], media_bytes_to_write: st.mediaBytesToWrite[i],
        differences: st.nodeDifferences[i], soft_local: st.nodeSoftLocal[i], tids_only: st.nodeTidsOnly[i])
    }
    counts = Dictionary(uniqueKeysWithValues: st.counts.map { ($0.key.rawValue, $0.value) })
    differences = st.differences
    counted_differences = st.countedDifferences
    func stored(_ l: Location) -> StoredLocation { StoredLocation(image: l.image, offset: l.offset, structure: l.structure) }
    findings = totals.findings.map {
      StoredFinding(severity: $0.severity.rawValue, location: stored($0.location), message: $0.message, path: $0.path)
    }
    seen = totals.seen.map(stored).sorted { ($0.image, $0.offset ?? 0, $0.structure) < ($1.image, $1.offset ?? 0, $1.structure) }
  }

  /// The file's bytes (what `CheckPass` reads back).
  public func encoded() -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return (try? e.encode(self)) ?? Data() // Safe: plain strings and numbers always encode.
  }

  /// Decodes a state file; nil with the reason when it cannot be used.
  static func decode(_ data: Data) -> Result<PassState, StateRejection> {
    guard let s = try? JSONDecoder().decode(PassState.self, from: data) else { return .failure(.unreadable) }
    guard s.version == currentVersion else { return .failure(.version(s.version)) }
    guard s.isBounded else { return .failure(.unreadable) }
    return .success(s)
  }

  /// Sizes and values a state this program wrote has: a hand-edited or damaged file
  /// is refused, never trusted.
  private var isBounded: Bool {
    !nodes.isEmpty && findings.count <= PassTotals.maxFindings && seen.count <= PassTotals.maxSeen
      && pass_started.isFinite && runs >= 1
      && nodes.allSatisfy { n in
        n.frontier.count <= H2.maxIndirectDepth && n.classes.allSatisfy { PathClass(rawValue: $0) != nil }
          && n.differences >= 0 && n.soft_local >= 0 && n.tids_only >= 0
      }
      && counts.keys.allSatisfy { PathClass(rawValue: $0) != nil } && counts.values.allSatisfy { $0 >= 0 }
      && findings.allSatisfy { Finding.Severity(rawValue: $0.severity) != nil }
      && differences >= 0 && counted_differences >= 0
  }

  /// The pass totals it holds, for the group's node order (`order[i]`: the stored node of
  /// group node `i`).
  func totals(order: [Int]) -> PassTotals {
    var t = PassTotals(nodes: order.count)
    for (i, k) in order.enumerated() {
      let n = nodes[k]
      t.stats.blocksChecked[i] = n.blocks_checked
      t.stats.bytesChecked[i] = n.bytes_checked
      t.stats.damagedBlocks[i] = n.damaged_blocks
      t.stats.bytesToWrite[i] = n.bytes_to_write
      t.stats.mediaBytesToWrite[i] = n.media_bytes_to_write
      t.stats.nodeDifferences[i] = n.differences
      t.stats.nodeSoftLocal[i] = n.soft_local
      t.stats.nodeTidsOnly[i] = n.tids_only
      t.nodeClasses[i] = Set(n.classes.compactMap(PathClass.init(rawValue:)))
    }
    for (k, v) in counts { if let c = PathClass(rawValue: k) { t.stats.counts[c] = v } }
    t.stats.differences = differences
    t.stats.countedDifferences = counted_differences
    func location(_ l: StoredLocation) -> Location { Location(image: l.image, offset: l.offset, structure: l.structure) }
    t.findings = findings.compactMap { f in
      Finding.Severity(rawValue: f.severity).map { Finding($0, at: location(f.location), f.message, path: f.path) }
    }
    t.seen = Set(seen.map(location))
    return t
  }
}

/// Why a state file was not used (a new pass starts).
public enum StateRejection: Error, Equatable, CustomStringConvertible {
  case unreadable
  case version(Int)
  case otherCluster(clid: String, pfs: String)
  case otherNodes

  public var description: String {
    switch self {
    case .unreadable: return "the state file is unreadable or damaged"
    case .version(let v): return "the state file has version \(v), this program writes \(PassState.currentVersion)"
    case .otherCluster(let clid, let pfs): return "the state file is of another cluster (clid \(clid), PFS \(pfs))"
    case .otherNodes: return "the state file is of another set of nodes"
    }
  }
}
