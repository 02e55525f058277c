// The one C target of h2resync: system codec and hash libraries, plus inline wrappers
// for what Swift cannot call directly (zlib's init macros). Swift owns all state.
#ifndef CHAMMER2_CODECS_H
#define CHAMMER2_CODECS_H

#include <stddef.h>
#include <stdint.h>
#include <lz4.h>
#include <zstd.h>
#include <zlib.h>
#include <xxhash.h>

/// Inflate a complete zlib (RFC 1950) stream into at most `dst_cap` bytes.
/// Returns the number of bytes produced, or a negative zlib error code.
/// A stream that would produce more than `dst_cap` bytes is an error (Z_BUF_ERROR):
/// HAMMER2 never stores more than one 64 KiB logical block per stream.
int64_t h2_zlib_inflate(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap);

/// Deflate `src` as one zlib stream at `level` into at most `dst_cap` bytes.
/// Returns the compressed length, or a negative value when it does not fit.
int64_t h2_zlib_deflate(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap, int level);

/// Decompress one zstd frame of `src_len` bytes into at most `dst_cap` bytes.
/// Returns bytes produced or -1 on error (including output larger than dst_cap).
int64_t h2_zstd_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap);

/// Starts writeback of a written file range without waiting for it (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`, which Swift's Glibc module does not
/// export), so a later fsync finds less to flush. Returns 0, or -1 with errno set; a
/// no-op returning 0 elsewhere. Only a hint: durability still comes from fsync.
int h2_start_writeback(int fd, int64_t offset, int64_t length);

/// Opens `path` write-only for direct I/O (Linux `O_DIRECT`, not exported to Swift):
/// large aligned writes then bypass the page cache (no copy, no dirty pages for the
/// commit's fsync to flush). Returns the descriptor, or -1 where unsupported.
int h2_open_direct(const char *path);

/// Keeps memory the process frees for its own reuse (glibc `mallopt`: heap trimming
/// above `keep_bytes`, and `mmap` only for blocks of `keep_bytes` or more). A walk frees
/// and allocates block-sized buffers all the time; returned to the kernel, each reuse
/// costs a page fault and the kernel's zeroing of every page again. Process-wide, so
/// only a program's entry point calls it. A no-op elsewhere.
void h2_keep_freed_memory(size_t keep_bytes);

/// CRC-32C (Castagnoli) of `len` bytes with the CPU's CRC32 instruction (x86-64
/// SSE4.2), continuing from `*crc` (the running value, no initial or final XOR here).
/// Returns 1 when it ran; 0, leaving `*crc` alone, where the instruction is missing
/// (the caller then uses its tables). The volume header alone is 64 KiB of CRC-32C,
/// read four times on every open.
int h2_crc32c_hw(uint32_t *crc, const uint8_t *p, size_t len);

#endif
