// h2bench phase: one measured phase of `h2bench read`, run in a child process.
import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

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
    defer { try? FileManager.default.removeItem(atPath: dir) } // not timed
    let t0 = now()
    let volume = try openVolume()
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let info: PFSInfo
    if pfs == nil, list.filter({ $0.name != "LOCAL" }).count > 1 {
      info = list.first { $0.name != "LOCAL" }! // Safe: count > 1.
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
