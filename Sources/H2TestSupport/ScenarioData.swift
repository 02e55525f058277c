import Crypto
import Foundation
import Hammer2Format

// MARK: - data

/// Deterministic file contents from a short spec:
/// `text:LITERAL` (the literal, UTF-8), `zeros:SIZE`, `random:SIZE:SEED` (incompressible),
/// `lorem:SIZE:SEED` (compressible words), `mixed:SIZE:SEED` (64 KiB blocks cycling
/// lorem, random, lorem, zeros), `pattern:SIZE:SEED` (a repeating 251-byte pattern).
/// SIZE takes K/M/G suffixes.
public enum ScenarioData {
  static let words: [String] = [
    "hammer2", "cluster", "quorum", "master", "slave", "inode", "blockref", "freemap", "volume", "header",
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "copy", "on", "write", "tid",
  ]
  /// 128 KiB of word text the lorem generator slices from.
  static let corpus: [UInt8] = {
    var rng = SeededRandom(seed: 0x5EED)
    var out: [UInt8] = []
    out.reserveCapacity(132 * 1024)
    var col = 0
    while out.count < 128 * 1024 {
      let w = words[Int(rng.next() % UInt64(words.count))]
      out += Array(w.utf8)
      col += w.utf8.count + 1
      if col > 72 {
        out.append(0x0A)
        col = 0
      } else {
        out.append(0x20)
      }
    }
    return Array(out.prefix(128 * 1024))
  }()

  /// The bytes `spec` describes.
  public static func bytes(_ spec: String) throws -> [UInt8] {
    guard let colon = spec.firstIndex(of: ":") else { throw ScenarioError("bad data spec \(spec)") }
    let kind = String(spec[..<colon])
    let rest = String(spec[spec.index(after: colon)...])
    if kind == "text" { return Array(rest.utf8) }
    let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    let size = Int(try scenarioSize(parts[0]))
    let seed = parts.count > 1 ? UInt64(parts[1]) ?? fnv64(parts[1]) : 0
    switch kind {
    case "zeros": return [UInt8](repeating: 0, count: size)
    case "random": return random(size, seed: seed)
    case "lorem": return lorem(size, seed: seed)
    case "pattern":
      var out = [UInt8](repeating: 0, count: size)
      let base = UInt8(truncatingIfNeeded: seed)
      for i in 0..<size { out[i] = base &+ UInt8(i % 251) }
      return out
    case "mixed":
      var out = [UInt8]()
      out.reserveCapacity(size)
      var rng = SeededRandom(seed: seed)
      var block = 0
      while out.count < size {
        let n = min(65536, size - out.count)
        switch block % 4 {
        case 1: out += random(n, seed: rng.next())
        case 3: out += [UInt8](repeating: 0, count: n)
        default: out += lorem(n, seed: rng.next())
        }
        block += 1
      }
      return out
    default: throw ScenarioError("unknown data kind \(kind) in \(spec)")
    }
  }

  static func random(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    var out = [UInt8](repeating: 0, count: n)
    out.withUnsafeMutableBytes { raw in
      let words = n / 8
      let p = raw.baseAddress!
      for i in 0..<words { p.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
      var last = rng.next()
      for i in words * 8..<n {
        raw[i] = UInt8(truncatingIfNeeded: last)
        last >>= 8
      }
    }
    return out
  }

  /// Word text: slices of the corpus at seeded offsets, each piece 4 KiB at most, with a
  /// seeded line number so different seeds give different bytes.
  static func lorem(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    var out = [UInt8]()
    out.reserveCapacity(n + 64)
    while out.count < n {
      out += Array("\(rng.next() % 1_000_000) ".utf8)
      let start = Int(rng.next() % UInt64(corpus.count - 4096))
      let len = min(4096, n - out.count)
      if len > 0 { out += corpus[start..<start + len] }
    }
    return Array(out.prefix(n))
  }
}
