import Foundation
import Hammer2Format

/// One device of a node on an NBD server (`nbd://host[:port]/export`,
/// `nbd+unix:///export?socket=PATH`, `nbds://` with TLS), through libnbd. Reads, hints
/// and writes go to the export shared by every device the same `NBDPool` opened on
/// that URI (its connections and read cache).
///
/// - `flush` is NBD_CMD_FLUSH; `writeDurably` (the volume header) is a write with
///   NBD_CMD_FLAG_FUA when the server offers FUA, else a write and a flush.
/// - `lockExclusive` takes no lock: NBD has none, and the export's file is on another
///   host. What keeps a second writer away is the server (one client at a time:
///   qemu-nbd's default `--shared=1`, nbdkit's `--filter=limit limit=1`; a read-only
///   export for every node resync must not write); see docs/remote-nodes.md.
/// - The label is the URI without its query string.
public final class NBDDevice: BlockDevice {
  public let label: String
  public var size: UInt64 { export.size }
  public let isWritable: Bool
  let export: NBDExport

  init(export: NBDExport, writable: Bool) {
    self.export = export
    label = export.label
    isWritable = writable
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    var failure: FormatError?
    let buf = [UInt8](unsafeUninitializedCapacity: count) { ptr, initialized in
      do throws(FormatError) {
        try export.read(at: offset, into: UnsafeMutableRawBufferPointer(ptr))
      } catch {
        failure = error
        if count > 0 { ptr.baseAddress!.initialize(repeating: 0, count: count) } // Safe: count > 0.
      }
      initialized = count
    }
    if let failure { throw failure }
    return buf
  }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    try export.read(at: offset, into: buffer)
  }

  public func willNeed(at offset: UInt64, count: Int) {
    export.willNeed(at: offset, count: count)
  }

  public var isRemote: Bool { true }

  private func checkWritable(_ offset: UInt64) throws(FormatError) {
    guard isWritable else {
      throw FormatError(
        .deviceRefused(.connectionReadOnly), at: Location(image: label, offset: offset, structure: "write"))
    }
  }

  public func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    try checkWritable(offset)
    try export.write(at: offset, from: bytes, fua: false)
  }

  public func flush() throws(FormatError) {
    try checkWritable(0)
    try export.flush()
  }

  public func writeDurably(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    try checkWritable(offset)
    if export.canFUA {
      try export.write(at: offset, from: bytes, fua: true)
    } else {
      try export.write(at: offset, from: bytes, fua: false)
      try export.flush()
    }
  }

  /// No lock exists over NBD (see the type's comment): the server's export options
  /// keep other writers away.
  public func lockExclusive() throws(FormatError) {}
  public func unlock() {}

  /// The export's counters so far.
  public var statistics: NBDStatistics { export.snapshotStatistics() }
}

/// The NBD exports a process has opened, one per URI, with their connections and read
/// caches (`NBDOptions`). Thread-safe: the engine opens nodes from several threads.
public final class NBDPool: @unchecked Sendable {
  public let options: NBDOptions
  private let lock = NSLock()
  private var exports: [String: NBDExport] = [:]
  /// Printed label -> the URI it was opened with: the engine may reopen a device by
  /// its label (which has no query, so no socket path).
  private var uriOfLabel: [String: String] = [:]

  public init(options: NBDOptions = NBDOptions()) {
    self.options = options
  }

  /// Registers the URIs of a node spec (one device, or volumes joined by `:`) without
  /// connecting, and returns the spec as it may be printed: each URI without its query.
  /// The engine is given that spec; opening it (or any of its volumes) opens the URI
  /// registered for it. Two URIs that would print alike are refused: the reports could
  /// not tell the nodes apart.
  public func register(_ spec: String) throws(FormatError) -> String {
    let parts = ImagePath.devices(spec)
    guard parts.contains(where: DeviceSpec.isRemote) else { return spec }
    lock.lock()
    defer { lock.unlock() }
    var labels: [String] = []
    for p in parts {
      guard DeviceSpec.isRemote(p) else {
        labels.append(p)
        continue
      }
      let label = DeviceSpec.printable(p)
      if let other = uriOfLabel[label], other != p {
        throw FormatError(
          .deviceRefused(.urisDifferOnlyInQuery),
          at: Location(image: label, structure: "NBD export"))
      }
      uriOfLabel[label] = p
      labels.append(label)
    }
    return labels.joined(separator: ":")
  }

  /// Opens `uri` (connecting on its first open). A writable open of a read-only export
  /// is refused here, before anything is planned.
  public func open(_ uri: String, writable: Bool) throws(FormatError) -> NBDDevice {
    let label = DeviceSpec.printable(uri)
    lock.lock()
    defer { lock.unlock() }
    let full = uri.contains("?") ? uri : (uriOfLabel[uri] ?? uri)
    let export: NBDExport
    if let e = exports[full] {
      export = e
    } else {
      let share = options.cacheBytes / max(1, Set(uriOfLabel.values).union([full]).count)
      export = try NBDExport(uri: full, label: label, options: options, cacheBytes: share)
      exports[full] = export
      if uriOfLabel[label] == nil { uriOfLabel[label] = full }
    }
    if writable, export.isReadOnly {
      throw FormatError(
        .deviceRefused(.exportReadOnly),
        at: Location(image: label, structure: "NBD export"))
    }
    return NBDDevice(export: export, writable: writable)
  }

  /// The first transport failure of any export (a server that stopped answering or
  /// went away): the command could not run, whatever the walk made of its reads.
  public func failure() -> FormatError? {
    lock.lock()
    let all = Array(exports.values)
    lock.unlock()
    for e in all { if let f = e.failure() { return f } }
    return nil
  }

  /// Every export's counters, summed.
  public func statistics() -> NBDStatistics {
    lock.lock()
    let all = Array(exports.values)
    lock.unlock()
    var t = NBDStatistics()
    for e in all {
      let s = e.snapshotStatistics()
      t.readRequests += s.readRequests
      t.bytesFetched += s.bytesFetched
      t.misses += s.misses
      t.hits += s.hits
      t.bytesUsed += s.bytesUsed
      t.writeRequests += s.writeRequests
      t.flushRequests += s.flushRequests
      t.bytesWritten += s.bytesWritten
    }
    return t
  }
}
