/// One element met while iterating a key range.
public enum TreeElement: Sendable {
  /// A leaf blockref (INODE, DATA, DIRENT, FREEMAP_LEAF, or an unknown type).
  case leaf(Blockref)
  /// Keys `keyBeg...keyEnd` could not be read: an indirect block failed its check, was
  /// malformed, looped, or nested too deep. The caller must treat these keys as unknown,
  /// never as absent (docs/resync-semantics.md §5.5).
  case hole(keyBeg: UInt64, keyEnd: UInt64, error: FormatError)
}

/// Iterates the leaves of one container (a volume blockset, an inode's blockset, or an
/// indirect block) in key order, descending through indirect blocks: the single-node
/// `hammer2_chain_lookup` / `hammer2_chain_next` with `key_next`.
///
/// Bounded and cycle-proof: keys only move forward, each indirect block is descended at
/// most once per scan, and nesting is capped at `H2.maxIndirectDepth`.
public struct KeyRangeIterator {
  private struct Frame {
    var entries: [Blockref]
    var index: Int
    var lo: UInt64
    var hi: UInt64
  }

  /// The image being read.
  public let volume: Volume
  private let top: [Blockref]
  /// Where `top` lives (for findings about it): given, or built only when needed.
  private enum TopLocation {
    case known(Location)
    case lazy(() -> Location)
  }
  private let topWhere: TopLocation
  private var topLocation: Location {
    switch topWhere {
    case .known(let l): return l
    case .lazy(let make): return make()
    }
  }
  private var stack: [Frame] = []
  private var visited: Set<UInt64> = []
  private var keyEnd: UInt64 = .max
  private var done = true
  /// The next key not yet covered (`key_next`); meaningful until `isDone`.
  public private(set) var keyNext: UInt64 = 0
  /// Oddities met on the way (overlapping or malformed entries that were skipped).
  public private(set) var findings: [Finding] = []
  /// Indirect blocks read in this scan.
  public private(set) var indirectBlocksRead = 0
  /// False for a streaming pass (a directory listed once): indirect blocks read are
  /// not kept in the volume's cache.
  public var cachesBlocks = true

  /// Iterates `array`, which lives at `location` (used for findings about it).
  public init(volume: Volume, array: [Blockref], location: Location) {
    self.volume = volume
    self.top = array
    topWhere = .known(location)
  }

  /// Iterates `array`; `locate` names where it lives, called only for a finding (on a
  /// hot path, formatting a location up front costs more than the lookup).
  public init(volume: Volume, array: [Blockref], locate: @escaping () -> Location) {
    self.volume = volume
    self.top = array
    topWhere = .lazy(locate)
  }

  /// True when the scan has ended.
  public var isDone: Bool { done }

  /// Starts a scan of `[keyBeg, keyEnd]` and returns its first element
  /// (`hammer2_chain_lookup`).
  public mutating func lookup(_ keyBeg: UInt64, _ keyEnd: UInt64) -> TreeElement? {
    self.keyEnd = keyEnd
    keyNext = keyBeg
    visited.removeAll(keepingCapacity: true)
    done = keyBeg > keyEnd
    let entries = prepare(top, at: nil)
    var lo = 0
    var hi = entries.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if entries[mid].keyEnd < keyBeg { lo = mid + 1 } else { hi = mid }
    }
    stack = [Frame(entries: entries, index: lo, lo: 0, hi: .max)]
    return next()
  }

  /// Returns the next element in key order (`hammer2_chain_next`), nil at the end.
  public mutating func next() -> TreeElement? {
    while !done, !stack.isEmpty {
      let f = stack.count - 1
      guard stack[f].index < stack[f].entries.count else {
        stack.removeLast()
        continue
      }
      let e = stack[f].entries[stack[f].index]
      stack[f].index += 1
      let beg = max(e.key, stack[f].lo, keyNext)
      let end = min(e.keyEnd, stack[f].hi)
      if end < beg { continue } // outside the parent's range or already covered
      if beg > keyEnd {
        done = true
        return nil
      }
      let clippedEnd = min(end, keyEnd)
      switch e.type {
      case .indirect, .freemapNode:
        var failure: FormatError?
        if stack.count > H2.maxIndirectDepth {
          failure = FormatError(.tooDeep(limit: H2.maxIndirectDepth), at: volume.location(of: e))
        } else if !visited.insert(e.dataOff).inserted {
          failure = FormatError(.loop(.indirect, offset: e.mediaOffset), at: volume.location(of: e))
        } else if e.keybits >= 64 || e.key & ((UInt64(1) << UInt64(e.keybits)) &- 1) != 0 {
          failure = FormatError(
            .badTree(.indirectMisaligned(key: e.key, keybits: e.keybits)), at: volume.location(of: e))
        }
        if failure == nil {
          do {
            let (children, clean) = try volume.checkedBlockrefArray(e, cache: cachesBlocks)
            indirectBlocksRead += 1
            let entries = clean ? children : prepare(children, at: e)
            // Entries are sorted and disjoint: start at the first one that can reach
            // the keys still wanted (binary search instead of a linear scan).
            let from = max(beg, keyNext)
            var lo = 0
            var hi = entries.count
            while lo < hi {
              let mid = (lo + hi) / 2
              if entries[mid].keyEnd < from { lo = mid + 1 } else { hi = mid }
            }
            stack.append(Frame(entries: entries, index: lo, lo: beg, hi: end))
            continue
          } catch {
            failure = error
          }
        }
        advance(past: clippedEnd)
        // Safe: failure is set on every path that reaches here.
        return .hole(keyBeg: beg, keyEnd: clippedEnd, error: failure!)
      default:
        guard e.key >= stack[f].lo, e.key >= keyNext else {
          note(Finding(.warning, at: volume.location(of: e), "\(e.summary) lies outside its parent's key range; skipped"))
          continue
        }
        advance(past: e.keyEnd)
        return .leaf(e)
      }
    }
    done = true
    return nil
  }

  private mutating func advance(past end: UInt64) {
    if end >= keyEnd || end == .max { done = true } else { keyNext = end + 1 }
  }

  private mutating func note(_ f: Finding) {
    // Bounded: a garbage block could otherwise produce findings without end.
    if findings.count < 256 { findings.append(f) }
  }

  /// Live entries sorted by key; entries that overlap an earlier one, or have absurd
  /// keybits, are dropped with a finding (the kernel's search assumes neither happens).
  private mutating func prepare(_ array: [Blockref], at container: Blockref?) -> [Blockref] {
    // Fast path: cached arrays are already live and sorted; keep them unless an entry
    // is absurd or overlaps its predecessor.
    var clean = true
    var prevEnd: UInt64? = nil
    var prevKey: UInt64? = nil
    for e in array {
      if e.isEmpty || e.keybits > 64 || prevKey.map({ e.key < $0 }) == true || prevEnd.map({ e.key <= $0 }) == true {
        clean = false
        break
      }
      prevKey = e.key
      prevEnd = e.keyEnd
    }
    if clean { return array }
    var live = array.filter { !$0.isEmpty }
    live.sort { $0.key < $1.key }
    var out: [Blockref] = []
    out.reserveCapacity(live.count)
    prevEnd = nil
    for e in live {
      if e.keybits > 64 {
        note(
          Finding(
            .damage, at: container.map { volume.location(of: $0) } ?? topLocation,
            "\(e.summary): keybits \(e.keybits) is impossible; entry skipped"))
        continue
      }
      if let p = prevEnd, e.key <= p {
        note(
          Finding(
            .damage, at: container.map { volume.location(of: $0) } ?? topLocation, "\(e.summary) overlaps the previous entry; entry skipped"
          ))
        continue
      }
      out.append(e)
      prevEnd = e.keyEnd
    }
    return out
  }
}
