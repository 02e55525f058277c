// swift-tools-version: 6.1
// h2resync: offline resynchronization and repair of HAMMER2 cluster device images.
//
// Layers, imports one way: CHammer2Codecs (C shim over system liblz4, libzstd, zlib,
// libxxhash) -> Hammer2Format (on-disk format, read/write) -> Hammer2Cluster (the cluster
// engine) -> h2resync (CLI). Beside the engine, Hammer2Builder (on Hammer2Format) holds
// what builds and changes images and host files: the edit interpreter, deliberate damage,
// the sparse copy, option spellings and the extractor. The tools (h2mkimage, h2scenario,
// h2bench) and the tests use it; H2TestSupport keeps the test-only helpers.
import PackageDescription

let package = Package(
  name: "h2resync",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "h2resync", targets: ["h2resync"]),
    .executable(name: "h2bench", targets: ["h2bench"]),
    .executable(name: "h2mkimage", targets: ["h2mkimage"]),
    .executable(name: "h2scenario", targets: ["h2scenario"]),
    .library(name: "Hammer2Format", targets: ["Hammer2Format"]),
    .library(name: "Hammer2Builder", targets: ["Hammer2Builder"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
  ],
  targets: [
    .target(
      name: "CHammer2Codecs",
      linkerSettings: [
        .linkedLibrary("lz4"), .linkedLibrary("zstd"), .linkedLibrary("z"),
        .linkedLibrary("xxhash"),
      ]
    ),
    // The git revision for `h2resync --version` (tools/install.sh passes it as a C macro).
    .target(name: "CH2Version"),
    // libnbd (NBD client) behind a small C layer: connections driven by their own I/O
    // thread, requests waited for with deadlines (Sources/CNBD/include/h2nbd.h).
    .target(name: "CNBD", linkerSettings: [.linkedLibrary("nbd")]),
    .target(
      name: "Hammer2Format",
      dependencies: [
        "CHammer2Codecs",
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "SystemPackage", package: "swift-system"),
      ]
    ),
    .target(
      name: "Hammer2Builder",
      dependencies: ["Hammer2Format"]
    ),
    .target(
      name: "Hammer2Cluster",
      dependencies: ["Hammer2Format", "CHammer2Codecs"]
    ),
    // Nodes on other hosts: the NBD device behind the BlockDevice seam.
    .target(
      name: "Hammer2Remote",
      dependencies: ["Hammer2Format", "CNBD"]
    ),
    .target(
      name: "H2TestSupport",
      dependencies: ["Hammer2Format", "Hammer2Builder", .product(name: "Crypto", package: "swift-crypto")]
    ),
    .executableTarget(
      name: "h2resync",
      dependencies: [
        "Hammer2Format", "Hammer2Builder", "Hammer2Cluster", "Hammer2Remote", "CH2Version",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "h2bench",
      dependencies: [
        "Hammer2Format", "Hammer2Builder",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "tools/h2bench"
    ),
    .executableTarget(
      name: "h2mkimage",
      dependencies: [
        "Hammer2Format", "Hammer2Builder",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "tools/h2mkimage"
    ),
    .executableTarget(
      name: "h2scenario",
      dependencies: [
        "Hammer2Format", "Hammer2Builder", "H2TestSupport",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "tools/h2scenario"
    ),
    .testTarget(
      name: "Hammer2FormatTests",
      dependencies: ["Hammer2Format", "Hammer2Builder", "H2TestSupport", "CHammer2Codecs"]
    ),
    .testTarget(
      name: "Hammer2ClusterTests",
      dependencies: ["Hammer2Format", "Hammer2Builder", "Hammer2Cluster", "H2TestSupport"]
    ),
    .testTarget(
      name: "Hammer2RemoteTests",
      dependencies: ["Hammer2Format", "Hammer2Remote", "H2TestSupport"]
    ),
    .testTarget(
      name: "h2resyncTests",
      dependencies: ["Hammer2Format", "Hammer2Builder", "H2TestSupport"]
    ),
  ]
)
