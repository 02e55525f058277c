import ArgumentParser
import Hammer2Format

/// Options shared by commands that read one PFS of one image.
struct PFSOptions: ParsableArguments {
  @Argument(help: "The device image (opened read-only).")
  var image: String

  @Option(name: .long, help: "The PFS label; may be omitted when the image holds one PFS besides LOCAL.")
  var pfs: String?

  func open() throws(FormatError) -> (PFSReader, [Finding]) {
    let volume = try Volume.open(path: image, opener: deviceOpener)
    var findings: [Finding] = []
    let list = try volume.pfsList(findings: &findings)
    let info = try PFSReader.choose(list, name: pfs, image: image)
    return (PFSReader(volume: volume, pfs: info), findings)
  }
}
