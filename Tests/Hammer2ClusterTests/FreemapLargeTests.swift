import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The freemap cross-check on the 1 TiB oracle image (a level-2 FREEMAP_NODE over six
/// leaves), behind `H2_LARGE=1`. The image is restored into this suite's own temp dir
/// (it is damaged there), not shared with OracleLargeTests.
@Suite(.enabled(if: Oracle.largeSkipReason == nil, "SKIPPED large freemap suite: needs H2_LARGE=1 and ../shared/oracle/large"), .serialized)
struct FreemapLargeTests {
  @Test func largeImageIsCleanThenEveryClearedChunkInSixLeavesIsFound() throws {
    let dir = makeTempDir("h2fml")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try Self.restore(into: dir)
    let clean = FreemapCrossCheck(volume: try Volume.open(path: img)).run()
    #expect(clean.findings.isEmpty && clean.unallocatedBlocks == 0)
    #expect(clean.reclaimableBytes == 0, "bulkfree on a copy staged nothing")
    #expect(clean.passes == 1)
    // On two threads (as resync's repair runs it): this index (321 inodes, a few indirect
    // blocks) is below the split threshold, so the walk stays serial; same result.
    // FreemapThreadsTests covers the split itself.
    var split = FreemapCrossCheck(volume: try Volume.open(path: img))
    split.threads = 2
    let two = split.run()
    #expect(two.splitIndexWalks == 0)
    #expect(FreemapThreadsTests.summary(two) == FreemapThreadsTests.summary(clean))
    // One chunk of a block in each of the six 1 GiB regions (DATA, INODE, INDIRECT).
    let t = FreemapCrossCheckTests()
    let refs = try t.referencedBlocks(img)
    var chunks = Set<UInt64>()
    for r in UInt64(0)..<6 {
      for type in [BlockrefType.data, .indirect, .inode] {
        if let b = refs.first(where: { $0.off >> 30 == r && $0.type == type && $0.off % 3 == 0 })
          ?? refs.first(where: { $0.off >> 30 == r && $0.type == type })
        {
          chunks.insert(b.off & ~0x3FFF)
        }
      }
    }
    #expect(Set(chunks.map { $0 >> 30 }).count == 6)
    try t.setChunkStates(img, Dictionary(uniqueKeysWithValues: chunks.map { ($0, UInt8(0)) }))
    let want = t.blocks(refs, in: chunks)
    // One pass, and three passes of two regions in use each (bitmaps are kept for the
    // regions with a leaf only, so a pass is counted in those).
    for budget in [64 << 20, 2 * FreemapCrossCheck.bytesPerGiB] {
      let r = FreemapCrossCheck(volume: try Volume.open(path: img), memoryBudget: budget).run()
      #expect(r.passes == (budget == 64 << 20 ? 1 : 3))
      let got = Set(r.findings.filter(\.unallocated).compactMap(\.finding.location.offset))
      #expect(got == want, "missing \(want.subtracting(got).map { hex($0) }), extra \(got.subtracting(want).map { hex($0) })")
      #expect(r.otherDamage == 0 && r.unallocatedChunks == [UInt64(chunks.count), 0, 0])
    }
  }
  /// The 1 TiB oracle image restored sparse into `dir` (it is damaged there).
  static func restore(into dir: String) throws -> String {
    let name = "L1-1t-lz4"
    let manifest = try Oracle.largeManifest(name)
    let bytes = try #require(
      ((manifest["image"] as? [String: Any])?["image_bytes"] as? NSNumber)?.uint64Value
        ?? (manifest["image_bytes"] as? NSNumber)?.uint64Value)
    let img = dir + "/L1.img"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["zstd", "-q", "-d", "--sparse", "-f", Oracle.largeDirectory.appendingPathComponent("\(name).img.zst").path, "-o", img]
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    #expect(truncate(img, off_t(bytes)) == 0)
    return img
  }

  /// A region whose FREEMAP_LEAF is gone from its FREEMAP_NODE (the node's check code
  /// fixed): every chunk there is free, so every block there is a finding, although
  /// that region gets no bitmap.
  @Test func everyBlockOfARegionWithoutItsLeafIsAFinding() throws {
    let dir = makeTempDir("h2fml")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try Self.restore(into: dir)
    let t = FreemapCrossCheckTests()
    let refs = try t.referencedBlocks(img)
    let region: UInt64 = 5
    let inRegion = refs.filter { $0.off >> 30 == region }
    #expect(inRegion.count > 100)
    let v = try Volume.open(path: img)
    let fh = try #require(FileHandle(forUpdatingAtPath: img))
    func put32(_ b: inout [UInt8], _ o: Int, _ x: UInt32) { for i in 0..<4 { b[o + i] = UInt8((x >> (8 * UInt32(i))) & 0xFF) } }
    let hoff = UInt64(v.headerSlot) * (2 << 30)
    try fh.seek(toOffset: hoff)
    var h = [UInt8](try #require(try fh.read(upToCount: 65536)))
    var dropped = false
    for i in 0..<4 {
      let nb = Blockref(h, at: 0x800 + 128 * i)
      guard !nb.isEmpty, nb.type == .freemapNode else { continue }
      try fh.seek(toOffset: nb.mediaOffset)
      var node = [UInt8](try #require(try fh.read(upToCount: 32768)))
      for slot in 0..<256 {
        let c = Blockref(node, at: slot * 128)
        guard !c.isEmpty, c.type == .freemapLeaf, c.key >> 30 == region else { continue }
        for k in 0..<128 { node[slot * 128 + k] = 0 }
        dropped = true
      }
      try fh.seek(toOffset: nb.mediaOffset)
      try fh.write(contentsOf: Data(node))
      put32(&h, 0x800 + 128 * i + 0x40, CRC32C.checksum(node))
    }
    #expect(dropped)
    put32(&h, 0x1FC, CRC32C.checksum(Array(h[0..<0x1FC])))
    put32(&h, 0xFFFC, CRC32C.checksum(Array(h[0..<0xFFFC])))
    try fh.seek(toOffset: hoff)
    try fh.write(contentsOf: Data(h))
    try fh.close()
    var chunks = Set<UInt64>()
    for b in inRegion { for c in stride(from: b.off & ~0x3FFF, to: b.off + UInt64(b.size), by: 0x4000) { chunks.insert(c) } }
    for threads in [1, 2] {
      var c = FreemapCrossCheck(volume: try Volume.open(path: img), findingLimit: 100_000)
      c.threads = threads
      let r = c.run()
      let got = Set(r.findings.filter(\.unallocated).compactMap(\.finding.location.offset))
      #expect(got == Set(inRegion.map(\.off)), "threads \(threads): \(got.count) of \(inRegion.count)")
      #expect(r.unallocatedChunks == [UInt64(chunks.count), 0, 0] && r.unallocatedBlocks == UInt64(inRegion.count))
      #expect(r.findings.contains { $0.finding.message.contains("no freemap leaf for GiB 5") })
      #expect(r.passes == 1)
    }
  }
}
