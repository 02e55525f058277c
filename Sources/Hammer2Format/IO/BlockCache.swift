/// A least-recently-used cache with a fixed byte budget. Walks keep decoded metadata
/// blocks (indirect arrays, inodes) here so memory is bounded by the budget, not by the
/// size of the image.
final class BlockCache<Value> {
  private struct Node {
    var key: UInt64
    var value: Value?
    var cost: Int
    var prev: Int
    var next: Int
  }
  private var nodes: [Node] = []
  private var free: [Int] = []
  private var index: [UInt64: Int] = [:]
  private var head = -1 // most recent
  private var tail = -1 // least recent
  private(set) var used = 0
  let budget: Int

  init(budget: Int) { self.budget = max(0, budget) }

  func get(_ key: UInt64) -> Value? {
    guard let i = index[key] else { return nil }
    moveToFront(i)
    return nodes[i].value
  }

  func put(_ key: UInt64, _ value: Value, cost: Int) {
    guard cost <= budget else { return }
    if let i = index[key] {
      used += cost - nodes[i].cost
      nodes[i].value = value
      nodes[i].cost = cost
      moveToFront(i)
    } else {
      let node = Node(key: key, value: value, cost: cost, prev: -1, next: head)
      let i: Int
      if let f = free.popLast() {
        nodes[f] = node
        i = f
      } else {
        nodes.append(node)
        i = nodes.count - 1
      }
      if head >= 0 { nodes[head].prev = i }
      head = i
      if tail < 0 { tail = i }
      index[key] = i
      used += cost
    }
    while used > budget, tail >= 0 { evict(tail) }
  }

  private func unlink(_ i: Int) {
    let p = nodes[i].prev
    let n = nodes[i].next
    if p >= 0 { nodes[p].next = n } else { head = n }
    if n >= 0 { nodes[n].prev = p } else { tail = p }
    nodes[i].prev = -1
    nodes[i].next = -1
  }

  private func moveToFront(_ i: Int) {
    guard head != i else { return }
    unlink(i)
    nodes[i].next = head
    if head >= 0 { nodes[head].prev = i }
    head = i
    if tail < 0 { tail = i }
  }

  private func evict(_ i: Int) {
    unlink(i)
    index[nodes[i].key] = nil
    used -= nodes[i].cost
    nodes[i].value = nil
    free.append(i)
  }
}
