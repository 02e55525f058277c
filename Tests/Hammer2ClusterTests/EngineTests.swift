import Foundation
import H2TestSupport
import Hammer2Builder
import Hammer2Cluster
import Hammer2Format
import Testing

/// The engine in-process (issue 17 item 1): a scenario from fixtures/ is copied from the
/// run's shared build (`copyOfSharedBuild`), then `ClusterReport.analyze`, `ResyncPlan`
/// and `Resyncer.apply(_:)` are called directly, with no CLI in between. Every test
/// works on its own copies: they run side by side.
@Suite struct EngineTests {
  struct Built {
    var spec: ScenarioSpec
    var dir: String
    var images: [String]
    var byName: [String: String]
    func index(_ node: String, in group: ClusterGroup) -> Int { group.nodes.firstIndex { $0.image == byName[node] }! }
  }

  func build(_ name: String) throws -> Built {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == name })
    let dir = makeTempDir("h2engine-\(name)")
    let built = try spec.copyOfSharedBuild(into: dir)
    return Built(spec: spec, dir: dir, images: spec.nodes.map { built.images[$0.name]! }, byName: built.images)
  }

  func analyze(_ b: Built, _ mode: WalkMode = .deep, trusting: H2UUID? = nil) throws -> ClusterReport {
    var options = AnalysisOptions(mode: mode)
    options.trusted = trusting
    return try ClusterReport.analyze(try ClusterGroup.discover(images: b.images, name: nil, clid: nil), options)
  }

  /// The report's node states, focus and verdict are the ones the scenario expects.
  @Test(arguments: [
    "three-masters-one-behind", "split-brain-two-masters", "node-local-snapshot", "master-two-slaves",
    "soft-master-local-changes",
  ])
  func reportStatesAndExitClass(name: String) throws {
    let b = try build(name)
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let report = try analyze(b)
    let exp = b.spec.expected
    for (node, want) in exp.nodes {
      let i = b.index(node, in: report.group)
      let state = report.nodeStates[i]
      #expect(state.rawValue == (report.focus?.index == i ? "focus" : want), "\(name): \(node) is \(state)")
    }
    if exp.focus.isEmpty {
      #expect(report.focus == nil)
      #expect(report.exit == .needsHuman)
    } else {
      #expect(exp.focus.map { b.byName[$0] }.contains(report.focus?.image))
      let counted = exp.differences.values.contains { $0.values.contains { $0 != "soft-local" } }
      #expect(report.exit == (counted ? .findings : .ok), "\(name): \(report.exit)")
    }
    #expect(Set(report.differences.map(\.path)) == Set(exp.differences.keys), "\(name)")
  }

  /// A node-local snapshot on two masters: the plan for the third stamps the root's tid
  /// and copies nothing; applying it writes no DATA block, and the cluster is in sync.
  @Test func nodeLocalSnapshotPlansTidsOnly() throws {
    let b = try build("node-local-snapshot")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let report = try analyze(b, .fast)
    let plan = ResyncPlan(report: report, options: ResyncOptions())
    #expect(plan.refusal == nil && plan.spaceProblem == nil)
    let t = try #require(plan.targets.first)
    #expect(plan.targets.map(\.node.image) == [b.byName["C"]])
    #expect(t.state == .stale)
    #expect(t.actions.map(\.kind) == [.root(tidsOnly: true)], "\(t.actions.map(\.kind))")
    let outcomes = try Resyncer.apply(plan)
    let o = try #require(outcomes.first)
    #expect(o.bytesByType["DATA", default: 0] == 0, "\(o.bytesByType)")
    #expect(o.tidsStamped == 1)
    let after = try analyze(b, .deep)
    #expect(after.exit == .ok, "\(after.nodeStates)")
    #expect(after.nodeStates.allSatisfy { $0 == .inSync || $0 == .focus })
  }

  /// The plan of a stale master holds one action per differing path, each with what the
  /// walk read (the focus's blockref to copy from); applying exactly it brings the node
  /// in sync, and the plan of the new report is empty.
  @Test func resyncAppliesThePlanThenTheReportIsInSync() throws {
    let b = try build("three-masters-one-behind")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let report = try analyze(b)
    var options = ResyncOptions()
    options.snapshot = false
    let plan = ResyncPlan(report: report, options: options)
    let t = try #require(plan.targets.first)
    #expect(plan.targets.count == 1 && t.node.image == b.byName["C"])
    let kinds = Dictionary(t.actions.map { ($0.path, $0.kind) }, uniquingKeysWith: { a, _ in a })
    #expect(kinds["config"] == .replace && kinds["build"] == .remove && kinds["config/settings.ini"] == .create, "\(kinds)")
    #expect(kinds["src"] == .stampTids && kinds["data/mixed.bin"] == .copyContent(rewriteAll: false), "\(kinds)")
    // Below a removed name nothing more is planned: the removal takes it.
    #expect(kinds["build/obj/x.o"] == nil)
    #expect(t.actions.filter { $0.kind == .create || $0.kind == .replace }.allSatisfy { $0.focusInode != nil && $0.focusEntry != nil })
    let before = imageDigest(b.byName["A"]!)
    let outcomes = try Resyncer.apply(plan)
    #expect(outcomes.map(\.image) == [b.byName["C"]!])
    #expect(imageDigest(b.byName["A"]!) == before, "the focus is never written")
    let after = try analyze(b)
    #expect(after.exit == .ok, "\(after.differences.map(\.path))")
    #expect(ResyncPlan(report: after, options: options).isEmpty)
  }

  /// `trusted` is an input of the one walk: with no quorum (two masters, equal tids,
  /// different content) the trusted node is the focus, the other is the plan's target,
  /// and applying the plan leaves a cluster the quorum agrees on.
  @Test func trustedNodeIsTheFocusOfTheSameWalk() throws {
    let b = try build("split-brain-two-masters")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let untrusted = try analyze(b)
    #expect(untrusted.focus == nil)
    #expect(ResyncPlan(report: untrusted, options: ResyncOptions()).refusal?.kind == .noQuorum(nquorum: 2))
    let a = try #require(untrusted.group.nodes.first { $0.image == b.byName["A"] })
    let report = try analyze(b, trusting: a.pfs.fsid)
    #expect(report.focus?.image == a.image)
    #expect(report.voting.trusted == a.index && report.voting.nquorum == 1)
    // The group is not rewritten: both nodes are still masters as discovered.
    #expect(report.group.nodes.allSatisfy { $0.role == .master })
    #expect(report.notes.contains(.trusting(fsid: a.pfs.fsid.description)))
    let plan = ResyncPlan(report: report, options: ResyncOptions())
    #expect(plan.targets.map(\.node.image) == [b.byName["B"]])
    _ = try Resyncer.apply(plan)
    #expect(try analyze(b).exit == .ok)
  }

  /// The cache budget is validated once and split by one rule.
  @Test func cacheBudgetIsValidatedAndSplitByOneRule() throws {
    for bad in [0, -1, 65537] {
      #expect(throws: ClusterError.self) { try CacheBudget(mebibytes: bad) }
    }
    let budget = try CacheBudget(mebibytes: 64)
    #expect(budget.bytes == 64 << 20 && budget.nodeShare(nodes: 4) == 16 << 20)
    do {
      _ = try CacheBudget(mebibytes: 0)
    } catch {
      #expect(error.kind == .cacheBudgetOutOfRange(mebibytes: 0, range: CacheBudget.mebibyteRange))
      #expect(!error.message.contains("--"), "no CLI spelling in the engine: \(error.message)")
    }
    let dir = makeTempDir("h2engine-cache")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let r = try run("h2resync", ["diff", "--cache-mib", "0", dir + "/none.img"])
    #expect(r.status == 3 && r.stderr.contains("--cache-mib must be 1 to 65536"), "\(r.status) \(r.stderr)")
  }

  /// Cluster errors carry the image and a kind; their text names no CLI flag (the CLI
  /// adds it).
  @Test func clusterErrorsCarryTheImage() throws {
    let b = try build("node-local-snapshot")
    defer { try? FileManager.default.removeItem(atPath: b.dir) }
    let clone = b.dir + "/clone.img"
    try SparseFile.copy(from: b.images[0], to: clone)
    do {
      _ = try ClusterGroup.discover(images: b.images + [clone], name: nil, clid: nil)
      Issue.record("a cloned image must be refused")
    } catch let e as ClusterError {
      #expect(e.image == clone)
      guard case .duplicatedFsid(_, let other) = e.kind else {
        Issue.record("\(e.kind)")
        return
      }
      #expect(other == b.images[0])
      #expect(!e.message.contains("--"))
    }
  }
}
