import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Deterministic source tree

struct SplitMix64 {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

struct GenManifest: Codable {
  var seed: UInt64
  var files: Int
  var dirs: Int
  var targetBytes: UInt64
  var bigFiles: Int
  var extraPercent: Int
  var mtime: Int
  /// base/ is split into base.0 ... base.(parts-1), by top-level directory, one
  /// `h2mkimage populate` each (see bench-cluster.sh).
  var parts: Int = 1
  /// The tree all nodes get (`base/`) and the files only the up-to-date nodes get (`extra/`).
  var baseFiles: Int = 0
  var baseBytes: UInt64 = 0
  var extraFiles: Int = 0
  var extraBytes: UInt64 = 0
  var textBytes: UInt64 = 0
  var randomBytes: UInt64 = 0
  var directories: Int = 0
  var seconds: Double = 0
}

struct GenSrc: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gensrc",
    abstract: "Generate a deterministic source tree: DIR/base.N (every node) and DIR/extra (the files a stale node lacks).",
    discussion: """
      Leaf directories d000/s000.. hold the small files round-robin (60% < 4 KiB, 30% 4-16 KiB,
      10% 16-64 KiB; each text (slices of a word corpus, compressible) or random, 50/50);
      big/ holds --big-files big files (alternating 1 MiB text and random chunks) sized so
      the whole tree holds --bytes. A file goes to extra/ instead of base/ with probability
      --extra-percent (big files: that share of them, the last ones). Every mtime is --mtime.
      The base tree is split by top-level directory into --parts trees base.0, base.1, ...
      (big/ in the last), whose union is the tree every node holds: `h2mkimage populate`
      of each part into the PFS root keeps each populate under its --batch (a populate
      that commits a batch then fails on its own image lock) and its memory bounded.
      Writes DIR/manifest.json; if it exists with the same parameters, nothing is redone.
      """)

  @Argument var dir: String
  @Option(help: "Files in total (base + extra, big files included).") var files = 200_000
  @Option(help: "Leaf directories.") var dirs = 2000
  @Option(help: "Bytes of file data in total, e.g. 2200M.") var bytes = "2200M"
  @Option var bigFiles = 10
  @Option var extraPercent = 10
  @Option var seed: UInt64 = 1
  @Option var mtime = 1_700_000_000
  @Option(help: "Parts of the base tree (default: one per 40,000 files).") var parts: Int?

  func run() throws {
    let target = try parseSizeArg(bytes)
    let nparts = max(1, parts ?? (files + 39_999) / 40_000)
    var m = GenManifest(
      seed: seed, files: files, dirs: dirs, targetBytes: target, bigFiles: bigFiles,
      extraPercent: extraPercent, mtime: mtime, parts: nparts)
    let manifestPath = dir + "/manifest.json"
    if let old = try? readJSON(GenManifest.self, manifestPath), old.seed == seed, old.files == files, old.dirs == dirs,
      old.targetBytes == target, old.bigFiles == bigFiles, old.extraPercent == extraPercent, old.mtime == mtime, old.parts == nparts
    {
      note("\(dir): source tree already generated (manifest matches)")
      print(try writeJSON(old, to: nil))
      return
    }
    guard files > bigFiles, dirs >= 1 else { throw ValidationError("need more files than big files, and a directory") }
    let fm = FileManager.default
    if fm.fileExists(atPath: dir) { try fm.removeItem(atPath: dir) }
    let t0 = now()
    // A 16 MiB corpus of pseudo-words; text files are slices of it.
    var rng = SplitMix64(state: seed)
    var vocab: [[UInt8]] = []
    for _ in 0..<4096 {
      let len = 2 + Int(rng.next() % 9)
      vocab.append((0..<len).map { _ in UInt8(97 + rng.next() % 26) })
    }
    var corpus: [UInt8] = []
    corpus.reserveCapacity(16 << 20 + 256)
    var col = 0
    while corpus.count < 16 << 20 {
      let w = vocab[Int(rng.next() % 4096)]
      corpus += w
      col += w.count + 1
      if col > 72 {
        corpus.append(10)
        col = 0
      } else {
        corpus.append(32)
      }
    }
    let top = max(1, Int(Double(dirs).squareRoot() * 0.9))
    let leaves = (0..<dirs).map { i in String(format: "d%03d/s%03d", i % top, i / top) }
    func baseTree(_ leaf: Int) -> String { "base.\(leaf % top % nparts)" }
    let bigBase = "base.\(nparts - 1)"
    for (i, l) in leaves.enumerated() {
      try fm.createDirectory(atPath: "\(dir)/\(baseTree(i))/\(l)", withIntermediateDirectories: true)
      try fm.createDirectory(atPath: "\(dir)/extra/\(l)", withIntermediateDirectories: true)
    }
    for tree in [bigBase, "extra"] { try fm.createDirectory(atPath: "\(dir)/\(tree)/big", withIntermediateDirectories: true) }
    m.directories = Set(leaves.map { String($0.prefix(4)) }).count + leaves.count + 1
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
    defer { buf.deallocate() }
    let times = [timespec(tv_sec: mtime, tv_nsec: 0), timespec(tv_sec: mtime, tv_nsec: 0)]
    func writeFile(_ path: String, size: UInt64, textChunk: (Int) -> Bool, r: inout SplitMix64) throws {
      let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
      guard fd >= 0 else { throw BenchError("create \(path): \(String(cString: strerror(errno)))") }
      defer { close(fd) }
      var done: UInt64 = 0
      var k = 0
      while done < size {
        let n = Int(min(UInt64(buf.count), size - done))
        if textChunk(k) {
          let off = Int(r.next() % UInt64(corpus.count - n))
          corpus.withUnsafeBytes { c in buf.baseAddress!.copyMemory(from: c.baseAddress! + off, byteCount: n) }
          m.textBytes += UInt64(n)
        } else {
          let words = buf.bindMemory(to: UInt64.self)
          for i in 0..<(n + 7) / 8 { words[i] = r.next() }
          m.randomBytes += UInt64(n)
        }
        var w = 0
        while w < n {
          let c = Glibc.write(fd, buf.baseAddress! + w, n - w)
          if c < 0 {
            if errno == EINTR { continue }
            throw BenchError("write \(path): \(String(cString: strerror(errno)))")
          }
          w += c
        }
        done += UInt64(n)
        k += 1
      }
      guard futimens(fd, times) == 0 else { throw BenchError("futimens \(path)") }
    }
    let small = files - bigFiles
    var smallBytes: UInt64 = 0
    for i in 0..<small {
      var r = SplitMix64(state: seed ^ (UInt64(i + 1) &* 0xD1B5_4A32_D192_ED03))
      let a = r.next()
      let b = r.next()
      let bucket = a % 100
      let size = bucket < 60 ? b % 4096 : bucket < 90 ? 4096 + b % 12288 : 16384 + b % 49152
      let text = (a >> 32) & 1 == 0
      let extra = Int((a >> 40) % 100) < extraPercent
      let path = "\(dir)/\(extra ? "extra" : baseTree(i % dirs))/\(leaves[i % dirs])/f\(String(format: "%06d", i)).\(text ? "txt" : "bin")"
      try writeFile(path, size: size, textChunk: { _ in text }, r: &r)
      smallBytes += size
      if extra {
        m.extraFiles += 1
        m.extraBytes += size
      } else {
        m.baseFiles += 1
        m.baseBytes += size
      }
      if i % 20000 == 0 { note("gensrc: \(i)/\(files) files") }
    }
    let each = max(1 << 20, (target > smallBytes ? target - smallBytes : 0) / UInt64(bigFiles))
    let bigExtra = Int((Double(bigFiles * extraPercent) / 100).rounded())
    for j in 0..<bigFiles {
      var r = SplitMix64(state: seed ^ 0xB16F_11E5 ^ UInt64(j))
      let size = each + UInt64(j) * 4099 // not block-aligned: the tail blocks matter too
      let extra = j >= bigFiles - bigExtra
      try writeFile(
        "\(dir)/\(extra ? "extra" : bigBase)/big/big\(j).dat", size: size,
        textChunk: { k in (k + j) % 2 == 0 }, r: &r)
      if extra {
        m.extraFiles += 1
        m.extraBytes += size
      } else {
        m.baseFiles += 1
        m.baseBytes += size
      }
    }
    // Directory mtimes last, deepest first.
    var all: [String] = []
    for (i, l) in leaves.enumerated() { all += ["\(dir)/\(baseTree(i))/\(l)", "\(dir)/extra/\(l)"] }
    for (i, l) in leaves.enumerated() { all += ["\(dir)/\(baseTree(i))/\(l.prefix(4))", "\(dir)/extra/\(l.prefix(4))"] }
    all += ["\(dir)/\(bigBase)/big", "\(dir)/extra/big", "\(dir)/extra"] + (0..<nparts).map { "\(dir)/base.\($0)" }
    for p in all { guard utimensat(AT_FDCWD, p, times, 0) == 0 else { throw BenchError("utimensat \(p)") } }
    m.seconds = seconds(since: t0)
    let text = try writeJSON(m, to: manifestPath)
    print(text)
  }
}
