import Foundation
import Hammer2Format

/// How NBD exports are reached and cached (given by the opener, the same for every
/// export it opens).
public struct NBDOptions: Sendable {
  /// The bytes of the read caches of all exports together (completed and in-flight
  /// reads), split evenly over the URIs registered (or opened); at least 8 MiB each.
  public var cacheBytes: Int
  /// Seconds for the connection and handshake.
  public var connectTimeout: Double
  /// Seconds a request may go unanswered before the server counts as gone.
  public var requestTimeout: Double
  /// Connections per export when the server allows multi-conn (else one).
  public var connections: Int
  /// The largest request sent (reads of adjacent ranges are coalesced up to it).
  public var maxRequest: Int

  public init(
    cacheBytes: Int = 64 << 20, connectTimeout: Double = 10, requestTimeout: Double = 30,
    connections: Int = 2, maxRequest: Int = 4 << 20
  ) {
    self.cacheBytes = cacheBytes
    self.connectTimeout = connectTimeout
    self.requestTimeout = requestTimeout
    self.connections = connections
    self.maxRequest = maxRequest
  }
}

/// Counters of one export (benchmarks and tests).
public struct NBDStatistics: Sendable, Equatable {
  /// Read requests sent, and their bytes.
  public var readRequests = 0
  public var bytesFetched: UInt64 = 0
  /// Reads that had to send a request and wait for it, and reads served from the cache
  /// (a completed or in-flight request).
  public var misses = 0
  public var hits = 0
  /// The bytes of the fetched 64 KiB chunks that at least one read used (the rest of
  /// `bytesFetched` was read ahead for nothing).
  public var bytesUsed: UInt64 = 0
  /// Write and flush requests sent, and the bytes written.
  public var writeRequests = 0
  public var flushRequests = 0
  public var bytesWritten: UInt64 = 0
}

/// One NBD export, shared by every device opened on its URI in a process (the engine
/// opens a node again on each of its threads, and a read-ahead thread's hints must
/// reach the walk's reads, as the page cache shares them for a file).
///
/// Reads go through a cache of 64 KiB chunks held in the buffers of the requests that
/// fetched them, bounded by `NBDOptions.cacheBytes` (least recently used completed
/// requests are dropped first; in-flight ones count). A read that misses sends one
/// request for the chunks around it (256 KiB aligned) and waits; when the chunk before
/// was cached the read is taken as sequential: the request doubles the previous one (up
/// to `maxRequest`), and once the reads reach its middle the next one is sent ahead,
/// so a sequential scan always has a request in flight. `willNeed` sends requests for
/// the missing chunks of its range without waiting, adjacent chunks coalesced up to
/// `maxRequest`. HAMMER2 media blocks never cross a 64 KiB boundary, so a block read is
/// one chunk.
final class NBDExport: @unchecked Sendable {
  let label: String
  let size: UInt64
  let isReadOnly: Bool
  let canFUA: Bool
  let canFlush: Bool
  let canMultiConn: Bool
  /// Every connection (reads are spread over them); writes and flushes go to the first,
  /// so a flush covers every write without relying on multi-conn.
  private let connections: [NBDConnection]
  private var nextConnection = 0

  static let chunk: UInt64 = 64 << 10
  private let maxChunks: Int
  private let missChunks = 4
  private let budget: Int

  private final class Span {
    let request: NBDConnection.Request
    let connection: NBDConnection
    let first: UInt64
    let chunks: Int
    /// The chunks a sequential reader asks for next (doubling).
    let window: Int
    /// The chunk whose read sends the next sequential request.
    var trigger: UInt64?
    var tick: UInt64 = 0
    /// A read was served from it (a hint's request is kept until then, see `evict`).
    var used = false
    /// Which of its chunks a read used (bit k: chunk `first + k`; at most 64 chunks).
    var usedChunks: UInt64 = 0
    init(request: NBDConnection.Request, connection: NBDConnection, first: UInt64, chunks: Int, window: Int) {
      self.request = request
      self.connection = connection
      self.first = first
      self.chunks = chunks
      self.window = window
    }
  }

  private let lock = NSLock()
  private var index: [UInt64: Span] = [:]
  private var spans: [ObjectIdentifier: Span] = [:]
  private var cachedBytes = 0
  private var tick: UInt64 = 0
  private(set) var statistics = NBDStatistics()

  /// `cacheBytes`: this export's share of the pool's cache.
  init(uri: String, label: String, options: NBDOptions, cacheBytes: Int) throws(FormatError) {
    self.label = label
    let ms = { (s: Double) in Int32(clamping: Int((s * 1000).rounded())) }
    let first = try NBDConnection(
      uri: uri, label: label, connectTimeout: ms(options.connectTimeout), requestTimeout: ms(options.requestTimeout))
    let n = first.size
    guard n >= 0 else {
      throw FormatError(.io(errno: EIO, operation: "NBD size"), at: Location(image: label, structure: "NBD export"))
    }
    size = UInt64(n)
    isReadOnly = first.isReadOnly
    canFUA = first.canFUA
    canFlush = first.canFlush
    canMultiConn = first.canMultiConn
    var all = [first]
    if canMultiConn {
      // Extra connections are a speed-up only: a server that limits its clients
      // (nbdkit --filter=limit, qemu-nbd --shared) refuses them, and one is enough.
      for _ in 1..<max(1, options.connections) {
        guard
          let c = try? NBDConnection(
            uri: uri, label: label, connectTimeout: ms(options.connectTimeout), requestTimeout: ms(options.requestTimeout))
        else { break }
        all.append(c)
      }
    }
    connections = all
    let serverMax = first.maximumRequest
    var m = UInt64(max(Int(Self.chunk), options.maxRequest))
    if serverMax > 0 { m = min(m, UInt64(serverMax)) }
    maxChunks = max(1, Int(m / Self.chunk))
    budget = max(cacheBytes, 2 * Int(Self.chunk) * maxChunks)
  }

  /// The first transport failure of any of its connections (then the export is given
  /// up: every later request fails at once, on every connection).
  private var fatal: FormatError?

  func failure() -> FormatError? {
    lock.lock()
    defer { lock.unlock() }
    return fatal
  }

  /// Throws the export's transport failure, if it had one. Lock held.
  private func checkAlive() throws(FormatError) {
    if let fatal { throw fatal }
  }

  /// Waits for `r` on `conn`; a failed connection (not an error the server replied
  /// with) fails the whole export.
  private func wait(_ r: NBDConnection.Request, on conn: NBDConnection, operation: String) throws(FormatError) {
    do throws(FormatError) {
      try conn.wait(r, operation: operation)
    } catch {
      if conn.failure() != nil {
        lock.lock()
        if fatal == nil { fatal = error }
        lock.unlock()
      }
      throw error
    }
  }

  // MARK: reads

  func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let count = buffer.count
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    guard count > 0, let dest = buffer.baseAddress else { return }
    var pos = offset
    while pos < end {
      let span = try acquire(pos / Self.chunk)
      do throws(FormatError) {
        try wait(span.request, on: span.connection, operation: "NBD read")
      } catch {
        drop(span)
        throw error
      }
      let start = span.first * Self.chunk
      let n = min(end, start + UInt64(span.request.count)) - pos
      let src = span.request.bytes.baseAddress! + Int(pos - start) // Safe: a read's buffer is never empty.
      (dest + Int(pos - offset)).copyMemory(from: src, byteCount: Int(n))
      pos += n
    }
  }

  /// The span holding chunk `c`: cached, in flight, or requested now (then the read waits).
  private func acquire(_ c: UInt64) throws(FormatError) -> Span {
    lock.lock()
    defer { lock.unlock() }
    try checkAlive()
    tick += 1
    if let s = index[c] {
      s.tick = tick
      s.used = true
      markUsed(s, c)
      statistics.hits += 1
      if s.trigger == c {
        s.trigger = nil
        prefetch(after: s)
      }
      return s
    }
    statistics.misses += 1
    if c > 0, let prev = index[c - 1] {
      // Sequential: a bigger request, and the next one sent from its middle.
      let w = min(maxChunks, prev.window * 2)
      let s = try submit(first: c, chunks: missing(from: c, limit: w), window: w, demand: true)! // Safe: demand always submits.
      s.trigger = c + UInt64(s.chunks / 2)
      markUsed(s, c)
      return s
    }
    // Random: the aligned group around the chunk, without what is cached.
    var first = c - c % UInt64(missChunks)
    while first < c, index[first] != nil { first += 1 }
    var lo = c
    while lo > first, index[lo - 1] == nil { lo -= 1 }
    // Safe: as above.
    let s = try submit(
      first: lo, chunks: missing(from: lo, limit: missChunks - Int(lo % UInt64(missChunks))), window: missChunks, demand: true)!
    markUsed(s, c)
    return s
  }

  /// Records that a read used chunk `c` of `s`. Lock held.
  private func markUsed(_ s: Span, _ c: UInt64) {
    let k = c - s.first
    guard k < 64 else { return }
    let bit: UInt64 = 1 << k
    if s.usedChunks & bit == 0 {
      s.usedChunks |= bit
      statistics.bytesUsed += min(Self.chunk, size - c * Self.chunk)
    }
  }

  /// How many chunks from `first` (at most `limit`) are neither cached nor beyond the end.
  private func missing(from first: UInt64, limit: Int) -> Int {
    var n = 0
    while n < limit, (first + UInt64(n)) * Self.chunk < size, index[first + UInt64(n)] == nil { n += 1 }
    return max(1, n)
  }

  /// Sends the next sequential request after `s`. Lock held.
  private func prefetch(after s: Span) {
    let next = s.first + UInt64(s.chunks)
    guard next * Self.chunk < size, index[next] == nil else { return }
    let w = min(maxChunks, s.window * 2)
    guard let t = try? submit(first: next, chunks: missing(from: next, limit: w), window: w, demand: false) else { return }
    t.trigger = next + UInt64(t.chunks / 2)
  }

  /// Sends a read of `chunks` chunks from `first`, making room in the cache first. A
  /// hint (`demand: false`) is dropped when in-flight requests fill the cache. Lock held.
  private func submit(first: UInt64, chunks: Int, window: Int, demand: Bool) throws(FormatError) -> Span? {
    try checkAlive()
    let off = first * Self.chunk
    let n = Int(min(UInt64(chunks) * Self.chunk, size - off))
    if cachedBytes + n > budget { evict(toFit: n, unusedToo: demand) }
    if !demand, cachedBytes + n > budget { return nil }
    let conn = connections[nextConnection % connections.count]
    nextConnection &+= 1
    let req = try conn.read(at: off, count: n)
    let s = Span(request: req, connection: conn, first: first, chunks: chunks, window: window)
    s.tick = tick
    s.used = demand
    for k in 0..<UInt64(chunks) { index[first + k] = s }
    spans[ObjectIdentifier(s)] = s
    cachedBytes += n
    statistics.readRequests += 1
    statistics.bytesFetched += UInt64(n)
    return s
  }

  /// Drops least recently used completed requests until `n` more bytes fit. A hint
  /// (`unusedToo: false`) never pushes out another hint's data that no read has used
  /// yet: the walk reads hinted blocks in its own order, not the hints' (offset) order,
  /// and a hint that evicts the ones before it is wasted twice. Lock held.
  private func evict(toFit n: Int, unusedToo: Bool) {
    while cachedBytes + n > budget {
      var victim: Span?
      // Safe: `victim!` is read only after the nil check.
      for s in spans.values where (unusedToo || s.used) && s.request.isDone && (victim == nil || s.tick < victim!.tick) { victim = s }
      guard let v = victim else { return }
      remove(v)
    }
  }

  private func remove(_ s: Span) {
    guard spans.removeValue(forKey: ObjectIdentifier(s)) != nil else { return }
    for k in 0..<UInt64(s.chunks) where index[s.first + k] === s { index[s.first + k] = nil }
    cachedBytes -= s.request.count
  }

  private func drop(_ s: Span) {
    lock.lock()
    remove(s)
    lock.unlock()
  }

  /// Sends requests for the missing chunks of `offset..<offset+count` without waiting
  /// (at most half the cache per call). Never fails.
  func willNeed(at offset: UInt64, count: Int) {
    guard count > 0, offset < size else { return }
    let end = min(size, offset &+ UInt64(count) < offset ? size : offset + UInt64(count))
    lock.lock()
    defer { lock.unlock() }
    var c = offset / Self.chunk
    let last = (end - 1) / Self.chunk
    var asked = 0
    while c <= last, asked < budget / 2 {
      if index[c] != nil {
        c += 1
        continue
      }
      let n = missing(from: c, limit: min(maxChunks, Int(last - c) + 1))
      guard let s = try? submit(first: c, chunks: n, window: n, demand: false) else { return }
      asked += s.request.count
      c += UInt64(n)
    }
  }

  // MARK: writes

  /// Drops cached chunks of `offset..<end`. Lock held.
  private func invalidate(_ offset: UInt64, _ end: UInt64) {
    guard end > offset else { return }
    for c in (offset / Self.chunk)...((end - 1) / Self.chunk) { if let s = index[c] { remove(s) } }
  }

  func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer, fua: Bool) throws(FormatError) {
    let (end, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(bytes.count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "write"))
    }
    guard !bytes.isEmpty else { return }
    let conn = connections[0]
    try beforeRequest(invalidating: offset, end)
    // Every piece in flight at once; then all waited for.
    var requests: [NBDConnection.Request] = []
    let step = maxChunks * Int(Self.chunk)
    var done = 0
    while done < bytes.count {
      let n = min(step, bytes.count - done)
      requests.append(try conn.write(at: offset + UInt64(done), from: UnsafeRawBufferPointer(rebasing: bytes[done..<done + n]), fua: fua))
      done += n
    }
    for r in requests { try wait(r, on: conn, operation: fua ? "NBD write (FUA)" : "NBD write") }
    lock.lock()
    invalidate(offset, end) // a read sent meanwhile may hold the old bytes
    statistics.writeRequests += requests.count
    statistics.bytesWritten += UInt64(bytes.count)
    lock.unlock()
  }

  /// Fails when the export was given up; drops the cached chunks of `offset..<end`.
  private func beforeRequest(invalidating offset: UInt64 = 0, _ end: UInt64 = 0) throws(FormatError) {
    lock.lock()
    defer { lock.unlock() }
    try checkAlive()
    invalidate(offset, end)
  }

  func flush() throws(FormatError) {
    // A server that cannot flush writes through (NBD: no NBD_CMD_FLUSH may be sent).
    guard canFlush else { return }
    try beforeRequest()
    let conn = connections[0]
    try wait(try conn.flush(), on: conn, operation: "NBD flush")
    lock.lock()
    statistics.flushRequests += 1
    lock.unlock()
  }

  func snapshotStatistics() -> NBDStatistics {
    lock.lock()
    defer { lock.unlock() }
    return statistics
  }
}
