import Hammer2Format

/// Every block reachable from the active volume header, with the absolute offset of the
/// blockref that references it, so a test can damage a block and then re-sign the whole
/// path up to the header: the damage then gets past every check code and reaches the
/// decoders.
public struct ImageMap {
  /// One referenced block.
  public struct Node {
    /// Media offset and size of the block.
    public var offset: UInt64
    public var size: Int
    /// Absolute image offset of the 128-byte blockref that points here.
    public var brefAt: UInt64
    /// Index of the node holding that blockref; nil when it is in the volume header.
    public var parent: Int?
    /// The blockref.
    public var bref: Blockref
    /// Nesting depth.
    public var depth: Int
  }

  /// All nodes, parents before children.
  public private(set) var nodes: [Node] = []
  /// Absolute offset of the active volume header.
  public let headerOffset: UInt64

  /// Maps `volume` (unbounded in size: for test images only).
  public init(volume: Volume) {
    headerOffset = UInt64(volume.headerSlot) * H2.zoneBytes64
    var stack: [(brefAt: UInt64, bref: Blockref, parent: Int?, depth: Int, inodeLevel: Int)] = []
    for i in 0..<4 {
      stack.append((headerOffset + 0x200 + UInt64(128 * i), volume.header.srootBlockset[i], nil, 0, 0))
      stack.append((headerOffset + 0x800 + UInt64(128 * i), volume.header.freemapBlockset[i], nil, 0, 9))
    }
    var seen = Set<UInt64>()
    while let item = stack.popLast() {
      let b = item.bref
      guard !b.isEmpty, let size = b.mediaSize, size > 0, item.depth < 40 else { continue }
      let index = nodes.count
      nodes.append(Node(offset: b.mediaOffset, size: size, brefAt: item.brefAt, parent: item.parent, bref: b, depth: item.depth))
      guard seen.insert(b.dataOff).inserted else { continue }
      switch b.type {
      case .indirect, .freemapNode:
        guard let raw = try? volume.readMedia(b) else { continue }
        let children = decodeBlockrefs(raw)
        for (i, c) in children.enumerated() {
          stack.append((b.mediaOffset + UInt64(128 * i), c, index, item.depth + 1, item.inodeLevel))
        }
      case .inode:
        guard item.inodeLevel < 3, let ino = try? volume.inode(b), !ino.meta.isDirectData else { continue }
        for (i, c) in ino.blockset.enumerated() {
          stack.append((b.mediaOffset + 0x200 + UInt64(128 * i), c, index, item.depth + 1, item.inodeLevel + 1))
        }
      default: break
      }
    }
  }

  /// Metadata nodes (inodes, indirect blocks, freemap).
  public var metadata: [Int] {
    nodes.indices.filter { [.inode, .indirect, .freemapNode, .freemapLeaf].contains(nodes[$0].bref.type) }
  }

  /// Recomputes the check code of node `index` (over the overlay's current bytes) in its
  /// referencing blockref, then of every ancestor, then the volume header CRCs.
  public func resign(_ index: Int?, in image: OverlayImage) {
    var cur = index
    while let i = cur {
      let n = nodes[i]
      guard let block = try? image.read(at: n.offset, count: n.size),
        let brefBytes = try? image.read(at: n.brefAt, count: 128)
      else { return }
      let bref = Blockref(brefBytes, at: 0)
      let method = CheckMethod(rawValue: bref.checkMethodRaw) ?? .none
      image.patch(n.brefAt + 0x40, CheckCode.compute(method, over: block).bytes)
      cur = n.parent
    }
    resignHeader(in: image)
  }

  /// Recomputes the three volume header CRCs of the active header.
  public func resignHeader(in image: OverlayImage) {
    guard let raw = try? image.read(at: headerOffset, count: VolumeHeader.byteCount) else { return }
    let fixed = VolumeHeader(raw).encode(recomputeCRCs: true)
    for off in [0x1F8, 0x1FC, 0xFFFC] { image.patch(headerOffset + UInt64(off), Array(fixed[off..<off + 4])) }
  }
}

/// A small deterministic generator (SplitMix64) so every mutation run can be replayed
/// from its seed.
public struct SeededRandom: RandomNumberGenerator {
  var state: UInt64
  /// Starts from `seed`.
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Reads everything a user could ask of an image: PFS list, every file and symlink of
/// every PFS, and a deep topology walk. Returns the error that stopped it (nil when it
/// got through) and the findings. Any crash or hang here is a bug.
public func exerciseReader(_ io: ImageIO, cacheBudget: Int = 4 << 20) -> (error: FormatError?, findings: [Finding]) {
  var findings: [Finding] = []
  do throws(FormatError) {
    let volume = try Volume(io: io, cacheBudget: cacheBudget)
    for pfs in try volume.pfsList(findings: &findings) {
      let reader = PFSReader(volume: volume, pfs: pfs)
      var dirs: [(InodeData, String)] = [(pfs.inode, "")]
      var seenDirs: Set<UInt64> = [1]
      while let (dir, path) = dirs.popLast() {
        var entries: [DirEntry] = []
        reader.forEachEntry(of: dir, path: path, findings: &findings) {
          entries.append($0)
          return true
        }
        for e in entries {
          let p = path + "/" + e.nameString
          do throws(FormatError) {
            let ino = try reader.inode(e.inum)
            switch ino.meta.type {
            case .directory:
              if seenDirs.insert(e.inum).inserted { dirs.append((ino, p)) }
            case .regularFile, .symlink:
              var total = 0
              reader.forEachDataBlock(of: ino, path: p, findings: &findings) { _, b in total += b.count }
            default: break
            }
          } catch {
            findings.append(Finding(error: error, fallback: Location(image: io.label, structure: "inode"), path: p))
          }
        }
      }
    }
    var walker = TopologyWalker(volume: volume, includeFreemap: true, decompressData: true)
    walker.walk { _ in }
    findings += walker.findings
    return (nil, findings)
  } catch {
    return (error, findings)
  }
}
