/// One device of a node (one volume of its file system): a local file or block device
/// (`FileImage`), memory (`MemoryImage`, tests), or a remote export (NBD). Reads are
/// `ImageIO`'s; writes, flushes and the writer's lock are here, so every byte the project
/// writes goes through one seam and the engine can run on anything that implements it.
///
/// Contract: `read` and `write` transfer all bytes or throw (a short device is
/// `.truncated`); `flush` returns once every completed write is durable (fsync,
/// NBD_CMD_FLUSH); `writeDurably` is the commit point's write (the volume header): on
/// stable storage when it returns (NBD FUA where the server offers it, else write and
/// flush). Errors carry the device's `label`, which never contains credentials. Writes
/// come from one thread at a time (the writer's background thread, or the caller once
/// that thread is idle); reads may run beside them.
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
  /// Sets the device's size: a new image file made by newfs. Devices of a fixed size
  /// (block devices, exports) refuse.
  func setSize(_ newSize: UInt64) throws(FormatError)
}

extension BlockDevice {
  public func writeDurably(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    try write(at: offset, from: bytes)
    try flush()
  }

  public func setSize(_ newSize: UInt64) throws(FormatError) {
    throw FormatError(
      .unsupported(.resizingFixedDevice(size: size)),
      at: Location(image: label, structure: "image"))
  }
}

/// How the devices of nodes are opened. The engine and the writers are given one and
/// never open a path themselves: local files, memory or remote exports are the opener's
/// business. `spec` is one device as the user named it (a path, or a URI for a remote
/// export); a multi-volume node is several specs (`ImagePath.devices`), opened together
/// by `openNode`.
public protocol DeviceOpener: Sendable {
  /// Opens one device, read-only unless `writable`.
  func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice
  /// Opens one device for writing, creating it when it does not exist (newfs of a new
  /// image file). Openers whose devices exist beforehand refuse.
  func create(_ spec: String) throws(FormatError) -> BlockDevice
  /// Called around every write of the images opened through this opener (crash tests);
  /// nil for none.
  var writeHook: WriteHook? { get }
}

extension DeviceOpener {
  public func create(_ spec: String) throws(FormatError) -> BlockDevice {
    throw FormatError(
      .unsupported(.creatingDevices),
      at: Location(image: spec, structure: "image"))
  }

  public var writeHook: WriteHook? { nil }
}

/// A hook the caller injects to stop an image's writes after some of them: the crash
/// tests prove with it that every prefix of a transaction leaves a valid image. The
/// library only asks and stops; what a stop means (a test's assertion, a test binary's
/// `_exit`) is the caller's.
public struct WriteHook: Sendable {
  /// Asked before each write of one opened image (`WritableImage`), with the write's
  /// index (0 for its first write); false stops it and every later write.
  public var allows: @Sendable (_ index: Int) -> Bool
  /// Called once when a write was refused, after every earlier write of that image has
  /// reached its devices (as a crash leaves them in the page cache), before the write
  /// throws. It may end the process.
  public var stopped: @Sendable (_ index: Int) -> Void

  public init(allows: @escaping @Sendable (_ index: Int) -> Bool, stopped: @escaping @Sendable (_ index: Int) -> Void = { _ in }) {
    self.allows = allows
    self.stopped = stopped
  }

  /// Lets the first `writes` writes of each image through, then stops.
  public static func stop(after writes: Int, then stopped: @escaping @Sendable (_ index: Int) -> Void = { _ in }) -> WriteHook {
    WriteHook(allows: { $0 < writes }, stopped: stopped)
  }
}

/// Another opener with a write hook installed: what it opens is the base opener's.
public struct HookedOpener: DeviceOpener {
  public let base: DeviceOpener
  public let writeHook: WriteHook?

  public init(base: DeviceOpener, writeHook: WriteHook) {
    self.base = base
    self.writeHook = writeHook
  }

  public func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice {
    try base.open(spec, writable: writable)
  }

  public func create(_ spec: String) throws(FormatError) -> BlockDevice {
    try base.create(spec)
  }
}

/// Local image files and block devices (`FileImage`): what every command opens unless
/// told otherwise.
public struct LocalDeviceOpener: DeviceOpener {
  public init() {}

  public func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice {
    try FileImage(path: spec, writable: writable)
  }

  public func create(_ spec: String) throws(FormatError) -> BlockDevice {
    try FileImage(path: spec, writable: true, create: true)
  }
}
