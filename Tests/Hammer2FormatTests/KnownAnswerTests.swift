import CHammer2Codecs
import Foundation
import Hammer2Format
import Testing

@Suite struct KnownAnswerTests {
  /// The check area's accessors (read in place, no arrays) agree with its bytes.
  @Test func checkAreaAccessors() {
    let bytes = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    var a = CheckArea(bytes: bytes)
    #expect(a.bytes == bytes)
    for i in 0..<64 { #expect(a[i] == bytes[i]) }
    for w in 0..<8 {
      let le = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[w * 8 + $1]) << (8 * UInt64($1)) }
      #expect(a.u64(w) == le)
      #expect(a.u32(w * 8) == UInt32(truncatingIfNeeded: le) && a.u32(w * 8 + 4) == UInt32(truncatingIfNeeded: le >> 32))
    }
    var b = a
    #expect(a == b && a.hashValue == b.hashValue)
    b[63] ^= 1
    #expect(a != b && b[63] == bytes[63] ^ 1 && b.u64(7) == a.u64(7) ^ (1 << 56))
    b.setU32(60, 0xDEAD_BEEF)
    #expect(b.u32(60) == 0xDEAD_BEEF && b.u32(56) == a.u32(56))
    a.setU64(3, 0x0102_0304_0506_0708)
    #expect(a.bytes[24..<32] == [8, 7, 6, 5, 4, 3, 2, 1])
  }

  @Test func crc32c() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([]) == 0)
    // Slice-by-8 and the byte loop agree at every length and alignment.
    let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    for n in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 299] {
      var crc: UInt32 = 0xFFFF_FFFF
      for b in data[0..<n] {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
      }
      #expect(CRC32C.checksum(Array(data[0..<n])) == crc ^ 0xFFFF_FFFF, "length \(n)")
    }
  }

  @Test func xxhash64WithHammer2Seed() {
    #expect(CheckCode.xxhash64([]) == 0x8456_6ac0_f5a0_cb84)
    #expect(CheckCode.xxhash64(Array("hammer2".utf8)) == 0xa041_be26_8b56_74e5)
  }

  @Test func sha192Fold() {
    let d = CheckCode.sha192(Array("hammer2".utf8))
    #expect(d.map { String(format: "%02x", $0) }.joined() == "8a6606c9532c846c617512bce93e4c546a14f36bad175dc1")
  }

  @Test(arguments: [
    ("DATA", 0xc78f_ff92_381d_8000 as UInt64), ("LOCAL", 0xde25_e1c4_3fe1_8000), ("BOOT", 0xd9b3_6ce1_3552_8000),
    ("sub", 0xbe45_abf7_15b2_8000), ("a.txt", 0xfe47_183a_3da3_8000),
  ])
  func dirhash(name: String, key: UInt64) {
    #expect(DirHash.hash(name) == key)
  }

  @Test func structureSizesAndOffsets() {
    #expect(Blockref.byteCount == 128)
    #expect(InodeData.byteCount == 1024)
    #expect(InodeMeta.byteCount == 256)
    #expect(VolumeHeader.byteCount == 65536)
    #expect(1 << Int(H2.pbufRadix) == H2.pbufSize)
    #expect(1 << Int(H2.radixMax) == H2.pbufSize)
    #expect(H2.setCount * Blockref.byteCount == H2.embeddedBytes)
    // Field offsets: write distinct values through the decoder's offsets and read back.
    var raw = [UInt8](repeating: 0, count: 128)
    raw[0x00] = 2
    raw[0x01] = 0x32
    raw[0x03] = 7
    raw[0x05] = 1
    raw[0x08] = 0x11
    raw[0x10] = 0x22
    raw[0x18] = 0x33
    raw[0x20] = 0x4A
    raw[0x28] = 0x55
    raw[0x30] = 0x66
    raw[0x38] = 0x05
    raw[0x3A] = 2
    raw[0x40] = 0x77
    let b = Blockref(raw, at: 0)
    #expect(b.type == .indirect && b.checkMethod == .xxhash64 && b.compression == .lz4)
    #expect(b.keybits == 7 && b.flags == BlockrefFlags.pfsRoot)
    #expect(b.key == 0x11 && b.mirrorTid == 0x22 && b.modifyTid == 0x33 && b.updateTid == 0x55)
    #expect(b.radix == 10 && b.mediaOffset == 0x40 && b.mediaSize == 1024)
    #expect(b.direntInum == 0x66 && b.direntNameLength == 5 && b.direntTypeRaw == 2 && b.check[0] == 0x77)
    #expect(b.keyEnd == 0x11 | 0x7F)
  }

  @Test func uuidByteOrder() {
    // docs/format.md §0: printed 5cbb9ad1-862d-11dc-... is stored d1 9a bb 5c 2d 86 dc 11 ...
    let u = H2UUID(string: "5cbb9ad1-862d-11dc-a94d-01301bb8a9f5")!
    var disk = [UInt8](repeating: 0, count: 16)
    u.encode(into: &disk, at: 0)
    #expect(disk == [0xd1, 0x9a, 0xbb, 0x5c, 0x2d, 0x86, 0xdc, 0x11, 0xa9, 0x4d, 0x01, 0x30, 0x1b, 0xb8, 0xa9, 0xf5])
    #expect(H2UUID(disk, at: 0) == u)
    #expect(u.description == "5cbb9ad1-862d-11dc-a94d-01301bb8a9f5")
  }
}

@Suite struct CodecTests {
  static let text = Array(String(repeating: "HAMMER2 is DragonFly's copy-on-write filesystem. ", count: 1400).utf8.prefix(65536))

  @Test(arguments: [CompressionMethod.lz4, .zlib, .zstd])
  func roundTrip(method: CompressionMethod) throws {
    let packed = try #require(Codecs.compress(method, Self.text, level: 6))
    #expect(packed.count <= Self.text.count / 2)
    // Stored zero-padded to a power of two, as HAMMER2 does; the framing must ignore the padding.
    var padded = packed
    var p = 1024
    while p < padded.count { p *= 2 }
    padded += [UInt8](repeating: 0, count: p - padded.count)
    #expect(try Codecs.decompress(method, padded, logicalSize: 65536) == Self.text)
  }

  @Test func incompressibleIsRejected() {
    var rng = SystemRandomNumberGenerator()
    let noise = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &rng) }
    #expect(Codecs.compress(.lz4, noise) == nil)
    #expect(Codecs.compress(.zlib, noise) == nil)
    #expect(Codecs.compress(.zstd, noise) == nil)
  }

  @Test func decompressionIsBoundedByLogicalSize() throws {
    // A zlib stream of 1 MiB of zeros: a bomb for a 64 KiB block.
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    var out = [UInt8](repeating: 0, count: 1 << 16)
    let n = zeros.withUnsafeBytes { src in
      out.withUnsafeMutableBytes { dst in
        h2_zlib_deflate(
          src.baseAddress!.assumingMemoryBound(to: UInt8.self), src.count, dst.baseAddress!.assumingMemoryBound(to: UInt8.self), dst.count,
          9)
      }
    }
    #expect(n > 0)
    #expect(throws: FormatError.self) { try Codecs.decompress(.zlib, Array(out[0..<Int(n)]), logicalSize: 65536) }
    // LZ4 and zstd: a 1 MiB block's stream must not fit a 64 KiB output.
    for method in [CompressionMethod.lz4, .zstd] {
      let big = Codecs.compress(method, zeros)!
      #expect(throws: FormatError.self) { try Codecs.decompress(method, big, logicalSize: 65536) }
    }
    // A length prefix larger than the block.
    #expect(throws: FormatError.self) { try Codecs.decompress(.lz4, [0xFF, 0xFF, 0, 0, 1, 2, 3], logicalSize: 65536) }
    #expect(throws: FormatError.self) { try Codecs.decompress(.zlib, [1, 2, 3, 4], logicalSize: 65536) }
  }
}

@Suite struct RoundTripTests {
  @Test func blockrefAndInodeAndHeaderRoundTripRandomBytes() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<200 {
      let raw = (0..<1024).map { _ in UInt8.random(in: 0...255, using: &rng) }
      #expect(encodeBlockrefs(decodeBlockrefs(raw)) == raw)
      #expect(InodeData(raw).encode() == raw)
    }
    let hdr = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &rng) }
    #expect(VolumeHeader(hdr).encode() == hdr)
  }
}
