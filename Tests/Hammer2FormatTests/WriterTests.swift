import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// A small source tree with every kind of object the builder must copy.
func makeSourceTree(_ root: String, seed: UInt64 = 1) throws -> String {
  let src = root + "/src"
  let fm = FileManager.default
  try fm.createDirectory(atPath: src + "/sub/deep", withIntermediateDirectories: true)
  try fm.createDirectory(atPath: src + "/empty", withIntermediateDirectories: true)
  var rng = SeededRandom(seed: seed)
  func file(_ p: String, _ bytes: [UInt8]) { fm.createFile(atPath: src + "/" + p, contents: Data(bytes)) }
  file("empty.txt", [])
  file("small.txt", Array("hello hammer2\n".utf8))
  file("inline512", [UInt8](repeating: 0x41, count: 512))
  file("inline513", [UInt8](repeating: 0x42, count: 513))
  file("random.bin", (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) })
  file("text.txt", Array(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 30_000).utf8))
  file("zeros.bin", [UInt8](repeating: 0, count: 200_000))
  var mixed = [UInt8]()
  for i in 0..<12 { mixed += i % 3 == 0 ? [UInt8](repeating: 0, count: 65536) : (0..<65536).map { _ in UInt8.random(in: 0...3, using: &rng) } }
  file("sub/mixed.bin", mixed)
  for i in 0..<60 { file("sub/deep/f\(i)", Array("file \(i)\n".utf8)) }
  file("sub/" + String(repeating: "n", count: 200), Array("long name".utf8))
  try fm.createSymbolicLink(atPath: src + "/link", withDestinationPath: "small.txt")
  try fm.createSymbolicLink(atPath: src + "/longlink", withDestinationPath: String(repeating: "x/", count: 400))
  link(src + "/small.txt", src + "/sub/hardlink")
  mkfifo(src + "/fifo", 0o640)
  // A sparse file: data, a 3 MiB hole, data.
  let fd = open(src + "/sparse", O_CREAT | O_WRONLY, 0o600)
  _ = pwrite(fd, "head", 4, 0)
  _ = pwrite(fd, "tail", 4, 3 << 20)
  close(fd)
  chmod(src + "/random.bin", 0o4755)
  chmod(src + "/sub", 0o700)
  var t = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
  for p in ["small.txt", "text.txt", "sub/mixed.bin", "sparse"] { utimensat(AT_FDCWD, src + "/" + p, &t, 0) }
  return src
}

/// Lists a tree in the oracle manifest's form (for compareTree).
func listing(of root: String) -> [[String: Any]] {
  var out: [[String: Any]] = []
  func add(_ rel: String) {
    let full = rel == "." ? root : root + "/" + rel
    var st = stat()
    lstat(full, &st)
    var e: [String: Any] = ["path": rel, "mode": String(format: "%04o", st.st_mode & 0o7777)]
    e["mtime_us"] = Int(st.st_mtim.tv_sec) * 1_000_000 + Int(st.st_mtim.tv_nsec) / 1000
    switch st.st_mode & S_IFMT {
    case S_IFDIR: e["type"] = "dir"
    case S_IFLNK:
      e["type"] = "symlink"
      e["target"] = (try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? ""
      e["size"] = Int(st.st_size)
    case S_IFIFO: e["type"] = "fifo"
    default:
      e["type"] = "file"
      e["size"] = Int(st.st_size)
      e["sha256"] = sha256(ofFile: full) ?? ""
      e["inum"] = Int(st.st_ino)
    }
    out.append(e)
  }
  add(".")
  for rel in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).sorted() { add(rel) }
  return out
}

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
    let x = try run("h2resync", ["extract", img, "--pfs", "DATA", dir + "/out"])
    #expect(x.status == 0, "\(x.stderr)")
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
    truncate(src + "/small.txt", 1_000_000)  // also the hardlink sub/hardlink
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
/// read exactly as before each time, and the full run must read as after.
@Suite struct CrashTests {
  func state(_ img: String, _ dir: String) throws -> [[String: Any]] {
    let out = makeTempDir("h2state")
    defer { try? FileManager.default.removeItem(atPath: out) }
    let x = try run("h2resync", ["extract", img, "--pfs", "DATA", out + "/x"])
    #expect(x.status == 0, "\(x.stderr)")
    return listing(of: out + "/x").map { var e = $0; e["inum"] = nil; return e }
  }

  @Test(arguments: [["write", "sub/new.bin", "--from", "BLOB"], ["rm", "sub", "-r"], ["snapshot", "SNAP"]])
  func everyPrefixOfATransactionLeavesTheOldState(op: [String]) throws {
    let dir = makeTempDir("h2crash")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = try makeSourceTree(dir)
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data((0..<400_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }))
    let base = dir + "/base"
    try mkimage(["new", base, "--size", "2G", "--uuid-seed", "1", "--time", "1000000000"])
    try mkimage(["pfs-create", base, "DATA", "--uuid-seed", "2", "--time", "1000000000"])
    try mkimage(["populate", base, "--pfs", "DATA", src, "--time", "1000000000"])
    let before = try state(base, dir)
    let args = op.map { $0 == "BLOB" ? dir + "/blob" : $0 }
    var n = 0
    var completed = false
    while !completed, n < 500 {
      let img = dir + "/img\(n)"
      try sparseCopy(base, img)
      let p = Process()
      p.executableURL = productsDirectory.appendingPathComponent("h2mkimage")
      p.arguments = [args[0], img, "--pfs", "DATA"] + args.dropFirst() + ["--time", "1100000000"]
      p.environment = ["H2_CRASH_AFTER_WRITES": String(n)]
      try p.run()
      p.waitUntilExit()
      if p.terminationStatus == 0 {
        completed = true
        #expect(try state(img, dir).count != before.count || op[0] == "snapshot")
      } else {
        #expect(p.terminationStatus == 86, "crash hook exit status \(p.terminationStatus)")
        let after = try state(img, dir)
        #expect(NSArray(array: after).isEqual(to: before), "\(op[0]) stopped after \(n) writes: state changed")
        let volume = try Volume.open(path: img)
        #expect(auditFreemap(volume).isEmpty)
      }
      try? FileManager.default.removeItem(atPath: img)
      n += 1
    }
    #expect(completed && n > 3, "\(op[0]): \(n) writes")
  }
}
