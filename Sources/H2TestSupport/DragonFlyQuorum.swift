import Foundation
import Hammer2Format

/// The quorum as DragonFly's `hammer2_cluster_check` computes it from the nodes' PFS
/// roots, independently of the cluster engine: only nodes whose raw `pfs_type` byte is
/// MASTER vote; nmasters = max(stored pfs_nmasters, masters present); nquorum =
/// nmasters / 2 + 1; the candidate is the highest PFS-root blockref modify_tid below the
/// previous candidate, and a master votes for it only when its own root modify_tid is
/// EQUAL to it; the first candidate reaching nquorum wins. Tests use it to prove that
/// after a resync DragonFly counts every resynced master.
public struct DragonFlyQuorum: Sendable, CustomStringConvertible {
  /// The winning PFS-root modify_tid, nil without a quorum.
  public var tid: UInt64?
  public var nquorum: Int
  /// Image -> its master's root modify_tid (masters only).
  public var masters: [String: UInt64]
  /// The masters counted at `tid`.
  public var voters: Set<String> { Set(masters.filter { $0.value == tid }.keys) }

  public var description: String {
    "quorum tid \(tid.map(String.init) ?? "none") of \(nquorum): "
      + masters.sorted { $0.key < $1.key }.map { "\(($0.key as NSString).lastPathComponent)=\($0.value)" }.joined(separator: " ")
  }

  /// Reads the PFS of cluster `clid` (not a snapshot) on every image.
  public static func compute(images: [String], clid: H2UUID) throws -> DragonFlyQuorum {
    var masters: [String: UInt64] = [:]
    var stored = 0
    for image in images {
      let volume = try Volume.open(path: image)
      var findings: [Finding] = []
      for pfs in try volume.pfsList(findings: &findings) where pfs.clid == clid && pfs.inode.meta.pfsSubtype == 0 {
        stored = max(stored, Int(pfs.inode.meta.pfsNmasters))
        // The raw byte, as the kernel compares it: a pending transition does not vote.
        if pfs.inode.meta.pfsTypeRaw == PFSType.master.rawValue { masters[image] = pfs.bref.modifyTid }
      }
    }
    let nquorum = max(stored, masters.count) / 2 + 1
    var winner: UInt64?
    for candidate in Set(masters.values).sorted(by: >) where masters.values.filter({ $0 == candidate }).count >= nquorum {
      winner = candidate
      break
    }
    return DragonFlyQuorum(tid: winner, nquorum: nquorum, masters: masters)
  }
}
