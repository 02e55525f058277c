// h2bench: measured children (posix_spawn + wait4, peak RSS through GNU time).
import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Children measured with wait4

struct Spawned: Codable {
  var argv: [String]
  var seconds: Double
  /// The exit code, or 128 + signal.
  var status: Int32
  var peakRSSKiB: UInt64
  var userSeconds: Double
  var systemSeconds: Double
}

/// GNU time, when installed: the peak RSS of a child is read through it (see
/// `spawnMeasured`).
private let gnuTime: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/time") ? "/usr/bin/time" : nil
nonisolated(unsafe) private var rssFiles = 0

/// Runs `argv` (PATH lookup), stdout/stderr to the given files (else inherited), and
/// returns its wall time and its own rusage (wait4). The peak RSS comes from GNU time
/// where it is installed: posix_spawn starts a child on this process's memory (vfork),
/// and Linux then counts this process's own peak in the child's ru_maxrss (every child
/// of a run reported the same 152 MiB); GNU time forks the command from its own small
/// process. Without it the figure is an upper bound.
func spawnMeasured(_ argv: [String], stdout: String? = nil, stderr: String? = nil) throws -> Spawned {
  if let gnuTime {
    rssFiles += 1
    let rssFile = (NSTemporaryDirectory() as NSString).appendingPathComponent("h2bench-rss-\(getpid())-\(rssFiles)")
    defer { try? FileManager.default.removeItem(atPath: rssFile) }
    var r = try spawnWaited([gnuTime, "-f", "%M", "-o", rssFile, "--"] + argv, stdout: stdout, stderr: stderr)
    r.argv = argv
    if let text = try? String(contentsOfFile: rssFile, encoding: .utf8), let kib = text.split(separator: "\n").last.flatMap({ UInt64($0) })
    {
      r.peakRSSKiB = kib
    }
    return r
  }
  return try spawnWaited(argv, stdout: stdout, stderr: stderr)
}

private func spawnWaited(_ argv: [String], stdout: String?, stderr: String?) throws -> Spawned {
  var fa = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&fa)
  defer { posix_spawn_file_actions_destroy(&fa) }
  if let stdout { posix_spawn_file_actions_addopen(&fa, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
  if let stderr { posix_spawn_file_actions_addopen(&fa, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
  let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
  defer { for p in cargs { free(p) } }
  var pid: pid_t = 0
  let t0 = now()
  let rc = posix_spawnp(&pid, argv[0], &fa, nil, cargs, environ)
  guard rc == 0 else { throw BenchError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
  var status: Int32 = 0
  var ru = rusage()
  while wait4(pid, &status, 0, &ru) < 0 {
    guard errno == EINTR else { throw BenchError("wait4 \(argv[0]): \(String(cString: strerror(errno)))") }
  }
  let secs = seconds(since: t0)
  let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
  func tv(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
  return Spawned(
    argv: argv, seconds: secs, status: code, peakRSSKiB: UInt64(ru.ru_maxrss),
    userSeconds: tv(ru.ru_utime), systemSeconds: tv(ru.ru_stime))
}
