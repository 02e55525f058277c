import ArgumentParser
import Foundation
import Hammer2Format

struct PfsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pfs",
    abstract: "List every PFS on each image: name, type, clid, fsid, pfs_nmasters, root modify_tid.",
    discussion: exitCodeHelp)

  @Argument(help: "Device images (opened read-only).")
  var images: [String]

  @Flag(help: "Print JSON instead of text.")
  var json = false

  struct Row: Codable {
    var image: String
    var name: String
    var type: String
    var subtype: String
    var clid: String
    var fsid: String
    var pfs_nmasters: Int
    var root_modify_tid: UInt64
    var root_mirror_tid: UInt64
    var pfs_inum: UInt64
    var comp_algo: Int
    var check_algo: Int
  }

  struct Document: Codable {
    var output_version: Int
    var pfs: [Row]
  }

  func validate() throws {
    if images.isEmpty { throw ValidationError("give at least one image") }
  }

  func run() throws {
    var rows: [Row] = []
    var findings: [Finding] = []
    for image in images {
      let volume = try Volume.open(path: image, opener: deviceOpener)
      for p in try volume.pfsList(findings: &findings) {
        rows.append(
          Row(
            image: image, name: p.name, type: p.typeName, subtype: p.subtypeName,
            clid: p.clid.description, fsid: p.fsid.description, pfs_nmasters: Int(p.nmasters),
            root_modify_tid: p.rootModifyTid, root_mirror_tid: p.bref.mirrorTid,
            pfs_inum: p.inode.meta.pfsInum, comp_algo: Int(p.inode.meta.compAlgo),
            check_algo: Int(p.inode.meta.checkAlgo)))
      }
    }
    if json {
      let enc = JSONEncoder()
      enc.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try enc.encode(Document(output_version: 1, pfs: rows)), as: UTF8.self))
    } else {
      let header = ["IMAGE", "NAME", "TYPE", "CLID", "FSID", "NMASTERS", "MODIFY_TID"]
      let table = rows.map { r in
        [
          r.image, r.name, r.subtype == "NONE" ? r.type : "\(r.type)/\(r.subtype)", r.clid, r.fsid, String(r.pfs_nmasters),
          String(r.root_modify_tid),
        ]
      }
      printTable([header] + table)
    }
    try finish(report(findings))
  }
}
