import ArgumentParser
import Hammer2Cluster
import Hammer2Format

/// Options shared by diff, check and resync: the cluster's images and how to walk them.
struct ClusterOptions: ParsableArguments {
  @Argument(help: "Every device image of the PFS cluster (opened read-only by diff and check).")
  var images: [String]

  @Option(help: "The PFS label (when several clusters share the images).")
  var pfs: String?

  @Option(help: "The cluster id (pfs_clid) to use.")
  var clid: String?

  @Option(help: "Block cache budget in MiB (memory is bounded by it, not by image size).")
  var cacheMib: Int = 64

  @Option(help: "Threads for the directory walk of diff and resync (check walks on one).")
  var threads: Int = 2

  @Flag(
    help:
      "Treat soft masters like any other node: their differences count, and resync overwrites them (by default their own changes are soft-local and left alone)."
  )
  var overwriteSoftMasters = false

  func validate() throws {
    if images.isEmpty { throw ValidationError("give the images of the cluster") }
    if !(1...64).contains(threads) { throw ValidationError("--threads must be 1 to 64") }
    if let clid, H2UUID(string: clid) == nil { throw ValidationError("--clid must be a UUID") }
    do { _ = try CacheBudget(mebibytes: cacheMib) } catch { throw ValidationError(Wording.cluster(error)) }
  }

  /// The budget `validate()` accepted.
  var cacheBudget: CacheBudget {
    // Safe: validate() refused every value CacheBudget refuses, before run().
    try! CacheBudget(mebibytes: cacheMib)
  }

  /// Opens the images and forms the cluster (a ClusterError ends the run with exit 3).
  func discover() throws -> ClusterGroup {
    try ClusterGroup.discover(
      images: images, name: pfs, clid: clid.flatMap { H2UUID(string: $0) }, cacheBudget: cacheBudget, opener: deviceOpener)
  }

  /// The analysis these options ask for.
  func analysis(mode: WalkMode) -> AnalysisOptions {
    var a = AnalysisOptions(mode: mode)
    a.threads = threads
    a.overwriteSoftMasters = overwriteSoftMasters
    return a
  }
}

/// `--deep`, for diff and resync (check always reads every block).
struct WalkOptions: ParsableArguments {
  @Flag(help: "Read and verify every block and compare content (default: trust equal modify_tids, as the kernel's sync does).")
  var deep = false

  /// The progress line of a walk in this mode: against the bytes in use when deep; the
  /// bytes the index scan read, without an end, when fast.
  func progress(phase: String, _ group: ClusterGroup) -> Progress {
    Progress(phase: phase, total: deep ? Progress.deepWalkTotal(group) : 0)
  }

  var mode: WalkMode { deep ? .deep : .fast }
}

/// `--json`, for diff, check and resync.
struct OutputOptions: ParsableArguments {
  @Flag(help: "Print the versioned JSON report (resync: the report after the resync).")
  var json = false
}
