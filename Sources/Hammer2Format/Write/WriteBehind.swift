import CHammer2Codecs
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

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
