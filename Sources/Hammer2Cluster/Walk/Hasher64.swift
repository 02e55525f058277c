import CHammer2Codecs
import Hammer2Format

/// A 64-bit content digest (XXH3, streaming) over typed fields, for identities: fast
/// enough to hash every block a deep walk reads. Not a security boundary: it only
/// tells versions apart. Small inputs (an identity, a file's blockrefs) are gathered in
/// an inline buffer and hashed in one call; the streaming state is made only when they
/// outgrow it. XXH3 gives the same value for the same bytes either way.
final class Hasher64 {
  private var state: OpaquePointer?
  private var buffer:
    (
      UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
      UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
    ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
  private static let capacity = 256
  private var used = 0
  init() {}
  deinit { if let state { XXH3_freeState(state) } }

  /// The streaming state, made on first need, with the buffered bytes fed to it.
  private func flush() -> OpaquePointer {
    let st: OpaquePointer
    if let state {
      st = state
    } else {
      st = XXH3_createState()
      XXH3_64bits_reset(st)
      state = st
    }
    if used > 0 {
      withUnsafeBytes(of: &buffer) { _ = XXH3_64bits_update(st, $0.baseAddress, used) }
      used = 0
    }
    return st
  }

  func add(_ v: UInt64) {
    if used + 8 > Self.capacity { _ = flush() }
    let at = used
    withUnsafeMutableBytes(of: &buffer) { $0.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) }
    used += 8
  }
  func add(_ b: [UInt8]) {
    add(UInt64(b.count))
    b.withUnsafeBytes { add($0) }
  }
  /// A uuid field: the same bytes as `add(field.bytes)` would feed.
  func add(_ u: RawUUID) {
    add(UInt64(16))
    add(u.words.0)
    add(u.words.1)
  }
  func add(_ b: ArraySlice<UInt8>) { b.withUnsafeBytes { add($0) } }
  func add(_ b: UnsafeRawBufferPointer) {
    guard b.count > 0 else { return }
    if used + b.count <= Self.capacity {
      let at = used
      withUnsafeMutableBytes(of: &buffer) { UnsafeMutableRawBufferPointer(rebasing: $0[at..<at + b.count]).copyMemory(from: b) }
      used += b.count
      return
    }
    let st = flush()
    _ = XXH3_64bits_update(st, b.baseAddress, b.count)
  }
  func addZeros(_ n: UInt64) {
    var left = n
    let z = [UInt8](repeating: 0, count: 65536)
    while left > 0 {
      let k = Int(min(left, 65536))
      z.withUnsafeBytes { add(UnsafeRawBufferPointer(rebasing: $0[0..<k])) }
      left -= UInt64(k)
    }
  }
  var value: UInt64 {
    if state == nil { return withUnsafeBytes(of: &buffer) { XXH3_64bits($0.baseAddress, used) } }
    return XXH3_64bits_digest(flush())
  }
}

extension Hasher64 {
  /// An inode's cluster-wide attributes: not the node-local ones (block tables and their
  /// check codes, iparent, name_key, btime).
  func addClusterWide(_ m: InodeMeta) {
    add(UInt64(m.typeRaw))
    add(UInt64(m.mode))
    add(m.size)
    add(m.mtime)
    add(m.ctime)
    add(UInt64(m.uflags))
    add(m.uid)
    add(m.gid)
    add(UInt64(m.rmajor))
    add(UInt64(m.rminor))
    add(m.nlinks)
    add(UInt64(m.compAlgo))
    add(UInt64(m.checkAlgo))
  }

  /// How a DATA block is stored: key, size, methods and (with a medium) its check code.
  func addStoredBlock(_ b: Blockref, withCheck: Bool) {
    add(b.key)
    add(UInt64(b.keybits))
    add(UInt64(b.typeRaw))
    add(UInt64(b.methods))
    add(UInt64(b.radix))
    if withCheck, b.radix != 0 {
      // The same bytes as `add(b.check.bytes)`: the count, then the eight words.
      add(UInt64(64))
      for w in 0..<8 { add(b.check.u64(w)) }
    }
  }
}
