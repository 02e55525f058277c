#define _GNU_SOURCE
#include "CHammer2Codecs.h"
#include <fcntl.h>
#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string.h>

int64_t h2_zlib_inflate(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap) {
  z_stream strm;
  memset(&strm, 0, sizeof(strm));
  int rc = inflateInit(&strm);
  if (rc != Z_OK) return rc < 0 ? rc : -100;
  strm.next_in = (Bytef *)src;
  strm.avail_in = (uInt)src_len;
  strm.next_out = dst;
  strm.avail_out = (uInt)dst_cap;
  rc = inflate(&strm, Z_FINISH);
  int64_t produced = (int64_t)strm.total_out;
  inflateEnd(&strm);
  /* Z_STREAM_END: complete stream. Anything else (Z_BUF_ERROR when the output is full,
     Z_DATA_ERROR for garbage) means the block is not a valid bounded stream. */
  if (rc != Z_STREAM_END) return rc < 0 ? rc : -101;
  return produced;
}

int64_t h2_zlib_deflate(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap, int level) {
  z_stream strm;
  memset(&strm, 0, sizeof(strm));
  int rc = deflateInit(&strm, level);
  if (rc != Z_OK) return rc < 0 ? rc : -100;
  strm.next_in = (Bytef *)src;
  strm.avail_in = (uInt)src_len;
  strm.next_out = dst;
  strm.avail_out = (uInt)dst_cap;
  rc = deflate(&strm, Z_FINISH);
  int64_t produced = (int64_t)strm.total_out;
  deflateEnd(&strm);
  if (rc != Z_STREAM_END) return -1;
  return produced;
}

int64_t h2_zstd_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap) {
  size_t rc = ZSTD_decompress(dst, dst_cap, src, src_len);
  if (ZSTD_isError(rc)) return -1;
  return (int64_t)rc;
}

int h2_start_writeback(int fd, int64_t offset, int64_t length) {
#ifdef __linux__
  return sync_file_range(fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE);
#else
  (void)fd; (void)offset; (void)length;
  return 0;
#endif
}

int h2_open_direct(const char *path) {
#ifdef __linux__
  return open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
#else
  (void)path;
  return -1;
#endif
}

void h2_keep_freed_memory(size_t keep_bytes) {
#if defined(__linux__) && defined(__GLIBC__)
  /* glibc refuses an mmap threshold above 32 MiB (64-bit). */
  int n = keep_bytes > ((size_t)32 << 20) ? (32 << 20) : (int)keep_bytes;
  mallopt(M_TRIM_THRESHOLD, n);
  mallopt(M_MMAP_THRESHOLD, n);
#else
  (void)keep_bytes;
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

__attribute__((target("sse4.2"))) static uint32_t h2_crc32c_sse42(uint32_t c, const uint8_t *p, size_t len) {
  uint64_t c64 = c;
  while (len >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);  // unaligned; little-endian as CRC-32C consumes it
    c64 = __builtin_ia32_crc32di(c64, v);
    p += 8;
    len -= 8;
  }
  c = (uint32_t)c64;
  while (len > 0) {
    c = __builtin_ia32_crc32qi(c, *p++);
    len--;
  }
  return c;
}
#endif

int h2_crc32c_hw(uint32_t *crc, const uint8_t *p, size_t len) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // CPUID leaf 1, ECX bit 20 (SSE4.2), asked once: 0 unknown, 1 absent, 2 present.
  // Threads racing here store the same answer.
  static int known = 0;
  int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
  if (k == 0) {
    unsigned int a, b, c, d;
    k = (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) ? 2 : 1;
    __atomic_store_n(&known, k, __ATOMIC_RELAXED);
  }
  if (k != 2) return 0;
  *crc = h2_crc32c_sse42(*crc, p, len);
  return 1;
#else
  (void)crc;
  (void)p;
  (void)len;
  return 0;
#endif
}
