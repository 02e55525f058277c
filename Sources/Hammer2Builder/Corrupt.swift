import Hammer2Format

/// Simulated media damage, for tests and demos.
public enum DeliberateDamage {
  /// XORs the first 16 bytes of stored data block `block` (in key order) of `path` in
  /// PFS `pfs` with 0xA5, in place, leaving its check code stale. Returns the block's
  /// media offset. `openImage` opens the image for writing (callers may wait out a lock).
  public static func corrupt(
    image: String, pfs: String, path: String, block: Int,
    openImage: (String) throws -> WritableImage = { try WritableImage(path: $0) }
  ) throws -> UInt64 {
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: pfs, image: image))
    let ino = try reader.resolve(path).inode
    guard !ino.meta.isDirectData else { throw BuildError("\(path) keeps its data in the inode (DIRECTDATA); no data block to damage") }
    var it = KeyRangeIterator(volume: volume, array: ino.blockset, location: Location(image: image, structure: path))
    var el = it.lookup(0, .max)
    var n = 0
    while let e = el {
      if case .leaf(let b) = e, b.type == .data, b.radix != 0 {
        if n == block {
          let img = try openImage(image)
          var bytes = try img.read(at: b.mediaOffset, count: 16)
          for i in bytes.indices { bytes[i] ^= 0xA5 }
          try img.write(at: b.mediaOffset, bytes, structure: "data block \(block) of \(path) (deliberate damage)")
          try img.sync()
          return b.mediaOffset
        }
        n += 1
      }
      el = it.next()
    }
    throw BuildError("\(path) has only \(n) stored data blocks")
  }
}
