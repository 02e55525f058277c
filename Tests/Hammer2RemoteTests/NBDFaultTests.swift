import Foundation
import H2TestSupport
import Hammer2Format
import Hammer2Remote
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Every transport fault is one error naming the URI (never its query), found within
/// the timeouts: never a hang.
@Suite(.serialized, .enabled(if: NBDKit.available, "SKIPPED NBD fault tests: nbdkit is not installed (apt-get install nbdkit)"))
struct NBDFaultTests {
  static let quick = NBDOptions(cacheBytes: 16 << 20, connectTimeout: 1, requestTimeout: 1)

  func failure(_ body: () throws(FormatError) -> Void) -> FormatError? {
    do throws(FormatError) {
      try body()
    } catch {
      return error
    }
    return nil
  }

  func expectOneLine(
    _ e: FormatError?, label: String, errno code: Int32? = nil, saying text: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    guard let e else {
      Issue.record("no error", sourceLocation: sourceLocation)
      return
    }
    let line = e.description
    // A request names its offset; the export or the header copies as a whole have none (no fake "@0x0").
    #expect(line.hasPrefix(label + (e.location?.offset == nil ? ": " : " @0x")), "\(line)", sourceLocation: sourceLocation)
    #expect(!line.contains("?") && !line.contains("socket=") && !line.contains("\n"), "\(line)", sourceLocation: sourceLocation)
    if let code, case .io(let got, _) = e.kind { #expect(got == code, "\(line)", sourceLocation: sourceLocation) }
    if let text { #expect(line.contains(text), "\(line)", sourceLocation: sourceLocation) }
  }

  @Test func refusedConnectionAndMissingSocket() {
    let pool = NBDPool(options: Self.quick)
    // Nothing listens on TCP port 1 of the loopback address.
    expectOneLine(
      failure { () throws(FormatError) in _ = try pool.open("nbd://127.0.0.1:1/x", writable: false) }, label: "nbd://127.0.0.1:1/x",
      errno: ECONNREFUSED, saying: "NBD connect")
    let dir = makeTempDir("h2nbd-nosock")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    expectOneLine(
      failure { () throws(FormatError) in _ = try pool.open("nbd+unix:///x?socket=\(dir)/none", writable: false) }, label: "nbd+unix:///x",
      saying: "NBD connect")
  }

  @Test func unknownExport() throws {
    let dir = makeTempDir("h2nbd-empty")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let server = try NBDKit(directory: dir)
    defer { server.stop() }
    let e = failure { () throws(FormatError) in _ = try NBDPool(options: Self.quick).open(server.uri("nope.img"), writable: false) }
    expectOneLine(e, label: server.label("nope.img"), saying: "NBD connect")
  }

  @Test func tlsRequiredButNotOffered() throws {
    let dir = makeTempDir("h2nbd-tls")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/a.img", contents: Data(count: 1 << 20))
    let server = try NBDKit(directory: dir)
    defer { server.stop() }
    let uri = "nbds+unix:///a.img?socket=\(server.socket)&tls-username=alice"
    expectOneLine(
      failure { () throws(FormatError) in _ = try NBDPool(options: Self.quick).open(uri, writable: false) }, label: "nbds+unix:///a.img",
      saying: "NBD connect")
  }

  @Test func aServerThatNeverShakesHandsTimesOut() throws {
    // A socket that accepts connections (the kernel's backlog) but never answers.
    let dir = makeTempDir("h2nbd-mute")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/sock"
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
      for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    let bound = withUnsafePointer(to: &addr) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    #expect(bound == 0 && listen(fd, 4) == 0)
    let start = Date()
    let e = failure { () throws(FormatError) in _ = try NBDPool(options: Self.quick).open("nbd+unix:///x?socket=\(path)", writable: false) }
    expectOneLine(e, label: "nbd+unix:///x", errno: ETIMEDOUT, saying: "no handshake from the server within 1000 ms")
    #expect(Date().timeIntervalSince(start) < 10)
  }

  @Test func aServerThatStopsAnsweringTimesOut() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, filters: ["delay"], readOnly: true, ["delay-read=60"])
    defer { server.stop() }
    let pool = NBDPool(options: Self.quick)
    let device = try pool.open(server.uri(f.images[0]), writable: false)
    let start = Date()
    let e = failure { () throws(FormatError) in _ = try Volume(io: device) }
    expectOneLine(e, label: server.label(f.images[0]), errno: ETIMEDOUT, saying: "no reply from the server within 1000 ms")
    #expect(Date().timeIntervalSince(start) < 10)
    // Given up: later reads fail at once, and the pool says why.
    let again = Date()
    #expect(failure { () throws(FormatError) in _ = try device.read(at: 1 << 20, count: 4096) } != nil)
    #expect(Date().timeIntervalSince(again) < 0.5)
    expectOneLine(pool.failure(), label: server.label(f.images[0]), errno: ETIMEDOUT)
  }

  @Test func readErrorsOfTheServer() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, filters: ["error"], readOnly: true, ["error-pread=EIO", "error-pread-rate=100%"])
    defer { server.stop() }
    let device = try NBDPool(options: Self.quick).open(server.uri(f.images[0]), writable: false)
    expectOneLine(
      failure { () throws(FormatError) in _ = try device.read(at: 0, count: 65536) }, label: server.label(f.images[0]), errno: EIO)
  }

  @Test func anExportShorterThanItsHeaderSays() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, filters: ["truncate"], readOnly: true, ["truncate=64M"])
    defer { server.stop() }
    let device = try NBDPool(options: Self.quick).open(server.uri(f.images[0]), writable: false)
    #expect(device.size == 64 << 20)
    expectOneLine(
      failure { () throws(FormatError) in _ = try Volume(io: device) }, label: server.label(f.images[0]),
      saying: "shorter than its volume header's volu_size")
  }
}
