import Foundation
import Hammer2Format

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Local files; `H2_CRASH_AFTER_WRITES=N` (crash-safety tests) stops each image after N
/// writes, those reaching the file, with exit status 86 (h2resync has the same hook).
let deviceOpener: DeviceOpener = {
  guard let n = ProcessInfo.processInfo.environment["H2_CRASH_AFTER_WRITES"].flatMap({ Int($0) }) else { return LocalDeviceOpener() }
  return HookedOpener(base: LocalDeviceOpener(), writeHook: .stop(after: n) { _ in _exit(86) })
}()
