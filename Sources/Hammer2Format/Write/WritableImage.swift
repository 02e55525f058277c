import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An image opened for writing: every device locked, and the one write path of the
/// whole project (`write(at:_:)`), which counts writes and asks the opener's write hook
/// (`WriteHook`) before each, so tests can prove that every prefix of a transaction
/// leaves a valid image. Bytes reach the devices only through `BlockDevice.write`, the
/// volume header through `writeDurably`, syncs through `flush`.
///
/// A multi-volume file system (paths joined by `:`, `ImagePath`) is opened as one
/// logical image (`openNode`): every device locked, the volumes checked as one file
/// system (`VolumeSet.verify`), and each read and write routed to the device holding it
/// at `logical − volu_loff` (2 MiB write windows never straddle the 1 GiB-aligned volumes).
public final class WritableImage: ImageIO {
  public let label: String
  public private(set) var size: UInt64
  /// The devices, in id order: one for a single image (offset 0, no end).
  let devices: [WritableDevice]
  /// The volumes of a multi-volume image (nil for one device).
  public let volumeExtents: [VolumeExtent]?
  public var headerSpan: UInt64 { volumeExtents?[0].size ?? size }
  public var isRemote: Bool { devices.contains { $0.device.isRemote } }
  /// Writes performed through this image.
  public private(set) var writes = 0
  /// Bytes written.
  public private(set) var bytesWritten: UInt64 = 0
  private let hook: WriteHook?
  /// The index of the write the hook refused (every later one is refused too).
  private var stoppedAt: Int?

  /// Opens `path` read-write through `opener` (`openNode`), every device locked: on a
  /// local block device that is mounted or open elsewhere, refused (`FileImage`).
  /// `path` may name several volumes joined by `:` (never with `create`).
  public init(path: String, create: Bool = false, opener: DeviceOpener = LocalDeviceOpener()) throws(FormatError) {
    label = path
    let node = try openNode(path, access: create ? .create : .write, opener: opener)
    if let extents = node.volumes {
      devices = zip(extents, node.devices).map { WritableDevice(device: $1, offset: $0.offset, end: $0.end) }
      size = extents.last?.end ?? 0
    } else {
      devices = [WritableDevice(device: node.devices[0], offset: 0, end: .max)]
      size = node.devices[0].size
    }
    volumeExtents = node.volumes
    hook = opener.writeHook
  }

  deinit {
    submitGathered()
    writer.shutdown()
    for d in devices { d.device.unlock() }
  }

  /// The device holding `offset..<offset+count` and the device offset; a range outside
  /// every volume or across two is refused.
  private func route(_ offset: UInt64, _ count: Int, structure: String) throws(FormatError) -> (device: WritableDevice, offset: UInt64) {
    if devices.count == 1 { return (devices[0], offset) }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard let d = devices.last(where: { $0.offset <= offset }), !overflow, offset < d.end, end <= d.end else {
      throw FormatError(
        .deviceRefused(.writeAcrossVolumes(offset: offset, count: count)),
        at: Location(image: label, offset: offset, structure: structure))
    }
    return (d, offset - d.offset)
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    let (device, devOffset) = try readRoute(offset, count)
    return try device.device.read(at: devOffset, count: count)
  }

  /// `read(at:count:)` into the caller's buffer: no array per read (the cross-check and
  /// the copy read megabytes through here).
  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let (device, devOffset) = try readRoute(offset, buffer.count)
    try device.device.read(at: devOffset, into: buffer)
  }

  /// Where a read of `count` bytes at `offset` goes, once the pending writes it
  /// overlaps are on the device; a read past the end is `.truncated`.
  private func readRoute(_ offset: UInt64, _ count: Int) throws(FormatError) -> (device: WritableDevice, offset: UInt64) {
    if pendingOverlaps(offset, count) { try drain() }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    return try route(offset, count, structure: "read")
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
  public func write(
    at offset: UInt64, count: Int, structure: String,
    fill: @escaping (UnsafeMutableRawBufferPointer) -> FormatError?
  ) throws(FormatError) {
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

  /// Before each write: the write hook, an earlier write error, the range's end.
  private func beginWrite(at offset: UInt64, count: Int, structure: String) throws(FormatError) -> UInt64 {
    if let hook { try ask(hook, structure: structure, offset: offset) }
    try writer.check()
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow else {
      throw FormatError(.deviceRefused(.writePastLimit(bits: 64)), at: Location(image: label, offset: offset, structure: structure))
    }
    if devices.count > 1 { _ = try route(offset, count, structure: structure) }
    return end
  }

  /// The write hook's answer for the next write. A refusal (a simulated crash) lets the
  /// writes before it reach the devices, as a crash leaves them in the page cache, with
  /// no flush, tells the hook, and stops this write and every later one.
  private func ask(_ hook: WriteHook, structure: String, offset: UInt64) throws(FormatError) {
    if stoppedAt == nil, !hook.allows(writes) {
      stoppedAt = writes
      submitGathered()
      _ = try? writer.drain()
      hook.stopped(writes)
    }
    if let n = stoppedAt {
      throw FormatError(
        .io(errno: ECANCELED, operation: "write (stopped by the write hook after \(n) writes)"),
        at: Location(image: label, offset: offset, structure: structure))
    }
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
      do throws(FormatError) {
        try write(at: offset, b, structure: structure)
        return .success(())
      } catch { return .failure(error) }
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

  /// Flushes everything written so far to stable storage (`BlockDevice.flush`).
  public func sync() throws(FormatError) {
    try drain()
    if let n = stoppedAt {
      throw FormatError(
        .io(errno: ECANCELED, operation: "sync (writes stopped by the write hook after \(n) writes)"),
        at: Location(image: label, structure: "image"))
    }
    for d in devices { try d.device.flush() }
  }

  /// The commit point's write (the volume header): `bytes` written after every earlier
  /// write has reached the devices, on stable storage when it returns
  /// (`BlockDevice.writeDurably`). The caller `sync`s first, so the blocks the header
  /// points to are durable before it is.
  public func writeDurably(at offset: UInt64, _ bytes: [UInt8], structure: String) throws(FormatError) {
    let end = try beginWrite(at: offset, count: bytes.count, structure: structure)
    try drain()
    let (device, devOffset) = try route(offset, bytes.count, structure: structure)
    let r: Result<Void, FormatError> = bytes.withUnsafeBytes { b in
      do throws(FormatError) {
        try device.device.writeDurably(at: devOffset, from: b)
        return .success(())
      } catch { return .failure(error) }
    }
    try r.get()
    endWrite(count: bytes.count, end: end)
  }

  /// Releases the exclusive lock (after a commit), so another transaction can start
  /// while this object is still alive.
  public func unlock() {
    for d in devices { d.device.unlock() }
  }

  /// Sets the file size (new single-device images only).
  public func setSize(_ newSize: UInt64) throws(FormatError) {
    guard devices.count == 1 else {
      throw FormatError(
        .deviceRefused(.multiVolumeResize), at: Location(image: label, structure: "image"))
    }
    try drain()
    try devices[0].device.setSize(newSize)
    size = newSize
  }
}
