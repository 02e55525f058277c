/// Where something was found: the image as the user named it, an absolute byte offset
/// in that image when one is known, and the structure being read there.
public struct Location: Equatable, Hashable, Sendable, CustomStringConvertible {
  /// The image path exactly as given on the command line.
  public var image: String
  /// Absolute byte offset in the image (for media blocks: the device offset); nil when no
  /// single byte names the place (the image as a whole, a PFS or a path by name). 0 is
  /// byte 0 of the image (the first volume header), never "unknown".
  public var offset: UInt64?
  /// The structure, e.g. "volume header #1" or "INDIRECT key=0x400/7".
  public var structure: String

  /// Creates a location.
  public init(image: String, offset: UInt64?, structure: String) {
    self.image = image
    self.offset = offset
    self.structure = structure
  }

  /// Creates a location without a byte offset (the image as a whole, a name, a path).
  public init(image: String, structure: String) {
    self.init(image: image, offset: nil, structure: structure)
  }

  /// "a.img @0x10000: volume header #1", or "a.img: PFS DATA" without an offset.
  public var description: String {
    guard let offset else { return "\(image): \(structure)" }
    return "\(image) @0x\(hex(offset)): \(structure)"
  }
}

/// Which codec failed.
public enum Codec: String, Sendable, Equatable {
  case lz4, zlib, zstd
}

/// The one error type of the format library. It always says what went wrong and, where
/// known, where (image, offset, structure).
public struct FormatError: Error, Equatable, Sendable, CustomStringConvertible {
  /// What went wrong, grouped as I/O, incompatible and corrupt.
  public enum Kind: Equatable, Sendable {
    // io
    /// A system call failed with this errno.
    case io(errno: Int32, operation: String)
    /// Fewer bytes were available than the structure needs.
    case truncated(needed: UInt64, available: UInt64)
    // incompatible
    /// The volume magic is not HAMMER2's.
    case notHammer2(magic: UInt64)
    /// The volume magic is byte-swapped: written by a big-endian host.
    case reverseEndian
    /// A valid feature this tool does not handle (an unknown version or method...).
    case unsupported(Feature)
    // corrupt
    /// A volume header CRC does not match.
    case headerCRC(field: String, expected: UInt32, found: UInt32)
    /// No volume header copy is valid.
    case noValidHeader(reasons: [String])
    /// A block's check code does not match its content.
    case checkMismatch(method: String, expected: String, found: String)
    /// A decompressor rejected a block.
    case codec(Codec, returnCode: Int64)
    /// A blockref's `data_off` names no readable media block.
    case badBlockref(BlockrefFault)
    /// Two sizes that must agree do not.
    case sizeMismatch(SizeMismatch)
    /// A volume header's geometry fields break the multi-volume rules.
    case badVolumeGeometry(VolumeFault)
    /// A tree's shape breaks HAMMER2's rules.
    case badTree(TreeFault)
    /// A block (at this media offset) is referenced twice in one tree.
    case loop(LoopedBlock, offset: UInt64)
    /// Damage met by a walk (its finding's message) stops an operation that needs the
    /// whole tree; `directory` is the inode number of the directory it was met in.
    case damaged(directory: UInt64?, finding: String)
    /// Indirect blocks nest deeper than any valid tree.
    case tooDeep(limit: Int)
    // lookup
    /// A PFS, inode, path or name was not found.
    case notFound(Missing)
    // refused requests
    /// Volumes given together do not form one file system as given.
    case badVolumeList(VolumeListProblem)
    /// A device cannot be used as asked (locked, read-only, a range across volumes...).
    case deviceRefused(DeviceProblem)
    /// A newfs cannot be made as asked.
    case newfsRefused(NewfsProblem)
    /// An edit cannot be made as asked (a name that exists, a non-empty directory...).
    case editRefused(EditProblem)
    /// No PFS was named and the image holds several besides LOCAL (their names): the
    /// caller must choose one.
    case ambiguousPFS(names: [String])
    // space
    /// The volume cannot hold what a change needs (found before anything is written).
    case noSpace(needed: UInt64, what: String, free: UInt64)
  }

  /// What went wrong.
  public var kind: Kind
  /// Where, when known.
  public var location: Location?

  /// Creates an error.
  public init(_ kind: Kind, at location: Location? = nil) {
    self.kind = kind
    self.location = location
  }

  /// A short lower-case message; offsets and codes in hex, expected before found.
  public var message: String {
    switch kind {
    case .io(let errno, let op): return "\(op) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    case .truncated(let needed, let available):
      return "truncated: need \(needed) bytes, have \(available)"
    case .notHammer2(let magic): return "not a HAMMER2 image (magic 0x\(hex(magic)))"
    case .reverseEndian:
      return "reverse-endian HAMMER2 volume (written by a big-endian host): not supported"
    case .unsupported(let feature): return "not supported: \(feature)"
    case .headerCRC(let field, let e, let f):
      return "\(field) CRC mismatch: expected 0x\(hex(UInt64(e), width: 8)), found 0x\(hex(UInt64(f), width: 8))"
    case .noValidHeader(let reasons): return "no valid volume header (\(reasons.joined(separator: "; ")))"
    case .checkMismatch(let method, let e, let f):
      return "\(method) check mismatch: expected \(e), found \(f)"
    case .codec(let c, let rc): return "\(c.rawValue) decompression failed (code \(rc))"
    case .badBlockref(let fault): return fault.description
    case .sizeMismatch(let mismatch): return mismatch.description
    case .badVolumeGeometry(let fault): return fault.description
    case .badTree(let fault): return fault.description
    case .loop(let block, let offset): return "loop: \(block.rawValue) 0x\(hex(offset)) is referenced twice in one tree"
    case .damaged(let dir, let finding): return dir.map { "directory \($0) is damaged: \(finding)" } ?? finding
    case .tooDeep(let limit): return "indirect blocks nested deeper than \(limit) levels"
    case .notFound(let what): return "not found: \(what)"
    case .badVolumeList(let problem): return problem.description
    case .deviceRefused(let problem): return problem.description
    case .newfsRefused(let problem): return problem.description
    case .editRefused(let problem): return problem.description
    case .ambiguousPFS(let names): return "the image holds \(names.count) PFSs besides LOCAL (\(names.joined(separator: ", ")))"
    case .noSpace(let needed, let what, let free): return "no space: \(needed) bytes needed for \(what), \(free) bytes free"
    }
  }

  /// "a.img @0x10000: volume header #1: check mismatch: expected 0xab, found 0xcd"
  public var description: String {
    guard let location else { return message }
    // A volume out of space has no byte offset to name: the image says it all.
    if case .noSpace = kind { return "\(location.image): \(message)" }
    return "\(location): \(message)"
  }
}

/// Damage or an oddity met past the volume header. Walks report findings and go on.
public struct Finding: Equatable, Hashable, Sendable, CustomStringConvertible {
  /// How bad it is.
  public enum Severity: String, Sendable, Codable {
    /// Data or metadata cannot be read.
    case damage
    /// Unusual but readable.
    case warning
  }
  /// How bad it is.
  public var severity: Severity
  /// Where it is.
  public var location: Location
  /// What it is.
  public var message: String
  /// The file system path, when known.
  public var path: String?
  /// What went wrong, when the finding came from an error (a caller tells damaged data,
  /// `.checkMismatch`, from a broken structure without reading `message`).
  public var kind: FormatError.Kind?

  /// Creates a finding.
  public init(_ severity: Severity, at location: Location, _ message: String, path: String? = nil, kind: FormatError.Kind? = nil) {
    self.severity = severity
    self.location = location
    self.message = message
    self.path = path
    self.kind = kind
  }

  /// Creates a damage finding from an error, keeping its location and kind.
  public init(error: FormatError, fallback: Location, path: String? = nil) {
    self.init(.damage, at: error.location ?? fallback, error.message, path: path, kind: error.kind)
  }

  /// Hashes what `==` compares but the kind (which the message already spells out).
  public func hash(into h: inout Hasher) {
    h.combine(severity)
    h.combine(location)
    h.combine(message)
    h.combine(path)
  }

  /// One line: location, optional path, message.
  public var description: String {
    let p = path.map { " (path \($0))" } ?? ""
    return "\(location)\(p): \(message)"
  }
}

/// Lower-case hex without prefix, optionally zero-padded to `width` digits.
@inlinable public func hex(_ v: UInt64, width: Int = 0) -> String {
  let s = String(v, radix: 16)
  return s.count < width ? String(repeating: "0", count: width - s.count) + s : s
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

extension FormatError.Kind {
  /// Whether another writer holds the device's lock (a caller's cue to wait and retry).
  public var isLocked: Bool {
    switch self {
    case .deviceRefused(.lockedInProcess), .deviceRefused(.lockedByProcess): return true
    default: return false
    }
  }

  /// Whether it is `ambiguousPFS` (a caller's cue to say how to choose).
  public var isAmbiguousPFS: Bool {
    if case .ambiguousPFS = self { return true }
    return false
  }
}
