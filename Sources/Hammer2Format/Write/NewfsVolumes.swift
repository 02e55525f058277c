#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Formats a multi-volume HAMMER2 file system the way newfs_hammer2 does when given
/// several devices (`hammer2_mkfs` and `format_hammer2` in sbin/hammer2): the volumes'
/// logical ranges are laid end to end (volume i starts where volume i−1 ends), boot and
/// aux areas are sized from the total and live on the root volume with the static
/// inodes; every volume gets its own headers at 0/2/4/6 GiB (those inside it), all with
/// the same fsid, nvolumes, total_size and `volu_loff` table (§2.6).
public enum NewfsVolumes {
  /// `HAMMER2_FREEMAP_LEVEL1_SIZE`: every volume but the last is a multiple of it.
  static let level1: UInt64 = 1 << 30

  /// Volume sizes as newfs rounds its devices' sizes: every volume but the last down
  /// to a multiple of 1 GiB, the last down to a multiple of 8 MiB.
  public static func rounded(_ sizes: [UInt64]) -> [UInt64] {
    sizes.enumerated().map { i, s in
      i == sizes.count - 1 ? s & ~(H2.volumeAlign - 1) : s & ~(level1 - 1)
    }
  }

  /// `total` split over `count` volumes: equal shares of whole GiB for all but the
  /// last, which takes the rest (then `rounded`).
  public static func split(total: UInt64, count: Int) -> [UInt64] {
    guard count > 1 else { return rounded([total]) }
    let share = max(level1, (total / UInt64(count)) & ~(level1 - 1))
    let first = share * UInt64(count - 1)
    return rounded([UInt64](repeating: share, count: count - 1) + [total > first ? total - first : 0])
  }

  /// Creates the device files `paths` (in volume id order, root first) of `sizes`
  /// (rounded as `rounded` says) with PFSs `labels`, made by `opener`. One path is
  /// `Newfs.format`.
  public static func format(
    paths: [String], sizes requested: [UInt64], labels: [String] = ["LOCAL"],
    compAlgo: UInt8 = CompressionMethod.lz4.rawValue, checkAlgo: UInt8 = CheckMethod.xxhash64.rawValue,
    uuids: inout UUIDSource, time: UInt64, opener: DeviceOpener = LocalDeviceOpener()
  ) throws(FormatError) {
    let spec = paths.joined(separator: ":")
    let loc = Location(image: spec, structure: "volume list")
    guard paths.count == requested.count, !paths.isEmpty else {
      throw FormatError(.newfsRefused(.sizeCount(volumes: paths.count, sizes: requested.count)), at: loc)
    }
    if paths.count == 1 {
      try Newfs.format(
        path: paths[0], size: requested[0], labels: labels, compAlgo: compAlgo, checkAlgo: checkAlgo, uuids: &uuids, time: time,
        opener: opener)
      return
    }
    guard paths.count <= VolumeSet.maxVolumes else {
      throw FormatError(.newfsRefused(.tooManyVolumes(paths.count, limit: VolumeSet.maxVolumes)), at: loc)
    }
    guard Set(paths).count == paths.count else { throw FormatError(.newfsRefused(.volumeNamedTwice), at: loc) }
    let sizes = rounded(requested)
    for (i, s) in sizes.enumerated() where i < sizes.count - 1 && s < level1 {
      throw FormatError(
        .newfsRefused(.volumeTooSmall(index: i)),
        at: Location(image: paths[i], structure: "image"))
    }
    guard let lastSize = sizes.last, lastSize >= H2.volumeAlign else {
      throw FormatError(
        .newfsRefused(.lastVolumeTooSmall), at: Location(image: paths[paths.count - 1], structure: "image")
      )
    }
    for p in paths {
      var st = stat()
      if stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 {
        throw FormatError(
          .newfsRefused(.notEmpty(path: p)), at: Location(image: p, structure: "image"))
      }
    }
    var offsets: [UInt64] = []
    var total: UInt64 = 0
    for s in sizes {
      offsets.append(total)
      total += s
    }
    // `hammer2_mkfs`: areas sized from the total; reserved 4 MiB per GiB of the total.
    let boot = Newfs.areaSize(default: 64 << 20, total: total)
    let aux = Newfs.areaSize(default: 256 << 20, total: total)
    let bootBeg = H2.zoneSeg
    let bootEnd = bootBeg + boot
    let auxEnd = bootEnd + aux
    let regions = (total + level1 - 1) / level1
    let allocatorSize = total - regions * H2.zoneSeg - boot - aux

    let (inodes, srootBref) = try Newfs.staticInodes(
      labels: labels, auxEnd: auxEnd, compAlgo: compAlgo, checkAlgo: checkAlgo, uuids: &uuids, time: time)
    let fsid = uuids.next()
    var invalid = Blockref()
    invalid.typeRaw = 7 // HAMMER2_BREF_TYPE_INVALID: the non-root volumes' sroot blockset
    let loffTable = offsets + [UInt64](repeating: .max, count: VolumeSet.maxVolumes - offsets.count)

    // The other volumes first, the root volume (which makes it a file system) last.
    for i in Array(1..<paths.count) + [0] {
      let img = try WritableImage(path: paths[i], create: true, opener: opener)
      try img.setSize(sizes[i])
      var hdr = VolumeHeader([UInt8](repeating: 0, count: VolumeHeader.byteCount))
      hdr.magic = H2.volumeIdHBO
      hdr.voluSize = sizes[i]
      hdr.version = 2
      hdr.peerType = 3
      hdr.voluId = UInt8(i)
      hdr.nvolumes = UInt8(paths.count)
      hdr.fsid = fsid
      hdr.fstype = VolumeHeader.hammer2FSType
      hdr.allocatorSize = allocatorSize
      hdr.mirrorTid = 16
      hdr.freemapTid = 16
      hdr.totalSize = total
      hdr.freemapBlockset = [Blockref](repeating: Blockref(), count: 4)
      hdr.voluLoff = loffTable
      if i == 0 {
        try img.write(at: auxEnd, inodes, structure: "static inodes")
        hdr.bootBeg = bootBeg
        hdr.bootEnd = bootEnd
        hdr.auxBeg = bootEnd
        hdr.auxEnd = auxEnd
        hdr.allocatorFree = allocatorSize
        hdr.allocatorBeg = auxEnd + 1024 * UInt64(labels.count + 1)
        hdr.srootBlockset = [srootBref, Blockref(), Blockref(), Blockref()]
      } else {
        hdr.srootBlockset = [Blockref](repeating: invalid, count: 4)
      }
      let raw = hdr.encode(recomputeCRCs: true)
      var slot: UInt64 = 0
      while slot < UInt64(H2.numVolHeaders), slot * H2.zoneBytes64 < sizes[i] {
        try img.write(at: slot * H2.zoneBytes64, raw, structure: "volume header #\(slot)")
        slot += 1
      }
      try img.sync()
    }
  }
}
