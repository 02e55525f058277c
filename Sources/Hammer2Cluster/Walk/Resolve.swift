import Hammer2Format

/// What a node is in its cluster, from the active (low) nibble of `pfs_type`. A pending
/// transition in the high nibble does not change the role (unlike the kernel's raw-byte
/// comparison, seed defect W12).
public enum Role: String, Sendable, Codable, CaseIterable {
  case master = "MASTER"
  case slave = "SLAVE"
  case softMaster = "SOFT_MASTER"
  case softSlave = "SOFT_SLAVE"
  case cache = "CACHE"
  case dummy = "DUMMY"
  case suproot = "SUPROOT"
  case unknown = "UNKNOWN"

  /// The role of a raw `pfs_type` byte.
  public init(pfsType raw: UInt8) {
    switch PFSType(rawValue: raw & 0x0F) {
    case .master: self = .master
    case .slave: self = .slave
    case .softMaster: self = .softMaster
    case .softSlave: self = .softSlave
    case .cache: self = .cache
    case .dummy: self = .dummy
    case .suproot: self = .suproot
    default: self = .unknown
    }
  }

  /// Only masters vote in the quorum.
  public var votes: Bool { self == .master }
}

/// Per-element flags (`HAMMER2_CITEM_*`).
public struct ItemFlags: OptionSet, Sendable, Hashable {
  public let rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  /// `HAMMER2_CITEM_INVALID`: not part of the synchronized set; cannot be the focus.
  public static let invalid = ItemFlags(rawValue: 1)
  /// `HAMMER2_CITEM_FEMOD`: frontend modifications (and modsync) apply to it.
  public static let femod = ItemFlags(rawValue: 2)
  /// The node has no element at this key (`CITEM_NULL` in current code). Seed defect
  /// W5 made missing elements invisible; here they count.
  public static let missing = ItemFlags(rawValue: 4)
  /// The element could not be read (check failure, I/O error).
  public static let errored = ItemFlags(rawValue: 8)
}

/// Cluster flags set by resolve (`HAMMER2_CLUSTER_*`). Recomputed from scratch by every
/// resolve (seed defect W8 left some sticky).
public struct ClusterFlags: OptionSet, Sendable, Hashable {
  public let rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  /// A quorum of masters exists: hard mounts can write.
  public static let wrHard = ClusterFlags(rawValue: 1 << 0)
  /// A quorum of masters exists: hard mounts can read.
  public static let rdHard = ClusterFlags(rawValue: 1 << 1)
  /// A soft master is present.
  public static let wrSoft = ClusterFlags(rawValue: 1 << 2)
  /// A soft master or soft slave is present.
  public static let rdSoft = ClusterFlags(rawValue: 1 << 3)
  /// A master is present that does not match the quorum.
  public static let unHard = ClusterFlags(rawValue: 1 << 4)
  /// A slave is present that does not match the quorum.
  public static let unSoft = ClusterFlags(rawValue: 1 << 5)
  /// No master is visible.
  public static let noHard = ClusterFlags(rawValue: 1 << 6)
  /// No slave is visible.
  public static let noSoft = ClusterFlags(rawValue: 1 << 7)
  /// Every visible master matches the quorum.
  public static let mSynced = ClusterFlags(rawValue: 1 << 8)
  /// Every visible slave matches the quorum.
  public static let sSynced = ClusterFlags(rawValue: 1 << 9)

  /// Names, for reports.
  public var names: [String] {
    let all: [(ClusterFlags, String)] = [
      (.wrHard, "WRHARD"), (.rdHard, "RDHARD"), (.wrSoft, "WRSOFT"), (.rdSoft, "RDSOFT"),
      (.unHard, "UNHARD"), (.unSoft, "UNSOFT"), (.noHard, "NOHARD"), (.noSoft, "NOSOFT"), (.mSynced, "MSYNCED"), (.sSynced, "SSYNCED"),
    ]
    return all.filter { contains($0.0) }.map(\.1)
  }
}

/// A version of an element: its modify_tid plus a digest of its cluster-level content.
/// Equal tids with different content are different versions (seed defect W10).
public struct Version: Hashable, Sendable, Comparable {
  public var tid: UInt64
  public var identity: UInt64
  public init(tid: UInt64, identity: UInt64) {
    self.tid = tid
    self.identity = identity
  }
  public static func < (a: Version, b: Version) -> Bool { (a.tid, a.identity) < (b.tid, b.identity) }
}

/// One node's view of one element, as resolve sees it.
public struct ResolveInput: Sendable {
  public var role: Role
  /// nil when the node has no element here.
  public var version: Version?
  /// The element exists but could not be read.
  public var errored: Bool
  public init(role: Role, version: Version?, errored: Bool = false) {
    self.role = role
    self.version = version
    self.errored = errored
  }
}

/// The outcome of resolving one element across the nodes.
public struct Resolution: Sendable, Equatable {
  /// The node whose element is authoritative; nil without a quorum (or when the element
  /// is absent by quorum).
  public var focus: Int?
  /// The winning version; nil when absent by quorum or undecided.
  public var version: Version?
  /// True when a quorum of masters proved the element absent.
  public var absentByQuorum: Bool
  /// Per-node flags.
  public var items: [ItemFlags]
  /// Cluster flags.
  public var flags: ClusterFlags
  /// Masters that voted for the winner (for reports).
  public var votes: Int
}

/// `hammer2_cluster_resolve`, with the seed's defects fixed:
/// - the focus is the version at least `nquorum` masters agree on — not the highest tid
///   (W3), not the first eligible position (W1); a master ahead alone is outvoted;
/// - only masters vote (transition nibble masked, W12); slaves never become the focus;
///   soft masters and soft slaves are authoritative only when no master is visible;
/// - missing elements count (W5) and errored ones never become the focus (W7): an
///   unreadable master supports a tid only when exactly one readable version has it;
/// - equal tid with different content is a different version (W10);
/// - all flags are recomputed (W8).
public func resolve(_ inputs: [ResolveInput], nquorum: Int) -> Resolution {
  var items = [ItemFlags](repeating: [], count: inputs.count)
  var support: [Version: [Int]] = [:]
  var erroredTids: [UInt64: [Int]] = [:]
  var absentMasters = 0
  var ttlMasters = 0
  var ttlSlaves = 0
  var softMaster: Int?
  var softSlave: Int?
  for (i, inp) in inputs.enumerated() {
    if inp.version == nil && !inp.errored { items[i].insert(.missing) }
    if inp.errored { items[i].insert(.errored) }
    switch inp.role {
    case .master:
      ttlMasters += 1
      if inp.errored, let v = inp.version {
        erroredTids[v.tid, default: []].append(i)
      } else if let v = inp.version {
        support[v, default: []].append(i)
      } else if !inp.errored {
        absentMasters += 1
      }
    case .slave: ttlSlaves += 1
    case .softMaster: if softMaster == nil, !inp.errored, inp.version != nil { softMaster = i }
    case .softSlave: if softSlave == nil, !inp.errored, inp.version != nil { softSlave = i }
    default: break
    }
  }
  var counts = support.mapValues(\.count)
  for (tid, ns) in erroredTids {
    let same = counts.keys.filter { $0.tid == tid }
    if same.count == 1 { counts[same[0]]! += ns.count }
  }
  var flags: ClusterFlags = []
  var focus: Int?
  var version: Version?
  var absent = false
  var votes = 0
  if let (v, n) = counts.filter({ $0.value >= nquorum }).max(by: { $0.value < $1.value }) {
    version = v
    votes = n
    // Safe: a version in counts has at least one readable supporter.
    focus = support[v]!.min()
    flags.formUnion([.rdHard, .wrHard])
  } else if absentMasters >= nquorum {
    absent = true
    votes = absentMasters
    flags.formUnion([.rdHard, .wrHard])
  } else if ttlMasters == 0, let s = softMaster ?? softSlave {
    // No master anywhere: a soft master (or soft slave) is the local authority.
    focus = s
    version = inputs[s].version
  }
  if softMaster != nil { flags.formUnion([.wrSoft, .rdSoft]) }
  if softSlave != nil { flags.insert(.rdSoft) }
  if ttlMasters == 0 { flags.insert(.noHard) }
  if ttlSlaves == 0 { flags.insert(.noSoft) }
  var mSynced = true
  var sSynced = true
  for (i, inp) in inputs.enumerated() {
    let matches = absent ? (inp.version == nil && !inp.errored) : (version != nil && inp.version == version && !inp.errored)
    if !matches { items[i].insert(.invalid) }
    switch inp.role {
    case .master:
      if !matches {
        mSynced = false
        flags.insert(.unHard)
      } else if softMaster == nil, !absent {
        items[i].insert(.femod)
      }
    case .slave:
      if !matches {
        sSynced = false
        flags.insert(.unSoft)
      }
    case .softMaster:
      if i == softMaster { items[i].insert(.femod) }
    default: break
    }
  }
  if focus == nil && !absent { mSynced = mSynced && ttlMasters == 0 }
  if mSynced { flags.insert(.mSynced) }
  if sSynced { flags.insert(.sSynced) }
  return Resolution(focus: focus, version: version, absentByQuorum: absent, items: items, flags: flags, votes: votes)
}

/// `pfs_nmasters / 2 + 1` with the configured count taken as the larger of the stored
/// values and the masters present (seed defect W11).
public func quorumSize(storedNmasters: [UInt8], mastersPresent: Int) -> (configured: Int, nquorum: Int) {
  let configured = max(Int(storedNmasters.max() ?? 0), mastersPresent)
  return (configured, configured / 2 + 1)
}
