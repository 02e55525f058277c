import ArgumentParser
import Foundation
import Hammer2Format

struct CatCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cat",
    abstract: "Write a file of a PFS to stdout (holes as zeros; a symlink prints its target).",
    discussion: exitCodeHelp)

  @OptionGroup var target: PFSOptions

  @Argument(help: "Path relative to the PFS root.")
  var path: String

  func run() throws {
    var (reader, findings) = try target.open()
    let (_, ino) = try reader.resolve(path)
    guard ino.meta.type == .regularFile || ino.meta.type == .symlink else {
      throw CouldNotRun.notARegularFile(path: path, type: ino.meta.type?.name ?? "special file")
    }
    let out = FileHandle.standardOutput
    let size = ino.meta.size
    var written: UInt64 = 0
    let zeros = [UInt8](repeating: 0, count: 65536)
    func pad(to end: UInt64) {
      while written < end {
        let n = Int(min(UInt64(zeros.count), end - written))
        out.write(Data(zeros[0..<n]))
        written += UInt64(n)
      }
    }
    reader.forEachDataBlock(of: ino, path: path, findings: &findings) { off, bytes in
      guard off < size else { return }
      pad(to: off)
      let n = Int(min(UInt64(bytes.count), size - off))
      out.write(Data(bytes[0..<n]))
      written = off + UInt64(n)
    }
    pad(to: size)
    try finish(report(findings))
  }
}
