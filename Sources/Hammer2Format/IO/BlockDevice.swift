/// One device of a node (one volume of its file system): a local file or block device,
/// memory (tests), or a remote export (NBD). Reads are `ImageIO`'s; writes, flushes and
/// the writer's lock are here, so every byte the project writes goes through one seam
/// and the engine can run on anything that implements it.
///
/// Contract: `read` and `write` transfer all bytes or throw (a short device is
/// `.truncated`); `flush` returns once every completed write is durable (fsync,
/// NBD_CMD_FLUSH); `writeDurably` is the commit point's write (the volume header): on
/// stable storage when it returns (NBD FUA where the server offers it, else write and
/// flush). Errors carry the device's `label`, which never contains credentials.
public protocol BlockDevice: ImageIO {
  /// Whether this device was opened for writing.
  var isWritable: Bool { get }
  /// Writes all of `bytes` at `offset`.
  func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError)
  /// Makes every completed write durable.
  func flush() throws(FormatError)
  /// Writes all of `bytes` at `offset`, durable when it returns.
  func writeDurably(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError)
  /// Takes the single-writer lock (`flock(LOCK_EX | LOCK_NB)` on a file), refusing when
  /// another writer holds it; released by `unlock` or when the device is closed.
  func lockExclusive() throws(FormatError)
  /// Releases the lock taken by `lockExclusive`.
  func unlock()
}

extension BlockDevice {
  public func writeDurably(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    try write(at: offset, from: bytes)
    try flush()
  }
}

/// How the devices of nodes are opened. The engine and the writers are given one and
/// never open a path themselves: local files, memory or remote exports are the opener's
/// business. `spec` is one device as the user named it (a path, or a URI for a remote
/// export); a multi-volume node is several specs (`ImagePath.devices`).
public protocol DeviceOpener: Sendable {
  /// Opens one device, read-only unless `writable`.
  func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice
}
