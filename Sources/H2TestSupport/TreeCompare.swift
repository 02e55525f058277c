import Crypto
import Foundation

/// Compares an extracted directory tree with a manifest listing (the oracle schema:
/// path, type, mode, size, sha256, target, nlinks, inum, mtime_us) and returns one line
/// per difference; empty means identical.
public func compareTree(_ root: String, listing: [[String: Any]], checkMtime: Bool = true) -> [String] {
  var problems: [String] = []
  var expected = Set<String>()
  var inodeOf: [Int: Set<UInt64>] = [:]
  for e in listing {
    guard let path = e["path"] as? String, let type = e["type"] as? String else { continue }
    expected.insert(path)
    let full = path == "." ? root : root + "/" + path
    var st = stat()
    guard lstat(full, &st) == 0 else {
      problems.append("\(path): missing")
      continue
    }
    let fmt = st.st_mode & S_IFMT
    let typeOK: Bool
    switch type {
    case "dir": typeOK = fmt == S_IFDIR
    case "file": typeOK = fmt == S_IFREG
    case "symlink": typeOK = fmt == S_IFLNK
    case "fifo": typeOK = fmt == S_IFIFO
    default: typeOK = false
    }
    if !typeOK { problems.append("\(path): type is not \(type)") }
    if type != "symlink", let mode = e["mode"] as? String, let m = UInt32(mode, radix: 8), UInt32(st.st_mode & 0o7777) != m {
      problems.append("\(path): mode \(String(st.st_mode & 0o7777, radix: 8)) expected \(mode)")
    }
    if type == "file" || type == "symlink", let size = e["size"] as? Int, Int(st.st_size) != size {
      problems.append("\(path): size \(st.st_size) expected \(size)")
    }
    if type == "file", let sha = e["sha256"] as? String {
      if let h = sha256(ofFile: full), h != sha { problems.append("\(path): sha256 \(h) expected \(sha)") }
      if let inum = e["inum"] as? Int { inodeOf[inum, default: []].insert(UInt64(st.st_ino)) }
    }
    if type == "symlink", let target = e["target"] as? String {
      var buf = [CChar](repeating: 0, count: 8192)
      let n = readlink(full, &buf, buf.count)
      let got = n >= 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
      if got != target { problems.append("\(path): symlink target differs") }
    }
    if checkMtime, type != "symlink", let us = e["mtime_us"] as? Int {
      let got = Int(st.st_mtim.tv_sec) * 1_000_000 + Int(st.st_mtim.tv_nsec) / 1000
      if got != us { problems.append("\(path): mtime \(got) expected \(us)") }
    }
  }
  for (inum, inos) in inodeOf where inos.count != 1 {
    problems.append("inode \(inum): hardlinked names are \(inos.count) different files")
  }
  // Nothing extra.
  if let en = FileManager.default.enumerator(atPath: root) {
    while let rel = en.nextObject() as? String {
      if !expected.contains(rel) { problems.append("\(rel): extracted but not in the manifest") }
    }
  }
  return problems
}

/// Hex SHA-256 of a file's content, streamed.
public func sha256(ofFile path: String) -> String? {
  guard let h = FileHandle(forReadingAtPath: path) else { return nil }
  defer { try? h.close() }
  var hasher = SHA256()
  while true {
    let d = h.readData(ofLength: 1 << 20)
    if d.isEmpty { break }
    hasher.update(data: d)
  }
  return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// A fresh temporary directory.
public func makeTempDir(_ prefix: String) -> String {
  let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
  try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}
