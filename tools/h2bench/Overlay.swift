import ArgumentParser
import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Overlay: add a tree's missing files to a PFS

struct Overlay: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "overlay",
    abstract:
      "Add SRC's files to the PFS, descending into directories that exist already (as `populate` does, in one transaction per --batch inodes)."
  )
  @Argument var image: String
  @Option var pfs: String
  @Argument var source: String
  @Option(help: "ctime of new inodes, seconds since the epoch (mtimes come from SRC).") var time: UInt64
  @Option var batch = 50_000

  func run() throws {
    let t0 = now()
    let stamp = time * 1_000_000
    // Optional so that a batch's Transaction (and its image lock) is released before the
    // next one opens the image.
    var tx: Transaction? = try Transaction(path: image)
    var ed: PFSEditor! = try tx!.editor(pfs: pfs) // Safe: just made.
    var pending: [(String, String)] = [(source, "")]
    var dirsToStamp: [(String, stat)] = []
    var created = 0
    var files = 0
    var bytes: UInt64 = 0
    func us(_ t: timespec) -> UInt64 { UInt64(max(0, t.tv_sec)) * 1_000_000 + UInt64(max(0, t.tv_nsec)) / 1000 }
    func stampDirs() throws {
      for (dir, st) in dirsToStamp {
        let inum = try ed.resolve(dir)
        try ed.updateMeta(inum) {
          $0.mtime = us(st.st_mtim)
          $0.mode = UInt32(st.st_mode & 0o7777)
        }
      }
      dirsToStamp.removeAll()
    }
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while let (src, dir) = pending.popLast() {
      var dst = stat()
      lstat(src, &dst)
      dirsToStamp.append((dir, dst))
      let dirInum = try ed.resolve(dir)
      for name in try FileManager.default.contentsOfDirectory(atPath: src).sorted() {
        let path = src + "/" + name
        let rel = dir.isEmpty ? name : dir + "/" + name
        let bname = Array(name.utf8)
        var st = stat()
        guard lstat(path, &st) == 0 else { throw BenchError("cannot stat \(path)") }
        let mode = UInt32(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
          if let e = try ed.lookup(bname, in: dirInum) {
            guard e.type == ObjectType.directory.rawValue else { throw BenchError("\(rel) exists and is not a directory") }
          } else {
            try ed.create(bname, in: dirInum, type: .directory, mode: mode, time: stamp)
            created += 1
          }
          pending.append((path, rel))
        case S_IFREG:
          guard try ed.lookup(bname, in: dirInum) == nil else { throw BenchError("\(rel) exists already") }
          let inum = try ed.create(bname, in: dirInum, type: .regularFile, mode: mode, time: stamp)
          let fd = open(path, O_RDONLY)
          guard fd >= 0 else { throw BenchError("open \(path)") }
          var off: UInt64 = 0
          while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(off)) }
            guard n >= 0 else {
              close(fd)
              throw BenchError("read \(path)")
            }
            if n == 0 { break }
            try ed.write(inum, at: off, Array(buf[0..<n]))
            off += UInt64(n)
          }
          close(fd)
          let mt = us(st.st_mtim)
          try ed.updateMeta(inum) { $0.mtime = mt }
          created += 1
          files += 1
          bytes += off
        default:
          throw BenchError("\(path): only directories and regular files are overlaid")
        }
        if created > 0, created % batch == 0 {
          try stampDirs()
          _ = try tx!.commit() // Safe: set below right after each release.
          ed = nil
          tx = nil
          tx = try Transaction(path: image)
          ed = try tx!.editor(pfs: pfs)
        }
      }
    }
    try stampDirs()
    _ = try tx!.commit() // Safe: never nil here.
    print("overlay \(image): \(files) files, \(bytes) bytes in \(String(format: "%.1f", seconds(since: t0))) s")
  }
}
