import Crypto
import Foundation
import Hammer2Builder

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
  return CommandResult(
    status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Copies a sparse image quickly: only its data extents, the holes stay holes.
public func sparseCopy(_ from: String, _ to: String) throws { try SparseFile.copy(from: from, to: to) }

/// A digest of a sparse image: size, then every data extent (offset and bytes). Two
/// images with the same digest hold the same bytes; reading it skips the holes.
/// `count` bytes of the file at `offset` (a header, a block), without reading the rest of
/// an image that may be GiB long.
public func readBytes(_ path: String, at offset: UInt64, count: Int) throws -> [UInt8] {
  guard let h = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
  defer { try? h.close() }
  try h.seek(toOffset: offset)
  return [UInt8](try h.read(upToCount: count) ?? Data())
}

public func imageDigest(_ path: String) -> String {
  var hasher = SHA256()
  let ok: Void? = try? SparseFile.withOpenFile(path) { fd, size in
    withUnsafeBytes(of: off_t(size)) { hasher.update(bufferPointer: $0) }
    try SparseFile.forEachChunk(fd: fd, size: size) { off, chunk in
      // Zero runs hash the same whether stored or a hole: compare contents, not layout.
      if !chunk.allSatisfy({ $0 == 0 }) {
        withUnsafeBytes(of: off_t(off)) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: chunk)
      }
    }
  }
  guard ok != nil else { return "unreadable" }
  return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// Writes `bytes` at `offset` of the file at `path`.
public func pokeFile(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
  let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
  defer { try? h.close() }
  try h.seek(toOffset: offset)
  h.write(Data(bytes))
}
