import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// Damage real images thousands of ways; every case must end in a clean error (naming
/// image, offset, structure) or in findings, never a crash or a hang.
/// `H2_MUTATIONS=N` runs N cases instead of the default 2,000; `H2_MUTATION_SEED` picks
/// the seed.
@Suite
struct MutationTests {
  static let count = Int(ProcessInfo.processInfo.environment["H2_MUTATIONS"] ?? "") ?? 2000
  static let seed = UInt64(ProcessInfo.processInfo.environment["H2_MUTATION_SEED"] ?? "") ?? 0x4832_5245_5359_4E43

  enum Kind: CaseIterable { case rawBytes, resignedBytes, resignedBlockref, truncate, headerGarble, headerResigned, loop }

  static let bases = ["v5-multi-pfs", "v6-zlib-sha192"]

  /// Half of the cases on each base image (seed + the image's index): the two halves
  /// run side by side.
  @Test(.needsOracle, arguments: bases.indices)
  func seededMutationsEndCleanly(base b: Int) throws {
    let name = Self.bases[b]
    var tallies: [String: Int] = [:]
    do {
      let base = try FileImage(path: Oracle.image(name))
      let map = ImageMap(volume: try Volume(io: base))
      let meta = map.metadata
      #expect(meta.count > 20)
      var rng = SeededRandom(seed: Self.seed &+ UInt64(b))
      let n = Self.count / Self.bases.count
      for i in 0..<n {
        let kind = Kind.allCases.randomElement(using: &rng)!
        let img = OverlayImage(base: base, label: "\(name)#\(i)")
        let node = map.nodes[meta.randomElement(using: &rng)!]
        switch kind {
        case .rawBytes, .resignedBytes:
          for _ in 0..<Int.random(in: 1...8, using: &rng) {
            let off = node.offset + UInt64.random(in: 0..<UInt64(node.size), using: &rng)
            img.patch(off, [UInt8.random(in: 0...255, using: &rng)])
          }
          if kind == .resignedBytes { map.resign(map.nodes.firstIndex { $0.offset == node.offset }, in: img) }
        case .resignedBlockref:
          // Absurd values in one field of one blockref, checks made valid again.
          let slots = max(1, node.size / 128)
          let at = node.offset + UInt64(128 * Int.random(in: 0..<slots, using: &rng))
          let field: (Int, Int) = [(0, 1), (1, 1), (3, 1), (8, 8), (0x20, 8), (0x20, 1), (0x38, 2)].randomElement(using: &rng)!
          img.patch(at + UInt64(field.0), (0..<field.1).map { _ in UInt8.random(in: 0...255, using: &rng) })
          map.resign(map.nodes.firstIndex { $0.offset == node.offset }, in: img)
        case .truncate:
          img.size = UInt64.random(in: 0..<min(base.size, 0x1000_0000), using: &rng)
        case .headerGarble:
          img.patch(map.headerOffset + UInt64.random(in: 0..<65536, using: &rng), [UInt8.random(in: 0...255, using: &rng)])
        case .headerResigned:
          let off = [0x0, 0x28, 0x30, 0x3C, 0x70, 0xC0, 0x200, 0x203, 0x220, 0x800, 0x820].randomElement(using: &rng)!
          img.patch(map.headerOffset + UInt64(off), [UInt8.random(in: 0...255, using: &rng)])
          map.resignHeader(in: img)
        case .loop:
          // A blockref that points at its own container or an ancestor, check NONE so
          // nothing but loop detection can stop it.
          guard let idx = map.nodes.firstIndex(where: { $0.offset == node.offset }) else { continue }
          var target = idx
          for _ in 0..<Int.random(in: 0...2, using: &rng) { target = map.nodes[target].parent ?? target }
          let t = map.nodes[target]
          var loop = Blockref()
          loop.typeRaw = BlockrefType.indirect.rawValue
          loop.keybits = 63
          loop.dataOff = t.offset | UInt64(t.size.trailingZeroBitCount)
          let slotBase = node.bref.type == .inode ? node.offset + 0x200 : node.offset
          let slots = node.bref.type == .inode ? 4 : max(1, node.size / 128)
          img.patch(slotBase + UInt64(128 * Int.random(in: 0..<slots, using: &rng)), loop.bytes)
          map.resign(idx, in: img)
        }
        let started = ContinuousClock.now
        let outcome = exerciseReader(img)
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < .seconds(30), "\(name) case \(i) (\(kind)) took \(elapsed)")
        if let e = outcome.error {
          #expect(e.location != nil, "\(name) case \(i) (\(kind)): error without a location: \(e)")
          tallies["error", default: 0] += 1
        } else {
          tallies[outcome.findings.isEmpty ? "clean" : "findings", default: 0] += 1
        }
      }
    }
    let n = Self.count / Self.bases.count
    print("mutation run on \(name): seed 0x\(String(Self.seed &+ UInt64(b), radix: 16)), \(n) cases: \(tallies.sorted { $0.key < $1.key })")
    #expect(tallies.values.reduce(0, +) >= n - 1)
  }

  /// The canonical loop: an indirect block of the inode index points at itself.
  @Test(.needsOracle) func selfReferencingIndirectBlockIsALoopFinding() throws {
    let base = try FileImage(path: Oracle.image("v1-default"))
    let volume = try Volume(io: base)
    let map = ImageMap(volume: volume)
    var findings: [Finding] = []
    let data = try #require(try volume.pfsList(findings: &findings).first { $0.name == "DATA" })
    let top = try #require(data.inode.blockset.first { $0.type == .indirect })
    let idx = try #require(map.nodes.firstIndex { $0.offset == top.mediaOffset && $0.bref.type == .indirect })
    let img = OverlayImage(base: base)
    var loop = try volume.blockrefArray(top)[0]
    loop.dataOff = top.dataOff
    loop.methods = 0 // check NONE: only loop detection can stop the walk
    img.patch(top.mediaOffset, loop.bytes)
    map.resign(idx, in: img)

    let v2 = try Volume(io: img)
    let pfs = try #require(try v2.pfsList(findings: &findings).first { $0.name == "DATA" })
    #expect(throws: FormatError.self) { try PFSReader(volume: v2, pfs: pfs).inode(1024) }
    var walker = TopologyWalker(volume: v2, includeFreemap: false)
    walker.walk { _ in }
    #expect(walker.findings.contains { $0.message.hasPrefix("loop:") }, "\(walker.findings.prefix(3))")
  }
}
