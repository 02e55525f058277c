import ArgumentParser
import Foundation
import Hammer2Cluster
import Hammer2Format

/// The one sink for what goes to stderr: warnings, notes, findings and errors, each a
/// line prefixed with the program's name. Nothing else in the CLI writes to stderr
/// (but the progress bar, which redraws one line on a terminal).
enum Diagnostics {
  /// Writes "h2resync: MESSAGE" to stderr.
  static func emit(_ message: String) {
    FileHandle.standardError.write(Data("h2resync: \(message)\n".utf8))
  }

  /// Writes ArgumentParser's own message (usage errors) as it is.
  static func emitUsage(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
  }

  /// Prints findings (one line each, each once, capped) and returns the exit status they
  /// imply.
  static func findings(_ findings: [Finding], limit: Int = 200) -> ExitStatus {
    var seen = Set<Finding>()
    var printed = 0
    for f in findings where seen.insert(f).inserted {
      if printed < limit { emit("\(f.severity.rawValue): \(f)") }
      printed += 1
    }
    if printed > limit { emit("... and \(printed - limit) more findings") }
    return findings.contains { $0.severity == .damage } ? .findings : .ok
  }
}

/// Prints findings to stderr and returns the exit status they imply (`Diagnostics.findings`).
func report(_ findings: [Finding], limit: Int = 200) -> ExitStatus { Diagnostics.findings(findings, limit: limit) }

/// Why a command could not run (exit 3, mapped in `Entry` with the engine's errors):
/// what went wrong, typed; `description` is the message (without the program's name).
enum CouldNotRun: Error, CustomStringConvertible {
  /// Another `check` holds the lock file.
  case checkRunning(lockFile: String)
  /// `--from IMAGE` names no image of the cluster.
  case fromNotANode(image: String)
  /// `--from` was given, but the plan found no focus to apply it to.
  case fromNotApplied
  /// A node the plan writes lacks the space (`error`, a `noSpace`); `dryRun`: only the
  /// plan was asked for.
  case noSpace(FormatError, dryRun: Bool)
  /// Applying a plan needs --yes when there is no terminal to ask on.
  case needsConfirmation
  /// Resync stopped on `error` before committing the image being written.
  case resyncStopped(FormatError)
  /// `cat` of something that is not a regular file or symlink (its type's name).
  case notARegularFile(path: String, type: String)
  /// The metrics file's temporary copy could not be created.
  case metricsNotWritten(path: String)
  /// The metrics file's temporary copy could not be renamed into place.
  case metricsNotRenamed(from: String, to: String)
  /// `check`'s pass state file (`--state`) could not be written: `reason` says why.
  case stateNotWritten(path: String, reason: String)

  var description: String {
    switch self {
    case .checkRunning(let lockFile): return "another check holds \(lockFile); not running twice"
    case .fromNotANode(let image): return "--from \(image) is not one of the cluster's images"
    case .fromNotApplied: return "--from could not be applied"
    case .noSpace(let e, let dryRun):
      return "\(e.description); \(dryRun ? "a resync would refuse before writing any node" : "nothing written")"
    case .needsConfirmation: return "not a terminal: add --yes to apply the plan above (or --dry-run to only print it)"
    case .resyncStopped(let e): return "resync stopped, nothing committed on the image being written: \(e.description)"
    case .notARegularFile(let path, let type): return "\(path) is a \(type), not a regular file"
    case .metricsNotWritten(let path): return "cannot write \(path)"
    case .metricsNotRenamed(let from, let to): return "cannot rename \(from) to \(to)"
    case .stateNotWritten(let path, let reason): return "cannot write the state file \(path): \(reason)"
    }
  }
}

/// Ends the command with `status` (returns normally for ok).
func finish(_ status: ExitStatus) throws {
  if status != .ok { throw ExitCode(status.rawValue) }
}

/// Ends the command with the engine's verdict.
func finish(_ verdict: ExitClass) throws { try finish(ExitStatus(verdict)) }

extension ExitStatus {
  init(_ verdict: ExitClass) {
    switch verdict {
    case .ok: self = .ok
    case .findings: self = .findings
    case .needsHuman: self = .needsHuman
    }
  }
}

/// The engine's errors and notes in the CLI's words: the engine says what is wrong; the CLI adds
/// the option that fixes it (the engine never names a flag).
enum Wording {
  static func cluster(_ e: ClusterError) -> String {
    switch e.kind {
    case .severalClusters: return e.message + "; choose one with --pfs or --clid"
    case .cacheBudgetOutOfRange(_, let range): return "--cache-mib must be \(range.lowerBound) to \(range.upperBound)"
    default: return e.message
    }
  }

  /// The message of an error that means "could not run" (exit 3), nil for any other.
  static func couldNotRun(_ error: any Error) -> String? {
    switch error {
    case let e as CouldNotRun: return e.description
    case let e as ClusterError: return cluster(e)
    case let e as FormatError: return format(e)
    default: return nil
    }
  }

  static func format(_ e: FormatError) -> String {
    e.kind.isAmbiguousPFS ? e.description + "; choose one with --pfs" : e.description
  }

  static func refusal(_ r: ResyncRefusal) -> String {
    switch r.kind {
    case .noQuorum(let q):
      return "no version has a quorum of \(q) masters: nothing written. Decide which node to trust and run again with --from IMAGE."
    case .rollbackWithoutSnapshot(let s):
      return "\(r.image ?? "?") is \(s.rawValue): rolling it back without a snapshot needs --allow-rollback"
    }
  }

  static func note(_ n: ClusterNote) -> String {
    switch n {
    case .trusting: return "--from: " + n.description
    case .text: return n.description
    }
  }
}
