import Hammer2Format

/// Reads a deep scan attributed to one inode key: the blocks read since the previous
/// key (the index blocks that led to it, then the inode and everything below it).
struct ScanReads: Sendable {
  var blocks: UInt64 = 0
  var bytes: UInt64 = 0
  /// Each read's media offset, only when a test asks (`ScanWindow.recordsOffsets`).
  var offsets: [UInt64] = []
  mutating func add(_ offset: UInt64, _ size: Int, keepOffset: Bool) {
    blocks += 1
    bytes += UInt64(size)
    if keepOffset { offsets.append(offset) }
  }
}

/// The part of a check pass one run of a resumable check scans (`check --time-budget`).
///
/// The resume unit is the inode key: the deep scan reads each node's inode index in key
/// order, and everything below an inode (its inode block, directory entries, data
/// blocks) is read while that key is scanned. A run scans node `i` from `from[i]` and
/// stops, when `shouldStop` says so, before some key `K`, the same for every node: every
/// key below `K` has been read on every node whose frontier lay below it, nothing at or
/// above it counts. Index (indirect) blocks count in the run that reads them first; the
/// next run's descent to `K` reads again the few on the path to `K` that were already
/// counted (`frontier`, at most one per index level and node) and does not count them.
public struct ScanWindow {
  /// Per node index: the first key this run scans (`UInt64.max`: the node's pass is
  /// done; 0: a new pass or a node whose pass restarted).
  public var from: [UInt64]
  /// Per node: media offsets of index blocks an earlier run of the pass counted.
  public var frontier: [Set<UInt64>]
  /// Asked before each key but the run's first, in key order: true ends the run there
  /// (a time budget, or a number of keys in tests). A run always makes progress.
  public var shouldStop: () -> Bool
  /// What the earlier runs of the pass found (nil: the pass starts with this run).
  public var prior: PassTotals?
  /// Ask `shouldStop` only when the merge waits for a node's next batch (what a time
  /// budget wants: keys already read ahead are scanned, not read again by the next run;
  /// a run then ends at most a batch per node past its budget). False: before every key.
  public var stopsAtBatches = false
  /// Keep the offsets of the blocks the run verifies (`ScanOutcome.verified`), for tests.
  public var recordsOffsets = false

  public init(nodes: Int, shouldStop: @escaping () -> Bool = { false }) {
    from = .init(repeating: 0, count: nodes)
    frontier = .init(repeating: [], count: nodes)
    self.shouldStop = shouldStop
  }

  /// Whether `shouldStop` is asked now (`waiting`: some node's next batch is not here).
  func asksNow(waiting: Bool) -> Bool { !stopsAtBatches || waiting }

  /// The keys where every node is scanned in this run: only there are nodes compared
  /// (a node whose pass restarted is verified alone until it catches up).
  func compared(upTo end: UInt64?) -> Range<UInt64> {
    let lo = from.max() ?? 0
    let hi = end ?? .max
    return lo < hi ? lo..<hi : lo..<lo
  }
}

/// Where a run of a pass got to.
public struct ScanOutcome: Sendable {
  /// Per node: the key the next run starts from (`UInt64.max`: done).
  public var next: [UInt64]
  /// Per node: the index blocks on the path to `next` that this pass has counted.
  public var frontier: [Set<UInt64>]
  /// The first key the run did not scan, when the budget ended it before the end of
  /// the index.
  public var stoppedAt: UInt64?
  /// Per node: media offsets of the blocks this run verified (with `recordsOffsets`).
  public var verified: [[UInt64]]
  /// Every node's pass is complete.
  public var complete: Bool { next.allSatisfy { $0 == .max } }
}

/// What the runs of a pass found so far, carried into the next run (and in the state
/// file between runs): counters, node classes and findings, bounded.
public struct PassTotals {
  public var stats: WalkStats
  public var nodeClasses: [Set<PathClass>]
  /// The first `PassTotals.maxFindings` findings in detail (the counts cover them all).
  public var findings: [Finding]
  /// Locations already reported (each damaged structure is one finding over the pass),
  /// bounded like `findings`.
  public var seen: Set<Location>
  public static let maxFindings = 1000
  public static let maxSeen = 10_000

  public init(nodes: Int) {
    stats = WalkStats(n: nodes)
    nodeClasses = .init(repeating: [], count: nodes)
    findings = []
    seen = []
  }

  /// The totals after `walker`'s run (which started from these).
  public init(after walker: ClusterWalker) {
    stats = walker.stats
    nodeClasses = walker.nodeClasses
    findings = Array(walker.findings.prefix(Self.maxFindings))
    seen = Set(walker.seenFindingLocations.prefix(Self.maxSeen))
  }

  /// Forgets what the pass found on node `i` (its volume changed: its pass restarts).
  /// Cluster-wide difference counts stay: they are of the keys compared before.
  public mutating func restart(node i: Int, image label: String) {
    stats.blocksChecked[i] = 0
    stats.bytesChecked[i] = 0
    stats.damagedBlocks[i] = 0
    nodeClasses[i] = []
    findings.removeAll { $0.location.image == label }
    seen = seen.filter { $0.image != label }
  }
}

extension ScanWindow {
  /// Sets up the scanners of one run.
  func configure(_ scanners: [NodeScanner]) {
    for (i, s) in scanners.enumerated() {
      s.from = from[i]
      s.frontier = frontier[i]
      s.recordsOffsets = recordsOffsets
    }
  }

  /// Where the run got to: `stop` is the first key not scanned (nil: the index ended),
  /// `last[i]` the last key node `i` scanned in this run.
  func outcome(_ group: ClusterGroup, stop: UInt64?, last: [UInt64?], verified: [[UInt64]]) -> ScanOutcome {
    guard let stop else {
      return ScanOutcome(
        next: .init(repeating: .max, count: from.count), frontier: .init(repeating: [], count: from.count), stoppedAt: nil,
        verified: verified)
    }
    var next = from
    var front = frontier
    for (i, node) in group.nodes.enumerated() where from[i] < stop {
      next[i] = stop
      // An index block on the path to `stop` was counted by an earlier run, or by this
      // one when a key at or past its first key was scanned here (its read belongs to
      // the first key scanned below it).
      front[i] = Set(
        Self.indexPath(node, to: stop).compactMap { b in
          frontier[i].contains(b.offset) || (last[i].map { $0 >= max(b.start, from[i]) } ?? false) ? b.offset : nil
        })
    }
    return ScanOutcome(next: next, frontier: front, stoppedAt: stop, verified: verified)
  }

  /// The index blocks a descent to `key` reads on `node` (`KeyRangeIterator.lookup`):
  /// each one's media offset and its first key inside its parent's range. Bounded by
  /// the index depth; an unreadable block ends the path (it is the last one read).
  static func indexPath(_ node: ClusterNode, to key: UInt64) -> [(offset: UInt64, start: UInt64)] {
    var path: [(offset: UInt64, start: UInt64)] = []
    var entries = node.pfs.inode.blockset
    var lo: UInt64 = 0
    var hi = UInt64.max
    while path.count < H2.maxIndirectDepth {
      guard
        let e = entries.first(where: {
          !$0.isEmpty && $0.type == .indirect && max($0.key, lo) <= key && key <= min($0.keyEnd, hi)
        })
      else { break }
      path.append((e.mediaOffset, max(e.key, lo)))
      guard let (children, _) = try? node.volume.checkedBlockrefArray(e, cache: false) else { break }
      lo = max(e.key, lo)
      hi = min(e.keyEnd, hi)
      entries = children
    }
    return path
  }
}
