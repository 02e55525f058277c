// h2bench cluster: benchmarks of the cluster commands (`h2resync check`, `diff`,
// `resync`) on generated 3-node clusters, each ratio measured in the same run.
//
//   h2bench cluster gensrc DIR [--files N] [--dirs N] [--bytes SIZE] [--extra-percent P]
//   h2bench cluster overlay IMAGE --pfs NAME SRC [--time SECONDS]
//   h2bench cluster exec --label L --log FILE -- COMMAND...
//   h2bench cluster diffcheck IMAGE... --h2resync BIN [--runs N] --json-out FILE
//   h2bench cluster resync --focus IMAGE IMAGE... --h2resync BIN --workdir DIR [--runs N] [--cache warm|hot|cold]
//   h2bench cluster report --manifest F --setup F --diffcheck F --resync F
//
// tools/bench-cluster.sh drives them; see its header for the whole procedure. Every
// measured command runs as a child (posix_spawn + wait4), so its wall time and CPU time
// are its own, and its peak RSS too when GNU time is installed (see spawnMeasured).

import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Children measured with wait4

struct Spawned: Codable {
  var argv: [String]
  var seconds: Double
  /// The exit code, or 128 + signal.
  var status: Int32
  var peakRSSKiB: UInt64
  var userSeconds: Double
  var systemSeconds: Double
}

/// GNU time, when installed: the peak RSS of a child is read through it (see
/// `spawnMeasured`).
private let gnuTime: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/time") ? "/usr/bin/time" : nil
nonisolated(unsafe) private var rssFiles = 0

/// Runs `argv` (PATH lookup), stdout/stderr to the given files (else inherited), and
/// returns its wall time and its own rusage (wait4). The peak RSS comes from GNU time
/// where it is installed: posix_spawn starts a child on this process's memory (vfork),
/// and Linux then counts this process's own peak in the child's ru_maxrss (every child
/// of a run reported the same 152 MiB); GNU time forks the command from its own small
/// process. Without it the figure is an upper bound.
func spawnMeasured(_ argv: [String], stdout: String? = nil, stderr: String? = nil) throws -> Spawned {
  if let gnuTime {
    rssFiles += 1
    let rssFile = (NSTemporaryDirectory() as NSString).appendingPathComponent("h2bench-rss-\(getpid())-\(rssFiles)")
    defer { try? FileManager.default.removeItem(atPath: rssFile) }
    var r = try spawnWaited([gnuTime, "-f", "%M", "-o", rssFile, "--"] + argv, stdout: stdout, stderr: stderr)
    r.argv = argv
    if let text = try? String(contentsOfFile: rssFile, encoding: .utf8), let kib = text.split(separator: "\n").last.flatMap({ UInt64($0) }) {
      r.peakRSSKiB = kib
    }
    return r
  }
  return try spawnWaited(argv, stdout: stdout, stderr: stderr)
}

private func spawnWaited(_ argv: [String], stdout: String?, stderr: String?) throws -> Spawned {
  var fa = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&fa)
  defer { posix_spawn_file_actions_destroy(&fa) }
  if let stdout { posix_spawn_file_actions_addopen(&fa, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
  if let stderr { posix_spawn_file_actions_addopen(&fa, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
  let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
  defer { for p in cargs { free(p) } }
  var pid: pid_t = 0
  let t0 = now()
  let rc = posix_spawnp(&pid, argv[0], &fa, nil, cargs, environ)
  guard rc == 0 else { throw BenchError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
  var status: Int32 = 0
  var ru = rusage()
  while wait4(pid, &status, 0, &ru) < 0 {
    guard errno == EINTR else { throw BenchError("wait4 \(argv[0]): \(String(cString: strerror(errno)))") }
  }
  let secs = seconds(since: t0)
  let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
  func tv(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
  return Spawned(argv: argv, seconds: secs, status: code, peakRSSKiB: UInt64(ru.ru_maxrss),
                 userSeconds: tv(ru.ru_utime), systemSeconds: tv(ru.ru_stime))
}

func readText(_ path: String) -> String {
  (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

func tail(_ path: String, lines: Int = 5) -> String {
  readText(path).split(separator: "\n").suffix(lines).joined(separator: "\n")
}

func note(_ s: String) { FileHandle.standardError.write(Data("h2bench cluster: \(s)\n".utf8)) }

func writeJSON<T: Encodable>(_ value: T, to path: String?) throws -> String {
  let enc = JSONEncoder()
  enc.outputFormatting = [.prettyPrinted, .sortedKeys]
  enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  let data = try enc.encode(value)
  if let path { try data.write(to: URL(fileURLWithPath: path)) }
  return String(decoding: data, as: UTF8.self)
}

func readJSON<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
  let dec = JSONDecoder()
  dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  return try dec.decode(type, from: try Data(contentsOf: URL(fileURLWithPath: path)))
}

func parseSizeArg(_ s: String) throws -> UInt64 {
  let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
  if let u = s.uppercased().last, let m = units[u], let n = Double(s.dropLast()) { return UInt64(n * Double(m)) }
  guard let n = UInt64(s) else { throw ValidationError("bad size \(s)") }
  return n
}

func fmtMiB(_ kib: UInt64) -> String { String(format: "%.1f MiB", Double(kib) / 1024) }

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
    var m = GenManifest(seed: seed, files: files, dirs: dirs, targetBytes: target, bigFiles: bigFiles,
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
      if col > 72 { corpus.append(10); col = 0 } else { corpus.append(32) }
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
      let a = r.next(), b = r.next()
      let bucket = a % 100
      let size = bucket < 60 ? b % 4096 : bucket < 90 ? 4096 + b % 12288 : 16384 + b % 49152
      let text = (a >> 32) & 1 == 0
      let extra = Int((a >> 40) % 100) < extraPercent
      let path = "\(dir)/\(extra ? "extra" : baseTree(i % dirs))/\(leaves[i % dirs])/f\(String(format: "%06d", i)).\(text ? "txt" : "bin")"
      try writeFile(path, size: size, textChunk: { _ in text }, r: &r)
      smallBytes += size
      if extra { m.extraFiles += 1; m.extraBytes += size } else { m.baseFiles += 1; m.baseBytes += size }
      if i % 20000 == 0 { note("gensrc: \(i)/\(files) files") }
    }
    let each = max(1 << 20, (target > smallBytes ? target - smallBytes : 0) / UInt64(bigFiles))
    let bigExtra = Int((Double(bigFiles * extraPercent) / 100).rounded())
    for j in 0..<bigFiles {
      var r = SplitMix64(state: seed ^ 0xB16F_11E5 ^ UInt64(j))
      let size = each + UInt64(j) * 4099  // not block-aligned: the tail blocks matter too
      let extra = j >= bigFiles - bigExtra
      try writeFile("\(dir)/\(extra ? "extra" : bigBase)/big/big\(j).dat", size: size,
                    textChunk: { k in (k + j) % 2 == 0 }, r: &r)
      if extra { m.extraFiles += 1; m.extraBytes += size } else { m.baseFiles += 1; m.baseBytes += size }
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

// MARK: - Overlay: add a tree's missing files to a PFS

struct Overlay: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "overlay",
    abstract: "Add SRC's files to the PFS, descending into directories that exist already (as `populate` does, in one transaction per --batch inodes).")
  @Argument var image: String
  @Option var pfs: String
  @Argument var source: String
  @Option(help: "ctime of new inodes, seconds since the epoch (mtimes come from SRC).") var time: UInt64
  @Option var batch = 50_000

  func run() throws {
    let t0 = now()
    let stamp = time * 1_000_000
    // Optional so that a batch's Transaction (and its image lock) is released before the
    // next one opens the image.
    var tx: Transaction? = try Transaction(path: image)
    var ed: PFSEditor! = try tx!.editor(pfs: pfs)  // Safe: just made.
    var pending: [(String, String)] = [(source, "")]
    var dirsToStamp: [(String, stat)] = []
    var created = 0, files = 0
    var bytes: UInt64 = 0
    func us(_ t: timespec) -> UInt64 { UInt64(max(0, t.tv_sec)) * 1_000_000 + UInt64(max(0, t.tv_nsec)) / 1000 }
    func stampDirs() throws {
      for (dir, st) in dirsToStamp {
        let inum = try ed.resolve(dir)
        try ed.updateMeta(inum) { $0.mtime = us(st.st_mtim); $0.mode = UInt32(st.st_mode & 0o7777) }
      }
      dirsToStamp.removeAll()
    }
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while let (src, dir) = pending.popLast() {
      var dst = stat()
      lstat(src, &dst)
      dirsToStamp.append((dir, dst))
      let dirInum = try ed.resolve(dir)
      for name in try FileManager.default.contentsOfDirectory(atPath: src).sorted() {
        let path = src + "/" + name
        let rel = dir.isEmpty ? name : dir + "/" + name
        let bname = Array(name.utf8)
        var st = stat()
        guard lstat(path, &st) == 0 else { throw BenchError("cannot stat \(path)") }
        let mode = UInt32(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
          if let e = try ed.lookup(bname, in: dirInum) {
            guard e.type == ObjectType.directory.rawValue else { throw BenchError("\(rel) exists and is not a directory") }
          } else {
            try ed.create(bname, in: dirInum, type: .directory, mode: mode, time: stamp)
            created += 1
          }
          pending.append((path, rel))
        case S_IFREG:
          guard try ed.lookup(bname, in: dirInum) == nil else { throw BenchError("\(rel) exists already") }
          let inum = try ed.create(bname, in: dirInum, type: .regularFile, mode: mode, time: stamp)
          let fd = open(path, O_RDONLY)
          guard fd >= 0 else { throw BenchError("open \(path)") }
          var off: UInt64 = 0
          while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(off)) }
            guard n >= 0 else { close(fd); throw BenchError("read \(path)") }
            if n == 0 { break }
            try ed.write(inum, at: off, Array(buf[0..<n]))
            off += UInt64(n)
          }
          close(fd)
          let mt = us(st.st_mtim)
          try ed.updateMeta(inum) { $0.mtime = mt }
          created += 1
          files += 1
          bytes += off
        default:
          throw BenchError("\(path): only directories and regular files are overlaid")
        }
        if created > 0, created % batch == 0 {
          try stampDirs()
          _ = try tx!.commit()  // Safe: set below right after each release.
          ed = nil
          tx = nil
          tx = try Transaction(path: image)
          ed = try tx!.editor(pfs: pfs)
        }
      }
    }
    try stampDirs()
    _ = try tx!.commit()  // Safe: never nil here.
    print("overlay \(image): \(files) files, \(bytes) bytes in \(String(format: "%.1f", seconds(since: t0))) s")
  }
}

// MARK: - exec: one timed command, logged as a JSON line

struct SetupStep: Codable {
  var label: String
  var run: Spawned
}

struct Exec: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "exec",
    abstract: "Run a command (stdio inherited), append {label, seconds, peak RSS, status} to --log as one JSON line, exit with its status.")
  @Option var label: String
  @Option var log: String
  @Argument(parsing: .postTerminator) var command: [String]

  func run() throws {
    guard !command.isEmpty else { throw ValidationError("give the command after --") }
    let r = try spawnMeasured(command)
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    var line = try enc.encode(SetupStep(label: label, run: r))
    line.append(10)
    let fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw BenchError("cannot open \(log)") }
    _ = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    close(fd)
    note(String(format: "%@: %.2f s, peak RSS %@, exit %d", label, r.seconds, fmtMiB(r.peakRSSKiB), r.status))
    if r.status != 0 { throw ExitCode(r.status) }
  }
}

// MARK: - (A) diff / check against reading the allocated extents

struct Runs: Codable {
  var seconds: [Double]
  var median: Double
  var peakRSSKiB: UInt64
  var statuses: [Int32]
  var userSeconds: Double
  var systemSeconds: Double
  init(_ rs: [Spawned]) {
    seconds = rs.map(\.seconds)
    median = h2bench.median(seconds)
    peakRSSKiB = rs.map(\.peakRSSKiB).max() ?? 0
    statuses = rs.map(\.status)
    userSeconds = h2bench.median(rs.map(\.userSeconds))
    systemSeconds = h2bench.median(rs.map(\.systemSeconds))
  }
}

/// Drops the page cache (needs root); false when it cannot.
func dropCaches() -> Bool {
  sync()
  let fd = open("/proc/sys/vm/drop_caches", O_WRONLY)
  guard fd >= 0 else { return false }
  defer { close(fd) }
  return Glibc.write(fd, "3\n", 2) == 2
}

/// Bytes the HAMMER2 allocator holds in use (allocator_size - allocator_free).
func inUseBytes(_ image: String) -> UInt64? {
  guard let v = try? Volume.open(path: image) else { return nil }
  let h = v.header
  return h.allocatorSize > h.allocatorFree ? h.allocatorSize - h.allocatorFree : 0
}

struct CacheModeResult: Codable {
  /// warm: every image's allocated extents read once before, nothing dropped;
  /// cold: the page cache dropped before every measured command.
  var cache: String
  /// Reading every image's allocated extents (pread, 1 MiB) one after the other, in one child per image.
  var baselineSeconds: [Double]
  var baselineMedian: Double
  var baselineMBps: Double
  var baselinePeakRSSKiB: UInt64
  /// The issue's literal baseline: `cat IMAGE... > /dev/null` (reads the holes too);
  /// its rate is allocated bytes / seconds, like check's.
  var cat: Runs
  var catMBps: Double
  var checkOverCat: Double
  var check: Runs
  var checkMBps: Double
  var checkOverBaseline: Double
  var diff: Runs
  var diffSpeedupOverCheck: Double
}

struct DiffCheckReport: Codable {
  var images: [String]
  var allocatedBytes: [UInt64]
  var inUseBytes: [UInt64?]
  var runs: Int
  var modes: [CacheModeResult]
  var checkLine: String
  var diffLines: Int
  /// From an extra, untimed `diff --json`.
  var diffDifferences: Int?
  var diffBytesChecked: UInt64?
  var checkCommand: [String]
  var diffCommand: [String]
}

struct DiffCheck: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diffcheck",
    abstract: "Time reading the images' allocated extents, `h2resync check` (deep) and `h2resync diff` (fast), interleaved, warm and/or cold cache.")
  @Argument var images: [String]
  @Option var h2resync: String
  @Option var runs = 3
  @Option(help: "warm, cold (page cache dropped before each command; needs root) or both.") var cache = "both"
  @Option var lockFile = "/tmp/h2bench-cluster-check.lock"
  @Option(help: "Where the commands' output goes.") var workdir = "/tmp"
  @Option var jsonOut: String?

  func validate() throws {
    guard ["warm", "cold", "both"].contains(cache) else { throw ValidationError("--cache: warm, cold or both") }
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
  }

  func run() throws {
    let alloc = images.map(allocatedBytes)
    let total = alloc.reduce(0, +)
    let checkArgv = [h2resync, "check"] + images + ["--quiet", "--lock-file", lockFile]
    let diffArgv = [h2resync, "diff"] + images
    let out = workdir + "/h2bench-cluster"
    var modes: [CacheModeResult] = []
    var wanted = cache == "both" ? ["warm", "cold"] : [cache]
    if wanted.contains("cold"), !dropCaches() {
      note("cannot drop the page cache (not root?): cold runs skipped")
      wanted.removeAll { $0 == "cold" }
    }
    for mode in wanted {
      let cold = mode == "cold"
      if !cold {
        note("warm-up: reading the allocated extents of \(images.count) images (\(fmtBytes(total)))")
        for i in images { _ = try readExtents(i) }
      }
      func prepare() { if cold { _ = dropCaches() } else { sync() } }
      var base: [Double] = []
      var baseRSS: UInt64 = 0
      var checks: [Spawned] = []
      var diffs: [Spawned] = []
      var cats: [Spawned] = []
      for run in 1...runs {
        // cat first: it fills the page cache with the images' holes too (and can push
        // their data out), so warm mode reads the extents once more, untimed, before
        // the timed baseline.
        prepare()
        let k = try spawnMeasured(["cat"] + images, stdout: "/dev/null", stderr: out + ".cat.err")
        cats.append(k)
        note(String(format: "%@ run %d: cat %.2f s", mode, run, k.seconds))
        if !cold { for i in images { _ = try readExtents(i) } }
        var s = 0.0
        prepare()
        for i in images {
          let r = try runChild(.extents, image: i, pfs: nil, tmpdir: workdir)
          s += r.seconds
          baseRSS = max(baseRSS, r.peakRSSKiB)
        }
        base.append(s)
        note(String(format: "%@ run %d: extents %.2f s", mode, run, s))
        prepare()
        let c = try spawnMeasured(checkArgv, stdout: out + ".check.out", stderr: out + ".check.err")
        guard c.status <= 1 else { throw BenchError("check exited \(c.status): \(tail(out + ".check.err"))\(tail(out + ".check.out"))") }
        checks.append(c)
        note(String(format: "%@ run %d: check %.2f s (exit %d, peak RSS %@)", mode, run, c.seconds, c.status, fmtMiB(c.peakRSSKiB)))
        prepare()
        let d = try spawnMeasured(diffArgv, stdout: out + ".diff.out", stderr: out + ".diff.err")
        guard d.status <= 1 else { throw BenchError("diff exited \(d.status): \(tail(out + ".diff.err"))") }
        diffs.append(d)
        note(String(format: "%@ run %d: diff %.3f s (exit %d, peak RSS %@)", mode, run, d.seconds, d.status, fmtMiB(d.peakRSSKiB)))
      }
      let bm = median(base)
      let baseRate = Double(total) / bm / 1e6
      let ck = Runs(checks)
      let df = Runs(diffs)
      let checkRate = Double(total) / ck.median / 1e6
      let ct = Runs(cats)
      let catRate = Double(total) / ct.median / 1e6
      modes.append(CacheModeResult(
        cache: mode, baselineSeconds: base, baselineMedian: bm, baselineMBps: baseRate, baselinePeakRSSKiB: baseRSS,
        cat: ct, catMBps: catRate, checkOverCat: checkRate / catRate,
        check: ck, checkMBps: checkRate, checkOverBaseline: checkRate / baseRate, diff: df,
        diffSpeedupOverCheck: ck.median / df.median))
    }
    let j = try spawnMeasured(diffArgv + ["--json"], stdout: out + ".diff.json", stderr: out + ".diff.err")
    var differences: Int?
    var bytesChecked: UInt64?
    if j.status <= 1, let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".diff.json"))) as? [String: Any],
      let summary = obj["summary"] as? [String: Any]
    {
      differences = summary["differences"] as? Int
      bytesChecked = (summary["bytes_checked"] as? [String: Any])?.values.compactMap { ($0 as? NSNumber)?.uint64Value }.reduce(0, +)
    }
    let rep = DiffCheckReport(
      images: images, allocatedBytes: alloc, inUseBytes: images.map(inUseBytes), runs: runs, modes: modes,
      checkLine: readText(out + ".check.out").split(separator: "\n").first.map(String.init) ?? "",
      diffLines: readText(out + ".diff.out").split(separator: "\n").count,
      diffDifferences: differences, diffBytesChecked: bytesChecked, checkCommand: checkArgv, diffCommand: diffArgv)
    print(try writeJSON(rep, to: jsonOut))
  }
}

// MARK: - (B) resync against cp --sparse=always

struct NodeWrites: Codable {
  var image: String
  var paths: Int
  var writes: Int
  var bytes: UInt64
}

struct ResyncRun: Codable {
  var setupSeconds: Double
  var resync: Spawned
  var nodes: [NodeWrites]
  var afterResyncInSync: Bool
  var cp: Spawned
  var fsync: Spawned
}

struct ResyncReport: Codable {
  var images: [String]
  var focus: String
  var allocatedBytes: [UInt64]
  /// Per the volume headers' freemap totals, before the resync.
  var inUseBytes: [UInt64?]
  var runs: [ResyncRun]
  var resync: Runs
  var cp: Runs
  var cpPlusFsyncMedian: Double
  var speedupVsCp: Double
  var speedupVsCpFsync: Double
  var bytesWritten: UInt64
  var writes: Int
  /// From an untimed `diff --json` of the fresh copies before the first resync.
  var plannedBytesToWrite: UInt64?
  var plannedDifferences: Int?
  var resyncCommand: [String]
  /// "warm" (the fresh copies as written, in the page cache as far as it holds them),
  /// "hot" (their allocated extents read, untimed, before `resync`, the focus's before
  /// `cp`) or "cold" (the page cache dropped before `resync` and before `cp`). Absent: warm.
  var cache: String?
}

struct ResyncBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "resync",
    abstract: "Time `h2resync resync --yes --no-snapshot` on fresh copies of the images against `cp --sparse=always FOCUS COPY`.")
  @Argument var images: [String]
  @Option var focus: String
  @Option var h2resync: String
  @Option(help: "Where the fresh copies go (same file system as the originals' copies).") var workdir: String
  @Option var runs = 3
  @Option var jsonOut: String?
  @Option(help: "warm (the fresh copies as the page cache holds them), hot (every allocated extent of the images read, untimed, before resync and the focus's before cp) or cold (the page cache dropped before resync and before cp; needs root).")
  var cache = "warm"

  func run() throws {
    let fm = FileManager.default
    let cold = cache == "cold", hot = cache == "hot"
    if cold, !dropCaches() { throw BenchError("--cache cold: cannot drop the page cache (not root?)") }
    try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
    let work = images.map { workdir + "/" + ($0 as NSString).lastPathComponent }
    guard let fi = images.firstIndex(of: focus) else { throw ValidationError("--focus must be one of the images") }
    guard Set(work).count == work.count else { throw ValidationError("the images need distinct file names") }
    let argv = [h2resync, "resync", "--yes", "--no-snapshot"] + work
    let out = workdir + "/h2bench-cluster"
    var results: [ResyncRun] = []
    var planned: UInt64?
    var plannedDiffs: Int?
    let copy = workdir + "/focus-copy.img"
    for run in 1...runs {
      let t0 = now()
      for (src, dst) in zip(images, work) {
        let c = try spawnMeasured(["cp", "--sparse=always", src, dst])
        guard c.status == 0 else { throw BenchError("cp \(src) \(dst) failed") }
      }
      sync()
      let setup = seconds(since: t0)
      if run == 1 {
        let j = try spawnMeasured([h2resync, "diff"] + work + ["--json"], stdout: out + ".plan.json", stderr: out + ".plan.err")
        if j.status <= 1, let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".plan.json"))) as? [String: Any],
          let summary = obj["summary"] as? [String: Any]
        {
          plannedDiffs = summary["differences"] as? Int
          planned = (summary["bytes_to_write"] as? [String: Any])?.values.compactMap { ($0 as? NSNumber)?.uint64Value }.reduce(0, +)
        }
      }
      if cold { _ = dropCaches() }
      // Hot: what each command reads is in the page cache, whatever the copies evicted.
      if hot { for w in work { _ = try readExtents(w) } }
      let r = try spawnMeasured(argv, stdout: out + ".resync.out", stderr: out + ".resync.err")
      guard r.status == 0 || r.status == 1 else {
        throw BenchError("resync exited \(r.status): \(tail(out + ".resync.err"))\n\(tail(out + ".resync.out"))")
      }
      var nodes: [NodeWrites] = []
      for line in readText(out + ".resync.out").split(separator: "\n") where line.hasPrefix("resynced ") {
        // resynced IMAGE: P paths, W writes, B bytes, volume header slot S
        let parts = line.dropFirst("resynced ".count).split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { continue }
        let nums = parts[1].split(separator: ",").map { $0.split(separator: " ") }
        func num(_ unit: String) -> UInt64 { nums.first { $0.count == 2 && $0[1] == unit }.flatMap { UInt64($0[0]) } ?? 0 }
        nodes.append(NodeWrites(image: String(parts[0]), paths: Int(num("paths")), writes: Int(num("writes")), bytes: num("bytes")))
      }
      let v = try spawnMeasured([h2resync, "diff"] + work, stdout: out + ".after.out", stderr: out + ".after.err")
      if cold { _ = dropCaches() } else { sync() }
      if hot { _ = try readExtents(work[fi]) }
      let cp = try spawnMeasured(["cp", "--sparse=always", work[fi], copy])
      guard cp.status == 0 else { throw BenchError("cp of the focus failed") }
      let fs = try spawnMeasured(["sync", copy])
      try? fm.removeItem(atPath: copy)
      note(String(format: "run %d: resync %.2f s (exit %d, peak RSS %@, %llu bytes written), cp %.2f s + fsync %.2f s; in sync after: %@",
                  run, r.seconds, r.status, fmtMiB(r.peakRSSKiB), nodes.reduce(0) { $0 + $1.bytes }, cp.seconds, fs.seconds,
                  v.status == 0 ? "yes" : "NO (diff exit \(v.status))"))
      results.append(ResyncRun(setupSeconds: setup, resync: r, nodes: nodes, afterResyncInSync: v.status == 0, cp: cp, fsync: fs))
    }
    for w in work { try? fm.removeItem(atPath: w) }
    let rs = Runs(results.map(\.resync))
    let cps = Runs(results.map(\.cp))
    let cpf = median(results.map { $0.cp.seconds + $0.fsync.seconds })
    let last = results.last!  // Safe: runs >= 1.
    let rep = ResyncReport(
      images: images, focus: focus, allocatedBytes: images.map(allocatedBytes), inUseBytes: images.map(inUseBytes), runs: results, resync: rs, cp: cps,
      cpPlusFsyncMedian: cpf, speedupVsCp: cps.median / rs.median, speedupVsCpFsync: cpf / rs.median,
      bytesWritten: last.nodes.reduce(0) { $0 + $1.bytes }, writes: last.nodes.reduce(0) { $0 + $1.writes },
      plannedBytesToWrite: planned, plannedDifferences: plannedDiffs, resyncCommand: argv, cache: cache)
    print(try writeJSON(rep, to: jsonOut))
  }

  func validate() throws {
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    guard ["warm", "hot", "cold"].contains(cache) else { throw ValidationError("--cache: warm, hot or cold") }
  }
}

// MARK: - Report

struct FullReport: Codable {
  var manifest: GenManifest
  var setup: [SetupStep]
  var diffcheck: DiffCheckReport?
  var resync: ResyncReport?
}

struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report", abstract: "Print the table and the combined JSON of a bench-cluster.sh run.")
  @Option var manifest: String
  @Option var setup: String
  @Option var diffcheck: String?
  @Option var resync: String?
  @Option var jsonOut: String?

  func run() throws {
    let m = try readJSON(GenManifest.self, manifest)
    let steps = try readText(setup).split(separator: "\n").map { try JSONDecoder().decode(SetupStep.self, from: Data($0.utf8)) }
    let dc = try diffcheck.map { try readJSON(DiffCheckReport.self, $0) }
    let rs = try resync.map { try readJSON(ResyncReport.self, $0) }
    let full = FullReport(manifest: m, setup: steps, diffcheck: dc, resync: rs)
    func f(_ x: Double, _ d: Int = 2) -> String { String(format: "%.\(d)f", x) }
    func ok(_ c: Bool) -> String { c ? "ok" : "MISSED" }
    print("== source tree: \(m.baseFiles + m.extraFiles) files, \(fmtBytes(m.baseBytes + m.extraBytes)) (\(fmtBytes(m.textBytes)) text, \(fmtBytes(m.randomBytes)) random), \(m.directories) directories; extra (10%-style) part: \(m.extraFiles) files, \(fmtBytes(m.extraBytes))")
    print("== setup (each a child; peak RSS as in spawnMeasured)")
    // Steps of one label with a .N suffix (the parts of a populate) are summed.
    var merged: [SetupStep] = []
    var parts: [String: Int] = [:]
    for s in steps {
      let label = s.label.range(of: #"\.\d+$"#, options: .regularExpression).map { String(s.label[..<$0.lowerBound]) } ?? s.label
      parts[label, default: 0] += 1
      if let i = merged.firstIndex(where: { $0.label == label }) {
        merged[i].run.seconds += s.run.seconds
        merged[i].run.userSeconds += s.run.userSeconds
        merged[i].run.systemSeconds += s.run.systemSeconds
        merged[i].run.peakRSSKiB = max(merged[i].run.peakRSSKiB, s.run.peakRSSKiB)
      } else {
        merged.append(SetupStep(label: label, run: s.run))
      }
    }
    for s in merged {
      var rate = (parts[s.label] ?? 1) > 1 ? "  (\(parts[s.label]!) runs, summed)" : ""
      if s.label.hasPrefix("populate") {
        rate += String(format: "  %.0f files/s, %.1f MB/s", Double(m.baseFiles) / s.run.seconds, Double(m.baseBytes) / s.run.seconds / 1e6)
      } else if s.label.hasPrefix("overlay") {
        rate += String(format: "  %.0f files/s, %.1f MB/s", Double(m.extraFiles) / s.run.seconds, Double(m.extraBytes) / s.run.seconds / 1e6)
      } else if s.label.hasPrefix("gensrc") {
        rate += s.run.seconds < m.seconds / 2
          ? String(format: "  (reused; generated earlier in %.1f s, %.0f files/s)", m.seconds, Double(m.files) / m.seconds)
          : String(format: "  %.0f files/s", Double(m.files) / s.run.seconds)
      }
      print("  \(pad(s.label, 22, left: true)) \(pad(f(s.run.seconds, 1) + " s", 10)) \(pad(fmtMiB(s.run.peakRSSKiB), 11))\(rate)")
    }
    if let d = dc {
      print("== (A) diff/check, 3 nodes, \(fmtBytes(d.allocatedBytes.reduce(0, +))) allocated in all (\(fmtBytes(d.inUseBytes.compactMap { $0 }.reduce(0, +))) in use per the freemaps), median of \(d.runs)")
      print("  \(pad("cache", 5, left: true)) \(pad("what", 26, left: true)) \(pad("sec", 8)) \(pad("MB/s", 8)) \(pad("peak RSS", 11))  ratio")
      for m in d.modes {
        print("  \(pad(m.cache, 5, left: true)) \(pad("read allocated extents", 26, left: true)) \(pad(f(m.baselineMedian), 8)) \(pad(f(m.baselineMBps, 0), 8)) \(pad(fmtMiB(m.baselinePeakRSSKiB), 11))  1.00")
        print("  \(pad(m.cache, 5, left: true)) \(pad("cat IMAGE... >/dev/null", 26, left: true)) \(pad(f(m.cat.median), 8)) \(pad(f(m.catMBps, 0), 8)) \(pad(fmtMiB(m.cat.peakRSSKiB), 11))  check = \(f(m.checkOverCat)) of cat's rate (allocated bytes / time; cat also reads the holes)")
        print("  \(pad(m.cache, 5, left: true)) \(pad("h2resync check (deep)", 26, left: true)) \(pad(f(m.check.median), 8)) \(pad(f(m.checkMBps, 0), 8)) \(pad(fmtMiB(m.check.peakRSSKiB), 11))  \(f(m.checkOverBaseline)) of baseline rate (goal >= 0.7: \(ok(m.checkOverBaseline >= 0.7)))")
        print("  \(pad(m.cache, 5, left: true)) \(pad("h2resync diff (fast)", 26, left: true)) \(pad(f(m.diff.median, 3), 8)) \(pad("-", 8)) \(pad(fmtMiB(m.diff.peakRSSKiB), 11))  \(f(m.diffSpeedupOverCheck, 1))x faster than check (goal >= 20: \(ok(m.diffSpeedupOverCheck >= 20)))")
      }
      let peakCheck = d.modes.map(\.check.peakRSSKiB).max() ?? 0, peakDiff = d.modes.map(\.diff.peakRSSKiB).max() ?? 0
      print("  peak RSS goal < 200 MB: check \(ok(Double(peakCheck) * 1024 < 200e6)), diff \(ok(Double(peakDiff) * 1024 < 200e6)); diff: \(d.diffDifferences.map(String.init) ?? "?") differences, \(d.diffBytesChecked.map(fmtBytes) ?? "?") read")
      print("  check said: \(d.checkLine)")
    }
    if let r = rs {
      let used = r.inUseBytes.map { $0 ?? 0 }
      let fi = r.images.firstIndex(of: r.focus)!  // Safe: checked when measured.
      let missingPhys = used[fi] > (used.min() ?? 0) ? used[fi] - used.min()! : 0
      print("== (B) resync of a node lacking the extra part, fresh copies each run, \(r.cache ?? "warm") cache, median of \(r.runs.count)")
      print("  \(pad("what", 28, left: true)) \(pad("sec", 8)) \(pad("peak RSS", 11))  ratio")
      print("  \(pad("h2resync resync", 28, left: true)) \(pad(f(r.resync.median), 8)) \(pad(fmtMiB(r.resync.peakRSSKiB), 11))  1.00")
      print("  \(pad("cp --sparse=always FOCUS", 28, left: true)) \(pad(f(r.cp.median), 8)) \(pad(fmtMiB(r.cp.peakRSSKiB), 11))  resync \(f(r.speedupVsCp, 1))x faster (goal >= 5: \(ok(r.speedupVsCp >= 5)))")
      print("  \(pad("cp + fsync of the copy", 28, left: true)) \(pad(f(r.cpPlusFsyncMedian), 8)) \(pad("-", 11))  resync \(f(r.speedupVsCpFsync, 1))x faster")
      print("  bytes written: \(fmtBytes(r.bytesWritten)) (\(r.writes) writes) vs missing: \(fmtBytes(m.extraBytes)) logical / \(fmtBytes(missingPhys)) more in use on the focus than on the stale node (freemap); ratio \(f(Double(r.bytesWritten) / Double(max(1, m.extraBytes)), 2)) / \(f(Double(r.bytesWritten) / Double(max(1, missingPhys)), 2)); diff planned \(r.plannedBytesToWrite.map(fmtBytes) ?? "?") for \(r.plannedDifferences.map(String.init) ?? "?") paths")
      print("  in sync after every resync: \(r.runs.allSatisfy(\.afterResyncInSync) ? "yes" : "NO"); peak RSS goal < 200 MB: \(ok(Double(r.resync.peakRSSKiB) * 1024 < 200e6))")
    }
    let text = try writeJSON(full, to: jsonOut)
    if jsonOut == nil { print(text) }
  }
}

struct ClusterBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cluster",
    abstract: "Benchmarks of h2resync check/diff/resync on generated 3-node clusters (driven by tools/bench-cluster.sh).",
    subcommands: [GenSrc.self, Overlay.self, Exec.self, DiffCheck.self, ResyncBench.self, SeparateBench.self, RealSizeBench.self, RealSizeCompare.self, ReportCommand.self])
}
