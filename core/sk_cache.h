/*
 * The cache: the one object every front end and every backend shares.
 *
 * A Linux kmem_cache, a kmalloc or malloc(9) size class and a UMA zone's
 * keg are all a struct sk_cache.  Core owns its identity, construction
 * hooks, statistics and per-CPU slots; the backend owns `backend` and lays
 * out `size` and (for SK_PCPU_LIST) `free_offset` in ops->cache_create.
 */
#ifndef SLABKIT_CACHE_H
#define SLABKIT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <slabkit/slabkit.h>

#include "../common/sk_compiler.h"
#include "../numa/sk_numa.h"
#include "sk_percpu.h"

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

struct sk_backend_ops;
struct sk_debug;

/* Which front end made the cache (reports, leak wording). */
enum sk_front {
	SK_FRONT_KMEM_CACHE,  /* kmem_cache_create */
	SK_FRONT_KMALLOC,     /* a kmalloc-N size class */
	SK_FRONT_MALLOC,      /* a malloc(9) malloc-N size class */
	SK_FRONT_UMA,         /* uma_zcreate's keg */
	SK_FRONT_LIBC,        /* a libc malloc class (core/libc_malloc.c) */
};

/* Core's cache flags: each front end translates its own spelling to these. */
#define SK_CACHE_HWCACHE_ALIGN 0x0001u /* align to the cache line (halved while size <= line/2) */
#define SK_CACHE_POISON        0x0002u /* debug P: poison free objects (core/sk_debug.h) */
#define SK_CACHE_RED_ZONE      0x0004u /* debug Z: red zones around objects */
#define SK_CACHE_STORE_USER    0x0008u /* debug U: record each live object's allocator (sk_track.h) */
#define SK_CACHE_PANIC         0x0010u /* creation failure panics */
#define SK_CACHE_SIZE_CLASS    0x0020u /* a kmalloc or malloc(9) class */
#define SK_CACHE_ZINIT         0x0040u /* zero a slab's memory when it is created */
#define SK_CACHE_NOFREE        0x0080u /* never give slabs back */
#define SK_CACHE_NOBUCKET      0x0100u /* no per-CPU caching */
#define SK_CACHE_MAXBUCKET     0x0200u /* per-CPU caches at their largest */
#define SK_CACHE_FIRSTTOUCH    0x0400u /* allocate on the caller's node (the default) */
#define SK_CACHE_ROUNDROBIN    0x0800u /* spread slabs over nodes */
#define SK_CACHE_CACHESPREAD   0x1000u /* spread item starts over cache lines */
#define SK_CACHE_CONSISTENCY   0x2000u /* debug F: live-object table, exact free checks */
#define SK_CACHE_TRACE         0x4000u /* debug T: a line per allocation and free */
#define SK_CACHE_FAILSLAB      0x8000u /* debug A: failure injection applies */
#define SK_CACHE_TYPESAFE_BY_RCU 0x10000u /* slab pages go back only after a grace period */
#define SK_CACHE_SMR           0x20000u /* UMA SMR zone: items are reused only after a grace period */
#define SK_CACHE_GUARD         0x80000u /* objects may get guard pages (core/sk_guard.h) */
#define SK_CACHE_SANITIZE      0x40000u /* the program's ASan or valgrind is told about objects (sk_sanitize.h) */

/* Flags passed down to backend slow paths. */
#define SK_ALLOC_WAIT   0x1u  /* the caller may wait (GFP with direct reclaim, M_WAITOK) */
#define SK_ALLOC_NOFAIL 0x2u  /* __GFP_NOFAIL / M_WAITOK: core retries, never returns NULL */
#define SK_ALLOC_MALLOC9 0x4u /* ops->kmalloc: the block is malloc(9)'s (heap_is_malloc9 says so) */

/*
 * Counters core keeps besides the per-CPU slots.  Bumped with atomic adds on
 * slow paths only; exact.
 * Synchronization: ck_pr atomics.
 */
struct sk_cache_counters {
	uint64_t slow_allocs;     /* allocations not served by a slot's fast path */
	uint64_t slow_frees;
	uint64_t failures;
	uint64_t slow_bytes_slack;    /* size classes: object_size - size asked for, summed */
	uint64_t high_water;      /* max in_use seen at slow paths and reads */
	uint64_t slabs;           /* slabs held (sk_slab_pages_alloc - free) */
	uint64_t pages;           /* pages held in those slabs */
	uint64_t refills;         /* per-CPU caches refilled by the backend (sk_stat_refill) */
	uint64_t flushes;         /* per-CPU caches flushed back (sk_stat_flush) */
};

struct sk_cache {
	/* Hot: read by the fast paths, written only while the cache is created. */
	char *pcpu_base;               /* slot of cpu n at pcpu_base + n * pcpu_stride; NULL: none */
	uint32_t pcpu_stride;
	uint8_t pcpu_kind;             /* enum sk_pcpu_kind (SK_PCPU_NONE if pcpu_base is NULL) */
	uint8_t free_tag;              /* enum sk_free_tag */
	uint8_t fast;                  /* enum sk_fast: kind, tag and per-CPU mode in one byte */
	uint8_t bsd_fast_class;        /* malloc(9) classes: 1 + class index while bsd_free's
					* fast path may take their blocks (no type trailer); else 0 */
	uint32_t free_offset;          /* LIST: where a free object keeps its next pointer */
	uint32_t size;                 /* object stride in a slab (backend sets it) */
	uint32_t object_size;          /* what the creator asked for */
	const struct sk_backend_ops *ops;
	void *backend;                 /* the backend's per-cache state */
	/* ceil(2^64 / size) when objects sit at `size` strides from their
	 * slab's first object (SK_CAP_STRIDE), else 0: a free's offset from
	 * sk_page.obj_base is a multiple of size iff offset * stride_magic <=
	 * stride_magic - 1 (Lemire's divisibility test, offsets below 2^32). */
	uint64_t stride_magic;

	/* Identity and construction: written at creation, read-only after. */
	uint32_t align;                /* effective alignment, a power of two >= 8 */
	uint32_t flags;                /* SK_CACHE_* */
	uint32_t pcpu_extra;           /* backend bytes after each slot header (set in cache_create) */
	enum sk_front front;
	void (*ctor)(void *obj);                    /* Linux: once per object per slab lifetime */
	int (*init)(void *obj, int size, int flags);/* UMA init: same lifetime; may fail */
	void (*fini)(void *obj, int size);          /* UMA fini: when the slab goes away */
	char name[SLABKIT_NAME_MAX];
	/* Where a request naming no node goes (core/numa_api.c): the kind is
	 * resolved at creation (DEFAULT became the process's); `numa_steer`
	 * says core's slow path turns such requests into node-directed ones.
	 * The interleave cursor is a ck_pr atomic. */
	struct sk_numa_policy numa_policy;
	bool numa_steer;

	struct sk_cache_counters ctr;

	/* Registry: the list of live caches.  Synchronization: registry lock. */
	struct sk_cache *next, *prev;
	bool dead;                     /* destroyed with live objects: kept, reported */
	/* SK_CACHE_LIVE from creation; SK_CACHE_DESTROYED once destroyed (the
	 * struct then waits in the metadata quarantine, so that a second
	 * destroy or an allocation from it is reported, not a crash). */
	uint32_t magic;
	/* SLAB_TYPESAFE_BY_RCU with kmem_cache_args.use_freeptr_offset: where
	 * a backend that keeps a free pointer in free objects puts it. */
	bool use_freeptr_offset;
	uint32_t freeptr_offset;
	/* RCU work queued for this cache and not yet done (kfree_rcu of its
	 * objects, TYPESAFE_BY_RCU slab pages, SMR batches); destroy waits for
	 * 0.  Synchronization: ck_pr atomics. */
	uint64_t rcu_pending;

	void *front_data;              /* the front end's own record (a UMA zone) */
	struct sk_debug *debug;        /* debug layer state (core/sk_debug.h); NULL: debug off */
};

#define SK_CACHE_LIVE      0x5ca7e11eu
#define SK_CACHE_DESTROYED 0xdeadca5eu

/* How many objects are in use right now (exact, summed over CPUs). */
uint64_t sk_cache_in_use(struct sk_cache *c);
/* Allocations and frees so far, read so that allocs - frees never exceeds
 * the objects in use at one instant during the call, however other threads
 * run meanwhile (every allocation counter is read before every free
 * counter; each only grows).  A lower bound to start a count from. */
void sk_cache_counts_floor(struct sk_cache *c, uint64_t *allocs, uint64_t *frees);

#pragma GCC visibility pop

#endif /* SLABKIT_CACHE_H */
