// h2bench cluster: benchmarks of the cluster commands (`h2resync check`, `diff`,
// `resync`) on generated 3-node clusters, each ratio measured in the same run.
//
//   h2bench cluster gensrc DIR [--files N] [--dirs N] [--bytes SIZE] [--extra-percent P]
//   h2bench cluster overlay IMAGE --pfs NAME SRC [--time SECONDS]
//   h2bench cluster exec --label L --log FILE -- COMMAND...
//   h2bench cluster diffcheck IMAGE... --h2resync BIN [--runs N] --json-out FILE
//   h2bench cluster resync --focus IMAGE IMAGE... --h2resync BIN --workdir DIR [--runs N] [--cache warm|hot|cold]
//   h2bench cluster report --manifest F --setup F --diffcheck F --resync F
//
// tools/bench-cluster.sh drives them; see its header for the whole procedure. Every
// measured command runs as a child (posix_spawn + wait4), so its wall time and CPU time
// are its own, and its peak RSS too when GNU time is installed (see spawnMeasured).

import ArgumentParser

struct ClusterBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cluster",
    abstract: "Benchmarks of h2resync check/diff/resync on generated 3-node clusters (driven by tools/bench-cluster.sh).",
    subcommands: [
      GenSrc.self, Overlay.self, Exec.self, DiffCheck.self, ResyncBench.self, SeparateBench.self, RealSizeBench.self, RealSizeCompare.self,
      ReportCommand.self,
    ])
}
