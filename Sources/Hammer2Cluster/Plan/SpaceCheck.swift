import Hammer2Format

/// What a resync would allocate on one node, estimated from the plan before anything is
/// written, against what the node's freemap can still hand out: a node without room is
/// refused before any node is written (resync-semantics: one commit per image, so a
/// failure in the second image's commit would leave the first one changed).
public struct SpaceNeed: Sendable, Equatable {
  /// The node's image, as given.
  public var image: String
  /// Estimated bytes of freemap chunks the node's commit allocates (an upper estimate:
  /// file data as raw 64 KiB blocks, see `SpaceEstimate`).
  public var needed: UInt64
  /// Bytes the node's freemap can still allocate (`VolumeHeader.allocatableBytes`).
  public var free: UInt64
  /// Whether the plan fits.
  public var fits: Bool { needed <= free }
}

/// How many bytes a resync's commit allocates on a node. Upper estimates, so that a plan
/// found to fit does not run out of space halfway through its commit:
/// - a file's data as 64 KiB blocks stored raw (compression only makes them smaller;
///   a raw copy of the focus's block is never larger than its logical size), with the
///   indirect blocks above more than 4 of them (`HAMMER2_SET_COUNT`), 512 blockrefs per
///   64 KiB indirect block (`HAMMER2_IND_COUNT_MAX`) level by level; files of at most
///   512 bytes live in their inode (DIRECTDATA);
/// - one 1 KiB inode per written path;
/// - the copied paths of the inode index and of the directories above them: one 64 KiB
///   block per written path, but never more than the index and directory blocks there
///   can be (about one per 128 index entries, counted twice, plus the levels above);
/// - the snapshot PFS root and the super-root's table, and one partly used 16 KiB chunk
///   for each class of small blocks.
enum SpaceEstimate {
  static let block: UInt64 = 65536

  /// Media bytes of one file's data of `logical` bytes, written whole.
  static func fileMediaBytes(logical: UInt64) -> UInt64 {
    guard logical > 512 else { return 0 }
    // Division first: no overflow, whatever the size read from disk.
    var blocks = logical / block + (logical % block == 0 ? 0 : 1)
    var total = times(blocks, block)
    while blocks > 4 {
      blocks = blocks / 512 + (blocks % 512 == 0 ? 0 : 1)
      total = plus(total, times(blocks, block))
    }
    return total
  }

  /// Bytes a node's commit allocates for `paths` written paths carrying `fileMedia`
  /// bytes of file data (`fileMediaBytes` summed), in a PFS of about `indexEntries`
  /// inodes.
  static func commitBytes(paths: Int, fileMedia: UInt64, indexEntries: Int, snapshot: Bool) -> UInt64 {
    guard paths > 0 else { return 0 }
    let p = UInt64(paths)
    let copiedBlocks = min(p, times(UInt64(max(indexEntries, 0)) / 128 + 1, 2) + 16)
    var total = plus(fileMedia, times(p, 1024))
    total = plus(total, times(copiedBlocks, block))
    if snapshot { total = plus(total, 2 * block) }
    return plus(total, 4 * 16384)
  }

  static func plus(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? .max : r
  }

  static func times(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? .max : r
  }
}

extension Resyncer {
  /// Refuses, before any node is written, a plan that some target cannot hold: throws
  /// the no-space error (`IMAGE: no space: N bytes needed for ..., M bytes free`) for
  /// the first such target. `needs` comes from `ClusterReport.spaceNeeds`.
  public func checkSpace(targets: [ClusterNode], needs: [SpaceNeed]) throws(FormatError) {
    for t in targets where t.index < needs.count && !needs[t.index].fits { throw SpaceEstimate.noSpace(needs[t.index]) }
  }
}

extension SpaceEstimate {
  /// The no-space error of a plan that does not fit on `need`'s node.
  static func noSpace(_ need: SpaceNeed) -> FormatError {
    FormatError(
      .noSpace(
        needed: need.needed, what: "the resync plan (an estimate: file data as raw 64 KiB blocks, inodes, copied index paths)",
        free: need.free),
      at: Location(image: need.image, structure: "freemap"))
  }
}
