import Foundation
import Hammer2Cluster
import Hammer2Format

/// What check says about a resumable pass (`--time-budget`, `--state`): in the text line,
/// the JSON report's "pass" object and the metrics file.
struct PassReport {
  let report: ClusterReport
  let pass: CheckPass
  let statePath: String
  /// The bytes a full pass reads, about (`Progress.deepWalkTotal`).
  let total: UInt64
  /// This run's duration in seconds.
  let elapsed: Double

  var complete: Bool { report.scan?.outcome.complete ?? true }
  var verified: UInt64 { report.stats.bytesChecked.reduce(0, +) }
  /// Done over the estimate; 1 only when the pass is complete (the estimate is of the
  /// space in use, not of what the tree holds).
  var ratio: Double {
    if complete { return 1 }
    guard total > 0 else { return 0 }
    return min(0.999, Double(verified) / Double(total))
  }
  /// Seconds left at this run's rate (nil: complete or unknown).
  var eta: Double? {
    let thisRun = verified > pass.priorBytes ? verified - pass.priorBytes : 0
    guard !complete, elapsed > 0, thisRun > 0, total > verified else { return nil }
    return Double(total - verified) / (Double(thisRun) / elapsed)
  }

  static func iso(_ d: Date) -> String { ISO8601DateFormatter().string(from: d) }

  /// Appended to check's one-line summary.
  var summary: String {
    let runs = "run \(pass.runs) of the pass started \(Self.iso(pass.passStarted))"
    if complete { return "; pass complete (\(runs))" }
    let pct = String(format: "%.1f", ratio * 100)
    let left = eta.map { String(format: ", ETA %.0f s", $0) } ?? ""
    return "; pass INCOMPLETE, time budget spent: \(pct)% done, \(verified) of ~\(total) bytes verified (\(runs))\(left)"
  }
  var perfdata: String { String(format: " pass_progress=%.4f", ratio) }

  struct JSON: Codable {
    var complete: Bool
    var progress_ratio: Double
    var bytes_verified: UInt64
    var bytes_total: UInt64
    var eta_seconds: Double?
    var started: String
    var runs: Int
    var state_file: String
    /// Why the state file was ignored (a new pass started), when it was.
    var state_ignored: String?
    /// Images whose volume changed since the previous run: their pass restarted.
    var restarted: [String]
    /// Per image: the inode key the next run starts from (null: the node's pass is done).
    var next_key: [String: UInt64?]
  }
  var json: JSON {
    let outcome = report.scan?.outcome
    return JSON(
      complete: complete, progress_ratio: ratio, bytes_verified: verified, bytes_total: total, eta_seconds: eta,
      started: Self.iso(pass.passStarted), runs: pass.runs, state_file: statePath, state_ignored: pass.rejected?.description,
      restarted: pass.restarted.map { report.group.nodes[$0].image },
      next_key: Dictionary(
        uniqueKeysWithValues: report.group.nodes.map { n in (n.image, outcome.map { $0.next[n.index] }.flatMap { $0 == .max ? nil : $0 }) })
    )
  }

  /// The report with its "pass" object.
  struct WithPass<Report: Encodable>: Encodable {
    let report: Report
    let pass: JSON
    enum Key: String, CodingKey { case pass }
    func encode(to encoder: Encoder) throws {
      try report.encode(to: encoder)
      var c = encoder.container(keyedBy: Key.self)
      try c.encode(pass, forKey: .pass)
    }
  }

  /// Prometheus rows, named as the other check metrics.
  func metrics(clid: String) -> String {
    var s = ""
    func metric(_ name: String, _ help: String, _ value: String) {
      s += "# HELP h2resync_\(name) \(help)\n# TYPE h2resync_\(name) gauge\nh2resync_\(name){clid=\"\(clid)\"} \(value)\n"
    }
    metric("check_pass_progress_ratio", "Fraction of the check pass done (1 when complete).", String(format: "%.4f", ratio))
    metric("check_pass_complete", "1 when the last run completed the pass, 0 when its time budget ended it first.", complete ? "1" : "0")
    metric("check_pass_start_timestamp_seconds", "Start time of the pass's first run.", String(Int(pass.passStarted.timeIntervalSince1970)))
    metric("check_pass_bytes_verified", "Bytes the pass has verified so far, all nodes.", String(verified))
    metric("check_pass_bytes_total", "Bytes a whole pass verifies, about (space in use on all nodes).", String(total))
    metric("check_pass_runs", "Runs of the pass so far.", String(pass.runs))
    if let eta { metric("check_pass_eta_seconds", "Seconds left in the pass at the last run's rate.", String(format: "%.0f", eta)) }
    return s
  }

  /// Writes the state atomically: a temp file beside it, fsync, rename, fsync of the
  /// directory (a crash leaves the old state or the new one).
  static func writeState(_ data: Data, to path: String) throws {
    let tmp = path + ".\(getpid()).tmp"
    let fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
    guard fd >= 0 else { throw CouldNotRun.stateNotWritten(path: tmp, reason: String(cString: strerror(errno))) }
    let ok = data.withUnsafeBytes { b in write(fd, b.baseAddress, b.count) == b.count } && fsync(fd) == 0
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
      unlink(tmp)
      throw CouldNotRun.stateNotWritten(path: path, reason: String(cString: strerror(errno)))
    }
    let dir = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY)
    if dir >= 0 {
      fsync(dir)
      close(dir)
    }
  }
}
