// h2bench: benchmarks of Hammer2Format's reads (`read`, with its internal `phase`) and of
// the cluster commands (`cluster ...`, driven by tools/bench-cluster.sh). One file per
// subcommand; Support.swift and Spawn.swift hold the helpers they share.
import ArgumentParser

struct H2Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "h2bench",
    abstract: "Benchmarks Hammer2Format's reads of HAMMER2 images against cat.",
    subcommands: [ReadBench.self, PhaseCommand.self, ClusterBench.self])
}

H2Bench.main()
