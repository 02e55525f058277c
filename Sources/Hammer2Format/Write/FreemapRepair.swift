/// Repair of a freemap that marks referenced blocks free (what DragonFly's bulkfree does
/// on its "00->11 critical freemap transition", `h2_bulkfree_sync_adjust`): the chunks
/// are marked allocated (`11`) in this transaction, copy-on-write as every allocation is
/// (the leaf and every node on its path go to their next rotation set at commit, a
/// missing leaf is created as `hammer2_freemap_init` creates it).
extension Transaction {
  /// Marks the 16 KiB chunks of `ranges` (logical byte ranges, e.g.
  /// `FreemapCrossCheckResult.unallocatedRuns`) allocated. A chunk that was `00` takes
  /// 16 KiB off its entry's `avail` and off `allocator_free` (`10` and `01` chunks are
  /// not counted free); a `linear` packing iterator pointing into a repaired chunk is
  /// moved past it, so no small block is packed over what is there. Returns the chunks
  /// changed.
  ///
  /// Call it before this transaction allocates anything: until then the allocator
  /// could hand out exactly these chunks. Ranges below `allocator_beg`, in a reserved
  /// segment or past the end are refused (nothing there is under freemap control).
  /// Only memory changes until `commit`, which writes it with the transaction's other
  /// changes (a transaction with no other change writes nothing).
  @discardableResult
  public func markAllocated(_ ranges: [Range<UInt64>]) throws(FormatError) -> Int {
    let chunk = H2.freemapBlockSize
    let total = header.filesystemSize
    var changed = 0
    for r in ranges where !r.isEmpty {
      guard r.lowerBound >= header.allocatorBeg, r.upperBound <= total else {
        throw FormatError(
          .editRefused(.rangeOutsideFreemap(r)),
          at: Location(image: image.label, offset: r.lowerBound, structure: "freemap"))
      }
      var c = r.lowerBound & ~(chunk - 1)
      while c < r.upperBound {
        guard c & ((1 << 30) - 1) >= H2.zoneSeg else {
          throw FormatError(
            .editRefused(.reservedChunk(c)),
            at: Location(image: image.label, offset: c, structure: "freemap"))
        }
        if try markChunkAllocated(c) { changed += 1 }
        c += chunk
      }
    }
    return changed
  }

  /// Marks one chunk `11`; true when it was not.
  private func markChunkAllocated(_ c: UInt64) throws(FormatError) -> Bool {
    let region = c >> 30
    // Safe: create: true always returns a leaf (read, or new and inserted).
    _ = try allocator.leafState(region: region, create: true)!
    let n = Int((c >> 22) & 0xFF)
    let k = Int((c & 0x3F_FFFF) >> 14)
    // Safe: loaded just above; edited in place (a copy would copy 256 entries).
    var e = allocator.leaves[region]!.leaf.entries[n]
    let old = e.state(ofChunk: k)
    guard old != 3 else { return false }
    e.setState(ofChunk: k, 3)
    if old == 0 {
      e.avail = e.avail >= UInt32(H2.freemapBlockSize) ? e.avail - UInt32(H2.freemapBlockSize) : 0
      allocator.account(H2.freemapBlockSize)
    }
    let lo = Int32(k) * Int32(H2.freemapBlockSize)
    if e.linear > lo && e.linear < lo + Int32(H2.freemapBlockSize) { e.linear = lo + Int32(H2.freemapBlockSize) }
    allocator.leaves[region]!.leaf.entries[n] = e
    if !allocator.leaves[region]!.dirty {
      allocator.leaves[region]!.dirty = true
      try allocator.markPathDirty(region: region)
    }
    // A repaired leaf may take new blocks again.
    allocator.leaves[region]!.bigmask = 0xFFFF_FFFF
    return true
  }

  /// Cross-checks the committed state of this image (`FreemapCrossCheck`) and marks
  /// every referenced chunk the freemap has free allocated (`markAllocated`). Run it
  /// first in a transaction, before anything is allocated. Throws when the check found
  /// more chunk runs than it keeps (`runsTruncated`): a partial repair would leave the
  /// allocator free to overwrite the rest. `threads`: `FreemapCrossCheck.threads` (the
  /// image must not be written meanwhile: nothing is, before the first allocation).
  public func repairFreemap(memoryBudget: Int = FreemapCrossCheck.defaultMemoryBudget, threads: Int = 1) throws(FormatError) -> (
    check: FreemapCrossCheckResult, chunksMarked: Int
  ) {
    var crossCheck = FreemapCrossCheck(volume: volume, memoryBudget: memoryBudget)
    crossCheck.threads = threads
    let check = crossCheck.run()
    guard !check.runsTruncated else {
      throw FormatError(
        .unsupported(.freemapRepairRuns(limit: check.unallocatedRuns.count)),
        at: Location(image: image.label, structure: "freemap"))
    }
    let n = try markAllocated(check.unallocatedRuns)
    return (check, n)
  }
}
