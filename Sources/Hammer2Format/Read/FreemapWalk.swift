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
}
