import Hammer2Format

/// What resync may do beyond the defaults (docs/resync-semantics.md §5.7–5.11).
public struct ResyncOptions: Sendable {
  /// Keep each changed node's old content as a snapshot PFS (default on).
  public var snapshot = true
  /// Name of that snapshot PFS (default: "<PFS>.resync-<time>").
  public var snapshotName: String? = nil
  /// Roll back masters or slaves that are ahead even without a snapshot.
  public var allowRollback = false
  /// Also write soft masters (they never vote and are left alone by default).
  public var overwriteSoftMasters = false
  /// Timestamp (µs) for the snapshot.
  public var time: UInt64 = 0
  /// Cross-check each written image's freemap first and mark referenced chunks it has
  /// free allocated in the same commit (`Transaction.repairFreemap`, FreemapRepair.swift).
  public var repairFreemap = true
  public init() {}
}

/// The outcome for one node.
public struct NodeOutcome: Sendable {
  public var image: String
  public var pathsChanged = 0
  public var skipped: [String] = []
  public var snapshot: String?
  public var bytesWritten: UInt64 = 0
  public var writes = 0
  /// The image's bytes written by this commit per kind of block ("INODE", "INDIRECT",
  /// "DATA", "DIRENT", "FREEMAP", "VOLUME HEADER"); they add up to `bytesWritten`.
  public var bytesByType: [String: UInt64] = [:]
  /// Paths whose copy differed from the focus's in modify_tid alone (stamped, no data).
  public var tidsStamped = 0
  public var committedSlot: Int?
  /// Freemap chunks marked allocated because the tree references them (`repairFreemap`).
  public var freemapChunksRepaired = 0
}

/// Copies the focus's data onto stale, ahead, split-brain and damaged masters and slaves
/// (the seed's modsync, done offline): creates what they lack, removes what the quorum
/// says is gone, replaces differing inodes (meta and filename, never the node's own block
/// table) and data blocks (by logical content, recompressed per the target inode's own
/// comp_algo; unchanged blocks are not rewritten). One copy-on-write transaction per
/// image; nothing is written to the focus or to nodes in sync.
public struct Resyncer {
  public let group: ClusterGroup
  public let focus: ClusterNode
  public let options: ResyncOptions

  public init(group: ClusterGroup, focus: ClusterNode, options: ResyncOptions) {
    self.group = group
    self.focus = focus
    self.options = options
  }

  /// The nodes resync writes: not the focus, not in sync, not soft masters (unless
  /// asked), never caches, dummies or unknown types.
  public func targets(states: [NodeState], differences: [Difference]) -> [ClusterNode] {
    group.nodes.filter { n in
      guard n.index != focus.index else { return false }
      guard differences.contains(where: { $0.classes[n.index].counts }) else { return false }
      switch n.role {
      case .master, .slave, .softSlave: return true
      case .softMaster: return options.overwriteSoftMasters
      default: return false
      }
    }
  }

  /// Applies `differences` to `targets` (the plan's actions for each, built from them),
  /// one commit per image.
  public func apply(targets: [ClusterNode], differences: [Difference]) throws -> [NodeOutcome] {
    try apply(targets.map { ($0, ResyncPlan.actions(for: $0.index, differences)) })
  }

  /// Applies exactly `plan`, one commit per image: nothing is walked again; each action
  /// reads what it copies from the blockrefs the walk recorded.
  /// `onAction(done, total)` is called on the calling thread before each action (a
  /// progress display), and once more with done == total at the end.
  public static func apply(_ plan: ResyncPlan, onAction: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [NodeOutcome] {
    guard let focus = plan.focus else { return [] }
    return try Resyncer(group: plan.group, focus: focus, options: plan.options)
      .apply(plan.targets.map { ($0.node, $0.actions) }, onAction: onAction)
  }

  private func apply(_ targets: [(node: ClusterNode, actions: [PlanAction])], onAction: ((Int, Int) -> Void)? = nil) throws -> [NodeOutcome]
  {
    let total = targets.reduce(0) { $0 + $1.actions.count }
    var done = 0
    func tick() {
      onAction?(done, total)
      done += 1
    }
    var byImage: [String: [(node: ClusterNode, actions: [PlanAction])]] = [:]
    for t in targets { byImage[t.node.image, default: []].append(t) }
    var outcomes: [NodeOutcome] = []
    for image in byImage.keys.sorted() {
      // Safe: iterating the dictionary's own keys.
      let nodes = byImage[image]!
      // The run's cache budget, as each node's reader had it: the edits follow the
      // walk's order, so the blocks they reread are recent ones.
      let tx = try Transaction(path: image, opener: group.opener, cacheBudget: focus.volume.cacheBudget)
      // Before anything is allocated: the allocator must not hand out referenced chunks.
      // On two threads: the second core is idle until the copy starts.
      let repaired = options.repairFreemap ? try tx.repairFreemap(threads: 2).chunksMarked : 0
      var uuids = UUIDSource.random
      var results: [NodeOutcome] = []
      for (node, actions) in nodes {
        var out = NodeOutcome(image: image)
        out.freemapChunksRepaired = repaired
        if options.snapshot {
          let name = options.snapshotName ?? "\(node.pfs.name).resync-\(options.time / 1_000_000)"
          try tx.snapshot(source: node.pfs.name, name: name, clid: uuids.next(), fsid: uuids.next(), time: options.time)
          out.snapshot = name
        }
        let ed = try tx.editor(clid: group.clid, fsid: node.pfs.fsid)
        try sync(node: node, editor: ed, actions: actions, outcome: &out, tick: tick)
        results.append(out)
      }
      let slot = try tx.commit()
      for i in results.indices {
        results[i].committedSlot = slot
        results[i].writes = tx.image.writes
        results[i].bytesWritten = tx.image.bytesWritten
        results[i].bytesByType = tx.bytesWrittenByType
      }
      outcomes += results
    }
    onAction?(total, total)
    return outcomes
  }

  private func parentPath(_ p: String) -> String { splitPath(p).parent }

  /// A walk path's parent ("." at the top) and its last name's bytes. By UTF-8 code
  /// units: once per difference, where splitting by Characters cost more than the
  /// directory lookup itself.
  private func splitPath(_ p: String) -> (parent: String, name: [UInt8]) {
    let u = p.utf8
    guard let slash = u.lastIndex(of: UInt8(ascii: "/")) else { return (".", Array(u)) }
    return (String(p[..<slash]), Array(u[u.index(after: slash)...]))
  }

  /// The focus's element for `path`: its entry, inode and inode blockref (the inode the
  /// read-ahead read for that blockref, when it did).
  private func focusElement(
    _ path: String, _ known: PlanAction? = nil,
    _ prepared: FocusReadAhead.PreparedInode? = nil
  ) throws(FormatError) -> (DirEntry, Blockref, InodeData) {
    if let d = known, let e = d.focusEntry, let b = d.focusInode, b.key == e.inum {
      let ino: InodeData
      if let p = prepared, p.bref == b {
        ino = p.inode
      } else {
        // Each path is copied once: caching its inode would only churn the cache.
        ino = try focus.volume.inode(b, cached: false)
      }
      if ino.meta.inum == e.inum { return (e, b, ino) }
    }
    let (parentDir, name) = splitPath(path)
    let parent = try focus.reader.resolve(parentDir == "." ? "" : parentDir)
    guard let e = try focus.reader.lookup(name, in: parent.inode) else {
      throw FormatError(.notFound(.onFocus(path: path)))
    }
    let (b, ino) = try focus.reader.inodeWithBlockref(e.inum)
    return (e, b, ino)
  }

  private func sync(
    node: ClusterNode, editor ed: PFSEditor, actions: [PlanAction], outcome: inout NodeOutcome,
    tick: () -> Void = {}
  ) throws {
    // Names removed so far (the plan left out the paths below them; the end stages
    // below must skip them too).
    var removed: [String] = []
    var blocked = false
    var touchedDirs = Set<String>()
    // Directories given the focus's tid: their entries take the focus's tids at the end
    // (an inode's tid is at least its children's, so a lower tid needs lower entries).
    var retidDirs: [String: UInt64] = [:]
    // The focus's blockref and inode of each directory the loop below read (the focus is
    // never written): the end stages use them instead of resolving each path again.
    var focusDirs: [String: (Blockref, InodeData)] = [:]
    func focusDir(_ p: String) -> (Blockref, InodeData)? {
      if let known = focusDirs[p] { return known }
      guard let (_, fb, fino) = try? focusElement(p) else { return nil }
      return (fb, fino)
    }
    // Inodes whose names were added or removed: their link count is set to the focus's
    // at the end, whatever order the names were processed in (a rename is an extra name
    // plus a missing one).
    var relinked = Set<UInt64>()
    func under(_ p: String) -> Bool { removed.contains { p == $0 || p.hasPrefix($0 + "/") } }
    // Directory path -> inode number on this node, so each action does not walk its
    // path from the root again. Cleared whenever a name is removed or replaced.
    var dirInums: [String: UInt64] = [".": 1]
    func parentAndName(_ path: String) throws -> (UInt64, [UInt8]) {
      let (parent, name) = splitPath(path)
      if let inum = dirInums[parent] { return (inum, name) }
      let (grand, parentName) = try parentAndName(parent)
      guard let e = try ed.lookup(parentName, in: grand) else { throw FormatError(.notFound(.path(parent, pfs: nil)), at: nil) }
      dirInums[parent] = e.inum
      return (e.inum, name)
    }
    // Every action below that reads the focus's element, in this loop's order.
    let readAhead = FocusReadAhead(
      image: focus.image, opener: group.opener,
      items: actions.indices.compactMap { k in
        actions[k].readsFocus ? actions[k].focusInode.map { FocusReadAhead.Item(position: k, inode: $0) } : nil
      })
    readAhead.start()
    defer { readAhead.stop() }
    for (k, d) in actions.enumerated() {
      tick()
      let prepared = readAhead.arrive(at: k)
      switch d.kind {
      case .leave(let cls):
        // Needs a human: the parents keep their old tids so the divergence stays visible.
        blocked = true
        outcome.skipped.append("\(d.path): \(cls.rawValue)")
        continue
      case .root(let tidsOnly):
        if tidsOnly {
          outcome.tidsStamped += 1
          outcome.pathsChanged += 1
        }
        continue // the root's own fields are copied last
      default: break
      }
      let (dir, name) = try parentAndName(d.path)
      switch d.kind {
      case .remove:
        dirInums = [".": 1]
        if let e = try ed.lookup(name, in: dir) { relinked.insert(e.inum) }
        try ed.unlink(name, in: dir, recursive: true)
        removed.append(d.path)
        touchedDirs.insert(parentPath(d.path))
      case .create:
        // A new inode takes the focus's link count; another name of an existing one
        // is counted at the end.
        if try !create(d.path, in: dir, name: name, ed, d, prepared) { relinked.insert(d.inum) }
        touchedDirs.insert(parentPath(d.path))
      case .replace:
        dirInums = [".": 1]
        try ed.unlink(name, in: dir, recursive: true)
        try create(d.path, in: dir, name: name, ed, d, prepared)
        touchedDirs.insert(parentPath(d.path))
      case .stampTids, .copyContent:
        let (e, fb, fino) = try focusElement(d.path, d, prepared)
        if fino.meta.type == .directory { focusDirs[d.path] = (fb, fino) }
        guard let mine = try ed.lookup(name, in: dir) else {
          try create(d.path, in: dir, name: name, ed, d, prepared)
          break
        }
        if d.kind == .stampTids, mine.inum == e.inum, mine.type == fino.meta.typeRaw {
          // Equal attributes and content under another tid: the focus's tid alone, on the
          // inode (its block and the index path above it); its data blocks stay as they are.
          // Its inode is read where the walk found it (no second descent of the index).
          try ed.loadInode(e.inum, from: d.nodeInode, walkedRoot: node.pfs.bref)
          if fino.meta.type == .directory {
            retidDirs[d.path] = e.inum
          } else if !fino.meta.isDirectData {
            try ed.setChildTids(e.inum, try focusChildTids(fino), cap: fb.modifyTid)
          }
          try ed.stamp(e.inum, tid: fb.modifyTid)
          try ed.finishInode(e.inum)
          outcome.tidsStamped += 1
        } else if mine.inum != e.inum || mine.type != fino.meta.typeRaw {
          dirInums = [".": 1]
          try ed.unlink(name, in: dir, recursive: true)
          try create(d.path, in: dir, name: name, ed, d, prepared)
          touchedDirs.insert(parentPath(d.path))
        } else {
          try ed.copyMeta(e.inum, from: fino.meta, filename: fino.filename, tid: fb.modifyTid)
          if fino.meta.type == .directory { retidDirs[d.path] = e.inum }
          try copyContent(e.inum, fino, ed, rewriteAll: d.kind == .copyContent(rewriteAll: true))
          try ed.stamp(e.inum, tid: fb.modifyTid)
          try ed.finishInode(e.inum)
        }
      case .leave, .root: break
      }
      outcome.pathsChanged += 1
    }
    for inum in relinked where ed.hasInode(inum) {
      if let (_, fino) = try? focus.reader.inodeWithBlockref(inum), fino.meta.type != .directory,
        (try? ed.inode(inum).meta.nlinks) != fino.meta.nlinks
      {
        try ed.setLinkCount(inum, fino.meta.nlinks)
      }
    }
    // Directories whose entries changed take the focus's tid once their children are
    // in place; the root last, and only when nothing below it was left undone.
    for p in touchedDirs.sorted(by: { $0.count > $1.count }) where p != "." && !under(p) {
      guard let (fb, fino) = focusDir(p) else { continue }
      let inum = try dirInums[p] ?? ed.resolve(p)
      try ed.copyMeta(inum, from: fino.meta, filename: fino.filename, tid: fb.modifyTid)
      retidDirs[p] = inum
    }
    for (p, inum) in retidDirs.sorted(by: { $0.key < $1.key }) where !under(p) {
      guard let (fb, fino) = focusDir(p) else { continue }
      try ed.setChildTids(inum, focusEntryTids(fino), cap: fb.modifyTid)
    }
    if !blocked {
      try ed.setChildTids(1, focusEntryTids(focus.pfs.inode), cap: focus.pfs.rootModifyTid)
      // The root's cluster-wide fields and the focus's tid (what DragonFly's quorum
      // compares). Never its node-local ones: pfs_type, pfs_fsid and pfs_clid are not
      // copied by copyMeta, and pfs_lsnap_tid stays the node's own (its own snapshots),
      // which copyMeta's max() keeps when the focus's is given as 0.
      var meta = focus.pfs.inode.meta
      meta.pfsLsnapTid = 0
      try ed.copyMeta(1, from: meta, filename: [], tid: focus.pfs.rootModifyTid)
    }
  }

  /// The focus's DATA blockrefs' tids of a file, by key.
  private func focusChildTids(_ fino: InodeData) throws -> [UInt64: UInt64] {
    var out: [UInt64: UInt64] = [:]
    guard fino.meta.size > 0 else { return out }
    var it = KeyRangeIterator(volume: focus.volume, array: fino.blockset) { [image = focus.image, inum = fino.meta.inum] in
      Location(image: image, structure: "inode \(inum)")
    }
    it.cachesBlocks = false
    var el = it.lookup(0, .max)
    while let e = el {
      switch e {
      case .hole(_, _, let err): throw err
      case .leaf(let b): out[b.key] = b.modifyTid
      }
      el = it.next()
    }
    return out
  }

  /// The focus's directory entries' tids, by key.
  private func focusEntryTids(_ dir: InodeData) throws -> [UInt64: UInt64] {
    var out: [UInt64: UInt64] = [:]
    var findings: [Finding] = []
    focus.reader.forEachEntry(of: dir, path: "", findings: &findings) { e in
      out[e.bref.key] = e.bref.modifyTid
      return true
    }
    if let f = findings.first(where: { $0.severity == .damage }) {
      throw FormatError(.damaged(directory: nil, finding: f.message), at: f.location)
    }
    return out
  }

  /// Creates `path` on the node as a copy of the focus's element (same inode number);
  /// true when that made a new inode (not one more name of an existing one).
  @discardableResult
  private func create(
    _ path: String, in dir: UInt64, name: [UInt8], _ ed: PFSEditor, _ known: PlanAction? = nil,
    _ prepared: FocusReadAhead.PreparedInode? = nil
  ) throws -> Bool {
    let (e, fb, fino) = try focusElement(path, known, prepared)
    let created = try ed.createCopy(
      name, in: dir, inum: e.inum, meta: fino.meta, filename: fino.filename, direntTid: e.bref.modifyTid, tid: fb.modifyTid)
    try copyContent(e.inum, fino, ed, rewriteAll: false)
    try ed.stamp(e.inum, tid: fb.modifyTid)
    // Complete: written now, so memory stays bounded (a later touch reloads it).
    try ed.finishInode(e.inum)
    return created
  }

  /// Copies file or symlink content: DIRECTDATA as a whole; DATA block by block, keeping
  /// blocks that already hold the focus's version (same tid, methods and check).
  private func copyContent(_ inum: UInt64, _ fino: InodeData, _ ed: PFSEditor, rewriteAll: Bool) throws {
    guard fino.meta.type == .regularFile || fino.meta.type == .symlink else { return }
    if fino.meta.isDirectData {
      try ed.setDirectData(inum, fino.directData)
      return
    }
    var mine = try ed.dataBlocks(inum)
    let size = fino.meta.size
    let target = try ed.methods(inum)
    let raw = target.comp == fino.meta.compAlgo && target.check == fino.meta.checkAlgo
    // The final size first, so every block below the EOF block is written as it comes.
    try ed.setSize(inum, size)
    if size > 0 {
      var it = KeyRangeIterator(volume: focus.volume, array: fino.blockset) { [image = focus.image] in
        Location(image: image, structure: "inode \(inum)")
      }
      it.cachesBlocks = false // each file is copied once
      var el = it.lookup(0, size - 1)
      while let e = el {
        switch e {
        case .hole(_, _, let err): throw err
        case .leaf(let fb):
          guard fb.type == .data else { break }
          let existing = mine.removeValue(forKey: fb.key)
          if !rewriteAll, let nb = existing, nb.modifyTid == fb.modifyTid, nb.methods == fb.methods, nb.check == fb.check,
            nb.radix == fb.radix
          {
            break
          }
          if raw, fb.radix != 0, fb.keybits == H2.pbufRadix, fb.compression != nil {
            // Same methods: the focus's block as it is on media, read straight into
            // the write path's buffer and verified there, by the write path's own thread
            // (beside this loop); a block that fails its check stops the resync there.
            try ed.putRawBlock(inum, source: fb, tid: fb.modifyTid) { [volume = focus.volume] dest in
              volume.readVerifiedDetached(fb, into: dest)
            }
            break
          }
          let logical = fb.radix == 0 ? nil : try focus.volume.logicalData(fb, logicalSize: 1 << Int(min(max(fb.keybits, 10), 16)))
          try ed.putBlock(inum, key: fb.key, logical: logical, tid: fb.modifyTid, sizeIsFinal: true)
        }
        el = it.next()
      }
    }
    // Blocks the focus does not have are holes there.
    for key in mine.keys where key < size { try ed.putBlock(inum, key: key, logical: nil, tid: 0) }
    try ed.setSize(inum, size)
  }
}
