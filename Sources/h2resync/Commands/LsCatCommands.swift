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
          do throws(FormatError) { child = try reader.inode(e.inum) } catch { inodeFindings.append(Finding(error: error, fallback: reader.volume.location(of: e.bref), path: e.nameString)) }
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
      throw FormatError(.invalidArgument("\(path) is a \(ino.meta.type?.name ?? "special file"), not a regular file"))
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

extension String {
  func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// "drwxr-xr-x" style, from the HAMMER2 object type and permission bits.
func modeString(_ m: InodeMeta) -> String {
  let t: Character
  switch m.type {
  case .directory: t = "d"
  case .symlink: t = "l"
  case .fifo: t = "p"
  case .characterDevice: t = "c"
  case .blockDevice: t = "b"
  case .socket: t = "s"
  default: t = "-"
  }
  var s = [t]
  let bits = m.mode
  let rwx: [(UInt32, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x")]
  for (b, c) in rwx { s.append(bits & b != 0 ? c : "-") }
  if bits & 0o4000 != 0 { s[3] = s[3] == "x" ? "s" : "S" }
  if bits & 0o2000 != 0 { s[6] = s[6] == "x" ? "s" : "S" }
  if bits & 0o1000 != 0 { s[9] = s[9] == "x" ? "t" : "T" }
  return String(s)
}

/// Microseconds since the epoch as "YYYY-MM-DD HH:MM:SS" UTC.
func formatTime(_ us: UInt64) -> String {
  var t = time_t(clamping: us / 1_000_000)
  var tmv = tm()
  gmtime_r(&t, &tmv)
  return String(format: "%04d-%02d-%02d %02d:%02d:%02d", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday), Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
}
