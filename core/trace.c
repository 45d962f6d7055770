/*
 * The allocation trace recorder (sk_trace.h; the file format is in
 * docs/trace-format.md).
 *
 * Records go to one static buffer under one mutex and reach the file with
 * write(2) when the buffer fills, at sk_trace_stop() and at process exit.
 * Nothing here allocates: no stdio on the file, a static buffer, thread
 * numbers in an initial-exec TLS word (no __tls_get_addr, which may call
 * malloc).  One lock serialises recording threads: tracing is for
 * capturing what a program does, not for timing it.
 *
 * Lock order: trace_lock is a leaf (nothing is called under it but
 * write(2) and the clock).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "sk_core.h"
#include "sk_trace.h"

#define TRACE_BUFFER_RECORDS 2730 /* 64 KiB of records */

bool sk_trace_on;

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
/* Synchronization: everything below under trace_lock. */
static int trace_fd = -1;
static pid_t trace_pid;
static uint64_t trace_start_ns; /* CLOCK_MONOTONIC_COARSE at start */
static unsigned trace_used;
static bool trace_write_failed;
static struct sk_trace_record trace_buffer[TRACE_BUFFER_RECORDS];

/* fork(): trace_lock is a leaf. */
void sk_trace_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&trace_lock);
}

/* Thread numbers: 1, 2, ... in order of first record; 0 = none yet. */
static uint32_t trace_next_thread; /* Synchronization: ck_pr atomics */
static __thread uint16_t trace_thread __attribute__((tls_model("initial-exec")));

static uint64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Called with trace_lock held. */
static void flush_locked(void)
{
	if (trace_used && !trace_write_failed &&
	    !write_all(trace_fd, trace_buffer, trace_used * sizeof(trace_buffer[0]))) {
		trace_write_failed = true;
		sk_errorf("slabkit: writing the allocation trace failed (%s); the trace is incomplete",
			  strerror(errno));
	}
	trace_used = 0;
}

/* Called with trace_lock held: close and stop.  A child made by fork()
 * inherits the buffer and the file: it closes its copy without writing,
 * so the parent's records are written once (the child is not traced). */
static void stop_locked(void)
{
	if (trace_fd < 0)
		return;
	if (getpid() == trace_pid)
		flush_locked();
	close(trace_fd);
	trace_fd = -1;
	trace_used = 0;
	sk_store(&sk_trace_on, false);
}

int sk_trace_start(const char *path)
{
	struct sk_trace_header h;
	struct timespec now;
	int fd, err = 0;

	pthread_mutex_lock(&trace_lock);
	if (trace_fd >= 0) {
		err = -EALREADY;
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		sk_errorf("slabkit: cannot open the allocation trace %s: %s", path, strerror(errno));
		goto out;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SK_TRACE_MAGIC, sizeof(h.magic));
	h.version = 1;
	h.record_size = sizeof(struct sk_trace_record);
	clock_gettime(CLOCK_REALTIME, &now);
	h.start_realtime_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	h.pid = (uint32_t)getpid();
	if (!write_all(fd, &h, sizeof(h))) {
		err = -errno;
		sk_errorf("slabkit: cannot write the allocation trace %s: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	trace_fd = fd;
	trace_pid = getpid();
	trace_start_ns = coarse_ns();
	trace_used = 0;
	trace_write_failed = false;
	sk_store(&sk_trace_on, true);
out:
	pthread_mutex_unlock(&trace_lock);
	return err;
}

void sk_trace_stop(void)
{
	pthread_mutex_lock(&trace_lock);
	stop_locked();
	pthread_mutex_unlock(&trace_lock);
}

/* At exit: what is still buffered reaches the file. */
__attribute__((destructor)) static void trace_at_exit(void)
{
	sk_trace_stop();
}

static uint16_t this_thread(void)
{
	if (sk_unlikely(!trace_thread)) {
		uint32_t n = ck_pr_faa_32(&trace_next_thread, 1) + 1;
		trace_thread = (uint16_t)(n > UINT16_MAX ? UINT16_MAX : n);
	}
	return trace_thread;
}

static uint8_t align_log2(size_t align)
{
	return align ? (uint8_t)__builtin_ctzl(align) : 0;
}

/* Called with trace_lock held: ms since the trace started. */
static uint32_t elapsed_ms_locked(void)
{
	return (uint32_t)((coarse_ns() - trace_start_ns) / 1000000u);
}

/* Called with trace_lock held and the file open. */
static void append_locked(unsigned op, const void *obj, size_t size, size_t align, uint16_t thread,
			  uint32_t time_ms)
{
	struct sk_trace_record *r = &trace_buffer[trace_used++];

	r->id = (uint64_t)(uintptr_t)obj;
	r->size = size;
	r->time_ms = time_ms;
	r->thread = thread;
	r->op = (uint8_t)op;
	r->align_log2 = align_log2(align);
	if (trace_used == TRACE_BUFFER_RECORDS)
		flush_locked();
}

void sk_trace_record(unsigned op, const void *obj, size_t size, size_t align)
{
	uint16_t thread = this_thread();

	pthread_mutex_lock(&trace_lock);
	if (trace_fd >= 0)
		append_locked(op, obj, size, align, thread, elapsed_ms_locked());
	pthread_mutex_unlock(&trace_lock);
}

void sk_trace_record_realloc(unsigned api, const void *old, const void *new_obj, size_t size)
{
	uint16_t thread = this_thread();

	pthread_mutex_lock(&trace_lock);
	if (trace_fd >= 0) {
		uint32_t ms = elapsed_ms_locked();

		/* One lock hold: the pair is adjacent in the file. */
		append_locked(SK_TRACE_REALLOC | api << 4, old, size, 0, thread, ms);
		append_locked(SK_TRACE_REALLOC_TO | api << 4, new_obj, size, 0, thread, ms);
	}
	pthread_mutex_unlock(&trace_lock);
}
