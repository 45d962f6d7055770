/*
 * Core's internal interface: the one state object, messages and misuse
 * reports, caches as the front ends use them, large allocations.
 *
 * Lock order (across core):
 *   init_lock -> backend_lock -> registry_lock -> slot locks -> backend locks -> numa node locks
 *   zone->lock (UMA limits) and the malloc-type list lock are leaves.
 */
#ifndef SLABKIT_CORE_H
#define SLABKIT_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ck_pr.h>

#include "../numa/sk_numa.h"
#include "sk_backend.h"
#include "sk_cache.h"
#include "../common/sk_compiler.h"
#include "sk_fastpath.h"
#include "sk_sizeclass.h"
#include "sk_track.h"

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

/* Counters of allocations that are not objects of a cache: the page path
 * and a backend's own kmalloc heap.  Synchronization: ck_pr atomics. */
struct sk_plain_counters {
	uint64_t allocs, frees, failures;
	uint64_t bytes_requested, bytes_allocated, bytes_freed;
	uint64_t pages;            /* live pages (large path only) */
};

/* Everything core knows, in one object made by slabkit_init. */
struct sk_state {
	bool ready;                               /* published with release order */
	/* The process default backend: caches with no backend of their own. */
	const struct sk_backend_ops *ops;
	/* The backend whose own heap serves kmalloc / malloc(9) sizes that have
	 * no class cache, or NULL (SK_CAP_HEAP_KMALLOC: SLOB).  heap_ops is the
	 * one of them that is set: heap pages (SK_PAGE_HEAP) belong to it. */
	const struct sk_backend_ops *kmalloc_heap, *bsd_heap, *heap_ops;
	unsigned backends_active;                 /* bit per compiled backend set up; backend_lock */
	struct sk_cache *kmalloc_caches[SK_KMALLOC_CLASSES]; /* NULL: heap kmalloc or not ready */
	struct sk_cache *bsd_caches[SK_BSD_CLASSES];
	size_t cache_line;
	unsigned nodes;
	char *tune;                               /* per-cache tunables, "name:k=v,...;..." */

	/* Registry of live caches, in creation order.  Synchronization: registry_lock. */
	pthread_mutex_t registry_lock;
	struct sk_cache *first, *last;

	struct sk_plain_counters large;           /* the page path */
	struct sk_plain_counters heap;            /* ops->kmalloc (SLOB) */
	uint64_t memory_waits;                    /* sk_wait_for_memory drains (ck_pr) */
	struct sk_plain_counters pages;           /* the page allocator API (core/pages.c) */

	/* Maintenance thread.  Synchronization: tick_lock. */
	pthread_t tick_thread;
	bool tick_running, tick_stop;
	int tick_ms;
	pthread_mutex_t tick_lock;
	pthread_cond_t tick_cond;
};

extern struct sk_state sk_state;

/* Initialise on first use.  Returns only when ready (exits the process if
 * lazy initialisation fails, with the reason on stderr). */
void sk_lazy_init(void);
static sk_always_inline void sk_ensure_init(void)
{
	if (sk_unlikely(!sk_load_acquire(&sk_state.ready)))
		sk_lazy_init();
}

/* One line to the message hook (warnings, leak reports, init errors). */
void sk_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- caches --- */

struct sk_cache_params {
	const char *name;
	size_t object_size;
	size_t align;         /* 0 or a power of two */
	uint32_t flags;       /* SK_CACHE_* */
	enum sk_front front;
	const struct sk_backend_ops *ops; /* NULL: the thread's choice, the tunables, the default */
	void (*ctor)(void *);
	int (*init)(void *, int, int);
	void (*fini)(void *, int);
	void *front_data;
	bool use_freeptr_offset;  /* SLAB_TYPESAFE_BY_RCU: where SLUB keeps its free pointer */
	uint32_t freeptr_offset;
};

/* Create a cache; NULL with the reason reported. */
struct sk_cache *sk_cache_create(const struct sk_cache_params *p);
/* Destroy: drains, then frees everything if no object is in use.  With
 * objects in use it reports them (the kernel's wording), keeps the cache
 * (marked dead) and returns the count. */
uint64_t sk_cache_destroy(struct sk_cache *c, const char *caller);
uint64_t sk_cache_shrink(struct sk_cache *c, enum sk_shrink_level level);
void sk_cache_fill_info(struct sk_cache *c, struct slabkit_cache_info *out);
void sk_shrink_every_cache(enum sk_shrink_level level);

/* The slow paths.  `site` is the user's call site (SK_CALLER() in the
 * exported entry point), recorded when the cache is tracked. */
void *sk_cache_alloc_slow(struct sk_cache *c, int node, unsigned flags, const void *site);
void sk_cache_free_slow(struct sk_cache *c, void *obj, struct sk_page *pg);

/* Allocate one object: this CPU's slot, else the backend.  Use it only
 * inline in an exported entry point (the call site is its caller's). */
static sk_always_inline void *sk_cache_alloc(struct sk_cache *c, unsigned flags)
{
	void *obj = sk_pcpu_pop(c);

	if (sk_unlikely(!obj))
		obj = sk_cache_alloc_slow(c, SK_NODE_ANY, flags, SK_CALLER());
	return obj;
}

/* Allocate one object on `node` (SK_NODE_ANY: anywhere): this CPU's slot
 * when it holds one of that node (the common case of a caller asking for
 * its own node), else the backend. */
void *sk_cache_alloc_node(struct sk_cache *c, int node, unsigned flags, const void *site);

/* Free one object of c whose page head descriptor is pg (its owner already
 * checked).  An interior pointer or a double free the cheap checks see is
 * reported by the slow path and dropped. */
static sk_always_inline void sk_cache_free(struct sk_cache *c, void *obj, struct sk_page *pg)
{
	if (sk_likely(sk_free_on_stride(c, pg, obj)) && sk_likely(sk_pcpu_push(c, obj, pg)))
		return;
	sk_cache_free_slow(c, obj, pg);
}

/* The always-on checks of a free of obj (owner c, head descriptor pg): on
 * the object stride, not the first free object of this CPU's slot, and for
 * a debug cache a live object.  Reports (sk_misuse) and returns false if
 * the free must be dropped.  For front ends that act before freeing (UMA
 * dtors and limits); sk_cache_free_slow runs it itself. */
bool sk_cache_free_check(struct sk_cache *c, const void *obj, struct sk_page *pg);
/* Set when a free is reported and dropped below the front end (by the
 * backend, sk_cache_free_refused, or the debug layer), so that a front end
 * that counts frees itself (UMA zones with limits) can clear it before the
 * free and skip its counts after.  Per thread. */
extern __thread bool sk_free_refused;

/* What a failed allocation may do before it gives up (docs/api.md):
 *   NONE     GFP_NOWAIT, GFP_ATOMIC, M_NOWAIT: fail at once.
 *   BRIEF    __GFP_NORETRY (and __GFP_THISNODE): one immediate retry, one
 *            after draining.
 *   MAYFAIL  __GFP_RETRY_MAYFAIL, and blocking requests above
 *            SK_COSTLY_SIZE (the kernel's costly order): a few retries
 *            with draining, then NULL.
 *   LONG     GFP_KERNEL up to SK_COSTLY_SIZE: retries with draining and
 *            growing sleeps for about two seconds, then NULL (the kernel
 *            would have OOM-killed something by then).
 *   NOFAIL   __GFP_NOFAIL, M_WAITOK: as LONG, then the panic hook. */
enum sk_wait_policy {
	SK_WAIT_NONE,
	SK_WAIT_BRIEF,
	SK_WAIT_MAYFAIL,
	SK_WAIT_LONG,
	SK_WAIT_NOFAIL,
};
#define SK_COSTLY_SIZE ((size_t)32768) /* PAGE_ALLOC_COSTLY_ORDER 3 */

/* The policy of a Linux gfp mask for a request of `size` bytes. */
enum sk_wait_policy sk_gfp_wait_policy(unsigned int gfp, size_t size);
/* A gfp mask's SK_ALLOC_* flags: __GFP_DIRECT_RECLAIM waits, __GFP_NOFAIL
 * waits and never fails (core/linux_slab.c). */
unsigned sk_gfp_alloc_flags(unsigned int gfp);

/* Call between attempts; true: try again; false: the policy gives up. */
bool sk_wait_for_memory(unsigned attempt, enum sk_wait_policy policy);

/* --- large allocations (the page path) --- */
void *sk_large_alloc(size_t size, int node, unsigned flags);
void sk_large_free(void *p, struct sk_page *pg);
static inline size_t sk_large_size(const struct sk_page *pg)
{
	return (size_t)pg->npages << SK_PAGE_SHIFT;
}

/*
 * Core's words of a large block's head descriptor (SK_PAGE_LARGE; its
 * owner words, sk_page_words).  The provider zeroes them when it hands a
 * block out, so a block starts as SK_LARGE_MALLOC with no type.
 */
struct sk_large_words {
	uintptr_t lw_type;    /* const struct malloc_type *: malloc(9)'s type, 0 for kmalloc's */
	uintptr_t lw_origin;  /* enum sk_large_origin */
	uintptr_t lw_cached;  /* LARGE_CACHED_MARK while libc_malloc.c's reuse cache holds it */
	uintptr_t lw_san_size; /* the size asked for, while the sanitizer mode closes the rest (sk_sanitize.h) */
} __attribute__((may_alias));

static inline struct sk_large_words *sk_large_words(const struct sk_page *pg)
{
	return (struct sk_large_words *)sk_page_words((struct sk_page *)pg);
}

/*
 * Which API made a large block: kept in lw_origin.  Not in `owner`: only
 * the pages of a live slab have an owner (sk_numa.h), and kfree's fast path
 * relies on that.
 */
enum sk_large_origin {
	SK_LARGE_MALLOC = 0, /* kmalloc / malloc(9): kfree, bsd_free */
	SK_LARGE_VMALLOC,    /* vmalloc and kvmalloc's fallback: vfree, kvfree */
	SK_LARGE_PAGES,      /* alloc_pages, __get_free_pages: free_pages, __free_pages */
	SK_LARGE_UMA_SKEG,   /* a slab of a per-CPU UMA zone (core/uma_skeg.c) */
};
static inline enum sk_large_origin sk_large_origin(const struct sk_page *pg)
{
	return (enum sk_large_origin)sk_large_words(pg)->lw_origin;
}
static inline void sk_large_set_origin(struct sk_page *pg, enum sk_large_origin origin)
{
	sk_large_words(pg)->lw_origin = (uintptr_t)origin;
}
/* The allocator and the calls that free such a block, for misuse reports. */
const char *sk_large_owner_name(const struct sk_page *pg);
const char *sk_large_owner_free(const struct sk_page *pg);

/* A large block aligned to `align` bytes (a power of two up to 1 GiB),
 * counted as a large allocation (core/pages.c).  Up to the block's own
 * buddy alignment it is sk_large_alloc; beyond, a whole aligned block. */
void *sk_large_alloc_aligned(size_t size, size_t align, int node, unsigned flags);

/* malloc(9) in whole pages: M_NODUMP, M_EXEC, contigmalloc and aligned
 * requests a class cannot serve (core/bsd_malloc_pages.c); flags checked. */
struct malloc_type;
void *sk_bsd_malloc_pages(size_t size, size_t align, struct malloc_type *type, int node, int flags,
			  const char *call, const void *site);
/* 8 while malloc(9)'s type check is on (SLABKIT_DEBUG with F): class and
 * heap blocks then keep their type in their last 8 bytes; else 0. */
extern size_t sk_bsd_type_trailer;
/* slabkit_init, once the malloc(9) class caches exist: arm their fast paths. */
void sk_bsd_classes_created(void);
/* FreeBSD's flag rule for malloc(9), contigmalloc and UMA: exactly one of
 * M_WAITOK and M_NOWAIT.  Otherwise a misuse report "call(what): ..." and
 * false (core/bsd_malloc.c). */
bool sk_bsd_wait_flags_ok(int flags, const char *call, const char *what);
/* The same for a malloc(9) call, whose type must not be NULL either. */
bool sk_bsd_flags_ok(int flags, const char *call, const struct malloc_type *type);
/* Between attempts at a malloc(9) or UMA request: M_WAITOK waits for
 * memory (sk_wait_for_memory, never giving up), M_NOWAIT gives up. */
bool sk_bsd_wait_for_memory(unsigned attempt, int flags);
/* A malloc(9) request that found no memory: an M_WAITOK one is reported
 * (it must not fail); NULL either way. */
void *sk_bsd_alloc_failed(size_t size, const struct malloc_type *type, int flags, const char *call);
/* Count a malloc(9) block in its type's statistics (core/bsd_malloc.c). */
void sk_bsd_count_alloc(struct malloc_type *type, void *p, size_t size, size_t raw, int class_bit);

/* Usable size of any live block (object, large, heap); 0 if not ours or
 * not the start of an object. */
size_t sk_block_size(const void *p, struct sk_page *pg);

/* --- malloc types and UMA zones (reports, fini) --- */

/* One `vmstat -z` line of a UMA zone.  limit 0: none; xdomain -1: not
 * counted by the zone's backend. */
struct sk_zone_row {
	const char *name, *backend;
	int size;
	long long limit;
	uint64_t used, free, req, fail, sleeps;
	int64_t xdomain;
};
void sk_uma_zones_visit(void (*fn)(const struct sk_zone_row *row, void *arg), void *arg);

/* One `vmstat -m` line of a malloc type. */
struct sk_type_row {
	const char *name;
	uint64_t in_use, mem_use, high_use, requests, frees, size_mask;
};
#define SK_TYPE_LARGE_BIT 63 /* size_mask bit of blocks beyond the classes */
void sk_malloc_types_visit(void (*fn)(const struct sk_type_row *row, void *arg), void *arg);

void sk_malloc_types_reset(void);
void sk_libc_reset(void); /* slabkit_fini: forget the libc classes, release cached large blocks */
void sk_uma_zones_reset(void);
long sk_uma_keg_limit(const struct sk_cache *c);

/* --- backends and tunables (state.c, tune.c) --- */
/* The compiled-in backend of that name, or NULL. */
const struct sk_backend_ops *sk_backend_find(const char *name);
/* Set up a backend's process-wide state once, before its first cache.
 * 0 or -errno (reported). */
int sk_backend_activate(const struct sk_backend_ops *ops);
/* The backend the tunables give `name` ("name:backend=..."), or NULL. */
const struct sk_backend_ops *sk_tune_backend(const char *name);
/* Every backend key of a tunables string names a compiled-in backend:
 * 0, or -EINVAL with the bad entry reported. */
int sk_tune_check_backends(const char *tune);
/* Apply the string's backend tunables for this cache (not `backend`). */
void sk_apply_tunables(struct sk_cache *c);
/* The cache's node policy, before ops->cache_create (core/numa_api.c):
 * from the tunables ("name:policy=..."), the UMA flags, else the
 * process's.  0, or -EINVAL with the reason reported. */
int sk_cache_numa_setup(struct sk_cache *c);
/* The node a slow-path request naming none is steered to (numa_steer). */
static inline int sk_cache_steer_node(struct sk_cache *c)
{
	return sk_numa_policy_node(&c->numa_policy);
}

/* Node numbers at the public API (core/numa_api.c).  Every call that
 * names a node takes and returns the OS's number (/sys/devices/system/node,
 * libnuma, the kernel's kmalloc_node); inside slabkit a node is the
 * provider's dense index.  sk_node_from_user: the index of OS node
 * `os_node`, SK_NODE_ANY for -1 (NUMA_NO_NODE, UMA_ANYDOMAIN), or
 * SK_NODE_INVALID for a number that names no node of this machine.
 * sk_node_to_user: the OS number of an index (-1 stays -1). */
#define SK_NODE_INVALID (-2)
int sk_node_from_user(int os_node);
static inline int sk_node_to_user(int node)
{
	return node < 0 ? -1 : sk_numa_node_os(node);
}
/* "0,2" : the OS numbers of the nodes, for messages; returns buf. */
const char *sk_node_list(char *buf, size_t len);
void sk_meta_reset(void);

/* Registered with atexit at the first init: SLABKIT_STATS and SLABKIT_LEAKS
 * reports. */
void sk_at_exit(void);

/* fork() safety (core/fork.c): pthread_atfork handlers registered once, at
 * the first init.  The pieces each file gives it: */
void sk_fork_register(void);
void sk_init_fork_lock(bool lock);
void sk_fork_child_restart_tick(void);
void sk_backends_fork_lock(bool lock);
void sk_backends_fork_global(bool lock);
void sk_track_fork_lock(bool lock);

/* RCU (core/rcu.c, liburcu's urcu-memb flavour).  sk_rcu_start makes the
 * call_rcu worker (call it where RCU is first asked for, with no lock
 * held); sk_rcu_call runs fn(head) after a grace period, head being two
 * writable, pointer-aligned words that stay untouched until then;
 * sk_rcu_barrier waits for every callback queued so far (no-op when RCU
 * was never used; never call it inside a read-side section). */
void sk_rcu_start(void);
bool sk_rcu_in_use(void);
void sk_rcu_register_self(void);
void sk_rcu_call(void *head, void (*fn)(void *head));
void sk_rcu_barrier(void);
void sk_rcu_fork_prepare(void);
void sk_rcu_fork_parent(void);
void sk_rcu_fork_child(void);
/* UMA SMR zones: hand every partial batch of freed items to RCU. */
void sk_uma_smr_flush_all(void);

void sk_trace_fork_lock(bool lock);
void sk_uma_fork_lock(bool lock, bool zone_locks);
void sk_malloc_types_fork_lock(bool lock);
void sk_meta_fork_lock(bool lock);
void sk_libc_fork_lock(bool lock, bool inner); /* libc init lock (outer), large-block lock (inner) */

/* The live view's snapshot (core/publish.c): the maintenance thread calls
 * sk_publish_tick after each pass; sk_publish_stop removes the file
 * (for_good: at exit, never publish again). */
void sk_publish_tick(void);
void sk_publish_stop(bool for_good);
/* fork(): lock before (right after init_lock), unlock after; the child
 * publishes to a file of its own pid. */
void sk_publish_fork(bool lock, bool child);

#pragma GCC visibility pop

/* The public RCU calls (declared in <slabkit/linux/slab.h>, whose struct
 * rcu_head core/rcu.c cannot see next to liburcu's). */
void slabkit_rcu_read_lock(void);
void slabkit_rcu_read_unlock(void);
void slabkit_synchronize_rcu(void);
void slabkit_rcu_barrier(void);

#endif /* SLABKIT_CORE_H */
