import ArgumentParser
import Foundation
import H2TestSupport
import Hammer2Format

/// h2scenario: builds the cluster scenario images described by fixtures/*.json (one
/// image per node) with h2resync's writer.
struct H2Scenario: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "h2scenario",
    abstract: "Build the node images of HAMMER2 cluster scenarios (fixtures/*.json).",
    discussion: "Exit codes: 0 done; 3 could not run (bad spec, writer or audit failure).",
    subcommands: [Build.self, BuildAll.self, List.self]
  )

  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch let e as ScenarioError {
      FileHandle.standardError.write(Data("h2scenario: \(e.description)\n".utf8))
      Foundation.exit(3)
    } catch let e as FormatError {
      FileHandle.standardError.write(Data("h2scenario: \(e.description)\n".utf8))
      Foundation.exit(3)
    } catch {
      if exitCode(for: error) == .success { exit(withError: error) }
      FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
      Foundation.exit(3)
    }
  }
}

/// A spec file, or the name of one in fixtures/.
func loadSpec(_ s: String) throws -> ScenarioSpec {
  if FileManager.default.fileExists(atPath: s) { return try ScenarioSpec.load(s) }
  let named = ScenarioSpec.fixturesDirectory.appendingPathComponent(s.hasSuffix(".json") ? s : s + ".json").path
  guard FileManager.default.fileExists(atPath: named) else { throw ScenarioError("no spec \(s) (neither a file nor a fixture name)") }
  return try ScenarioSpec.load(named)
}

func printBuilt(_ spec: ScenarioSpec, _ built: BuiltScenario) {
  for node in spec.nodes {
    let role = built.excluded.contains(node.name) ? "EXCLUDED" : "\(node.type)/\(node.nmasters)"
    print("\(spec.name)\t\(node.name)\t\(role)\t\(built.images[node.name] ?? "?")")
  }
}

/// Prints each disagreement between `expected` and the reference classifier; throws if any.
func checkBuilt(_ spec: ScenarioSpec, _ built: BuiltScenario) throws {
  let problems = try spec.checkExpected(built)
  for p in problems { print("\(spec.name): MISMATCH \(p)") }
  if !problems.isEmpty { throw ScenarioError("\(spec.name): \(problems.count) expectation(s) disagree with the images") }
  print("\(spec.name): expectations agree with the images")
}

struct Build: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Build every node image of one scenario into OUTDIR (as NAME.NODE.img).")
  @Argument(help: "The spec (a path, or a name in fixtures/).") var spec: String
  @Argument(help: "Output directory (created if missing; images of the same name are replaced).") var outdir: String
  @Flag(help: "Audit the freemap of every image after every operation.") var audit = false
  @Flag(help: "Then compare `expected` with what a path-level reference classifier finds in the images.") var check = false

  func run() throws {
    let s = try loadSpec(spec)
    let built = try s.build(into: outdir, audit: audit)
    printBuilt(s, built)
    if check { try checkBuilt(s, built) }
  }
}

struct BuildAll: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "build-all", abstract: "Build every scenario of fixtures/ into OUTDIR.")
  @Argument var outdir: String
  @Flag(help: "Audit the freemap of every image after every operation.") var audit = false
  @Flag(help: "Then compare each `expected` with what a path-level reference classifier finds in the images.") var check = false

  func run() throws {
    var failed = 0
    for s in try ScenarioSpec.allSpecs() {
      let start = Date()
      let built = try s.build(into: outdir, audit: audit)
      printBuilt(s, built)
      FileHandle.standardError.write(Data(String(format: "%@: %.2f s\n", s.name, Date().timeIntervalSince(start)).utf8))
      if check { do { try checkBuilt(s, built) } catch { failed += 1 } }
    }
    if failed > 0 { throw ScenarioError("\(failed) scenario(s) disagree with their expectations") }
  }
}

struct List: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "List the scenarios of fixtures/.")

  func run() throws {
    for s in try ScenarioSpec.allSpecs() {
      let nodes = s.nodes.map { "\($0.name):\($0.type)" }.joined(separator: ",")
      print("\(s.name)\t\(nodes)\t\(s.description)")
    }
  }
}

H2Scenario.main()
