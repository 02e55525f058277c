import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The commands with every node behind nbdkit (one private Unix socket, `file dir=`: each
/// image an export named by its file name), against the same commands on the files.
@Suite(.serialized, .enabled(if: NBDKit.available, "SKIPPED NBD command tests: nbdkit is not installed (apt-get install nbdkit)"))
struct NBDCommandTests {
  static let scenarios = [
    "three-masters-one-behind", "corrupted-block", "split-brain-two-masters", "master-two-slaves", "soft-master", "mixed-compression",
  ]

  @Test(arguments: scenarios)
  func reportsOverNBDAreTheLocalReports(name: String) throws {
    let b = try buildScenario(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let server = try NBDKit(directory: b.dir, readOnly: true)
    defer { server.stop() }
    for args in [["diff"], ["diff", "--json"], ["diff", "--deep", "--json"], ["check"], ["check", "--json"]] {
      let local = try runTool("h2resync", args + b.images, cwd: b.dir)
      let remote = try runTool("h2resync", args + b.images.map(server.uri), cwd: b.dir)
      #expect(remote.status == local.status, "\(name) \(args): exit \(remote.status), local \(local.status): \(remote.stderr.prefix(500))")
      if args.contains("--json") {
        // JSON: byte-identical once the URIs read as the file names (same key order).
        #expect(localJSON(remote.stdout, server) == local.stdout, "\(name) \(args)")
      } else {
        #expect(normalizedReport(remote.stdout, server, b.images) == normalizedReport(local.stdout, server, b.images), "\(name) \(args)")
      }
      #expect(normalizedReport(remote.stderr, server, b.images) == normalizedReport(local.stderr, server, b.images), "\(name) \(args)")
      expectNoQuery(remote, server)
    }
  }

  @Test func readCommandsOverNBD() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let server = try NBDKit(directory: b.dir, readOnly: true)
    defer { server.stop() }
    let image = b.images[0]
    for args in [["pfs", "--json"], ["ls", "-l"], ["show"], ["ls", "-l", "docs"], ["cat", "docs/report.txt"]] {
      let local = try runTool("h2resync", Array(args.prefix(1)) + [image] + args.dropFirst(), cwd: b.dir)
      let remote = try runTool("h2resync", Array(args.prefix(1)) + [server.uri(image)] + args.dropFirst(), cwd: b.dir)
      #expect(local.status == 0 && remote.status == 0, "\(args): \(remote.stderr.prefix(300))")
      #expect(normalizedReport(remote.stdout, server, b.images) == normalizedReport(local.stdout, server, b.images), "\(args)")
      expectNoQuery(remote, server)
    }
  }

  @Test func resyncOverNBDThenALocalDiffIsInSync() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let server = try NBDKit(directory: b.dir)
    defer { server.stop() }
    let before = try runTool("h2resync", ["diff"] + b.images, cwd: b.dir)
    #expect(before.status == 1)
    let r = try runTool("h2resync", ["resync", "--yes"] + b.images.map(server.uri), cwd: b.dir)
    #expect(r.status == 0, "\(r.stdout.suffix(500)) \(r.stderr.prefix(500))")
    expectNoQuery(r, server)
    let after = try runTool("h2resync", ["diff"] + b.images, cwd: b.dir)
    #expect(after.status == 0, "\(after.stdout.suffix(500))")
  }

  @Test func resyncRefusesAReadOnlyExportBeforePlanning() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let server = try NBDKit(directory: b.dir, readOnly: true)
    defer { server.stop() }
    let sum = imageDigest(b.dir + "/" + b.images[2])
    let r = try runTool("h2resync", ["resync", "--yes"] + b.images.map(server.uri), cwd: b.dir)
    #expect(r.status == 3)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1 && lines[0].contains("read-only") && lines[0].contains(server.label(b.images[0])), "\(r.stderr)")
    #expect(r.stdout.isEmpty, "planned before refusing: \(r.stdout.prefix(300))")
    #expect(imageDigest(b.dir + "/" + b.images[2]) == sum)
  }

  @Test func faultsAreOneLineAndExit3() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let env = ["H2RESYNC_NBD_TIMEOUT": "1"]
    func expectFault(_ args: [String], naming label: String, _ server: NBDKit? = nil, sourceLocation: SourceLocation = #_sourceLocation)
      throws
    {
      let start = Date()
      let r = try runTool("h2resync", args, environment: env, cwd: b.dir)
      #expect(r.status == 3, "\(args.first ?? ""): exit \(r.status): \(r.stderr.prefix(300))", sourceLocation: sourceLocation)
      let lines = r.stderr.split(separator: "\n")
      #expect(lines.count == 1 && lines[0].contains(label), "\(r.stderr.prefix(600))", sourceLocation: sourceLocation)
      #expect(!r.stderr.contains("?") && !r.stdout.contains("socket="), "\(r.stderr)", sourceLocation: sourceLocation)
      #expect(Date().timeIntervalSince(start) < 30, sourceLocation: sourceLocation)
    }
    try expectFault(["diff", "nbd://127.0.0.1:1/x?tls-username=secret"] + b.images.dropFirst(), naming: "nbd://127.0.0.1:1/x")
    let server = try NBDKit(directory: b.dir, readOnly: true)
    try expectFault(["check", server.uri("nope.img")] + b.images.dropFirst(), naming: server.label("nope.img"))
    server.stop()
    let stalled = try NBDKit(directory: b.dir, filters: ["delay"], readOnly: true, ["delay-read=60"])
    try expectFault(["diff"] + b.images.map(stalled.uri), naming: stalled.label(b.images[0]))
    stalled.stop()
    let short = try NBDKit(directory: b.dir, filters: ["truncate"], readOnly: true, ["truncate=64M"])
    try expectFault(["pfs", short.uri(b.images[1])], naming: short.label(b.images[1]))
    short.stop()
  }

  /// The commit point over NBD: stopped after every write index in turn (the injected
  /// crash hook), the served image reads as the old or the new state, and a rerun
  /// converges.
  @Test func crashAtEveryWriteIndexOverNBD() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let target = b.dir + "/" + b.images[2]
    let original = b.dir + "/original.img"
    try sparseCopy(target, original)
    let oldState = try treeDigest(Volume.open(path: target))
    let newState = try treeDigest(Volume.open(path: b.dir + "/" + b.images[0])).filter { !$0.hasPrefix("header") }
    let server = try NBDKit(directory: b.dir)
    defer { server.stop() }
    var n = 0
    var finished = false
    while !finished, n < 2000 {
      try sparseCopy(original, target)
      let r = try runTool(
        "h2resync", ["resync", "--yes", "--no-snapshot"] + b.images.map(server.uri), environment: ["H2_CRASH_AFTER_WRITES": String(n)],
        cwd: b.dir)
      let state = try treeDigest(Volume.open(path: target))
      if r.status == 86 {
        #expect(state == oldState, "stopped after \(n) writes over NBD: the node is neither old nor new")
        if n % 10 == 3 {
          let again = try runTool("h2resync", ["resync", "--yes", "--no-snapshot"] + b.images.map(server.uri), cwd: b.dir)
          #expect(again.status == 0, "a rerun after a crash at \(n) did not converge: \(again.stdout.suffix(300))")
        }
      } else {
        #expect(r.status == 0, "\(r.stderr.prefix(300))")
        #expect(
          Array(state.dropFirst()).filter { !$0.hasPrefix("pfs ") } == newState.filter { !$0.hasPrefix("pfs ") },
          "resync finished but the node differs from the focus")
        finished = true
      }
      n += 1
    }
    #expect(finished && n > 3, "\(n) write indexes")
  }
}
