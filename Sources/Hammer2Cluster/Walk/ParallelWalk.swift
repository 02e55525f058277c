import Foundation
import Hammer2Format

/// Splits one cluster's directory walk over threads without changing what it reports
/// or in what order. The sequential walk lists a directory, then walks the subtree of
/// its last subdirectory, then the one before, and so on; so the walk's output is the
/// root's listing followed by whole subtrees in a fixed order. The calling thread
/// lists the first levels (breadth first) until there are enough subtrees, then
/// worker threads walk the subtrees (each with its own volumes: a `Volume` belongs to
/// one thread) while the calling thread hands their differences to `emit` in the
/// sequential order as they arrive. Workers ahead of that order keep at most
/// `bufferLimit` differences waiting, so memory does not follow the walk's size.
final class ParallelWalk {
  /// The output in walk order: listings made while splitting, and subtrees to walk.
  private enum Segment {
    case listed([Difference], [(node: Int, finding: Finding)])
    case subtree(DirectoryTask)
  }
  private var segments: [Segment]
  private let primary: DirectoryWalker
  private let threads: Int
  /// The walkers that walked subtrees (their counters are merged by the caller).
  private(set) var workers: [DirectoryWalker] = []
  /// Subtrees wanted per thread (several, for balance), deepest level split,
  /// differences held while splitting.
  private let jobsPerThread: Int
  static let maxSplitDepth = 4
  static let maxListed = 10_000
  private let bufferLimit: Int

  init(walker: DirectoryWalker, top: DirectoryTask, threads: Int, jobsPerThread: Int, bufferLimit: Int) {
    primary = walker
    self.threads = threads
    self.jobsPerThread = jobsPerThread
    self.bufferLimit = bufferLimit
    segments = [.subtree(top)]
    split()
  }

  /// Lists directories breadth first from the top until there are enough subtrees.
  private func split() {
    var held = 0
    while held < Self.maxListed {
      var subtrees = 0
      var pick: (index: Int, depth: Int)?
      for (i, s) in segments.enumerated() {
        guard case .subtree(let t) = s else { continue }
        subtrees += 1
        if t.depth < Self.maxSplitDepth, pick == nil || t.depth < pick!.depth { pick = (i, t.depth) } // Safe: checked first.
      }
      guard subtrees < threads * jobsPerThread, let (i, _) = pick, case .subtree(let t) = segments[i] else { break }
      var out: [Difference] = []
      var kids: [DirectoryTask] = []
      primary.findings = []
      primary.sink = { out.append($0) }
      primary.list(t) { kids.append($0) }
      held += out.count
      segments.replaceSubrange(i...i, with: [.listed(out, primary.findings)] + kids.reversed().map { .subtree($0) })
    }
    primary.findings = []
  }

  /// Walks every subtree and hands the differences to `emit` and the findings to
  /// `merge`, both in walk order, on the calling thread.
  func run(emit: (Difference) -> Void, merge: ([(node: Int, finding: Finding)]) -> Void) {
    let jobs = segments.compactMap { s -> DirectoryTask? in
      if case .subtree(let t) = s { return t }
      return nil
    }
    var walkers: [DirectoryWalker] = []
    if jobs.count > 1 {
      // The group's readers go to the first worker (the calling thread only coordinates
      // meanwhile); the others open the images again.
      walkers.append(DirectoryWalker(shared: primary.shared, readers: primary.readers))
      for _ in 1..<min(threads, jobs.count) {
        guard
          let readers = try? primary.readers.map({ r throws(FormatError) in
            PFSReader(
              volume: try Volume.open(
                path: r.volume.label, opener: r.volume.opener, cacheBudget: CacheBudget.walkThreadShare(ofNode: r.volume.cacheBudget)),
              pfs: r.pfs)
          })
        else { break }
        walkers.append(DirectoryWalker(shared: primary.shared, readers: readers))
      }
    }
    var board: JobBoard?
    if walkers.count > 1 {
      workers = walkers
      let b = JobBoard(jobs: jobs, limit: bufferLimit, workers: walkers.count)
      for w in walkers {
        let box = UncheckedSendable(w)
        let t = Thread { b.work(box.value) }
        t.name = "h2 walk"
        t.stackSize = 8 << 20
        t.start()
      }
      board = b
    }
    var k = 0
    for s in segments {
      switch s {
      case .listed(let d, let f):
        d.forEach(emit)
        merge(f)
      case .subtree(let t):
        defer { k += 1 }
        if let board {
          merge(board.stream(k, emit))
          continue
        }
        // One thread: walked here, in the same order.
        primary.findings = []
        withoutActuallyEscaping(emit) { emit in
          primary.sink = emit
          primary.walk(t)
          primary.sink = { _ in }
        }
        merge(primary.findings)
      }
    }
    board?.waitForWorkers()
  }
}

/// The jobs of a parallel walk and their pending output, under one lock. Workers take
/// jobs in order; the coordinator streams job k's differences while it runs (job k is
/// the `head`), and a worker on a later job waits while `limit` differences are held.
/// The head's worker never waits, so the walk always progresses.
private final class JobBoard: @unchecked Sendable {
  private let cond = NSCondition()
  private let jobs: [DirectoryTask]
  private let limit: Int
  private var nextJob = 0
  private var head = 0
  private var pending: [[Difference]]
  private var findings: [[(node: Int, finding: Finding)]]
  private var done: [Bool]
  private var held = 0
  private var running: Int

  init(jobs: [DirectoryTask], limit: Int, workers: Int) {
    self.jobs = jobs
    self.limit = max(1, limit)
    pending = .init(repeating: [], count: jobs.count)
    findings = .init(repeating: [], count: jobs.count)
    done = .init(repeating: false, count: jobs.count)
    running = workers
  }

  /// A worker thread's life: walk jobs until none is left.
  func work(_ walker: DirectoryWalker) {
    while let k = take() {
      walker.findings = []
      walker.sink = { [self] d in put(d, job: k) }
      walker.walk(jobs[k])
      cond.lock()
      done[k] = true
      findings[k] = walker.findings
      cond.broadcast()
      cond.unlock()
    }
    walker.sink = { _ in }
    cond.lock()
    running -= 1
    cond.broadcast()
    cond.unlock()
  }

  private func take() -> Int? {
    cond.lock()
    defer { cond.unlock() }
    guard nextJob < jobs.count else { return nil }
    nextJob += 1
    return nextJob - 1
  }

  private func put(_ d: Difference, job k: Int) {
    cond.lock()
    while held >= limit && k != head { cond.wait() }
    pending[k].append(d)
    held += 1
    // Wake the coordinator in batches: one wake per difference would cost more than
    // the difference.
    if k == head && pending[k].count >= 64 { cond.broadcast() }
    cond.unlock()
  }

  /// Coordinator: hands job k's differences to `emit` as they come, in order, until the
  /// job is done; returns its findings. Jobs must be streamed in order 0, 1, 2...
  func stream(_ k: Int, _ emit: (Difference) -> Void) -> [(node: Int, finding: Finding)] {
    while true {
      cond.lock()
      while pending[k].isEmpty && !done[k] { cond.wait() }
      let items = pending[k]
      pending[k] = []
      held -= items.count
      let finished = done[k]
      let f = findings[k]
      if finished {
        findings[k] = []
        head = k + 1
      }
      cond.broadcast()
      cond.unlock()
      items.forEach(emit)
      if finished { return f }
    }
  }

  func waitForWorkers() {
    cond.lock()
    while running > 0 { cond.wait() }
    cond.unlock()
  }
}

/// Hands a non-Sendable value to worker threads that use it without sharing it.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

/// One slot per parallel job; each job writes only its own slot.
final class ParallelResults<T>: @unchecked Sendable {
  private var slots: [T?]
  private let lock = NSLock()
  init(count: Int) { slots = .init(repeating: nil, count: count) }
  func set(_ i: Int, _ v: T) {
    lock.lock()
    slots[i] = v
    lock.unlock()
  }
  func get(_ i: Int) -> T? {
    lock.lock()
    defer { lock.unlock() }
    return slots[i]
  }
}
