// h2bench cluster exec: one timed setup command, logged as a JSON line.
import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - exec: one timed command, logged as a JSON line

struct SetupStep: Codable {
  var label: String
  var run: Spawned
}

struct Exec: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "exec",
    abstract: "Run a command (stdio inherited), append {label, seconds, peak RSS, status} to --log as one JSON line, exit with its status.")
  @Option var label: String
  @Option var log: String
  @Argument(parsing: .postTerminator) var command: [String]

  func run() throws {
    guard !command.isEmpty else { throw ValidationError("give the command after --") }
    let r = try spawnMeasured(command)
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    var line = try enc.encode(SetupStep(label: label, run: r))
    line.append(10)
    let fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw BenchError("cannot open \(log)") }
    _ = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    close(fd)
    note(String(format: "%@: %.2f s, peak RSS %@, exit %d", label, r.seconds, fmtMiB(r.peakRSSKiB), r.status))
    if r.status != 0 { throw ExitCode(r.status) }
  }
}
