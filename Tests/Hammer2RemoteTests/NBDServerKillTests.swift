import Foundation
import H2TestSupport
import Hammer2Format
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The commit point on the server: nbdkit killed (SIGKILL) during resync's writes leaves
/// the served image in the old or the new state, and a rerun over a new server converges.
@Suite(.serialized, .enabled(if: NBDKit.available, "SKIPPED NBD server-kill tests: nbdkit is not installed (apt-get install nbdkit)"))
struct NBDServerKillTests {
  /// Write requests nbdkit's log filter has seen begin (`... Write id=N offset=...`; its
  /// completions read `...Write id=N return=...`).
  static func writesSeen(_ log: String) -> Int {
    guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return 0 }
    return text.split(separator: "\n").count { $0.contains(" Write id=") }
  }

  /// One server for `dir`: the log filter (outermost: it logs a request as it arrives),
  /// then the delay filter holding every write for `writeDelay`, so a kill after the
  /// K-th logged write lands while that write is held.
  func serve(_ dir: String, log: String, writeDelay: String) throws -> NBDKit {
    try? FileManager.default.removeItem(atPath: log)
    return try NBDKit(directory: dir, filters: ["log", "delay"], ["logfile=\(log)", "delay-write=\(writeDelay)"])
  }

  @Test func aServerKilledMidResyncLeavesTheOldOrTheNewStateAndARerunConverges() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let logDir = makeTempDir("h2nbd-kill-log")
    defer { try? FileManager.default.removeItem(atPath: logDir) }
    let log = logDir + "/log"
    let target = b.dir + "/" + b.images[2]
    let original = logDir + "/original.img"
    try sparseCopy(target, original)
    let oldState = try treeDigest(Volume.open(path: target))
    let focusTree = try treeDigest(Volume.open(path: b.dir + "/" + b.images[0])).filter { !$0.hasPrefix("header") && !$0.hasPrefix("pfs ") }
    let oldDiff = try runTool("h2resync", ["diff"] + b.images, cwd: b.dir)
    #expect(oldDiff.status == 1)
    let resync = ["resync", "--yes", "--no-snapshot"]
    let env = ["H2RESYNC_NBD_TIMEOUT": "5"]

    // A whole run first: how many write requests the resync sends.
    var server = try serve(b.dir, log: log, writeDelay: "0")
    let whole = try runTool("h2resync", resync + b.images.map(server.uri), environment: env, cwd: b.dir)
    server.stop()
    let total = Self.writesSeen(log)
    #expect(whole.status == 0 && total >= 3, "\(total) writes: \(whole.stderr.prefix(300))")
    try sparseCopy(original, target)

    var states: Set<String> = []
    for k in Set([1, 2, total / 2, total - 1, total]).sorted() where k >= 1 {
      server = try serve(b.dir, log: log, writeDelay: "20ms")
      let run = try RunningTool("h2resync", resync + b.images.map(server.uri), environment: env, cwd: b.dir)
      let start = Date()
      while Self.writesSeen(log) < k, run.process.isRunning, Date().timeIntervalSince(start) < 60 { usleep(2000) }
      server.crash()
      let r = run.finish()
      server.stop()
      #expect(r.status == 3 || r.status == 0, "killed after write \(k): exit \(r.status): \(r.stderr.prefix(300))")
      if r.status == 3 {
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
      }
      expectNoQuery(r, server)
      // Valid, and old or new: the same differences as before, or in sync.
      let state = try treeDigest(Volume.open(path: target))
      let isOld = state == oldState
      let isNew = Array(state.dropFirst()).filter { !$0.hasPrefix("pfs ") } == focusTree
      #expect(isOld || isNew, "killed after write \(k) of \(total): the node is neither old nor new")
      #expect(r.status != 0 || isNew, "resync succeeded but the node is not the new state")
      states.insert(isOld ? "old" : "new")
      let d = try runTool("h2resync", ["diff"] + b.images, cwd: b.dir)
      #expect(
        (d.status == 1 && d.stdout == oldDiff.stdout) || d.status == 0, "killed after write \(k): a local diff says \(d.stdout.suffix(400))"
      )
      // A rerun over a new server converges.
      let fresh = try NBDKit(directory: b.dir)
      let again = try runTool("h2resync", resync + b.images.map(fresh.uri), environment: env, cwd: b.dir)
      fresh.stop()
      #expect(again.status == 0, "rerun after the kill at write \(k): \(again.stdout.suffix(300)) \(again.stderr.prefix(300))")
      #expect(try runTool("h2resync", ["diff"] + b.images, cwd: b.dir).status == 0, "not in sync after the rerun (kill at write \(k))")
      try sparseCopy(original, target)
    }
    #expect(states.contains("old"), "no kill landed before the commit point: \(states)")
  }
}
