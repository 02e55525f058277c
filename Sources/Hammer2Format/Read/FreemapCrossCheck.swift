/// The freemap checked against the tree, offline, as DragonFly's bulkfree checks it
/// (`hammer2_bulkfree_pass`, hammer2_bulkfree.c; docs/format.md §9.3, §9.6):
///
/// - every block reachable from the volume header (the super-root, every PFS and
///   snapshot, their inode indexes, inodes, indirect blocks, data and directory-entry
///   name blocks) must lie in 16 KiB chunks the freemap marks allocated (`11`). One that
///   does not is a critical finding: bulkfree's "00->11 critical freemap transition"
///   (state `00`), its `ERR(01)->allocated` (`01`) or `staged->allocated` (`10`), and the
///   allocator would hand the chunk out again and overwrite live data;
/// - chunks marked `11` that nothing references are reclaimable (what bulkfree's first
///   pass moves to staged, its `transition->staged`): informational.
///
/// As bulkfree does, blocks below `allocator_beg` (the static super-root and PFS-root
/// inodes) and past the end are not tracked; the reserved 4 MiB segment of every 1 GiB
/// (volume headers and the freemap's own blocks), everything below `allocator_beg`
/// rounded up to 4 MiB and the partial segment at the end count as referenced
/// (`cbinfo_bmap_init`), so they are never reclaimable. Freemap blocks are not part of
/// the tree walked: they live in those reserved segments at fixed places (§9.2).
///
/// **Memory** is bounded as bulkfree's is, by passes over ranges of the volume: each pass
/// covers as many 1 GiB regions that have a FREEMAP_LEAF as two bitmaps of 1 bit per
/// 16 KiB chunk fit in `memoryBudget` (8 KiB per GiB each: "allocated" from the leaves,
/// "referenced" from the walk; 16 KiB per GiB in all, half of bulkfree's 32 KiB per GiB),
/// walks the whole tree and compares. A region without a leaf gets no bitmap (all its
/// chunks are free: any block there is a finding; `FreemapPass`). With the default
/// 56 MiB a pass covers 3.5 TiB of regions in use: a node with 10 GiB in use takes one
/// pass and 160 KiB of bitmaps whether it is 1 or 16 TiB, beyond the volume's block
/// cache (its own `cacheBudget`). Beyond that the walk holds one stack frame per
/// level (at most 64, each at most 512 blockrefs: 4 MiB), the offsets of the indirect
/// blocks of the inode trees being walked (cycle detection, as `TopologyWalker`: 16
/// bytes per indirect block, about one per 32 MiB of a file's data), the findings kept
/// (at most `findingLimit`; the counters stay exact beyond it), the offsets reported
/// (at most 4 x `findingLimit`) and the chunk runs to repair (coalesced, at most
/// `findingLimit` runs kept).
///
/// Damage met on the way is a finding and the walk continues: a block that fails its
/// check code is still counted as referenced (bulkfree does the same) but not entered;
/// values from disk are validated before use, nesting is capped at 64 levels and an
/// indirect or inode block is entered at most once per tree.
public struct FreemapCrossCheck {
  /// The image.
  public let volume: Volume
  /// Bytes for the two per-pass bitmaps (16 KiB per GiB of the pass).
  public var memoryBudget: Int
  /// Findings kept (counters stay exact beyond it).
  public var findingLimit: Int
  /// Findings that get a path (through the inodes' `iparent` chain).
  public var pathLimit = 1000
  /// Threads a PFS's inode index is walked on. Each thread past the first marks its own
  /// copy of the referenced bitmap: a pass then covers fewer regions (`regionsPerPass`).
  /// The result is the one-thread result (a walk that meets anything unusual is redone
  /// on one thread).
  public var threads = 1

  /// A cross-check of `volume` with `memoryBudget` bytes of bitmaps.
  public init(volume: Volume, memoryBudget: Int = FreemapCrossCheck.defaultMemoryBudget, findingLimit: Int = 10_000) {
    self.volume = volume
    self.memoryBudget = memoryBudget
    self.findingLimit = findingLimit
  }

  /// The default bitmap budget, 56 MiB: 3,584 GiB per pass, and room left within 64 MiB
  /// for the walk's stack (at most 64 levels of 512 blockrefs, 4 MiB) and findings.
  public static let defaultMemoryBudget = 56 << 20

  /// Bitmap bytes per 1 GiB region and pass (two planes of 65536 bits).
  public static let bytesPerGiB = 2 * 8192

  /// 1 GiB regions with a leaf per pass for `budget` bytes (at least 1): two bitmap planes, and
  /// with more than one thread one more per thread (their copies of the referenced plane).
  public static func regionsPerPass(budget: Int, threads: Int = 1) -> UInt64 {
    let planes = threads > 1 ? 2 + threads : 2
    return UInt64(max(1, budget / (planes * bytesPerGiB / 2)))
  }

  /// Runs every pass; `onPass` is told each pass's range (for progress).
  public func run(onPass: ((_ pass: Int, _ start: UInt64, _ end: UInt64) -> Void)? = nil) -> FreemapCrossCheckResult {
    let h = volume.header
    let total = h.filesystemSize
    let regions = (total + (1 << 30) - 1) >> 30
    let perPass = Self.regionsPerPass(budget: memoryBudget, threads: threads)
    var result = FreemapCrossCheckResult(image: volume.label)
    result.regionsPerPass = perPass
    // A pass holds bitmaps for the regions with a leaf only (FreemapPass): the passes
    // split the volume so that each holds at most `perPass` of those, however large the
    // volume is.
    var cuts: [UInt64] = []
    if regions > 0 {
      let leafRegions = FreemapLeafIndex(volume: volume, regions: 0, regions - 1).leaves.keys.sorted()
      cuts = stride(from: Int(perPass), to: leafRegions.count, by: Int(perPass)).map { leafRegions[$0] }
    }
    var first: UInt64 = 0
    var pass = 0
    while first < regions {
      let last = pass < cuts.count ? cuts[pass] - 1 : regions - 1
      onPass?(pass, first << 30, min(total, (last + 1) << 30))
      var p = FreemapPass(volume: volume, regions: first, last, firstPass: pass == 0, limit: findingLimit)
      p.threads = max(1, threads)
      p.loadFreemap()
      p.walk()
      p.finish()
      result.merge(p, limit: findingLimit)
      first = last + 1
      pass += 1
    }
    result.passes = pass
    result.unallocatedRuns = FreemapCrossCheckResult.coalesce(result.unallocatedRuns)
    resolvePaths(&result)
    return result
  }

  /// Adds the path to the first `pathLimit` findings that name an inode of a PFS: the
  /// directories of that PFS are listed breadth-first until every inode asked for is
  /// found (an inode's own `filename` is not its name: DragonFly keeps the index key
  /// there), at most `pathLimit` x 64 directories, each at most once.
  private func resolvePaths(_ result: inout FreemapCrossCheckResult) {
    var wanted: [String: Set<UInt64>] = [:]
    for f in result.findings.prefix(pathLimit) {
      if let ino = f.inode { wanted[ino.pfs, default: []].insert(ino.inum) }
    }
    guard !wanted.isEmpty else { return }
    var ignored: [Finding] = []
    var paths: [String: [UInt64: String]] = [:]
    for p in (try? volume.pfsList(findings: &ignored)) ?? [] {
      guard let inums = wanted[p.name], paths[p.name] == nil else { continue }
      paths[p.name] = Self.paths(of: inums, in: PFSReader(volume: volume, pfs: p), directoryLimit: pathLimit * 64)
    }
    for i in result.findings.indices {
      guard let ino = result.findings[i].inode, let p = paths[ino.pfs]?[ino.inum] else { continue }
      result.findings[i].finding.path = p
    }
  }

  /// Paths of `inums` in the PFS of `reader` ("/" for its root), by a breadth-first
  /// listing of its directories.
  static func paths(of inums: Set<UInt64>, in reader: PFSReader, directoryLimit: Int) -> [UInt64: String] {
    var out: [UInt64: String] = [:]
    if inums.contains(1) { out[1] = "/" }
    var queue: [(InodeData, String)] = [(reader.pfs.inode, "")]
    var seen: Set<UInt64> = [1]
    var head = 0
    var findings: [Finding] = []
    while head < queue.count, out.count < inums.count, head < directoryLimit {
      let (dir, path) = queue[head]
      head += 1
      reader.forEachEntry(of: dir, path: path, findings: &findings) { e in
        let p = path + "/" + e.nameString
        if inums.contains(e.inum), out[e.inum] == nil { out[e.inum] = p }
        if e.typeRaw == ObjectType.directory.rawValue, queue.count < directoryLimit, seen.insert(e.inum).inserted,
          let ino = try? reader.inode(e.inum)
        {
          queue.append((ino, p))
        }
        return true
      }
      findings.removeAll()
    }
    return out
  }
}

/// What a cross-check found on one image.
public struct FreemapCrossCheckResult: Sendable {
  /// A finding and the inode it concerns (for its path).
  public struct Item: Sendable {
    public var finding: Finding
    /// The PFS, inode number, name and parent of the inode whose tree holds the block.
    public var inode: (pfs: String, inum: UInt64, name: String, iparent: UInt64)?
    /// True for a referenced block in chunks not marked allocated.
    public var unallocated: Bool
  }
  /// The image.
  public var image: String
  /// Findings, in walk order: referenced blocks in chunks not marked `11` (critical),
  /// then damage met in the tree or the freemap. At most the limit given.
  public var findings: [Item] = []
  /// Findings not kept beyond the limit.
  public var findingsOmitted = 0
  /// Referenced blocks (distinct media offsets) in chunks not marked `11`.
  public var unallocatedBlocks: UInt64 = 0
  /// Distinct 16 KiB chunks referenced but not marked `11`, by their state (0 = `00`,
  /// 1 = `01`, 2 = `10`; regions without a leaf count as `00`): what bulkfree reports
  /// as ERR(00)->allocated, ERR(01)->allocated and staged->allocated.
  public var unallocatedChunks: [UInt64] = [0, 0, 0]
  /// The chunk-aligned byte ranges to mark allocated (sorted, coalesced).
  public var unallocatedRuns: [Range<UInt64>] = []
  /// True when more runs were found than kept (`findingLimit`).
  public var runsTruncated = false
  /// Chunks marked `11` that nothing references, times 16 KiB.
  public var reclaimableBytes: UInt64 = 0
  /// Bytes of chunks referenced by the tree (16 KiB per chunk).
  public var referencedBytes: UInt64 = 0
  /// Blockrefs visited (all passes).
  public var blockrefsVisited: UInt64 = 0
  /// PFS inode indexes walked on several threads (`FreemapCrossCheck.threads`; the
  /// others were walked on one).
  public var splitIndexWalks = 0
  /// Passes made and regions (GiB) per pass.
  public var passes = 0
  public var regionsPerPass: UInt64 = 0
  /// Damage findings other than unallocated blocks (tree or freemap damage).
  public var otherDamage = 0

  /// All chunks referenced but not marked `11`.
  public var unallocatedChunkCount: UInt64 { unallocatedChunks.reduce(0, +) }

  init(image: String) { self.image = image }

  mutating func merge(_ p: FreemapPass, limit: Int) {
    for f in p.items {
      if !f.unallocated { otherDamage += 1 }
      if findings.count < limit { findings.append(f) } else { findingsOmitted += 1 }
    }
    findingsOmitted += p.itemsOmitted
    unallocatedBlocks += p.unallocatedBlocks
    for s in 0..<3 { unallocatedChunks[s] += p.unallocatedChunks[s] }
    for r in p.runs {
      if unallocatedRuns.count < limit { unallocatedRuns.append(r) } else { runsTruncated = true }
    }
    runsTruncated = runsTruncated || p.runsTruncated
    reclaimableBytes += p.reclaimableBytes
    referencedBytes += p.referencedBytes
    blockrefsVisited += p.blockrefsVisited
    splitIndexWalks += p.splitIndexWalks
  }

  /// Sorted, with touching or overlapping ranges merged.
  static func coalesce(_ runs: [Range<UInt64>]) -> [Range<UInt64>] {
    var out: [Range<UInt64>] = []
    for r in runs.sorted(by: { $0.lowerBound < $1.lowerBound }) {
      if let l = out.last, r.lowerBound <= l.upperBound {
        out[out.count - 1] = l.lowerBound..<max(l.upperBound, r.upperBound)
      } else {
        out.append(r)
      }
    }
    return out
  }
}
