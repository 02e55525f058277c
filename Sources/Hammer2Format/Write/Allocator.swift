/// Allocates media space through the freemap exactly as DragonFly accounts for it
/// (`hammer2_freemap_alloc`, `hammer2_bmap_alloc`): only chunks whose 2-bit state is 00,
/// every chunk taken set to 11 with `avail` and `allocator_free` reduced by 16 KiB, never
/// below `allocator_beg`, inside a reserved 4 MiB segment, or past the end.
/// Modified leaves are written copy-on-write into their next rotation set at commit.
final class FreemapAllocator {
  private struct LeafState {
    var leaf: FreemapLeaf
    /// The current blockref, nil for a leaf created by this transaction.
    var bref: Blockref?
    var dirty = false
  }

  let volume: Volume
  let totalSize: UInt64
  let allocatorBeg: UInt64
  private(set) var allocatorFree: UInt64
  private var leaves: [UInt64: LeafState] = [:]  // key: region index (GiB)
  private var partial: [UInt16: (offset: UInt64, used: Int)] = [:]
  private var hint: [UInt16: UInt64] = [:]  // class -> next (region<<8 | segment) to search
  /// Bytes newly marked allocated.
  private(set) var bytesAllocated: UInt64 = 0

  init(volume: Volume, header: VolumeHeader) throws(FormatError) {
    self.volume = volume
    totalSize = header.filesystemSize
    allocatorBeg = header.allocatorBeg
    allocatorFree = header.allocatorFree
    for b in header.freemapBlockset where !b.isEmpty {
      switch b.type {
      case .freemapLeaf:
        try load(b)
      case .freemapNode:
        throw FormatError(.unsupported("writing to a freemap with level-2 nodes (file systems with more than 4 GiB regions in use)"), at: volume.location(of: b))
      default:
        throw FormatError(.invalidField("\(b.summary) in the freemap blockset"), at: volume.location(of: b))
      }
    }
  }

  private func load(_ b: Blockref) throws(FormatError) {
    guard b.keybits == 30, b.key & ((1 << 30) - 1) == 0 else {
      throw FormatError(.invalidField("freemap leaf \(b.summary) is not a 1 GiB leaf"), at: volume.location(of: b))
    }
    let bytes = try volume.readMedia(b)
    guard bytes.count >= H2.freemapLevelNPsize else {
      throw FormatError(.invalidField("freemap leaf of \(bytes.count) bytes"), at: volume.location(of: b))
    }
    leaves[b.key >> 30] = LeafState(leaf: FreemapLeaf(bytes), bref: b)
  }

  /// A leaf for a region with no allocations yet (`hammer2_freemap_init`): reserved and
  /// static areas pre-marked allocated.
  private func newLeaf(region: UInt64) -> LeafState {
    let base = region << 30
    let staticEnd = (allocatorBeg + H2.zoneSeg - 1) & ~(H2.zoneSeg - 1)
    let endSeg = totalSize & ~(H2.zoneSeg - 1)
    var entries: [BmapData] = []
    for s in 0..<BmapData.perLeaf {
      let segBase = base + UInt64(s) * H2.zoneSeg
      entries.append(s == 0 || segBase < staticEnd || segBase >= endSeg ? .full : .free)
    }
    return LeafState(leaf: FreemapLeaf(entries: entries), bref: nil, dirty: true)
  }

  /// The 2-bit state of the chunk holding `offset` (00 when no leaf covers it).
  func state(at offset: UInt64) -> UInt8 {
    guard let l = leaves[offset >> 30] else { return 0 }
    let seg = Int((offset >> 22) & 0xFF)
    let chunk = Int((offset & (H2.zoneSeg - 1)) >> 14)
    return l.leaf.entries[seg].state(ofChunk: chunk)
  }

  /// Allocates `size` bytes (a power of two, 1 KiB..64 KiB) for a block of `type`.
  func allocate(size: Int, type: BlockrefType) throws(FormatError) -> UInt64 {
    let cls = UInt16(type.rawValue) << 8 | 16
    if size < Int(H2.freemapBlockSize) {
      if let p = partial[cls], p.used + size <= Int(H2.freemapBlockSize) {
        partial[cls] = (p.offset, p.used + size)
        return p.offset + UInt64(p.used)
      }
      let chunk = try takeChunks(1, cls: cls)
      partial[cls] = (chunk, size)
      return chunk
    }
    return try takeChunks(size / Int(H2.freemapBlockSize), cls: cls)
  }

  /// Takes `n` consecutive free, `n`-aligned 16 KiB chunks and marks them allocated.
  private func takeChunks(_ n: Int, cls: UInt16) throws(FormatError) -> UInt64 {
    let regions = (totalSize + (1 << 30) - 1) >> 30
    // Existing leaves first, then new regions; within them, segments matching the class
    // first (the kernel keeps block classes apart), then any.
    var order = leaves.keys.sorted() + (0..<regions).filter { leaves[$0] == nil }
    // The hinted region first: earlier ones were full when the hint was set.
    if let h = hint[cls], let i = order.firstIndex(of: h >> 16) { order.insert(order.remove(at: i), at: 0) }
    for relaxed in [false, true] {
      for region in order {
        if leaves[region] == nil {
          if leaves.count >= 4 {
            continue  // a fifth leaf would need a level-2 freemap node
          }
          leaves[region] = newLeaf(region: region)
        }
        let hinted = hint[cls].map { $0 >> 16 == region } ?? false
        let start = hinted ? Int((hint[cls]! >> 8) & 0xFF) : 0  // Safe: hinted implies a hint.
        for seg in start..<BmapData.perLeaf {
          // Safe: the region was loaded or created above.
          var e = leaves[region]!.leaf.entries[seg]
          guard e.avail >= UInt32(n) * UInt32(H2.freemapBlockSize) else { continue }
          guard relaxed || e.allocClass == 0 || e.allocClass == cls else { continue }
          let segBase = (region << 30) + UInt64(seg) * H2.zoneSeg
          // Chunks below the hinted one were taken when the hint was set (rounded
          // down to this size's alignment).
          var c = hinted && seg == start ? (Int(hint[cls]! & 0xFF) / n) * n : 0  // Safe: hinted.
          while c + n <= 256 {
            let off = segBase + UInt64(c) * H2.freemapBlockSize
            if (0..<n).allSatisfy({ e.state(ofChunk: c + $0) == 0 }), off >= allocatorBeg,
              off + UInt64(n) * H2.freemapBlockSize <= totalSize
            {
              for k in 0..<n { e.setState(ofChunk: c + k, 3) }
              e.avail -= UInt32(n) * UInt32(H2.freemapBlockSize)
              if e.allocClass == 0 { e.allocClass = cls }
              // Keep the kernel's sub-16 KiB packing iterator out of chunks we took.
              let lin = Int(e.linear)
              if lin >= 0, lin < Int(H2.zoneSeg), lin / 16384 >= c, lin / 16384 < c + n {
                e.linear = Int32((c + n) * 16384)
              }
              leaves[region]!.leaf.entries[seg] = e
              leaves[region]!.dirty = true
              let bytes = UInt64(n) * H2.freemapBlockSize
              allocatorFree = allocatorFree >= bytes ? allocatorFree - bytes : 0
              bytesAllocated += bytes
              hint[cls] = region << 16 | UInt64(seg) << 8 | UInt64(c + n < 256 ? c + n : 255)
              return off
            }
            c += n
          }
        }
      }
      hint[cls] = nil
    }
    throw FormatError(.invalidArgument("no free space for a \(n * 16) KiB block"), at: Location(image: volume.label, offset: 0, structure: "freemap"))
  }

  /// Writes every modified leaf into its next rotation set (`hammer2_freemap_reserve`)
  /// and returns the new freemap blockset.
  func commit(oldBlockset: [Blockref], mirrorTid: UInt64, writer: (UInt64, [UInt8], String) throws(FormatError) -> Void) throws(FormatError) -> [Blockref] {
    var out = oldBlockset.filter { !$0.isEmpty }
    for region in leaves.keys.sorted() {
      guard let st = leaves[region], st.dirty else { continue }
      let base = region << 30
      var set: UInt64 = 0
      if let old = st.bref {
        let current = ((old.mediaOffset & (H2.zoneSeg - 1)) / 65536 &- 1) / 5
        set = (current + 1) % 8
      }
      let off = base + (1 + 5 * set) * 65536
      let block = st.leaf.encode()
      try writer(off, block, "freemap leaf set \(set) for GiB \(region)")
      var b = st.bref ?? Blockref()
      b.typeRaw = BlockrefType.freemapLeaf.rawValue
      b.methods = CheckMethod.freemap.rawValue << 4
      b.keybits = 30
      b.key = base
      b.dataOff = off | 15
      b.mirrorTid = mirrorTid
      b.modifyTid = mirrorTid
      var check = CheckArea()
      check.setU32(0, CRC32C.checksum(block))
      check.setU32(4, 0xFFFF_FFFF)  // bigmask: anything may fit
      check.setU64(1, st.leaf.entries.reduce(0) { $0 + UInt64($1.avail) })
      b.check = check
      out.removeAll { $0.key == base }
      out.append(b)
    }
    out.sort { $0.key < $1.key }
    guard out.count <= 4 else {
      throw FormatError(.unsupported("more than 4 freemap leaves (a level-2 freemap node would be needed)"), at: Location(image: volume.label, offset: 0, structure: "freemap"))
    }
    return out + [Blockref](repeating: Blockref(), count: 4 - out.count)
  }
}
