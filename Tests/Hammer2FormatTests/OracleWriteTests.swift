import Crypto
import Foundation
import H2TestSupport
import Hammer2Builder
import Hammer2Format
import Testing

/// The writer on real images: copies of DragonFly-written images get files added,
/// replaced and deleted, and still read exactly (and the freemap still covers every block).
struct OracleWriteTests {
  static let names: [String] = Oracle.available ? Oracle.singleNames : []

  @Test(.needsOracle, arguments: names)
  func addReplaceDeleteOnARealImage(name: String) throws {
    let dir = makeTempDir("h2ow")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/img"
    try sparseCopy(try Oracle.image(name), img)
    let manifest = try Oracle.manifest(name)
    var listing = try #require(
      (manifest["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == "DATA" }?["listing"] as? [[String: Any]])
    // Pick a file to replace (deepest regular file with data) and a top-level file to delete.
    let files = listing.filter { $0["type"] as? String == "file" && ($0["nlinks"] as? Int ?? 1) == 1 }
    let replace = try #require(files.max { ($0["path"] as! String).count < ($1["path"] as! String).count })
    let others = files.filter { ($0["path"] as! String) != (replace["path"] as! String) }
    let delete = try #require(others.first { !($0["path"] as! String).contains("/") } ?? others.first)
    var rng = SeededRandom(seed: 99)
    let added = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let replacement = Array(String(repeating: "replaced by h2resync\n", count: 5000).utf8)

    let tx = try Transaction(path: img)
    let ed = try tx.editor(pfs: "DATA")
    let newInum = try ed.create(Array("h2-added.bin".utf8), in: 1, type: .regularFile, mode: 0o640, time: 1_500_000_000_000_000)
    try ed.write(newInum, at: 0, added)
    try ed.updateMeta(newInum) { $0.mtime = 1_500_000_000_000_000 }
    let rInum = try ed.resolve(replace["path"] as! String)
    try ed.truncate(rInum, to: 0)
    try ed.write(rInum, at: 0, replacement)
    let (dDir, dName) = try ed.parentAndName(delete["path"] as! String)
    try ed.unlink(dName, in: dDir)
    try tx.commit()

    listing.removeAll { ($0["path"] as! String) == (delete["path"] as! String) }
    for i in listing.indices where (listing[i]["path"] as! String) == (replace["path"] as! String) {
      listing[i]["size"] = replacement.count
      listing[i]["sha256"] = SHA256.hash(data: replacement).map { String(format: "%02x", $0) }.joined()
    }
    listing.append([
      "path": "h2-added.bin", "type": "file", "mode": "0640", "size": added.count,
      "sha256": SHA256.hash(data: added).map { String(format: "%02x", $0) }.joined(),
    ])
    let volume = try Volume.open(path: img)
    var findings: [Finding] = []
    let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: img))
    _ = try reader.extract(to: dir + "/out", findings: &findings)
    #expect(findings.isEmpty, "\(findings.prefix(3))")
    let problems = compareTree(dir + "/out", listing: listing, checkMtime: false)
    #expect(problems.isEmpty, "\(name): \(problems.prefix(8))")
    let audit = auditFreemap(volume)
    #expect(audit.isEmpty, "\(name): \(audit.prefix(5))")
    // Every other PFS is untouched.
    for other in try volume.pfsList(findings: &findings) where other.name != "DATA" {
      let expected = try #require(
        (manifest["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == other.name }?["listing"] as? [[String: Any]])
      let out = dir + "/o-" + other.name
      _ = try PFSReader(volume: volume, pfs: other).extract(to: out, findings: &findings)
      #expect(compareTree(out, listing: expected).isEmpty, "\(name)/\(other.name) changed")
    }
  }
}
