import Foundation
import H2TestSupport
import Hammer2Format
import Testing

@testable import Hammer2Cluster

/// The directory walk split over threads reports exactly what the one-thread walk
/// reports, in the same order: differences, findings, counters and node states, in
/// both modes, on every scenario in fixtures/ (damaged ones included), also when the
/// workers must wait for the walk order (a buffer of one difference).
@Suite(.serialized) struct ParallelWalkTests {
  struct Outcome: Equatable {
    var differences: [String]
    var findings: [String]
    var counters: [String]
    var states: [NodeState]
    var focus: Int?
    /// Not compared: how many threads walked.
    var threads = 1
    static func == (a: Outcome, b: Outcome) -> Bool {
      (a.differences, a.findings, a.counters, a.states, a.focus) == (b.differences, b.findings, b.counters, b.states, b.focus)
    }
  }

  static func walk(_ images: [String], mode: WalkMode, threads: Int, jobsPerThread: Int = 8, bufferLimit: Int = 4096) throws -> Outcome {
    let group = try ClusterGroup.discover(images: images, name: nil, clid: nil)
    let w = ClusterWalker(group: group, mode: mode)
    w.threads = threads
    w.walkBufferLimit = bufferLimit
    w.walkJobsPerThread = jobsPerThread
    var diffs: [String] = []
    w.run { d in
      diffs.append("\(d.path) \(d.inum) \(d.element) \(d.classes) \(d.details) \(d.bytesToWrite) \(d.focusInode?.dataOff ?? 0)")
    }
    let s = w.stats
    return Outcome(
      differences: diffs, findings: w.findings.map(\.description),
      counters: [
        "\(s.blocksChecked)", "\(s.bytesChecked)", "\(s.damagedBlocks)", "\(s.bytesToWrite)",
        "\(s.counts.sorted { $0.key < $1.key })", "\(s.differences)",
      ],
      states: w.nodeStates, focus: w.root.resolution.focus, threads: w.walkThreadsUsed)
  }

  static let branchy: Set = [
    "three-masters-one-behind", "three-masters-one-ahead", "five-masters-two-behind", "master-two-slaves",
    "soft-master", "soft-master-no-tiebreak", "missing-root",
  ]

  @Test func branchyScenariosExist() {
    #expect(Self.branchy.isSubset(of: ScenarioEngineTests.specs))
  }

  @Test(arguments: ScenarioEngineTests.specs)
  func sameReportOnAnyNumberOfThreads(name: String) throws {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == name })
    let built = try spec.sharedBuild()
    let images = spec.nodes.compactMap { built.images[$0.name] }
    for mode in [WalkMode.fast, .deep] {
      let one = try Self.walk(images, mode: mode, threads: 1)
      // The expected differences are those of a deep walk (ScenarioEngineTests).
      if mode == .deep {
        #expect(one.differences.count >= spec.expected.differences.count, "\(name): \(one.differences.count) differences")
      }
      #expect(one.threads == 1)
      // Few subtrees per thread: the scenarios' trees are small, and the split must
      // leave subtrees for the threads.
      for (threads, jobs, limit) in [(2, 8, 4096), (2, 1, 4096), (2, 1, 1), (3, 1, 1)] {
        let many = try Self.walk(images, mode: mode, threads: threads, jobsPerThread: jobs, bufferLimit: limit)
        #expect(many == one, "\(name) \(mode) threads \(threads) jobs/thread \(jobs) buffer \(limit)")
        // These trees have several directories under the root: the threads must walk.
        if jobs == 1, Self.branchy.contains(name) { #expect(many.threads == threads, "\(name): \(many.threads) threads walked") }
      }
    }
  }
}
