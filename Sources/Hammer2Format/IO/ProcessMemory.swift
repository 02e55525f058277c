import CHammer2Codecs

/// The process's allocator policy, for a program's entry point (a library never sets
/// it: it is process-wide).
public enum ProcessMemory {
  /// Keeps up to `bytes` of freed memory for reuse instead of returning it to the kernel
  /// (glibc's trim and mmap thresholds; nothing elsewhere). Walks and copies free and
  /// allocate block-sized buffers all the time; given back each time, every reuse paid a
  /// page fault and the zeroing of each page again (over a quarter of a resync's page
  /// faults). What is kept is bounded by `bytes` per allocator arena (glibc has one per
  /// allocating thread, at most 8 per core), not by the image.
  public static func keepFreedMemory(upTo bytes: Int = 32 << 20) {
    h2_keep_freed_memory(bytes > 0 ? bytes : 0)
  }
}
