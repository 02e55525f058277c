import Hammer2Format

/// A per-node source of elements in key order: `KeyRangeIterator` over a node's table,
/// or an array in tests.
public protocol ElementSource {
  /// Starts a scan of [keyBeg, keyEnd] and returns the first element.
  mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> TreeElement?
  /// The next element.
  mutating func next() -> TreeElement?
}

extension KeyRangeIterator: ElementSource {}

/// Elements from an array (tests, and tables already in memory).
public struct ArrayElementSource: ElementSource {
  let elements: [TreeElement]
  var index = 0
  var end: UInt64 = .max
  public init(_ elements: [TreeElement]) { self.elements = elements }
  public mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> TreeElement? {
    end = keyEnd
    index =
      elements.firstIndex {
        switch $0 {
        case .leaf(let b): return b.keyEnd >= keyBeg
        case .hole(_, let hi, _): return hi >= keyBeg
        }
      } ?? elements.count
    return next()
  }
  public mutating func next() -> TreeElement? {
    guard index < elements.count else { return nil }
    let e = elements[index]
    index += 1
    switch e {
    case .leaf(let b): return b.key <= end ? e : nil
    case .hole(let lo, _, _): return lo <= end ? e : nil
    }
  }
}

/// One node's slot in the current element of a cluster.
public enum Slot: Sendable {
  /// The node has this element.
  case present(Blockref)
  /// The node's scan proved there is no element at this key.
  case absent
  /// The key lies in an unreadable part of the node's tree (never "absent").
  case unknown(FormatError)
  /// The node does not take part (no parent here, or not a cluster member).
  case notParticipating
}

/// The cluster-wide iteration of one parent's key range on all nodes at once: the seed's
/// `hammer2_cluster_lookup` / `hammer2_cluster_next` / `hammer2_cluster_next_single_chain`,
/// aligned on exact keys instead of positions, so a node lacking an element (or holding
/// one the others lack) is never retired (seed defect W4): it simply shows `.absent` at
/// that key and keeps its place. Each node keeps its own key; the cluster's `keyNext` is
/// the smallest unconsumed key over all nodes (seed defect W6).
public struct ClusterCursor<Source: ElementSource> {
  /// A source kept on the heap, so stepping it mutates it in place (an optional struct
  /// in an array is copied out and back on every step). Copies of a cursor share them.
  private final class Box {
    var source: Source
    init(_ s: Source) { source = s }
  }
  /// Per node: its source, nil when not participating.
  private var sources: [Box?]
  private var heads: [TreeElement?]
  /// Each head's kind and key range, kept beside it: a step compares keys many times,
  /// and reading them from the enum would copy its blockref out each time.
  private var headKind: [HeadKind]
  private var headLo: [UInt64]
  private var headHi: [UInt64]
  private enum HeadKind { case none, leaf, hole }
  /// Holes produce one element (at their first key); after that they only mark keys
  /// inside them unknown until the cluster moves past their end.
  private var holeReported: [Bool]
  private var keyEnd: UInt64 = .max
  /// The key of the current element, nil at the end.
  public private(set) var key: UInt64?
  /// Per node slots of the current element.
  public private(set) var slots: [Slot] = []

  /// A cursor over `sources` (nil = node not participating).
  public init(_ sources: [Source?]) {
    self.sources = sources.map { $0.map(Box.init) }
    heads = [TreeElement?](repeating: nil, count: sources.count)
    headKind = [HeadKind](repeating: .none, count: sources.count)
    headLo = [UInt64](repeating: 0, count: sources.count)
    headHi = [UInt64](repeating: 0, count: sources.count)
    holeReported = [Bool](repeating: false, count: sources.count)
  }

  /// The smallest key any node has not yet consumed (`key_next`); nil at the end.
  public var keyNext: UInt64? { key }

  /// `hammer2_cluster_lookup`: positions every node at `keyBeg` and forms the first
  /// element. Returns false when no node has anything in range.
  @discardableResult
  public mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> Bool {
    self.keyEnd = keyEnd
    for i in sources.indices {
      guard sources[i] != nil else { continue }
      setHead(i, sources[i]!.source.lookup(keyBeg, keyEnd)) // Safe: checked non-nil above.
      holeReported[i] = false
    }
    return form()
  }

  /// `hammer2_cluster_next`: advances every node that has the current element.
  @discardableResult
  public mutating func next() -> Bool {
    guard let k = key else { return false }
    for i in sources.indices where sources[i] != nil {
      switch headKind[i] {
      case .leaf where headLo[i] <= k: advance(i, past: k)
      case .hole where headLo[i] <= k && headHi[i] <= k: advance(i, past: k)
      default: break
      }
    }
    return form()
  }

  /// `hammer2_cluster_next_single_chain`: advances only node `i` past its current head
  /// (an element the focus lacks, e.g. after deleting it there), then re-forms the
  /// current element (seed defect W13: the seed re-resolved nothing).
  @discardableResult
  public mutating func nextSingleChain(_ i: Int) -> Bool {
    guard sources[i] != nil, let k = headKey(i) else { return key != nil }
    advance(i, past: k)
    return form()
  }

  private func headKey(_ i: Int) -> UInt64? {
    switch headKind[i] {
    case .leaf: return headLo[i]
    case .hole: return holeReported[i] ? nil : headLo[i]
    case .none: return nil
    }
  }

  /// Makes `e` node `i`'s head.
  private mutating func setHead(_ i: Int, _ e: TreeElement?) {
    switch e {
    case .leaf(let b)?: (headKind[i], headLo[i], headHi[i]) = (.leaf, b.key, b.key)
    case .hole(let lo, let hi, _)?: (headKind[i], headLo[i], headHi[i]) = (.hole, lo, hi)
    case nil: headKind[i] = .none
    }
    heads[i] = e
  }

  private mutating func advance(_ i: Int, past k: UInt64) {
    // A hole is consumed only when the cluster key has moved past its end.
    if headKind[i] == .hole, headHi[i] > k {
      holeReported[i] = true
      return
    }
    setHead(i, sources[i]!.source.next()) // Safe: callers check participation.
    holeReported[i] = false
  }

  /// Forms the element at the smallest key over all nodes' heads.
  private mutating func form() -> Bool {
    var k: UInt64?
    while true {
      k = nil
      for i in heads.indices where sources[i] != nil {
        if let hk = headKey(i) { k = min(k ?? .max, hk) }
      }
      // Reported holes that end before the next key (or with no key left) are done.
      var moved = false
      for i in heads.indices where sources[i] != nil {
        if headKind[i] == .hole, holeReported[i], k == nil || headHi[i] < k! {
          setHead(i, sources[i]!.source.next()) // Safe: participation checked.
          holeReported[i] = false
          moved = true
        }
      }
      if !moved { break }
    }
    guard let key = k, key <= keyEnd else {
      self.key = nil
      slots = sources.map { $0 == nil ? .notParticipating : .absent }
      return false
    }
    self.key = key
    // Filled in place: one element per step must not cost an allocation.
    if slots.count != heads.count { slots = [Slot](repeating: .absent, count: heads.count) }
    for i in heads.indices {
      if sources[i] == nil {
        slots[i] = .notParticipating
        continue
      }
      switch headKind[i] {
      case .leaf where headLo[i] == key:
        if case .leaf(let b)? = heads[i] { slots[i] = .present(b) }
      case .hole where headLo[i] <= key && key <= headHi[i]:
        if case .hole(_, _, let e)? = heads[i] { slots[i] = .unknown(e) }
      default: slots[i] = .absent
      }
    }
    for i in heads.indices where headKind[i] == .hole && headLo[i] == key { holeReported[i] = true }
    return true
  }
}

/// Per-node directory source for the cluster cursor: the directory's table, or nothing
/// (a node that lacks the directory shows every entry as absent).
struct DirSource: ElementSource {
  var base: KeyRangeIterator?
  /// The node's directory inode could not be read: every key is unknown there.
  var unreadable: FormatError?
  init(reader: PFSReader, dir: InodeData?, unreadable: FormatError? = nil) {
    self.unreadable = dir == nil ? unreadable : nil
    if let dir, !dir.meta.isDirectData {
      base = KeyRangeIterator(volume: reader.volume, array: dir.blockset) { [label = reader.volume.label, inum = dir.meta.inum] in
        Location(image: label, structure: "directory inode \(inum)")
      }
      // A walk lists each directory once per node: its blocks need no cache.
      base?.cachesBlocks = false
    }
  }
  mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> TreeElement? {
    if let e = unreadable { return .hole(keyBeg: keyBeg, keyEnd: keyEnd, error: e) }
    return base?.lookup(keyBeg, keyEnd)
  }
  mutating func next() -> TreeElement? { unreadable != nil ? nil : base?.next() }
}

extension Array where Element == UInt8 {
  func u64le(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
}
