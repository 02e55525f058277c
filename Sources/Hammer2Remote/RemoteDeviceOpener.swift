import Hammer2Format

/// The opener of nodes that may be on other hosts: NBD URIs (`DeviceSpec.isRemote`)
/// through one `NBDPool`, everything else through `local`.
public struct RemoteDeviceOpener: DeviceOpener {
  public let local: DeviceOpener
  public let pool: NBDPool

  public init(local: DeviceOpener, pool: NBDPool) {
    self.local = local
    self.pool = pool
  }

  public func open(_ spec: String, writable: Bool) throws(FormatError) -> BlockDevice {
    if DeviceSpec.isRemote(spec) { return try pool.open(spec, writable: writable) }
    return try local.open(spec, writable: writable)
  }
}
