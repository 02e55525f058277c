import Foundation
import Hammer2Format

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
  let rwx: [(UInt32, Character)] = [
    (0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x"),
  ]
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
  return String(
    format: "%04d-%02d-%02d %02d:%02d:%02d", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday), Int(tmv.tm_hour),
    Int(tmv.tm_min), Int(tmv.tm_sec))
}

/// Prints rows as left-aligned columns separated by two spaces.
func printTable(_ rows: [[String]]) {
  guard let first = rows.first else { return }
  var widths = [Int](repeating: 0, count: first.count)
  for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
  for r in rows {
    var line = ""
    for (i, c) in r.enumerated() {
      line += i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count + 2)
    }
    print(line)
  }
}

func sizeString(_ n: Int) -> String { n >= 1024 && n % 1024 == 0 ? "\(n / 1024)K" : "\(n)" }
