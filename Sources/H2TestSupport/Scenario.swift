import Crypto
import Foundation
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
    case name, description, imageSize = "image_size", pfs, clid, time, nodes, base, ops, expected
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
      case name, type, nmasters, fsid, uuidSeed = "uuid_seed", clid, createPfs = "create_pfs", dataComp = "data_comp"
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
    /// State of every member node: in-sync, stale, ahead, split-brain, damaged, conflict.
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
      guard let cmd = op.op.first, ScenarioBuilder.commands.contains(cmd) else {
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
  guard let c = Spellings.compAlgo(s) else { throw ScenarioError("compression must be none, autozero, lz4, zlib[:LEVEL] or zstd[:LEVEL]") }
  return c
}

func scenarioCheck(_ s: String) throws -> UInt8 {
  guard let c = Spellings.checkAlgo(s) else { throw ScenarioError("check must be none, disabled, iscsi32, xxhash64 or sha192") }
  return c
}

// MARK: - data

/// Deterministic file contents from a short spec:
/// `text:LITERAL` (the literal, UTF-8), `zeros:SIZE`, `random:SIZE:SEED` (incompressible),
/// `lorem:SIZE:SEED` (compressible words), `mixed:SIZE:SEED` (64 KiB blocks cycling
/// lorem, random, lorem, zeros), `pattern:SIZE:SEED` (a repeating 251-byte pattern).
/// SIZE takes K/M/G suffixes.
public enum ScenarioData {
  static let words: [String] = [
    "hammer2", "cluster", "quorum", "master", "slave", "inode", "blockref", "freemap", "volume", "header",
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "copy", "on", "write", "tid",
  ]
  /// 128 KiB of word text the lorem generator slices from.
  static let corpus: [UInt8] = {
    var rng = SeededRandom(seed: 0x5EED)
    var out: [UInt8] = []
    out.reserveCapacity(132 * 1024)
    var col = 0
    while out.count < 128 * 1024 {
      let w = words[Int(rng.next() % UInt64(words.count))]
      out += Array(w.utf8)
      col += w.utf8.count + 1
      if col > 72 {
        out.append(0x0A)
        col = 0
      } else {
        out.append(0x20)
      }
    }
    return Array(out.prefix(128 * 1024))
  }()

  /// The bytes `spec` describes.
  public static func bytes(_ spec: String) throws -> [UInt8] {
    guard let colon = spec.firstIndex(of: ":") else { throw ScenarioError("bad data spec \(spec)") }
    let kind = String(spec[..<colon])
    let rest = String(spec[spec.index(after: colon)...])
    if kind == "text" { return Array(rest.utf8) }
    let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    let size = Int(try scenarioSize(parts[0]))
    let seed = parts.count > 1 ? UInt64(parts[1]) ?? fnv64(parts[1]) : 0
    switch kind {
    case "zeros": return [UInt8](repeating: 0, count: size)
    case "random": return random(size, seed: seed)
    case "lorem": return lorem(size, seed: seed)
    case "pattern":
      var out = [UInt8](repeating: 0, count: size)
      let base = UInt8(truncatingIfNeeded: seed)
      for i in 0..<size { out[i] = base &+ UInt8(i % 251) }
      return out
    case "mixed":
      var out = [UInt8]()
      out.reserveCapacity(size)
      var rng = SeededRandom(seed: seed)
      var block = 0
      while out.count < size {
        let n = min(65536, size - out.count)
        switch block % 4 {
        case 1: out += random(n, seed: rng.next())
        case 3: out += [UInt8](repeating: 0, count: n)
        default: out += lorem(n, seed: rng.next())
        }
        block += 1
      }
      return out
    default: throw ScenarioError("unknown data kind \(kind) in \(spec)")
    }
  }

  static func random(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    var out = [UInt8](repeating: 0, count: n)
    out.withUnsafeMutableBytes { raw in
      let words = n / 8
      let p = raw.baseAddress!
      for i in 0..<words { p.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
      var last = rng.next()
      for i in words * 8..<n {
        raw[i] = UInt8(truncatingIfNeeded: last)
        last >>= 8
      }
    }
    return out
  }

  /// Word text: slices of the corpus at seeded offsets, each piece 4 KiB at most, with a
  /// seeded line number so different seeds give different bytes.
  static func lorem(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    var out = [UInt8]()
    out.reserveCapacity(n + 64)
    while out.count < n {
      out += Array("\(rng.next() % 1_000_000) ".utf8)
      let start = Int(rng.next() % UInt64(corpus.count - 4096))
      let len = min(4096, n - out.count)
      if len > 0 { out += corpus[start..<start + len] }
    }
    return Array(out.prefix(n))
  }
}

// MARK: - builder

/// One file-system object of the base tree.
struct TreeItem {
  enum Kind { case file, dir, symlink, hardlink, fifo }
  var path: String
  var kind: Kind
  var data: String?
  var mode: UInt32
  var target: String?
}

/// Builds a scenario's images with the Hammer2Format writer, the way h2mkimage's
/// commands do.
final class ScenarioBuilder {
  static let commands: Set<String> = ["write", "rm", "mkdir", "mv", "chmod", "truncate", "setcomp", "snapshot", "corrupt", "symlink", "link"]

  let spec: ScenarioSpec
  let audit: Bool
  private var dataCache: [String: [UInt8]] = [:]
  /// Image -> media offsets damaged on purpose (their check failures are expected).
  private var damaged: [String: [UInt64]] = [:]

  init(spec: ScenarioSpec, audit: Bool) {
    self.spec = spec
    self.audit = audit
  }

  func data(_ s: String) throws -> [UInt8] {
    if let d = dataCache[s] { return d }
    let d = try ScenarioData.bytes(s)
    if d.count >= 1 << 20 { dataCache[s] = d }  // big contents are shared between nodes
    return d
  }

  /// Runs one build step; errors get the scenario, node and step in front.
  func step<T>(_ node: String, _ what: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ScenarioError where e.message.hasPrefix(spec.name + ":") {
      throw e
    } catch {
      throw ScenarioError("\(spec.name): node \(node): \(what): \(error)")
    }
  }

  func build(into dir: String) throws -> BuiltScenario {
    let tree = try treeItems()
    let sizeBytes = try scenarioSize(spec.imageSize ?? "2G")
    let baseComp = try scenarioComp(spec.base.comp ?? "lz4")
    let baseCheck = try scenarioCheck(spec.base.check ?? "xxhash64")
    let normalize = spec.nodes.contains { $0.dataComp != nil }
    let t0 = spec.baseTime * 1_000_000
    var built = BuiltScenario(images: [:], excluded: spec.excludedNodes, applied: [:], fsids: [:])
    for node in spec.nodes {
      let img = dir + "/\(spec.name).\(node.name).img"
      if FileManager.default.fileExists(atPath: img) { try FileManager.default.removeItem(atPath: img) }
      built.images[node.name] = img
      built.applied[node.name] = []
      try step(node.name, "new") {
        var uuids = UUIDSource.seeded(node.uuidSeed ?? fnv64("\(spec.name)/\(node.name)/volume"))
        try Newfs.format(path: img, size: sizeBytes, labels: ["LOCAL"], compAlgo: baseComp, checkAlgo: baseCheck, uuids: &uuids, time: t0)
        try check(img, "new")
      }
      guard node.createPfs != false else { continue }
      // Safe: validate() checked the type name and the uuids.
      let type = PFSType(name: node.type)!
      let clid = H2UUID(string: node.clid ?? spec.clid)!
      let fsid = spec.fsid(of: node)
      built.fsids[node.name] = fsid.description
      try step(node.name, "pfs-create") {
        let tx = try openTransaction(img)
        try tx.createPFS(name: spec.pfsName, type: type, clid: clid, fsid: fsid, nmasters: UInt8(clamping: node.nmasters),
                         compAlgo: baseComp, checkAlgo: baseCheck, time: t0)
        try tx.commit()
        try check(img, "pfs-create")
      }
      // The base tree: one transaction.
      try step(node.name, "base tree") {
        let tx = try openTransaction(img)
        let ed = try tx.editor(pfs: spec.pfsName)
        if let dc = node.dataComp {
          let c = try scenarioComp(dc)
          try ed.updateMeta(1) { $0.compAlgo = c }
        }
        try populate(ed, tree, time: t0)
        try tx.commit()
        try check(img, "base tree")
      }
      if normalize {
        try step(node.name, "comp_algo reset") {
          let tx = try openTransaction(img)
          let ed = try tx.editor(pfs: spec.pfsName)
          try resetComp(ed, to: baseComp)
          try tx.commit()
          try check(img, "comp_algo reset")
        }
      }
      for (i, op) in (spec.base.ops ?? []).enumerated() {
        try step(node.name, "base op \(i) (\(op.joined(separator: " ")))") {
          try apply(op, repeat: nil, image: img, node: node, opIndex: -1 - i, time: t0)
          try check(img, "base op \(i)")
        }
      }
    }
    for (i, op) in spec.ops.enumerated() {
      for name in op.nodes {
        // Safe: validate() checked the names.
        let node = spec.nodes.first { $0.name == name }!
        let img = built.images[name]!
        try step(name, "op \(i) (\(op.op.joined(separator: " ")))") {
          try apply(op.op, repeat: op.repeat, image: img, node: node, opIndex: i, time: spec.time(ofOp: i) * 1_000_000)
          try check(img, "op \(i)")
        }
        built.applied[name]!.append(i)
      }
    }
    return built
  }

  /// Opens a transaction. WritableImage opens without O_CLOEXEC, so a child process
  /// spawned meanwhile by another thread (tests run in parallel and spawn h2resync) can
  /// inherit the locked descriptor for its lifetime: wait for it (up to 60 s).
  func openTransaction(_ img: String) throws -> Transaction { try retryLocked { try Transaction(path: img) } }

  func retryLocked<T>(_ open: () throws -> T) throws -> T {
    var waited = 0
    while true {
      do { return try open() } catch {
        guard String(describing: error).contains("is locked"), waited < 1200 else { throw error }
        usleep(50_000)
        waited += 1
      }
    }
  }

  /// The freemap audit, when asked for.
  func check(_ img: String, _ what: String) throws {
    guard audit else { return }
    let marks = (damaged[img] ?? []).map { "@0x" + hex($0) }
    let problems = auditFreemap(try Volume.open(path: img)).filter { p in
      !(p.hasPrefix("walk:") && marks.contains { p.contains($0) })
    }
    if !problems.isEmpty {
      throw ScenarioError("freemap audit of \(img) after \(what): \(problems.prefix(5).joined(separator: "; "))")
    }
  }

  // MARK: tree

  func treeItems() throws -> [TreeItem] {
    var items: [TreeItem] = []
    var dirs: Set<String> = [""]
    func ensureParents(_ path: String) {
      var parts = path.split(separator: "/").map(String.init)
      parts.removeLast()
      var cur = ""
      for p in parts {
        cur = cur.isEmpty ? p : cur + "/" + p
        if dirs.insert(cur).inserted { items.append(TreeItem(path: cur, kind: .dir, mode: 0o755)) }
      }
    }
    func mode(_ s: String?, _ d: UInt32) throws -> UInt32 {
      guard let s else { return d }
      guard let m = UInt32(s, radix: 8), m <= 0o7777 else { throw ScenarioError("bad mode \(s)") }
      return m
    }
    for e in spec.base.tree.entries ?? [] {
      ensureParents(e.path)
      switch e.type ?? "file" {
      case "file": items.append(TreeItem(path: e.path, kind: .file, data: e.data, mode: try mode(e.mode, 0o644)))
      case "dir":
        if dirs.insert(e.path).inserted { items.append(TreeItem(path: e.path, kind: .dir, mode: try mode(e.mode, 0o755))) }
      case "symlink":
        guard let t = e.target else { throw ScenarioError("symlink \(e.path) needs a target") }
        items.append(TreeItem(path: e.path, kind: .symlink, mode: try mode(e.mode, 0o777), target: t))
      case "hardlink":
        guard let t = e.target else { throw ScenarioError("hardlink \(e.path) needs a target") }
        items.append(TreeItem(path: e.path, kind: .hardlink, mode: 0, target: t))
      case "fifo": items.append(TreeItem(path: e.path, kind: .fifo, mode: try mode(e.mode, 0o644)))
      default: throw ScenarioError("unknown entry type \(e.type ?? "")")
      }
    }
    var rng = SeededRandom(seed: spec.base.tree.seed ?? 1)
    for g in spec.base.tree.generate ?? [] {
      let sizes = try (g.sizes ?? ["0", "100", "512", "513", "4K", "65535", "64K", "65537", "200K"]).map(scenarioSize)
      let kinds = g.contents ?? ["lorem", "random", "mixed"]
      guard !sizes.isEmpty, !kinds.isEmpty else { throw ScenarioError("generator \(g.dir): empty sizes or contents") }
      func fill(_ dir: String, level: Int) {
        for i in 0..<g.files {
          var num = String(i)
          if let w = g.width, num.count < w { num = String(repeating: "0", count: w - num.count) + num }
          let path = dir + "/" + (g.prefix ?? "f") + num
          let size = sizes[Int(rng.next() % UInt64(sizes.count))]
          let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
          let seed = rng.next()
          items.append(TreeItem(path: path, kind: .file, data: kind == "text" ? "text:\(path)\n" : "\(kind):\(size):\(seed)", mode: 0o644))
        }
        if level < (g.depth ?? 0) {
          for j in 0..<(g.dirs ?? 0) {
            let sub = dir + "/d\(j)"
            if dirs.insert(sub).inserted { items.append(TreeItem(path: sub, kind: .dir, mode: 0o755)) }
            fill(sub, level: level + 1)
          }
        }
      }
      ensureParents(g.dir + "/x")
      fill(g.dir, level: 0)
    }
    return items
  }

  func populate(_ ed: PFSEditor, _ items: [TreeItem], time: UInt64) throws {
    for item in items {
      let (dir, name) = try ed.parentAndName(item.path)
      switch item.kind {
      case .dir:
        try ed.create(name, in: dir, type: .directory, mode: item.mode, time: time)
      case .file:
        let inum = try ed.create(name, in: dir, type: .regularFile, mode: item.mode, time: time)
        if let d = item.data {
          let bytes = try data(d)
          if !bytes.isEmpty { try writeChunked(ed, inum, at: 0, bytes) }
        }
      case .symlink:
        let inum = try ed.create(name, in: dir, type: .symlink, mode: item.mode, time: time)
        try ed.write(inum, at: 0, Array((item.target ?? "").utf8))
      case .hardlink:
        try ed.link(name, in: dir, to: try ed.resolve(item.target ?? ""))
      case .fifo:
        try ed.create(name, in: dir, type: .fifo, mode: item.mode, time: time)
      }
    }
  }

  func writeChunked(_ ed: PFSEditor, _ inum: UInt64, at offset: UInt64, _ bytes: [UInt8]) throws {
    var off = offset
    var i = 0
    repeat {
      let n = min(bytes.count - i, 4 << 20)
      try ed.write(inum, at: off, Array(bytes[i..<i + n]))
      off += UInt64(n)
      i += n
    } while i < bytes.count
  }

  /// Sets comp_algo of the PFS root and every inode below it.
  func resetComp(_ ed: PFSEditor, to comp: UInt8) throws {
    var stack: [UInt64] = [1]
    var seen: Set<UInt64> = []
    while let dir = stack.popLast() {
      guard seen.insert(dir).inserted else { continue }
      try ed.updateMeta(dir) { $0.compAlgo = comp }
      for e in try ed.entries(of: dir) {
        if e.type == ObjectType.directory.rawValue {
          stack.append(e.inum)
        } else if seen.insert(e.inum).inserted {
          try ed.updateMeta(e.inum) { $0.compAlgo = comp }
        }
      }
    }
  }

  // MARK: operations

  struct Args {
    var positional: [String] = []
    var options: [String: String] = [:]
    var flags: Set<String> = []

    init(_ words: [String], flags known: Set<String>) throws {
      var i = 0
      while i < words.count {
        let w = words[i]
        if known.contains(w) {
          flags.insert(w)
        } else if w.hasPrefix("--") {
          guard i + 1 < words.count else { throw ScenarioError("option \(w) needs a value") }
          options[String(w.dropFirst(2))] = words[i + 1]
          i += 1
        } else {
          positional.append(w)
        }
        i += 1
      }
    }

    func arg(_ i: Int, _ cmd: String) throws -> String {
      guard i < positional.count else { throw ScenarioError("\(cmd): missing argument \(i + 1)") }
      return positional[i]
    }
  }

  /// Substitutes {i} / {i:05} in `words`.
  static func substitute(_ words: [String], _ i: Int) -> [String] {
    words.map { w in
      var out = ""
      var rest = Substring(w)
      while let open = rest.range(of: "{i") {
        guard let close = rest[open.upperBound...].firstIndex(of: "}") else { break }
        out += rest[..<open.lowerBound]
        let fmt = rest[open.upperBound..<close]
        var num = String(i)
        if fmt.hasPrefix(":"), let width = Int(fmt.dropFirst()), num.count < width {
          num = String(repeating: "0", count: width - num.count) + num
        }
        out += num
        rest = rest[rest.index(after: close)...]
      }
      return out + rest
    }
  }

  func apply(_ words: [String], repeat rep: ScenarioSpec.Repeat?, image: String, node: ScenarioSpec.Node, opIndex: Int, time t: UInt64) throws {
    guard let cmd = words.first, Self.commands.contains(cmd) else { throw ScenarioError("unknown operation \(words.first ?? "")") }
    let rest = Array(words.dropFirst())
    switch cmd {
    case "snapshot":
      let a = try Args(rest, flags: [])
      var uuids = UUIDSource.seeded(fnv64("\(spec.name)/\(node.name)/snapshot/\(opIndex)"))
      let tx = try openTransaction(image)
      try tx.snapshot(source: spec.pfsName, name: try a.arg(0, cmd), clid: uuids.next(), fsid: uuids.next(), time: t)
      try tx.commit()
    case "corrupt":
      let a = try Args(rest, flags: [])
      let off = try corrupt(image, path: try a.arg(0, cmd), block: Int(a.options["block"] ?? "0") ?? 0)
      damaged[image, default: []].append(off)
    default:
      let tx = try openTransaction(image)
      let ed = try tx.editor(pfs: spec.pfsName)
      if let rep {
        for i in (rep.start ?? 0)..<(rep.start ?? 0) + rep.count {
          try edit(cmd, Self.substitute(rest, i), ed, t)
        }
      } else {
        try edit(cmd, rest, ed, t)
      }
      try tx.commit()
    }
  }

  /// One editing command inside a transaction (h2mkimage semantics).
  func edit(_ cmd: String, _ words: [String], _ ed: PFSEditor, _ t: UInt64) throws {
    let a = try Args(words, flags: ["-r"])
    switch cmd {
    case "write":
      let path = try a.arg(0, cmd)
      guard let spec = a.options["data"] else { throw ScenarioError("write \(path): --data is required") }
      let bytes = try data(spec)
      let at = try scenarioSize(a.options["at"] ?? "0")
      let inum: UInt64
      if let existing = try? ed.resolve(path) {
        inum = existing
      } else {
        let (dir, name) = try ed.parentAndName(path)
        inum = try ed.create(name, in: dir, type: .regularFile, mode: 0o644, time: t)
      }
      try writeChunked(ed, inum, at: at, bytes)
      try ed.updateMeta(inum) { $0.mtime = t; $0.ctime = t }
    case "rm":
      let (dir, name) = try ed.parentAndName(try a.arg(0, cmd))
      try ed.unlink(name, in: dir, recursive: a.flags.contains("-r"))
    case "mkdir":
      guard let m = UInt32(a.options["mode"] ?? "755", radix: 8) else { throw ScenarioError("mkdir: bad mode") }
      let (dir, name) = try ed.parentAndName(try a.arg(0, cmd))
      try ed.create(name, in: dir, type: .directory, mode: m, time: t)
    case "symlink":
      let (dir, name) = try ed.parentAndName(try a.arg(0, cmd))
      let inum = try ed.create(name, in: dir, type: .symlink, mode: 0o777, time: t)
      try ed.write(inum, at: 0, Array(try a.arg(1, cmd).utf8))
    case "link":
      let inum = try ed.resolve(try a.arg(0, cmd))
      let (dir, name) = try ed.parentAndName(try a.arg(1, cmd))
      try ed.link(name, in: dir, to: inum)
    case "mv":
      let (fd, fn) = try ed.parentAndName(try a.arg(0, cmd))
      var (td, tn) = try ed.parentAndName(try a.arg(1, cmd))
      if let e = try ed.lookup(tn, in: td), e.type == ObjectType.directory.rawValue {
        td = e.inum
        tn = fn
      }
      try ed.rename(fn, in: fd, to: tn, in: td)
    case "chmod":
      let ms = try a.arg(0, cmd)
      guard let m = UInt32(ms, radix: 8), m <= 0o7777 else { throw ScenarioError("chmod: bad mode \(ms)") }
      let inum = try ed.resolve(try a.arg(1, cmd))
      try ed.updateMeta(inum) { $0.mode = m; $0.ctime = t }
    case "truncate":
      let inum = try ed.resolve(try a.arg(0, cmd))
      try ed.truncate(inum, to: try scenarioSize(try a.arg(1, cmd)))
      try ed.updateMeta(inum) { $0.mtime = t; $0.ctime = t }
    case "setcomp":
      let c = try scenarioComp(try a.arg(1, cmd))
      try ed.updateMeta(try ed.resolve(try a.arg(0, cmd))) { $0.compAlgo = c }
    default:
      throw ScenarioError("\(cmd) is not an editing command")
    }
  }

  /// h2mkimage corrupt: XORs the first 16 bytes of stored data block `block` of `path`
  /// with 0xA5, leaving its check code stale. Returns the media offset.
  func corrupt(_ image: String, path: String, block: Int) throws -> UInt64 {
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    let reader = PFSReader(volume: volume, pfs: try PFSReader.choose(try volume.pfsList(findings: &findings), name: spec.pfsName, image: image))
    let ino = try reader.resolve(path).inode
    guard !ino.meta.isDirectData else { throw ScenarioError("corrupt: \(path) keeps its data in the inode (DIRECTDATA)") }
    var it = KeyRangeIterator(volume: volume, array: ino.blockset, location: Location(image: image, offset: 0, structure: path))
    var el = it.lookup(0, .max)
    var n = 0
    while let e = el {
      if case .leaf(let b) = e, b.type == .data, b.radix != 0 {
        if n == block {
          let img = try retryLocked { try WritableImage(path: image) }
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
    throw ScenarioError("corrupt: \(path) has only \(n) stored data blocks")
  }
}

// MARK: - reference outcome

/// What one path looks like on one node (the attributes the cluster engine compares).
public struct ScenarioPathState: Equatable, Sendable {
  public var type: UInt8
  public var mode: UInt32
  public var size: UInt64
  /// SHA-256 over the non-zero logical blocks (offset + bytes): equal for equal logical
  /// content whatever the compression or holes. Symlink targets are content too.
  public var content: String
  public var mtime: UInt64
  public var ctime: UInt64
  public var nlinks: UInt64
  public var compAlgo: UInt8
  public var checkAlgo: UInt8
  public var inum: UInt64
  public var uid: UInt32
  public var gid: UInt32
  /// The inode's blockref modify_tid.
  public var modifyTid: UInt64
  /// Some block of it failed its check (or could not be decoded).
  public var damaged: Bool

  var isDirectory: Bool { type == ObjectType.directory.rawValue }

  /// Same own attributes (directories: not their entries, size, content or inode number).
  public func sameAttributes(as o: ScenarioPathState) -> Bool {
    let common = type == o.type && mode == o.mode && mtime == o.mtime && ctime == o.ctime && nlinks == o.nlinks
      && compAlgo == o.compAlgo && checkAlgo == o.checkAlgo && uid == o.uid && gid == o.gid
    if isDirectory { return common }
    return common && size == o.size && content == o.content && inum == o.inum
  }

  var digestLine: String {
    isDirectory
      ? "d \(mode) \(mtime) \(ctime) \(nlinks) \(compAlgo) \(checkAlgo) \(uid) \(gid)"
      : "\(type) \(mode) \(size) \(content) \(mtime) \(ctime) \(nlinks) \(compAlgo) \(checkAlgo) \(inum) \(uid) \(gid)"
  }
}

/// One node's PFS as the reference classifier sees it.
public struct ScenarioNodeTree: Sendable {
  public var rootModifyTid: UInt64
  /// Path relative to the PFS root ("." is the root) -> state.
  public var paths: [String: ScenarioPathState]
  public var damaged: Bool { paths.values.contains { $0.damaged } }
  /// Digest of every path's attributes (modify_tids excluded).
  public var contentDigest: String {
    var h = SHA256()
    for p in paths.keys.sorted() {
      // Safe: iterating the dictionary's own keys.
      h.update(data: Data("\(p)\t\(paths[p]!.digestLine)\n".utf8))
    }
    return h.finalize().map { String(format: "%02x", $0) }.joined()
  }

  /// Reads the PFS of cluster `clid` on `image`.
  public static func read(image: String, clid: String) throws -> ScenarioNodeTree {
    let volume = try Volume.open(path: image)
    var findings: [Finding] = []
    guard let pfs = try volume.pfsList(findings: &findings).first(where: { $0.clid.description == clid.lowercased() && $0.inode.meta.pfsSubtype == 0 }) else {
      throw ScenarioError("\(image): no PFS of cluster \(clid)")
    }
    let reader = PFSReader(volume: volume, pfs: pfs)
    var out = ScenarioNodeTree(rootModifyTid: pfs.bref.modifyTid, paths: [:])
    let zeros = [UInt8](repeating: 0, count: H2.pbufSize)
    func state(_ bref: Blockref, _ ino: InodeData, _ path: String) -> ScenarioPathState {
      let m = ino.meta
      var st = ScenarioPathState(type: m.typeRaw, mode: m.mode, size: m.size, content: "", mtime: m.mtime, ctime: m.ctime,
                                 nlinks: m.nlinks, compAlgo: m.compAlgo, checkAlgo: m.checkAlgo, inum: m.inum,
                                 uid: m.unixUid, gid: m.unixGid, modifyTid: bref.modifyTid, damaged: false)
      if m.type == .regularFile || m.type == .symlink {
        var h = SHA256()
        var f: [Finding] = []
        reader.forEachDataBlock(of: ino, path: path, findings: &f) { off, bytes in
          guard off < m.size else { return }
          let n = Int(min(UInt64(bytes.count), m.size - off))
          let isZero = bytes.withUnsafeBytes { b in zeros.withUnsafeBytes { z in memcmp(b.baseAddress!, z.baseAddress!, n) == 0 } }
          if n == 0 || isZero { return }
          withUnsafeBytes(of: off.littleEndian) { h.update(bufferPointer: $0) }
          bytes.withUnsafeBytes { h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        st.content = h.finalize().map { String(format: "%02x", $0) }.joined()
        st.damaged = f.contains { $0.severity == .damage }
      }
      return st
    }
    out.paths["."] = state(pfs.bref, pfs.inode, ".")
    var dirs: [(InodeData, String)] = [(pfs.inode, ".")]
    while let (dir, path) = dirs.popLast() {
      var entries: [DirEntry] = []
      var f: [Finding] = []
      reader.forEachEntry(of: dir, path: path, findings: &f) { entries.append($0); return true }
      if f.contains(where: { $0.severity == .damage }) { out.paths[path]?.damaged = true }
      for e in entries {
        let p = path == "." ? e.nameString : path + "/" + e.nameString
        do {
          let (bref, ino) = try reader.inodeWithBlockref(e.inum)
          out.paths[p] = state(bref, ino, p)
          if ino.meta.type == .directory { dirs.append((ino, p)) }
        } catch {
          out.paths[p] = ScenarioPathState(type: e.typeRaw, mode: 0, size: 0, content: "", mtime: 0, ctime: 0, nlinks: 0, compAlgo: 0,
                                           checkAlgo: 0, inum: e.inum, uid: 0, gid: 0, modifyTid: 0, damaged: true)
        }
      }
    }
    return out
  }
}

/// The outcome a classifier reports (the shape of `expected`).
public struct ScenarioOutcome: Equatable, Sendable, CustomStringConvertible {
  public var quorum: Int
  public var focus: [String]
  public var nodes: [String: String]
  public var differences: [String: [String: String]]

  public var description: String {
    let d = differences.keys.sorted().map { p in "\(p): " + differences[p]!.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
    return "quorum \(quorum) focus \(focus) nodes \(nodes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }) differences:\n  " + d.joined(separator: "\n  ")
  }
}

extension ScenarioSpec {
  /// A simple path-level reference classifier (resync-semantics.md §5 as the fixture
  /// README states it) run on built images: it checks that `expected` describes what the
  /// images really hold. It is not the cluster engine.
  public func referenceOutcome(_ built: BuiltScenario, overwriteSoftMasters: Bool = false) throws -> ScenarioOutcome {
    let members = nodes.filter(isMember)
    var trees: [String: ScenarioNodeTree] = [:]
    for n in members {
      // Safe: build() made an image for every node.
      trees[n.name] = try ScenarioNodeTree.read(image: built.images[n.name]!, clid: clid)
    }
    let masters = members.filter { PFSType(name: $0.type) == .master }
    let configured = max(members.map(\.nmasters).max() ?? 0, masters.count)
    let quorum = configured / 2 + 1
    struct Version: Hashable { var tid: UInt64; var digest: String }
    var digests: [String: String] = [:]
    for (n, t) in trees { digests[n] = t.contentDigest }
    func version(_ n: String) -> Version { Version(tid: trees[n]!.rootModifyTid, digest: digests[n]!) }
    var votes: [Version: [String]] = [:]
    for m in masters where !trees[m.name]!.damaged { votes[version(m.name), default: []].append(m.name) }
    var out = ScenarioOutcome(quorum: quorum, focus: [], nodes: [:], differences: [:])
    guard let (fv, _) = votes.first(where: { $0.value.count >= quorum }) else {
      // No quorum: every path not identical on every member is a conflict for every member.
      let allSame = Set(members.map { version($0.name) }).count == 1 && !members.contains { trees[$0.name]!.damaged }
      for n in members { out.nodes[n.name] = allSame ? "in-sync" : "conflict" }
      var all = Set<String>()
      for t in trees.values { all.formUnion(t.paths.keys) }
      for p in all {
        let states = members.map { trees[$0.name]!.paths[p] }
        let first = states[0]
        let same = states.allSatisfy { s in
          guard let s, let first else { return s == nil && first == nil }
          return s.sameAttributes(as: first) && !s.damaged
        }
        if !same { out.differences[p] = Dictionary(uniqueKeysWithValues: members.map { ($0.name, "conflict") }) }
      }
      return out
    }
    out.focus = members.map(\.name).filter { n in PFSType(name: nodes.first { $0.name == n }!.type) == .master && !trees[n]!.damaged && version(n) == fv }
    let f = trees[out.focus[0]]!
    for n in members {
      let t = trees[n.name]!
      let v = version(n.name)
      // A soft master's differences are its own local changes (damage stays damage).
      let softLocal = PFSType(name: n.type) == .softMaster && !overwriteSoftMasters
      var state: String
      if t.damaged { state = "damaged" } else if v == fv { state = "in-sync" } else if v.digest == fv.digest { state = "stale" } else if v.tid < fv.tid { state = "stale" } else if v.tid > fv.tid { state = "ahead" } else { state = "split-brain" }
      var differs = false
      for p in Set(f.paths.keys).union(t.paths.keys) {
        var cls: String?
        switch (f.paths[p], t.paths[p]) {
        case (.some, nil): cls = "missing"
        case (nil, .some): cls = "extra"
        case (.some(let a), .some(let b)):
          // Same attributes under another modify_tid: stale (tids only); the root's tid
          // is judged below, as "/", only when nothing else differs.
          if a.type != b.type { cls = "shape-mismatch" } else if b.damaged { cls = "damaged" } else if b.sameAttributes(as: a) { cls = p == "." || b.modifyTid == a.modifyTid ? nil : "stale" } else if b.modifyTid < a.modifyTid { cls = "stale" } else if b.modifyTid > a.modifyTid { cls = "ahead" } else { cls = "split-brain" }
        default: cls = nil
        }
        if softLocal, cls != nil, cls != "damaged" { cls = "soft-local" }
        if let cls {
          out.differences[p, default: [:]][n.name] = cls
          differs = true
        }
      }
      if !differs, t.rootModifyTid != f.rootModifyTid {
        out.differences["/", default: [:]][n.name] = softLocal ? "soft-local" : "stale"
        differs = true
      }
      // Equal content and root tid, other tids below: stale (tids only).
      if state == "in-sync", differs { state = "stale" }
      if softLocal, state != "in-sync", state != "damaged" { state = "soft-local" }
      out.nodes[n.name] = state
    }
    return out
  }

  /// Differences between `expected` and the reference outcome of `built` (empty: they agree).
  public func checkExpected(_ built: BuiltScenario) throws -> [String] {
    let got = try referenceOutcome(built)
    var problems: [String] = []
    if let q = expected.quorum, q != got.quorum { problems.append("quorum: expected \(q), images give \(got.quorum)") }
    if Set(expected.focus) != Set(got.focus) { problems.append("focus: expected \(expected.focus), images give \(got.focus)") }
    for n in Set(expected.nodes.keys).union(got.nodes.keys).sorted() where expected.nodes[n] != got.nodes[n] {
      problems.append("node \(n): expected \(expected.nodes[n] ?? "-"), images give \(got.nodes[n] ?? "-")")
    }
    for p in Set(expected.differences.keys).union(got.differences.keys).sorted() where expected.differences[p] != got.differences[p] {
      let e = expected.differences[p].map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") } ?? "-"
      let g = got.differences[p].map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") } ?? "-"
      problems.append("\(p): expected \(e), images give \(g)")
    }
    return problems
  }
}
