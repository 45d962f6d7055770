/*
 * slabkit: the kernel object allocators in user space.
 *
 * This header is the library's own surface: initialisation, which backend
 * is active, statistics and reports, and the hooks tests override.  The
 * allocator APIs live in <slabkit/linux/slab.h>, <slabkit/freebsd/malloc.h>
 * and <slabkit/freebsd/uma.h>; every one of them works over every backend.
 */
#ifndef SLABKIT_SLABKIT_H
#define SLABKIT_SLABKIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLABKIT_NAME_MAX 48

/* Everything slabkit_init() can be told.  A zeroed struct means defaults. */
struct slabkit_config {
	/* "slab", "slub", "slob" or "uma".  NULL: $SLABKIT_BACKEND, else the
	 * build's default.  A name that is unknown or not compiled in is an
	 * error, never a silent fallback. */
	const char *backend;
	/* How per-CPU slots are protected: "rseq" (restartable sequences,
	 * x86-64 only), "lock" (a per-CPU spinlock) or "auto".  NULL:
	 * $SLABKIT_PERCPU, else "auto" (rseq when the kernel and libc offer it). */
	const char *percpu;
	/* Virtual bytes reserved per NUMA node.  0: $SLABKIT_ARENA_MB, else 64 GiB
	 * (halved until the kernel accepts the reservation). */
	size_t arena_bytes_per_node;
	/* Fault injection: every Nth page allocation fails (0: never).
	 * 0 here means $SLABKIT_FAIL_EVERY, else off. */
	unsigned page_fail_every;
	/* Per-cache tunables applied when a cache of that name is created:
	 * "kmalloc-64:limit=60,batchcount=30;dentry:shared=4".  NULL: $SLABKIT_TUNE.
	 * The key `backend` puts a cache or UMA zone of that name on a backend
	 * of its own ("dentry:backend=slob;mbuf:backend=uma"), a size class too
	 * ("kmalloc-64:backend=uma", "malloc-384:backend=slab"), and the names
	 * "kmalloc" and "malloc" stand for every class of that front end.  A
	 * backend name that is unknown or not compiled in fails slabkit_init. */
	const char *tune;
	/* Period of the maintenance thread (reaping, working-set trimming) in
	 * milliseconds.  0: $SLABKIT_TICK_MS, else 2000.  Negative: no thread;
	 * slabkit_tick() still runs one pass by hand. */
	int tick_ms;
	/* Node policy for allocations that name no node: "local" (the calling
	 * CPU's node, then the others), "preferred:N" (OS node N, then the
	 * others), "interleave" (round robin over the nodes), "bind:N" (OS
	 * node N only).  NULL: $SLABKIT_NUMA_POLICY, else "local".  A cache can
	 * have its own with the tunable "name:policy=...", a UMA zone with
	 * UMA_ZONE_FIRSTTOUCH / UMA_ZONE_ROUNDROBIN.  docs/numa.md says what
	 * each backend does under each. */
	const char *numa_policy;
	/* Debug checks, in slub_debug's letters (docs/debug.md): F consistency
	 * (exact double and invalid free), Z red zones, P poisoning, U store
	 * user, T trace, A failure injection; "FZP" for every cache, or blocks
	 * "LETTERS,cache,cache" separated by ';' ("ZP,dentry,kmalloc-*").
	 * NULL: $SLABKIT_DEBUG, else off.  Unknown letters fail slabkit_init. */
	const char *debug;
	/* Non-zero: a debug error report ends in the panic hook (abort by
	 * default) instead of repairing and going on.  0: $SLABKIT_DEBUG_ABORT. */
	int debug_abort;
	/* Failure injection (failslab, MALLOC_MAKE_FAILURES): "every=N" or
	 * "probability=PERCENT", plus optional "wait" (blocking requests fail
	 * too), "cache=NAME" and "type=NAME" (a malloc(9) type).  Only
	 * requests that may fail do: never __GFP_NOFAIL or M_WAITOK.  NULL:
	 * $SLABKIT_FAIL_ALLOC, else off. */
	const char *fail_alloc;
	/* What follows the report of a free slabkit refuses (a double free,
	 * an interior pointer, an object of another cache, zone or type, a
	 * pointer slabkit never returned; the free is dropped either way):
	 * "report" (nothing more: the program goes on) or "panic" (the panic
	 * hook, which aborts unless replaced).  NULL: $SLABKIT_MISUSE, else
	 * "report".  Anything else fails slabkit_init. */
	const char *misuse;
};

/*
 * Set slabkit up.  NULL means defaults and environment.  Returns 0, or a
 * negative errno with the reason printed on stderr (-EINVAL for a bad
 * backend name, -EALREADY if already initialised).  A program that never
 * calls it is initialised by its first allocation; if that lazy init fails,
 * the reason is printed and the process exits with status 2.
 */
int slabkit_init(const struct slabkit_config *cfg);

/* Tear down: destroys every cache (reporting leaks) and unmaps the arenas.
 * Nothing allocated by slabkit may be used afterwards.  slabkit_init() may
 * be called again. */
void slabkit_fini(void);

/* The process default backend: "slab", "slub", "slob" or "uma" (NULL
 * before init).  A cache's own backend is in its slabkit_cache_info. */
const char *slabkit_backend(void);

/* Comma-separated list of compiled-in backends, e.g. "slab,slub,slob,uma". */
const char *slabkit_backends_compiled(void);

/*
 * Several policies in one process: the caches and UMA zones the calling
 * thread creates from now on (kmem_cache_create in every form, KMEM_CACHE,
 * uma_zcreate) go to backend `name`, whatever the process default is;
 * NULL goes back to the default (and to the tunables' `backend` keys).  It
 * holds for this thread only, until the next call.  Returns 0, or -EINVAL
 * with a message when the name is unknown or not compiled in (nothing
 * changes then).  Objects of every backend are freed with the usual calls
 * (kfree, kmem_cache_free, uma_zfree, free(9)) from any thread.
 *
 *     slabkit_create_backend("slob");
 *     struct kmem_cache *rare = kmem_cache_create("config", 200, 0, 0, NULL);
 *     slabkit_create_backend(NULL);
 */
int slabkit_create_backend(const char *name);

/* "rseq" or "lock": how the per-CPU layer runs in this process. */
const char *slabkit_percpu_mode(void);

/*
 * Misuse (freeing a pointer slabkit never returned, wrong cache, bad flags)
 * is reported as one line on stderr naming the call and the pointer.  A
 * refused free (double free, interior pointer, another cache's object, a
 * pointer to no live allocation) is then dropped and the program goes on,
 * unless slabkit_config.misuse (SLABKIT_MISUSE) is "panic": then, as for
 * other misuse (bad flags, a destroyed handle), the panic hook runs.  The
 * default hook aborts.  If a hook returns, the offending call returns
 * without effect (NULL for allocations) (docs/api.md, "Misuse").  The hook may run under an allocator
 * lock (a double free found when a per-CPU array is flushed): a hook that
 * returns must not call slabkit.
 */
typedef void (*slabkit_panic_fn)(const char *message);
slabkit_panic_fn slabkit_set_panic_hook(slabkit_panic_fn fn);

/* Where warnings (leak reports, notices) go.  Default: stderr.  The hook
 * receives one complete line without the trailing newline. */
typedef void (*slabkit_message_fn)(const char *line);
slabkit_message_fn slabkit_set_message_hook(slabkit_message_fn fn);

/* Statistics of one cache.  Counts are exact: per-CPU counters summed on
 * read.  high_water is sampled at every slow path and every read. */
struct slabkit_cache_info {
	char name[SLABKIT_NAME_MAX];
	const char *front_end;     /* "kmem_cache", "kmalloc", "malloc", "uma" */
	size_t object_size;        /* what the creator asked for */
	size_t size;               /* stride of one object in a slab */
	size_t align;
	uint64_t allocs, frees, failures;
	uint64_t bytes_requested;  /* sum of sizes callers asked for */
	uint64_t bytes_allocated;  /* sum of sizes handed out (object size) */
	uint64_t in_use, high_water;
	/* From the backend: */
	uint64_t slabs, pages;     /* slabs and pages the cache holds */
	uint64_t objects_per_slab;
	uint64_t cached_free;      /* free objects held in per-CPU/shared caches */
	long limit, batchcount, shared; /* tunables (0: not applicable) */
	long zone_max;             /* uma_zone_set_max limit, 0: none */
	const char *backend;       /* the backend that serves this cache: "slab", ... */
	/* Where the allocations were served: this CPU's slot (fast) or the
	 * backend (slow); allocs = fast_allocs + slow_allocs, same for frees. */
	uint64_t fast_allocs, fast_frees, slow_allocs, slow_frees;
	/* Per-CPU caches refilled from and flushed back to the node level (SLAB
	 * array refills and flushes, SLUB CPU slabs loaded and deactivated, UMA
	 * buckets filled and drained); 0 for SLOB, which has none. */
	uint64_t refills, flushes;
	/* Slabs by state.  cpu: held by a CPU (SLUB); partial and empty: on node
	 * lists; full = slabs - cpu - partial - empty.  active_slabs = slabs -
	 * empty_slabs: slabs not idle on a node's free list. */
	uint64_t active_slabs, cpu_slabs, partial_slabs, empty_slabs;
	uint64_t shared_free;      /* of cached_free: in node-shared caches (SLAB) */
	uint64_t slab_free;        /* free objects in slabs on node lists */
	/* Frees of objects of another node than the freeing CPU's (SLAB, UMA);
	 * -1 where the backend does not count them (SLUB, SLOB). */
	int64_t xdomain_frees;
};

/* Visit every live cache, in creation order.  Stops early when fn returns
 * non-zero and returns that value. */
int slabkit_foreach_cache(int (*fn)(const struct slabkit_cache_info *info, void *arg),
			  void *arg);

/* Look a cache up by name; 0 and *out filled, or -ENOENT. */
int slabkit_cache_info_by_name(const char *name, struct slabkit_cache_info *out);

/* Whole-process figures. */
struct slabkit_stats {
	uint64_t slabs, slab_pages;        /* held by the backend's caches */
	uint64_t large_allocs, large_pages;/* live page-path (large) allocations */
	uint64_t pages_reserved;           /* virtual pages in the arenas */
	uint64_t pages_in_use;             /* handed out by the page provider */
	uint64_t pages_free_dirty;         /* free but still resident */
	uint64_t pages_released;           /* times a page went back to the OS */
	uint64_t page_alloc_failures;
	unsigned nodes, cpus;
	/* Live blocks of the Linux page allocator API (alloc_pages,
	 * __get_free_pages, alloc_pages_exact) and the pages they hold. */
	uint64_t page_blocks, page_block_pages;
	/* Bytes of the per-CPU area (outside the arenas, so not in the page
	 * figures above) holding live caches' per-CPU slots, all CPUs. */
	uint64_t pcpu_area_bytes;
};
void slabkit_stats(struct slabkit_stats *out);

/* Set a backend tunable of a live cache ("limit", "batchcount", "shared",
 * ...).  0, -ENOENT (no such cache), -EINVAL (unknown key or bad value),
 * -EOPNOTSUPP (the backend has no tunables). */
int slabkit_cache_tune(const char *cache_name, const char *key, long value);

/* Run one maintenance pass now (what the background tick does). */
void slabkit_tick(void);

/* Drain every per-CPU and shared cache and free every empty slab, in every
 * cache; then return free pages to the OS. */
void slabkit_shrink_all(void);

/* Reports.  slabinfo: /proc/slabinfo-like, every cache.  vmstat_z: FreeBSD
 * `vmstat -z`.  vmstat_m: FreeBSD `vmstat -m` (malloc types). */
void slabkit_report_slabinfo(FILE *out);
/*
 * Any report by name: "slabinfo", "vmstat-m", "vmstat-z" or "json" (one
 * document with every cache, malloc type, UMA zone and NUMA node and the
 * process totals; schema in docs/stats.md).  0, or -EINVAL for an unknown
 * format.  Reports never stop the allocator: per-CPU counters are read
 * racily and summed, as /proc/slabinfo does.  SLABKIT_STATS=<format>[:path]
 * writes one at exit (stderr without a path).
 */
int slabkit_report(FILE *out, const char *format);
void slabkit_report_vmstat_z(FILE *out);
void slabkit_report_vmstat_m(FILE *out);

/*
 * Debugging (docs/debug.md).  slabkit_validate checks every object the
 * debug layer holds (red zones, poison) and each backend's own metadata,
 * for one cache or (NULL) all, reports each problem once and returns how
 * many it found (-ENOENT: no such cache), like `slabinfo -v`.
 * slabkit_debug_errors: debug error reports since slabkit_init.
 */
int slabkit_validate(const char *cache_or_null);
uint64_t slabkit_debug_errors(void);

/*
 * NUMA.  Every call that names a node takes and returns the OS's node
 * number, as the kernel, libnuma and /sys/devices/system/node use it:
 * kmalloc_node and the other *_node calls, alloc_pages_node and
 * page_to_nid, uma_zalloc_domain (and the domain a zone's import or allocf
 * callback is told), DOMAINSET_PREF/FIXED, slabkit_ptr_node,
 * slabkit_current_node, slabkit_node_stats and the policy texts.  A number
 * the OS does not have is refused with a message.  The nodes are
 * enumerated by index: node i (0 <= i < slabkit_nodes(), hwloc's logical
 * order) has OS number slabkit_node_os(i).  On machines whose node numbers
 * have no holes (most) index and OS number are the same.
 */
unsigned slabkit_nodes(void);
/* The OS node of the calling CPU. */
int slabkit_current_node(void);
/* The OS node whose arena holds p (any byte of any block slabkit handed
 * out), or -1 for a pointer slabkit does not own. */
int slabkit_ptr_node(const void *p);
/* OS node number of the index-th node; -1 if there is no such index. */
int slabkit_node_os(int index);
/* Index (0..slabkit_nodes()-1) of OS node `os_node`; -1 if it has none. */
int slabkit_node_from_os(int os_node);

#define SLABKIT_PAGE_ORDERS 19 /* buddy orders 0 (4 KiB) .. 18 (1 GiB) */

/* One node's page figures, from the page provider (exact: read under the
 * node's lock).  Bytes are multiples of the 4 KiB page. */
struct slabkit_node_stats {
	int node;                  /* its index, 0..slabkit_nodes()-1 */
	int os_node;               /* the OS's number: the one every call takes */
	uint64_t memory_bytes;     /* the node's memory as hwloc reports it (0: unknown) */
	uint64_t bytes_reserved;   /* virtual address space of the node's arena */
	uint64_t bytes_in_use;     /* pages handed out (slabs, large blocks, metadata) */
	uint64_t bytes_committed;  /* in use + free but not yet returned: what may be resident */
	uint64_t bytes_returned;   /* given back to the OS with madvise, cumulative */
	uint64_t madvise_calls;    /* madvise calls that returned them, cumulative */
	uint64_t page_allocs;      /* page allocations that started on this node */
	/* Page allocations that named this node (a node-directed call, or a
	 * preferred/bind policy): served from it (hit) or not (miss). */
	uint64_t directed_hits, directed_misses;
	uint64_t used_blocks[SLABKIT_PAGE_ORDERS]; /* live allocations by buddy order */
	uint64_t free_blocks[SLABKIT_PAGE_ORDERS]; /* free blocks by buddy order */
};
/* OS node os_node's figures: 0 and *out filled, or -EINVAL for a number
 * that names no node. */
int slabkit_node_stats(int os_node, struct slabkit_node_stats *out);

/* The process's node policy as text ("local", "preferred:1", "interleave",
 * "bind:0"; node numbers are the OS's), written into buf; returns buf. */
const char *slabkit_numa_policy(char *buf, size_t len);
/* The policy a live cache follows, the same way; 0 or -ENOENT. */
int slabkit_cache_numa_policy(const char *cache_name, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_SLABKIT_H */
