import Hammer2Format

/// Checks the freemap against the topology and against DragonFly's rules for its shape
/// (docs/format.md §9; what bulkfree and the kernel would complain about). Returns one
/// line per problem:
/// - every block reachable from the volume header lies in chunks marked allocated (11),
///   and no two different blocks overlap;
/// - the tree: leaves (keybits 30) and nodes (38, 46, 54, 62) only, keys aligned to their
///   keybits, children inside their parent's range, of a lower level, disjoint, with
///   `mirror_tid` no higher than the parent's; each block at §9.2's place for its key and
///   level (block `1 + 5*set + level-1` of the reserved segment at its base), 32 KiB;
///   the CRC32C check code over the 32 KiB;
/// - accounting: each entry's `avail` is 16 KiB per free (00) chunk, and
///   `allocator_free` equals the free chunks of all leaves plus every allocatable
///   segment of regions without a leaf (plus the part of the static-inode segment that
///   `allocator_free` counts but leaf 0 pre-marks);
/// - `freemap_tid` equals `mirror_tid`.
public func auditFreemap(_ volume: Volume) -> [String] {
  let shape = auditFreemapTree(volume)
  return shape.problems + auditTopology(volume, leaves: shape.leaves)
}

/// What the audit found in the freemap tree itself: problems, and how many nodes of each
/// level (1 = leaves) it holds.
public struct FreemapShape {
  public var problems: [String] = []
  /// Level -> count (1 = leaves, 2..5 nodes).
  public var counts: [Int: Int] = [:]
  /// Leaves by region (GiB).
  public var leaves: [UInt64: FreemapLeaf] = [:]
  /// Every node's (level, key).
  public var nodes: [(level: Int, key: UInt64)] = []
  public init() {}
}

private let levelRadix: [UInt8] = [22, 30, 38, 46, 54, 62]

/// Walks the freemap tree of `volume` and checks its shape, placement, check codes and
/// accounting (see `auditFreemap`).
public func auditFreemapTree(_ volume: Volume) -> FreemapShape {
  var shape = FreemapShape()
  let h = volume.header
  // (bref, parent level, parent key, parent mirror_tid)
  var stack: [(Blockref, Int, UInt64, UInt64)] = h.freemapBlockset.filter { !$0.isEmpty }.map { ($0, 6, 0, h.mirrorTid) }
  var visited = 0
  while let (b, plevel, pkey, ptid) = stack.popLast() {
    visited += 1
    guard visited < 1_000_000 else {
      shape.problems.append("freemap: more than a million blocks (a loop?)")
      break
    }
    let name = "freemap \(b.summary)"
    guard let level = (1...5).first(where: { levelRadix[$0] == b.keybits }) else {
      shape.problems.append("\(name): keybits \(b.keybits) is no freemap level")
      continue
    }
    if (b.type == .freemapLeaf) != (level == 1) || (b.type != .freemapLeaf && b.type != .freemapNode) {
      shape.problems.append("\(name): type does not match keybits \(b.keybits)")
      continue
    }
    shape.counts[level, default: 0] += 1
    let bits = UInt64(b.keybits)
    if b.key & ((1 << bits) - 1) != 0 { shape.problems.append("\(name): key not aligned to its keybits") }
    if level >= plevel { shape.problems.append("\(name): level \(level) under a level-\(plevel) parent") }
    if plevel < 6 {
      let pbits = UInt64(levelRadix[plevel])
      if b.key >> pbits != pkey >> pbits {
        shape.problems.append("\(name): outside its parent's range at key 0x\(String(pkey, radix: 16))")
      }
    }
    if b.mirrorTid > ptid { shape.problems.append("\(name): mirror_tid \(b.mirrorTid) above its parent's \(ptid)") }
    // §9.2 placement.
    let base = b.key & ~((1 << bits) - 1)
    let off = b.mediaOffset
    let slot = (off & 0x3F_FFFF) / 65536
    if b.radix != 15 || off & ~0x3F_FFFF != base || off & 0xFFFF != 0 || slot < 1 || slot > 40 || (slot - 1) % 5 != UInt64(level - 1) {
      shape.problems.append(
        "\(name): data_off 0x\(String(b.dataOff, radix: 16)) is not a level-\(level) freemap slot of the segment at 0x\(String(base, radix: 16))"
      )
      continue
    }
    guard let bytes = try? volume.readMedia(b, verify: false), bytes.count >= 32768 else {
      shape.problems.append("\(name): unreadable")
      continue
    }
    let crc = CRC32C.checksum(Array(bytes[0..<32768]))
    if crc != b.check.u32(0) {
      shape.problems.append("\(name): CRC32C 0x\(String(crc, radix: 16)) != check 0x\(String(b.check.u32(0), radix: 16))")
    }
    if level == 1 {
      shape.leaves[b.key >> 30] = FreemapLeaf(bytes)
    } else {
      shape.nodes.append((level, b.key))
      let children = decodeLiveBlockrefs(Array(bytes[0..<32768])).sorted { $0.key < $1.key }
      var prevEnd: UInt64? = nil
      for c in children {
        if let e = prevEnd, c.key <= e { shape.problems.append("freemap \(c.summary): overlaps a sibling") }
        prevEnd = c.keybits >= 64 ? .max : c.key + ((1 << UInt64(c.keybits)) - 1)
        stack.append((c, level, b.key, b.mirrorTid))
      }
    }
  }
  // Accounting.
  let total = h.filesystemSize
  let staticEnd = (h.allocatorBeg + 0x3F_FFFF) & ~UInt64(0x3F_FFFF)
  var free: UInt64 = 0
  for (region, leaf) in shape.leaves {
    for (s, e) in leaf.entries.enumerated() {
      let zeros = (0..<256).filter { e.state(ofChunk: $0) == 0 }.count
      if UInt64(e.avail) != UInt64(zeros) * 16384 {
        shape.problems.append("freemap leaf GiB \(region) entry \(s): avail \(e.avail) but \(zeros) free chunks")
      }
      free += UInt64(zeros) * 16384
    }
  }
  let regions = (total + (1 << 30) - 1) >> 30
  let leafless = regions - UInt64(shape.leaves.count)
  if leafless > 0 {
    // Allocatable segments of the regions without a leaf: all but the reserved one,
    // those below staticEnd and those past the end (few regions are partial: count them
    // one by one only there).
    var byRegion: UInt64 = 0
    for r in 0..<regions where shape.leaves[r] == nil {
      let base = r << 30
      if base >= staticEnd && base + (1 << 30) <= (total & ~UInt64(0x3F_FFFF)) {
        byRegion += 255 * 0x40_0000
        continue
      }
      for s in UInt64(1)..<256 {
        let seg = base + s * 0x40_0000
        if seg >= staticEnd && seg < (total & ~UInt64(0x3F_FFFF)) { byRegion += 0x40_0000 }
      }
    }
    free += byRegion
  }
  if h.auxEnd != 0, h.auxEnd <= h.allocatorBeg, staticEnd - h.auxEnd <= 0x40_0000 { free += staticEnd - h.auxEnd }
  if free != h.allocatorFree {
    shape.problems.append("allocator_free \(h.allocatorFree) but the freemap has \(free) bytes free")
  }
  if h.freemapTid != h.mirrorTid {
    shape.problems.append("freemap_tid \(h.freemapTid) != mirror_tid \(h.mirrorTid)")
  }
  return shape
}

/// Every block reachable from the volume header in chunks marked allocated; no overlaps.
private func auditTopology(_ volume: Volume, leaves: [UInt64: FreemapLeaf]) -> [String] {
  var problems: [String] = []
  func state(_ off: UInt64) -> UInt8 {
    guard let l = leaves[off >> 30] else { return 0 }
    return l.entries[Int((off >> 22) & 0xFF)].state(ofChunk: Int((off & 0x3F_FFFF) >> 14))
  }
  var extents: [UInt64: Int] = [:] // offset -> size (distinct blocks)
  var walker = TopologyWalker(volume: volume, includeFreemap: false, decompressData: false)
  walker.walk { e in
    let b = e.bref
    guard b.radix != 0, let size = b.mediaSize, size > 0 else { return }
    if let s = extents[b.mediaOffset], s != size {
      problems.append("two blocks of different sizes at 0x\(String(b.mediaOffset, radix: 16))")
    }
    extents[b.mediaOffset] = size
  }
  // Damaged data (a failing check code) is not a freemap problem; structural damage is.
  problems += walker.findings.filter { f in
    if case .checkMismatch? = f.kind { return false }
    return true
  }.map { "walk: \($0)" }
  let beg = volume.header.allocatorBeg
  var lastEnd: UInt64 = 0
  var lastOff: UInt64 = 0
  for off in extents.keys.sorted() {
    // Safe: iterating the dictionary's own keys.
    let size = UInt64(extents[off]!)
    if off < lastEnd { problems.append("block 0x\(String(off, radix: 16)) overlaps block 0x\(String(lastOff, radix: 16))") }
    lastEnd = max(lastEnd, off + size)
    lastOff = off
    guard off >= beg else { continue } // static inodes below allocator_beg are not tracked
    var c = off & ~0x3FFF
    while c < off + size {
      if state(c) != 3 {
        problems.append("block 0x\(String(off, radix: 16))/\(size) is in chunk 0x\(String(c, radix: 16)) marked \(state(c)), not allocated")
      }
      c += 0x4000
    }
  }
  return problems
}
