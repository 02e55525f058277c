import Foundation
import H2TestSupport
import Testing

/// The real cluster sets of the oracle corpus (written by DragonFly's code), served by
/// nbdkit: every node over NBD, and the first node local with the others over NBD, give
/// the local reports byte for byte, and resync ends as it ends locally.
@Suite(
  .serialized, .enabled(if: NBDKit.available, "SKIPPED NBD oracle tests: nbdkit is not installed (apt-get install nbdkit)"),
  .enabled(if: Oracle.available, Comment(rawValue: "NBD oracle tests: " + Oracle.skipMessage)))
struct NBDOracleTests {
  static let sets: [String] = {
    guard Oracle.available else { return [] }
    let files = (try? FileManager.default.contentsOfDirectory(atPath: Oracle.directory.appendingPathComponent("cluster").path)) ?? []
    return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
  }()

  /// The set's node images copied into `dir` as LETTER.img: their file names.
  func copySet(_ set: String, into dir: String) throws -> [String] {
    let manifest = try Oracle.manifest(set, set: "cluster")
    return try (manifest["nodes"] as! [[String: Any]]).map { n in
      let letter = n["node"] as! String
      try sparseCopy(try Oracle.image("\(set).\(letter)", set: "cluster"), dir + "/\(letter).img")
      return "\(letter).img"
    }
  }

  @Test(arguments: sets)
  func reportsOverNBDAreTheLocalReports(set: String) throws {
    let dir = makeTempDir("h2nbd-oracle")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try copySet(set, into: dir)
    let server = try NBDKit(directory: dir, readOnly: true)
    defer { server.stop() }
    let lock = ["--lock-file", dir + "/check.lock"]
    let everyNode = images.map(server.uri)
    let mixed = [images[0]] + images.dropFirst().map(server.uri)
    for args in [["diff"], ["diff", "--json"], ["diff", "--deep", "--json"], ["check"] + lock, ["check", "--json"] + lock] {
      let local = try runTool("h2resync", args + images, cwd: dir)
      #expect(local.status != 3, "\(set) \(args): \(local.stderr.prefix(300))")
      for (how, nodes) in [("every node over NBD", everyNode), ("mixed", mixed)] {
        let remote = try runTool("h2resync", args + nodes, cwd: dir)
        #expect(
          remote.status == local.status, "\(set) \(args) \(how): exit \(remote.status), local \(local.status): \(remote.stderr.prefix(300))"
        )
        if args.contains("--json") {
          #expect(localJSON(remote.stdout, server) == local.stdout, "\(set) \(args) \(how)")
        } else {
          #expect(
            normalizedReport(remote.stdout, server, images) == normalizedReport(local.stdout, server, images), "\(set) \(args) \(how)")
        }
        #expect(normalizedReport(remote.stderr, server, images) == normalizedReport(local.stderr, server, images), "\(set) \(args) \(how)")
        expectNoQuery(remote, server)
      }
    }
  }

  @Test(arguments: sets)
  func resyncOverNBDEndsAsLocally(set: String) throws {
    let localDir = makeTempDir("h2nbd-oracle-local")
    defer { try? FileManager.default.removeItem(atPath: localDir) }
    let images = try copySet(set, into: localDir)
    let resync = ["resync", "--yes", "--no-snapshot"]
    let local = try runTool("h2resync", resync + images, cwd: localDir)
    let localAfter = try runTool("h2resync", ["diff", "--deep"] + images, cwd: localDir)
    for mixed in [false, true] {
      let dir = makeTempDir("h2nbd-oracle-nbd")
      defer { try? FileManager.default.removeItem(atPath: dir) }
      _ = try copySet(set, into: dir)
      let server = try NBDKit(directory: dir)
      defer { server.stop() }
      // Mixed: the first node local, the others over NBD.
      let nodes = mixed ? [images[0]] + images.dropFirst().map(server.uri) : images.map(server.uri)
      let how = mixed ? "mixed" : "every node over NBD"
      let remote = try runTool("h2resync", resync + nodes, cwd: dir)
      #expect(remote.status == local.status, "\(set) \(how): exit \(remote.status), local \(local.status): \(remote.stderr.prefix(300))")
      #expect(normalizedReport(remote.stdout, server, images) == normalizedReport(local.stdout, server, images), "\(set) \(how)")
      expectNoQuery(remote, server)
      for image in images {
        #expect(
          imageDigest(dir + "/" + image) == imageDigest(localDir + "/" + image),
          "\(set) \(how) \(image): not the bytes a local resync wrote")
      }
      let after = try runTool("h2resync", ["diff", "--deep"] + images, cwd: dir)
      #expect(after.status == localAfter.status && after.stdout == localAfter.stdout, "\(set) \(how)")
    }
  }
}
