import Foundation

/// A small source tree with every kind of object the builder must copy.
public func makeSourceTree(_ root: String, seed: UInt64 = 1) throws -> String {
  let src = root + "/src"
  let fm = FileManager.default
  try fm.createDirectory(atPath: src + "/sub/deep", withIntermediateDirectories: true)
  try fm.createDirectory(atPath: src + "/empty", withIntermediateDirectories: true)
  var rng = SeededRandom(seed: seed)
  func file(_ p: String, _ bytes: [UInt8]) { fm.createFile(atPath: src + "/" + p, contents: Data(bytes)) }
  file("empty.txt", [])
  file("small.txt", Array("hello hammer2\n".utf8))
  file("inline512", [UInt8](repeating: 0x41, count: 512))
  file("inline513", [UInt8](repeating: 0x42, count: 513))
  file("random.bin", (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) })
  file("text.txt", Array(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 30_000).utf8))
  file("zeros.bin", [UInt8](repeating: 0, count: 200_000))
  var mixed = [UInt8]()
  for i in 0..<12 {
    mixed += i % 3 == 0 ? [UInt8](repeating: 0, count: 65536) : (0..<65536).map { _ in UInt8.random(in: 0...3, using: &rng) }
  }
  file("sub/mixed.bin", mixed)
  for i in 0..<60 { file("sub/deep/f\(i)", Array("file \(i)\n".utf8)) }
  file("sub/" + String(repeating: "n", count: 200), Array("long name".utf8))
  try fm.createSymbolicLink(atPath: src + "/link", withDestinationPath: "small.txt")
  try fm.createSymbolicLink(atPath: src + "/longlink", withDestinationPath: String(repeating: "x/", count: 400))
  link(src + "/small.txt", src + "/sub/hardlink")
  mkfifo(src + "/fifo", 0o640)
  // A sparse file: data, a 3 MiB hole, data.
  let fd = open(src + "/sparse", O_CREAT | O_WRONLY, 0o600)
  _ = pwrite(fd, "head", 4, 0)
  _ = pwrite(fd, "tail", 4, 3 << 20)
  close(fd)
  chmod(src + "/random.bin", 0o4755)
  chmod(src + "/sub", 0o700)
  var t = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
  for p in ["small.txt", "text.txt", "sub/mixed.bin", "sparse"] { utimensat(AT_FDCWD, src + "/" + p, &t, 0) }
  return src
}

/// Lists a tree in the oracle manifest's form (for compareTree).
public func listing(of root: String) -> [[String: Any]] {
  var out: [[String: Any]] = []
  func add(_ rel: String) {
    let full = rel == "." ? root : root + "/" + rel
    var st = stat()
    lstat(full, &st)
    var e: [String: Any] = ["path": rel, "mode": String(format: "%04o", st.st_mode & 0o7777)]
    e["mtime_us"] = Int(st.st_mtim.tv_sec) * 1_000_000 + Int(st.st_mtim.tv_nsec) / 1000
    switch st.st_mode & S_IFMT {
    case S_IFDIR: e["type"] = "dir"
    case S_IFLNK:
      e["type"] = "symlink"
      e["target"] = (try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? ""
      e["size"] = Int(st.st_size)
    case S_IFIFO: e["type"] = "fifo"
    default:
      e["type"] = "file"
      e["size"] = Int(st.st_size)
      e["sha256"] = sha256(ofFile: full) ?? ""
      e["inum"] = Int(st.st_ino)
    }
    out.append(e)
  }
  add(".")
  for rel in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).sorted() { add(rel) }
  return out
}
