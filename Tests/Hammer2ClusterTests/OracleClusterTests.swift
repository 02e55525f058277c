import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// Real clusters written by DragonFly's code: the focus, the differing paths per node,
/// and resync's outcome, against the manifests. Each test works on its own copies of
/// the set's images: they run side by side.
@Suite
struct OracleClusterTests {
  static let sets: [String] = {
    guard Oracle.available else { return [] }
    let files = (try? FileManager.default.contentsOfDirectory(atPath: Oracle.directory.appendingPathComponent("cluster").path)) ?? []
    return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
  }()

  /// Copies the set's node images into a temp dir; returns letter -> path.
  func copySet(_ set: String, _ manifest: [String: Any], into dir: String) throws -> [(String, String)] {
    try (manifest["nodes"] as! [[String: Any]]).map { n in
      let letter = n["node"] as! String
      let path = dir + "/\(letter).img"
      try sparseCopy(try Oracle.image("\(set).\(letter)", set: "cluster"), path)
      return (letter, path)
    }
  }

  func differing(_ a: [[String: Any]], _ b: [[String: Any]]) -> Set<String> { Oracle.differingPaths(a, b) }

  @Test(.needsOracle, arguments: sets)
  func diffFindsTheFocusAndExactlyTheDifferingPaths(set: String) throws {
    let manifest = try Oracle.manifest(set, set: "cluster")
    let dir = makeTempDir("h2oc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try copySet(set, manifest, into: dir)
    let before = images.map { imageDigest($0.1) }
    let nodes = manifest["nodes"] as! [[String: Any]]
    let expectedFocus = (manifest["expected_focus"] as! [String]).map { l in images.first { $0.0 == l }!.1 }
    for mode in ["--deep", "--fast"] {
      let r = try run("h2resync", ["diff", "--json"] + (mode == "--deep" ? ["--deep"] : []) + images.map(\.1))
      let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
      #expect(doc["output_version"] as? Int == 1)
      if expectedFocus.isEmpty {
        #expect(doc["focus"] is NSNull, "\(set): no quorum, no focus")
        #expect(r.status == 2)
      } else {
        #expect(expectedFocus.contains(doc["focus"] as? String ?? ""), "\(set) \(mode): focus \(doc["focus"] ?? "nil")")
        #expect(r.status == 1)
      }
      let diffs = doc["differences"] as! [[String: Any]]
      for (i, (letter, image)) in images.enumerated() {
        let got = Set(diffs.filter { ($0["nodes"] as! [String: String])[image] != "in-sync" }.map { $0["path"] as! String })
        let mine = nodes[i]["listing"] as! [[String: Any]]
        let want: Set<String>
        if let exp = (manifest["expected_after_repair"] as? [String: Any])?["listing"] as? [[String: Any]] {
          want = differing(mine, exp)
        } else {
          // No quorum: whatever differs between the masters is a conflict on each.
          want = nodes.enumerated().filter { $0.offset != i }.reduce(into: Set<String>()) {
            $0.formUnion(differing(mine, $1.element["listing"] as! [[String: Any]]))
          }
          #expect(
            diffs.allSatisfy {
              ($0["nodes"] as! [String: String])[image] == "conflict" || ($0["nodes"] as! [String: String])[image] == "in-sync"
            })
        }
        // A directory whose entries changed carries another modify_tid with equal
        // attributes (DragonFly set no new mtime): stale, tids only, beside its entries.
        let tidsOnly = Set(diffs.filter { ($0["details"] as? [String: [String]])?[image] == ["tids only"] }.map { $0["path"] as! String })
        for p in tidsOnly.subtracting(want) {
          #expect(
            want.contains { $0.hasPrefix(p + "/") },
            "\(set) \(mode) node \(letter): \(p) differs in tids only, and nothing below it differs")
        }
        #expect(
          got == want.union(tidsOnly),
          "\(set) \(mode) node \(letter): extra \(got.subtracting(want).sorted().prefix(5)), missing \(want.subtracting(got).sorted().prefix(5))"
        )
      }
    }
    let check = try run("h2resync", ["check", "--quiet", "--lock-file", dir + "/lock"] + images.map(\.1))
    #expect(check.status == (expectedFocus.isEmpty ? 2 : 1))
    #expect(images.map { imageDigest($0.1) } == before, "diff and check must not change a byte")
  }

  @Test(.needsOracle, arguments: sets)
  func resyncEndsWithTheExpectedContentOnEveryNode(set: String) throws {
    let manifest = try Oracle.manifest(set, set: "cluster")
    let dir = makeTempDir("h2or")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try copySet(set, manifest, into: dir)
    let r = try run("h2resync", ["resync", "--yes"] + images.map(\.1))
    guard let expected = (manifest["expected_after_repair"] as? [String: Any])?["listing"] as? [[String: Any]] else {
      // No quorum: nothing may be written.
      let hashes = try images.map { try (imageDigest($0.1), imageDigest(Oracle.image("\(set).\($0.0)", set: "cluster"))) }
      #expect(r.status == 2, "\(r.stderr)")
      #expect(hashes.allSatisfy { $0.0 == $0.1 })
      return
    }
    #expect(r.status == 0, "\(set): \(r.stdout.suffix(600)) \(r.stderr)")
    for (letter, image) in images {
      let out = dir + "/x-\(letter)"
      #expect(try extractPFS(image, to: out).isEmpty)
      let problems = compareTree(out, listing: expected)
      #expect(problems.isEmpty, "\(set) node \(letter): \(problems.prefix(5))")
    }
    // A second run writes nothing.
    let hashes = images.map { imageDigest($0.1) }
    let again = try run("h2resync", ["resync", "--yes"] + images.map(\.1))
    #expect(again.status == 0)
    #expect(images.map { imageDigest($0.1) } == hashes, "\(set): a second resync changed bytes")
    // Freemap still covers every block on every node.
    for (_, image) in images { #expect(auditFreemap(try Volume.open(path: image)).isEmpty) }
  }

  /// DragonFly-written masters brought in sync, then a node-local snapshot on two of the
  /// three (h2mkimage): the third is stale, tids only, path "/"; diff and check exit 1;
  /// resync stamps the focus's tid on its root without a DATA block, and DragonFly's
  /// quorum then counts it.
  @Test(.needsOracle) func snapshotOnTwoOfThreeDragonFlyMasters() throws {
    let set = "three-masters-one-ahead"
    guard Self.sets.contains(set) else { return }
    let manifest = try Oracle.manifest(set, set: "cluster")
    let dir = makeTempDir("h2osnap")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try copySet(set, manifest, into: dir)
    let paths = images.map(\.1)
    // Without a snapshot: the second resync's default snapshot name (by the second)
    // must not meet this one's.
    let first = try run("h2resync", ["resync", "--yes", "--no-snapshot", "--allow-rollback"] + paths)
    #expect(first.status == 0, "\(first.stdout.suffix(500))")
    #expect(try run("h2resync", ["diff", "--deep"] + paths).status == 0)
    for (letter, image) in images where letter != "C" {
      let r = try run("h2mkimage", ["snapshot", image, "--pfs", "DATA", "DATA.node-local"])
      #expect(r.status == 0, "\(r.stderr)")
    }
    let c = try #require(images.first { $0.0 == "C" }).1
    for mode in [["--deep"], []] {
      let r = try run("h2resync", ["diff", "--json"] + mode + paths)
      #expect(r.status == 1, "\(mode): \(r.stdout.suffix(400))")
      let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
      let diffs = doc["differences"] as! [[String: Any]]
      #expect(diffs.count == 1 && diffs.first?["path"] as? String == "/", "\(mode): \(diffs.map { $0["path"] ?? "" })")
      #expect((diffs.first?["nodes"] as? [String: String])?[c] == "stale")
      #expect((diffs.first?["details"] as? [String: [String]])?[c] == ["tids only"])
      let state = (doc["nodes"] as! [[String: Any]]).first { $0["image"] as? String == c }?["state"] as? String
      #expect(state == "stale")
    }
    #expect(try run("h2resync", ["check", "--quiet", "--lock-file", dir + "/lock"] + paths).status == 1)
    let r = try run("h2resync", ["resync", "--yes"] + paths)
    #expect(r.status == 0, "\(r.stdout.suffix(600)) \(r.stderr)")
    let byType = r.stdout.split(separator: "\n").filter { $0.contains("bytes written by block type:") }
    #expect(byType.count == 1 && !byType[0].contains("DATA "), "\(byType)")
    let clid = try #require(H2UUID(string: manifest["pfs_clid"] as! String))
    let q = try DragonFlyQuorum.compute(images: paths, clid: clid)
    #expect(q.voters == Set(paths), "\(q)")
    #expect(try run("h2resync", ["diff", "--deep"] + paths).status == 0)
    for image in paths { #expect(auditFreemap(try Volume.open(path: image)).isEmpty) }
  }
}
