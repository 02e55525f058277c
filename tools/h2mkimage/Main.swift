import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Format

/// h2mkimage: builds and changes HAMMER2 images with h2resync's own copy-on-write writer
/// (test fixtures, divergent clusters, demos). Every change is one transaction.
@main
struct H2MkImage: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "h2mkimage",
    abstract: "Build and modify HAMMER2 images (each change is one crash-safe copy-on-write transaction).",
    discussion: "Exit codes: 0 done; 3 could not run (bad arguments, unreadable image, no space).",
    subcommands: [
      New.self, PfsCreate.self, Populate.self, Write.self, Rm.self, Mkdir.self, Mv.self, Chmod.self,
      Truncate.self, Setcomp.self, Snapshot.self, Corrupt.self, Symlink.self, Link.self,
    ]
  )

  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch let e as FormatError {
      FileHandle.standardError.write(Data("h2mkimage: \(e.description)\(e.kind.isAmbiguousPFS ? "; choose one with --pfs" : "")\n".utf8))
      Foundation.exit(3)
    } catch {
      if exitCode(for: error) == .success { exit(withError: error) }
      FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
      Foundation.exit(3)
    }
  }
}

/// Options every command shares.
struct Common: ParsableArguments {
  @Option(help: "Seed for UUIDs (deterministic images).")
  var uuidSeed: UInt64?

  @Option(help: "Timestamp for new and changed inodes, seconds since the epoch (default: now).")
  var time: UInt64?

  var micros: UInt64 { (time ?? UInt64(Date().timeIntervalSince1970)) * 1_000_000 }
  var uuids: UUIDSource { uuidSeed.map { UUIDSource.seeded($0) } ?? .random }
}

/// Options of commands that change one PFS.
struct Target: ParsableArguments {
  @Argument(help: "The image.")
  var image: String

  @Option(help: "The PFS label.")
  var pfs: String

  @OptionGroup var common: Common

  /// Applies `edit` in one transaction on the PFS and commits.
  func apply(_ edit: Edit) throws {
    try ImageEdits(image: image, pfs: pfs, openTransaction: { try Transaction(path: $0, opener: deviceOpener) }).apply(
      [edit], time: common.micros)
  }
}

/// "2G", "1T", "16T", "16TiB", "200GB", "1P" or bytes.
func parseSize(_ s: String) throws -> UInt64 {
  var t = s.trimmingCharacters(in: .whitespaces).uppercased()
  if t.hasSuffix("IB") { t.removeLast(2) } else if t.count > 1, t.hasSuffix("B"), !t.dropLast().allSatisfy(\.isNumber) { t.removeLast() }
  if t.hasSuffix("P"), let n = UInt64(t.dropLast()) {
    let (r, overflow) = n.multipliedReportingOverflow(by: 1 << 50)
    if !overflow { return r }
  }
  guard let n = Spellings.byteSize(t) else { throw ValidationError("bad size \(s)") }
  return n
}

func parseComp(_ s: String) throws -> UInt8 {
  guard let c = Spellings.compAlgo(s) else { throw ValidationError(Spellings.compAlgoHelp) }
  return c
}

func parseCheck(_ s: String) throws -> UInt8 {
  guard let c = Spellings.checkAlgo(s) else { throw ValidationError(Spellings.checkAlgoHelp) }
  return c
}

struct New: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Format a new image: volume headers, super-root, LOCAL PFS.",
    discussion: """
      A multi-volume file system: its volume files joined by ':' (a0.img:a1.img:a2.img), \
      or --volumes N for IMAGE.0 .. IMAGE.N-1 (the joined names are printed); \
      --size the total (split in whole GiB, the last volume takes the rest) or \
      --volume-sizes one size per volume (1G,1G,2G).
      """)
  @Argument(help: "The image, or the volume files joined by ':'.") var image: String
  @Option(help: "Image size, e.g. 2G, 200G, 1T or 16T (at least 1G; the file is sparse); with several volumes their total.") var size:
    String = "2G"
  @Option(help: "Sizes of the volumes, comma-separated (every one but the last a multiple of 1G).") var volumeSizes: String?
  @Option(help: "Number of volumes (1-64): files IMAGE.0, IMAGE.1, ...") var volumes: Int?
  @Option(help: "Compression of the LOCAL PFS.") var comp: String = "lz4"
  @Option(help: "Check code of the LOCAL PFS.") var check: String = "xxhash64"
  @OptionGroup var common: Common

  func run() throws {
    var uuids = common.uuids
    var paths = ImagePath.devices(image)
    if let n = volumes {
      guard paths.count == 1, (1...VolumeSet.maxVolumes).contains(n) else {
        throw ValidationError("--volumes takes 1 to \(VolumeSet.maxVolumes) and one IMAGE (the volumes are IMAGE.0, IMAGE.1, ...)")
      }
      if n > 1 { paths = (0..<n).map { "\(image).\($0)" } }
    }
    guard paths.count > 1 || volumeSizes == nil else { throw ValidationError("--volume-sizes needs several volumes joined by ':'") }
    let sizes =
      try volumeSizes.map { list in try list.split(separator: ",").map { try parseSize(String($0)) } }
      ?? NewfsVolumes.split(total: try parseSize(size), count: paths.count)
    try NewfsVolumes.format(
      paths: paths, sizes: sizes, labels: ["LOCAL"], compAlgo: try parseComp(comp),
      checkAlgo: try parseCheck(check), uuids: &uuids, time: common.micros)
    if volumes != nil, paths.count > 1 { print(paths.joined(separator: ":")) }
  }
}

struct PfsCreate: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "pfs-create", abstract: "Add a PFS that joins a cluster.")
  @Argument var image: String
  @Argument var name: String
  @Option(help: "MASTER, SLAVE, SOFT_MASTER, SOFT_SLAVE or CACHE.") var type: String = "MASTER"
  @Option(help: "Cluster id (default: a new one).") var clid: String?
  @Option(help: "This node's id (default: a new one).") var fsid: String?
  @Option(help: "pfs_nmasters.") var nmasters: UInt8 = 1
  @Option var comp: String = "lz4"
  @Option var check: String = "xxhash64"
  @OptionGroup var common: Common

  func run() throws {
    guard let t = PFSType(name: type), [.master, .slave, .softMaster, .softSlave, .cache].contains(t) else {
      throw ValidationError("unknown PFS type \(type)")
    }
    var uuids = common.uuids
    let c = try clid.map { s in try H2UUID(string: s) ?? { throw ValidationError("bad --clid") }() } ?? uuids.next()
    let f = try fsid.map { s in try H2UUID(string: s) ?? { throw ValidationError("bad --fsid") }() } ?? uuids.next()
    let tx = try Transaction(path: image, opener: deviceOpener)
    try tx.createPFS(
      name: name, type: t, clid: c, fsid: f, nmasters: nmasters, compAlgo: try parseComp(comp),
      checkAlgo: try parseCheck(check), time: common.micros)
    try tx.commit()
  }
}

struct Write: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Write a file's bytes into PATH at an offset (creates PATH).")
  @OptionGroup var target: Target
  @Argument var path: String
  @Option(help: "Byte offset.") var at: UInt64 = 0
  @Option(help: "Source file of the bytes.") var from: String

  func run() throws {
    guard let data = FileManager.default.contents(atPath: from) else { throw ValidationError("cannot read \(from)") }
    try target.apply(.write(path: path, offset: at, bytes: [UInt8](data)))
  }
}

struct Rm: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Remove a file, symlink, or (with -r) a directory tree.")
  @OptionGroup var target: Target
  @Argument var path: String
  @Flag(name: .short, help: "Remove directories and their contents.") var r = false

  func run() throws { try target.apply(.remove(path: path, recursive: r)) }
}

struct Mkdir: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create a directory.")
  @OptionGroup var target: Target
  @Argument var path: String
  @Option var mode: String = "755"

  func run() throws {
    guard let m = UInt32(mode, radix: 8) else { throw ValidationError("bad mode") }
    try target.apply(.makeDirectory(path: path, mode: m))
  }
}

struct Symlink: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create a symbolic link PATH -> TARGET.")
  @OptionGroup var target: Target
  @Argument var path: String
  @Argument var linkTarget: String

  func run() throws { try target.apply(.symlink(path: path, target: linkTarget)) }
}

struct Link: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create a hardlink NEW to EXISTING.")
  @OptionGroup var target: Target
  @Argument var existing: String
  @Argument var new: String

  func run() throws { try target.apply(.link(existing: existing, new: new)) }
}

struct Mv: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Rename or move a file or directory.")
  @OptionGroup var target: Target
  @Argument var from: String
  @Argument var to: String

  func run() throws { try target.apply(.move(from: from, to: to)) }
}

struct Chmod: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Change permission bits (octal).")
  @OptionGroup var target: Target
  @Argument var mode: String
  @Argument var path: String

  func run() throws {
    guard let m = UInt32(mode, radix: 8), m <= 0o7777 else { throw ValidationError("bad mode \(mode)") }
    try target.apply(.chmod(path: path, mode: m))
  }
}

struct Truncate: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Set a file's size.")
  @OptionGroup var target: Target
  @Argument var path: String
  @Argument var size: String

  func run() throws { try target.apply(.truncate(path: path, size: try parseSize(size))) }
}

struct Setcomp: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Set an inode's comp_algo (applies to data written from now on, as `hammer2 setcomp`).")
  @OptionGroup var target: Target
  @Argument var path: String
  @Argument var algo: String

  func run() throws { try target.apply(.setComp(path: path, algo: try parseComp(algo))) }
}

struct Snapshot: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Snapshot the PFS as a new PFS NAME (shares all blocks).")
  @OptionGroup var target: Target
  @Argument var name: String

  func run() throws {
    var uuids = target.common.uuids
    try ImageEdits(image: target.image, pfs: target.pfs, openTransaction: { try Transaction(path: $0, opener: deviceOpener) }).snapshot(
      name: name, uuids: &uuids, time: target.common.micros)
  }
}

struct Corrupt: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Flip bytes of data block N of a file in place, without fixing its check (simulated media damage).")
  @Argument var image: String
  @Option var pfs: String
  @Argument var path: String
  @Option(help: "Index of the stored data block (in key order).") var block: Int = 0

  func run() throws {
    let offset: UInt64
    do {
      offset = try DeliberateDamage.corrupt(
        image: image, pfs: pfs, path: path, block: block,
        openImage: { try WritableImage(path: $0, opener: deviceOpener) })
    } catch let e as BuildError {
      throw ValidationError(e.message)
    }
    print("corrupted \(image) @0x\(String(offset, radix: 16)) (data block \(block) of \(path))")
  }
}
