import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The read-only commands, run as a user would run them.
struct ReadCommandTests {
  @Test(.needsOracle) func pfsJSONListsEveryPFS() throws {
    let image = try Oracle.image("v5-multi-pfs")
    let r = try run("h2resync", ["pfs", "--json", image])
    #expect(r.status == 0, "\(r.stderr)")
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    #expect(doc["output_version"] as? Int == 1)
    let rows = try #require(doc["pfs"] as? [[String: Any]])
    #expect(Set(rows.compactMap { $0["name"] as? String }) == ["LOCAL", "DATA", "PROJECTS", "SCRATCH", "DATA.snap-a", "DATA.snap-b"])
    #expect(rows.allSatisfy { $0["image"] as? String == image })
    let text = try run("h2resync", ["pfs", image])
    #expect(text.stdout.contains("MASTER/SNAPSHOT"))
  }

  @Test(.needsOracle) func lsCatAndPfsDefault() throws {
    let image = try Oracle.image("v3-none-iscsi32")
    let manifest = try Oracle.manifest("v3-none-iscsi32")
    let listing = try #require(
      (manifest["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == "DATA" }?["listing"] as? [[String: Any]])
    // --pfs may be omitted: DATA is the only PFS besides LOCAL.
    let ls = try run("h2resync", ["ls", image])
    #expect(ls.status == 0)
    let top = listing.compactMap { $0["path"] as? String }.filter { $0 != "." && !$0.contains("/") }
    #expect(ls.stdout.split(separator: "\n").map(String.init).sorted() == top.sorted())
    let long = try run("h2resync", ["ls", image, "--pfs", "DATA", "-l", "/"])
    #expect(long.stdout.split(separator: "\n").count == top.count)
    // cat of the largest file hashes to the manifest's sha256.
    let file = try #require(
      listing.filter { $0["type"] as? String == "file" }.max { ($0["size"] as? Int ?? 0) < ($1["size"] as? Int ?? 0) })
    let dir = makeTempDir("h2cat")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = Process()
    p.executableURL = productsDirectory.appendingPathComponent("h2resync")
    p.arguments = ["cat", image, "--pfs", "DATA", file["path"] as! String]
    FileManager.default.createFile(atPath: dir + "/out", contents: nil)
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    #expect(sha256(ofFile: dir + "/out") == file["sha256"] as? String)
  }

  @Test(.needsOracle) func extractAndShowFromTheCommandLine() throws {
    let image = try Oracle.image("v4-autozero-zeros")
    let manifest = try Oracle.manifest("v4-autozero-zeros")
    let listing = try #require(
      (manifest["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == "DATA" }?["listing"] as? [[String: Any]])
    let dir = makeTempDir("h2extract")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let r = try run("h2resync", ["extract", image, "--pfs", "DATA", dir + "/out"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(compareTree(dir + "/out", listing: listing).isEmpty)
    // Holes stay holes: the 40 MiB file with 21 bytes in the middle allocates almost nothing.
    var st = stat()
    let big = try #require(listing.first { ($0["size"] as? Int ?? 0) > 30_000_000 }?["path"] as? String)
    #expect(stat(dir + "/out/" + big, &st) == 0)
    #expect(st.st_blocks * 512 < 1 << 20)
    let show = try run("h2resync", ["show", image])
    #expect(show.status == 0)
    #expect(show.stdout.contains("FREEMAP_LEAF"))
    #expect(show.stdout.contains("0 failed"))
  }

  @Test(.needsOracle) func readCommandsNeverWrite() throws {
    let image = try Oracle.image("v2-zlib-nocheck")
    let before = imageDigest(image)
    let dir = makeTempDir("h2ro")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    _ = try run("h2resync", ["pfs", image])
    _ = try run("h2resync", ["ls", image, "-l"])
    _ = try run("h2resync", ["show", image, "--deep"])
    _ = try run("h2resync", ["extract", image, dir + "/x"])
    #expect(imageDigest(image) == before)
  }
}

/// Bad input: one clear line naming image, offset and structure; documented exit code 3
/// when nothing could be read, 1 when the command finished around damage.
final class BadInputTests {
  /// Scratch directories of this test, removed when it ends.
  private var dirs: [String] = []
  deinit { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
  func tempDir(_ prefix: String) -> String {
    let d = makeTempDir(prefix)
    dirs.append(d)
    return d
  }

  func damaged(_ name: String, _ body: (String) throws -> Void) throws -> String {
    let dir = tempDir("h2bad")
    let path = dir + "/" + name + ".img"
    try sparseCopy(try Oracle.image("v3-none-iscsi32"), path)
    try body(path)
    return path
  }

  func expectOneLineError(_ r: CommandResult, contains: [String], status: Int32 = 3) {
    #expect(r.status == status, "status \(r.status): \(r.stderr)")
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(r.stderr)")
    for c in contains { #expect(r.stderr.contains(c), "expected \(c) in: \(r.stderr)") }
  }

  @Test func missingFile() throws {
    expectOneLineError(try run("h2resync", ["pfs", "/nonexistent/x.img"]), contains: ["/nonexistent/x.img", "open failed"])
  }

  @Test func notAnImage() throws {
    let dir = tempDir("h2bad")
    let path = dir + "/random.bin"
    var rng = SeededRandom(seed: 7)
    FileManager.default.createFile(atPath: path, contents: Data((0..<200_000).map { _ in UInt8.random(in: 0...255, using: &rng) }))
    expectOneLineError(try run("h2resync", ["pfs", path]), contains: [path, "@0x0", "volume header #0", "not a HAMMER2 image"])
  }

  @Test(.needsOracle) func truncatedImage() throws {
    let path = try damaged("trunc") { truncate($0, 30_000) }
    expectOneLineError(try run("h2resync", ["ls", path]), contains: [path, "volume header #0", "truncated"])
    // Truncated after the header: the metadata beyond the end is reported, not crashed on.
    let late = try damaged("late") { truncate($0, 0x8400000) }
    let r = try run("h2resync", ["ls", late])
    #expect(r.status == 3 || r.status == 1)
    #expect(r.stderr.contains(late) && r.stderr.contains("@0x"))
  }

  @Test(.needsOracle) func zeroedAndGarbledHeaders() throws {
    let zero = try damaged("zero") { try pokeFile($0, at: 0, [UInt8](repeating: 0, count: 65536)) }
    expectOneLineError(try run("h2resync", ["show", zero]), contains: [zero, "@0x0", "volume header #0", "not a HAMMER2 image"])
    let crc = try damaged("crc") { try pokeFile($0, at: 0x100, [0xAA]) }
    expectOneLineError(try run("h2resync", ["pfs", crc]), contains: [crc, "CRC mismatch", "expected 0x"])
    let swapped = try damaged("swapped") { path in
      let h = try FileImage(path: path)
      var hdr = VolumeHeader(try h.read(at: 0, count: 65536))
      hdr.magic = H2.volumeIdABO
      try pokeFile(path, at: 0, hdr.encode(recomputeCRCs: true))
    }
    expectOneLineError(try run("h2resync", ["pfs", swapped]), contains: [swapped, "reverse-endian"])
  }

  @Test(.needsOracle) func damagedDataBlockIsAFindingWithPath() throws {
    let volume = try Volume.open(path: try Oracle.image("v3-none-iscsi32"))
    var findings: [Finding] = []
    let pfs = try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: volume.label)
    let reader = PFSReader(volume: volume, pfs: pfs)
    // A file of 1..4 data blocks (its blockrefs sit in the inode itself).
    let listing = try #require(
      (try Oracle.manifest("v3-none-iscsi32")["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == "DATA" }?["listing"]
        as? [[String: Any]])
    var victim: (String, Blockref)?
    for e in listing where e["type"] as? String == "file" {
      guard let size = e["size"] as? Int, size > 2000, size < 200_000, let p = e["path"] as? String else { continue }
      let ino = try reader.resolve(p).inode
      if let b = ino.blockset.first(where: { $0.type == .data && $0.radix != 0 }) {
        victim = (p, b)
        break
      }
    }
    let (name, bref) = try #require(victim)
    let path = try damaged("data") { try pokeFile($0, at: bref.mediaOffset + 10, [0x5A, 0xA5]) }
    let dir = tempDir("h2bad-x")
    let r = try run("h2resync", ["extract", path, dir + "/x"])
    #expect(r.status == 1, "\(r.stderr)")
    #expect(r.stderr.contains(path) && r.stderr.contains("@0x\(String(bref.mediaOffset, radix: 16))"))
    #expect(r.stderr.contains("iscsi32 check mismatch: expected 0x") && r.stderr.contains("(path \(name))"))
  }

  @Test func usageErrorsExitThree() throws {
    #expect(try run("h2resync", ["ls"]).status == 3)
    #expect(try run("h2resync", ["frobnicate"]).status == 3)
    #expect(try run("h2resync", ["--help"]).status == 0)
  }
}
