import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A device held in memory (tests): readable and writable, sparse (64 KiB pages, made on
/// first write; unwritten bytes read as zeros), so a 1 GiB image costs only what was
/// written. `flush` has nothing to do; the lock is this object's. Reads and writes may
/// come from different threads.
public final class MemoryImage: BlockDevice {
  public let label: String
  public let isWritable = true
  private static let pageBytes = 64 << 10
  private let lock = NSLock()
  private var pages: [UInt64: [UInt8]] = [:]
  private var storedSize: UInt64
  private var locked = false

  /// Creates a device holding `bytes`.
  public init(label: String, bytes: [UInt8]) {
    self.label = label
    storedSize = UInt64(bytes.count)
    bytes.withUnsafeBytes { b in put(b, at: 0) }
  }

  /// Creates a device of `size` zero bytes.
  public init(label: String, size: UInt64 = 0) {
    self.label = label
    storedSize = size
  }

  public var size: UInt64 {
    lock.lock()
    defer { lock.unlock() }
    return storedSize
  }

  /// The bytes of the device (tests).
  public var bytes: [UInt8] { (try? read(at: 0, count: Int(size))) ?? [] }

  /// A device with the same bytes, named `label` (a crash test's fresh copy).
  public func copy(label: String? = nil) -> MemoryImage {
    lock.lock()
    defer { lock.unlock() }
    let c = MemoryImage(label: label ?? self.label, size: storedSize)
    c.pages = pages
    return c
  }

  /// True when both devices hold the same bytes (a test's "nothing was written").
  public func sameContent(as other: MemoryImage) -> Bool {
    let (a, sa) = snapshot()
    let (b, sb) = other.snapshot()
    guard sa == sb else { return false }
    let zero = [UInt8](repeating: 0, count: Self.pageBytes)
    return Set(a.keys).union(b.keys).allSatisfy { (a[$0] ?? zero) == (b[$0] ?? zero) }
  }

  private func snapshot() -> ([UInt64: [UInt8]], UInt64) {
    lock.lock()
    defer { lock.unlock() }
    return (pages, storedSize)
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    let r: Result<Void, FormatError> = out.withUnsafeMutableBytes { b in
      do throws(FormatError) {
        try read(at: offset, into: b)
        return .success(())
      } catch { return .failure(error) }
    }
    try r.get()
    return out
  }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    lock.lock()
    defer { lock.unlock() }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
    guard !overflow, end <= storedSize else {
      throw FormatError(
        .truncated(needed: UInt64(buffer.count), available: offset < storedSize ? storedSize - offset : 0),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    var done = 0
    while done < buffer.count {
      let at = offset + UInt64(done)
      let page = at / UInt64(Self.pageBytes)
      let inPage = Int(at % UInt64(Self.pageBytes))
      let n = min(buffer.count - done, Self.pageBytes - inPage)
      let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
      if let p = pages[page] {
        p.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[inPage..<inPage + n])) }
      } else {
        dst.initializeMemory(as: UInt8.self, repeating: 0)
      }
      done += n
    }
  }

  public func write(at offset: UInt64, from bytes: UnsafeRawBufferPointer) throws(FormatError) {
    let (_, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
    guard !overflow else {
      throw FormatError(.deviceRefused(.writePastLimit(bits: 64)), at: Location(image: label, offset: offset, structure: "write"))
    }
    lock.lock()
    defer { lock.unlock() }
    put(bytes, at: offset)
  }

  /// Stores `bytes` at `offset`, growing the device as a file grows (lock held).
  private func put(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) {
    var done = 0
    while done < bytes.count {
      let at = offset + UInt64(done)
      let page = at / UInt64(Self.pageBytes)
      let inPage = Int(at % UInt64(Self.pageBytes))
      let n = min(bytes.count - done, Self.pageBytes - inPage)
      var p = pages.removeValue(forKey: page) ?? [UInt8](repeating: 0, count: Self.pageBytes)
      p.withUnsafeMutableBytes { dst in
        UnsafeMutableRawBufferPointer(rebasing: dst[inPage..<inPage + n]).copyMemory(
          from: UnsafeRawBufferPointer(rebasing: bytes[done..<done + n]))
      }
      pages[page] = p
      done += n
    }
    storedSize = max(storedSize, offset + UInt64(bytes.count))
  }

  public func flush() throws(FormatError) {}

  public func lockExclusive() throws(FormatError) {
    lock.lock()
    defer { lock.unlock() }
    guard !locked else {
      throw FormatError(.deviceRefused(.lockedInProcess(image: label)), at: Location(image: label, structure: "image"))
    }
    locked = true
  }

  public func unlock() {
    lock.lock()
    locked = false
    lock.unlock()
  }

  public func setSize(_ newSize: UInt64) throws(FormatError) {
    lock.lock()
    defer { lock.unlock() }
    storedSize = newSize
    let keep = (newSize + UInt64(Self.pageBytes) - 1) / UInt64(Self.pageBytes)
    pages = pages.filter { $0.key < keep }
    // The bytes past the end of the last page kept read as zeros if the device grows again.
    let tail = Int(newSize % UInt64(Self.pageBytes))
    if tail != 0, var p = pages.removeValue(forKey: keep - 1) {
      for i in tail..<Self.pageBytes { p[i] = 0 }
      pages[keep - 1] = p
    }
  }
}

/// Memory devices by name (tests): an opener for nodes that never touch a file. Opening
/// a name gives the same device each time (as a path gives the same file); `create`
/// makes an empty one.
public final class MemoryDeviceOpener: DeviceOpener, @unchecked Sendable {
  private let lock = NSLock()
  private var devices: [String: MemoryImage]

  public init(_ devices: [String: MemoryImage] = [:]) {
    self.devices = devices
  }

  /// The device named `name`, if any.
  public subscript(name: String) -> MemoryImage? {
    get {
      lock.lock()
      defer { lock.unlock() }
      return devices[name]
    }
    set {
      lock.lock()
      devices[name] = newValue
      lock.unlock()
    }
  }

  public func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice {
    guard let d = self[spec] else {
      throw FormatError(.io(errno: ENOENT, operation: "open"), at: Location(image: spec, structure: "image"))
    }
    return d
  }

  public func create(_ spec: String) throws(FormatError) -> BlockDevice {
    lock.lock()
    defer { lock.unlock() }
    if let d = devices[spec] { return d }
    let d = MemoryImage(label: spec)
    devices[spec] = d
    return d
  }
}
