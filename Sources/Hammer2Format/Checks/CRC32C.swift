import CHammer2Codecs

/// iSCSI CRC-32C (Castagnoli), as `hammer2_icrc32` / `iscsi_crc32` computes it:
/// reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF.
/// The CPU's CRC32 instruction where there is one (`h2_crc32c_hw`), else slice-by-8
/// tables: volume headers, the freemap and ISCSI32-checked data go through here.
public enum CRC32C {
  static let tables: [[UInt32]] = {
    var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
    for i in 0..<256 {
      var c = UInt32(i)
      for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
      t[0][i] = c
    }
    for i in 0..<256 {
      for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xFF)] }
    }
    return t
  }()
  static let flat: [UInt32] = tables.flatMap { $0 }

  /// CRC-32C of `bytes`.
  public static func checksum(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { checksum($0) }
  }

  /// CRC-32C of `bytes[range]`.
  public static func checksum(_ bytes: [UInt8], _ range: Range<Int>) -> UInt32 {
    bytes.withUnsafeBytes { checksum(UnsafeRawBufferPointer(rebasing: $0[range])) }
  }

  /// CRC-32C of raw memory.
  public static func checksum(_ raw: UnsafeRawBufferPointer) -> UInt32 {
    var hw: UInt32 = 0xFFFF_FFFF
    if let base = raw.baseAddress, h2_crc32c_hw(&hw, base.assumingMemoryBound(to: UInt8.self), raw.count) != 0 {
      return hw ^ 0xFFFF_FFFF
    }
    return tableChecksum(raw)
  }

  /// `checksum` with the slice-by-8 tables (and the reference the instruction is
  /// tested against).
  static func tableChecksum(_ raw: UnsafeRawBufferPointer) -> UInt32 {
    flat.withUnsafeBufferPointer { t in
      var crc: UInt32 = 0xFFFF_FFFF
      var i = 0
      let n = raw.count
      while i + 8 <= n {
        let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        let lo = UInt32(truncatingIfNeeded: v) ^ crc
        let hi = UInt32(truncatingIfNeeded: v >> 32)
        crc =
          t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
          ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
          ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
          ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
        i += 8
      }
      while i < n {
        crc = t[Int((crc ^ UInt32(raw[i])) & 0xFF)] ^ (crc >> 8)
        i += 1
      }
      return crc ^ 0xFFFF_FFFF
    }
  }
}
