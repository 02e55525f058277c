import Foundation
import Hammer2Format
import Hammer2Remote

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The opener of every command: local files, and NBD URIs through `nbdPool`
/// (RemoteNodes.swift). `H2_CRASH_AFTER_WRITES=N` (the crash-safety
/// tests) lets each image's first N writes reach its files, then ends the process with
/// status 86, no cleanup and no fsync, as a crash would. The CLI owns the environment and
/// the exit; the library only asks the hook it is given.
let deviceOpener: DeviceOpener = {
  let base = RemoteDeviceOpener(local: LocalDeviceOpener(), pool: nbdPool)
  guard let n = ProcessInfo.processInfo.environment["H2_CRASH_AFTER_WRITES"].flatMap({ Int($0) }) else { return base }
  return HookedOpener(base: base, writeHook: .stop(after: n) { _ in _exit(86) })
}()
