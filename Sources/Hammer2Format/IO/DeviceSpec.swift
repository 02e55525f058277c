/// How a device is named on the command line: a local path, or the URI of a remote
/// export (NBD, served by nbdkit, qemu-nbd or nbd-server). Only the names are handled
/// here; the transport lives in the Hammer2Remote target, behind `DeviceOpener`.
public enum DeviceSpec {
  /// The NBD URI schemes libnbd's `nbd_connect_uri` takes (TCP, Unix socket, vsock; the
  /// `nbds` forms with TLS).
  public static let remoteSchemes = ["nbds+unix", "nbd+unix", "nbds+vsock", "nbd+vsock", "nbds", "nbd"]

  /// The URI scheme of `spec` when it names a remote export, else nil.
  public static func remoteScheme(_ spec: some StringProtocol) -> String? {
    remoteSchemes.first { spec.hasPrefix($0 + "://") }
  }

  /// Whether `spec` names a remote export.
  public static func isRemote(_ spec: String) -> Bool { remoteScheme(spec) != nil }

  /// `spec` as it may be printed: a URI without its query string and fragment (the
  /// query holds the socket path and TLS parameters such as `tls-psk-file` or
  /// `tls-username`: credentials never appear in output); a path as given.
  public static func printable(_ spec: String) -> String {
    guard isRemote(spec) else { return spec }
    return String(spec.prefix { $0 != "?" && $0 != "#" })
  }

  /// `spec` with every URI in it (a multi-volume list) printable.
  public static func printableList(_ spec: String) -> String {
    guard spec.contains("://") else { return spec }
    return split(spec).map(printable).joined(separator: ":")
  }

  /// Splits a `:`-joined device list that holds URIs, keeping each URI whole: a URI's
  /// scheme, its authority (a `:port` and a bracketed IPv6 address included) and its
  /// path and query up to the next `:` (so an export name or query in a volume list
  /// cannot contain `:`). Empty parts are dropped.
  static func split(_ spec: String) -> [String] {
    var parts: [String] = []
    var rest = Substring(spec)
    while !rest.isEmpty {
      var end: Substring.Index
      if let scheme = remoteScheme(rest) {
        var i = rest.index(rest.startIndex, offsetBy: scheme.count + 3)
        var inBracket = false
        authority: while i < rest.endIndex {
          switch rest[i] {
          case "[": inBracket = true
          case "]": inBracket = false
          case "/", "?": if !inBracket { break authority }
          case ":" where !inBracket:
            // A port: digits up to the path; anything else ends the URI here.
            let digits = rest[rest.index(after: i)...].prefix { $0.isASCII && $0.isNumber }
            let after = digits.endIndex
            guard !digits.isEmpty, after == rest.endIndex || "/?:".contains(rest[after]) else { break authority }
            i = after
            continue authority
          default: break
          }
          i = rest.index(after: i)
        }
        end = rest[i...].firstIndex(of: ":") ?? rest.endIndex
      } else {
        end = rest.firstIndex(of: ":") ?? rest.endIndex
      }
      if end > rest.startIndex { parts.append(String(rest[..<end])) }
      rest = end < rest.endIndex ? rest[rest.index(after: end)...] : ""
    }
    return parts
  }
}
