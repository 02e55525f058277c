import ArgumentParser
import CH2Version
import Foundation
import Hammer2Format

/// Exit codes, one table for every command (Nagios-compatible; see README "Exit codes").
enum ExitStatus: Int32 {
  /// Everything read and verified (for diff/check later: all nodes in sync).
  case ok = 0
  /// The command finished but found damage (or differences a resync can repair).
  case findings = 1
  /// Needs a human: no quorum, conflict, unrepairable damage.
  case needsHuman = 2
  /// Could not run: bad arguments, unreadable or foreign image.
  case couldNotRun = 3
}

let exitCodeHelp = """
  Exit codes: 0 ok (everything read and verified); 1 finished but found damage \
  (reported on stderr); 2 needs a human; 3 could not run (bad arguments, not a \
  readable HAMMER2 image).
  """

@main
struct Entry {
  static func main() {
    ProcessMemory.keepFreedMemory()
    do {
      var command = try H2Resync.parseAsRoot(registeringRemoteNodes(Array(CommandLine.arguments.dropFirst())))
      try command.run()
      exitOnRemoteFailure()
    } catch let code as ExitCode {
      exitOnRemoteFailure()
      exit(code.rawValue)
    } catch let error as CouldNotRun {
      exitOnRemoteFailure()
      FileHandle.standardError.write(Data("\(error.description)\n".utf8))
      exit(ExitStatus.couldNotRun.rawValue)
    } catch let error as FormatError {
      FileHandle.standardError.write(Data("h2resync: \(error.description)\n".utf8))
      exit(ExitStatus.couldNotRun.rawValue)
    } catch {
      exitOnRemoteFailure()
      let code = H2Resync.exitCode(for: error)
      if code == .success {
        H2Resync.exit(withError: error)  // --help, --version: prints, exits 0
      }
      FileHandle.standardError.write(Data((H2Resync.fullMessage(for: error) + "\n").utf8))
      // Usage errors are "could not run", not ArgumentParser's EX_USAGE (64).
      exit(ExitStatus.couldNotRun.rawValue)
    }
  }
}

/// The release version; bump it with each tagged release.
let h2resyncVersion = "0.1.0"

/// `h2resync --version`: the version and the git revision it was built from (set by
/// tools/install.sh; "unknown" for a plain `swift build`).
let versionLine = "h2resync \(h2resyncVersion) (git \(String(cString: h2_git_revision())))"

struct H2Resync: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "h2resync",
    abstract: "Inspect, compare and resynchronize the device images of a HAMMER2 PFS cluster, offline.",
    discussion: exitCodeHelp,
    version: versionLine,
    subcommands: [PfsCommand.self, LsCommand.self, CatCommand.self, ExtractCommand.self, ShowCommand.self, DiffCommand.self, CheckCommand.self, ResyncCommand.self]
  )
}

/// Writes a line to stderr.
func warn(_ s: String) {
  FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Prints findings to stderr (one line each, capped) and returns the exit status they imply.
func report(_ findings: [Finding], limit: Int = 200) -> ExitStatus {
  var seen = Set<Finding>()
  var printed = 0
  for f in findings where seen.insert(f).inserted {
    if printed < limit { warn("h2resync: \(f.severity.rawValue): \(f)") }
    printed += 1
  }
  if printed > limit { warn("h2resync: ... and \(printed - limit) more findings") }
  return findings.contains { $0.severity == .damage } ? .findings : .ok
}

/// Ends the command with `status` (returns normally for ok).
func finish(_ status: ExitStatus) throws {
  if status != .ok { throw ExitCode(status.rawValue) }
}

/// Options shared by commands that read one PFS of one image.
struct PFSOptions: ParsableArguments {
  @Argument(help: "The device image (opened read-only).")
  var image: String

  @Option(name: .long, help: "The PFS label; may be omitted when the image holds one PFS besides LOCAL.")
  var pfs: String?

  func open() throws(FormatError) -> (PFSReader, [Finding]) {
    let volume = try Volume.open(path: image, opener: deviceOpener)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let info = try PFSReader.choose(list, name: pfs, image: image)
    return (PFSReader(volume: volume, pfs: info), findings)
  }
}
