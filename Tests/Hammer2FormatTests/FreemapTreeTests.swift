import Foundation
import H2TestSupport
import Hammer2Builder
import Testing

@testable import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

/// Helpers for freemap tests on sparse images.
enum FreemapFixture {
  static let time: UInt64 = 1_000_000_000_000_000

  /// A new sparse image of `size` bytes with PFSs LOCAL and DATA.
  static func newImage(_ dir: String, size: UInt64, name: String = "img") throws -> String {
    let img = dir + "/" + name
    var u = UUIDSource.seeded(7)
    try Newfs.format(path: img, size: size, labels: ["LOCAL"], uuids: &u, time: time)
    let tx = try Transaction(path: img)
    try tx.createPFS(name: "DATA", type: .master, clid: u.next(), fsid: u.next(), nmasters: 1, time: time)
    try tx.commit()
    return img
  }

  /// Bytes that no compressor shrinks.
  static func noise(_ count: Int, seed: UInt64) -> [UInt8] {
    var s = seed &+ 0x9E37_79B9_7F4A_7C15
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
      s &+= 0x9E37_79B9_7F4A_7C15
      var z = s
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      z ^= z >> 31
      for k in 0..<8 where i + k < count { out[i + k] = UInt8(truncatingIfNeeded: z >> (8 * UInt64(k))) }
      i += 8
    }
    return out
  }

  /// One commit writing `count` bytes to a new file `name` of DATA, every allocation of
  /// the transaction starting at `hint` (the test-only start hint) when given.
  @discardableResult
  static func writeFile(_ img: String, _ name: String, count: Int = 100_000, hint: UInt64? = nil) throws -> FreemapAllocator {
    let tx = try Transaction(path: img)
    if let h = hint { tx.allocator.setStartHint(h) }
    let ed = try tx.editor(pfs: "DATA")
    let inum = try ed.create(Array(name.utf8), in: try ed.resolve(""), type: .regularFile, mode: 0o644, time: time)
    try ed.write(inum, at: 0, noise(count, seed: UInt64(name.utf8.count) &* 31 &+ UInt64(count)))
    try tx.commit()
    return tx.allocator
  }

  /// A digest of the image file: its size and every data extent (holes skipped), so a
  /// sparse image of TiB is compared in the time its allocated bytes take to read.
  static func digest(_ path: String) throws -> [Int] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CocoaError(.fileNoSuchFile) }
    defer { close(fd) }
    var st = stat()
    fstat(fd, &st)
    var h = Hasher()
    var extents: [Int] = [Int(st.st_size)]
    var pos: off_t = 0
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while pos < st.st_size {
      let data = lseek(fd, pos, 3 /* SEEK_DATA */)
      if data < 0 { break }
      var end = lseek(fd, data, 4 /* SEEK_HOLE */)
      if end < 0 { end = st.st_size }
      var p = data
      while p < end {
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(min(off_t(1 << 20), end - p)), p) }
        guard n > 0 else { break }
        h.combine(p)
        buf.withUnsafeBytes { h.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        p += off_t(n)
      }
      pos = end
    }
    extents.append(h.finalize())
    return extents
  }

  /// The live freemap brefs of the volume header.
  static func headerFreemap(_ img: String) throws -> [Blockref] {
    try Volume.open(path: img).header.freemapBlockset.filter { !$0.isEmpty }
  }
}

@Suite struct FreemapTreeTests {
  typealias F = FreemapFixture

  func audit(_ img: String, _ what: String) throws -> FreemapShape {
    let v = try Volume.open(path: img)
    let problems = auditFreemap(v)
    #expect(problems.isEmpty, "\(what): \(problems.prefix(6))")
    return auditFreemapTree(v)
  }

  /// A sparse 2 TiB image whose freemap grows as DragonFly's does: 4 leaves in the
  /// header, the 5th makes L2@0; leaves at 256..259 GiB make L2@256G; leaves at 512 and
  /// 768 GiB fill the header again, and the first leaf at 1 TiB makes L2@512G, L2@768G
  /// and then L3@0 holding all four L2 nodes and the new leaf. Audited after every commit.
  @Test func twoTiBGrowsLevel2AndLevel3Nodes() throws {
    let dir = makeTempDir("h2fm2t")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try F.newImage(dir, size: 2 << 40)
    _ = try audit(img, "new")
    let G: UInt64 = 1 << 30
    var shape = FreemapShape()
    for r: UInt64 in [1, 2, 3] {
      try F.writeFile(img, "f\(r)", hint: r * G)
      shape = try audit(img, "region \(r)")
    }
    #expect(try F.headerFreemap(img).map(\.keybits) == [30, 30, 30, 30])
    try F.writeFile(img, "f4", hint: 4 * G)
    shape = try audit(img, "region 4")
    let h4 = try F.headerFreemap(img)
    #expect(h4.count == 1 && h4[0].type == .freemapNode && h4[0].key == 0 && h4[0].keybits == 38)
    #expect(shape.counts[1] == 5 && shape.counts[2] == 1)
    // DragonFly's hints: nodes carry bigmask and avail 0, leaves bigmask all ones.
    #expect(h4[0].check.u32(4) == 0 && h4[0].check.u64(1) == 0 && h4[0].methods == 0x50)
    #expect(h4[0].mediaOffset == 2 * 65536, "L2@0 in set 0: block 2 of GiB 0")
    for r: UInt64 in [256, 257, 258, 259] {
      try F.writeFile(img, "f\(r)", hint: r * G)
      shape = try audit(img, "region \(r)")
    }
    #expect(try F.headerFreemap(img).map { "\($0.keybits)@\($0.key >> 30)" } == ["38@0", "38@256"])
    for r: UInt64 in [512, 768] {
      try F.writeFile(img, "f\(r)", hint: r * G)
      shape = try audit(img, "region \(r)")
    }
    #expect(try F.headerFreemap(img).map { "\($0.keybits)@\($0.key >> 30)" } == ["38@0", "38@256", "30@512", "30@768"])
    try F.writeFile(img, "f1024", hint: 1024 * G)
    shape = try audit(img, "region 1024")
    let h = try F.headerFreemap(img)
    #expect(h.map { "\($0.keybits)@\($0.key >> 30)" } == ["46@0"])
    #expect(shape.counts[3] == 1 && shape.counts[2] == 4 && shape.counts[1] == 12)
    let v = try Volume.open(path: img)
    let l3 = try v.blockrefArray(h[0])
    #expect(l3.map { "\($0.keybits)@\($0.key >> 30)" } == ["38@0", "38@256", "38@512", "38@768", "30@1024"])
    #expect(h[0].mediaOffset == 3 * 65536, "L3@0 in set 0: block 3 of GiB 0")
    // A later commit touching leaf 0 copies leaf, L2@0 and L3@0 once each, to their next set.
    let l2Before = l3[0]
    let alloc = try F.writeFile(img, "again")
    shape = try audit(img, "region 0 again")
    let h2 = try F.headerFreemap(img)
    let l3After = try Volume.open(path: img).blockrefArray(h2[0])
    #expect(
      FreemapTree.set(of: h2[0].dataOff) == 1 && FreemapTree.set(of: l3After[0].dataOff) == (FreemapTree.set(of: l2Before.dataOff)! + 1) % 8
    )
    #expect(l3After[1] == l3[1], "untouched L2@256G is not copied")
    // Loaded on demand: the path to leaf 0 only.
    #expect(alloc.nodesRead == 2 && alloc.leavesRead == 1, "read \(alloc.nodesRead) nodes, \(alloc.leavesRead) leaves")
    // Beyond 1 TiB and under L3 directly (shortcut), then across the whole volume.
    try F.writeFile(img, "f1500", hint: 1500 * G)
    shape = try audit(img, "region 1500")
    #expect(shape.counts[1] == 13 && shape.counts[3] == 1)
    // Everything written reads back.
    let rv = try Volume.open(path: img)
    var findings: [Finding] = []
    let reader = PFSReader(volume: rv, pfs: try PFSReader.choose(try rv.pfsList(findings: &findings), name: "DATA", image: img))
    for name in ["f1", "f4", "f259", "f1024", "f1500", "again"] {
      let ino = try reader.resolve(name).inode
      let bytes = reader.readAll(ino, path: name, findings: &findings)
      #expect(bytes == F.noise(100_000, seed: UInt64(name.utf8.count) &* 31 &+ 100_000), "\(name)")
    }
    #expect(findings.isEmpty, "\(findings.prefix(4))")
    // For checking with DragonFly's code by hand (makefs -o R=/, -o B): keep a copy.
    if let keep = ProcessInfo.processInfo.environment["H2_FREEMAP_KEEP"] { try sparseCopy(img, keep) }
  }

  /// The allocator follows DragonFly's search: from the start hint of the type, forward
  /// and backward inside the leaf; a full run of a region moves to the next GiB; blocks of
  /// different types keep to their own 4 MiB segments.
  @Test func searchKeepsClassesApartAndMovesToTheNextRegion() throws {
    let dir = makeTempDir("h2fms")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try F.newImage(dir, size: 8 << 30)
    let tx = try Transaction(path: img)
    let a = tx.allocator
    let d1 = try a.allocate(size: 65536, type: .data)
    let i1 = try a.allocate(size: 1024, type: .inode)
    let i2 = try a.allocate(size: 1024, type: .inode)
    #expect(d1 >> 22 != i1 >> 22, "data and inodes in different segments")
    #expect(i2 == i1 + 1024, "small blocks pack through linear")
    #expect(d1 % 65536 == 0 && d1 >= tx.volume.header.allocatorBeg)
    // The start hint inside a region: the entry there first, then its neighbours.
    a.setStartHint((3 << 30) + 100 * (4 << 20))
    let d2 = try a.allocate(size: 65536, type: .data, key: 0x30000)
    #expect(d2 >> 22 == ((3 << 30) >> 22) + 100 && d2 & 0x3F_FFFF == 0x30000, "hinted entry, chunk from the file offset")
  }

  /// No space: an image filled to its last chunk refuses a change with the documented
  /// error, before anything is written (the image stays byte-identical), in the library
  /// and through h2mkimage (exit 3).
  @Test func noSpaceIsACleanErrorAndChangesNothing() throws {
    let dir = makeTempDir("h2fmns")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try F.newImage(dir, size: 2 << 30)
    let tx = try Transaction(path: img)
    let ed = try tx.editor(pfs: "DATA")
    try ed.create(Array("d".utf8), in: try ed.resolve(""), type: .directory, mode: 0o755, time: F.time)
    tx.fillFreemapForTest = true
    try tx.commit()
    _ = try audit(img, "filled")
    let v = try Volume.open(path: img)
    #expect(v.header.allocatableBytes == 0)
    let before = try F.digest(img)
    // Library: the commit's first allocation fails; nothing written (the transaction,
    // and with it the image's lock, ends with the function).
    func attempt() throws {
      let tx2 = try Transaction(path: img)
      #expect(tx2.freeBytes == 0)
      #expect(throws: FormatError.self) { try tx2.requireSpace(blockSizes: [1024], for: "a preflight") }
      let ed2 = try tx2.editor(pfs: "DATA")
      try ed2.create(Array("e".utf8), in: try ed2.resolve(""), type: .directory, mode: 0o755, time: F.time)
      do {
        try tx2.commit()
        Issue.record("commit on a full image succeeded")
      } catch {
        guard case .noSpace(let needed, _, let free) = error.kind else {
          Issue.record("wrong error \(error)")
          return
        }
        #expect(needed > 0 && free == 0 && error.location?.image == img)
        #expect(error.message.hasPrefix("no space: 1024 bytes needed for a 1 KiB INODE block, 0 bytes free"), "\(error.message)")
      }
    }
    try attempt()
    #expect(try F.digest(img) == before, "the failed commit changed the image")
    // CLI: write (refused by its preflight) and mkdir (refused at its first allocation).
    _ = FileManager.default.createFile(atPath: dir + "/blob", contents: Data(F.noise(100_000, seed: 5)))
    let w = try run("h2mkimage", ["write", img, "--pfs", "DATA", "x.bin", "--from", dir + "/blob"])
    #expect(
      w.status == 3 && w.stderr.contains("no space: ") && w.stderr.contains("bytes needed for x.bin") && w.stderr.contains(img),
      "\(w.stderr)")
    let m = try run("h2mkimage", ["mkdir", img, "--pfs", "DATA", "y"])
    #expect(m.status == 3 && m.stderr.contains("no space: "), "\(m.stderr)")
    #expect(try F.digest(img) == before, "the refused CLI changes changed the image")
    #expect(try audit(img, "after refusals").problems.isEmpty)
  }

  /// A preflight on a node with room: the byte count matches the allocator's view.
  @Test func preflightCountsFreeChunksHonestly() throws {
    let dir = makeTempDir("h2fmpf")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try F.newImage(dir, size: 2 << 30)
    let tx = try Transaction(path: img)
    let free = tx.freeBytes
    #expect(free == tx.volume.header.allocatableBytes)
    #expect(free > (1 << 30) && free < (2 << 30) - (128 << 20))
    try tx.requireSpace(bytes: free, for: "everything")
    #expect(throws: FormatError.self) { try tx.requireSpace(bytes: free + 16384, for: "one chunk more") }
    #expect(Transaction.bytesNeeded(blockSizes: [65536, 65536, 1024, 1024]) == 131072 + 4 * 16384)
    _ = try tx.allocator.allocate(size: 65536, type: .data)
    #expect(tx.freeBytes == free - 65536)
  }
}

/// Crash safety of a commit that splits the freemap: the header's four leaves are full
/// for 64 KiB blocks (their bigmask says so, as DragonFly leaves them after a failed
/// relaxed scan), so `h2mkimage write` creates the leaf for GiB 4 and with it L2@0.
/// Stopped after every number of writes, the image reads as before with a clean
/// freemap; the full run has the level-2 node.
@Suite struct FreemapCrashTests {
  typealias F = FreemapFixture

  @Test func everyPrefixOfANodeSplittingCommitLeavesTheOldState() throws {
    let dir = makeTempDir("h2fmcrash")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let base = try F.newImage(dir, size: 8 << 30, name: "base")
    for r: UInt64 in [1, 2, 3] { try F.writeFile(base, "f\(r)", hint: r << 30) }
    // Clear every radix bit of the four leaves' bigmask in the current header.
    let v = try Volume.open(path: base)
    var h = v.header
    #expect(h.freemapBlockset.map(\.keybits) == [30, 30, 30, 30])
    for i in 0..<4 { h.freemapBlockset[i].check.setU32(4, 0) }
    do {
      let w = try WritableImage(path: base)
      try w.write(at: UInt64(v.headerSlot) * H2.zoneBytes64, h.encode(recomputeCRCs: true), structure: "test: bigmask")
      try w.sync()
    }
    let before = try extractedListing(base)
    let blob = F.noise(200_000, seed: 9)
    var n = 0
    var completed = false
    let img = dir + "/img"
    while !completed, n < 200 {
      try sparseCopy(base, img)
      // `h2mkimage write IMG --pfs DATA new.bin` in-process, stopped after n writes (the
      // executable's H2_CRASH_AFTER_WRITES wiring: CrashTests).
      let stops = WriteStops()
      let edits = ImageEdits(
        image: img, pfs: "DATA", openTransaction: { try Transaction(path: $0, opener: stops.localOpener(stoppingAfter: n)) })
      var failure: (any Error)?
      do { try edits.apply([.write(path: "new.bin", offset: 0, bytes: blob)], time: 1_100_000_000 * 1_000_000) } catch { failure = error }
      let volume = try Volume.open(path: img)
      let problems = auditFreemap(volume)
      #expect(problems.isEmpty, "after \(n) writes: \(problems.prefix(4))")
      if failure == nil {
        completed = true
        #expect(stops.indexes.isEmpty)
        let shape = auditFreemapTree(volume)
        #expect(shape.counts[2] == 1 && shape.counts[1] == 5, "\(shape.counts)")
        #expect(try extractedListing(img).count == before.count + 1)
      } else {
        #expect(stops.indexes == [n], "stopped at \(stops.indexes), asked \(n): \(failure.map { "\($0)" } ?? "")")
        #expect(NSArray(array: try extractedListing(img)).isEqual(to: before), "stopped after \(n) writes: state changed")
        #expect(volume.header.freemapBlockset.map(\.keybits) == [30, 30, 30, 30])
      }
      n += 1
    }
    #expect(completed && n > 5, "\(n) writes")
  }
}

/// Images of any size: newfs's layout at 1 TiB and 16 TiB, and writes at 16 TiB (into
/// regions spread over the volume, so its freemap has L2 nodes far from 0) as fast as
/// the same writes at 1 TiB.
@Suite struct LargeVolumeTests {
  typealias F = FreemapFixture

  func timedWrites(_ dir: String, size: String, regions: [UInt64]) throws -> Double {
    let img = dir + "/\(size).img"
    let t0 = Date()
    let r = try run("h2mkimage", ["new", img, "--size", size, "--uuid-seed", "1"])
    #expect(r.status == 0, "\(r.stderr)")
    // newfs's layout (§2.3, §9.8): boot [4 MiB, 68 MiB), aux [68 MiB, 324 MiB) from 1 TiB
    // up, the super-root and LOCAL right after, four headers, no freemap yet.
    let v0 = try Volume.open(path: img)
    let h = v0.header
    #expect(h.bootBeg == 4 << 20 && h.bootEnd == 68 << 20 && h.auxBeg == 68 << 20 && h.auxEnd == 324 << 20)
    #expect(h.allocatorBeg == 0x1440_0800, "super-root and LOCAL after the aux area")
    let regionCount = h.voluSize >> 30
    #expect(h.allocatorSize == h.voluSize - regionCount * (4 << 20) - (64 << 20) - (256 << 20) && h.allocatorFree == h.allocatorSize)
    #expect(v0.headerCopies.filter(\.isValid).count == 4)
    let emptyFreemap = h.freemapBlockset.allSatisfy { $0.isEmpty }
    #expect(emptyFreemap)
    let c = try run("h2mkimage", ["pfs-create", img, "DATA", "--uuid-seed", "2"])
    #expect(c.status == 0, "\(c.stderr)")
    for g in regions { try F.writeFile(img, "g\(g)", hint: g << 30) }
    _ = FileManager.default.createFile(atPath: dir + "/blob", contents: Data(F.noise(3_000_000, seed: 3)))
    let w = try run("h2mkimage", ["write", img, "--pfs", "DATA", "cli.bin", "--from", dir + "/blob"])
    #expect(w.status == 0, "\(w.stderr)")
    let elapsed = Date().timeIntervalSince(t0)
    let v = try Volume.open(path: img)
    let problems = auditFreemap(v)
    #expect(problems.isEmpty, "\(size): \(problems.prefix(4))")
    let x = try run("h2resync", ["extract", img, "--pfs", "DATA", dir + "/out-\(size)"])
    #expect(x.status == 0, "\(x.stderr)")
    #expect(FileManager.default.contents(atPath: dir + "/out-\(size)/cli.bin") == Data(F.noise(3_000_000, seed: 3)))
    for g in regions {
      #expect(
        FileManager.default.contents(atPath: dir + "/out-\(size)/g\(g)")
          == Data(F.noise(100_000, seed: UInt64("g\(g)".utf8.count) &* 31 &+ 100_000)))
    }
    try? FileManager.default.removeItem(atPath: img)
    return elapsed
  }

  /// A temp dir whose file system holds a 16 TiB sparse file (ext4 stops just below
  /// 16 TiB: then tmpfs, where a sparse file costs only the pages written).
  func sixteenTiBDir() -> String {
    let dir = makeTempDir("h2fm16t")
    _ = FileManager.default.createFile(atPath: dir + "/probe", contents: nil)
    if truncate(dir + "/probe", off_t(16) << 40) == 0 || !FileManager.default.fileExists(atPath: "/dev/shm") {
      try? FileManager.default.removeItem(atPath: dir + "/probe")
      return dir
    }
    try? FileManager.default.removeItem(atPath: dir)
    let shm = "/dev/shm/h2fm16t-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: shm, withIntermediateDirectories: true)
    return shm
  }

  @Test func sixteenTiBWritesAsFastAsOneTiB() throws {
    let dir = sixteenTiBDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let one = try timedWrites(dir, size: "1T", regions: [1, 2, 3, 4, 300, 1000])
    let sixteen = try timedWrites(dir, size: "16T", regions: [1, 2, 3, 4, 300, 8192, 16383])
    let v16 = try { () throws -> Bool in
      let p = try run("h2mkimage", ["new", dir + "/p.img", "--size", "16TiB"])
      return p.status == 0
    }()
    #expect(v16)
    #expect(sixteen < one * 2 + 1, "16 TiB took \(sixteen) s, 1 TiB \(one) s")
  }
}

/// `populate` of more than 4 GiB into a 200 GiB image (issue 15's failing case: it
/// stopped at about 4 GiB with "no free space"): the data spreads over more than four
/// regions, the freemap grows an L2 node, and everything extracts exactly. Slow (writes
/// 4.5 GiB twice): runs with H2_LARGE=1 (which .ci/run sets).
@Suite struct LargePopulateTests {
  typealias F = FreemapFixture

  @Test(.enabled(if: ProcessInfo.processInfo.environment["H2_LARGE"] == "1"))
  func populateOfMoreThanFourGiBInto200GiB() throws {
    let dir = makeTempDir("h2fm200g")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = dir + "/src"
    try FileManager.default.createDirectory(atPath: src + "/sub", withIntermediateDirectories: true)
    var chunk = F.noise(64 << 20, seed: 11)
    for f in 0..<5 {
      let path = src + (f % 2 == 0 ? "/big\(f).bin" : "/sub/big\(f).bin")
      _ = FileManager.default.createFile(atPath: path, contents: nil)
      let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
      for k in 0..<(f == 4 ? 14 : 16) {
        // Every MiB differs from every other one.
        for m in 0..<64 {
          chunk.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(f << 32 | k << 16 | m), toByteOffset: m << 20, as: UInt64.self) }
        }
        h.write(Data(chunk))
      }
      try h.close()
    }
    for i in 0..<200 {
      _ = FileManager.default.createFile(atPath: src + "/sub/small\(i)", contents: Data(F.noise(3000 + i * 37, seed: UInt64(i))))
    }
    let img = dir + "/a.img"
    try mkimage(["new", img, "--size", "200G", "--uuid-seed", "1"])
    try mkimage(["pfs-create", img, "DATA", "--uuid-seed", "2"])
    let p = try run("h2mkimage", ["populate", img, "--pfs", "DATA", src])
    #expect(p.status == 0, "\(p.stderr)")
    let v = try Volume.open(path: img)
    #expect(auditFreemap(v).isEmpty)
    let shape = auditFreemapTree(v)
    #expect(shape.counts[2] == 1 && (shape.counts[1] ?? 0) >= 5, "\(shape.counts)")
    let x = try run("h2resync", ["extract", img, "--pfs", "DATA", dir + "/out"])
    #expect(x.status == 0, "\(x.stderr)")
    let problems = compareTree(dir + "/out", listing: listing(of: src), checkMtime: false)
    #expect(problems.isEmpty, "\(problems.prefix(8))")
  }
}
