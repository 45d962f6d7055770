/*
 * The allocation trace recorder: every allocation and free a program makes
 * through slabkit (its own APIs, or the malloc replacement) written to a
 * compact binary file that `slabkit-bench --replay FILE` plays back over
 * every backend.  docs/trace-format.md describes the file.
 *
 * Turned on by SLABKIT_TRACE=path (read by slabkit's init), or by
 * sk_trace_start() (the malloc replacement calls it from its own init).
 *
 * What it costs when off: nothing on the fast paths.  While a trace is
 * being recorded, every cache is created with its fast path off
 * (c->fast = SK_FAST_NONE), so every call leaves for its front end's
 * out-of-line path; that is where the front ends call sk_trace_*, behind
 * one predictable branch on `sk_trace_on`.  Programs that do not trace pay
 * that branch on slow paths only.
 *
 * What must stay true: recording never allocates (not through slabkit, not
 * through libc: a static buffer, write(2), a mutex that never allocates),
 * so a trace never contains the recorder's own work and a malloc
 * replacement can call it from inside malloc.  A record is written before
 * a free and after an allocation, so an address is never seen freed while
 * the trace still shows it live.
 */
#ifndef SLABKIT_TRACE_H
#define SLABKIT_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/sk_compiler.h"

#pragma GCC visibility push(hidden)

/* Which API a record came through (the high nibble of a record's op byte). */
enum sk_trace_api {
	SK_TRACE_API_LIBC = 0,       /* malloc/calloc/realloc/memalign... (the malloc replacement) */
	SK_TRACE_API_KMALLOC = 1,    /* kmalloc family */
	SK_TRACE_API_KMEM_CACHE = 2, /* kmem_cache_alloc/free */
	SK_TRACE_API_BSD_MALLOC = 3, /* FreeBSD malloc(9) */
	SK_TRACE_API_UMA = 4,        /* uma_zalloc/uma_zfree */
};

/* What happened (the low nibble of the op byte). */
enum sk_trace_kind {
	SK_TRACE_ALLOC = 1,       /* id: the new object; size and alignment asked for */
	SK_TRACE_FREE = 2,        /* id: the object freed; size 0 */
	SK_TRACE_REALLOC = 3,     /* id: the old object; size: the new size; the next
				   * record of the file is its SK_TRACE_REALLOC_TO */
	SK_TRACE_REALLOC_TO = 4,  /* id: the object realloc returned (may equal the old) */
};

/* One record in the file: 24 bytes, little-endian, no padding. */
struct sk_trace_record {
	uint64_t id;         /* the object's address: its identity while it lives */
	uint64_t size;       /* bytes asked for (ALLOC, REALLOC), else 0 */
	uint32_t time_ms;    /* CLOCK_MONOTONIC_COARSE since the trace started, ms */
	uint16_t thread;     /* 1, 2, ...: the order in which threads first recorded */
	uint8_t op;          /* kind | api << 4 */
	uint8_t align_log2;  /* log2 of the alignment asked for (0: the API's default) */
};
_Static_assert(sizeof(struct sk_trace_record) == 24, "trace records are 24 bytes");

/* The file starts with this header (32 bytes). */
#define SK_TRACE_MAGIC "SKTRACE1"
struct sk_trace_header {
	char magic[8];              /* SK_TRACE_MAGIC, no terminator */
	uint32_t version;           /* 1 */
	uint32_t record_size;       /* sizeof(struct sk_trace_record) */
	uint64_t start_realtime_ns; /* CLOCK_REALTIME when the trace started */
	uint32_t pid;               /* the process that recorded */
	uint32_t reserved;          /* 0 */
};
_Static_assert(sizeof(struct sk_trace_header) == 32, "the trace header is 32 bytes");

/* True while a trace file is open.  Synchronization: written under the
 * recorder's lock, read with sk_load (a stale read only drops or adds a
 * record at the very start or end of a trace). */
extern bool sk_trace_on;

/* Start recording to path (created or truncated).  0, or a negative errno
 * with the reason sent to the message hook.  -EALREADY when on already. */
int sk_trace_start(const char *path);
/* Write what is buffered and close the file.  Also runs at process exit. */
void sk_trace_stop(void);

/* The recorder itself: one record (two for a realloc), under its lock. */
void sk_trace_record(unsigned op, const void *obj, size_t size, size_t align);
void sk_trace_record_realloc(unsigned api, const void *old, const void *new_obj, size_t size);

/* What the front ends and the malloc replacement call: free before the
 * object is given back, alloc after it was obtained (NULL is not recorded). */
static sk_always_inline void sk_trace_alloc(enum sk_trace_api api, const void *obj, size_t size, size_t align)
{
	if (sk_unlikely(sk_load(&sk_trace_on)) && obj)
		sk_trace_record(SK_TRACE_ALLOC | (unsigned)api << 4, obj, size, align);
}

static sk_always_inline void sk_trace_free(enum sk_trace_api api, const void *obj)
{
	if (sk_unlikely(sk_load(&sk_trace_on)) && obj)
		sk_trace_record(SK_TRACE_FREE | (unsigned)api << 4, obj, 0, 0);
}

/* A realloc that returned new_obj (NULL: it failed, nothing is recorded). */
static sk_always_inline void sk_trace_realloc(enum sk_trace_api api, const void *old, const void *new_obj,
					      size_t size)
{
	if (sk_unlikely(sk_load(&sk_trace_on)) && new_obj)
		sk_trace_record_realloc((unsigned)api, old, new_obj, size);
}

#pragma GCC visibility pop

#endif /* SLABKIT_TRACE_H */
