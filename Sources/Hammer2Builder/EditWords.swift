/// Edits spelled as words, the way a scenario operation lists them: an h2mkimage command
/// line without the image, --pfs and --time (["write", "a.txt", "--at", "0", "--data",
/// "text:hi"]). Only parsing: `Edit.apply` does the work, as for h2mkimage.
public enum EditWords {
  /// The editing commands `edit(_:data:)` knows.
  public static let editCommands: Set<String> = ["write", "rm", "mkdir", "mv", "chmod", "truncate", "setcomp", "symlink", "link"]

  /// The editing commands plus the two that are not edits of a PFS tree: `snapshot NAME`
  /// (a transaction of its own) and `corrupt PATH [--block N]` (damage in place).
  public static let commands: Set<String> = editCommands.union(["snapshot", "corrupt"])

  /// The words after the command: positional arguments, `--name value` options and the
  /// known bare flags.
  public struct Arguments {
    public var positional: [String] = []
    public var options: [String: String] = [:]
    public var flags: Set<String> = []

    public init(_ words: [String], flags known: Set<String> = []) throws {
      var i = 0
      while i < words.count {
        let w = words[i]
        if known.contains(w) {
          flags.insert(w)
        } else if w.hasPrefix("--") {
          guard i + 1 < words.count else { throw BuildError("option \(w) needs a value") }
          options[String(w.dropFirst(2))] = words[i + 1]
          i += 1
        } else {
          positional.append(w)
        }
        i += 1
      }
    }

    /// Positional argument `i` of `cmd`.
    public func arg(_ i: Int, _ cmd: String) throws -> String {
      guard i < positional.count else { throw BuildError("\(cmd): missing argument \(i + 1)") }
      return positional[i]
    }
  }

  /// The edit `cmd words...` names; `data` turns a `write --data` spec into bytes.
  public static func edit(_ cmd: String, _ words: [String], data: (String) throws -> [UInt8]) throws -> Edit {
    let a = try Arguments(words, flags: ["-r"])
    func size(_ s: String) throws -> UInt64 {
      guard let n = Spellings.byteSize(s) else { throw BuildError("bad size \(s)") }
      return n
    }
    func mode(_ s: String, _ what: String) throws -> UInt32 {
      guard let m = UInt32(s, radix: 8), m <= 0o7777 else { throw BuildError("\(what): bad mode \(s)") }
      return m
    }
    switch cmd {
    case "write":
      let path = try a.arg(0, cmd)
      guard let spec = a.options["data"] else { throw BuildError("write \(path): --data is required") }
      return .write(path: path, offset: try size(a.options["at"] ?? "0"), bytes: try data(spec))
    case "rm": return .remove(path: try a.arg(0, cmd), recursive: a.flags.contains("-r"))
    case "mkdir":
      guard let m = UInt32(a.options["mode"] ?? "755", radix: 8) else { throw BuildError("mkdir: bad mode") }
      return .makeDirectory(path: try a.arg(0, cmd), mode: m)
    case "symlink": return .symlink(path: try a.arg(0, cmd), target: try a.arg(1, cmd))
    case "link": return .link(existing: try a.arg(0, cmd), new: try a.arg(1, cmd))
    case "mv": return .move(from: try a.arg(0, cmd), to: try a.arg(1, cmd))
    case "chmod": return .chmod(path: try a.arg(1, cmd), mode: try mode(try a.arg(0, cmd), "chmod"))
    case "truncate": return .truncate(path: try a.arg(0, cmd), size: try size(try a.arg(1, cmd)))
    case "setcomp":
      let s = try a.arg(1, cmd)
      guard let c = Spellings.compAlgo(s) else { throw BuildError(Spellings.compAlgoHelp) }
      return .setComp(path: try a.arg(0, cmd), algo: c)
    default:
      throw BuildError("\(cmd) is not an editing command")
    }
  }

  /// Substitutes {i} / {i:05} (zero-padded to 5) in `words`.
  public static func substitute(_ words: [String], _ i: Int) -> [String] {
    words.map { w in
      var out = ""
      var rest = Substring(w)
      while let open = rest.range(of: "{i") {
        guard let close = rest[open.upperBound...].firstIndex(of: "}") else { break }
        out += rest[..<open.lowerBound]
        let fmt = rest[open.upperBound..<close]
        var num = String(i)
        if fmt.hasPrefix(":"), let width = Int(fmt.dropFirst()), num.count < width {
          num = String(repeating: "0", count: width - num.count) + num
        }
        out += num
        rest = rest[rest.index(after: close)...]
      }
      return out + rest
    }
  }
}
