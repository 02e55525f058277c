import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// In sync means DragonFly counts the node (issue 16): tid-only differences are stale,
/// soft masters' own changes are soft-local, one node state for every output.
@Suite struct InSyncTests {
  struct Built {
    var spec: ScenarioSpec
    var dir: String
    var built: BuiltScenario
    var images: [String]
    func image(_ node: String) -> String { built.images[node]! }
  }

  func build(_ name: String) throws -> Built {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == name })
    let dir = makeTempDir("h2insync-\(name)")
    let built = try spec.copyOfSharedBuild(into: dir)
    return Built(spec: spec, dir: dir, built: built, images: spec.nodes.map { built.images[$0.name]! })
  }

  /// DragonFly's quorum from the images' PFS roots counts every master of the set.
  func expectDragonFlyCountsEveryMaster(_ b: Built, _ context: String) throws {
    let q = try DragonFlyQuorum.compute(images: b.images, clid: try #require(H2UUID(string: b.spec.clid)))
    #expect(q.tid != nil && q.voters == Set(q.masters.keys), "\(context): \(q)")
  }

  struct Codes: Equatable, CustomStringConvertible {
    var diff: Int32, check: Int32, resync: Int32, diffAfter: Int32, checkAfter: Int32
    var description: String { "diff \(diff) check \(check) resync \(resync), then diff \(diffAfter) check \(checkAfter)" }
  }

  /// diff, check, resync, then diff and check again, all with `flags`.
  func exitCodes(_ b: Built, _ flags: [String], resyncOutput: inout String) throws -> Codes {
    let lock = ["--lock-file", b.dir + "/lock"]
    let diff = try run("h2resync", ["diff"] + flags + b.images)
    let check = try run("h2resync", ["check", "--quiet"] + lock + flags + b.images)
    let resync = try run("h2resync", ["resync", "--yes"] + flags + b.images)
    resyncOutput = resync.stdout + resync.stderr
    let diffAfter = try run("h2resync", ["diff"] + flags + b.images)
    let checkAfter = try run("h2resync", ["check", "--quiet"] + lock + flags + b.images)
    return Codes(diff: diff.status, check: check.status, resync: resync.status, diffAfter: diffAfter.status, checkAfter: checkAfter.status)
  }

  /// The three scenarios of the issue: exit codes of diff, check and resync with and
  /// without --overwrite-soft-masters; after every resync DragonFly counts every master.
  @Test(arguments: ["node-local-snapshot", "tids-only-deep", "soft-master-local-changes"], [false, true])
  func exitCodesFollowTheRules(name: String, overwrite: Bool) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let flags = overwrite ? ["--overwrite-soft-masters"] : []
    let soft = b.spec.nodes.first { $0.type == "SOFT_MASTER" }.map { b.image($0.name) }
    let softBefore = soft.map(imageDigest)
    var out = ""
    let codes = try exitCodes(b, flags, resyncOutput: &out)
    #expect(codes == Codes(diff: 1, check: 1, resync: 0, diffAfter: 0, checkAfter: 0), "\(name) \(flags): \(codes)\n\(out.suffix(800))")
    try expectDragonFlyCountsEveryMaster(b, "\(name) \(flags)")
    if let soft, let softBefore {
      if overwrite {
        #expect(imageDigest(soft) != softBefore, "\(name): --overwrite-soft-masters must write the soft master")
        #expect(!out.contains("left alone"))
      } else {
        #expect(imageDigest(soft) == softBefore, "\(name): the soft master must be left alone")
        // Named, with how many paths differ there (8 in the spec).
        #expect(out.contains("soft master \(soft) left alone: 8 paths differ"), "\(out.suffix(800))")
        // Overwriting it afterwards still works: its differences then count.
        let d = try run("h2resync", ["diff", "--overwrite-soft-masters"] + b.images)
        #expect(d.status == 1)
      }
    }
  }

  /// Damage on a soft master's blocks still counts, though its own changes do not.
  @Test func damageOnASoftMasterStillCounts() throws {
    let b = try build("soft-master-local-changes")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let lock = ["--lock-file", b.dir + "/lock"]
    #expect(try run("h2resync", ["resync", "--yes"] + b.images).status == 0)
    #expect(try run("h2resync", ["check", "--quiet"] + lock + b.images).status == 0)
    try mk(["corrupt", b.image("SM"), "--pfs", "DATA", "media/clip.bin", "--block", "0"])
    let check = try run("h2resync", ["check"] + lock + b.images)
    #expect(check.status == 1, "\(check.stdout)")
    #expect(check.stdout.contains("\((b.image("SM") as NSString).lastPathComponent)=damaged"), "\(check.stdout)")
  }

  /// One node state for text, JSON and metrics; soft-local per node in all three.
  @Test func oneNodeStateForTextJSONAndMetrics() throws {
    let b = try build("soft-master-local-changes")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let metrics = b.dir + "/h2.prom"
    let text = try run("h2resync", ["check", "--lock-file", b.dir + "/lock", "--metrics", metrics] + b.images)
    let json = try run("h2resync", ["diff", "--json", "--deep"] + b.images)
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    let prom = try String(contentsOfFile: metrics, encoding: .utf8)
    let want = ["A": "focus", "B": "in-sync", "C": "stale", "S": "stale", "SM": "soft-local"]
    for (node, state) in want {
      let img = b.image(node)
      let label = (img as NSString).lastPathComponent
      #expect(text.stdout.contains("\(label)=\(state)"), "check text: \(text.stdout)")
      let jnode = (doc["nodes"] as! [[String: Any]]).first { $0["image"] as? String == img }
      #expect(jnode?["state"] as? String == state, "json \(node): \(jnode?["state"] ?? "nil")")
      #expect(
        prom.contains("h2resync_check_node_state{clid=\"\(b.spec.clid.lowercased())\",image=\"\(img)\",state=\"\(state)\"} 1"),
        "metrics \(node)")
    }
    let softLocal = (doc["summary"] as! [String: Any])["soft_local"] as! [String: Int]
    #expect(softLocal[b.image("SM")] == 8 && softLocal[b.image("C")] == 0)
    #expect(prom.contains("h2resync_check_soft_local{clid=\"\(b.spec.clid.lowercased())\",image=\"\(b.image("SM"))\"} 8"))
    #expect(prom.contains("h2resync_check_differences{clid=\"\(b.spec.clid.lowercased())\",image=\"\(b.image("SM"))\"} 0"))
    #expect(text.stdout.contains("8 soft-local paths"))
  }

  /// The focus's JSON state equals its text state in the golden reports.
  @Test(arguments: ["three-masters-one-behind", "split-brain-two-masters", "corrupted-block"])
  func goldenNodeStatesAgree(name: String) throws {
    let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")
    let text = try String(contentsOf: golden.appendingPathComponent("\(name).diff.txt"), encoding: .utf8)
    let json = try Data(contentsOf: golden.appendingPathComponent("\(name).diff.json"))
    let doc = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
    let lines = text.split(separator: "\n").map(String.init)
    for node in doc["nodes"] as! [[String: Any]] {
      let image = node["image"] as! String
      let row = try #require(lines.first { $0.hasPrefix(image + " ") }, "\(name): no table row for \(image)")
      let textState = String(row.split(separator: " ").last!)
      #expect(node["state"] as? String == textState, "\(name) \(image): JSON \(node["state"] ?? "nil"), text \(textState)")
      if image == doc["focus"] as? String { #expect(textState == "focus") }
    }
  }

  /// A tid-only resync stamps the focus's tids: inode blocks and the index path above
  /// them, never a DATA block, never the node's own PFS fields or snapshots.
  @Test(arguments: ["node-local-snapshot", "tids-only-deep"], [false, true])
  func tidOnlyResyncWritesNoData(name: String, snapshot: Bool) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let c = b.image("C")
    // C's own snapshot first: its pfs_lsnap_tid and that PFS must survive untouched.
    try mk(["snapshot", c, "--pfs", "DATA", "C.own-snap", "--time", "1700000500"])
    if name == "node-local-snapshot" {
      // That raised C's root tid to A's and B's: one more snapshot on each keeps C behind.
      for n in ["A", "B"] { try mk(["snapshot", b.image(n), "--pfs", "DATA", "DATA.second", "--time", "1700000600"]) }
    }
    let pfsBefore = try pfsRows(c)
    let group = try ClusterGroup.discover(images: b.images, name: "DATA", clid: nil)
    let walker = ClusterWalker(group: group, mode: .fast)
    var diffs: [Difference] = []
    walker.run { diffs.append($0) }
    let ci = try #require(group.nodes.firstIndex { $0.image == c })
    #expect(walker.nodeStates[ci] == .stale)
    #expect(!diffs.isEmpty && diffs.allSatisfy { $0.tidsOnly[ci] && $0.classes[ci] == .stale && $0.details[ci] == ["tids only"] })
    if name == "node-local-snapshot" { #expect(diffs.map(\.path) == ["/"]) }
    var options = ResyncOptions()
    options.snapshot = snapshot
    options.snapshotName = "pre-resync"
    let resyncer = Resyncer(group: group, focus: try #require(walker.focus), options: options)
    let targets = resyncer.targets(states: walker.nodeStates, differences: diffs)
    #expect(targets.map(\.image) == [c])
    let outcomes = try resyncer.apply(targets: targets, differences: diffs)
    let o = try #require(outcomes.first)
    #expect(o.bytesByType["DATA", default: 0] == 0, "\(o.bytesByType)")
    #expect(o.bytesByType["INODE", default: 0] > 0)
    #expect(o.bytesByType.values.reduce(0, +) == o.bytesWritten, "\(o.bytesByType) vs \(o.bytesWritten)")
    #expect(o.tidsStamped == diffs.count)
    // Node-local fields and the node's own snapshot are as they were.
    let all = try pfsRows(c)
    let ownSnapshot = all.first { $0.name == "pre-resync" }
    #expect((ownSnapshot != nil) == snapshot)
    let after = all.filter { $0.name != "pre-resync" }
    for (x, y) in zip(pfsBefore, after) {
      #expect(x.name == y.name && x.type == y.type && x.fsid == y.fsid && x.clid == y.clid, "\(x) -> \(y)")
      if x.name != "DATA" {
        #expect(x.tid == y.tid && x.lsnap == y.lsnap, "\(x.name) changed")
      } else {
        // The node's own pfs_lsnap_tid, never the focus's: resync's own snapshot (when
        // taken) sets it, as any snapshot of the node does.
        #expect(y.lsnap == (ownSnapshot?.lsnap ?? x.lsnap), "\(x) -> \(y)")
      }
    }
    #expect(pfsBefore.count == after.count)
    try expectDragonFlyCountsEveryMaster(b, name)
    #expect(try run("h2resync", ["diff", "--deep"] + b.images).status == 0)
    for img in b.images { #expect(auditFreemap(try Volume.open(path: img)).isEmpty) }
  }

  /// A node whose tids are HIGHER than the focus's with equal content (it rewrote a file
  /// with the same bytes and times, and added and removed a name): its tids are stamped
  /// down, data blockrefs and directory entries included (an inode's tid is at least its
  /// children's), still without a DATA block, and DragonFly then counts it.
  @Test func higherTidsAreStampedDown() throws {
    let b = try build("tids-only-deep")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let c = b.image("C")
    let same = b.dir + "/report.txt"
    let cat = try run("h2resync", ["cat", b.image("A"), "--pfs", "DATA", "docs/report.txt"])
    #expect(cat.status == 0)
    FileManager.default.createFile(atPath: same, contents: Data(cat.stdout.utf8))
    try mk(["write", c, "--pfs", "DATA", "docs/report.txt", "--from", same, "--time", "1700000000"])
    try mk(["link", c, "--pfs", "DATA", "media/clip.bin", "media/clip-2.bin", "--time", "1700000000"])
    try mk(["rm", c, "--pfs", "DATA", "media/clip-2.bin", "--time", "1700000000"])
    let group = try ClusterGroup.discover(images: b.images, name: "DATA", clid: nil)
    let walker = ClusterWalker(group: group, mode: .fast)
    var diffs: [Difference] = []
    walker.run { diffs.append($0) }
    let ci = try #require(group.nodes.firstIndex { $0.image == c })
    let report = try #require(diffs.first { $0.path == "docs/report.txt" })
    #expect(report.classes[ci] == .stale && report.tidsOnly[ci], "\(report.details[ci])")
    let resyncer = Resyncer(group: group, focus: try #require(walker.focus), options: ResyncOptions())
    let targets = resyncer.targets(states: walker.nodeStates, differences: diffs)
    let o = try #require(try resyncer.apply(targets: targets, differences: diffs).first)
    #expect(o.bytesByType["DATA", default: 0] == 0, "\(o.bytesByType)")
    let after = try run("h2resync", ["diff", "--deep"] + b.images)
    #expect(after.status == 0, "\(after.stdout.suffix(800))")
    try expectDragonFlyCountsEveryMaster(b, "higher tids")
    for img in b.images { #expect(auditFreemap(try Volume.open(path: img)).isEmpty) }
  }

  struct PFSRow: CustomStringConvertible {
    var name: String, type: UInt8, fsid: String, clid: String, lsnap: UInt64, tid: UInt64
    var description: String { "\(name) type \(type) fsid \(fsid) clid \(clid) lsnap \(lsnap) tid \(tid)" }
  }

  func pfsRows(_ image: String) throws -> [PFSRow] {
    var findings: [Finding] = []
    return try Volume.open(path: image).pfsList(findings: &findings).map {
      PFSRow(
        name: $0.name, type: $0.inode.meta.pfsTypeRaw, fsid: $0.fsid.description, clid: $0.clid.description,
        lsnap: $0.inode.meta.pfsLsnapTid, tid: $0.bref.modifyTid)
    }.sorted { $0.name < $1.name }
  }
}
