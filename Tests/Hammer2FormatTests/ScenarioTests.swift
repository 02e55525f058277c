import Foundation
import H2TestSupport
import Hammer2Format
import Testing

@Suite struct ScenarioTests {
  static let specNames: [String] = ((try? ScenarioSpec.allSpecs()) ?? []).map(\.name)

  @Test func fixturesLoadAndCoverTheRequiredScenarios() throws {
    let specs = try ScenarioSpec.allSpecs()
    let names = Set(specs.map(\.name))
    for required in [
      "three-masters-one-behind", "three-masters-one-ahead", "master-two-slaves", "five-masters-two-behind",
      "soft-master", "split-brain", "split-brain-two-masters", "corrupted-block", "missing-root",
      "big-directory", "big-file", "mixed-compression",
    ] {
      #expect(names.contains(required), "fixtures/\(required).json is missing")
    }
    // File name = spec name.
    for s in specs {
      #expect(FileManager.default.fileExists(atPath: ScenarioSpec.fixturesDirectory.appendingPathComponent(s.name + ".json").path))
    }
  }

  @Test func dataSpecsAreDeterministic() throws {
    for spec in ["random:100K:7", "lorem:70000:3", "mixed:300K:9", "pattern:5K:1", "zeros:1M", "text:hello"] {
      let a = try ScenarioData.bytes(spec)
      #expect(a == (try ScenarioData.bytes(spec)), "\(spec)")
    }
    #expect(try ScenarioData.bytes("random:64K:1").count == 65536)
    #expect(try ScenarioData.bytes("random:64K:1") != (try ScenarioData.bytes("random:64K:2")))
    #expect(try ScenarioData.bytes("text:hi") == Array("hi".utf8))
  }

  /// Builds every scenario with the freemap audited after every operation, then checks
  /// the expectations against the images, the PFS identities, and that nodes with the
  /// same history are identical (trees, inode numbers, modify_tids, extracted files).
  @Test(arguments: specNames)
  func scenarioBuildsAndHolds(name: String) throws {
    let spec = try ScenarioSpec.load(ScenarioSpec.fixturesDirectory.appendingPathComponent(name + ".json").path)
    let dir = makeTempDir("h2scen")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let built = try spec.sharedBuild()
    #expect(Set(built.excluded) == Set(spec.expected.excluded ?? []))

    // The expectations describe what the images hold.
    let problems = try spec.checkExpected(built)
    #expect(problems.isEmpty, "\(name): \(problems.prefix(10).joined(separator: "\n"))")

    // PFS identity of every node: the fields `h2resync pfs` reports, read in-process.
    for node in spec.nodes {
      let image = built.images[node.name]!
      var findings: [Finding] = []
      let mine = try Volume.open(path: image).pfsList(findings: &findings).filter { $0.name == spec.pfsName }
      #expect(findings.isEmpty, "\(name).\(node.name): \(findings.prefix(3))")
      if node.createPfs == false {
        #expect(mine.isEmpty, "\(name).\(node.name): expected no \(spec.pfsName) PFS")
        continue
      }
      guard mine.count == 1, let pfs = mine.first else {
        Issue.record("\(name).\(node.name): \(mine.count) \(spec.pfsName) PFSs")
        continue
      }
      #expect(pfs.clid.description == (node.clid ?? spec.clid).lowercased(), "\(name).\(node.name) clid")
      #expect(pfs.typeName == node.type, "\(name).\(node.name) type")
      #expect(Int(pfs.nmasters) == node.nmasters, "\(name).\(node.name) nmasters")
      #expect(pfs.fsid.description == built.fsids[node.name], "\(name).\(node.name) fsid")
    }
    let fsids = spec.nodes.compactMap { built.fsids[$0.name] }
    #expect(Set(fsids).count == fsids.count, "\(name): duplicate fsids")

    // Nodes with the same history: same trees, inode numbers and modify_tids, and
    // extract-identical. Expected in-sync nodes are extract-identical to the focus.
    let members = spec.nodes.filter { spec.isMember($0) }
    var groups: [[Int]: [String]] = [:]
    for n in members { groups[built.applied[n.name] ?? [], default: []].append(n.name) }
    var pairs: [(String, String)] = []
    for g in groups.values where g.count > 1 { for other in g.dropFirst() { pairs.append((g[0], other)) } }
    if let f = spec.expected.focus.first {
      for (n, s) in spec.expected.nodes where s == "in-sync" && n != f && !pairs.contains(where: { $0 == (f, n) || $0 == (n, f) }) {
        pairs.append((f, n))
      }
    }
    var extracted: [String: String] = [:]
    // What `h2resync extract IMAGE --pfs PFS OUT` writes, in-process.
    func extract(_ node: String) throws -> String {
      if let e = extracted[node] { return e }
      let out = dir + "/x." + node
      let findings = try extractPFS(built.images[node]!, pfs: spec.pfsName, to: out)
      #expect(findings.isEmpty, "\(name).\(node) extract: \(findings.prefix(3))")
      extracted[node] = out
      return out
    }
    for (a, b) in pairs {
      let ta = try ScenarioNodeTree.read(image: built.images[a]!, clid: spec.clid)
      let tb = try ScenarioNodeTree.read(image: built.images[b]!, clid: spec.clid)
      if built.applied[a] == built.applied[b] {
        #expect(ta.rootModifyTid == tb.rootModifyTid, "\(name): \(a) and \(b) have the same history but different PFS-root modify_tids")
        let differing = Set(ta.paths.keys).union(tb.paths.keys).filter { ta.paths[$0] != tb.paths[$0] }
        #expect(differing.isEmpty, "\(name): \(a) and \(b) have the same history; these differ: \(differing.sorted().prefix(8))")
      }
      let xa = try extract(a)
      let xb = try extract(b)
      let diff = compareTree(xb, listing: listing(of: xa))
      #expect(diff.isEmpty, "\(name): extracts of \(a) and \(b) differ: \(diff.prefix(8))")
    }
  }

  @Test func sameSpecGivesByteIdenticalImages() throws {
    let spec = try ScenarioSpec.load(ScenarioSpec.fixturesDirectory.appendingPathComponent("three-masters-one-behind.json").path)
    let dir = makeTempDir("h2scendet")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // The set the test process shares (built audited) against a fresh build.
    let one = try spec.sharedBuild()
    let two = try spec.build(into: dir + "/2", audit: false)
    for n in spec.nodes {
      #expect(imageDigest(one.images[n.name]!) == imageDigest(two.images[n.name]!), "node \(n.name)")
    }
  }
}
