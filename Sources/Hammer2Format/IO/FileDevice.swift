import CHammer2Codecs
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A local image file or block device. Read-only, or writable: then a block device is
/// opened `O_EXCL` (a mounted or busy one is refused), `flush` is `fsync`, and writes
/// aligned to 512 bytes go through a second descriptor opened `O_DIRECT` where the file
/// allows it (the writer's 2 MiB windows skip the page cache); buffered writes start
/// their writeback early (`sync_file_range`) so the commit's fsync finds little left.
public final class FileImage: BlockDevice {
  public let label: String
  public let isWritable: Bool
  private let storedSize: Atomic<UInt64>
  public var size: UInt64 { storedSize.load(ordering: .relaxed) }
  let fd: Int32
  private let isRegularFile: Bool
  /// The descriptor for direct I/O (-1 when unsupported or refused once).
  private var directFd: Int32 = -1
  /// The buffered range written since the last writeback hint.
  private var hintStart: UInt64 = 0
  private var hintEnd: UInt64 = 0

  /// Opens `path`, read-only unless `writable`; `create` makes a missing file.
  public init(path: String, writable: Bool = false, create: Bool = false) throws(FormatError) {
    label = path
    isWritable = writable
    let loc = Location(image: path, structure: "image")
    // O_CLOEXEC: a child process must not inherit the descriptor (and with it the lock).
    var flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC
    if writable {
      var st = stat()
      let exists = stat(path, &st) == 0
      if create && !exists { flags |= O_CREAT }
      if exists && (st.st_mode & S_IFMT) == S_IFBLK {
        flags |= O_EXCL
        if Self.isMounted(path) { throw FormatError(.deviceRefused(.mounted(path: path)), at: loc) }
      }
    }
    var f: Int32
    repeat { f = open(path, flags, 0o644) } while f < 0 && errno == EINTR
    guard f >= 0 else {
      let e = errno
      if writable {
        throw FormatError(
          e == EBUSY
            ? .deviceRefused(.busy(path: path)) : .io(errno: e, operation: "open for writing"),
          at: loc)
      }
      throw FormatError(.io(errno: e, operation: "open"), at: loc)
    }
    var st = stat()
    guard fstat(f, &st) == 0 else {
      let e = errno
      close(f)
      throw FormatError(.io(errno: e, operation: "fstat"), at: loc)
    }
    fd = f
    isRegularFile = (st.st_mode & S_IFMT) == S_IFREG
    if (st.st_mode & S_IFMT) == S_IFBLK {
      // A block device: its size comes from seeking to the end.
      let end = lseek(f, 0, SEEK_END)
      storedSize = Atomic(end > 0 ? UInt64(end) : 0)
    } else {
      storedSize = Atomic(st.st_size > 0 ? UInt64(st.st_size) : 0)
    }
    if writable { directFd = h2_open_direct(path) }
  }

  deinit {
    if directFd >= 0 { close(directFd) }
    close(fd)
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

  /// `posix_fadvise(POSIX_FADV_WILLNEED)`: the kernel queues the reads and returns, so
  /// one thread can keep many of them in flight.
  public func willNeed(at offset: UInt64, count: Int) {
    #if os(Linux)
      let size = self.size
      guard count > 0, offset < size, offset <= UInt64(Int64.max) else { return }
      _ = posix_fadvise(fd, off_t(offset), off_t(min(UInt64(count), size - offset)), POSIX_FADV_WILLNEED)
    #endif
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    var failure: FormatError?
    // Uninitialized: pread fills every byte or the read fails (no zero-fill pass).
    let buf = [UInt8](unsafeUninitializedCapacity: count) { ptr, initialized in
      do throws(FormatError) {
        try read(at: offset, into: UnsafeMutableRawBufferPointer(ptr))
      } catch {
        failure = error
        ptr.baseAddress!.initialize(repeating: 0, count: count)
      }
      initialized = count
    }
    if let failure { throw failure }
    return buf
  }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let count = buffer.count
    let size = self.size
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    guard count > 0, let base = buffer.baseAddress else { return }
    var done = 0
    while done < count {
      let n = pread(fd, base + done, count - done, off_t(offset) + off_t(done))
      if n < 0 {
        if errno == EINTR { continue }
        throw FormatError(
          .io(errno: errno, operation: "pread"), at: Location(image: label, offset: offset + UInt64(done), structure: "read"))
      }
      if n == 0 {
        throw FormatError(
          .truncated(needed: UInt64(count), available: UInt64(done)), at: Location(image: label, offset: offset, structure: "read"))
      }
      done += n
    }
  }

  public func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    let count = bytes.count
    guard isWritable else {
      throw FormatError(.deviceRefused(.readOnly(image: label)), at: Location(image: label, offset: offset, structure: "write"))
    }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= UInt64(Int64.max) else {
      throw FormatError(.deviceRefused(.writePastLimit(bits: 63)), at: Location(image: label, offset: offset, structure: "write"))
    }
    guard count > 0, let base = bytes.baseAddress else { return }
    defer { if isRegularFile, end > size { storedSize.store(end, ordering: .relaxed) } }
    if directFd >= 0, offset % 512 == 0, count % 512 == 0, Int(bitPattern: base) % 512 == 0 {
      var done = 0
      while done < count {
        let n = pwrite(directFd, base + done, count - done, off_t(offset) + off_t(done))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 || n % 512 != 0 { break }
        done += n
      }
      if done == count { return }
      // Direct I/O refused (a file system without it, a device with larger sectors):
      // the ordinary descriptor from now on, rewriting this range whole.
      close(directFd)
      directFd = -1
    }
    var done = 0
    while done < count {
      let n = pwrite(fd, base + done, count - done, off_t(offset) + off_t(done))
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw FormatError(
          .io(errno: n < 0 ? errno : EIO, operation: "pwrite"),
          at: Location(image: label, offset: offset + UInt64(done), structure: "write"))
      }
      done += n
    }
    // Buffered: start writeback early, in ranges of 4 MiB or more.
    if offset != hintEnd {
      startWriteback()
      hintStart = offset
    }
    hintEnd = end
    if hintEnd - hintStart >= 4 << 20 { startWriteback() }
  }

  private func startWriteback() {
    if hintEnd > hintStart { _ = h2_start_writeback(fd, Int64(hintStart), Int64(hintEnd - hintStart)) }
    hintStart = hintEnd
  }

  public func flush() throws(FormatError) {
    guard fsync(fd) == 0 else {
      throw FormatError(.io(errno: errno, operation: "fsync"), at: Location(image: label, structure: "image"))
    }
  }

  public func lockExclusive() throws(FormatError) {
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      throw FormatError(
        .deviceRefused(.lockedByProcess(image: label)),
        at: Location(image: label, structure: "image"))
    }
  }

  public func unlock() { _ = flock(fd, LOCK_UN) }

  public func setSize(_ newSize: UInt64) throws(FormatError) {
    let loc = Location(image: label, structure: "image")
    guard isWritable, isRegularFile, newSize <= UInt64(Int64.max) else {
      throw FormatError(.unsupported(.resizingNonFile(image: label)), at: loc)
    }
    guard ftruncate(fd, off_t(newSize)) == 0 else { throw FormatError(.io(errno: errno, operation: "ftruncate"), at: loc) }
    storedSize.store(newSize, ordering: .relaxed)
  }
}
