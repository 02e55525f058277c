/// Random-access reads from one device image: a device (`BlockDevice`: a file, memory, a
/// remote export), the volumes of a multi-volume node read as one (`MultiVolumeImage`),
/// an image being written (`WritableImage`) or a patched view (`OverlayImage`, for
/// damage tests).
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
  /// True when every read waits for a network round trip (a remote export): walks then
  /// hint the blocks they will read next, which on a local file would only add system
  /// calls to reads served from the page cache.
  var isRemote: Bool { get }
  /// The volumes of a multi-volume file system, in id order, or nil for one device
  /// (`MultiVolumeImage`, a multi-volume `WritableImage`).
  var volumeExtents: [VolumeExtent]? { get }
  /// The bytes from offset 0 that lie on the root volume's device: the volume header
  /// copies are read only there (a slot beyond belongs to another volume's space).
  var headerSpan: UInt64 { get }
}

extension ImageIO {
  public func willNeed(at offset: UInt64, count: Int) {}
  public var isRemote: Bool { false }
  public var volumeExtents: [VolumeExtent]? { nil }
  public var headerSpan: UInt64 { size }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let bytes = try read(at: offset, count: buffer.count)
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
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

  public var isRemote: Bool { base.isRemote }

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
        let from = max(pStart, offset)
        let to = min(pStart + 4096, end)
        for pos in from..<to { buf[Int(pos - offset)] = data[Int(pos - pStart)] }
      }
      page += 1
    }
    return buf
  }
}
