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
    let d = Array(disk[offset..<offset + 16])
    bytes = [d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6]] + Array(d[8..<16])
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
    let b = bytes
    let d = [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + Array(b[8..<16])
    disk.put(d, at: offset)
  }

  /// Printed form.
  public var description: String {
    let h = bytes.map { hex(UInt64($0), width: 2) }
    return h[0..<4].joined() + "-" + h[4..<6].joined() + "-" + h[6..<8].joined() + "-"
      + h[8..<10].joined() + "-" + h[10..<16].joined()
  }

  public static func < (a: H2UUID, b: H2UUID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
