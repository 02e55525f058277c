import Crypto
import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// The large oracle images (`../shared/oracle/large`): 1 TiB volumes written by DragonFly's
/// code, each with about 5.5 GiB of file data over six 1-GiB regions, so that every
/// freemap is a level-2 FREEMAP_NODE above six FREEMAP_LEAFs. Behind `H2_LARGE=1` (set by
/// `.ci/run`): each image is restored once per run (about 40 s, 5.5 GiB of disk) and
/// deleted when its last test is done.
@Suite(
  .enabled(if: Oracle.largeSkipReason == nil, "SKIPPED large-image suite: needs H2_LARGE=1 (set by .ci/run) and ../shared/oracle/large"),
  .serialized)
struct OracleLargeTests {
  static let single = "L1-1t-lz4"
  static let set = "big-behind"
  /// Tests of this suite that use each image (the last one deletes it).
  static let users = ["L1-1t-lz4": 2, "big-behind.A": 2, "big-behind.B": 2, "big-behind.C": 2]
  /// The unsupported-freemap error of writers that cannot add to a level-2 freemap yet
  /// (`FormatError.unsupported` in `Write/Allocator.swift`).
  static let level2Unsupported = "not supported: writing to a freemap with level-2 nodes"

  init() {
    if let why = Oracle.largeSkipReason { print(why) }
  }

  // MARK: helpers

  /// The restored image `NAME` (shared by the run; never written).
  func image(_ name: String, _ manifestImage: [String: Any]) throws -> String {
    let bytes = try #require((manifestImage["image_bytes"] as? NSNumber)?.uint64Value)
    let path = try Oracle.largeImage(name, imageBytes: bytes)
    // The restored file must be as long as the volume (the .zst stops at 6 GiB + 64 KiB).
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value
    #expect(size == bytes, "\(name): restored to \(size ?? 0) bytes, image_bytes \(bytes)")
    return path
  }

  /// The node records of the cluster manifest, by letter.
  func nodes(_ manifest: [String: Any]) throws -> [(letter: String, record: [String: Any])] {
    try #require(manifest["nodes"] as? [[String: Any]]).map { ($0["node"] as! String, $0) }
  }

  /// Size, mtime and ctime: any write to the file changes one of them (hashing 5.5 GiB per
  /// node for each comparison would cost more than the tests themselves).
  func stamp(_ path: String) -> String {
    var st = stat()
    guard stat(path, &st) == 0 else { return "missing" }
    return "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
  }

  /// The SHA-256 of a file's logical content: its data blocks in order, holes as zeros,
  /// cut at the inode's size.
  func contentDigest(_ reader: PFSReader, _ ino: InodeData, path: String, findings: inout [Finding]) -> String {
    var hasher = SHA256()
    let size = ino.meta.size
    var pos: UInt64 = 0
    let zeros = [UInt8](repeating: 0, count: 1 << 16)
    func zeroFill(to end: UInt64) {
      while pos < end {
        let n = Int(min(UInt64(zeros.count), end - pos))
        zeros.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        pos += UInt64(n)
      }
    }
    reader.forEachDataBlock(of: ino, path: path, findings: &findings) { off, bytes in
      guard off < size else { return }
      zeroFill(to: off)
      let n = Int(min(UInt64(bytes.count), size - off))
      bytes.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
      pos = off + UInt64(n)
    }
    zeroFill(to: size)
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
  }

  /// Reads the DATA PFS of `path` in-process and compares it with a manifest listing:
  /// the set of paths (nothing missing, nothing extra), and per path its type, mode,
  /// size, nlinks, inode number, mtime, comp/check algorithms, symlink target, and the
  /// content digest of the files `hashFile` selects. Returns one line per problem and
  /// the bytes hashed.
  func listingProblems(_ path: String, clid: String?, listing: [[String: Any]], hashFile: ([String: Any]) -> Bool) throws -> (
    problems: [String], hashed: UInt64
  ) {
    let volume = try Volume.open(path: path)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let pfs: PFSInfo
    if let clid {
      pfs = try #require(list.first { $0.clid.description == clid && $0.name == "DATA" })
    } else {
      pfs = try PFSReader.choose(list, name: "DATA", image: path)
    }
    let reader = PFSReader(volume: volume, pfs: pfs)
    var problems: [String] = []
    var hashed: UInt64 = 0
    // Every path of the tree, walked through the directory entries.
    var present: Set<String> = ["."]
    var dirs: [(String, InodeData)] = [(".", pfs.inode)]
    while let (dpath, dir) = dirs.popLast() {
      reader.forEachEntry(of: dir, path: dpath, findings: &findings) { e in
        let p = dpath == "." ? e.nameString : dpath + "/" + e.nameString
        present.insert(p)
        if e.typeRaw == ObjectType.directory.rawValue {
          do { dirs.append((p, try reader.inode(e.inum))) } catch { problems.append("\(p): \(error)") }
        }
        return true
      }
    }
    let listed = Set(listing.compactMap { $0["path"] as? String })
    for p in present.subtracting(listed).sorted() { problems.append("\(p): on the image but not in the listing") }
    let typeNames: [ObjectType: String] = [.directory: "dir", .regularFile: "file", .symlink: "symlink", .fifo: "fifo"]
    for e in listing {
      guard let p = e["path"] as? String, let type = e["type"] as? String else { continue }
      guard present.contains(p) else {
        problems.append("\(p): missing")
        continue
      }
      let (inum, ino) = try reader.resolve(p)
      let m = ino.meta
      func expect(_ field: String, _ got: String, _ want: Any?) {
        guard let want else { return }
        if got != "\(want)" { problems.append("\(p): \(field) \(got), listed \(want)") }
      }
      expect("type", m.type.flatMap { typeNames[$0] } ?? "raw \(m.typeRaw)", type)
      expect("mode", String(format: "%04o", m.mode & 0o7777), e["mode"])
      expect("size", "\(m.size)", e["size"])
      expect("nlinks", "\(m.nlinks)", e["nlinks"])
      expect("inum", "\(inum)", e["inum"])
      expect("inode's own inum", "\(m.inum)", e["inum"])
      expect("mtime_us", "\(m.mtime)", e["mtime_us"])
      if p != "." { expect("ctime_us", "\(m.ctime)", e["ctime_us"]) } // the root's ctime is node-local
      expect("comp_algo", String(format: "0x%02x", m.compAlgo), e["comp_algo"])
      expect("check_algo", String(format: "0x%02x", m.checkAlgo), e["check_algo"])
      if type == "symlink" {
        expect("target", String(decoding: reader.readAll(ino, path: p, findings: &findings), as: UTF8.self), e["target"])
      }
      if type == "file", let sha = e["sha256"] as? String, hashFile(e) {
        expect("sha256", contentDigest(reader, ino, path: p, findings: &findings), sha)
        hashed += m.size
      }
    }
    problems += findings.map { "finding: \($0)" }
    return (problems, hashed)
  }

  /// Content spot checks: every small file (one data block each), and the large files
  /// named in `big` in full.
  static func spotCheck(big: Set<String>) -> ([String: Any]) -> Bool {
    { e in ((e["size"] as? Int) ?? 0) <= 1 << 20 || big.contains(e["path"] as? String ?? "") }
  }

  // MARK: L1-1t-lz4

  @Test func singleImageReadsExactlyAsListed() throws {
    let manifest = try Oracle.largeManifest(Self.single)
    defer { Oracle.doneWithLargeImage(Self.single, users: Self.users[Self.single]!) }
    let path = try image(Self.single, try #require(manifest["image"] as? [String: Any]))
    let pfs = try #require((manifest["pfs"] as? [[String: Any]])?.first { $0["name"] as? String == "DATA" })
    let listing = try #require(pfs["listing"] as? [[String: Any]])
    #expect(listing.count == 322)
    // Every file in full: 5.5 GiB through the reader (raw 64 KiB blocks below deep
    // indirect trees, lz4 blocks, DIRECTDATA symlinks).
    let started = Date()
    let (problems, hashed) = try listingProblems(path, clid: nil, listing: listing, hashFile: { _ in true })
    #expect(problems.isEmpty, "\(problems.count) problems: \(problems.prefix(10))")
    let want = listing.filter { $0["type"] as? String == "file" }.reduce(UInt64(0)) { $0 + UInt64($1["size"] as! Int) }
    #expect(hashed == want && hashed > 5 << 30, "hashed \(hashed) of \(want) bytes")
    print("large: \(Self.single) read and hashed \(hashed) bytes in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
  }

  @Test func singleImageShowsTheFreemapNodeAndChecksClean() throws {
    let manifest = try Oracle.largeManifest(Self.single)
    defer { Oracle.doneWithLargeImage(Self.single, users: Self.users[Self.single]!) }
    let path = try image(Self.single, try #require(manifest["image"] as? [String: Any]))
    let freemap = try #require(manifest["freemap"] as? [String: Any])
    let before = stamp(path)
    let show = try run("h2resync", ["show", path])
    #expect(show.status == 0, "\(show.stderr)")
    let lines = show.stdout.split(separator: "\n").map(String.init)
    let last = try #require(lines.last)
    #expect(last.hasSuffix(" 0 failed"), "\(last)")
    // Exactly the manifest's freemap: one FREEMAP_NODE (key 0, keybits 38) above six leaves.
    let shown = lines.filter { $0.contains("FREEMAP_NODE") || $0.contains("FREEMAP_LEAF") }
    #expect(shown.filter { $0.contains("FREEMAP_NODE") }.count == freemap["freemap_nodes"] as? Int)
    #expect(shown.filter { $0.contains("FREEMAP_LEAF") }.count == freemap["freemap_leaves"] as? Int)
    #expect(shown == (freemap["h2resync_show"] as? [String]), "\(shown)")
    // `check` of the single node: clean, exit 0.
    let dir = makeTempDir("h2large-check")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let check = try run("h2resync", ["check", "--lock-file", dir + "/lock", path])
    #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
    #expect(check.stdout.contains("H2RESYNC OK"), "\(check.stdout)")
    #expect(stamp(path) == before, "show and check must not write")
  }

  // MARK: big-behind

  func differing(_ a: [[String: Any]], _ b: [[String: Any]]) -> Set<String> { Oracle.differingPaths(a, b) }

  @Test func clusterDiffFindsTheFocusAndExactlyTheDestroyedPaths() throws {
    let manifest = try Oracle.largeManifest(Self.set)
    let nodes = try nodes(manifest)
    defer { for n in nodes { Oracle.doneWithLargeImage("\(Self.set).\(n.letter)", users: Self.users["\(Self.set).\(n.letter)"]!) } }
    let images = try nodes.map { try image("\(Self.set).\($0.letter)", try #require($0.record["image"] as? [String: Any])) }
    let before = images.map(stamp)
    let expected = try #require((manifest["expected_after_repair"] as? [String: Any])?["listing"] as? [[String: Any]])
    let focus = try #require(manifest["expected_focus"] as? [String])
    #expect(focus == ["A", "B"])
    for mode in [[], ["--deep"]] {
      let r = try run("h2resync", ["diff", "--json"] + mode + images)
      #expect(r.status == 1, "\(mode): \(r.stderr)")
      let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
      let focusImage = doc["focus"] as? String
      let focusImages = nodes.indices.filter { focus.contains(nodes[$0].letter) }.map { images[$0] }
      #expect(focusImages.contains(focusImage ?? ""), "\(mode): focus \(focusImage ?? "nil")")
      let reported = try #require(doc["nodes"] as? [[String: Any]])
      for (i, n) in nodes.enumerated() {
        let tid = (n.record["pfs_root"] as? [String: Any])?["root_bref_modify_tid"] as? Int
        let got = reported.first { $0["image"] as? String == images[i] }?["root_modify_tid"] as? Int
        #expect(got != nil && got == tid, "node \(n.letter): root_modify_tid \(got ?? -1), manifest \(tid ?? -1)")
      }
      let diffs = try #require(doc["differences"] as? [[String: Any]])
      for (i, n) in nodes.enumerated() {
        let differs = Set(diffs.filter { ($0["nodes"] as? [String: String])?[images[i]] != "in-sync" }.compactMap { $0["path"] as? String })
        let want = differing(try #require(n.record["listing"] as? [[String: Any]]), expected)
        // A directory whose entries changed carries another modify_tid with equal
        // attributes (DragonFly's destroy set no new mtime): stale, "tids only", and only
        // above paths that differ themselves.
        let tidsOnly = Set(
          diffs.filter { ($0["details"] as? [String: [String]])?[images[i]] == ["tids only"] }.compactMap { $0["path"] as? String })
        for p in tidsOnly.subtracting(want) {
          #expect(
            want.contains { $0.hasPrefix(p + "/") }, "\(mode) node \(n.letter): \(p) differs in tids only, and nothing below it differs")
        }
        #expect(
          differs == want.union(tidsOnly),
          "\(mode) node \(n.letter): extra \(differs.subtracting(want).sorted().prefix(5)), missing \(want.subtracting(differs).sorted().prefix(5))"
        )
        if n.letter == "C" {
          // C is stale exactly on what A and B destroyed.
          let removed = Set(
            try #require(n.record["removed_from_base"] as? [String]).map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 })
          let destroyed = Set(
            try #require(nodes.first { $0.letter == "A" }?.record["removed_from_base"] as? [String]).map {
              $0.hasPrefix("/") ? String($0.dropFirst()) : $0
            })
          #expect(removed.isEmpty)
          #expect(
            destroyed.count == 4 && differs.subtracting(tidsOnly) == destroyed,
            "\(mode): C differs on \(differs.sorted()), destroyed \(destroyed.sorted())")
        } else {
          #expect(differs.isEmpty, "\(mode): focus node \(n.letter) differs on \(differs.sorted().prefix(5))")
        }
      }
    }
    let dir = makeTempDir("h2large-check")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let check = try run("h2resync", ["check", "--quiet", "--lock-file", dir + "/lock"] + images)
    #expect(check.status == 1, "\(check.stdout) \(check.stderr)")
    #expect(images.map(stamp) == before, "diff and check must not write")
  }

  @Test func clusterResyncBringsTheStaleNodeToTheFocus() throws {
    let manifest = try Oracle.largeManifest(Self.set)
    let nodes = try nodes(manifest)
    defer { for n in nodes { Oracle.doneWithLargeImage("\(Self.set).\(n.letter)", users: Self.users["\(Self.set).\(n.letter)"]!) } }
    let shared = try nodes.map { try image("\(Self.set).\($0.letter)", try #require($0.record["image"] as? [String: Any])) }
    let expected = try #require((manifest["expected_after_repair"] as? [String: Any])?["listing"] as? [[String: Any]])
    let clid = manifest["pfs_clid"] as? String
    // Only C is written: it gets a private sparse copy; the focus nodes are used as
    // restored and must stay untouched.
    let dir = makeTempDir("h2large-resync")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try #require(nodes.firstIndex { $0.letter == "C" })
    var images = shared
    images[c] = dir + "/C.img"
    try sparseCopy(shared[c], images[c])
    let focusBefore = images.enumerated().filter { $0.offset != c }.map { stamp($0.element) }
    // Before the resync, C's extra paths are exactly what A and B destroyed: the listing
    // check below tells the stale state from the repaired one.
    let destroyed = Set(try #require(nodes.first { $0.letter == "A" }?.record["removed_from_base"] as? [String]))
    let stale = try listingProblems(images[c], clid: clid, listing: expected, hashFile: Self.spotCheck(big: []))
    #expect(
      Set(stale.problems) == Set(destroyed.map { "\($0): on the image but not in the listing" }),
      "C before resync: \(stale.problems.prefix(10))")
    let started = Date()
    let r = try run("h2resync", ["resync", "--yes"] + images)
    let seconds = Date().timeIntervalSince(started)
    if r.status != 0, r.stderr.contains(Self.level2Unsupported) {
      // The writer of this revision cannot add to a level-2 freemap; this test turns on
      // by itself once it can.
      try Test.cancel("SKIPPED large resync: the writer refuses these nodes (\(Self.level2Unsupported))")
    }
    #expect(r.status == 0, "\(r.stdout.suffix(800)) \(r.stderr)")
    print("large: resync of \(Self.set) took \(String(format: "%.1f", seconds)) s")
    #expect(images.enumerated().filter { $0.offset != c }.map { stamp($0.element) } == focusBefore, "resync wrote to a focus node")
    // C now lists as the focus, content spot-checked (all small files and one 1 GiB file).
    let big = Set(expected.filter { ($0["size"] as? Int ?? 0) > 1 << 20 }.compactMap { $0["path"] as? String }.sorted().prefix(1))
    let (problems, _) = try listingProblems(images[c], clid: clid, listing: expected, hashFile: Self.spotCheck(big: big))
    #expect(problems.isEmpty, "C after resync: \(problems.count) problems: \(problems.prefix(10))")
    // Its freemap covers every block it now references, and freemap_tid == mirror_tid.
    let audit = auditFreemap(try Volume.open(path: images[c]))
    #expect(audit.isEmpty, "freemap audit of C: \(audit.prefix(10))")
    // A second diff: in sync.
    let again = try run("h2resync", ["diff", "--json"] + images)
    #expect(again.status == 0, "\(again.stdout.suffix(800)) \(again.stderr)")
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
    #expect((doc["differences"] as? [Any])?.isEmpty == true, "\(again.stdout.prefix(800))")
  }
}
