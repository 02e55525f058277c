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
