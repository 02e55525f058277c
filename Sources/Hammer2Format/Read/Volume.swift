import CHammer2Codecs

/// The state of one volume header slot (`hammer2_read_volume_header`).
public struct VolumeHeaderCopy: Sendable {
  /// Slot number 0..3.
  public var slot: Int
  /// Device offset of the slot.
  public var offset: UInt64
  /// The decoded header, when 64 KiB could be read.
  public var header: VolumeHeader?
  /// Why the copy is not valid; nil when valid.
  public var error: FormatError?
  /// True when the copy passed magic and CRC checks.
  public var isValid: Bool { header != nil && error == nil }
}

/// One opened HAMMER2 device image: its chosen volume header and verified block reads.
/// Read-only: nothing in this type writes.
public final class Volume {
  /// Where the bytes come from.
  public let io: ImageIO
  /// The image path as the user gave it.
  public var label: String { io.label }
  /// The chosen header: the valid copy with the highest `mirror_tid`.
  public let header: VolumeHeader
  /// Slot index of the chosen header (`volhdrno`).
  public let headerSlot: Int
  /// Every slot that exists on the image, valid or not.
  public let headerCopies: [VolumeHeaderCopy]
  /// The cache budget it was opened with (bytes), for opening it again elsewhere.
  public let cacheBudget: Int
  private let arrayCache: BlockCache<(refs: [Blockref], clean: Bool)>
  private let inodeCache: BlockCache<InodeData>
  /// Bytes read from media blocks (for benchmarks and progress).
  public private(set) var bytesRead: UInt64 = 0
  /// Media blocks read and verified.
  public private(set) var blocksRead: UInt64 = 0
  /// Called with the media offset and size of each block `blocksRead` counts (a
  /// resumable check attributes its reads to inode keys with it).
  public var onBlockRead: ((UInt64, Int) -> Void)?

  /// How its devices were opened, for opening it again elsewhere (another thread's
  /// reader, a writer).
  public let opener: DeviceOpener

  /// Opens `path` read-only through `opener`: one image, or a multi-volume file
  /// system's volumes joined by `:` (`openImage`).
  public static func open(path: String, opener: DeviceOpener = LocalDeviceOpener(), cacheBudget: Int = 64 << 20) throws(FormatError)
    -> Volume
  {
    try Volume(io: openImage(path, opener: opener), cacheBudget: cacheBudget, opener: opener)
  }

  /// Reads every volume header copy and picks the valid one with the highest mirror_tid
  /// (ties: lowest slot). The cache budget is split between indirect arrays and inodes.
  /// Refused as DragonFly's mount refuses them: a device shorter than its `volu_size`, a
  /// volume of a multi-volume file system given alone (`MultiVolumeImage` checks the
  /// volumes given together).
  /// `opener` is how `io` was opened (what `open` uses to open it again).
  public init(io: ImageIO, cacheBudget: Int = 64 << 20, opener: DeviceOpener = LocalDeviceOpener()) throws(FormatError) {
    self.io = io
    self.opener = opener
    self.cacheBudget = cacheBudget
    arrayCache = BlockCache(budget: cacheBudget * 3 / 4)
    inodeCache = BlockCache(budget: cacheBudget / 4)
    let (copies, chosen) = try Self.chooseHeader(io: io, span: io.headerSpan)
    headerCopies = copies
    let h = chosen.header! // Safe: chooseHeader returns a valid copy.
    let loc = Location(image: io.label, offset: chosen.offset, structure: "volume header #\(chosen.slot)")
    guard h.fstype == VolumeHeader.hammer2FSType else {
      throw FormatError(.unsupported(.fstype(h.fstype)), at: loc)
    }
    guard (1...3).contains(h.version) else {
      throw FormatError(.unsupported(.volumeVersion(h.version)), at: loc)
    }
    if let volumes = io.volumeExtents {
      // Checked together (`VolumeSet.verify`); the root's header read again here.
      guard h.voluId == 0, Int(h.nvolumes) == volumes.count, h.voluSize == volumes[0].size else {
        throw FormatError(.badVolumeList(.rootHeaderChanged), at: loc)
      }
    } else {
      let nvolumes = h.version >= 2 ? Int(h.nvolumes) : 1
      guard h.voluId == 0 else {
        throw FormatError(.badVolumeList(.aloneIsNotRoot(id: h.voluId, nvolumes: nvolumes)), at: loc)
      }
      guard nvolumes <= 1 else {
        throw FormatError(.badVolumeList(.rootWithoutOthers(image: io.label, nvolumes: nvolumes)), at: loc)
      }
      // `hammer2_verify_volumes_2`: one volume's total is its own size.
      guard h.version < 2 || h.totalSize == 0 || h.totalSize == h.voluSize else {
        throw FormatError(
          .sizeMismatch(.totalSizeNotVolumeSize(totalSize: h.totalSize, voluSize: h.voluSize)), at: loc)
      }
      // `hammer2_verify_volumes_common`: "size ... exceeds device size ...".
      guard h.voluSize <= io.size else {
        throw VolumeSet.shorterThanVolume(deviceSize: io.size, voluSize: h.voluSize, at: loc)
      }
    }
    header = h
    headerSlot = chosen.slot
  }

  /// Every volume header copy of `io` below `span` (`hammer2_read_volume_header`), and
  /// the chosen one: valid, highest `mirror_tid`, lowest slot on ties. No valid copy is
  /// an error naming the most telling reason.
  public static func chooseHeader(io: ImageIO, span: UInt64) throws(FormatError) -> (copies: [VolumeHeaderCopy], chosen: VolumeHeaderCopy) {
    var copies: [VolumeHeaderCopy] = []
    for slot in 0..<H2.numVolHeaders {
      let off = UInt64(slot) * H2.zoneBytes64
      guard off < io.size, off < span || slot == 0 else { break }
      let loc = Location(image: io.label, offset: off, structure: "volume header #\(slot)")
      do {
        let bytes = try io.read(at: off, count: VolumeHeader.byteCount)
        let h = VolumeHeader(bytes)
        let err = h.validate().map { FormatError($0, at: loc) }
        copies.append(VolumeHeaderCopy(slot: slot, offset: off, header: h, error: err))
      } catch {
        var e = error
        e.location = loc
        copies.append(VolumeHeaderCopy(slot: slot, offset: off, header: nil, error: e))
      }
    }
    var best: VolumeHeaderCopy?
    for c in copies where c.isValid {
      if best == nil || c.header!.mirrorTid > best!.header!.mirrorTid { best = c } // Safe: isValid implies header.
    }
    guard let chosen = best else {
      // Name the most telling reason: a foreign or byte-swapped magic in slot 0 means
      // this is not (our) HAMMER2 at all.
      if let first = copies.first, let e = first.error {
        switch e.kind {
        case .notHammer2, .reverseEndian, .truncated: throw e
        default: break
        }
      }
      if copies.isEmpty {
        throw FormatError(
          .truncated(needed: UInt64(VolumeHeader.byteCount), available: io.size),
          at: Location(image: io.label, offset: 0, structure: "volume header #0"))
      }
      throw FormatError(
        .noValidHeader(reasons: copies.map { "#\($0.slot): \($0.error?.message ?? "?")" }),
        at: Location(image: io.label, structure: "volume headers"))
    }
    return (copies, chosen)
  }

  /// A location for a block referenced by `bref`.
  public func location(of bref: Blockref, _ what: String? = nil) -> Location {
    Location(image: label, offset: bref.mediaOffset, structure: what ?? bref.summary)
  }

  /// Reads the physical bytes of `bref`'s media block and verifies its check code.
  /// Every range is validated first: radix 10..16, inside the file system, not crossing
  /// a 64 KiB boundary (`hammer2_io_alloc`'s rule).
  public func readMedia(_ bref: Blockref, verify: Bool = true) throws(FormatError) -> [UInt8] {
    let (off, size) = try mediaRange(bref)
    let bytes: [UInt8]
    do {
      bytes = try io.read(at: off, count: size)
    } catch {
      var e = error
      e.location = location(of: bref)
      throw e
    }
    bytesRead &+= UInt64(size)
    blocksRead &+= 1
    onBlockRead?(off, size)
    if verify, let bad = CheckCode.verify(bref, block: bytes) {
      throw FormatError(.checkMismatch(method: bad.method, expected: bad.expected, found: bad.found), at: location(of: bref))
    }
    return bytes
  }

  /// The validated media range of `bref` (see `readMedia`).
  private func mediaRange(_ bref: Blockref) throws(FormatError) -> (off: UInt64, size: Int) {
    // Locations are built only on the error paths: formatting them is not free.
    guard let size = bref.mediaSize, size > 0 else {
      throw FormatError(.badBlockref(.sizeRadix(dataOff: bref.dataOff, radix: bref.radix)), at: location(of: bref))
    }
    let off = bref.mediaOffset
    let (end, overflow) = off.addingReportingOverflow(UInt64(size))
    guard !overflow, off & ~0xFFFF != 0, off & ~0xFFFF == (end - 1) & ~0xFFFF else {
      throw FormatError(
        .badBlockref(.crossesBoundary(offset: off, size: size)), at: location(of: bref))
    }
    guard end <= header.filesystemSize else {
      throw FormatError(
        .badBlockref(.beyondFileSystem(offset: off, size: size, filesystemSize: header.filesystemSize)), at: location(of: bref))
    }
    return (off, size)
  }

  /// False for one-pass scans, which meet each indirect block once: caching would only
  /// churn.
  public var cachesArrays = true

  /// One reusable block buffer for `verifyMedia` (a scan reads millions of blocks).
  private lazy var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: H2.pbufSize, alignment: 64)
  /// The buffer `checkedBlockrefArray` reads an indirect block into (its own: a
  /// `verifyMedia` body may look up arrays while `scratch` holds its block).
  private lazy var arrayScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: H2.pbufSize, alignment: 64)
  deinit {
    scratch.deallocate()
    arrayScratch.deallocate()
    runScratch?.deallocate()
  }

  /// Reads `bref`'s media block into a reused buffer and verifies its check code, for
  /// scans that need only the verdict. XXHASH64 is verified in place; the other methods
  /// go through `readMedia`. `body` sees the verified bytes (valid only during the call).
  public func verifyMedia<T>(_ bref: Blockref, _ body: (UnsafeRawBufferPointer) -> T) throws(FormatError) -> T {
    let (_, size) = try mediaRange(bref)
    guard bref.checkMethod == .xxhash64, size <= H2.pbufSize else {
      return try readMedia(bref).withUnsafeBytes { body($0) }
    }
    let buf = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<size])
    try readVerified(bref, into: buf)
    return body(UnsafeRawBufferPointer(buf))
  }

  /// The buffer `verifyMediaRuns` reads runs of adjacent blocks into (its own: the
  /// iterator feeding it reads indirect blocks into `arrayScratch` meanwhile).
  private var runScratch: UnsafeMutableRawBufferPointer?

  /// `verifyMedia` for a sequence of blocks, read with as few preads as their layout
  /// allows: consecutive blocks that lie back to back on media are read together, up to
  /// `maxRun` bytes (at most the cache budget: one buffer of that size per volume), and
  /// each is verified in place. `body(k, result)` is called for every `brefs[k]` in
  /// order, with the verified bytes (valid only during the call) or that block's own
  /// error; counters and errors are exactly those of `verifyMedia` block by block (a run
  /// whose read fails is read again block by block, so each block reports its own).
  public func verifyMediaRuns(
    _ brefs: [Blockref], maxRun: Int = 1 << 20, _ body: (Int, Result<UnsafeRawBufferPointer, FormatError>) -> Void
  ) {
    let limit = max(H2.pbufSize, min(maxRun, cacheBudget))
    var k = 0
    while k < brefs.count {
      // The run starting at k: valid XXHASH64 blocks, each starting where the last ended.
      var end = k
      var runBytes = 0
      var next: UInt64 = 0
      while end < brefs.count, brefs[end].checkMethod == .xxhash64, let (off, size) = try? mediaRange(brefs[end]),
        end == k || off == next, runBytes + size <= limit
      {
        runBytes += size
        next = off + UInt64(size)
        end += 1
      }
      guard end - k > 1 else {
        body(k, Result { () throws(FormatError) in try verifyMedia(brefs[k]) { $0 } })
        k += 1
        continue
      }
      if runScratch == nil { runScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: limit, alignment: 64) }
      let buf = UnsafeMutableRawBufferPointer(rebasing: runScratch![0..<runBytes]) // Safe: allocated just above.
      let start = brefs[k].mediaOffset
      do {
        try io.read(at: start, into: buf)
      } catch {
        // Each block read on its own reports its own error.
        for j in k..<end { body(j, Result { () throws(FormatError) in try verifyMedia(brefs[j]) { $0 } }) }
        k = end
        continue
      }
      for j in k..<end {
        let b = brefs[j]
        let at = Int(b.mediaOffset - start)
        // Safe: every block of the run has a media size (checked above).
        let block = UnsafeRawBufferPointer(rebasing: buf[at..<at + b.mediaSize!])
        bytesRead &+= UInt64(block.count)
        blocksRead &+= 1
        onBlockRead?(b.mediaOffset, block.count)
        let found = XXH64(block.baseAddress, block.count, H2.xxhSeed)
        let expected = b.check.u64(0)
        if found == expected {
          body(j, .success(block))
        } else {
          body(
            j,
            .failure(
              FormatError(
                .checkMismatch(method: "xxhash64", expected: "0x" + hex(expected, width: 16), found: "0x" + hex(found, width: 16)),
                at: location(of: b))))
        }
      }
      k = end
    }
  }

  /// Asks the image to start reading `bref`'s block in the background (a read-ahead
  /// hint; an invalid blockref is ignored here and reported by the read itself).
  public func willNeed(_ bref: Blockref) {
    guard let (off, size) = try? mediaRange(bref) else { return }
    io.willNeed(at: off, count: size)
  }

  /// Reads `bref`'s block as stored into `dest` (exactly its media size) and verifies
  /// its check code there: a copy lands in its destination without passing through
  /// another buffer.
  public func readVerified(_ bref: Blockref, into dest: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let (error, read) = verifiedRead(bref, into: dest)
    if read {
      // Counted once read, verified or not (as `readMedia` counts).
      bytesRead &+= UInt64(dest.count)
      blocksRead &+= 1
      onBlockRead?(bref.mediaOffset, dest.count)
    }
    if let error { throw error }
  }

  /// `readVerified(_:into:)` that may run on another thread beside this volume's own
  /// reads: only the image's positioned read and the check, no cache and no counter.
  /// Returns the error instead of throwing (for a deferred fill of the write path).
  public func readVerifiedDetached(_ bref: Blockref, into dest: UnsafeMutableRawBufferPointer) -> FormatError? {
    verifiedRead(bref, into: dest).error
  }

  /// Reads `bref`'s block into `dest` and verifies it; whether the read itself happened.
  private func verifiedRead(_ bref: Blockref, into dest: UnsafeMutableRawBufferPointer) -> (error: FormatError?, read: Bool) {
    let off: UInt64
    let size: Int
    do throws(FormatError) {
      (off, size) = try mediaRange(bref)
    } catch {
      return (error, false)
    }
    guard size == dest.count else {
      return (FormatError(.deviceRefused(.bufferSize(size: size, buffer: dest.count)), at: location(of: bref)), false)
    }
    do {
      try io.read(at: off, into: dest)
    } catch {
      var e = error
      e.location = location(of: bref)
      return (e, false)
    }
    if bref.checkMethod == .xxhash64 {
      let found = XXH64(dest.baseAddress, size, H2.xxhSeed)
      let expected = bref.check.u64(0)
      guard found == expected else {
        return (
          FormatError(
            .checkMismatch(method: "xxhash64", expected: "0x" + hex(expected, width: 16), found: "0x" + hex(found, width: 16)),
            at: location(of: bref)), true
        )
      }
    } else if let bad = CheckCode.verify(bref, block: [UInt8](UnsafeRawBufferPointer(dest))) {
      return (FormatError(.checkMismatch(method: bad.method, expected: bad.expected, found: bad.found), at: location(of: bref)), true)
    }
    return (nil, true)
  }

  /// The live (non-EMPTY) blockrefs of an INDIRECT or FREEMAP_NODE block, sorted by
  /// key (cached). Slot positions are not kept: decode `readMedia` for those.
  public func blockrefArray(_ bref: Blockref) throws(FormatError) -> [Blockref] {
    try checkedBlockrefArray(bref).refs
  }

  /// `blockrefArray` plus whether the entries are also disjoint with sane keybits
  /// (decided once per block, not on every lookup through it). `cache: false` for a
  /// streaming pass that meets each block once: a cached copy is still used, but a
  /// block read is not kept (it would only push out blocks that are read again).
  public func checkedBlockrefArray(_ bref: Blockref, cache: Bool = true) throws(FormatError) -> (refs: [Blockref], clean: Bool) {
    if cachesArrays, let a = arrayCache.get(bref.dataOff) { return a }
    // Read and verified in a reused buffer, decoded from there: no array of the block's
    // bytes (up to 64 KiB) is allocated per indirect block.
    let (_, size) = try mediaRange(bref)
    let buf = UnsafeMutableRawBufferPointer(rebasing: arrayScratch[0..<size])
    try readVerified(bref, into: buf)
    var refs = decodeLiveBlockrefs(UnsafeRawBufferPointer(buf))
    var sorted = true
    for i in refs.indices.dropFirst() where refs[i - 1].key > refs[i].key {
      sorted = false
      break
    }
    if !sorted { refs.sort { $0.key < $1.key } }
    var clean = true
    for i in refs.indices {
      if refs[i].keybits > 64 || (i > 0 && refs[i].key <= refs[i - 1].keyEnd) {
        clean = false
        break
      }
    }
    if cachesArrays && cache { arrayCache.put(bref.dataOff, (refs, clean), cost: refs.count * 160 + 64) }
    return (refs, clean)
  }

  /// The inode an INODE blockref points at (cached, check verified).
  /// `cached: false` for scans that meet each inode once (no cache churn).
  public func inode(_ bref: Blockref, cached: Bool = true) throws(FormatError) -> InodeData {
    if cached, let i = inodeCache.get(bref.dataOff) { return i }
    guard bref.radix == H2.radixMin else {
      throw FormatError(.badBlockref(.inodeRadix(bref.radix)), at: location(of: bref))
    }
    let ino = InodeData(try readMedia(bref))
    if cached { inodeCache.put(bref.dataOff, ino, cost: InodeData.byteCount + 256) }
    return ino
  }

  /// The logical content of a DATA block: verified, decompressed and zero-filled to
  /// `logicalSize` (at most 64 KiB), whatever the stored method.
  public func logicalData(_ bref: Blockref, logicalSize: Int = H2.pbufSize) throws(FormatError) -> [UInt8] {
    let physical = try readMedia(bref)
    guard let method = bref.compression else {
      throw FormatError(.unsupported(.compressionMethod(bref.compressionRaw)), at: location(of: bref))
    }
    do {
      return try Codecs.decompress(method, physical, logicalSize: logicalSize)
    } catch {
      var e = error
      e.location = location(of: bref)
      throw e
    }
  }

  /// The super-root inode's blockref (`sroot_blockset[0]`).
  public var superRootBlockref: Blockref { header.srootBlockset[0] }
}
