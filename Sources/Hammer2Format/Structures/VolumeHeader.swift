/// The 64 KiB volume header (`struct hammer2_volume_data`, hammer2_disk.h).
/// Named fields are decoded at their offsets; `raw` keeps every byte (reserved areas,
/// `copyinfo`) so encoding is lossless.
public struct VolumeHeader: Equatable, Sendable {
  /// `HAMMER2_VOLUME_BYTES`.
  public static let byteCount = 65536

  /// Every byte of the header as read.
  public var raw: [UInt8]

  /// 0x0000 `magic`.
  public var magic: UInt64
  /// 0x0008 `boot_beg`.
  public var bootBeg: UInt64
  /// 0x0010 `boot_end`.
  public var bootEnd: UInt64
  /// 0x0018 `aux_beg`.
  public var auxBeg: UInt64
  /// 0x0020 `aux_end`.
  public var auxEnd: UInt64
  /// 0x0028 `volu_size`: size of this volume.
  public var voluSize: UInt64
  /// 0x0030 `version`.
  public var version: UInt32
  /// 0x0034 `flags`.
  public var flags: UInt32
  /// 0x0038 `copyid`.
  public var copyid: UInt8
  /// 0x0039 `freemap_version`.
  public var freemapVersion: UInt8
  /// 0x003A `peer_type`.
  public var peerType: UInt8
  /// 0x003B `volu_id`.
  public var voluId: UInt8
  /// 0x003C `nvolumes`.
  public var nvolumes: UInt8
  /// 0x0040 `fsid`.
  public var fsid: H2UUID
  /// 0x0050 `fstype`.
  public var fstype: H2UUID
  /// 0x0060 `allocator_size`.
  public var allocatorSize: UInt64
  /// 0x0068 `allocator_free`.
  public var allocatorFree: UInt64
  /// 0x0070 `allocator_beg`.
  public var allocatorBeg: UInt64
  /// 0x0078 `mirror_tid`.
  public var mirrorTid: UInt64
  /// 0x0090 `freemap_tid`.
  public var freemapTid: UInt64
  /// 0x0098 `bulkfree_tid`.
  public var bulkfreeTid: UInt64
  /// 0x00C0 `total_size`.
  public var totalSize: UInt64
  /// 0x01F8 `icrc_sects[6]`: CRC of sector 1 (the sroot blockset).
  public var icrcSect1: UInt32
  /// 0x01FC `icrc_sects[7]`: CRC of sector 0 (bytes 0..0x1FB).
  public var icrcSect0: UInt32
  /// 0x0200 `sroot_blockset`.
  public var srootBlockset: [Blockref]
  /// 0x0800 `freemap_blockset`.
  public var freemapBlockset: [Blockref]
  /// 0x0E00 `volu_loff[64]`.
  public var voluLoff: [UInt64]
  /// 0xFFFC `icrc_volheader`.
  public var icrcVolheader: UInt32

  /// The HAMMER2 fstype UUID `5cbb9ad1-862d-11dc-a94d-01301bb8a9f5`.
  public static let hammer2FSType = H2UUID(string: "5cbb9ad1-862d-11dc-a94d-01301bb8a9f5")!

  /// Decodes a header; needs exactly 65536 bytes.
  public init(_ bytes: [UInt8]) {
    precondition(bytes.count == VolumeHeader.byteCount) // Safe: callers read 64 KiB.
    raw = bytes
    magic = bytes.u64(0x0000)
    bootBeg = bytes.u64(0x0008)
    bootEnd = bytes.u64(0x0010)
    auxBeg = bytes.u64(0x0018)
    auxEnd = bytes.u64(0x0020)
    voluSize = bytes.u64(0x0028)
    version = bytes.u32(0x0030)
    flags = bytes.u32(0x0034)
    copyid = bytes.u8(0x0038)
    freemapVersion = bytes.u8(0x0039)
    peerType = bytes.u8(0x003A)
    voluId = bytes.u8(0x003B)
    nvolumes = bytes.u8(0x003C)
    fsid = H2UUID(bytes, at: 0x0040)
    fstype = H2UUID(bytes, at: 0x0050)
    allocatorSize = bytes.u64(0x0060)
    allocatorFree = bytes.u64(0x0068)
    allocatorBeg = bytes.u64(0x0070)
    mirrorTid = bytes.u64(0x0078)
    freemapTid = bytes.u64(0x0090)
    bulkfreeTid = bytes.u64(0x0098)
    totalSize = bytes.u64(0x00C0)
    icrcSect1 = bytes.u32(0x01F8)
    icrcSect0 = bytes.u32(0x01FC)
    srootBlockset = (0..<4).map { Blockref(bytes, at: 0x0200 + 128 * $0) }
    freemapBlockset = (0..<4).map { Blockref(bytes, at: 0x0800 + 128 * $0) }
    voluLoff = (0..<64).map { bytes.u64(0x0E00 + 8 * $0) }
    icrcVolheader = bytes.u32(0xFFFC)
  }

  /// Encodes the header. With `recomputeCRCs` the three CRCs are recomputed in the
  /// order the kernel does (sector 1, then sector 0, then the whole header).
  public func encode(recomputeCRCs: Bool = false) -> [UInt8] {
    var b = raw
    b.put(magic, at: 0x0000)
    b.put(bootBeg, at: 0x0008)
    b.put(bootEnd, at: 0x0010)
    b.put(auxBeg, at: 0x0018)
    b.put(auxEnd, at: 0x0020)
    b.put(voluSize, at: 0x0028)
    b.put(version, at: 0x0030)
    b.put(flags, at: 0x0034)
    b.put(copyid, at: 0x0038)
    b.put(freemapVersion, at: 0x0039)
    b.put(peerType, at: 0x003A)
    b.put(voluId, at: 0x003B)
    b.put(nvolumes, at: 0x003C)
    fsid.encode(into: &b, at: 0x0040)
    fstype.encode(into: &b, at: 0x0050)
    b.put(allocatorSize, at: 0x0060)
    b.put(allocatorFree, at: 0x0068)
    b.put(allocatorBeg, at: 0x0070)
    b.put(mirrorTid, at: 0x0078)
    b.put(freemapTid, at: 0x0090)
    b.put(bulkfreeTid, at: 0x0098)
    b.put(totalSize, at: 0x00C0)
    for (i, r) in srootBlockset.enumerated() { r.encode(into: &b, at: 0x0200 + 128 * i) }
    for (i, r) in freemapBlockset.enumerated() { r.encode(into: &b, at: 0x0800 + 128 * i) }
    for (i, v) in voluLoff.enumerated() { b.put(v, at: 0x0E00 + 8 * i) }
    if recomputeCRCs {
      b.put(CRC32C.checksum(b, 0x200..<0x400), at: 0x01F8)
      b.put(CRC32C.checksum(b, 0x000..<0x1FC), at: 0x01FC)
      b.put(CRC32C.checksum(b, 0x0000..<0xFFFC), at: 0xFFFC)
    } else {
      b.put(icrcSect1, at: 0x01F8)
      b.put(icrcSect0, at: 0x01FC)
      b.put(icrcVolheader, at: 0xFFFC)
    }
    return b
  }

  /// Checks the magic and the three CRCs (`hammer2_read_volume_header`). Returns nil when
  /// the header is valid, else the error.
  public func validate() -> FormatError.Kind? {
    if magic == H2.volumeIdABO { return .reverseEndian }
    guard magic == H2.volumeIdHBO else { return .notHammer2(magic: magic) }
    let s1 = CRC32C.checksum(raw, 0x200..<0x400)
    if s1 != icrcSect1 { return .headerCRC(field: "sector 1 (icrc_sects[6])", expected: icrcSect1, found: s1) }
    let s0 = CRC32C.checksum(raw, 0x000..<0x1FC)
    if s0 != icrcSect0 { return .headerCRC(field: "sector 0 (icrc_sects[7])", expected: icrcSect0, found: s0) }
    let all = CRC32C.checksum(raw, 0x0000..<0xFFFC)
    if all != icrcVolheader { return .headerCRC(field: "volume header (icrc_volheader)", expected: icrcVolheader, found: all) }
    return nil
  }

  /// The filesystem size: `total_size` for version >= 2 when set, else `volu_size`.
  public var filesystemSize: UInt64 { version >= 2 && totalSize != 0 ? totalSize : voluSize }
}
