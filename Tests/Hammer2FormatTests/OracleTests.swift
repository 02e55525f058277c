import Foundation
import H2TestSupport
import Hammer2Builder
import Hammer2Format
import Testing

/// The real-image suite: images written by DragonFly's own HAMMER2 code
/// (`../shared/oracle`), read exactly. Skipped by name when the corpus is absent.
struct OracleSingleImageTests {
  init() {
    if !Oracle.available { print(Oracle.skipMessage) }
  }

  static let names: [String] = Oracle.available ? Oracle.singleNames : []

  @Test(.needsOracle) func corpusIsComplete() {
    #expect(Self.names.count >= 6, "expected the six single images, found \(Self.names)")
  }

  @Test(.needsOracle, arguments: names)
  func pfsListMatchesManifest(name: String) throws {
    let image = try Oracle.image(name)
    let manifest = try Oracle.manifest(name)
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    #expect(findings.isEmpty, "\(findings)")
    let expected = try #require(manifest["pfs"] as? [[String: Any]])
    #expect(Set(list.map(\.name)) == Set(expected.compactMap { $0["name"] as? String }))
    for e in expected {
      let p = try #require(list.first { $0.name == e["name"] as? String })
      #expect(Int(p.inode.meta.pfsTypeRaw) == e["pfs_type"] as? Int)
      #expect(p.subtypeName == e["pfs_subtype"] as? String)
      #expect(Int(p.nmasters) == e["pfs_nmasters"] as? Int)
      #expect(p.clid.description == e["pfs_clid"] as? String)
      #expect(p.fsid.description == e["pfs_fsid"] as? String)
      #expect(Int(p.inode.meta.pfsInum) == e["pfs_inum"] as? Int)
      #expect(Int(p.rootModifyTid) == e["root_bref_modify_tid"] as? Int)
      #expect(Int(p.bref.mirrorTid) == e["root_bref_mirror_tid"] as? Int)
    }
    let vol = try #require(manifest["volume"] as? [String: Any])
    #expect(volume.headerSlot == vol["active_volume_header"] as? Int)
    #expect(Int(volume.header.mirrorTid) == vol["volume_mirror_tid"] as? Int)
    #expect(volume.headerCopies.count == (vol["volume_headers"] as? [Any])?.count)
    #expect(volume.headerCopies.allSatisfy { $0.isValid })
  }

  @Test(.needsOracle, arguments: names)
  func extractReproducesManifest(name: String) throws {
    let image = try Oracle.image(name)
    let manifest = try Oracle.manifest(name)
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    for e in try #require(manifest["pfs"] as? [[String: Any]]) {
      let pfsName = try #require(e["name"] as? String)
      let listing = try #require(e["listing"] as? [[String: Any]])
      let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(list, name: pfsName, image: image))
      let dest = makeTempDir("h2x-\(name)-\(pfsName)")
      defer { try? FileManager.default.removeItem(atPath: dest) }
      var f: [Finding] = []
      let stats = try reader.extract(to: dest + "/root", findings: &f)
      #expect(f.isEmpty, "\(name)/\(pfsName): \(f.prefix(5))")
      let problems = compareTree(dest + "/root", listing: listing)
      #expect(problems.isEmpty, "\(name)/\(pfsName): \(problems.count) differences: \(problems.prefix(10))")
      #expect(stats.directories + stats.files + stats.symlinks + stats.hardlinks + stats.fifos == listing.count)
    }
  }

  /// The batched index lookup (`inodeBlockrefs`, read-ahead hints for remote nodes) finds
  /// exactly what one lookup at a time finds: present, absent and out-of-range numbers.
  @Test(.needsOracle, arguments: names)
  func batchedIndexLookupsAgreeWithSingleOnes(name: String) throws {
    let image = try Oracle.image(name)
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    var indexed = 0
    for pfs in try volume.pfsList(findings: &findings) {
      let reader = PFSReader(volume: volume, pfs: pfs)
      // Every inode number in the index, its neighbours (mostly absent), the extremes.
      var it = KeyRangeIterator(volume: volume, array: pfs.inode.blockset, location: Location(image: image, structure: "index"))
      var present: [UInt64] = []
      var element = it.lookup(0, H2.dirhashVisible - 1)
      while let e = element {
        if case .leaf(let b) = e, b.type == .inode { present.append(b.key) }
        element = it.next()
      }
      let inums = present + present.map { $0 + 1 } + [0, 1, 2, 1 << 40, H2.dirhashVisible - 1, H2.dirhashVisible, .max]
      let single = inums.map { reader.inodeBlockref($0) }
      // In any order: the answers come back in the order asked.
      #expect(reader.inodeBlockrefs(inums).map { $0?.dataOff } == single.map { $0?.dataOff }, "\(name)/\(pfs.name)")
      #expect(reader.inodeBlockrefs(inums.reversed()).map { $0?.dataOff } == single.reversed().map { $0?.dataOff })
      #expect(single.compactMap { $0 }.count >= present.count, "\(name)/\(pfs.name)")
      indexed += present.count
    }
    #expect(indexed > 20, "\(name): the PFSs' indexes hold \(indexed) inodes")
  }

  @Test(.needsOracle, arguments: names)
  func everyBlockVerifiesAndRoundTrips(name: String) throws {
    let volume = try Volume.open(path: try Oracle.image(name))
    var walker = TopologyWalker(volume: volume, includeFreemap: true, decompressData: true)
    var metadata: [Blockref] = []
    walker.walk { e in
      if e.bref.type == .indirect || e.bref.type == .inode || e.bref.type == .freemapNode { metadata.append(e.bref) }
    }
    #expect(walker.findings.isEmpty, "\(walker.findings.prefix(5))")
    #expect(walker.blockrefsVisited > 10)
    // Decode losslessly: every metadata block re-encodes to its exact bytes.
    for bref in metadata {
      let raw = try volume.readMedia(bref)
      if bref.type == .inode {
        #expect(InodeData(raw).encode() == raw)
      } else {
        #expect(encodeBlockrefs(decodeBlockrefs(raw)) == raw)
      }
    }
    let hdr = try volume.io.read(at: UInt64(volume.headerSlot) * H2.zoneBytes64, count: VolumeHeader.byteCount)
    #expect(volume.header.encode() == hdr)
    #expect(volume.header.encode(recomputeCRCs: true) == hdr)
  }
}

/// Every node image of the cluster sets reads exactly as its manifest lists it.
struct OracleClusterImageTests {
  static let sets: [String] = {
    guard Oracle.available else { return [] }
    let dir = Oracle.directory.appendingPathComponent("cluster")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
  }()

  @Test(.needsOracle, arguments: sets)
  func nodesExtractAsListed(set: String) throws {
    let manifest = try Oracle.manifest(set, set: "cluster")
    let clid = try #require(manifest["pfs_clid"] as? String)
    for node in try #require(manifest["nodes"] as? [[String: Any]]) {
      let letter = try #require(node["node"] as? String)
      let image = try Oracle.image("\(set).\(letter)", set: "cluster")
      let volume = try Volume.open(path: image)
      var findings: [Finding] = []
      let list = try volume.pfsList(findings: &findings)
      let pfs = try #require(list.first { $0.clid.description == clid })
      #expect(Int(pfs.inode.meta.pfsTypeRaw) == node["pfs_type"] as? Int)
      #expect(Int(pfs.nmasters) == node["pfs_nmasters"] as? Int)
      #expect(pfs.fsid.description == node["pfs_fsid"] as? String)
      let dest = makeTempDir("h2x-\(set)-\(letter)")
      defer { try? FileManager.default.removeItem(atPath: dest) }
      _ = try PFSReader(volume: volume, pfs: pfs).extract(to: dest + "/root", findings: &findings)
      #expect(findings.isEmpty)
      let problems = compareTree(dest + "/root", listing: try #require(node["listing"] as? [[String: Any]]))
      #expect(problems.isEmpty, "\(set).\(letter): \(problems.prefix(10))")
    }
  }
}
