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
public func run(_ tool: String, _ arguments: [String], stdin: Data? = nil) throws -> CommandResult {
  let p = Process()
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

/// Copies a (sparse) image with `cp --sparse=always`.
public func sparseCopy(_ from: String, _ to: String) throws {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/bin/cp")
  p.arguments = ["--sparse=always", from, to]
  try p.run()
  p.waitUntilExit()
}

/// Writes `bytes` at `offset` of the file at `path`.
public func pokeFile(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
  let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
  defer { try? h.close() }
  try h.seek(toOffset: offset)
  h.write(Data(bytes))
}
