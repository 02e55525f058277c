/// HAMMER2 layout constants (`hammer2_disk.h`). The C names are given in each doc comment
/// so a reader can find the original.
public enum H2 {
  /// `HAMMER2_RADIX_MIN`: smallest allocation radix (1 KiB).
  public static let radixMin: UInt8 = 10
  /// `HAMMER2_RADIX_MAX`: largest allocation radix (64 KiB).
  public static let radixMax: UInt8 = 16
  /// `HAMMER2_PBUFSIZE`: device buffer and logical file block size.
  public static let pbufSize = 65536
  /// `HAMMER2_PBUFRADIX`.
  public static let pbufRadix: UInt8 = 16
  /// `HAMMER2_BLOCKREF_BYTES`.
  public static let blockrefBytes = 128
  /// `HAMMER2_SET_COUNT`: blockrefs in a blockset.
  public static let setCount = 4
  /// `HAMMER2_EMBEDDED_BYTES`: inode direct data area.
  public static let embeddedBytes = 512
  /// `HAMMER2_INODE_BYTES`.
  public static let inodeBytes = 1024
  /// `HAMMER2_INODE_MAXNAME`.
  public static let inodeMaxName = 256
  /// `HAMMER2_INODE_START`: first dynamically allocated inode number.
  public static let inodeStart: UInt64 = 1024
  /// `HAMMER2_ZONE_BYTES64`: spacing of volume header copies (2 GiB).
  public static let zoneBytes64: UInt64 = 2 << 30
  /// `HAMMER2_ZONE_SEG`: reserved segment at each 1 GiB boundary (4 MiB).
  public static let zoneSeg: UInt64 = 4 << 20
  /// Freemap level radixes (`HAMMER2_FREEMAP_LEVEL0_RADIX` .. `LEVEL5`).
  public static let freemapLevelRadix: [UInt8] = [22, 30, 38, 46, 54, 62]
  /// `HAMMER2_FREEMAP_LEVELN_PSIZE`: bytes used by a freemap leaf or node.
  public static let freemapLevelNPsize = 32768
  /// `HAMMER2_FREEMAP_BLOCK_SIZE`: bitmap granularity (2 bits per 16 KiB chunk).
  public static let freemapBlockSize: UInt64 = 16384
  /// `HAMMER2_VOLUME_ALIGN`.
  public static let volumeAlign: UInt64 = 8 << 20
  /// `HAMMER2_NUM_VOLHDRS`.
  public static let numVolHeaders = 4
  /// `HAMMER2_VOLUME_BYTES`: size of one volume header.
  public static let volumeBytes = 65536
  /// `HAMMER2_VOLUME_ID_HBO`: volume magic in host (little-endian) order.
  public static let volumeIdHBO: UInt64 = 0x4841_4d32_0517_2011
  /// `HAMMER2_VOLUME_ID_ABO`: the magic as seen from the opposite byte order.
  public static let volumeIdABO: UInt64 = 0x1120_1705_324d_4148
  /// `XXH_HAMMER2_SEED`.
  public static let xxhSeed: UInt64 = 0x4d61_7474_446c_6c6e
  /// `HAMMER2_DIRHASH_VISIBLE`: bit 63, set in every directory-entry key.
  public static let dirhashVisible: UInt64 = 0x8000_0000_0000_0000
  /// `HAMMER2_DIRHASH_LOMASK`: collision iterator range.
  public static let dirhashLomask: UInt64 = 0x7FFF
  /// `HAMMER2_OFF_MASK_RADIX`: low bits of `data_off` holding the size radix.
  public static let offMaskRadix: UInt64 = 0x3F
  /// `HAMMER2_MAXCLUSTER`.
  public static let maxCluster = 8
  /// Deepest nesting of indirect blocks we follow inside one inode's tree. A maximal
  /// file needs about 6 levels even with 4 KiB indirect blocks at the top; anything
  /// deeper is damage, not data.
  public static let maxIndirectDepth = 24
}

/// Blockref types (`HAMMER2_BREF_TYPE_*`).
public enum BlockrefType: UInt8, Sendable, CaseIterable {
  /// `HAMMER2_BREF_TYPE_EMPTY` (0).
  case empty = 0
  /// `HAMMER2_BREF_TYPE_INODE` (1).
  case inode = 1
  /// `HAMMER2_BREF_TYPE_INDIRECT` (2).
  case indirect = 2
  /// `HAMMER2_BREF_TYPE_DATA` (3).
  case data = 3
  /// `HAMMER2_BREF_TYPE_DIRENT` (4).
  case dirent = 4
  /// `HAMMER2_BREF_TYPE_FREEMAP_NODE` (5).
  case freemapNode = 5
  /// `HAMMER2_BREF_TYPE_FREEMAP_LEAF` (6).
  case freemapLeaf = 6
  /// `HAMMER2_BREF_TYPE_INVALID` (7): non-root volume sroot slots.
  case invalid = 7

  /// Upper-case name as DragonFly's `hammer2 show` prints it.
  public var name: String {
    switch self {
    case .empty: "EMPTY"
    case .inode: "INODE"
    case .indirect: "INDIRECT"
    case .data: "DATA"
    case .dirent: "DIRENT"
    case .freemapNode: "FREEMAP_NODE"
    case .freemapLeaf: "FREEMAP_LEAF"
    case .invalid: "INVALID"
    }
  }

  /// "<name> block": the structure named in a write's error (a literal, as writes are
  /// many).
  var blockName: String {
    switch self {
    case .empty: "EMPTY block"
    case .inode: "INODE block"
    case .indirect: "INDIRECT block"
    case .data: "DATA block"
    case .dirent: "DIRENT block"
    case .freemapNode: "FREEMAP_NODE block"
    case .freemapLeaf: "FREEMAP_LEAF block"
    case .invalid: "INVALID block"
    }
  }
}

/// Check methods, the high nibble of `methods` (`HAMMER2_CHECK_*`).
public enum CheckMethod: UInt8, Sendable, CaseIterable {
  /// `HAMMER2_CHECK_NONE` (0).
  case none = 0
  /// `HAMMER2_CHECK_DISABLED` (1).
  case disabled = 1
  /// `HAMMER2_CHECK_ISCSI32` (2): CRC-32C.
  case iscsi32 = 2
  /// `HAMMER2_CHECK_XXHASH64` (3): XXH64 with HAMMER2's seed.
  case xxhash64 = 3
  /// `HAMMER2_CHECK_SHA192` (4): SHA-256 folded to 24 bytes.
  case sha192 = 4
  /// `HAMMER2_CHECK_FREEMAP` (5): CRC-32C of a freemap block.
  case freemap = 5

  /// Lower-case name used in the CLI and reports.
  public var name: String {
    switch self {
    case .none: "none"
    case .disabled: "disabled"
    case .iscsi32: "iscsi32"
    case .xxhash64: "xxhash64"
    case .sha192: "sha192"
    case .freemap: "freemap"
    }
  }
}

/// Compression methods, the low nibble of `methods` (`HAMMER2_COMP_*`).
public enum CompressionMethod: UInt8, Sendable, CaseIterable {
  /// `HAMMER2_COMP_NONE` (0).
  case none = 0
  /// `HAMMER2_COMP_AUTOZERO` (1): zero blocks become holes, others stored raw.
  case autozero = 1
  /// `HAMMER2_COMP_LZ4` (2): 4-byte length prefix, then a raw LZ4 block.
  case lz4 = 2
  /// `HAMMER2_COMP_ZLIB` (3): a zlib (RFC 1950) stream.
  case zlib = 3
  /// h2resync extension, not in DragonFly's format: a 4-byte length prefix, then one
  /// zstd frame. DragonFly defines codes 0..3; we take the top code of the nibble so a
  /// future DragonFly method is unlikely to collide. Never written unless asked.
  case zstd = 15

  /// Lower-case name used in the CLI and reports.
  public var name: String {
    switch self {
    case .none: "none"
    case .autozero: "autozero"
    case .lz4: "lz4"
    case .zlib: "zlib"
    case .zstd: "zstd"
    }
  }
}

/// Object types of inodes and directory entries (`HAMMER2_OBJTYPE_*`).
public enum ObjectType: UInt8, Sendable {
  /// `HAMMER2_OBJTYPE_UNKNOWN`.
  case unknown = 0
  /// `HAMMER2_OBJTYPE_DIRECTORY`.
  case directory = 1
  /// `HAMMER2_OBJTYPE_REGFILE`.
  case regularFile = 2
  /// `HAMMER2_OBJTYPE_FIFO`.
  case fifo = 4
  /// `HAMMER2_OBJTYPE_CDEV`.
  case characterDevice = 5
  /// `HAMMER2_OBJTYPE_BDEV`.
  case blockDevice = 6
  /// `HAMMER2_OBJTYPE_SOFTLINK`.
  case symlink = 7
  /// `HAMMER2_OBJTYPE_HARDLINK` (obsolete hardlink pointer).
  case hardlink = 8
  /// `HAMMER2_OBJTYPE_SOCKET`.
  case socket = 9
  /// `HAMMER2_OBJTYPE_WHITEOUT`.
  case whiteout = 10

  /// Short name used in listings.
  public var name: String {
    switch self {
    case .unknown: "unknown"
    case .directory: "dir"
    case .regularFile: "file"
    case .fifo: "fifo"
    case .characterDevice: "cdev"
    case .blockDevice: "bdev"
    case .symlink: "symlink"
    case .hardlink: "hardlink"
    case .socket: "socket"
    case .whiteout: "whiteout"
    }
  }
}

/// PFS types, the low nibble of `pfs_type` (`HAMMER2_PFSTYPE_*`).
public enum PFSType: UInt8, Sendable, CaseIterable, Codable {
  /// `HAMMER2_PFSTYPE_NONE`.
  case none = 0
  /// `HAMMER2_PFSTYPE_CACHE`.
  case cache = 1
  /// `HAMMER2_PFSTYPE_SLAVE`.
  case slave = 3
  /// `HAMMER2_PFSTYPE_SOFT_SLAVE`.
  case softSlave = 4
  /// `HAMMER2_PFSTYPE_SOFT_MASTER`.
  case softMaster = 5
  /// `HAMMER2_PFSTYPE_MASTER`.
  case master = 6
  /// `HAMMER2_PFSTYPE_SUPROOT`.
  case suproot = 8
  /// `HAMMER2_PFSTYPE_DUMMY`.
  case dummy = 9

  /// Upper-case name as `hammer2 pfs-list` prints it.
  public var name: String {
    switch self {
    case .none: "NONE"
    case .cache: "CACHE"
    case .slave: "SLAVE"
    case .softSlave: "SOFT_SLAVE"
    case .softMaster: "SOFT_MASTER"
    case .master: "MASTER"
    case .suproot: "SUPROOT"
    case .dummy: "DUMMY"
    }
  }

  /// Parses a name as printed by `name` (case-insensitive).
  public init?(name: String) {
    guard let t = PFSType.allCases.first(where: { $0.name == name.uppercased() }) else { return nil }
    self = t
  }
}

/// Inode `op_flags` bits (`HAMMER2_OPFLAG_*`).
public enum OpFlags {
  /// `HAMMER2_OPFLAG_DIRECTDATA`: data embedded in the inode.
  public static let directData: UInt8 = 0x01
  /// `HAMMER2_OPFLAG_PFSROOT`: the inode is a PFS root.
  public static let pfsRoot: UInt8 = 0x02
  /// `HAMMER2_OPFLAG_COPYIDS`.
  public static let copyIds: UInt8 = 0x04
}

/// Blockref `flags` bits (`HAMMER2_BREF_FLAG_*`).
public enum BlockrefFlags {
  /// `HAMMER2_BREF_FLAG_PFSROOT`.
  public static let pfsRoot: UInt8 = 0x01
  /// `HAMMER2_BREF_FLAG_EMERG_MIP`.
  public static let emergMip: UInt8 = 0x04
}
