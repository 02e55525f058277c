import Foundation
import H2TestSupport
import Hammer2Builder
import Hammer2Format
import Testing

@discardableResult
func mkimage(_ args: [String]) throws -> CommandResult {
  let r = try run("h2mkimage", args)
  if r.status != 0 { Issue.record("h2mkimage \(args.joined(separator: " ")) failed: \(r.stderr)") }
  return r
}

@Suite struct WriterTests {
  static let combos: [(String, String)] = [
    ("none", "none"), ("autozero", "xxhash64"), ("lz4", "xxhash64"), ("zlib", "iscsi32"), ("zlib:9", "sha192"),
    ("zstd", "xxhash64"), ("lz4", "disabled"),
  ]

  @Test(arguments: combos)
  func populateThenExtractIsExact(comp: String, check: String) throws {
    let dir = makeTempDir("h2w")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = try makeSourceTree(dir)
    let img = dir + "/img"
    try mkimage(["new", img, "--size", "2G", "--uuid-seed", "1", "--time", "1000000000"])
    try mkimage(["pfs-create", img, "DATA", "--type", "MASTER", "--nmasters", "1", "--uuid-seed", "2", "--time", "1000000000"])
    try mkimage(["populate", img, "--pfs", "DATA", src, "--comp", comp, "--check", check, "--time", "1000000000"])
    let found = try extractPFS(img, to: dir + "/out")
    #expect(found.isEmpty, "\(found.prefix(3))")
    let problems = compareTree(dir + "/out", listing: listing(of: src))
    #expect(problems.isEmpty, "\(comp)/\(check): \(problems.prefix(8))")
    let volume = try Volume.open(path: img)
    #expect(auditFreemap(volume).isEmpty, "\(auditFreemap(volume).prefix(5))")
    var walker = TopologyWalker(volume: volume, includeFreemap: true, decompressData: true)
    walker.walk { _ in }
    #expect(walker.findings.isEmpty, "\(walker.findings.prefix(3))")
  }

  @Test func sameInputsGiveByteIdenticalImages() throws {
    let dir = makeTempDir("h2det")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = try makeSourceTree(dir)
    var hashes: [String] = []
    for n in 0..<2 {
      let img = dir + "/img\(n)"
      try mkimage(["new", img, "--size", "2G", "--uuid-seed", "7", "--time", "1000000000"])
      try mkimage(["pfs-create", img, "DATA", "--uuid-seed", "8", "--time", "1000000000"])
      try mkimage(["populate", img, "--pfs", "DATA", src, "--time", "1000000000"])
      try mkimage(["rm", img, "--pfs", "DATA", "sub", "-r", "--time", "1000000000"])
      hashes.append(imageDigest(img))
    }
    #expect(hashes[0] == hashes[1])
  }

  @Test func mutationsAreReadBackAndFreemapHolds() throws {
    let dir = makeTempDir("h2mut")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = try makeSourceTree(dir)
    let img = dir + "/img"
    try mkimage(["new", img, "--size", "2G", "--uuid-seed", "1", "--time", "1000000000"])
    try mkimage(["pfs-create", img, "DATA", "--uuid-seed", "2", "--time", "1000000000"])
    try mkimage(["populate", img, "--pfs", "DATA", src, "--time", "1000000000"])
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 7) }))
    let ops: [[String]] = [
      ["write", img, "--pfs", "DATA", "text.txt", "--at", "100000", "--from", dir + "/blob"],
      ["write", img, "--pfs", "DATA", "newfile", "--from", dir + "/blob"],
      ["truncate", img, "--pfs", "DATA", "random.bin", "70000"],
      ["truncate", img, "--pfs", "DATA", "small.txt", "1000000"],
      ["mkdir", img, "--pfs", "DATA", "sub/newdir"],
      ["mv", img, "--pfs", "DATA", "text.txt", "sub/newdir/moved.txt"],
      ["chmod", img, "--pfs", "DATA", "600", "sub/newdir/moved.txt"],
      ["setcomp", img, "--pfs", "DATA", "sub", "zlib"],
      ["rm", img, "--pfs", "DATA", "sub/deep", "-r"],
      ["rm", img, "--pfs", "DATA", "link"],
      ["snapshot", img, "--pfs", "DATA", "DATA.snap"],
      ["rm", img, "--pfs", "DATA", "zeros.bin"],
    ]
    for op in ops {
      try mkimage(op + ["--time", "1100000000"])
      let volume = try Volume.open(path: img)
      #expect(auditFreemap(volume).isEmpty, "after \(op[0]): \(auditFreemap(volume).prefix(3))")
    }
    // Apply the same operations to a copy of the source and compare.
    let fm = FileManager.default
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: src + "/text.txt"))
    try h.seek(toOffset: 100_000)
    h.write(try Data(contentsOf: URL(fileURLWithPath: dir + "/blob")))
    try h.close()
    try fm.copyItem(atPath: dir + "/blob", toPath: src + "/newfile")
    truncate(src + "/random.bin", 70000)
    truncate(src + "/small.txt", 1_000_000) // also the hardlink sub/hardlink
    try fm.createDirectory(atPath: src + "/sub/newdir", withIntermediateDirectories: false)
    try fm.moveItem(atPath: src + "/text.txt", toPath: src + "/sub/newdir/moved.txt")
    chmod(src + "/sub/newdir/moved.txt", 0o600)
    try fm.removeItem(atPath: src + "/sub/deep")
    try fm.removeItem(atPath: src + "/link")
    try fm.removeItem(atPath: src + "/zeros.bin")
    let x = try run("h2resync", ["extract", img, "--pfs", "DATA", dir + "/out"])
    #expect(x.status == 0, "\(x.stderr)")
    let problems = compareTree(dir + "/out", listing: listing(of: src), checkMtime: false)
    #expect(problems.isEmpty, "\(problems.prefix(8))")
    // The snapshot kept zeros.bin and the deleted link.
    let snap = try run("h2resync", ["ls", img, "--pfs", "DATA.snap"])
    let names = Set(snap.stdout.split(separator: "\n").map(String.init))
    #expect(names.contains("zeros.bin") && !names.contains("link") && names.contains("newfile"))
  }
}

/// Crash safety: stop the writer after every possible number of writes; the image must
/// read exactly as before each time, and the full run must read as after. The loop runs
/// h2mkimage's edit in-process (`ImageEdits`, the interpreter h2mkimage runs) through an
/// opener whose write hook stops after N writes, as `H2_CRASH_AFTER_WRITES=N` does in
/// the executable; `theExecutablesCrashHookStopsAtTheGivenWrite` keeps that wiring tested.
@Suite struct CrashTests {
  /// The edit of `op` (h2mkimage's words: `write PATH --from FILE`, `rm PATH -r`,
  /// `snapshot NAME`) applied to `img`'s DATA in one transaction at `--time 1100000000`.
  func apply(_ op: [String], to img: String, opener: DeviceOpener) throws {
    let edits = ImageEdits(image: img, pfs: "DATA", openTransaction: { try Transaction(path: $0, opener: opener) })
    let time: UInt64 = 1_100_000_000 * 1_000_000
    switch op[0] {
    case "write":
      let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: op[3])))
      try edits.apply([.write(path: op[1], offset: 0, bytes: bytes)], time: time)
    case "rm": try edits.apply([.remove(path: op[1], recursive: op.contains("-r"))], time: time)
    case "snapshot":
      var uuids = UUIDSource.seeded(5)
      try edits.snapshot(name: op[1], uuids: &uuids, time: time)
    default: Issue.record("no such operation \(op)")
    }
  }

  /// The base image: a source tree populated into DATA; the blob `write` takes.
  func base(_ dir: String) throws -> String {
    let src = try makeSourceTree(dir)
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data((0..<400_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }))
    let base = dir + "/base"
    try mkimage(["new", base, "--size", "2G", "--uuid-seed", "1", "--time", "1000000000"])
    try mkimage(["pfs-create", base, "DATA", "--uuid-seed", "2", "--time", "1000000000"])
    try mkimage(["populate", base, "--pfs", "DATA", src, "--time", "1000000000"])
    return base
  }

  @Test(arguments: [["write", "sub/new.bin", "--from", "BLOB"], ["rm", "sub", "-r"], ["snapshot", "SNAP"]])
  func everyPrefixOfATransactionLeavesTheOldState(op: [String]) throws {
    let dir = makeTempDir("h2crash")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let base = try base(dir)
    let before = try extractedListing(base)
    let args = op.map { $0 == "BLOB" ? dir + "/blob" : $0 }
    var n = 0
    var completed = false
    let img = dir + "/img"
    while !completed, n < 500 {
      try sparseCopy(base, img)
      let stops = WriteStops()
      do {
        try apply(args, to: img, opener: stops.localOpener(stoppingAfter: n))
        completed = true
        #expect(stops.indexes.isEmpty)
        #expect(try extractedListing(img).count != before.count || op[0] == "snapshot")
      } catch {
        #expect(stops.indexes == [n], "\(op[0]): stopped at \(stops.indexes), asked \(n): \(error)")
        let after = try extractedListing(img)
        #expect(NSArray(array: after).isEqual(to: before), "\(op[0]) stopped after \(n) writes: state changed")
        let volume = try Volume.open(path: img)
        #expect(auditFreemap(volume).isEmpty)
      }
      n += 1
    }
    #expect(completed && n > 3, "\(op[0]): \(n) writes")
  }

  /// h2mkimage's own wiring of the hook: `H2_CRASH_AFTER_WRITES=N` lets N writes through,
  /// then ends the process with status 86, the image reading as before.
  @Test func theExecutablesCrashHookStopsAtTheGivenWrite() throws {
    let dir = makeTempDir("h2crash")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let base = try base(dir)
    let before = try extractedListing(base)
    for n in [0, 3] {
      let img = dir + "/img\(n)"
      try sparseCopy(base, img)
      let p = Process()
      p.executableURL = productsDirectory.appendingPathComponent("h2mkimage")
      p.arguments = ["write", img, "--pfs", "DATA", "sub/new.bin", "--from", dir + "/blob", "--time", "1100000000"]
      p.environment = ["H2_CRASH_AFTER_WRITES": String(n)]
      try p.run()
      p.waitUntilExit()
      #expect(p.terminationStatus == 86, "crash hook exit status \(p.terminationStatus)")
      #expect(NSArray(array: try extractedListing(img)).isEqual(to: before), "stopped after \(n) writes: state changed")
      #expect(auditFreemap(try Volume.open(path: img)).isEmpty)
    }
  }
}

/// The write path's deferred fills (`WritableImage.write(at:count:structure:fill:)`):
/// run by the write path's filling thread before their window is written, never after a
/// later write of the same bytes, and a fill's error stops the image's writes.
@Suite struct DeferredFillTests {
  func bytes(_ path: String, _ offset: Int, _ count: Int) throws -> [UInt8] {
    try readBytes(path, at: UInt64(offset), count: count)
  }

  /// Runs `body` with a new 8 MiB image file (its path and the image open for writing).
  func withImage(_ body: (String, WritableImage) throws -> Void) throws {
    let dir = makeTempDir("h2fill")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/img"
    let img = try WritableImage(path: path, create: true)
    try img.setSize(8 << 20)
    try body(path, img)
  }

  @Test func fillsLandAndALaterWriteOfTheSameBytesWins() throws {
    try withImage { path, img in
      try img.write(at: 65536, count: 4096, structure: "test") { dest in
        dest.initializeMemory(as: UInt8.self, repeating: 0xAA)
        return nil
      }
      // Same window, overlapping the pending fill: the fill runs first, then these bytes.
      try img.write(at: 65536 + 1024, [UInt8](repeating: 0x55, count: 1024), structure: "test")
      // Another window, filled by the filling thread.
      try img.write(at: 3 << 20, count: 2048, structure: "test") { dest in
        dest.initializeMemory(as: UInt8.self, repeating: 0x11)
        return nil
      }
      try img.sync()
      #expect(
        try bytes(path, 65536, 4096) == [UInt8](repeating: 0xAA, count: 1024) + [UInt8](repeating: 0x55, count: 1024)
          + [UInt8](repeating: 0xAA, count: 2048))
      #expect(try bytes(path, 3 << 20, 2048) == [UInt8](repeating: 0x11, count: 2048))
      #expect(img.writes == 3)
    }
  }

  @Test func aFailedFillStopsTheWritesAndIsThrown() throws {
    try withImage { path, img in
      try img.write(at: 1 << 20, [UInt8](repeating: 0x22, count: 1024), structure: "test")
      try img.write(at: (1 << 20) + 4096, count: 1024, structure: "test") { _ in
        FormatError(
          .checkMismatch(method: "xxhash64", expected: "1", found: "2"),
          at: Location(image: "focus.img", offset: 42, structure: "test block"))
      }
      #expect(throws: FormatError.self) { try img.sync() }
      #expect(throws: FormatError.self) { try img.write(at: 5 << 20, [UInt8](repeating: 1, count: 1024), structure: "test") }
      // Nothing of the failed fill's window reached the file, the plain write beside it
      // included.
      #expect(try bytes(path, 1 << 20, 8192) == [UInt8](repeating: 0, count: 8192))
    }
  }
}
