/*
 * The backend interface.  A backend is one folder that exports exactly one
 * `const struct sk_backend_ops`; it includes this header (which brings the
 * cache, the per-CPU layer and the page provider) and nothing else of core.
 *
 * What a backend decides: how objects are laid out in slabs, how free
 * objects are cached (per CPU, per node, in slabs), when memory goes back.
 * What core decides for it: the front ends, size classes, the per-CPU fast
 * paths, statistics, leak reports, misuse checks, large allocations.
 *
 * The fast paths never call the backend.  Core calls it when:
 *   - the slot was empty on allocation, or refused a free (full, or the
 *     object's tag differs), or the cache has no per-CPU layer;
 *   - a specific node was asked for;
 *   - shrinking, reaping, destroying, reporting.
 */
#ifndef SLABKIT_BACKEND_H
#define SLABKIT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>

#include "../numa/sk_numa.h"
#include "sk_cache.h"
#include "../common/sk_compiler.h"
#include "sk_percpu.h"
#include "sk_stack.h"

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

/* What a freed object's tag is compared with on the fast path. */
enum sk_free_tag {
	SK_TAG_NONE = 0, /* slot->tag must be 0: every free is accepted while there is room */
	SK_TAG_SLAB,     /* tag = (uintptr_t) the object's slab head descriptor (SLUB) */
	SK_TAG_NODE,     /* tag = node + 1 of the object's page (SLAB, UMA) */
};

enum sk_shrink_level {
	SK_SHRINK_TRIM,      /* give back what recent use shows is idle (reaper, UMA TRIM) */
	SK_SHRINK_DRAIN,     /* drain shared and per-node caches, free empty slabs (UMA DRAIN) */
	SK_SHRINK_DRAIN_CPU, /* also every CPU's slot (kmem_cache_shrink, destroy, UMA DRAIN_CPU) */
};

/*
 * Figures only the backend knows, for reports.  ops->cache_info must not
 * stop the allocator: no slot lock, no membarrier.  It reads per-CPU state
 * racily (counts and pointers in sk_load words, never lists hanging off a
 * slot), and may take its node-level list locks briefly, as the kernel's
 * /proc/slabinfo does.
 */
struct sk_backend_cache_info {
	uint64_t objects_per_slab;
	uint64_t cached_free;     /* free objects in per-CPU, shared and alien caches */
	uint64_t shared_free;     /* of those, in node-shared caches (SLAB's shared arrays) */
	uint64_t slab_free;       /* free objects sitting in slabs on node lists */
	uint64_t cpu_slabs;       /* slabs held by CPUs (SLUB's active and per-CPU partial slabs) */
	uint64_t partial_slabs;   /* slabs on node lists with objects both in use and free */
	uint64_t empty_slabs;     /* slabs on node lists with no object in use */
	uint64_t xdomain_frees;   /* frees of objects whose node differs from the freeing CPU's */
	bool xdomain_counted;     /* the backend counts xdomain_frees (else: not applicable) */
	long limit, batchcount, shared;
};

/* Optional abilities; a backend sets only what it really does. */
#define SK_CAP_PERCPU       0x01u /* uses core's per-CPU slots */
#define SK_CAP_NODE_LISTS   0x02u /* keeps per-node structures and honours node requests */
#define SK_CAP_TUNABLES     0x04u /* ops->tune does something */
#define SK_CAP_HEAP_KMALLOC 0x08u /* kmalloc/malloc(9) go to ops->kmalloc, not size classes */
#define SK_CAP_COLOUR       0x10u /* offsets slabs by cache-line colour */
#define SK_CAP_ROUNDROBIN   0x20u /* spreads SK_CACHE_ROUNDROBIN caches over nodes itself (UMA) */
#define SK_CAP_STRIDE       0x40u /* objects sit at c->size strides from their slab's first
				       * object (sk_slab_set_first_object): core checks every
				       * free lands on an object start */

struct sk_backend_ops {
	const char *name;            /* "slab", "slub", "slob", "uma" */
	uint32_t caps;               /* SK_CAP_* */
	enum sk_pcpu_kind pcpu_kind; /* which fast path core runs for this backend's caches */
	enum sk_free_tag free_tag;

	/* Process-wide setup and teardown (heap lists, ...); may be NULL. */
	int (*init)(void);
	void (*fini)(void);

	/*
	 * Lay the cache out: set c->size (>= object_size, a multiple of
	 * c->align), c->free_offset (LIST), c->pcpu_extra, c->backend.
	 * Core has filled identity, align and flags.  0 or -errno.
	 */
	int (*cache_create)(struct sk_cache *c);
	/* Initialise one CPU's slot (entries, limit, tag); slots start zeroed.
	 * Called for every slot after cache_create.  May be NULL. */
	void (*pcpu_init)(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu);
	/* Free everything.  Core calls it after shrink(SK_SHRINK_DRAIN_CPU)
	 * found no object in use. */
	void (*cache_destroy)(struct sk_cache *c);

	/* Allocate one object in constructed state, from `node` or anywhere
	 * (SK_NODE_ANY).  NULL when the page provider fails. */
	void *(*alloc)(struct sk_cache *c, int node, unsigned flags);
	/* Free one object the fast path did not take.  `slab` is the head
	 * descriptor of its page (kind SLAB, owner c; or kind HEAP). */
	void (*free)(struct sk_cache *c, void *obj, struct sk_page *slab);

	/* Give memory back at `level`.  Returns the number of slabs the cache
	 * still holds afterwards. */
	uint64_t (*shrink)(struct sk_cache *c, enum sk_shrink_level level);
	/* Periodic maintenance (reaping, working-set trimming); may be NULL. */
	void (*tick)(struct sk_cache *c);

	void (*cache_info)(struct sk_cache *c, struct sk_backend_cache_info *out);
	/* slabkit_validate: check the cache's own metadata (free lists, index
	 * arrays, bitsets, block headers, buckets; core checks the per-CPU
	 * slots' entries), reporting each problem once with sk_validate_report
	 * and isolating what is corrupt; returns how many it found.  May be
	 * NULL.  Called under no lock of the cache.  c NULL: the backend's
	 * own kmalloc heap (SK_CAP_HEAP_KMALLOC). */
	uint64_t (*validate)(struct sk_cache *c);
	/* Set a tunable; 0, -EINVAL.  NULL when the backend has none. */
	int (*tune)(struct sk_cache *c, const char *key, long value);

	/* SK_CAP_HEAP_KMALLOC: kmalloc-style blocks of up to kmalloc_max
	 * bytes with their size recorded (SLOB).  Larger requests go to core's
	 * page path.  kfree and ksize get blocks on SK_PAGE_HEAP pages, and
	 * ksize(kmalloc(n)) is n rounded up to 8 (kmalloc_size_roundup says so). */
	size_t kmalloc_max;
	void *(*kmalloc)(size_t size, int node, unsigned flags);
	void (*kfree)(void *p, struct sk_page *pg);
	size_t (*ksize)(const void *p, struct sk_page *pg);
	/* Was this live heap block allocated with SK_ALLOC_MALLOC9 (by
	 * malloc(9), not kmalloc)?  Lets core refuse kfree/krealloc of a
	 * malloc(9) block and bsd_free of a kmalloc block. */
	bool (*heap_is_malloc9)(const void *p, struct sk_page *pg);

	/*
	 * fork() safety (core/fork.c).  Take (lock true) or release every
	 * backend lock of cache c at `level`, or the backend's global locks
	 * when c is NULL.  Core calls level 0 for every cache before it takes
	 * the slot locks, then levels 1 and 2 for every cache, then c = NULL
	 * (level 1), so a backend maps its lock order onto the levels: a lock
	 * taken before slot locks at 0, then at most two levels below them.
	 * May be NULL when the backend has no lock of its own.
	 */
	void (*fork_lock)(struct sk_cache *c, unsigned level, bool lock);
};

#define SK_FORK_LEVELS 3

/* --- What core gives backends --- */

/* Pages for one slab of c: kind SK_PAGE_SLAB, owner c, counted in the
 * cache's slabs/pages figures, zeroed when c has SK_CACHE_ZINIT.  NULL on
 * failure. */
void *sk_slab_pages_alloc(struct sk_cache *c, int node, unsigned order);
void sk_slab_pages_free(struct sk_cache *c, void *addr);
/* SK_CAP_STRIDE: a slab whose first object is not at its first byte (SLAB's
 * colour) says where it is, before any object of it is handed out.  Every
 * page of the slab keeps it, so that a fast path can check a free against
 * the object's own page descriptor without finding the head. */
static inline void sk_slab_set_first_object(struct sk_page *slab, const void *first)
{
	for (uint32_t i = 0; i < slab->npages; i++)
		slab[i].obj_base = (uint32_t)(uintptr_t)first;
}

/* The user's sanitizers (sk_sanitize.h): a backend that made a slab of c
 * names the bytes of it that no object and none of its own metadata use
 * (the tail after the last object, SLAB's colour): while the slab lives,
 * a program built with ASan, or run under valgrind, gets a report when it
 * touches them (an overrun of the last object).  sk_slab_pages_free opens
 * the whole slab again.  Nothing happens unless c runs the sanitizer mode. */
void sk_san_slab_unused_slow(void *from, size_t len);
static inline void sk_slab_unused(const struct sk_cache *c, void *from, size_t len)
{
	if (sk_unlikely(c->flags & SK_CACHE_SANITIZE) && len)
		sk_san_slab_unused_slow(from, len);
}

/*
 * A free slabkit refuses: the one misuse policy, the same for every backend
 * and front end (docs/api.md, "Misuse").  Whoever detects one of these
 * classes calls sk_free_misuse and then drops the free: the object is left
 * as it is (a live object stays live, a free one stays free once), so
 * nothing allocated is lost and no list is corrupted.
 *   DOUBLE_FREE  the object is already free (the first free object of a
 *                CPU slot or of its slab, or a slab's own record says so)
 *   INTERIOR     not the start of an object
 *   WRONG_CACHE  an object of another cache, zone or allocator
 *   FOREIGN      a pointer slabkit never returned (or whose memory it has
 *                given back since)
 * The report is one line through the message hook:
 *   slabkit: <call>(<cache>): <class> <pointer> (<detail>); ignored
 * (c NULL, a heap of no cache: "<call>: ...").
 * then the decision: the panic hook (it aborts unless the program replaced
 * it), or nothing more when the process chose SLABKIT_MISUSE=report
 * (slabkit_config.misuse).  call NULL: the free call of c's front end.
 */
enum sk_misuse_kind {
	SK_MISUSE_DOUBLE_FREE,
	SK_MISUSE_INTERIOR,
	SK_MISUSE_WRONG_CACHE,
	SK_MISUSE_FOREIGN,
};
void sk_free_misuse(const char *call, const struct sk_cache *c, enum sk_misuse_kind kind, const void *p,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A backend called sk_free_misuse for obj and dropped it: core takes back
 * the free it counted.  When obj is the object of the free in progress on
 * this thread (ops->free at the caller's call), the caller's front end
 * learns it too (sk_free_refused: a UMA zone with a limit does not count
 * it); a refusal found while flushing an array or a bucket answers an
 * earlier free, so only the count changes. */
void sk_cache_free_refused(struct sk_cache *c, const void *obj);

/* Pages for a heap shared by many caches (SLOB): kind SK_PAGE_HEAP. */
void *sk_heap_pages_alloc(int node, unsigned order);
void sk_heap_pages_free(void *addr);

/*
 * Run the cache's constructor hooks on a new object (Linux ctor or UMA
 * init).  Backends call it once per object when a slab is populated, and
 * sk_cache_destruct (UMA fini) once per object before the slab is freed.
 * construct returns 0 or an error from UMA init: the backend then destructs
 * the objects already constructed and frees the slab.
 */
int sk_cache_construct(struct sk_cache *c, void *obj, unsigned flags);
void sk_cache_destruct(struct sk_cache *c, void *obj);
static inline bool sk_cache_has_fini(const struct sk_cache *c)
{
	return c->fini != NULL;
}
/* True when sk_cache_construct calls user code (a ctor or UMA init): the
 * backend must then hold no lock of its own or of core around it. */
static inline bool sk_cache_has_construct(const struct sk_cache *c)
{
	return c->ctor != NULL || c->init != NULL;
}

/* This thread's node as an index below `nodes` (the nodes a cache knew at
 * creation): 0 when the CPU's node is unknown or beyond them. */
static inline unsigned sk_current_node_clamped(unsigned nodes)
{
	int node = sk_numa_current_node();
	return node >= 0 && (unsigned)node < nodes ? (unsigned)node : 0;
}

/*
 * Building a new slab, the same for every backend: construct its `count`
 * objects, `stride` bytes apart from `first` (Linux's cache_init_objs,
 * UMA's keg_alloc_slab).  If a UMA init fails, the objects already
 * constructed are destructed (fini, last first) and -1 returned: the
 * backend then frees the slab's pages and whatever it set up.  Called with
 * no lock held, since ctor, init and fini are user code.
 */
int sk_slab_construct(struct sk_cache *c, char *first, size_t stride, unsigned count, unsigned flags);
/* fini on the first `count` objects of a slab being freed, last first
 * (nothing when the cache has no fini).  No lock held. */
void sk_slab_destruct(struct sk_cache *c, char *first, size_t stride, unsigned count);
/* The loops under both, for objects with no cache (core's keg of per-CPU
 * and user-sourced zones, core/uma_skeg.c): construct each object in
 * order; on the first failure destruct those made, last first (destruct
 * may be NULL), and return -1.  No lock held. */
int sk_construct_each(char *first, size_t stride, unsigned count, int (*construct)(void *ctx, void *obj),
		      void (*destruct)(void *ctx, void *obj), void *ctx);
void sk_destruct_each(char *first, size_t stride, unsigned count, void (*destruct)(void *ctx, void *obj),
		      void *ctx);

/* Statistics a backend bumps: a per-CPU cache was refilled from the node
 * level (array refill, CPU slab loaded, bucket filled), or flushed back to
 * it (array flush, CPU slab deactivated, bucket drained).  Slow paths only. */
static inline void sk_stat_refill(struct sk_cache *c)
{
	ck_pr_inc_64(&c->ctr.refills);
}
static inline void sk_stat_flush(struct sk_cache *c)
{
	ck_pr_inc_64(&c->ctr.flushes);
}

/* Run fn(head) after an RCU grace period (core/rcu.c): head is two
 * writable, pointer-aligned words left untouched until then.  For
 * SK_CACHE_TYPESAFE_BY_RCU backends that must defer more than slab pages
 * (SLOB defers each object); count the work in c->rcu_pending. */
void sk_rcu_call(void *head, void (*fn)(void *head));

/* Small metadata (per-cache and per-node structs): zeroed, from the page
 * provider, never from malloc.  Give the same size back. */
void *sk_meta_zalloc(size_t size);
/* The same on `node` (a per-node structure: put it where it is used);
 * SK_NODE_ANY or a node that does not exist: the caller's node. */
void *sk_meta_zalloc_node(size_t size, int node);
void sk_meta_free(void *p, size_t size);
/* A growable metadata array of `count` used elements of `elem` bytes out of
 * *cap: returns it unchanged while there is room for one more, else a new
 * one of twice the room (first_cap the first time) holding the same
 * elements, the old one freed and *cap updated.  NULL, and nothing changed,
 * when no metadata memory is left.  The caller serialises. */
void *sk_meta_array_grow(void *array, uint32_t count, uint32_t *cap, size_t elem, uint32_t first_cap);
/* Pages a node's metadata pool holds (carved pages, the kept spares too). */
uint64_t sk_meta_pages(int node);
/* Free a struct a user holds a handle to: reused only after 64 more such
 * frees (a stale handle meanwhile still shows its "destroyed" mark). */
void sk_meta_free_quarantined(void *p, size_t size);

/* Messages: one line to the message hook. */
void sk_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Misuse (bad input: a NULL or destroyed handle, bad flags, a pointer or
 * size that does not match): one line naming the call and the pointer;
 * then, with SLABKIT_MISUSE=panic, the panic hook.  The caller then drops
 * the call (returns NULL, 0 or nothing) whether or not the hook returns. */
void sk_misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A promise slabkit cannot keep (an M_WAITOK or __GFP_NOFAIL allocation
 * with no memory left, SLAB_PANIC, the debug layer's abort, a rule of its
 * own broken): one line, then the panic hook whatever the policy. */
void sk_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- For ops->validate (core/validate.c) ---
 *
 * A backend's validate op walks the metadata it can reach under its own
 * locks (free lists, index arrays, bitsets, block headers, buckets), checks
 * it with these helpers, reports each problem once with sk_validate_report
 * and repairs by leaking: the bad slab's or page's free objects are taken
 * out of circulation (counted in use, never handed out again), so the cache
 * keeps working and nothing corrupt is reused.  Core has already checked
 * the per-CPU slots' entries (sk_validate_slots) when it calls the op. */

/* Index of p among the `nr` objects of c that start at `first`, c->size
 * apart; -1 when p is outside them or not on an object start. */
static inline long sk_validate_index(const struct sk_cache *c, const void *first, uint32_t nr,
				     const void *p)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)first;
	if ((uintptr_t)p < (uintptr_t)first || off >= (uintptr_t)nr * c->size || off % c->size)
		return -1;
	return (long)(off / c->size);
}

/* Is p the start of an object of c: on a live slab page that c owns, and
 * on its stride (SK_CAP_STRIDE)?  For pointers held in arrays and buckets. */
bool sk_validate_is_object(const struct sk_cache *c, const void *p);

/* A set of object indexes, for duplicates and cycles in a walk: up to
 * SK_VALIDATE_SEEN_MAX objects (a larger slab is walked with its length
 * bounded instead).  Caller-owned, 8 KiB: put it in static or meta memory
 * or on a thread's stack. */
#define SK_VALIDATE_SEEN_MAX 65536u
struct sk_validate_seen {
	uint32_t nr;
	uint64_t bits[SK_VALIDATE_SEEN_MAX / 64];
};
static inline void sk_validate_seen_reset(struct sk_validate_seen *s, uint32_t nr)
{
	s->nr = nr <= SK_VALIDATE_SEEN_MAX ? nr : 0;
	for (uint32_t w = 0; w < (s->nr + 63) / 64; w++)
		s->bits[w] = 0;
}
/* Mark index i; false when it was marked already (a duplicate). */
static inline bool sk_validate_seen_add(struct sk_validate_seen *s, uint32_t i)
{
	if (i >= s->nr)
		return true;
	uint64_t bit = UINT64_C(1) << (i % 64);
	bool fresh = !(s->bits[i / 64] & bit);
	s->bits[i / 64] |= bit;
	return fresh;
}

/* One metadata error in the debug layer's report format (docs/debug.md),
 * counted in slabkit_debug_errors (c NULL: the kmalloc heap):
 *   BUG <cache>: <what>
 *   Slab <where>: <detail, printf-style>
 *   FIX <cache>: <fix> */
void sk_validate_report(struct sk_cache *c, const char *what, const void *where, const char *fix,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Tunable defaults from the config string for this cache, applied by core
 * right after cache_create through ops->tune. */

#pragma GCC visibility pop

#endif /* SLABKIT_BACKEND_H */
