import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// Errors are typed (issue 17 item 5): representative damage yields a kind whose payload
/// says what went wrong, and a location that names the image, the byte offset (nil when
/// no single byte names the place, never a fake 0) and the structure.
@Suite struct TypedErrorTests {
  /// A fresh 1 GiB image on a memory device, with a 70,000-byte file in PFS DATA.
  func smallImage() throws -> MemoryDeviceOpener {
    let opener = MemoryDeviceOpener()
    var uuids = UUIDSource.seeded(11)
    try Newfs.format(path: "node", size: 1 << 30, labels: ["LOCAL", "DATA"], uuids: &uuids, time: 1_000_000_000_000_000, opener: opener)
    let tx = try Transaction(path: "node", opener: opener)
    let ed = try tx.editor(pfs: "DATA")
    let inum = try ed.create(Array("f.bin".utf8), in: ed.resolve("/"), type: .regularFile, mode: 0o644, time: 1_100_000_000_000_000)
    try ed.write(inum, at: 0, (0..<70_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 11) })
    try tx.commit()
    return opener
  }

  /// The error `body` throws (nil, and an issue recorded, when it throws none).
  func failure<T>(_ body: () throws(FormatError) -> T, sourceLocation: SourceLocation = #_sourceLocation) -> FormatError? {
    do throws(FormatError) {
      _ = try body()
      Issue.record("no error", sourceLocation: sourceLocation)
      return nil
    } catch {
      return error
    }
  }

  /// The first DATA block of the image and a volume to read it with.
  func dataBlock(_ opener: MemoryDeviceOpener) throws -> (Volume, ImageMap.Node) {
    let volume = try Volume.open(path: "node", opener: opener)
    let node = try #require(ImageMap(volume: volume).nodes.first { $0.bref.type == .data })
    return (volume, node)
  }

  @Test func aHeaderWithoutAValidCopyHasNoOffset() throws {
    let opener = try smallImage()
    // One byte of the sroot blockset (covered by icrc_sect1) in the only copy a 1 GiB image has.
    try [UInt8(0xA5)].withUnsafeBytes { try opener["node"]!.write(at: 0x300, from: $0) }
    let e = try #require(failure { () throws(FormatError) in try Volume.open(path: "node", opener: opener) })
    guard case .noValidHeader(let reasons) = e.kind else {
      Issue.record("\(e.kind)")
      return
    }
    #expect(reasons.count == 1 && reasons[0].hasPrefix("#0: ") && reasons[0].contains("CRC mismatch"), "\(reasons)")
    #expect(e.location == Location(image: "node", offset: nil, structure: "volume headers"))
    #expect(e.description.hasPrefix("node: volume headers: no valid volume header (#0: "), "\(e)")
  }

  @Test func aForeignImageIsNamedAtItsRealByteZero() throws {
    let opener = MemoryDeviceOpener(["zero": MemoryImage(label: "zero", size: 1 << 20)])
    let e = try #require(failure { () throws(FormatError) in try Volume.open(path: "zero", opener: opener) })
    #expect(e.kind == .notHammer2(magic: 0))
    #expect(e.location == Location(image: "zero", offset: 0, structure: "volume header #0"))
    #expect(e.description == "zero @0x0: volume header #0: not a HAMMER2 image (magic 0x0)")
  }

  @Test func aTruncatedImageSaysBothSizes() throws {
    let opener = try smallImage()
    let device = opener["node"]!
    try device.setSize(512 << 20)
    let e = try #require(failure { () throws(FormatError) in try Volume.open(path: "node", opener: opener) })
    #expect(e.kind == .sizeMismatch(.imageShorterThanVolume(deviceSize: 512 << 20, voluSize: 1 << 30)))
    #expect(e.location == Location(image: "node", offset: 0, structure: "volume header #0"))
    #expect(
      e.description
        == "node @0x0: volume header #0: the image is 0x20000000 bytes (536870912), shorter than its volume header's volu_size 0x40000000 (1073741824): truncated or the wrong device"
    )
    // Shorter than one header: nothing to choose from.
    try device.setSize(1000)
    let short = try #require(failure { () throws(FormatError) in try Volume.open(path: "node", opener: opener) })
    #expect(short.kind == .truncated(needed: UInt64(VolumeHeader.byteCount), available: 1000))
    #expect(short.location == Location(image: "node", offset: 0, structure: "volume header #0"))
  }

  @Test func anUnknownVolumeVersionIsAnUnsupportedFeature() throws {
    let opener = try smallImage()
    let img = OverlayImage(base: try openImage("node", opener: opener))
    let map = ImageMap(volume: try Volume(io: img))
    img.patch(map.headerOffset + 0x30, [9, 0, 0, 0])
    map.resignHeader(in: img)
    let e = try #require(failure { () throws(FormatError) in try Volume(io: img) })
    #expect(e.kind == .unsupported(.volumeVersion(9)))
    #expect(e.location == Location(image: "node", offset: 0, structure: "volume header #0"))
    #expect(e.message == "not supported: volume version 9")
  }

  @Test func aBadCheckCodeNamesTheBlock() throws {
    let opener = try smallImage()
    let (_, node) = try dataBlock(opener)
    let byte = try opener["node"]!.read(at: node.offset + 7, count: 1)
    try [byte[0] ^ 0xFF].withUnsafeBytes { try opener["node"]!.write(at: node.offset + 7, from: $0) }
    let volume = try Volume.open(path: "node", opener: opener)
    let e = try #require(failure { () throws(FormatError) in try volume.logicalData(node.bref) })
    guard case .checkMismatch(let method, let expected, let found) = e.kind else {
      Issue.record("\(e.kind)")
      return
    }
    #expect(!method.isEmpty && expected != found, "\(e)")
    #expect(e.location == Location(image: "node", offset: node.offset, structure: node.bref.summary))
  }

  @Test func anUnknownCompressionMethodIsAnUnsupportedFeature() throws {
    let (volume, node) = try dataBlock(try smallImage())
    var bref = node.bref
    bref.methods = (bref.methods & 0xF0) | 5
    let e = try #require(failure { () throws(FormatError) in try volume.logicalData(bref) })
    #expect(e.kind == .unsupported(.compressionMethod(5)))
    #expect(e.location == Location(image: "node", offset: node.offset, structure: bref.summary))
    #expect(e.message == "not supported: compression method 5")
  }

  @Test func aBlockrefNamingNoMediaBlockSaysWhy() throws {
    let (volume, node) = try dataBlock(try smallImage())
    var radix = node.bref
    radix.dataOff = node.bref.mediaOffset | 5
    let e = try #require(failure { () throws(FormatError) in try volume.readMedia(radix) })
    #expect(e.kind == .badBlockref(.sizeRadix(dataOff: radix.dataOff, radix: 5)))
    #expect(e.location?.offset == node.offset)
    let fsSize = volume.header.filesystemSize
    var beyond = node.bref
    beyond.dataOff = fsSize | 16
    let far = try #require(failure { () throws(FormatError) in try volume.readMedia(beyond) })
    #expect(far.kind == .badBlockref(.beyondFileSystem(offset: fsSize, size: 65536, filesystemSize: fsSize)))
    #expect(far.location == Location(image: "node", offset: fsSize, structure: beyond.summary))
    #expect(far.message == "block 0x\(hex(fsSize))/65536 lies beyond the file system (0x\(hex(fsSize)))")
  }

  @Test func aLengthPrefixLongerThanItsBlockSaysBothSizes() throws {
    let e = try #require(
      failure { () throws(FormatError) in try Codecs.decompress(.lz4, [0xFF, 0xFF, 0, 0, 1, 2, 3], logicalSize: 65536) })
    #expect(e.kind == .sizeMismatch(.lengthPrefix(codec: .lz4, length: 65535, blockSize: 7)))
    #expect(e.location == nil)
    #expect(e.description == "lz4 length prefix 65535 exceeds the 7-byte block")
  }

  /// Refused requests say which rule they break: a second writer, volumes out of order.
  @Test func refusedRequestsAreTyped() throws {
    let d = MemoryImage(label: "m", size: 1 << 20)
    try d.lockExclusive()
    let locked = try #require(failure { () throws(FormatError) in try d.lockExclusive() })
    #expect(locked.kind == .deviceRefused(.lockedInProcess(image: "m")))
    #expect(locked.description == "m: image: m is locked by another writer")
    let opener = MemoryDeviceOpener()
    var uuids = UUIDSource.seeded(5)
    try NewfsVolumes.format(
      paths: ["mv0", "mv1"], sizes: [1 << 30, 256 << 20], labels: ["LOCAL", "DATA"], uuids: &uuids, time: 1_000_000_000_000_000,
      opener: opener)
    let swapped = try #require(failure { () throws(FormatError) in try openImage("mv1:mv0", opener: opener) })
    #expect(swapped.kind == .badVolumeList(.firstIsNotRoot(id: 1, nvolumes: 2)))
    #expect(swapped.location == Location(image: "mv1", offset: 0, structure: "volume header #0"))
  }

  /// Places without a single byte offset (an image as a whole, a PFS or a path by name)
  /// print none; nothing an image can make the reader say prints a fake "@0x0".
  @Test func noUnknownOffsetPrintsAsOffsetZero() throws {
    let opener = try smallImage()
    let volume = try Volume.open(path: "node", opener: opener)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let reader = PFSReader(volume: volume, pfs: try #require(list.first { $0.name == "DATA" }))
    let tx = try Transaction(path: "node", opener: MemoryDeviceOpener(["node": opener["node"]!.copy()]))
    let ed = try tx.editor(pfs: "DATA")
    var uuids = UUIDSource.seeded(1)
    let named: [FormatError?] = [
      failure { () throws(FormatError) in try PFSReader.choose(list, name: "NOPE", image: "node") },
      failure { () throws(FormatError) in try reader.resolve("/nope") },
      failure { () throws(FormatError) in try ed.resolve("/nope") },
      failure { () throws(FormatError) in try MemoryDeviceOpener().open("missing", writable: false) },
      failure { () throws(FormatError) in
        try Newfs.format(path: "tiny", size: 1 << 20, labels: ["DATA"], uuids: &uuids, time: 1, opener: MemoryDeviceOpener())
      },
    ]
    for e in named {
      let e = try #require(e)
      #expect(e.location?.offset == nil, "\(e)")
      #expect(!e.description.contains("@0x"), "\(e)")
    }
    #expect(named[0]?.description == "node: super-root: not found: PFS \"NOPE\" (have: DATA, LOCAL)")
    #expect(named[0]?.kind == .notFound(.pfs(name: "NOPE", have: ["DATA", "LOCAL"])))
    #expect(named[1]?.kind == .notFound(.path("nope", pfs: "DATA")), "\(named[1]?.kind as Any)")
    #expect(named[2]?.kind == .notFound(.path("/nope", pfs: nil)), "\(named[2]?.kind as Any)")
    #expect(named[3]?.kind == .io(errno: ENOENT, operation: "open"))
    #expect(named[4]?.kind == .newfsRefused(.imageTooSmall))
    // Seeded damage in every metadata block: each error and finding names a real offset
    // or none; offset 0 only for the volume header that lives there.
    let base = try openImage("node", opener: opener)
    let map = ImageMap(volume: volume)
    var rng = SeededRandom(seed: 0x1717)
    var said: [String] = []
    for (i, n) in map.metadata.map({ map.nodes[$0] }).enumerated() {
      for round in 0..<2 {
        let img = OverlayImage(base: base, label: "node#\(i).\(round)")
        let at = n.offset + UInt64.random(in: 0..<UInt64(n.size), using: &rng)
        img.patch(at, [try img.read(at: at, count: 1)[0] ^ UInt8.random(in: 1...255, using: &rng)])
        let (error, found) = exerciseReader(img)
        let locations = found.map(\.location) + [error?.location].compactMap { $0 }
        for l in locations where l.offset == 0 { #expect(l.structure.hasPrefix("volume header"), "\(l)") }
        said += found.map(\.description) + [error?.description].compactMap { $0 }
      }
    }
    #expect(said.count > 10, "the damage was seen")
    for line in said where line.contains("@0x0:") { #expect(line.contains("@0x0: volume header"), "\(line)") }
  }
}
