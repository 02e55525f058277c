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
    let name = "L1-1t-lz4"
    let manifest = try Oracle.largeManifest(name)
    let bytes = try #require(
      ((manifest["image"] as? [String: Any])?["image_bytes"] as? NSNumber)?.uint64Value
        ?? (manifest["image_bytes"] as? NSNumber)?.uint64Value)
    let dir = makeTempDir("h2fml")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/L1.img"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["zstd", "-q", "-d", "--sparse", "-f", Oracle.largeDirectory.appendingPathComponent("\(name).img.zst").path, "-o", img]
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    #expect(truncate(img, off_t(bytes)) == 0)
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
    // One pass, and four passes of 256 GiB (as bulkfree's default buffer makes them).
    for budget in [64 << 20, 256 * FreemapCrossCheck.bytesPerGiB] {
      let r = FreemapCrossCheck(volume: try Volume.open(path: img), memoryBudget: budget).run()
      #expect(r.passes == (budget == 64 << 20 ? 1 : 4))
      let got = Set(r.findings.filter(\.unallocated).compactMap(\.finding.location.offset))
      #expect(got == want, "missing \(want.subtracting(got).map { hex($0) }), extra \(got.subtracting(want).map { hex($0) })")
      #expect(r.otherDamage == 0 && r.unallocatedChunks == [UInt64(chunks.count), 0, 0])
    }
  }
}
