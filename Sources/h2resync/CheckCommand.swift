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

  @Flag(help: "Print the versioned JSON report.")
  var json = false

  @Option(help: "Write Prometheus textfile metrics here (atomically: temp file + rename).")
  var metrics: String?

  @Option(help: "Throttle reads to this many bytes per second (e.g. 50M).")
  var maxRate: String?

  @Option(help: "Lock file that keeps overlapping runs apart.")
  var lockFile: String = "/tmp/h2resync-check.lock"

  func run() throws {
    let lock = open(lockFile, O_CREAT | O_RDWR, 0o644)
    guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
      throw CouldNotRun("h2resync: another check holds \(lockFile); not running twice")
    }
    defer { close(lock) }
    let rate = try maxRate.map(parseRate)
    let started = Date()
    let clock = ContinuousClock()
    let t0 = clock.now
    let group = try cluster.discover()
    // Total for the progress bar: allocated data is unknown up front, so use the bytes
    // the volumes hold in use (allocator_size - allocator_free).
    let total = group.nodes.reduce(UInt64(0)) { acc, n in
      let h = n.volume.header
      return acc + (h.allocatorSize > h.allocatorFree ? h.allocatorSize - h.allocatorFree : 0)
    }
    var done: UInt64 = 0
    let progress = Progress(total: total)
    let a = ClusterAnalysis(group: group, mode: .deep, threads: cluster.threads, overwriteSoftMasters: cluster.overwriteSoftMasters,
                            keepDifferences: json) { bytes in
      done += bytes
      if let rate, rate > 0 {
        // Sleep until the average rate is back under the limit.
        let ahead = Double(done) / Double(rate) - (clock.now - t0).seconds
        if ahead > 0.01 { usleep(useconds_t(min(ahead, 1.0) * 1_000_000)) }
      }
      progress.update(done)
    }
    progress.finish()
    let elapsed = (clock.now - t0).seconds
    if let metrics { try writeMetrics(metrics, a, started: started, duration: elapsed) }
    if json {
      printJSON(a.report(command: "check", mode: .deep))
    } else if !(quiet && a.exit == .ok) {
      let w = a.walker
      let damaged = w.stats.damagedBlocks.reduce(0, +)
      let checked = w.stats.blocksChecked.reduce(0, +)
      let label: String
      switch a.exit {
      case .ok: label = "OK"
      case .findings: label = "WARNING"
      case .needsHuman: label = "CRITICAL"
      case .couldNotRun: label = "UNKNOWN"
      }
      let nodeStates = w.nodeStates
      let states = group.nodes.map { "\($0.label)=\(nodeStates[$0.index].rawValue)" }.joined(separator: " ")
      let softLocal = w.stats.nodeSoftLocal.reduce(0, +)
      let local = softLocal > 0 ? ", \(softLocal) soft-local paths (soft masters' own changes)" : ""
      print("H2RESYNC \(label): cluster \(group.clid) \(states); \(w.stats.countedDifferences) differing paths\(local), \(damaged) damaged blocks, \(checked) blocks checked in \(String(format: "%.1f", elapsed)) s | differences=\(w.stats.countedDifferences) soft_local=\(softLocal) damaged=\(damaged) blocks=\(checked)")
    }
    try finish(a.exit)
  }

  func parseRate(_ s: String) throws -> UInt64 {
    guard let n = Spellings.byteSize(s) else { throw ValidationError("--max-rate takes bytes per second, e.g. 50M") }
    return n
  }

  /// node_exporter textfile format, written to a temp file and renamed into place.
  func writeMetrics(_ path: String, _ a: ClusterAnalysis, started: Date, duration: Double) throws {
    let w = a.walker
    var s = ""
    func metric(_ name: String, _ help: String, _ type: String = "gauge", _ rows: [(String, String)]) {
      s += "# HELP h2resync_\(name) \(help)\n# TYPE h2resync_\(name) \(type)\n"
      for (labels, value) in rows { s += "h2resync_\(name)\(labels) \(value)\n" }
    }
    let clid = a.group.clid.description
    func node(_ n: ClusterNode) -> String { "{clid=\"\(clid)\",image=\"\(n.image.replacingOccurrences(of: "\"", with: "\\\""))\"}" }
    metric("check_last_run_timestamp_seconds", "Start time of the last check.", "gauge", [("{clid=\"\(clid)\"}", String(Int(started.timeIntervalSince1970)))])
    metric("check_duration_seconds", "Duration of the last check.", "gauge", [("{clid=\"\(clid)\"}", String(format: "%.3f", duration))])
    metric("check_exit_code", "Exit code of the last check (0 ok, 1 repairable, 2 needs a human).", "gauge", [("{clid=\"\(clid)\"}", String(a.exit.rawValue))])
    metric("check_blocks_checked", "Blocks read and verified per node.", "gauge", a.group.nodes.map { (node($0), String(w.stats.blocksChecked[$0.index])) })
    metric("check_damaged_blocks", "Blocks failing their check code per node.", "gauge", a.group.nodes.map { (node($0), String(w.stats.damagedBlocks[$0.index])) })
    metric("check_differences", "Paths differing from the focus per node (soft masters' own changes not included).", "gauge", a.group.nodes.map { n in
      (node(n), String(w.stats.nodeDifferences[n.index]))
    })
    metric("check_soft_local", "Paths that are a soft master's own local changes (class soft-local) per node.", "gauge", a.group.nodes.map { n in
      (node(n), String(w.stats.nodeSoftLocal[n.index]))
    })
    metric("check_tids_only", "Paths whose copy differs from the focus's in modify_tid alone per node.", "gauge", a.group.nodes.map { n in
      (node(n), String(w.stats.nodeTidsOnly[n.index]))
    })
    // The node's one state (the same word the text and JSON reports print): 1 for it,
    // 0 for every other, so a state change is a value change, not a vanished series.
    let states = w.nodeStates
    metric("check_node_state", "The node's state (focus, in-sync, stale, ahead, split-brain, damaged, conflict, soft-local).", "gauge",
           a.group.nodes.flatMap { n in
             NodeState.allCases.map { st in
               (String(node(n).dropLast()) + ",state=\"\(st.rawValue)\"}", states[n.index] == st ? "1" : "0")
             }
           })
    let tmp = path + ".\(getpid()).tmp"
    guard FileManager.default.createFile(atPath: tmp, contents: Data(s.utf8)) else { throw CouldNotRun("h2resync: cannot write \(tmp)") }
    guard rename(tmp, path) == 0 else { unlink(tmp); throw CouldNotRun("h2resync: cannot rename \(tmp) to \(path)") }
  }
}

/// A progress bar with rate and ETA on stderr, drawn only when stderr is a terminal.
final class Progress {
  let total: UInt64
  let enabled = isatty(2) != 0
  let start = ContinuousClock.now
  var last = ContinuousClock.now
  init(total: UInt64) { self.total = total }

  func update(_ done: UInt64) {
    guard enabled else { return }
    let now = ContinuousClock.now
    guard (now - last) > .milliseconds(200) else { return }
    last = now
    let secs = (now - start).seconds
    let rate = secs > 0 ? Double(done) / secs : 0
    var eta = "no estimate"
    if total > 0, done <= total, rate > 0 { eta = String(format: "%.0f s", Double(total - done) / rate) }
    let pct = total > 0 ? min(100, Int(Double(done) * 100 / Double(total))) : 0
    let bar = String(repeating: "#", count: pct / 5) + String(repeating: ".", count: 20 - pct / 5)
    FileHandle.standardError.write(Data(String(format: "\r[%@] %3d%% %.1f MB/s ETA %@\u{1B}[K", bar, pct, rate / 1e6, eta).utf8))
  }

  func finish() {
    if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
  }
}

extension Duration {
  var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
