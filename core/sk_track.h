/*
 * Allocation tracking: who allocated each live object (call site, thread,
 * time, optionally a short backtrace), kept in a side table keyed by the
 * object's address, so that no backend changes its layout.
 *
 * Who is tracked:
 *   - every object of a cache with SK_CACHE_STORE_USER (Linux
 *     SLAB_STORE_USER, or any cache while SLABKIT_LEAKS is set);
 *   - with SLABKIT_LEAKS set, also large (page-path) blocks and the
 *     backend's heap blocks (SLOB's kmalloc), and malloc(9) blocks carry
 *     their malloc type.
 *
 * How it stays off the fast path: a tracked cache with per-CPU slots has
 * c->fast == SK_FAST_TRACKED, which no fast path accepts, so every
 * allocation and free of it goes through core's out-of-line slow path
 * (sk_cache_alloc_slow / sk_cache_free_slow), which records and forgets.
 * Untracked caches run exactly the code they ran before.
 *
 * Call sites: front ends pass the return address of their exported entry
 * point (SK_CALLER() there) down to the slow path; that is the user's call
 * site.
 *
 * Synchronization: the table is striped; each stripe's mutex is a leaf
 * lock (nothing else is taken under it; callers may hold none or any
 * other lock).
 */
#ifndef SLABKIT_TRACK_H
#define SLABKIT_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../numa/sk_numa.h"
#include "sk_cache.h"
#include "../common/sk_compiler.h"

#pragma GCC visibility push(hidden)

/* The return address of the function this is written in (in an
 * always-inline helper: of the function it is inlined into). */
#define SK_CALLER() ((const void *)__builtin_return_address(0))

#define SK_TRACK_FRAMES 8 /* site[0] is the call site; more with SLABKIT_LEAKS=bt */

enum sk_track_mode {
	SK_TRACK_OFF = 0,   /* only caches with SK_CACHE_STORE_USER, call site only */
	SK_TRACK_SITE = 1,  /* SLABKIT_LEAKS=1: everything, call site */
	SK_TRACK_BT = 2,    /* SLABKIT_LEAKS=bt: everything, call site and backtrace */
};

/* What kind of block a record describes. */
enum sk_track_kind {
	SK_TRACK_OBJECT = 0, /* an object of `cache` */
	SK_TRACK_LARGE,      /* a page-path block */
	SK_TRACK_HEAP,       /* a block of the backend's kmalloc heap */
};

/* One live allocation.  Copied out by sk_track_lookup. */
struct sk_track_rec {
	const void *obj;
	struct sk_cache *cache;       /* SK_TRACK_OBJECT: the cache; else NULL */
	const void *type;             /* a struct malloc_type (malloc(9)), else NULL */
	uint64_t size;                /* bytes the block holds */
	uint64_t time_ns;             /* CLOCK_MONOTONIC at allocation */
	pid_t tid;                    /* allocating thread (gettid) */
	uint8_t kind;                 /* enum sk_track_kind */
	uint8_t nframes;              /* valid entries of site[] (>= 1) */
	const void *site[SK_TRACK_FRAMES];
};

/* Process-wide mode, set once at init from SLABKIT_LEAKS (read racily). */
extern uint8_t sk_track_mode;

/* Init: read SLABKIT_LEAKS; 0 or -EINVAL (unknown value, reported). */
int sk_track_init(void);
/* Fini: forget every record (their memory goes with the metadata). */
void sk_track_fini(void);
/* Make the table (first tracked cache); false when out of metadata. */
bool sk_track_ready(void);

/* Is c tracked? */
static inline bool sk_track_cache(const struct sk_cache *c)
{
	return (c->flags & SK_CACHE_STORE_USER) != 0;
}

/* Record a new live block.  Never fails loudly: if no record can be made
 * the block is counted as untracked (sk_track_dropped). */
void sk_track_alloc(const void *obj, struct sk_cache *cache, enum sk_track_kind kind, uint64_t size,
		    const void *site);
/* Forget obj's record; false if it had none. */
bool sk_track_free(const void *obj);
/* Copy obj's record out; false if it has none. */
bool sk_track_lookup(const void *obj, struct sk_track_rec *out);
/* Attach a malloc type to obj's record (malloc(9) after a block is made). */
void sk_track_set_type(const void *obj, const void *type);

/* Records that could not be made (out of metadata). */
uint64_t sk_track_dropped(void);

/*
 * Leak report: the live records matching the filter, grouped by call
 * site, largest (bytes) first, symbolized, one line per group through the
 * message hook, under a heading naming `what`.  Filters: cache (NULL: any),
 * type (NULL: any; SK_TRACK_NO_TYPE: blocks without one).  Returns the
 * number of records reported.
 */
#define SK_TRACK_ANY ((const void *)0)
#define SK_TRACK_NO_TYPE ((const void *)1)
#define SK_TRACK_NO_CACHE ((const struct sk_cache *)1) /* cache filter: large and heap blocks */
uint64_t sk_track_report(const char *what, const struct sk_cache *cache, const void *type);
/* At exit (SLABKIT_LEAKS set): every live record, if slabkit is still up. */
void sk_track_report_at_exit(void);

/* Write "symbol+0xoff (module)" for a code address into buf. */
void sk_track_symbolize(const void *addr, char *buf, size_t len);

/* The tracked slow path's per-CPU slot operations (the real fast path of
 * a cache whose c->fast is SK_FAST_TRACKED). */
void *sk_track_pcpu_pop(struct sk_cache *c);
bool sk_track_pcpu_push(struct sk_cache *c, void *obj, const struct sk_page *pg);

#pragma GCC visibility pop

#endif /* SLABKIT_TRACK_H */
