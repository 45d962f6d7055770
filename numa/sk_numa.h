/*
 * numa/: the page provider.  The only part of slabkit that talks to the OS
 * for memory and to hwloc for topology.
 *
 * At init it loads the hwloc topology once (nodes, a cpu -> node table, the
 * cache line size) and reserves one large virtual arena per node, bound to
 * that node.  Each arena is a binary buddy allocator over 4 KiB pages, with
 * one 64-byte descriptor per page in a parallel array, so that
 * address -> descriptor is a subtraction and a shift.
 *
 * Allocation order inside a node: the free list of the requested order, then
 * split a larger block.  Whole free blocks of order >= SK_RELEASE_ORDER are
 * returned to the OS (madvise) when they form; sk_pages_release_free()
 * returns every free page (shrink).
 *
 * Synchronization: one mutex per node arena, taken by alloc and free of that
 * node's blocks.  Descriptors of allocated blocks belong to whoever holds the
 * block; the provider writes them only while allocating or freeing it.
 * sk_page_of() takes no lock.
 */
#ifndef SLABKIT_NUMA_H
#define SLABKIT_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

#define SK_PAGE_SHIFT 12
#define SK_PAGE_SIZE ((size_t)1 << SK_PAGE_SHIFT)
#define SK_MAX_ORDER 18      /* largest block: 2^18 pages = 1 GiB */
#define SK_RELEASE_ORDER 9   /* free blocks of 2 MiB and up go back to the OS */
#define SK_NODE_ANY (-1)
#define SK_MAX_NODES 64

/* What a block is used for; written on every page of the block. */
enum sk_page_kind {
	SK_PAGE_FREE = 0,  /* in the provider's free lists (or a tail of a free block) */
	SK_PAGE_SLAB,      /* a slab of one cache: owner is its struct sk_cache */
	SK_PAGE_LARGE,     /* a large allocation made by core (kmalloc > 8 KiB, ...) */
	SK_PAGE_HEAP,      /* a backend heap page shared by many caches (SLOB) */
	SK_PAGE_META,      /* slabkit's own metadata */
};

/*
 * One per 4 KiB page.  The fields up to `bk` belong to the provider (and to
 * core for `owner`); `bk` belongs to whoever holds the block, on its head page.
 * Tails point at their head through head_delta, so any address inside a
 * multi-page slab finds the slab in O(1).
 */
struct sk_page {
	void *owner;          /* every page of a live slab block: its sk_cache; NULL elsewhere */
	uint32_t head_delta;  /* pages back to the head page; 0 on the head and on free pages */
	uint32_t npages;      /* head: pages in this allocation (not always 2^order) */
	uint16_t node;        /* node of the arena holding this page */
	uint8_t kind;         /* enum sk_page_kind */
	uint8_t order;        /* head: buddy order (free blocks and order allocations) */
	uint32_t pflags;      /* provider-private */
	/* Every page of a slab (SK_PAGE_SLAB): low 32 bits of the slab's first
	 * object's address, so that core checks a freed pointer sits on the
	 * object stride with one subtraction (written by core and the backend
	 * while they set the slab up; the provider zeroes it on the head). */
	uint32_t obj_base;
	uint32_t reserved;    /* provider-private */
	/* The words of whoever holds the block, on its head page: the buddy
	 * allocator while it is free (its list link), the backend while it is
	 * a slab or heap page, core while it is a large block.  Each owner
	 * names them in a view struct of its own (struct sk_free_words in
	 * numa_internal.h, struct uma_slab in backends/uma/uma_int.h, ...),
	 * declared may_alias and reached with sk_page_words(); bk is only the
	 * storage.  16-byte aligned: backends may cmpxchg16b words 0..1 or 2..3. */
	uintptr_t bk[4] __attribute__((aligned(16)));
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct sk_page) == 64, "one cache line per page descriptor");

/* The buddy order of the smallest block of at least npages pages, or of
 * `bytes` bytes (0 for 0 or 1 page).  The one page-order rule of slabkit:
 * backends size their slabs and core its large blocks with it. */
static inline unsigned sk_order_for_pages(size_t npages)
{
	return npages <= 1 ? 0 : 64 - (unsigned)__builtin_clzl(npages - 1);
}

static inline unsigned sk_order_for_bytes(size_t bytes)
{
	return sk_order_for_pages((bytes + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT);
}

/* The owner words of pg, for the owner's view struct; and back from a
 * pointer into them (a list link at `offset` bytes in) to the descriptor. */
static inline void *sk_page_words(struct sk_page *pg)
{
	return (void *)pg->bk;
}

static inline struct sk_page *sk_page_of_words(void *word, size_t offset)
{
	return (struct sk_page *)(void *)((char *)word - offset - __builtin_offsetof(struct sk_page, bk));
}

/* Where numa/ sends its messages (one printf-style line, no newline).
 * numa/ includes nothing above it, so core passes its hook down. */
typedef void (*sk_numa_message_fn)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Which node a request that names none (SK_NODE_ANY) is served from. */
enum sk_numa_policy_kind {
	SK_POLICY_DEFAULT = 0, /* per cache: the process's policy; process: local */
	SK_POLICY_LOCAL,       /* the calling CPU's node, then the others in order */
	SK_POLICY_PREFERRED,   /* `node`, then the others in order */
	SK_POLICY_INTERLEAVE,  /* round robin over the nodes, one allocation each */
	SK_POLICY_BIND,        /* `node` only: NULL when it is exhausted */
};

struct sk_numa_policy {
	uint8_t kind;  /* enum sk_numa_policy_kind */
	uint8_t node;  /* PREFERRED, BIND: the provider node */
	/* INTERLEAVE: the next node, per policy holder (each cache has its
	 * own, so two caches allocating in turn do not alias onto alternate
	 * nodes).  Synchronization: ck_pr atomics. */
	uint32_t cursor;
};

struct sk_numa_config {
	size_t arena_bytes_per_node; /* 0: the largest of 64 GiB and every node's memory */
	unsigned fail_every;         /* every Nth allocation fails (0: never) */
	sk_numa_message_fn message;  /* NULL: stderr */
	const char *policy;          /* for SK_NODE_ANY (sk_numa_policy_parse); NULL: local */
	/* Bytes per CPU of the per-CPU area (a power of two, a multiple of the
	 * page; halved while cpus * unit exceeds 4 GiB).  0: no area. */
	size_t pcpu_unit_bytes;
};

/* Load the topology, reserve and bind the arenas.  0 or -errno (printed). */
int sk_numa_init(const struct sk_numa_config *cfg);
/* Unmap everything.  Every block must already be free or abandoned. */
void sk_numa_fini(void);

unsigned sk_numa_nodes(void);
/* Node numbers.  Inside slabkit a node is a provider index 0..nodes-1
 * (hwloc's logical index); the OS numbers its nodes its own way, with holes
 * on some machines.  -1 for an index or number that names no node. */
int sk_numa_node_os(int node);
int sk_numa_node_from_os(int os_node);
/* Memory the OS reports for a node (hwloc's local_memory; 0 if unknown). */
uint64_t sk_numa_node_memory(int node);
/* Number of per-CPU slots core needs: every possible CPU id is below it. */
unsigned sk_numa_cpus(void);
/* Node of a CPU id (0 for ids the topology does not know). */
int sk_numa_cpu_node(unsigned cpu);
size_t sk_numa_cache_line(void);
/* Node of the CPU the caller runs on now (it may migrate right after). */
int sk_numa_current_node(void);

/*
 * Parse a policy: "local", "preferred:N", "interleave", "bind:N" (N an OS
 * node number).  0, or -EINVAL with *why set to the reason.  Needs init
 * (the node numbers are checked against the topology).
 */
int sk_numa_policy_parse(const char *text, struct sk_numa_policy *out, const char **why);
/* The process-wide policy (sk_numa_config.policy), resolved: never DEFAULT. */
struct sk_numa_policy sk_numa_process_policy(void);
/* pol with DEFAULT replaced by the process's policy (cursor kept). */
struct sk_numa_policy sk_numa_policy_resolve(struct sk_numa_policy pol);
/* The node a request naming none starts on under *pol (advances an
 * interleave cursor): the caller's node, the preferred or bound node, or
 * the next in turn. */
int sk_numa_policy_node(struct sk_numa_policy *pol);
/* Its name as parsed ("interleave", "preferred:1", ...), into buf. */
const char *sk_numa_policy_name(struct sk_numa_policy pol, char *buf, size_t len);

/*
 * Allocate 2^order contiguous pages on `node` (SK_NODE_ANY: as the
 * process's policy says; by default the caller's node, then the others).  Every page's descriptor gets kind and node; the
 * head gets owner, order, npages; bk[] is zeroed.  Returns the address of
 * the first page, or NULL when the node's arena is exhausted or injected
 * failure fires.  The pages may hold stale data (not zeroed).
 */
void *sk_pages_alloc(int node, unsigned order, enum sk_page_kind kind, void *owner);

/* Same for exactly npages pages (1 .. 2^SK_MAX_ORDER); the unused tail of
 * the enclosing buddy block is freed at once. */
void *sk_pages_alloc_exact(int node, size_t npages, enum sk_page_kind kind, void *owner);

/* The same calls under a policy of the caller's for SK_NODE_ANY (a
 * cache's own; DEFAULT follows the process's kind with pol's cursor). */
void *sk_pages_alloc_policy(struct sk_numa_policy *pol, int node, unsigned order,
			    enum sk_page_kind kind, void *owner);
void *sk_pages_alloc_exact_policy(struct sk_numa_policy *pol, int node, size_t npages,
				  enum sk_page_kind kind, void *owner);

/* Free an allocation made by either call above, given its first address.
 * Every page of it is marked SK_PAGE_FREE, so a stale pointer into it is
 * never mistaken for a live block. */
void sk_pages_free(void *addr);

/* Attributes of an allocated block that the OS keeps (FreeBSD's M_NODUMP
 * and M_EXEC): SK_PAGES_NODUMP leaves the block out of core dumps
 * (MADV_DONTDUMP), SK_PAGES_EXEC makes it executable (PROT_EXEC).  addr is
 * the start of a block from the calls above.  0, or -errno with nothing
 * changed.  sk_pages_free undoes them before the pages go back. */
#define SK_PAGES_NODUMP 0x1u
#define SK_PAGES_EXEC   0x2u
int sk_pages_set_attrs(void *addr, unsigned attrs);

/*
 * Resizing a page allocation in place (core's large blocks).
 * sk_pages_grow: extend it to npages with the free pages that follow it;
 * false (nothing changed) when one of them is in use or past its arena.
 * sk_pages_trim: give back every page past the first npages.
 * sk_pages_move: move the contents of npages pages from src to dst (both
 * allocations of the caller) by remapping them, without copying; src reads
 * as zero pages afterwards.  0 or -errno (then nothing moved).  Page
 * binding of src's range is lost (the hole is mapped afresh), so moves are
 * for single-node machines or memory the caller does not bind.
 */
bool sk_pages_grow(void *addr, size_t npages);
void sk_pages_trim(void *addr, size_t npages);
int sk_pages_move(void *dst, void *src, size_t npages);

/*
 * Validation's walk (slabkit_validate): fn(head, arg) on the head
 * descriptor of every live block of `kind` owned by `owner` (any owner if
 * NULL), node by node in address order, with that node's lock held, so
 * that no block it is given is freed or reused meanwhile; its owner may
 * still change the block's words atomically.  fn takes no lock and calls
 * nothing that allocates pages or may (report after the walk).  It costs
 * O(live blocks + free blocks) per node; blocks being made or freed at
 * that moment may be missed.
 */
void sk_pages_walk_locked(enum sk_page_kind kind, const void *owner, void (*fn)(struct sk_page *head, void *arg),
			  void *arg);

/* Return every free page of every node to the OS (madvise). */
void sk_pages_release_free(void);

/* Pages one idle-release pass gives back per node at most (64 MiB): the
 * pacing of the maintenance thread's returns. */
#define SK_IDLE_RELEASE_PAGES ((uint64_t)16384)
/* Return the free runs that stayed free since the previous call (the
 * maintenance thread calls it once per tick), up to SK_IDLE_RELEASE_PAGES
 * per node.  Returns the pages released. */
uint64_t sk_pages_release_idle(void);

/* fork() safety: take (true) or release every arena lock.  Core calls it
 * last in its pthread_atfork prepare handler (the page provider's locks
 * are the bottom of the lock order). */
void sk_numa_fork_lock(bool lock);

/* Fault injection for tests: every Nth allocation fails (0: off).  SK_PAGE_META
 * allocations are exempt, so slabkit's own setup stays testable under it. */
void sk_pages_set_fail_every(unsigned n);
/* Random mode (while every-Nth is off): each allocation fails with a chance
 * of percent in 100 (0: off), drawn per thread from a stream seeded by
 * seed and the thread's order of first draw.  SK_PAGE_META is exempt too. */
void sk_pages_set_fail_random(unsigned percent, uint64_t seed);

struct sk_numa_stats {
	uint64_t pages_reserved;    /* arena pages over all nodes */
	uint64_t pages_in_use;      /* handed out */
	uint64_t pages_free_dirty;  /* free, possibly resident */
	uint64_t pages_released;    /* pages madvised back, cumulative */
	uint64_t alloc_calls, alloc_failures;
	uint64_t free_blocks[SK_MAX_ORDER + 1]; /* free blocks per order, all nodes */
};
void sk_numa_stats(struct sk_numa_stats *out);

/* One node's figures.  A "directed" request is one that named this node
 * (an explicit node, a preferred or bind policy): a hit when it got pages
 * here, a miss when it did not (spilled elsewhere or failed). */
struct sk_numa_node_stats {
	uint64_t pages_reserved;    /* this node's arena */
	uint64_t pages_in_use;
	uint64_t pages_free_dirty;
	uint64_t pages_released;    /* cumulative */
	uint64_t madvise_calls;     /* cumulative */
	uint64_t alloc_calls;
	uint64_t directed_hits, directed_misses;
	uint64_t free_blocks[SK_MAX_ORDER + 1];  /* free blocks by order */
	uint64_t used_blocks[SK_MAX_ORDER + 1];  /* live allocations by buddy order */
};
/* 0, or -EINVAL for a node index that does not exist. */
int sk_numa_node_stats(int node, struct sk_numa_node_stats *out);

/* Provider node of the arena holding addr (any byte, live or free), or -1. */
int sk_numa_addr_node(const void *addr);

/*
 * The per-CPU area, reserved at init: sk_numa_cpus() units of *unit_bytes
 * each, unit c at base + c * unit_bytes and bound to CPU c's node (on a
 * real multi-node machine; elsewhere placed by first touch like the
 * arenas).  Core lays a cache's per-CPU slots at one offset in every unit,
 * as the kernel's percpu allocator does, so a CPU's slot is in its node's
 * memory and still at base + cpu * stride.  NULL when there is none.
 * Not part of the arenas: sk_page_of and sk_numa_addr_node know nothing
 * of it.
 */
void *sk_numa_pcpu_area(size_t *unit_bytes);

/* --- address -> descriptor, O(1), lock-free --- */

/* The arenas: [sk_arena_base, sk_arena_base + sk_arena_size), descriptors
 * in sk_page_map. */
extern uintptr_t sk_arena_base, sk_arena_size;
extern struct sk_page *sk_page_map;

static inline bool sk_addr_in_arena(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	return a - sk_arena_base < sk_arena_size;
}

/* Descriptor of the page holding addr, or NULL if addr is not in an arena. */
static inline struct sk_page *sk_page_of_raw(const void *addr)
{
	if (!sk_addr_in_arena(addr))
		return NULL;
	return &sk_page_map[((uintptr_t)addr - sk_arena_base) >> SK_PAGE_SHIFT];
}

/*
 * Head descriptor of the block holding addr, for fast paths that go on to
 * compare its owner (or a tag derived from it) with what they expect.  No
 * check of the page's kind: pages outside live blocks keep head_delta 0 and
 * owner NULL, so a stale pointer yields a free page whose owner matches
 * nothing.  addr must be in the arenas (sk_addr_in_arena).
 */
static inline struct sk_page *sk_page_head(const void *addr)
{
	struct sk_page *pg = &sk_page_map[((uintptr_t)addr - sk_arena_base) >> SK_PAGE_SHIFT];
	return pg - pg->head_delta;
}

/* Head descriptor of the live block holding addr; NULL outside the arenas
 * or on a free page. */
static inline struct sk_page *sk_page_of(const void *addr)
{
	if (!sk_addr_in_arena(addr))
		return NULL;
	struct sk_page *pg = &sk_page_map[((uintptr_t)addr - sk_arena_base) >> SK_PAGE_SHIFT];
	if (pg->kind == SK_PAGE_FREE)
		return NULL;
	return pg - pg->head_delta;
}

static inline void *sk_page_addr(const struct sk_page *pg)
{
	return (void *)(sk_arena_base + ((uintptr_t)(pg - sk_page_map) << SK_PAGE_SHIFT));
}

#pragma GCC visibility pop

#endif /* SLABKIT_NUMA_H */
