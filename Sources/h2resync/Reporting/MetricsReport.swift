import Foundation
import Hammer2Cluster
import Hammer2Format

/// check's Prometheus metrics: node_exporter's textfile format, written to a temp file
/// and renamed into place.
struct MetricsReport {
  let report: ClusterReport
  let started: Date
  let duration: Double
  /// The exit class the command ends with (the report's, raised by `check --freemap`).
  let exit: ExitClass
  /// Metrics of other checks, appended as they are (`check --freemap`'s).
  let extra: String
  init(_ report: ClusterReport, started: Date, duration: Double, exit: ExitClass? = nil, extra: String = "") {
    self.report = report
    self.started = started
    self.duration = duration
    self.exit = exit ?? report.exit
    self.extra = extra
  }

  func write(to path: String) throws {
    let s = text
    let tmp = path + ".\(getpid()).tmp"
    guard FileManager.default.createFile(atPath: tmp, contents: Data(s.utf8)) else { throw CouldNotRun.metricsNotWritten(path: tmp) }
    guard rename(tmp, path) == 0 else {
      unlink(tmp)
      throw CouldNotRun.metricsNotRenamed(from: tmp, to: path)
    }
  }

  var text: String {
    let stats = report.stats
    let group = report.group
    var s = ""
    func metric(_ name: String, _ help: String, _ type: String = "gauge", _ rows: [(String, String)]) {
      s += "# HELP h2resync_\(name) \(help)\n# TYPE h2resync_\(name) \(type)\n"
      for (labels, value) in rows { s += "h2resync_\(name)\(labels) \(value)\n" }
    }
    let clid = group.clid.description
    func node(_ n: ClusterNode) -> String { "{clid=\"\(clid)\",image=\"\(n.image.replacingOccurrences(of: "\"", with: "\\\""))\"}" }
    metric(
      "check_last_run_timestamp_seconds", "Start time of the last check.", "gauge",
      [("{clid=\"\(clid)\"}", String(Int(started.timeIntervalSince1970)))])
    metric("check_duration_seconds", "Duration of the last check.", "gauge", [("{clid=\"\(clid)\"}", String(format: "%.3f", duration))])
    metric(
      "check_exit_code", "Exit code of the last check (0 ok, 1 repairable, 2 needs a human).", "gauge",
      [("{clid=\"\(clid)\"}", String(exit.rawValue))])
    metric(
      "check_blocks_checked", "Blocks read and verified per node.", "gauge",
      group.nodes.map { (node($0), String(stats.blocksChecked[$0.index])) })
    metric(
      "check_damaged_blocks", "Blocks failing their check code per node.", "gauge",
      group.nodes.map { (node($0), String(stats.damagedBlocks[$0.index])) })
    metric(
      "check_differences", "Paths differing from the focus per node (soft masters' own changes not included).", "gauge",
      group.nodes.map { n in
        (node(n), String(stats.nodeDifferences[n.index]))
      })
    metric(
      "check_soft_local", "Paths that are a soft master's own local changes (class soft-local) per node.", "gauge",
      group.nodes.map { n in
        (node(n), String(stats.nodeSoftLocal[n.index]))
      })
    metric(
      "check_tids_only", "Paths whose copy differs from the focus's in modify_tid alone per node.", "gauge",
      group.nodes.map { n in
        (node(n), String(stats.nodeTidsOnly[n.index]))
      })
    // The node's one state (the same word the text and JSON reports print): 1 for it,
    // 0 for every other, so a state change is a value change, not a vanished series.
    let states = report.nodeStates
    metric(
      "check_node_state", "The node's state (focus, in-sync, stale, ahead, split-brain, damaged, conflict, soft-local).", "gauge",
      group.nodes.flatMap { n in
        NodeState.allCases.map { st in
          (String(node(n).dropLast()) + ",state=\"\(st.rawValue)\"}", states[n.index] == st ? "1" : "0")
        }
      })
    return s + extra
  }
}
