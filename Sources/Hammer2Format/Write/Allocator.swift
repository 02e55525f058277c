/// Allocates media space through the freemap exactly as DragonFly keeps it
/// (docs/format.md §9; `hammer2_freemap_alloc`, `hammer2_freemap_try_alloc`,
/// `hammer2_bmap_alloc`, `hammer2_freemap_iterate`), at any volume size: leaves are
/// created on first use of their 1 GiB region (`hammer2_freemap_init`), FREEMAP_NODEs of
/// levels 2..5 by the split rule when a parent is full (FreemapTree.swift), and every
/// modified leaf and node is written copy-on-write into its next rotation set at commit.
///
/// Until `commit` nothing is written: a failed allocation (no space, a damaged freemap)
/// only changed memory, so the transaction can be abandoned with the image untouched.
final class FreemapAllocator {
  /// A leaf read or created by this transaction.
  struct LeafState {
    var leaf: FreemapLeaf
    /// The current blockref, nil for a leaf created by this transaction.
    var bref: Blockref?
    var dirty = false
    /// `check.freemap.bigmask`: bit r clear means no 2^r allocation can succeed here
    /// (cleared only after a failed relaxed scan of the whole leaf, as DragonFly does).
    var bigmask: UInt32
    /// `check.freemap.avail`: set on creation (1 GiB minus the pre-marked segments) and
    /// then kept, as DragonFly does (a heuristic nothing maintains).
    var hintAvail: UInt64
  }

  let volume: Volume
  let totalSize: UInt64
  let allocatorBeg: UInt64
  /// Free bytes under freemap control that no allocation can ever take: the rest of the
  /// 4 MiB segment holding the super-root and PFS root inodes after the aux area (leaf 0
  /// pre-marks it allocated, `allocator_free` still counts it).
  let unusableFree: UInt64
  private(set) var allocatorFree: UInt64
  /// The tree's top: the volume header's freemap blockset.
  var root: FreemapNode
  /// Leaves read or created, by region (GiB). A leaf the search passed over without
  /// changing it is dropped again.
  var leaves: [UInt64: LeafState] = [:]
  /// Regions whose leaf has no room for a request of (class, radix, relaxed): nothing is
  /// freed inside a transaction, so a failed scan stays failed.
  var exhausted: Set<ExhaustedKey> = []
  /// Per-type start of the search (`heur_freemap[]`, 0 at mount), indexed by the
  /// blockref type (an array: it is read on every allocation).
  var heuristic = [UInt64](repeating: 0, count: 256)
  /// `freemap_relaxed`: set once a search had to ignore classes.
  var relaxed = false
  /// Bytes newly marked allocated.
  private(set) var bytesAllocated: UInt64 = 0
  /// Counters for tests: nodes and leaves read from disk, nodes created.
  var nodesRead = 0
  var leavesRead = 0
  var nodesCreated = 0

  struct ExhaustedKey: Hashable {
    var region: UInt64
    var cls: UInt16
    var radix: UInt8
    var relaxed: Bool
  }

  init(volume: Volume, header: VolumeHeader) throws(FormatError) {
    self.volume = volume
    totalSize = header.filesystemSize
    allocatorBeg = header.allocatorBeg
    allocatorFree = header.allocatorFree
    unusableFree = header.unallocatableFree
    root = FreemapNode(level: 6, key: 0, bref: nil, children: [])
    root = try makeRoot(header.freemapBlockset)
  }

  /// Test-only: where every type's search starts (the in-memory `heur_freemap[]` a
  /// mounted DragonFly file system would have after earlier allocations). Lets a test
  /// reach regions far into a sparse volume without filling the ones before.
  func setStartHint(_ offset: UInt64) {
    for t in heuristic.indices { heuristic[t] = offset }
  }

  /// Bytes that allocations can still take: `allocator_free` (16 KiB granular, already
  /// reduced by this transaction's allocations) minus the free bytes no allocation can
  /// reach. Fragmentation can still make a 64 KiB block fail when free chunks are not
  /// aligned runs; the count is honest, not a guarantee of contiguity.
  var freeBytes: UInt64 { allocatorFree > unusableFree ? allocatorFree - unusableFree : 0 }

  /// The bytes of 16 KiB chunks that blocks of `sizes` take at least: blocks of 16 KiB or
  /// more their own size, smaller blocks packed (rounded up to a chunk per class that
  /// packs them, of which there are at most four: inodes, indirect blocks, data, names).
  static func bytesNeeded(blockSizes sizes: [Int]) -> UInt64 {
    var big: UInt64 = 0
    var small: UInt64 = 0
    for s in sizes where s > 0 {
      if UInt64(s) >= H2.freemapBlockSize { big += UInt64(s) } else { small += UInt64(s) }
    }
    guard small > 0 else { return big }
    let chunks = (small + H2.freemapBlockSize - 1) / H2.freemapBlockSize + 3
    return big + chunks * H2.freemapBlockSize
  }

  /// Throws the no-space error unless `bytes` more can be allocated.
  func requireSpace(_ bytes: UInt64, for what: String) throws(FormatError) {
    guard bytes <= freeBytes else { throw noSpace(bytes, for: what) }
  }

  func noSpace(_ bytes: UInt64, for what: String) -> FormatError {
    FormatError(
      .noSpace(needed: bytes, what: what, free: freeBytes),
      at: Location(image: volume.label, structure: "freemap"))
  }

  /// The leaf for `region`: in memory, read from disk, or (with `create`) a new one
  /// inserted into the tree. Nil when there is none and `create` is false, or when its
  /// bigmask says a 2^`radix` block cannot fit (then it is not read at all).
  func leafState(region: UInt64, create: Bool, radix: UInt8? = nil) throws(FormatError) -> LeafState? {
    if let st = leaves[region] { return st }
    let (path, bref) = try lookup(region: region)
    if let b = bref {
      let bigmask = b.check.u32(4)
      if let r = radix, bigmask & (1 << UInt32(r)) == 0 { return nil }
      let bytes = try volume.readMedia(b)
      guard bytes.count >= H2.freemapLevelNPsize else {
        throw FormatError(.sizeMismatch(.freemapLeaf(bytes: bytes.count)), at: volume.location(of: b))
      }
      leavesRead += 1
      let st = LeafState(leaf: FreemapLeaf(bytes), bref: b, bigmask: bigmask, hintAvail: b.check.u64(1))
      leaves[region] = st
      return st
    }
    guard create else { return nil }
    let st = newLeaf(region: region)
    try insertLeaf(region: region, path: path)
    leaves[region] = st
    return st
  }

  /// A leaf for a region with no allocations yet (`hammer2_freemap_init`): the reserved
  /// segment, everything below `allocator_beg` rounded up to 4 MiB and everything past
  /// the end pre-marked allocated; its bref's `avail` is 1 GiB minus those segments.
  private func newLeaf(region: UInt64) -> LeafState {
    let base = region << 30
    let staticEnd = (allocatorBeg + H2.zoneSeg - 1) & ~(H2.zoneSeg - 1)
    let endSeg = totalSize & ~(H2.zoneSeg - 1)
    var entries: [BmapData] = []
    var avail: UInt64 = 1 << 30
    for s in 0..<BmapData.perLeaf {
      let segBase = base + UInt64(s) * H2.zoneSeg
      if s == 0 || segBase < staticEnd || segBase >= endSeg {
        entries.append(.full)
        avail -= H2.zoneSeg
      } else {
        entries.append(.free)
      }
    }
    return LeafState(leaf: FreemapLeaf(entries: entries), bref: nil, dirty: true, bigmask: 0xFFFF_FFFF, hintAvail: avail)
  }

  /// Test-only: marks every free chunk of the volume allocated (leaves created where
  /// missing, packing iterators closed), as a volume filled to its last chunk would be.
  /// Only for small test images: it visits every region.
  func fillForTest() throws(FormatError) {
    let regions = (totalSize + (1 << 30) - 1) >> 30
    for r in 0..<regions {
      // Safe: create: true always returns a leaf.
      var st = try leafState(region: r, create: true)!
      for n in 0..<BmapData.perLeaf {
        var e = st.leaf.entries[n]
        for c in 0..<256 where e.state(ofChunk: c) == 0 {
          e.setState(ofChunk: c, 3)
          account(H2.freemapBlockSize)
        }
        if e.allocClass == 0 && e.avail > 0 { e.allocClass = UInt16(BlockrefType.data.rawValue) << 8 | 16 }
        e.avail = 0
        e.linear = Int32(H2.zoneSeg)
        st.leaf.entries[n] = e
      }
      st.dirty = true
      leaves[r] = st
      try markPathDirty(region: r)
    }
  }

  /// Records an allocation of `bgsize` bytes of whole chunks (the volume's accounting).
  func account(_ bgsize: UInt64) {
    allocatorFree = allocatorFree >= bgsize ? allocatorFree - bgsize : 0
    bytesAllocated += bgsize
  }

  /// Writes every modified leaf and node into its next rotation set and returns the new
  /// freemap blockset of the volume header.
  func commit(oldBlockset: [Blockref], mirrorTid: UInt64, writer: (UInt64, [UInt8], String) throws(FormatError) -> Void) throws(FormatError)
    -> [Blockref]
  {
    try commit(mirrorTid: mirrorTid, writer: writer)
  }
}

extension VolumeHeader {
  /// Free bytes `allocator_free` counts that no allocation can take: the rest of the
  /// 4 MiB segment after the aux area that holds the super-root and PFS root inodes
  /// (`hammer2_freemap_init` marks everything below `allocator_beg` rounded up to 4 MiB
  /// allocated).
  var unallocatableFree: UInt64 {
    let staticEnd = (allocatorBeg + H2.zoneSeg - 1) & ~(H2.zoneSeg - 1)
    guard auxEnd != 0, auxEnd <= allocatorBeg, staticEnd - auxEnd <= H2.zoneSeg else { return 0 }
    return staticEnd - auxEnd
  }

  /// Bytes the freemap can still hand out, as the volume header counts them
  /// (`allocator_free`, 16 KiB granular, minus `unallocatableFree`): what a resync may
  /// plan to write onto this node before opening it for writing.
  public var allocatableBytes: UInt64 {
    allocatorFree > unallocatableFree ? allocatorFree - unallocatableFree : 0
  }
}
