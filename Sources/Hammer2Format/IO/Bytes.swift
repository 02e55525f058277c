/// Little-endian reads and writes on byte arrays at explicit offsets. Nothing here casts
/// raw memory to structs: every field is assembled byte by byte in little-endian order.
/// Callers check bounds first (structure decoders take arrays of a known size).
extension Array where Element == UInt8 {
  /// Reads a u8 at `offset`.
  @inlinable func u8(_ offset: Int) -> UInt8 { self[offset] }

  /// Reads a little-endian u16 at `offset`.
  @inlinable func u16(_ offset: Int) -> UInt16 {
    UInt16(self[offset]) | UInt16(self[offset + 1]) << 8
  }

  /// Reads a little-endian u32 at `offset`.
  @inlinable func u32(_ offset: Int) -> UInt32 {
    withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
  }

  /// Reads a little-endian u64 at `offset`.
  @inlinable func u64(_ offset: Int) -> UInt64 {
    withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
  }

  /// Copies `count` bytes starting at `offset`.
  @inlinable func bytes(_ offset: Int, _ count: Int) -> [UInt8] {
    precondition(offset >= 0 && count >= 0 && offset + count <= self.count, "bytes \(offset)+\(count) of \(self.count)")
    // A plain copy into a new array (the generic slice-to-array path costs more).
    return withUnsafeBytes { src in
      [UInt8](unsafeUninitializedCapacity: count) { out, n in
        if count > 0 { UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<offset + count])) }
        n = count
      }
    }
  }

  /// Writes a u8 at `offset`.
  @inlinable mutating func put(_ v: UInt8, at offset: Int) { self[offset] = v }

  /// Writes a little-endian u16 at `offset`.
  @inlinable mutating func put(_ v: UInt16, at offset: Int) {
    self[offset] = UInt8(truncatingIfNeeded: v)
    self[offset + 1] = UInt8(truncatingIfNeeded: v >> 8)
  }

  /// Writes a little-endian u32 at `offset`.
  @inlinable mutating func put(_ v: UInt32, at offset: Int) {
    withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt32.self) }
  }

  /// Writes a little-endian u64 at `offset`.
  @inlinable mutating func put(_ v: UInt64, at offset: Int) {
    withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt64.self) }
  }

  /// Copies `bytes` to `offset`.
  @inlinable mutating func put(_ bytes: [UInt8], at offset: Int) {
    replaceSubrange(offset..<offset + bytes.count, with: bytes)
  }

  /// True when every byte is zero.
  @inlinable var isAllZero: Bool {
    withUnsafeBytes { raw in
      var i = 0
      let n = raw.count
      while i + 8 <= n {
        if raw.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
      }
      while i < n {
        if raw[i] != 0 { return false }
        i += 1
      }
      return true
    }
  }
}
