import Hammer2Format

/// Who votes at the quorum of one analysis: each node's role for the vote and the quorum
/// size. Normally the nodes' own PFS types and `ClusterGroup`'s quorum
/// (docs/resync-semantics.md §5.3–5.4); when an operator trusts one node (resync's choice of
/// focus when no version has a quorum), that node is the only voter, a quorum of one,
/// and the other masters are targets like slaves. The group itself (its nodes' roles, as
/// discovered) is never rewritten.
public struct Voting: Sendable {
  /// Per node index: its role at the vote.
  public let roles: [Role]
  /// max(stored pfs_nmasters, masters present), or 1 when a node is trusted.
  public let configured: Int
  /// configured / 2 + 1.
  public let nquorum: Int
  /// The trusted node's index, nil when the quorum decides.
  public let trusted: Int?

  /// The group's own vote.
  public init(group: ClusterGroup) {
    roles = group.nodes.map(\.role)
    configured = group.configured
    nquorum = group.nquorum
    trusted = nil
  }

  /// The node with pfs_fsid `fsid` as the only voter; refuses an fsid that is not a node.
  public init(group: ClusterGroup, trusting fsid: H2UUID) throws(ClusterError) {
    guard let t = group.nodes.first(where: { $0.pfs.fsid == fsid }) else {
      throw ClusterError(.notANode, image: fsid.description)
    }
    roles = group.nodes.map { n in n.index == t.index ? .master : (n.role == .master ? .slave : n.role) }
    configured = 1
    nquorum = 1
    trusted = t.index
  }

  /// Masters at the vote.
  public var masters: Int { roles.filter { $0 == .master }.count }
}

/// A note of the report, in the order the report prints them.
public enum ClusterNote: Sendable, Equatable, CustomStringConvertible {
  /// About the set or one node (pending transitions, disagreeing pfs_nmasters, too many
  /// nodes), in the engine's words.
  case text(String)
  /// An operator trusts the node with this pfs_fsid (`Voting.trusted`).
  case trusting(fsid: String)

  public var description: String {
    switch self {
    case .text(let s): return s
    case .trusting(let f): return "trusting the node with fsid \(f); the other masters are treated as targets"
    }
  }

  /// The notes of `group` under `voting`.
  static func notes(_ group: ClusterGroup, _ voting: Voting) -> [ClusterNote] {
    var notes = group.nodeNotes.map(ClusterNote.text)
    if let t = voting.trusted { notes.append(.trusting(fsid: group.nodes[t].pfs.fsid.description)) }
    let nodes = group.nodes
    if Set(nodes.map(\.pfs.nmasters)).count > 1 {
      notes.append(
        .text(
          "pfs_nmasters disagree between nodes (\(nodes.map { "\($0.label)=\($0.pfs.nmasters)" }.joined(separator: ", "))); using \(voting.configured)"
        ))
    }
    if nodes.count > H2.maxCluster {
      notes.append(.text("\(nodes.count) nodes share the cluster id; the kernel would use only \(H2.maxCluster)"))
    }
    return notes
  }
}
