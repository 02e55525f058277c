import CHammer2Codecs
import Crypto

/// Block check codes (`hammer2_chain_setcheck` / `hammer2_chain_testcheck`).
public enum CheckCode {
  /// XXH64 with HAMMER2's seed (`XXH_HAMMER2_SEED`).
  public static func xxhash64(_ bytes: [UInt8]) -> UInt64 {
    bytes.withUnsafeBytes { XXH64($0.baseAddress, $0.count, H2.xxhSeed) }
  }

  /// HAMMER2's SHA192: SHA-256 of the block with its 64-bit word 2 XORed with word 3;
  /// the first 24 bytes are stored.
  public static func sha192(_ bytes: [UInt8]) -> [UInt8] {
    var d = Array(SHA256.hash(data: bytes))
    for i in 16..<24 { d[i] ^= d[i + 8] }
    return Array(d[0..<24])
  }

  /// Computes the check area (64 bytes, as stored at blockref offset 0x40) for `method`
  /// over `block`. NONE and DISABLED give zeros.
  public static func compute(_ method: CheckMethod, over block: [UInt8]) -> CheckArea {
    var area = CheckArea()
    switch method {
    case .none, .disabled: break
    case .iscsi32, .freemap: area.setU32(0, CRC32C.checksum(block))
    case .xxhash64: area.setU64(0, xxhash64(block))
    case .sha192:
      let d = sha192(block)
      for i in 0..<24 { area[i] = d[i] }
    }
    return area
  }

  /// Verifies `block` against the stored check of `bref`. Returns nil when it matches
  /// (or the method has nothing to verify), else (method, expected, found) as hex text.
  public static func verify(_ bref: Blockref, block: [UInt8]) -> (method: String, expected: String, found: String)? {
    guard let method = CheckMethod(rawValue: bref.checkMethodRaw) else {
      return ("unknown(\(bref.checkMethodRaw))", "a known check method", "method \(bref.checkMethodRaw)")
    }
    switch method {
    case .none, .disabled: return nil
    case .iscsi32:
      let found = CRC32C.checksum(block)
      let expected = bref.check.u32(0)
      return found == expected ? nil : ("iscsi32", "0x" + hex(UInt64(expected), width: 8), "0x" + hex(UInt64(found), width: 8))
    case .freemap:
      // Freemap blocks use 32 KiB of their 64 KiB slot (HAMMER2_FREEMAP_LEVELN_PSIZE).
      let found = CRC32C.checksum(block, 0..<min(block.count, H2.freemapLevelNPsize))
      let expected = bref.check.u32(0)
      return found == expected ? nil : ("freemap", "0x" + hex(UInt64(expected), width: 8), "0x" + hex(UInt64(found), width: 8))
    case .xxhash64:
      let found = xxhash64(block)
      let expected = bref.check.u64(0)
      return found == expected ? nil : ("xxhash64", "0x" + hex(expected, width: 16), "0x" + hex(found, width: 16))
    case .sha192:
      let found = sha192(block)
      let expected = (0..<24).map { bref.check[$0] }
      return found == expected
        ? nil : ("sha192", expected.map { hex(UInt64($0), width: 2) }.joined(), found.map { hex(UInt64($0), width: 2) }.joined())
    }
  }
}
