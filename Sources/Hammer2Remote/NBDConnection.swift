import CNBD
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

/// One NBD connection (`h2nbd_conn`: a libnbd handle driven by its own I/O thread, see
/// Sources/CNBD/include/h2nbd.h). Requests are submitted from any thread and waited for
/// with a deadline.
final class NBDConnection: @unchecked Sendable {
  let handle: OpaquePointer
  /// The URI as printed (no query string), for errors.
  let label: String
  /// How long a request may go unanswered before the connection is given up, in ms.
  let requestTimeout: Int32

  /// Connects and completes the handshake within `connectTimeout` ms.
  init(uri: String, label: String, connectTimeout: Int32, requestTimeout: Int32) throws(FormatError) {
    self.label = label
    self.requestTimeout = requestTimeout
    var err = h2nbd_error()
    guard let h = h2nbd_connect(uri, connectTimeout, &err) else {
      throw Self.error(err, uri: uri, label: label, operation: "NBD connect", offset: nil)
    }
    handle = h
  }

  deinit { h2nbd_close(handle) }

  var size: Int64 { h2nbd_size(handle) }
  var isReadOnly: Bool { h2nbd_is_read_only(handle) == 1 }
  var canFlush: Bool { h2nbd_can_flush(handle) == 1 }
  var canFUA: Bool { h2nbd_can_fua(handle) == 1 }
  var canMultiConn: Bool { h2nbd_can_multi_conn(handle) == 1 }
  /// The server's largest request (0: it gives none).
  var maximumRequest: Int64 { h2nbd_block_size(handle, 0) }

  /// A request in flight or completed; its buffer lives as long as it does.
  final class Request: @unchecked Sendable {
    let raw: OpaquePointer
    let offset: UInt64
    let count: Int
    init(raw: OpaquePointer, offset: UInt64, count: Int) {
      self.raw = raw
      self.offset = offset
      self.count = count
    }
    deinit { h2nbd_release(raw) }
    var isDone: Bool { h2nbd_is_done(raw) == 1 }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: h2nbd_data(raw), count: count) }
  }

  func read(at offset: UInt64, count: Int) throws(FormatError) -> Request {
    var err = h2nbd_error()
    guard let r = h2nbd_submit_read(handle, offset, count, &err) else {
      throw Self.error(err, uri: nil, label: label, operation: "NBD read", offset: offset)
    }
    return Request(raw: r, offset: offset, count: count)
  }

  func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer, fua: Bool) throws(FormatError) -> Request {
    var err = h2nbd_error()
    guard let base = bytes.baseAddress, let r = h2nbd_submit_write(handle, offset, base, bytes.count, fua ? 1 : 0, &err) else {
      throw Self.error(err, uri: nil, label: label, operation: "NBD write", offset: offset)
    }
    return Request(raw: r, offset: offset, count: bytes.count)
  }

  func flush() throws(FormatError) -> Request {
    var err = h2nbd_error()
    guard let r = h2nbd_submit_flush(handle, &err) else {
      throw Self.error(err, uri: nil, label: label, operation: "NBD flush", offset: nil)
    }
    return Request(raw: r, offset: 0, count: 0)
  }

  /// Waits for `r` (at most `requestTimeout`: then the server counts as gone).
  func wait(_ r: Request, operation: String) throws(FormatError) {
    var err = h2nbd_error()
    guard h2nbd_wait(r.raw, requestTimeout, &err) == 0 else {
      throw Self.error(err, uri: nil, label: label, operation: operation, offset: r.offset)
    }
  }

  /// The connection's failure, if it failed (a timeout, the server gone).
  func failure() -> FormatError? {
    var err = h2nbd_error()
    guard h2nbd_failed(handle, &err) == 1 else { return nil }
    return Self.error(err, uri: nil, label: label, operation: "NBD connection", offset: nil)
  }

  /// One line: the operation with libnbd's reason, errno; the URI's query never shows
  /// (libnbd's messages may quote the URI it was given).
  static func error(_ err: h2nbd_error, uri: String?, label: String, operation: String, offset: UInt64?) -> FormatError {
    var detail = withUnsafeBytes(of: err.message) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    if let uri, !uri.isEmpty { detail = detail.replacing(uri, with: label) }
    if let q = uri?.firstIndex(of: "?"), let uri { detail = detail.replacing(String(uri[q...]), with: "") }
    // "nbd_aio_connect_uri: connect: Connection refused" -> "connect" (errno says the rest).
    if detail.hasPrefix("nbd_"), let colon = detail.firstRange(of: ": ") { detail = String(detail[colon.upperBound...]) }
    let reason = String(cString: strerror(err.code))
    if detail.hasSuffix(": " + reason) { detail = String(detail.dropLast(reason.count + 2)) }
    if detail == reason { detail = "" }
    let op = detail.isEmpty ? operation : "\(operation) (\(detail))"
    return FormatError(
      .io(errno: err.code, operation: op),
      at: Location(image: label, offset: offset, structure: offset == nil ? "NBD export" : "NBD request"))
  }
}
