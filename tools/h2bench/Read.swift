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

  @Option(
    help:
      "Where extract writes its temporary tree (default: /dev/shm when writable, a tmpfs, so the disk file system's inode allocator is not what gets measured; else $TMPDIR)."
  )
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
    var report = Report(
      runs: runs, cache: "warm (whole image, holes included, read once before measuring)",
      idlePeakRSSKiB: idle?.peakRSSKiB, images: [])
    for image in images {
      FileHandle.standardError.write(Data("h2bench: \(image): warm-up read...\n".utf8))
      var summary = ImageSummary(
        image: image, apparentBytes: apparentSize(image),
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
          sync() // start each run with no dirty pages left by the previous one (not timed)
          do {
            results.append(try runChild(phase, image: image, pfs: pfs, tmpdir: tmp, cacheMiB: cacheMib))
          } catch {
            failure = "\(error)"
            break
          }
        }
        guard let last = results.last, failure == nil else {
          summary.phases.append(
            PhaseSummary(
              phase: phase.rawValue, seconds: .nan, allSeconds: [], bytes: 0,
              mbPerSec: .nan, peakRSSKiB: 0, error: failure))
          continue
        }
        let secs = results.map(\.seconds)
        let med = median(secs)
        summary.phases.append(
          PhaseSummary(
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
    print(
      "h2bench read: median of \(report.runs) run(s), warm page cache; peak RSS = child VmHWM"
        + (report.idlePeakRSSKiB.map { String(format: " (idle child: %.1f MiB)", Double($0) / 1024) } ?? ""))
    let header = [
      pad("image", 28, left: true), pad("phase", 8, left: true), pad("bytes", 10), pad("sec", 8),
      pad("MB/s", 9), pad("x_cat", 7), pad("x_ext", 7), pad("peakRSS", 10), "  notes",
    ]
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
        let row = [
          pad("", 28), pad(p.phase, 8, left: true), pad(fmtBytes(p.bytes), 10),
          pad(String(format: "%.3f", p.seconds), 8), pad(String(format: "%.0f", p.mbPerSec), 9),
          pad(p.ratioVsCat.map { String(format: "%.3f", $0) } ?? "-", 7),
          pad(p.ratioVsExtents.map { String(format: "%.3f", $0) } ?? "-", 7),
          pad(String(format: "%.1f MiB", Double(p.peakRSSKiB) / 1024), 10),
          "  " + notes.joined(separator: ", "),
        ]
        print(row.joined(separator: " "))
      }
    }
  }
}
