/// One PFS found under the super-root: its root inode and identity.
public struct PFSInfo: Sendable {
  /// The PFS root's blockref in the super-root tree.
  public var bref: Blockref
  /// The PFS root inode.
  public var inode: InodeData
  /// The label (`filename`).
  public var name: String { inode.filenameString }
  /// `pfs_type` low nibble, if known.
  public var type: PFSType? { inode.meta.pfsType }
  /// `pfs_type` as printed: the type name, or the raw byte when unknown or in transition.
  public var typeName: String {
    let raw = inode.meta.pfsTypeRaw
    guard let t = type else { return "UNKNOWN(0x\(hex(UInt64(raw), width: 2)))" }
    return raw >> 4 == 0 ? t.name : "\(t.name)->\(PFSType(rawValue: raw >> 4)?.name ?? "0x\(hex(UInt64(raw >> 4)))")"
  }
  /// `pfs_subtype` as printed.
  public var subtypeName: String {
    switch inode.meta.pfsSubtype {
    case 0: "NONE"
    case 1: "SNAPSHOT"
    case 2: "AUTOSNAP"
    default: "UNKNOWN(\(inode.meta.pfsSubtype))"
    }
  }
  /// `pfs_clid`: the cluster id.
  public var clid: H2UUID { inode.meta.pfsClid }
  /// `pfs_fsid`: this copy's id.
  public var fsid: H2UUID { inode.meta.pfsFsid }
  /// `pfs_nmasters`.
  public var nmasters: UInt8 { inode.meta.pfsNmasters }
  /// The root blockref's modify_tid (what the quorum compares).
  public var rootModifyTid: UInt64 { bref.modifyTid }
}

extension Volume {
  /// Reads the super-root inode. Failing here means nothing on the image can be found,
  /// so it throws.
  public func superRoot() throws(FormatError) -> InodeData {
    let bref = superRootBlockref
    guard bref.type == .inode else {
      throw FormatError(
        .badTree(.superRootType(bref.typeRaw)),
        at: Location(
          image: label, offset: UInt64(headerSlot) * H2.zoneBytes64 + 0x200, structure: "volume header #\(headerSlot) sroot_blockset[0]"))
    }
    let ino: InodeData
    do {
      ino = try inode(bref)
    } catch {
      var e = error
      e.location = location(of: bref, "super-root inode (sroot_blockset[0])")
      throw e
    }
    guard !ino.meta.isDirectData else {
      throw FormatError(.badTree(.superRootDirectData), at: location(of: bref, "super-root inode"))
    }
    return ino
  }

  /// Every PFS under the super-root, in key order. An unreadable PFS root or an
  /// unreadable part of the super-root tree is a finding; the rest is still listed.
  public func pfsList(findings: inout [Finding]) throws(FormatError) -> [PFSInfo] {
    let sroot = try superRoot()
    var it = KeyRangeIterator(volume: self, array: sroot.blockset, location: location(of: superRootBlockref, "super-root inode"))
    var out: [PFSInfo] = []
    var element = it.lookup(0, .max)
    while let el = element {
      switch el {
      case .leaf(let bref):
        if bref.type == .inode {
          do {
            let ino = try inode(bref)
            out.append(PFSInfo(bref: bref, inode: ino))
          } catch {
            findings.append(Finding(error: error, fallback: location(of: bref)))
          }
        } else {
          findings.append(Finding(.warning, at: location(of: bref), "\(bref.summary) in the super-root is not a PFS inode; ignored"))
        }
      case .hole(let b, let e, let err):
        findings.append(Finding(error: err, fallback: location(of: superRootBlockref), path: "super-root keys 0x\(hex(b))-0x\(hex(e))"))
      }
      element = it.next()
    }
    findings.append(contentsOf: it.findings)
    return out
  }
}
