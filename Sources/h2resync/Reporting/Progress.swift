import Foundation
import Hammer2Cluster

/// The progress line of check, diff --deep and resync on stderr: phase, bar, percent,
/// rate and ETA. Drawn only when stderr is a terminal (nothing in a pipe, a log or a
/// cron mail); at most five times a second, the first time at once.
final class Progress {
  /// What `done` and `total` count.
  enum Unit {
    case bytes
    /// Plan actions (resync's apply phase).
    case actions
  }

  let phase: String
  /// The expected end of `done` (0: unknown, no bar or ETA).
  let total: UInt64
  let unit: Unit
  let enabled: Bool
  private let start = ContinuousClock.now
  private var last: ContinuousClock.Instant?
  private(set) var done: UInt64 = 0

  init(phase: String, total: UInt64, unit: Unit = .bytes, enabled: Bool = isatty(2) != 0) {
    self.phase = phase
    self.total = total
    self.unit = unit
    self.enabled = enabled
  }

  /// The bytes a walk that reads every block of `group` reads, about: what the volumes
  /// hold in use (allocator_size − allocator_free; allocated data is unknown up front).
  static func deepWalkTotal(_ group: ClusterGroup) -> UInt64 {
    group.nodes.reduce(UInt64(0)) { acc, n in
      let h = n.volume.header
      return acc + (h.allocatorSize > h.allocatorFree ? h.allocatorSize - h.allocatorFree : 0)
    }
  }

  /// Adds `n` to what is done.
  func add(_ n: UInt64) { update(done + n) }

  func update(_ value: UInt64) {
    done = value
    guard enabled else { return }
    let now = ContinuousClock.now
    if let last, (now - last) < .milliseconds(200) { return }
    last = now
    draw(now)
  }

  private func draw(_ now: ContinuousClock.Instant) {
    let secs = (now - start).seconds
    let rate = secs > 0 ? Double(done) / secs : 0
    var line = "\r\(phase): "
    if total > 0 {
      let pct = min(100, Int(Double(min(done, total)) * 100 / Double(total)))
      line += "[" + String(repeating: "#", count: pct / 5) + String(repeating: ".", count: 20 - pct / 5) + "] "
      line += String(format: "%3d%% ", pct)
    }
    switch unit {
    case .bytes:
      line += String(format: "%.1f MB, %.1f MB/s", Double(done) / 1e6, rate / 1e6)
    case .actions:
      line += total > 0 ? "\(done)/\(total) actions" : "\(done) actions"
    }
    if total > 0 {
      line += done < total && rate > 0 ? String(format: ", ETA %.0f s", Double(total - done) / rate) : ""
    }
    FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
  }

  /// Draws the final state once and clears the line (the report follows on stdout).
  func finish() {
    guard enabled else { return }
    draw(ContinuousClock.now)
    FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
  }
}

extension Duration {
  var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
