import Foundation
import Hammer2Format
import Hammer2Remote

#if canImport(Glibc)
  import Glibc
#endif

/// The NBD exports of this run (docs/remote-nodes.md): one connection set and read cache
/// per URI, shared by every open of it. `H2RESYNC_NBD_TIMEOUT=SECONDS` bounds the
/// handshake and every request (default 10 s and 30 s).
let nbdPool: NBDPool = {
  var options = NBDOptions()
  if let s = ProcessInfo.processInfo.environment["H2RESYNC_NBD_TIMEOUT"].flatMap(Double.init), s > 0 {
    options.connectTimeout = s
    options.requestTimeout = s
  }
  return NBDPool(options: options)
}()

/// The command line with every NBD URI (alone or in a `:` volume list) registered with
/// `nbdPool` and replaced by the URI without its query string: no report, JSON document
/// or error can print a query (the socket path, TLS credentials), and the engine opens
/// each node by a name the pool maps back to its URI.
func registeringRemoteNodes(_ arguments: [String]) throws(FormatError) -> [String] {
  try arguments.map { a throws(FormatError) in a.contains("://") ? try nbdPool.register(a) : a }
}

/// Ends the run with exit 3 when an NBD export failed under it (a server that stopped
/// answering or went away): the command could not run, whatever it made of the reads
/// that failed. One line naming the URI.
func exitOnRemoteFailure() {
  guard let f = nbdPool.failure() else { return }
  Diagnostics.emit(f.description)
  exit(ExitStatus.couldNotRun.rawValue)
}

/// `resync` writes its nodes: an NBD export served read-only is refused before anything
/// is planned (each remote device is opened for writing now; the connections are kept).
func requireWritableRemoteNodes(_ specs: [String]) throws(FormatError) {
  for spec in specs {
    for d in ImagePath.devices(spec) where DeviceSpec.isRemote(d) { _ = try nbdPool.open(d, writable: true) }
  }
}
