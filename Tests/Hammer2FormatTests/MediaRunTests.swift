import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// `Volume.verifyMediaRuns`: blocks lying back to back are read in one pread each run,
/// and every block reports exactly what `verifyMedia` reports for it alone.
@Suite struct MediaRunTests {
  /// An image view that counts its reads (`read(at:into:)` is what block reads use).
  final class CountingImage: ImageIO {
    let base: ImageIO
    var reads = 0
    init(_ base: ImageIO) { self.base = base }
    var label: String { base.label }
    var size: UInt64 { base.size }
    func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
      reads += 1
      return try base.read(at: offset, count: count)
    }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
      reads += 1
      try base.read(at: offset, into: buffer)
    }
  }

  /// A node with one incompressible file of 12 full 64 KiB blocks, written in one go
  /// (so its blocks are allocated back to back), and that file's DATA blockrefs.
  func node() throws -> (MemoryDeviceOpener, [Blockref]) {
    let opener = MemoryDeviceOpener()
    var uuids = UUIDSource.seeded(11)
    try Newfs.format(path: "node", size: 1 << 30, labels: ["LOCAL", "DATA"], uuids: &uuids, time: 1_000_000_000_000_000, opener: opener)
    let bytes = (0..<(12 * 65536)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
    let tx = try Transaction(path: "node", opener: opener)
    let ed = try tx.editor(pfs: "DATA")
    let inum = try ed.create(Array("f".utf8), in: ed.resolve("/"), type: .regularFile, mode: 0o644, time: 1_100_000_000_000_000)
    try ed.updateMeta(inum) { $0.compAlgo = 0 } // stored as is: every block 64 KiB
    try ed.write(inum, at: 0, bytes)
    try tx.commit()
    let volume = try Volume.open(path: "node", opener: opener)
    var findings: [Finding] = []
    let pfs = try #require(try volume.pfsList(findings: &findings).first { $0.name == "DATA" })
    let reader = PFSReader(volume: volume, pfs: pfs)
    let (_, ino) = try reader.resolve("f")
    var it = KeyRangeIterator(volume: volume, array: ino.blockset) { Location(image: "node", offset: 0, structure: "f") }
    var refs: [Blockref] = []
    var el = it.lookup(0, .max)
    while let e = el {
      if case .leaf(let b) = e, b.type == .data { refs.append(b) }
      el = it.next()
    }
    return (opener, refs)
  }

  /// What each block gives, read alone or in runs.
  func results(_ volume: Volume, _ refs: [Blockref], runs: Bool) -> [String] {
    var out: [String] = []
    if runs {
      volume.verifyMediaRuns(refs) { k, r in
        switch r {
        case .success(let b): out.append("\(k) ok \(Array(b).hashValue)")
        case .failure(let e): out.append("\(k) \(e)")
        }
      }
    } else {
      for (k, b) in refs.enumerated() {
        do {
          let h = try volume.verifyMedia(b) { Array($0).hashValue }
          out.append("\(k) ok \(h)")
        } catch {
          out.append("\(k) \(error)")
        }
      }
    }
    return out
  }

  @Test func adjacentBlocksAreReadTogetherAndVerifiedOneByOne() throws {
    let (opener, refs) = try node()
    #expect(refs.count == 12)
    #expect(refs.allSatisfy { $0.mediaSize == 65536 && $0.checkMethod == .xxhash64 })
    let device = try #require(opener["node"])
    let alone = CountingImage(device)
    let single = try Volume(io: alone, opener: opener)
    let readsBefore = alone.reads
    let expected = results(single, refs, runs: false)
    #expect(alone.reads - readsBefore == refs.count)
    let counting = CountingImage(device)
    let volume = try Volume(io: counting, opener: opener)
    let before = counting.reads
    #expect(results(volume, refs, runs: true) == expected)
    // 12 blocks of 64 KiB, runs of at most 1 MiB (16 blocks): fewer reads than blocks.
    #expect(counting.reads - before < refs.count, "\(counting.reads - before) reads")
    #expect(volume.blocksRead == single.blocksRead && volume.bytesRead == single.bytesRead)

    // A damaged block inside a run reports its own check mismatch; the others verify.
    let damaged = OverlayImage(base: device)
    let original = try device.read(at: refs[5].mediaOffset + 100, count: 3)
    damaged.patch(refs[5].mediaOffset + 100, original.map { ~$0 })
    let bad = results(try Volume(io: damaged, opener: opener), refs, runs: true)
    #expect(bad == results(try Volume(io: damaged, opener: opener), refs, runs: false))
    #expect(bad.filter { !$0.contains(" ok ") }.count == 1 && bad[5].contains("check"), "\(bad)")
  }
}
