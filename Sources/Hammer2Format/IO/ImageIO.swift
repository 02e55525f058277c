import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Random-access reads from one device image. The one seam between the format code and
/// storage: a file (`FileImage`), memory (`MemoryImage`) or a patched view of either
/// (`OverlayImage`, for damage tests).
public protocol ImageIO: AnyObject {
  /// The image path (or label) exactly as the user gave it.
  var label: String { get }
  /// Size of the image in bytes.
  var size: UInt64 { get }
  /// Reads exactly `count` bytes at `offset`; a short image is `.truncated`.
  func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8]
  /// Reads exactly `buffer.count` bytes at `offset` into `buffer` (no allocation where
  /// the source allows it: streaming scans reuse one buffer).
  func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError)
  /// A hint that `offset..<offset+count` will be read soon: a file starts reading it in
  /// the background. Never fails and changes nothing a read returns.
  func willNeed(at offset: UInt64, count: Int)
  /// The volumes of a multi-volume file system, in id order, or nil for one device
  /// (`MultiVolumeImage`, a multi-volume `WritableImage`).
  var volumeExtents: [VolumeExtent]? { get }
  /// The bytes from offset 0 that lie on the root volume's device: the volume header
  /// copies are read only there (a slot beyond belongs to another volume's space).
  var headerSpan: UInt64 { get }
}

extension ImageIO {
  public func willNeed(at offset: UInt64, count: Int) {}
  public var volumeExtents: [VolumeExtent]? { nil }
  public var headerSpan: UInt64 { size }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let bytes = try read(at: offset, count: buffer.count)
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
  }
}

/// An image file opened read-only. Nothing in this type can write.
public final class FileImage: ImageIO {
  public let label: String
  public let size: UInt64
  let fd: FileDescriptor

  /// Opens `path` read-only.
  public init(path: String) throws(FormatError) {
    label = path
    do {
      fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
    } catch let e as Errno {
      throw FormatError(.io(errno: e.rawValue, operation: "open"), at: Location(image: path, offset: 0, structure: "image"))
    } catch {
      throw FormatError(.io(errno: EIO, operation: "open"), at: Location(image: path, offset: 0, structure: "image"))
    }
    var st = stat()
    guard fstat(fd.rawValue, &st) == 0 else {
      let err = errno
      try? fd.close()
      throw FormatError(.io(errno: err, operation: "fstat"), at: Location(image: path, offset: 0, structure: "image"))
    }
    if (st.st_mode & S_IFMT) == S_IFBLK {
      // A block device: its size comes from seeking to the end.
      let end = lseek(fd.rawValue, 0, SEEK_END)
      size = end > 0 ? UInt64(end) : 0
    } else {
      size = st.st_size > 0 ? UInt64(st.st_size) : 0
    }
  }

  deinit { try? fd.close() }

  /// `posix_fadvise(POSIX_FADV_WILLNEED)`: the kernel queues the reads and returns, so
  /// one thread can keep many of them in flight.
  public func willNeed(at offset: UInt64, count: Int) {
    #if os(Linux)
      guard count > 0, offset < size, offset <= UInt64(Int64.max) else { return }
      _ = posix_fadvise(fd.rawValue, off_t(offset), off_t(min(UInt64(count), size - offset)), POSIX_FADV_WILLNEED)
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
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    guard count > 0, let base = buffer.baseAddress else { return }
    let raw = fd.rawValue
    var done = 0
    while done < count {
      let n = pread(raw, base + done, count - done, off_t(offset) + off_t(done))
      if n < 0 {
        if errno == EINTR { continue }
        throw FormatError(.io(errno: errno, operation: "pread"), at: Location(image: label, offset: offset + UInt64(done), structure: "read"))
      }
      if n == 0 {
        throw FormatError(.truncated(needed: UInt64(count), available: UInt64(done)), at: Location(image: label, offset: offset, structure: "read"))
      }
      done += n
    }
  }
}

/// An image held in memory (tests).
public final class MemoryImage: ImageIO {
  public let label: String
  /// The bytes of the image.
  public var bytes: [UInt8]
  public var size: UInt64 { UInt64(bytes.count) }

  /// Creates an in-memory image.
  public init(label: String, bytes: [UInt8]) {
    self.label = label
    self.bytes = bytes
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    return Array(bytes[Int(offset)..<Int(end)])
  }
}

/// A read-only view of another image with some bytes replaced and, optionally, a shorter
/// size: damage without copying a multi-GiB sparse file. Replaced bytes are kept in
/// 4 KiB pages.
public final class OverlayImage: ImageIO {
  public let label: String
  let base: ImageIO
  private var pages: [UInt64: [UInt8]] = [:]
  /// The visible size (at most the base size).
  public var size: UInt64

  /// Wraps `base`.
  public init(base: ImageIO, label: String? = nil) {
    self.base = base
    self.label = label ?? base.label
    self.size = base.size
  }

  /// Replaces bytes at `offset` (within the base image).
  public func patch(_ offset: UInt64, _ bytes: [UInt8]) {
    var i = 0
    while i < bytes.count {
      let pos = offset + UInt64(i)
      let page = pos / 4096
      let inPage = Int(pos % 4096)
      var data: [UInt8]
      if let p = pages[page] {
        data = p
      } else {
        let start = page * 4096
        let n = Int(min(4096, base.size > start ? base.size - start : 0))
        data = ((try? base.read(at: start, count: n)) ?? []) + [UInt8](repeating: 0, count: 4096 - n)
      }
      let n = min(bytes.count - i, 4096 - inPage)
      data.replaceSubrange(inPage..<inPage + n, with: bytes[i..<i + n])
      pages[page] = data
      i += n
    }
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= size else {
      throw FormatError(
        .truncated(needed: UInt64(count), available: offset < size ? size - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    var buf = try base.read(at: offset, count: count)
    guard count > 0, !pages.isEmpty else { return buf }
    var page = offset / 4096
    while page * 4096 < end {
      if let data = pages[page] {
        let pStart = page * 4096
        let from = max(pStart, offset), to = min(pStart + 4096, end)
        for pos in from..<to { buf[Int(pos - offset)] = data[Int(pos - pStart)] }
      }
      page += 1
    }
    return buf
  }
}
