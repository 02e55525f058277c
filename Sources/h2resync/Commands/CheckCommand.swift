import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Cluster
import Hammer2Format

struct CheckCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "For cron: verify every block's check code on every node and summarize divergence in one line.",
    discussion: clusterExitHelp + " Nothing is printed with --quiet when healthy.")

  @OptionGroup var cluster: ClusterOptions

  @Flag(help: "Print nothing when everything is in sync and undamaged.")
  var quiet = false

  @OptionGroup var output: OutputOptions

  @Option(help: "Write Prometheus textfile metrics here (atomically: temp file + rename).")
  var metrics: String?

  @Option(help: "Throttle reads to this many bytes per second (e.g. 50M).")
  var maxRate: String?

  @Flag(
    help:
      "Also cross-check each image's freemap against its tree (referenced blocks marked free are damage; unreferenced allocated chunks are reported as reclaimable)."
  )
  var freemap = false

  @OptionGroup var pass: PassOptions

  @Option(help: "Lock file that keeps overlapping runs apart.")
  var lockFile: String = "/tmp/h2resync-check.lock"

  func run() throws {
    let lock = open(lockFile, O_CREAT | O_RDWR, 0o644)
    guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
      throw CouldNotRun.checkRunning(lockFile: lockFile)
    }
    defer { close(lock) }
    let rate = try maxRate.map(parseRate)
    let started = Date()
    let clock = ContinuousClock()
    let t0 = clock.now
    let group = try cluster.discover()
    let total = Progress.deepWalkTotal(group)
    let resumed = pass.enabled ? try startPass(group, clock: clock, now: started) : nil
    let prior = resumed?.pass.priorBytes ?? 0
    let progress = Progress(phase: "check", total: total > prior ? total - prior : 0)
    var options = cluster.analysis(mode: .deep)
    options.window = resumed?.pass.window
    options.window?.stopsAtBatches = true
    options.keepDifferences = output.json
    options.onBytes = { bytes in
      progress.add(bytes)
      if let rate, rate > 0 {
        // Sleep until the average rate is back under the limit.
        let ahead = Double(progress.done) / Double(rate) - (clock.now - t0).seconds
        if ahead > 0.01 { usleep(useconds_t(min(ahead, 1.0) * 1_000_000)) }
      }
    }
    let report = try ClusterReport.analyze(group, options)
    progress.finish()
    let fm = freemap ? FreemapReport(report, overwriteSoftMasters: cluster.overwriteSoftMasters) : nil
    let verdict = fm?.exit(combining: report.exit) ?? report.exit
    let elapsed = (clock.now - t0).seconds
    let passed = resumed.map { PassReport(report: report, pass: $0.pass, statePath: $0.path, total: total, elapsed: elapsed) }
    if let resumed, let passed {
      try PassReport.writeState(PassState(report, passStarted: passed.pass.passStarted, runs: passed.pass.runs).encoded(), to: resumed.path)
    }
    if let metrics {
      let extra = (fm?.metrics(clid: group.clid.description) ?? "") + (passed?.metrics(clid: group.clid.description) ?? "")
      try MetricsReport(report, started: started, duration: elapsed, exit: verdict, extra: extra).write(to: metrics)
    }
    if output.json {
      let json = JSONReport(report, command: "check")
      switch (fm, passed) {
      case (let fm?, let p?):
        printJSON(PassReport.WithPass(report: FreemapReport.WithFreemap(report: json, freemap: fm.json), pass: p.json))
      case (let fm?, nil): printJSON(FreemapReport.WithFreemap(report: json, freemap: fm.json))
      case (nil, let p?): printJSON(PassReport.WithPass(report: json, pass: p.json))
      case (nil, nil): printJSON(json)
      }
    } else if !(quiet && verdict == .ok) {
      let stats = report.stats
      let damaged = stats.damagedBlocks.reduce(0, +)
      let checked = stats.blocksChecked.reduce(0, +)
      let label: String
      switch verdict {
      case .ok: label = "OK"
      case .findings: label = "WARNING"
      case .needsHuman: label = "CRITICAL"
      }
      let nodeStates = report.nodeStates
      let states = group.nodes.map { "\($0.label)=\(nodeStates[$0.index].rawValue)" }.joined(separator: " ")
      let softLocal = stats.nodeSoftLocal.reduce(0, +)
      let local = softLocal > 0 ? ", \(softLocal) soft-local paths (soft masters' own changes)" : ""
      print(
        "H2RESYNC \(label): cluster \(group.clid) \(states); \(stats.countedDifferences) differing paths\(local), \(damaged) damaged blocks, \(checked) blocks checked in \(String(format: "%.1f", elapsed)) s\(fm?.summary ?? "")\(passed?.summary ?? "") | differences=\(stats.countedDifferences) soft_local=\(softLocal) damaged=\(damaged) blocks=\(checked)\(fm?.perfdata ?? "")\(passed?.perfdata ?? "")"
      )
      fm?.printLines()
    }
    try finish(verdict)
  }

  /// Reads the pass's state file (warning about one it cannot use) and starts or
  /// resumes the pass; the budget runs from `clock`'s now.
  func startPass(_ group: ClusterGroup, clock: ContinuousClock, now: Date) throws -> (pass: CheckPass, path: String) {
    let path = pass.statePath(for: group)
    let dir = (path as NSString).deletingLastPathComponent
    guard access(dir.isEmpty ? "." : dir, W_OK) == 0 else {
      throw CouldNotRun.stateNotWritten(path: path, reason: "its directory is missing or not writable (--state FILE)")
    }
    // A file that exists but cannot be read is a bad state (warned about), not a missing one.
    let data = FileManager.default.contents(atPath: path) ?? (FileManager.default.fileExists(atPath: path) ? Data() : nil)
    let deadline = pass.budget.map { clock.now + .milliseconds(Int64($0 * 1000)) }
    let run = CheckPass(group, state: data, now: now) { deadline.map { clock.now >= $0 } ?? false }
    if let why = run.rejected { Diagnostics.emit("warning: \(why) (\(path)); starting a new pass") }
    for i in run.restarted {
      Diagnostics.emit("warning: \(group.nodes[i].image) changed since the last run (mirror_tid, fsid or name): its pass restarts")
    }
    return (run, path)
  }

  func parseRate(_ s: String) throws -> UInt64 {
    guard let n = Spellings.byteSize(s) else { throw ValidationError("--max-rate takes bytes per second, e.g. 50M") }
    return n
  }
}
