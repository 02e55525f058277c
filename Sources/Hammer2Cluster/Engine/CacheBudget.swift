/// The block-cache budget of one run (diff, check, resync), validated once and split by
/// one rule. Memory is bounded by it, not by image size.
///
/// The rule: the budget is shared equally by the nodes (each node's reader volume holds
/// its share; the transaction that writes a node reuses that share). A walk thread beyond
/// the first opens every node again with half a node's share (at least `minimumShare`):
/// the subtrees it walks are disjoint from the first thread's. Streaming readers (the
/// index scanners and the read-ahead threads) read each block once, so they get
/// `minimumShare` whatever the budget.
public struct CacheBudget: Sendable, Equatable {
  /// The accepted range, in MiB.
  public static let mebibyteRange = 1...65536
  /// The smallest share any reader gets (1 MiB), and the streaming readers' share.
  public static let minimumShare = 1 << 20

  /// The whole budget in bytes.
  public let bytes: Int

  /// Refuses a budget outside `mebibyteRange` (nothing else converts MiB to bytes).
  public init(mebibytes: Int) throws(ClusterError) {
    guard Self.mebibyteRange.contains(mebibytes) else {
      throw ClusterError(.cacheBudgetOutOfRange(mebibytes: mebibytes, range: Self.mebibyteRange), image: nil)
    }
    bytes = mebibytes << 20
  }

  /// The default budget (64 MiB).
  public static let standard = CacheBudget(uncheckedBytes: 64 << 20)

  private init(uncheckedBytes: Int) { bytes = uncheckedBytes }

  /// One node's share when `nodes` nodes share the budget.
  public func nodeShare(nodes: Int) -> Int { bytes / max(1, nodes) }

  /// An extra walk thread's share of one node, given that node's share.
  static func walkThreadShare(ofNode share: Int) -> Int { max(minimumShare, share / 2) }

  /// A streaming reader's share (index scanner, read-ahead).
  static let streamingShare = minimumShare
}
