import Foundation
import H2TestSupport
import Testing

@testable import Hammer2Format

/// A resync onto a node without room is refused before any node is written, and the
/// plan's estimate holds what a resync really allocates (issue: no space is a clean
/// error found before anything is written).
@Suite struct NoSpaceResyncTests {
  /// Masters A, B, C and slave D; A and B got a 300 KB file and a directory that C and D
  /// lack. D's freemap is then filled to its last chunk (through its LOCAL PFS: its DATA
  /// PFS is untouched), so D cannot take the plan while C can.
  static func build(_ dir: String) throws -> [String] {
    let blob = Data((0..<300_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 7) })
    FileManager.default.createFile(atPath: dir + "/blob", contents: blob)
    let images = try buildCluster(dir, nodes: ["A", "B", "C", "D"], types: ["D": "SLAVE"]) { n, img in
      guard n == "A" || n == "B" else { return }
      try mk(["write", img, "--pfs", "DATA", "new.bin", "--from", dir + "/blob", "--time", "1700000100"])
      try mk(["mkdir", img, "--pfs", "DATA", "newdir", "--time", "1700000200"])
    }
    let tx = try Transaction(path: images[3])
    let ed = try tx.editor(pfs: "LOCAL")
    try ed.create(Array("filler".utf8), in: try ed.resolve(""), type: .directory, mode: 0o755, time: 1_700_000_300_000_000)
    tx.fillFreemapForTest = true
    try tx.commit()
    #expect(try Volume.open(path: images[3]).header.allocatableBytes == 0)
    return images
  }

  @Test func resyncOntoAFullNodeRefusesBeforeWritingAnyNode() throws {
    let dir = makeTempDir("h2nospace")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try Self.build(dir)
    let (c, d) = (images[2], images[3])
    // diff's per-node summary says it, text and JSON.
    let diff = try run("h2resync", ["diff"] + images)
    #expect(diff.status == 1, "\(diff.stdout)\(diff.stderr)")
    #expect(diff.stdout.contains("D.img: resync needs about ") && diff.stdout.contains(" 0 free: does not fit"), "\(diff.stdout)")
    #expect(diff.stdout.contains("C.img: resync needs about ") && !diff.stdout.contains("C.img: resync needs about 0"), "\(diff.stdout)")
    let json = try run("h2resync", ["diff", "--json"] + images)
    let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    let summary = try #require(report["summary"] as? [String: Any])
    let needed = try #require(summary["space_needed"] as? [String: Any])
    let free = try #require(summary["space_free"] as? [String: Any])
    #expect((needed[d] as? Int ?? 0) > 0 && (free[d] as? Int) == 0)
    #expect((needed[c] as? Int ?? 0) > 0 && (free[c] as? Int ?? 0) > (needed[c] as? Int ?? 0))
    // The dry run and the real run refuse with the same error and exit code.
    let before = [imageDigest(c), imageDigest(d)]
    let dry = try run("h2resync", ["resync", "--dry-run"] + images)
    #expect(
      dry.status == 3 && dry.stderr.contains("\(d): no space: ") && dry.stderr.contains("bytes needed for the resync plan"), "\(dry.stderr)"
    )
    let r = try run("h2resync", ["resync", "--yes"] + images)
    #expect(r.status == 3, "\(r.stdout)\(r.stderr)")
    #expect(
      r.stderr.contains("\(d): no space: ") && r.stderr.contains(", 0 bytes free") && r.stderr.contains("nothing written"), "\(r.stderr)")
    #expect(!r.stdout.contains("resynced "), "\(r.stdout)")
    // C sorts before D and has room: it must not have been written either.
    #expect([imageDigest(c), imageDigest(d)] == before, "a node was written although the plan could not be applied")
  }

  /// Without the full node the same plan applies, and what it allocated on C is within
  /// the estimate the plan gave for C.
  @Test func theEstimateCoversWhatAResyncAllocates() throws {
    let dir = makeTempDir("h2nospace")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = Array(try Self.build(dir).prefix(3))
    let c = images[2]
    let json = try run("h2resync", ["diff", "--json"] + images)
    let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    let summary = try #require(report["summary"] as? [String: Any])
    let estimate = try #require((summary["space_needed"] as? [String: Any])?[c] as? Int)
    let freeBefore = try Volume.open(path: c).header.allocatorFree
    let r = try run("h2resync", ["resync", "--yes"] + images)
    #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    let used = freeBefore - (try Volume.open(path: c).header.allocatorFree)
    #expect(used > 0 && used <= UInt64(estimate), "allocated \(used) bytes, estimated \(estimate)")
  }
}
