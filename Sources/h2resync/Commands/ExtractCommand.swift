import ArgumentParser
import Foundation
import Hammer2Builder
import Hammer2Format

struct ExtractCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extract",
    abstract:
      "Extract a whole PFS into a directory: files (holes kept), directories, symlinks, hardlinks, FIFOs, device nodes, modes and mtimes.",
    discussion: exitCodeHelp)

  @OptionGroup var target: PFSOptions

  @Argument(help: "Destination directory (created if missing).")
  var dest: String

  @Flag(help: "Print counts when done.")
  var verbose = false

  func run() throws {
    var (reader, findings) = try target.open()
    let stats = try reader.extract(to: dest, findings: &findings)
    if verbose {
      print(
        "extracted \(stats.directories) directories, \(stats.files) files (\(stats.bytesWritten) bytes), \(stats.symlinks) symlinks, \(stats.hardlinks) hardlinks, \(stats.fifos) FIFOs, \(stats.devices) devices; skipped \(stats.skipped)"
      )
    }
    try finish(report(findings))
  }
}
