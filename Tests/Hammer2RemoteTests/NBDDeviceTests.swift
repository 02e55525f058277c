import Crypto
import Foundation
import H2TestSupport
import Hammer2Format
import Hammer2Remote
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// One fixture cluster (three-masters-one-behind), built once for the suite.
enum Fixture {
  static let built: (dir: String, images: [String])? = {
    guard let spec = try? ScenarioSpec.allSpecs().first(where: { $0.name == "three-masters-one-behind" }) else { return nil }
    let dir = makeTempDir("h2nbd-fixture")
    guard let b = try? spec.build(into: dir, audit: false) else { return nil }
    return (dir, spec.nodes.map { (b.images[$0.name]! as NSString).lastPathComponent })
  }()

  static func get() throws -> (dir: String, images: [String]) { try #require(built, "the fixture cluster could not be built") }
}

/// Everything a reader sees of a PFS: every path with its type, size and content hash,
/// and the findings.
func treeDigest(_ volume: Volume) throws -> [String] {
  var findings: [Finding] = []
  var out: [String] = ["header mirror_tid \(volume.header.mirrorTid) slot \(volume.headerSlot)"]
  for pfs in try volume.pfsList(findings: &findings) {
    out.append("pfs \(pfs.name) \(pfs.clid) \(pfs.rootModifyTid)")
    let reader = PFSReader(volume: volume, pfs: pfs)
    var stack: [(String, InodeData)] = [("", pfs.inode)]
    while let (path, dir) = stack.popLast() {
      var listed: [Finding] = []
      var read: [Finding] = []
      defer { findings += listed + read }
      reader.forEachEntry(of: dir, path: path, findings: &listed) { e in
        let p = path + "/" + e.nameString
        guard let ino = try? reader.inode(e.inum) else {
          out.append("\(p) unreadable")
          return true
        }
        if ino.meta.type == .directory {
          stack.append((p, ino))
          out.append("\(p) dir")
        } else {
          let bytes = reader.readAll(ino, path: p, limit: 64 << 20, findings: &read)
          out.append("\(p) \(ino.meta.size) \(SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())")
        }
        return true
      }
    }
  }
  return out + findings.map(\.description)
}

/// Names that hold no URI stay as they were; URIs are kept whole in volume lists.
@Suite struct DeviceSpecTests {
  @Test func nbdURIsStayWholeInVolumeLists() {
    #expect(ImagePath.devices("nbd://h:10809/a:nbd://h:10809/b") == ["nbd://h:10809/a", "nbd://h:10809/b"])
    #expect(ImagePath.devices("nbd+unix:///a?socket=/run/s") == ["nbd+unix:///a?socket=/run/s"])
    #expect(ImagePath.devices("nbd+unix:///a?socket=/s1:/dev/da1") == ["nbd+unix:///a?socket=/s1", "/dev/da1"])
    #expect(
      ImagePath.devices("/x/a0.img:nbds://[::1]:10809/v1?tls-certificates=/etc/pki") == [
        "/x/a0.img", "nbds://[::1]:10809/v1?tls-certificates=/etc/pki",
      ])
    #expect(ImagePath.devices("nbd://host/x:nbd://host") == ["nbd://host/x", "nbd://host"])
    #expect(ImagePath.devices("a.img:b.img") == ["a.img", "b.img"])
    #expect(ImagePath.shortName("nbd+unix:///A.img?socket=/tmp/s/sock") == "A.img")
    #expect(ImagePath.shortName("nbd://h:10809/a0:nbd://h:10809/a1") == "a0:a1")
    #expect(DeviceSpec.printable("nbds://h/x?tls-psk-file=/k&tls-username=u") == "nbds://h/x")
    #expect(DeviceSpec.printableList("nbd://h/a?x=1:nbd://h/b?y=2") == "nbd://h/a:nbd://h/b")
  }
}

@Suite(.serialized, .enabled(if: NBDKit.available, "SKIPPED NBD tests: nbdkit is not installed (apt-get install nbdkit)"))
struct NBDDeviceTests {
  static let quick = NBDOptions(cacheBytes: 16 << 20, connectTimeout: 2, requestTimeout: 2)

  @Test func readsEveryNodeAsTheLocalFileReads() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, readOnly: true)
    defer { server.stop() }
    let pool = NBDPool(options: Self.quick)
    for image in f.images {
      let local = try Volume(io: FileImage(path: f.dir + "/" + image))
      let device = try pool.open(server.uri(image), writable: false)
      #expect(device.label == server.label(image))
      #expect(device.size == local.io.size)
      let remote = try Volume(io: device)
      #expect(try treeDigest(remote) == treeDigest(local), "\(image)")
      // The raw bytes too, over a range that spans many requests.
      let n = 3 << 20
      #expect(try device.read(at: 0, count: n) == local.io.read(at: 0, count: n))
    }
  }

  @Test func hintsAreCoalescedAndReadsServedFromThem() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, readOnly: true)
    defer { server.stop() }
    let device = try NBDPool(options: Self.quick).open(server.uri(f.images[0]), writable: false)
    let local = try FileImage(path: f.dir + "/" + f.images[0])
    // 2 MiB of hints in 64 KiB pieces and one range: one request each time.
    for k in 0..<32 { device.willNeed(at: (1 << 20) + UInt64(k) * 65536, count: 65536) }
    #expect(device.statistics.readRequests == 32)
    device.willNeed(at: 8 << 20, count: 2 << 20)
    #expect(device.statistics.readRequests == 33)
    for k in 0..<32 {
      let off = (8 << 20) + UInt64(k) * 65536
      #expect(try device.read(at: off, count: 65536) == local.read(at: off, count: 65536))
    }
    let s = device.statistics
    #expect(s.misses == 0 && s.hits == 32 && s.readRequests == 33)
    // Used: the 32 chunks read; the first 2 MiB of hints were fetched for nothing.
    #expect(s.bytesUsed == 32 * 65536 && s.bytesFetched == 4 << 20, "\(s)")
    // A sequential scan doubles its requests up to 4 MiB and sends the next ahead.
    let base: UInt64 = 32 << 20
    for k in 0..<256 { _ = try device.read(at: base + UInt64(k) * 65536, count: 65536) }
    let scan = device.statistics
    #expect(scan.readRequests - s.readRequests <= 10, "\(scan)")
    #expect(scan.misses - s.misses <= 3, "\(scan)")
  }

  @Test func writesFlushesAndFUAReachTheServer() throws {
    let f = try Fixture.get()
    let dir = makeTempDir("h2nbd-write")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try sparseCopy(f.dir + "/" + f.images[0], dir + "/w.img")
    let server = try NBDKit(directory: dir)
    defer { server.stop() }
    let pool = NBDPool(options: Self.quick)
    let reader = try pool.open(server.uri("w.img"), writable: false)
    let before = try reader.read(at: 5 << 20, count: 8192)
    let writer = try pool.open(server.uri("w.img"), writable: true)
    let data = (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    try data.withUnsafeBytes { b in try writer.write(at: 5 << 20, from: b) }
    try writer.flush()
    let header = [UInt8](repeating: 0xA5, count: 4096)
    try header.withUnsafeBytes { b in try writer.writeDurably(at: 1 << 20, from: b) }
    // The shared cache saw the writes; the file on the server holds them.
    #expect(try reader.read(at: 5 << 20, count: 8192) == Array(data[0..<8192]))
    #expect(before != Array(data[0..<8192]))
    let file = try FileImage(path: dir + "/w.img")
    #expect(try file.read(at: 5 << 20, count: data.count) == data)
    #expect(try file.read(at: 1 << 20, count: 4096) == header)
    let s = writer.statistics
    #expect(s.bytesWritten == UInt64(data.count + header.count))
    #expect(s.writeRequests >= 3) // 6 MiB goes as 4 MiB + 2 MiB, then the header
    #expect(s.flushRequests >= 1)
    // A read-only device never writes.
    #expect(throws: FormatError.self) { try header.withUnsafeBytes { b in try reader.write(at: 0, from: b) } }
  }

  @Test func aReadOnlyExportIsRefusedForWriting() throws {
    let f = try Fixture.get()
    let server = try NBDKit(directory: f.dir, readOnly: true)
    defer { server.stop() }
    let pool = NBDPool(options: Self.quick)
    #expect(throws: Never.self) { _ = try pool.open(server.uri(f.images[0]), writable: false) }
    let e = try expectFailure { () throws(FormatError) in _ = try pool.open(server.uri(f.images[0]), writable: true) }
    #expect(e.description.hasPrefix(server.label(f.images[0]) + ": NBD export: the NBD server exports this device read-only"), "\(e)")
    #expect(!e.description.contains("socket="))
  }

  /// The error `body` throws, as a FormatError.
  func expectFailure(_ body: () throws(FormatError) -> Void) throws -> FormatError {
    do throws(FormatError) {
      try body()
    } catch {
      return error
    }
    Issue.record("expected an error")
    throw FormatError(.notFound("no error"))
  }
}
