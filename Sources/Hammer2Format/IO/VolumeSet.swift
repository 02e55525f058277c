/// How a node is named and opened: one image path, or the paths of a multi-volume file
/// system's volumes joined by `:` (DragonFly's own syntax, `hammer2 show da0:da1`;
/// `hammer2_init_devvp` splits the mount string the same way). Every path string the
/// project opens goes through `ImagePath.devices` in `openNode` (reading and writing),
/// so every command takes both forms.
public enum ImagePath {
  /// The device paths of `spec`: split at `:`, empty parts dropped. A path that exists as
  /// given is one image even when it contains `:` (a file name, not a volume list); an
  /// NBD URI is one device (`DeviceSpec.split`).
  public static func devices(_ spec: String) -> [String] {
    guard spec.contains(":"), access(spec, F_OK) != 0 else { return [spec] }
    if spec.contains("://") { return DeviceSpec.split(spec) } // NBD URIs stay whole
    let parts = spec.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
    return parts.isEmpty ? [spec] : parts
  }

  /// A short name for reports: the file name of each device, joined by `:`.
  public static func shortName(_ spec: String) -> String {
    devices(spec).map { p in DeviceSpec.printable(p).split(separator: "/").last.map(String.init) ?? p }.joined(separator: ":")
  }
}

/// How `openNode` opens a node's devices.
public enum NodeAccess: Sendable {
  /// Read-only, no lock.
  case read
  /// Read-write, every device locked (`lockExclusive`).
  case write
  /// Read-write and locked, the device created when missing (newfs; one device only).
  case create
}

/// The devices of one node, opened together (`openNode`).
public struct NodeDevices {
  /// The node as the user named it (`a0.img:a1.img`).
  public let spec: String
  /// One device per volume, in id order.
  public let devices: [BlockDevice]
  /// The volumes of a multi-volume node, checked as one file system; nil for one device.
  public let volumes: [VolumeExtent]?
}

/// The one way a node is opened, for reading and for writing: `spec` split into its
/// devices (`ImagePath.devices`), each opened by `opener`; several are checked as one
/// file system (`VolumeSet.verify`, as `hammer2_verify_volumes_2` does). For writing,
/// the volumes are checked first without locks, so a volume named twice is reported as
/// such (its second lock would fail), then again once every device is locked: nobody
/// can change them between that check and the commit.
public func openNode(_ spec: String, access: NodeAccess = .read, opener: DeviceOpener) throws(FormatError) -> NodeDevices {
  let specs = ImagePath.devices(spec)
  if specs.count == 1 {
    let device: BlockDevice
    switch access {
    case .read: device = try opener.open(specs[0], writable: false)
    case .write: device = try opener.open(specs[0], writable: true)
    case .create: device = try opener.create(specs[0])
    }
    if access != .read { try device.lockExclusive() }
    return NodeDevices(spec: spec, devices: [device], volumes: nil)
  }
  guard access != .create else {
    throw FormatError(
      .deviceRefused(.multiVolumeCreate),
      at: Location(image: spec, structure: "image"))
  }
  let readOnly = try specs.map { s throws(FormatError) in try opener.open(s, writable: false) }
  let extents = try VolumeSet.verify(spec: spec, devices: readOnly)
  guard access == .write else { return NodeDevices(spec: spec, devices: readOnly, volumes: extents) }
  var locked: [BlockDevice] = []
  do throws(FormatError) {
    for s in specs {
      let device = try opener.open(s, writable: true)
      try device.lockExclusive()
      locked.append(device)
    }
    return NodeDevices(spec: spec, devices: locked, volumes: try VolumeSet.verify(spec: spec, devices: locked))
  } catch {
    for d in locked { d.unlock() }
    throw error
  }
}

/// Opens `spec` read-only (`openNode`): its device, or a `MultiVolumeImage` for
/// several joined by `:`.
public func openImage(_ spec: String, opener: DeviceOpener = LocalDeviceOpener()) throws(FormatError) -> ImageIO {
  let node = try openNode(spec, opener: opener)
  guard let volumes = node.volumes else { return node.devices[0] }
  return MultiVolumeImage(spec: spec, volumes: volumes, devices: node.devices)
}

/// One volume of a multi-volume file system (`hammer2_volume_t`): its device and the
/// logical range it holds, `[offset, offset + size)`; device offset = logical − offset.
public struct VolumeExtent: Sendable, Equatable {
  /// The device path as given.
  public var label: String
  /// `volu_id`: its position in the file system (0 = root volume).
  public var id: Int
  /// `volu_loff[volu_id]`: logical start (1 GiB aligned).
  public var offset: UInt64
  /// `volu_size`: the bytes of logical space it holds.
  public var size: UInt64
  /// The device's own size (at least `size`).
  public var deviceSize: UInt64
  /// The slot of the header copy chosen on it.
  public var headerSlot: Int

  /// End of its logical range.
  public var end: UInt64 { offset + size }
}

/// The checks DragonFly makes on the volumes of a file system before mounting it
/// (`hammer2_init_volumes`, `hammer2_verify_volumes_common`, `hammer2_verify_volumes_2`
/// in hammer2_ondisk.c), with the device order fixed: the volumes must be given in id
/// order, root volume first, so that the path string names the file system the same
/// way every time.
public enum VolumeSet {
  /// `HAMMER2_MAX_VOLUMES`.
  public static let maxVolumes = 64
  /// `HAMMER2_FREEMAP_LEVEL1_SIZE`: non-last volumes are multiples of it, offsets aligned.
  static let level1: UInt64 = 1 << 30

  /// The chosen header of each device in `devices` (in the order given) checked as one
  /// file system; the volumes' extents. `spec` is the path string as the user gave it.
  public static func verify(spec: String, devices: [ImageIO]) throws(FormatError) -> [VolumeExtent] {
    guard devices.count <= maxVolumes else {
      throw FormatError(
        .badVolumeList(.tooMany(given: devices.count, limit: maxVolumes)),
        at: Location(image: spec, structure: "volume list"))
    }
    var headers: [(VolumeHeader, Int, Location)] = []
    for io in devices {
      let chosen = try Volume.chooseHeader(io: io, span: io.size).chosen
      let h = chosen.header! // Safe: chooseHeader returns a valid copy.
      headers.append((h, chosen.slot, Location(image: io.label, offset: chosen.offset, structure: "volume header #\(chosen.slot)")))
    }
    let (root, _, rootLoc) = headers[0]
    guard root.voluId == 0 else {
      throw FormatError(
        .badVolumeList(.firstIsNotRoot(id: root.voluId, nvolumes: root.nvolumes)), at: rootLoc)
    }
    guard root.fstype == VolumeHeader.hammer2FSType else {
      throw FormatError(.unsupported(.fstype(root.fstype)), at: rootLoc)
    }
    guard root.version >= 2 else {
      throw FormatError(.badVolumeList(.singleVolumeVersion(version: root.version, given: devices.count)), at: rootLoc)
    }
    guard (2...3).contains(root.version) else {
      throw FormatError(.unsupported(.volumeVersion(root.version)), at: rootLoc)
    }
    var seen: [Int: String] = [:]
    var extents: [VolumeExtent] = []
    for (i, (h, slot, loc)) in headers.enumerated() {
      let io = devices[i]
      // Same file system (`hammer2_init_volumes`: version, nvolumes, fsid, fstype).
      guard h.fsid == root.fsid else {
        throw FormatError(
          .badVolumeList(.otherFileSystem(root: devices[0].label, fsid: h.fsid, expected: root.fsid)), at: loc)
      }
      guard h.fstype == root.fstype else {
        throw FormatError(.badVolumeList(.fstypeDiffers(h.fstype, root: root.fstype)), at: loc)
      }
      guard h.version == root.version else {
        throw FormatError(.badVolumeList(.versionDiffers(h.version, root: root.version)), at: loc)
      }
      guard h.nvolumes == root.nvolumes else {
        throw FormatError(.badVolumeList(.nvolumesDiffer(h.nvolumes, root: root.nvolumes)), at: loc)
      }
      let id = Int(h.voluId)
      guard id < maxVolumes else { throw FormatError(.badVolumeGeometry(.voluId(id, limit: maxVolumes)), at: loc) }
      if let other = seen[id] {
        throw FormatError(.badVolumeList(.givenTwice(id: id, other: other)), at: loc)
      }
      seen[id] = io.label
      guard id == i else {
        throw FormatError(
          .badVolumeList(.outOfOrder(id: id, position: i)), at: loc)
      }
      let off = h.voluLoff[id]
      guard !off.addingReportingOverflow(h.voluSize).overflow else {
        throw FormatError(.badVolumeGeometry(.extentOverflows(voluLoff: off, voluSize: h.voluSize)), at: loc)
      }
      extents.append(VolumeExtent(label: io.label, id: id, offset: off, size: h.voluSize, deviceSize: io.size, headerSlot: slot))
    }
    // `hammer2_verify_volumes_2`: the count, the sum, the offset table.
    let rootSlotLoc = rootLoc
    guard Int(root.nvolumes) == devices.count else {
      throw FormatError(.badVolumeList(.wrongCount(nvolumes: root.nvolumes, given: devices.count)), at: rootSlotLoc)
    }
    var sum: UInt64 = 0
    for e in extents {
      let (s, o) = sum.addingReportingOverflow(e.size)
      guard !o else { throw FormatError(.badVolumeGeometry(.sizesOverflow), at: rootSlotLoc) }
      sum = s
    }
    guard root.totalSize == sum else {
      throw FormatError(
        .sizeMismatch(.totalSizeNotSum(totalSize: root.totalSize, sum: sum)), at: rootSlotLoc)
    }
    for i in 0..<maxVolumes {
      let v = root.voluLoff[i]
      if i < extents.count, v == .max {
        throw FormatError(.badVolumeGeometry(.offsetMissing(index: i, volumes: extents.count)), at: rootSlotLoc)
      }
      if i >= extents.count, v != .max {
        throw FormatError(.badVolumeGeometry(.offsetPastLast(index: i, value: v, volumes: extents.count)), at: rootSlotLoc)
      }
    }
    for (i, e) in extents.enumerated() {
      let loc = headers[i].2
      // `hammer2_verify_volumes_common`: the device holds its volume.
      guard e.size != 0 else { throw FormatError(.badVolumeGeometry(.zeroSize), at: loc) }
      guard e.size <= e.deviceSize else { throw shorterThanVolume(deviceSize: e.deviceSize, voluSize: e.size, at: loc) }
      guard e.offset & (level1 - 1) == 0 else {
        throw FormatError(.badVolumeGeometry(.offsetMisaligned(voluLoff: e.offset)), at: loc)
      }
      if i == 0 {
        guard e.offset == 0 else { throw FormatError(.badVolumeGeometry(.rootOffsetNotZero(voluLoff: e.offset)), at: loc) }
      } else {
        let prev = extents[i - 1]
        guard e.offset == prev.end else {
          throw FormatError(
            .badVolumeGeometry(.offsetNotContiguous(voluLoff: e.offset, previous: i - 1, previousEnd: prev.end)), at: loc)
        }
      }
      if i != extents.count - 1 {
        guard e.size >= level1, e.size & (level1 - 1) == 0 else {
          throw FormatError(
            .badVolumeGeometry(.sizeNotGiBMultiple(voluSize: e.size)), at: loc)
        }
      } else {
        guard e.size & (H2.volumeAlign - 1) == 0 else {
          throw FormatError(.badVolumeGeometry(.lastSizeMisaligned(voluSize: e.size)), at: loc)
        }
      }
    }
    return extents
  }

  /// The error for a device shorter than its header's `volu_size`
  /// (`hammer2_verify_volumes_common`: "size ... exceeds device size ...").
  public static func shorterThanVolume(deviceSize: UInt64, voluSize: UInt64, at loc: Location) -> FormatError {
    FormatError(.sizeMismatch(.imageShorterThanVolume(deviceSize: deviceSize, voluSize: voluSize)), at: loc)
  }
}

/// The volumes of a multi-volume file system read as one logical image (the kernel's
/// `hammer2_get_volume` routing): a read goes to the device whose range holds it, at
/// `logical − volu_loff`. Media blocks never cross a 64 KiB boundary and volumes start on
/// 1 GiB boundaries, so no valid read straddles two volumes; one that would is refused.
public final class MultiVolumeImage: ImageIO {
  /// The path string as given (`a0.img:a1.img`).
  public let label: String
  /// The volumes in id order.
  public let volumes: [VolumeExtent]
  private let devices: [ImageIO]
  /// The end of the logical space (`total_size`).
  public let size: UInt64

  /// Checks `devices` (in the order given) as one file system.
  public init(spec: String, devices: [ImageIO]) throws(FormatError) {
    label = spec
    volumes = try VolumeSet.verify(spec: spec, devices: devices)
    self.devices = devices
    size = volumes.last.map { $0.end } ?? 0
  }

  /// `devices` already checked as the file system `volumes` (`openNode`).
  init(spec: String, volumes: [VolumeExtent], devices: [ImageIO]) {
    label = spec
    self.volumes = volumes
    self.devices = devices
    size = volumes.last.map { $0.end } ?? 0
  }

  public var volumeExtents: [VolumeExtent]? { volumes }
  public var headerSpan: UInt64 { volumes[0].size }

  /// The volume index and device offset of `offset..<offset+count`.
  private func route(_ offset: UInt64, _ count: Int) throws(FormatError) -> (Int, UInt64) {
    guard let i = volumes.lastIndex(where: { $0.offset <= offset }), offset < volumes[i].end else {
      throw FormatError(.truncated(needed: UInt64(count), available: 0), at: Location(image: label, offset: offset, structure: "read"))
    }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    guard !overflow, end <= volumes[i].end else {
      throw FormatError(
        .deviceRefused(.readAcrossVolumes(offset: offset, count: count, volume: i, end: volumes[i].end)),
        at: Location(image: label, offset: offset, structure: "read"))
    }
    return (i, offset - volumes[i].offset)
  }

  public func read(at offset: UInt64, count: Int) throws(FormatError) -> [UInt8] {
    let (i, dev) = try route(offset, count)
    return try devices[i].read(at: dev, count: count)
  }

  public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
    let (i, dev) = try route(offset, buffer.count)
    try devices[i].read(at: dev, into: buffer)
  }

  public var isRemote: Bool { devices.contains { $0.isRemote } }

  /// A read-ahead range may span volumes (it merges nearby blocks): each part goes to
  /// its device.
  public func willNeed(at offset: UInt64, count: Int) {
    guard count > 0 else { return }
    let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
    let last = overflow ? UInt64.max : end
    for (i, v) in volumes.enumerated() where v.offset < last && offset < v.end {
      let lo = max(offset, v.offset)
      let hi = min(last, v.end)
      devices[i].willNeed(at: lo - v.offset, count: Int(hi - lo))
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
