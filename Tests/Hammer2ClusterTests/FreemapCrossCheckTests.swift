import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// `check --freemap` (FreemapCrossCheck): the freemap against the tree on the real images
/// of the oracle corpus, clean and with freemap bits changed on copies.
@Suite(.enabled(if: Oracle.available, "SKIPPED freemap cross-check suite: ../shared/oracle not found"))
struct FreemapCrossCheckTests {
  /// Every oracle image (single and cluster nodes) with its manifest's bulkfree
  /// `transition_staged` count (chunks bulkfree found allocated and unreferenced).
  static let images: [(name: String, set: String, staged: Int)] = {
    guard Oracle.available else { return [] }
    var out: [(String, String, Int)] = []
    for n in Oracle.singleNames {
      if let m = try? Oracle.manifest(n), let s = staged(m) { out.append((n, "single", s)) }
    }
    let dir = Oracle.directory.appendingPathComponent("cluster").path
    for f in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where f.hasSuffix(".json") {
      let set = String(f.dropLast(5))
      guard let m = try? Oracle.manifest(set, set: "cluster"), let nodes = m["nodes"] as? [[String: Any]] else { continue }
      for n in nodes {
        if let l = n["node"] as? String, let s = staged(n) { out.append(("\(set).\(l)", "cluster", s)) }
      }
    }
    return out
  }()

  static func staged(_ m: [String: Any]) -> Int? {
    (((m["verification"] as? [String: Any])?["bulkfree_on_copy"] as? [String: Any])?["stats"] as? [String: Any])?["transition_staged"]
      as? Int
  }

  // MARK: helpers

  /// A referenced block: media offset, size, type.
  struct Block: Hashable {
    var off: UInt64
    var size: Int
    var type: BlockrefType?
  }

  /// Every block the tree references under freemap control, read by the existing
  /// `TopologyWalker` (an independent walk).
  func referencedBlocks(_ path: String) throws -> [Block] {
    let v = try Volume.open(path: path)
    var w = TopologyWalker(volume: v, includeFreemap: false)
    var out = Set<Block>()
    w.walk { e in
      let b = e.bref
      guard b.radix != 0, let s = b.mediaSize, b.mediaOffset >= v.header.allocatorBeg else { return }
      out.insert(Block(off: b.mediaOffset, size: s, type: b.type))
    }
    return out.sorted { $0.off < $1.off }
  }

  /// Sets the 2-bit state of the 16 KiB chunks `states` (offset -> state) in the
  /// freemap leaves of `path`, in place (a test copy): each leaf and every node above it
  /// gets its CRC again, `avail` and the volume header's `allocator_free` follow the
  /// free (00) chunks, the chosen header's CRCs are recomputed.
  func setChunkStates(_ path: String, _ states: [UInt64: UInt8]) throws {
    let v = try Volume.open(path: path)
    let fh = try #require(FileHandle(forUpdatingAtPath: path))
    defer { try? fh.close() }
    func read(_ off: UInt64, _ n: Int) throws -> [UInt8] {
      try fh.seek(toOffset: off)
      return [UInt8](try #require(try fh.read(upToCount: n)))
    }
    func write(_ off: UInt64, _ b: [UInt8]) throws {
      try fh.seek(toOffset: off)
      try fh.write(contentsOf: Data(b))
    }
    func putU32(_ b: inout [UInt8], _ o: Int, _ x: UInt32) { for i in 0..<4 { b[o + i] = UInt8((x >> (8 * UInt32(i))) & 0xFF) } }
    func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) } }
    var freeDelta: Int64 = 0
    var touched = Set<UInt64>()
    /// The block's new CRC when something below it changed.
    func process(_ b: Blockref) throws -> UInt32? {
      var bytes = try read(b.mediaOffset, 32768)
      if b.type == .freemapLeaf {
        let mine = states.filter { $0.key >> 30 == b.key >> 30 }
        guard !mine.isEmpty else { return nil }
        for (off, st) in mine {
          touched.insert(off)
          let e = Int((off >> 22) & 0xFF) * 128
          let w = e + 0x40 + 8 * Int((off & 0x3F_FFFF) >> 19)
          let shift = UInt64(((off & 0x7FFFF) >> 14) * 2)
          var word = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[w + $1]) << (8 * UInt64($1)) }
          let old = UInt8((word >> shift) & 3)
          word = (word & ~(3 << shift)) | UInt64(st) << shift
          for i in 0..<8 { bytes[w + i] = UInt8((word >> (8 * UInt64(i))) & 0xFF) }
          let d: Int64 = (st == 0 ? 16384 : 0) - (old == 0 ? 16384 : 0)
          putU32(&bytes, e + 0x1C, UInt32(Int64(u32(bytes, e + 0x1C)) + d))
          freeDelta += d
        }
        try write(b.mediaOffset, bytes)
        return CRC32C.checksum(bytes)
      }
      var changed = false
      for slot in 0..<256 {
        let c = Blockref(bytes, at: slot * 128)
        guard !c.isEmpty, let crc = try process(c) else { continue }
        putU32(&bytes, slot * 128 + 0x40, crc)
        changed = true
      }
      guard changed else { return nil }
      try write(b.mediaOffset, bytes)
      return CRC32C.checksum(bytes)
    }
    let hoff = UInt64(v.headerSlot) * (2 << 30)
    var h = try read(hoff, 65536)
    for i in 0..<4 {
      let b = Blockref(h, at: 0x800 + 128 * i)
      guard !b.isEmpty, let crc = try process(b) else { continue }
      putU32(&h, 0x800 + 128 * i + 0x40, crc)
    }
    #expect(touched.count == states.count, "every chunk lies in an existing leaf")
    let free = (0..<8).reduce(UInt64(0)) { $0 | UInt64(h[0x68 + $1]) << (8 * UInt64($1)) }
    let nf = UInt64(Int64(free) + freeDelta)
    for i in 0..<8 { h[0x68 + i] = UInt8((nf >> (8 * UInt64(i))) & 0xFF) }
    putU32(&h, 0x1FC, CRC32C.checksum(Array(h[0..<0x1FC])))
    putU32(&h, 0xFFFC, CRC32C.checksum(Array(h[0..<0xFFFC])))
    try write(hoff, h)
  }

  /// Blocks of `blocks` overlapping the chunks `chunks`.
  func blocks(_ blocks: [Block], in chunks: Set<UInt64>) -> Set<UInt64> {
    Set(
      blocks.filter { b in
        var c = b.off & ~0x3FFF
        while c < b.off + UInt64(b.size) {
          if chunks.contains(c) { return true }
          c += 0x4000
        }
        return false
      }.map(\.off))
  }

  /// One chunk each of a DATA, an INODE and an INDIRECT block (and a DIRENT name block
  /// when there is one), spread over as many 1 GiB regions as the image uses.
  func damageTargets(_ refs: [Block]) -> Set<UInt64> {
    var chosen = Set<UInt64>()
    var regions = Set<UInt64>()
    for t in [BlockrefType.data, .inode, .indirect, .dirent, .data, .inode] {
      let candidates = refs.filter { $0.type == t && !chosen.contains($0.off & ~0x3FFF) }
      guard let pick = candidates.first(where: { !regions.contains($0.off >> 30) }) ?? candidates.last else { continue }
      chosen.insert(pick.off & ~0x3FFF)
      regions.insert(pick.off >> 30)
    }
    return chosen
  }

  // MARK: tests

  @Test(arguments: images.map(\.name))
  func cleanImagesReportNothingAndBulkfreesStagedCountAsReclaimable(name: String) throws {
    // Safe: the argument comes from `images`.
    let entry = Self.images.first { $0.name == name }!
    let v = try Volume.open(path: try Oracle.image(name, set: entry.set))
    let r = FreemapCrossCheck(volume: v).run()
    #expect(r.findings.isEmpty, "\(name): \(r.findings.prefix(5).map(\.finding.description))")
    #expect(r.unallocatedBlocks == 0 && r.unallocatedChunkCount == 0)
    // bulkfree's first pass on a copy staged exactly the chunks we call reclaimable.
    #expect(
      r.reclaimableBytes == UInt64(entry.staged) * 16384,
      "\(name): \(r.reclaimableBytes / 16384) reclaimable chunks, bulkfree staged \(entry.staged)")
    #expect(r.blockrefsVisited > 0 && r.passes == 1)
  }

  @Test(arguments: ["v1-default", "v5-multi-pfs", "v6-zlib-sha192"])
  func clearedBitsOfReferencedChunksAreEachReportedAndNothingElse(name: String) throws {
    let dir = makeTempDir("h2fm")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/x.img"
    try sparseCopy(try Oracle.image(name), img)
    let refs = try referencedBlocks(img)
    let chunks = damageTargets(refs)
    #expect(chunks.count >= 3, "\(name): a DATA, an INODE and an INDIRECT chunk")
    try setChunkStates(img, Dictionary(uniqueKeysWithValues: chunks.map { ($0, UInt8(0)) }))
    let want = blocks(refs, in: chunks)
    for budget in [64 << 20, FreemapCrossCheck.bytesPerGiB] {
      let r = FreemapCrossCheck(volume: try Volume.open(path: img), memoryBudget: budget).run()
      let got = Set(r.findings.filter(\.unallocated).compactMap(\.finding.location.offset))
      #expect(
        got == want,
        "\(name) budget \(budget): missing \(want.subtracting(got).map { hex($0) }), extra \(got.subtracting(want).map { hex($0) })")
      #expect(r.findings.count == want.count && r.otherDamage == 0, "\(r.findings.filter { !$0.unallocated }.map(\.finding.description))")
      #expect(r.unallocatedChunks == [UInt64(chunks.count), 0, 0])
      #expect(Set(r.unallocatedRuns.flatMap { stride(from: $0.lowerBound, to: $0.upperBound, by: 16384) }) == chunks)
      // Findings name the inode's path where there is one.
      #expect(r.findings.contains { $0.finding.path?.hasPrefix("/") == true })
    }
  }

  @Test func stagedAndReservedStatesAreReportedWithTheirState() throws {
    let dir = makeTempDir("h2fm")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/x.img"
    try sparseCopy(try Oracle.image("v2-zlib-nocheck"), img)
    let refs = try referencedBlocks(img)
    let data = try #require(refs.first { $0.type == .data }).off & ~0x3FFF
    let ino = try #require(refs.first { $0.type == .inode && $0.off & ~0x3FFF != data }).off & ~0x3FFF
    try setChunkStates(img, [data: 2, ino: 1])
    let r = FreemapCrossCheck(volume: try Volume.open(path: img)).run()
    #expect(r.unallocatedChunks == [0, 1, 1])
    #expect(r.findings.contains { $0.finding.message.contains("10 (staged)") })
    #expect(r.findings.contains { $0.finding.message.contains("01 (reserved)") })
  }

  @Test func setBitsOfUnreferencedChunksAreReclaimableOnly() throws {
    let dir = makeTempDir("h2fm")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/x.img"
    try sparseCopy(try Oracle.image("v1-default"), img)
    let before = FreemapCrossCheck(volume: try Volume.open(path: img)).run()
    let refs = try referencedBlocks(img)
    let used = Set(refs.flatMap { b in stride(from: b.off & ~0x3FFF, to: b.off + UInt64(b.size), by: 0x4000) })
    // Free chunks in the first leaf's allocatable segments, away from every block.
    let v = try Volume.open(path: img)
    let lo = (v.header.allocatorBeg + 0x3F_FFFF) & ~UInt64(0x3F_FFFF)
    let picks = stride(from: lo + 0x40_0000 * 3, to: lo + 0x40_0000 * 40, by: 0x40_0000 + 0x4000).filter { !used.contains($0) }.prefix(7)
    #expect(picks.count == 7)
    try setChunkStates(img, Dictionary(uniqueKeysWithValues: picks.map { ($0, UInt8(3)) }))
    let r = FreemapCrossCheck(volume: try Volume.open(path: img)).run()
    #expect(r.findings.isEmpty && r.unallocatedBlocks == 0)
    #expect(r.reclaimableBytes == before.reclaimableBytes + 7 * 16384)
  }

  @Test func repairMarksTheChunksAllocatedCopyOnWrite() throws {
    let dir = makeTempDir("h2fm")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let img = dir + "/x.img"
    try sparseCopy(try Oracle.image("v5-multi-pfs"), img)
    let clean = auditFreemap(try Volume.open(path: img))
    let refs = try referencedBlocks(img)
    let chunks = damageTargets(refs)
    try setChunkStates(img, Dictionary(uniqueKeysWithValues: chunks.map { ($0, UInt8(0)) }))
    #expect(auditFreemap(try Volume.open(path: img)).count > clean.count, "the audit sees the damage too")
    let tx = try Transaction(path: img)
    let (check, marked) = try tx.repairFreemap()
    #expect(marked == chunks.count && check.unallocatedChunkCount == UInt64(chunks.count))
    // The repair rides on a commit with another change (a snapshot here).
    try tx.snapshot(
      source: "DATA", name: "DATA.after-repair", clid: H2UUID(string: "11111111-2222-4333-8444-555555555556")!,
      fsid: H2UUID(string: "11111111-2222-4333-8444-555555555557")!, time: 1_700_000_000_000_000)
    try tx.commit()
    let after = try Volume.open(path: img)
    let r = FreemapCrossCheck(volume: after).run()
    #expect(r.findings.isEmpty, "\(r.findings.prefix(3).map(\.finding.description))")
    #expect(auditFreemap(after) == clean, "accounting (avail, allocator_free) and placement as before the damage")
  }

  @Test func checkFreemapReportsAndSetsTheExitCode() throws {
    let dir = makeTempDir("h2fm")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let manifest = try Oracle.manifest("three-masters-one-behind", set: "cluster")
    let letters = (manifest["nodes"] as! [[String: Any]]).map { $0["node"] as! String }
    let images = try letters.map { l -> String in
      let p = dir + "/\(l).img"
      try sparseCopy(try Oracle.image("three-masters-one-behind.\(l)", set: "cluster"), p)
      return p
    }
    let metrics = dir + "/m.prom"
    let clean = try run("h2resync", ["check", "--freemap", "--metrics", metrics] + images)
    #expect(clean.status == 1, "C is behind: \(clean.stdout)")
    #expect(clean.stdout.contains("freemap: 0 referenced blocks in 0 chunks marked free"))
    #expect((try? String(contentsOfFile: metrics, encoding: .utf8))?.contains("h2resync_check_freemap_unallocated_blocks{") == true)
    // C (behind, a resync target): repairable, still 1. A (focus side): needs a human.
    let c = images[letters.firstIndex(of: "C")!]
    let cRefs = try referencedBlocks(c)
    try setChunkStates(c, [try #require(cRefs.first { $0.type == .data }).off & ~0x3FFF: 0])
    let onTarget = try run("h2resync", ["check", "--freemap", "--json"] + images)
    #expect(onTarget.status == 1, "\(onTarget.stdout)")
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(onTarget.stdout.utf8)) as? [String: Any])
    let fm = try #require(doc["freemap"] as? [String: [String: Any]])
    #expect(fm[c]?["unallocated_blocks"] as? Int ?? 0 >= 1 && fm[c]?["resync_repairs"] as? Bool == true)
    #expect((doc["summary"] as? [String: Any])?["exit_code"] as? Int == 1)
    let a = images[letters.firstIndex(of: "A")!]
    let aRefs = try referencedBlocks(a)
    try setChunkStates(a, [try #require(aRefs.first { $0.type == .inode }).off & ~0x3FFF: 0])
    let onFocus = try run("h2resync", ["check", "--freemap"] + images)
    #expect(onFocus.status == 2, "\(onFocus.stdout)")
    #expect(onFocus.stdout.contains("H2RESYNC CRITICAL") && onFocus.stdout.contains("freemap: critical:"))
    // Without the flag nothing changes.
    #expect(try run("h2resync", ["check"] + images).status == 1)
    // resync writes C and repairs its freemap in the same commit.
    let rs = try run("h2resync", ["resync", "--yes"] + images)
    #expect(rs.status != 3, "\(rs.stderr)")
    let rc = FreemapCrossCheck(volume: try Volume.open(path: c)).run()
    #expect(rc.findings.isEmpty && rc.unallocatedBlocks == 0, "\(rc.findings.prefix(3).map(\.finding.description))")
  }
}
