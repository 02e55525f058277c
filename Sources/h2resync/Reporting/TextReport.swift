import Foundation
import Hammer2Cluster
import Hammer2Format

/// The text rendering of a `ClusterReport` (diff, resync's plan and its check after):
/// nodes, focus with evidence, one line per differing path per node, summary.
struct TextReport {
  let report: ClusterReport
  init(_ report: ClusterReport) { self.report = report }

  /// One line per soft master left alone (its own changes are not the cluster's).
  var softMasterLines: [String] {
    report.softMastersWithLocalChanges.map { n, k in
      "soft master \(n.image) left alone: \(k) paths differ there (soft-local: its own changes; --overwrite-soft-masters writes them)"
    }
  }

  /// Prints the report, at most `limit` path lines.
  func print(limit: Int = .max) {
    let group = report.group
    let nodes = group.nodes
    let roles = report.voting.roles
    let stats = report.stats
    let space = report.spaceNeeds(snapshot: true)
    let states = report.nodeStates
    let voting = report.voting
    out("cluster \(group.clid)  nodes \(nodes.count)  masters \(voting.masters) of \(voting.configured)  quorum \(voting.nquorum)")
    printTable(
      [["NODE", "IMAGE", "PFS", "TYPE", "FSID", "ROOT_MODIFY_TID", "STATE"]]
        + nodes.map { n in
          [n.label, n.image, n.pfs.name, n.pfs.typeName, n.pfs.fsid.description, String(n.pfs.rootModifyTid), states[n.index].rawValue]
        })
    for (image, reason) in group.excluded { out("excluded: \(image): \(reason)") }
    for note in report.notes { out("note: \(Wording.note(note))") }
    let votes = report.root.versions.map { v in
      "tid \(v.version.tid): \(v.nodes.map { nodes[$0].label + (roles[$0] == .master ? "" : "(\(roles[$0].rawValue.lowercased()))") }.joined(separator: ","))"
    }
    if let f = report.focus {
      out(
        "focus: \(f.image) (root modify_tid \(f.pfs.rootModifyTid), \(report.root.resolution.votes) of \(voting.nquorum) needed master votes; \(votes.joined(separator: "; ")))"
      )
    } else {
      out("focus: none: no version has a quorum of \(voting.nquorum) masters (\(votes.joined(separator: "; ")))")
    }
    var printed = 0
    // Padded once: one line per differing path and node (tens of thousands in a resync).
    let labels = nodes.map { n in n.label + String(repeating: " ", count: max(0, 8 - n.label.count)) }
    func column(_ c: PathClass) -> String { c.rawValue + String(repeating: " ", count: max(0, 14 - c.rawValue.count)) }
    for d in report.differences {
      for n in nodes where d.classes[n.index] != .inSync {
        if printed < limit {
          let what = d.details[n.index].isEmpty ? "" : "  (" + d.details[n.index].joined(separator: ",") + ")"
          out("\(labels[n.index])  \(column(d.classes[n.index]))  \(d.path)\(what)")
        }
        printed += 1
      }
    }
    if printed > limit { out("... \(printed - limit) more lines (use --json for all)") }
    let counts = stats.counts.sorted { $0.key < $1.key }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
    out("summary: \(stats.differences) differing paths\(counts.isEmpty ? "" : " (" + counts + ")")")
    for n in nodes where stats.bytesToWrite[n.index] > 0 || stats.damagedBlocks[n.index] > 0 {
      out(
        "  \(n.label): resync would write \(stats.bytesToWrite[n.index]) bytes of file data; \(stats.damagedBlocks[n.index]) damaged blocks"
      )
    }
    for n in nodes where stats.nodeTidsOnly[n.index] > 0 {
      out("  \(n.label): \(stats.nodeTidsOnly[n.index]) paths differ in modify_tid only (resync stamps the focus's tids, no data)")
    }
    for (n, need) in zip(nodes, space) where need.needed > 0 {
      out(
        "  \(n.label): resync needs about \(need.needed) bytes of free space, \(need.free) free\(need.fits ? "" : ": does not fit, resync refuses before writing any node")"
      )
    }
    for line in softMasterLines { out("  " + line) }
    for f in report.findings.prefix(50) { out("damage: \(f)") }
  }

  private func out(_ s: String) { Swift.print(s) }
}
