/// The directory-entry key hash (`hammer2_dirhash`, hammer2_subr.c).
public enum DirHash {
  /// Computes the key for `name`: bit 63 set, low 15 bits zero (the collision space),
  /// then 0x8000 OR-ed in as the kernel does.
  public static func hash(_ name: [UInt8]) -> UInt64 {
    var acc: UInt32 = 0
    var segStart = 0
    func addSegment(_ end: Int) {
      if end > segStart { acc = acc &+ CRC32C.checksum(name, segStart..<end) }
    }
    for (i, c) in name.enumerated()
    where c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: "~") {
      addSegment(i)
      segStart = i + 1
    }
    addSegment(name.count)
    acc |= 0x8000_0000
    var key = UInt64(acc) << 32
    var crc = CRC32C.checksum(name)
    crc = crc ^ (crc << 16)
    key |= UInt64(crc & 0xFFFF_0000)
    key |= 0x8000
    return key
  }

  /// Hash of a Swift string's UTF-8 bytes.
  public static func hash(_ name: String) -> UInt64 { hash(Array(name.utf8)) }
}
