/// An inode being changed in a transaction: its data, and its table of children once
/// loaded (nil means the on-disk table is kept as is).
final class DirtyInode {
  var data: InodeData
  /// The blockref it had on disk; nil for an inode created in this transaction.
  var bref: Blockref?
  /// `methods` for a new inode's blockref (from its parent directory).
  var newMethods: UInt8 = 0
  /// A file's table of children once loaded (nil: the on-disk table is kept as is). For
  /// a directory only the entries added in this transaction: its on-disk entries are
  /// read where they are, and written back by key (`changedKeys`, a path copy).
  var table: [UInt64: PendingLeaf]?
  /// Directories: names added in this transaction -> key.
  var names: [[UInt8]: UInt64]?
  var modifyTid: UInt64
  var touched = false
  /// Snapshot roots: the blockset is shared with this PFS root's table.
  var sharedTableBref: Blockref?
  /// Directories: keys whose entries were added or removed in this transaction.
  var changedKeys = Set<UInt64>()

  init(data: InodeData, bref: Blockref?, modifyTid: UInt64) {
    self.data = data
    self.bref = bref
    self.modifyTid = modifyTid
  }
}

/// Edits one PFS inside a transaction: creates, links, unlinks and renames entries,
/// writes and truncates file data, changes inode meta. Reads see the pending state.
/// DragonFly's rules are followed: inode numbers from the PFS root's `pfs_inum`,
/// directory keys from `dirhash` with the collision iterator, DIRECTDATA for small files
/// and symlinks, 64 KiB logical blocks compressed per the inode's `comp_algo`, zero
/// blocks as holes, check codes per `check_algo`.
public final class PFSEditor {
  unowned let tx: Transaction
  var pfsBref: Blockref
  let root: DirtyInode
  var inodes: [UInt64: DirtyInode] = [:]
  /// Inodes already written in this transaction (resync finishes files as it goes, so
  /// memory does not grow with the number of files one commit creates): their new
  /// blockrefs, entered into the PFS index at flush. Touching one again reloads it.
  var written: [UInt64: Blockref] = [:]
  var deleted: Set<UInt64> = []
  /// The modify_tid stamped on changed elements (`M`: the PFS root's + 1 by default).
  public var modifyTid: UInt64
  let isNew: Bool
  /// The PFS root blockref the transaction started from: a tree read before it is this
  /// tree (copy-on-write) exactly when its root blockref is this one.
  public let startingRoot: Blockref
  private var nextInum: UInt64
  let reader: PFSReader

  init(transaction: Transaction, bref: Blockref, root data: InodeData, isNew: Bool = false) throws(FormatError) {
    tx = transaction
    pfsBref = bref
    startingRoot = bref
    self.isNew = isNew
    modifyTid = bref.modifyTid + 1
    root = DirtyInode(data: data, bref: isNew ? nil : bref, modifyTid: modifyTid)
    nextInum = max(data.meta.pfsInum + 1, H2.inodeStart)
    reader = PFSReader(volume: transaction.volume, pfs: PFSInfo(bref: bref, inode: data))
  }

  /// True when this PFS has changes to write.
  var hasPendingChanges: Bool { root.touched || root.table != nil || !inodes.isEmpty || !written.isEmpty || !deleted.isEmpty }

  /// The PFS name.
  public var name: String { root.data.filenameString }
  /// The PFS root inode as it stands.
  public var rootInode: InodeData { root.data }

  func loc(_ what: String) -> Location { Location(image: tx.image.label, structure: "PFS \(name): \(what)") }

  // MARK: reading the pending state

  /// The inode numbered `inum` as it stands in this transaction.
  public func inode(_ inum: UInt64) throws(FormatError) -> InodeData {
    if inum == 1 { return root.data }
    if let d = inodes[inum] { return d.data }
    if let b = written[inum] { return try reader.volume.inode(b, cached: false) }
    if deleted.contains(inum) { throw FormatError(.notFound(.inode(inum, pfs: nil)), at: loc("inode index")) }
    return try reader.inode(inum)
  }

  func exists(_ inum: UInt64) -> Bool {
    if inum == 1 || inodes[inum] != nil || written[inum] != nil { return true }
    if deleted.contains(inum) { return false }
    if let indexed = reader.isIndexed(inum) { return indexed }
    do throws(FormatError) {
      _ = try reader.inode(inum)
      return true
    } catch {
      if case .notFound = error.kind { return false }
      return true // unreadable: never reuse the number
    }
  }

  /// The entries of directory `dir`: name, inode number, object type.
  public func entries(of dir: UInt64) throws(FormatError) -> [(name: [UInt8], inum: UInt64, type: UInt8)] {
    var out: [(name: [UInt8], inum: UInt64, type: UInt8)] = []
    let d = dirtyIfLoaded(dir)
    let changed = d?.changedKeys ?? []
    if let d, let names = d.names, let table = d.table {
      for (name, key) in names {
        if let leaf = table[key], let b = leafBref(leaf) { out.append((name, b.direntInum, b.direntTypeRaw)) }
      }
    }
    var findings: [Finding] = []
    let dirInode: InodeData
    if let d { dirInode = d.data } else { dirInode = try inode(dir) }
    reader.forEachEntry(of: dirInode, path: "", findings: &findings) { e in
      if !changed.contains(e.bref.key) { out.append((e.name, e.inum, e.typeRaw)) }
      return true
    }
    if let f = findings.first(where: { $0.severity == .damage }) {
      throw FormatError(.damaged(directory: dir, finding: f.message), at: f.location)
    }
    return out
  }

  func dirtyIfLoaded(_ inum: UInt64) -> DirtyInode? { inum == 1 ? root : inodes[inum] }

  func leafBref(_ leaf: PendingLeaf) -> Blockref? {
    switch leaf {
    case .existing(let b), .nameBlock(let b, _): return b
    default: return nil
    }
  }

  /// Looks up `name` in directory `dir`.
  public func lookup(_ name: [UInt8], in dir: UInt64) throws(FormatError) -> (inum: UInt64, type: UInt8)? {
    if let d = dirtyIfLoaded(dir) {
      guard let (_, b) = try findEntry(d, name) else { return nil }
      return (b.direntInum, b.direntTypeRaw)
    }
    guard let e = try reader.lookup(name, in: try inode(dir)) else { return nil }
    return (e.inum, e.typeRaw)
  }

  /// `name` in directory `d` as it stands: added in this transaction, or on disk and
  /// not removed since. Returns its key and blockref.
  func findEntry(_ d: DirtyInode, _ name: [UInt8]) throws(FormatError) -> (UInt64, Blockref)? {
    if let key = d.names?[name], let leaf = d.table?[key], let b = leafBref(leaf) { return (key, b) }
    guard let e = try reader.lookup(name, in: d.data), !d.changedKeys.contains(e.bref.key) else { return nil }
    return (e.bref.key, e.bref)
  }

  /// The on-disk entries of directory `d` in the hash bucket of `hash` (the keys
  /// `hash...hash|lomask`): the entry named `name` unless removed since, and every key
  /// the disk holds there (`findEntry`'s disk part and a key probe, in one pass).
  func diskBucket(_ d: DirtyInode, _ name: [UInt8], hash h: UInt64) throws(FormatError) -> (match: (UInt64, Blockref)?, used: [UInt64]) {
    guard !d.data.meta.isDirectData else { return (nil, []) }
    var match: (UInt64, Blockref)?
    var named = false
    var used: [UInt64] = []
    var it = KeyRangeIterator(volume: tx.volume, array: d.data.blockset) { [self] in loc("directory \(d.data.meta.inum)") }
    var el = it.lookup(h, h | H2.dirhashLomask)
    while let e = el {
      switch e {
      case .hole(_, _, let err): throw err
      case .leaf(let b):
        used.append(b.key)
        if !named, let entry = try reader.entry(from: b), entry.name == name {
          named = true
          if !d.changedKeys.contains(b.key) { match = (b.key, b) }
        }
      }
      el = it.next()
    }
    return (match, used)
  }

  /// Resolves a path relative to the PFS root to an inode number.
  public func resolve(_ path: String) throws(FormatError) -> UInt64 {
    var inum: UInt64 = 1
    for part in path.split(separator: "/") where part != "." {
      guard let e = try lookup(Array(part.utf8), in: inum) else { throw FormatError(.notFound(.path(path, pfs: nil)), at: loc("path")) }
      inum = e.inum
    }
    return inum
  }

  /// Splits "a/b/c" into the parent's inode number and the last name.
  public func parentAndName(_ path: String) throws(FormatError) -> (UInt64, [UInt8]) {
    var parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
    guard let last = parts.popLast() else { throw FormatError(.editRefused(.namesRoot(path: path))) }
    return (try resolve(parts.joined(separator: "/")), Array(last.utf8))
  }

  // MARK: making inodes dirty

  func addEntryForResync(_ dir: DirtyInode, name: [UInt8], inum: UInt64, type: ObjectType, tid: UInt64) throws(FormatError) {
    try addEntry(dir, name: name, inum: inum, type: type)
    // The entry carries the focus's modify_tid.
    if let key = dir.names?[name], case .existing(var b)? = dir.table?[key] {
      b.modifyTid = tid
      dir.table![key] = .existing(b)
    } else if let key = dir.names?[name], case .nameBlock(var b, let n)? = dir.table?[key] {
      b.modifyTid = tid
      dir.table![key] = .nameBlock(b, name: n)
    }
  }

  func dirty(_ inum: UInt64, known: Blockref? = nil) throws(FormatError) -> DirtyInode {
    if inum == 1 { return root }
    if let d = inodes[inum] { return d }
    if let b = written.removeValue(forKey: inum) {
      // Written earlier in this transaction: its table and tid are as written.
      let d = DirtyInode(data: try reader.volume.inode(b, cached: false), bref: b, modifyTid: b.modifyTid)
      inodes[inum] = d
      return d
    }
    guard !deleted.contains(inum) else { throw FormatError(.notFound(.inode(inum, pfs: nil)), at: loc("inode index")) }
    if let k = known, k.key == inum, k.type == .inode {
      // The index entry as read before (`loadInode(_:from:walkedRoot:)`): not changed
      // since, as neither `inodes`, `written` nor `deleted` has it.
      let data = try reader.volume.inode(k, cached: false)
      if data.meta.inum == inum {
        let d = DirtyInode(data: data, bref: k, modifyTid: modifyTid)
        inodes[inum] = d
        return d
      }
    }
    let (bref, data) = try reader.inodeWithBlockref(inum)
    let d = DirtyInode(data: data, bref: bref, modifyTid: modifyTid)
    inodes[inum] = d
    return d
  }

  /// Makes an inode's table of children editable. A file's table is loaded; a
  /// directory starts an empty overlay of added entries (its on-disk entries, and for
  /// the PFS root the inode index beside them, are never loaded: memory and time follow
  /// the changes, not the directory's size).
  func loadTable(_ d: DirtyInode) throws(FormatError) {
    guard d.table == nil else { return }
    if d.data.meta.type == .directory {
      d.table = [:]
      d.names = [:]
      return
    }
    var table: [UInt64: PendingLeaf] = [:]
    if !d.data.meta.isDirectData {
      var it = KeyRangeIterator(volume: tx.volume, array: d.data.blockset) { [self] in loc("inode \(d.data.meta.inum)") }
      var el = it.lookup(0, .max)
      while let e = el {
        switch e {
        case .hole(_, _, let err): throw err
        case .leaf(let b): table[b.key] = .existing(b)
        }
        el = it.next()
      }
    }
    d.table = table
    d.sharedTableBref = nil
  }

  // MARK: directory entries

  func addEntry(_ dir: DirtyInode, name: [UInt8], inum: UInt64, type: ObjectType) throws(FormatError) {
    guard dir.data.meta.type == .directory else {
      throw FormatError(.editRefused(.notADirectory(inum: dir.data.meta.inum)), at: loc("directory"))
    }
    guard !name.isEmpty, name.count <= 255, name != [0x2E], name != [0x2E, 0x2E], !name.contains(0x2F), !name.contains(0) else {
      throw FormatError(.editRefused(.invalidName), at: loc("directory"))
    }
    try loadTable(dir)
    let h = DirHash.hash(name)
    // One pass over the name's hash bucket on disk answers both questions: is the name
    // there, and which keys of the bucket are taken.
    let bucket = try diskBucket(dir, name, hash: h)
    guard bucket.match == nil, dir.names?[name].flatMap({ dir.table?[$0] }) == nil else {
      throw FormatError(.editRefused(.exists(name: String(decoding: name, as: UTF8.self))), at: loc("directory \(dir.data.meta.inum)"))
    }
    /// Whether the directory as it stands has an entry at `key` (bucket keys only).
    func inUse(_ key: UInt64) -> Bool {
      if dir.table?[key] != nil { return true }
      return !dir.changedKeys.contains(key) && bucket.used.contains(key)
    }
    // Key per hammer2_dirent_create: dirhash + 1 when free, else the next free
    // key of the 15-bit collision space (any free key there is found by lookups).
    var key = h + 1
    while inUse(key) {
      key = key == (h | H2.dirhashLomask) ? h : key + 1
      if key == h + 1 { throw FormatError(.editRefused(.hashBucketFull), at: loc("directory")) }
    }
    var b = Blockref()
    b.typeRaw = BlockrefType.dirent.rawValue
    b.methods = forcedMetadataCheck(dir.data.meta.checkAlgo).rawValue << 4 | (dir.data.meta.compAlgo & 0x0F)
    b.key = key
    b.mirrorTid = tx.mirrorTid
    b.modifyTid = modifyTid
    b.embed0 = inum
    b.embed1 = UInt64(name.count) | UInt64(type.rawValue) << 16
    if name.count <= 64 {
      b.check = CheckArea(bytes: name)
      dir.table![key] = .existing(b)
    } else {
      dir.table![key] = .nameBlock(b, name: name)
    }
    dir.names![name] = key
    dir.changedKeys.insert(key)
    dir.modifyTid = modifyTid
    dir.touched = true
  }

  func removeEntry(_ dir: DirtyInode, name: [UInt8]) throws(FormatError) -> UInt64 {
    try loadTable(dir)
    guard let (key, b) = try findEntry(dir, name) else {
      throw FormatError(.notFound(.name(String(decoding: name, as: UTF8.self))), at: loc("directory \(dir.data.meta.inum)"))
    }
    dir.table![key] = nil
    dir.names![name] = nil
    dir.changedKeys.insert(key)
    dir.modifyTid = modifyTid
    dir.touched = true
    return b.direntInum
  }

  // MARK: public edits

  /// Creates `name` in directory `dir`; returns the new inode number.
  @discardableResult
  public func create(
    _ name: [UInt8], in dir: UInt64, type: ObjectType, mode: UInt32, time: UInt64,
    rdev: (UInt32, UInt32) = (0, 0), uid: UInt32 = 0, gid: UInt32 = 0
  ) throws(FormatError) -> UInt64 {
    let parent = try dirty(dir)
    while exists(nextInum) { nextInum += 1 }
    let inum = nextInum
    nextInum += 1
    var ino = InodeData([UInt8](repeating: 0, count: InodeData.byteCount))
    ino.meta.version = 1
    ino.meta.typeRaw = type.rawValue
    ino.meta.opFlags = type == .regularFile || type == .symlink ? OpFlags.directData : 0
    ino.meta.mode = mode & 0o7777
    ino.meta.inum = inum
    ino.meta.nlinks = 1
    ino.meta.iparent = dir
    ino.meta.nameKey = inum
    let fname = Array(String(format: "0x%016llx", inum).utf8)
    ino.meta.nameLen = UInt16(fname.count)
    ino.filenameArea = fname + [UInt8](repeating: 0, count: 256 - fname.count)
    ino.meta.compAlgo = parent.data.meta.compAlgo
    ino.meta.checkAlgo = parent.data.meta.checkAlgo
    ino.meta.ctime = time
    ino.meta.mtime = time
    ino.meta.rmajor = rdev.0
    ino.meta.rminor = rdev.1
    if uid != 0 { ino.meta.uid.put(uid, at: 10) }
    if gid != 0 { ino.meta.gid.put(gid, at: 10) }
    let d = DirtyInode(data: ino, bref: nil, modifyTid: modifyTid)
    d.newMethods = forcedMetadataCheck(parent.data.meta.checkAlgo).rawValue << 4 | (parent.data.meta.compAlgo & 0x0F)
    d.touched = true
    if type == .directory {
      d.table = [:]
      d.names = [:]
    }
    try addEntry(parent, name: name, inum: inum, type: type)
    inodes[inum] = d
    deleted.remove(inum)
    if root.data.meta.pfsInum < inum {
      root.data.meta.pfsInum = inum
      root.touched = true
    }
    return inum
  }

  /// Adds a hardlink `name` in `dir` to the existing non-directory inode `inum`.
  public func link(_ name: [UInt8], in dir: UInt64, to inum: UInt64) throws(FormatError) {
    let target = try dirty(inum)
    guard target.data.meta.type != .directory else { throw FormatError(.editRefused(.hardlinkDirectory), at: loc("link")) }
    try addEntry(try dirty(dir), name: name, inum: inum, type: target.data.meta.type ?? .regularFile)
    target.data.meta.nlinks += 1
    target.touched = true
  }

  /// Removes `name` from `dir`. A directory must be empty unless `recursive`. The inode
  /// goes when its last link does.
  public func unlink(_ name: [UInt8], in dir: UInt64, recursive: Bool = false) throws(FormatError) {
    guard let e = try lookup(name, in: dir) else {
      throw FormatError(.notFound(.name(String(decoding: name, as: UTF8.self))), at: loc("directory \(dir)"))
    }
    let target = try dirty(e.inum)
    if target.data.meta.type == .directory {
      let children = try entries(of: e.inum)
      if !children.isEmpty {
        guard recursive else { throw FormatError(.editRefused(.directoryNotEmpty), at: loc("directory \(e.inum)")) }
        for c in children { try unlink(c.name, in: e.inum, recursive: true) }
      }
    }
    _ = try removeEntry(try dirty(dir), name: name)
    if target.data.meta.type == .directory || target.data.meta.nlinks <= 1 {
      inodes[e.inum] = nil
      deleted.insert(e.inum)
    } else {
      target.data.meta.nlinks -= 1
      target.touched = true
    }
  }

  /// Moves `name` of `fromDir` to `newName` in `toDir` (an existing non-directory
  /// target is replaced, as rename(2) does).
  public func rename(_ name: [UInt8], in fromDir: UInt64, to newName: [UInt8], in toDir: UInt64) throws(FormatError) {
    guard let e = try lookup(name, in: fromDir) else {
      throw FormatError(.notFound(.name(String(decoding: name, as: UTF8.self))), at: loc("rename"))
    }
    if e.type == ObjectType.directory.rawValue {
      var up = toDir
      var guardCount = 0
      while up != 1 && guardCount < 10_000 {
        guard up != e.inum else { throw FormatError(.editRefused(.moveIntoItself), at: loc("rename")) }
        up = try inode(up).meta.iparent
        guardCount += 1
      }
    }
    if let existing = try lookup(newName, in: toDir) {
      if existing.inum == e.inum { return }
      try unlink(newName, in: toDir)
    }
    _ = try removeEntry(try dirty(fromDir), name: name)
    try addEntry(try dirty(toDir), name: newName, inum: e.inum, type: ObjectType(rawValue: e.type) ?? .regularFile)
    if e.type == ObjectType.directory.rawValue {
      let d = try dirty(e.inum)
      d.data.meta.iparent = toDir
      d.touched = true
    }
  }

  /// Changes inode meta (mode, times, owner, comp/check algorithms...).
  public func updateMeta(_ inum: UInt64, _ change: (inout InodeMeta) -> Void) throws(FormatError) {
    let d = try dirty(inum)
    change(&d.data.meta)
    d.modifyTid = modifyTid
    d.touched = true
  }

  // MARK: commit

  /// Writes every changed inode (children first) and the PFS root; returns the new PFS
  /// root blockref.
  func flush() throws(FormatError) -> Blockref {
    // The root's blockset holds the inode index beside the root directory's entries:
    // both are updated by key, copying only the indirect blocks on the changed paths.
    var changes: [UInt64: Blockref?] = [:]
    for (inum, b) in written { changes[inum] = b }
    written.removeAll()
    for inum in inodes.keys.sorted() {
      // Safe: iterating the dictionary's own keys.
      changes[inum] = try writeInode(inodes[inum]!, key: inum, isRoot: false)
    }
    for inum in deleted { changes[inum] = .some(nil) }
    var b = try writeInode(root, key: pfsBref.key, isRoot: true, indexChanges: changes)
    b.flags = pfsBref.flags | BlockrefFlags.pfsRoot
    pfsBref = b
    return b
  }

  func writeInode(_ d: DirtyInode, key: UInt64, isRoot: Bool, indexChanges: [UInt64: Blockref?] = [:]) throws(FormatError) -> Blockref {
    var b: Blockref
    if let old = d.bref {
      b = old
    } else if isRoot {
      b = pfsBref
    } else {
      b = Blockref()
      b.typeRaw = BlockrefType.inode.rawValue
      b.methods = d.newMethods
    }
    b.key = key
    b.keybits = 0
    b.mirrorTid = tx.mirrorTid
    var stats = TreeStats()
    var changes = indexChanges
    if d.data.meta.type == .directory, !d.data.meta.isDirectData, let table = d.table {
      for k in d.changedKeys.sorted() {
        switch table[k] {
        case .existing(let lb)?: changes[k] = lb
        case .nameBlock(var nb, let name)?:
          try tx.placeBlock(&nb, bytes: name + [UInt8](repeating: 0, count: 1024 - name.count), type: .dirent)
          d.table![k] = .existing(nb)
          changes[k] = nb
        case nil: changes[k] = .some(nil)
        case .data?, .inode?: break // never in a directory
        }
      }
      d.changedKeys = []
    }
    if !changes.isEmpty {
      // A directory (and the PFS root's index): a path copy of the changed keys.
      let sorted = changes.keys.sorted().map { k in (key: k, bref: changes[k]!) } // Safe: the dictionary's own keys.
      let live = d.data.blockset.filter { !$0.isEmpty }.sorted { $0.key < $1.key }
      let method = forcedMetadataCheck(b.checkMethodRaw)
      let merged = try tx.updateTable(live, changes: sorted[...], checkMethod: method)
      d.data.u = encodeBlockrefs(try tx.buildTable(merged[...], capacity: H2.setCount, checkMethod: method))
      d.sharedTableBref = nil
      for c in d.data.blockset where !c.isEmpty { stats.add(c) }
      stats.apply(to: &b)
      b.modifyTid = max(d.modifyTid, stats.maxModifyTid)
    } else if d.data.meta.type == .directory, d.sharedTableBref == nil {
      // Entries unchanged: the inode's tid is its own, raised to its children's.
      let childMax = d.data.blockset.filter { !$0.isEmpty }.map(\.modifyTid).max() ?? 0
      b.modifyTid = max(d.modifyTid, childMax)
    } else if d.data.meta.type != .directory, var table = d.table, !d.data.meta.isDirectData {
      // A file's table, rebuilt whole. Key order, so the same edits always allocate the
      // same blocks (deterministic images).
      for k in table.keys.sorted() {
        // Safe: iterating the table's own keys.
        if case .data = table[k]! { try finalizeData(d, k) }
      }
      table = d.table!
      let leaves = table.keys.sorted().compactMap { k -> Blockref? in
        if case .existing(let lb)? = table[k] { return lb }
        return nil
      }
      let built = try tx.buildTable(leaves[...], capacity: H2.setCount, checkMethod: forcedMetadataCheck(b.checkMethodRaw))
      for c in built where !c.isEmpty { stats.add(c) }
      d.data.u = encodeBlockrefs(built)
      stats.apply(to: &b)
      b.modifyTid = max(d.modifyTid, stats.maxModifyTid)
    } else if let shared = d.sharedTableBref {
      b.embed0 = shared.embed0
      b.embed1 = shared.embed1
      b.leafCount = 0
      b.modifyTid = max(d.modifyTid, shared.modifyTid)
    } else if d.data.meta.isDirectData {
      stats.apply(to: &b)
      b.modifyTid = d.modifyTid
    } else {
      // Table unchanged: the inode's tid is its own, raised to its children's (which
      // the blockset's entries carry), as the flusher does; not the old inode's tid.
      let childMax = d.data.blockset.filter { !$0.isEmpty }.map(\.modifyTid).max() ?? 0
      b.modifyTid = max(d.modifyTid, childMax)
    }
    try tx.placeBlock(&b, bytes: d.data.encode(), type: .inode)
    return b
  }
}
