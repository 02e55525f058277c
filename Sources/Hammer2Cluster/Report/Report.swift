import Hammer2Format

/// How one node's copy of one path compares with the focus. The raw values are the
/// report's spelling, which scripts parse.
public enum PathClass: String, Codable, Sendable, CaseIterable, Comparable {
  case inSync = "in-sync"
  case stale, ahead, missing, extra
  case splitBrain = "split-brain"
  case shapeMismatch = "shape-mismatch"
  case damaged
  case inHole = "in-hole"
  case conflict, undecidable
  /// A soft master's own local change (it never votes and resync leaves it alone unless
  /// told to overwrite soft masters): reported, never counted against the cluster.
  case softLocal = "soft-local"

  public static func < (a: PathClass, b: PathClass) -> Bool {
    allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! // Safe: every case is in allCases.
  }

  /// Whether a resync can repair it without a human.
  public var repairable: Bool { ![.conflict, .undecidable, .inHole].contains(self) }

  /// Whether it sets the exit code of diff, check and resync (a soft master's own
  /// changes do not; damage anywhere does).
  public var counts: Bool { self != .inSync && self != .softLocal }
}

/// One differing path.
public struct Difference: Sendable {
  /// Relative to the PFS root: "." for the root's own attributes, "/" for the root when
  /// only its modify_tid differs and nothing else on that node does.
  public var path: String
  /// The focus's inode number (or the first node's that has the path).
  public var inum: UInt64
  /// What differs: "dirent" (present on some nodes only), "inode" (attributes),
  /// "data" (content), "type".
  public var element: String
  /// Class per node index (every node of the group).
  public var classes: [PathClass]
  /// Per node: what differs, for the text report ("size", "mtime", "data"...).
  public var details: [[String]]
  /// Logical bytes a resync would write on each node for this path.
  public var bytesToWrite: [UInt64]
  /// Per node: the copy equals the focus's in attributes and content and differs only in
  /// modify_tid (class `stale`, detail "tids only"); resync stamps the tid, no data.
  public var tidsOnly: [Bool] = []
  /// The focus node's entry and inode blockref for the path, as the walk read them
  /// (resync uses them instead of resolving the path again).
  public var focusEntry: DirEntry? = nil
  public var focusInode: Blockref? = nil
  /// Per node: the inode blockref the walk read for the path there (nil where the node
  /// lacks the path or its inode was unreadable). Resync loads a target's inode from it
  /// instead of descending its PFS index again, when its tree is still the one walked.
  public var nodeInodes: [Blockref?] = []
}

/// The state of one node at the end of a walk: the one state text, JSON and metrics
/// print.
public enum NodeState: String, Codable, Sendable, CaseIterable {
  case inSync = "in-sync"
  case stale, ahead
  case splitBrain = "split-brain"
  case damaged, conflict, focus
  /// A soft master whose only differences are its own local changes.
  case softLocal = "soft-local"
}

/// The cluster-level decision at the PFS root: versions (root modify_tid + root
/// attributes) and which masters hold each.
public struct RootDecision: Sendable {
  public var resolution: Resolution
  /// version -> node indexes, for every node.
  public var versions: [(version: Version, nodes: [Int])]
}
