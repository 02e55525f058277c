import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

/// Every scenario in fixtures/, built at test time: the engine's report (what `diff`
/// renders) has the expected focus, node states and differing paths; its plan applied
/// (what `resync` does) brings every node to the focus's content and keeps the old
/// content in a snapshot. In-process; the command's text and JSON are golden-tested on
/// three scenarios. Not serialized: every case works on its own
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
    /// The node of an image (a relative path from `dir`, or a full path).
    func name(_ image: String) -> String {
      let file = (image as NSString).lastPathComponent
      return spec.nodes.first { built.images[$0.name].map { ($0 as NSString).lastPathComponent } == file }!.name
    }
    func image(_ node: String) -> String { (built.images[node]! as NSString).lastPathComponent }
    /// The full path of a node's image.
    func path(_ node: String) -> String { built.images[node]! }
    /// Images in spec order, full paths.
    var paths: [String] { images.map { dir + "/" + $0 } }
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

  /// The report of a deep walk of the scenario's images, in-process (what `diff --deep`
  /// renders; its text and JSON are golden-tested below).
  func analyze(_ b: Built, _ mode: WalkMode = .deep) throws -> ClusterReport {
    try ClusterReport.analyze(try ClusterGroup.discover(images: b.paths, name: nil, clid: nil), AnalysisOptions(mode: mode))
  }

  @Test(arguments: specs)
  func diffReportsTheExpectedOutcome(name: String) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let report = try analyze(b)
    let nodes = report.group.nodes
    let exp = b.spec.expected
    if exp.focus.isEmpty {
      #expect(report.focus == nil, "\(name): expected no focus")
    } else {
      #expect(exp.focus.map(b.path).contains(report.focus?.image ?? ""), "\(name): focus \(report.focus?.image ?? "nil")")
    }
    if let q = exp.quorum { #expect(report.voting.nquorum == q) }
    for node in nodes {
      let n = b.name(node.image)
      // The focus is reported as such (one state for text and JSON); the spec lists it in-sync.
      let want = node.index == report.focus?.index ? "focus" : exp.nodes[n]
      #expect(report.nodeStates[node.index].rawValue == want, "\(name): node \(n) state \(report.nodeStates[node.index])")
    }
    var got: [String: [String: String]] = [:]
    for d in report.differences {
      let classes = nodes.filter { d.classes[$0.index] != .inSync }
      got[d.path] = Dictionary(uniqueKeysWithValues: classes.map { (b.name($0.image), d.classes[$0.index].rawValue) })
    }
    for (path, want) in exp.differences where got[path] != want {
      Issue.record("\(name): \(path): got \(got[path] ?? [:]), expected \(want)")
    }
    for path in Set(got.keys).subtracting(exp.differences.keys) {
      Issue.record("\(name): \(path) reported (\(got[path]!)) but not expected")
    }
    let excluded = Set(report.group.excluded.map { b.name($0.image) })
    #expect(excluded == Set(exp.excluded ?? []))
    // A soft master's own changes (soft-local) set no exit code.
    let counted = exp.differences.values.contains { $0.values.contains { $0 != "soft-local" } }
    let want: Int32 = exp.focus.isEmpty ? 2 : counted ? 1 : 0
    #expect(report.exit.rawValue == want, "\(name): exit \(report.exit)")
  }

  /// `resync --yes --deep --snapshot-name pre-resync` (with --overwrite-soft-masters
  /// when the scenario has a soft master), in-process: the plan applied as it is, then
  /// a deep walk finds every node in sync.
  @Test(arguments: specs)
  func resyncBringsEveryNodeToTheFocus(name: String) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let members = b.spec.nodes.filter { b.spec.isMember($0) }.map(\.name)
    let memberImages = members.map(b.path)
    var analysis = AnalysisOptions(mode: .deep)
    var options = ResyncOptions()
    options.snapshotName = "pre-resync"
    if b.spec.nodes.contains(where: { $0.type == "SOFT_MASTER" }) {
      options.overwriteSoftMasters = true
      analysis.overwriteSoftMasters = true
    }
    let report = try ClusterReport.analyze(try ClusterGroup.discover(images: b.paths, name: nil, clid: nil), analysis)
    let plan = ResyncPlan(report: report, options: options)
    guard let focusName = b.spec.expected.focus.first else {
      let before = b.paths.map(imageDigest)
      #expect(plan.focus == nil && report.exit == .needsHuman, "\(name): no quorum must need a human")
      #expect(try Resyncer.apply(plan).isEmpty)
      #expect(b.paths.map(imageDigest) == before, "\(name): nothing may be written")
      return
    }
    let old = try Dictionary(uniqueKeysWithValues: members.map { ($0, try extractState(b.path($0), pfs: b.spec.pfsName)) })
    let changed = Set(b.spec.expected.nodes.filter { $0.value != "in-sync" }.keys)
    #expect(plan.refusal == nil && plan.spaceProblem == nil, "\(name): \(String(describing: plan.refusal))")
    _ = try Resyncer.apply(plan)
    let after = try analyze(b)
    #expect(after.exit == .ok, "\(name): \(after.differences.map(\.path).prefix(10))")
    // DragonFly's own quorum (hammer2_cluster_check on the PFS roots) counts every master.
    let q = try DragonFlyQuorum.compute(images: memberImages, clid: try #require(H2UUID(string: b.spec.clid)))
    #expect(q.voters == Set(q.masters.keys), "\(name): \(q)")
    let focusState = try extractState(b.path(focusName), pfs: b.spec.pfsName)
    #expect(focusState == old[focusName], "\(name): the focus changed")
    for (n, img) in zip(members, memberImages) {
      #expect(try extractState(img, pfs: b.spec.pfsName) == focusState, "\(name): node \(n) differs from the focus")
      if changed.contains(n), b.spec.expected.nodes[n] != "damaged" {
        #expect(try extractState(img, pfs: "pre-resync") == old[n], "\(name): the snapshot of \(n) lost its old content")
      }
      #expect(auditFreemap(try Volume.open(path: img)).isEmpty)
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
