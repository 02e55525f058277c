import Foundation
import H2TestSupport

#if canImport(Glibc)
  import Glibc
#endif

/// An nbdkit server for one test: the given plugin (and filters) on a private Unix
/// socket in its own temp dir, `--exit-with-parent` (it never outlives the test run),
/// stopped by `stop()`.
final class NBDKit {
  static let executable: String? = ["/usr/sbin/nbdkit", "/usr/bin/nbdkit", "/usr/local/sbin/nbdkit", "/usr/local/bin/nbdkit"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }
  static var available: Bool { executable != nil }

  let dir: String
  let socket: String
  private let process = Process()

  /// `nbdkit [OPTIONS] [-r] [--filter=F]... PLUGIN ARGS...` (filter parameters go in
  /// `arguments`; server options such as `--tls=require` in `options`).
  init(options: [String] = [], filters: [String] = [], readOnly: Bool = false, _ arguments: [String]) throws {
    dir = makeTempDir("h2nbdkit")
    socket = dir + "/sock"
    process.executableURL = URL(fileURLWithPath: Self.executable!) // Safe: tests run only when available.
    process.arguments =
      ["--exit-with-parent", "--foreground", "--unix", socket] + options + (readOnly ? ["--readonly"] : [])
      + filters.map { "--filter=\($0)" } + arguments
    FileManager.default.createFile(atPath: dir + "/log", contents: nil)
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/log"))
    process.standardOutput = log
    process.standardError = log
    try process.run()
    // Ready when the socket takes a connection (it exists from nbdkit's bind, before
    // its listen: a connect then is refused).
    for _ in 0..<400 {
      if FileManager.default.fileExists(atPath: socket), Self.accepts(socket) { return }
      guard process.isRunning else { break }
      usleep(25_000)
    }
    let text = (try? String(contentsOfFile: dir + "/log", encoding: .utf8)) ?? ""
    stop()
    throw NSError(domain: "nbdkit", code: 1, userInfo: [NSLocalizedDescriptionKey: "nbdkit did not start: \(text)"])
  }

  /// Whether a Unix socket at `path` accepts a connection (closed at once).
  static func accepts(_ path: String) -> Bool {
    let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
      for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    return withUnsafePointer(to: &addr) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    } == 0
  }

  /// Serves every file of `directory` as an export named by its file name.
  convenience init(
    directory: String, options: [String] = [], filters: [String] = [], readOnly: Bool = false, _ more: [String] = []
  ) throws {
    try self.init(options: options, filters: filters, readOnly: readOnly, ["file", "dir=\(directory)"] + more)
  }

  /// With TLS: the URI's TLS parameters (`tls-psk-file=F&tls-username=U`); the URIs
  /// are then `nbds+unix://`.
  var tlsQuery: String?

  /// The URI of `export` (the query names the socket: it must never be printed).
  func uri(_ export: String) -> String { label(export) + "?socket=\(socket)" + (tlsQuery.map { "&" + $0 } ?? "") }

  /// The URI as h2resync prints it.
  func label(_ export: String) -> String { (tlsQuery == nil ? "nbd+unix:///" : "nbds+unix:///") + export }

  /// What a printed URI begins with in JSON (slashes escaped).
  var jsonLabelPrefix: String { tlsQuery == nil ? #"nbd+unix:\/\/\/"# : #"nbds+unix:\/\/\/"# }

  /// Ends the server at once (SIGKILL: no reply, no flush of its own), as a crash of
  /// the serving host's nbdkit would; its socket directory stays until `stop()`.
  func crash() {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
  }

  func stop() {
    if process.isRunning {
      // nbdkit waits for its clients on SIGTERM; a test's clients may still be open.
      process.terminate()
      for _ in 0..<40 where process.isRunning { usleep(25_000) }
      if process.isRunning { kill(process.processIdentifier, SIGKILL) }
      process.waitUntilExit()
    }
    try? FileManager.default.removeItem(atPath: dir)
  }

  deinit { stop() }
}

/// What a command printed and how it exited.
struct ToolResult {
  var status: Int32
  var stdout: String
  var stderr: String
}

/// A built executable of this package running, its output going to files.
final class RunningTool {
  let process = Process()
  private let dir = makeTempDir("h2run")

  /// Starts `tool` with `environment` added to the test's own (H2TestSupport's `run`
  /// passes none).
  init(_ tool: String, _ arguments: [String], environment: [String: String] = [:], cwd: String? = nil) throws {
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    process.executableURL = productsDirectory.appendingPathComponent(tool)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    FileManager.default.createFile(atPath: dir + "/out", contents: nil)
    FileManager.default.createFile(atPath: dir + "/err", contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
    try process.run()
  }

  /// Waits for it to exit: what it printed and its status.
  func finish() -> ToolResult {
    process.waitUntilExit()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let out = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/out"))) ?? Data()
    let err = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/err"))) ?? Data()
    return ToolResult(
      status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
  }
}

/// Runs a built executable of this package with `environment` added to the test's own.
func runTool(_ tool: String, _ arguments: [String], environment: [String: String] = [:], cwd: String? = nil) throws -> ToolResult {
  try RunningTool(tool, arguments, environment: environment, cwd: cwd).finish()
}
