/*
 * numa/numa_internal.h: shared by the files of numa/ only (topology.c,
 * buddy.c, provider.c).  Nothing outside numa/ includes it; the public
 * contract is numa/sk_numa.h.
 */
#ifndef SLABKIT_NUMA_INTERNAL_H
#define SLABKIT_NUMA_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sk_list.h"
#include "numa/sk_numa.h"

#define SK_ORDERS (SK_MAX_ORDER + 1)

/* --- provider.c: messages go to the hook core passed (stderr before) --- */
void sk_numa_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- topology.c: hwloc, read once at init --- */

/* Load the hwloc topology and fill the cpu -> node table, node count and
 * cache line.  The hwloc topology stays open for sk_topo_bind() until
 * sk_topo_close_hwloc().  0 or -errno (printed). */
int sk_topo_load(void);
/* Bind [addr, addr + len) to provider node `node` (needs the topology
 * open).  A no-op on a single-node or synthetic topology. */
void sk_topo_bind(void *addr, size_t len, unsigned node);
/* Memory of the largest node as hwloc reports it (0 if unknown). */
uint64_t sk_topo_largest_node_memory(void);
/* Destroy the hwloc topology; the tables stay. */
void sk_topo_close_hwloc(void);
/* Forget everything (sk_numa_fini). */
void sk_topo_reset(void);

/* --- buddy.c: one binary buddy allocator per node --- */

/*
 * sk_page.pflags bits.  Written only under the owning arena's lock; only
 * SK_PF_FREE_HEAD means anything outside a free list, and it is set
 * exactly on the head descriptor of a block that is on a free list.
 */
#define SK_PF_FREE_HEAD 0x1u /* head of a block on one of the node's free lists */
#define SK_PF_CLEAN 0x2u     /* that free block is known not resident */

/* The buddy allocator's view of a free block's head descriptor words
 * (struct sk_page's bk storage); provider.c zeroes them when it hands the
 * block out. */
struct sk_free_words {
	struct sk_list fw_link; /* on its arena's free list of its order and cleanliness */
} __attribute__((may_alias));

struct sk_arena {
	/* Synchronization: `lock` protects every field but `id`, and the
	 * head descriptors (order, pflags, link) of the blocks on this
	 * arena's free lists.  Never held together with another arena's lock. */
	pthread_mutex_t lock;
	uint32_t nonempty;                        /* bit k: a free block of order k exists */
	struct sk_list free_dirty[SK_ORDERS];     /* maybe resident: handed out first */
	struct sk_list free_clean[SK_ORDERS];     /* madvised or never touched */
	uint64_t nfree[SK_ORDERS];                /* blocks on both lists of order k */
	uint64_t dirty_blocks;                    /* blocks on the free_dirty lists */
	uint64_t pages_in_use;                    /* handed out, not yet freed */
	uint64_t pages_free_dirty;                /* pages of the free_dirty blocks */
	uint64_t pages_released;                  /* pages madvised, cumulative */
	uint64_t alloc_calls;                     /* calls whose first choice was this node */
	uint64_t madvise_calls;                   /* madvise calls that released pages */
	uint64_t directed_hits, directed_misses;  /* requests naming this node: served here or not */
	uint64_t nused[SK_ORDERS];                /* live allocations by buddy order */
	uint64_t age;                             /* idle-release passes run (sk_arena_release_idle) */
	/* Set by sk_arena_init, read-only until sk_arena_destroy. */
	unsigned id;                              /* node id */
} __attribute__((aligned(64)));

/* Set up arena `id` over pages [first_pfn, first_pfn + npages) of the
 * reservation (npages a multiple of 2^SK_MAX_ORDER): every page free and
 * clean (fresh anonymous memory). */
void sk_arena_init(struct sk_arena *a, unsigned id, size_t first_pfn, size_t npages);
void sk_arena_destroy(struct sk_arena *a);

/* How a call reached an arena (sk_arena_alloc's `how`). */
#define SK_ARENA_FIRST    0x1u /* the call's first node: counted in alloc_calls */
#define SK_ARENA_DIRECTED 0x2u /* the call named this node: a directed hit or miss */

/* Take npages (<= 2^order) pages from a block of `order`, returning its
 * unused tail at once.  Returns the first page index or SIZE_MAX when no
 * block is big enough.  The caller writes the allocated descriptors. */
size_t sk_arena_alloc(struct sk_arena *a, unsigned order, size_t npages, unsigned how);

/* Give back [pfn, pfn + npages), allocated as a block of alloc_order,
 * whose descriptors the caller has already marked SK_PAGE_FREE; coalesces and returns whole free blocks of order
 * >= SK_RELEASE_ORDER to the OS (madvise runs without the lock). */
void sk_arena_free(struct sk_arena *a, size_t pfn, size_t npages, unsigned alloc_order);
/* alloc_order for the tail of a live allocation (sk_pages_trim): the
 * allocation itself stays counted. */
#define SK_ARENA_PART (~0u)

/* Extend an allocation ending at page `end` to end at `target` with the
 * free pages that follow it; false (nothing changed) if any is in use.
 * The caller writes the new pages' descriptors. */
bool sk_arena_grow(struct sk_arena *a, size_t end, size_t target);

/* madvise every free block not known clean. */
void sk_arena_release_free(struct sk_arena *a);
/* madvise the dirty free blocks that were already free at the previous
 * call (idle for a whole period), at most max_pages of them; returns the
 * pages released. */
uint64_t sk_arena_release_idle(struct sk_arena *a, uint64_t max_pages);

/* Add this arena's figures to *out (takes the lock). */
void sk_arena_add_stats(struct sk_arena *a, struct sk_numa_stats *out);
/* This arena's own figures (takes the lock); pages_reserved is the caller's. */
void sk_arena_node_stats(struct sk_arena *a, struct sk_numa_node_stats *out);

#endif /* SLABKIT_NUMA_INTERNAL_H */
