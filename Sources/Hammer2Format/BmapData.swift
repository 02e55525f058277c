/// One 128-byte freemap leaf entry describing a 4 MiB segment (`struct hammer2_bmap_data`,
/// hammer2_disk.h). A FREEMAP_LEAF block holds 256 of them (32 KiB).
public struct BmapData: Equatable, Sendable {
  /// `sizeof(hammer2_bmap_data_t)`.
  public static let byteCount = 128
  /// Entries per leaf (`HAMMER2_FREEMAP_COUNT`).
  public static let perLeaf = 256

  /// 0x00 `linear`: packing iterator inside the segment for sub-16 KiB allocations.
  public var linear: Int32
  /// 0x04 `class`: (bref type << 8) | 16, 0 = unclassified.
  public var allocClass: UInt16
  /// 0x06 `reserved06`, 0x07 `reserved07`.
  public var reserved06: UInt8
  public var reserved07: UInt8
  /// 0x08..0x1B `reserved08`..: five u32.
  public var reserved08: [UInt32]
  /// 0x1C `avail`: free bytes in the segment.
  public var avail: UInt32
  /// 0x20..0x3F reserved: eight u32.
  public var reserved20: [UInt32]
  /// 0x40 `bitmapq[8]`: 2 bits per 16 KiB chunk (00 free, 01 reserved, 10 staged, 11 allocated).
  public var bitmap: [UInt64]

  /// Decodes the entry at `o` of `b`.
  public init(_ b: [UInt8], at o: Int) {
    linear = Int32(bitPattern: b.u32(o + 0x00))
    allocClass = b.u16(o + 0x04)
    reserved06 = b.u8(o + 0x06)
    reserved07 = b.u8(o + 0x07)
    reserved08 = (0..<5).map { b.u32(o + 0x08 + 4 * $0) }
    avail = b.u32(o + 0x1C)
    reserved20 = (0..<8).map { b.u32(o + 0x20 + 4 * $0) }
    bitmap = (0..<8).map { b.u64(o + 0x40 + 8 * $0) }
  }

  /// A fully free segment (`avail` = 4 MiB, class 0, bitmap 0).
  public static var free: BmapData {
    var d = BmapData([UInt8](repeating: 0, count: byteCount), at: 0)
    d.avail = UInt32(H2.zoneSeg)
    return d
  }

  /// A fully allocated segment (leaf initialisation of reserved areas).
  public static var full: BmapData {
    var d = BmapData([UInt8](repeating: 0, count: byteCount), at: 0)
    d.linear = Int32(H2.zoneSeg)
    d.bitmap = [UInt64](repeating: .max, count: 8)
    return d
  }

  /// Writes the entry at `o` of `b`.
  public func encode(into b: inout [UInt8], at o: Int) {
    b.put(UInt32(bitPattern: linear), at: o + 0x00)
    b.put(allocClass, at: o + 0x04)
    b.put(reserved06, at: o + 0x06)
    b.put(reserved07, at: o + 0x07)
    for (i, v) in reserved08.enumerated() { b.put(v, at: o + 0x08 + 4 * i) }
    b.put(avail, at: o + 0x1C)
    for (i, v) in reserved20.enumerated() { b.put(v, at: o + 0x20 + 4 * i) }
    for (i, v) in bitmap.enumerated() { b.put(v, at: o + 0x40 + 8 * i) }
  }

  /// The 2-bit state of chunk `c` (0..255).
  public func state(ofChunk c: Int) -> UInt8 {
    UInt8((bitmap[c / 32] >> UInt64((c % 32) * 2)) & 3)
  }

  /// Sets chunk `c` to `state`.
  public mutating func setState(ofChunk c: Int, _ state: UInt8) {
    let shift = UInt64((c % 32) * 2)
    bitmap[c / 32] = (bitmap[c / 32] & ~(3 << shift)) | (UInt64(state & 3) << shift)
  }
}

/// A FREEMAP_LEAF block: 256 segment descriptors covering 1 GiB.
public struct FreemapLeaf: Equatable, Sendable {
  /// The 256 entries.
  public var entries: [BmapData]

  /// Decodes a 32 KiB (or larger) leaf block.
  public init(_ b: [UInt8]) {
    entries = (0..<BmapData.perLeaf).map { BmapData(b, at: $0 * BmapData.byteCount) }
  }

  /// Creates a leaf from entries.
  public init(entries: [BmapData]) { self.entries = entries }

  /// The 32 KiB encoding.
  public func encode() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: H2.freemapLevelNPsize)
    for (i, e) in entries.enumerated() { e.encode(into: &b, at: i * BmapData.byteCount) }
    return b
  }
}
