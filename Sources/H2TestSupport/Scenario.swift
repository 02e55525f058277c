import Crypto
import Foundation
import Hammer2Builder
import Hammer2Format

/// A cluster scenario (fixtures/NAME.json): the nodes of one PFS cluster, a common base
/// history, per-node divergent operations, and the outcome the cluster engine must
/// report. `build(into:audit:)` writes one image per node with h2resync's own writer.
///
/// Every node is built separately from the same inputs: `new` with a per-node UUID seed,
/// `pfs-create` with the shared clid and a per-node fsid, the base tree in one
/// transaction, then each operation that lists the node, in spec order, each with a
/// fixed time. Nodes with the same history therefore get identical trees, inode numbers
/// and modify_tids. See fixtures/README.md for the schema.
public struct ScenarioSpec: Codable, Sendable {
  public var name: String
  public var description: String
  /// Image size ("2G").
  public var imageSize: String?
  /// PFS label (default "DATA").
  public var pfs: String?
  /// The cluster id every member shares.
  public var clid: String
  /// Time (seconds since the epoch) of new, pfs-create and the base tree; operation i
  /// runs at time + 1 + i unless it gives its own. Default 1700000000.
  public var time: UInt64?
  public var nodes: [Node]
  public var base: Base
  public var ops: [Op]
  public var expected: Expected

  enum CodingKeys: String, CodingKey {
    case name, description
    case imageSize = "image_size"
    case pfs, clid, time, nodes, base, ops, expected
  }

  /// One node image.
  public struct Node: Codable, Sendable {
    public var name: String
    /// MASTER, SLAVE, SOFT_MASTER, SOFT_SLAVE or CACHE.
    public var type: String
    public var nmasters: Int
    /// This node's pfs_fsid (default: derived from the scenario and node names).
    public var fsid: String?
    /// Seed of the volume's UUIDs (`new --uuid-seed`; default derived from the names).
    public var uuidSeed: UInt64?
    /// A different cluster id: the image holds a PFS of that name, but it is not a member.
    public var clid: String?
    /// false: the image gets no PFS at all besides LOCAL (not a member).
    public var createPfs: Bool?
    /// Compression used for the base tree's data on this node only; inode comp_algo
    /// attributes are reset to base.comp afterwards (see fixtures/README.md).
    public var dataComp: String?

    enum CodingKeys: String, CodingKey {
      case name, type, nmasters, fsid
      case uuidSeed = "uuid_seed"
      case clid
      case createPfs = "create_pfs"
      case dataComp = "data_comp"
    }
  }

  /// The common start of every node.
  public struct Base: Codable, Sendable {
    /// comp_algo of the PFS root (inherited by every inode): none, autozero, lz4, zlib[:L], zstd[:L].
    public var comp: String?
    /// check_algo of the PFS root: none, disabled, iscsi32, xxhash64, sha192.
    public var check: String?
    public var tree: Tree
    /// Operations applied to every node after the tree (each one transaction).
    public var ops: [[String]]?
  }

  /// A deterministic source tree, created in one transaction.
  public struct Tree: Codable, Sendable {
    public var seed: UInt64?
    public var entries: [Entry]?
    public var generate: [Generator]?
  }

  /// One explicit object. Parent directories are created as needed.
  public struct Entry: Codable, Sendable {
    public var path: String
    /// file (default), dir, symlink, hardlink, fifo.
    public var type: String?
    /// File content: a data spec (see `ScenarioData`); default empty.
    public var data: String?
    /// Octal permission bits (default 644 files, 755 directories, 777 symlinks, 644 FIFOs).
    public var mode: String?
    /// Symlink target, or the existing path a hardlink names.
    public var target: String?
  }

  /// Generated files under `dir`: `files` files per directory named PREFIX + index
  /// (zero-padded to `width`), `dirs` subdirectories d0, d1... per directory down to
  /// `depth` levels below `dir`. Sizes and content kinds are drawn with the tree seed.
  public struct Generator: Codable, Sendable {
    public var dir: String
    public var files: Int
    public var dirs: Int?
    public var depth: Int?
    public var prefix: String?
    public var width: Int?
    /// Sizes to draw from (bytes, K/M suffixes). Default: a ladder around 512 B / 64 KiB.
    public var sizes: [String]?
    /// Content kinds to draw from: lorem, random, mixed, zeros, text. Default lorem, random, mixed.
    public var contents: [String]?
  }

  /// One divergent operation: an h2mkimage command line without the image, --pfs and
  /// --time (e.g. ["write", "a.txt", "--at", "0", "--data", "text:hi"]), applied to the
  /// listed nodes.
  public struct Op: Codable, Sendable {
    public var nodes: [String]
    public var op: [String]
    /// Time of the operation (default: spec time + 1 + index).
    public var time: UInt64?
    /// Repeat the operation with {i} (or {i:05}, zero-padded) substituted, i = start...,
    /// all in ONE transaction.
    public var `repeat`: Repeat?
  }

  public struct Repeat: Codable, Sendable {
    public var start: Int?
    public var count: Int
  }

  /// The outcome the cluster engine must report.
  public struct Expected: Codable, Sendable {
    /// max(stored pfs_nmasters, MASTERs present) / 2 + 1.
    public var quorum: Int?
    /// Nodes holding the focus version ([] when there is no quorum).
    public var focus: [String]
    /// State of every member node: in-sync (focus nodes too), stale (also: tids only),
    /// ahead, split-brain, damaged, conflict, soft-local.
    public var nodes: [String: String]
    /// Path (relative to the PFS root, "." for the root) -> node -> class.
    public var differences: [String: [String: String]]
    /// Images that are not members of the cluster.
    public var excluded: [String]?
  }
}

/// The built images of a scenario.
public struct BuiltScenario: Sendable {
  /// Node name -> image path (every node, members and excluded).
  public var images: [String: String]
  /// Node names that are not cluster members (no PFS of the clid).
  public var excluded: [String]
  /// Node name -> indices (in `ops`) of the operations it received.
  public var applied: [String: [Int]]
  /// Node name -> pfs_fsid (members and nodes with a foreign clid).
  public var fsids: [String: String]
}

/// A failure to load or build a scenario.
public struct ScenarioError: Error, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

extension ScenarioSpec {
  /// fixtures/ of the package.
  public static var fixturesDirectory: URL { Oracle.packageRoot.appendingPathComponent("fixtures") }

  /// Reads and checks a spec.
  public static func load(_ path: String) throws -> ScenarioSpec {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let spec: ScenarioSpec
    do { spec = try JSONDecoder().decode(ScenarioSpec.self, from: data) } catch {
      throw ScenarioError("\(path): \(error)")
    }
    try spec.validate()
    return spec
  }

  /// Every spec of fixtures/, by name.
  public static func allSpecs() throws -> [ScenarioSpec] {
    let dir = fixturesDirectory.path
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".json") }.sorted()
    return try files.map { try load(dir + "/" + $0) }
  }

  /// PFS label.
  public var pfsName: String { pfs ?? "DATA" }
  var baseTime: UInt64 { time ?? 1_700_000_000 }

  /// Whether `node` is a member of the cluster.
  public func isMember(_ node: Node) -> Bool {
    node.createPfs != false && (node.clid == nil || node.clid?.lowercased() == clid.lowercased())
  }

  /// Names of the nodes that are not members.
  public var excludedNodes: [String] { nodes.filter { !isMember($0) }.map(\.name) }

  /// The pfs_fsid of `node`.
  public func fsid(of node: Node) -> H2UUID {
    if let s = node.fsid, let u = H2UUID(string: s) { return u }
    var src = UUIDSource.seeded(fnv64("\(name)/\(node.name)/fsid"))
    return src.next()
  }

  /// Time of operation `index`, seconds.
  public func time(ofOp index: Int) -> UInt64 { ops[index].time ?? baseTime + 1 + UInt64(index) }

  /// Consistency checks that need no image.
  public func validate() throws {
    let names = nodes.map(\.name)
    guard Set(names).count == names.count, !names.isEmpty else { throw ScenarioError("\(name): node names must be unique and non-empty") }
    guard H2UUID(string: clid) != nil else { throw ScenarioError("\(name): bad clid \(clid)") }
    for n in nodes {
      guard PFSType(name: n.type) != nil else { throw ScenarioError("\(name): node \(n.name): unknown type \(n.type)") }
      if let f = n.fsid, H2UUID(string: f) == nil { throw ScenarioError("\(name): node \(n.name): bad fsid") }
      if let c = n.clid, H2UUID(string: c) == nil { throw ScenarioError("\(name): node \(n.name): bad clid") }
    }
    for (i, op) in ops.enumerated() {
      guard let cmd = op.op.first, EditWords.commands.contains(cmd) else {
        throw ScenarioError("\(name): op \(i): unknown command \(op.op.first ?? "(empty)")")
      }
      for n in op.nodes {
        guard let node = nodes.first(where: { $0.name == n }) else { throw ScenarioError("\(name): op \(i): unknown node \(n)") }
        guard node.createPfs != false else { throw ScenarioError("\(name): op \(i): node \(n) has no PFS") }
      }
      if op.repeat != nil, cmd == "snapshot" || cmd == "corrupt" {
        throw ScenarioError("\(name): op \(i): \(cmd) cannot repeat")
      }
    }
    let members = Set(nodes.filter(isMember).map(\.name))
    for n in expected.focus where !members.contains(n) { throw ScenarioError("\(name): focus node \(n) is not a member") }
    guard Set(expected.nodes.keys) == members else {
      throw ScenarioError("\(name): expected.nodes must list exactly the members \(members.sorted())")
    }
    guard Set(expected.excluded ?? []) == Set(excludedNodes) else {
      throw ScenarioError("\(name): expected.excluded must be \(excludedNodes)")
    }
    for (p, m) in expected.differences {
      for n in m.keys where !members.contains(n) { throw ScenarioError("\(name): difference \(p) names non-member \(n)") }
    }
  }

  /// Builds every node image into `dir` (as DIR/NAME.NODE.img). With `audit`, the
  /// freemap is audited on every image after every operation.
  public func build(into dir: String, audit: Bool) throws -> BuiltScenario {
    try validate()
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let b = ScenarioBuilder(spec: self, audit: audit)
    return try b.build(into: dir)
  }
}

/// FNV-1a, for seeds derived from names.
func fnv64(_ s: String) -> UInt64 {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  for c in s.utf8 {
    h ^= UInt64(c)
    h = h &* 0x100_0000_01b3
  }
  return h
}

/// Parses "2G", "64K", "100M", "12345".
public func scenarioSize(_ s: String) throws -> UInt64 {
  guard let n = Spellings.byteSize(s) else { throw ScenarioError("bad size \(s)") }
  return n
}

func scenarioComp(_ s: String) throws -> UInt8 {
  guard let c = Spellings.compAlgo(s) else { throw ScenarioError(Spellings.compAlgoHelp) }
  return c
}

func scenarioCheck(_ s: String) throws -> UInt8 {
  guard let c = Spellings.checkAlgo(s) else { throw ScenarioError(Spellings.checkAlgoHelp) }
  return c
}
