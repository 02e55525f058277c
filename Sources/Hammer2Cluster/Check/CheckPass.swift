import Foundation
import Hammer2Format

/// One run of a resumable check pass (`check --time-budget`, `--state`): the window it
/// scans, made from the state the previous run left, and what to say about it.
/// The library only decodes and builds states; the CLI reads and writes the file.
public struct CheckPass {
  /// The window for `AnalysisOptions.window`.
  public var window: ScanWindow
  /// When the pass's first run started.
  public let passStarted: Date
  /// Runs of this pass, this one included.
  public let runs: Int
  /// Why the state given was not used (a new pass starts), nil when it was used or none
  /// was given.
  public let rejected: StateRejection?
  /// Node indices whose volume changed since the previous run: their pass restarted.
  public let restarted: [Int]
  /// Bytes the earlier runs of the pass verified, over all nodes.
  public let priorBytes: UInt64

  /// Continues the pass `state` describes on `group`, or starts a new one (no state, a
  /// state that does not match, or a complete pass). `now` is the start of this run.
  public init(_ group: ClusterGroup, state data: Data?, now: Date, shouldStop: @escaping () -> Bool) {
    let n = group.nodes.count
    window = ScanWindow(nodes: n, shouldStop: shouldStop)
    var rejection: StateRejection?
    var restart: [Int] = []
    var resumed: PassState?
    if let data {
      switch PassState.decode(data) {
      case .failure(let why): rejection = why
      case .success(let s):
        if let why = Self.mismatch(s, group) { rejection = why } else if !s.complete { resumed = s }
      }
    }
    rejected = rejection
    guard let s = resumed else {
      passStarted = now
      runs = 1
      restarted = []
      priorBytes = 0
      window.prior = PassTotals(nodes: n)
      return
    }
    // Safe: `mismatch` checked that every node is in the state exactly once.
    let order = group.nodes.map { node in s.nodes.firstIndex { $0.pfs_fsid == node.pfs.inode.meta.pfsFsid.description }! }
    var totals = s.totals(order: order)
    for (i, node) in group.nodes.enumerated() {
      let stored = s.nodes[order[i]]
      let h = node.volume.header
      if stored.fsid != h.fsid.description || stored.label != node.label || stored.mirror_tid != h.mirrorTid {
        restart.append(i)
        totals.restart(node: i, image: node.volume.label)
        continue
      }
      window.from[i] = stored.next
      window.frontier[i] = Set(stored.frontier)
    }
    window.prior = totals
    passStarted = s.passStarted
    runs = s.runs + 1
    restarted = restart
    priorBytes = totals.stats.bytesChecked.reduce(0, +)
  }

  /// Why `s` is not a state of `group`'s pass, nil when it is.
  static func mismatch(_ s: PassState, _ group: ClusterGroup) -> StateRejection? {
    let pfs = group.nodes.first?.pfs.name ?? ""
    guard s.clid == group.clid.description, s.pfs == pfs else { return .otherCluster(clid: s.clid, pfs: s.pfs) }
    let mine = group.nodes.map { $0.pfs.inode.meta.pfsFsid.description }.sorted()
    guard s.nodes.map(\.pfs_fsid).sorted() == mine, Set(mine).count == mine.count else { return .otherNodes }
    return nil
  }

  /// The state file's name for `group`: its clid and PFS name (characters other than
  /// letters, digits, '-', '_' and '.' become '_').
  public static func stateName(_ group: ClusterGroup) -> String {
    func safe(_ c: Character) -> Character {
      let kept: Bool = c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".")
      return kept ? c : "_"
    }
    let pfs = String((group.nodes.first?.pfs.name ?? "").map(safe))
    return "\(group.clid.description)-\(pfs).state"
  }
}
