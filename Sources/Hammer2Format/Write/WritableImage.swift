import CHammer2Codecs
import Foundation
import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An image opened for writing: exclusive `flock`, busy block devices refused, and the
/// one write path of the whole project (`write(at:_:)`), which counts writes and can be
/// told to stop the process after N of them (`H2_CRASH_AFTER_WRITES=N`) so tests can
/// prove that every prefix of a transaction leaves a valid image.
///
/// A multi-volume file system (paths joined by `:`, `ImagePath`) is opened as one
/// logical image: every device locked, the volumes checked as one file system
/// (`VolumeSet.verify`), and each read and write routed to the device holding it at
/// `logical − volu_loff` (2 MiB write windows never straddle the 1 GiB-aligned volumes).
public final class WritableImage: ImageIO {
  public let label: String
  public private(set) var size: UInt64
  /// The devices, in id order: one for a single image (offset 0, no end).
  let devices: [WritableDevice]
  /// The single device's descriptor (the first device of a multi-volume image).
  var fd: Int32 { devices[0].fd }
  /// The volumes of a multi-volume image (nil for one device).
  public let volumeExtents: [VolumeExtent]?
  public var headerSpan: UInt64 { volumeExtents?[0].size ?? size }
  /// Writes performed through this image.
  public private(set) var writes = 0
  /// Bytes written.
  public private(set) var bytesWritten: UInt64 = 0
  private let crashAfter: Int?

  /// Opens `path` read-write with an exclusive lock. A block device that is mounted or
  /// open elsewhere is refused (`O_EXCL` on a block device fails with EBUSY on Linux).
  /// `path` may name several volumes joined by `:` (never with `create`).
  public init(path: String, create: Bool = false) throws(FormatError) {
    label = path
    let paths = ImagePath.devices(path)
    if paths.count == 1 {
      let (f, sz) = try Self.openDevice(paths[0], create: create)
      devices = [WritableDevice(path: paths[0], fd: f, offset: 0, end: .max)]
      size = sz
      volumeExtents = nil
    } else {
      guard !create else {
        throw FormatError(.invalidArgument("a multi-volume image is created by its newfs, one device at a time"), at: Location(image: path, offset: 0, structure: "image"))
      }
      // Checked first without locks, so a volume named twice is reported as such (its
      // second lock would fail), then again once every device is locked.
      _ = try VolumeSet.verify(spec: path, devices: paths.map { p throws(FormatError) in try FileImage(path: p) })
      var opened: [Int32] = []
      var extents: [VolumeExtent] = []
      do throws(FormatError) {
        for p in paths { opened.append(try Self.openDevice(p, create: false).fd) }
        // Nobody can change them between this check and the commit.
        extents = try VolumeSet.verify(spec: path, devices: paths.map { p throws(FormatError) in try FileImage(path: p) })
      } catch {
        for f in opened { close(f) }
        throw error
      }
      devices = zip(extents, opened).map { WritableDevice(path: $0.label, fd: $1, offset: $0.offset, end: $0.end) }
      size = extents.last?.end ?? 0
      volumeExtents = extents
    }
    crashAfter = ProcessInfo.processInfo.environment["H2_CRASH_AFTER_WRITES"].flatMap { Int($0) }
  }

  /// Opens and locks one device; its descriptor and size.
  private static func openDevice(_ path: String, create: Bool) throws(FormatError) -> (fd: Int32, size: UInt64) {
    let loc = Location(image: path, offset: 0, structure: "image")
    var st = stat()
    let exists = stat(path, &st) == 0
    // O_CLOEXEC: a child process must not inherit the descriptor (and with it the lock).
    var flags = O_RDWR | O_CLOEXEC
    if create && !exists { flags |= O_CREAT }
    if exists && (st.st_mode & S_IFMT) == S_IFBLK {
      flags |= O_EXCL
      if Self.isMounted(path) { throw FormatError(.invalidArgument("\(path) is mounted; unmount it first"), at: loc) }
    }
    let f = open(path, flags, 0o644)
    guard f >= 0 else {
      let e = errno
      throw FormatError(e == EBUSY ? .invalidArgument("\(path) is busy (mounted or open exclusively elsewhere)") : .io(errno: e, operation: "open for writing"), at: loc)
    }
    guard flock(f, LOCK_EX | LOCK_NB) == 0 else {
      close(f)
      throw FormatError(.invalidArgument("\(path) is locked by another h2resync/h2mkimage process"), at: loc)
    }
    var st2 = stat()
    fstat(f, &st2)
    if (st2.st_mode & S_IFMT) == S_IFBLK {
      let end = lseek(f, 0, SEEK_END)
      return (f, end > 0 ? UInt64(end) : 0)
    }
    return (f, st2.st_size > 0 ? UInt64(st2.st_size) : 0)
  }

  deinit {
    submitGathered()
    writer.shutdown()
    for d in devices { close(d.fd) }
  }

  /// True when `/proc/mounts` lists `path` as a mounted device.
  static func isMounted(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
    let real = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path
    return text.split(separator: "\n").contains { line in
      let dev = line.split(separator: " ").first.map(String.init) ?? ""
      return dev == path || dev == real
    }
  }

  /// The device holding `offset..<offset+count` and the device offset; a range outside
  /// every volume or across two is refused.
  private func route(_ offset: UInt64, _ count: Int, structure: String) throws(FormatError) -> (device: WritableDevice, offset: UInt64) {
    if devices.count == 1 { return (devices[0], offset) }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard let d = devices.last(where: { $0.offset <= offset }), !overflow, offset < d.end, end <= d.end else {
      throw FormatError(.invalidArgument("0x\(hex(UInt64(count))) bytes at 0x\(hex(offset)) are not inside one volume"), at: Location(image: label, offset: offset, structure: structure))
    }
    return (d, offset - d.offset)
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    if pendingOverlaps(offset, count) { try drain() }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(.truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
                        at: Location(image: label, offset: offset, structure: "read"))
    }
    let (device, devOffset) = try route(offset, count, structure: "read")
    let fd = device.fd
    var buf = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
      let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(devOffset) + off_t(done)) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw FormatError(n == 0 ? .truncated(needed: UInt64(count), available: UInt64(done)) : .io(errno: errno, operation: "pread"),
                          at: Location(image: label, offset: offset, structure: "read"))
      }
      done += n
    }
    return buf
  }

  /// Writes not yet handed to the writer thread, gathered in aligned windows, least
  /// recently written first. The allocator fills data, inode and indirect blocks from
  /// different 16 KiB chunks at once, so writes interleave but fill each window.
  private var gathering: [WriteBehind.Run] = []
  private static let maxGathering = 6
  private lazy var writer = WriteBehind(devices: devices)

  /// The one write path. Every byte h2resync or h2mkimage writes goes through here.
  /// Writes are gathered in aligned 2 MiB windows that a background thread writes, in
  /// the order they are handed over, as few large requests (direct I/O where the file
  /// allows it). Reads of pending bytes, `sync` and a simulated crash wait for the
  /// writer first, so the file then holds exactly the writes made so far.
  public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer, structure: String) throws(FormatError) {
    let end = try beginWrite(at: offset, count: bytes.count, structure: structure)
    var done = 0
    while done < bytes.count {
      let at = offset + UInt64(done)
      let window = at & ~UInt64(WriteBehind.runBytes - 1)
      let n = min(bytes.count - done, Int(window + UInt64(WriteBehind.runBytes) - at))
      // A later write to the same bytes simply replaces them in the window (a pending
      // fill of those bytes runs first, so it cannot overwrite them afterwards).
      let i = gatheringWindow(window, structure: structure)
      let rel = Int(at - window)
      try gathering[i].settleFills(overlapping: rel..<rel + n)
      gathering[i].put(UnsafeRawBufferPointer(rebasing: bytes[done..<done + n]), at: rel)
      done += n
    }
    endWrite(count: bytes.count, end: end)
  }

  /// `write(at:_:structure:)` for `count` bytes that `fill` puts in place, straight into
  /// the pending window (a block read from another image is copied once). `fill` runs
  /// later, on the write path's filling thread before the window is written, so the
  /// reading and checking of a copied block run beside the caller's work (and beside the
  /// writes, which wait for the device): it must be safe to run on
  /// another thread and must not use this image. The write counts now; an error `fill`
  /// returns stops every later write of this image (that window included) and is thrown
  /// by the next write, read of pending bytes or `sync`: the caller then abandons the
  /// transaction (resync stops, the volume header is never written).
  public func write(at offset: UInt64, count: Int, structure: String,
                    fill: @escaping (UnsafeMutableRawBufferPointer) -> FormatError?) throws(FormatError) {
    let window = offset & ~UInt64(WriteBehind.runBytes - 1)
    let rel = Int(offset - window)
    guard count > 0, rel + count <= WriteBehind.runBytes else {
      // Across windows (never for a HAMMER2 block, aligned to its size): filled now,
      // in a buffer.
      let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, count), alignment: 16)
      defer { tmp.deallocate() }
      let part = UnsafeMutableRawBufferPointer(rebasing: tmp[0..<count])
      if let e = fill(part) { throw e }
      try write(at: offset, UnsafeRawBufferPointer(part), structure: structure)
      return
    }
    let end = try beginWrite(at: offset, count: count, structure: structure)
    let i = gatheringWindow(window, structure: structure)
    try gathering[i].settleFills(overlapping: rel..<rel + count)
    gathering[i].fills.append((rel..<rel + count, fill))
    gathering[i].mark(rel..<rel + count)
    endWrite(count: count, end: end)
  }

  /// Before each write: the simulated crash, an earlier write error, the range's end.
  private func beginWrite(at offset: UInt64, count: Int, structure: String) throws(FormatError) -> UInt64 {
    if let n = crashAfter, writes >= n {
      // Simulated crash for the crash-safety tests: the writes before this one reach the
      // file (as they would in the page cache), then stop dead: no cleanup, no fsync.
      submitGathered()
      _ = try? writer.drain()
      _exit(86)
    }
    try writer.check()
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow else {
      throw FormatError(.invalidArgument("write past 2^64"), at: Location(image: label, offset: offset, structure: structure))
    }
    if devices.count > 1 { _ = try route(offset, count, structure: structure) }
    return end
  }

  private func endWrite(count: Int, end: UInt64) {
    writes += 1
    bytesWritten += UInt64(count)
    if devices.count == 1 { size = max(size, end) }
  }

  /// The index in `gathering` of the window at `window`, now the most recently used
  /// (the least recently used is handed to the writer when too many are open).
  private func gatheringWindow(_ window: UInt64, structure: String) -> Int {
    if let i = gathering.lastIndex(where: { $0.offset == window }) {
      if i != gathering.count - 1 { gathering.append(gathering.remove(at: i)) }
    } else {
      if gathering.count >= Self.maxGathering { writer.submit(gathering.removeFirst()) }
      gathering.append(writer.takeBuffer(offset: window, structure: structure))
    }
    return gathering.count - 1
  }

  /// `write(at:_:structure:)` for an array.
  public func write(at offset: UInt64, _ bytes: [UInt8], structure: String) throws(FormatError) {
    let r: Result<Void, FormatError> = bytes.withUnsafeBytes { b in
      do throws(FormatError) { try write(at: offset, b, structure: structure); return .success(()) } catch { return .failure(error) }
    }
    try r.get()
  }

  private func submitGathered() {
    for g in gathering { writer.submit(g) }
    gathering = []
  }

  /// Waits until every write made so far is in the file (not necessarily on stable
  /// storage); throws the first write error.
  private func drain() throws(FormatError) {
    submitGathered()
    try writer.drain()
  }

  /// True when a pending write overlaps `offset..<offset+count`.
  private func pendingOverlaps(_ offset: UInt64, _ count: Int) -> Bool {
    if gathering.contains(where: { $0.overlaps(offset, count) }) { return true }
    return writer.overlaps(offset, count)
  }

  /// Flushes everything written so far to stable storage.
  public func sync() throws(FormatError) {
    try drain()
    for d in devices {
      guard fsync(d.fd) == 0 else {
        throw FormatError(.io(errno: errno, operation: "fsync"), at: Location(image: d.path, offset: 0, structure: "image"))
      }
    }
  }

  /// Releases the exclusive lock (after a commit), so another transaction can start
  /// while this object is still alive.
  public func unlock() {
    for d in devices { _ = flock(d.fd, LOCK_UN) }
  }

  /// Sets the file size (new single-device images only).
  public func setSize(_ newSize: UInt64) throws(FormatError) {
    guard devices.count == 1 else {
      throw FormatError(.invalidArgument("the volumes of a multi-volume image keep their sizes"), at: Location(image: label, offset: 0, structure: "image"))
    }
    try drain()
    guard ftruncate(fd, off_t(newSize)) == 0 else {
      throw FormatError(.io(errno: errno, operation: "ftruncate"), at: Location(image: label, offset: 0, structure: "image"))
    }
    size = newSize
  }
}

/// One device of a `WritableImage`: its descriptor and the logical range it holds
/// (`[offset, end)`; device offset = logical − offset).
struct WritableDevice {
  let path: String
  let fd: Int32
  let offset: UInt64
  let end: UInt64
}

/// The threads behind a `WritableImage`: runs are written in submission order by one
/// thread, after a second one has run their fills (`Run.fills`, when any); at most
/// `maxQueued` wait (bounded memory), and their buffers are reused.
final class WriteBehind: @unchecked Sendable {
  /// One aligned window of pending bytes: its buffer and the byte ranges written.
  struct Run {
    /// The window's file offset (aligned to `runBytes`).
    var offset: UInt64
    var buffer: UnsafeMutableRawBufferPointer
    /// Written ranges of the buffer, sorted, disjoint and not touching.
    var extents: [Range<Int>] = []
    /// The first block's structure, for an error's location.
    var structure: String
    /// Ranges of the buffer that closures fill just before the window is written
    /// (`WritableImage.write(at:count:structure:fill:)`), in the order they were made.
    var fills: [(range: Range<Int>, fill: (UnsafeMutableRawBufferPointer) -> FormatError?)] = []

    /// Runs now, in order, the pending fills that overlap `range` (a write is about to
    /// replace those bytes); throws the first error.
    mutating func settleFills(overlapping range: Range<Int>) throws(FormatError) {
      guard fills.contains(where: { $0.range.overlaps(range) }) else { return }
      var kept: [(range: Range<Int>, fill: (UnsafeMutableRawBufferPointer) -> FormatError?)] = []
      for f in fills {
        if f.range.overlaps(range) {
          if let e = f.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[f.range])) { throw e }
        } else {
          kept.append(f)
        }
      }
      fills = kept
    }

    /// Runs every pending fill, in order; the first error.
    mutating func runFills() -> FormatError? {
      defer { fills = [] }
      for f in fills {
        if let e = f.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[f.range])) { return e }
      }
      return nil
    }

    mutating func put(_ bytes: UnsafeRawBufferPointer, at rel: Int) {
      UnsafeMutableRawBufferPointer(rebasing: buffer[rel..<rel + bytes.count]).copyMemory(from: bytes)
      mark(rel..<rel + bytes.count)
    }

    /// Records `range` of the buffer as written.
    mutating func mark(_ range: Range<Int>) {
      var r = range
      // Usually appends to the last extent; otherwise merge with every range it touches.
      if let last = extents.last, last.upperBound == r.lowerBound {
        extents[extents.count - 1] = last.lowerBound..<r.upperBound
        return
      }
      if let last = extents.last, last.upperBound < r.lowerBound {
        extents.append(r)
        return
      }
      let i = extents.firstIndex { $0.upperBound >= r.lowerBound } ?? extents.count
      while i < extents.count, extents[i].lowerBound <= r.upperBound {
        r = min(r.lowerBound, extents[i].lowerBound)..<max(r.upperBound, extents[i].upperBound)
        extents.remove(at: i)
      }
      extents.insert(r, at: i)
    }

    func overlaps(_ off: UInt64, _ n: Int) -> Bool {
      guard off < offset + UInt64(buffer.count), offset < off &+ UInt64(n) else { return false }
      let lo = off > offset ? Int(off - offset) : 0
      let hi = Int(min(off &+ UInt64(n), offset + UInt64(buffer.count)) - offset)
      return extents.contains { $0.lowerBound < hi && lo < $0.upperBound }
    }
  }

  static let runBytes = 2 << 20
  private static let maxQueued = 4
  /// The devices runs are routed to (by the run's logical offset).
  private let devices: [WritableDevice]
  /// Each device opened again for direct I/O (-1 when unsupported): runs aligned to 512
  /// bytes, as HAMMER2's 1 KiB-aligned blocks always are, skip the page cache.
  private var directFds: [Int32]
  private let cond = NSCondition()
  /// Runs with fills still to run, in submission order, and the one being filled: a
  /// second thread runs their fills, so the reading and checking they do overlaps the
  /// writes (direct writes wait for the device).
  private var toFill: [Run] = []
  private var filling: Run?
  /// Runs ready to be written, in submission order, and the one being written.
  private var queue: [Run] = []
  private var writing: Run?
  private var free: [UnsafeMutableRawBufferPointer] = []
  private var failure: FormatError?
  private var started = false
  private var fillerStarted = false
  private var stopping = false
  private var exited = false
  private var fillerExited = false

  init(devices: [WritableDevice]) {
    self.devices = devices
    directFds = devices.map { h2_open_direct($0.path) }
  }

  /// An empty window at `offset` (a reused buffer when one is free).
  func takeBuffer(offset: UInt64, structure: String) -> Run {
    cond.lock()
    defer { cond.unlock() }
    if let b = free.popLast() { return Run(offset: offset, buffer: b, structure: structure) }
    return Run(offset: offset, buffer: .allocate(byteCount: Self.runBytes, alignment: 4096), structure: structure)
  }

  /// Queues `run` for writing (waits while the queues are full). A run with fills goes
  /// through the filling thread first, and so does every run after it (writes stay in
  /// submission order).
  func submit(_ run: Run) {
    cond.lock()
    if !started {
      started = true
      let t = Thread { [self] in loop() }
      t.name = "h2 writer"
      t.start()
    }
    while toFill.count + queue.count >= Self.maxQueued { cond.wait() }
    if run.fills.isEmpty, toFill.isEmpty, filling == nil {
      queue.append(run)
    } else {
      if !fillerStarted {
        fillerStarted = true
        let t = Thread { [self] in fillLoop() }
        t.name = "h2 filler"
        t.start()
      }
      toFill.append(run)
    }
    cond.broadcast()
    cond.unlock()
  }

  /// Throws the first write error, if any.
  func check() throws(FormatError) {
    cond.lock()
    let f = failure
    cond.unlock()
    if let f { throw f }
  }

  /// Waits until every submitted run is written; throws the first write error.
  func drain() throws(FormatError) {
    cond.lock()
    while !toFill.isEmpty || filling != nil || !queue.isEmpty || writing != nil { cond.wait() }
    let f = failure
    cond.unlock()
    if let f { throw f }
  }

  func overlaps(_ offset: UInt64, _ count: Int) -> Bool {
    cond.lock()
    defer { cond.unlock() }
    return writing?.overlaps(offset, count) == true || queue.contains { $0.overlaps(offset, count) }
      || filling?.overlaps(offset, count) == true || toFill.contains { $0.overlaps(offset, count) }
  }

  /// Writes what is queued, stops the thread, frees the buffers.
  func shutdown() {
    cond.lock()
    stopping = true
    cond.broadcast()
    while (started && !exited) || (fillerStarted && !fillerExited) { cond.wait() }
    for b in free { b.deallocate() }
    free = []
    for f in directFds where f >= 0 { close(f) }
    directFds = directFds.map { _ in -1 }
    cond.unlock()
  }

  /// The filling thread: runs each run's fills, then hands it to the writer. After a
  /// failure the fills are skipped (the writer skips the run too).
  private func fillLoop() {
    cond.lock()
    while true {
      while toFill.isEmpty && !stopping { cond.wait() }
      if toFill.isEmpty { break }
      var run = toFill.removeFirst()
      filling = run
      let skip = failure != nil
      cond.unlock()
      let err = skip ? nil : run.runFills()
      cond.lock()
      if let err, failure == nil { failure = err }
      run.fills = []
      filling = nil
      queue.append(run)
      cond.broadcast()
    }
    fillerExited = true
    cond.broadcast()
    cond.unlock()
  }

  private func loop() {
    cond.lock()
    while true {
      while queue.isEmpty && !(stopping && toFill.isEmpty && filling == nil) { cond.wait() }
      if queue.isEmpty { break }
      let run = queue.removeFirst()
      writing = run
      let skip = failure != nil
      cond.unlock()
      let err = skip ? nil : write(run)
      cond.lock()
      if let err, failure == nil { failure = err }
      writing = nil
      free.append(run.buffer)
      cond.broadcast()
    }
    exited = true
    cond.broadcast()
    cond.unlock()
  }

  /// Writes a run's extents to the device holding its window (`WritableImage` checked
  /// that each write lies inside one volume; a 2 MiB window cannot cross the 1 GiB
  /// boundaries volumes start on).
  private func write(_ run: Run) -> FormatError? {
    let k = devices.lastIndex { $0.offset <= run.offset } ?? 0
    let base = run.offset - devices[k].offset
    for e in run.extents {
      if let err = write(run.buffer.baseAddress! + e.lowerBound, count: e.count, at: base + UInt64(e.lowerBound), device: k, structure: run.structure) {
        return err
      }
    }
    return nil
  }

  private func write(_ base: UnsafeMutableRawPointer, count: Int, at offset: UInt64, device k: Int, structure: String) -> FormatError? {
    let fd = devices[k].fd
    if k != hintDevice {
      startWriteback()
      hintDevice = k
      hintStart = offset
      hintEnd = offset
    }
    let directFd = directFds[k]
    if directFd >= 0, offset % 512 == 0, count % 512 == 0, Int(bitPattern: base) % 512 == 0 {
      var done = 0
      while done < count {
        let n = pwrite(directFd, base + done, count - done, off_t(offset) + off_t(done))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 || n % 512 != 0 { break }
        done += n
      }
      if done == count { return nil }
      // Direct I/O refused (a file system without it, a device with larger sectors):
      // the ordinary descriptor from now on, rewriting this range whole.
      close(directFd)
      directFds[k] = -1
    }
    var done = 0
    while done < count {
      let n = pwrite(fd, base + done, count - done, off_t(offset) + off_t(done))
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        return FormatError(.io(errno: n < 0 ? errno : EIO, operation: "pwrite"), at: Location(image: devices[k].path, offset: offset + UInt64(done), structure: structure))
      }
      done += n
    }
    // Buffered: start writeback early, in ranges of 4 MiB or more, so the commit's fsync
    // finds little left to flush.
    let end = offset + UInt64(count)
    if offset != hintEnd {
      startWriteback()
      hintStart = offset
    }
    hintEnd = end
    if hintEnd - hintStart >= 4 << 20 { startWriteback() }
    return nil
  }

  private var hintDevice = 0
  private var hintStart: UInt64 = 0
  private var hintEnd: UInt64 = 0

  private func startWriteback() {
    if hintEnd > hintStart { _ = h2_start_writeback(devices[hintDevice].fd, Int64(hintStart), Int64(hintEnd - hintStart)) }
    hintStart = hintEnd
  }
}
