import ArgumentParser
import Foundation
import Hammer2Cluster

/// check's resumable pass: `--time-budget` and `--state`.
struct PassOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Stop cleanly after this long (90s, 45m, 8h, 1h30m or seconds) and record where the pass got to; the next run continues.",
      valueName: "duration"))
  var timeBudget: String?

  @Option(
    help: ArgumentHelp(
      "The pass's state file (default: $STATE_DIRECTORY/<clid>-<pfs>.state, else /var/lib/h2resync/<clid>-<pfs>.state).",
      valueName: "file"))
  var state: String?

  /// The budget in seconds (validated).
  var budget: Double? { timeBudget.flatMap(Self.seconds) }

  /// A pass with a state file: whenever a budget or a state file is given. A plain
  /// check is one full pass with no state.
  var enabled: Bool { timeBudget != nil || state != nil }

  func validate() throws {
    if let t = timeBudget, Self.seconds(t) == nil {
      throw ValidationError("--time-budget takes a duration such as 90s, 45m, 8h, 1h30m or a number of seconds")
    }
    if let s = state, s.isEmpty { throw ValidationError("--state takes a file name") }
  }

  /// "1h30m", "45m", "90s", "8h", "3600" (seconds): units h, m, s, each at most once and
  /// in that order; nil for anything else or for zero.
  static func seconds(_ text: String) -> Double? {
    if let n = UInt64(text) { return n > 0 && n < 1 << 40 ? Double(n) : nil }
    let units: [(Character, UInt64)] = [("h", 3600), ("m", 60), ("s", 1)]
    var total: UInt64 = 0
    var digits = ""
    var allowed = 0
    for c in text {
      if c.isASCII && c.isNumber {
        digits.append(c)
        continue
      }
      guard let j = units.indices.first(where: { $0 >= allowed && units[$0].0 == c }), digits.count <= 9, let n = UInt64(digits)
      else { return nil }
      total += n * units[j].1
      allowed = j + 1
      digits = ""
    }
    return digits.isEmpty && total > 0 ? Double(total) : nil
  }

  /// The state file: `--state`, else under systemd's StateDirectory= (the first of its
  /// directories), else /var/lib/h2resync.
  func statePath(for group: ClusterGroup) -> String {
    if let state { return state }
    let dir =
      ProcessInfo.processInfo.environment["STATE_DIRECTORY"].flatMap { $0.split(separator: ":").first.map(String.init) }
      ?? "/var/lib/h2resync"
    return dir + "/" + CheckPass.stateName(group)
  }
}
