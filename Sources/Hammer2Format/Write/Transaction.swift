/// A leaf of a table being edited.
enum PendingLeaf {
  /// Unchanged, or already written by this transaction.
  case existing(Blockref)
  /// A DIRENT whose name lives in a 1 KiB block not yet written.
  case nameBlock(Blockref, name: [UInt8])
  /// File data not yet written: the logical block content (at most 64 KiB).
  case data(logical: [UInt8])
  /// An inode edited in this transaction (written at commit, children first).
  case inode(UInt64)
}

/// One copy-on-write transaction on one image (docs/format.md §12): new blocks go to
/// space the freemap marks free, modified freemap leaves and nodes (and every node on
/// their path) to their next rotation set,
/// and the volume header — written last, into the next slot, after an fsync — is the
/// commit point. Until then the image reads exactly as before; a crash at any point
/// leaves the previous state.
public final class Transaction {
  /// The image, opened read-write and locked.
  public let image: WritableImage
  /// A reader of the committed state.
  public let volume: Volume
  /// The flush id of this transaction (`T`: highest valid header mirror_tid + 1).
  public let mirrorTid: UInt64
  var header: VolumeHeader
  let allocator: FreemapAllocator
  private var superRoot: InodeData
  private var superRootLeaves: [UInt64: PendingLeaf]
  private var editors: [UInt64: PFSEditor] = [:] // by key under the super-root
  private var committed = false
  /// Test-only: fill the freemap to its last chunk once this commit's blocks are placed.
  var fillFreemapForTest = false
  /// Bytes written by this transaction per kind of block (BlockrefType names, "FREEMAP"
  /// and "VOLUME HEADER"): what a resync reports, e.g. that a tid-only resync wrote no
  /// DATA block.
  public internal(set) var bytesWrittenByType: [String: UInt64] = [:]

  /// Opens `path` for one transaction through `opener`; `cacheBudget` bounds the block
  /// cache of its reader (the committed state it edits).
  public init(path: String, opener: DeviceOpener = LocalDeviceOpener(), cacheBudget: Int = 64 << 20) throws(FormatError) {
    image = try WritableImage(path: path, opener: opener)
    volume = try Volume(io: image, cacheBudget: cacheBudget, opener: opener)
    header = volume.header
    mirrorTid = (volume.headerCopies.compactMap { $0.isValid ? $0.header?.mirrorTid : nil }.max() ?? header.mirrorTid) + 1
    allocator = try FreemapAllocator(volume: volume, header: header)
    if header.freemapTid < header.mirrorTid {
      throw FormatError(
        .unsupported(.freemapAwaitingRecovery(freemapTid: header.freemapTid, mirrorTid: header.mirrorTid)),
        at: Location(image: path, offset: UInt64(volume.headerSlot) * H2.zoneBytes64, structure: "volume header #\(volume.headerSlot)"))
    }
    superRoot = try volume.superRoot()
    superRootLeaves = [:]
    var it = KeyRangeIterator(
      volume: volume, array: superRoot.blockset, location: volume.location(of: volume.superRootBlockref, "super-root inode"))
    var el = it.lookup(0, .max)
    while let e = el {
      switch e {
      case .leaf(let b): superRootLeaves[b.key] = .existing(b)
      case .hole(_, _, let err): throw err
      }
      el = it.next()
    }
  }

  // MARK: space

  /// Bytes this transaction can still allocate: the volume header's `allocator_free`
  /// less what this transaction allocated so far and less the free bytes no allocation
  /// can reach (`VolumeHeader.allocatableBytes`).
  public var freeBytes: UInt64 { allocator.freeBytes }

  /// The bytes of freemap chunks that blocks of `blockSizes` (each a power of two,
  /// 1..64 KiB, as stored on media) take at least: 16 KiB and larger blocks their size,
  /// smaller ones packed into chunks (plus one partly used chunk for each of the other
  /// three classes that pack).
  public static func bytesNeeded(blockSizes: [Int]) -> UInt64 {
    FreemapAllocator.bytesNeeded(blockSizes: blockSizes)
  }

  /// Preflight before writing anything: throws `FormatError.Kind.noSpace` ("no space: N
  /// bytes needed for WHAT, M bytes free", located at this image) unless `bytes` more
  /// can be allocated. Checks free 16 KiB chunks, not their contiguity: a nearly full,
  /// fragmented volume can still fail a 64 KiB block later, with the same error and
  /// again before that block is written.
  public func requireSpace(bytes: UInt64, for what: String) throws(FormatError) {
    try allocator.requireSpace(bytes, for: what)
  }

  /// `requireSpace(bytes:for:)` for blocks of these media sizes.
  public func requireSpace(blockSizes: [Int], for what: String) throws(FormatError) {
    try allocator.requireSpace(Self.bytesNeeded(blockSizes: blockSizes), for: what)
  }

  /// The PFSs as they stand in this transaction.
  public func pfsList() throws(FormatError) -> [PFSInfo] {
    var out: [PFSInfo] = []
    for key in superRootLeaves.keys.sorted() {
      if let ed = editors[key] {
        out.append(PFSInfo(bref: ed.pfsBref, inode: ed.root.data))
      } else if case .existing(let b) = superRootLeaves[key], b.type == .inode {
        out.append(PFSInfo(bref: b, inode: try volume.inode(b)))
      }
    }
    return out
  }

  /// An editor for the PFS named `name` (the same editor on every call).
  public func editor(pfs name: String) throws(FormatError) -> PFSEditor {
    for (_, ed) in editors where ed.root.data.filenameString == name { return ed }
    guard let info = try pfsList().first(where: { $0.name == name }) else {
      throw FormatError(.notFound(.pfs(name: name, have: nil)), at: Location(image: image.label, structure: "super-root"))
    }
    let ed = try PFSEditor(transaction: self, bref: info.bref, root: info.inode)
    editors[info.bref.key] = ed
    return ed
  }

  /// The editor for the PFS whose cluster id is `clid` and fsid `fsid`.
  public func editor(clid: H2UUID, fsid: H2UUID) throws(FormatError) -> PFSEditor {
    guard let info = try pfsList().first(where: { $0.clid == clid && $0.fsid == fsid }) else {
      throw FormatError(
        .notFound(.pfsWithIDs(clid: clid, fsid: fsid)), at: Location(image: image.label, structure: "super-root"))
    }
    return try editor(pfs: info.name)
  }

  /// A free key under the super-root for `name` (`hammer2_inode_create_pfs`: dirhash,
  /// then the collision iterator).
  private func pfsKey(for name: [UInt8]) throws(FormatError) -> UInt64 {
    let h = DirHash.hash(name)
    var k = h + 1
    while superRootLeaves[k] != nil {
      k = k == (h | H2.dirhashLomask) ? h : k + 1
      if k == h + 1 { throw FormatError(.editRefused(.noFreePFSKey), at: nil) }
    }
    return k
  }

  /// Creates a PFS under the super-root (`hammer2_ioctl_pfs_create`): an empty root
  /// directory with the given identity, type and methods.
  @discardableResult
  public func createPFS(
    name: String, type: PFSType, clid: H2UUID, fsid: H2UUID, nmasters: UInt8,
    compAlgo: UInt8 = CompressionMethod.lz4.rawValue, checkAlgo: UInt8 = CheckMethod.xxhash64.rawValue,
    time: UInt64
  ) throws(FormatError) -> PFSEditor {
    let nameBytes = Array(name.utf8)
    guard !nameBytes.isEmpty, nameBytes.count < 256 else { throw FormatError(.editRefused(.pfsNameLength)) }
    guard try !pfsList().contains(where: { $0.name == name }) else { throw FormatError(.editRefused(.pfsExists(name: name))) }
    let key = try pfsKey(for: nameBytes)
    var ino = InodeData([UInt8](repeating: 0, count: InodeData.byteCount))
    ino.meta.version = 1
    ino.meta.typeRaw = ObjectType.directory.rawValue
    ino.meta.opFlags = OpFlags.pfsRoot
    ino.meta.mode = 0o755
    ino.meta.inum = 1
    ino.meta.nlinks = 1
    ino.meta.iparent = 1
    ino.meta.nameKey = key
    ino.meta.nameLen = UInt16(nameBytes.count)
    ino.meta.compAlgo = compAlgo
    ino.meta.checkAlgo = checkAlgo
    ino.meta.pfsTypeRaw = type.rawValue
    ino.meta.pfsNmasters = nmasters
    ino.meta.pfsClid = clid
    ino.meta.pfsFsid = fsid
    ino.meta.ctime = time
    ino.meta.mtime = time
    ino.meta.btime = time
    ino.filenameArea = nameBytes + [UInt8](repeating: 0, count: 256 - nameBytes.count)
    var bref = Blockref()
    bref.typeRaw = BlockrefType.inode.rawValue
    bref.methods = forcedMetadataCheck(superRoot.meta.checkAlgo).rawValue << 4 | (superRoot.meta.compAlgo & 0x0F)
    bref.key = key
    bref.flags = BlockrefFlags.pfsRoot
    let ed = try PFSEditor(transaction: self, bref: bref, root: ino, isNew: true)
    ed.root.modifyTid = max(superRootModifyTid() + 1, 1)
    editors[key] = ed
    superRootLeaves[key] = .inode(1)
    return ed
  }

  /// Snapshots PFS `source` as a new PFS `name` (`hammer2_ioctl_pfs_snapshot`): its
  /// root shares the source's whole tree; both get `pfs_lsnap_tid`.
  public func snapshot(source: String, name: String, clid: H2UUID, fsid: H2UUID, time: UInt64) throws(FormatError) {
    let src = try editor(pfs: source)
    guard !src.hasPendingChanges else {
      throw FormatError(.editRefused(.uncommittedSnapshot))
    }
    let nameBytes = Array(name.utf8)
    guard try !pfsList().contains(where: { $0.name == name }) else { throw FormatError(.editRefused(.pfsExists(name: name))) }
    let key = try pfsKey(for: nameBytes)
    let tid = src.modifyTid
    src.root.data.meta.pfsLsnapTid = tid
    src.root.touched = true
    var ino = src.root.data
    ino.meta.pfsTypeRaw = PFSType.master.rawValue
    ino.meta.pfsSubtype = 1
    ino.meta.pfsClid = clid
    ino.meta.pfsFsid = fsid
    ino.meta.pfsNmasters = 0
    ino.meta.pfsInum = src.root.data.meta.pfsInum + 1
    ino.meta.pfsLsnapTid = tid
    ino.meta.compAlgo = superRoot.meta.compAlgo
    ino.meta.checkAlgo = superRoot.meta.checkAlgo
    ino.meta.nameKey = key
    ino.meta.nameLen = UInt16(nameBytes.count)
    ino.meta.ctime = time
    ino.meta.btime = time
    ino.filenameArea = nameBytes + [UInt8](repeating: 0, count: 256 - nameBytes.count)
    var bref = src.pfsBref
    bref.key = key
    bref.leafCount = 0
    let ed = try PFSEditor(transaction: self, bref: bref, root: ino, isNew: true)
    ed.root.sharedTableBref = src.pfsBref // the blockset is shared, stats copied
    ed.root.modifyTid = tid
    editors[key] = ed
    superRootLeaves[key] = .inode(1)
  }

  /// Removes PFS `name` from the super-root (its blocks are reclaimed by bulkfree).
  public func deletePFS(_ name: String) throws(FormatError) {
    guard let info = try pfsList().first(where: { $0.name == name }) else { throw FormatError(.notFound(.pfs(name: name, have: nil))) }
    editors[info.bref.key] = nil
    superRootLeaves[info.bref.key] = nil
  }

  private func superRootModifyTid() -> UInt64 { volume.superRootBlockref.modifyTid }

  /// True when nothing was changed.
  public var isEmpty: Bool { editors.values.allSatisfy { !$0.hasPendingChanges } && !superRootChanged }
  private var superRootChanged: Bool {
    superRootLeaves.count != superRoot.blockset.filter { !$0.isEmpty }.count || editors.values.contains { $0.isNew }
  }

  /// Writes everything and commits: data and inodes, tables bottom-up to the super-root,
  /// the freemap, fsync, then the volume header into the next rotation slot, fsync.
  /// Returns the slot written. A transaction without changes writes nothing.
  @discardableResult
  public func commit() throws(FormatError) -> Int? {
    precondition(!committed, "a transaction commits once") // Safe: programming error, not disk data.
    committed = true
    if isEmpty {
      image.unlock()
      return nil
    }
    for (key, ed) in editors where ed.hasPendingChanges || ed.isNew {
      superRootLeaves[key] = .existing(try ed.flush())
    }
    // The super-root: its table of PFS roots, then the inode itself.
    var leaves: [Blockref] = []
    for key in superRootLeaves.keys.sorted() {
      // Safe: the loop above turned every pending PFS into an existing blockref.
      guard case .existing(let b) = superRootLeaves[key]! else { continue }
      leaves.append(b)
    }
    var srBref = volume.superRootBlockref
    let method = forcedMetadataCheck(srBref.checkMethodRaw)
    let table = try buildTable(leaves[...], capacity: 4, checkMethod: method)
    var stats = TreeStats()
    for c in table where !c.isEmpty { stats.add(c) }
    var sr = superRoot
    sr.u = encodeBlockrefs(table)
    srBref.mirrorTid = mirrorTid
    srBref.modifyTid = max(srBref.modifyTid, stats.maxModifyTid)
    stats.apply(to: &srBref)
    try placeBlock(&srBref, bytes: sr.encode(), type: .inode)
    header.srootBlockset[0] = srBref
    if fillFreemapForTest { try allocator.fillForTest() }
    // The freemap last among the blocks: it must cover everything allocated above. Its
    // blocks have fixed places (nothing is allocated), so it cannot run out of space.
    header.freemapBlockset = try allocator.commit(oldBlockset: header.freemapBlockset, mirrorTid: mirrorTid) {
      off, bytes, what throws(FormatError) in
      try image.write(at: off, bytes, structure: what)
      bytesWrittenByType["FREEMAP", default: 0] += UInt64(bytes.count)
    }
    header.mirrorTid = mirrorTid
    header.freemapTid = mirrorTid
    header.allocatorFree = allocator.allocatorFree
    try image.sync()
    // Next slot in rotation; slot 0 when that zone is not on the device (§2.8). Only
    // the root volume's header rotates (§2.6): `volu_size` here is the root volume's
    // and it starts at logical 0, so the slot's logical offset is its device offset
    // there; the other volumes' headers are never rewritten.
    var slot = (volume.headerSlot + 1) % H2.numVolHeaders
    if UInt64(slot) * H2.zoneBytes64 + H2.zoneSeg > header.voluSize { slot = 0 }
    let encodedHeader = header.encode(recomputeCRCs: true)
    try image.writeDurably(at: UInt64(slot) * H2.zoneBytes64, encodedHeader, structure: "volume header #\(slot)")
    bytesWrittenByType["VOLUME HEADER", default: 0] += UInt64(encodedHeader.count)
    image.unlock()
    return slot
  }
}
