/// The 256-byte inode meta (`struct hammer2_inode_meta`, hammer2_disk.h), every field
/// kept, reserved ones included.
public struct InodeMeta: Equatable, Hashable, Sendable {
  /// `sizeof(hammer2_inode_meta_t)`.
  public static let byteCount = 256

  /// 0x000 `version`.
  public var version: UInt16
  /// 0x002 `reserved02`.
  public var reserved02: UInt8
  /// 0x003 `pfs_subtype` (0 NONE, 1 SNAPSHOT, 2 AUTOSNAP).
  public var pfsSubtype: UInt8
  /// 0x004 `uflags` (chflags).
  public var uflags: UInt32
  /// 0x008 `rmajor`.
  public var rmajor: UInt32
  /// 0x00C `rminor`.
  public var rminor: UInt32
  /// 0x010 `ctime` (µs).
  public var ctime: UInt64
  /// 0x018 `mtime` (µs).
  public var mtime: UInt64
  /// 0x020 `atime` (µs).
  public var atime: UInt64
  /// 0x028 `btime` (µs).
  public var btime: UInt64
  /// 0x030 `uid` (a uuid; unix uid in bytes 10..13).
  public var uid: RawUUID
  /// 0x040 `gid`.
  public var gid: RawUUID
  /// 0x050 `type` (`HAMMER2_OBJTYPE_*`), raw.
  public var typeRaw: UInt8
  /// 0x051 `op_flags`.
  public var opFlags: UInt8
  /// 0x052 `cap_flags`.
  public var capFlags: UInt16
  /// 0x054 `mode`: permission bits only.
  public var mode: UInt32
  /// 0x058 `inum`.
  public var inum: UInt64
  /// 0x060 `size`.
  public var size: UInt64
  /// 0x068 `nlinks`.
  public var nlinks: UInt64
  /// 0x070 `iparent`.
  public var iparent: UInt64
  /// 0x078 `name_key`.
  public var nameKey: UInt64
  /// 0x080 `name_len`.
  public var nameLen: UInt16
  /// 0x082 `ncopies`.
  public var ncopies: UInt8
  /// 0x083 `comp_algo`: low nibble method, high nibble level.
  public var compAlgo: UInt8
  /// 0x084 `unused84`.
  public var unused84: UInt8
  /// 0x085 `check_algo`.
  public var checkAlgo: UInt8
  /// 0x086 `pfs_nmasters`.
  public var pfsNmasters: UInt8
  /// 0x087 `pfs_type`: low nibble type, high nibble transition target.
  public var pfsTypeRaw: UInt8
  /// 0x088 `pfs_inum`.
  public var pfsInum: UInt64
  /// 0x090 `pfs_clid`.
  public var pfsClid: H2UUID
  /// 0x0A0 `pfs_fsid`.
  public var pfsFsid: H2UUID
  /// 0x0B0 `data_quota`.
  public var dataQuota: UInt64
  /// 0x0B8 `unusedB8`.
  public var unusedB8: UInt64
  /// 0x0C0 `inode_quota`.
  public var inodeQuota: UInt64
  /// 0x0C8 `unusedC8`.
  public var unusedC8: UInt64
  /// 0x0D0 `pfs_lsnap_tid`.
  public var pfsLsnapTid: UInt64
  /// 0x0D8 `reservedD8`.
  public var reservedD8: UInt64
  /// 0x0E0 `decrypt_check`.
  public var decryptCheck: UInt64
  /// 0x0E8 `reservedE0[3]`: its three words (inline: no array per decode).
  public var reservedE8: UInt64
  public var reservedF0: UInt64
  public var reservedF8: UInt64

  /// Decodes the meta at `offset` of `b` (256 bytes available).
  public init(_ b: [UInt8], at o: Int) {
    version = b.u16(o + 0x000)
    reserved02 = b.u8(o + 0x002)
    pfsSubtype = b.u8(o + 0x003)
    uflags = b.u32(o + 0x004)
    rmajor = b.u32(o + 0x008)
    rminor = b.u32(o + 0x00C)
    ctime = b.u64(o + 0x010)
    mtime = b.u64(o + 0x018)
    atime = b.u64(o + 0x020)
    btime = b.u64(o + 0x028)
    uid = RawUUID(b, at: o + 0x030)
    gid = RawUUID(b, at: o + 0x040)
    typeRaw = b.u8(o + 0x050)
    opFlags = b.u8(o + 0x051)
    capFlags = b.u16(o + 0x052)
    mode = b.u32(o + 0x054)
    inum = b.u64(o + 0x058)
    size = b.u64(o + 0x060)
    nlinks = b.u64(o + 0x068)
    iparent = b.u64(o + 0x070)
    nameKey = b.u64(o + 0x078)
    nameLen = b.u16(o + 0x080)
    ncopies = b.u8(o + 0x082)
    compAlgo = b.u8(o + 0x083)
    unused84 = b.u8(o + 0x084)
    checkAlgo = b.u8(o + 0x085)
    pfsNmasters = b.u8(o + 0x086)
    pfsTypeRaw = b.u8(o + 0x087)
    pfsInum = b.u64(o + 0x088)
    pfsClid = H2UUID(b, at: o + 0x090)
    pfsFsid = H2UUID(b, at: o + 0x0A0)
    dataQuota = b.u64(o + 0x0B0)
    unusedB8 = b.u64(o + 0x0B8)
    inodeQuota = b.u64(o + 0x0C0)
    unusedC8 = b.u64(o + 0x0C8)
    pfsLsnapTid = b.u64(o + 0x0D0)
    reservedD8 = b.u64(o + 0x0D8)
    decryptCheck = b.u64(o + 0x0E0)
    reservedE8 = b.u64(o + 0x0E8)
    reservedF0 = b.u64(o + 0x0F0)
    reservedF8 = b.u64(o + 0x0F8)
  }

  /// Writes the 256 bytes at `o` of `b`.
  public func encode(into b: inout [UInt8], at o: Int) {
    b.put(version, at: o + 0x000)
    b.put(reserved02, at: o + 0x002)
    b.put(pfsSubtype, at: o + 0x003)
    b.put(uflags, at: o + 0x004)
    b.put(rmajor, at: o + 0x008)
    b.put(rminor, at: o + 0x00C)
    b.put(ctime, at: o + 0x010)
    b.put(mtime, at: o + 0x018)
    b.put(atime, at: o + 0x020)
    b.put(btime, at: o + 0x028)
    uid.encode(into: &b, at: o + 0x030)
    gid.encode(into: &b, at: o + 0x040)
    b.put(typeRaw, at: o + 0x050)
    b.put(opFlags, at: o + 0x051)
    b.put(capFlags, at: o + 0x052)
    b.put(mode, at: o + 0x054)
    b.put(inum, at: o + 0x058)
    b.put(size, at: o + 0x060)
    b.put(nlinks, at: o + 0x068)
    b.put(iparent, at: o + 0x070)
    b.put(nameKey, at: o + 0x078)
    b.put(nameLen, at: o + 0x080)
    b.put(ncopies, at: o + 0x082)
    b.put(compAlgo, at: o + 0x083)
    b.put(unused84, at: o + 0x084)
    b.put(checkAlgo, at: o + 0x085)
    b.put(pfsNmasters, at: o + 0x086)
    b.put(pfsTypeRaw, at: o + 0x087)
    b.put(pfsInum, at: o + 0x088)
    pfsClid.encode(into: &b, at: o + 0x090)
    pfsFsid.encode(into: &b, at: o + 0x0A0)
    b.put(dataQuota, at: o + 0x0B0)
    b.put(unusedB8, at: o + 0x0B8)
    b.put(inodeQuota, at: o + 0x0C0)
    b.put(unusedC8, at: o + 0x0C8)
    b.put(pfsLsnapTid, at: o + 0x0D0)
    b.put(reservedD8, at: o + 0x0D8)
    b.put(decryptCheck, at: o + 0x0E0)
    b.put(reservedE8, at: o + 0x0E8)
    b.put(reservedF0, at: o + 0x0F0)
    b.put(reservedF8, at: o + 0x0F8)
  }

  /// The object type, if known.
  public var type: ObjectType? { ObjectType(rawValue: typeRaw) }
  /// The PFS type in effect (low nibble), if known.
  public var pfsType: PFSType? { PFSType(rawValue: pfsTypeRaw & 0x0F) }
  /// True when the data is embedded in the inode (`HAMMER2_OPFLAG_DIRECTDATA`).
  public var isDirectData: Bool { opFlags & OpFlags.directData != 0 }
  /// The unix uid (bytes 10..13 of the uid uuid, `hammer2_guid_to_uuid`).
  public var unixUid: UInt32 { uid.u32(10) }
  /// The unix gid.
  public var unixGid: UInt32 { gid.u32(10) }
}

/// A 1024-byte inode (`struct hammer2_inode_data`): meta, filename, and the union `u`
/// holding either a blockset or up to 512 bytes of direct data.
public struct InodeData: Equatable, Hashable, Sendable {
  /// `HAMMER2_INODE_BYTES`.
  public static let byteCount = 1024

  /// 0x000 `meta`.
  public var meta: InodeMeta
  /// The 1024 bytes as read; bytes 0x100... are the filename and `u` (bytes 0..<0x100
  /// are the meta as read, superseded by `meta`). The block read is kept as it is, so a
  /// decode allocates nothing beyond it.
  private var raw: [UInt8]

  /// Decodes 1024 bytes.
  public init(_ b: [UInt8]) {
    precondition(b.count >= InodeData.byteCount) // Safe: inode blocks are read as 1 KiB.
    meta = InodeMeta(b, at: 0)
    raw = b.count == InodeData.byteCount ? b : Array(b[0..<InodeData.byteCount])
  }

  /// 0x100 `filename[256]`, all bytes kept.
  public var filenameArea: [UInt8] {
    get { Array(raw[0x100..<0x200]) }
    set {
      precondition(newValue.count == 256, "filename area of \(newValue.count) bytes")
      raw.replaceSubrange(0x100..<0x200, with: newValue)
    }
  }

  /// 0x200 `u`: 512 bytes, a blockset or direct data.
  public var u: [UInt8] {
    get { Array(raw[0x200..<0x400]) }
    set {
      precondition(newValue.count == 512, "inode union of \(newValue.count) bytes")
      raw.replaceSubrange(0x200..<0x400, with: newValue)
    }
  }

  /// Encodes 1024 bytes.
  public func encode() -> [UInt8] {
    var b = raw
    meta.encode(into: &b, at: 0)
    return b
  }

  public static func == (a: InodeData, b: InodeData) -> Bool {
    a.meta == b.meta && a.raw[0x100...] == b.raw[0x100...]
  }

  public func hash(into h: inout Hasher) {
    h.combine(meta)
    raw.withUnsafeBytes { h.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[0x100...])) }
  }

  /// The filename bytes (`name_len` of them, clamped to the 256-byte area).
  public var filename: [UInt8] { Array(raw[0x100..<0x100 + min(Int(meta.nameLen), 256)]) }
  /// The filename as text (lossy for invalid UTF-8).
  public var filenameString: String { String(decoding: raw[0x100..<0x100 + min(Int(meta.nameLen), 256)], as: UTF8.self) }
  /// The blockset in `u` (meaningless for DIRECTDATA inodes).
  public var blockset: [Blockref] { (0..<4).map { Blockref(raw, at: 0x200 + 128 * $0) } }
  /// The direct data bytes (up to `size`, at most 512).
  public var directData: [UInt8] { Array(raw[0x200..<0x200 + Int(min(meta.size, 512))]) }
}
