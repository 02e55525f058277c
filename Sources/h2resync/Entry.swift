import ArgumentParser
import CH2Version
import Foundation
import Hammer2Cluster
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
    } catch {
      exitOnRemoteFailure()
      // The one place errors become exit 3: the CLI's, the engine's and the format library's.
      if let message = Wording.couldNotRun(error) {
        Diagnostics.emit(message)
        exit(ExitStatus.couldNotRun.rawValue)
      }
      let code = H2Resync.exitCode(for: error)
      if code == .success {
        H2Resync.exit(withError: error) // --help, --version: prints, exits 0
      }
      Diagnostics.emitUsage(H2Resync.fullMessage(for: error))
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
    subcommands: [
      PfsCommand.self, LsCommand.self, CatCommand.self, ExtractCommand.self, ShowCommand.self, DiffCommand.self, CheckCommand.self,
      ResyncCommand.self,
    ]
  )
}
