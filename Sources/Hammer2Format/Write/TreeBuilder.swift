/// Subtree statistics carried in INODE and INDIRECT blockrefs (`embed.stats`,
/// `leaf_count`), accumulated the way `hammer2_base_insert` does.
struct TreeStats {
  var dataCount: UInt64 = 0
  var inodeCount: UInt64 = 0
  var leafCount: UInt64 = 0
  var maxModifyTid: UInt64 = 0

  /// Adds child `c`'s contribution (docs/format.md §3.6).
  mutating func add(_ c: Blockref) {
    if c.radix != 0 { dataCount &+= UInt64(1) << UInt64(min(c.radix, 63)) }
    switch c.type {
    case .inode:
      inodeCount &+= 1 &+ c.inodeCount
      leafCount &+= 1
      dataCount &+= c.dataCount
    case .indirect:
      dataCount &+= c.dataCount
      inodeCount &+= c.inodeCount
      leafCount &+= UInt64(c.leafCount)
    case .data, .dirent:
      leafCount &+= 1
    default: break
    }
    maxModifyTid = max(maxModifyTid, c.modifyTid)
  }

  /// Stores the stats in a container's blockref.
  func apply(to b: inout Blockref) {
    b.embed0 = dataCount
    b.embed1 = inodeCount
    b.leafCount = UInt16(min(leafCount, 65535))
  }
}

extension Transaction {
  /// Builds a valid block table over `leaves` (sorted by key, non-overlapping, each
  /// aligned to its keybits) that fits `capacity` entries: leaves directly when they fit,
  /// otherwise aligned INDIRECT blocks written copy-on-write. Every invariant of
  /// docs/format.md §6.2 holds by construction: each indirect block covers the
  /// distinct key prefix of its children at the smallest keybits that fits, so ranges
  /// are aligned, nested and never overlap.
  func buildTable(_ leaves: ArraySlice<Blockref>, capacity: Int, checkMethod: CheckMethod) throws(FormatError) -> [Blockref] {
    if leaves.count <= capacity {
      return Array(leaves) + [Blockref](repeating: Blockref(), count: capacity - leaves.count)
    }
    let minKb = Int(leaves.map(\.keybits).max() ?? 0)
    func groups(_ kb: Int) -> Int {
      var n = 0
      var last: UInt64? = nil
      for l in leaves {
        let p = kb >= 64 ? 0 : l.key >> UInt64(kb)
        if p != last {
          n += 1
          last = p
        }
      }
      return n
    }
    var lo = minKb
    var hi = 63
    while lo < hi {
      let mid = (lo + hi) / 2
      if groups(mid) <= capacity { hi = mid } else { lo = mid + 1 }
    }
    let kb = lo
    var out: [Blockref] = []
    var i = leaves.startIndex
    while i < leaves.endIndex {
      let prefix = leaves[i].key >> UInt64(kb)
      var j = i + 1
      while j < leaves.endIndex, leaves[j].key >> UInt64(kb) == prefix { j += 1 }
      if j - i == 1 {
        out.append(leaves[i])
      } else {
        out.append(try writeIndirect(leaves[i..<j], key: prefix << UInt64(kb), keybits: UInt8(kb), checkMethod: checkMethod))
      }
      i = j
    }
    return out + [Blockref](repeating: Blockref(), count: capacity - out.count)
  }

  /// Applies `changes` (sorted by key; nil removes the key) to a table whose live
  /// entries are `entries` (sorted by key), copying on write only the INDIRECT blocks on
  /// the changed keys' paths: untouched subtrees are kept as they are, whatever their
  /// size. Returns the new live entries, sorted, possibly more than the table holds
  /// (`buildTable` then nests them). `depth` bounds a damaged tree's recursion.
  func updateTable(
    _ entries: [Blockref], changes: ArraySlice<(key: UInt64, bref: Blockref?)>, checkMethod: CheckMethod,
    depth: Int = 0
  ) throws(FormatError) -> [Blockref] {
    var out: [Blockref] = []
    out.reserveCapacity(entries.count + changes.count)
    var ci = changes.startIndex
    var prevEnd: UInt64? = nil
    for e in entries {
      guard prevEnd.map({ e.key > $0 }) ?? true, e.keybits <= 64 else {
        throw FormatError(
          .badTree(.overlappingEntries(key: e.key)), at: volume.location(of: e))
      }
      prevEnd = e.keyEnd
      // New keys in the gap before this entry stay at this level.
      while ci < changes.endIndex, changes[ci].key < e.key {
        if let b = changes[ci].bref { out.append(b) }
        ci += 1
      }
      if e.type == .indirect {
        var cj = ci
        while cj < changes.endIndex, changes[cj].key <= e.keyEnd { cj += 1 }
        if cj == ci {
          out.append(e)
          continue
        }
        guard depth < 40 else { throw FormatError(.badTree(.nestedDeeper(limit: 40)), at: volume.location(of: e)) }
        let children = try volume.blockrefArray(e)
        if let bad = children.first(where: { $0.key < e.key || $0.keyEnd > e.keyEnd || $0.keybits >= e.keybits }) {
          throw FormatError(
            .badTree(.outsideIndirectRange(key: bad.key)), at: volume.location(of: e))
        }
        let merged = try updateTable(children, changes: changes[ci..<cj], checkMethod: checkMethod, depth: depth + 1)
        if !merged.isEmpty {
          out.append(try writeIndirect(merged[...], key: e.key, keybits: e.keybits, checkMethod: checkMethod))
        }
        ci = cj
      } else if ci < changes.endIndex, changes[ci].key == e.key {
        if let b = changes[ci].bref { out.append(b) }
        ci += 1
      } else {
        out.append(e)
      }
    }
    while ci < changes.endIndex {
      if let b = changes[ci].bref { out.append(b) }
      ci += 1
    }
    return out
  }

  /// Writes one INDIRECT block holding `children` (recursing when they do not fit).
  private func writeIndirect(_ children: ArraySlice<Blockref>, key: UInt64, keybits: UInt8, checkMethod: CheckMethod) throws(FormatError)
    -> Blockref
  {
    // 4 KiB like the kernel's directory blocks when that fits, else 16 or 64 KiB.
    let entries = children.count <= 32 ? 32 : children.count <= 128 ? 128 : 512
    let table = try buildTable(children, capacity: entries, checkMethod: checkMethod)
    var stats = TreeStats()
    for c in table where !c.isEmpty { stats.add(c) }
    let bytes = encodeBlockrefs(table)
    var b = Blockref()
    b.typeRaw = BlockrefType.indirect.rawValue
    b.methods = checkMethod.rawValue << 4
    b.key = key
    b.keybits = keybits
    b.mirrorTid = mirrorTid
    b.modifyTid = stats.maxModifyTid
    stats.apply(to: &b)
    try placeBlock(&b, bytes: bytes, type: .indirect)
    return b
  }

  /// Allocates space for `bytes` (a power of two, 1..64 KiB), writes it, and sets the
  /// blockref's `data_off` and check code (by its `methods`).
  func placeBlock(_ b: inout Blockref, bytes: [UInt8], type: BlockrefType) throws(FormatError) {
    let radix = UInt64(bytes.count.trailingZeroBitCount)
    let off = try allocator.allocate(size: bytes.count, type: type, key: b.key)
    try image.write(at: off, bytes, structure: type.blockName)
    bytesWrittenByType[type.name, default: 0] += UInt64(bytes.count)
    b.dataOff = off | radix
    b.check = CheckCode.compute(b.checkMethod ?? .xxhash64, over: bytes)
    // An inline DIRENT name never reaches here: only blocks with media are placed.
  }

  /// `placeBlock` for `size` bytes whose check code is already known, put straight
  /// into the write path's buffer by `fill` (a verified copy of another node's block
  /// under the same methods): nothing is hashed again. `fill` runs later, on the write
  /// path's own thread (`WritableImage.write(at:count:structure:fill:)`).
  func placeBlock(
    _ b: inout Blockref, size: Int, type: BlockrefType, check: CheckArea,
    fill: @escaping (UnsafeMutableRawBufferPointer) -> FormatError?
  ) throws(FormatError) {
    let radix = UInt64(size.trailingZeroBitCount)
    let off = try allocator.allocate(size: size, type: type, key: b.key)
    try image.write(at: off, count: size, structure: type.blockName, fill: fill)
    bytesWrittenByType[type.name, default: 0] += UInt64(size)
    b.dataOff = off | radix
    b.check = check
  }
}

/// Non-DATA blocks always carry a real check code: NONE and DISABLED become XXHASH64
/// (`hammer2_chain_create`).
func forcedMetadataCheck(_ raw: UInt8) -> CheckMethod {
  let m = CheckMethod(rawValue: raw & 0x0F) ?? .xxhash64
  return m == .none || m == .disabled ? .xxhash64 : m
}
