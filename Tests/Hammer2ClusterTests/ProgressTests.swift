import Foundation
import H2TestSupport
import Testing

/// Issue 19 item 4: check, diff --deep and resync draw a progress line (phase, rate,
/// ETA) when stderr is a terminal, and nothing when it is not.
@Suite struct ProgressTests {
  /// Runs a package tool under a pseudo-terminal (util-linux `script`): everything it
  /// writes to the terminal, stdout and stderr together.
  func runOnTerminal(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let quoted = ([productsDirectory.appendingPathComponent(tool).path] + arguments).map {
      "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
    let dir = makeTempDir("h2pty")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/out", contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
    // -e: the command's exit status; -f: flush as it comes; -q: no start/end banner.
    p.arguments = ["-qefc", quoted.joined(separator: " "), "/dev/null"]
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
    p.standardError = FileHandle.nullDevice
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    let out = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/out"))) ?? Data()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self))
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "needs util-linux script(1) for a pseudo-terminal"))
  func progressOnATerminalOnly() throws {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == "three-masters-one-behind" })
    let dir = makeTempDir("h2progress")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let built = try spec.copyOfSharedBuild(into: dir)
    let images = spec.nodes.map { built.images[$0.name]! }
    let lock = ["--lock-file", dir + "/lock"]

    // On a terminal.
    let check = try runOnTerminal("h2resync", ["check"] + lock + images)
    #expect(check.output.contains("\rcheck: ["), "\(check.output)")
    #expect(check.output.contains("MB/s"))
    let deep = try runOnTerminal("h2resync", ["diff", "--deep"] + images)
    #expect(deep.status == 1)
    #expect(deep.output.contains("\rdiff --deep: ["), "\(deep.output)")
    let fast = try runOnTerminal("h2resync", ["diff"] + images)
    #expect(fast.status == 1)
    // (The terminal ends lines with CR LF; a progress line starts with a lone CR.)
    #expect(!fast.output.replacingOccurrences(of: "\r\n", with: "\n").contains("\r"), "a fast diff draws no progress: \(fast.output)")

    // In files (as from cron): no progress, same reports.
    let checkFile = try run("h2resync", ["check"] + lock + images)
    #expect(!checkFile.stderr.contains("\r") && !checkFile.stdout.contains("\r"))
    let deepFile = try run("h2resync", ["diff", "--deep"] + images)
    #expect(!deepFile.stderr.contains("\r") && !deepFile.stdout.contains("\r"))
    let firstLine = try #require(deepFile.stdout.split(separator: "\n").first)
    #expect(deep.output.contains(firstLine), "the same report follows the progress line")

    // resync: the walk, the apply (actions of the plan) and the verifying walk.
    let plainCopy = dir + "/plain"
    try FileManager.default.createDirectory(atPath: plainCopy, withIntermediateDirectories: true)
    let resyncFile = try run(
      "h2resync",
      ["resync", "--yes", "--no-snapshot", "--deep"]
        + images.map { i -> String in
          let c = plainCopy + "/" + URL(fileURLWithPath: i).lastPathComponent
          try? sparseCopy(i, c)
          return c
        })
    #expect(resyncFile.status == 0, "\(resyncFile.stdout)\(resyncFile.stderr)")
    #expect(!resyncFile.stderr.contains("\r") && !resyncFile.stdout.contains("\r"))
    let resync = try runOnTerminal("h2resync", ["resync", "--yes", "--no-snapshot", "--deep"] + images)
    #expect(resync.status == 0, "\(resync.output)")
    for phase in ["\rresync: walk: [", "\rresync: apply: [", "\rresync: verify: ["] {
      #expect(resync.output.contains(phase), "\(phase.dropFirst()) missing: \(resync.output)")
    }
    #expect(resync.output.contains(" actions"))
  }
}
