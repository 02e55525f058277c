import Hammer2Format

/// Checks the freemap against the topology (what DragonFly's bulkfree would complain
/// about): every block reachable from the volume header lies in chunks marked allocated
/// (11), and no two different blocks overlap. Returns one line per problem.
public func auditFreemap(_ volume: Volume) -> [String] {
  var problems: [String] = []
  // Decode the freemap leaves (top-level leaves and leaves under nodes).
  var leaves: [UInt64: FreemapLeaf] = [:]
  var stack = volume.header.freemapBlockset
  while let b = stack.popLast() {
    switch b.type {
    case .freemapLeaf:
      if let bytes = try? volume.readMedia(b) { leaves[b.key >> 30] = FreemapLeaf(bytes) } else { problems.append("unreadable freemap leaf \(b.summary)") }
    case .freemapNode:
      if let a = try? volume.blockrefArray(b) { stack += a.filter { !$0.isEmpty } }
    default: break
    }
  }
  func state(_ off: UInt64) -> UInt8 {
    guard let l = leaves[off >> 30] else { return 0 }
    return l.entries[Int((off >> 22) & 0xFF)].state(ofChunk: Int((off & 0x3F_FFFF) >> 14))
  }
  var extents: [UInt64: Int] = [:]  // offset -> size (distinct blocks)
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
  problems += walker.findings.filter { !$0.message.contains("check mismatch") }.map { "walk: \($0)" }
  let beg = volume.header.allocatorBeg
  var lastEnd: UInt64 = 0
  var lastOff: UInt64 = 0
  for off in extents.keys.sorted() {
    // Safe: iterating the dictionary's own keys.
    let size = UInt64(extents[off]!)
    if off < lastEnd { problems.append("block 0x\(String(off, radix: 16)) overlaps block 0x\(String(lastOff, radix: 16))") }
    lastEnd = max(lastEnd, off + size)
    lastOff = off
    guard off >= beg else { continue }  // static inodes below allocator_beg are not tracked
    var c = off & ~0x3FFF
    while c < off + size {
      if state(c) != 3 { problems.append("block 0x\(String(off, radix: 16))/\(size) is in chunk 0x\(String(c, radix: 16)) marked \(state(c)), not allocated") }
      c += 0x4000
    }
  }
  if volume.header.freemapTid != volume.header.mirrorTid {
    problems.append("freemap_tid \(volume.header.freemapTid) != mirror_tid \(volume.header.mirrorTid)")
  }
  return problems
}
