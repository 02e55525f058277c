import Dispatch
import Foundation
import Hammer2Format

/// What every directory walker of one cluster walk shares, read-only: set before the
/// walkers start and never changed, so walkers on several threads may read it.
struct WalkShared: @unchecked Sendable {
  var images: [String]
  var roles: [Role]
  var nquorum: Int
  var mode: WalkMode
  /// The cluster-level decision at the PFS root.
  var rootResolution: Resolution
  /// Inode numbers whose index entry is not identical on every node.
  var suspects: Set<UInt64>
  /// Each suspect's index entry per node, when the scan met one.
  var suspectRefs: [UInt64: [Blockref?]]
  /// Fast mode: the directories worth entering; nil = every directory.
  var enter: Set<UInt64>?
  /// Fast mode: suspects by the directory named as their parent (hints for remote nodes).
  var suspectsByParent: [UInt64: [UInt64]] = [:]
  /// Classify soft masters like any other node (else their differences are `softLocal`).
  var overwriteSoftMasters = false
  /// A resumable check's run: only paths whose inode number lies here are counted and
  /// reported (the others belong to another run of the pass); nil: every path.
  var counted: Range<UInt64>? = nil
}

/// One directory to list on every node: per node its inode (nil = the node lacks it) or
/// why it could not be read (then its entries are unknown there, never absent).
struct DirectoryTask: @unchecked Sendable {
  var path: String
  var dirs: [InodeData?]
  var unreadable: [FormatError?]
  /// Path components below the PFS root (0 for the root).
  var depth: Int
}

/// The directory walk of one thread (docs/resync-semantics.md §5.5–5.8): lists one directory
/// on every node together, resolves each path by quorum, classifies each node's copy
/// and hands differing paths to `sink`. Reads only through its own readers (one per
/// node: a `Volume` and its caches belong to one thread) and keeps its own counters and
/// findings, which `ClusterWalker` merges in walk order.
final class DirectoryWalker {
  let shared: WalkShared
  let readers: [PFSReader]
  /// Per node: its reads wait for round trips (`ImageIO.isRemote`), so listing hints ahead.
  private let remote: [Bool]
  /// Receives each differing path, in walk order.
  var sink: (Difference) -> Void = { _ in }
  /// Throttle: called after each block read with its size (sequential walks only).
  var onBytes: ((UInt64) -> Void)?
  /// Counters; `damagedBlocks` stays zero (counted when findings are merged).
  private(set) var stats: WalkStats
  private(set) var nodeClasses: [Set<PathClass>]
  /// Damage met, in walk order, each structure once (per walker).
  var findings: [(node: Int, finding: Finding)] = []
  private var seenFindings = Set<Location>()

  init(shared: WalkShared, readers: [PFSReader]) {
    self.shared = shared
    self.readers = readers
    remote = readers.map { $0.volume.io.isRemote }
    stats = WalkStats(n: readers.count)
    nodeClasses = .init(repeating: [], count: readers.count)
  }

  private func note(_ f: Finding, node: Int) {
    if seenFindings.insert(f.location).inserted { findings.append((node, f)) }
  }

  struct NodeView {
    var dirent: DirEntry?
    var inode: InodeData?
    var inodeBref: Blockref?
    var unknown: FormatError?
    var damaged: FormatError?
    var contentDigest: UInt64?
    var version: Version?
  }

  /// The DIRENT every node holds at the cursor's key when they are all identical (same
  /// inode number, type and name stored inline), else nil.
  static func sameInlineDirent(_ slots: [Slot]) -> Blockref? {
    guard case .present(let first)? = slots.first, first.type == .dirent, (1...64).contains(first.direntNameLength) else { return nil }
    for slot in slots.dropFirst() {
      guard case .present(let b) = slot, b.typeRaw == first.typeRaw, b.embed0 == first.embed0, b.embed1 == first.embed1,
        b.check == first.check
      else { return nil }
    }
    return first
  }

  /// Walks the whole subtree below `task` (depth first, the last entry's subtree first).
  func walk(_ task: DirectoryTask) {
    var stack = [task]
    while let t = stack.popLast() { list(t) { stack.append($0) } }
  }

  /// Lists one directory on every node: decides each of its entries and hands every
  /// directory found below to `push`, in key order.
  func list(_ task: DirectoryTask, push: (DirectoryTask) -> Void) {
    let n = readers.count
    let path = task.path
    let dirs = task.dirs
    let unreadable = task.unreadable
    /// The per-node directories to enter for `views` (a directory somewhere).
    func subtask(_ path: String, _ views: [NodeView]) -> DirectoryTask {
      DirectoryTask(
        path: path, dirs: views.map { $0.inode?.meta.type == .directory ? $0.inode : nil },
        unreadable: views.map { v in
          v.inode == nil && v.dirent?.typeRaw == ObjectType.directory.rawValue ? v.damaged ?? v.unknown : v.unknown
        },
        depth: task.depth + 1)
    }
    // The cursor reads the nodes' directory blocks one node after another: on remote
    // nodes, ask for them and for the inodes of the suspects named there first, so that
    // their round trips overlap.
    for (i, d) in dirs.enumerated() where remote[i] {
      guard let d else { continue }
      Self.hintBlocks(of: d, readers[i].volume)
      for s in shared.suspectsByParent[d.meta.inum] ?? [] { if let r = shared.suspectRefs[s]?[i] { readers[i].volume.willNeed(r) } }
    }
    var cursor = ClusterCursor<DirSource>(
      dirs.enumerated().map { i, d in
        DirSource(reader: readers[i], dir: d, unreadable: unreadable[i])
      })
    var more = cursor.lookup(H2.dirhashVisible, .max)
    while more {
      // The common case decided from the blockrefs alone, before decoding anything: the
      // same inline-named DIRENT on every node, for an inode that is no suspect (and a
      // directory the walk need not enter). The full check below agrees with this.
      if let b = Self.sameInlineDirent(cursor.slots), !shared.suspects.contains(b.direntInum),
        b.direntTypeRaw != ObjectType.directory.rawValue || shared.enter.map({ !$0.contains(b.direntInum) }) == true
      {
        more = cursor.next()
        continue
      }
      var views = [NodeView](repeating: NodeView(), count: n)
      var name: [UInt8]?
      for i in 0..<n {
        switch cursor.slots[i] {
        case .present(let b):
          do throws(FormatError) {
            if let e = try readers[i].entry(from: b) {
              views[i].dirent = e
              if name == nil { name = e.name }
            }
          } catch {
            views[i].unknown = error
            note(Finding(error: error, fallback: readers[i].volume.location(of: b), path: path), node: i)
          }
        case .unknown(let e):
          views[i].unknown = e
          note(Finding(error: e, fallback: Location(image: shared.images[i], structure: "directory"), path: path), node: i)
        case .absent, .notParticipating: break
        }
      }
      // Different names at one hash key are different paths: handle the first name
      // now; nodes holding another name there show it as its own path below.
      let childName = String(decoding: name ?? [], as: UTF8.self)
      let childPath = path == "." ? childName : path + "/" + childName
      var others: [(Int, DirEntry)] = []
      for i in 0..<n {
        if let d = views[i].dirent, d.name != name! { // Safe: name is set when any dirent is.
          others.append((i, d))
          views[i].dirent = nil
        }
      }
      // Fast mode: an entry identical on every node (same name, inode number and type)
      // whose inode's index entry is identical everywhere too is in sync without
      // reading anything more; a directory is entered only when it leads to a suspect
      // (or when no such restriction could be proven, then every directory).
      if name != nil, others.isEmpty, views.allSatisfy({ $0.unknown == nil }),
        let first = views.first?.dirent,
        views.allSatisfy({ $0.dirent?.inum == first.inum && $0.dirent?.typeRaw == first.typeRaw }),
        !shared.suspects.contains(first.inum),
        first.typeRaw != ObjectType.directory.rawValue || shared.enter.map({ !$0.contains(first.inum) }) == true
      {
        more = cursor.next()
        continue
      }
      if name != nil {
        loadInodes(&views, path: childPath)
        _ = decide(path: childPath, views: &views, isRoot: false)
        // Descend into directories present anywhere.
        let isDir = views.contains { $0.inode?.meta.type == .directory }
        // Always descend, also in fast mode: files inside may differ although the
        // directory did not change (inodes live in the PFS index, not under it).
        if isDir {
          // Listed soon (depth first): its blocks can be under way meanwhile.
          for (i, v) in views.enumerated() where remote[i] && v.inode?.meta.type == .directory {
            Self.hintBlocks(of: v.inode!, readers[i].volume) // Safe: checked.
          }
          push(subtask(childPath, views))
        }
      }
      for (i, d) in others {
        var solo = [NodeView](repeating: NodeView(), count: n)
        solo[i].dirent = d
        let p = path == "." ? d.nameString : path + "/" + d.nameString
        loadInodes(&solo, path: p)
        _ = decide(path: p, views: &solo, isRoot: false)
        if solo[i].inode?.meta.type == .directory { push(subtask(p, solo)) }
      }
      more = cursor.next()
    }
  }

  /// A read-ahead hint for a directory's indirect blocks (its entries' blockrefs; names
  /// up to 64 bytes are embedded there, so these are what listing it reads).
  static func hintBlocks(of dir: InodeData, _ volume: Volume) {
    guard !dir.meta.isDirectData else { return }
    for b in dir.blockset where !b.isEmpty && b.type == .indirect { volume.willNeed(b) }
  }

  /// Reads each node's inode for its entry; in deep mode (or for suspects) the content
  /// digest too.
  func loadInodes(_ views: inout [NodeView], path: String) {
    // A few nodes: small arrays, not Sets (hashing cost more than comparing).
    let inums = views.compactMap { $0.dirent?.inum }.uniqued()
    for i in views.indices {
      guard let d = views[i].dirent else { continue }
      let reader = readers[i]
      do throws(FormatError) {
        var found: (Blockref, InodeData)?
        if let b = shared.suspectRefs[d.inum]?[i] { found = try reader.inode(at: b, inum: d.inum) }
        if found == nil { found = try reader.inodeWithBlockref(d.inum) }
        let (b, ino) = found! // Safe: set just above.
        views[i].inode = ino
        views[i].inodeBref = b
      } catch {
        // Unreadable, or named by a directory entry but missing from the inode index.
        views[i].damaged = error
        note(
          Finding(error: error, fallback: Location(image: shared.images[i], structure: "inode \(d.inum)"), path: path), node: i)
      }
    }
    // Content is read where it can change the verdict: copies under different tids (the
    // same bytes under another tid are in sync) or different inodes; in deep mode every
    // suspect (its stored content differed somewhere). Equal tids are trusted in fast mode.
    let tids = views.compactMap { $0.inodeBref?.modifyTid }.uniqued()
    let suspect = inums.contains { shared.suspects.contains($0) }
    let needContent = inums.count > 1 || (suspect && (shared.mode == .deep || tids.count > 1))
    // Fast mode, attributes already different: the versions differ whatever the bytes,
    // so the content is compared by its blockrefs (methods and check codes) without
    // reading the data; that only itemizes "data" for the report.
    let metas = views.indices.compactMap { i in views[i].inode.flatMap { ino in views[i].dirent.map { Self.identity($0, ino, content: 0) } }
    }
    .uniqued()
    let byBlockrefs = shared.mode == .fast && metas.count > 1
    // Big files on several nodes are read in parallel (each node has its own volume).
    var early = [ContentDigest?](repeating: nil, count: views.count)
    // Fast mode, same inode and attributes under other tids (a node rebuilt from the same
    // files, a no-op setcomp): content stored identically everywhere (the same DATA
    // blockrefs: keys, sizes, methods and strong check codes) is equal content, so it is
    // not read; anything else is read and compared below.
    if needContent && !byBlockrefs && shared.mode == .fast && inums.count == 1 && metas.count == 1 {
      let stored = views.indices.map { i -> ContentDigest? in
        guard views[i].dirent != nil, let ino = views[i].inode, ino.meta.type == .regularFile || ino.meta.type == .symlink else {
          return nil
        }
        return Self.blockrefDigest(readers[i], ino, path: path)
      }
      let present = stored.compactMap { $0 }
      if present.count > 1, present.allSatisfy({ $0.strongChecks && $0.findings.isEmpty && $0.value == present[0].value }) {
        early = stored
      }
    }
    if needContent && !byBlockrefs && early.allSatisfy({ $0 == nil }) {
      let big = views.indices.filter { i in
        guard let m = views[i].inode?.meta, views[i].dirent != nil else { return false }
        return (m.type == .regularFile || m.type == .symlink) && m.size >= 4 << 20
      }
      let distinct = Set(big.map { ObjectIdentifier(readers[$0].volume) }).count == big.count
      if big.count > 1, distinct {
        let jobs = big.map { (readers[$0], views[$0].inode!) } // Safe: filtered above.
        let results = ParallelResults<ContentDigest>(count: jobs.count)
        let box = UncheckedSendable(jobs)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { k in
          results.set(k, Self.computeDigest(box.value[k].0, box.value[k].1, path: path))
        }
        for (k, i) in big.enumerated() { early[i] = results.get(k) }
      }
    }
    for i in views.indices {
      guard let d = views[i].dirent, let ino = views[i].inode, let b = views[i].inodeBref else { continue }
      do throws(FormatError) {
        var content: UInt64 = 0
        if needContent, ino.meta.type == .regularFile || ino.meta.type == .symlink {
          if byBlockrefs {
            content = try finishDigest(i, Self.blockrefDigest(readers[i], ino, path: path))
          } else if let d = early[i] {
            content = try finishDigest(i, d)
          } else {
            content = try digestContent(i, ino, path: path)
          }
        }
        views[i].contentDigest = content
        views[i].version = Version(tid: b.modifyTid, identity: Self.identity(d, ino, content: content))
      } catch {
        views[i].damaged = error
        note(
          Finding(error: error, fallback: Location(image: shared.images[i], structure: "inode \(d.inum)"), path: path), node: i)
      }
    }
  }

  /// Digest of a file's logical content (holes and zero blocks alike read as zeros).
  private func digestContent(_ i: Int, _ ino: InodeData, path: String) throws(FormatError) -> UInt64 {
    try finishDigest(i, Self.computeDigest(readers[i], ino, path: path))
  }

  /// What reading one copy's content gave: its digest, what went wrong, the reads.
  struct ContentDigest: Sendable {
    var value: UInt64 = 0
    var findings: [Finding] = []
    var blocks: UInt64 = 0
    var bytes: UInt64 = 0
    /// `blockrefDigest` only: every stored DATA block carries a strong check code
    /// (XXHASH64 or SHA192), so equal digests mean equal stored bytes.
    var strongChecks = true
  }

  /// Reads and digests a file's logical content on one node. Touches nothing but that
  /// node's reader, so several nodes can be digested at once.
  static func computeDigest(_ reader: PFSReader, _ ino: InodeData, path: String) -> ContentDigest {
    var out = ContentDigest()
    let h = Hasher64()
    var pos: UInt64 = 0
    let size = ino.meta.size
    reader.forEachDataBlock(of: ino, path: path, findings: &out.findings) { off, bytes in
      guard off < size else { return }
      if off > pos { h.addZeros(off - pos) }
      let n = Int(min(UInt64(bytes.count), size - off))
      h.add(bytes[0..<n])
      pos = off + UInt64(n)
      out.blocks += 1
      out.bytes += UInt64(bytes.count)
    }
    if size > pos { h.addZeros(size - pos) }
    out.value = h.value
    return out
  }

  /// A digest of how a file's content is stored (its DATA blockrefs: keys, methods,
  /// sizes, check codes; DIRECTDATA bytes as they are) without reading the data blocks.
  static func blockrefDigest(_ reader: PFSReader, _ ino: InodeData, path: String) -> ContentDigest {
    var out = ContentDigest()
    let h = Hasher64()
    let m = ino.meta
    if m.isDirectData {
      h.add(ino.directData[0..<Int(min(m.size, UInt64(ino.directData.count)))])
    } else if m.size > 0 {
      var it = KeyRangeIterator(volume: reader.volume, array: ino.blockset) { [label = reader.volume.label, inum = m.inum] in
        Location(image: label, structure: "inode \(inum)")
      }
      it.cachesBlocks = false // each file's digest is taken once
      var el = it.lookup(0, m.size - 1)
      while let e = el {
        switch e {
        case .hole(_, _, let err):
          out.findings.append(Finding(error: err, fallback: reader.volume.location(of: reader.pfs.bref), path: path))
        case .leaf(let b):
          // Weak check methods make this coarse; it only itemizes "data" for files whose
          // attributes already differ.
          h.addStoredBlock(b, withCheck: true)
          if b.radix != 0, b.checkMethod != .xxhash64, b.checkMethod != .sha192 { out.strongChecks = false }
        }
        el = it.next()
      }
      out.findings += it.findings.map {
        var f = $0
        f.path = path
        return f
      }
    }
    out.value = h.value
    return out
  }

  private func finishDigest(_ i: Int, _ d: ContentDigest) throws(FormatError) -> UInt64 {
    // Deep mode counts the scan's reads; these are second looks at suspects.
    if shared.mode == .fast {
      stats.blocksChecked[i] += d.blocks
      stats.bytesChecked[i] += d.bytes
      onBytes?(d.bytes)
    }
    if let f = d.findings.first(where: { $0.severity == .damage }) {
      for f in d.findings { note(f, node: i) }
      throw FormatError(.damaged(directory: nil, finding: f.message), at: f.location)
    }
    return d.value
  }

  /// A path's identity on one node: the entry, the cluster-wide inode attributes and
  /// the content digest. Not the node-local parts (block tables, check codes of
  /// tables, iparent, name_key, btime).
  static func identity(_ d: DirEntry, _ ino: InodeData, content: UInt64) -> UInt64 {
    let m = ino.meta
    let h = Hasher64()
    h.add(d.name)
    h.add(d.inum)
    h.addClusterWide(m)
    h.add(content)
    return h.value
  }

  /// What differs between two copies of a path, for the report.
  private static func whatDiffers(_ a: NodeView, _ f: NodeView) -> [String] {
    guard let x = a.inode?.meta, let y = f.inode?.meta else { return [] }
    var out: [String] = []
    if x.typeRaw != y.typeRaw { out.append("type") }
    if x.mode != y.mode { out.append("mode") }
    if x.size != y.size { out.append("size") }
    if x.mtime != y.mtime { out.append("mtime") }
    if x.ctime != y.ctime { out.append("ctime") }
    if x.uid != y.uid || x.gid != y.gid { out.append("owner") }
    if x.nlinks != y.nlinks { out.append("nlinks") }
    if x.compAlgo != y.compAlgo || x.checkAlgo != y.checkAlgo { out.append("methods") }
    if x.inum != y.inum { out.append("inum") }
    if a.contentDigest != nil, f.contentDigest != nil, a.contentDigest != f.contentDigest, a.contentDigest != 0 || f.contentDigest != 0 {
      out.append("data")
    }
    return out
  }

  /// Resolves one path across the nodes, classifies each node and emits a Difference
  /// when any node is not in sync. Returns the classes.
  @discardableResult
  func decide(path: String, views: inout [NodeView], isRoot: Bool) -> [PathClass] {
    let n = shared.images.count
    let inputs = (0..<n).map { i -> ResolveInput in
      let v = views[i]
      if v.damaged != nil, let d = v.dirent {
        return ResolveInput(role: shared.roles[i], version: Version(tid: 0, identity: d.inum), errored: true)
      }
      return ResolveInput(role: shared.roles[i], version: v.unknown != nil ? nil : v.version, errored: v.unknown != nil)
    }
    let r = isRoot ? shared.rootResolution : resolve(inputs, nquorum: shared.nquorum)
    var classes = [PathClass](repeating: .inSync, count: n)
    var tidsOnly = [Bool](repeating: false, count: n)
    let f = r.focus
    for i in 0..<n {
      let v = views[i]
      if r.absentByQuorum {
        classes[i] = v.dirent == nil && v.unknown == nil ? .inSync : (v.unknown != nil ? .inHole : .extra)
        continue
      }
      guard let fi = f, let fv = r.version else {
        // No version has a quorum.
        // Without a quorum, copies that agree in attributes and content are not a
        // difference, whatever their tids; anything else needs a human.
        let allSame = Set(inputs.map { $0.version?.identity }).count == 1 && !inputs.contains { $0.errored || $0.version == nil }
        classes[i] = allSame ? .inSync : .conflict
        continue
      }
      if v.unknown != nil {
        classes[i] = .inHole
        continue
      }
      if v.damaged != nil {
        classes[i] = .damaged
        continue
      }
      guard let mine = v.version else {
        classes[i] = .missing
        continue
      }
      if mine == fv { continue }
      if let t = v.inode?.meta.typeRaw, let ft = views[fi].inode?.meta.typeRaw, t != ft {
        classes[i] = .shapeMismatch
        continue
      }
      if mine.identity == fv.identity {
        // Same attributes and content under another tid: DragonFly compares modify_tids
        // (hammer2_cluster_check), so it never counts this copy at the focus's version.
        // Stale whichever tid is higher: only the tid is copied, never a byte of data.
        // The PFS root's tid covers the whole PFS: it is decided after the walk
        // (`ClusterWalker.decideRootTid`), when it is known whether anything else differs.
        if isRoot { continue }
        classes[i] = .stale
        tidsOnly[i] = true
        continue
      }
      classes[i] = mine.tid < fv.tid ? .stale : mine.tid > fv.tid ? .ahead : .splitBrain
    }
    Self.markSoftLocal(&classes, &tidsOnly, shared: shared, focus: f)
    guard classes.contains(where: { $0 != .inSync }) else { return classes }
    let ref = f.map { views[$0] } ?? views.first { $0.inode != nil } ?? views[0]
    let inum = ref.dirent?.inum ?? ref.inode?.meta.inum ?? views.compactMap { $0.dirent?.inum }.first ?? 0
    if let r = shared.counted, !r.contains(inum) { return classes }
    var bytes = [UInt64](repeating: 0, count: n)
    var element = "inode"
    stats.count(classes, tidsOnly: tidsOnly)
    for i in 0..<n where classes[i] != .inSync {
      nodeClasses[i].insert(classes[i])
      switch classes[i] {
      case .stale where tidsOnly[i]: break
      case .missing, .stale, .ahead, .splitBrain, .damaged, .shapeMismatch:
        if let m = ref.inode?.meta, m.type == .regularFile || m.type == .symlink { bytes[i] = m.size }
      default: break
      }
      stats.bytesToWrite[i] += bytes[i]
      stats.mediaBytesToWrite[i] = SpaceEstimate.plus(stats.mediaBytesToWrite[i], SpaceEstimate.fileMediaBytes(logical: bytes[i]))
    }
    if classes.contains(.missing) || classes.contains(.extra) {
      element = "dirent"
    } else if classes.contains(.shapeMismatch) {
      element = "type"
    } else if views.contains(where: { Self.whatDiffers($0, ref) == ["data"] }) {
      element = "data"
    }
    let rf = shared.rootResolution.focus
    sink(
      Difference(
        path: path, inum: inum, element: element, classes: classes,
        details: views.indices.map { tidsOnly[$0] ? [Self.tidsOnlyDetail] : Self.whatDiffers(views[$0], ref) }, bytesToWrite: bytes,
        tidsOnly: tidsOnly, focusEntry: rf.flatMap { views[$0].dirent }, focusInode: rf.flatMap { views[$0].inodeBref },
        nodeInodes: views.map(\.inodeBref)))
    return classes
  }

  /// The detail of a copy that differs from the focus's in modify_tid alone.
  static let tidsOnlyDetail = "tids only"

  /// A soft master's differences are its own local changes (it never votes, and resync
  /// leaves it alone unless told otherwise): `softLocal`, except damage, holes and
  /// conflicts, which stay what they are.
  static func markSoftLocal(_ classes: inout [PathClass], _ tidsOnly: inout [Bool], shared: WalkShared, focus: Int?) {
    guard !shared.overwriteSoftMasters else { return }
    for i in classes.indices where shared.roles[i] == .softMaster && i != focus {
      switch classes[i] {
      case .inSync, .damaged, .inHole, .conflict, .undecidable: break
      default:
        classes[i] = .softLocal
        tidsOnly[i] = false
      }
    }
  }
}

extension Array where Element: Equatable {
  /// The distinct elements in first-seen order (for the few nodes of a cluster, where
  /// a Set's hashing costs more than comparing).
  func uniqued() -> [Element] {
    var out: [Element] = []
    out.reserveCapacity(count)
    for x in self where !out.contains(x) { out.append(x) }
    return out
  }
}
