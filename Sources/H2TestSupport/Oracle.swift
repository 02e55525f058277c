import Foundation
import Hammer2Format

/// Access to the real HAMMER2 images of `../shared/oracle` (written by DragonFly's own
/// code). Tests that need them are skipped, by name, when the directory is absent.
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

  /// The message printed when the real-image suites are skipped.
  public static let skipMessage = "SKIPPED real-image suite: \(directory.path) not found (it ships beside the repository in CI)"

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

/// Failures of the oracle helpers.
public enum OracleError: Error {
  case decompress(String)
  case manifest(String)
}
