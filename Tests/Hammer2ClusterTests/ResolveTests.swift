import Hammer2Cluster
import Hammer2Format
import Testing

func v(_ tid: UInt64, _ id: UInt64 = 0) -> Version { Version(tid: tid, identity: id) }
func m(_ tid: UInt64?, _ id: UInt64 = 0, err: Bool = false) -> ResolveInput {
  ResolveInput(role: .master, version: tid.map { v($0, id) }, errored: err)
}
func s(_ tid: UInt64?, _ id: UInt64 = 0) -> ResolveInput { ResolveInput(role: .slave, version: tid.map { v($0, id) }) }

/// Table-driven resolve: every mix of node types and tids the project cares about.
@Suite struct ResolveTests {
  struct Case: CustomTestStringConvertible, Sendable {
    var name: String
    var inputs: [ResolveInput]
    var nquorum: Int
    var focus: Int?
    var absent = false
    var invalid: [Int]
    var flags: ClusterFlags = []
    var notFlags: ClusterFlags = []
    var testDescription: String { name }
  }

  static let cases: [Case] = [
    Case(
      name: "3 masters in sync", inputs: [m(100), m(100), m(100)], nquorum: 2, focus: 0, invalid: [],
      flags: [.rdHard, .wrHard, .mSynced, .noSoft]),
    Case(
      name: "3 masters, one behind", inputs: [m(100), m(100), m(90)], nquorum: 2, focus: 0, invalid: [2], flags: [.rdHard, .unHard],
      notFlags: [.mSynced]),
    // W3: the seed took the highest tid (101) and found no quorum; the quorum is 100.
    Case(
      name: "W3 master ahead alone is outvoted", inputs: [m(101), m(100), m(100)], nquorum: 2, focus: 1, invalid: [0],
      flags: [.rdHard, .unHard]),
    // W1: the seed made the first eligible node (a stale slave) the focus.
    Case(
      name: "W1 stale slave first never becomes focus", inputs: [s(90), m(100), m(100)], nquorum: 2, focus: 1, invalid: [0],
      flags: [.rdHard, .unSoft], notFlags: [.sSynced]),
    Case(
      name: "1 master + 2 slaves, slaves behind", inputs: [m(50), s(40), s(45)], nquorum: 1, focus: 0, invalid: [1, 2],
      flags: [.rdHard, .unSoft]),
    Case(name: "slaves never vote (no master)", inputs: [s(100), s(100)], nquorum: 1, focus: nil, invalid: [0, 1], flags: [.noHard]),
    // W10: equal tid, different content: two versions; a majority still decides.
    Case(name: "W10 split brain with majority", inputs: [m(7, 1), m(7, 1), m(7, 2)], nquorum: 2, focus: 0, invalid: [2], flags: [.rdHard]),
    Case(
      name: "W10 split brain without majority", inputs: [m(7, 1), m(7, 2)], nquorum: 2, focus: nil, invalid: [0, 1],
      notFlags: [.rdHard, .wrHard]),
    Case(
      name: "two masters disagree (2 of 2 needed)", inputs: [m(5407), m(5405)], nquorum: 2, focus: nil, invalid: [0, 1], flags: [.unHard]),
    Case(name: "5 masters, two behind", inputs: [m(9), m(9), m(9), m(5), m(6)], nquorum: 3, focus: 0, invalid: [3, 4], flags: [.rdHard]),
    Case(name: "5 masters, 2-2-1: no quorum", inputs: [m(9), m(9), m(8), m(8), m(7)], nquorum: 3, focus: nil, invalid: [0, 1, 2, 3, 4]),
    // W5: a master lacking the element counts; absent by quorum when enough lack it.
    Case(
      name: "W5 element absent on a quorum", inputs: [m(nil), m(nil), m(3)], nquorum: 2, focus: nil, absent: true, invalid: [2],
      flags: [.rdHard, .unHard]),
    Case(
      name: "W5 element missing on one master", inputs: [m(3), m(3), m(nil)], nquorum: 2, focus: 0, invalid: [2], flags: [.unHard],
      notFlags: [.mSynced]),
    // W7: an errored element never becomes the focus, but supports its tid when that
    // tid has exactly one readable version.
    Case(
      name: "W7 errored master not focus", inputs: [m(4, err: true), m(4), m(3)], nquorum: 2, focus: 1, invalid: [0, 2], flags: [.rdHard]),
    Case(
      name: "W7 errored masters alone cannot win", inputs: [m(4, err: true), m(4, err: true), m(3)], nquorum: 2, focus: nil,
      invalid: [0, 1, 2]),
    Case(
      name: "soft master: local authority without masters", inputs: [ResolveInput(role: .softMaster, version: v(8)), s(6)], nquorum: 1,
      focus: 0, invalid: [1], flags: [.wrSoft, .rdSoft, .noHard]),
    Case(
      name: "soft master never outvotes masters", inputs: [m(5), m(5), ResolveInput(role: .softMaster, version: v(9))], nquorum: 2,
      focus: 0, invalid: [2], flags: [.rdHard, .wrSoft]),
    Case(
      name: "soft slave only", inputs: [ResolveInput(role: .softSlave, version: v(2))], nquorum: 1, focus: 0, invalid: [],
      flags: [.rdSoft, .noHard]),
    Case(
      name: "cache and dummy ignored", inputs: [m(5), ResolveInput(role: .cache, version: v(1)), ResolveInput(role: .dummy, version: nil)],
      nquorum: 1, focus: 0, invalid: [1, 2], flags: [.rdHard]),
  ]

  @Test(arguments: cases)
  func resolves(_ c: Case) {
    let r = resolve(c.inputs, nquorum: c.nquorum)
    #expect(r.focus == c.focus, "focus")
    #expect(r.absentByQuorum == c.absent)
    let invalid = r.items.indices.filter { r.items[$0].contains(.invalid) }
    #expect(invalid == c.invalid, "invalid \(invalid)")
    #expect(r.flags.isSuperset(of: c.flags), "flags \(r.flags.names) lack \(c.flags.names)")
    #expect(r.flags.intersection(c.notFlags).isEmpty, "flags \(r.flags.names) must not have \(c.notFlags.names)")
    if let f = r.focus { #expect(!r.items[f].contains(.invalid) && !r.items[f].contains(.errored)) }
  }

  @Test func femodGoesToQuorumMastersOrTheSoftMaster() {
    let r = resolve([m(5), m(5), m(4)], nquorum: 2)
    #expect(r.items[0].contains(.femod) && r.items[1].contains(.femod) && !r.items[2].contains(.femod))
    let soft = resolve([m(5), m(5), ResolveInput(role: .softMaster, version: v(5))], nquorum: 2)
    #expect(!soft.items[0].contains(.femod) && soft.items[2].contains(.femod))
  }

  /// W8: flags are recomputed, never sticky: the same cluster resolved twice with
  /// different inputs does not keep UNHARD.
  @Test func flagsAreNotSticky() {
    #expect(resolve([m(1), m(2), m(2)], nquorum: 2).flags.contains(.unHard))
    #expect(!resolve([m(2), m(2), m(2)], nquorum: 2).flags.contains(.unHard))
  }

  /// W11: the quorum uses the larger of the stored pfs_nmasters and the masters present.
  @Test func quorumSizeTakesTheLargerCount() {
    #expect(quorumSize(storedNmasters: [1, 1, 1], mastersPresent: 3) == (3, 2))
    #expect(quorumSize(storedNmasters: [5, 3], mastersPresent: 2) == (5, 3))
    #expect(quorumSize(storedNmasters: [0], mastersPresent: 1) == (1, 1))
    #expect(quorumSize(storedNmasters: [2, 2], mastersPresent: 2) == (2, 2))
  }

  /// W12: a pending transition (high nibble) does not change the active role.
  @Test func transitionNibbleIsMasked() {
    #expect(Role(pfsType: 0x36) == .master) // MASTER, transition to SLAVE pending
    #expect(Role(pfsType: 0x63) == .slave)
    #expect(Role(pfsType: 0x05) == .softMaster)
    #expect(Role(pfsType: 0x02) == .unknown)
  }
}

func leaf(_ key: UInt64, tid: UInt64 = 1, keybits: UInt8 = 0) -> TreeElement {
  var b = Blockref()
  b.typeRaw = BlockrefType.data.rawValue
  b.key = key
  b.keybits = keybits
  b.modifyTid = tid
  return .leaf(b)
}

/// The seed's cluster iteration, fixed: exact-key alignment, nodes never retired,
/// key_next from all nodes, next_single_chain.
@Suite struct ClusterCursorTests {
  func keys(_ c: ClusterCursor<ArrayElementSource>) -> [UInt64?] {
    c.slots.map { if case .present(let b) = $0 { return b.key } else { return nil } }
  }

  /// W4: a node lacking an element keeps its place; the seed retired it for the rest
  /// of the scan.
  @Test func aNodeLackingAnElementIsNotRetired() {
    var c = ClusterCursor([
      ArrayElementSource([leaf(1), leaf(2), leaf(3)]), ArrayElementSource([leaf(1), leaf(3)]),
      ArrayElementSource([leaf(2), leaf(3), leaf(4)]),
    ])
    do {
      let ok = c.lookup(0, .max)
      #expect(ok)
    }
    #expect(c.key == 1 && keys(c) == [1, 1, nil])
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == 2 && keys(c) == [2, nil, 2])
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == 3 && keys(c) == [3, 3, 3])
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == 4 && keys(c) == [nil, nil, 4])
    do {
      let ok = c.next()
      #expect(!ok)
    }
    #expect(c.key == nil)
  }

  /// W6: a node that finished early does not end the scan for the others (the seed's
  /// key_end + 1 wrapped to 0 and won the min).
  @Test func aFinishedNodeDoesNotEndTheScan() {
    var c = ClusterCursor([ArrayElementSource([leaf(0x10)]), ArrayElementSource([leaf(0x10), leaf(.max - 5)])])
    do {
      let ok = c.lookup(0, .max)
      #expect(ok)
    }
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == UInt64.max - 5)
    #expect(c.keyNext == UInt64.max - 5)
  }

  @Test func nextSingleChainAdvancesOneNode() {
    // Node 1 has an element (5) the others lack; it is stepped past it alone.
    var c = ClusterCursor([ArrayElementSource([leaf(9)]), ArrayElementSource([leaf(5), leaf(9)])])
    do {
      let ok = c.lookup(0, .max)
      #expect(ok)
    }
    #expect(c.key == 5 && keys(c) == [nil, 5])
    do {
      let ok = c.nextSingleChain(1)
      #expect(ok)
    }
    #expect(c.key == 9 && keys(c) == [9, 9])
  }

  @Test func holesAreUnknownNeverAbsent() {
    let err = FormatError(.checkMismatch(method: "xxhash64", expected: "1", found: "2"))
    var c = ClusterCursor([
      ArrayElementSource([leaf(1), leaf(5), leaf(9)]), ArrayElementSource([leaf(1), .hole(keyBeg: 2, keyEnd: 8, error: err), leaf(9)]),
    ])
    do {
      let ok = c.lookup(0, .max)
      #expect(ok)
    }
    do {
      let ok = c.next()
      #expect(ok)
    } // the hole's start
    #expect(c.key == 2)
    if case .unknown = c.slots[1] {} else { Issue.record("hole start not unknown") }
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == 5)
    if case .unknown = c.slots[1] {} else { Issue.record("key 5 inside the hole must be unknown, not absent") }
    do {
      let ok = c.next()
      #expect(ok)
    }
    #expect(c.key == 9 && keys(c) == [9, 9])
    do {
      let ok = c.next()
      #expect(!ok)
    }
  }

  @Test func nonParticipatingNodes() {
    var c = ClusterCursor<ArrayElementSource>([ArrayElementSource([leaf(3)]), nil])
    do {
      let ok = c.lookup(0, .max)
      #expect(ok)
    }
    if case .notParticipating = c.slots[1] {} else { Issue.record("expected notParticipating") }
  }

  @Test(arguments: [0, 1, 8, 16] as [UInt8])
  func alignsByKeyForEveryKeybits(kb: UInt8) {
    let step = UInt64(1) << UInt64(kb)
    var c = ClusterCursor([
      ArrayElementSource((0..<5).map { leaf($0 * step, keybits: kb) }), ArrayElementSource([leaf(2 * step, keybits: kb)]),
    ])
    var seen: [UInt64] = []
    var more = c.lookup(0, .max)
    while more, let k = c.key {
      seen.append(k)
      more = c.next()
    }
    #expect(seen == (0..<5).map { $0 * step })
  }
}
