import CHammer2Codecs

/// HAMMER2 block compression with its framing (`hammer2_decompress_LZ4_callback`,
/// `hammer2_decompress_ZLIB_callback`, `hammer2_compress_and_write`). Output is always
/// bounded by the logical block size: a block can never expand past 64 KiB.
public enum Codecs {
  /// Decompresses a physical block stored with `method` into at most `logicalSize`
  /// bytes, zero-filled to `logicalSize`.
  public static func decompress(_ method: CompressionMethod, _ physical: [UInt8], logicalSize: Int) throws(FormatError) -> [UInt8] {
    switch method {
    case .none, .autozero:
      if physical.count >= logicalSize { return physical.count == logicalSize ? physical : Array(physical[0..<logicalSize]) }
      return physical + [UInt8](repeating: 0, count: logicalSize - physical.count)
    case .lz4, .zstd:
      guard physical.count >= 4 else { throw FormatError(.codec(method == .lz4 ? .lz4 : .zstd, returnCode: -1)) }
      let n = Int32(bitPattern: physical.u32(0))
      // The length prefix is HAMMER2's framing: it must fit the physical block.
      guard n >= 0, Int(n) <= physical.count - 4 else {
        throw FormatError(.sizeMismatch(.lengthPrefix(codec: method == .lz4 ? .lz4 : .zstd, length: n, blockSize: physical.count)))
      }
      var out = [UInt8](repeating: 0, count: logicalSize)
      let produced: Int64 = physical.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in
          if method == .lz4 {
            return Int64(
              LZ4_decompress_safe(
                src.baseAddress!.assumingMemoryBound(to: CChar.self) + 4,
                dst.baseAddress!.assumingMemoryBound(to: CChar.self), n, Int32(logicalSize)))
          }
          return h2_zstd_decompress(
            src.baseAddress!.assumingMemoryBound(to: UInt8.self) + 4, Int(n),
            dst.baseAddress!.assumingMemoryBound(to: UInt8.self), logicalSize)
        }
      }
      guard produced >= 0 else { throw FormatError(.codec(method == .lz4 ? .lz4 : .zstd, returnCode: produced)) }
      return out
    case .zlib:
      var out = [UInt8](repeating: 0, count: logicalSize)
      let produced: Int64 = physical.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in
          h2_zlib_inflate(
            src.baseAddress!.assumingMemoryBound(to: UInt8.self), src.count,
            dst.baseAddress!.assumingMemoryBound(to: UInt8.self), logicalSize)
        }
      }
      guard produced >= 0 else { throw FormatError(.codec(.zlib, returnCode: produced)) }
      return out
    }
  }

  /// Compresses `input` (a physical-size block) with HAMMER2's framing. Returns nil when
  /// the result does not fit in half of `input.count` (the block is then stored raw).
  /// `level` is the zlib/zstd level. The result is not padded.
  public static func compress(_ method: CompressionMethod, _ input: [UInt8], level: Int = 6) -> [UInt8]? {
    let limit = input.count / 2
    switch method {
    case .none, .autozero: return nil
    case .lz4:
      // HAMMER2 keeps n <= pblksize/2 - 8 for LZ4 (hammer2_compress_and_write).
      let cap = limit - 8
      guard cap > 0 else { return nil }
      var out = [UInt8](repeating: 0, count: 4 + cap)
      let n: Int32 = input.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in
          LZ4_compress_default(
            src.baseAddress!.assumingMemoryBound(to: CChar.self),
            dst.baseAddress!.assumingMemoryBound(to: CChar.self) + 4, Int32(src.count), Int32(cap))
        }
      }
      guard n > 0 else { return nil }
      out.put(UInt32(bitPattern: n), at: 0)
      return Array(out[0..<4 + Int(n)])
    case .zlib:
      var out = [UInt8](repeating: 0, count: limit)
      let n: Int64 = input.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in
          h2_zlib_deflate(
            src.baseAddress!.assumingMemoryBound(to: UInt8.self), src.count,
            dst.baseAddress!.assumingMemoryBound(to: UInt8.self), limit, Int32(level))
        }
      }
      guard n > 0 else { return nil }
      return Array(out[0..<Int(n)])
    case .zstd:
      let cap = limit - 4
      guard cap > 0 else { return nil }
      var out = [UInt8](repeating: 0, count: 4 + cap)
      let n: Int = input.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in
          ZSTD_compress(dst.baseAddress! + 4, cap, src.baseAddress, src.count, Int32(level))
        }
      }
      guard ZSTD_isError(n) == 0, n > 0 else { return nil }
      out.put(UInt32(n), at: 0)
      return Array(out[0..<4 + n])
    }
  }
}
