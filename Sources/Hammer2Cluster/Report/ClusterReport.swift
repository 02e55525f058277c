import Hammer2Format

/// The verdict of diff, check and resync (the CLI's exit codes 0 to 2; 3, "could not
/// run", is the CLI's own).
public enum ExitClass: Int32, Sendable, Comparable {
  /// Every node in sync and undamaged (soft masters' own changes aside).
  case ok = 0
  /// Differences or damage that a resync can repair.
  case findings = 1
  /// Needs a human: no quorum, conflict, unrepairable damage.
  case needsHuman = 2

  public static func < (a: ExitClass, b: ExitClass) -> Bool { a.rawValue < b.rawValue }
}

/// What an analysis walks and how.
public struct AnalysisOptions {
  public var mode: WalkMode = .fast
  /// Threads for the directory walk (1: the calling thread only).
  public var threads = 2
  /// Classify soft masters' copies like any other node's (resync will write them).
  public var overwriteSoftMasters = false
  /// Keep every difference in the report (check without JSON only counts them).
  public var keepDifferences = true
  /// Trust the node with this pfs_fsid as the only voter (resync's operator choice of
  /// focus): the walk resolves against it, in the same single walk.
  public var trusted: H2UUID?
  /// Called after each block read with its size (a throttle; the walk then runs on the
  /// calling thread).
  public var onBytes: ((UInt64) -> Void)?
  /// Observes the index scan's reads with their sizes, on the calling thread (a progress
  /// display): unlike `onBytes` it changes nothing in how the walk runs.
  public var onScanBytes: ((UInt64) -> Void)?
  /// Called with each difference, in walk order, as the walk finds it.
  public var onDifference: ((Difference) -> Void)?
  /// One run of a resumable check's pass (deep mode; `CheckPass`): nil walks everything.
  public var window: ScanWindow?
  public init(mode: WalkMode = .fast) { self.mode = mode }
}

/// One analysis of a cluster: the engine's whole answer to "how do the nodes compare
/// with the focus". diff, check and resync render it; `ResyncPlan` is built from it.
/// Its size is that of its differences (one row per differing path) and per-node
/// counters; the walk behind it streams.
public struct ClusterReport {
  public let group: ClusterGroup
  public let mode: WalkMode
  /// Who voted (the group's quorum or one trusted node).
  public let voting: Voting
  /// The decision at the PFS root: versions and the focus (nil: no version has a quorum).
  public let root: RootDecision
  /// Per node index: its one state (what text, JSON and metrics print).
  public let nodeStates: [NodeState]
  /// The differing paths in walk order (empty when not kept).
  public let differences: [Difference]
  public let stats: WalkStats
  /// Damage findings, each damaged structure once.
  public let findings: [Finding]
  /// Notes, in report order.
  public let notes: [ClusterNote]
  /// The verdict.
  public let exit: ExitClass
  /// Inode numbers the index scan met (all nodes together): the space estimate's scale.
  public let scannedIndexEntries: Int
  /// With a `ScanWindow`: where the run got to, and the pass's totals so far (which
  /// `stats`, `findings` and `exit` already are).
  public let scan: (outcome: ScanOutcome, totals: PassTotals)?

  /// Walks every node of `group` together (one walk) and decides.
  public static func analyze(_ group: ClusterGroup, _ options: AnalysisOptions) throws(ClusterError) -> ClusterReport {
    var voting = Voting(group: group)
    if let fsid = options.trusted { voting = try Voting(group: group, trusting: fsid) }
    let walker = ClusterWalker(group: group, mode: options.mode, voting: voting)
    walker.threads = options.threads
    walker.overwriteSoftMasters = options.overwriteSoftMasters
    walker.onBytes = options.onBytes
    walker.onScanBytes = options.onScanBytes
    walker.window = options.window
    var diffs: [Difference] = []
    walker.run { d in
      options.onDifference?(d)
      if options.keepDifferences { diffs.append(d) }
    }
    return ClusterReport(walker: walker, differences: diffs)
  }

  /// The report of a walk that has run (`ClusterWalker.run`).
  public init(walker w: ClusterWalker, differences: [Difference]) {
    group = w.group
    mode = w.mode
    voting = w.voting
    root = w.root
    nodeStates = w.nodeStates
    self.differences = differences
    stats = w.stats
    findings = w.findings
    notes = ClusterNote.notes(w.group, w.voting)
    scannedIndexEntries = w.scannedIndexEntries
    scan = w.scanOutcome.map { ($0, PassTotals(after: w)) }
    exit = Self.verdict(w)
  }

  static func verdict(_ w: ClusterWalker) -> ExitClass {
    if w.root.resolution.focus == nil { return w.stats.differences == 0 && w.findings.isEmpty ? .ok : .needsHuman }
    if w.stats.counts.keys.contains(where: { !$0.repairable }) { return .needsHuman }
    // A soft master's own changes never count (damage on it does: it is a finding).
    if w.stats.countedDifferences > 0 || !w.findings.isEmpty { return .findings }
    return .ok
  }

  /// The focus node (the root's winner), nil without a quorum.
  public var focus: ClusterNode? { root.resolution.focus.map { group.nodes[$0] } }

  /// The soft masters whose own local changes the walk found, with how many paths.
  public var softMastersWithLocalChanges: [(node: ClusterNode, paths: Int)] {
    group.nodes.compactMap { n in stats.nodeSoftLocal[n.index] > 0 ? (n, stats.nodeSoftLocal[n.index]) : nil }
  }

  /// Per node: what a resync of this report would allocate there and what the node can
  /// hold. The focus, and every node when there is no focus (nothing can be planned),
  /// need 0.
  public func spaceNeeds(snapshot: Bool) -> [SpaceNeed] {
    group.nodes.map { n in
      let i = n.index
      let planned = focus != nil && focus?.index != i
      let needed =
        !planned
        ? 0
        : SpaceEstimate.commitBytes(
          paths: stats.nodeDifferences[i], fileMedia: stats.mediaBytesToWrite[i],
          indexEntries: scannedIndexEntries, snapshot: snapshot)
      return SpaceNeed(image: n.image, needed: needed, free: n.volume.header.allocatableBytes)
    }
  }
}
