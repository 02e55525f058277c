import Hammer2Format

/// One PFS instance of the cluster on one image.
public struct ClusterNode {
  /// Position in the group (stable, in command-line order).
  public let index: Int
  /// The image path exactly as given.
  public let image: String
  public let volume: Volume
  public let pfs: PFSInfo
  public let role: Role
  public let reader: PFSReader
  /// Short label for text reports: the image's file name (a multi-volume node's: its
  /// volumes' file names joined by ':').
  public var label: String { ImagePath.shortName(image) }
}

/// The nodes of one PFS cluster across images, with the quorum parameters
/// (docs/resync-semantics.md §5.3–5.4).
public struct ClusterGroup {
  public let clid: H2UUID
  public let nodes: [ClusterNode]
  /// Images (or PFSs) that are not nodes, with the reason.
  public let excluded: [(image: String, reason: String)]
  /// max(stored pfs_nmasters, masters present).
  public let configured: Int
  /// configured / 2 + 1.
  public let nquorum: Int
  /// Notes for the report about single nodes (pending type transitions), in image order.
  public let nodeNotes: [String]
  /// How the nodes' devices are opened (every later open of a node uses it).
  public let opener: DeviceOpener

  /// Opens every image read-only and groups the PFSs by `pfs_clid`. Chooses the cluster
  /// by `clid`, else by PFS `name`, else the cluster found on the most images (all of
  /// them, normally). Refuses duplicated fsids.
  /// Each node's volume gets its share of `cacheBudget` (`CacheBudget.nodeShare`).
  public static func discover(
    images: [String], name: String?, clid wanted: H2UUID?,
    cacheBudget: CacheBudget = .standard,
    opener: DeviceOpener = LocalDeviceOpener()
  ) throws -> ClusterGroup {
    let share = cacheBudget.nodeShare(nodes: images.count)
    var all: [(image: String, volume: Volume, pfs: [PFSInfo])] = []
    for image in images {
      let v = try Volume.open(path: image, opener: opener, cacheBudget: share)
      var findings: [Finding] = []
      let list = try v.pfsList(findings: &findings)
      if let f = findings.first(where: { $0.severity == .damage }) {
        throw ClusterError(.damagedSuperRoot(finding: f.description), image: image)
      }
      all.append((image, v, list))
    }
    let clid: H2UUID
    if let wanted {
      clid = wanted
    } else {
      var count: [H2UUID: Set<String>] = [:]
      for (image, _, list) in all {
        for p in list where p.inode.meta.pfsSubtype == 0 && p.name != "LOCAL" && (name == nil || p.name == name) {
          count[p.clid, default: []].insert(image)
        }
      }
      guard let best = count.max(by: { $0.value.count < $1.value.count }) else {
        throw ClusterError(.noPFS(name: name), image: nil)
      }
      if count.filter({ $0.value.count == best.value.count }).count > 1 {
        throw ClusterError(.severalClusters(clids: count.keys.map(\.description).sorted()), image: nil)
      }
      clid = best.key
    }
    var nodes: [ClusterNode] = []
    var excluded: [(String, String)] = []
    var notes: [String] = []
    var fsids: [H2UUID: String] = [:]
    for (image, volume, list) in all {
      let members = list.filter { $0.clid == clid }
      if members.isEmpty {
        excluded.append((image, "no PFS with clid \(clid) (not a node of this cluster)"))
        continue
      }
      for p in members {
        if p.inode.meta.pfsSubtype != 0 {
          excluded.append((image, "PFS \(p.name) is a snapshot sharing the cluster id; not a node"))
          continue
        }
        if let other = fsids[p.fsid] {
          throw ClusterError(.duplicatedFsid(fsid: p.fsid.description, otherImage: other), image: image)
        }
        fsids[p.fsid] = image
        if p.inode.meta.pfsTypeRaw >> 4 != 0 {
          notes.append(
            "\(image): PFS \(p.name) has a pending type transition (pfs_type 0x\(hex(UInt64(p.inode.meta.pfsTypeRaw), width: 2))); its active type is used"
          )
        }
        let role = Role(pfsType: p.inode.meta.pfsTypeRaw)
        nodes.append(
          ClusterNode(
            index: nodes.count, image: image, volume: volume, pfs: p,
            role: role, reader: PFSReader(volume: volume, pfs: p)))
      }
    }
    guard !nodes.isEmpty else { throw ClusterError(.noNode(clid: clid.description), image: nil) }
    let masters = nodes.filter { $0.role == .master }.count
    let q = quorumSize(storedNmasters: nodes.map(\.pfs.nmasters), mastersPresent: masters)
    return ClusterGroup(
      clid: clid, nodes: nodes, excluded: excluded, configured: q.configured, nquorum: q.nquorum, nodeNotes: notes, opener: opener)
  }
}
