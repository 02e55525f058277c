// MARK: - Resync support (copying the focus's elements onto a node)

extension PFSEditor {
  /// The stored data blocks of a file on this node (loading its table).
  public func dataBlocks(_ inum: UInt64) throws(FormatError) -> [UInt64: Blockref] {
    let d = try dirty(inum)
    if d.data.meta.isDirectData { return [:] }
    try loadTable(d)
    var out: [UInt64: Blockref] = [:]
    for (k, leaf) in d.table! {
      if case .existing(let b) = leaf, b.type == .data { out[k] = b }
    }
    return out
  }

  /// Sets one logical block of a file (nil makes it a hole), stamped with `tid`. The
  /// block is compressed per the inode's own comp_algo at commit.
  /// `sizeIsFinal`: the caller already set the file's final size, so the EOF block is
  /// final too and is written at once (memory stays bounded however many files one
  /// commit creates).
  public func putBlock(_ inum: UInt64, key: UInt64, logical: [UInt8]?, tid: UInt64, sizeIsFinal: Bool = false) throws(FormatError) {
    let d = try dirty(inum)
    if d.data.meta.isDirectData { leaveDirectData(d) }
    try loadTable(d)
    d.table![key] = logical.map { .data(logical: $0) }
    d.modifyTid = max(d.modifyTid, tid)
    d.touched = true
    // Not the EOF block under the current size: final, write it now (bounded memory).
    if logical != nil, sizeIsFinal || key + UInt64(H2.pbufSize) <= d.data.meta.size { try finalizeData(d, key) }
  }

  /// The compression and check algorithms (`comp_algo`, `check_algo`) of an inode.
  public func methods(_ inum: UInt64) throws(FormatError) -> (comp: UInt8, check: UInt8) {
    let d = try dirty(inum)
    return (d.data.meta.compAlgo, d.data.meta.checkAlgo)
  }

  /// Stores a copy of another node's DATA block as it is on media (same methods, size
  /// and check code, new location): the raw copy for inodes whose methods match the
  /// source's. `physical` fills the block's bytes in place and verifies them against
  /// `source` (its check code is `source.check`, so it is not computed again); it runs
  /// later on the write path's own thread, and an error it returns stops the transaction
  /// (`WritableImage.write(at:count:structure:fill:)`).
  public func putRawBlock(
    _ inum: UInt64, source: Blockref, tid: UInt64,
    physical fill: @escaping (UnsafeMutableRawBufferPointer) -> FormatError?
  ) throws(FormatError) {
    let d = try dirty(inum)
    if d.data.meta.isDirectData { leaveDirectData(d) }
    try loadTable(d)
    guard let size = source.mediaSize, size > 0 else {
      throw FormatError(.editRefused(.rawCopyWithoutMedia))
    }
    var b = Blockref()
    b.typeRaw = BlockrefType.data.rawValue
    b.methods = source.methods
    b.key = source.key
    b.keybits = source.keybits
    b.mirrorTid = tx.mirrorTid
    b.modifyTid = tid
    try tx.placeBlock(&b, size: size, type: .data, check: source.check, fill: fill)
    d.table![source.key] = .existing(b)
    d.modifyTid = max(d.modifyTid, tid)
    d.touched = true
  }

  /// Makes a file DIRECTDATA with exactly `bytes` (at most 512), dropping every block
  /// first (docs/resync-semantics.md S9).
  public func setDirectData(_ inum: UInt64, _ bytes: [UInt8]) throws(FormatError) {
    let d = try dirty(inum)
    guard bytes.count <= H2.embeddedBytes else { throw FormatError(.editRefused(.directDataTooLarge)) }
    d.table = nil
    d.names = nil
    d.data.meta.opFlags |= OpFlags.directData
    d.data.u = bytes + [UInt8](repeating: 0, count: H2.embeddedBytes - bytes.count)
    d.data.meta.size = UInt64(bytes.count)
    d.touched = true
  }

  /// Sets a non-DIRECTDATA file's size without touching blocks below it (blocks at or
  /// beyond it are dropped).
  public func setSize(_ inum: UInt64, _ size: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    if !d.data.meta.isDirectData {
      try loadTable(d)
      let keep = (size + 0xFFFF) & ~0xFFFF
      for key in d.table!.keys where key >= keep { d.table![key] = nil }
    }
    d.data.meta.size = size
    d.touched = true
  }

  /// Copies the cluster-wide inode fields of `meta` (modsync: meta and filename, never
  /// the block table), and stamps `tid`. Identity, links and size are left alone.
  public func copyMeta(_ inum: UInt64, from m: InodeMeta, filename: [UInt8], tid: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    var x = d.data.meta
    x.version = m.version
    x.uflags = m.uflags
    x.rmajor = m.rmajor
    x.rminor = m.rminor
    x.ctime = m.ctime
    x.mtime = m.mtime
    x.atime = m.atime
    x.btime = m.btime
    x.uid = m.uid
    x.gid = m.gid
    x.mode = m.mode
    x.capFlags = m.capFlags
    x.iparent = m.iparent
    x.compAlgo = m.compAlgo
    x.checkAlgo = m.checkAlgo
    x.dataQuota = m.dataQuota
    x.inodeQuota = m.inodeQuota
    if m.type != .directory { x.nlinks = m.nlinks }
    if inum != 1 {
      x.nameKey = m.nameKey
      x.nameLen = UInt16(min(filename.count, 255))
      d.data.filenameArea = Array(filename.prefix(255)) + [UInt8](repeating: 0, count: 256 - min(filename.count, 255))
    } else {
      // A PFS root keeps its identity; allocator and snapshot tids take the max (S10).
      x.pfsInum = max(x.pfsInum, m.pfsInum)
      x.pfsLsnapTid = max(x.pfsLsnapTid, m.pfsLsnapTid)
    }
    d.data.meta = x
    d.modifyTid = tid
    d.touched = true
  }

  /// Stamps an inode with the focus's modify_tid once its children are in place.
  public func stamp(_ inum: UInt64, tid: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    d.modifyTid = tid
    d.touched = true
  }

  /// Creates `name` in `dir` for inode `inum` copied from the focus: a new inode with
  /// that number when the node lacks it, else one more link to it. Returns true when a
  /// new inode was made (its link count is then the focus's already).
  @discardableResult
  public func createCopy(_ name: [UInt8], in dir: UInt64, inum: UInt64, meta: InodeMeta, filename: [UInt8], direntTid: UInt64, tid: UInt64)
    throws(FormatError) -> Bool
  {
    let type = meta.type ?? .regularFile
    var oldBref: Blockref?
    if exists(inum) {
      let t = try dirty(inum)
      if t.data.meta.typeRaw == meta.typeRaw, type != .directory {
        // Another name of the same file (a hardlink), or an orphan left by an unlink
        // that kept the inode: link it; the focus's link count is the truth.
        try addEntryForResync(try dirty(dir), name: name, inum: inum, type: type, tid: direntTid)
        t.data.meta.nlinks = max(meta.nlinks, 1)
        t.touched = true
        return false
      }
      // A different object (or an orphaned directory) under this number: replace it.
      oldBref = t.bref
      inodes[inum] = nil
    }
    var ino = InodeData([UInt8](repeating: 0, count: InodeData.byteCount))
    ino.meta = meta
    ino.meta.inum = inum
    ino.meta.nlinks = 1
    ino.meta.size = 0
    ino.meta.opFlags = type == .regularFile || type == .symlink ? OpFlags.directData : 0
    ino.filenameArea = Array(filename.prefix(255)) + [UInt8](repeating: 0, count: 256 - min(filename.count, 255))
    let parent = try dirty(dir)
    ino.meta.nlinks = type == .directory ? 1 : max(meta.nlinks, 1)
    let d = DirtyInode(data: ino, bref: oldBref, modifyTid: tid)
    d.newMethods = forcedMetadataCheck(parent.data.meta.checkAlgo).rawValue << 4 | (parent.data.meta.compAlgo & 0x0F)
    d.touched = true
    d.table = [:]
    if type == .directory { d.names = [:] }
    try addEntryForResync(parent, name: name, inum: inum, type: type, tid: direntTid)
    inodes[inum] = d
    deleted.remove(inum)
    if root.data.meta.pfsInum < inum {
      root.data.meta.pfsInum = inum
      root.touched = true
    }
    return true
  }
}

extension PFSEditor {
  /// Sets an inode's link count without touching its modify_tid (resync: the focus's
  /// count is the truth once every name has been created or removed).
  public func setLinkCount(_ inum: UInt64, _ n: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    guard d.data.meta.nlinks != n else { return }
    d.data.meta.nlinks = n
    d.touched = true
  }

  /// Makes inode `inum` editable from `known`, its PFS-index entry as a walk of the tree
  /// rooted at `walkedRoot` read it, instead of descending the index again. Used only
  /// when that tree is the one this transaction started from (copy-on-write: the same
  /// root blockref is the same tree); otherwise, or when already loaded, as `dirty`.
  public func loadInode(_ inum: UInt64, from known: Blockref?, walkedRoot: Blockref) throws(FormatError) {
    _ = try dirty(inum, known: walkedRoot == startingRoot ? known : nil)
  }

  /// True when this node (in this transaction) has inode `inum`.
  public func hasInode(_ inum: UInt64) -> Bool { exists(inum) }

  /// Writes a file's (or symlink's) inode now, with its data, and drops it from memory:
  /// resync calls this once a copied file is complete. Directories stay in memory
  /// (their entries change until the end).
  public func finishInode(_ inum: UInt64) throws(FormatError) {
    guard inum != 1, let d = inodes[inum], d.data.meta.type != .directory else { return }
    written[inum] = try writeInode(d, key: inum, isRoot: false)
    inodes[inum] = nil
  }
}

extension PFSEditor {
  /// Resync of a copy that differs from the focus's in modify_tids only: gives its
  /// children (a file's DATA blockrefs, a directory's DIRENT blockrefs) the focus's
  /// tids key by key (`tids`; a key the focus lacks is capped at `cap`), so that the
  /// inode can carry the focus's tid: a flushed inode's tid is at least its children's
  /// (`hammer2_flush_core`), so a lower tid would not hold otherwise. Only blockrefs
  /// change: the inode's block table (its indirect blocks) is written again, never a
  /// DATA block.
  public func setChildTids(_ inum: UInt64, _ tids: [UInt64: UInt64], cap: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    guard !d.data.meta.isDirectData else { return }
    func tid(_ b: Blockref) -> UInt64 { tids[b.key] ?? min(b.modifyTid, cap) }
    if d.data.meta.type == .directory {
      try loadTable(d)
      // Only the entries whose tid changes are kept (the rest are only checked).
      var entries: [DirEntry] = []
      var findings: [Finding] = []
      reader.forEachEntry(of: d.data, path: "", findings: &findings) { e in
        if !d.changedKeys.contains(e.bref.key) && tid(e.bref) != e.bref.modifyTid { entries.append(e) }
        return true
      }
      if let f = findings.first(where: { $0.severity == .damage }) {
        throw FormatError(.damaged(directory: inum, finding: f.message), at: f.location)
      }
      // Each entry written back by key (a path copy), as an added entry is.
      for e in entries {
        var b = e.bref
        b.modifyTid = tid(b)
        d.table![b.key] = .existing(b)
        d.names![e.name] = b.key
        d.changedKeys.insert(b.key)
        d.touched = true
      }
    } else {
      try loadTable(d)
      for (k, leaf) in d.table! {
        guard case .existing(var b) = leaf, tid(b) != b.modifyTid else { continue }
        b.modifyTid = tid(b)
        d.table![k] = .existing(b)
        d.touched = true
      }
    }
  }
}
