/// The freemap radix tree being edited (docs/format.md §9.1, §9.2, §9.8): the volume
/// header's 4-slot blockset at the top, FREEMAP_NODEs of levels 2..5 (256 slots each)
/// below it, FREEMAP_LEAFs of 1 GiB at the bottom, each placed where its key and level
/// say. Nodes are read from disk only when a lookup passes through them, leaves only when
/// the allocator scans them; a clean leaf is dropped again, so memory is bounded by what a
/// commit touches and by the (few) nodes on those paths, not by the volume size.
final class FreemapNode {
  /// 2..5 for a FREEMAP_NODE, 6 for the volume header's blockset.
  let level: Int
  let key: UInt64
  /// The blockref it was read through (nil for the volume header and for a node created
  /// by this transaction).
  let bref: Blockref?
  /// Live children, sorted by key, at most `capacity`.
  var children: [Blockref]
  /// Child nodes read so far, by key.
  var loaded: [UInt64: FreemapNode] = [:]
  /// Changed in this transaction (a child inserted, moved out, or rewritten below it).
  var dirty = false

  init(level: Int, key: UInt64, bref: Blockref?, children: [Blockref]) {
    self.level = level
    self.key = key
    self.bref = bref
    self.children = children.sorted { $0.key < $1.key }
  }

  /// `HAMMER2_SET_COUNT` for the volume header, 256 blockrefs in a 32 KiB node.
  var capacity: Int { level == 6 ? H2.setCount : H2.freemapLevelNPsize / H2.blockrefBytes }
  /// The node's key range radix (64 for the volume header).
  var keybits: UInt8 { level == 6 ? 64 : FreemapTree.radix(level: level) }

  /// True when `k` lies inside this node's range.
  func covers(_ k: UInt64) -> Bool { keybits >= 64 || k >> UInt64(keybits) == key >> UInt64(keybits) }
}

/// Placement and shape of freemap blocks, shared by the allocator and the audit.
enum FreemapTree {
  /// Level `l` (1 = leaf .. 5) radix: 30, 38, 46, 54, 62 (`HAMMER2_FREEMAP_LEVELn_RADIX`).
  static func radix(level l: Int) -> UInt8 { H2.freemapLevelRadix[l] }

  /// The level (1..5) of a freemap blockref's keybits, nil when it is none of them.
  static func level(keybits: UInt8) -> Int? {
    (1...5).first { H2.freemapLevelRadix[$0] == keybits }
  }

  /// The media offset of the level-`level` freemap block for `key` in rotation set
  /// `set` (`hammer2_freemap_reserve`): inside the reserved 4 MiB segment at the base of
  /// the range, block `1 + 5*set + (level-1)`.
  static func placement(key: UInt64, level: Int, set: UInt64) -> UInt64 {
    let bits = UInt64(radix(level: level))
    let base = bits >= 64 ? 0 : key & ~((1 << bits) - 1)
    return base + (1 + 5 * set + UInt64(level - 1)) * UInt64(H2.pbufSize)
  }

  /// The rotation set (0..7) a freemap block's `data_off` sits in, nil when the offset
  /// is not one of the 40 freemap blocks of a reserved segment.
  static func set(of dataOff: UInt64) -> UInt64? {
    let block = ((dataOff & ~H2.offMaskRadix) & (H2.zoneSeg - 1)) / UInt64(H2.pbufSize)
    guard block >= 1, block <= 40 else { return nil }
    return (block - 1) / 5
  }

  /// The set a block goes to when it is written in a new flush: 0 for a new block, else
  /// the next one after its current set.
  static func nextSet(after bref: Blockref?) -> UInt64 {
    guard let b = bref, b.dataOff & ~H2.offMaskRadix != 0, let s = set(of: b.dataOff) else { return 0 }
    return (s + 1) % 8
  }

  /// The check area of a freemap block: CRC32C of its 32 KiB in `icrc32`, then the
  /// `bigmask` and `avail` hints (0 on nodes: nothing aggregates them there).
  static func checkArea(block: [UInt8], bigmask: UInt32, avail: UInt64) -> CheckArea {
    var c = CheckArea()
    c.setU32(0, CRC32C.checksum(block))
    c.setU32(4, bigmask)
    c.setU64(1, avail)
    return c
  }
}

extension FreemapAllocator {
  /// The root of the tree: the volume header's blockset.
  func makeRoot(_ blockset: [Blockref]) throws(FormatError) -> FreemapNode {
    let live = blockset.filter { !$0.isEmpty }
    // `freemap_blockset` lies at 0x800 in the header copy this volume was opened from.
    let at = Location(
      image: volume.label, offset: UInt64(volume.headerSlot) * H2.zoneBytes64 + 0x800, structure: "volume header freemap blockset")
    try validateChildren(live, of: 6, key: 0, at: at)
    return FreemapNode(level: 6, key: 0, bref: nil, children: live)
  }

  /// Reads the node behind `b` (a child of `parent`), once.
  func child(_ b: Blockref, of parent: FreemapNode) throws(FormatError) -> FreemapNode {
    if let n = parent.loaded[b.key] { return n }
    // Safe: validateChildren accepted only node keybits for FREEMAP_NODE children.
    let lvl = FreemapTree.level(keybits: b.keybits) ?? 2
    let refs = try volume.blockrefArray(b)
    try validateChildren(refs, of: lvl, key: b.key, at: volume.location(of: b))
    let n = FreemapNode(level: lvl, key: b.key, bref: b, children: refs)
    parent.loaded[b.key] = n
    nodesRead += 1
    return n
  }

  /// Children of a node must be freemap blocks of a lower level, keys aligned to their
  /// own keybits, inside the parent's range and disjoint; anything else is a damaged
  /// freemap, never something to write into.
  func validateChildren(_ refs: [Blockref], of level: Int, key: UInt64, at loc: Location) throws(FormatError) {
    let parentBits: UInt8 = level == 6 ? 64 : FreemapTree.radix(level: level)
    var prevEnd: UInt64? = nil
    for c in refs.sorted(by: { $0.key < $1.key }) {
      guard c.type == .freemapLeaf || c.type == .freemapNode, let cl = FreemapTree.level(keybits: c.keybits),
        (c.type == .freemapLeaf) == (cl == 1), cl < level, c.keybits < parentBits,
        c.key & ((1 << UInt64(c.keybits)) - 1) == 0,
        parentBits >= 64 || c.key >> UInt64(parentBits) == key >> UInt64(parentBits),
        prevEnd.map({ c.key > $0 }) ?? true
      else {
        throw FormatError(.badTree(.freemapChildMisplaced(child: c.summary, level: level, parentKey: key)), at: loc)
      }
      prevEnd = c.key + ((1 << UInt64(c.keybits)) - 1)
    }
  }

  /// The path to the leaf for 1 GiB region `region`: the deepest node covering it (the
  /// last element) and the leaf's blockref when one exists.
  func lookup(region: UInt64) throws(FormatError) -> (path: [FreemapNode], leaf: Blockref?) {
    let k = region << 30
    var path = [root]
    while true {
      // Safe: path starts non-empty and only grows.
      let n = path.last!
      guard let c = n.children.first(where: { $0.key <= k && k - $0.key < (1 << UInt64($0.keybits)) }) else {
        return (path, nil)
      }
      if c.type == .freemapLeaf { return (path, c) }
      path.append(try child(c, of: n))
    }
  }

  /// Inserts a new leaf for `region` into the deepest covering parent, first making room
  /// by DragonFly's split rule when that parent is full (`hammer2_chain_create` →
  /// `hammer2_chain_create_indirect` / `hammer2_chain_indkey_freemap`): a node of the
  /// next fixed level above the child with the smallest keybits (lowest key on ties),
  /// keyed by that child's key rounded down to the new level, takes every child in its
  /// range. Marks the path dirty.
  func insertLeaf(region: UInt64, path: [FreemapNode]) throws(FormatError) {
    var leaf = Blockref()
    leaf.typeRaw = BlockrefType.freemapLeaf.rawValue
    leaf.methods = CheckMethod.freemap.rawValue << 4
    leaf.keybits = 30
    leaf.key = region << 30
    var parents = path
    // Safe: lookup returns at least the root.
    var parent = parents.last!
    while parent.children.count >= parent.capacity {
      // Safe: a full parent has children.
      let smallest = parent.children.min { $0.keybits != $1.keybits ? $0.keybits < $1.keybits : $0.key < $1.key }!
      guard let l = FreemapTree.level(keybits: smallest.keybits), l + 1 < parent.level else {
        throw FormatError(
          .badTree(.freemapParentFull(key: parent.key)),
          at: Location(image: volume.label, offset: parent.bref?.mediaOffset, structure: "freemap"))
      }
      let bits = UInt64(FreemapTree.radix(level: l + 1))
      let nkey = smallest.key & ~((1 << bits) - 1)
      let moved = parent.children.filter { $0.key >> bits == nkey >> bits }
      let node = FreemapNode(level: l + 1, key: nkey, bref: nil, children: moved)
      node.dirty = true
      for m in moved {
        if let c = parent.loaded.removeValue(forKey: m.key) { node.loaded[m.key] = c }
      }
      var nb = Blockref()
      nb.typeRaw = BlockrefType.freemapNode.rawValue
      nb.methods = CheckMethod.freemap.rawValue << 4
      nb.keybits = UInt8(bits)
      nb.key = nkey
      parent.children.removeAll { $0.key >> bits == nkey >> bits }
      parent.children.append(nb)
      parent.children.sort { $0.key < $1.key }
      parent.loaded[nkey] = node
      parent.dirty = true
      nodesCreated += 1
      if node.covers(leaf.key) {
        parents.append(node)
        parent = node
      }
    }
    parent.children.append(leaf)
    parent.children.sort { $0.key < $1.key }
    for n in parents { n.dirty = true }
  }

  /// Marks every node on the path to `region`'s leaf as changed (the leaf was modified:
  /// each of them is copied once at commit).
  func markPathDirty(region: UInt64) throws(FormatError) {
    for n in try lookup(region: region).path { n.dirty = true }
  }

  /// Writes every modified leaf and node into its next rotation set, children before
  /// parents, and returns the new volume header blockset.
  func commit(mirrorTid: UInt64, writer: (UInt64, [UInt8], String) throws(FormatError) -> Void) throws(FormatError) -> [Blockref] {
    try write(root, mirrorTid: mirrorTid, writer: writer)
    return root.children + [Blockref](repeating: Blockref(), count: H2.setCount - root.children.count)
  }

  private func write(_ node: FreemapNode, mirrorTid: UInt64, writer: (UInt64, [UInt8], String) throws(FormatError) -> Void)
    throws(FormatError)
  {
    guard node.dirty else { return }
    for i in node.children.indices {
      let c = node.children[i]
      if c.type == .freemapLeaf {
        guard let st = leaves[c.key >> 30], st.dirty else { continue }
        let set = FreemapTree.nextSet(after: c)
        let off = FreemapTree.placement(key: c.key, level: 1, set: set)
        let block = st.leaf.encode()
        try writer(off, block, "freemap leaf set \(set) for GiB \(c.key >> 30)")
        var b = c
        b.dataOff = off | 15
        b.mirrorTid = mirrorTid
        b.modifyTid = mirrorTid
        b.check = FreemapTree.checkArea(block: block, bigmask: st.bigmask, avail: st.hintAvail)
        node.children[i] = b
        leaves[c.key >> 30]?.bref = b
        leaves[c.key >> 30]?.dirty = false
      } else if let n = node.loaded[c.key], n.dirty {
        try write(n, mirrorTid: mirrorTid, writer: writer)
        let set = FreemapTree.nextSet(after: c)
        let off = FreemapTree.placement(key: n.key, level: n.level, set: set)
        var block = encodeBlockrefs(n.children)
        block += [UInt8](repeating: 0, count: H2.freemapLevelNPsize - block.count)
        try writer(off, block, "freemap level-\(n.level) node set \(set) for key 0x\(hex(n.key))")
        var b = c
        b.dataOff = off | 15
        b.mirrorTid = mirrorTid
        b.modifyTid = mirrorTid
        b.check = FreemapTree.checkArea(block: block, bigmask: 0, avail: 0)
        node.children[i] = b
      }
    }
    node.dirty = false
  }
}
