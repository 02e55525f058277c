// h2bench cluster realsize: the real-size benchmark (issue 15 item 5) on 3 masters of
// nominal size 1 TiB or more, one of them a little behind, every ratio of its goals
// measured in the same run.
//
//   h2bench cluster realsize A B C --focus A --stale C --h2resync BIN --workdir DIR
//                            [--runs N] [--cache warm|cold|both] [--lock-file F] [--json-out F]
//   h2bench cluster realcompare --base 1T.json --other 16T.json
//
// Per cache mode and run, each a child measured by spawnMeasured (wall time, and peak RSS
// through GNU time):
//  - extents: a pread of every image's allocated extents (SEEK_DATA/SEEK_HOLE, 1 MiB),
//    one child per image, summed: the read floor of `check`;
//  - `h2resync check A B C --quiet` (deep: reads and verifies every block);
//  - `h2resync diff A B C` (also the first half of resync's floor);
//  - a fresh copy of the stale node (setup, untimed), `h2resync resync --yes --no-snapshot
//    A B COPY` (the focus and the in-sync node are never written, so they are used in
//    place), then an untimed `diff` that must say in sync;
//  - `dd if=/dev/zero of=FILE bs=1M count=CEIL(resync's bytes / 1 MiB) oflag=direct
//    conv=fsync`: writing what resync wrote, the second half of its floor;
//  - `cp --sparse=always FOCUS FILE` and `sync FILE` (its fsync): what a copy of the focus costs.
// warm: nothing dropped (the images as the previous commands left them in the page cache,
// read once before when they fit in half the RAM; the focus's extents are read, untimed,
// before cp); cold: the page cache is dropped
// (root) before every timed command.

import ArgumentParser
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

struct RealSizeMode: Codable {
  var cache: String
  var extents: [Double]
  var extentsMedian: Double
  var extentsPeakRSSKiB: UInt64
  var check: Runs
  var diff: Runs
  var resync: Runs
  var dd: Runs
  var cp: Runs
  var fsync: Runs
  var cpPlusFsyncMedian: Double
  /// diff median + dd median.
  var floorSeconds: Double
  var bytesWritten: [UInt64]
  var inSyncAfterResync: [Bool]
  var checkMBps: Double
  var extentsMBps: Double
  var checkOverExtents: Double
  var resyncSpeedupOverCpFsync: Double
  var resyncOverFloor: Double
}

struct RealSizeReport: Codable {
  var images: [String]
  var focus: String
  var stale: String
  var apparentBytes: [UInt64]
  var allocatedBytes: [UInt64]
  var inUseBytes: [UInt64?]
  var runs: Int
  var modes: [RealSizeMode]
  var checkCommand: [String]
  var diffCommand: [String]
  var resyncCommand: [String]
}

struct RealSizeBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "realsize",
    abstract:
      "Time check, diff and resync of a 3-master set against reading its extents, cp + fsync of the focus and resync's floor (diff + dd of its bytes)."
  )
  @Argument var images: [String]
  @Option var focus: String
  @Option(help: "The node that is behind: resync's target, copied fresh for every run.") var stale: String
  @Option var h2resync: String
  @Option(help: "Where the copies, the dd file and the commands' output go.") var workdir: String
  @Option var runs = 3
  @Option(help: "warm, cold (page cache dropped before each timed command; needs root) or both.") var cache = "both"
  @Option var lockFile = "/tmp/h2bench-realsize-check.lock"
  @Option var jsonOut: String?
  @Flag(help: "Leave out the extent read, check and diff (time only resync, its dd and cp).") var resyncOnly = false

  func validate() throws {
    guard ["warm", "cold", "both"].contains(cache) else { throw ValidationError("--cache: warm, cold or both") }
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    guard images.contains(focus), images.contains(stale), focus != stale else {
      throw ValidationError("--focus and --stale must be two of the images")
    }
  }

  func run() throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
    let copy = workdir + "/stale-copy.img"
    let cpTarget = workdir + "/focus-copy.img"
    let ddTarget = workdir + "/floor.bin"
    let resyncImages = images.map { $0 == stale ? copy : $0 }
    let alloc = images.map(allocatedBytes)
    let total = alloc.reduce(0, +)
    let checkArgv = [h2resync, "check"] + images + ["--quiet", "--lock-file", lockFile]
    let diffArgv = [h2resync, "diff"] + images
    let resyncArgv = [h2resync, "resync", "--yes", "--no-snapshot"] + resyncImages
    let out = workdir + "/h2bench-realsize"
    var wanted = cache == "both" ? ["warm", "cold"] : [cache]
    if wanted.contains("cold"), !dropCaches() {
      note("cannot drop the page cache (not root?): cold runs skipped")
      wanted.removeAll { $0 == "cold" }
    }
    func timed(_ label: String, _ argv: [String], okStatus: ClosedRange<Int32> = 0...0) throws -> Spawned {
      let r = try spawnMeasured(argv, stdout: out + ".\(label).out", stderr: out + ".\(label).err")
      guard okStatus.contains(r.status) else {
        throw BenchError("\(label) exited \(r.status): \(tail(out + ".\(label).err"))\n\(tail(out + ".\(label).out"))")
      }
      return r
    }
    var modes: [RealSizeMode] = []
    for mode in wanted {
      let cold = mode == "cold"
      func prepare() { if cold { _ = dropCaches() } else { sync() } }
      // A warm-up read only when the images fit in half the RAM: otherwise it evicts
      // what it read itself and only costs a full read of the set.
      if !cold, Double(total) < Double(ProcessInfo.processInfo.physicalMemory) / 2 {
        note("warm-up: reading the allocated extents of \(images.count) images (\(fmtBytes(total)))")
        for i in images { _ = try readExtents(i) }
      }
      var ext: [Double] = []
      var extRSS: UInt64 = 0
      var checks: [Spawned] = []
      var diffs: [Spawned] = []
      var resyncs: [Spawned] = []
      var dds: [Spawned] = []
      var cps: [Spawned] = []
      var fsyncs: [Spawned] = []
      var written: [UInt64] = []
      var inSync: [Bool] = []
      for run in 1...runs {
        var s = 0.0
        if !resyncOnly {
          prepare()
          for i in images {
            let r = try runChild(.extents, image: i, pfs: nil, tmpdir: workdir)
            s += r.seconds
            extRSS = max(extRSS, r.peakRSSKiB)
          }
          ext.append(s)
          prepare()
          let c = try timed("check", checkArgv, okStatus: 0...1)
          checks.append(c)
          prepare()
          let d = try timed("diff", diffArgv, okStatus: 0...1)
          diffs.append(d)
          note(
            String(
              format: "%@ run %d: extents %.2f s, check %.2f s (exit %d, %@), diff %.3f s (exit %d, %@)",
              mode, run, s, c.seconds, c.status, fmtMiB(c.peakRSSKiB), d.seconds, d.status, fmtMiB(d.peakRSSKiB)))
        }

        _ = try timed("setup-copy", ["cp", "--sparse=always", stale, copy])
        sync()
        prepare()
        let r = try timed("resync", resyncArgv, okStatus: 0...1)
        resyncs.append(r)
        // "resynced IMAGE: P paths, W writes, B bytes, volume header slot S"
        var bytes: UInt64 = 0
        for line in readText(out + ".resync.out").split(separator: "\n") where line.hasPrefix("resynced ") {
          for field in line.split(separator: ",") {
            let w = field.split(separator: " ")
            if w.count >= 2, w[w.count - 1] == "bytes", let n = UInt64(w[w.count - 2]) { bytes += n }
          }
        }
        written.append(bytes)
        let v = try spawnMeasured([h2resync, "diff"] + resyncImages, stdout: out + ".after.out", stderr: out + ".after.err")
        inSync.append(v.status == 0)
        try? fm.removeItem(atPath: copy)

        prepare()
        let mib = max(1, (bytes + (1 << 20) - 1) >> 20)
        let dd = try timed("dd", ["dd", "if=/dev/zero", "of=" + ddTarget, "bs=1M", "count=\(mib)", "oflag=direct", "conv=fsync"])
        dds.append(dd)
        try? fm.removeItem(atPath: ddTarget)

        prepare()
        if !cold { _ = try readExtents(focus) }
        let cp = try timed("cp", ["cp", "--sparse=always", focus, cpTarget])
        let fs = try timed("fsync", ["sync", cpTarget])
        cps.append(cp)
        fsyncs.append(fs)
        try? fm.removeItem(atPath: cpTarget)
        note(
          String(
            format: "%@ run %d: resync %.2f s (exit %d, %@, %llu bytes written, in sync after: %@), dd %.2f s, cp %.2f s + fsync %.2f s",
            mode, run, r.seconds, r.status, fmtMiB(r.peakRSSKiB), bytes, v.status == 0 ? "yes" : "NO",
            dd.seconds, cp.seconds, fs.seconds))
      }
      if resyncOnly { // the floor still needs diff's time
        prepare()
        diffs.append(try timed("diff", diffArgv, okStatus: 0...1))
      }
      let em = median(ext)
      let ck = Runs(checks)
      let df = Runs(diffs)
      let rs = Runs(resyncs)
      let dd = Runs(dds)
      let cp = Runs(cps)
      let fs = Runs(fsyncs)
      let cpf = median(zip(cps, fsyncs).map { $0.seconds + $1.seconds })
      let floor = df.median + dd.median
      let checkRate = Double(total) / ck.median / 1e6
      let extRate = Double(total) / em / 1e6
      modes.append(
        RealSizeMode(
          cache: mode, extents: ext, extentsMedian: em, extentsPeakRSSKiB: extRSS, check: ck, diff: df, resync: rs, dd: dd,
          cp: cp, fsync: fs, cpPlusFsyncMedian: cpf, floorSeconds: floor, bytesWritten: written, inSyncAfterResync: inSync,
          checkMBps: checkRate, extentsMBps: extRate, checkOverExtents: checkRate / extRate,
          resyncSpeedupOverCpFsync: cpf / rs.median, resyncOverFloor: rs.median / floor))
    }
    let rep = RealSizeReport(
      images: images, focus: focus, stale: stale, apparentBytes: images.map(apparentSize), allocatedBytes: alloc,
      inUseBytes: images.map(inUseBytes), runs: runs, modes: modes, checkCommand: checkArgv, diffCommand: diffArgv,
      resyncCommand: resyncArgv)
    _ = try writeJSON(rep, to: jsonOut)
    printRealSizeTable(rep)
  }
}

func printRealSizeTable(_ r: RealSizeReport) {
  func f(_ x: Double, _ d: Int = 2) -> String { String(format: "%.\(d)f", x) }
  func ok(_ c: Bool) -> String { c ? "ok" : "MISSED" }
  func rssOK(_ kib: UInt64) -> Bool { Double(kib) * 1024 < 200e6 }
  let nominal = r.apparentBytes.max() ?? 0
  print(
    "== real-size set: \(r.images.count) masters of \(nominal) bytes nominal (\(fmtBytes(nominal))), allocated \(r.allocatedBytes.map(fmtBytes).joined(separator: " / ")), median of \(r.runs)"
  )
  print("  \(pad("cache", 5, left: true)) \(pad("what", 34, left: true)) \(pad("sec", 8)) \(pad("peak RSS", 11))  goal")
  for m in r.modes {
    func row(_ what: String, _ s: Double, _ rss: UInt64?, _ goal: String) {
      print("  \(pad(m.cache, 5, left: true)) \(pad(what, 34, left: true)) \(pad(f(s, 3), 8)) \(pad(rss.map(fmtMiB) ?? "-", 11))  \(goal)")
    }
    row("read allocated extents (pread)", m.extentsMedian, m.extentsPeakRSSKiB, String(format: "%.0f MB/s", m.extentsMBps))
    row(
      "h2resync check (deep)", m.check.median, m.check.peakRSSKiB,
      String(format: "%.0f MB/s = %.2f of the extent read", m.checkMBps, m.checkOverExtents)
        + (m.cache == "cold" ? " (goal >= 0.7: \(ok(m.checkOverExtents >= 0.7)))" : ""))
    row("h2resync diff", m.diff.median, m.diff.peakRSSKiB, "")
    row(
      "h2resync resync", m.resync.median, m.resync.peakRSSKiB,
      "\(f(m.resyncSpeedupOverCpFsync, 1))x faster than cp + fsync (goal >= 10: \(ok(m.resyncSpeedupOverCpFsync >= 10))); \(f(m.resyncOverFloor))x its floor (goal <= 2: \(ok(m.resyncOverFloor <= 2)))"
    )
    row("floor: diff + dd of the bytes", m.floorSeconds, nil, "dd \(f(m.dd.median, 3)) s for \(fmtBytes(m.bytesWritten.last ?? 0))")
    row("cp --sparse=always FOCUS", m.cp.median, m.cp.peakRSSKiB, "")
    row("cp + fsync of the copy", m.cpPlusFsyncMedian, nil, "fsync \(f(m.fsync.median, 3)) s")
    let h2 = [m.check.peakRSSKiB, m.diff.peakRSSKiB, m.resync.peakRSSKiB].max() ?? 0
    print(
      "  \(pad(m.cache, 5, left: true)) peak RSS goal < 200 MB, h2resync commands: \(ok(rssOK(h2))) (max \(fmtMiB(h2))); in sync after every resync: \(m.inSyncAfterResync.allSatisfy { $0 } ? "yes" : "NO"); bytes written per run: \(m.bytesWritten.map(String.init).joined(separator: ", "))"
    )
  }
}
