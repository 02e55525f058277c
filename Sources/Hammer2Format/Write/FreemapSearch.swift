/// The allocation search, as DragonFly runs it (docs/format.md §9.5, §9.8):
/// `hammer2_freemap_alloc` picks the per-type start (`heur_freemap[]`),
/// `hammer2_freemap_try_alloc` scans one 1 GiB leaf alternately forward and backward from
/// the hinted 4 MiB entry, `hammer2_bmap_alloc` takes chunks inside an entry, and
/// `hammer2_freemap_iterate` moves to the next GiB, wrapping at the end; after two loops
/// classes are ignored (relaxed), after a third the volume is full.
///
/// What keeps it fast at any size: a region without a leaf is wholly free (its new leaf
/// takes the allocation at once), a leaf whose bigmask excludes the size is not read, a
/// leaf found without room is remembered for the rest of the transaction (and dropped
/// from memory when clean), and an allocation that cannot fit in `allocator_free` fails
/// before any scan.
extension FreemapAllocator {
  /// Allocates `size` bytes (a power of two, 1 KiB..64 KiB) for a block of `type`;
  /// `key` is the block's key (for DATA, the file offset, which picks the preferred chunk
  /// inside a segment). Only memory changes until `commit`.
  func allocate(size: Int, type: BlockrefType, key: UInt64 = 0) throws(FormatError) -> UInt64 {
    guard size >= 1024, size <= H2.pbufSize, size & (size - 1) == 0 else {
      throw FormatError(.editRefused(.allocationSize(size)))
    }
    let radix = UInt8(size.trailingZeroBitCount)
    // Worded only for an error: an allocation must not format a string.
    func what() -> String { "a \(size >= 1024 ? "\(size / 1024) KiB" : "\(size) byte") \(type.blockName)" }
    // A block of 16 KiB or more needs whole free chunks (a smaller one may still pack
    // into a partly used chunk, so only the search can tell).
    if size >= Int(H2.freemapBlockSize), UInt64(size) > freeBytes { throw noSpace(UInt64(size), for: what()) }
    let cls = UInt16(type.rawValue) << 8 | UInt16(H2.pbufRadix)
    let regionSize: UInt64 = 1 << 30
    var bnext = min(heuristic[Int(type.rawValue)], totalSize - 1)
    var loops = 0
    var relaxedNow = relaxed
    while true {
      let region = bnext >> 30
      if let off = try tryAllocate(
        region: region, start: Int((bnext & (regionSize - 1)) >> 22), cls: cls,
        radix: radix, relaxed: relaxedNow, key: key)
      {
        relaxed = relaxed || relaxedNow
        heuristic[Int(type.rawValue)] = bnext
        return off
      }
      // hammer2_freemap_iterate
      bnext = (bnext & ~(regionSize - 1)) + regionSize
      if bnext >= totalSize {
        bnext = 0
        loops += 1
        if loops >= 2 {
          if relaxedNow { throw noSpace(UInt64(size), for: what()) }
          relaxedNow = true
        }
      }
    }
  }

  /// `hammer2_freemap_try_alloc` for one region: the leaf (created when missing), its
  /// entries from `start` forward and backward; nil when nothing fits.
  private func tryAllocate(region: UInt64, start: Int, cls: UInt16, radix: UInt8, relaxed: Bool, key: UInt64) throws(FormatError) -> UInt64?
  {
    let ek = ExhaustedKey(region: region, cls: cls, radix: radix, relaxed: relaxed)
    if exhausted.contains(ek) { return nil }
    guard try leafState(region: region, create: true, radix: radix) != nil else {
      exhausted.insert(ek)
      return nil
    }
    let base = region << 30
    // Safe: every `leaves[region]!` below: the leaf was loaded just above and stays
    // until this function returns. The scan borrows the entries (no dictionary lookup
    // per entry, no copy); the one entry changed is stored back in place.
    if let (n, entry, offset, bgsize) = Self.scanLeaf(
      leaves[region]!.leaf.entries, start: start, cls: cls, radix: radix,
      relaxed: relaxed, key: key)
    {
      let off = base + UInt64(n) * H2.zoneSeg + UInt64(offset)
      // hammer2_freemap_init pre-marks everything no allocation may take; a free chunk
      // there means the freemap on disk is damaged: refuse rather than overwrite.
      guard off >= allocatorBeg, off + (1 << UInt64(radix)) <= totalSize, off & (regionSize - 1) >= H2.zoneSeg else {
        throw FormatError(
          .badTree(.freemapFreeReserved(offset: off)),
          at: Location(image: volume.label, offset: off, structure: "freemap leaf for GiB \(region)"))
      }
      leaves[region]!.leaf.entries[n] = entry
      if !leaves[region]!.dirty {
        leaves[region]!.dirty = true
        try markPathDirty(region: region)
      }
      account(bgsize)
      return off
    }
    // Only a relaxed scan of the whole leaf proves no 2^radix block fits.
    if start == 0 && relaxed {
      leaves[region]!.bigmask &= ~(1 << UInt32(radix))
      if !leaves[region]!.dirty {
        leaves[region]!.dirty = true
        try markPathDirty(region: region)
      }
    }
    exhausted.insert(ek)
    if !leaves[region]!.dirty { leaves[region] = nil }
    return nil
  }

  private var regionSize: UInt64 { 1 << 30 }

  /// The entries of one leaf from `start` alternately forward and backward
  /// (`hammer2_freemap_try_alloc`'s loop): the first that takes a 2^radix block, with
  /// the entry as changed, the offset inside its segment and the bytes newly taken.
  static func scanLeaf(
    _ entries: [BmapData], start: Int, cls: UInt16, radix: UInt8, relaxed: Bool,
    key: UInt64
  ) -> (index: Int, entry: BmapData, offset: Int, bgsize: UInt64)? {
    let count = min(entries.count, BmapData.perLeaf)
    for step in 0..<count {
      if start + step >= count && start - step < 0 { break }
      for direction in 0..<2 {
        let n = direction == 0 ? start + step : start - step
        guard n >= 0 && n < count else { continue }
        let availOK = entries[n].avail > 0 || (radix < 14 && entries[n].linear & Int32(H2.freemapBlockSize - 1) != 0)
        guard availOK, relaxed || entries[n].allocClass == 0 || entries[n].allocClass == cls else { continue }
        var entry = entries[n]
        guard let (offset, bgsize) = bmapAllocate(&entry, cls: cls, radix: radix, key: key) else { continue }
        return (n, entry, offset, bgsize)
      }
    }
    return nil
  }

  /// `hammer2_bmap_alloc`: the offset inside the 4 MiB segment of `entry` for a 2^radix
  /// block, and the bytes of chunks newly taken; nil when the entry has no room. Small
  /// blocks continue the `linear` packing iterator while it is inside a chunk; DATA of
  /// 16 KiB or more first tries the chunk its file offset maps to; otherwise the first
  /// size-aligned run of free (00) chunks.
  static func bmapAllocate(_ entry: inout BmapData, cls: UInt16, radix: UInt8, key: UInt64) -> (offset: Int, bgsize: UInt64)? {
    let size = 1 << Int(radix)
    let block = Int(H2.freemapBlockSize)
    let bmradix = radix <= 14 ? 2 : 2 << (Int(radix) - 14)
    let ones: UInt64 = bmradix == 64 ? .max : (1 << UInt64(bmradix)) - 1
    var i = -1
    var j = -1
    var offset = 0
    let linear = Int(entry.linear)
    if linear >= 0, linear < Int(H2.zoneSeg), linear & (block - 1) != 0, (linear & (block - 1)) + size <= block {
      // Packing after earlier small blocks.
      i = linear / (Int(H2.zoneSeg) / 8)
      j = (linear / (block / 2)) & 62
      offset = linear
      entry.linear = Int32(linear + size)
    } else {
      var found = false
      if cls >> 8 == UInt16(BlockrefType.data.rawValue), radix >= 14 {
        let pi = Int((key & (H2.zoneSeg - 1)) / (H2.zoneSeg / 8))
        let pj = Int((key & (H2.zoneSeg / 8 - 1)) / H2.freemapBlockSize) * 2
        if pj + bmradix <= 64, entry.bitmap[pi] & (ones << UInt64(pj)) == 0 {
          (i, j) = (pi, pj)
          found = true
        }
      }
      if !found {
        scan: for ei in 0..<8 {
          var jj = 0
          while jj < 64 {
            if entry.bitmap[ei] & (ones << UInt64(jj)) == 0 {
              (i, j) = (ei, jj)
              found = true
              break scan
            }
            jj += bmradix
          }
        }
      }
      guard found else { return nil }
      offset = i * (Int(H2.zoneSeg) / 8) + j * (block / 2)
      if size & (block - 1) != 0 { entry.linear = Int32(offset + size) }
    }
    let mask = ones << UInt64(j)
    // Accounting is chunk-granular (bulkfree cannot undo finer changes).
    let bgsize: UInt64 = radix < 14 ? (entry.bitmap[i] & mask != 0 ? 0 : H2.freemapBlockSize) : UInt64(size)
    entry.bitmap[i] |= mask
    if entry.allocClass == 0 { entry.allocClass = cls }
    entry.avail = entry.avail >= UInt32(bgsize) ? entry.avail - UInt32(bgsize) : 0
    return (offset, bgsize)
  }
}
