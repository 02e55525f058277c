import Hammer2Format

/// How sizes and methods are spelled on command lines and in scenario specs (one parser
/// for h2mkimage, h2resync and the scenario generator).
public enum Spellings {
  /// "2G", "64K", "100M", "12345" -> bytes.
  public static func byteSize(_ s: String) -> UInt64? {
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    if let u = s.uppercased().last, let m = units[u], let n = UInt64(s.dropLast()) {
      let (r, overflow) = n.multipliedReportingOverflow(by: m)
      return overflow ? nil : r
    }
    return UInt64(s)
  }

  /// "none", "autozero", "lz4", "zlib[:LEVEL]", "zstd[:LEVEL]" -> an inode `comp_algo` byte.
  public static func compAlgo(_ s: String) -> UInt8? {
    let parts = s.lowercased().split(separator: ":")
    guard let name = parts.first, let m = CompressionMethod.allCases.first(where: { $0.name == name }) else { return nil }
    let level = parts.count > 1 ? UInt8(parts[1]) ?? 0 : 0
    return m.rawValue | (min(level, 15) << 4)
  }

  /// "none", "disabled", "iscsi32", "xxhash64", "sha192" -> an inode `check_algo` byte.
  public static func checkAlgo(_ s: String) -> UInt8? {
    CheckMethod.allCases.first { $0.name == s.lowercased() && $0 != .freemap }?.rawValue
  }

  /// What `compAlgo` accepts, for error messages.
  public static let compAlgoHelp = "compression must be none, autozero, lz4, zlib[:LEVEL] or zstd[:LEVEL]"

  /// What `checkAlgo` accepts, for error messages.
  public static let checkAlgoHelp = "check must be none, disabled, iscsi32, xxhash64 or sha192"
}
