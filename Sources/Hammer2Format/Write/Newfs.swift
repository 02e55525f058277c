#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Where new UUIDs come from: the system's random source, or a seed (deterministic
/// images for tests and fixtures).
public struct UUIDSource {
  private var state: UInt64
  private let seeded: Bool

  /// Random UUIDs.
  public static var random: UUIDSource { UUIDSource(state: 0, seeded: false) }
  /// UUIDs from `seed`: the same seed gives the same sequence.
  public static func seeded(_ seed: UInt64) -> UUIDSource { UUIDSource(state: seed, seeded: true) }

  private mutating func next64() -> UInt64 {
    guard seeded else { return UInt64.random(in: 0...UInt64.max) }
    // SplitMix64
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// The next version-4 UUID.
  public mutating func next() -> H2UUID {
    var b = [UInt8](repeating: 0, count: 16)
    b.put(next64(), at: 0)
    b.put(next64(), at: 8)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    var u = H2UUID()
    u.bytes = b
    return u
  }
}

/// Formats a new HAMMER2 image the way newfs_hammer2 does (`hammer2_mkfs`): volume
/// header copies at every 2 GiB boundary inside the volume, boot and aux areas, the
/// super-root inode and one PFS root per label in the first 64 KiB block after the aux
/// area, an empty freemap (leaves are created on first allocation).
public enum Newfs {
  /// `newfs` boot/aux sizing (§2.3): default halved while above size/20, at least
  /// 8 MiB, rounded up to 8 MiB.
  static func areaSize(default d: UInt64, total: UInt64) -> UInt64 {
    var s = d
    while s > total / 20, s > 8 << 20 { s /= 2 }
    s = max(s, 8 << 20)
    return (s + H2.volumeAlign - 1) & ~(H2.volumeAlign - 1)
  }

  /// The super-root inode and one PFS root per label, packed from `auxEnd` in the first
  /// 64 KiB block after the aux area (`format_hammer2_inode`), and the super-root's
  /// blockref for the volume header. Shared with `NewfsVolumes`.
  static func staticInodes(
    labels: [String], auxEnd: UInt64, compAlgo: UInt8, checkAlgo: UInt8,
    uuids: inout UUIDSource, time: UInt64
  ) throws(FormatError) -> (bytes: [UInt8], sroot: Blockref) {
    // Super-root and PFS roots share the first 64 KiB block after the aux area.
    var block = [UInt8](repeating: 0, count: 65536)
    var pfsBrefs: [Blockref] = []
    for (i, label) in labels.enumerated() {
      let name = Array(label.utf8)
      var ino = InodeData([UInt8](repeating: 0, count: InodeData.byteCount))
      ino.meta.version = 1
      ino.meta.typeRaw = ObjectType.directory.rawValue
      ino.meta.opFlags = OpFlags.pfsRoot
      ino.meta.mode = 0o755
      ino.meta.inum = 1
      ino.meta.nlinks = 1
      ino.meta.nameKey = DirHash.hash(name)
      ino.meta.nameLen = UInt16(name.count)
      ino.meta.compAlgo = label.uppercased() == "BOOT" ? CompressionMethod.autozero.rawValue : compAlgo
      ino.meta.checkAlgo = checkAlgo
      ino.meta.pfsTypeRaw = PFSType.master.rawValue
      ino.meta.pfsInum = 16
      ino.meta.pfsClid = uuids.next()
      ino.meta.pfsFsid = uuids.next()
      ino.meta.ctime = time
      ino.meta.mtime = time
      ino.meta.btime = time
      ino.filenameArea = name + [UInt8](repeating: 0, count: 256 - name.count)
      let raw = ino.encode()
      let off = 1024 * (i + 1)
      block.replaceSubrange(off..<off + 1024, with: raw)
      var b = Blockref()
      b.typeRaw = BlockrefType.inode.rawValue
      b.methods = CheckMethod.xxhash64.rawValue << 4
      b.copyid = 255
      b.vradix = 10
      b.flags = BlockrefFlags.pfsRoot
      b.key = DirHash.hash(name)
      b.mirrorTid = 16
      b.dataOff = (auxEnd + UInt64(off)) | 10
      b.check = CheckCode.compute(.xxhash64, over: raw)
      pfsBrefs.append(b)
    }
    pfsBrefs.sort { $0.key < $1.key }
    guard pfsBrefs.count <= 4 else { throw FormatError(.newfsRefused(.tooManyLabels(limit: 4))) }
    var sroot = InodeData([UInt8](repeating: 0, count: InodeData.byteCount))
    sroot.meta.version = 1
    sroot.meta.typeRaw = ObjectType.directory.rawValue
    sroot.meta.mode = 0o700
    sroot.meta.nlinks = 2
    sroot.meta.nameLen = 7
    sroot.meta.compAlgo = CompressionMethod.autozero.rawValue
    sroot.meta.checkAlgo = CheckMethod.xxhash64.rawValue
    sroot.meta.pfsTypeRaw = PFSType.suproot.rawValue
    sroot.meta.pfsClid = uuids.next()
    sroot.meta.pfsFsid = uuids.next()
    sroot.meta.ctime = time
    sroot.meta.mtime = time
    sroot.meta.btime = time
    sroot.filenameArea = Array("SUPROOT".utf8) + [UInt8](repeating: 0, count: 249)
    sroot.u = encodeBlockrefs(pfsBrefs + [Blockref](repeating: Blockref(), count: 4 - pfsBrefs.count))
    let srootRaw = sroot.encode()
    block.replaceSubrange(0..<1024, with: srootRaw)
    var srootBref = Blockref()
    srootBref.typeRaw = BlockrefType.inode.rawValue
    srootBref.methods = CheckMethod.xxhash64.rawValue << 4 | CompressionMethod.autozero.rawValue
    srootBref.copyid = 255
    srootBref.vradix = 10
    srootBref.leafCount = UInt16(pfsBrefs.count)
    srootBref.mirrorTid = 16
    srootBref.dataOff = auxEnd | 10
    srootBref.check = CheckCode.compute(.xxhash64, over: srootRaw)
    return (Array(block[0..<1024 * (labels.count + 1)]), srootBref)
  }

  /// Creates `path` of `size` bytes (rounded down to 8 MiB) with PFSs `labels`
  /// (MASTER, fresh cluster ids), made by `opener`. Times are µs since the epoch.
  public static func format(
    path: String, size requested: UInt64, labels: [String] = ["LOCAL"],
    compAlgo: UInt8 = CompressionMethod.lz4.rawValue, checkAlgo: UInt8 = CheckMethod.xxhash64.rawValue,
    uuids: inout UUIDSource, time: UInt64, opener: DeviceOpener = LocalDeviceOpener()
  ) throws(FormatError) {
    let size = requested & ~(H2.volumeAlign - 1)
    guard size >= 1 << 30 else {
      throw FormatError(.newfsRefused(.imageTooSmall), at: Location(image: path, structure: "image"))
    }
    let loc = Location(image: path, structure: "image")
    var st = stat()
    if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 {
      throw FormatError(.newfsRefused(.notEmpty(path: path)), at: loc)
    }
    let img = try WritableImage(path: path, create: true, opener: opener)
    try img.setSize(size)
    let boot = areaSize(default: 64 << 20, total: size)
    let aux = areaSize(default: 256 << 20, total: size)
    let bootBeg = H2.zoneSeg
    let bootEnd = bootBeg + boot
    let auxEnd = bootEnd + aux
    let regions = (size + (1 << 30) - 1) >> 30
    let allocatorSize = size - regions * H2.zoneSeg - boot - aux

    let (inodes, srootBref) = try staticInodes(
      labels: labels, auxEnd: auxEnd, compAlgo: compAlgo, checkAlgo: checkAlgo, uuids: &uuids, time: time)
    try img.write(at: auxEnd, inodes, structure: "static inodes")

    var hdr = VolumeHeader([UInt8](repeating: 0, count: VolumeHeader.byteCount))
    hdr.magic = H2.volumeIdHBO
    hdr.bootBeg = bootBeg
    hdr.bootEnd = bootEnd
    hdr.auxBeg = bootEnd
    hdr.auxEnd = auxEnd
    hdr.voluSize = size
    hdr.version = 2
    hdr.peerType = 3
    hdr.nvolumes = 1
    hdr.fsid = uuids.next()
    hdr.fstype = VolumeHeader.hammer2FSType
    hdr.allocatorSize = allocatorSize
    hdr.allocatorFree = allocatorSize
    hdr.allocatorBeg = auxEnd + 1024 * UInt64(labels.count + 1)
    hdr.mirrorTid = 16
    hdr.freemapTid = 16
    hdr.totalSize = size
    hdr.srootBlockset = [srootBref, Blockref(), Blockref(), Blockref()]
    hdr.freemapBlockset = [Blockref](repeating: Blockref(), count: 4)
    hdr.voluLoff = [0] + [UInt64](repeating: .max, count: 63)
    let raw = hdr.encode(recomputeCRCs: true)
    var slot: UInt64 = 0
    while slot < UInt64(H2.numVolHeaders), slot * H2.zoneBytes64 < size {
      try img.write(at: slot * H2.zoneBytes64, raw, structure: "volume header #\(slot)")
      slot += 1
    }
    try img.sync()
  }
}
