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
  /// Per node: `bytesToWrite` as media blocks would hold it, path by path
  /// (`SpaceEstimate.fileMediaBytes`), for the space check before a resync.
  public var mediaBytesToWrite: [UInt64]
  /// Differing paths (any node, any class but in-sync).
  public var differences = 0
  /// Differing paths where some node's class counts (`PathClass.counts`: not only a soft
  /// master's own changes): what sets the exit code.
  public var countedDifferences = 0
  /// Per node: paths whose class counts there.
  public var nodeDifferences: [Int]
  /// Per node: paths that are the node's own local changes (soft masters).
  public var nodeSoftLocal: [Int]
  /// Per node: paths that differ in modify_tid alone (`stale`, "tids only").
  public var nodeTidsOnly: [Int]
  /// Adds another walk's counters, `damagedBlocks` included.
  mutating func add(_ o: WalkStats) {
    for i in blocksChecked.indices {
      blocksChecked[i] += o.blocksChecked[i]
      bytesChecked[i] += o.bytesChecked[i]
      damagedBlocks[i] += o.damagedBlocks[i]
      bytesToWrite[i] += o.bytesToWrite[i]
      mediaBytesToWrite[i] = SpaceEstimate.plus(mediaBytesToWrite[i], o.mediaBytesToWrite[i])
      nodeDifferences[i] += o.nodeDifferences[i]
      nodeSoftLocal[i] += o.nodeSoftLocal[i]
      nodeTidsOnly[i] += o.nodeTidsOnly[i]
    }
    for (c, k) in o.counts { counts[c, default: 0] += k }
    differences += o.differences
    countedDifferences += o.countedDifferences
  }
  /// Counts one differing path's classes (nothing when every node is in sync).
  mutating func count(_ classes: [PathClass], tidsOnly: [Bool]) {
    guard classes.contains(where: { $0 != .inSync }) else { return }
    differences += 1
    if classes.contains(where: \.counts) { countedDifferences += 1 }
    for (i, c) in classes.enumerated() where c != .inSync {
      counts[c, default: 0] += 1
      if c.counts { nodeDifferences[i] += 1 }
      if c == .softLocal { nodeSoftLocal[i] += 1 }
      if i < tidsOnly.count, tidsOnly[i] { nodeTidsOnly[i] += 1 }
    }
  }
  init(n: Int) {
    blocksChecked = .init(repeating: 0, count: n)
    bytesChecked = .init(repeating: 0, count: n)
    damagedBlocks = .init(repeating: 0, count: n)
    bytesToWrite = .init(repeating: 0, count: n)
    mediaBytesToWrite = .init(repeating: 0, count: n)
    nodeDifferences = .init(repeating: 0, count: n)
    nodeSoftLocal = .init(repeating: 0, count: n)
    nodeTidsOnly = .init(repeating: 0, count: n)
  }
}

/// Walks every node of a cluster together from the PFS root through directory entries,
/// inodes and file data, resolving each path by quorum and classifying each node's copy
/// (docs/resync-semantics.md §5.5–5.8). Streams: differences go to a callback; memory is the
/// directory stack, the per-volume block caches and the set of inodes whose index
/// entries differ (proportional to the differences, not to the image). The index scans
/// run one thread per node; the directory walk is split over `threads` threads by
/// subtree (`ParallelWalk`), reporting exactly what one thread would, in its order.
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
  /// Each suspect's index entry per node, as the scan met it (nil: absent or not an
  /// inode there): the walk reads those inodes without descending the index again.
  private var suspectRefs: [UInt64: [Blockref?]] = [:]
  /// Per node: the last scan read its whole inode index without a hole or a finding, so
  /// a suspect without an entry there (`suspectRefs`) is absent there.
  private var scanCoveredIndex: [Bool] = []
  /// Fast mode: the suspects by the directory their inode names as parent, on any node
  /// (read-ahead hints for remote nodes; empty when every directory is walked).
  private var suspectsByParent: [UInt64: [UInt64]] = [:]
  /// Fast mode: the directories worth entering (those holding a suspect and their
  /// ancestors); nil = enter every directory.
  private var enter: Set<UInt64>?
  /// Inode numbers the scan met (all nodes together).
  private var indexEntries = 0
  /// Inode numbers the last run's index scan met (all nodes together).
  public var scannedIndexEntries: Int { indexEntries }
  /// Deep mode: damage the scanners met, reported after the walk unless the walk met
  /// it too (with a path).
  private var scanFindings: [(Int, Finding)] = []
  /// Throttle: called after each block read with its size.
  public var onBytes: ((UInt64) -> Void)?
  /// Classify soft masters' copies like any other node's (resync will write them); by
  /// default their differences are their own local changes (`PathClass.softLocal`).
  public var overwriteSoftMasters = false
  /// A resumable check's run (`ScanWindow`, deep mode): nil scans everything.
  public var window: ScanWindow?
  /// Where the last run with a `window` got to.
  public private(set) var scanOutcome: ScanOutcome?
  /// The damaged structures reported so far (for `PassTotals`).
  public var seenFindingLocations: Set<Location> { seenFindings }

  /// Who votes (the group's own quorum, or one trusted node).
  public let voting: Voting

  public init(group: ClusterGroup, mode: WalkMode, voting: Voting? = nil) {
    self.group = group
    self.mode = mode
    let voting = voting ?? Voting(group: group)
    self.voting = voting
    stats = WalkStats(n: group.nodes.count)
    nodeClasses = .init(repeating: [], count: group.nodes.count)
    let inputs = group.nodes.map { n in
      ResolveInput(role: voting.roles[n.index], version: Version(tid: n.pfs.rootModifyTid, identity: Self.rootIdentity(n.pfs.inode.meta)))
    }
    let r = resolve(inputs, nquorum: voting.nquorum)
    var byVersion: [Version: [Int]] = [:]
    for (i, inp) in inputs.enumerated() { byVersion[inp.version!, default: []].append(i) } // Safe: every root has a version.
    root = RootDecision(resolution: r, versions: byVersion.map { ($0.key, $0.value) }.sorted { $0.version > $1.version })
  }

  /// The focus node (the root's winner), nil without a quorum.
  public var focus: ClusterNode? { root.resolution.focus.map { group.nodes[$0] } }

  /// Root attributes that are cluster-wide (not ctime/btime, not PFS identity).
  static func rootIdentity(_ m: InodeMeta) -> UInt64 {
    let h = Hasher64()
    h.add(UInt64(m.mode))
    h.add(m.mtime)
    h.add(UInt64(m.uflags))
    h.add(UInt64(m.compAlgo))
    h.add(UInt64(m.checkAlgo))
    h.add(m.uid)
    h.add(m.gid)
    return h.value
  }

  private func note(_ f: Finding, node: Int) {
    // One finding per damaged structure, whichever paths led to it.
    if seenFindings.insert(f.location).inserted {
      findings.append(f)
      stats.damagedBlocks[node] += 1
    }
  }

  /// Adds a directory walker's counters and node classes (not its findings).
  private func merge(_ w: DirectoryWalker) {
    stats.add(w.stats)
    for i in nodeClasses.indices { nodeClasses[i].formUnion(w.nodeClasses[i]) }
  }

  /// Takes damage findings in walk order (each structure once overall).
  private func mergeFindings(_ f: [(node: Int, finding: Finding)]) {
    for (i, x) in f { note(x, node: i) }
  }

  /// Threads the directory walk may use (1: the calling thread only). A walk with a
  /// throttle (`onBytes`) always runs on the calling thread.
  public var threads = 2
  /// Observes the scan's reads (a progress display; `AnalysisOptions.onScanBytes`).
  public var onScanBytes: ((UInt64) -> Void)?
  /// Differences a parallel walk's workers may hold ahead of the walk order.
  var walkBufferLimit = 4096
  /// Subtrees a parallel walk wants per thread before it starts the threads.
  var walkJobsPerThread = 8
  /// Threads the last run's directory walk used (for tests).
  private(set) var walkThreadsUsed = 1
  /// Inode blocks the last run announced ahead of the walk (for tests).
  private(set) var inodesReadAhead = 0

  /// Runs the walk; `emit` receives each differing path, on the calling thread and in
  /// the same order whatever `threads` is.
  public func run(_ emit: (Difference) -> Void) {
    let n = group.nodes.count
    if let p = window?.prior {
      (stats, nodeClasses, findings, seenFindings) = (p.stats, p.nodeClasses, p.findings, p.seen)
    }
    // Both modes find the suspects first (fast: index entries; deep: every block of
    // every node read, verified and digested in parallel), then walk only towards them.
    scanPass(deep: mode == .deep)
    // The walk reads every suspect's inode on every node, one at a time: ask for them
    // all now, so that on a cold image those reads are already under way. Not under a
    // throttle: those reads would escape it.
    // A remote node's read cache holds far fewer of them than a page cache: its
    // suspects are hinted where they are read, a few hundred ahead (below), unless
    // every directory is walked.
    let remote = group.nodes.map { $0.reader.volume.io.isRemote }
    var inodeBlocks = [[(offset: UInt64, size: Int)]](repeating: [], count: n)
    if onBytes == nil {
      for refs in suspectRefs.values {
        for (i, r) in refs.enumerated() {
          if let r, let size = r.mediaSize { inodeBlocks[i].append((r.mediaOffset, size)) }
        }
      }
    }
    func readAhead(_ nodes: (Int) -> Bool) -> BlockReadAhead {
      let blocks = inodeBlocks.indices.map { nodes($0) ? inodeBlocks[$0] : [] }
      inodesReadAhead += blocks.reduce(0) { $0 + $1.count }
      return BlockReadAhead(images: group.nodes.map(\.image), opener: group.opener, blocks: blocks)
    }
    inodesReadAhead = 0
    let localReadAhead = readAhead { !remote[$0] }
    defer { localReadAhead.wait() }
    enter = directoriesToEnter()
    let remoteReadAhead = enter == nil && remote.contains(true) ? readAhead { remote[$0] } : nil
    defer { remoteReadAhead?.wait() }
    let shared = WalkShared(
      images: group.nodes.map(\.image), roles: voting.roles, nquorum: voting.nquorum,
      mode: mode, rootResolution: root.resolution, suspects: suspects, suspectRefs: suspectRefs, enter: enter,
      suspectsByParent: suspectsByParent,
      overwriteSoftMasters: overwriteSoftMasters, counted: scanOutcome.map { window!.compared(upTo: $0.stoppedAt) })
    let primary = DirectoryWalker(shared: shared, readers: group.nodes.map(\.reader))
    primary.onBytes = onBytes
    withoutActuallyEscaping(emit) { emit in
      primary.sink = emit
      defer { primary.sink = { _ in } }
      // The root itself.
      var views = group.nodes.map { node in
        DirectoryWalker.NodeView(
          dirent: nil, inode: node.pfs.inode, inodeBref: node.pfs.bref,
          version: Version(tid: node.pfs.rootModifyTid, identity: Self.rootIdentity(node.pfs.inode.meta)))
      }
      _ = primary.decide(path: ".", views: &views, isRoot: true)
      let top = DirectoryTask(path: ".", dirs: group.nodes.map { $0.pfs.inode }, unreadable: .init(repeating: nil, count: n), depth: 0)
      if threads > 1 && onBytes == nil {
        let walk = ParallelWalk(walker: primary, top: top, threads: threads, jobsPerThread: walkJobsPerThread, bufferLimit: walkBufferLimit)
        walk.run(emit: emit, merge: mergeFindings)
        for w in walk.workers { merge(w) }
        walkThreadsUsed = max(1, walk.workers.count)
      } else {
        primary.walk(top)
        mergeFindings(primary.findings)
      }
      merge(primary)
      // The PFS root's tid is decided once the whole pass has been compared.
      if scanOutcome?.complete ?? true { decideRootTid(shared, emit) }
    }
    // Only the walk reads them: do not hold them while a resync copies.
    suspectRefs = [:]
    // Damage only the scan met (an unreachable inode, an index block no path leads
    // through) is still damage.
    let walked = Set(findings.map { "\($0.location.image)\u{0}\(String(describing: $0.location.offset))" })
    for (i, f) in scanFindings where !walked.contains("\(f.location.image)\u{0}\(String(describing: f.location.offset))") {
      note(f, node: i)
    }
    scanFindings = []
    // Equal root tids do not make a quorum when the content below disagrees without a
    // majority: the PFS as a whole has no version a quorum holds (split brain of two).
    if scanOutcome?.complete ?? true, stats.counts[.conflict, default: 0] > 0 || stats.counts[.undecidable, default: 0] > 0 {
      root.resolution.focus = nil
      root.resolution.version = nil
      root.resolution.flags.subtract([.rdHard, .wrHard])
    }
  }

  /// The PFS root of a node that differs in nothing else but its modify_tid (a
  /// node-local snapshot raised it, or tids moved without content changing): `stale`,
  /// "tids only", reported as path "/" after the walk. DragonFly counts a master at the
  /// quorum only when its PFS-root modify_tid equals the quorum's (hammer2_cluster_check),
  /// so such a node is out of the cluster until its root carries the focus's tid. A node
  /// with other differences is already reported by them; its root is stamped with them.
  private func decideRootTid(_ shared: WalkShared, _ emit: (Difference) -> Void) {
    guard let f = root.resolution.focus, let fv = root.resolution.version else { return }
    let n = group.nodes.count
    var classes = [PathClass](repeating: .inSync, count: n)
    var tidsOnly = [Bool](repeating: false, count: n)
    for (i, node) in group.nodes.enumerated() where i != f && nodeClasses[i].isEmpty {
      let v = Version(tid: node.pfs.rootModifyTid, identity: Self.rootIdentity(node.pfs.inode.meta))
      guard v.tid != fv.tid, v.identity == fv.identity else { continue }
      classes[i] = .stale
      tidsOnly[i] = true
    }
    DirectoryWalker.markSoftLocal(&classes, &tidsOnly, shared: shared, focus: f)
    guard classes.contains(where: { $0 != .inSync }) else { return }
    stats.count(classes, tidsOnly: tidsOnly)
    for i in 0..<n where classes[i] != .inSync { nodeClasses[i].insert(classes[i]) }
    emit(
      Difference(
        path: "/", inum: 1, element: "inode", classes: classes,
        details: tidsOnly.map { $0 ? [DirectoryWalker.tidsOnlyDetail] : [] },
        bytesToWrite: .init(repeating: 0, count: n), tidsOnly: tidsOnly,
        focusEntry: nil, focusInode: group.nodes[f].pfs.bref))
  }

  /// Fast mode: the directories a walk must enter to meet every suspect, or nil when
  /// that cannot be proven and every directory must be entered. Files live in the PFS
  /// index, not under their directory, so a changed file leaves its directory's entry
  /// alone: its place is found from `iparent` (the nominal parent) and confirmed by the
  /// parent's entries. A hardlinked suspect (names in unknown directories), an orphan,
  /// a stale `iparent` or an unreadable inode falls back to the full walk.
  private func directoriesToEnter() -> Set<UInt64>? {
    suspectsByParent = [:]
    if suspects.isEmpty { return [] }
    // Suspects everywhere: the full walk is cheaper than proving where they are.
    if suspects.count * 32 > indexEntries { return nil }
    /// One node's view of the suspects: per parent directory the suspects that must be
    /// named there, the directories met, the suspects it holds; nil: prove nothing.
    struct NodeFacts {
      var expected: [UInt64: Set<UInt64>] = [:]
      var parents = Set<UInt64>()
      var seen = Set<UInt64>()
      /// The parent directories read here, with their own `iparent`.
      var parentOf: [UInt64: UInt64] = [:]
    }
    let nodes = group.nodes
    // In key order: consecutive lookups then meet the same index blocks.
    let order = suspects.sorted()
    let refs = suspectRefs
    // Each node's reads go through its own reader only (one thread per node), so the
    // nodes are looked at side by side; on remote nodes their waits overlap too.
    let results = ParallelResults<NodeFacts?>(count: nodes.count)
    func look(_ i: Int) {
      let reader = nodes[i].reader
      var facts = NodeFacts()
      let covered = scanCoveredIndex.indices.contains(i) && scanCoveredIndex[i]
      // A remote node: the suspects' inodes are asked for a few hundred ahead.
      let remote = reader.volume.io.isRemote
      var hintedSuspects = 0
      for (j, s) in order.enumerated() {
        if remote, j >= hintedSuspects - 128 {
          let end = min(order.count, hintedSuspects + 256)
          for t in order[hintedSuspects..<end] { if let r = refs[t]?[i] { reader.volume.willNeed(r) } }
          hintedSuspects = end
        }
        // Absent where the whole index was scanned and had no entry: not looked up again
        // (on a remote node each index block on the way would be a round trip).
        if covered, let r = refs[s], r[i] == nil { continue }
        // Where the scan met it, read without descending the index again.
        let known = refs[s]?[i].flatMap { try? reader.inode(at: $0, inum: s) }?.1
        guard let ino = known ?? (try? reader.inode(s)) else { continue }
        let m = ino.meta
        if m.nlinks > 1 && m.type != .directory { return results.set(i, nil as NodeFacts?) }
        facts.seen.insert(s)
        facts.expected[m.iparent, default: []].insert(s)
        facts.parents.insert(m.iparent)
        if m.type == .directory {
          facts.parents.insert(s)
          facts.parentOf[s] = m.iparent
        }
      }
      // Every expected name must be there (a stale iparent would hide a path). The
      // directories are read a batch at a time: the next batch's inode blocks and this
      // batch's directory blocks are asked for first, so their reads are in flight
      // together (a remote node answers each read after a round trip).
      let parentList = facts.expected.keys.sorted()
      let batch = 64
      var hinted = 0
      // A parent that is a suspect itself has its index entry from the scan; the others
      // are looked up a batch at a time, one index level per round trip.
      func scanned(_ p: UInt64) -> Blockref? { refs[p]?[i].flatMap { $0.type == .inode && $0.key == p ? $0 : nil } }
      func hintInodes(upTo end: Int) {
        guard hinted < end else { return }
        var lookup: [UInt64] = []
        for p in parentList[hinted..<end] {
          if let b = scanned(p) { reader.volume.willNeed(b) } else { lookup.append(p) }
        }
        for b in reader.inodeBlockrefs(lookup) { if let b { reader.volume.willNeed(b) } }
        hinted = end
      }
      for start in stride(from: 0, to: parentList.count, by: batch) {
        let end = min(start + batch, parentList.count)
        hintInodes(upTo: min(parentList.count, end + batch))
        var dirs: [(UInt64, InodeData)] = []
        for p in parentList[start..<end] {
          let known = scanned(p).flatMap { try? reader.inode(at: $0, inum: p) }?.1
          guard let dir = known ?? (try? reader.inode(p)), dir.meta.type == .directory else {
            return results.set(i, nil as NodeFacts?)
          }
          if !dir.meta.isDirectData {
            for b in dir.blockset where !b.isEmpty && b.type == .indirect { reader.volume.willNeed(b) }
          }
          dirs.append((p, dir))
          facts.parentOf[p] = dir.meta.iparent
        }
        for (p, dir) in dirs {
          // Safe: p is a key of expected.
          var left = facts.expected[p]!
          var findings: [Finding] = []
          reader.forEachEntry(of: dir, path: "", findings: &findings) { e in
            left.remove(e.inum)
            return !left.isEmpty
          }
          if !left.isEmpty { return results.set(i, nil as NodeFacts?) }
        }
      }
      results.set(i, facts)
    }
    // Nodes sharing an image (two PFSs of one device) share its `Volume`: one thread.
    if Set(nodes.map { ObjectIdentifier($0.reader.volume) }).count == nodes.count {
      let box = UncheckedSendable(look)
      DispatchQueue.concurrentPerform(iterations: nodes.count) { box.value($0) }
    } else {
      for i in nodes.indices { look(i) }
    }
    var parents = Set<UInt64>()
    var seen = Set<UInt64>()
    var parentOf: [[UInt64: UInt64]] = []
    var byParent: [UInt64: Set<UInt64>] = [:]
    for i in nodes.indices {
      // Safe: every iteration set its slot.
      guard let facts = results.get(i)! else { return nil }
      parents.formUnion(facts.parents)
      seen.formUnion(facts.seen)
      parentOf.append(facts.parentOf)
      for (p, kids) in facts.expected { byParent[p, default: []].formUnion(kids) }
    }
    if seen.count != suspects.count { return nil }
    // Ancestors up to the PFS root, through every node's view (a directory moved on
    // some node is entered on both paths). Each directory is expanded once: cycle-proof.
    var enter = Set<UInt64>()
    var work = Array(parents)
    while let x = work.popLast() {
      if x == 1 || !enter.insert(x).inserted { continue }
      var found = false
      for (i, node) in group.nodes.enumerated() {
        // A directory read above is a directory with this parent there; a node that
        // did not read it looks it up (an absent one adds nothing, as before).
        if let up = parentOf[i][x] {
          found = true
          work.append(up)
        } else if let d = try? node.reader.inode(x), d.meta.type == .directory {
          found = true
          work.append(d.meta.iparent)
        }
      }
      if !found { return nil }
    }
    suspectsByParent = byParent.mapValues { $0.sorted() }
    return enter
  }

  /// Every node's inode index read in parallel (one thread and one `Volume` per node)
  /// and merged by inode number; an inode whose index entry (fast) or also attributes
  /// and stored content (deep: every block read and verified) is not identical on every
  /// node becomes a suspect, and so does every key an unreadable range hides somewhere.
  private func scanPass(deep: Bool) {
    let n = group.nodes.count
    let scanners = group.nodes.map { NodeScanner(image: $0.image, opener: group.opener, pfs: $0.pfs, deep: deep) }
    window?.configure(scanners)
    for s in scanners { s.start() }
    var tails = [ScanReads](repeating: ScanReads(), count: n)
    var last = [UInt64?](repeating: nil, count: n)
    var verified = [[UInt64]](repeating: [], count: n)
    var stop: UInt64?
    var lastKey: UInt64?
    var pending = [[InodeSummary]](repeating: [], count: n)
    var pos = [Int](repeating: 0, count: n)
    var ended = [Bool](repeating: false, count: n)
    var holeUntil = [UInt64?](repeating: nil, count: n)
    /// True when node `i` has a summary at `pos[i]` (pulling batches as needed); false
    /// at its end. Summaries are read in place: copying each out would cost more than
    /// comparing it.
    func ready(_ i: Int) -> Bool {
      while pos[i] >= pending[i].count {
        if ended[i] { return false }
        let b = scanners[i].queue.pop()
        pending[i] = b.items
        pos[i] = 0
        ended[i] = b.end
        tails[i] = b.tail
        if b.bytes > 0 {
          onBytes?(b.bytes)
          onScanBytes?(b.bytes)
        }
      }
      return true
    }
    // Per key: where each node's summary for it is in `pending` (-1: none).
    var at = [Int](repeating: -1, count: n)
    while true {
      // A run scans one key at least (every run makes progress), then stops before the
      // next key when told; no key past the last scanned one has been counted.
      if let w = window, let done = lastKey,
        w.asksNow(waiting: (0..<n).contains { !ended[$0] && pos[$0] >= pending[$0].count }),
        w.shouldStop()
      {
        stop = done + 1
        break
      }
      var k: UInt64?
      for i in 0..<n where ready(i) {
        let hk = pending[i][pos[i]].key
        if k == nil || hk < k! { k = hk } // Safe: k checked first.
      }
      guard let key = k else { break }
      lastKey = key
      indexEntries += 1
      var hole = false
      var first = -1
      for i in 0..<n {
        at[i] = -1
        guard ready(i), pending[i][pos[i]].key == key else { continue }
        if pending[i][pos[i]].isHole {
          holeUntil[i] = max(holeUntil[i] ?? 0, pending[i][pos[i]].keyEnd)
          hole = true
        } else {
          at[i] = pos[i]
          if first < 0 { first = i }
        }
        let reads = pending[i][pos[i]].reads
        stats.blocksChecked[i] += reads.blocks
        stats.bytesChecked[i] += reads.bytes
        verified[i] += reads.offsets
        last[i] = key
        pos[i] += 1
      }
      // Only holes at this key, or a key only some nodes scan in this run (a restarted
      // node catching up): nothing to compare.
      guard first >= 0, window.map({ key >= $0.from.max() ?? 0 }) ?? true else { continue }
      var same = !hole
      let tid = pending[first][at[first]].modifyTid
      let digest = pending[first][at[first]].digest
      for i in 0..<n {
        guard at[i] >= 0 else {
          same = false
          continue
        }
        if pending[i][at[i]].damaged || pending[i][at[i]].modifyTid != tid || pending[i][at[i]].digest != digest { same = false }
        if let u = holeUntil[i], u >= key { same = false }
      }
      if !same {
        suspects.insert(key)
        suspectRefs[key] = (0..<n).map { at[$0] >= 0 ? pending[$0][at[$0]].bref : nil }
      }
    }
    for (i, s) in scanners.enumerated() {
      if stop != nil {
        s.queue.cancel()
        s.waitUntilEnded()
      } else {
        stats.blocksChecked[i] += tails[i].blocks
        stats.bytesChecked[i] += tails[i].bytes
        verified[i] += tails[i].offsets
      }
      // A stopped run's findings at or past the stop belong to the next run.
      for (f, key) in zip(s.findings, s.findingKeys) where stop.map({ key < $0 }) ?? true { scanFindings.append((i, f)) }
    }
    scanOutcome = window?.outcome(group, stop: stop, last: last, verified: verified)
    scanCoveredIndex = (0..<n).map { i in
      window == nil && stop == nil && holeUntil[i] == nil && !scanFindings.contains { $0.0 == i }
    }
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
      // A soft master's own changes (damage on it is still damage).
      if seen.contains(.softLocal) { return seen.contains(.damaged) ? .damaged : .softLocal }
      // Nothing but tids differs: stale whichever tids are higher (only tids are copied).
      if stats.nodeTidsOnly[i] > 0, stats.nodeTidsOnly[i] == stats.nodeDifferences[i] { return .stale }
      let mine = group.nodes[i].pfs.rootModifyTid
      let focusTid = root.resolution.version?.tid ?? 0
      if seen.contains(.splitBrain) || mine == focusTid { return mine > focusTid ? .ahead : .splitBrain }
      return mine < focusTid ? .stale : .ahead
    }
  }
}
