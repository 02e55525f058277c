import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Format

struct ShowCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "show",
    abstract: "Print every blockref of the image's topology with its check status, like DragonFly's `hammer2 show`.",
    discussion: exitCodeHelp)

  @Argument(help: "The device image (opened read-only).")
  var image: String

  @Flag(help: "Leave out the freemap.")
  var noFreemap = false

  @Flag(help: "Also decompress every DATA block (verifies the compressed streams, not only the check codes).")
  var deep = false

  func run() throws {
    let volume = try Volume.open(path: image, opener: deviceOpener)
    let h = volume.header
    print(
      "volume header #\(volume.headerSlot) of \(volume.headerCopies.count): version \(h.version) mirror_tid \(h.mirrorTid) freemap_tid \(h.freemapTid) size 0x\(hex(h.filesystemSize)) fsid \(h.fsid)"
    )
    for c in volume.headerCopies where !c.isValid {
      print("volume header #\(c.slot): INVALID: \(c.error?.message ?? "?")")
    }
    var walker = TopologyWalker(volume: volume, includeFreemap: !noFreemap, decompressData: deep)
    var lastTree = ""
    var out = ""
    out.reserveCapacity(1 << 16)
    walker.walk { e in
      if e.tree != lastTree {
        out += "\(e.tree):\n"
        lastTree = e.tree
      }
      let b = e.bref
      let size = b.radix == 0 ? "0" : (b.mediaSize.map(sizeString) ?? "radix\(b.radix)")
      let comp = b.compression?.name ?? "comp(\(b.compressionRaw))"
      let check = b.checkMethod?.name ?? "check(\(b.checkMethodRaw))"
      var line = String(repeating: "  ", count: e.depth + 1)
      line +=
        "\(b.type?.name ?? "type(\(b.typeRaw))") key=0x\(hex(b.key, width: 16))/\(b.keybits) off=0x\(hex(b.mediaOffset, width: 16))/\(size) mir=\(b.mirrorTid) mod=\(b.modifyTid) \(comp)/\(check)"
      line += e.error == nil ? " ok" : " BAD (\(e.error!.message))"
      if let ino = e.inode {
        line += " inum=\(ino.meta.inum) \(ino.meta.type?.name ?? "?") size=\(ino.meta.size)"
        if ino.meta.opFlags & OpFlags.pfsRoot != 0 || ino.meta.inum == 0 { line += " \"\(ino.filenameString)\"" }
      }
      if let n = e.direntName { line += " inum=\(b.direntInum) \"\(String(decoding: n, as: UTF8.self))\"" }
      out += line + "\n"
      if out.utf8.count > 1 << 16 {
        print(out, terminator: "")
        out = ""
      }
    }
    print(out, terminator: "")
    print(
      "\(walker.blockrefsVisited) blockrefs, \(volume.blocksRead) blocks read (\(volume.bytesRead) bytes), \(walker.findings.count) failed")
    try finish(report(walker.findings))
  }
}
