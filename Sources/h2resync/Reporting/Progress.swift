import Foundation

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
