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
public final class WritableImage: ImageIO {
  public let label: String
  public private(set) var size: UInt64
  let fd: Int32
  /// Writes performed through this image.
  public private(set) var writes = 0
  /// Bytes written.
  public private(set) var bytesWritten: UInt64 = 0
  private let crashAfter: Int?

  /// Opens `path` read-write with an exclusive lock. A block device that is mounted or
  /// open elsewhere is refused (`O_EXCL` on a block device fails with EBUSY on Linux).
  public init(path: String, create: Bool = false) throws(FormatError) {
    label = path
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
    fd = f
    var st2 = stat()
    fstat(f, &st2)
    if (st2.st_mode & S_IFMT) == S_IFBLK {
      let end = lseek(f, 0, SEEK_END)
      size = end > 0 ? UInt64(end) : 0
    } else {
      size = st2.st_size > 0 ? UInt64(st2.st_size) : 0
    }
    crashAfter = ProcessInfo.processInfo.environment["H2_CRASH_AFTER_WRITES"].flatMap { Int($0) }
  }

  deinit { close(fd) }

  /// True when `/proc/mounts` lists `path` as a mounted device.
  static func isMounted(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
    let real = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path
    return text.split(separator: "\n").contains { line in
      let dev = line.split(separator: " ").first.map(String.init) ?? ""
      return dev == path || dev == real
    }
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(.truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
                        at: Location(image: label, offset: offset, structure: "read"))
    }
    var buf = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
      let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw FormatError(n == 0 ? .truncated(needed: UInt64(count), available: UInt64(done)) : .io(errno: errno, operation: "pread"),
                          at: Location(image: label, offset: offset, structure: "read"))
      }
      done += n
    }
    return buf
  }

  /// The one write path. Every byte h2resync or h2mkimage writes goes through here.
  public func write(at offset: UInt64, _ bytes: [UInt8], structure: String) throws(FormatError) {
    if let n = crashAfter, writes >= n {
      // Simulated crash for the crash-safety tests: stop dead, no cleanup, no flush.
      _exit(86)
    }
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw FormatError(.io(errno: errno, operation: "pwrite"), at: Location(image: label, offset: offset, structure: structure))
      }
      done += n
    }
    writes += 1
    bytesWritten += UInt64(bytes.count)
    size = max(size, offset + UInt64(bytes.count))
  }

  /// Flushes everything written so far to stable storage.
  public func sync() throws(FormatError) {
    guard fsync(fd) == 0 else {
      throw FormatError(.io(errno: errno, operation: "fsync"), at: Location(image: label, offset: 0, structure: "image"))
    }
  }

  /// Releases the exclusive lock (after a commit), so another transaction can start
  /// while this object is still alive.
  public func unlock() { _ = flock(fd, LOCK_UN) }

  /// Sets the file size (new images only).
  public func setSize(_ newSize: UInt64) throws(FormatError) {
    guard ftruncate(fd, off_t(newSize)) == 0 else {
      throw FormatError(.io(errno: errno, operation: "ftruncate"), at: Location(image: label, offset: 0, structure: "image"))
    }
    size = newSize
  }
}
