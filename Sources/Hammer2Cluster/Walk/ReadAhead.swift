import Foundation
import Hammer2Format

/// Reads ahead of a resync's copy on the focus image. The copy reads each path's inode
/// and then its data blocks one at a time, so on an image that is not in the page cache
/// it waits for the disk once per block. This thread runs a bounded distance ahead of
/// it in the same order: it asks the kernel for the next inodes' blocks, reads each
/// inode through its own read-only `Volume` and asks for its data blocks
/// (`ImageIO.willNeed`), so those reads are in flight together and the copy finds them
/// cached. The inodes it read and verified are handed to the copy (`arrive(at:)`),
/// which would otherwise read each one again; the data is only asked for (reading it
/// here too cost more CPU than it saved the copy). An error here is left for the copy's
/// own read to report.
final class FocusReadAhead: @unchecked Sendable {
  /// One path the copy will read: its position in the difference list and the focus's
  /// inode blockref.
  struct Item {
    var position: Int
    var inode: Blockref
  }

  /// A path's inode as read (and verified) for the copy, with the blockref it was
  /// read for.
  struct PreparedInode {
    var position: Int
    var bref: Blockref
    var inode: InodeData
  }

  private let image: String
  private let opener: DeviceOpener
  private let items: [Item]
  /// How many items, and how many bytes of their data, may be asked for beyond the one
  /// the copy is at (the page cache must still hold them when the copy gets there).
  private let aheadItems: Int
  private let aheadBytes: UInt64
  private let cond = NSCondition()
  /// The copy's position in the difference list, -1 before it starts (guarded by
  /// `cond`, as is all below).
  private var reached = -1
  private var stopping = false
  /// While the thread waits: the copy position that wakes it (the copy moved a batch on,
  /// so the thread is not woken for every path).
  private var wakeAt: Int?
  private var finished = false
  /// Inodes read ahead of the copy and not yet handed over, in position order (at most
  /// `aheadItems` of them).
  private var inodes: [PreparedInode] = []
  private var inodesHead = 0
  /// Inodes handed over (for tests).
  private(set) var inodesHanded = 0

  init(image: String, opener: DeviceOpener = LocalDeviceOpener(), items: [Item], aheadItems: Int = 512, aheadBytes: UInt64 = 32 << 20) {
    self.image = image
    self.opener = opener
    self.items = items
    self.aheadItems = max(1, aheadItems)
    self.aheadBytes = max(1, aheadBytes)
  }

  func start() {
    guard !items.isEmpty else {
      finished = true
      return
    }
    let t = Thread { [self] in run() }
    t.name = "h2 read-ahead"
    t.start()
  }

  /// The copy is at `position` of the difference list (cheap: called once per path).
  /// Returns the focus's inode read for that position, if it was; those read for
  /// positions before it are dropped.
  func arrive(at position: Int) -> PreparedInode? {
    cond.lock()
    defer { cond.unlock() }
    reached = position
    var found: PreparedInode?
    while inodesHead < inodes.count, inodes[inodesHead].position <= position {
      if inodes[inodesHead].position == position {
        found = inodes[inodesHead]
        inodesHanded += 1
      }
      inodesHead += 1
    }
    if inodesHead >= 64, inodesHead * 2 >= inodes.count {
      inodes.removeFirst(inodesHead)
      inodesHead = 0
    }
    if let w = wakeAt, position >= w {
      wakeAt = nil
      cond.signal()
    }
    return found
  }

  /// Waits until the thread waits for the copy or has ended (for tests).
  func waitUntilIdle() {
    cond.lock()
    while !finished && wakeAt == nil { cond.wait() }
    cond.unlock()
  }

  /// Stops the thread and waits for it.
  func stop() {
    cond.lock()
    stopping = true
    cond.broadcast()
    while !finished { cond.wait() }
    inodes = []
    inodesHead = 0
    cond.unlock()
  }

  private func run() {
    defer {
      cond.lock()
      finished = true
      cond.broadcast()
      cond.unlock()
    }
    guard let volume = try? Volume.open(path: image, opener: opener, cacheBudget: CacheBudget.streamingShare) else { return }
    volume.cachesArrays = false
    // Items before `consumed` are the copy's (done or in progress); `bytes[k]` is what
    // item k asked for, summed over the items still ahead in `pending`.
    var consumed = 0
    var bytes = [UInt64](repeating: 0, count: items.count)
    var pending: UInt64 = 0
    var inodesAsked = 0
    for k in items.indices {
      cond.lock()
      while true {
        if stopping { break }
        while consumed < k, items[consumed].position < reached {
          pending -= bytes[consumed]
          consumed += 1
        }
        if k - consumed < aheadItems, pending < aheadBytes { break }
        wakeAt = items[min(consumed + max(1, aheadItems / 8), k)].position
        cond.broadcast() // for `waitUntilIdle`
        cond.wait()
      }
      let stop = stopping
      let passed = items[k].position <= reached
      cond.unlock()
      if stop { return }
      if passed { continue } // the copy got there first
      // The next inodes are asked for in batches: their reads overlap, and the read
      // below then rarely waits.
      if inodesAsked <= k {
        let end = min(items.count, k + 64)
        for j in inodesAsked..<end { volume.willNeed(items[j].inode) }
        inodesAsked = end
      }
      guard let ino = try? volume.inode(items[k].inode, cached: false) else { continue }
      cond.lock()
      if items[k].position > reached { inodes.append(PreparedInode(position: items[k].position, bref: items[k].inode, inode: ino)) }
      cond.unlock()
      bytes[k] = askForData(ino, volume: volume)
      pending += bytes[k]
    }
  }

  /// Asks for the data blocks of the file `ino` (at most `aheadBytes` of them; beyond
  /// that the kernel's own read-ahead follows the copy through a big file). Adjacent
  /// blocks are asked for as one range. Returns the bytes asked for.
  private func askForData(_ ino: InodeData, volume: Volume) -> UInt64 {
    guard ino.meta.type == .regularFile || ino.meta.type == .symlink, !ino.meta.isDirectData, ino.meta.size > 0 else { return 0 }
    var it = KeyRangeIterator(volume: volume, array: ino.blockset) { Location(image: volume.label, structure: "read-ahead") }
    it.cachesBlocks = false
    var total: UInt64 = 0
    var run: (off: UInt64, end: UInt64)?
    var el = it.lookup(0, ino.meta.size - 1)
    while let e = el, total < aheadBytes {
      if case .leaf(let b) = e, b.type == .data, let n = b.mediaSize, n > 0 {
        let off = b.mediaOffset
        let (end, overflow) = off.addingReportingOverflow(UInt64(n))
        if overflow { break } // damage: the copy's read reports it
        if let r = run, r.end == off {
          run = (r.off, end)
        } else {
          if let r = run { volume.io.willNeed(at: r.off, count: Int(r.end - r.off)) }
          run = (off, end)
        }
        total += UInt64(n)
      }
      el = it.next()
    }
    if let r = run { volume.io.willNeed(at: r.off, count: Int(r.end - r.off)) }
    return total
  }
}

/// Asks for a known set of blocks of several images in the background: the inodes a
/// walk is about to read one at a time (the scan found them). Sorted by offset, with
/// touching pages asked for as one range, so the disk sees few, ordered requests.
/// Hints only, like `FocusReadAhead`.
final class BlockReadAhead: @unchecked Sendable {
  private let cond = NSCondition()
  private var finished = false

  /// Starts asking for `blocks[i]` (offset and size) of `images[i]`, at most `limit`
  /// bytes in all: beyond what the page cache can be expected to keep, the reads
  /// would push out the first ones before the walk gets to them.
  init(images: [String], opener: DeviceOpener = LocalDeviceOpener(), blocks: [[(offset: UInt64, size: Int)]], limit: UInt64 = 256 << 20) {
    guard blocks.contains(where: { !$0.isEmpty }) else {
      finished = true
      return
    }
    let work = UncheckedSendable((images, blocks, opener))
    let t = Thread { [self] in
      defer {
        cond.lock()
        finished = true
        cond.broadcast()
        cond.unlock()
      }
      var budget = limit
      for (image, list) in zip(work.value.0, work.value.1) where !list.isEmpty {
        guard let io = try? openImage(image, opener: work.value.2) else { continue }
        let page: UInt64 = 4096
        var run: (lo: UInt64, hi: UInt64)?
        func flush() {
          guard let r = run else { return }
          let n = r.hi - r.lo
          if n <= budget { io.willNeed(at: r.lo, count: Int(n)) }
          budget -= min(budget, n)
          run = nil
        }
        for b in list.sorted(by: { $0.offset < $1.offset }) {
          guard budget > 0 else { break }
          let (end, overflow) = b.offset.addingReportingOverflow(UInt64(max(0, b.size)) + page - 1)
          if overflow { continue }
          let lo = b.offset & ~(page - 1)
          let hi = end & ~(page - 1)
          if let r = run, lo <= r.hi {
            run = (r.lo, max(r.hi, hi))
          } else {
            flush()
            run = (lo, hi)
          }
        }
        flush()
      }
    }
    t.name = "h2 read-ahead"
    t.start()
  }

  /// Waits until every hint has been given.
  func wait() {
    cond.lock()
    while !finished { cond.wait() }
    cond.unlock()
  }
}
