import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The per-node index scans (the fast descent and the deep scan) meet an unreadable
/// block of one node's inode index: what it hides is unknown on that node, never
/// "missing", and both modes say so (in-hole or damaged) instead of planning a copy.
@Suite struct DamagedIndexTests {
  @Test func aDamagedIndexBlockIsAHoleNotMissingFiles() throws {
    let dir = makeTempDir("h2idx")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // 600 entries: the PFS root's index needs indirect blocks.
    let images = try buildCluster(dir, files: 600) { _, _ in }
    // Damage the first indirect block of C's PFS root table (index entries below it).
    let volume = try Volume.open(path: images[2])
    var findings: [Finding] = []
    let pfs = try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: images[2])
    let ind = try #require(pfs.inode.blockset.first { $0.type == .indirect && $0.key < H2.dirhashVisible })
    try pokeFile(images[2], at: ind.mediaOffset + 200, [UInt8](repeating: 0xA5, count: 64))
    let before = images.map { imageDigest($0) }

    for mode in [["diff"], ["diff", "--deep"], ["check"]] {
      let r = try run("h2resync", mode + ["--json"] + images + (mode[0] == "check" ? ["--lock-file", dir + "/check.lock"] : []), cwd: dir)
      #expect(r.status != 0 && r.status != 3, "\(mode): exit \(r.status) \(r.stderr)")
      let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(mode): \(r.stdout)")
      let diffs = doc["differences"] as? [[String: Any]] ?? []
      var classes = Set<String>()
      for d in diffs {
        let nodes = d["nodes"] as? [String: String] ?? [:]
        if let c = nodes[images[2]] { classes.insert(c) }
      }
      #expect(!classes.contains("missing"), "\(mode): a hole was taken for missing files: \(classes)")
      #expect(!classes.isDisjoint(with: ["in-hole", "damaged"]), "\(mode): the damage is not reported: \(classes)")
    }
    #expect(images.map { imageDigest($0) } == before, "diff/check wrote to an image")
  }
}
