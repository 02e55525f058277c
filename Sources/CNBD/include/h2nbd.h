/* h2nbd: a small C layer over libnbd for h2resync's NBD devices.
 *
 * One `h2nbd_conn` is one NBD connection with its own I/O thread. Any thread may submit
 * requests (reads, writes, flushes) at any time; the I/O thread drives libnbd's state
 * machine with poll(2) (libnbd's aio_get_fd / aio_get_direction / aio_notify_* main-loop
 * interface), so many requests are in flight on one connection and no caller holds the
 * handle's lock while waiting. A caller waits for its request with a deadline: libnbd has
 * no per-request timeout, so a request that gets no reply in time marks the connection
 * dead and every later request on it fails at once.
 *
 * Every request owns its buffer and is reference counted (the caller's reference and
 * libnbd's, dropped when libnbd frees the completion closure), so a caller that gives up
 * on a request never leaves libnbd writing into freed memory.
 */
#ifndef H2NBD_H
#define H2NBD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct h2nbd_conn h2nbd_conn;
typedef struct h2nbd_req h2nbd_req;

/* Why a call failed: errno-style code and libnbd's message (never the URI's query). */
typedef struct {
  int code;
  char message[512];
} h2nbd_error;

/* Connects to `uri` (nbd://, nbds://, nbd+unix://, nbds+unix://) and completes the
 * handshake within `timeout_ms`. NULL on failure, with `err` filled. */
h2nbd_conn *h2nbd_connect(const char *uri, int timeout_ms, h2nbd_error *err);
/* Stops the I/O thread and closes the connection; requests still held stay valid (they
 * fail with ENOTCONN if they had not completed). */
void h2nbd_close(h2nbd_conn *c);

int64_t h2nbd_size(h2nbd_conn *c);
int h2nbd_is_read_only(h2nbd_conn *c);
int h2nbd_can_flush(h2nbd_conn *c);
int h2nbd_can_fua(h2nbd_conn *c);
int h2nbd_can_multi_conn(h2nbd_conn *c);
/* The server's preferred and maximum request sizes (0 when it gives none). */
int64_t h2nbd_block_size(h2nbd_conn *c, int preferred);
/* Whether the connection has failed (a timeout, the server gone); `err` says why. */
int h2nbd_failed(h2nbd_conn *c, h2nbd_error *err);

/* Submits a read of `count` bytes at `offset` into a buffer the request owns. NULL when
 * the connection has failed or libnbd refuses the request (`err` says why). */
h2nbd_req *h2nbd_submit_read(h2nbd_conn *c, uint64_t offset, size_t count, h2nbd_error *err);
/* Submits a write of a copy of `buf`; `fua`: NBD_CMD_FLAG_FUA (durable on reply). */
h2nbd_req *h2nbd_submit_write(h2nbd_conn *c, uint64_t offset, const void *buf, size_t count, int fua, h2nbd_error *err);
/* Submits NBD_CMD_FLUSH. */
h2nbd_req *h2nbd_submit_flush(h2nbd_conn *c, h2nbd_error *err);

/* Waits until `r` completes, the connection fails, or `timeout_ms` passes (then the
 * connection is marked failed: the server stopped answering). 0 on success, else an
 * errno code with `err` filled. */
int h2nbd_wait(h2nbd_req *r, int timeout_ms, h2nbd_error *err);
/* 1 when `r` has completed (successfully or not), without waiting. */
int h2nbd_is_done(h2nbd_req *r);
/* The request's buffer (a read's data once `h2nbd_wait` returned 0) and its size. */
const void *h2nbd_data(h2nbd_req *r);
size_t h2nbd_count(h2nbd_req *r);
/* Drops the caller's reference. */
void h2nbd_release(h2nbd_req *r);

#ifdef __cplusplus
}
#endif
#endif
