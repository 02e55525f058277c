/// The typed payloads of `FormatError.Kind`: what exactly was wrong, as values a caller can
/// match on. Each `description` is the message text (the same words whatever the caller).
extension FormatError {
  /// A valid feature of HAMMER2 (or of a device) that this tool does not handle.
  public enum Feature: Equatable, Sendable, CustomStringConvertible {
    /// `fstype` is not `HAMMER2_FSTYPE`'s UUID.
    case fstype(H2UUID)
    /// A volume header version outside 1...3 (`HAMMER2_VOL_VERSION_*`).
    case volumeVersion(UInt32)
    /// A compression method code (the low nibble of `methods`) this tool does not know.
    case compressionMethod(UInt8)
    /// `freemap_tid` < `mirror_tid`: the freemap awaits DragonFly's mount-time recovery.
    case freemapAwaitingRecovery(freemapTid: UInt64, mirrorTid: UInt64)
    /// More separate runs of referenced chunks are marked free than a repair takes.
    case freemapRepairRuns(limit: Int)
    /// Resizing a device that keeps its size (`size` bytes).
    case resizingFixedDevice(size: UInt64)
    /// Resizing `image`, which is not a writable image file.
    case resizingNonFile(image: String)
    /// Creating a device with an opener that opens existing devices only.
    case creatingDevices

    public var description: String {
      switch self {
      case .fstype(let t): return "fstype \(t) is not HAMMER2's"
      case .volumeVersion(let v): return "volume version \(v)"
      case .compressionMethod(let m): return "compression method \(m)"
      case .freemapAwaitingRecovery(let f, let m):
        return
          "freemap_tid \(f) < mirror_tid \(m): the freemap awaits DragonFly's mount-time recovery; mount the image once read-write (or run bulkfree) first"
      case .freemapRepairRuns(let limit):
        return "the freemap marks more than \(limit) separate runs of referenced chunks free; repair it with DragonFly's bulkfree"
      case .resizingFixedDevice(let size): return "resizing this device (it keeps its size of \(size) bytes)"
      case .resizingNonFile(let image): return "resizing \(image) (only a writable image file can be resized)"
      case .creatingDevices: return "creating a device with this opener (it opens existing devices only)"
      }
    }
  }

  /// A blockref whose `data_off` cannot name a readable media block
  /// (`hammer2_io_alloc`'s rules).
  public enum BlockrefFault: Equatable, Sendable, CustomStringConvertible {
    /// The size radix (low 6 bits of `data_off`) is not 10...16.
    case sizeRadix(dataOff: UInt64, radix: UInt8)
    /// The block crosses a 64 KiB boundary or lies in the first 64 KiB.
    case crossesBoundary(offset: UInt64, size: Int)
    /// The block ends past the file system's size.
    case beyondFileSystem(offset: UInt64, size: Int, filesystemSize: UInt64)
    /// An INODE blockref whose size radix is not 10 (1 KiB).
    case inodeRadix(UInt8)

    public var description: String {
      switch self {
      case .sizeRadix(let d, let r): return "data_off 0x\(hex(d)) has invalid size radix \(r)"
      case .crossesBoundary(let o, let s): return "block 0x\(hex(o))/\(s) crosses a 64 KiB boundary or lies in the first 64 KiB"
      case .beyondFileSystem(let o, let s, let fs): return "block 0x\(hex(o))/\(s) lies beyond the file system (0x\(hex(fs)))"
      case .inodeRadix(let r): return "inode block has size radix \(r), not 10"
      }
    }
  }

  /// Two sizes that must agree do not (or one does not fit the other).
  public enum SizeMismatch: Equatable, Sendable, CustomStringConvertible {
    /// The device is shorter than its volume header's `volu_size`.
    case imageShorterThanVolume(deviceSize: UInt64, voluSize: UInt64)
    /// A single-volume file system whose `total_size` is not its `volu_size`.
    case totalSizeNotVolumeSize(totalSize: UInt64, voluSize: UInt64)
    /// `total_size` is not the sum of the volumes' sizes.
    case totalSizeNotSum(totalSize: UInt64, sum: UInt64)
    /// A directory entry's name is longer than its name block.
    case nameBlock(nameLength: Int, blockSize: Int)
    /// A freemap leaf block shorter than a leaf (`HAMMER2_FREEMAP_LEVELN_PSIZE`).
    case freemapLeaf(bytes: Int)
    /// A compressed block's length prefix exceeds the block.
    case lengthPrefix(codec: Codec, length: Int32, blockSize: Int)

    public var description: String {
      switch self {
      case .imageShorterThanVolume(let d, let v):
        return
          "the image is 0x\(hex(d)) bytes (\(d)), shorter than its volume header's volu_size 0x\(hex(v)) (\(v)): truncated or the wrong device"
      case .totalSizeNotVolumeSize(let t, let v):
        return "total_size 0x\(hex(t)) is not volu_size 0x\(hex(v)) on a single-volume file system"
      case .totalSizeNotSum(let t, let s): return "total_size 0x\(hex(t)) is not the sum of the volume sizes 0x\(hex(s))"
      case .nameBlock(let n, let b): return "\(n)-byte name in a \(b)-byte block"
      case .freemapLeaf(let b): return "freemap leaf of \(b) bytes"
      case .lengthPrefix(let c, let n, let b): return "\(c.rawValue) length prefix \(n) exceeds the \(b)-byte block"
      }
    }
  }

  /// A volume header field of a (multi-)volume file system out of its rules
  /// (`hammer2_verify_volumes_*`).
  public enum VolumeFault: Equatable, Sendable, CustomStringConvertible {
    /// `volu_id` is not below the volume limit.
    case voluId(Int, limit: Int)
    /// `volu_loff` + `volu_size` overflows 64 bits.
    case extentOverflows(voluLoff: UInt64, voluSize: UInt64)
    /// The volumes' sizes add past 64 bits.
    case sizesOverflow
    /// `volu_loff[index]` is -1 for a volume that exists.
    case offsetMissing(index: Int, volumes: Int)
    /// `volu_loff[index]` is set past the last volume.
    case offsetPastLast(index: Int, value: UInt64, volumes: Int)
    /// `volu_size` is 0.
    case zeroSize
    /// `volu_loff` is not 1 GiB aligned.
    case offsetMisaligned(voluLoff: UInt64)
    /// The root volume's `volu_loff` is not 0.
    case rootOffsetNotZero(voluLoff: UInt64)
    /// `volu_loff` does not start where the previous volume ends.
    case offsetNotContiguous(voluLoff: UInt64, previous: Int, previousEnd: UInt64)
    /// A volume other than the last whose size is not a multiple of 1 GiB.
    case sizeNotGiBMultiple(voluSize: UInt64)
    /// The last volume's size is not a multiple of 8 MiB.
    case lastSizeMisaligned(voluSize: UInt64)

    public var description: String {
      switch self {
      case .voluId(let id, let limit): return "volu_id \(id) is not below \(limit)"
      case .extentOverflows(let o, let s): return "volu_loff 0x\(hex(o)) + volu_size 0x\(hex(s)) overflows"
      case .sizesOverflow: return "volume sizes overflow"
      case .offsetMissing(let i, let n): return "volu_loff[\(i)] is -1 but the file system has \(n) volumes"
      case .offsetPastLast(let i, let v, let n): return "volu_loff[\(i)] 0x\(hex(v)) must be -1 (\(n) volumes)"
      case .zeroSize: return "volu_size is 0"
      case .offsetMisaligned(let o): return "volu_loff 0x\(hex(o)) is not 1 GiB aligned"
      case .rootOffsetNotZero(let o): return "the root volume's volu_loff 0x\(hex(o)) is not 0"
      case .offsetNotContiguous(let o, let p, let end):
        return "volu_loff 0x\(hex(o)) does not follow volume \(p) (which ends at 0x\(hex(end)))"
      case .sizeNotGiBMultiple(let s): return "volu_size 0x\(hex(s)) of a volume that is not the last is not a multiple of 1 GiB"
      case .lastSizeMisaligned(let s): return "volu_size 0x\(hex(s)) of the last volume is not a multiple of 8 MiB"
      }
    }
  }

  /// A tree (block table, indirect blocks, freemap, directory, inode index) whose shape
  /// breaks HAMMER2's rules.
  public enum TreeFault: Equatable, Sendable, CustomStringConvertible {
    /// Block table entries overlap at `key`.
    case overlappingEntries(key: UInt64)
    /// Indirect blocks nested deeper than `limit` while updating a table.
    case nestedDeeper(limit: Int)
    /// An entry at `key` lies outside its indirect block's key range.
    case outsideIndirectRange(key: UInt64)
    /// An indirect block's key range is not aligned to its keybits.
    case indirectMisaligned(key: UInt64, keybits: UInt8)
    /// A freemap child (its summary) does not fit its parent.
    case freemapChildMisplaced(child: String, level: Int, parentKey: UInt64)
    /// A full freemap parent that cannot be split.
    case freemapParentFull(key: UInt64)
    /// The freemap marks a chunk free that no allocation may take.
    case freemapFreeReserved(offset: UInt64)
    /// `sroot_blockset[0]` is not an INODE blockref (its type code).
    case superRootType(UInt8)
    /// The super-root inode is flagged DIRECTDATA.
    case superRootDirectData
    /// An inode number inside the directory-hash key space.
    case inumInDirhashSpace(UInt64)
    /// The inode index entry at `key` holds another inode.
    case inodeIndexMismatch(key: UInt64, found: UInt64)
    /// A directory entry name length outside 1...255.
    case nameLength(Int)
    /// A long name whose name block is missing (`data_off` empty).
    case nameBlockMissing(nameLength: Int)
    /// A blockref (its summary) that has no place in a directory tree.
    case notInDirectory(String)

    public var description: String {
      switch self {
      case .overlappingEntries(let k): return "block table entries overlap at key 0x\(hex(k)): not updated in place"
      case .nestedDeeper(let l): return "indirect blocks nested more than \(l) deep"
      case .outsideIndirectRange(let k): return "entry at key 0x\(hex(k)) lies outside its indirect block's range"
      case .indirectMisaligned(let k, let b): return "indirect range key=0x\(hex(k)) keybits=\(b) is not aligned"
      case .freemapChildMisplaced(let c, let l, let k): return "freemap child \(c) does not fit its level-\(l) parent at key 0x\(hex(k))"
      case .freemapParentFull(let k): return "freemap parent at key 0x\(hex(k)) is full and cannot be split"
      case .freemapFreeReserved(let o): return "freemap marks 0x\(hex(o)) free, below allocator_beg, in a reserved segment or past the end"
      case .superRootType(let t): return "sroot_blockset[0] has type \(t), not INODE"
      case .superRootDirectData: return "the super-root is flagged DIRECTDATA"
      case .inumInDirhashSpace(let i): return "inode number 0x\(hex(i)) lies in the directory-hash key space"
      case .inodeIndexMismatch(let k, let f): return "inode index key \(k) holds inode \(f)"
      case .nameLength(let n): return "directory entry name length \(n)"
      case .nameBlockMissing(let n): return "a \(n)-byte name needs a name block, but data_off is empty"
      case .notInDirectory(let s): return "\(s) in a directory tree"
      }
    }
  }

  /// Which kind of block a loop (a block referenced twice in one tree) was found at.
  public enum LoopedBlock: String, Equatable, Sendable {
    case block = "block"
    case inode = "inode block"
    case indirect = "indirect block"
  }
}
