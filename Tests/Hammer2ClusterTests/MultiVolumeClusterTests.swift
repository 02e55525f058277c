import Foundation
import H2TestSupport
import Hammer2Builder
import Testing

@testable import Hammer2Format

#if canImport(Glibc)
  import Glibc
#endif

/// A 3-master cluster whose node A is a 2-volume file system (1 GiB + 1 GiB, named
/// `A.0:A.1`) and B, C single 2 GiB images. A's root volume is first filled through its
/// LOCAL PFS (not part of the cluster), so A's DATA PFS, and whatever a resync writes
/// to A, lies on its second volume: the commit that writes A's LOCAL file marks every
/// free chunk of the root volume allocated, without writing a data block (`fillVolume0`,
/// instead of 900 MiB of filler). `diverge` then changes some nodes.
private func buildMixedCluster(_ dir: String, _ diverge: (String, String) throws -> Void) throws -> [String] {
  let src = try makeSourceTree(dir)
  try FileManager.default.createDirectory(atPath: dir + "/local", withIntermediateDirectories: true)
  _ = FileManager.default.createFile(atPath: dir + "/local/small", contents: Data("local\n".utf8))
  var images: [String] = []
  for (i, n) in ["A", "B", "C"].enumerated() {
    let img = n == "A" ? "\(dir)/A.0:\(dir)/A.1" : "\(dir)/\(n).img"
    try mk(["new", img, "--size", "2G", "--uuid-seed", "\(10 + i)", "--time", "1700000000"])
    // Every node's LOCAL PFS is populated in one commit (the same history: a new PFS's
    // modify_tid follows the super-root's), A's filling its root volume.
    if n == "A" {
      try fillVolume0(img, localFile: "small", Array("local\n".utf8))
    } else {
      try mk(["populate", img, "--pfs", "LOCAL", dir + "/local", "--comp", "none", "--time", "1700000000"])
    }
    for args in [
      ["pfs-create", img, "DATA", "--nmasters", "3", "--clid", "11111111-2222-4333-8444-555555555555", "--uuid-seed", "\(20 + i)"],
      ["populate", img, "--pfs", "DATA", src],
    ] { try mk(args + ["--time", "1700000000"]) }
    images.append(img)
  }
  try? FileManager.default.removeItem(atPath: dir + "/local")
  for (n, img) in zip(["A", "B", "C"], images) { try diverge(n, img) }
  return images
}

/// One commit on `spec`: file `localFile` written into LOCAL, and every free chunk of
/// the root volume marked allocated, referenced by nothing (as blocks DragonFly freed
/// stay until bulkfree), so that every later allocation lies on the next volume.
private func fillVolume0(_ spec: String, localFile: String, _ bytes: [UInt8]) throws {
  let tx = try Transaction(path: spec)
  try Edit.write(path: localFile, offset: 0, bytes: bytes).apply(try tx.editor(pfs: "LOCAL"), in: tx, time: 1_700_000_000_000_000)
  tx.allocator.setStartHint(0)
  var reserved = 0
  while try tx.allocator.allocate(size: 65536, type: .data) < 1 << 30 { reserved += 1 }
  #expect(reserved > 10_000, "only \(reserved) chunks of 64 KiB were free on the root volume")
  try tx.commit()
}

/// Data blocks per volume of a multi-volume node (all trees).
private func dataBlocksPerVolume(_ spec: String) throws -> [Int] {
  let volume = try Volume.open(path: spec)
  let extents = try #require(volume.io.volumeExtents)
  var counts = [Int](repeating: 0, count: extents.count)
  var walker = TopologyWalker(volume: volume, includeFreemap: false)
  walker.walk { e in
    guard e.bref.type == .data, let i = extents.firstIndex(where: { $0.offset <= e.bref.mediaOffset && e.bref.mediaOffset < $0.end }) else {
      return
    }
    counts[i] += 1
  }
  return counts
}

@Suite struct MultiVolumeClusterTests {
  static let blob = Data((0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) })

  /// Changes that some nodes received and `stale` did not.
  private static func missedBy(_ stale: String, _ dir: String) -> (String, String) throws -> Void {
    FileManager.default.createFile(atPath: dir + "/blob", contents: blob)
    return { n, img in
      guard n != stale else { return }
      try mk(["write", img, "--pfs", "DATA", "sub/new.bin", "--from", dir + "/blob", "--time", "1700000100"])
      try mk(["rm", img, "--pfs", "DATA", "sub/deep", "-r", "--time", "1700000200"])
      try mk(["chmod", img, "--pfs", "DATA", "600", "text.txt", "--time", "1700000300"])
    }
  }

  /// The stale node is a single-volume one (C), then the multi-volume one (A): diff
  /// names the difference, resync brings the stale node to the focus's content, and
  /// afterwards diff and check are clean; the nodes that were in sync are not written.
  @Test(arguments: ["C", "A"])
  func diffAndResyncAcrossMixedNodes(stale: String) throws {
    let dir = makeTempDir("h2mvc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let images = try buildMixedCluster(dir, Self.missedBy(stale, dir))
    let a = images[0]
    let onSecondVolume = try dataBlocksPerVolume(a)[1]
    #expect(onSecondVolume > 0, "node A's second volume holds no data")
    let target = stale == "A" ? images[0] : images[2]
    let focus = stale == "A" ? images[1] : images[0]
    let focusState = try extractState(focus)
    #expect(try extractState(target) != focusState)
    let before = try run("h2resync", ["diff"] + images)
    #expect(before.status == 1 && before.stdout.contains("new.bin"), "\(before.stdout.suffix(400)) \(before.stderr)")
    let untouched = images.filter { $0 != target }
    // Modification times, not digests: hashing A's 900 MiB filler costs more than the test.
    func mtimes(_ spec: String) -> [String] {
      ImagePath.devices(spec).map { p in
        var st = stat()
        _ = stat(p, &st)
        return "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_size)"
      }
    }
    let digests = untouched.map(mtimes)
    let r = try run("h2resync", ["resync", "--yes", "--no-snapshot"] + images)
    #expect(r.status == 0, "\(r.stdout.suffix(400)) \(r.stderr)")
    #expect(try extractState(target) == focusState)
    #expect(untouched.map(mtimes) == digests, "a node in sync was written")
    let after = try run("h2resync", ["diff"] + images)
    #expect(after.status == 0, "\(after.stdout.suffix(400)) \(after.stderr)")
    let check = try run("h2resync", ["check", "--lock-file", dir + "/lock"] + images)
    #expect(check.status == 0, "\(check.stdout.suffix(400)) \(check.stderr)")
    let volume = try Volume.open(path: target)
    #expect(auditFreemap(volume).isEmpty, "\(auditFreemap(volume).prefix(5))")
    if stale == "A" {
      // What resync wrote to A went to its second volume (the first is full).
      #expect(try dataBlocksPerVolume(a)[1] > onSecondVolume)
    }
  }
}
