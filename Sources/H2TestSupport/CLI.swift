import Crypto
import Foundation

/// Runs a built executable of this package (found beside the test bundle) and captures
/// its exit status and output.
public struct CommandResult {
  public var status: Int32
  public var stdout: String
  public var stderr: String
}

/// The directory holding the built products (`.build/debug` or `.build/release`).
public let productsDirectory: URL = {
  // The test runner lives in the products directory (or inside an .xctest bundle there).
  var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.appendingPathComponent("h2resync").path) {
    url = url.deletingLastPathComponent()
  }
  return url
}()

/// Runs `tool` (e.g. "h2resync") with `arguments`.
public func run(_ tool: String, _ arguments: [String], stdin: Data? = nil, cwd: String? = nil) throws -> CommandResult {
  let p = Process()
  if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
  p.executableURL = productsDirectory.appendingPathComponent(tool)
  p.arguments = arguments
  // Output goes to temporary files: no pipe can fill up and block the child.
  let dir = makeTempDir("h2run")
  defer { try? FileManager.default.removeItem(atPath: dir) }
  FileManager.default.createFile(atPath: dir + "/out", contents: nil)
  FileManager.default.createFile(atPath: dir + "/err", contents: nil)
  p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
  p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
  if let stdin {
    FileManager.default.createFile(atPath: dir + "/in", contents: stdin)
    p.standardInput = FileHandle(forReadingAtPath: dir + "/in")
  }
  try p.run()
  p.waitUntilExit()
  let outData = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/out"))) ?? Data()
  let errData = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/err"))) ?? Data()
  return CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Copies a sparse image quickly: only its data extents (SEEK_DATA/SEEK_HOLE), the
/// holes stay holes.
public func sparseCopy(_ from: String, _ to: String) throws {
  let src = open(from, O_RDONLY)
  guard src >= 0 else { throw OracleError.decompress(from) }
  defer { close(src) }
  let dst = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  guard dst >= 0 else { throw OracleError.decompress(to) }
  defer { close(dst) }
  var st = stat()
  fstat(src, &st)
  ftruncate(dst, st.st_size)
  var pos: off_t = 0
  var buf = [UInt8](repeating: 0, count: 1 << 20)
  while pos < st.st_size {
    let data = lseek(src, pos, 3 /* SEEK_DATA */)
    if data < 0 { break }
    let hole = lseek(src, data, 4 /* SEEK_HOLE */)
    var p = data
    while p < hole {
      let n = buf.withUnsafeMutableBytes { pread(src, $0.baseAddress, Int(min(off_t(1 << 20), hole - p)), p) }
      if n <= 0 { break }
      _ = buf.withUnsafeBytes { pwrite(dst, $0.baseAddress, n, p) }
      p += off_t(n)
    }
    pos = hole
  }
}

/// A digest of a sparse image: size, then every data extent (offset and bytes). Two
/// images with the same digest hold the same bytes; reading it skips the holes.
public func imageDigest(_ path: String) -> String {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { return "unreadable" }
  defer { close(fd) }
  var st = stat()
  fstat(fd, &st)
  var hasher = SHA256()
  withUnsafeBytes(of: st.st_size) { hasher.update(bufferPointer: $0) }
  var pos: off_t = 0
  var buf = [UInt8](repeating: 0, count: 1 << 20)
  while pos < st.st_size {
    let data = lseek(fd, pos, 3)
    if data < 0 { break }
    let hole = lseek(fd, data, 4)
    var p = data
    while p < hole {
      let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(min(off_t(1 << 20), hole - p)), p) }
      if n <= 0 { break }
      // Zero runs hash the same whether stored or a hole: compare contents, not layout.
      let chunk = buf[0..<n]
      if !chunk.allSatisfy({ $0 == 0 }) {
        withUnsafeBytes(of: p) { hasher.update(bufferPointer: $0) }
        chunk.withUnsafeBytes { hasher.update(bufferPointer: $0) }
      }
      p += off_t(n)
    }
    pos = hole
  }
  return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// Writes `bytes` at `offset` of the file at `path`.
public func pokeFile(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
  let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
  defer { try? h.close() }
  try h.seek(toOffset: offset)
  h.write(Data(bytes))
}
