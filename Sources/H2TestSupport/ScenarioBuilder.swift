import Crypto
import Foundation
import Hammer2Builder
import Hammer2Format

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
    if d.count >= 1 << 20 { dataCache[s] = d } // big contents are shared between nodes
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
        try tx.createPFS(
          name: spec.pfsName, type: type, clid: clid, fsid: fsid, nmasters: UInt8(clamping: node.nmasters),
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
        guard (error as? FormatError)?.kind.isLocked == true, waited < 1200 else { throw error }
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
          if !bytes.isEmpty { try Edit.writeChunked(ed, inum, at: 0, bytes) }
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

  func apply(_ words: [String], repeat rep: ScenarioSpec.Repeat?, image: String, node: ScenarioSpec.Node, opIndex: Int, time t: UInt64)
    throws
  {
    guard let cmd = words.first, EditWords.commands.contains(cmd) else { throw ScenarioError("unknown operation \(words.first ?? "")") }
    let rest = Array(words.dropFirst())
    let edits = ImageEdits(image: image, pfs: spec.pfsName, openTransaction: self.openTransaction)
    switch cmd {
    case "snapshot":
      let a = try EditWords.Arguments(rest)
      var uuids = UUIDSource.seeded(fnv64("\(spec.name)/\(node.name)/snapshot/\(opIndex)"))
      try edits.snapshot(name: try a.arg(0, cmd), uuids: &uuids, time: t)
    case "corrupt":
      let a = try EditWords.Arguments(rest)
      let off = try DeliberateDamage.corrupt(
        image: image, pfs: spec.pfsName, path: try a.arg(0, cmd), block: Int(a.options["block"] ?? "0") ?? 0,
        openImage: { path in try self.retryLocked { try WritableImage(path: path) } })
      damaged[image, default: []].append(off)
    default:
      let words = rep.map { r in ((r.start ?? 0)..<(r.start ?? 0) + r.count).map { EditWords.substitute(rest, $0) } } ?? [rest]
      try edits.apply(try words.map { try EditWords.edit(cmd, $0, data: data) }, time: t)
    }
  }
}
