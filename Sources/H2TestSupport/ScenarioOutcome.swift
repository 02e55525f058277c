import Crypto
import Foundation
import Hammer2Format

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
    let common =
      type == o.type && mode == o.mode && mtime == o.mtime && ctime == o.ctime && nlinks == o.nlinks
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
    guard
      let pfs = try volume.pfsList(findings: &findings).first(where: {
        $0.clid.description == clid.lowercased() && $0.inode.meta.pfsSubtype == 0
      })
    else {
      throw ScenarioError("\(image): no PFS of cluster \(clid)")
    }
    let reader = PFSReader(volume: volume, pfs: pfs)
    var out = ScenarioNodeTree(rootModifyTid: pfs.bref.modifyTid, paths: [:])
    let zeros = [UInt8](repeating: 0, count: H2.pbufSize)
    func state(_ bref: Blockref, _ ino: InodeData, _ path: String) -> ScenarioPathState {
      let m = ino.meta
      var st = ScenarioPathState(
        type: m.typeRaw, mode: m.mode, size: m.size, content: "", mtime: m.mtime, ctime: m.ctime,
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
      reader.forEachEntry(of: dir, path: path, findings: &f) {
        entries.append($0)
        return true
      }
      if f.contains(where: { $0.severity == .damage }) { out.paths[path]?.damaged = true }
      for e in entries {
        let p = path == "." ? e.nameString : path + "/" + e.nameString
        do {
          let (bref, ino) = try reader.inodeWithBlockref(e.inum)
          out.paths[p] = state(bref, ino, p)
          if ino.meta.type == .directory { dirs.append((ino, p)) }
        } catch {
          out.paths[p] = ScenarioPathState(
            type: e.typeRaw, mode: 0, size: 0, content: "", mtime: 0, ctime: 0, nlinks: 0, compAlgo: 0,
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
    let d = differences.keys.sorted().map { p in
      "\(p): " + differences[p]!.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }
    return "quorum \(quorum) focus \(focus) nodes \(nodes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }) differences:\n  "
      + d.joined(separator: "\n  ")
  }
}

extension ScenarioSpec {
  /// A simple path-level reference classifier (docs/resync-semantics.md §5 as the fixture
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
    struct Version: Hashable {
      var tid: UInt64
      var digest: String
    }
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
    out.focus = members.map(\.name).filter { n in
      PFSType(name: nodes.first { $0.name == n }!.type) == .master && !trees[n]!.damaged && version(n) == fv
    }
    let f = trees[out.focus[0]]!
    for n in members {
      let t = trees[n.name]!
      let v = version(n.name)
      // A soft master's differences are its own local changes (damage stays damage).
      let softLocal = PFSType(name: n.type) == .softMaster && !overwriteSoftMasters
      var state: String
      if t.damaged {
        state = "damaged"
      } else if v == fv {
        state = "in-sync"
      } else if v.digest == fv.digest {
        state = "stale"
      } else if v.tid < fv.tid {
        state = "stale"
      } else if v.tid > fv.tid {
        state = "ahead"
      } else {
        state = "split-brain"
      }
      var differs = false
      for p in Set(f.paths.keys).union(t.paths.keys) {
        var cls: String?
        switch (f.paths[p], t.paths[p]) {
        case (.some, nil): cls = "missing"
        case (nil, .some): cls = "extra"
        case (.some(let a), .some(let b)):
          // Same attributes under another modify_tid: stale (tids only); the root's tid
          // is judged below, as "/", only when nothing else differs.
          if a.type != b.type {
            cls = "shape-mismatch"
          } else if b.damaged {
            cls = "damaged"
          } else if b.sameAttributes(as: a) {
            cls = p == "." || b.modifyTid == a.modifyTid ? nil : "stale"
          } else if b.modifyTid < a.modifyTid {
            cls = "stale"
          } else if b.modifyTid > a.modifyTid {
            cls = "ahead"
          } else {
            cls = "split-brain"
          }
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
