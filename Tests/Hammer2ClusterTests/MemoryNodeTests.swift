import Foundation
import H2TestSupport
import Hammer2Cluster
import Hammer2Format
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The engine on something else than files: every node of a cluster is a memory device
/// given by an opener, so discovery, the walks (their threads reopen the nodes) and the
/// resync's writer all go through the opener and no file is opened or written.
@Suite struct MemoryNodeTests {
  @Test(arguments: [WalkMode.fast, .deep])
  func aClusterOnMemoryDevicesIsWalkedAndResynced(mode: WalkMode) throws {
    let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == "three-masters-one-behind" })
    let dir = makeTempDir("h2mem")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let built = try spec.copyOfSharedBuild(into: dir)
    let files = spec.nodes.map { built.images[$0.name]! }
    let opener = MemoryDeviceOpener()
    let names = spec.nodes.map { "memory-" + $0.name }
    for (file, name) in zip(files, names) { opener[name] = try Self.load(file, label: name) }
    let filesBefore = try files.map(Self.stamp)

    let group = try ClusterGroup.discover(images: names, name: nil, clid: nil, opener: opener)
    #expect(group.nodes.map(\.image) == names)
    #expect(group.nodes.allSatisfy { $0.volume.io is MemoryImage })
    let walker = ClusterWalker(group: group, mode: mode)
    walker.threads = 2
    var diffs: [Difference] = []
    walker.run { diffs.append($0) }
    #expect(!diffs.isEmpty)
    #expect(walker.nodeStates.contains(.stale), "\(walker.nodeStates)")
    let resyncer = Resyncer(group: group, focus: try #require(walker.focus), options: ResyncOptions())
    let targets = resyncer.targets(states: walker.nodeStates, differences: diffs)
    #expect(!targets.isEmpty)
    let outcomes = try resyncer.apply(targets: targets, differences: diffs)
    #expect(outcomes.allSatisfy { $0.bytesWritten > 0 })

    // Walked again from the same memory devices: in sync.
    let after = try ClusterGroup.discover(images: names, name: nil, clid: nil, opener: opener)
    let again = ClusterWalker(group: after, mode: mode)
    var left: [Difference] = []
    again.run { left.append($0) }
    #expect(left.isEmpty, "\(left.map(\.path))")
    #expect(again.nodeStates.allSatisfy { $0 == .inSync || $0 == .focus }, "\(again.nodeStates)")
    for name in names { #expect(auditFreemap(try Volume.open(path: name, opener: opener)).isEmpty) }
    // The files the devices were loaded from are untouched.
    #expect(try files.map(Self.stamp) == filesBefore)
  }

  /// A file's size and modification time (its bytes would be GiBs of holes).
  static func stamp(_ path: String) throws -> String {
    let a = try FileManager.default.attributesOfItem(atPath: path)
    return "\(a[.size] ?? 0) \((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
  }

  /// A sparse image file's data, read into a memory device.
  static func load(_ path: String, label: String) throws -> MemoryImage {
    let file = try FileImage(path: path)
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    let device = MemoryImage(label: label, size: file.size)
    var at: off_t = 0
    while at < off_t(file.size) {
      let data = lseek(fd, at, 3 /* SEEK_DATA */)
      guard data >= 0 else { break }
      let hole = max(data, lseek(fd, data, 4 /* SEEK_HOLE */))
      var pos = data
      while pos < hole {
        let n = Int(min(hole - pos, off_t(1 << 20)))
        let bytes = try file.read(at: UInt64(pos), count: n)
        try bytes.withUnsafeBytes { try device.write(at: UInt64(pos), from: $0) }
        pos += off_t(n)
      }
      at = hole
    }
    return device
  }
}
