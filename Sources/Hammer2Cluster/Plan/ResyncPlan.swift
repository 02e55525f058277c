import Hammer2Format

/// One step of a resync on one target node: what to do with one path, and what the walk
/// read for it (so that applying it reads the focus's element straight from its
/// blockref and the node's inode from where the walk found it, without walking either
/// tree again).
public struct PlanAction: Sendable {
  public enum Kind: Sendable, Equatable {
    /// The node has a name the focus lacks (`extra`): remove it and what only it reaches.
    case remove
    /// The node lacks the path (`missing`): create it as a copy of the focus's element.
    case create
    /// Another type or shape (`shape-mismatch`): remove the node's, create the focus's.
    case replace
    /// Equal attributes and content under other tids (`stale`, "tids only"): stamp the
    /// focus's tids on the inode (and on its entries' or blocks' blockrefs), no data.
    case stampTids
    /// The node's copy is another version (`stale`, `ahead`, `split-brain`, `damaged`):
    /// copy the focus's attributes and content onto the node's inode, keeping the data
    /// blocks that already hold the focus's version (`rewriteAll`, for damage: none).
    case copyContent(rewriteAll: Bool)
    /// The PFS root's own difference: the root's cluster-wide fields and tid are copied
    /// at the end of every plan that left nothing for a human; `tidsOnly` counts it as
    /// a stamped path.
    case root(tidsOnly: Bool)
    /// Needs a human (`conflict`, `undecidable`, `in-hole`): left as it is, and the
    /// root keeps its old tid so that the divergence stays visible.
    case leave(PathClass)
  }

  public var kind: Kind
  /// Relative to the PFS root ("." and "/" for the root itself).
  public var path: String
  /// The focus's inode number (or the first node's that has the path).
  public var inum: UInt64
  /// The focus's entry and inode blockref for the path, as the walk read them.
  public var focusEntry: DirEntry?
  public var focusInode: Blockref?
  /// The node's inode blockref for the path, as the walk read it (nil where it lacks it).
  public var nodeInode: Blockref?

  /// Whether applying it reads the focus's element.
  var readsFocus: Bool {
    switch kind {
    case .create, .replace, .stampTids, .copyContent: return path != "." && path != "/"
    default: return false
    }
  }
}

/// One node a resync writes, with its actions in walk order.
public struct PlanTarget {
  public let node: ClusterNode
  /// Its state in the report.
  public let state: NodeState
  public let actions: [PlanAction]
  /// What its commit would allocate against what its freemap can hand out.
  public let space: SpaceNeed
}

/// Why resync refuses to write (before writing any node).
public struct ResyncRefusal: Error, CustomStringConvertible, Sendable {
  public enum Kind: Sendable, Equatable {
    /// No version has a quorum: someone must choose the node to trust.
    case noQuorum(nquorum: Int)
    /// The target is ahead or split-brain and no snapshot keeps its content.
    case rollbackWithoutSnapshot(state: NodeState)
  }
  public var kind: Kind
  /// The node's image (nil: the cluster as a whole).
  public var image: String?
  /// Whether it is exit 2 (needs a human); every refusal is, today.
  public var needsHuman: Bool { true }

  /// The engine's wording; the CLI adds the option that lifts the refusal.
  public var description: String {
    switch kind {
    case .noQuorum(let q): return "no version has a quorum of \(q) masters: nothing written"
    case .rollbackWithoutSnapshot(let s):
      return "\(image ?? "?") is \(s.rawValue): rolling it back without a snapshot needs an explicit permission"
    }
  }
}

/// What a resync will do, built once from a `ClusterReport`: per target node (not the
/// focus, not in sync, not a soft master unless asked, never a cache or dummy), the
/// actions in walk order, each with the blockrefs the walk read; the refusal, if any;
/// and each target's space need. `resync --dry-run` renders it (in the report's words)
/// and `resync` applies exactly it (`Resyncer.apply(_:)`).
///
/// Memory bound: one `PlanAction` per (target, differing path whose class counts on that
/// target): the path string, an inode number, at most three blockrefs and one directory
/// entry, so O(targets × differing paths) fixed-size records plus the path names. It
/// never holds file data or inode contents: apply reads those from the blockrefs.
public struct ResyncPlan {
  public let group: ClusterGroup
  /// The node copied from (nil: no version has a quorum; nothing can be planned).
  public let focus: ClusterNode?
  public let options: ResyncOptions
  public let targets: [PlanTarget]
  /// Why nothing may be written, found before any node is: no quorum, or a rollback
  /// without a snapshot.
  public let refusal: ResyncRefusal?
  /// The report's verdict.
  public let reportExit: ExitClass

  /// The plan of `report` under `options` (its snapshot setting sizes the space needs).
  public init(report: ClusterReport, options: ResyncOptions) {
    group = report.group
    focus = report.focus
    self.options = options
    reportExit = report.exit
    guard let focus = report.focus else {
      targets = []
      refusal = ResyncRefusal(kind: .noQuorum(nquorum: report.voting.nquorum), image: nil)
      return
    }
    let space = report.spaceNeeds(snapshot: options.snapshot)
    let nodes = Resyncer(group: group, focus: focus, options: options).targets(states: report.nodeStates, differences: report.differences)
    targets = nodes.map { n in
      PlanTarget(node: n, state: report.nodeStates[n.index], actions: Self.actions(for: n.index, report.differences), space: space[n.index])
    }
    refusal =
      targets.lazy.compactMap { t in
        (t.state == .ahead || t.state == .splitBrain) && !options.snapshot && !options.allowRollback
          ? ResyncRefusal(kind: .rollbackWithoutSnapshot(state: t.state), image: t.node.image) : nil
      }.first
  }

  /// Node `i`'s actions for `differences`, in their order. Paths below a name the plan
  /// removes are left out (the removal takes them), and so are a soft master's own
  /// changes (they are only written when the soft master is a target by choice, and then
  /// the walk classified them like any other node's).
  static func actions(for i: Int, _ differences: [Difference]) -> [PlanAction] {
    var out: [PlanAction] = []
    var removed: [String] = []
    func under(_ p: String) -> Bool { removed.contains { p == $0 || p.hasPrefix($0 + "/") } }
    for d in differences {
      let cls = d.classes[i]
      guard cls != .inSync, cls != .softLocal, !under(d.path) else { continue }
      let tidsOnly = d.tidsOnly.indices.contains(i) && d.tidsOnly[i]
      let kind: PlanAction.Kind
      switch cls {
      case .conflict, .undecidable, .inHole: kind = .leave(cls)
      case _ where d.path == "." || d.path == "/": kind = .root(tidsOnly: tidsOnly)
      case .extra:
        kind = .remove
        removed.append(d.path)
      case .missing: kind = .create
      case .shapeMismatch: kind = .replace
      case .stale where tidsOnly: kind = .stampTids
      case .stale, .ahead, .splitBrain, .damaged: kind = .copyContent(rewriteAll: cls == .damaged)
      default: continue
      }
      out.append(
        PlanAction(
          kind: kind, path: d.path, inum: d.inum, focusEntry: d.focusEntry, focusInode: d.focusInode,
          nodeInode: d.nodeInodes.indices.contains(i) ? d.nodeInodes[i] : nil))
    }
    return out
  }

  /// Nothing to write: every node resync may write is in sync.
  public var isEmpty: Bool { targets.isEmpty }

  /// The verdict when the plan is empty: the report's, except that differences on nodes
  /// resync may not write (soft masters' own changes) are not findings of a resync.
  public var exitWhenEmpty: ExitClass { reportExit == .findings ? .ok : reportExit }

  /// The first target that cannot hold what its commit would allocate: the no-space
  /// error (`IMAGE: no space: N bytes needed for ..., M bytes free`), nil when all fit.
  public var spaceProblem: FormatError? {
    guard let t = targets.first(where: { !$0.space.fits }) else { return nil }
    return SpaceEstimate.noSpace(t.space)
  }
}
