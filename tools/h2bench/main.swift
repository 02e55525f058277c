// h2bench: read-throughput benchmark for Hammer2Format against plain sequential reads.
//
//   h2bench read IMAGE... [--pfs NAME] [--runs N] [--json] [--phases cat,extents,walk,extract]
//
// Every measured phase runs in a fresh child process (this binary re-invoked with the
// hidden `phase` subcommand) so that its peak RSS (VmHWM, a high-water mark) belongs to
// that phase alone. All runs are warm-cache: before the first phase of an image, the
// parent reads all of it once, holes included (Linux caches a hole's zero pages too, so a
// cold 8 GiB sparse image costs cat ~30 s but a warm one ~1 s). The image's apparent
// size must fit in free RAM for the runs to stay warm.
import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// MARK: - Small helpers

/// SEEK_DATA / SEEK_HOLE (Swift's Glibc module does not always export them).
#if os(Linux)
  let seekData: Int32 = 3
  let seekHole: Int32 = 4
#else
  let seekData: Int32 = 4
  let seekHole: Int32 = 3
#endif

struct BenchError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

func now() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

#if os(Linux)
  let rusageSelf = Int32(RUSAGE_SELF.rawValue)
  let rusageChildren = Int32(RUSAGE_CHILDREN.rawValue)
#else
  let rusageSelf = RUSAGE_SELF
  let rusageChildren = RUSAGE_CHILDREN
#endif

func seconds(since t0: UInt64) -> Double { Double(now() - t0) / 1e9 }

/// Peak resident set size of this process in KiB: VmHWM from /proc/self/status, else
/// getrusage's ru_maxrss.
func peakRSSKiB() -> UInt64 {
  if let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
      let digits = line.dropFirst(6).filter(\.isNumber)
      if let v = UInt64(digits) { return v }
    }
  }
  var ru = rusage()
  getrusage(rusageSelf, &ru)
  #if os(Linux)
    return UInt64(ru.ru_maxrss)
  #else
    return UInt64(ru.ru_maxrss) / 1024
  #endif
}

/// The allocated (data) extents of a file, via SEEK_DATA/SEEK_HOLE. A file system
/// without hole reporting yields one extent covering the whole file.
func dataExtents(fd: Int32, size: Int64) -> [(Int64, Int64)] {
  var out: [(Int64, Int64)] = []
  var off: Int64 = 0
  while off < size {
    let d = lseek(fd, off_t(off), seekData)
    if d < 0 { break }  // ENXIO: no more data
    var h = lseek(fd, d, seekHole)
    if h < 0 { h = off_t(size) }
    out.append((Int64(d), Int64(h)))
    off = Int64(h)
  }
  return out
}

/// Reads every allocated extent of `path` (or, with `holes`, the whole file as cat
/// does) with pread in 1 MiB chunks; returns bytes read.
func readExtents(_ path: String, holes: Bool = false) throws -> UInt64 {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { throw BenchError("open \(path): \(String(cString: strerror(errno)))") }
  defer { close(fd) }
  var st = stat()
  guard fstat(fd, &st) == 0 else { throw BenchError("fstat \(path): \(String(cString: strerror(errno)))") }
  let chunk = 1 << 20
  let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
  defer { buf.deallocate() }
  var total: UInt64 = 0
  let ranges = holes ? [(Int64(0), Int64(st.st_size))] : dataExtents(fd: fd, size: Int64(st.st_size))
  for (start, end) in ranges {
    var off = start
    while off < end {
      let n = pread(fd, buf, min(chunk, Int(end - off)), off_t(off))
      if n < 0 {
        if errno == EINTR { continue }
        throw BenchError("pread \(path): \(String(cString: strerror(errno)))")
      }
      if n == 0 { break }
      off += Int64(n)
      total += UInt64(n)
    }
  }
  return total
}

func allocatedBytes(_ path: String) -> UInt64 {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { return 0 }
  defer { close(fd) }
  var st = stat()
  guard fstat(fd, &st) == 0 else { return 0 }
  return dataExtents(fd: fd, size: Int64(st.st_size)).reduce(0) { $0 + UInt64($1.1 - $1.0) }
}

func apparentSize(_ path: String) -> UInt64 {
  var st = stat()
  guard stat(path, &st) == 0 else { return 0 }
  return UInt64(st.st_size)
}

/// /dev/shm (tmpfs) when it is a writable directory, else the system temporary directory.
func defaultTmpdir() -> String {
  var isDir: ObjCBool = false
  if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDir), isDir.boolValue,
    access("/dev/shm", W_OK) == 0
  {
    return "/dev/shm"
  }
  return NSTemporaryDirectory()
}

/// This executable, for re-invoking itself.
func selfExecutable() -> URL {
  let argv0 = CommandLine.arguments[0]
  if argv0.contains("/") {
    return URL(fileURLWithPath: argv0).standardizedFileURL
  }
  // Invoked through PATH: use the kernel's idea of our binary.
  return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
}

// MARK: - One phase's result (one JSON line from a child)

struct PhaseResult: Codable {
  var phase: String
  var image: String
  var seconds: Double
  /// Bytes the phase read: cat = the file's apparent size (holes included), extents = the
  /// allocated bytes, walk/extract = `Volume.bytesRead` (media blocks read and verified).
  var bytes: UInt64
  /// Peak RSS in KiB (VmHWM of the child; for cat, the cat process's ru_maxrss).
  var peakRSSKiB: UInt64
  /// walk: blockrefs visited; extract: files extracted.
  var count: UInt64?
  /// extract: file bytes written (logical, holes excluded).
  var bytesWritten: UInt64?
  /// Findings (damage/warnings) met by walk or extract.
  var findings: Int?
  var pfs: String?
}

// MARK: - Phases (run in the child)

enum Phase: String, CaseIterable, ExpressibleByArgument {
  case idle, cat, extents, walk, extract
}

func runPhase(_ phase: Phase, image: String, pfs: String?, tmpdir: String, cacheMiB: Int?) throws -> PhaseResult {
  func openVolume() throws -> Volume {
    if let cacheMiB { return try Volume.open(path: image, cacheBudget: cacheMiB << 20) }
    return try Volume.open(path: image)
  }
  var r = PhaseResult(phase: phase.rawValue, image: image, seconds: 0, bytes: 0, peakRSSKiB: 0)
  switch phase {
  case .idle:
    r.peakRSSKiB = peakRSSKiB()
  case .cat:
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/cat")
    p.arguments = [image]
    guard let devnull = FileHandle(forWritingAtPath: "/dev/null") else { throw BenchError("cannot open /dev/null") }
    p.standardOutput = devnull
    let t0 = now()
    try p.run()
    p.waitUntilExit()
    r.seconds = seconds(since: t0)
    guard p.terminationStatus == 0 else { throw BenchError("cat \(image) exited \(p.terminationStatus)") }
    r.bytes = apparentSize(image)
    var ru = rusage()
    getrusage(rusageChildren, &ru)
    #if os(Linux)
      r.peakRSSKiB = UInt64(ru.ru_maxrss)
    #else
      r.peakRSSKiB = UInt64(ru.ru_maxrss) / 1024
    #endif
  case .extents:
    let t0 = now()
    r.bytes = try readExtents(image)
    r.seconds = seconds(since: t0)
    r.peakRSSKiB = peakRSSKiB()
  case .walk:
    let t0 = now()
    let volume = try openVolume()
    var walker = TopologyWalker(volume: volume, includeFreemap: true, decompressData: true)
    walker.walk { _ in }
    r.seconds = seconds(since: t0)
    r.bytes = volume.bytesRead
    r.count = walker.blockrefsVisited
    r.findings = walker.findings.count
    r.peakRSSKiB = peakRSSKiB()
  case .extract:
    var template = Array((tmpdir + "/h2bench-extract.XXXXXX").utf8CString)
    guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
      throw BenchError("mkdtemp in \(tmpdir): \(String(cString: strerror(errno)))")
    }
    defer { try? FileManager.default.removeItem(atPath: dir) }  // not timed
    let t0 = now()
    let volume = try openVolume()
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let info: PFSInfo
    if pfs == nil, list.filter({ $0.name != "LOCAL" }).count > 1 {
      info = list.first { $0.name != "LOCAL" }!  // Safe: count > 1.
    } else {
      info = try PFSReader.choose(list, name: pfs, image: image)
    }
    let reader = PFSReader(volume: volume, pfs: info)
    let stats = try reader.extract(to: dir + "/out", findings: &findings)
    r.seconds = seconds(since: t0)
    r.bytes = volume.bytesRead
    r.bytesWritten = stats.bytesWritten
    r.count = UInt64(stats.files)
    r.findings = findings.count
    r.pfs = info.name
    r.peakRSSKiB = peakRSSKiB()
  }
  return r
}

/// Runs one phase in a child process (this binary, `phase` subcommand).
func runChild(_ phase: Phase, image: String, pfs: String?, tmpdir: String, cacheMiB: Int? = nil) throws -> PhaseResult {
  let p = Process()
  p.executableURL = selfExecutable()
  var args = ["phase", phase.rawValue, image, "--tmpdir", tmpdir]
  if let pfs { args += ["--pfs", pfs] }
  if let cacheMiB { args += ["--cache-mib", String(cacheMiB)] }
  p.arguments = args
  let pipe = Pipe()
  p.standardOutput = pipe
  try p.run()
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  guard p.terminationStatus == 0 else {
    throw BenchError("phase \(phase.rawValue) on \(image) exited with status \(p.terminationStatus)")
  }
  let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
  return try JSONDecoder().decode(PhaseResult.self, from: Data(line.utf8))
}

// MARK: - Summaries

struct PhaseSummary: Codable {
  var phase: String
  /// Median wall-clock seconds over the runs.
  var seconds: Double
  var allSeconds: [Double]
  var bytes: UInt64
  /// bytes / median seconds, in MB/s (10^6 bytes).
  var mbPerSec: Double
  /// This phase's rate divided by the `cat` rate, and by the `extents` rate.
  var ratioVsCat: Double?
  var ratioVsExtents: Double?
  /// Largest VmHWM over the runs, in KiB.
  var peakRSSKiB: UInt64
  var count: UInt64?
  var bytesWritten: UInt64?
  var findings: Int?
  var pfs: String?
  var error: String?
}

struct ImageSummary: Codable {
  var image: String
  var apparentBytes: UInt64
  var allocatedBytes: UInt64
  var phases: [PhaseSummary]
}

struct Report: Codable {
  var runs: Int
  var cache: String
  /// VmHWM of a child that only starts up (Swift runtime + Foundation floor), KiB.
  var idlePeakRSSKiB: UInt64?
  var images: [ImageSummary]
}

func median(_ xs: [Double]) -> Double {
  let s = xs.sorted()
  guard !s.isEmpty else { return .nan }
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func fmtBytes(_ b: UInt64) -> String {
  let d = Double(b)
  if d >= 1e9 { return String(format: "%.2f GB", d / 1e9) }
  if d >= 1e6 { return String(format: "%.1f MB", d / 1e6) }
  if d >= 1e3 { return String(format: "%.1f kB", d / 1e3) }
  return "\(b) B"
}

func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
  let n = s.count
  if n >= w { return s }
  let sp = String(repeating: " ", count: w - n)
  return left ? s + sp : sp + s
}

// MARK: - Commands

struct H2Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "h2bench",
    abstract: "Benchmarks Hammer2Format's reads of HAMMER2 images against cat.",
    subcommands: [ReadBench.self, PhaseCommand.self, ClusterBench.self])
}

struct ReadBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "read",
    abstract: "Time cat, an extent-only read, the topology walk and a PFS extract over each image.",
    discussion: """
      Phases, each in a fresh child process, --runs times (median reported):
        cat      /bin/cat IMAGE > /dev/null (reads holes of a sparse image as zeros)
        extents  pread of the allocated extents only (SEEK_DATA/SEEK_HOLE, 1 MiB chunks)
        walk     Volume.open + TopologyWalker(includeFreemap: true, decompressData: true)
        extract  Volume.open + PFSReader.extract into a temporary directory (removed after;
                 default under /dev/shm: on ext4, create/delete churn makes inode allocation
                 (recently_deleted) cost ~1 ms per file and swamps the reader)
      MB/s = the phase's own bytes / median seconds: cat counts the apparent file size,
      extents the allocated bytes, walk and extract Volume.bytesRead (media blocks read).
      x_cat and x_ext = that rate / the cat rate and / the extents rate.
      Warm cache: each image is read whole once (holes too: Linux caches their zero
      pages) before its first phase; its apparent size must fit in free RAM.
      Peak RSS = the child's VmHWM (max over runs); cat's is its own ru_maxrss.
      """)

  @Argument(help: "HAMMER2 image files.")
  var images: [String]

  @Option(help: "The PFS to extract (default: the only PFS besides LOCAL, else the first).")
  var pfs: String?

  @Option(help: "Measured runs per phase.")
  var runs = 3

  @Option(help: "Comma-separated phases to run: cat,extents,walk,extract.")
  var phases = "cat,extents,walk,extract"

  @Option(help: "Where extract writes its temporary tree (default: /dev/shm when writable, a tmpfs, so the disk file system's inode allocator is not what gets measured; else $TMPDIR).")
  var tmpdir = defaultTmpdir()

  @Option(help: "Volume cache budget in MiB (default: the library's, 64).")
  var cacheMib: Int?

  @Flag(help: "Print the results as JSON instead of a table.")
  var json = false

  @Option(help: "Also write the JSON results to this file.")
  var jsonOut: String?

  func validate() throws {
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    for p in phases.split(separator: ",") where Phase(rawValue: String(p)) == nil || p == "idle" {
      throw ValidationError("unknown phase \(p)")
    }
  }

  func run() throws {
    let wanted = phases.split(separator: ",").compactMap { Phase(rawValue: String($0)) }
    let tmp = tmpdir.hasSuffix("/") && tmpdir.count > 1 ? String(tmpdir.dropLast()) : tmpdir
    let idle = try? runChild(.idle, image: "-", pfs: nil, tmpdir: tmp)
    var report = Report(runs: runs, cache: "warm (whole image, holes included, read once before measuring)",
                        idlePeakRSSKiB: idle?.peakRSSKiB, images: [])
    for image in images {
      FileHandle.standardError.write(Data("h2bench: \(image): warm-up read...\n".utf8))
      var summary = ImageSummary(image: image, apparentBytes: apparentSize(image),
                                 allocatedBytes: allocatedBytes(image), phases: [])
      do {
        _ = try readExtents(image, holes: true)
      } catch {
        FileHandle.standardError.write(Data("h2bench: \(image): \(error)\n".utf8))
        report.images.append(summary)
        continue
      }
      for phase in wanted {
        FileHandle.standardError.write(Data("h2bench: \(image): \(phase.rawValue) x\(runs)\n".utf8))
        var results: [PhaseResult] = []
        var failure: String?
        for _ in 0..<runs {
          sync()  // start each run with no dirty pages left by the previous one (not timed)
          do {
            results.append(try runChild(phase, image: image, pfs: pfs, tmpdir: tmp, cacheMiB: cacheMib))
          } catch {
            failure = "\(error)"
            break
          }
        }
        guard let last = results.last, failure == nil else {
          summary.phases.append(PhaseSummary(phase: phase.rawValue, seconds: .nan, allSeconds: [], bytes: 0,
                                             mbPerSec: .nan, peakRSSKiB: 0, error: failure))
          continue
        }
        let secs = results.map(\.seconds)
        let med = median(secs)
        summary.phases.append(PhaseSummary(
          phase: phase.rawValue, seconds: med, allSeconds: secs, bytes: last.bytes,
          mbPerSec: med > 0 ? Double(last.bytes) / med / 1e6 : .infinity,
          peakRSSKiB: results.map(\.peakRSSKiB).max() ?? 0, count: last.count,
          bytesWritten: last.bytesWritten, findings: last.findings, pfs: last.pfs))
      }
      let catRate = summary.phases.first { $0.phase == "cat" && $0.error == nil }?.mbPerSec
      let extRate = summary.phases.first { $0.phase == "extents" && $0.error == nil }?.mbPerSec
      for i in summary.phases.indices where summary.phases[i].error == nil {
        if let c = catRate { summary.phases[i].ratioVsCat = summary.phases[i].mbPerSec / c }
        if let e = extRate { summary.phases[i].ratioVsExtents = summary.phases[i].mbPerSec / e }
      }
      report.images.append(summary)
    }
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let data = try enc.encode(report)
    if let jsonOut { try data.write(to: URL(fileURLWithPath: jsonOut)) }
    if json {
      print(String(decoding: data, as: UTF8.self))
    } else {
      printTable(report)
    }
  }

  func printTable(_ report: Report) {
    print("h2bench read: median of \(report.runs) run(s), warm page cache; peak RSS = child VmHWM"
          + (report.idlePeakRSSKiB.map { String(format: " (idle child: %.1f MiB)", Double($0) / 1024) } ?? ""))
    let header = [pad("image", 28, left: true), pad("phase", 8, left: true), pad("bytes", 10), pad("sec", 8),
                  pad("MB/s", 9), pad("x_cat", 7), pad("x_ext", 7), pad("peakRSS", 10), "  notes"]
    print(header.joined(separator: " "))
    for img in report.images {
      let name = (img.image as NSString).lastPathComponent
      print("\(name): apparent \(fmtBytes(img.apparentBytes)), allocated \(fmtBytes(img.allocatedBytes))")
      if img.phases.isEmpty { print("  (could not read)") }
      for p in img.phases {
        if let e = p.error {
          print([pad("", 28), pad(p.phase, 8, left: true), "FAILED: \(e)"].joined(separator: " "))
          continue
        }
        var notes: [String] = []
        if p.phase == "walk", let c = p.count { notes.append("\(c) brefs") }
        if p.phase == "extract" {
          if let c = p.count { notes.append("\(c) files") }
          if let w = p.bytesWritten { notes.append("\(fmtBytes(w)) written") }
          if let n = p.pfs { notes.append("pfs \(n)") }
        }
        if let f = p.findings, f > 0 { notes.append("\(f) findings") }
        let row = [pad("", 28), pad(p.phase, 8, left: true), pad(fmtBytes(p.bytes), 10),
                   pad(String(format: "%.3f", p.seconds), 8), pad(String(format: "%.0f", p.mbPerSec), 9),
                   pad(p.ratioVsCat.map { String(format: "%.3f", $0) } ?? "-", 7),
                   pad(p.ratioVsExtents.map { String(format: "%.3f", $0) } ?? "-", 7),
                   pad(String(format: "%.1f MiB", Double(p.peakRSSKiB) / 1024), 10),
                   "  " + notes.joined(separator: ", ")]
        print(row.joined(separator: " "))
      }
    }
  }
}

struct PhaseCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "phase",
    abstract: "Internal: run one measured phase and print one JSON line.",
    shouldDisplay: false)

  @Argument(help: "idle, cat, extents, walk or extract.")
  var phase: Phase

  @Argument(help: "The image.")
  var image: String

  @Option var pfs: String?

  @Option var tmpdir = defaultTmpdir()

  @Option var cacheMib: Int?

  func run() throws {
    let r = try runPhase(phase, image: image, pfs: pfs, tmpdir: tmpdir, cacheMiB: cacheMib)
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    print(String(decoding: try enc.encode(r), as: UTF8.self))
  }
}

H2Bench.main()
