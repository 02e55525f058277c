import Foundation

/// The tree walk of a freemap pass: every blockref reachable from the volume header's
/// `sroot_blockset` (the super-root, its PFS roots and snapshots, each PFS's inode index,
/// every inode's block table with its indirect blocks, DATA and DIRENT blocks), as
/// bulkfree's `hammer2_bulkfree_scan` visits them from the volume chain. Only blocks that
/// hold blockrefs are read (inodes, indirect blocks); DATA and name blocks are counted,
/// not read (bulkfree looks them up NODATA too).
///
/// Bounded as `TopologyWalker` is: an explicit stack (at most 64 levels, each one block's
/// blockrefs), inodes entered only where they live (volume blockset, super-root, PFS
/// inode index), and inside one inode's tree each indirect or inode block entered once.
extension FreemapPass {
  private enum Level { case volume, superRootTree, pfsRootTree, inodeTree }

  private struct Frame {
    var entries: [Blockref]
    var index = 0
    var depth: Int
    var level: Level
    var opensScope: Bool
    var owner: WalkOwner
    /// The frame's inodes read ahead, by entry index (PFS inode index frames only).
    var inodes: [Int: Result<InodeData, FormatError>] = [:]
  }

  /// Reads the inodes among `entries` (a PFS inode index's blockrefs) with as few reads
  /// as their layout allows (`verifyMediaRuns`: inodes written together lie back to back),
  /// instead of one pread per 1 KiB inode. Only what `Volume.inode` would read: INODE
  /// blockrefs of the inode radix; anything else is read, and fails, on its own.
  private func readInodes(_ entries: [Blockref]) -> [Int: Result<InodeData, FormatError>] {
    let picked = entries.indices.filter { entries[$0].type == .inode && entries[$0].radix == H2.radixMin }
    guard picked.count > 1 else { return [:] }
    var out: [Int: Result<InodeData, FormatError>] = [:]
    out.reserveCapacity(picked.count)
    volume.verifyMediaRuns(picked.map { entries[$0] }) { k, r in
      out[picked[k]] = r.map { InodeData([UInt8]($0)) }
    }
    return out
  }

  mutating func walk() {
    var scopes: [Set<UInt64>] = [[]]
    let volumeOwner = WalkOwner(pfs: nil, inum: 0, name: "the volume header", iparent: 0)
    var stack = [Frame(entries: volume.header.srootBlockset, depth: 0, level: .volume, opensScope: false, owner: volumeOwner)]
    run(&stack, &scopes)
  }

  /// The walk's loop, from `stack` until it is empty.
  private mutating func run(_ stack: inout [Frame], _ scopes: inout [Set<UInt64>]) {
    while !stack.isEmpty {
      let f = stack.count - 1
      guard stack[f].index < stack[f].entries.count else {
        if stack.removeLast().opensScope { scopes.removeLast() }
        continue
      }
      let bref = stack[f].entries[stack[f].index]
      stack[f].index += 1
      if bref.isEmpty { continue }
      blockrefsVisited += 1
      let depth = stack[f].depth
      let level = stack[f].level
      let owner = stack[f].owner
      // Referenced whether or not it can be read (bulkfree marks it before recursing);
      // an inode's own block is named after the inode once it is read.
      var blockOwner = owner
      defer { reference(bref, owner: blockOwner) }
      // Only on the error paths: a location names the block (a formatted summary).
      func loc() -> Location { volume.location(of: bref) }
      do throws(FormatError) {
        switch bref.type {
        case .indirect:
          guard depth < 64 else { throw FormatError(.tooDeep(limit: 64), at: loc()) }
          guard scopes[scopes.count - 1].insert(bref.dataOff).inserted else {
            throw FormatError(.loop(.block, offset: bref.mediaOffset), at: loc())
          }
          let children = try volume.checkedBlockrefArray(bref, cache: level != .inodeTree).refs
          var frame = Frame(entries: children, depth: depth + 1, level: level, opensScope: false, owner: owner)
          if level == .pfsRootTree { frame.inodes = readInodes(children) }
          stack.append(frame)
        case .inode:
          guard level != .inodeTree else { break } // no inodes below a file or directory
          guard depth < 64 else { throw FormatError(.tooDeep(limit: 64), at: loc()) }
          let ino: InodeData
          if let ahead = stack[f].inodes.removeValue(forKey: stack[f].index - 1) {
            ino = try ahead.get()
          } else {
            ino = try volume.inode(bref, cached: level != .pfsRootTree)
          }
          let next: Level?
          var child = owner
          switch level {
          case .volume:
            next = .superRootTree
            child = WalkOwner(pfs: nil, inum: 0, name: "the super-root", iparent: 0)
          case .superRootTree:
            next = .pfsRootTree
            child = WalkOwner(pfs: ino.filenameString, inum: 1, name: "", iparent: 0)
          default:
            next = bref.key < H2.dirhashVisible ? .inodeTree : nil
            child = WalkOwner(pfs: owner.pfs, inum: ino.meta.inum, name: ino.filenameString, iparent: ino.meta.iparent)
          }
          blockOwner = child
          if let next, !ino.meta.isDirectData {
            guard scopes[scopes.count - 1].insert(bref.dataOff).inserted else {
              throw FormatError(.loop(.inode, offset: bref.mediaOffset), at: loc())
            }
            if next == .pfsRootTree, threads > 1, walkInParallel(ino.blockset, depth: depth + 1, owner: child) { break }
            scopes.append([])
            var frame = Frame(entries: ino.blockset, depth: depth + 1, level: next, opensScope: true, owner: child)
            if next == .pfsRootTree { frame.inodes = readInodes(ino.blockset) }
            stack.append(frame)
          }
        default:
          break // DATA, DIRENT and anything else: counted above, nothing below it
        }
      } catch {
        if firstPass { add(Finding(error: error, fallback: loc()), unallocated: false, inode: owner.inode) }
      }
    }
  }

  /// Walks one PFS's inode index on `threads` threads; false (nothing changed) when the
  /// index is not worth splitting or the parallel walk could differ from the serial one,
  /// which then walks it. The index's top levels are read here until there are enough
  /// indirect blocks below them; each thread walks a run of those subtrees, in key order,
  /// through its own `Volume` on the same image, marking a copy of the referenced bitmap.
  /// The serial walk's results do not depend on its order as long as nothing unusual
  /// happens, so the parallel result is used only when no thread met a finding or an
  /// unallocated chunk and no block was entered by two threads; a damaged index is
  /// walked serially, with the serial findings.
  private mutating func walkInParallel(_ top: [Blockref], depth: Int, owner: WalkOwner) -> Bool {
    // Expand level by level: every indirect block is replaced by its entries (in key
    // order: they lie in its key range), until there are enough to share. A PFS root's
    // table also holds the root directory's entries; those stay as they are.
    var level = top.filter { !$0.isEmpty }
    var expanded: [Blockref] = []
    var subtreeDepth = depth
    func indirectCount() -> Int { level.reduce(0) { $0 + ($1.type == .indirect ? 1 : 0) } }
    while indirectCount() < 8 * threads {
      guard indirectCount() > 0, subtreeDepth < 60 else { return false }
      var next: [Blockref] = []
      for b in level {
        guard b.type == .indirect else {
          next.append(b)
          continue
        }
        guard let (refs, clean) = try? volume.checkedBlockrefArray(b), clean else { return false }
        next += refs.filter { !$0.isEmpty }
        expanded.append(b)
      }
      level = next
      subtreeDepth += 1
    }
    // Entries of one level only: a tree whose levels are uneven stays serial.
    let scope = Set(expanded.map(\.dataOff))
    let subtrees = level.filter { $0.type == .indirect }
    let starts = Set(subtrees.map(\.dataOff))
    guard !level.contains(where: { $0.type == .inode }), scope.count == expanded.count, starts.count == subtrees.count,
      starts.isDisjoint(with: scope)
    else { return false }
    // Per thread: a run of entries in key order holding an even share of the indirect
    // blocks.
    let n = threads
    let share = (indirectCount() + n - 1) / n
    var slices: [[Blockref]] = [[]]
    var inSlice = 0
    for b in level {
      if b.type == .indirect {
        if inSlice == share, slices.count < n {
          slices.append([])
          inSlice = 0
        }
        inSlice += 1
      }
      slices[slices.count - 1].append(b)
    }
    while slices.count < n { slices.append([]) }
    var boxes: [PassBox] = []
    boxes.reserveCapacity(n)
    let base = self
    for i in 0..<n {
      var w = base
      if i > 0 {
        guard let v = try? Volume(io: volume.io, cacheBudget: volume.cacheBudget / 2, opener: volume.opener) else { return false }
        w.volume = v
      }
      w.threads = 1
      w.resetCounters()
      boxes.append(PassBox(pass: w, slice: slices[i]))
    }
    let results = PassResults(count: n)
    DispatchQueue.concurrentPerform(iterations: n) { [boxes, subtreeDepth] i in
      var w = boxes[i].pass
      var scopes = [scope]
      var stack = [Frame(entries: boxes[i].slice, depth: subtreeDepth, level: .pfsRootTree, opensScope: false, owner: owner)]
      w.run(&stack, &scopes)
      results.set(i, w, entered: scopes[0])
    }
    let done = (0..<n).map { results.get($0)! } // Safe: every iteration set its slot.
    let passes = done.map(\.pass)
    let usual = passes.allSatisfy {
      $0.items.isEmpty && $0.itemsOmitted == 0 && $0.runs.isEmpty && !$0.runsTruncated && $0.unallocatedBlocks == 0
        && $0.unallocatedChunks == [0, 0, 0]
    }
    guard usual else { return false }
    // An index or inode block entered by two threads is one the serial walk meets twice
    // (a loop finding there).
    var entered = done[0].entered
    for d in done.dropFirst() {
      guard d.entered.count == scope.count || entered.isDisjoint(with: d.entered.subtracting(scope)) else { return false }
      entered.formUnion(d.entered)
    }
    // Chunks are shared by small blocks of neighbouring subtrees: the bitmaps are joined
    // and the new chunks counted once, as the serial walk counts them.
    var merged = passes[0].referenced
    var newChunks = 0
    for p in passes.dropFirst() {
      for w in merged.indices { merged[w] |= p.referenced[w] }
    }
    for w in merged.indices { newChunks += (merged[w] & ~base.referenced[w]).nonzeroBitCount }
    referenced = merged
    referencedBytes += UInt64(newChunks) * H2.freemapBlockSize
    // The index blocks read to split the index, as the serial walk counts them.
    blockrefsVisited += UInt64(expanded.count)
    for b in expanded { reference(b, owner: owner) }
    for p in passes { blockrefsVisited += p.blockrefsVisited }
    splitIndexWalks += 1
    return true
  }
}

/// One parallel walker's starting state (handed to its thread, used there only).
private struct PassBox: @unchecked Sendable {
  var pass: FreemapPass
  var slice: [Blockref]
}

/// The parallel walkers' results, one slot each: the pass and the blocks it entered.
private final class PassResults: @unchecked Sendable {
  private var slots: [(pass: FreemapPass, entered: Set<UInt64>)?]
  private let lock = NSLock()
  init(count: Int) { slots = .init(repeating: nil, count: count) }
  func set(_ i: Int, _ p: FreemapPass, entered: Set<UInt64>) {
    lock.lock()
    slots[i] = (p, entered)
    lock.unlock()
  }
  func get(_ i: Int) -> (pass: FreemapPass, entered: Set<UInt64>)? {
    lock.lock()
    defer { lock.unlock() }
    return slots[i]
  }
}
