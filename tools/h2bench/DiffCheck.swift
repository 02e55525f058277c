import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

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
    abstract:
      "Time reading the images' allocated extents, `h2resync check` (deep) and `h2resync diff` (fast), interleaved, warm and/or cold cache."
  )
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
      modes.append(
        CacheModeResult(
          cache: mode, baselineSeconds: base, baselineMedian: bm, baselineMBps: baseRate, baselinePeakRSSKiB: baseRSS,
          cat: ct, catMBps: catRate, checkOverCat: checkRate / catRate,
          check: ck, checkMBps: checkRate, checkOverBaseline: checkRate / baseRate, diff: df,
          diffSpeedupOverCheck: ck.median / df.median))
    }
    let j = try spawnMeasured(diffArgv + ["--json"], stdout: out + ".diff.json", stderr: out + ".diff.err")
    var differences: Int?
    var bytesChecked: UInt64?
    if j.status <= 1,
      let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".diff.json"))) as? [String: Any],
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
