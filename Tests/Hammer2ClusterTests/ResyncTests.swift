import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// Builds a 3-master cluster with h2mkimage: identical histories, then `diverge` applies
/// operations to some nodes. Returns the node image paths (DIR/NODE.img).
///
/// The identical start (new, pfs-create, populate of a source tree) is built once per
/// test process for each shape and shared (`BuildOnce`); each call gets sparse copies.
func buildCluster(
  _ dir: String, files: Int = 0, nodes: [String] = ["A", "B", "C"], types: [String: String] = [:],
  nmasters: Int = 3, _ diverge: (String, String) throws -> Void
) throws -> [String] {
  let key = "cluster-f\(files)-" + nodes.map { "\($0)\(types[$0] ?? "MASTER")" }.joined(separator: "_") + "-n\(nmasters)"
  let shared = try clusterBases.value(key) {
    try buildClusterBase(BuildOnce<[String]>.directory + "/" + key, files: files, nodes: nodes, types: types, nmasters: nmasters)
  }
  var images: [String] = []
  for (n, base) in zip(nodes, shared) {
    let img = dir + "/\(n).img"
    try sparseCopy(base, img)
    images.append(img)
  }
  for (n, img) in zip(nodes, images) { try diverge(n, img) }
  return images
}

private let clusterBases = BuildOnce<[String]>()

/// The identical start of `buildCluster`'s nodes, built in `dir`.
private func buildClusterBase(_ dir: String, files: Int, nodes: [String], types: [String: String], nmasters: Int) throws -> [String] {
  let src = try makeSourceTree(dir)
  if files > 0 {
    try FileManager.default.createDirectory(atPath: src + "/big", withIntermediateDirectories: true)
    for i in 0..<files { FileManager.default.createFile(atPath: src + "/big/entry-\(i).txt", contents: Data("entry \(i)\n".utf8)) }
  }
  var images: [String] = []
  for (i, n) in nodes.enumerated() {
    let img = dir + "/\(n).img"
    for args in [
      ["new", img, "--size", "2G", "--uuid-seed", "\(10 + i)"],
      [
        "pfs-create", img, "DATA", "--type", types[n] ?? "MASTER", "--nmasters", "\(nmasters)", "--clid",
        "11111111-2222-4333-8444-555555555555", "--uuid-seed", "\(20 + i)",
      ],
      ["populate", img, "--pfs", "DATA", src],
    ] {
      let r = try run("h2mkimage", args + ["--time", "1700000000"])
      if r.status != 0 { throw OracleError.manifest("h2mkimage \(args[0]): \(r.stderr)") }
    }
    images.append(img)
  }
  return images
}

func mk(_ args: [String]) throws {
  let r = try run("h2mkimage", args)
  if r.status != 0 { throw OracleError.manifest("h2mkimage \(args.joined(separator: " ")): \(r.stderr)") }
}

/// The content of a node's DATA PFS as text lines (path, type, mode, size, mtime and a
/// content digest), read in-process: what "the image reads exactly as before" compares.
func extractState(_ img: String, pfs: String = "DATA") throws -> [String] {
  let volume = try Volume.open(path: img)
  var findings: [Finding] = []
  let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: pfs, image: img))
  var lines: [String] = []
  var stack: [(InodeData, String)] = [(reader.pfs.inode, "")]
  while let (dir, path) = stack.popLast() {
    var entries: [DirEntry] = []
    reader.forEachEntry(of: dir, path: path, findings: &findings) {
      entries.append($0)
      return true
    }
    for e in entries {
      let p = path + "/" + e.nameString
      guard let ino = try? reader.inode(e.inum) else {
        lines.append("\(p) unreadable")
        continue
      }
      // The logical content (holes and stored zeros alike), not the block layout.
      var h = Hasher()
      var pos: UInt64 = 0
      let size = ino.meta.size
      reader.forEachDataBlock(of: ino, path: p, findings: &findings) { off, b in
        guard off < size else { return }
        while pos < off {
          h.combine(UInt8(0))
          pos += 1
        }
        for x in b.prefix(Int(min(UInt64(b.count), size - off))) { h.combine(x) }
        pos = off + min(UInt64(b.count), size - off)
      }
      let m = ino.meta
      lines.append(
        "\(p) t\(m.typeRaw) m\(m.mode) s\(m.size) mt\(m.mtime) c\(m.compAlgo) l\(m.nlinks) d\(m.type == .directory ? 0 : h.finalize())")
      if m.type == .directory { stack.append((ino, p)) }
    }
  }
  if !findings.isEmpty { lines.append("findings: \(findings.count)") }
  return lines.sorted()
}

@Suite struct ResyncTests {
  static let blob: Data = Data((0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })

  /// C misses a write, a removal and a chmod that A and B received.
  static func behind(_ dir: String) throws -> [String] {
    FileManager.default.createFile(atPath: dir + "/blob", contents: blob)
    return try buildCluster(dir) { n, img in
      guard n != "C" else { return }
      try mk(["write", img, "--pfs", "DATA", "sub/new.bin", "--from", dir + "/blob", "--time", "1700000100"])
      try mk(["rm", img, "--pfs", "DATA", "sub/deep", "-r", "--time", "1700000200"])
      try mk(["chmod", img, "--pfs", "DATA", "600", "text.txt", "--time", "1700000300"])
    }
  }

  /// C alone wrote and truncated: it is ahead and must be rolled back.
  static func ahead(_ dir: String) throws -> [String] {
    FileManager.default.createFile(atPath: dir + "/blob", contents: blob)
    return try buildCluster(dir) { n, img in
      guard n == "C" else { return }
      try mk(["write", img, "--pfs", "DATA", "random.bin", "--at", "1000", "--from", dir + "/blob", "--time", "1700000100"])
      try mk(["truncate", img, "--pfs", "DATA", "text.txt", "100", "--time", "1700000200"])
      try mk(["mkdir", img, "--pfs", "DATA", "c-only", "--time", "1700000300"])
    }
  }

  /// A 1,500-entry directory (several levels of indirect blocks): A and B removed 10
  /// entries and added 5; C did not.
  static func bigDirectory(_ dir: String) throws -> [String] {
    try buildCluster(dir, files: 1500) { n, img in
      guard n != "C" else { return }
      let tx = try Transaction(path: img)
      let ed = try tx.editor(pfs: "DATA")
      let big = try ed.resolve("big")
      for i in stride(from: 0, to: 1500, by: 150) { try ed.unlink(Array("entry-\(i).txt".utf8), in: big) }
      for i in 0..<5 {
        let inum = try ed.create(Array("added-\(i)".utf8), in: big, type: .regularFile, mode: 0o644, time: 1_700_000_500_000_000)
        try ed.write(inum, at: 0, Array("added \(i)\n".utf8))
      }
      try tx.commit()
    }
  }

  /// `h2resync resync --yes --no-snapshot --allow-rollback IMAGES` in-process: the
  /// command's discovery, walk, plan and apply (ResyncCommand), the images opened through
  /// `opener`; then its verifying walk, whose verdict is the command's exit code.
  static func resync(_ images: [String], opener: DeviceOpener = LocalDeviceOpener()) throws -> ClusterReport {
    let group = try ClusterGroup.discover(images: images, name: nil, clid: nil, opener: opener)
    var options = ResyncOptions()
    options.snapshot = false
    options.allowRollback = true
    let plan = ResyncPlan(report: try ClusterReport.analyze(group, AnalysisOptions()), options: options)
    #expect(plan.focus != nil && plan.refusal == nil && plan.spaceProblem == nil && !plan.isEmpty)
    _ = try Resyncer.apply(plan)
    return try ClusterReport.analyze(try ClusterGroup.discover(images: images, name: nil, clid: nil), AnalysisOptions())
  }

  static func scenario(_ name: String, _ dir: String) throws -> [String] {
    try name == "behind" ? behind(dir) : name == "ahead" ? ahead(dir) : bigDirectory(dir)
  }

  /// Every write index of the resync (the engine in-process, its writes stopped by the
  /// injected hook after N, as `H2_CRASH_AFTER_WRITES=N` stops the executable): the
  /// target reads as before, and a second run after some of the stops converges. The walk
  /// and the plan are made once: the target is restored to the same bytes before each
  /// try, so each try applies what a fresh `resync` would plan, up to write N.
  @Test(arguments: ["behind", "ahead", "bigDirectory"])
  func crashAtEveryWriteLeavesOldOrNewAndASecondRunConverges(scenario: String) throws {
    let dir = makeTempDir("h2rc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try Self.scenario(scenario, dir)
    let target = images[2]
    let oldState = try extractState(target)
    let focusState = try extractState(images[0])
    #expect(oldState != focusState)
    var n = 0
    var finished = false
    // Only the target is ever written: the focus and the other nodes are passed as they
    // are (a change to them would show in focusState below).
    let work = dir + "/target.img"
    let nodes = [images[0], images[1], work]
    try sparseCopy(target, work)
    let stops = WriteStops()
    let group = try ClusterGroup.discover(images: nodes, name: nil, clid: nil, opener: stops.opener)
    var options = ResyncOptions()
    options.snapshot = false
    options.allowRollback = true
    let plan = ResyncPlan(report: try ClusterReport.analyze(group, AnalysisOptions()), options: options)
    #expect(plan.focus != nil && plan.refusal == nil && plan.spaceProblem == nil && !plan.isEmpty)
    while !finished, n < 5000 {
      try sparseCopy(target, work)
      stops.reset(stoppingAfter: n)
      do {
        _ = try Resyncer.apply(plan)
        #expect(stops.indexes.isEmpty)
        let after = try ClusterReport.analyze(try ClusterGroup.discover(images: nodes, name: nil, clid: nil), AnalysisOptions())
        #expect(after.exit == .ok, "\(scenario): after the resync: \(after.differences.map(\.path).prefix(5))")
        #expect(try extractState(work) == focusState, "\(scenario): resync finished but the node differs from the focus")
        finished = true
      } catch {
        #expect(stops.indexes == [n], "\(scenario): stopped at \(stops.indexes), asked \(n): \(error)")
        #expect(try extractState(work) == oldState, "\(scenario): stopped after \(n) writes, the node is neither old nor new")
        if n % 10 == 3 {
          let again = try Self.resync(nodes)
          #expect(
            again.exit == .ok,
            "\(scenario): a second resync after a crash at \(n) did not converge: \(again.differences.map(\.path).prefix(5))")
          #expect(try extractState(work) == focusState)
        }
      }
      n += 1
    }
    #expect(try extractState(images[0]) == focusState, "the focus must never change")
    #expect(finished && n > 3, "\(scenario): \(n) write indexes")
  }

  /// The command's own wiring of the hook: `H2_CRASH_AFTER_WRITES=N` ends `h2resync
  /// resync` with status 86 after N writes, the target reading as before; a second run
  /// (exit 0) converges.
  @Test func theCommandsCrashHookStopsAtTheGivenWriteAndASecondRunConverges() throws {
    let dir = makeTempDir("h2rc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try Self.behind(dir)
    let oldState = try extractState(images[2])
    let focusState = try extractState(images[0])
    let p = Process()
    p.executableURL = productsDirectory.appendingPathComponent("h2resync")
    p.arguments = ["resync", "--yes", "--no-snapshot", "--allow-rollback"] + images
    p.environment = ["H2_CRASH_AFTER_WRITES": "3"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 86)
    #expect(try extractState(images[2]) == oldState, "stopped after 3 writes, the node is neither old nor new")
    let again = try run("h2resync", ["resync", "--yes", "--no-snapshot", "--allow-rollback"] + images)
    #expect(again.status == 0, "a second resync after a crash did not converge: \(again.stdout.suffix(300))")
    #expect(try extractState(images[2]) == focusState)
    #expect(try extractState(images[0]) == focusState, "the focus must never change")
  }

  @Test func corruptedBlockIsHealedFromTheFocus() throws {
    let dir = makeTempDir("h2heal")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildCluster(dir) { n, img in
      if n == "B" { try mk(["corrupt", img, "--pfs", "DATA", "random.bin", "--block", "2"]) }
    }
    let check = try run("h2resync", ["check", "--lock-file", dir + "/lock", "--json"] + images)
    #expect(check.status == 1, "\(check.stdout.suffix(400))")
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
    let diffs = doc["differences"] as! [[String: Any]]
    #expect(diffs.count == 1 && (diffs[0]["path"] as? String) == "random.bin")
    #expect((diffs.first?["nodes"] as? [String: String])?[images[1]] == "damaged")
    let r = try run("h2resync", ["resync", "--yes", "--deep"] + images)
    #expect(r.status == 0, "\(r.stdout.suffix(400))")
    let after = try run("h2resync", ["check", "--lock-file", dir + "/lock"] + images)
    #expect(after.status == 0, "\(after.stdout)")
  }

  /// A focus block that fails its check code while it is copied (the writer thread
  /// reads and verifies it) stops the resync: exit 3 naming the focus image, nothing
  /// committed on the target, which still lacks the file afterwards.
  @Test func damagedFocusBlockStopsTheResyncAndCommitsNothing() throws {
    let dir = makeTempDir("h2bad")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = try makeSourceTree(dir + "/t")
    let images = try buildCluster(dir) { n, img in
      guard n != "C" else { return } // C misses the new file
      try mk(["write", img, "--pfs", "DATA", "new.bin", "--from", src + "/random.bin", "--time", "1700000100"])
      try mk(["corrupt", img, "--pfs", "DATA", "new.bin", "--block", "1"])
    }
    let before = try run("h2resync", ["diff"] + images)
    #expect(before.status == 1 && before.stdout.contains("new.bin"), "\(before.stdout.suffix(400))")
    let headerBefore = try readBytes(images[2], at: 0, count: 65536)
    let r = try run("h2resync", ["resync", "--yes", "--no-snapshot"] + images)
    #expect(r.status == 3, "\(r.stdout.suffix(300)) \(r.stderr)")
    #expect(
      r.stderr.contains("nothing committed") && r.stderr.contains("xxhash64")
        && (r.stderr.contains(images[0]) || r.stderr.contains(images[1])), "\(r.stderr)")
    let headerAfter = try readBytes(images[2], at: 0, count: 65536)
    #expect(headerBefore == headerAfter, "the target's volume header was not rewritten")
    let after = try run("h2resync", ["diff"] + images)
    #expect(after.status == 1 && after.stdout.contains("new.bin"), "\(after.stdout.suffix(400))")
  }

  @Test func noQuorumWritesNothingWithoutFrom() throws {
    let dir = makeTempDir("h2nq")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/one", contents: Data("one\n".utf8))
    FileManager.default.createFile(atPath: dir + "/two", contents: Data("two\n".utf8))
    let images = try buildCluster(dir, nodes: ["A", "B"], nmasters: 2) { n, img in
      try mk(["write", img, "--pfs", "DATA", "x.txt", "--from", dir + (n == "A" ? "/one" : "/two"), "--time", "1700000100"])
    }
    let before = images.map(imageDigest)
    // Equal tids, different content: only a deep walk can see it (fast mode trusts tids).
    let diff = try run("h2resync", ["diff", "--deep", "--json"] + images)
    #expect(diff.status == 2)
    let r = try run("h2resync", ["resync", "--yes", "--deep"] + images)
    #expect(r.status == 2)
    #expect(images.map(imageDigest) == before)
    // The operator decides: trust A.
    let forced = try run("h2resync", ["resync", "--yes", "--deep", "--from", images[0]] + images)
    #expect(forced.status == 0, "\(forced.stdout.suffix(300)) \(forced.stderr)")
    #expect(try run("h2resync", ["diff", "--deep"] + images).status == 0)
  }

  @Test func dryRunAndNonInteractiveWriteNothing() throws {
    let dir = makeTempDir("h2dry")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try Self.behind(dir)
    let before = images.map(imageDigest)
    let dry = try run("h2resync", ["resync", "--dry-run"] + images)
    let diff = try run("h2resync", ["diff"] + images)
    #expect(dry.status == 1 && dry.stdout == diff.stdout, "the dry run must print exactly the diff")
    let noYes = try run("h2resync", ["resync"] + images, stdin: Data())
    #expect(noYes.status == 3)
    #expect(images.map(imageDigest) == before)
  }
}
