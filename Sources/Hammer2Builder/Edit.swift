import Hammer2Format

/// One change of a PFS: what an h2mkimage editing command and a scenario operation do
/// (the one interpreter both use). The front ends only parse: h2mkimage its command
/// line, `EditWords` a scenario's word list.
public enum Edit: Sendable, Equatable {
  /// Writes `bytes` into `path` at `offset` (creating the file, 0644, when missing),
  /// after checking the PFS has room for them; sets mtime and ctime.
  case write(path: String, offset: UInt64, bytes: [UInt8])
  /// Removes a file or symlink, or (recursive) a directory tree.
  case remove(path: String, recursive: Bool)
  case makeDirectory(path: String, mode: UInt32)
  case symlink(path: String, target: String)
  /// A hardlink `new` to the inode `existing` names.
  case link(existing: String, new: String)
  /// Renames `from`; into `to` when `to` is an existing directory.
  case move(from: String, to: String)
  /// Sets the permission bits; sets ctime.
  case chmod(path: String, mode: UInt32)
  /// Sets the file's size; sets mtime and ctime.
  case truncate(path: String, size: UInt64)
  /// Sets the inode's comp_algo (data written from then on, as `hammer2 setcomp`).
  case setComp(path: String, algo: UInt8)

  /// Applies the change inside `tx` through `ed` (an editor of one of its PFSs); `time`
  /// is in microseconds.
  public func apply(_ ed: PFSEditor, in tx: Transaction, time t: UInt64) throws {
    switch self {
    case .write(let path, let offset, let bytes):
      // Refused before any block is written: the image stays byte-identical.
      try tx.requireSpace(bytes: Self.bytesNeededForFileData(UInt64(bytes.count)), for: "\(path) (\(bytes.count) bytes of data)")
      let inum: UInt64
      if let existing = try? ed.resolve(path) {
        inum = existing
      } else {
        let (dir, name) = try ed.parentAndName(path)
        inum = try ed.create(name, in: dir, type: .regularFile, mode: 0o644, time: t)
      }
      try Self.writeChunked(ed, inum, at: offset, bytes)
      try ed.updateMeta(inum) {
        $0.mtime = t
        $0.ctime = t
      }
    case .remove(let path, let recursive):
      let (dir, name) = try ed.parentAndName(path)
      try ed.unlink(name, in: dir, recursive: recursive)
    case .makeDirectory(let path, let mode):
      let (dir, name) = try ed.parentAndName(path)
      try ed.create(name, in: dir, type: .directory, mode: mode, time: t)
    case .symlink(let path, let target):
      let (dir, name) = try ed.parentAndName(path)
      let inum = try ed.create(name, in: dir, type: .symlink, mode: 0o777, time: t)
      try ed.write(inum, at: 0, Array(target.utf8))
    case .link(let existing, let new):
      let inum = try ed.resolve(existing)
      let (dir, name) = try ed.parentAndName(new)
      try ed.link(name, in: dir, to: inum)
    case .move(let from, let to):
      let (fd, fn) = try ed.parentAndName(from)
      var (td, tn) = try ed.parentAndName(to)
      if let e = try ed.lookup(tn, in: td), e.type == ObjectType.directory.rawValue {
        td = e.inum
        tn = fn
      }
      try ed.rename(fn, in: fd, to: tn, in: td)
    case .chmod(let path, let mode):
      try ed.updateMeta(try ed.resolve(path)) {
        $0.mode = mode
        $0.ctime = t
      }
    case .truncate(let path, let size):
      let inum = try ed.resolve(path)
      try ed.truncate(inum, to: size)
      try ed.updateMeta(inum) {
        $0.mtime = t
        $0.ctime = t
      }
    case .setComp(let path, let algo):
      try ed.updateMeta(try ed.resolve(path)) { $0.compAlgo = algo }
    }
  }

  /// Writes `bytes` in 4 MiB pieces (bounded memory for big sources).
  public static func writeChunked(_ ed: PFSEditor, _ inum: UInt64, at offset: UInt64, _ bytes: [UInt8]) throws {
    var off = offset
    var i = 0
    repeat {
      let n = min(bytes.count - i, 4 << 20)
      try ed.write(inum, at: off, Array(bytes[i..<i + n]))
      off += UInt64(n)
      i += n
    } while i < bytes.count
  }

  /// The media bytes writing `count` bytes of file data takes at most: 64 KiB blocks (the
  /// last one as small as 1 KiB), their indirect blocks, and the inodes and tables on the
  /// path to the volume header. Nothing for data kept in the inode (512 bytes or less).
  public static func bytesNeededForFileData(_ count: UInt64) -> UInt64 {
    guard count > 512 else { return Transaction.bytesNeeded(blockSizes: [1024, 1024, 1024]) }
    var sizes = [Int](repeating: 65536, count: Int(count / 65536))
    let tail = Int(count % 65536)
    if tail > 0 {
      var p = 1024
      while p < tail { p *= 2 }
      sizes.append(p)
    }
    // One 64 KiB indirect block per 256 data blocks (two levels' worth), and the inode,
    // directory, PFS root and super-root copies with their tables.
    sizes += [Int](repeating: 65536, count: sizes.count / 256 + 4)
    sizes += [1024, 1024, 1024, 1024]
    return Transaction.bytesNeeded(blockSizes: sizes)
  }
}

/// Changes of one image made the way h2mkimage makes them: each call one transaction.
public struct ImageEdits {
  public var image: String
  public var pfs: String
  /// Opens the image's transaction (callers may wait out a lock held elsewhere).
  public var openTransaction: (String) throws -> Transaction

  public init(image: String, pfs: String, openTransaction: @escaping (String) throws -> Transaction = { try Transaction(path: $0) }) {
    self.image = image
    self.pfs = pfs
    self.openTransaction = openTransaction
  }

  /// Applies `edits` in order, all in ONE transaction on the PFS, and commits.
  public func apply(_ edits: [Edit], time: UInt64) throws {
    let tx = try openTransaction(image)
    let ed = try tx.editor(pfs: pfs)
    for e in edits { try e.apply(ed, in: tx, time: time) }
    try tx.commit()
  }

  /// Snapshots the PFS as a new PFS `name` (sharing all blocks), with ids from `uuids`.
  public func snapshot(name: String, uuids: inout UUIDSource, time: UInt64) throws {
    let tx = try openTransaction(image)
    try tx.snapshot(source: pfs, name: name, clid: uuids.next(), fsid: uuids.next(), time: time)
    try tx.commit()
  }
}
