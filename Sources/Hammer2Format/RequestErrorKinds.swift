/// The typed payloads of `FormatError.Kind` for requests the library refuses (volumes given
/// wrongly, a device that cannot be used so, an edit or newfs that cannot be made) and for
/// what was looked up and not found. Each `description` is the message text.
extension FormatError {
  /// What was looked up and not found.
  public enum Missing: Equatable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// A PFS by name; `have`: the names there are, when the message lists them.
    case pfs(name: String, have: [String]?)
    /// A PFS by cluster id and fsid.
    case pfsWithIDs(clid: H2UUID, fsid: H2UUID)
    /// An inode number (in the PFS named, when given).
    case inode(UInt64, pfs: String?)
    /// A path (in the PFS named, when given).
    case path(String, pfs: String?)
    /// A path the plan names that the focus does not hold.
    case onFocus(path: String)
    /// A name in a directory.
    case name(String)

    /// A name (`.name`): for callers that look up a plain name.
    public init(stringLiteral value: String) { self = .name(value) }

    public var description: String {
      switch self {
      case .pfs(let name, let have): return "PFS \"\(name)\"" + (have.map { " (have: \($0.joined(separator: ", ")))" } ?? "")
      case .pfsWithIDs(let clid, let fsid): return "PFS with clid \(clid) fsid \(fsid)"
      case .inode(let inum, let pfs): return "inode \(inum)" + (pfs.map { " in PFS \($0)" } ?? "")
      case .path(let path, let pfs): return path + (pfs.map { " in PFS \($0)" } ?? "")
      case .onFocus(let path): return "\(path) on the focus"
      case .name(let name): return name
      }
    }
  }

  /// Volumes given together that do not form one file system as given
  /// (`hammer2_init_volumes`, `hammer2_verify_volumes_*`).
  public enum VolumeListProblem: Equatable, Sendable, CustomStringConvertible {
    /// More devices than a file system can have.
    case tooMany(given: Int, limit: Int)
    /// The first device given is volume `id` of an `nvolumes`-volume file system.
    case firstIsNotRoot(id: UInt8, nvolumes: UInt8)
    /// A device given alone is volume `id`, not the root.
    case aloneIsNotRoot(id: UInt8, nvolumes: Int)
    /// The root volume given alone; the other volumes of `nvolumes` are missing.
    case rootWithoutOthers(image: String, nvolumes: Int)
    /// A version-1 header holds exactly one volume.
    case singleVolumeVersion(version: UInt32, given: Int)
    /// A volume of another file system (`fsid` where the root's is `expected`).
    case otherFileSystem(root: String, fsid: H2UUID, expected: H2UUID)
    /// A volume's fstype differs from the root's.
    case fstypeDiffers(H2UUID, root: H2UUID)
    /// A volume's version differs from the root's.
    case versionDiffers(UInt32, root: UInt32)
    /// A volume's nvolumes differs from the root's.
    case nvolumesDiffer(UInt8, root: UInt8)
    /// Volume `id` given twice (also as `other`).
    case givenTwice(id: Int, other: String)
    /// Volume `id` given in another position.
    case outOfOrder(id: Int, position: Int)
    /// The file system has `nvolumes` volumes; `given` were given.
    case wrongCount(nvolumes: UInt8, given: Int)
    /// The root volume's header read again differs from the one checked.
    case rootHeaderChanged

    public var description: String {
      switch self {
      case .tooMany(let n, let limit): return "\(n) volumes given; a HAMMER2 file system has at most \(limit)"
      case .firstIsNotRoot(let id, let n):
        return
          "this is volume \(id) of a \(n)-volume file system, not its root volume: give the volumes in id order, root volume (id 0) first"
      case .aloneIsNotRoot(let id, let n):
        return
          "this is volume \(id) of a \(n)-volume file system, not its root volume: give all \(n) volumes joined by ':' in id order, root volume first (a0.img:a1.img)"
      case .rootWithoutOthers(let image, let n):
        let missing = (1..<max(1, n)).map(String.init).joined(separator: ", ")
        return
          "this is the root volume of a \(n)-volume file system; volume(s) \(missing) missing: give all \(n) volumes joined by ':' in id order (\(image):VOLUME1...)"
      case .singleVolumeVersion(let v, let given): return "volume version \(v) holds exactly one volume; \(given) given"
      case .otherFileSystem(let root, let fsid, let expected):
        return "not a volume of the file system of \(root): fsid \(fsid), expected \(expected) (a volume of another file system)"
      case .fstypeDiffers(let t, let root): return "fstype \(t), but the root volume's is \(root)"
      case .versionDiffers(let v, let root): return "volume version \(v), but the root volume has version \(root)"
      case .nvolumesDiffer(let n, let root): return "nvolumes \(n), but the root volume says \(root)"
      case .givenTwice(let id, let other): return "volume \(id) is given twice (also as \(other))"
      case .outOfOrder(let id, let i):
        return "this is volume \(id) but is given in position \(i): give the volumes in id order, root volume first"
      case .wrongCount(let n, let given):
        let missing = (given..<max(given, Int(n))).map(String.init).joined(separator: ", ")
        let what = Int(n) > given ? "volume(s) \(missing) missing" : "\(given - Int(n)) too many"
        return "the file system has \(n) volumes, \(given) given (\(what)): give all of them joined by ':', in id order"
      case .rootHeaderChanged: return "the root volume's header changed while the volumes were opened"
      }
    }
  }

  /// A device (file, memory, NBD export) that cannot be used as asked.
  public enum DeviceProblem: Equatable, Sendable, CustomStringConvertible {
    /// Another writer in this process holds the device's lock.
    case lockedInProcess(image: String)
    /// Another h2resync/h2mkimage process holds the device's lock.
    case lockedByProcess(image: String)
    /// A block device that is mounted.
    case mounted(path: String)
    /// A block device that is busy (EBUSY on an exclusive open).
    case busy(path: String)
    /// A write to a device opened read-only.
    case readOnly(image: String)
    /// A write to an NBD connection opened read-only.
    case connectionReadOnly
    /// A writable open of an NBD export served read-only.
    case exportReadOnly
    /// Two NBD URIs that differ only in their query strings.
    case urisDifferOnlyInQuery
    /// A write whose end passes 2^`bits`.
    case writePastLimit(bits: Int)
    /// A write of `count` bytes at `offset` that is not inside one volume.
    case writeAcrossVolumes(offset: UInt64, count: Int)
    /// A read of `count` bytes at `offset` past the end (`end`) of volume `volume`.
    case readAcrossVolumes(offset: UInt64, count: Int, volume: Int, end: UInt64)
    /// Resizing the volumes of a multi-volume image.
    case multiVolumeResize
    /// Creating a multi-volume image other than by its newfs.
    case multiVolumeCreate
    /// A media block of `size` bytes read into a buffer of `buffer` bytes.
    case bufferSize(size: Int, buffer: Int)

    public var description: String {
      switch self {
      case .lockedInProcess(let i): return "\(i) is locked by another writer"
      case .lockedByProcess(let i): return "\(i) is locked by another h2resync/h2mkimage process"
      case .mounted(let p): return "\(p) is mounted; unmount it first"
      case .busy(let p): return "\(p) is busy (mounted or open exclusively elsewhere)"
      case .readOnly(let i): return "\(i) is open read-only"
      case .connectionReadOnly: return "opened read-only: no write may reach it"
      case .exportReadOnly: return "the NBD server exports this device read-only: it cannot be written (serve it writable to resync it)"
      case .urisDifferOnlyInQuery:
        return
          "two NBD URIs differ only in their query strings; give their exports distinct names (nbdkit's file plugin serves dir=DIR by file name)"
      case .writePastLimit(let bits): return "write past 2^\(bits)"
      case .writeAcrossVolumes(let o, let n): return "0x\(hex(UInt64(n))) bytes at 0x\(hex(o)) are not inside one volume"
      case .readAcrossVolumes(let o, let n, let v, let end):
        return "a read of \(n) bytes at 0x\(hex(o)) straddles the end of volume \(v) (0x\(hex(end)))"
      case .multiVolumeResize: return "the volumes of a multi-volume image keep their sizes"
      case .multiVolumeCreate: return "a multi-volume image is created by its newfs, one device at a time"
      case .bufferSize(let s, let b): return "block of \(s) bytes read into \(b)"
      }
    }
  }

  /// A newfs that cannot be made as asked.
  public enum NewfsProblem: Equatable, Sendable, CustomStringConvertible {
    /// More PFS labels than the super-root takes at newfs.
    case tooManyLabels(limit: Int)
    /// A single-volume image smaller than 1 GiB.
    case imageTooSmall
    /// The target exists and is not empty.
    case notEmpty(path: String)
    /// Volumes and sizes in different numbers.
    case sizeCount(volumes: Int, sizes: Int)
    /// More volumes than a file system can have.
    case tooManyVolumes(Int, limit: Int)
    /// A volume named twice.
    case volumeNamedTwice
    /// A volume other than the last smaller than 1 GiB.
    case volumeTooSmall(index: Int)
    /// The last volume smaller than 8 MiB.
    case lastVolumeTooSmall

    public var description: String {
      switch self {
      case .tooManyLabels(let limit): return "newfs takes at most \(limit) labels"
      case .imageTooSmall: return "an image needs at least 1 GiB"
      case .notEmpty(let p): return "\(p) exists and is not empty; refusing to overwrite it"
      case .sizeCount(let v, let s): return "\(v) volumes but \(s) sizes"
      case .tooManyVolumes(let n, let limit): return "\(n) volumes; a HAMMER2 file system has at most \(limit)"
      case .volumeNamedTwice: return "a volume is named twice"
      case .volumeTooSmall(let i): return "volume \(i) needs at least 1 GiB (every volume but the last is a multiple of 1 GiB)"
      case .lastVolumeTooSmall: return "the last volume needs at least 8 MiB"
      }
    }
  }

  /// An edit (of a PFS, its files or the freemap) that cannot be made as asked.
  public enum EditProblem: Equatable, Sendable, CustomStringConvertible {
    /// A directory entry of that name exists.
    case exists(name: String)
    /// A PFS of that name exists.
    case pfsExists(name: String)
    /// A PFS name outside 1...255 bytes.
    case pfsNameLength
    /// Every key of the PFS name's hash bucket is taken.
    case noFreePFSKey
    /// A snapshot of a PFS with uncommitted changes.
    case uncommittedSnapshot
    /// An inode used as a directory that is not one.
    case notADirectory(inum: UInt64)
    /// A path through something that is not a directory.
    case pathNotADirectory(String)
    /// An empty name, or one with '/' or NUL, or longer than 255 bytes.
    case invalidName
    /// Every key of the name's directory hash bucket is taken.
    case hashBucketFull
    /// A path that names the PFS root where an entry is needed.
    case namesRoot(path: String)
    /// A hard link to a directory.
    case hardlinkDirectory
    /// Removing a non-empty directory without recursion.
    case directoryNotEmpty
    /// Moving a directory into itself or below.
    case moveIntoItself
    /// Data read of an inode that has none.
    case noData(inum: UInt64)
    /// A write past the largest file size.
    case beyondLargestFile
    /// A raw block copy of a blockref without media.
    case rawCopyWithoutMedia
    /// Direct data larger than the inode's 512-byte area.
    case directDataTooLarge
    /// An allocation size that is not a power of two in 1 KiB...64 KiB.
    case allocationSize(Int)
    /// A range outside the freemap's control.
    case rangeOutsideFreemap(Range<UInt64>)
    /// A chunk in the reserved segment of its GiB.
    case reservedChunk(UInt64)

    public var description: String {
      switch self {
      case .exists(let n): return "\(n) exists"
      case .pfsExists(let n): return "PFS \"\(n)\" exists"
      case .pfsNameLength: return "PFS name must be 1..255 bytes"
      case .noFreePFSKey: return "no free key for PFS name"
      case .uncommittedSnapshot: return "snapshot of a PFS with uncommitted changes: commit first"
      case .notADirectory(let i): return "inode \(i) is not a directory"
      case .pathNotADirectory(let p): return "\(p) is not a directory"
      case .invalidName: return "invalid file name"
      case .hashBucketFull: return "directory hash bucket full"
      case .namesRoot(let p): return "\(p) names the PFS root"
      case .hardlinkDirectory: return "cannot hardlink a directory"
      case .directoryNotEmpty: return "directory not empty"
      case .moveIntoItself: return "cannot move a directory into itself"
      case .noData(let i): return "inode \(i) has no data"
      case .beyondLargestFile: return "write beyond the largest file size"
      case .rawCopyWithoutMedia: return "raw copy of a block without media"
      case .directDataTooLarge: return "direct data larger than 512 bytes"
      case .allocationSize(let s): return "allocation of \(s) bytes (must be a power of two, 1 KiB..64 KiB)"
      case .rangeOutsideFreemap(let r): return "range 0x\(hex(r.lowerBound))-0x\(hex(r.upperBound)) is not under freemap control"
      case .reservedChunk(let c): return "chunk 0x\(hex(c)) lies in the reserved segment of GiB \(c >> 30)"
      }
    }
  }
}
