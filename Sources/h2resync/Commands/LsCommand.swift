import ArgumentParser
import Foundation
import Hammer2Format

struct LsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ls",
    abstract: "List a directory of a PFS (names sorted; -l adds mode, size, mtime and inum).",
    discussion: exitCodeHelp)

  @OptionGroup var target: PFSOptions

  @Argument(help: "Path relative to the PFS root (default: the root).")
  var path: String = "/"

  @Flag(name: .short, help: "Long listing: mode, size, mtime (UTC), inum.")
  var long = false

  func run() throws {
    var (reader, findings) = try target.open()
    let (inum, ino) = try reader.resolve(path)
    var rows: [(String, InodeData?, UInt64)] = []
    var inodeFindings: [Finding] = []
    if ino.meta.type == .directory {
      reader.forEachEntry(of: ino, path: path, findings: &findings) { e in
        var child: InodeData? = nil
        if long {
          do throws(FormatError) { child = try reader.inode(e.inum) } catch {
            inodeFindings.append(Finding(error: error, fallback: reader.volume.location(of: e.bref), path: e.nameString))
          }
        }
        rows.append((e.nameString, child, e.inum))
        return true
      }
      findings += inodeFindings
      rows.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
    } else {
      rows = [(path.split(separator: "/").last.map(String.init) ?? path, ino, inum)]
    }
    for (name, child, childInum) in rows {
      if long, let m = child?.meta {
        var target = ""
        if m.type == .symlink, let c = child {
          target = " -> " + String(decoding: reader.readAll(c, path: name, limit: 4096, findings: &findings), as: UTF8.self)
        }
        print("\(modeString(m))  \(String(m.size).leftPad(10))  \(formatTime(m.mtime))  \(String(childInum).leftPad(8))  \(name)\(target)")
      } else {
        print(name)
      }
    }
    try finish(report(findings))
  }
}
