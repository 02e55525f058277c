import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// The device seam: memory devices, the one node opener, and the injected write hook.
@Suite struct BlockDeviceTests {
  @Test func memoryDeviceRoundTrip() throws {
    let d = MemoryImage(label: "m", size: 200_000)
    let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    // Across a 64 KiB page boundary, and past the end (the device grows as a file does).
    try bytes.withUnsafeBytes { try d.write(at: 60_000, from: $0) }
    try bytes.withUnsafeBytes { try d.write(at: 190_000, from: $0) }
    #expect(d.size == 290_000)
    #expect(try d.read(at: 60_000, count: bytes.count) == bytes)
    #expect(try d.read(at: 190_000, count: bytes.count) == bytes)
    #expect(try d.read(at: 0, count: 60_000) == [UInt8](repeating: 0, count: 60_000))
    var into = [UInt8](repeating: 0xFF, count: 1000)
    try into.withUnsafeMutableBytes { try d.read(at: 59_500, into: $0) }
    #expect(into == [UInt8](repeating: 0, count: 500) + bytes[0..<500])
    #expect(throws: FormatError.self) { try d.read(at: 289_999, count: 2) }
    // A copy is independent; content comparison sees one byte.
    let c = d.copy()
    #expect(c.sameContent(as: d))
    try [UInt8(1)].withUnsafeBytes { try c.write(at: 5, from: $0) }
    #expect(!c.sameContent(as: d))
    #expect(try d.read(at: 5, count: 1) == [0])
    // Shrinking drops the bytes beyond; growing again reads zeros there.
    try d.setSize(100_000)
    try d.setSize(290_000)
    #expect(try d.read(at: 60_000, count: 40_000) == Array(bytes[0..<40_000]))
    #expect(try d.read(at: 100_000, count: 190_000) == [UInt8](repeating: 0, count: 190_000))
    // One writer at a time.
    try d.lockExclusive()
    #expect(throws: FormatError.self) { try d.lockExclusive() }
    d.unlock()
    try d.lockExclusive()
    d.unlock()
    try d.flush()
  }

  /// A local file device opened read-only refuses writes; writable, it writes, flushes
  /// and takes the single-writer lock (a second writer is refused).
  @Test func fileDeviceWritesAndLocks() throws {
    let dir = makeTempDir("h2dev")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/f.img"
    let w = try LocalDeviceOpener().create(path)
    #expect(w.isWritable)
    try w.setSize(1 << 20)
    try [UInt8](repeating: 0xAB, count: 4096).withUnsafeBytes { try w.writeDurably(at: 8192, from: $0) }
    try w.lockExclusive()
    let other = try LocalDeviceOpener().open(path, writable: true)
    #expect(throws: FormatError.self) { try other.lockExclusive() }
    w.unlock()
    try other.lockExclusive()
    let r = try LocalDeviceOpener().open(path, writable: false)
    #expect(!r.isWritable && r.size == 1 << 20)
    #expect(try r.read(at: 8192, count: 4096) == [UInt8](repeating: 0xAB, count: 4096))
    #expect(throws: FormatError.self) { try [UInt8(0)].withUnsafeBytes { try r.write(at: 0, from: $0) } }
  }

  /// A multi-volume spec opened through an opener: every volume is the opener's (memory
  /// here, no file), checked as one file system, read and written at logical offsets.
  @Test func multiVolumeSpecThroughTheOpener() throws {
    let opener = MemoryDeviceOpener()
    var uuids = UUIDSource.seeded(7)
    try NewfsVolumes.format(
      paths: ["mv0", "mv1"], sizes: [1 << 30, 256 << 20], labels: ["LOCAL", "DATA"],
      uuids: &uuids, time: 1_000_000_000_000_000, opener: opener)
    #expect(access("mv0", F_OK) != 0)
    let io = try openImage("mv0:mv1", opener: opener)
    #expect(io is MultiVolumeImage)
    #expect(io.volumeExtents?.map(\.label) == ["mv0", "mv1"])
    let volume = try Volume(io: io, opener: opener)
    var findings: [Finding] = []
    #expect(try volume.pfsList(findings: &findings).map(\.name).sorted() == ["DATA", "LOCAL"])
    #expect(auditFreemap(volume).isEmpty)
    // A write at logical 1 GiB + 5 MiB lands on the second volume at 5 MiB.
    let w = try WritableImage(path: "mv0:mv1", opener: opener)
    try w.write(at: (1 << 30) + (5 << 20), [UInt8](repeating: 0xCD, count: 4096), structure: "test")
    try w.sync()
    #expect(try opener["mv1"]!.read(at: 5 << 20, count: 4096) == [UInt8](repeating: 0xCD, count: 4096))
    #expect(try opener["mv0"]!.read(at: 5 << 20, count: 4096) == [UInt8](repeating: 0, count: 4096))
    // Locked while written: a second writer of the node is refused.
    #expect(throws: FormatError.self) { try WritableImage(path: "mv0:mv1", opener: opener) }
    // The volumes in the wrong order are refused as on files.
    #expect(throws: FormatError.self) { try openImage("mv1:mv0", opener: opener) }
  }

  /// A file written through the writer library, on a memory device, stopped by the
  /// injected hook at every write index: each stop leaves the old state (the new file
  /// absent, the old one intact, the freemap exact), the writes before the stop reached
  /// the device, and the unhooked run commits the new state.
  @Test func everyWriteIndexOfAFileWriteLeavesTheOldState() throws {
    let opener = MemoryDeviceOpener()
    var uuids = UUIDSource.seeded(3)
    try Newfs.format(path: "node", size: 1 << 30, labels: ["LOCAL", "DATA"], uuids: &uuids, time: 1_000_000_000_000_000, opener: opener)
    let old = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let new = (0..<150_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 9) }
    try writeFile("old.bin", old, opener: opener)
    let base = opener["node"]!.copy()
    var n = 0
    var completed = false
    while !completed, n < 400 {
      let device = base.copy()
      let devices = MemoryDeviceOpener(["node": device])
      let stops = StopLog()
      let hooked = HookedOpener(base: devices, writeHook: .stop(after: n) { stops.add($0) })
      do {
        try writeFile("new.bin", new, opener: hooked)
        completed = true
        #expect(stops.indexes.isEmpty)
      } catch {
        #expect(stops.indexes == [n], "stopped at \(stops.indexes), asked \(n)")
        #expect(error.kind == .io(errno: ECANCELED, operation: "write (stopped by the write hook after \(n) writes)"), "\(error)")
        #expect(device.sameContent(as: base) == (n == 0), "after \(n) writes: the writes before the stop reached the device")
      }
      let volume = try Volume.open(path: "node", opener: devices)
      let reader = try dataReader(volume)
      #expect(try read(reader, "old.bin") == old)
      #expect(try read(reader, "new.bin") == (completed ? new : nil), "after \(n) writes")
      let problems = auditFreemap(volume)
      #expect(problems.isEmpty, "after \(n) writes: \(problems.prefix(4))")
      n += 1
    }
    #expect(completed && n > 5, "\(n) writes")
  }

  /// The format library never reads the environment nor ends the process: the crash
  /// hook is the caller's (`WriteHook`); the executables read H2_CRASH_AFTER_WRITES.
  @Test func theFormatLibraryNeverReadsTheEnvironmentOrExits() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let sources = root.appendingPathComponent("Sources/Hammer2Format").path
    let files = try #require(FileManager.default.enumerator(atPath: sources)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
    #expect(files.count > 20)
    for f in files {
      let text = try String(contentsOfFile: sources + "/" + f, encoding: .utf8)
      for banned in ["getenv", "ProcessInfo", "exit(", "H2_CRASH_AFTER_WRITES"] {
        #expect(!text.contains(banned), "\(f) contains \(banned)")
      }
    }
  }

  // MARK: helpers

  final class StopLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int] = []
    func add(_ i: Int) {
      lock.lock()
      list.append(i)
      lock.unlock()
    }
    var indexes: [Int] {
      lock.lock()
      defer { lock.unlock() }
      return list
    }
  }

  func writeFile(_ name: String, _ bytes: [UInt8], opener: DeviceOpener) throws(FormatError) {
    let tx = try Transaction(path: "node", opener: opener)
    let ed = try tx.editor(pfs: "DATA")
    let inum = try ed.create(Array(name.utf8), in: ed.resolve("/"), type: .regularFile, mode: 0o644, time: 1_100_000_000_000_000)
    try ed.write(inum, at: 0, bytes)
    try tx.commit()
  }

  func dataReader(_ volume: Volume) throws -> PFSReader {
    var findings: [Finding] = []
    let pfs = try #require(try volume.pfsList(findings: &findings).first { $0.name == "DATA" })
    return PFSReader(volume: volume, pfs: pfs)
  }

  func read(_ reader: PFSReader, _ path: String) throws -> [UInt8]? {
    guard let (_, ino) = try? reader.resolve(path) else { return nil }
    var findings: [Finding] = []
    let bytes = reader.readAll(ino, path: path, limit: 1 << 20, findings: &findings)
    #expect(findings.isEmpty, "\(findings)")
    return bytes
  }
}
