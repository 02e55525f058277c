import Crypto
import Foundation

/// The images of the fixture scenarios, built once per test process and shared: a
/// scenario costs seconds to build, and a dozen tests need each one.
///
/// A set is keyed by the spec's name and a digest of its content, and built with the
/// freemap audited after every operation (as `ScenarioTests` requires). The shared files
/// must never be written: `copy(_:into:)` gives a test sparse copies of its own.
public enum FixtureImages {
  private static let sets = BuildOnce<BuiltScenario>()

  /// The cache key of `spec`: its name and a digest of its canonical JSON.
  static func key(_ spec: ScenarioSpec) throws -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    let digest = SHA256.hash(data: try enc.encode(spec)).prefix(8).map { String(format: "%02x", $0) }.joined()
    return "\(spec.name)-\(digest)"
  }

  /// The shared, read-only images of `spec` (built now if this process has not yet).
  public static func shared(_ spec: ScenarioSpec) throws -> BuiltScenario {
    let key = try key(spec)
    return try sets.value(key) { try spec.build(into: BuildOnce<BuiltScenario>.directory + "/" + key, audit: true) }
  }

  /// Sparse copies of the shared images of `spec` in `dir` (created if missing), under
  /// the same file names: a set of the test's own, to write to.
  public static func copy(_ spec: ScenarioSpec, into dir: String) throws -> BuiltScenario {
    var built = try shared(spec)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for (node, image) in built.images {
      let mine = dir + "/" + (image as NSString).lastPathComponent
      try sparseCopy(image, mine)
      built.images[node] = mine
    }
    return built
  }
}

extension ScenarioSpec {
  /// This spec's images as a set of the caller's own in `dir`: copies of the set the test
  /// process builds once (`FixtureImages`), byte-identical to `build(into:audit:)`.
  public func copyOfSharedBuild(into dir: String) throws -> BuiltScenario { try FixtureImages.copy(self, into: dir) }

  /// The shared, read-only images of this spec (`FixtureImages.shared`): never write them.
  public func sharedBuild() throws -> BuiltScenario { try FixtureImages.shared(self) }
}
