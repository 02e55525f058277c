/* h2nbd: see include/h2nbd.h. */
#define _GNU_SOURCE
#include "h2nbd.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct h2nbd_conn {
  struct nbd_handle *nbd;
  int fd;
  int wake[2];             /* self-pipe: a submitter wakes the I/O thread */
  pthread_t thread;
  int thread_started;
  pthread_mutex_t lock;    /* guards everything below and every request's state */
  pthread_cond_t cond;     /* broadcast on every completion and on failure */
  int refs;                /* the owner's and one per request */
  int stop;
  int closed;
  int failed;
  h2nbd_error failure;
};

struct h2nbd_req {
  h2nbd_conn *c;
  int refs;                /* the caller's and libnbd's (dropped when it frees the closure) */
  int done;
  int status;              /* errno-style, 0 = success */
  int freed;               /* libnbd freed its closure */
  uint64_t offset;
  size_t count;
  void *buf;
};

static void set_error(h2nbd_error *err, int code, const char *msg) {
  if (!err) return;
  err->code = code ? code : EIO;
  snprintf(err->message, sizeof err->message, "%s", msg && *msg ? msg : strerror(err->code));
}

/* libnbd's thread-local error of the call that just failed. */
static void set_nbd_error(h2nbd_error *err, int fallback) {
  int code = nbd_get_errno();
  set_error(err, code ? code : fallback, nbd_get_error());
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_unref_locked(h2nbd_conn *c, int *destroy) {
  *destroy = --c->refs == 0;
}

static void conn_destroy(h2nbd_conn *c) {
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  free(c);
}

static void req_unref(h2nbd_req *r) {
  h2nbd_conn *c = r->c;
  int destroy_conn = 0;
  pthread_mutex_lock(&c->lock);
  int last = --r->refs == 0;
  if (last) conn_unref_locked(c, &destroy_conn);
  pthread_mutex_unlock(&c->lock);
  if (last) {
    free(r->buf);
    free(r);
  }
  if (destroy_conn) conn_destroy(c);
}

/* Marks the connection failed (first reason wins) and wakes every waiter. Lock held. */
static void fail_locked(h2nbd_conn *c, int code, const char *msg) {
  if (!c->failed) {
    c->failed = 1;
    set_error(&c->failure, code, msg);
  }
  pthread_cond_broadcast(&c->cond);
}

static void fail(h2nbd_conn *c, int code, const char *msg) {
  pthread_mutex_lock(&c->lock);
  fail_locked(c, code, msg);
  pthread_mutex_unlock(&c->lock);
}

static void wake_io(h2nbd_conn *c) {
  char b = 1;
  ssize_t n = write(c->wake[1], &b, 1);
  (void)n; /* a full pipe already wakes it */
}

/* Completion callback: runs inside libnbd (handle lock held) on whatever thread drives it. */
static int on_complete(void *user_data, int *error) {
  h2nbd_req *r = user_data;
  pthread_mutex_lock(&r->c->lock);
  r->status = *error;
  r->done = 1;
  pthread_cond_broadcast(&r->c->cond);
  pthread_mutex_unlock(&r->c->lock);
  return 1; /* retire the command */
}

/* Called exactly once when libnbd drops the closure (retired, or the handle closed). */
static void on_free(void *user_data) {
  h2nbd_req *r = user_data;
  pthread_mutex_lock(&r->c->lock);
  r->freed = 1;
  if (!r->done) {
    r->done = 1;
    r->status = ENOTCONN;
    pthread_cond_broadcast(&r->c->cond);
  }
  pthread_mutex_unlock(&r->c->lock);
  req_unref(r);
}

static void *io_main(void *arg) {
  h2nbd_conn *c = arg;
  for (;;) {
    pthread_mutex_lock(&c->lock);
    int stop = c->stop, failed = c->failed;
    pthread_mutex_unlock(&c->lock);
    if (stop) break;
    struct pollfd p[2] = {{.fd = c->wake[0], .events = POLLIN}, {.fd = -1}};
    if (!failed) {
      unsigned dir = nbd_aio_get_direction(c->nbd);
      short ev = 0;
      if (dir & LIBNBD_AIO_DIRECTION_READ) ev |= POLLIN;
      if (dir & LIBNBD_AIO_DIRECTION_WRITE) ev |= POLLOUT;
      if (ev) {
        p[1].fd = c->fd;
        p[1].events = ev;
      }
    }
    int n = poll(p, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(c, errno, "poll failed");
      continue;
    }
    if (p[0].revents) {
      char buf[64];
      while (read(c->wake[0], buf, sizeof buf) > 0) {}
    }
    if (p[1].fd >= 0 && p[1].revents) {
      int rc = 0;
      if ((p[1].events & POLLIN) && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) rc = nbd_aio_notify_read(c->nbd);
      if (rc != -1 && (p[1].events & POLLOUT) && (p[1].revents & (POLLOUT | POLLERR))) rc = nbd_aio_notify_write(c->nbd);
      if (rc == -1) {
        h2nbd_error e;
        set_nbd_error(&e, ECONNRESET);
        fail(c, e.code, e.message);
      } else if (nbd_aio_is_dead(c->nbd) || nbd_aio_is_closed(c->nbd)) {
        fail(c, ECONNRESET, "the server closed the connection");
      }
    }
  }
  return NULL;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* `?tls-username=NAME` (percent-decoded): libnbd 1.14 takes the TLS username only from
 * the URI's user part (`nbds://NAME@host/...`) and otherwise asks getlogin_r, which
 * fails where there is no login terminal (cron, systemd, tests). A user part, when
 * there is one, still wins: connect_uri sets it after this. 0, or -1 when libnbd
 * refused the name. */
static int set_query_tls_username(struct nbd_handle *h, const char *uri) {
  const char *q = strchr(uri, '?');
  while (q) {
    q++;
    if (strncmp(q, "tls-username=", 13) == 0) {
      const char *v = q + 13;
      size_t n = strcspn(v, "&");
      char *name = malloc(n + 1);
      if (!name) return -1;
      size_t k = 0;
      for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < n && (hi = hex_digit(v[i + 1])) >= 0 && (lo = hex_digit(v[i + 2])) >= 0) {
          name[k++] = (char)(hi * 16 + lo);
          i += 2;
        } else {
          name[k++] = v[i];
        }
      }
      name[k] = 0;
      int rc = nbd_set_tls_username(h, name);
      free(name);
      return rc;
    }
    q = strchr(q, '&');
  }
  return 0;
}

h2nbd_conn *h2nbd_connect(const char *uri, int timeout_ms, h2nbd_error *err) {
  struct nbd_handle *h = nbd_create();
  if (!h) {
    set_nbd_error(err, ENOMEM);
    return NULL;
  }
  /* The URI is the user's own argument: let it name a TLS PSK file. */
  nbd_set_uri_allow_local_file(h, 1);
  if (set_query_tls_username(h, uri) == -1) {
    set_nbd_error(err, EINVAL);
    nbd_close(h);
    return NULL;
  }
  if (nbd_aio_connect_uri(h, uri) == -1) {
    set_nbd_error(err, ECONNREFUSED);
    nbd_close(h);
    return NULL;
  }
  int64_t deadline = monotonic_ms() + timeout_ms;
  while (!nbd_aio_is_ready(h)) {
    if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
      set_error(err, ECONNRESET, "the server closed the connection during the handshake");
      nbd_close(h);
      return NULL;
    }
    unsigned dir = nbd_aio_get_direction(h);
    struct pollfd p = {.fd = nbd_aio_get_fd(h), .events = 0};
    if (dir & LIBNBD_AIO_DIRECTION_READ) p.events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE) p.events |= POLLOUT;
    int64_t left = deadline - monotonic_ms();
    if (left <= 0 || p.fd < 0) {
      char msg[128];
      snprintf(msg, sizeof msg, "no handshake from the server within %d ms", timeout_ms);
      set_error(err, ETIMEDOUT, msg);
      nbd_close(h);
      return NULL;
    }
    int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    int rc = 0;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) rc = nbd_aio_notify_read(h);
    if (rc != -1 && (p.revents & POLLOUT)) rc = nbd_aio_notify_write(h);
    if (rc == -1) {
      set_nbd_error(err, ECONNRESET);
      nbd_close(h);
      return NULL;
    }
  }
  h2nbd_conn *c = calloc(1, sizeof *c);
  if (!c) {
    set_error(err, ENOMEM, NULL);
    nbd_close(h);
    return NULL;
  }
  c->nbd = h;
  c->fd = nbd_aio_get_fd(h);
  c->refs = 1;
  if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    set_error(err, errno, "pipe failed");
    nbd_close(h);
    free(c);
    return NULL;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&c->lock, NULL);
  if (pthread_create(&c->thread, NULL, io_main, c) != 0) {
    set_error(err, EAGAIN, "could not start the NBD I/O thread");
    close(c->wake[0]);
    close(c->wake[1]);
    nbd_close(h);
    conn_destroy(c);
    return NULL;
  }
  c->thread_started = 1;
  return c;
}

void h2nbd_close(h2nbd_conn *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->stop = 1;
  pthread_mutex_unlock(&c->lock);
  wake_io(c);
  if (c->thread_started) pthread_join(c->thread, NULL);
  pthread_mutex_lock(&c->lock);
  c->closed = 1;
  fail_locked(c, ENOTCONN, "the connection was closed");
  pthread_mutex_unlock(&c->lock);
  /* Frees every closure still held: pending requests complete with ENOTCONN. */
  nbd_close(c->nbd);
  c->nbd = NULL;
  close(c->wake[0]);
  close(c->wake[1]);
  int destroy = 0;
  pthread_mutex_lock(&c->lock);
  conn_unref_locked(c, &destroy);
  pthread_mutex_unlock(&c->lock);
  if (destroy) conn_destroy(c);
}

int64_t h2nbd_size(h2nbd_conn *c) { return nbd_get_size(c->nbd); }
int h2nbd_is_read_only(h2nbd_conn *c) { return nbd_is_read_only(c->nbd); }
int h2nbd_can_flush(h2nbd_conn *c) { return nbd_can_flush(c->nbd); }
int h2nbd_can_fua(h2nbd_conn *c) { return nbd_can_fua(c->nbd); }
int h2nbd_can_multi_conn(h2nbd_conn *c) { return nbd_can_multi_conn(c->nbd); }
int64_t h2nbd_block_size(h2nbd_conn *c, int preferred) {
  int64_t v = nbd_get_block_size(c->nbd, preferred ? LIBNBD_SIZE_PREFERRED : LIBNBD_SIZE_MAXIMUM);
  return v < 0 ? 0 : v;
}

int h2nbd_failed(h2nbd_conn *c, h2nbd_error *err) {
  pthread_mutex_lock(&c->lock);
  int failed = c->failed;
  if (failed && err) *err = c->failure;
  pthread_mutex_unlock(&c->lock);
  return failed;
}

enum { OP_READ, OP_WRITE, OP_FLUSH };

static h2nbd_req *submit(h2nbd_conn *c, int op, uint64_t offset, const void *src, size_t count, int fua, h2nbd_error *err) {
  h2nbd_req *r = calloc(1, sizeof *r);
  if (!r) {
    set_error(err, ENOMEM, NULL);
    return NULL;
  }
  r->c = c;
  r->offset = offset;
  r->count = count;
  if (op != OP_FLUSH) {
    r->buf = malloc(count ? count : 1);
    if (!r->buf) {
      free(r);
      set_error(err, ENOMEM, NULL);
      return NULL;
    }
    if (op == OP_WRITE) memcpy(r->buf, src, count);
  }
  pthread_mutex_lock(&c->lock);
  if (c->failed) {
    if (err) *err = c->failure;
    pthread_mutex_unlock(&c->lock);
    free(r->buf);
    free(r);
    return NULL;
  }
  r->refs = 2; /* the caller's and libnbd's */
  c->refs++;
  pthread_mutex_unlock(&c->lock);
  nbd_completion_callback cb = {.callback = on_complete, .user_data = r, .free = on_free};
  int64_t cookie;
  switch (op) {
  case OP_READ: cookie = nbd_aio_pread(c->nbd, r->buf, count, offset, cb, 0); break;
  case OP_WRITE: cookie = nbd_aio_pwrite(c->nbd, r->buf, count, offset, cb, fua ? LIBNBD_CMD_FLAG_FUA : 0); break;
  default: cookie = nbd_aio_flush(c->nbd, cb, 0); break;
  }
  if (cookie == -1) {
    set_nbd_error(err, EIO);
    pthread_mutex_lock(&c->lock);
    int freed = r->freed;
    pthread_mutex_unlock(&c->lock);
    if (!freed) req_unref(r); /* libnbd never took the closure */
    req_unref(r);
    return NULL;
  }
  wake_io(c);
  return r;
}

h2nbd_req *h2nbd_submit_read(h2nbd_conn *c, uint64_t offset, size_t count, h2nbd_error *err) {
  return submit(c, OP_READ, offset, NULL, count, 0, err);
}

h2nbd_req *h2nbd_submit_write(h2nbd_conn *c, uint64_t offset, const void *buf, size_t count, int fua, h2nbd_error *err) {
  return submit(c, OP_WRITE, offset, buf, count, fua, err);
}

h2nbd_req *h2nbd_submit_flush(h2nbd_conn *c, h2nbd_error *err) {
  return submit(c, OP_FLUSH, 0, NULL, 0, 0, err);
}

int h2nbd_wait(h2nbd_req *r, int timeout_ms, h2nbd_error *err) {
  h2nbd_conn *c = r->c;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec += 1;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&c->lock);
  while (!r->done && !c->failed) {
    if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT && !r->done) {
      char msg[128];
      snprintf(msg, sizeof msg, "no reply from the server within %d ms", timeout_ms);
      fail_locked(c, ETIMEDOUT, msg);
    }
  }
  int rc;
  if (r->done && r->status == 0) {
    rc = 0;
  } else if (r->done && r->status != ENOTCONN) {
    rc = r->status;
    set_error(err, rc, "the server failed the request");
  } else if (c->failed && c->failure.code) {
    rc = c->failure.code;
    if (err) *err = c->failure;
  } else {
    rc = ENOTCONN;
    set_error(err, rc, "the connection to the server was lost");
  }
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int h2nbd_is_done(h2nbd_req *r) {
  pthread_mutex_lock(&r->c->lock);
  int done = r->done;
  pthread_mutex_unlock(&r->c->lock);
  return done;
}

const void *h2nbd_data(h2nbd_req *r) { return r->buf; }
size_t h2nbd_count(h2nbd_req *r) { return r->count; }
void h2nbd_release(h2nbd_req *r) { if (r) req_unref(r); }
