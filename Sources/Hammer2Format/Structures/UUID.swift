/// A UUID as DragonFly stores it (`struct uuid`): time_low u32, time_mid u16 and
/// time_hi_and_version u16 little-endian, then clock_seq and node as bytes in order.
/// `bytes` holds the canonical (printed) order.
public struct H2UUID: Equatable, Hashable, Sendable, CustomStringConvertible, Comparable {
  /// The 16 bytes in printed order.
  public var bytes: [UInt8]

  /// The nil UUID.
  public init() { bytes = [UInt8](repeating: 0, count: 16) }

  /// Decodes the on-disk form at `offset`.
  public init(_ disk: [UInt8], at offset: Int) {
    precondition(offset >= 0 && offset + 16 <= disk.count, "uuid at \(offset) of \(disk.count) bytes")
    // One array, filled in place (every inode decode meets two uuids).
    bytes = [UInt8](unsafeUninitializedCapacity: 16) { out, n in
      for i in 0..<16 { out[i] = disk[offset + Self.diskIndex[i]] }
      n = 16
    }
  }

  /// For printed byte `i`, its position in the on-disk form (the first three fields
  /// are little-endian there).
  private static let diskIndex = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]

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
    precondition(bytes.count == 16, "uuid of \(bytes.count) bytes")
    for i in 0..<16 { disk[offset + Self.diskIndex[i]] = bytes[i] }
  }

  /// Printed form.
  public var description: String {
    let h = bytes.map { hex(UInt64($0), width: 2) }
    return h[0..<4].joined() + "-" + h[4..<6].joined() + "-" + h[6..<8].joined() + "-"
      + h[8..<10].joined() + "-" + h[10..<16].joined()
  }

  public static func < (a: H2UUID, b: H2UUID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
