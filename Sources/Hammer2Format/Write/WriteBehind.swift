import Foundation

/// One device of a `WritableImage` and the logical range it holds (`[offset, end)`;
/// device offset = logical − offset).
struct WritableDevice {
  let device: BlockDevice
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
  /// The devices runs are routed to (by the run's logical offset). Buffers are 4 KiB
  /// aligned, so a device can write a run's 512-byte-aligned extents (HAMMER2's blocks
  /// always are) with direct I/O (`FileImage`).
  private let devices: [WritableDevice]
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
    let device = devices[k].device
    let base = run.offset - devices[k].offset
    for e in run.extents {
      do throws(FormatError) {
        try device.write(at: base + UInt64(e.lowerBound), from: UnsafeRawBufferPointer(rebasing: run.buffer[e]))
      } catch {
        var e = error
        e.location?.structure = run.structure
        return e
      }
    }
    return nil
  }
}
