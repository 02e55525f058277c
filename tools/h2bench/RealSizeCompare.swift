// h2bench cluster realcompare: two realsize runs of the same data side by side.
import ArgumentParser
import Foundation

struct RealSizeCompare: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "realcompare",
    abstract: "Compare two realsize runs of the same data (e.g. 1 TiB and 16 TiB nominal): time and peak RSS ratios (goal: within 10%).")
  @Option var base: String
  @Option var other: String

  func run() throws {
    let a = try readJSON(RealSizeReport.self, base)
    let b = try readJSON(RealSizeReport.self, other)
    print(
      "== \(fmtBytes(b.apparentBytes.max() ?? 0)) nominal against \(fmtBytes(a.apparentBytes.max() ?? 0)) nominal (ratio other/base; goal within 10%: 0.90 .. 1.10)"
    )
    for mb in b.modes {
      guard let ma = a.modes.first(where: { $0.cache == mb.cache }) else { continue }
      func line(_ what: String, _ x: Runs, _ y: Runs) {
        let t = y.median / x.median
        let m = Double(y.peakRSSKiB) / Double(max(1, x.peakRSSKiB))
        print(
          String(
            format: "  %@ %@ time %.3f -> %.3f s (%.2f) %@; peak RSS %@ -> %@ (%.2f) %@", pad(mb.cache, 5, left: true),
            pad(what, 8, left: true), x.median, y.median, t, abs(t - 1) <= 0.1 ? "ok" : "MISSED",
            fmtMiB(x.peakRSSKiB), fmtMiB(y.peakRSSKiB), m, abs(m - 1) <= 0.1 ? "ok" : "MISSED"))
      }
      line("check", ma.check, mb.check)
      line("diff", ma.diff, mb.diff)
      line("resync", ma.resync, mb.resync)
    }
  }
}
