import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// The resumable check (issue 19 item 1), in-process: a pass cut into runs by a "stop
/// after N keys" budget, the state carried between runs as the file's bytes, adds up
/// to exactly one full check: the same blocks verified (counts and a digest of
/// (node, offset)), the same findings and differences.
@Suite(.serialized) struct ResumableCheckTests {
  /// Three nodes with index indirect blocks (600 extra files), damage on every node in
  /// other places (data blocks of two files, one index block of C's PFS root) and
  /// differences (a chmod on B, a new file on C).
  func damagedCluster(_ dir: String) throws -> [String] {
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data((0..<150_000).map { UInt8(truncatingIfNeeded: $0 * 7) }))
    let images = try buildCluster(dir, files: 600) { n, img in
      switch n {
      case "A": try mk(["corrupt", img, "--pfs", "DATA", "random.bin", "--block", "2"])
      case "B":
        try mk(["corrupt", img, "--pfs", "DATA", "sub/mixed.bin", "--block", "5"])
        try mk(["chmod", img, "--pfs", "DATA", "600", "text.txt", "--time", "1700000300"])
      default: try mk(["write", img, "--pfs", "DATA", "big/new.bin", "--from", dir + "/blob", "--time", "1700000100"])
      }
    }
    let volume = try Volume.open(path: images[2])
    var findings: [Finding] = []
    let pfs = try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: images[2])
    let ind = try #require(pfs.inode.blockset.last { $0.type == .indirect && $0.key < H2.dirhashVisible })
    try pokeFile(images[2], at: ind.mediaOffset + 200, [UInt8](repeating: 0xA5, count: 64))
    return images
  }

  /// What a pass verified and found, summed over its runs.
  struct PassResult {
    var runs = 0
    var verified: [[UInt64]] = []
    var report: ClusterReport?
    var paths: [String] = []
    var restarted: [[Int]] = []
    var final: ClusterReport { report! } // Safe: set by every run.
    func digest(_ node: Int) -> [UInt64] { verified[node].sorted() }
  }

  /// Runs check passes of `keysPerRun` keys until the pass completes (or `maxRuns`),
  /// carrying the state through its encoded bytes; `between` runs after each run.
  func runPass(
    _ images: [String], keysPerRun: Int, state: inout Data?, maxRuns: Int = 1000, into r: inout PassResult,
    between: (Int) throws -> Void = { _ in }
  ) throws {
    while r.runs < maxRuns {
      let group = try ClusterGroup.discover(images: images, name: "DATA", clid: nil)
      var keys = 0
      var pass = CheckPass(group, state: state, now: Date()) {
        keys += 1
        return keys > keysPerRun
      }
      pass.window.recordsOffsets = true
      var options = AnalysisOptions(mode: .deep)
      options.window = pass.window
      let report = try ClusterReport.analyze(group, options)
      let outcome = try #require(report.scan?.outcome)
      if r.verified.isEmpty { r.verified = .init(repeating: [], count: group.nodes.count) }
      for i in group.nodes.indices {
        if pass.restarted.contains(i) { r.verified[i] = [] }
        r.verified[i] += outcome.verified[i]
      }
      r.restarted.append(pass.restarted)
      r.paths += report.differences.map(\.path)
      r.report = report
      r.runs += 1
      state = PassState(report, passStarted: pass.passStarted, runs: pass.runs).encoded()
      try between(r.runs)
      if outcome.complete { return }
    }
  }

  func fullCheck(_ images: [String]) throws -> ClusterReport {
    try ClusterReport.analyze(try ClusterGroup.discover(images: images, name: "DATA", clid: nil), AnalysisOptions(mode: .deep))
  }

  func expectSame(_ pass: ClusterReport, _ full: ClusterReport, _ what: String) {
    #expect(pass.stats.blocksChecked == full.stats.blocksChecked, "\(what): blocks")
    #expect(pass.stats.bytesChecked == full.stats.bytesChecked, "\(what): bytes")
    #expect(pass.stats.damagedBlocks == full.stats.damagedBlocks, "\(what): damaged")
    #expect(Set(pass.findings.map(\.location)) == Set(full.findings.map(\.location)), "\(what): findings")
    #expect(pass.stats.counts == full.stats.counts, "\(what): classes")
    #expect(pass.stats.differences == full.stats.differences, "\(what): differences")
    #expect(pass.stats.nodeDifferences == full.stats.nodeDifferences, "\(what): node differences")
    #expect(pass.nodeStates == full.nodeStates, "\(what): states")
    #expect(pass.exit == full.exit, "\(what): exit")
  }

  @Test func aPassCutIntoRunsVerifiesExactlyTheBlocksOfOneFullCheck() throws {
    let dir = makeTempDir("h2resume")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try damagedCluster(dir)
    let full = try fullCheck(images)
    #expect(full.findings.count >= 3 && full.stats.differences > 0, "the fixture has damage and differences")
    // One run with no budget: the whole pass, the reference digest.
    var none: Data?
    var whole = PassResult()
    try runPass(images, keysPerRun: .max, state: &none, into: &whole)
    #expect(whole.runs == 1)
    expectSame(whole.final, full, "one run")
    #expect(whole.verified.map { UInt64($0.count) } == full.stats.blocksChecked)
    for n in [13, 97] {
      var state: Data?
      var cut = PassResult()
      try runPass(images, keysPerRun: n, state: &state, into: &cut)
      #expect(cut.runs > 3, "\(n) keys per run: \(cut.runs) runs")
      expectSame(cut.final, full, "\(n) keys per run")
      for i in images.indices { #expect(cut.digest(i) == whole.digest(i), "\(n) keys per run: node \(i)'s blocks") }
      #expect(cut.paths.sorted() == whole.paths.sorted(), "\(n) keys per run: differences")
      #expect(PassState.decodeForTests(state!)?.complete == true)
    }
  }

  @Test func aNodeChangedMidPassRestartsOnlyThatNodesPass() throws {
    let dir = makeTempDir("h2resume-change")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildCluster(dir, files: 600) { _, _ in }
    var state: Data?
    var r = PassResult()
    try runPass(images, keysPerRun: 150, state: &state, maxRuns: 2, into: &r)
    #expect(r.runs == 2 && !(r.report?.scan?.outcome.complete ?? true))
    // C is written between runs: its mirror_tid moves.
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data(repeating: 7, count: 70_000))
    try mk(["write", images[2], "--pfs", "DATA", "later.bin", "--from", dir + "/blob", "--time", "1700000500"])
    try runPass(images, keysPerRun: 150, state: &state, into: &r)
    #expect(r.restarted[2] == [2], "the third run restarts C only: \(r.restarted)")
    #expect(r.restarted.enumerated().allSatisfy { $0.offset == 2 || $0.element.isEmpty })
    let full = try fullCheck(images)
    var none: Data?
    var whole = PassResult()
    try runPass(images, keysPerRun: .max, state: &none, into: &whole)
    // A and B: the blocks of one full check, none twice; C: those of its new volume.
    for i in 0..<3 { #expect(r.digest(i) == whole.digest(i), "node \(i)") }
    #expect(r.final.stats.blocksChecked == full.stats.blocksChecked)
  }

  @Test func aStateThatDoesNotMatchStartsANewPass() throws {
    let dir = makeTempDir("h2resume-bad")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildCluster(dir, files: 0) { _, _ in }
    var state: Data?
    var r = PassResult()
    try runPass(images, keysPerRun: 20, state: &state, maxRuns: 1, into: &r)
    let good = try #require(state)
    let group = try ClusterGroup.discover(images: images, name: "DATA", clid: nil)
    let resumed = CheckPass(group, state: good, now: Date()) { false }
    #expect(resumed.rejected == nil && resumed.runs == 2 && resumed.window.from.allSatisfy { $0 > 0 })
    let text = String(decoding: good, as: UTF8.self)
    let bad: [(Data, StateRejection)] = [
      (Data("not json".utf8), .unreadable),
      (good.prefix(good.count / 2), .unreadable),
      (Data(), .unreadable),
      (Data(text.replacingOccurrences(of: "\"version\":1", with: "\"version\":9").utf8), .version(9)),
      (
        Data(text.replacingOccurrences(of: "\"pfs\":\"DATA\"", with: "\"pfs\":\"OTHER\"").utf8),
        .otherCluster(clid: group.clid.description, pfs: "OTHER")
      ),
      // A frontier longer than any index is deep.
      (
        Data(text.replacingOccurrences(of: "\"frontier\":[", with: "\"frontier\":[" + (1...30).map { "\($0)," }.joined()).utf8), .unreadable
      ),
      (Data(text.replacingOccurrences(of: "\"classes\":[", with: "\"classes\":[\"no-such-class\",").utf8), .unreadable),
    ]
    for (data, why) in bad {
      let p = CheckPass(group, state: data, now: Date()) { false }
      #expect(p.rejected == why, "\(String(decoding: data.prefix(60), as: UTF8.self))")
      #expect(p.runs == 1 && p.window.from.allSatisfy { $0 == 0 })
    }
    // Another node set: two of the three nodes.
    let two = try ClusterGroup.discover(images: Array(images.prefix(2)), name: "DATA", clid: nil)
    #expect(CheckPass(two, state: good, now: Date()) { false }.rejected == .otherNodes)
  }

  /// The CLI: real seconds under a throttle. Runs of `--time-budget 1s` add up to the
  /// blocks of one plain check; the text, JSON and metrics carry the pass; a bad budget
  /// is a usage error; a damaged state file is warned about and a new pass starts.
  @Test func theCLIResumesABudgetedThrottledCheck() throws {
    let dir = makeTempDir("h2resume-cli")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildCluster(dir, files: 600) { n, img in
      if n == "A" { try mk(["corrupt", img, "--pfs", "DATA", "random.bin", "--block", "2"]) }
    }
    let common = ["--lock-file", dir + "/lock"] + images
    func json(_ r: CommandResult) throws -> [String: Any] {
      try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
    }
    let plain = try run("h2resync", ["check", "--json"] + common)
    #expect(plain.status == 1, "\(plain.stderr)")
    let plainSummary = try #require(try json(plain)["summary"] as? [String: Any])
    #expect(try json(plain)["pass"] == nil, "a plain check has no pass")
    let state = dir + "/pass.state"
    let metrics = dir + "/check.prom"
    var runs = 0
    var last: [String: Any] = [:]
    var sawIncomplete = false
    while runs < 60 {
      let r = try run(
        "h2resync", ["check", "--json", "--time-budget", "1s", "--max-rate", "4M", "--state", state, "--metrics", metrics] + common)
      runs += 1
      last = try json(r)
      let pass = try #require(last["pass"] as? [String: Any])
      #expect(pass["runs"] as? Int == runs && pass["started"] is String && pass["progress_ratio"] is Double)
      let damaged = (last["summary"] as? [String: Any])?["damaged_blocks"] as? [String: Int] ?? [:]
      #expect(r.status == (damaged.values.reduce(0, +) > 0 ? 1 : 0), "exit \(r.status) with damage so far \(damaged)")
      let prom = try String(contentsOfFile: metrics, encoding: .utf8)
      #expect(prom.contains("h2resync_check_pass_progress_ratio{") && prom.contains("h2resync_check_pass_start_timestamp_seconds{"))
      if pass["complete"] as? Bool == true { break }
      sawIncomplete = true
      #expect(prom.contains("h2resync_check_pass_complete{clid=\"11111111-2222-4333-8444-555555555555\"} 0"))
    }
    #expect(sawIncomplete && runs >= 2, "\(runs) runs")
    let summary = try #require(last["summary"] as? [String: Any])
    #expect(summary["blocks_checked"] as? [String: Int] == plainSummary["blocks_checked"] as? [String: Int])
    #expect(summary["damaged_blocks"] as? [String: Int] == plainSummary["damaged_blocks"] as? [String: Int])
    // The next run starts a new pass, said in text.
    let text = try run("h2resync", ["check", "--time-budget", "1s", "--max-rate", "2M", "--state", state] + common)
    #expect(text.stdout.contains("pass INCOMPLETE, time budget spent"), "\(text.stdout)")
    for bad in ["5x", "0", "1m2h", ""] {
      let r = try run("h2resync", ["check", "--time-budget", bad] + common)
      #expect(r.status == 3 && r.stderr.contains("--time-budget"), "\(bad): \(r.status) \(r.stderr)")
    }
    try Data("{\"version\": 1, garbage".utf8).write(to: URL(fileURLWithPath: state))
    let warned = try run("h2resync", ["check", "--json", "--state", state] + common)
    #expect(warned.stderr.contains("warning: the state file is unreadable or damaged") && warned.stderr.contains("starting a new pass"))
    #expect((try json(warned)["pass"] as? [String: Any])?["state_ignored"] is String)
    #expect(warned.status == 1)
  }
}

extension PassState {
  static func decodeForTests(_ data: Data) -> PassState? { try? JSONDecoder().decode(PassState.self, from: data) }
}
