import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

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
  @Option(
    help:
      "warm (the fresh copies as the page cache holds them), hot (every allocated extent of the images read, untimed, before resync and the focus's before cp) or cold (the page cache dropped before resync and before cp; needs root)."
  )
  var cache = "warm"

  func run() throws {
    let fm = FileManager.default
    let cold = cache == "cold"
    let hot = cache == "hot"
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
        if j.status <= 1,
          let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".plan.json"))) as? [String: Any],
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
      note(
        String(
          format: "run %d: resync %.2f s (exit %d, peak RSS %@, %llu bytes written), cp %.2f s + fsync %.2f s; in sync after: %@",
          run, r.seconds, r.status, fmtMiB(r.peakRSSKiB), nodes.reduce(0) { $0 + $1.bytes }, cp.seconds, fs.seconds,
          v.status == 0 ? "yes" : "NO (diff exit \(v.status))"))
      results.append(ResyncRun(setupSeconds: setup, resync: r, nodes: nodes, afterResyncInSync: v.status == 0, cp: cp, fsync: fs))
    }
    for w in work { try? fm.removeItem(atPath: w) }
    let rs = Runs(results.map(\.resync))
    let cps = Runs(results.map(\.cp))
    let cpf = median(results.map { $0.cp.seconds + $0.fsync.seconds })
    let last = results.last! // Safe: runs >= 1.
    let rep = ResyncReport(
      images: images, focus: focus, allocatedBytes: images.map(allocatedBytes), inUseBytes: images.map(inUseBytes), runs: results,
      resync: rs, cp: cps,
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
