import CHammer2Codecs
import Dispatch
import Foundation
import Hammer2Format

/// How deep a walk looks.
public enum WalkMode: Sendable {
  /// Trust equal modify_tids: compare only inodes whose index entries differ between
  /// nodes, reading data only for those (like the kernel's own sync).
  case fast
  /// Read and verify every block of every node and compare logical content.
  case deep
}

/// Counters of a walk.
public struct WalkStats: Sendable {
  public var blocksChecked: [UInt64]
  public var bytesChecked: [UInt64]
  public var damagedBlocks: [UInt64]
  public var counts: [PathClass: Int] = [:]
  public var bytesToWrite: [UInt64]
  public var differences = 0
  init(n: Int) {
    blocksChecked = .init(repeating: 0, count: n)
    bytesChecked = .init(repeating: 0, count: n)
    damagedBlocks = .init(repeating: 0, count: n)
    bytesToWrite = .init(repeating: 0, count: n)
  }
}

/// Walks every node of a cluster together from the PFS root through directory entries,
/// inodes and file data, resolving each path by quorum and classifying each node's copy
/// (resync-semantics.md §5.5–5.8). Streams: differences go to a callback; memory is the
/// directory stack, the per-volume block caches and the set of inodes whose index
/// entries differ (proportional to the differences, not to the image).
public final class ClusterWalker {
  public let group: ClusterGroup
  public let mode: WalkMode
  public private(set) var stats: WalkStats
  public private(set) var root: RootDecision
  /// Per node: the differing classes seen (for the node state).
  public private(set) var nodeClasses: [Set<PathClass>]
  /// Damage findings (each block once).
  public private(set) var findings: [Finding] = []
  private var seenFindings = Set<Location>()
  /// Inode numbers whose index entry is not identical on every node (fast mode).
  private var suspects = Set<UInt64>()
  /// Fast mode: the directories worth entering (those holding a suspect and their
  /// ancestors); nil = enter every directory.
  private var enter: Set<UInt64>?
  /// Inode numbers the scan met (all nodes together).
  private var indexEntries = 0
  /// Deep mode: damage the scanners met, reported after the walk unless the walk met
  /// it too (with a path).
  private var scanFindings: [(Int, Finding)] = []
  /// Throttle: called after each block read with its size.
  public var onBytes: ((UInt64) -> Void)?

  public init(group: ClusterGroup, mode: WalkMode) {
    self.group = group
    self.mode = mode
    stats = WalkStats(n: group.nodes.count)
    nodeClasses = .init(repeating: [], count: group.nodes.count)
    let inputs = group.nodes.map { n in
      ResolveInput(role: n.role, version: Version(tid: n.pfs.rootModifyTid, identity: Self.rootIdentity(n.pfs.inode.meta)))
    }
    let r = resolve(inputs, nquorum: group.nquorum)
    var byVersion: [Version: [Int]] = [:]
    for (i, inp) in inputs.enumerated() { byVersion[inp.version!, default: []].append(i) }  // Safe: every root has a version.
    root = RootDecision(resolution: r, versions: byVersion.map { ($0.key, $0.value) }.sorted { $0.version > $1.version })
  }

  /// The focus node (the root's winner), nil without a quorum.
  public var focus: ClusterNode? { root.resolution.focus.map { group.nodes[$0] } }

  /// Root attributes that are cluster-wide (not ctime/btime, not PFS identity).
  static func rootIdentity(_ m: InodeMeta) -> UInt64 {
    let h = Hasher64()
    h.add(UInt64(m.mode)); h.add(m.mtime); h.add(UInt64(m.uflags)); h.add(UInt64(m.compAlgo)); h.add(UInt64(m.checkAlgo))
    h.add(m.uid); h.add(m.gid)
    return h.value
  }

  private func note(_ f: Finding, node: Int) {
    // One finding per damaged structure, whichever paths led to it.
    if seenFindings.insert(f.location).inserted {
      findings.append(f)
      stats.damagedBlocks[node] += 1
    }
  }

  // MARK: per-node views of one path

  private struct NodeView {
    var dirent: DirEntry?
    var inode: InodeData?
    var inodeBref: Blockref?
    var unknown: FormatError?
    var damaged: FormatError?
    var contentDigest: UInt64?
    var version: Version?
  }

  /// Runs the walk; `emit` receives each differing path.
  public func run(_ emit: (Difference) -> Void) {
    let n = group.nodes.count
    // Both modes find the suspects first (fast: index entries; deep: every block of
    // every node read, verified and digested in parallel), then walk only towards them.
    scanPass(deep: mode == .deep)
    enter = directoriesToEnter()
    // The root itself.
    var views = group.nodes.map { node in
      NodeView(dirent: nil, inode: node.pfs.inode, inodeBref: node.pfs.bref, version: Version(tid: node.pfs.rootModifyTid, identity: Self.rootIdentity(node.pfs.inode.meta)))
    }
    decide(path: ".", views: &views, isRoot: true, emit: emit)
    // Directory stack: per node, the directory inode (nil = node lacks the directory)
    // or why it could not be read (then its entries are unknown there, never absent).
    var stack: [(path: String, dirs: [InodeData?], unreadable: [FormatError?])] = [(".", group.nodes.map { $0.pfs.inode }, .init(repeating: nil, count: n))]
    /// The per-node directories to enter for `views` (a directory somewhere).
    func dirsOf(_ views: [NodeView]) -> (dirs: [InodeData?], unreadable: [FormatError?]) {
      (views.map { $0.inode?.meta.type == .directory ? $0.inode : nil },
       views.map { v in v.inode == nil && v.dirent?.typeRaw == ObjectType.directory.rawValue ? v.damaged ?? v.unknown : v.unknown })
    }
    while let (path, dirs, unreadable) = stack.popLast() {
      var cursor = ClusterCursor<DirSource>(dirs.enumerated().map { i, d in
        DirSource(reader: group.nodes[i].reader, dir: d, unreadable: unreadable[i])
      })
      var more = cursor.lookup(H2.dirhashVisible, .max)
      while more {
        // The common case decided from the blockrefs alone, before decoding anything: the
        // same inline-named DIRENT on every node, for an inode that is no suspect (and a
        // directory the walk need not enter). The full check below agrees with this.
        if let b = Self.sameInlineDirent(cursor.slots), !suspects.contains(b.direntInum),
          b.direntTypeRaw != ObjectType.directory.rawValue || enter.map({ !$0.contains(b.direntInum) }) == true
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
              if let e = try group.nodes[i].reader.entry(from: b) {
                views[i].dirent = e
                if name == nil { name = e.name }
              }
            } catch {
              views[i].unknown = error
              note(Finding(error: error, fallback: group.nodes[i].volume.location(of: b), path: path), node: i)
            }
          case .unknown(let e):
            views[i].unknown = e
            note(Finding(error: e, fallback: Location(image: group.nodes[i].image, offset: 0, structure: "directory"), path: path), node: i)
          case .absent, .notParticipating: break
          }
        }
        // Different names at one hash key are different paths: handle the first name
        // now; nodes holding another name there show it as its own path below.
        let childName = String(decoding: name ?? [], as: UTF8.self)
        let childPath = path == "." ? childName : path + "/" + childName
        var others: [(Int, DirEntry)] = []
        for i in 0..<n {
          if let d = views[i].dirent, d.name != name! {  // Safe: name is set when any dirent is.
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
          !suspects.contains(first.inum),
          first.typeRaw != ObjectType.directory.rawValue || enter.map({ !$0.contains(first.inum) }) == true
        {
          more = cursor.next()
          continue
        }
        if name != nil {
          loadInodes(&views, path: childPath)
          decide(path: childPath, views: &views, isRoot: false, emit: emit)
          // Descend into directories present anywhere.
          let isDir = views.contains { $0.inode?.meta.type == .directory }
          // Always descend, also in fast mode: files inside may differ although the
          // directory did not change (inodes live in the PFS index, not under it).
          if isDir {
            let (d, u) = dirsOf(views)
            stack.append((childPath, d, u))
          }
        }
        for (i, d) in others {
          var solo = [NodeView](repeating: NodeView(), count: n)
          solo[i].dirent = d
          let p = path == "." ? d.nameString : path + "/" + d.nameString
          loadInodes(&solo, path: p)
          _ = decide(path: p, views: &solo, isRoot: false, emit: emit)
          if solo[i].inode?.meta.type == .directory {
            let (d, u) = dirsOf(solo)
            stack.append((p, d, u))
          }
        }
        more = cursor.next()
      }
    }
    // Damage only the scan met (an unreachable inode, an index block no path leads
    // through) is still damage.
    let walked = Set(findings.map { "\($0.location.image)\u{0}\($0.location.offset)" })
    for (i, f) in scanFindings where !walked.contains("\(f.location.image)\u{0}\(f.location.offset)") { note(f, node: i) }
    scanFindings = []
    // Equal root tids do not make a quorum when the content below disagrees without a
    // majority: the PFS as a whole has no version a quorum holds (split brain of two).
    if stats.counts[.conflict, default: 0] > 0 || stats.counts[.undecidable, default: 0] > 0 {
      root.resolution.focus = nil
      root.resolution.version = nil
      root.resolution.flags.subtract([.rdHard, .wrHard])
    }
  }

  /// The DIRENT every node holds at the cursor's key when they are all identical (same
  /// inode number, type and name stored inline), else nil.
  private static func sameInlineDirent(_ slots: [Slot]) -> Blockref? {
    guard case .present(let first)? = slots.first, first.type == .dirent, (1...64).contains(first.direntNameLength) else { return nil }
    for slot in slots.dropFirst() {
      guard case .present(let b) = slot, b.typeRaw == first.typeRaw, b.embed0 == first.embed0, b.embed1 == first.embed1, b.check == first.check else { return nil }
    }
    return first
  }

  /// Fast mode: the directories a walk must enter to meet every suspect, or nil when
  /// that cannot be proven and every directory must be entered. Files live in the PFS
  /// index, not under their directory, so a changed file leaves its directory's entry
  /// alone: its place is found from `iparent` (the nominal parent) and confirmed by the
  /// parent's entries. A hardlinked suspect (names in unknown directories), an orphan,
  /// a stale `iparent` or an unreadable inode falls back to the full walk.
  private func directoriesToEnter() -> Set<UInt64>? {
    if suspects.isEmpty { return [] }
    // Suspects everywhere: the full walk is cheaper than proving where they are.
    if suspects.count * 32 > indexEntries { return nil }
    // Parent directory -> suspects that must be named there, per node.
    var expected: [Int: [UInt64: Set<UInt64>]] = [:]
    var parents = Set<UInt64>()
    for s in suspects {
      var seen = false
      for (i, node) in group.nodes.enumerated() {
        guard let ino = try? node.reader.inode(s) else { continue }
        seen = true
        let m = ino.meta
        if m.nlinks > 1 && m.type != .directory { return nil }
        expected[i, default: [:]][m.iparent, default: []].insert(s)
        parents.insert(m.iparent)
        if m.type == .directory { parents.insert(s) }
      }
      if !seen { return nil }
    }
    // Every expected name must be there (a stale iparent would hide a path).
    for (i, byParent) in expected {
      let reader = group.nodes[i].reader
      for (p, want) in byParent {
        guard let dir = try? reader.inode(p), dir.meta.type == .directory else { return nil }
        var left = want
        var findings: [Finding] = []
        reader.forEachEntry(of: dir, path: "", findings: &findings) { e in
          left.remove(e.inum)
          return !left.isEmpty
        }
        if !left.isEmpty { return nil }
      }
    }
    // Ancestors up to the PFS root, through every node's view (a directory moved on
    // some node is entered on both paths). Each directory is expanded once: cycle-proof.
    var enter = Set<UInt64>()
    var work = Array(parents)
    while let x = work.popLast() {
      if x == 1 || !enter.insert(x).inserted { continue }
      var found = false
      for node in group.nodes {
        if let d = try? node.reader.inode(x), d.meta.type == .directory {
          found = true
          work.append(d.meta.iparent)
        }
      }
      if !found { return nil }
    }
    return enter
  }

  /// Every node's inode index read in parallel (one thread and one `Volume` per node)
  /// and merged by inode number; an inode whose index entry (fast) or also attributes
  /// and stored content (deep: every block read and verified) is not identical on every
  /// node becomes a suspect, and so does every key an unreadable range hides somewhere.
  private func scanPass(deep: Bool) {
    let n = group.nodes.count
    let scanners = group.nodes.map { NodeScanner(image: $0.image, pfs: $0.pfs, deep: deep) }
    for s in scanners { s.start() }
    var pending = [[InodeSummary]](repeating: [], count: n)
    var pos = [Int](repeating: 0, count: n)
    var ended = [Bool](repeating: false, count: n)
    var holeUntil = [UInt64?](repeating: nil, count: n)
    /// The node's next summary, pulling batches as needed; nil at its end.
    func head(_ i: Int) -> InodeSummary? {
      while pos[i] >= pending[i].count {
        if ended[i] { return nil }
        let b = scanners[i].queue.pop()
        pending[i] = b.items
        pos[i] = 0
        ended[i] = b.end
        if b.bytes > 0 { onBytes?(b.bytes) }
      }
      return pending[i][pos[i]]
    }
    while true {
      var k: UInt64?
      for i in 0..<n {
        if let h = head(i), k == nil || h.key < k! { k = h.key }  // Safe: k checked first.
      }
      guard let key = k else { break }
      indexEntries += 1
      var present: [InodeSummary?] = .init(repeating: nil, count: n)
      var hole = false
      for i in 0..<n {
        guard let h = head(i), h.key == key else { continue }
        pos[i] += 1
        if h.isHole {
          holeUntil[i] = max(holeUntil[i] ?? 0, h.keyEnd)
          hole = true
        } else {
          present[i] = h
        }
      }
      if hole && present.allSatisfy({ $0 == nil }) { continue }
      var same = !hole
      let first = present.first { $0 != nil } ?? nil
      for i in 0..<n {
        guard let p = present[i] else {
          same = false
          continue
        }
        if p.damaged || p.modifyTid != first?.modifyTid || p.digest != first?.digest { same = false }
        if let u = holeUntil[i], u >= key { same = false }
      }
      if !same { suspects.insert(key) }
    }
    for (i, s) in scanners.enumerated() {
      stats.blocksChecked[i] += s.blocksRead
      stats.bytesChecked[i] += s.bytesRead
      scanFindings.append(contentsOf: s.findings.map { (i, $0) })
    }
  }

  /// Reads each node's inode for its entry; in deep mode (or for suspects) the content
  /// digest too.
  private func loadInodes(_ views: inout [NodeView], path: String) {
    let inums = Set(views.compactMap { $0.dirent?.inum })
    for i in views.indices {
      guard let d = views[i].dirent else { continue }
      let node = group.nodes[i]
      do throws(FormatError) {
        let (b, ino) = try node.reader.inodeWithBlockref(d.inum)
        views[i].inode = ino
        views[i].inodeBref = b
      } catch {
        // Unreadable, or named by a directory entry but missing from the inode index.
        views[i].damaged = error
        note(Finding(error: error, fallback: Location(image: node.image, offset: 0, structure: "inode \(d.inum)"), path: path), node: i)
      }
    }
    // Content is read where it can change the verdict: copies under different tids (the
    // same bytes under another tid are in sync) or different inodes; in deep mode every
    // suspect (its stored content differed somewhere). Equal tids are trusted in fast mode.
    let tids = Set(views.compactMap { $0.inodeBref?.modifyTid })
    let suspect = inums.contains { suspects.contains($0) }
    let needContent = inums.count > 1 || (suspect && (mode == .deep || tids.count > 1))
    // Fast mode, attributes already different: the versions differ whatever the bytes,
    // so the content is compared by its blockrefs (methods and check codes) without
    // reading the data; that only itemizes "data" for the report.
    let metas = Set(views.indices.compactMap { i in views[i].inode.flatMap { ino in views[i].dirent.map { Self.identity($0, ino, content: 0) } } })
    let byBlockrefs = mode == .fast && metas.count > 1
    // Big files on several nodes are read in parallel (each node has its own volume).
    var early = [ContentDigest?](repeating: nil, count: views.count)
    if needContent && !byBlockrefs {
      let big = views.indices.filter { i in
        guard let m = views[i].inode?.meta, views[i].dirent != nil else { return false }
        return (m.type == .regularFile || m.type == .symlink) && m.size >= 4 << 20
      }
      let distinct = Set(big.map { ObjectIdentifier(group.nodes[$0].volume) }).count == big.count
      if big.count > 1, distinct {
        let jobs = big.map { (group.nodes[$0].reader, views[$0].inode!) }  // Safe: filtered above.
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
            content = try finishDigest(i, Self.blockrefDigest(group.nodes[i].reader, ino, path: path))
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
        note(Finding(error: error, fallback: Location(image: group.nodes[i].image, offset: 0, structure: "inode \(d.inum)"), path: path), node: i)
      }
    }
  }

  /// Digest of a file's logical content (holes and zero blocks alike read as zeros).
  private func digestContent(_ i: Int, _ ino: InodeData, path: String) throws(FormatError) -> UInt64 {
    try finishDigest(i, Self.computeDigest(group.nodes[i].reader, ino, path: path))
  }

  /// What reading one copy's content gave: its digest, what went wrong, the reads.
  struct ContentDigest: Sendable {
    var value: UInt64 = 0
    var findings: [Finding] = []
    var blocks: UInt64 = 0
    var bytes: UInt64 = 0
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
      var it = KeyRangeIterator(volume: reader.volume, array: ino.blockset,
                                location: Location(image: reader.volume.label, offset: 0, structure: "inode \(m.inum)"))
      var el = it.lookup(0, m.size - 1)
      while let e = el {
        switch e {
        case .hole(_, _, let err): out.findings.append(Finding(error: err, fallback: reader.volume.location(of: reader.pfs.bref), path: path))
        case .leaf(let b):
          // Weak check methods make this coarse; it only itemizes "data" for files whose
          // attributes already differ.
          h.addStoredBlock(b, withCheck: true)
        }
        el = it.next()
      }
      out.findings += it.findings.map { var f = $0; f.path = path; return f }
    }
    out.value = h.value
    return out
  }

  private func finishDigest(_ i: Int, _ d: ContentDigest) throws(FormatError) -> UInt64 {
    // Deep mode counts the scan's reads; these are second looks at suspects.
    if mode == .fast {
      stats.blocksChecked[i] += d.blocks
      stats.bytesChecked[i] += d.bytes
      onBytes?(d.bytes)
    }
    if let f = d.findings.first(where: { $0.severity == .damage }) {
      for f in d.findings { note(f, node: i) }
      throw FormatError(.invalidField(f.message), at: f.location)
    }
    return d.value
  }

  /// A path's identity on one node: the entry, the cluster-wide inode attributes and
  /// the content digest. Not the node-local parts (block tables, check codes of
  /// tables, iparent, name_key, btime).
  static func identity(_ d: DirEntry, _ ino: InodeData, content: UInt64) -> UInt64 {
    let m = ino.meta
    let h = Hasher64()
    h.add(d.name); h.add(d.inum); h.addClusterWide(m); h.add(content)
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
    if a.contentDigest != nil, f.contentDigest != nil, a.contentDigest != f.contentDigest, a.contentDigest != 0 || f.contentDigest != 0 { out.append("data") }
    return out
  }

  /// Resolves one path across the nodes, classifies each node and emits a Difference
  /// when any node is not in sync. Returns the classes.
  @discardableResult
  private func decide(path: String, views: inout [NodeView], isRoot: Bool, emit: (Difference) -> Void) -> [PathClass] {
    let n = group.nodes.count
    let inputs = (0..<n).map { i -> ResolveInput in
      let v = views[i]
      if v.damaged != nil, let d = v.dirent { return ResolveInput(role: group.nodes[i].role, version: Version(tid: 0, identity: d.inum), errored: true) }
      return ResolveInput(role: group.nodes[i].role, version: v.unknown != nil ? nil : v.version, errored: v.unknown != nil)
    }
    let r = isRoot ? root.resolution : resolve(inputs, nquorum: group.nquorum)
    var classes = [PathClass](repeating: .inSync, count: n)
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
      if v.unknown != nil { classes[i] = .inHole; continue }
      if v.damaged != nil { classes[i] = .damaged; continue }
      guard let mine = v.version else { classes[i] = .missing; continue }
      if mine == fv { continue }
      if let t = v.inode?.meta.typeRaw, let ft = views[fi].inode?.meta.typeRaw, t != ft { classes[i] = .shapeMismatch; continue }
      // Same attributes and content under another tid is still in sync.
      if !isRoot, mine.identity == fv.identity { continue }
      if isRoot, mine.identity == fv.identity { continue }
      classes[i] = mine.tid < fv.tid ? .stale : mine.tid > fv.tid ? .ahead : .splitBrain
    }
    guard classes.contains(where: { $0 != .inSync }) else { return classes }
    let ref = f.map { views[$0] } ?? views.first { $0.inode != nil } ?? views[0]
    var bytes = [UInt64](repeating: 0, count: n)
    var element = "inode"
    for i in 0..<n where classes[i] != .inSync {
      nodeClasses[i].insert(classes[i])
      stats.counts[classes[i], default: 0] += 1
      switch classes[i] {
      case .missing, .stale, .ahead, .splitBrain, .damaged, .shapeMismatch:
        if let m = ref.inode?.meta, m.type == .regularFile || m.type == .symlink { bytes[i] = m.size }
      default: break
      }
      stats.bytesToWrite[i] += bytes[i]
    }
    if classes.contains(.missing) || classes.contains(.extra) { element = "dirent" } else if classes.contains(.shapeMismatch) { element = "type" } else if views.contains(where: { Self.whatDiffers($0, ref) == ["data"] }) { element = "data" }
    stats.differences += 1
    let inum = ref.dirent?.inum ?? ref.inode?.meta.inum ?? views.compactMap { $0.dirent?.inum }.first ?? 0
    let rf = root.resolution.focus
    emit(Difference(path: path, inum: inum, element: element, classes: classes,
                    details: views.map { Self.whatDiffers($0, ref) }, bytesToWrite: bytes,
                    focusEntry: rf.flatMap { views[$0].dirent }, focusInode: rf.flatMap { views[$0].inodeBref }))
    return classes
  }

  /// Each node's state from what the walk saw.
  public var nodeStates: [NodeState] {
    group.nodes.indices.map { i in
      if root.resolution.focus == i { return .focus }
      let seen = nodeClasses[i]
      if seen.isEmpty { return .inSync }
      if root.resolution.focus == nil && !root.resolution.absentByQuorum { return .conflict }
      if seen.contains(.conflict) || seen.contains(.undecidable) { return .conflict }
      if seen.subtracting([.damaged, .inHole]).isEmpty { return .damaged }
      let mine = group.nodes[i].pfs.rootModifyTid
      let focusTid = root.resolution.version?.tid ?? 0
      if seen.contains(.splitBrain) || mine == focusTid { return mine > focusTid ? .ahead : .splitBrain }
      return mine < focusTid ? .stale : .ahead
    }
  }
}

/// Per-node directory source for the cluster cursor: the directory's table, or nothing
/// (a node that lacks the directory shows every entry as absent).
struct DirSource: ElementSource {
  var base: KeyRangeIterator?
  /// The node's directory inode could not be read: every key is unknown there.
  var unreadable: FormatError?
  init(reader: PFSReader, dir: InodeData?, unreadable: FormatError? = nil) {
    self.unreadable = dir == nil ? unreadable : nil
    if let dir, !dir.meta.isDirectData {
      base = KeyRangeIterator(volume: reader.volume, array: dir.blockset,
                              location: Location(image: reader.volume.label, offset: 0, structure: "directory inode \(dir.meta.inum)"))
    }
  }
  mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> TreeElement? {
    if let e = unreadable { return .hole(keyBeg: keyBeg, keyEnd: keyEnd, error: e) }
    return base?.lookup(keyBeg, keyEnd)
  }
  mutating func next() -> TreeElement? { unreadable != nil ? nil : base?.next() }
}

extension Hasher64 {
  /// An inode's cluster-wide attributes: not the node-local ones (block tables and their
  /// check codes, iparent, name_key, btime).
  func addClusterWide(_ m: InodeMeta) {
    add(UInt64(m.typeRaw)); add(UInt64(m.mode)); add(m.size); add(m.mtime); add(m.ctime)
    add(UInt64(m.uflags)); add(m.uid); add(m.gid); add(UInt64(m.rmajor)); add(UInt64(m.rminor))
    add(m.nlinks); add(UInt64(m.compAlgo)); add(UInt64(m.checkAlgo))
  }

  /// How a DATA block is stored: key, size, methods and (with a medium) its check code.
  func addStoredBlock(_ b: Blockref, withCheck: Bool) {
    add(b.key); add(UInt64(b.keybits)); add(UInt64(b.typeRaw)); add(UInt64(b.methods)); add(UInt64(b.radix))
    if withCheck, b.radix != 0 { add(b.check.bytes) }
  }
}

/// Hands a non-Sendable value to worker threads that use it without sharing it.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

/// One slot per parallel job; each job writes only its own slot.
final class ParallelResults<T>: @unchecked Sendable {
  private var slots: [T?]
  private let lock = NSLock()
  init(count: Int) { slots = .init(repeating: nil, count: count) }
  func set(_ i: Int, _ v: T) { lock.lock(); slots[i] = v; lock.unlock() }
  func get(_ i: Int) -> T? { lock.lock(); defer { lock.unlock() }; return slots[i] }
}

/// A 64-bit content digest (XXH3, streaming) over typed fields, for identities: fast
/// enough to hash every block a deep walk reads. Not a security boundary: it only
/// tells versions apart.
final class Hasher64 {
  private let state: OpaquePointer
  init() {
    state = XXH3_createState()
    XXH3_64bits_reset(state)
  }
  deinit { XXH3_freeState(state) }
  func add(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { _ = XXH3_64bits_update(state, $0.baseAddress, $0.count) } }
  func add(_ b: [UInt8]) {
    add(UInt64(b.count))
    b.withUnsafeBytes { _ = XXH3_64bits_update(state, $0.baseAddress, $0.count) }
  }
  func add(_ b: ArraySlice<UInt8>) { b.withUnsafeBytes { _ = XXH3_64bits_update(state, $0.baseAddress, $0.count) } }
  func add(_ b: UnsafeRawBufferPointer) { _ = XXH3_64bits_update(state, b.baseAddress, b.count) }
  func addZeros(_ n: UInt64) {
    var left = n
    let z = [UInt8](repeating: 0, count: 65536)
    while left > 0 {
      let k = Int(min(left, 65536))
      z.withUnsafeBytes { _ = XXH3_64bits_update(state, $0.baseAddress, k) }
      left -= UInt64(k)
    }
  }
  var value: UInt64 { XXH3_64bits_digest(state) }
}

extension Array where Element == UInt8 {
  func u64le(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
}
