import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// TLS that works: nbdkit `--tls=require` with a pre-shared key, the nodes named
/// `nbds+unix:///EXPORT?socket=...&tls-psk-file=...&tls-username=...`.
@Suite(.serialized, .enabled(if: NBDKit.available, "SKIPPED NBD TLS tests: nbdkit is not installed (apt-get install nbdkit)"))
struct NBDTLSTests {
  @Test func readsAndResyncsOverTLSWithAPreSharedKeyThatIsNeverPrinted() throws {
    let b = try buildScenario("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let keys = makeTempDir("h2nbd-psk")
    defer { try? FileManager.default.removeItem(atPath: keys) }
    // psktool's format: USERNAME:HEXKEY, one a line.
    let psk = keys + "/h2resync-secret.psk"
    try "alice:\((0..<32).map { String(format: "%02x", ($0 * 37 + 11) & 0xff) }.joined())\n".write(
      toFile: psk, atomically: true, encoding: .utf8)
    let server = try NBDKit(directory: b.dir, options: ["--tls=require", "--tls-psk=\(psk)"])
    defer { server.stop() }
    server.tlsQuery = "tls-psk-file=\(psk)&tls-username=alice"
    let nodes = b.images.map(server.uri)
    #expect(nodes.allSatisfy { $0.hasPrefix("nbds+unix:///") && $0.contains("tls-psk-file=") })

    func expectNoSecret(_ r: ToolResult, sourceLocation: SourceLocation = #_sourceLocation) {
      for text in [r.stdout, r.stderr] {
        #expect(
          !text.contains(keys) && !text.contains("psk") && !text.contains("alice"),
          "the query was printed: \(text.prefix(400))", sourceLocation: sourceLocation)
      }
      expectNoQuery(r, server, sourceLocation: sourceLocation)
    }

    for args in [["diff", "--json"], ["diff", "--deep"]] {
      let local = try runTool("h2resync", args + b.images, cwd: b.dir)
      let remote = try runTool("h2resync", args + nodes, cwd: b.dir)
      #expect(remote.status == 1 && local.status == 1, "\(args): exit \(remote.status): \(remote.stderr.prefix(400))")
      if args.contains("--json") {
        #expect(localJSON(remote.stdout, server) == local.stdout, "\(args)")
      } else {
        #expect(normalizedReport(remote.stdout, server, b.images) == normalizedReport(local.stdout, server, b.images), "\(args)")
      }
      expectNoSecret(remote)
    }
    // Without the key the handshake fails: TLS is really required.
    let plain = try runTool("h2resync", ["pfs", "nbd+unix:///\(b.images[0])?socket=\(server.socket)"], cwd: b.dir)
    #expect(plain.status == 3, "\(plain.stderr)")

    let r = try runTool("h2resync", ["resync", "--yes", "--no-snapshot"] + nodes, cwd: b.dir)
    #expect(r.status == 0, "\(r.stdout.suffix(400)) \(r.stderr.prefix(400))")
    #expect(r.stdout.contains(server.label(b.images[2])))
    expectNoSecret(r)
    let after = try runTool("h2resync", ["diff"] + b.images, cwd: b.dir)
    #expect(after.status == 0, "\(after.stdout.suffix(400))")
  }
}
