import Foundation
import Hammer2Builder
import Hammer2Format

/// A crash injected in-process: the write indexes at which a `WriteHook` stopped an
/// image (the hook may be called from a writer's thread), and openers of local files
/// whose images stop after a number of writes, as `H2_CRASH_AFTER_WRITES` stops the
/// executables (the writes before the stop reach the file, none after).
public final class WriteStops: @unchecked Sendable {
  private let lock = NSLock()
  private var list: [Int] = []
  private var allowed: Int

  /// Stops after `writes` writes of each image (`Int.max`: never).
  public init(after writes: Int = .max) { allowed = writes }

  /// Records a stop at write `index`.
  public func add(_ index: Int) { lock.withLock { list.append(index) } }

  /// The stops recorded, in order.
  public var indexes: [Int] { lock.withLock { list } }

  /// From now on, images opened through `opener` stop after `writes` writes; the stops
  /// recorded so far are forgotten.
  public func reset(stoppingAfter writes: Int) {
    lock.withLock {
      allowed = writes
      list = []
    }
  }

  /// An opener of local files whose images stop after the current number of writes
  /// (`reset`), each stop recorded here.
  public var opener: DeviceOpener {
    HookedOpener(
      base: LocalDeviceOpener(),
      writeHook: WriteHook(allows: { [self] i in lock.withLock { i < allowed } }, stopped: { [self] in add($0) }))
  }

  /// An opener whose images stop after `writes` writes, each stop recorded here.
  public func localOpener(stoppingAfter writes: Int) -> DeviceOpener {
    reset(stoppingAfter: writes)
    return opener
  }
}

/// Extracts PFS `pfs` of `image` into `dest` in-process, as `h2resync extract IMAGE
/// --pfs PFS DEST` does, and returns the findings (the command exits 1 when there are).
public func extractPFS(_ image: String, pfs: String = "DATA", to dest: String) throws -> [Finding] {
  let volume = try Volume.open(path: image)
  var findings: [Finding] = []
  let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: pfs, image: image))
  _ = try reader.extract(to: dest, findings: &findings)
  return findings
}

/// The listing (`listing(of:)`, inode numbers left out) of PFS `pfs` of `image`,
/// extracted in-process: what `h2resync extract IMAGE --pfs PFS` writes, compared by
/// content, mode, size and mtime. Findings fail the calling test, as the command's
/// exit status 1 would.
public func extractedListing(_ image: String, pfs: String = "DATA") throws -> [[String: Any]] {
  let out = makeTempDir("h2state")
  defer { try? FileManager.default.removeItem(atPath: out) }
  let findings = try extractPFS(image, pfs: pfs, to: out + "/x")
  if !findings.isEmpty { throw OracleError.manifest("extract \(image) --pfs \(pfs): \(findings.prefix(3))") }
  return listing(of: out + "/x").map {
    var e = $0
    e["inum"] = nil
    return e
  }
}
