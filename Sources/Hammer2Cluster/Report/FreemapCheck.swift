import Hammer2Format

/// `check --freemap`: the freemap of every node's image cross-checked against its tree
/// (`FreemapCrossCheck`: every block of every PFS and snapshot on the image must lie in
/// chunks marked allocated), once per image, and whether a resync would repair what it
/// found (resync repairs the freemap of each image it writes, `Resyncer.apply`).
public struct ClusterFreemapCheck {
  /// One image's result.
  public struct ImageResult {
    /// The first node of the group on the image (an image may hold several).
    public let node: ClusterNode
    public let result: FreemapCrossCheckResult
    /// A resync of this walk writes the image (a target: not the focus, with counted
    /// differences, a role resync writes), and so repairs its freemap.
    public let resyncWrites: Bool
    /// Seconds the cross-check took.
    public let seconds: Double
  }

  public let images: [ImageResult]

  /// Cross-checks every image of `report`'s group (after its walk), with
  /// `memoryBudget` bytes of bitmaps per image (passes over the volume beyond it).
  public init(
    report: ClusterReport, overwriteSoftMasters: Bool, memoryBudget: Int = FreemapCrossCheck.defaultMemoryBudget,
    clock: () -> Double
  ) {
    var seen = Set<String>()
    var out: [ImageResult] = []
    let targets = Set(report.group.nodes.filter { Self.resyncWrites($0, report, overwriteSoftMasters) }.map(\.image))
    for n in report.group.nodes where seen.insert(n.image).inserted {
      let t0 = clock()
      var check = FreemapCrossCheck(volume: n.volume, memoryBudget: memoryBudget)
      // Two threads: the index subtrees of a PFS are walked side by side.
      check.threads = 2
      let r = check.run()
      out.append(ImageResult(node: n, result: r, resyncWrites: targets.contains(n.image), seconds: clock() - t0))
    }
    images = out
  }

  /// Whether resync writes `n` (`Resyncer.targets`: not the focus, differing paths that
  /// count, a master, slave or soft slave, a soft master only when overwritten).
  static func resyncWrites(_ n: ClusterNode, _ r: ClusterReport, _ overwriteSoftMasters: Bool) -> Bool {
    guard let f = r.focus, f.index != n.index, r.stats.nodeDifferences[n.index] > 0 else { return false }
    switch n.role {
    case .master, .slave, .softSlave: return true
    case .softMaster: return overwriteSoftMasters
    default: return false
    }
  }

  /// Referenced blocks marked free on an image no resync writes (the focus, a node in
  /// sync, one resync leaves alone): only a human can repair them (DragonFly's bulkfree
  /// on the mounted file system sets them allocated).
  public var needsHuman: Bool { images.contains { $0.result.unallocatedBlocks > 0 && !$0.resyncWrites } }

  /// Any damage: referenced blocks marked free, or damage in the tree or the freemap.
  public var damaged: Bool { images.contains { $0.result.unallocatedBlocks > 0 || $0.result.otherDamage > 0 } }
}
