import Hammer2Format

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Counts of what an extraction wrote.
public struct ExtractStats: Sendable, Equatable {
  public var directories = 0
  public var files = 0
  public var symlinks = 0
  public var hardlinks = 0
  public var fifos = 0
  public var devices = 0
  public var skipped = 0
  /// File bytes written (holes excluded).
  public var bytesWritten: UInt64 = 0
}

extension PFSReader {
  /// Extracts the whole PFS into `dest` (created if missing; must be empty if present):
  /// regular files with holes kept as holes, directories, symlinks, hardlinks, FIFOs and
  /// device nodes, with modes and mtimes (owners too when running as root).
  ///
  /// Works through directory file descriptors (`openat` family) so deep trees never hit
  /// PATH_MAX, and refuses names that could escape `dest` ("", ".", "..", or with "/").
  /// Damage becomes findings; the rest of the tree is still extracted.
  public func extract(to dest: String, findings: inout [Finding]) throws(FormatError) -> ExtractStats {
    let destLoc = Location(image: dest, structure: "extract destination")
    if mkdir(dest, 0o700) != 0 && errno != EEXIST {
      throw FormatError(.io(errno: errno, operation: "mkdir \(dest)"), at: destLoc)
    }
    let rootFD = open(dest, O_RDONLY | O_DIRECTORY)
    guard rootFD >= 0 else { throw FormatError(.io(errno: errno, operation: "open \(dest)"), at: destLoc) }
    var stats = ExtractStats()
    let asRoot = geteuid() == 0

    struct Frame {
      var fd: Int32
      var inode: InodeData
      var path: String
      var entries: DirEntryIterator
    }
    var visitedDirs: Set<UInt64> = [1]
    var linkPaths: [UInt64: String] = [:] // inum -> first extracted relative path
    var stack = [Frame(fd: rootFD, inode: pfs.inode, path: "", entries: entryIterator(of: pfs.inode))]
    stats.directories += 1

    func fail(_ op: String, _ path: String) {
      findings.append(
        Finding(
          .damage, at: Location(image: dest, structure: path),
          "\(op) failed: \(String(cString: strerror(errno)))", path: path))
    }

    func times(_ m: InodeMeta) -> [timespec] {
      let t = timespec(tv_sec: Int(m.mtime / 1_000_000), tv_nsec: Int(m.mtime % 1_000_000) * 1000)
      return [t, t]
    }

    while !stack.isEmpty {
      let top = stack.count - 1
      guard let next = stack[top].entries.next(reader: self) else {
        // Directory done: its mode and mtime last, so creating children did not undo them.
        let f = stack.removeLast()
        if asRoot { _ = fchown(f.fd, f.inode.meta.unixUid, f.inode.meta.unixGid) }
        if fchmod(f.fd, mode_t(f.inode.meta.mode & 0o7777)) != 0 { fail("chmod", f.path) }
        var ts = times(f.inode.meta)
        if futimens(f.fd, &ts) != 0 { fail("set times", f.path) }
        close(f.fd)
        continue
      }
      let dirPath = stack[top].path
      let dirFD = stack[top].fd
      let entry: DirEntry
      switch next {
      case .failure(let err):
        findings.append(Finding(error: err, fallback: destLoc, path: dirPath.isEmpty ? "." : dirPath))
        continue
      case .success(let e): entry = e
      }
      let name = entry.nameString
      let path = dirPath.isEmpty ? name : dirPath + "/" + name
      guard !entry.name.isEmpty, entry.name != [0x2E], entry.name != [0x2E, 0x2E],
        !entry.name.contains(0x2F), !entry.name.contains(0)
      else {
        findings.append(
          Finding(.damage, at: volume.location(of: entry.bref), "unsafe directory entry name \(entry.name); skipped", path: dirPath))
        stats.skipped += 1
        continue
      }
      let ino: InodeData
      do {
        ino = try inode(entry.inum)
      } catch {
        findings.append(Finding(error: error, fallback: volume.location(of: entry.bref), path: path))
        stats.skipped += 1
        continue
      }
      let meta = ino.meta
      let perm = mode_t(meta.mode & 0o7777)
      var ts = times(meta)
      if meta.type != .directory, meta.nlinks > 1 {
        if let first = linkPaths[entry.inum] {
          if linkat(rootFD, first, dirFD, name, 0) != 0 { fail("link", path) } else { stats.hardlinks += 1 }
          continue
        }
        linkPaths[entry.inum] = path
      }
      switch meta.type {
      case .directory:
        guard visitedDirs.insert(entry.inum).inserted else {
          findings.append(
            Finding(
              .damage, at: volume.location(of: entry.bref), "directory inode \(entry.inum) is reachable twice (a loop); skipped", path: path
            ))
          stats.skipped += 1
          continue
        }
        guard mkdirat(dirFD, name, 0o700) == 0 || errno == EEXIST else {
          fail("mkdir", path)
          continue
        }
        let fd = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        guard fd >= 0 else {
          fail("open", path)
          continue
        }
        stats.directories += 1
        stack.append(Frame(fd: fd, inode: ino, path: path, entries: entryIterator(of: ino)))
      case .regularFile:
        let fd = openat(dirFD, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
          fail("create", path)
          continue
        }
        let size = meta.size
        var writeFailed = false
        forEachDataBlock(of: ino, path: path, findings: &findings) { off, bytes in
          guard off < size, !writeFailed else { return }
          let n = Int(min(UInt64(bytes.count), size - off))
          // An all-zero block stays a hole, as it would be on HAMMER2 itself.
          if isAllZero(bytes) { return }
          let w = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(off)) }
          if w != n { writeFailed = true } else { stats.bytesWritten += UInt64(n) }
        }
        if writeFailed { fail("write", path) }
        if ftruncate(fd, off_t(clamping: size)) != 0 { fail("truncate", path) }
        if asRoot { _ = fchown(fd, meta.unixUid, meta.unixGid) }
        if fchmod(fd, perm) != 0 { fail("chmod", path) }
        if futimens(fd, &ts) != 0 { fail("set times", path) }
        close(fd)
        stats.files += 1
      case .symlink:
        var target = readAll(ino, path: path, limit: 4096, findings: &findings)
        target.append(0)
        let rc = target.withUnsafeBufferPointer {
          symlinkat(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), dirFD, name)
        }
        guard rc == 0 else {
          fail("symlink", path)
          continue
        }
        if asRoot { _ = fchownat(dirFD, name, meta.unixUid, meta.unixGid, AT_SYMLINK_NOFOLLOW) }
        if utimensat(dirFD, name, &ts, AT_SYMLINK_NOFOLLOW) != 0 { fail("set times", path) }
        stats.symlinks += 1
      case .fifo, .characterDevice, .blockDevice:
        let rc: Int32
        if meta.type == .fifo {
          rc = mkfifoat(dirFD, name, perm)
        } else {
          let kind: mode_t = meta.type == .characterDevice ? S_IFCHR : S_IFBLK
          rc = mknodat(dirFD, name, kind | perm, linuxMakedev(meta.rmajor, meta.rminor))
        }
        guard rc == 0 else {
          fail(meta.type == .fifo ? "mkfifo" : "mknod", path)
          continue
        }
        if asRoot { _ = fchownat(dirFD, name, meta.unixUid, meta.unixGid, AT_SYMLINK_NOFOLLOW) }
        if fchmodat(dirFD, name, perm, 0) != 0 { fail("chmod", path) }
        if utimensat(dirFD, name, &ts, AT_SYMLINK_NOFOLLOW) != 0 { fail("set times", path) }
        if meta.type == .fifo { stats.fifos += 1 } else { stats.devices += 1 }
      default:
        findings.append(
          Finding(
            .warning, at: volume.location(of: entry.bref),
            "\(meta.type?.name ?? "type \(meta.typeRaw)") inode \(entry.inum) cannot be extracted; skipped", path: path))
        stats.skipped += 1
      }
    }
    return stats
  }
}

/// `makedev(3)` for Linux's dev_t layout (glibc's macro is not visible to Swift).
func linuxMakedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
  let ma = UInt64(major)
  let mi = UInt64(minor)
  return dev_t((ma & 0xFFFF_F000) << 32 | (ma & 0xFFF) << 8 | (mi & 0xFFFF_FF00) << 12 | (mi & 0xFF))
}

/// True when every byte is zero: whole 64-bit words first, then the tail bytes.
func isAllZero(_ bytes: [UInt8]) -> Bool {
  bytes.withUnsafeBytes { raw in
    let words = raw.count / 8
    for w in 0..<words where raw.loadUnaligned(fromByteOffset: w * 8, as: UInt64.self) != 0 { return false }
    return raw[(words * 8)...].allSatisfy { $0 == 0 }
  }
}
