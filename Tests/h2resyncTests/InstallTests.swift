import Foundation
import H2TestSupport
import Testing

/// tools/install.sh into a temp prefix, as an administrator would run it (with the
/// debug binaries of this build: a release build takes minutes), and what it installs:
/// a man page that renders, completions that know the subcommands, units that verify.
@Suite(.serialized) struct InstallTests {
  static let subcommands = ["pfs", "ls", "cat", "extract", "show", "diff", "check", "resync"]

  @Test func installsManPageCompletionsAndUnits() throws {
    let prefix = makeTempDir("h2install")
    defer { try? FileManager.default.removeItem(atPath: prefix) }
    let root = Oracle.packageRoot.path
    let install = try shell(["bash", root + "/tools/install.sh", "--bin-dir", productsDirectory.path, prefix])
    try #require(install.status == 0, "install.sh failed: \(install.stderr)")

    // The binaries run from the prefix.
    let version = try shell([prefix + "/bin/h2resync", "--version"])
    #expect(version.status == 0)
    #expect(version.stdout.hasPrefix("h2resync 0.1.0 (git "), "\(version.stdout)")
    #expect(try shell([prefix + "/bin/h2mkimage", "--help"]).status == 0)

    // The man page: generate-manual's mdoc, rendered by groff (what man-db runs).
    let page = prefix + "/share/man/man1/h2resync.1"
    let source = try String(contentsOfFile: page, encoding: .utf8)
    #expect(source.contains(".Dt H2RESYNC 1"))
    #expect(FileManager.default.fileExists(atPath: prefix + "/share/man/man1/h2mkimage.1"))
    if let groff = which("groff") {
      let r = try shell([groff, "-mandoc", "-Tutf8", "-ww", page], environment: ["LC_ALL": "C.UTF-8"])
      #expect(r.status == 0)
      #expect(r.stderr.isEmpty, "groff warnings: \(r.stderr)")
      // grotty's bold and underline are overstrikes: "c\bc", "_\bc"; keep the last of each.
      var scalars = String.UnicodeScalarView()
      for u in r.stdout.unicodeScalars {
        if u == "\u{8}" { if !scalars.isEmpty { scalars.removeLast() } } else { scalars.append(u) }
      }
      let text = String(scalars)
      #expect(text.contains("NAME"))
      #expect(text.contains("Exit codes"))
      // Each subcommand is an entry of the page's list (a tag at the start of a line).
      let tags = Set(text.split(separator: "\n").compactMap { $0.firstMatch(of: /^     ([a-z]+)(\s|$)/).map { String($0.1) } })
      for sub in Self.subcommands { #expect(tags.contains(sub), "\(sub) missing from the page") }
      #expect(text.contains("--metrics"))
    } else {
      print("SKIPPED man page rendering: groff not found (Debian package: groff-base)")
    }

    // Completions: one file per shell, each naming every subcommand.
    for file in [
      "share/bash-completion/completions/h2resync", "share/zsh/site-functions/_h2resync",
      "share/fish/vendor_completions.d/h2resync.fish",
    ] {
      let text = (try? String(contentsOfFile: prefix + "/" + file, encoding: .utf8)) ?? ""
      #expect(!text.isEmpty, "\(file) is empty or missing")
      for sub in Self.subcommands { #expect(text.contains(sub), "\(file) lacks \(sub)") }
      #expect(text.contains("lock-file"), "\(file) lacks check's options")
    }
    if let bash = which("bash") {
      // The bash script loads and registers its completion function.
      let r = try shell([bash, "-c", "source \(prefix)/share/bash-completion/completions/h2resync && complete -p h2resync"])
      #expect(r.status == 0 && r.stdout.contains("h2resync"), "\(r.stderr)")
    }

    // Units and docs, with ExecStart naming the installed binary.
    let unitDir = prefix + "/lib/systemd/system"
    let service = try String(contentsOfFile: unitDir + "/h2resync-check@.service", encoding: .utf8)
    #expect(service.contains("ExecStart=\(prefix)/bin/h2resync check "))
    for doc in ["example.conf", "cron.d-h2resync-check"] {
      #expect(FileManager.default.fileExists(atPath: prefix + "/share/doc/h2resync/" + doc))
    }
    let verify = try shell(["bash", root + "/contrib/systemd/verify-units.sh", unitDir])
    if verify.status == 77 {
      print(verify.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    } else {
      #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
  }

  @Test func honoursDESTDIR() throws {
    let stage = makeTempDir("h2stage")
    defer { try? FileManager.default.removeItem(atPath: stage) }
    let root = Oracle.packageRoot.path
    let install = try shell(
      ["bash", root + "/tools/install.sh", "--bin-dir", productsDirectory.path, "/usr/local"], environment: ["DESTDIR": stage])
    try #require(install.status == 0, "install.sh failed: \(install.stderr)")
    // Files land under DESTDIR; what they say names the final PREFIX.
    #expect(FileManager.default.isExecutableFile(atPath: stage + "/usr/local/bin/h2resync"))
    #expect(FileManager.default.fileExists(atPath: stage + "/usr/local/share/man/man1/h2resync.1"))
    let service = try String(contentsOfFile: stage + "/usr/local/lib/systemd/system/h2resync-check@.service", encoding: .utf8)
    #expect(service.contains("ExecStart=/usr/local/bin/h2resync check "))
    let cron = try String(contentsOfFile: stage + "/usr/local/share/doc/h2resync/cron.d-h2resync-check", encoding: .utf8)
    #expect(cron.contains("PATH=/usr/local/bin:"))
  }

  @Test func versionNamesTheRevision() throws {
    let r = try run("h2resync", ["--version"])
    #expect(r.status == 0)
    // A plain `swift build` has no revision; install.sh's build has git describe's.
    let line = r.stdout.trimmingCharacters(in: .newlines)
    #expect(line.wholeMatch(of: /h2resync \d+\.\d+\.\d+ \(git [0-9a-zA-Z.\-]+\)/) != nil, "\(line)")
  }
}

/// The full path of `tool` on PATH.
private func which(_ tool: String) -> String? {
  for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
    let path = "\(dir)/\(tool)"
    if FileManager.default.isExecutableFile(atPath: path) { return path }
  }
  return nil
}

/// Runs a command (found on PATH unless given as a path), capturing its output.
private func shell(_ argv: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: argv[0].hasPrefix("/") ? argv[0] : (which(argv[0]) ?? argv[0]))
  p.arguments = Array(argv.dropFirst())
  p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  let dir = makeTempDir("h2shell")
  defer { try? FileManager.default.removeItem(atPath: dir) }
  FileManager.default.createFile(atPath: dir + "/out", contents: nil)
  FileManager.default.createFile(atPath: dir + "/err", contents: nil)
  p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
  p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
  try p.run()
  p.waitUntilExit()
  let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
  let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
  return (p.terminationStatus, out, err)
}
