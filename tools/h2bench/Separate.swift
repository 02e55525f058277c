import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - (C) resync of a master built separately (every tid differs, 90% equal content)

/// One resync run of the separately built master.
struct SeparateRun: Codable {
  var resync: Spawned
  /// The target's bytes written per block type, as `resync` printed them.
  var bytesByType: [String: UInt64]
  var bytesWritten: UInt64
  var pathsChanged: Int
  var tidsStamped: Int
  /// The target's allocator in-use bytes (freemap) after the resync minus before.
  var inUseAdded: Int64?
  var afterResyncInSync: Bool
  var cp: Spawned
  /// `sync COPY` right after the cp: the copy's fsync (resync fsyncs what it writes).
  var cpFsync: Spawned?
}

struct SeparateReport: Codable {
  var images: [String]
  var focus: String
  var target: String
  /// SEEK_DATA extents of the focus image, and its allocator in-use bytes.
  var focusAllocatedBytes: UInt64
  var focusInUseBytes: UInt64?
  /// From an untimed `diff --json` before the first run.
  var plannedDifferences: Int?
  var plannedClasses: [String: Int]?
  var plannedTidsOnly: Int?
  var plannedBytesToWrite: UInt64?
  var runs: [SeparateRun]
  var resync: Runs
  var cp: Runs
  /// resync median / cp median (goal <= 2).
  var timeOverCp: Double
  /// Median of cp + its fsync per run, and resync median / that: the durable whole copy
  /// that resync's own output (committed, fsynced) compares with.
  var cpPlusFsyncMedian: Double?
  var timeOverCpPlusFsync: Double?
  /// The last run's bytes written / the focus's in-use bytes (goal < 0.25), and the same
  /// with the allocated extents of the focus image.
  var writtenOverFocusInUse: Double?
  var writtenOverFocusAllocated: Double
  var resyncCommand: [String]
}

struct SeparateBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "separate",
    abstract:
      "Resync a master built separately from the focus's tree minus its last 10% of directories (every tid differs, 90% of the content is equal) against `cp --sparse=always FOCUS COPY`.",
    discussion: """
      The target is copied fresh into --workdir before each run (not timed); the other
      images are used in place (resync only reads them). Each run: `h2resync resync --yes
      --no-snapshot --allow-rollback IMAGES...` with the copy, its bytes written by block type (from its
      output), the copy's freemap in-use growth, a `diff` that must say in sync, then
      `cp --sparse=always FOCUS COPY` as the whole-copy baseline.
      """)
  @Argument var images: [String]
  @Option var focus: String
  @Option(help: "The separately built master (one of the images).") var target: String
  @Option var h2resync: String
  @Option var workdir: String
  @Option var runs = 3
  @Option var jsonOut: String?

  func validate() throws {
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    guard images.contains(focus), images.contains(target), focus != target else {
      throw ValidationError("--focus and --target must be two different images of the list")
    }
  }

  /// "resynced IMG: P paths, W writes, B bytes, volume header slot S, T tids-only..." and
  /// the line after it, "  bytes written by block type: DATA n, INODE n, ...".
  static func parseResync(_ text: String) -> (paths: Int, tids: Int, bytes: UInt64, byType: [String: UInt64]) {
    var paths = 0
    var tids = 0
    var bytes: UInt64 = 0
    var byType: [String: UInt64] = [:]
    for line in text.split(separator: "\n") {
      if line.hasPrefix("resynced ") {
        for item in line.split(separator: ":", maxSplits: 1).last?.split(separator: ",") ?? [] {
          let w = item.split(separator: " ")
          guard w.count == 2 else { continue }
          switch w[1] {
          case "paths": paths = Int(w[0]) ?? 0
          case "tids-only": tids = Int(w[0]) ?? 0
          case "bytes": bytes = UInt64(w[0]) ?? 0
          default: break
          }
        }
      } else if let r = line.range(of: "bytes written by block type: ") {
        for item in line[r.upperBound...].split(separator: ",") {
          let parts = item.trimmingCharacters(in: .whitespaces).split(separator: " ")
          guard let n = parts.last.flatMap({ UInt64($0) }) else { continue }
          byType[parts.dropLast().joined(separator: " ")] = n
        }
      }
    }
    return (paths, tids, bytes, byType)
  }

  func run() throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
    let copy = workdir + "/" + (target as NSString).lastPathComponent
    guard copy != target else { throw ValidationError("--workdir must not hold the target itself") }
    let work = images.map { $0 == target ? copy : $0 }
    // The target's own transactions (the removals) can leave its PFS-root tid above the
    // focus's: it is then "ahead", and rolling it back without a snapshot must be asked for.
    let argv = [h2resync, "resync", "--yes", "--no-snapshot", "--allow-rollback"] + work
    let out = workdir + "/h2bench-separate"
    let focusCopy = workdir + "/focus-copy.img"
    var results: [SeparateRun] = []
    var plan: [String: Any]?
    for run in 1...runs {
      try? fm.removeItem(atPath: copy)
      let c = try spawnMeasured(["cp", "--sparse=always", target, copy])
      guard c.status == 0 else { throw BenchError("cp \(target) \(copy) failed") }
      sync()
      if run == 1 {
        let j = try spawnMeasured([h2resync, "diff", "--json"] + work, stdout: out + ".plan.json", stderr: out + ".plan.err")
        if j.status <= 1 {
          plan = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".plan.json"))) as? [String: Any]
        }
      }
      let before = inUseBytes(copy)
      let r = try spawnMeasured(argv, stdout: out + ".resync.out", stderr: out + ".resync.err")
      guard r.status == 0 || r.status == 1 else {
        throw BenchError("resync exited \(r.status): \(tail(out + ".resync.err"))\n\(tail(out + ".resync.out"))")
      }
      let parsed = Self.parseResync(readText(out + ".resync.out"))
      let after = inUseBytes(copy)
      let v = try spawnMeasured([h2resync, "diff"] + work, stdout: out + ".after.out", stderr: out + ".after.err")
      sync()
      let cp = try spawnMeasured(["cp", "--sparse=always", focus, focusCopy])
      guard cp.status == 0 else { throw BenchError("cp of the focus failed") }
      let cpSync = try spawnMeasured(["sync", focusCopy])
      try? fm.removeItem(atPath: focusCopy)
      let added = before.flatMap { b in after.map { Int64($0) - Int64(b) } }
      note(
        String(
          format: "separate run %d: resync %.2f s (exit %d, %llu bytes written, %@), cp %.2f s + fsync %.2f s; in sync after: %@",
          run, r.seconds, r.status, parsed.bytes,
          parsed.byType.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
          cp.seconds, cpSync.seconds, v.status == 0 ? "yes" : "NO (diff exit \(v.status))"))
      results.append(
        SeparateRun(
          resync: r, bytesByType: parsed.byType, bytesWritten: parsed.bytes, pathsChanged: parsed.paths,
          tidsStamped: parsed.tids, inUseAdded: added, afterResyncInSync: v.status == 0, cp: cp, cpFsync: cpSync))
    }
    try? fm.removeItem(atPath: copy)
    let summary = plan?["summary"] as? [String: Any]
    let focusInUse = inUseBytes(focus)
    let focusAllocated = allocatedBytes(focus)
    let rs = Runs(results.map(\.resync))
    let cps = Runs(results.map(\.cp))
    let last = results.last! // Safe: runs >= 1.
    let durable = results.map { $0.cp.seconds + ($0.cpFsync?.seconds ?? 0) }.sorted()
    let durableMedian = durable[durable.count / 2]
    let rep = SeparateReport(
      images: images, focus: focus, target: target, focusAllocatedBytes: focusAllocated, focusInUseBytes: focusInUse,
      plannedDifferences: summary?["differences"] as? Int,
      plannedClasses: summary?["classes"] as? [String: Int],
      plannedTidsOnly: (summary?["tids_only"] as? [String: Any])?.values.compactMap { ($0 as? NSNumber)?.intValue }.reduce(0, +),
      plannedBytesToWrite: (summary?["bytes_to_write"] as? [String: Any])?.values.compactMap { ($0 as? NSNumber)?.uint64Value }.reduce(
        0, +),
      runs: results, resync: rs, cp: cps, timeOverCp: rs.median / cps.median,
      cpPlusFsyncMedian: durableMedian, timeOverCpPlusFsync: rs.median / durableMedian,
      writtenOverFocusInUse: focusInUse.map { Double(last.bytesWritten) / Double(max(1, $0)) },
      writtenOverFocusAllocated: Double(last.bytesWritten) / Double(max(1, focusAllocated)),
      resyncCommand: argv)
    Self.printTable(rep)
    let text = try writeJSON(rep, to: jsonOut)
    if jsonOut == nil { print(text) }
  }

  static func printTable(_ r: SeparateReport) {
    func f(_ x: Double, _ d: Int = 2) -> String { String(format: "%.\(d)f", x) }
    func ok(_ c: Bool) -> String { c ? "ok" : "MISSED" }
    let last = r.runs.last! // Safe: at least one run.
    print("== (C) resync of a master built separately from the focus's tree minus its last 10% of directories, median of \(r.runs.count)")
    print(
      "  planned: \(r.plannedDifferences.map(String.init) ?? "?") differing paths \(r.plannedClasses.map { $0.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") } ?? ""), \(r.plannedTidsOnly.map(String.init) ?? "?") tids only, \(r.plannedBytesToWrite.map(fmtBytes) ?? "?") of file data to write"
    )
    print("  \(pad("what", 28, left: true)) \(pad("sec", 8)) \(pad("peak RSS", 11))  ratio")
    print(
      "  \(pad("h2resync resync", 28, left: true)) \(pad(f(r.resync.median), 8)) \(pad(fmtMiB(r.resync.peakRSSKiB), 11))  \(f(r.timeOverCp)) of cp (goal <= 2: \(ok(r.timeOverCp <= 2)))"
    )
    print("  \(pad("cp --sparse=always FOCUS", 28, left: true)) \(pad(f(r.cp.median), 8)) \(pad(fmtMiB(r.cp.peakRSSKiB), 11))  1.00")
    if let d = r.cpPlusFsyncMedian, let x = r.timeOverCpPlusFsync {
      print(
        "  \(pad("cp + fsync of the copy", 28, left: true)) \(pad(f(d), 8)) \(pad("-", 11))  resync \(f(x)) of a durable copy (goal <= 2: \(ok(x <= 2)))"
      )
    }
    print(
      "  bytes written by block type: "
        + last.bytesByType.sorted { $0.key < $1.key }.map { "\($0.key) \(fmtBytes($0.value))" }.joined(separator: ", "))
    print(
      "  bytes written \(fmtBytes(last.bytesWritten)) = \(f((r.writtenOverFocusInUse ?? .nan) * 100, 1))% of the focus's \(r.focusInUseBytes.map(fmtBytes) ?? "?") in use (goal < 25%: \(ok((r.writtenOverFocusInUse ?? 1) < 0.25))), \(f(r.writtenOverFocusAllocated * 100, 1))% of its \(fmtBytes(r.focusAllocatedBytes)) allocated extents; freemap in-use growth \(last.inUseAdded.map { fmtBytes(UInt64(max(0, $0))) } ?? "?")"
    )
    print(
      "  paths changed \(last.pathsChanged) (\(last.tidsStamped) tids only); in sync after every resync: \(r.runs.allSatisfy(\.afterResyncInSync) ? "yes" : "NO")"
    )
  }
}
