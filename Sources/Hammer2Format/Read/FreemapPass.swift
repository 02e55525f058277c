/// One pass of `FreemapCrossCheck` over 1 GiB regions `first...last`: the freemap's
/// allocated (`11`) chunks of the range as one bit per 16 KiB chunk, the whole tree
/// walked with every block inside the range marking its chunks referenced (one more bit
/// per chunk), and the two compared (`h2_bulkfree_callback` and `h2_bulkfree_sync_adjust`
/// of hammer2_bulkfree.c, without writing anything). Only the regions that have a
/// FREEMAP_LEAF get the two bitmaps (a slot each): every chunk of a region without one is
/// free, so a block there is a finding whatever the bitmaps say, and its chunks are
/// remembered in a set (empty on a sound image). The memory of a pass thus follows the
/// regions in use, not the volume's nominal size.
struct FreemapPass {
  /// The image (a parallel walker's own `Volume` on it).
  var volume: Volume
  /// Threads a PFS's inode index may be walked on (`walkInParallel`).
  var threads = 1
  let first: UInt64
  let last: UInt64
  /// Byte range of the pass.
  let start: UInt64
  let end: UInt64
  /// Walk damage is reported by the first pass only (every pass walks the same tree).
  let firstPass: Bool
  let limit: Int
  let allocatorBeg: UInt64
  let total: UInt64
  /// One bit per chunk of each region with a leaf (by slot): marked `11` by the freemap.
  private var allocated: [UInt64]
  /// One bit per chunk of each region with a leaf (by slot): referenced by a block (or
  /// pre-marked).
  var referenced: [UInt64]
  /// Per region of the pass: its slot in the bitmaps, -1 for a region without a leaf.
  private var slot: [Int32]
  /// Referenced chunks of regions without a leaf (never pre-marked ones), at most
  /// `maxUntracked`: past that, a chunk met again is counted again.
  private var untracked: Set<UInt64> = []
  private static let maxUntracked = 1 << 20
  /// Pre-marked ranges: below allocator_beg rounded up to 4 MiB, and the last partial
  /// 4 MiB segment.
  private let staticEnd: UInt64
  private let endSeg: UInt64
  /// Per region of the pass: 0 no leaf, 1 leaf read, 2 leaf or node unreadable.
  private var regionState: [UInt8]
  private var leafRefs: [UInt64: Blockref] = [:]
  /// The last leaf decoded again to name a chunk's state in a finding.
  private var stateLeaf: (region: UInt64, leaf: FreemapLeaf)?
  /// Media offsets already reported (a block shared by a snapshot is reported once).
  private var reported: Set<UInt64> = []

  var items: [FreemapCrossCheckResult.Item] = []
  var itemsOmitted = 0
  var unallocatedBlocks: UInt64 = 0
  var unallocatedChunks: [UInt64] = [0, 0, 0]
  var runs: [Range<UInt64>] = []
  var runsTruncated = false
  var reclaimableBytes: UInt64 = 0
  var referencedBytes: UInt64 = 0
  var blockrefsVisited: UInt64 = 0
  /// PFS inode indexes walked on several threads (`walkInParallel`).
  var splitIndexWalks = 0

  /// A parallel walker starts with the pass's bitmaps and no counts or findings.
  mutating func resetCounters() {
    items = []
    itemsOmitted = 0
    unallocatedBlocks = 0
    unallocatedChunks = [0, 0, 0]
    runs = []
    runsTruncated = false
    referencedBytes = 0
    blockrefsVisited = 0
  }

  private static let chunk = H2.freemapBlockSize
  private static let chunksPerRegion = 65536

  init(volume: Volume, regions first: UInt64, _ last: UInt64, firstPass: Bool, limit: Int) {
    self.volume = volume
    self.first = first
    self.last = last
    self.firstPass = firstPass
    self.limit = limit
    let h = volume.header
    total = h.filesystemSize
    allocatorBeg = h.allocatorBeg
    start = first << 30
    end = min(total, (last + 1) << 30)
    let n = Int(last - first + 1)
    slot = [Int32](repeating: -1, count: n)
    // The bitmaps are made by `loadFreemap`, once it knows the regions with a leaf.
    allocated = []
    referenced = []
    regionState = [UInt8](repeating: 0, count: n)
    staticEnd = (allocatorBeg + H2.zoneSeg - 1) & ~(H2.zoneSeg - 1)
    endSeg = total & ~(H2.zoneSeg - 1)
  }

  // MARK: bitmaps

  /// The bit of chunk `off` in the bitmaps; nil in a region without a leaf.
  private func index(_ off: UInt64) -> Int? {
    let s = slot[Int((off >> 30) - first)]
    guard s >= 0 else { return nil }
    return Int(s) * Self.chunksPerRegion + Int((off & ((1 << 30) - 1)) / Self.chunk)
  }

  /// Whether chunk `c` (of a region without a leaf) counts as referenced before the
  /// walk, as `loadFreemap` pre-marks the regions with a leaf.
  private func preMarked(_ c: UInt64) -> Bool {
    c & ((1 << 30) - 1) < H2.zoneSeg || c < staticEnd || c >= endSeg || regionState[Int((c >> 30) - first)] == 2
  }
  private func bit(_ a: [UInt64], _ i: Int) -> Bool { a[i >> 6] & (1 << UInt64(i & 63)) != 0 }

  /// Reads the leaves of the range into `allocated` and pre-marks what bulkfree's
  /// `cbinfo_bmap_init` pre-marks as referenced.
  mutating func loadFreemap() {
    let index = FreemapLeafIndex(volume: volume, regions: first, last)
    if firstPass { for f in index.findings { add(f, unallocated: false) } }
    leafRefs = index.leaves
    var k: Int32 = 0
    for r in first...last where index.leaves[r] != nil {
      slot[Int(r - first)] = k
      k += 1
    }
    allocated = [UInt64](repeating: 0, count: Int(k) * Self.chunksPerRegion / 64)
    referenced = allocated
    for r in first...last {
      let ri = Int(r - first)
      if index.isUnknown(r) { regionState[ri] = 2 }
      guard let b = index.leaves[r], regionState[ri] == 0 else { continue }
      let bytes: [UInt8]
      do throws(FormatError) {
        bytes = try volume.readMedia(b)
      } catch {
        if firstPass { add(Finding(error: error, fallback: volume.location(of: b)), unallocated: false) }
        regionState[ri] = 2
        continue
      }
      guard bytes.count >= H2.freemapLevelNPsize else {
        regionState[ri] = 2
        continue
      }
      regionState[ri] = 1
      // Entry s, element i covers chunks 32*i.. of segment s: bit pairs `11` -> 1 bit.
      let base = Int(slot[ri]) * Self.chunksPerRegion / 64
      for s in 0..<BmapData.perLeaf {
        for i in 0..<8 {
          let w = bytes.u64(s * BmapData.byteCount + 0x40 + 8 * i)
          let both = w & (w >> 1) & 0x5555_5555_5555_5555
          var packed: UInt64 = 0
          var x = both
          while x != 0 {
            let t = x.trailingZeroBitCount
            packed |= 1 << UInt64(t / 2)
            x &= x - 1
          }
          // 32 chunks per element: two elements per 64-bit word of the bitmap.
          let word = base + s * 4 + i / 2
          allocated[word] |= packed << UInt64((i & 1) * 32)
        }
      }
    }
    // Pre-marked as referenced (in the regions with a leaf; `preMarked` for the others):
    // the reserved first 4 MiB of every GiB, below allocator_beg rounded up to 4 MiB,
    // from the last whole 4 MiB segment on, and regions whose leaf or node could not be
    // read (nothing can be claimed there).
    for (ri, s) in slot.enumerated() where s >= 0 {
      let b = (first + UInt64(ri)) << 30
      let e = min(end, b + (1 << 30))
      if regionState[ri] == 2 {
        markReferenced(b, e)
        continue
      }
      markReferenced(b, min(b + H2.zoneSeg, e))
      if staticEnd > b { markReferenced(b, min(staticEnd, e)) }
      if endSeg < e { markReferenced(max(endSeg, b), e) }
    }
  }

  /// Marks chunks `from..<to` of one region with a leaf.
  private mutating func markReferenced(_ from: UInt64, _ to: UInt64) {
    guard from < to, let c0 = index(from), let e = index(to - 1) else { return }
    var c = c0
    while c <= e {
      referenced[c >> 6] |= 1 << UInt64(c & 63)
      c += 1
    }
  }

  /// After the walk: chunks `11` in a readable leaf that nothing references.
  mutating func finish() {
    for (ri, st) in regionState.enumerated() where st == 1 && slot[ri] >= 0 {
      let base = Int(slot[ri]) * Self.chunksPerRegion / 64
      var n = 0
      for w in base..<(base + Self.chunksPerRegion / 64) { n += (allocated[w] & ~referenced[w]).nonzeroBitCount }
      reclaimableBytes += UInt64(n) * Self.chunk
    }
  }

  // MARK: findings

  mutating func add(_ f: Finding, unallocated: Bool, inode: (pfs: String, inum: UInt64, name: String, iparent: UInt64)? = nil) {
    if items.count < limit {
      items.append(.init(finding: f, inode: inode, unallocated: unallocated))
    } else {
      itemsOmitted += 1
    }
  }

  /// The live state of chunk `off` (0..3), reading its leaf again (one kept).
  private mutating func liveState(_ off: UInt64) -> UInt8 {
    let r = off >> 30
    guard regionState[Int(r - first)] == 1, let b = leafRefs[r] else { return 0 }
    if stateLeaf?.region != r {
      guard let bytes = try? volume.readMedia(b), bytes.count >= H2.freemapLevelNPsize else { return 0 }
      stateLeaf = (r, FreemapLeaf(bytes))
    }
    // Safe: set just above.
    return stateLeaf!.leaf.entries[Int((off >> 22) & 0xFF)].state(ofChunk: Int((off & 0x3F_FFFF) >> 14))
  }

  /// Counts `bref`'s block as referenced; a chunk not marked `11` makes it a finding.
  mutating func reference(_ bref: Blockref, owner: WalkOwner) {
    guard bref.radix != 0, let size = bref.mediaSize, size > 0 else { return }
    let off = bref.mediaOffset
    // Not tracked by the freemap (`h2_bulkfree_callback`), or outside this pass.
    guard off >= allocatorBeg, off < total, off >= start, off < end else { return }
    // A block may not cross 4 MiB (nor 64 KiB); bulkfree clips it, so do we.
    let stop = min(off &+ UInt64(size), (off | (H2.zoneSeg - 1)) + 1, end)
    var bad: [(UInt64, UInt8)] = []
    var c = off & ~(Self.chunk - 1)
    while c < stop {
      let wasReferenced: Bool
      let isAllocated: Bool
      if let i = index(c) {
        wasReferenced = bit(referenced, i)
        if !wasReferenced { referenced[i >> 6] |= 1 << UInt64(i & 63) }
        isAllocated = bit(allocated, i)
      } else {
        // No leaf: every chunk is free.
        wasReferenced = preMarked(c) || untracked.contains(c)
        if !wasReferenced && untracked.count < Self.maxUntracked { untracked.insert(c) }
        isAllocated = false
      }
      if !wasReferenced { referencedBytes += Self.chunk }
      if !isAllocated, regionState[Int((c >> 30) - first)] != 2 {
        let st = liveState(c)
        bad.append((c, st))
        if !wasReferenced {
          unallocatedChunks[Int(min(st, 2))] += 1
          if let l = runs.last, l.upperBound == c {
            runs[runs.count - 1] = l.lowerBound..<(c + Self.chunk)
          } else if runs.count < limit {
            runs.append(c..<(c + Self.chunk))
          } else {
            runsTruncated = true
          }
        }
      }
      c += Self.chunk
    }
    guard let c0 = bad.first?.0, reported.count < 4 * limit, reported.insert(off).inserted else { return }
    unallocatedBlocks += 1
    let states = Set(bad.map(\.1)).sorted().map { Self.stateName($0) }.joined(separator: "/")
    let leaf = leafRefs[c0 >> 30] == nil ? " (no freemap leaf for GiB \(c0 >> 30))" : ""
    let msg =
      "\(bref.type?.name ?? "type \(bref.typeRaw)") block 0x\(hex(off))/\(size) of \(owner.description) is referenced but the freemap marks \(bad.count == 1 ? "its chunk" : "\(bad.count) of its chunks") 0x\(hex(c0)) \(states)\(leaf), not allocated (11): the allocator can hand it out again"
    add(Finding(.damage, at: volume.location(of: bref), msg), unallocated: true, inode: owner.inode)
  }

  static func stateName(_ s: UInt8) -> String {
    switch s {
    case 0: return "00 (free)"
    case 1: return "01 (reserved)"
    case 2: return "10 (staged)"
    default: return "11"
    }
  }
}

/// Whose tree a walked block belongs to, for findings.
struct WalkOwner {
  var pfs: String?
  var inum: UInt64
  var name: String
  var iparent: UInt64
  /// The inode, for path resolution (not for the super-root's own tree).
  var inode: (pfs: String, inum: UInt64, name: String, iparent: UInt64)? {
    pfs.map { ($0, inum, name, iparent) }
  }
  var description: String {
    guard let pfs else { return name }
    return inum == 1 ? "PFS \(pfs) root" : "PFS \(pfs) inode \(inum)"
  }
}
