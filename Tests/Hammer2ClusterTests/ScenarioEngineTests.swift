import Foundation
import H2TestSupport
import Hammer2Format
import Testing

/// Every scenario in fixtures/, built at test time: `diff` reports the expected focus,
/// node states and differing paths; `resync` brings every node to the focus's content
/// and keeps the old content in a snapshot. Not serialized: every case works on its own
/// copies of the shared fixture images (`copyOfSharedBuild`), so the cases run side by
/// side instead of one long chain at the end of the run.
@Suite struct ScenarioEngineTests {
  static let specs: [String] = ((try? ScenarioSpec.allSpecs()) ?? []).map(\.name)

  struct Built {
    var spec: ScenarioSpec
    var dir: String
    var built: BuiltScenario
    /// Images in spec order, as relative paths from `dir`.
    var images: [String]
    func name(_ image: String) -> String {
      spec.nodes.first { built.images[$0.name].map { ($0 as NSString).lastPathComponent } == image }!.name
    }
    func image(_ node: String) -> String { (built.images[node]! as NSString).lastPathComponent }
  }

  func build(_ name: String) throws -> Built {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == name })
    let dir = makeTempDir("h2scen-\(name)")
    let built = try spec.copyOfSharedBuild(into: dir)
    let images = spec.nodes.map { (built.images[$0.name]! as NSString).lastPathComponent }
    return Built(spec: spec, dir: dir, built: built, images: images)
  }

  @Test func everyRequiredScenarioExists() {
    for n in [
      "three-masters-one-behind", "three-masters-one-ahead", "master-two-slaves", "five-masters-two-behind", "soft-master",
      "split-brain", "corrupted-block", "missing-root", "big-directory", "big-file", "mixed-compression",
    ] {
      #expect(Self.specs.contains(n), "fixtures/\(n).json")
    }
  }

  @Test(arguments: specs)
  func diffReportsTheExpectedOutcome(name: String) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let r = try run("h2resync", ["diff", "--deep", "--json"] + b.images, cwd: b.dir)
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
    let exp = b.spec.expected
    if exp.focus.isEmpty {
      #expect(doc["focus"] is NSNull, "\(name): expected no focus")
    } else {
      #expect(exp.focus.map(b.image).contains(doc["focus"] as? String ?? ""), "\(name): focus \(doc["focus"] ?? "nil")")
    }
    if let q = exp.quorum { #expect((doc["quorum"] as? [String: Any])?["nquorum"] as? Int == q) }
    for node in doc["nodes"] as! [[String: Any]] {
      let n = b.name(node["image"] as! String)
      // The focus is printed as such (one state for text and JSON); the spec lists it in-sync.
      let want = node["image"] as? String == doc["focus"] as? String ? "focus" : exp.nodes[n]
      #expect(node["state"] as? String == want, "\(name): node \(n) state \(node["state"] ?? "")")
    }
    var got: [String: [String: String]] = [:]
    for d in doc["differences"] as! [[String: Any]] {
      let classes = (d["nodes"] as! [String: String]).filter { $0.value != "in-sync" }
      got[d["path"] as! String] = Dictionary(uniqueKeysWithValues: classes.map { (b.name($0.key), $0.value) })
    }
    for (path, want) in exp.differences where got[path] != want {
      Issue.record("\(name): \(path): got \(got[path] ?? [:]), expected \(want)")
    }
    for path in Set(got.keys).subtracting(exp.differences.keys) {
      Issue.record("\(name): \(path) reported (\(got[path]!)) but not expected")
    }
    let excluded = Set((doc["excluded"] as! [[String: Any]]).map { b.name($0["image"] as! String) })
    #expect(excluded == Set(exp.excluded ?? []))
    // A soft master's own changes (soft-local) set no exit code.
    let counted = exp.differences.values.contains { $0.values.contains { $0 != "soft-local" } }
    let want: Int32 = exp.focus.isEmpty ? 2 : counted ? 1 : 0
    #expect(r.status == want, "\(name): exit \(r.status)")
  }

  @Test(arguments: specs)
  func resyncBringsEveryNodeToTheFocus(name: String) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let members = b.spec.nodes.filter { b.spec.isMember($0) }.map(\.name)
    let memberImages = members.map(b.image)
    guard let focusName = b.spec.expected.focus.first else {
      let before = b.images.map { imageDigest(b.dir + "/" + $0) }
      let r = try run("h2resync", ["resync", "--yes", "--deep"] + b.images, cwd: b.dir)
      #expect(r.status == 2, "\(name): no quorum must need a human")
      #expect(b.images.map { imageDigest(b.dir + "/" + $0) } == before, "\(name): nothing may be written")
      return
    }
    let old = try Dictionary(uniqueKeysWithValues: members.map { ($0, try extractState(b.dir + "/" + b.image($0), pfs: b.spec.pfsName)) })
    let changed = Set(b.spec.expected.nodes.filter { $0.value != "in-sync" }.keys)
    let extra = b.spec.nodes.contains { $0.type == "SOFT_MASTER" } ? ["--overwrite-soft-masters"] : []
    let r = try run("h2resync", ["resync", "--yes", "--deep", "--snapshot-name", "pre-resync"] + extra + b.images, cwd: b.dir)
    #expect(r.status == 0, "\(name): \(r.stdout.suffix(500)) \(r.stderr)")
    let diff = try run("h2resync", ["diff", "--deep"] + b.images, cwd: b.dir)
    #expect(diff.status == 0, "\(name): \(diff.stdout.suffix(500))")
    // DragonFly's own quorum (hammer2_cluster_check on the PFS roots) counts every master.
    let q = try DragonFlyQuorum.compute(images: memberImages.map { b.dir + "/" + $0 }, clid: try #require(H2UUID(string: b.spec.clid)))
    #expect(q.voters == Set(q.masters.keys), "\(name): \(q)")
    let focusState = try extractState(b.dir + "/" + b.image(focusName), pfs: b.spec.pfsName)
    #expect(focusState == old[focusName], "\(name): the focus changed")
    for (n, img) in zip(members, memberImages) {
      #expect(try extractState(b.dir + "/" + img, pfs: b.spec.pfsName) == focusState, "\(name): node \(n) differs from the focus")
      if changed.contains(n), b.spec.expected.nodes[n] != "damaged" {
        #expect(try extractState(b.dir + "/" + img, pfs: "pre-resync") == old[n], "\(name): the snapshot of \(n) lost its old content")
      }
      #expect(auditFreemap(try Volume.open(path: b.dir + "/" + img)).isEmpty)
    }
  }

  /// Text and JSON reports, golden-tested (`RECORD_GOLDEN=1` rewrites the files).
  @Test(arguments: ["three-masters-one-behind", "split-brain-two-masters", "corrupted-block"])
  func reportsMatchGoldenFiles(name: String) throws {
    guard Self.specs.contains(name) else { return }
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")
    for (suffix, args) in [("txt", ["diff", "--deep"]), ("json", ["diff", "--deep", "--json"])] {
      let out = try run("h2resync", args + b.images, cwd: b.dir).stdout
      let file = golden.appendingPathComponent("\(name).diff.\(suffix)")
      if ProcessInfo.processInfo.environment["RECORD_GOLDEN"] != nil {
        try out.write(to: file, atomically: true, encoding: .utf8)
        Issue.record("recorded \(file.lastPathComponent); run again without RECORD_GOLDEN")
        continue
      }
      let want = try String(contentsOf: file, encoding: .utf8)
      #expect(out == want, "\(name).\(suffix) differs from its golden file")
    }
  }
}
