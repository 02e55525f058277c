import Dispatch
import Foundation
import H2TestSupport
import Hammer2Format
import Testing

@testable import Hammer2Cluster

/// The read-ahead threads give hints only: they must end when asked, wherever they are,
/// and blockrefs from a damaged image must not trap them.
@Suite struct ReadAheadTests {
  /// Runs `body` on another thread; false when it has not returned within `seconds`.
  func returns(within seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread {
      body()
      done.signal()
    }.start()
    return done.wait(timeout: .now() + seconds) == .success
  }

  /// The focus's file inodes, in directory order, and the image.
  func fileInodes(_ dir: String) throws -> (String, [Blockref]) {
    let images = try buildCluster(dir, files: 300) { _, _ in }
    let volume = try Volume.open(path: images[0])
    var findings: [Finding] = []
    let reader = PFSReader(
      volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: "DATA", image: images[0]))
    let big = try reader.resolve("big")
    var refs: [Blockref] = []
    reader.forEachEntry(of: big.inode, path: "big", findings: &findings) { e in
      if let (b, _) = try? reader.inodeWithBlockref(e.inum) { refs.append(b) }
      return true
    }
    #expect(refs.count == 300 && findings.isEmpty)
    return (images[0], refs)
  }

  @Test func focusReadAheadEndsWhileWaitingAfterTheCopyAndAtTheEnd() throws {
    let dir = makeTempDir("h2ra")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let (image, refs) = try fileInodes(dir)
    let items = refs.enumerated().map { FocusReadAhead.Item(position: $0.offset * 2, inode: $0.element) }
    // A window of one item: the thread waits for the copy almost at once.
    let waiting = FocusReadAhead(image: image, items: items, aheadItems: 1, aheadBytes: 1)
    waiting.start()
    #expect(returns(within: 30) { waiting.stop() }, "stop() while the thread waits for the copy")
    // The copy moving through every position wakes it batch by batch until it ends.
    let following = FocusReadAhead(image: image, items: items, aheadItems: 8, aheadBytes: 64 << 10)
    following.start()
    #expect(
      returns(within: 30) {
        for p in 0...(items.count * 2) { _ = following.arrive(at: p) }
        following.stop()
      }, "a read-ahead that follows the copy to its end")
    // Nothing to read: no thread at all, and stop() still returns.
    let empty = FocusReadAhead(image: image, items: [])
    empty.start()
    #expect(returns(within: 30) { empty.stop() })
  }

  /// The copy is handed the focus's inode read for exactly the blockref at its
  /// position, as the copy would read it; nothing for a position it passed, and an
  /// inode that fails its check is not handed over (the copy's own read reports it).
  @Test func handedInodesAreWhatTheCopyWouldRead() throws {
    let dir = makeTempDir("h2ra")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let (image, refs) = try fileInodes(dir)
    var bad = refs[5]
    bad.check.w.0 ^= 1 // the inode block no longer matches its check code
    let items = ([bad] + refs[6..<40]).enumerated().map { FocusReadAhead.Item(position: $0.offset * 2 + 1, inode: $0.element) }
    let ra = FocusReadAhead(image: image, items: items, aheadItems: 1000)
    ra.start()
    defer { ra.stop() }
    ra.waitUntilIdle()
    let volume = try Volume.open(path: image)
    #expect(ra.arrive(at: 0) == nil, "no item at position 0")
    #expect(ra.arrive(at: 1) == nil, "an inode failing its check is not handed over")
    for (i, item) in items.enumerated().dropFirst() where i != 3 {
      guard let got = ra.arrive(at: item.position) else {
        Issue.record("nothing handed over at \(item.position)")
        continue
      }
      let ino = try volume.inode(item.inode, cached: false)
      #expect(got.position == item.position && got.bref == item.inode)
      #expect(got.inode.meta.inum == ino.meta.inum && got.inode.filename == ino.filename && got.inode.blockset == ino.blockset)
      #expect(ra.arrive(at: item.position) == nil, "handed over once")
      if i == 2 { _ = ra.arrive(at: items[4].position - 1) } // passes item 3
    }
    #expect(ra.inodesHanded == items.count - 2)
  }

  @Test func damagedBlockrefsAndImpossibleRangesDoNotTrap() throws {
    let dir = makeTempDir("h2ra")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let (image, refs) = try fileInodes(dir)
    var wild = refs[0]
    wild.dataOff = .max // past the image, and offset + size overflows
    var unsized = refs[1]
    unsized.dataOff &= ~0x3F // radix 0: no size
    let items = [wild, unsized, refs[2]].enumerated().map { FocusReadAhead.Item(position: $0.offset, inode: $0.element) }
    let ra = FocusReadAhead(image: image, items: items)
    ra.start()
    #expect(
      returns(within: 30) {
        for p in 0...3 { _ = ra.arrive(at: p) }
        ra.stop()
      })
    let blocks = BlockReadAhead(
      images: [image, dir + "/no-such.img"],
      blocks: [[(UInt64.max - 10, 1024), (0, Int.max), (0, -1), (1 << 20, 1024)], [(0, 4096)]])
    #expect(returns(within: 30) { blocks.wait() })
    let io = try FileImage(path: image)
    io.willNeed(at: .max, count: .max)
    io.willNeed(at: io.size - 1, count: .max)
    io.willNeed(at: 0, count: 0)
  }

  /// The inode read-ahead gives the same walk, and stays off under a throttle (`check
  /// --max-rate`), whose limit its reads would escape.
  @Test func inodeReadAheadIsOffUnderAThrottle() throws {
    let dir = makeTempDir("h2ra")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildCluster(dir, files: 50) { n, img in
      guard n == "C" else { return }
      try mk(["truncate", img, "--pfs", "DATA", "text.txt", "100", "--time", "1700000200"])
    }
    var seen: [[String]] = []
    for throttled in [false, true] {
      let w = ClusterWalker(group: try ClusterGroup.discover(images: images, name: nil, clid: nil), mode: .fast)
      if throttled { w.onBytes = { _ in } }
      var diffs: [String] = []
      w.run { diffs.append("\($0.path) \($0.classes)") }
      #expect(throttled ? w.inodesReadAhead == 0 : w.inodesReadAhead >= 3, "throttled: \(throttled)")
      seen.append(diffs)
    }
    #expect(seen[0] == seen[1] && seen[0].contains { $0.hasPrefix("text.txt ") })
  }
}
