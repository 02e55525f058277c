/// `count` little-endian words of `Word` kept inline (no heap array): a leaf's 256
/// entries are copied and scanned on every allocation, and an array per field made each
/// copy a retain and each edit a copy-on-write allocation.
public struct InlineWords<Word: FixedWidthInteger & Sendable>: Equatable, Sendable {
  /// Room for up to 64 bytes (the largest run a bmap entry holds).
  private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
  /// The number of words.
  public let count: Int

  /// `count` zero words (`count * Word.bitWidth` at most 512 bits).
  public init(count: Int) {
    precondition(count >= 0 && count * MemoryLayout<Word>.size <= 64, "\(count) inline words")
    self.count = count
  }

  /// `count` words decoded little-endian from `b` at `o` (the caller checked the range).
  init(_ b: [UInt8], at o: Int, count: Int) {
    self.init(count: count)
    let n = count * MemoryLayout<Word>.size
    b.withUnsafeBytes { src in
      withUnsafeMutableBytes(of: &storage) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[o..<o + n]))
      }
    }
    #if _endian(big)
      for i in 0..<count { self[i] = Word(littleEndian: self[i]) }
    #endif
  }

  /// Word `i` (0..<count).
  public subscript(i: Int) -> Word {
    get {
      precondition(i >= 0 && i < count, "inline word \(i) of \(count)")
      return withUnsafeBytes(of: storage) { $0.load(fromByteOffset: i * MemoryLayout<Word>.size, as: Word.self) }
    }
    set {
      precondition(i >= 0 && i < count, "inline word \(i) of \(count)")
      withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: newValue, toByteOffset: i * MemoryLayout<Word>.size, as: Word.self) }
    }
  }

  /// The words as an array.
  public var array: [Word] { (0..<count).map { self[$0] } }

  public static func == (a: InlineWords, b: InlineWords) -> Bool {
    a.count == b.count && (0..<a.count).allSatisfy { a[$0] == b[$0] }
  }
}

/// One 128-byte freemap leaf entry describing a 4 MiB segment (`struct hammer2_bmap_data`,
/// hammer2_disk.h). A FREEMAP_LEAF block holds 256 of them (32 KiB). Plain values only
/// (no arrays): copying an entry copies 128 bytes and allocates nothing.
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
  public var reserved08: InlineWords<UInt32>
  /// 0x1C `avail`: free bytes in the segment.
  public var avail: UInt32
  /// 0x20..0x3F reserved: eight u32.
  public var reserved20: InlineWords<UInt32>
  /// 0x40 `bitmapq[8]`: 2 bits per 16 KiB chunk (00 free, 01 reserved, 10 staged, 11 allocated).
  public var bitmap: InlineWords<UInt64>

  /// Decodes the entry at `o` of `b`.
  public init(_ b: [UInt8], at o: Int) {
    linear = Int32(bitPattern: b.u32(o + 0x00))
    allocClass = b.u16(o + 0x04)
    reserved06 = b.u8(o + 0x06)
    reserved07 = b.u8(o + 0x07)
    reserved08 = InlineWords(b, at: o + 0x08, count: 5)
    avail = b.u32(o + 0x1C)
    reserved20 = InlineWords(b, at: o + 0x20, count: 8)
    bitmap = InlineWords(b, at: o + 0x40, count: 8)
  }

  /// An all-zero entry.
  private init() {
    linear = 0
    allocClass = 0
    reserved06 = 0
    reserved07 = 0
    reserved08 = InlineWords(count: 5)
    avail = 0
    reserved20 = InlineWords(count: 8)
    bitmap = InlineWords(count: 8)
  }

  /// A fully free segment (`avail` = 4 MiB, class 0, bitmap 0).
  public static var free: BmapData {
    var d = BmapData()
    d.avail = UInt32(H2.zoneSeg)
    return d
  }

  /// A fully allocated segment (leaf initialisation of reserved areas).
  public static var full: BmapData {
    var d = BmapData()
    d.linear = Int32(H2.zoneSeg)
    for i in 0..<8 { d.bitmap[i] = .max }
    return d
  }

  /// Writes the entry at `o` of `b`.
  public func encode(into b: inout [UInt8], at o: Int) {
    b.put(UInt32(bitPattern: linear), at: o + 0x00)
    b.put(allocClass, at: o + 0x04)
    b.put(reserved06, at: o + 0x06)
    b.put(reserved07, at: o + 0x07)
    for i in 0..<reserved08.count { b.put(reserved08[i], at: o + 0x08 + 4 * i) }
    b.put(avail, at: o + 0x1C)
    for i in 0..<reserved20.count { b.put(reserved20[i], at: o + 0x20 + 4 * i) }
    for i in 0..<bitmap.count { b.put(bitmap[i], at: o + 0x40 + 8 * i) }
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
