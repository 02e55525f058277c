// h2bench cluster report: the whole cluster benchmark report from its parts.
import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

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
    print(
      "== source tree: \(m.baseFiles + m.extraFiles) files, \(fmtBytes(m.baseBytes + m.extraBytes)) (\(fmtBytes(m.textBytes)) text, \(fmtBytes(m.randomBytes)) random), \(m.directories) directories; extra (10%-style) part: \(m.extraFiles) files, \(fmtBytes(m.extraBytes))"
    )
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
        rate += String(
          format: "  %.0f files/s, %.1f MB/s", Double(m.extraFiles) / s.run.seconds, Double(m.extraBytes) / s.run.seconds / 1e6)
      } else if s.label.hasPrefix("gensrc") {
        rate +=
          s.run.seconds < m.seconds / 2
          ? String(format: "  (reused; generated earlier in %.1f s, %.0f files/s)", m.seconds, Double(m.files) / m.seconds)
          : String(format: "  %.0f files/s", Double(m.files) / s.run.seconds)
      }
      print("  \(pad(s.label, 22, left: true)) \(pad(f(s.run.seconds, 1) + " s", 10)) \(pad(fmtMiB(s.run.peakRSSKiB), 11))\(rate)")
    }
    if let d = dc {
      print(
        "== (A) diff/check, 3 nodes, \(fmtBytes(d.allocatedBytes.reduce(0, +))) allocated in all (\(fmtBytes(d.inUseBytes.compactMap { $0 }.reduce(0, +))) in use per the freemaps), median of \(d.runs)"
      )
      print(
        "  \(pad("cache", 5, left: true)) \(pad("what", 26, left: true)) \(pad("sec", 8)) \(pad("MB/s", 8)) \(pad("peak RSS", 11))  ratio")
      for m in d.modes {
        print(
          "  \(pad(m.cache, 5, left: true)) \(pad("read allocated extents", 26, left: true)) \(pad(f(m.baselineMedian), 8)) \(pad(f(m.baselineMBps, 0), 8)) \(pad(fmtMiB(m.baselinePeakRSSKiB), 11))  1.00"
        )
        print(
          "  \(pad(m.cache, 5, left: true)) \(pad("cat IMAGE... >/dev/null", 26, left: true)) \(pad(f(m.cat.median), 8)) \(pad(f(m.catMBps, 0), 8)) \(pad(fmtMiB(m.cat.peakRSSKiB), 11))  check = \(f(m.checkOverCat)) of cat's rate (allocated bytes / time; cat also reads the holes)"
        )
        print(
          "  \(pad(m.cache, 5, left: true)) \(pad("h2resync check (deep)", 26, left: true)) \(pad(f(m.check.median), 8)) \(pad(f(m.checkMBps, 0), 8)) \(pad(fmtMiB(m.check.peakRSSKiB), 11))  \(f(m.checkOverBaseline)) of baseline rate (goal >= 0.7: \(ok(m.checkOverBaseline >= 0.7)))"
        )
        print(
          "  \(pad(m.cache, 5, left: true)) \(pad("h2resync diff (fast)", 26, left: true)) \(pad(f(m.diff.median, 3), 8)) \(pad("-", 8)) \(pad(fmtMiB(m.diff.peakRSSKiB), 11))  \(f(m.diffSpeedupOverCheck, 1))x faster than check (goal >= 20: \(ok(m.diffSpeedupOverCheck >= 20)))"
        )
      }
      let peakCheck = d.modes.map(\.check.peakRSSKiB).max() ?? 0
      let peakDiff = d.modes.map(\.diff.peakRSSKiB).max() ?? 0
      print(
        "  peak RSS goal < 200 MB: check \(ok(Double(peakCheck) * 1024 < 200e6)), diff \(ok(Double(peakDiff) * 1024 < 200e6)); diff: \(d.diffDifferences.map(String.init) ?? "?") differences, \(d.diffBytesChecked.map(fmtBytes) ?? "?") read"
      )
      print("  check said: \(d.checkLine)")
    }
    if let r = rs {
      let used = r.inUseBytes.map { $0 ?? 0 }
      let fi = r.images.firstIndex(of: r.focus)! // Safe: checked when measured.
      let missingPhys = used[fi] > (used.min() ?? 0) ? used[fi] - used.min()! : 0
      print("== (B) resync of a node lacking the extra part, fresh copies each run, \(r.cache ?? "warm") cache, median of \(r.runs.count)")
      print("  \(pad("what", 28, left: true)) \(pad("sec", 8)) \(pad("peak RSS", 11))  ratio")
      print("  \(pad("h2resync resync", 28, left: true)) \(pad(f(r.resync.median), 8)) \(pad(fmtMiB(r.resync.peakRSSKiB), 11))  1.00")
      print(
        "  \(pad("cp --sparse=always FOCUS", 28, left: true)) \(pad(f(r.cp.median), 8)) \(pad(fmtMiB(r.cp.peakRSSKiB), 11))  resync \(f(r.speedupVsCp, 1))x faster (goal >= 5: \(ok(r.speedupVsCp >= 5)))"
      )
      print(
        "  \(pad("cp + fsync of the copy", 28, left: true)) \(pad(f(r.cpPlusFsyncMedian), 8)) \(pad("-", 11))  resync \(f(r.speedupVsCpFsync, 1))x faster"
      )
      print(
        "  bytes written: \(fmtBytes(r.bytesWritten)) (\(r.writes) writes) vs missing: \(fmtBytes(m.extraBytes)) logical / \(fmtBytes(missingPhys)) more in use on the focus than on the stale node (freemap); ratio \(f(Double(r.bytesWritten) / Double(max(1, m.extraBytes)), 2)) / \(f(Double(r.bytesWritten) / Double(max(1, missingPhys)), 2)); diff planned \(r.plannedBytesToWrite.map(fmtBytes) ?? "?") for \(r.plannedDifferences.map(String.init) ?? "?") paths"
      )
      print(
        "  in sync after every resync: \(r.runs.allSatisfy(\.afterResyncInSync) ? "yes" : "NO"); peak RSS goal < 200 MB: \(ok(Double(r.resync.peakRSSKiB) * 1024 < 200e6))"
      )
    }
    let text = try writeJSON(full, to: jsonOut)
    if jsonOut == nil { print(text) }
  }
}
