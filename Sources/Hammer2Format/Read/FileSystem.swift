/// One directory entry: a DIRENT blockref (`hammer2_dirent_head` in `embed`, the name
/// inline in `check` or in a 1 KiB block), or a legacy INODE entry.
public struct DirEntry: Sendable {
  /// The name bytes (1..255).
  public var name: [UInt8]
  /// The inode number it names.
  public var inum: UInt64
  /// The object type recorded in the entry.
  public var typeRaw: UInt8
  /// The entry's blockref.
  public var bref: Blockref
  /// The name as text (lossy for invalid UTF-8).
  public var nameString: String { String(decoding: name, as: UTF8.self) }
}

/// Reads the files of one PFS: inodes by number through the PFS root's inode index,
/// directory entries by name hash, and file data by logical offset.
public final class PFSReader {
  /// The image.
  public let volume: Volume
  /// The PFS.
  public let pfs: PFSInfo

  /// A reader for `pfs` on `volume`.
  public init(volume: Volume, pfs: PFSInfo) {
    self.volume = volume
    self.pfs = pfs
  }

  /// Picks a PFS by name; with no name, the only PFS other than LOCAL.
  public static func choose(_ list: [PFSInfo], name: String?, image: String) throws(FormatError) -> PFSInfo {
    let loc = Location(image: image, structure: "super-root")
    if let name {
      guard let p = list.first(where: { $0.name == name }) else {
        throw FormatError(.notFound(.pfs(name: name, have: list.map(\.name))), at: loc)
      }
      return p
    }
    let candidates = list.filter { $0.name != "LOCAL" }
    guard candidates.count == 1 else {
      throw FormatError(.ambiguousPFS(names: candidates.map(\.name)), at: loc)
    }
    return candidates[0]
  }

  /// A location naming an inode of this PFS.
  func location(_ bref: Blockref, inum: UInt64) -> Location {
    volume.location(of: bref, "inode \(inum) of PFS \(pfs.name)")
  }

  /// The inode numbered `inum` (1 is the PFS root). Looked up in the PFS root's inode
  /// index; the inode's own `inum` must match (the kernel treats a mismatch as damage).
  public func inode(_ inum: UInt64) throws(FormatError) -> InodeData {
    if inum == 1 { return pfs.inode }
    let (bref, ino) = try inodeWithBlockref(inum)
    _ = bref
    return ino
  }

  /// The inode numbered `inum` and its blockref in the inode index.
  public func inodeWithBlockref(_ inum: UInt64) throws(FormatError) -> (Blockref, InodeData) {
    if inum == 1 { return (pfs.bref, pfs.inode) }
    switch directDescent(inum) {
    case .found(let bref):
      let ino = try volume.inode(bref)
      if ino.meta.inum == inum { return (bref, ino) }
    case .absent:
      throw FormatError(.notFound(.inode(inum, pfs: pfs.name)), at: volume.location(of: pfs.bref, "PFS \(pfs.name) root inode"))
    case .irregular: break
    }
    return try inodeWithBlockrefScanning(inum)
  }

  /// The index entry of inode `inum` when a plain descent of the inode index finds it
  /// (nil: absent, or only the full lookup can tell), without reading the inode: what a
  /// read-ahead hint needs.
  public func inodeBlockref(_ inum: UInt64) -> Blockref? {
    if inum == 1 { return pfs.bref }
    if case .found(let bref) = directDescent(inum) { return bref }
    return nil
  }

  /// Whether the inode index has an entry at `inum`, decided from clean cached arrays
  /// alone (nothing read beyond the index, no error built); nil when only the full
  /// lookup can tell (an irregular or unreadable index on the way).
  public func isIndexed(_ inum: UInt64) -> Bool? {
    if inum == 1 { return true }
    switch directDescent(inum) {
    case .found: return true
    case .absent: return false
    case .irregular: return nil
    }
  }

  /// Inode `inum` through its index entry `bref`, already looked up (a scan met it);
  /// nil when that entry does not hold inode `inum` (then look it up). Not cached:
  /// such inodes are met once.
  public func inode(at bref: Blockref, inum: UInt64) throws(FormatError) -> (Blockref, InodeData)? {
    guard bref.type == .inode, bref.key == inum else { return nil }
    let ino = try volume.inode(bref, cached: false)
    return ino.meta.inum == inum ? (bref, ino) : nil
  }

  private enum Descent {
    case found(Blockref)
    /// Every array on the way was clean and none covers the key.
    case absent
    case irregular
  }

  /// The common case of an exact-key lookup without an iterator: a descent through
  /// clean, cached arrays by binary search. Anything irregular (an unreadable or
  /// malformed indirect block, a deep tree, no such key) returns nil and the scanning
  /// lookup decides, with its findings and errors.
  private func directDescent(_ inum: UInt64) -> Descent {
    guard inum < H2.dirhashVisible else { return .irregular }
    var (array, sorted) = indexTop()
    for _ in 0...H2.maxIndirectDepth {
      switch descentStep(array, sorted: sorted, inum) {
      case .done(let d): return d
      case .enter(let e):
        guard let children = cleanChildren(e) else { return .irregular }
        array = children
        sorted = true
      }
    }
    return .irregular
  }

  /// `inodeBlockref` for many inodes at once, one index level at a time: the index
  /// blocks a level needs are all hinted (`willNeed`) before the first is read, so
  /// that on a remote node their round trips overlap. nil where `inodeBlockref` is nil.
  public func inodeBlockrefs(_ inums: [UInt64]) -> [Blockref?] {
    var result = [Blockref?](repeating: nil, count: inums.count)
    let (top, topSorted) = indexTop()
    var level: [(array: [Blockref], sorted: Bool, keys: [Int])] = [
      (top, topSorted, inums.indices.filter { inums[$0] < H2.dirhashVisible })
    ]
    for _ in 0...H2.maxIndirectDepth where !level.isEmpty {
      var below: [(block: Blockref, keys: [Int])] = []
      var at: [UInt64: Int] = [:]
      for (array, sorted, keys) in level {
        for k in keys {
          if inums[k] == 1 {
            result[k] = pfs.bref
            continue
          }
          switch descentStep(array, sorted: sorted, inums[k]) {
          case .done(.found(let b)): result[k] = b
          case .done: break
          case .enter(let e):
            if let j = at[e.dataOff] {
              below[j].keys.append(k)
            } else {
              at[e.dataOff] = below.count
              below.append((e, [k]))
            }
          }
        }
      }
      for b in below { volume.willNeed(b.block) }
      level = below.compactMap { b in cleanChildren(b.block).map { ($0, true, b.keys) } }
    }
    return result
  }

  /// The PFS root's block table as the descent starts from it, and whether it can
  /// prove absence: the top array is tiny and may be unsorted or overlapping; only a
  /// sorted, disjoint one can.
  private func indexTop() -> ([Blockref], Bool) {
    let array = pfs.inode.blockset.filter { !$0.isEmpty }
    let sorted = zip(array, array.dropFirst()).allSatisfy { $0.keyEnd < $1.key } && array.allSatisfy { $0.keybits <= 64 }
    return (array, sorted)
  }

  private enum DescentStep {
    case done(Descent)
    /// The indirect block covering the key, to descend into.
    case enter(Blockref)
  }

  /// One level of `directDescent`: the entry of `array` covering `inum`, by binary
  /// search when the array is sorted.
  private func descentStep(_ array: [Blockref], sorted: Bool, _ inum: UInt64) -> DescentStep {
    var lo = 0
    var hi = array.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if array[mid].keyEnd < inum { lo = mid + 1 } else { hi = mid }
    }
    var found: Blockref?
    if sorted {
      if lo < array.count, array[lo].key <= inum { found = array[lo] }
    } else {
      found = array.first { $0.keybits <= 64 && $0.key <= inum && inum <= $0.keyEnd }
    }
    guard let e = found else { return .done(sorted ? .absent : .irregular) }
    switch e.type {
    case .indirect:
      guard e.keybits < 64, e.key & ((UInt64(1) << UInt64(e.keybits)) &- 1) == 0 else { return .done(.irregular) }
      return .enter(e)
    case .inode:
      return .done(e.key == inum ? .found(e) : .irregular)
    default:
      return .done(.irregular)
    }
  }

  /// An indirect block's entries when it reads clean, else nil (the scanning lookup
  /// then decides).
  private func cleanChildren(_ e: Blockref) -> [Blockref]? {
    guard let (children, clean) = try? volume.checkedBlockrefArray(e), clean else { return nil }
    return children
  }

  private func inodeWithBlockrefScanning(_ inum: UInt64) throws(FormatError) -> (Blockref, InodeData) {
    let rootLoc = volume.location(of: pfs.bref, "PFS \(pfs.name) root inode")
    guard inum < H2.dirhashVisible else {
      throw FormatError(.badTree(.inumInDirhashSpace(inum)), at: rootLoc)
    }
    var it = KeyRangeIterator(volume: volume, array: pfs.inode.blockset, location: rootLoc)
    guard let el = it.lookup(inum, inum) else {
      throw FormatError(.notFound(.inode(inum, pfs: pfs.name)), at: rootLoc)
    }
    switch el {
    case .hole(_, _, let err): throw err
    case .leaf(let bref):
      guard bref.type == .inode, bref.key == inum else {
        throw FormatError(.notFound(.inode(inum, pfs: pfs.name)), at: rootLoc)
      }
      let ino = try volume.inode(bref)
      guard ino.meta.inum == inum else {
        throw FormatError(.badTree(.inodeIndexMismatch(key: inum, found: ino.meta.inum)), at: location(bref, inum: inum))
      }
      return (bref, ino)
    }
  }

  /// Calls `body` for each entry of directory `dir` in key order until it returns false.
  /// Unreadable parts of the directory become findings.
  public func forEachEntry(of dir: InodeData, path: String, findings: inout [Finding], _ body: (DirEntry) -> Bool) {
    var it = entryIterator(of: dir)
    while let r = it.next(reader: self) {
      switch r {
      case .success(let e): if !body(e) { return }
      case .failure(let f): findings.append(Finding(error: f, fallback: volume.location(of: pfs.bref), path: path))
      }
    }
    findings.append(
      contentsOf: it.base.findings.map {
        var f = $0
        f.path = path
        return f
      })
  }

  /// A resumable iterator over a directory's entries (for streaming walks).
  public func entryIterator(of dir: InodeData) -> DirEntryIterator {
    var base = KeyRangeIterator(volume: volume, array: dir.meta.isDirectData ? [] : dir.blockset) {
      [label = volume.label, inum = dir.meta.inum] in
      Location(image: label, structure: "directory inode \(inum)")
    }
    let first = base.lookup(H2.dirhashVisible, .max)
    return DirEntryIterator(base: base, pending: first)
  }

  /// Decodes one directory-tree leaf into an entry.
  public func entry(from bref: Blockref) throws(FormatError) -> DirEntry? {
    switch bref.type {
    case .dirent:
      let n = bref.direntNameLength
      guard n >= 1, n <= 255 else {
        throw FormatError(.badTree(.nameLength(n)), at: volume.location(of: bref))
      }
      let name: [UInt8]
      if n <= 64 {
        name = bref.check.prefix(n)
      } else {
        guard bref.radix != 0 else {
          throw FormatError(.badTree(.nameBlockMissing(nameLength: n)), at: volume.location(of: bref))
        }
        let block = try volume.readMedia(bref)
        guard block.count >= n else {
          throw FormatError(.sizeMismatch(.nameBlock(nameLength: n, blockSize: block.count)), at: volume.location(of: bref))
        }
        name = Array(block[0..<n])
      }
      return DirEntry(name: name, inum: bref.direntInum, typeRaw: bref.direntTypeRaw, bref: bref)
    case .inode:
      // Legacy layout: the entry is the inode itself.
      let ino = try volume.inode(bref)
      return DirEntry(name: ino.filename, inum: ino.meta.inum, typeRaw: ino.meta.typeRaw, bref: bref)
    default:
      throw FormatError(.badTree(.notInDirectory(bref.summary)), at: volume.location(of: bref))
    }
  }

  /// Finds `name` in directory `dir`: scans the hash range `[h, h | 0x7FFF]` and compares
  /// names (`hammer2_xop_nresolve`).
  public func lookup(_ name: [UInt8], in dir: InodeData) throws(FormatError) -> DirEntry? {
    guard !dir.meta.isDirectData else { return nil }
    let h = DirHash.hash(name)
    var it = KeyRangeIterator(volume: volume, array: dir.blockset) { [label = volume.label, inum = dir.meta.inum] in
      Location(image: label, structure: "directory inode \(inum)")
    }
    var el = it.lookup(h, h | H2.dirhashLomask)
    while let e = el {
      switch e {
      case .hole(_, _, let err): throw err
      case .leaf(let bref):
        if let d = try entry(from: bref), d.name == name { return d }
      }
      el = it.next()
    }
    return nil
  }

  /// Resolves a path relative to the PFS root ("", "/" and "." are the root).
  public func resolve(_ path: String) throws(FormatError) -> (inum: UInt64, inode: InodeData) {
    var inum: UInt64 = 1
    var ino = pfs.inode
    let parts = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
    for (i, part) in parts.enumerated() {
      guard ino.meta.type == .directory else {
        throw FormatError(.editRefused(.pathNotADirectory(parts[0..<i].joined(separator: "/"))))
      }
      guard let e = try lookup(Array(part.utf8), in: ino) else {
        throw FormatError(
          .notFound(.path(parts[0...i].joined(separator: "/"), pfs: pfs.name)),
          at: Location(image: volume.label, structure: "PFS \(pfs.name)"))
      }
      inum = e.inum
      ino = try inode(e.inum)
    }
    return (inum, ino)
  }

  /// Calls `body(offset, bytes)` for each stored piece of the file's data in order:
  /// the direct data of a DIRECTDATA inode, or each DATA block decompressed to its logical
  /// size. Holes are not reported (they read as zeros); damage becomes findings and the
  /// affected range is skipped (it reads as zeros too).
  public func forEachDataBlock(of ino: InodeData, path: String, findings: inout [Finding], _ body: (UInt64, [UInt8]) -> Void) {
    if ino.meta.isDirectData {
      if ino.meta.size > 512 {
        findings.append(
          Finding(
            .damage, at: Location(image: volume.label, structure: "inode \(ino.meta.inum)"),
            "DIRECTDATA inode claims \(ino.meta.size) bytes (at most 512 fit)", path: path))
      }
      body(0, ino.directData)
      return
    }
    guard ino.meta.size > 0 else { return }
    var it = KeyRangeIterator(volume: volume, array: ino.blockset) { [label = volume.label, inum = ino.meta.inum] in
      Location(image: label, structure: "inode \(inum)")
    }
    var el = it.lookup(0, ino.meta.size - 1)
    while let e = el {
      switch e {
      case .hole(_, _, let err):
        findings.append(Finding(error: err, fallback: volume.location(of: pfs.bref), path: path))
      case .leaf(let bref):
        if bref.type != .data || bref.keybits < H2.radixMin || bref.keybits > H2.radixMax || bref.key & 0xFFFF != 0 {
          findings.append(Finding(.damage, at: volume.location(of: bref), "\(bref.summary) is not a valid file data block", path: path))
        } else if bref.radix != 0 {
          do {
            body(bref.key, try volume.logicalData(bref, logicalSize: 1 << Int(bref.keybits)))
          } catch {
            findings.append(Finding(error: error, fallback: volume.location(of: bref), path: path))
          }
        }
      // radix 0: a DATA bref without media is a zero block.
      }
      el = it.next()
    }
    findings.append(
      contentsOf: it.findings.map {
        var f = $0
        f.path = path
        return f
      })
  }

  /// The whole content of a small object (symlink targets). Bounded by `limit`.
  public func readAll(_ ino: InodeData, path: String, limit: Int = 1 << 20, findings: inout [Finding]) -> [UInt8] {
    let size = Int(min(ino.meta.size, UInt64(limit)))
    var out = [UInt8](repeating: 0, count: size)
    forEachDataBlock(of: ino, path: path, findings: &findings) { off, bytes in
      guard off < UInt64(size) else { return }
      let n = min(bytes.count, size - Int(off))
      out.replaceSubrange(Int(off)..<Int(off) + n, with: bytes[0..<n])
    }
    return out
  }
}

/// A resumable, streaming iterator over one directory's entries.
public struct DirEntryIterator {
  var base: KeyRangeIterator
  var pending: TreeElement?

  /// The next entry or the error of an unreadable part; nil at the end.
  public mutating func next(reader: PFSReader) -> Result<DirEntry, FormatError>? {
    while let el = pending {
      pending = base.next()
      switch el {
      case .hole(_, _, let err): return .failure(err)
      case .leaf(let bref):
        do {
          if let e = try reader.entry(from: bref) { return .success(e) }
        } catch {
          return .failure(error)
        }
      }
    }
    return nil
  }
}
