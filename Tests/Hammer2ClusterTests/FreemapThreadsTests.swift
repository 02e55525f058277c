import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The freemap cross-check on two threads (`FreemapCrossCheck.threads`, as resync's
/// repair and `check --freemap` run it) gives exactly the one-thread result: clean, with
/// cleared bits (the split walk is then redone on one thread), in one pass and in many.
/// Needs no corpus: the image is built here, with enough inodes for an index of many
/// indirect blocks.
struct FreemapThreadsTests {
  /// Every field of a result, findings included, in order.
  static func summary(_ r: FreemapCrossCheckResult) -> String {
    let findings = r.findings.map { "\($0.finding.description) \($0.inode.map { "\($0.pfs)/\($0.inum)" } ?? "-") \($0.unallocated)" }
    return
      "\(findings) omitted \(r.findingsOmitted) blocks \(r.unallocatedBlocks) chunks \(r.unallocatedChunks) runs \(r.unallocatedRuns) truncated \(r.runsTruncated) reclaimable \(r.reclaimableBytes) referenced \(r.referencedBytes) visited \(r.blockrefsVisited) passes \(r.passes) other \(r.otherDamage)"
  }

  @Test func twoThreadsGiveTheOneThreadResult() throws {
    let dir = makeTempDir("h2fmt")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = try buildCluster(dir, files: 6000, nodes: ["A"], nmasters: 1) { _, _ in }[0]
    func check(threads: Int, budget: Int = FreemapCrossCheck.defaultMemoryBudget) throws -> FreemapCrossCheckResult {
      var c = FreemapCrossCheck(volume: try Volume.open(path: img), memoryBudget: budget)
      c.threads = threads
      return c.run()
    }
    let one = try check(threads: 1)
    #expect(one.findings.isEmpty && one.splitIndexWalks == 0)
    for threads in [2, 3] {
      let many = try check(threads: threads)
      // The index is big enough to split: the threads did walk it.
      #expect(many.splitIndexWalks == 1, "threads \(threads)")
      #expect(Self.summary(many) == Self.summary(one), "threads \(threads)")
    }
    // The smallest budget (one region with a leaf per pass): this image uses one region,
    // so it is still one pass (regions without a leaf get no bitmap), split the same way.
    let smallOne = try check(threads: 1, budget: FreemapCrossCheck.bytesPerGiB)
    let smallTwo = try check(threads: 2, budget: 2 * FreemapCrossCheck.bytesPerGiB)
    #expect(smallOne.passes == 1 && smallTwo.passes == 1)
    #expect(smallTwo.splitIndexWalks == 1)
    #expect(Self.summary(smallTwo) == Self.summary(smallOne))
    // Cleared bits of referenced chunks: findings, so the split walk is not used and the
    // one-thread walk's findings come out, in its order.
    let t = FreemapCrossCheckTests()
    let refs = try t.referencedBlocks(img)
    let chunks = t.damageTargets(refs)
    #expect(chunks.count >= 3)
    try t.setChunkStates(img, Dictionary(uniqueKeysWithValues: chunks.map { ($0, UInt8(0)) }))
    let damagedOne = try check(threads: 1)
    let damagedTwo = try check(threads: 2)
    #expect(damagedOne.unallocatedBlocks > 0)
    #expect(damagedTwo.splitIndexWalks == 0)
    #expect(Self.summary(damagedTwo) == Self.summary(damagedOne))
  }
}
