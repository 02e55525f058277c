/// Read-only lookup of the freemap's leaves (docs/format.md §9.1, §9.2, §9.8): which
/// FREEMAP_LEAF blockref describes each 1 GiB region of a range, found by descending the
/// FREEMAP_NODEs of the volume header's freemap blockset. Only nodes whose key range
/// meets the range are read; leaves are not read here.
///
/// Damage never traps and never stops the lookup: a node that cannot be read, a child of
/// the wrong type or level, a key outside its parent's range or two leaves for one region
/// are findings, and the regions below a damaged node are reported as unknown (neither
/// free nor allocated can be claimed for them).
struct FreemapLeafIndex {
  /// Leaf blockrefs by region (GiB number).
  var leaves: [UInt64: Blockref] = [:]
  /// Regions (GiB numbers) below a freemap node that could not be read.
  var unknown: [(first: UInt64, last: UInt64)] = []
  /// Damage met in the freemap tree.
  var findings: [Finding] = []

  /// The leaves for regions `first...last` of `volume`.
  init(volume: Volume, regions first: UInt64, _ last: UInt64) {
    let h = volume.header
    let headerLoc = Location(
      image: volume.label, offset: UInt64(volume.headerSlot) * H2.zoneBytes64 + 0x800,
      structure: "volume header #\(volume.headerSlot) freemap_blockset")
    // (blockref, parent level 2..6, parent key); at most 5 levels below the header.
    var stack: [(Blockref, Int, UInt64)] = h.freemapBlockset.filter { !$0.isEmpty }.map { ($0, 6, 0) }
    var nodesRead = 0
    while let (b, plevel, pkey) = stack.popLast() {
      let loc = b.mediaOffset == 0 ? headerLoc : volume.location(of: b, "freemap \(b.summary)")
      guard let level = FreemapTree.level(keybits: b.keybits), level < plevel,
        (b.type == .freemapLeaf) == (level == 1), b.type == .freemapLeaf || b.type == .freemapNode
      else {
        findings.append(
          Finding(
            .damage, at: loc,
            "freemap \(b.summary) (type \(b.typeRaw)) is no freemap block of a level below its level-\(plevel) parent; the regions it would cover are not checked"
          ))
        continue
      }
      let bits = UInt64(b.keybits)
      let pbits: UInt64 = plevel == 6 ? 64 : UInt64(FreemapTree.radix(level: plevel))
      guard b.key & ((1 << bits) - 1) == 0, pbits >= 64 || b.key >> pbits == pkey >> pbits else {
        findings.append(
          Finding(
            .damage, at: loc, "freemap \(b.summary): key not aligned to its keybits or outside its parent's range at key 0x\(hex(pkey))"))
        continue
      }
      // Regions this block covers (keybits >= 30, so the shift is exact).
      let lo = b.key >> 30
      let (hiKey, overflow) = b.key.addingReportingOverflow((1 << bits) - 1)
      let hi = overflow ? UInt64.max >> 30 : hiKey >> 30
      guard hi >= first, lo <= last else { continue }
      if level == 1 {
        if leaves[lo] != nil {
          findings.append(Finding(.damage, at: loc, "freemap: a second FREEMAP_LEAF for GiB \(lo); the first one found is used"))
        } else {
          leaves[lo] = b
        }
        continue
      }
      nodesRead += 1
      guard nodesRead <= 1 << 20 else {
        findings.append(Finding(.damage, at: loc, "freemap: more than 2^20 nodes (a loop?); the rest is not read"))
        break
      }
      do throws(FormatError) {
        let children = try volume.blockrefArray(b)
        for c in children { stack.append((c, level, b.key)) }
      } catch {
        findings.append(Finding(error: error, fallback: loc))
        unknown.append((max(lo, first), min(hi, last)))
      }
    }
  }

  /// True when region `r` lies below an unreadable freemap node.
  func isUnknown(_ r: UInt64) -> Bool { unknown.contains { r >= $0.first && r <= $0.last } }
}
