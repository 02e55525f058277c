import Foundation
import Hammer2Format

/// Access to the real HAMMER2 images of `../shared/oracle` (written by DragonFly's own
/// code). Each test that needs them is skipped, by name, when the directory is absent;
/// the other tests of its suite still run.
public enum Oracle {
  /// The package root (two levels above this file's directory).
  public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  /// `$H2_ORACLE_DIR`, else `../shared/oracle` beside the package.
  public static let directory: URL = {
    if let env = ProcessInfo.processInfo.environment["H2_ORACLE_DIR"] { return URL(fileURLWithPath: env) }
    return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/oracle")
  }()

  /// True when the oracle corpus is present.
  public static var available: Bool {
    FileManager.default.fileExists(atPath: directory.appendingPathComponent("single").path)
  }

  /// Why a test that needs the corpus is skipped: names the directory that is missing.
  public static let skipMessage =
    "SKIPPED: needs the oracle corpus, \(directory.appendingPathComponent("single").path) not found (../shared/oracle beside the repository, as in CI, or H2_ORACLE_DIR)"

  /// Names of the single-image sets (e.g. "v1-default").
  public static var singleNames: [String] {
    let dir = directory.appendingPathComponent("single")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return files.filter { $0.hasSuffix(".img.zst") }.map { String($0.dropLast(8)) }.sorted()
  }

  /// Names of the cluster sets' node images (e.g. "three-masters-one-behind.A").
  public static var clusterImageNames: [String] {
    let dir = directory.appendingPathComponent("cluster")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return files.filter { $0.hasSuffix(".img.zst") }.map { String($0.dropLast(8)) }.sorted()
  }

  private static let lock = NSLock()
  /// Where decompressed images are kept for this test process.
  public static let scratch: URL = {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("h2resync-oracle-\(getpid())")
    try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    // Removed when the test process exits: decompressed images are not left behind.
    atexit { try? FileManager.default.removeItem(at: Oracle.scratch) }
    return u
  }()

  /// Decompresses `single/NAME.img.zst` (or `cluster/NAME.img.zst`) once, sparse, and
  /// returns the image path.
  public static func image(_ name: String, set: String = "single") throws -> String {
    lock.lock()
    defer { lock.unlock() }
    let out = scratch.appendingPathComponent("\(name).img")
    if FileManager.default.fileExists(atPath: out.path) { return out.path }
    let src = directory.appendingPathComponent("\(set)/\(name).img.zst")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["zstd", "-q", "-d", "--sparse", "-f", src.path, "-o", out.path + ".part"]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw OracleError.decompress(src.path) }
    try FileManager.default.moveItem(atPath: out.path + ".part", toPath: out.path)
    return out.path
  }

  /// The manifest of `single/NAME` (or a cluster set) as JSON.
  public static func manifest(_ name: String, set: String = "single") throws -> [String: Any] {
    let data = try Data(contentsOf: directory.appendingPathComponent("\(set)/\(name).json"))
    guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw OracleError.manifest(name) }
    return obj
  }
}

// MARK: - Large images (`large/`: 1 TiB volumes with FREEMAP_NODEs)

extension Oracle {
  /// `large/` of the corpus: 1 TiB images of about 5.5 GiB allocated each.
  public static var largeDirectory: URL { directory.appendingPathComponent("large") }

  /// The large suite runs only when asked for (`H2_LARGE=1`, which `.ci/run` sets): each
  /// image restores to about 5.5 GiB of disk and takes about 40 s to decompress.
  public static var largeRequested: Bool { ProcessInfo.processInfo.environment["H2_LARGE"] == "1" }

  /// True when the large images and their manifests are present.
  public static var largeAvailable: Bool {
    FileManager.default.fileExists(atPath: largeDirectory.appendingPathComponent("README.md").path)
  }

  /// Why the large suite does not run (printed as a SKIPPED line), or nil when it runs.
  public static var largeSkipReason: String? {
    if !largeRequested {
      return "SKIPPED large-image suite: H2_LARGE=1 not set (.ci/run sets it; tools/test.sh passes it through)"
    }
    if !largeAvailable { return "SKIPPED large-image suite: \(largeDirectory.path) not found" }
    return nil
  }

  /// The manifest of `large/NAME.json`.
  public static func largeManifest(_ name: String) throws -> [String: Any] {
    try manifest(name, set: "large")
  }

  private static let largeState = LargeImageState()

  /// Restores `large/NAME.img.zst` once per test process and returns its path: the
  /// `.zst` holds only the image up to its last non-zero block, so it is decompressed
  /// sparse and then extended with a hole to `imageBytes` (`image.image_bytes`, 1 TiB), as
  /// the corpus README prescribes (`zstd -d --sparse` + `truncate`). The file is shared by
  /// the tests of the run: callers must not write to it (copy it with `sparseCopy`). It is
  /// deleted by `doneWithLargeImage` once all its users are done, else at process exit.
  ///
  /// With `H2_LARGE_RESTORED=DIR` (local runs), an already restored `DIR/NAME.img` of the
  /// right size is used instead, read-only, and never deleted.
  public static func largeImage(_ name: String, imageBytes: UInt64) throws -> String {
    try largeState.lock.withLock {
      if let p = largeState.restored[name] { return p }
      if let dir = ProcessInfo.processInfo.environment["H2_LARGE_RESTORED"] {
        let p = dir + "/\(name).img"
        if let a = try? FileManager.default.attributesOfItem(atPath: p), (a[.size] as? NSNumber)?.uint64Value == imageBytes {
          largeState.restored[name] = p
          largeState.borrowed.insert(name)
          return p
        }
      }
      let out = largeState.scratch.appendingPathComponent("\(name).img").path
      let src = largeDirectory.appendingPathComponent("\(name).img.zst").path
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      p.arguments = ["zstd", "-q", "-d", "--sparse", "-f", src, "-o", out + ".part"]
      try p.run()
      p.waitUntilExit()
      guard p.terminationStatus == 0 else { throw OracleError.decompress(src) }
      // The hole up to the volume size: `truncate -s imageBytes`, never shrinking.
      let fd = open(out + ".part", O_WRONLY)
      guard fd >= 0 else { throw OracleError.decompress(out) }
      var st = stat()
      fstat(fd, &st)
      let ok = UInt64(st.st_size) <= imageBytes && ftruncate(fd, off_t(imageBytes)) == 0
      close(fd)
      guard ok else { throw OracleError.decompress("\(src): \(st.st_size) bytes decompressed, image_bytes \(imageBytes)") }
      try FileManager.default.moveItem(atPath: out + ".part", toPath: out)
      largeState.restored[name] = out
      return out
    }
  }

  /// Records that one of `users` tests of the run is done with a large image; the last
  /// one deletes the restored file, so a run holds only the images still needed.
  public static func doneWithLargeImage(_ name: String, users: Int) {
    largeState.lock.withLock {
      largeState.done[name, default: 0] += 1
      guard largeState.done[name]! >= users, let p = largeState.restored[name] else { return }
      if !largeState.borrowed.contains(name) { try? FileManager.default.removeItem(atPath: p) }
      largeState.restored[name] = nil
    }
  }
}

/// The restored large images of this process (guarded by `lock`).
final class LargeImageState: @unchecked Sendable {
  let lock = NSLock()
  var restored: [String: String] = [:]
  var borrowed: Set<String> = []
  var done: [String: Int] = [:]
  /// Where restored images go: removed when the test process exits.
  lazy var scratch: URL = {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("h2resync-large-\(getpid())")
    try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    let path = u.path
    LargeImageState.exitPath = path
    atexit { if let p = LargeImageState.exitPath { try? FileManager.default.removeItem(atPath: p) } }
    return u
  }()
  nonisolated(unsafe) static var exitPath: String?
}

/// Failures of the oracle helpers.
public enum OracleError: Error {
  case decompress(String)
  case manifest(String)
}

extension Oracle {
  /// Paths whose manifest listing entry differs between two listings (every field
  /// compared as text; the root's ctime is node-local and left out).
  public static func differingPaths(_ a: [[String: Any]], _ b: [[String: Any]]) -> Set<String> {
    func byPath(_ l: [[String: Any]]) -> [String: [String: Any]] {
      Dictionary(l.compactMap { e in (e["path"] as? String).map { ($0, e) } }, uniquingKeysWith: { x, _ in x })
    }
    let a = byPath(a)
    let b = byPath(b)
    var out = Set<String>()
    for p in Set(a.keys).union(b.keys) {
      guard let x = a[p], let y = b[p] else {
        out.insert(p)
        continue
      }
      let keys = Set(x.keys).union(y.keys).filter { !(p == "." && $0 == "ctime_us") }
      if keys.contains(where: { "\(x[$0] ?? "nil")" != "\(y[$0] ?? "nil")" }) { out.insert(p) }
    }
    return out
  }
}
