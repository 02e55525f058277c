import Foundation

/// Values that cost seconds to make (built images, restored corpora), made once per test
/// process and shared by key. Tests run in parallel: the first caller of a key builds
/// while later callers of that key wait; different keys build side by side. A failed
/// build is kept and fails every caller alike.
public final class BuildOnce<Value>: @unchecked Sendable {
  /// One key's value, made under its own lock.
  final class Entry: @unchecked Sendable {
    let lock = NSLock()
    var result: Result<Value, any Error>?
  }

  private let lock = NSLock()
  private var entries: [String: Entry] = [:]

  public init() {}

  /// The value of `key`, made now with `build` if no caller has made it yet.
  public func value(_ key: String, _ build: () throws -> Value) throws -> Value {
    let entry = lock.withLock {
      if let e = entries[key] { return e }
      let e = Entry()
      entries[key] = e
      return e
    }
    return try entry.lock.withLock {
      if entry.result == nil { entry.result = Result { try build() } }
      // Safe: set just above.
      return try entry.result!.get()
    }
  }

  /// Where shared builds go: one directory per test process, removed when it exits.
  /// Files in it are shared: never write them, copy them (`sparseCopy`) first.
  public static var directory: String { sharedBuildDirectory }
}

private let sharedBuildDirectory: String = {
  let dir = makeTempDir("h2shared-\(getpid())")
  sharedBuildDirectoryForExit = dir
  atexit { if let d = sharedBuildDirectoryForExit { try? FileManager.default.removeItem(atPath: d) } }
  return dir
}()
nonisolated(unsafe) private var sharedBuildDirectoryForExit: String?
