#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Sparse files read extent by extent: only the allocated (data) extents, found with
/// SEEK_DATA/SEEK_HOLE, so holes stay holes and cost nothing. The one implementation
/// behind image copies, digests, h2mkimage populate and h2bench's extent reads.
public enum SparseFile {
  #if os(Linux)
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4
  #else
    static let seekData: Int32 = 4
    static let seekHole: Int32 = 3
  #endif

  /// The allocated (data) extents of the open file `fd` below `size`, as half-open
  /// ranges. A file system without hole reporting yields one extent covering the file.
  public static func dataExtents(fd: Int32, size: Int64) -> [Range<Int64>] {
    var out: [Range<Int64>] = []
    var off: Int64 = 0
    while off < size {
      let d = lseek(fd, off_t(off), seekData)
      if d < 0 { break } // ENXIO: only a hole remains
      var h = lseek(fd, d, seekHole)
      if h < 0 || h > off_t(size) { h = off_t(size) }
      if d >= h { break }
      out.append(Int64(d)..<Int64(h))
      off = Int64(h)
    }
    return out
  }

  /// Reads the data extents of `fd` below `size` (or, with `holes`, the whole range as
  /// `cat` would) in pieces of at most `chunk` bytes, handing each piece's offset and
  /// bytes to `body` (the buffer is reused: copy what is kept). Returns the bytes read.
  @discardableResult
  public static func forEachChunk(
    fd: Int32, size: Int64, holes: Bool = false, chunk: Int = 1 << 20,
    _ body: (Int64, UnsafeRawBufferPointer) throws -> Void
  ) throws -> UInt64 {
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    defer { buf.deallocate() }
    var total: UInt64 = 0
    for range in holes ? [0..<size] : dataExtents(fd: fd, size: size) {
      var off = range.lowerBound
      while off < range.upperBound {
        let n = pread(fd, buf, min(chunk, Int(range.upperBound - off)), off_t(off))
        if n < 0 {
          if errno == EINTR { continue }
          throw SparseFileError(operation: "pread", errno: errno)
        }
        if n == 0 { break }
        try body(off, UnsafeRawBufferPointer(start: buf, count: n))
        off += Int64(n)
        total += UInt64(n)
      }
    }
    return total
  }

  /// Opens `path` read-only and runs `body` with its descriptor and size.
  public static func withOpenFile<T>(_ path: String, _ body: (Int32, Int64) throws -> T) throws -> T {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw SparseFileError(operation: "open \(path)", errno: errno) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw SparseFileError(operation: "fstat \(path)", errno: errno) }
    return try body(fd, Int64(st.st_size))
  }

  /// Copies `from` to `to` (created or truncated): same size, only the data extents
  /// written, so the copy of a sparse image is as sparse as the original.
  public static func copy(from: String, to: String) throws {
    try withOpenFile(from) { src, size in
      let dst = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
      guard dst >= 0 else { throw SparseFileError(operation: "create \(to)", errno: errno) }
      defer { close(dst) }
      guard ftruncate(dst, off_t(size)) == 0 else { throw SparseFileError(operation: "truncate \(to)", errno: errno) }
      try forEachChunk(fd: src, size: size) { off, bytes in
        guard pwrite(dst, bytes.baseAddress, bytes.count, off_t(off)) == bytes.count else {
          throw SparseFileError(operation: "write \(to)", errno: errno)
        }
      }
    }
  }

  /// Bytes in the data extents of `path` (0 when it cannot be read).
  public static func allocatedBytes(_ path: String) -> UInt64 {
    (try? withOpenFile(path) { fd, size in dataExtents(fd: fd, size: size).reduce(0) { $0 + UInt64($1.count) } }) ?? 0
  }
}

/// A system call on a host file failed.
public struct SparseFileError: Error, CustomStringConvertible, Sendable {
  public var operation: String
  public var errno: Int32
  public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
