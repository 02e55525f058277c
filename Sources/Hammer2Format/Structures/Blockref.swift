/// The 64-byte check area of a blockref (offset 0x40): a check code, an inline DIRENT
/// name, or freemap hints. Kept as eight words so arrays of blockrefs do not allocate.
public struct CheckArea: Equatable, Hashable, Sendable {
  /// The eight little-endian words.
  public var w: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

  /// All zeros.
  public init() {}

  /// Decodes 64 bytes at `offset` of `bytes`.
  public init(_ bytes: [UInt8], at offset: Int) {
    w = (
      bytes.u64(offset), bytes.u64(offset + 8), bytes.u64(offset + 16), bytes.u64(offset + 24),
      bytes.u64(offset + 32), bytes.u64(offset + 40), bytes.u64(offset + 48), bytes.u64(offset + 56)
    )
  }

  /// Creates a check area holding `bytes` (at most 64) zero-padded.
  public init(bytes: [UInt8]) {
    var b = [UInt8](repeating: 0, count: 64)
    for (i, v) in bytes.prefix(64).enumerated() { b[i] = v }
    self.init(b, at: 0)
  }

  /// Word `i` (0..7). Read in place: this sits on hot paths (every check code verified,
  /// every inline name compared), where building an array would allocate.
  public func u64(_ i: Int) -> UInt64 {
    precondition((0..<8).contains(i), "check area word \(i)")
    // A homogeneous tuple is laid out as consecutive elements.
    return withUnsafeBytes(of: w) { $0.load(fromByteOffset: i * 8, as: UInt64.self) }
  }

  /// The little-endian u32 at byte offset `byteOffset` (a multiple of 4).
  public func u32(_ byteOffset: Int) -> UInt32 {
    UInt32(truncatingIfNeeded: u64(byteOffset / 8) >> (UInt64(byteOffset % 8) * 8))
  }

  /// Byte access.
  public subscript(i: Int) -> UInt8 {
    get { UInt8(truncatingIfNeeded: u64(i / 8) >> (UInt64(i % 8) * 8)) }
    set {
      let shift = UInt64(i % 8) * 8
      setU64(i / 8, (u64(i / 8) & ~(0xFF << shift)) | (UInt64(newValue) << shift))
    }
  }

  /// Sets word `i`.
  public mutating func setU64(_ i: Int, _ v: UInt64) {
    precondition((0..<8).contains(i), "check area word \(i)")
    withUnsafeMutableBytes(of: &w) { $0.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
  }

  /// Sets the u32 at byte offset `byteOffset` (a multiple of 4).
  public mutating func setU32(_ byteOffset: Int, _ v: UInt32) {
    let shift = UInt64(byteOffset % 8) * 8
    setU64(byteOffset / 8, (u64(byteOffset / 8) & ~(0xFFFF_FFFF << shift)) | (UInt64(v) << shift))
  }

  /// The 64 bytes.
  public var bytes: [UInt8] {
    var b = [UInt8](repeating: 0, count: 64)
    encode(into: &b, at: 0)
    return b
  }

  /// The first `n` bytes (0...64) as an array: one allocation, no 64-byte detour (an
  /// inline DIRENT name is decoded for every directory entry a walk meets).
  public func prefix(_ n: Int) -> [UInt8] {
    precondition((0...64).contains(n), "check area prefix of \(n) bytes")
    #if _endian(little)
      // The words' in-memory bytes are their little-endian encoding here.
      return withUnsafeBytes(of: w) { raw in Array(UnsafeRawBufferPointer(rebasing: raw[0..<n])) }
    #else
      return (0..<n).map { self[$0] }
    #endif
  }

  /// Writes the 64 bytes at `offset`.
  public func encode(into bytes: inout [UInt8], at offset: Int) {
    for i in 0..<8 { bytes.put(u64(i), at: offset + 8 * i) }
  }

  public static func == (a: CheckArea, b: CheckArea) -> Bool {
    a.w.0 == b.w.0 && a.w.1 == b.w.1 && a.w.2 == b.w.2 && a.w.3 == b.w.3
      && a.w.4 == b.w.4 && a.w.5 == b.w.5 && a.w.6 == b.w.6 && a.w.7 == b.w.7
  }
  public func hash(into h: inout Hasher) {
    h.combine(w.0)
    h.combine(w.1)
    h.combine(w.2)
    h.combine(w.3)
    h.combine(w.4)
    h.combine(w.5)
    h.combine(w.6)
    h.combine(w.7)
  }
}

/// One 128-byte block reference (`struct hammer2_blockref`, hammer2_disk.h).
/// Every field is kept, reserved ones included, so encode(decode(b)) == b.
public struct Blockref: Equatable, Hashable, Sendable {
  /// `HAMMER2_BLOCKREF_BYTES`.
  public static let byteCount = 128

  /// 0x00 `type` (`HAMMER2_BREF_TYPE_*`), raw so damaged values survive decoding.
  public var typeRaw: UInt8
  /// 0x01 `methods`: check << 4 | compression.
  public var methods: UInt8
  /// 0x02 `copyid`.
  public var copyid: UInt8
  /// 0x03 `keybits`: the bref covers [key, key + 2^keybits - 1].
  public var keybits: UInt8
  /// 0x04 `vradix`.
  public var vradix: UInt8
  /// 0x05 `flags` (`HAMMER2_BREF_FLAG_*`).
  public var flags: UInt8
  /// 0x06 `leaf_count`.
  public var leafCount: UInt16
  /// 0x08 `key`.
  public var key: UInt64
  /// 0x10 `mirror_tid`: per-device flush id.
  public var mirrorTid: UInt64
  /// 0x18 `modify_tid`: cluster-level change id.
  public var modifyTid: UInt64
  /// 0x20 `data_off`: media offset | size radix (low 6 bits).
  public var dataOff: UInt64
  /// 0x28 `update_tid`.
  public var updateTid: UInt64
  /// 0x30 `embed` first word: DIRENT inum, or stats `data_count`.
  public var embed0: UInt64
  /// 0x38 `embed` second word: DIRENT namlen (u16) | type (u8 at +2), or stats `inode_count`.
  public var embed1: UInt64
  /// 0x40 `check` (64 bytes).
  public var check: CheckArea

  /// An EMPTY blockref (all zeros).
  public init() {
    typeRaw = 0
    methods = 0
    copyid = 0
    keybits = 0
    vradix = 0
    flags = 0
    leafCount = 0
    key = 0
    mirrorTid = 0
    modifyTid = 0
    dataOff = 0
    updateTid = 0
    embed0 = 0
    embed1 = 0
    check = CheckArea()
  }

  /// Decodes the 128 bytes at `offset` of `bytes` (the caller guarantees the length).
  public init(_ bytes: [UInt8], at offset: Int) {
    precondition(offset >= 0 && offset + Self.byteCount <= bytes.count, "blockref at \(offset) of \(bytes.count) bytes")
    self = bytes.withUnsafeBytes { Blockref(raw: $0, at: offset) }
  }

  /// Decodes the 128 bytes at `offset` of `raw` (the caller checked the range).
  init(raw: UnsafeRawBufferPointer, at offset: Int) {
    func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + o, as: UInt64.self)) }
    typeRaw = raw[offset + 0x00]
    methods = raw[offset + 0x01]
    copyid = raw[offset + 0x02]
    keybits = raw[offset + 0x03]
    vradix = raw[offset + 0x04]
    flags = raw[offset + 0x05]
    leafCount = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 0x06, as: UInt16.self))
    key = u64(0x08)
    mirrorTid = u64(0x10)
    modifyTid = u64(0x18)
    dataOff = u64(0x20)
    updateTid = u64(0x28)
    embed0 = u64(0x30)
    embed1 = u64(0x38)
    check = CheckArea()
    check.w = (u64(0x40), u64(0x48), u64(0x50), u64(0x58), u64(0x60), u64(0x68), u64(0x70), u64(0x78))
  }

  /// Writes the 128 bytes at `offset` of `bytes`.
  public func encode(into bytes: inout [UInt8], at offset: Int) {
    bytes.put(typeRaw, at: offset + 0x00)
    bytes.put(methods, at: offset + 0x01)
    bytes.put(copyid, at: offset + 0x02)
    bytes.put(keybits, at: offset + 0x03)
    bytes.put(vradix, at: offset + 0x04)
    bytes.put(flags, at: offset + 0x05)
    bytes.put(leafCount, at: offset + 0x06)
    bytes.put(key, at: offset + 0x08)
    bytes.put(mirrorTid, at: offset + 0x10)
    bytes.put(modifyTid, at: offset + 0x18)
    bytes.put(dataOff, at: offset + 0x20)
    bytes.put(updateTid, at: offset + 0x28)
    bytes.put(embed0, at: offset + 0x30)
    bytes.put(embed1, at: offset + 0x38)
    check.encode(into: &bytes, at: offset + 0x40)
  }

  /// The 128 encoded bytes.
  public var bytes: [UInt8] {
    var b = [UInt8](repeating: 0, count: Blockref.byteCount)
    encode(into: &b, at: 0)
    return b
  }

  /// The type, or nil for a value no HAMMER2 version defines.
  public var type: BlockrefType? { BlockrefType(rawValue: typeRaw) }
  /// True for an EMPTY slot.
  public var isEmpty: Bool { typeRaw == 0 }
  /// `HAMMER2_DEC_CHECK(methods)`.
  public var checkMethodRaw: UInt8 { methods >> 4 }
  /// `HAMMER2_DEC_COMP(methods)`.
  public var compressionRaw: UInt8 { methods & 0x0F }
  /// The check method, if known.
  public var checkMethod: CheckMethod? { CheckMethod(rawValue: checkMethodRaw) }
  /// The compression method, if known.
  public var compression: CompressionMethod? { CompressionMethod(rawValue: compressionRaw) }
  /// Size radix of the media block; 0 means no media data.
  public var radix: UInt8 { UInt8(dataOff & H2.offMaskRadix) }
  /// Media offset without the radix bits (`data_off & HAMMER2_OFF_MASK`).
  public var mediaOffset: UInt64 { dataOff & ~H2.offMaskRadix }
  /// Media block size in bytes, 0 when there is none; nil for a radix above 16
  /// bytes... (values 1..9 and 17..63 are not valid block sizes).
  public var mediaSize: Int? {
    let r = radix
    if r == 0 { return 0 }
    guard r >= H2.radixMin, r <= H2.radixMax else { return nil }
    return 1 << Int(r)
  }
  /// The last key covered (saturating at UInt64.max for keybits >= 64).
  public var keyEnd: UInt64 {
    keybits >= 64 ? UInt64.max : key | ((UInt64(1) << UInt64(keybits)) &- 1)
  }

  // DIRENT embed (`hammer2_dirent_head`).
  /// 0x30 `dirent.inum`.
  public var direntInum: UInt64 { embed0 }
  /// 0x38 `dirent.namlen`.
  public var direntNameLength: Int { Int(UInt16(truncatingIfNeeded: embed1)) }
  /// 0x3A `dirent.type`.
  public var direntTypeRaw: UInt8 { UInt8(truncatingIfNeeded: embed1 >> 16) }

  // INODE / INDIRECT embed (`hammer2_blockref.embed.stats`).
  /// 0x30 `stats.data_count`.
  public var dataCount: UInt64 { embed0 }
  /// 0x38 `stats.inode_count`.
  public var inodeCount: UInt64 { embed1 }

  /// A short description for locations: "INDIRECT key=0x400/7".
  public var summary: String {
    "\(type?.name ?? "type(\(typeRaw))") key=0x\(hex(key))/\(keybits)"
  }
}

/// Decodes every 128-byte blockref of a block (an indirect block, a freemap node, or a
/// blockset).
public func decodeBlockrefs(_ bytes: [UInt8]) -> [Blockref] {
  let n = bytes.count / Blockref.byteCount
  var out = [Blockref]()
  out.reserveCapacity(n)
  for i in 0..<n { out.append(Blockref(bytes, at: i * Blockref.byteCount)) }
  return out
}

/// The live (non-EMPTY) blockrefs of a block, in slot order: EMPTY slots are skipped
/// without being decoded (a sparse 64 KiB indirect block is mostly EMPTY).
public func decodeLiveBlockrefs(_ bytes: [UInt8]) -> [Blockref] {
  bytes.withUnsafeBytes { decodeLiveBlockrefs($0) }
}

/// `decodeLiveBlockrefs` of a block read into a buffer (the verified read's own buffer:
/// no array of the block's bytes is made).
func decodeLiveBlockrefs(_ raw: UnsafeRawBufferPointer) -> [Blockref] {
  let n = raw.count / Blockref.byteCount
  var live = 0
  for i in 0..<n where raw[i * Blockref.byteCount] != 0 { live += 1 }
  // Each live slot decoded straight into the array's storage (no append bookkeeping).
  return [Blockref](unsafeUninitializedCapacity: live) { out, count in
    var k = 0
    for i in 0..<n where raw[i * Blockref.byteCount] != 0 {
      (out.baseAddress! + k).initialize(to: Blockref(raw: raw, at: i * Blockref.byteCount)) // Safe: live > 0 here.
      k += 1
    }
    count = k
  }
}

/// Encodes blockrefs back into a block of `count * 128` bytes.
public func encodeBlockrefs(_ brefs: [Blockref]) -> [UInt8] {
  var b = [UInt8](repeating: 0, count: brefs.count * Blockref.byteCount)
  for (i, r) in brefs.enumerated() { r.encode(into: &b, at: i * Blockref.byteCount) }
  return b
}
