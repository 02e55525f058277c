import CHammer2Codecs
import Foundation
import Hammer2Format

/// One inode (or unreadable key range) of a node's inode index, as a deep scan saw it.
struct InodeSummary: Sendable {
  /// The inode number, or the first key of an unreadable range.
  var key: UInt64
  /// The last key of an unreadable range (== key for an inode).
  var keyEnd: UInt64
  var isHole: Bool
  var modifyTid: UInt64
  /// The cluster-wide attributes and the stored content (data blockrefs' methods and
  /// check codes, or the bytes themselves when the check method proves nothing; the
  /// entries of a directory). Equal digests mean equal content; unequal ones only that
  /// the walk must look closer (another compression can hold the same bytes).
  var digest: UInt64
  /// Some block of this inode failed to read or verify.
  var damaged: Bool
  /// The index entry (an INODE blockref; nil for a hole or another type), so the walk
  /// can read a suspect's inode without descending the index again.
  var bref: Blockref? = nil
  /// The reads attributed to this key (`ScanReads`: those since the previous summary).
  var reads = ScanReads()
}

/// A batch handed from a scanner thread to the merging thread.
struct SummaryBatch: Sendable {
  var items: [InodeSummary]
  /// Media bytes read since the previous batch.
  var bytes: UInt64
  /// The last batch of the scan.
  var end: Bool
  /// The last batch's reads after its last summary (an index tail with no leaves).
  var tail = ScanReads()
}

/// A bounded single-producer single-consumer queue: memory stays at `capacity` batches
/// whatever the image size, and a slow consumer (a throttle) slows the producer.
final class BatchQueue: @unchecked Sendable {
  private let cond = NSCondition()
  private var items: [SummaryBatch] = []
  private let capacity: Int
  init(capacity: Int) { self.capacity = capacity }
  /// Set by a consumer that stops early (a spent time budget): pushes return at once.
  private(set) var cancelled = false
  func cancel() {
    cond.lock()
    cancelled = true
    cond.broadcast()
    cond.unlock()
  }
  func push(_ b: SummaryBatch) {
    cond.lock()
    while items.count >= capacity && !cancelled { cond.wait() }
    items.append(b)
    cond.signal()
    cond.unlock()
  }
  func pop() -> SummaryBatch {
    cond.lock()
    while items.isEmpty { cond.wait() }
    let b = items.removeFirst()
    cond.signal()
    cond.unlock()
    return b
  }
}

/// Reads and verifies every block of one node's PFS on its own thread, through its own
/// `Volume` (own descriptor and caches: nothing is shared with other threads), and
/// streams one `InodeSummary` per inode in inode-number order. Nodes are scanned in
/// parallel; the merge compares them key by key (docs/resync-semantics.md §5.6, deep mode).
final class NodeScanner: @unchecked Sendable {
  let image: String
  let opener: DeviceOpener
  let pfs: PFSInfo
  /// Deep: read every block below each inode; otherwise only the index (fast mode:
  /// index entries and their modify_tids).
  let deep: Bool
  let queue = BatchQueue(capacity: 8)
  /// Damage met (bounded), read after the scan ended.
  private(set) var findings: [Finding] = []
  private(set) var blocksRead: UInt64 = 0
  private(set) var bytesRead: UInt64 = 0
  /// The key range's first key (a resumed check's frontier; 0: the whole index).
  var from: UInt64 = 0
  /// Reads not attributed to any key (index blocks a previous run of the pass counted).
  var frontier: Set<UInt64> = []
  /// Keep each read's offset (`ScanReads.offsets`), for tests.
  var recordsOffsets = false
  /// Per finding: the key it is attributed to.
  private(set) var findingKeys: [UInt64] = []
  /// Signalled when the thread has ended (its counters and findings may be read).
  private let ended = DispatchSemaphore(value: 0)
  private var pendingReads = ScanReads()
  private var findingKey: UInt64 = 0
  private static let batchSize = 512
  private static let maxFindings = 10_000
  /// DATA blocks of one file verified together (their runs read at once).
  private static let verifyBatchBlocks = 64

  init(image: String, opener: DeviceOpener = LocalDeviceOpener(), pfs: PFSInfo, deep: Bool) {
    self.image = image
    self.opener = opener
    self.pfs = pfs
    self.deep = deep
  }

  func start() {
    let t = Thread { [self] in
      run()
      ended.signal()
    }
    t.stackSize = 4 << 20
    t.start()
  }

  private func note(_ f: Finding) {
    guard findings.count < Self.maxFindings else { return }
    findings.append(f)
    findingKeys.append(findingKey)
  }

  /// Waits for the thread to end (after `queue.cancel()`, or after the last batch).
  func waitUntilEnded() {
    ended.wait()
    ended.signal()
  }

  /// `s` with the reads since the previous summary.
  private func attributed(_ s: InodeSummary) -> InodeSummary {
    var s = s
    s.reads = pendingReads
    pendingReads = ScanReads()
    return s
  }

  private func run() {
    let volume: Volume
    do {
      volume = try Volume.open(path: image, opener: opener, cacheBudget: CacheBudget.streamingShare)
      volume.cachesArrays = false
      volume.onBlockRead = { [self] off, size in
        guard !frontier.contains(off) else { return }
        pendingReads.add(off, size, keepOffset: recordsOffsets)
      }
    } catch {
      findingKey = from
      note(Finding(error: error, fallback: Location(image: image, structure: "image")))
      guard from < H2.dirhashVisible else { return queue.push(SummaryBatch(items: [], bytes: 0, end: true)) }
      queue.push(
        SummaryBatch(
          items: [InodeSummary(key: from, keyEnd: H2.dirhashVisible - 1, isHole: true, modifyTid: 0, digest: 0, damaged: true)], bytes: 0,
          end: true))
      return
    }
    let reader = PFSReader(volume: volume, pfs: pfs)
    var batch: [InodeSummary] = []
    batch.reserveCapacity(Self.batchSize)
    var reported: UInt64 = 0
    var resume: UInt64? = 0
    /// An index entry as the fast scan summarizes it (tid only; not an inode: damaged).
    func indexEntry(_ b: Blockref) -> InodeSummary {
      InodeSummary(
        key: b.key, keyEnd: b.key, isHole: false, modifyTid: b.modifyTid, digest: 0, damaged: b.type != .inode,
        bref: b.type == .inode ? b : nil)
    }
    /// Hands a full batch to the merge.
    func flushIfFull() {
      // Also after a MiB of reads: a throttle (and a time budget) sees them in steps.
      guard batch.count >= Self.batchSize || volume.bytesRead - reported >= 1 << 20 || queue.cancelled else { return }
      queue.push(SummaryBatch(items: batch, bytes: volume.bytesRead - reported, end: false))
      reported = volume.bytesRead
      batch.removeAll(keepingCapacity: true)
    }
    if !deep {
      // Index entries only: a plain descent through clean arrays; the iterator takes
      // over from the first irregularity (it reports it as a hole or finding).
      var next: UInt64 = 0
      resume = descend(
        pfs.inode.blockset.filter { !$0.isEmpty }, volume: volume, lo: 0, hi: .max, end: H2.dirhashVisible - 1, depth: 0, next: &next
      ) { b in
        batch.append(attributed(indexEntry(b)))
        flushIfFull()
      }
    }
    var it = KeyRangeIterator(
      volume: volume, array: pfs.inode.blockset, location: volume.location(of: pfs.bref, "PFS \(pfs.name) root inode"))
    var el = resume.flatMap { it.lookup(max($0, from), H2.dirhashVisible - 1) }
    var iteratorFindingKeys: [UInt64] = []
    while let e = el, !queue.cancelled {
      switch e {
      case .hole(let lo, let hi, let err):
        findingKey = lo
        note(Finding(error: err, fallback: volume.location(of: pfs.bref)))
        batch.append(attributed(InodeSummary(key: lo, keyEnd: hi, isHole: true, modifyTid: 0, digest: 0, damaged: true)))
      case .leaf(let b):
        findingKey = b.key
        batch.append(attributed(deep ? summarize(b, reader: reader, volume: volume) : indexEntry(b)))
      }
      // The iterator's own findings belong to the step that met them.
      while iteratorFindingKeys.count < it.findings.count { iteratorFindingKeys.append(findingKey) }
      flushIfFull()
      el = it.next()
    }
    for (j, f) in it.findings.enumerated() {
      findingKey = j < iteratorFindingKeys.count ? iteratorFindingKeys[j] : .max
      note(f)
    }
    blocksRead = volume.blocksRead
    bytesRead = volume.bytesRead
    queue.push(SummaryBatch(items: batch, bytes: volume.bytesRead - reported, end: true, tail: pendingReads))
  }

  /// Emits the leaves of `array` (and below) with keys up to `end`, in key order, while
  /// everything is regular: sorted, disjoint entries inside their parent's range
  /// [lo, hi], readable clean indirect blocks, bounded depth. Returns nil when done,
  /// else the key to resume from with the iterator (every key below it was emitted).
  /// `next` is the lowest key not yet emitted.
  private func descend(
    _ array: [Blockref], volume: Volume, lo: UInt64, hi: UInt64, end: UInt64, depth: Int,
    next: inout UInt64, _ emit: (Blockref) -> Void
  ) -> UInt64? {
    var prevEnd: UInt64?
    for e in array {
      guard e.keybits <= 64, e.key >= lo, e.key >= next, e.keyEnd <= hi, prevEnd.map({ e.key > $0 }) ?? true else { return next }
      if e.key > end { return nil }
      prevEnd = e.keyEnd
      switch e.type {
      case .indirect:
        guard depth < H2.maxIndirectDepth, e.keybits < 64, e.key & ((UInt64(1) << UInt64(e.keybits)) &- 1) == 0,
          let (children, clean) = try? volume.checkedBlockrefArray(e), clean
        else { return next }
        if let r = descend(children, volume: volume, lo: e.key, hi: e.keyEnd, end: end, depth: depth + 1, next: &next, emit) { return r }
        if e.keyEnd >= end { return nil }
      default:
        guard e.keyEnd <= end else { return next }
        emit(e)
        next = e.keyEnd + 1 // keyEnd <= end < .max
      }
    }
    return nil
  }

  /// Reads, verifies and digests one inode and everything below it.
  private func summarize(_ b: Blockref, reader: PFSReader, volume: Volume) -> InodeSummary {
    var s = InodeSummary(
      key: b.key, keyEnd: b.key, isHole: false, modifyTid: b.modifyTid, digest: 0, damaged: false,
      bref: b.type == .inode ? b : nil)
    guard b.type == .inode else {
      note(Finding(.damage, at: volume.location(of: b), "\(b.summary) in the inode index"))
      s.damaged = true
      return s
    }
    let ino: InodeData
    do {
      ino = try volume.inode(b, cached: false)
    } catch {
      note(Finding(error: error, fallback: volume.location(of: b)))
      s.damaged = true
      return s
    }
    let m = ino.meta
    let h = Hasher64()
    h.add(m.inum)
    h.addClusterWide(m)
    h.add(UInt64(m.opFlags & OpFlags.directData))
    if m.isDirectData {
      h.add(ino.directData[0..<Int(min(m.size, UInt64(ino.directData.count)))])
    } else if m.type == .directory {
      var it = reader.entryIterator(of: ino)
      while let r = it.next(reader: reader) {
        switch r {
        case .success(let e):
          h.add(e.bref.key)
          h.add(e.inum)
          h.add(UInt64(e.typeRaw))
          h.add(e.name)
        case .failure(let err):
          note(Finding(error: err, fallback: volume.location(of: b)))
          s.damaged = true
        }
      }
    } else if m.size > 0 {
      var it = KeyRangeIterator(volume: volume, array: ino.blockset) { [volume, b] in volume.location(of: b) }
      // A verified strong check code stands for the bytes it covers; otherwise the
      // bytes themselves are hashed.
      func isStrong(_ d: Blockref) -> Bool { d.checkMethod == .xxhash64 || d.checkMethod == .sha192 }
      // Blocks with media are verified a batch at a time, so that blocks lying back to
      // back are read together (`verifyMediaRuns`: fewer, larger preads on a cold
      // image); everything is still digested and reported in key order.
      var batch: [Blockref] = []
      func verifyBatch() {
        guard !batch.isEmpty else { return }
        volume.verifyMediaRuns(batch) { k, result in
          let d = batch[k]
          let strong = isStrong(d)
          h.addStoredBlock(d, withCheck: strong)
          switch result {
          case .success(let bytes): if !strong { h.add(bytes) }
          case .failure(let error):
            note(Finding(error: error, fallback: volume.location(of: d)))
            s.damaged = true
          }
        }
        batch.removeAll(keepingCapacity: true)
      }
      var el = it.lookup(0, m.size - 1)
      while let e = el {
        switch e {
        case .hole(_, _, let err):
          verifyBatch()
          note(Finding(error: err, fallback: volume.location(of: b)))
          s.damaged = true
        case .leaf(let d):
          if d.radix != 0 {
            batch.append(d)
            if batch.count >= Self.verifyBatchBlocks { verifyBatch() }
          } else {
            verifyBatch()
            h.addStoredBlock(d, withCheck: isStrong(d))
          }
        }
        el = it.next()
      }
      verifyBatch()
      for f in it.findings { note(f) }
    }
    s.digest = h.value
    return s
  }
}
