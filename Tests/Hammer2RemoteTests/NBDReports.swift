import Foundation
import H2TestSupport
import Testing

/// Builds fixture scenario `name` in a temp dir: the dir and the node images' file names.
func buildScenario(_ name: String) throws -> (dir: String, images: [String]) {
  let spec = try #require(try ScenarioSpec.allSpecs().first { $0.name == name })
  let dir = makeTempDir("h2nbd-\(name)")
  let built = try spec.build(into: dir, audit: false)
  return (dir, spec.nodes.map { (built.images[$0.name]! as NSString).lastPathComponent })
}

/// `text` with each node's printed URI replaced by its file name, runs of spaces
/// (table padding: a URI is longer than the file name) made one, and check's elapsed
/// time masked.
func normalizedReport(_ text: String, _ server: NBDKit, _ images: [String]) -> String {
  // JSON escapes slashes.
  var t = text.replacing(#"nbd+unix:\/\/\/"#, with: "nbd+unix:///").replacing(#"nbds+unix:\/\/\/"#, with: "nbds+unix:///")
  for i in images { t = t.replacing(server.label(i), with: i) }
  // check's one line names its own time.
  t = t.replacing(/checked in [0-9.]+ s/, with: "checked in T s")
  return t.split(separator: "\n", omittingEmptySubsequences: false)
    .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }.joined(separator: "\n")
}

/// A JSON document over NBD as the local run prints it: the URIs read as the file names
/// (same key order, so byte-identical).
func localJSON(_ text: String, _ server: NBDKit) -> String {
  text.replacing(server.jsonLabelPrefix, with: "")
}

/// Neither the socket path nor any query string was printed.
func expectNoQuery(_ r: ToolResult, _ server: NBDKit, sourceLocation: SourceLocation = #_sourceLocation) {
  #expect(
    !r.stdout.contains(server.socket) && !r.stderr.contains(server.socket) && !r.stdout.contains("socket=")
      && !r.stderr.contains("socket="),
    "a query string was printed: \(r.stdout.prefix(400)) \(r.stderr.prefix(400))", sourceLocation: sourceLocation)
}
