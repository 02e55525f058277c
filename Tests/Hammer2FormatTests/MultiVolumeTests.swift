import Foundation
import H2TestSupport
import Testing

@testable import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

/// Runs h2mkimage and fails the test (throws) when it fails.
private func mkv(_ args: [String]) throws {
  let r = try run("h2mkimage", args)
  if r.status != 0 { throw OracleError.manifest("h2mkimage \(args.joined(separator: " ")): \(r.stderr)") }
}

/// A file of `mib` MiB whose every MiB is a random 1 MiB block with its index in the
/// first 8 bytes: a read from the wrong volume or offset cannot match.
private func writeFiller(_ path: String, mib: Int) -> [UInt8] {
  var rng = SeededRandom(seed: 99)
  var base = [UInt8](repeating: 0, count: 1 << 20)
  base.withUnsafeMutableBytes { b in
    for i in 0..<(b.count / 8) { b.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
  }
  _ = FileManager.default.createFile(atPath: path, contents: nil)
  let fh = FileHandle(forWritingAtPath: path)!
  for k in 0..<mib {
    var chunk = base
    withUnsafeBytes(of: UInt64(k).littleEndian) { chunk.replaceSubrange(0..<8, with: $0) }
    fh.write(Data(chunk))
  }
  try? fh.close()
  return base
}

/// Takes all but `leaveMiB` MiB of the free space of each of the volumes `volumes` of
/// `spec`, without writing a data block: their chunks are marked allocated in the
/// freemap and referenced by nothing (as blocks DragonFly freed stay until bulkfree),
/// in one commit that also makes directory `reserved` in LOCAL. The next allocations
/// take what is left, then go on to the next volume: what a filler of that size written
/// first would leave, without the GiB of writes.
private func reserve(_ spec: String, volumes: Range<Int>, leaveMiB: Int) throws {
  /// 64 KiB data chunks volume `k` can still take (a transaction that never commits
  /// writes nothing).
  func capacity(_ k: Int) throws -> Int {
    let probe = try Transaction(path: spec)
    probe.allocator.setStartHint(UInt64(k) << 30)
    var n = 0
    while try probe.allocator.allocate(size: 65536, type: .data) < UInt64(k + 1) << 30 { n += 1 }
    return n
  }
  let counts = try volumes.map { try capacity($0) }
  let tx = try Transaction(path: spec)
  let ed = try tx.editor(pfs: "LOCAL")
  try ed.create(Array("reserved".utf8), in: try ed.resolve(""), type: .directory, mode: 0o755, time: 1_000_000_000_000_000)
  for (k, count) in zip(volumes, counts) {
    tx.allocator.setStartHint(UInt64(k) << 30)
    for _ in 0..<(count - leaveMiB * 16) {
      let at = try tx.allocator.allocate(size: 65536, type: .data)
      #expect(at >> 30 == UInt64(k), "reserved \(at) outside volume \(k)")
    }
  }
  try tx.commit()
}

/// Volume paths of a new multi-volume image in `dir`.
private func volumePaths(_ dir: String, _ name: String, _ n: Int) -> [String] { (0..<n).map { "\(dir)/\(name).\($0)" } }

@Suite struct MultiVolumeTests {
  /// 2 and 3 volumes of 1 GiB: a filler file fills the first volumes, so the source
  /// tree lands on the last; every volume holds data blocks; everything reads back
  /// exactly (the filler in-process, the tree through `extract`), `show` and the
  /// topology walk are clean and the freemap audit finds nothing. The first volumes are
  /// reserved but for 8 MiB each (`reserve`): a filler of 8 MiB per volume before the
  /// last, plus 4, spans every volume.
  @Test(arguments: [2, 3])
  func populatedVolumesReadBackExactly(volumes: Int) throws {
    let dir = makeTempDir("h2mv")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = volumePaths(dir, "vol", volumes)
    let spec = paths.joined(separator: ":")
    try mkv([
      "new", spec, "--volume-sizes", [String](repeating: "1G", count: volumes).joined(separator: ","), "--uuid-seed", "1", "--time",
      "1000000000",
    ])
    try mkv(["pfs-create", spec, "DATA", "--nmasters", "1", "--uuid-seed", "2", "--time", "1000000000"])
    try reserve(spec, volumes: 0..<(volumes - 1), leaveMiB: 8)
    let fillerMiB = 8 * (volumes - 1) + 4
    try FileManager.default.createDirectory(atPath: dir + "/fill/fill", withIntermediateDirectories: true)
    let base = writeFiller(dir + "/fill/fill/big.bin", mib: fillerMiB)
    try mkv(["populate", spec, "--pfs", "DATA", dir + "/fill", "--comp", "none", "--time", "1000000000"])
    try? FileManager.default.removeItem(atPath: dir + "/fill")
    let src = try makeSourceTree(dir + "/t")
    try mkv(["populate", spec, "--pfs", "DATA", src, "--time", "1000000000"])

    let volume = try Volume.open(path: spec)
    let extents = try #require(volume.io.volumeExtents)
    #expect(extents.map(\.size) == [UInt64](repeating: 1 << 30, count: volumes))
    #expect(volume.header.totalSize == UInt64(volumes) << 30 && volume.header.nvolumes == UInt8(volumes))
    // Every volume holds referenced blocks; every block verifies.
    var perVolume = [Int](repeating: 0, count: volumes)
    var walker = TopologyWalker(volume: volume, includeFreemap: true, decompressData: true)
    walker.walk { e in
      guard e.bref.type == .data, let i = extents.firstIndex(where: { $0.offset <= e.bref.mediaOffset && e.bref.mediaOffset < $0.end })
      else { return }
      perVolume[i] += 1
    }
    #expect(walker.findings.isEmpty, "\(walker.findings.prefix(3))")
    #expect(perVolume.allSatisfy { $0 > 0 }, "data blocks per volume: \(perVolume)")
    #expect(auditFreemap(volume).isEmpty, "\(auditFreemap(volume).prefix(5))")

    // The filler, block by block, through the multi-volume reader.
    var findings: [Finding] = []
    let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: spec))
    let ino = try reader.resolve("fill/big.bin").inode
    #expect(ino.meta.size == UInt64(fillerMiB) << 20)
    var blocks = 0
    var wrong = 0
    reader.forEachDataBlock(of: ino, path: "fill/big.bin", findings: &findings) { off, bytes in
      blocks += 1
      var expected = Array(base[Int(off & 0xFFFFF)..<Int(off & 0xFFFFF) + bytes.count])
      if off & 0xFFFFF == 0 { withUnsafeBytes(of: (off >> 20).littleEndian) { expected.replaceSubrange(0..<8, with: $0) } }
      let same =
        expected.count == bytes.count
        && bytes.withUnsafeBytes { b in expected.withUnsafeBytes { e in memcmp(b.baseAddress!, e.baseAddress!, b.count) == 0 } }
      if !same { wrong += 1 }
    }
    #expect(findings.isEmpty, "\(findings.prefix(3))")
    #expect(blocks == fillerMiB * 16 && wrong == 0, "\(blocks) blocks read, \(wrong) differ")

    // The tree through the CLI (the filler removed first: extract only the tree).
    try mkv(["rm", spec, "--pfs", "DATA", "fill", "-r", "--time", "1000000000"])
    let x = try run("h2resync", ["extract", spec, "--pfs", "DATA", dir + "/out"])
    #expect(x.status == 0, "\(x.stderr)")
    let problems = compareTree(dir + "/out", listing: listing(of: src))
    #expect(problems.isEmpty, "\(problems.prefix(8))")
    let ls = try run("h2resync", ["ls", spec, "--pfs", "DATA", "sub/deep"])
    #expect(ls.status == 0 && ls.stdout.split(separator: "\n").count == 60, "\(ls.stdout.prefix(200)) \(ls.stderr)")
    let cat = try run("h2resync", ["cat", spec, "--pfs", "DATA", "text.txt"])
    let text = try String(contentsOfFile: src + "/text.txt", encoding: .utf8)
    #expect(cat.status == 0 && cat.stdout == text)
    let show = try run("h2resync", ["show", spec])
    #expect(show.status == 0 && show.stdout.contains(" 0 failed"), "\(show.stdout.suffix(300)) \(show.stderr)")
    let pfs = try run("h2resync", ["pfs", spec])
    #expect(pfs.status == 0 && pfs.stdout.contains("DATA"), "\(pfs.stderr)")
  }

  /// Missing, misordered, duplicated and foreign volumes, and devices shorter than
  /// their `volu_size`: one-line errors naming the device and the header, for a read
  /// command and a write command alike.
  @Test func wrongVolumeListsAreRefusedByName() throws {
    let dir = makeTempDir("h2mve")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = volumePaths(dir, "a", 3)
    let b = volumePaths(dir, "b", 3)
    try mkv(["new", a.joined(separator: ":"), "--size", "3G", "--uuid-seed", "1"])
    try mkv(["new", b.joined(separator: ":"), "--size", "3G", "--uuid-seed", "2"])
    func refused(_ paths: [String], _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
      for cmd in [["h2resync", "pfs"], ["h2mkimage", "mkdir"]] {
        let args = [cmd[1], paths.joined(separator: ":")] + (cmd[0] == "h2mkimage" ? ["--pfs", "LOCAL", "d"] : [])
        let r = try run(cmd[0], args)
        #expect(r.status == 3, "\(cmd) \(paths): exit \(r.status) \(r.stderr)", sourceLocation: sourceLocation)
        let line = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!line.contains("\n") && line.contains("volume header #"), "\(line)", sourceLocation: sourceLocation)
        for w in words { #expect(line.contains(w), "\(cmd): \(line) lacks \(w)", sourceLocation: sourceLocation) }
      }
    }
    try refused([a[0]], [a[0], "root volume of a 3-volume file system", "1, 2 missing"])
    try refused([a[1]], [a[1], "volume 1 of a 3-volume", "root volume"])
    try refused([a[0], a[1]], [a[0], "3 volumes, 2 given", "2 missing"])
    try refused([a[0], a[2], a[1]], [a[2], "volume 2", "position 1"])
    try refused([a[1], a[0], a[2]], [a[1], "volume 1", "root volume"])
    try refused([a[0], a[1], a[1]], [a[1], "given twice"])
    try refused([a[0], b[1], a[2]], [b[1], "another file system"])
    try refused([a[0], a[1], a[2], b[0]], [b[0]])
    // Headers that break §2.6's layout (CRCs made valid again): a clear error, no trap.
    let original = try FileImage(path: a[1]).read(at: 0, count: 65536)
    let patches: [(String, (inout VolumeHeader) -> Void, [String])] = [
      ("unaligned", { $0.voluLoff[1] = 0x5000_0000 }, [a[1], "not 1 GiB aligned"]),
      ("gap", { $0.voluLoff[1] = 2 << 30 }, [a[1], "does not follow volume 0"]),
      ("overflow", { $0.voluLoff[1] = .max - 4096 }, [a[1], "overflows"]),
      ("size", { $0.voluSize = (1 << 30) - (8 << 20) }, [a[0], "not the sum"]),
    ]
    for (_, patch, words) in patches {
      var h = VolumeHeader(original)
      patch(&h)
      try pokeFile(a[1], at: 0, h.encode(recomputeCRCs: true))
      try refused(a, words)
    }
    try pokeFile(a[1], at: 0, original)
    let ok = try run("h2resync", ["pfs", a.joined(separator: ":")])
    #expect(ok.status == 0, "\(ok.stderr)")
    // A device shorter than its volu_size: the last volume cut to 512 MiB.
    truncate(a[2], 512 << 20)
    try refused(a, [a[2], "0x20000000", "0x40000000", "volu_size"])
    // One volume too: a 2 GiB image cut to 1.5 GiB.
    let single = dir + "/single.img"
    try mkv(["new", single, "--size", "2G", "--uuid-seed", "3"])
    truncate(single, 3 << 29)
    try refused([single], [single, "0x60000000", "0x80000000", "volu_size"])
  }

  /// Commits on a 2-volume file system (3 GiB + 3 GiB, so each volume has two header
  /// slots): the root volume's header rotates between its slots; the other volume's
  /// header slots are never written. The headers newfs wrote are §2.6's.
  @Test func onlyTheRootVolumesHeaderRotates() throws {
    let dir = makeTempDir("h2mvh")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = volumePaths(dir, "v", 2)
    let spec = paths.joined(separator: ":")
    let made = try run(
      "h2mkimage", ["new", dir + "/v", "--volumes", "2", "--volume-sizes", "3G,3G", "--uuid-seed", "1", "--time", "1000000000"])
    #expect(made.status == 0 && made.stdout == spec + "\n", "\(made.stdout) \(made.stderr)")
    let root0 = VolumeHeader(try FileImage(path: paths[0]).read(at: 0, count: 65536))
    let other = try FileImage(path: paths[1])
    let otherSlots = { () throws -> [[UInt8]] in [try other.read(at: 0, count: 65536), try other.read(at: 2 << 30, count: 65536)] }
    let before = try otherSlots()
    #expect(before[0] == before[1])
    let h1 = VolumeHeader(before[0])
    #expect(h1.validate() == nil && h1.voluId == 1 && h1.nvolumes == 2 && h1.fsid == root0.fsid && h1.voluSize == 3 << 30)
    #expect(
      h1.srootBlockset.allSatisfy { $0.typeRaw == 7 } && h1.bootBeg == 0 && h1.auxEnd == 0 && h1.allocatorBeg == 0 && h1.allocatorFree == 0)
    #expect(h1.allocatorSize == root0.allocatorSize && h1.totalSize == 6 << 30 && root0.totalSize == 6 << 30)
    #expect(
      h1.voluLoff[0] == 0 && h1.voluLoff[1] == 3 << 30 && h1.voluLoff[2...].allSatisfy { $0 == .max } && h1.voluLoff == root0.voluLoff)
    var slots: [Int] = []
    for i in 0..<3 {
      try mkv(["mkdir", spec, "--pfs", "LOCAL", "d\(i)", "--time", "1000000000"])
      let v = try Volume.open(path: spec)
      slots.append(v.headerSlot)
      #expect(v.header.mirrorTid == 17 + UInt64(i))
    }
    #expect(slots == [1, 0, 1], "root header slots \(slots)")
    #expect(try otherSlots() == before, "a non-root volume's header was rewritten")
    let ls = try run("h2resync", ["ls", spec, "--pfs", "LOCAL"])
    #expect(ls.stdout == "d0\nd1\nd2\n", "\(ls.stdout) \(ls.stderr)")
  }

  /// The routing seams refuse what no valid block does: a read or write across the end
  /// of a volume.
  @Test func accessesAcrossAVolumeEndAreRefused() throws {
    let dir = makeTempDir("h2mvr")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = volumePaths(dir, "v", 2)
    let spec = paths.joined(separator: ":")
    try mkv(["new", spec, "--size", "2G", "--uuid-seed", "1"])
    let io = try openImage(spec)
    #expect(io.size == 2 << 30)
    #expect(throws: FormatError.self) { _ = try io.read(at: (1 << 30) - 512, count: 1024) }
    // Device offsets: logical 1 GiB is the second volume's header.
    #expect(VolumeHeader(try io.read(at: 1 << 30, count: 65536)).voluId == 1)
    let w = try WritableImage(path: spec)
    #expect(throws: FormatError.self) { try w.write(at: (1 << 30) - 512, [UInt8](repeating: 1, count: 1024), structure: "test") }
    // A write at logical 1 GiB + 5 MiB lands in the second device at 5 MiB.
    try w.write(at: (1 << 30) + (5 << 20), [UInt8](repeating: 0xAB, count: 4096), structure: "test")
    try w.sync()
    #expect(try FileImage(path: paths[1]).read(at: 5 << 20, count: 4096) == [UInt8](repeating: 0xAB, count: 4096))
    #expect(try FileImage(path: paths[0]).read(at: 5 << 20, count: 4096) == [UInt8](repeating: 0, count: 4096))
  }
}
