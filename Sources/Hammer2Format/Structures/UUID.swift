/// A UUID as DragonFly stores it (`struct uuid`): time_low u32, time_mid u16 and
/// time_hi_and_version u16 little-endian, then clock_seq and node as bytes in order.
/// `bytes` holds the canonical (printed) order.
public struct H2UUID: Equatable, Hashable, Sendable, CustomStringConvertible, Comparable {
  /// The 16 bytes in printed order, as two big-endian words: kept inline, so decoding
  /// one (every inode holds two) allocates nothing.
  private var hi: UInt64 = 0
  private var lo: UInt64 = 0

  /// The 16 bytes in printed order.
  public var bytes: [UInt8] {
    get { (0..<16).map { self[$0] } }
    set {
      precondition(newValue.count == 16, "uuid of \(newValue.count) bytes")
      hi = 0
      lo = 0
      for (i, v) in newValue.enumerated() { self[i] = v }
    }
  }

  /// Printed byte `i` (0..15).
  private subscript(i: Int) -> UInt8 {
    get { UInt8(truncatingIfNeeded: (i < 8 ? hi : lo) >> UInt64(56 - 8 * (i & 7))) }
    set {
      let shift = UInt64(56 - 8 * (i & 7))
      if i < 8 {
        hi = hi & ~(0xFF << shift) | UInt64(newValue) << shift
      } else {
        lo = lo & ~(0xFF << shift) | UInt64(newValue) << shift
      }
    }
  }

  /// The nil UUID.
  public init() {}

  /// Decodes the on-disk form at `offset`.
  public init(_ disk: [UInt8], at offset: Int) {
    precondition(offset >= 0 && offset + 16 <= disk.count, "uuid at \(offset) of \(disk.count) bytes")
    // time_low u32, time_mid u16, time_hi_and_version u16 little-endian, then
    // clock_seq and node in printed order.
    hi = UInt64(disk.u32(offset)) << 32 | UInt64(disk.u16(offset + 4)) << 16 | UInt64(disk.u16(offset + 6))
    lo = disk.u64(offset + 8).byteSwapped
  }

  /// Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
  public init?(string: String) {
    let hexDigits = string.filter { $0 != "-" }
    guard hexDigits.count == 32, string.count == 36 else { return nil }
    var out = [UInt8]()
    var it = hexDigits.makeIterator()
    while let a = it.next(), let b = it.next() {
      guard let v = UInt8(String([a, b]), radix: 16) else { return nil }
      out.append(v)
    }
    bytes = out
  }

  /// Writes the on-disk form at `offset`.
  public func encode(into disk: inout [UInt8], at offset: Int) {
    disk.put(UInt32(truncatingIfNeeded: hi >> 32), at: offset)
    disk.put(UInt16(truncatingIfNeeded: hi >> 16), at: offset + 4)
    disk.put(UInt16(truncatingIfNeeded: hi), at: offset + 6)
    disk.put(lo.byteSwapped, at: offset + 8)
  }

  /// Printed form.
  public var description: String {
    let h = bytes.map { hex(UInt64($0), width: 2) }
    return h[0..<4].joined() + "-" + h[4..<6].joined() + "-" + h[6..<8].joined() + "-"
      + h[8..<10].joined() + "-" + h[10..<16].joined()
  }

  /// Byte order: the words are big-endian, so comparing them compares the bytes.
  public static func < (a: H2UUID, b: H2UUID) -> Bool { (a.hi, a.lo) < (b.hi, b.lo) }
}

/// A uuid-sized inode field kept as its 16 on-disk bytes (`uid`, `gid`: DragonFly puts
/// the unix id in bytes 10..13, `hammer2_guid_to_uuid`). Inline words, so decoding an
/// inode allocates nothing for them.
public struct RawUUID: Equatable, Hashable, Sendable {
  /// Bytes 0..7 and 8..15, each word little-endian.
  private var w0: UInt64 = 0
  private var w1: UInt64 = 0

  /// All zeros.
  public init() {}

  /// The 16 bytes at `offset` of `b`.
  public init(_ b: [UInt8], at offset: Int) {
    precondition(offset >= 0 && offset + 16 <= b.count, "uuid field at \(offset) of \(b.count) bytes")
    w0 = b.u64(offset)
    w1 = b.u64(offset + 8)
  }

  /// Byte `i` (0..15).
  public subscript(i: Int) -> UInt8 {
    get { UInt8(truncatingIfNeeded: (i < 8 ? w0 : w1) >> UInt64(8 * (i & 7))) }
    set {
      let shift = UInt64(8 * (i & 7))
      if i < 8 {
        w0 = w0 & ~(0xFF << shift) | UInt64(newValue) << shift
      } else {
        w1 = w1 & ~(0xFF << shift) | UInt64(newValue) << shift
      }
    }
  }

  /// The 16 bytes.
  public var bytes: [UInt8] { (0..<16).map { self[$0] } }

  /// Bytes 0..7 and 8..15 as little-endian words (hashing without an array).
  public var words: (UInt64, UInt64) { (w0, w1) }

  /// The little-endian u32 at byte `o` (0...12).
  public func u32(_ o: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(self[o + $1]) << UInt32(8 * $1) }
  }

  /// Writes `v` little-endian at byte `o` (0...12).
  public mutating func put(_ v: UInt32, at o: Int) {
    for k in 0..<4 { self[o + k] = UInt8(truncatingIfNeeded: v >> UInt32(8 * k)) }
  }

  /// Writes the 16 bytes at `offset` of `b`.
  public func encode(into b: inout [UInt8], at offset: Int) {
    b.put(w0, at: offset)
    b.put(w1, at: offset + 8)
  }
}
