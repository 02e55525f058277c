import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Format

struct Populate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Copy a directory tree into a PFS: files (holes kept), directories, symlinks, hardlinks, FIFOs, device nodes, modes, mtimes.")
  @OptionGroup var target: Target
  @Argument(help: "Source directory.") var source: String
  @Option(
    help:
      "Compression for the copied tree: none, autozero, lz4, zlib[:LEVEL], zstd[:LEVEL] (zstd is an h2resync extension DragonFly cannot read)."
  )
  var comp: String?
  @Option(help: "Check code: none, disabled, iscsi32, xxhash64, sha192.") var check: String?
  @Option(help: "Commit every N new inodes (bounds memory on big trees).") var batch: Int = 50_000

  func run() throws {
    let comp = try self.comp.map(parseComp)
    let check = try self.check.map(parseCheck)
    let stamp = target.common.time.map { $0 * 1_000_000 }
    var pending: [(src: String, dir: String)] = [(source, "")]
    var hardlinks: [String: UInt64] = [:] // "dev:ino" -> inum
    var tx = try Transaction(path: target.image, opener: deviceOpener)
    var ed = try tx.editor(pfs: target.pfs)
    var created = 0
    var dirsToStamp: [(String, stat)] = []
    let fm = FileManager.default
    if comp != nil || check != nil {
      try ed.updateMeta(1) { m in
        if let comp { m.compAlgo = comp }
        if let check { m.checkAlgo = check }
      }
    }
    func us(_ t: timespec) -> UInt64 { UInt64(max(0, t.tv_sec)) * 1_000_000 + UInt64(max(0, t.tv_nsec)) / 1000 }
    while let (src, dir) = pending.popLast() {
      var rootSt = stat()
      lstat(src, &rootSt)
      dirsToStamp.append((dir, rootSt))
      let names = try fm.contentsOfDirectory(atPath: src).sorted()
      let dirInum = try ed.resolve(dir)
      for name in names {
        let path = src + "/" + name
        let rel = dir.isEmpty ? name : dir + "/" + name
        var st = stat()
        guard lstat(path, &st) == 0 else { throw ValidationError("cannot stat \(path)") }
        let mode = UInt32(st.st_mode & 0o7777)
        let ctime = stamp ?? us(st.st_ctim)
        let bname = Array(name.utf8)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
          try ed.create(bname, in: dirInum, type: .directory, mode: mode, time: ctime, uid: st.st_uid, gid: st.st_gid)
          pending.append((path, rel))
        case S_IFREG:
          let key = "\(st.st_dev):\(st.st_ino)"
          if st.st_nlink > 1, let first = hardlinks[key] {
            try ed.link(bname, in: dirInum, to: first)
            continue
          }
          let inum = try ed.create(bname, in: dirInum, type: .regularFile, mode: mode, time: ctime, uid: st.st_uid, gid: st.st_gid)
          if st.st_nlink > 1 { hardlinks[key] = inum }
          // Refused before any block of the file is written.
          // (A sparse source's holes stay holes: count what it has allocated.)
          let dataBytes = min(UInt64(max(0, st.st_size)), UInt64(max(0, st.st_blocks)) * 512)
          try tx.requireSpace(bytes: Edit.bytesNeededForFileData(dataBytes), for: "\(rel) (\(dataBytes) bytes of data)")
          try copyFile(path, size: UInt64(st.st_size), into: inum, editor: ed)
          let m = us(st.st_mtim)
          try ed.updateMeta(inum) { $0.mtime = m }
        case S_IFLNK:
          let dest = try fm.destinationOfSymbolicLink(atPath: path)
          let inum = try ed.create(bname, in: dirInum, type: .symlink, mode: mode, time: ctime, uid: st.st_uid, gid: st.st_gid)
          try ed.write(inum, at: 0, Array(dest.utf8))
          let m = us(st.st_mtim)
          try ed.updateMeta(inum) { $0.mtime = m }
        case S_IFIFO, S_IFCHR, S_IFBLK:
          let type: ObjectType =
            (st.st_mode & S_IFMT) == S_IFIFO ? .fifo : (st.st_mode & S_IFMT) == S_IFCHR ? .characterDevice : .blockDevice
          let rdev = (
            UInt32((st.st_rdev >> 8) & 0xFFF) | UInt32((st.st_rdev >> 32) & 0xFFFF_F000),
            UInt32(st.st_rdev & 0xFF) | UInt32((st.st_rdev >> 12) & 0xFFFF_FF00)
          )
          let inum = try ed.create(bname, in: dirInum, type: type, mode: mode, time: ctime, rdev: rdev, uid: st.st_uid, gid: st.st_gid)
          let m = us(st.st_mtim)
          try ed.updateMeta(inum) { $0.mtime = m }
        default:
          FileHandle.standardError.write(Data("h2mkimage: skipping \(path): sockets cannot be stored\n".utf8))
          continue
        }
        created += 1
        if created % batch == 0 {
          try stampDirs(&dirsToStamp, ed)
          try tx.commit()
          tx = try Transaction(path: target.image, opener: deviceOpener)
          ed = try tx.editor(pfs: target.pfs)
        }
      }
    }
    try stampDirs(&dirsToStamp, ed)
    try tx.commit()
  }

  /// Directory modes and mtimes last, as extraction does.
  func stampDirs(_ dirs: inout [(String, stat)], _ ed: PFSEditor) throws {
    for (dir, st) in dirs {
      let inum = try ed.resolve(dir)
      let m = UInt64(max(0, st.st_mtim.tv_sec)) * 1_000_000 + UInt64(max(0, st.st_mtim.tv_nsec)) / 1000
      try ed.updateMeta(inum) {
        $0.mtime = m
        $0.mode = UInt32(st.st_mode & 0o7777)
      }
    }
    dirs.removeAll()
  }

  /// Copies a file in 1 MiB pieces, skipping the source's holes (SEEK_DATA/SEEK_HOLE).
  func copyFile(_ path: String, size: UInt64, into inum: UInt64, editor ed: PFSEditor) throws {
    guard size > 0 else { return }
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
    defer { close(fd) }
    do {
      try SparseFile.forEachChunk(fd: fd, size: Int64(size)) { off, bytes in try ed.write(inum, at: UInt64(off), Array(bytes)) }
    } catch let e as SparseFileError {
      throw ValidationError("read error on \(path): \(e)")
    }
    let cur = try ed.inode(inum).meta.size
    if cur < size { try ed.truncate(inum, to: size) }
  }
}
