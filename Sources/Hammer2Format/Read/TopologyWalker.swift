/// One blockref met by a topology walk.
public struct TopologyEntry {
  /// Nesting depth (0 = a volume header blockset entry).
  public var depth: Int
  /// The blockref.
  public var bref: Blockref
  /// The inode, for INODE blockrefs that could be read.
  public var inode: InodeData?
  /// The name, for DIRENT blockrefs.
  public var direntName: [UInt8]?
  /// nil when the block verified (or has no media block); else why it did not.
  public var error: FormatError?
  /// Which tree: "sroot" or "freemap".
  public var tree: String
}

/// Walks every blockref reachable from the volume header, the super-root and PFS trees
/// and (optionally) the freemap, verifying each block's check code: `hammer2 show`.
///
/// Streaming: an explicit stack of arrays (depth x at most 512 entries). Bounded: inodes
/// are only entered where they can live (volume blockset, super-root, PFS inode index),
/// and inside one inode's tree each indirect or inode block is entered at most once.
public struct TopologyWalker {
  /// The image.
  public let volume: Volume
  /// Walk the freemap too.
  public var includeFreemap: Bool
  /// Decompress DATA blocks (a deep check of the codec stream, not only the check code).
  public var decompressData: Bool
  /// Findings: every block that failed plus structural oddities.
  public private(set) var findings: [Finding] = []
  /// Blockrefs visited.
  public private(set) var blockrefsVisited: UInt64 = 0

  /// A walker over `volume`.
  public init(volume: Volume, includeFreemap: Bool = true, decompressData: Bool = false) {
    self.volume = volume
    self.includeFreemap = includeFreemap
    self.decompressData = decompressData
  }

  private enum Level: Int {
    case volume = 0
    case superRootTree, pfsRootTree, inodeTree, freemap
  }

  private struct Frame {
    var entries: [Blockref]
    var index = 0
    var depth: Int
    var level: Level
    var opensScope: Bool
  }

  /// Walks the topology, calling `visit` for each non-empty blockref in tree order.
  public mutating func walk(_ visit: (TopologyEntry) -> Void) {
    var scopes: [Set<UInt64>] = [[]]
    var stack: [Frame] = [Frame(entries: volume.header.srootBlockset, depth: 0, level: .volume, opensScope: false)]
    var tree = "sroot"
    var freemapQueued = includeFreemap
    while true {
      if stack.isEmpty {
        guard freemapQueued else { break }
        freemapQueued = false
        tree = "freemap"
        scopes = [[]]
        stack = [Frame(entries: volume.header.freemapBlockset, depth: 0, level: .freemap, opensScope: false)]
      }
      let f = stack.count - 1
      guard stack[f].index < stack[f].entries.count else {
        if stack.removeLast().opensScope { scopes.removeLast() }
        continue
      }
      let bref = stack[f].entries[stack[f].index]
      stack[f].index += 1
      if bref.isEmpty { continue }
      blockrefsVisited += 1
      let depth = stack[f].depth
      let level = stack[f].level
      var entry = TopologyEntry(depth: depth, bref: bref, tree: tree)
      let loc = volume.location(of: bref)
      do throws(FormatError) {
        switch bref.type {
        case .indirect, .freemapNode:
          guard depth < 64 else { throw FormatError(.tooDeep(limit: 64), at: loc) }
          guard scopes[scopes.count - 1].insert(bref.dataOff).inserted else {
            throw FormatError(.loop(.block, offset: bref.mediaOffset), at: loc)
          }
          let children = try volume.blockrefArray(bref)
          visit(entry)
          stack.append(Frame(entries: children, depth: depth + 1, level: level, opensScope: false))
          continue
        case .inode:
          let ino = try volume.inode(bref)
          entry.inode = ino
          visit(entry)
          let next: Level?
          switch level {
          case .volume: next = .superRootTree
          case .superRootTree: next = .pfsRootTree
          case .pfsRootTree: next = bref.key < H2.dirhashVisible ? .inodeTree : nil
          default: next = nil
          }
          if let next, !ino.meta.isDirectData {
            guard scopes[scopes.count - 1].insert(bref.dataOff).inserted else {
              throw FormatError(.loop(.inode, offset: bref.mediaOffset), at: loc)
            }
            scopes.append([])
            stack.append(Frame(entries: ino.blockset, depth: depth + 1, level: next, opensScope: true))
          }
          continue
        case .data:
          if bref.radix != 0 {
            if decompressData {
              let logical = bref.keybits >= 10 && bref.keybits <= 16 ? 1 << Int(bref.keybits) : H2.pbufSize
              _ = try volume.logicalData(bref, logicalSize: logical)
            } else {
              _ = try volume.readMedia(bref)
            }
          }
        case .dirent:
          let n = bref.direntNameLength
          if n <= 64 {
            entry.direntName = Array(bref.check.bytes[0..<min(n, 64)])
          } else if bref.radix != 0 {
            let block = try volume.readMedia(bref)
            entry.direntName = Array(block[0..<min(n, block.count)])
          }
        case .freemapLeaf:
          _ = try volume.readMedia(bref)
        default:
          if bref.radix != 0 { _ = try volume.readMedia(bref) }
        }
        visit(entry)
      } catch {
        entry.error = error
        findings.append(Finding(error: error, fallback: loc))
        visit(entry)
      }
    }
  }
}
