import Foundation
import Hammer2Cluster
import Hammer2Format

/// `check --freemap`'s share of the report: text, JSON and metrics of the per-image
/// freemap cross-check (`ClusterFreemapCheck`), and its exit status.
///
/// Exit status: referenced blocks the freemap marks free are damage (1) when every
/// image holding them is one a resync writes (resync repairs the freemap of each image
/// it writes), and need a human (2) when one is the focus's or another image no resync
/// writes: only DragonFly's bulkfree (on the mounted file system) repairs those. Damage
/// met in the tree or the freemap is 1. Reclaimable bytes never change the exit code.
struct FreemapReport {
  let check: ClusterFreemapCheck

  init(_ report: ClusterReport, overwriteSoftMasters: Bool, memoryBudget: Int = FreemapCrossCheck.defaultMemoryBudget) {
    let clock = ContinuousClock()
    let t0 = clock.now
    check = ClusterFreemapCheck(report: report, overwriteSoftMasters: overwriteSoftMasters, memoryBudget: memoryBudget) {
      (clock.now - t0).seconds
    }
  }

  /// The walk's verdict raised by the freemap's.
  func exit(combining e: ExitClass) -> ExitClass {
    let mine: ExitClass = check.needsHuman ? .needsHuman : check.damaged ? .findings : .ok
    return max(e, mine)
  }

  private var unallocated: UInt64 { check.images.reduce(0) { $0 + $1.result.unallocatedBlocks } }
  private var chunks: UInt64 { check.images.reduce(0) { $0 + $1.result.unallocatedChunkCount } }
  private var reclaimable: UInt64 { check.images.reduce(0) { $0 + $1.result.reclaimableBytes } }

  /// Appended to the one-line summary, and to its performance data.
  var summary: String {
    "; freemap: \(unallocated) referenced blocks in \(chunks) chunks marked free, \(reclaimable) bytes reclaimable"
  }
  var perfdata: String { " freemap_unallocated=\(unallocated) freemap_reclaimable_bytes=\(reclaimable)" }

  /// One line per image, then each finding (at most `limit` in all).
  func printLines(limit: Int = 50) {
    var printed = 0
    for i in check.images {
      let r = i.result
      let repair =
        r.unallocatedBlocks == 0
        ? "" : i.resyncWrites ? " (a resync repairs them)" : " (no resync writes this image: repair with DragonFly's bulkfree)"
      print(
        "freemap: \(i.node.label): \(r.unallocatedBlocks) referenced blocks in \(r.unallocatedChunkCount) chunks not marked allocated (00: \(r.unallocatedChunks[0]), 01: \(r.unallocatedChunks[1]), 10: \(r.unallocatedChunks[2]))\(repair), \(r.otherDamage) other damage, \(r.reclaimableBytes) bytes reclaimable; \(r.blockrefsVisited) blockrefs in \(r.passes) pass(es) of \(r.regionsPerPass) GiB, \(String(format: "%.1f", i.seconds)) s"
      )
      for f in r.findings where printed < limit {
        print("freemap: \(f.unallocated ? "critical" : f.finding.severity.rawValue): \(f.finding)")
        printed += 1
      }
      if r.findingsOmitted > 0 { print("freemap: \(i.node.label): ... \(r.findingsOmitted) more findings not kept") }
    }
    let total = check.images.reduce(0) { $0 + $1.result.findings.count }
    if total > printed { print("freemap: ... \(total - printed) more findings (use --json for all)") }
  }

  /// The `freemap` object of the JSON report, by image.
  struct JSONImage: Encodable {
    var unallocated_blocks: UInt64
    var unallocated_chunks: [String: UInt64]
    var unallocated_bytes: UInt64
    var reclaimable_bytes: UInt64
    var referenced_bytes: UInt64
    var other_damage: Int
    var resync_repairs: Bool
    var blockrefs: UInt64
    var passes: Int
    var gib_per_pass: UInt64
    var findings: [String]
    var findings_omitted: Int
  }

  var json: [String: JSONImage] {
    Dictionary(
      uniqueKeysWithValues: check.images.map { i in
        let r = i.result
        return (
          i.node.image,
          JSONImage(
            unallocated_blocks: r.unallocatedBlocks,
            unallocated_chunks: ["00": r.unallocatedChunks[0], "01": r.unallocatedChunks[1], "10": r.unallocatedChunks[2]],
            unallocated_bytes: r.unallocatedChunkCount * H2.freemapBlockSize, reclaimable_bytes: r.reclaimableBytes,
            referenced_bytes: r.referencedBytes, other_damage: r.otherDamage, resync_repairs: i.resyncWrites,
            blockrefs: r.blockrefsVisited, passes: r.passes, gib_per_pass: r.regionsPerPass,
            findings: r.findings.map { ($0.unallocated ? "critical: " : "\($0.finding.severity.rawValue): ") + $0.finding.description },
            findings_omitted: r.findingsOmitted)
        )
      })
  }

  /// The check report with a `freemap` member added.
  struct WithFreemap: Encodable {
    let report: JSONReport
    let freemap: [String: JSONImage]
    enum Key: String, CodingKey { case freemap }
    func encode(to encoder: Encoder) throws {
      try report.encode(to: encoder)
      var c = encoder.container(keyedBy: Key.self)
      try c.encode(freemap, forKey: .freemap)
    }
  }

  /// Prometheus rows (node_exporter textfile), named as the other check metrics.
  func metrics(clid: String) -> String {
    var s = ""
    func metric(_ name: String, _ help: String, _ value: (FreemapCrossCheckResult) -> String) {
      s += "# HELP h2resync_\(name) \(help)\n# TYPE h2resync_\(name) gauge\n"
      for i in check.images {
        s +=
          "h2resync_\(name){clid=\"\(clid)\",image=\"\(i.node.image.replacingOccurrences(of: "\"", with: "\\\""))\"} \(value(i.result))\n"
      }
    }
    metric("check_freemap_unallocated_blocks", "Referenced blocks in chunks the freemap does not mark allocated, per image.") {
      String($0.unallocatedBlocks)
    }
    metric("check_freemap_unallocated_chunks", "16 KiB chunks referenced but not marked allocated (bulkfree's 00->11 and kin), per image.")
    { String($0.unallocatedChunkCount) }
    metric("check_freemap_reclaimable_bytes", "Bytes of chunks marked allocated that nothing references, per image.") {
      String($0.reclaimableBytes)
    }
    metric("check_freemap_damage", "Damage met in the tree or the freemap by the freemap cross-check, per image.") {
      String($0.otherDamage)
    }
    return s
  }
}
