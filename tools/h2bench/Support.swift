// h2bench: helpers every subcommand uses (clocks, peak RSS, file sizes, formatting).
import ArgumentParser
import Foundation
import Hammer2Builder

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
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

/// Reads every allocated extent of `path` (or, with `holes`, the whole file as cat
/// does) with pread in 1 MiB chunks; returns bytes read.
func readExtents(_ path: String, holes: Bool = false) throws -> UInt64 {
  do {
    return try SparseFile.withOpenFile(path) { fd, size in try SparseFile.forEachChunk(fd: fd, size: size, holes: holes) { _, _ in } }
  } catch let e as SparseFileError {
    throw BenchError("\(e)")
  }
}

func allocatedBytes(_ path: String) -> UInt64 { SparseFile.allocatedBytes(path) }

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
