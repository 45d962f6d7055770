/*
 * SLOB's private header: the first-fit heap shared by slob_heap.c (pools
 * of pages, first-fit carving, address-ordered freeing) and slob.c (the
 * ops table: kmalloc, caches, whole-page objects).
 *
 * Nothing here is visible outside backends/slob/ except the sk_slob_debug_*
 * introspection calls, which the SLOB tests link against (hidden in the
 * shared library like every internal symbol).
 *
 * Units.  Every block is a whole number of 8-byte units.  A page is
 * SLOB_PAGE_UNITS units and offsets inside it fit in 16 bits.  8 bytes is
 * the smallest unit that keeps every block 8-aligned (what kmalloc must
 * guarantee) and is also large enough for a free block to hold its size and
 * its successor in one unit, so no free block is too small to be listed.
 *
 * Blocks.  A free block's first unit is {units, next offset, FREE magic}.
 * A kmalloc block is one header unit {units, KMALLOC magic} followed by the
 * caller's bytes.  A cache object carries no header: its size is the
 * cache's size, given back at free time.
 *
 * Pools.  A pool is a set of heap pages with its three lists of partially
 * free pages.  kmalloc and malloc(9) blocks share one pool of SK_PAGE_HEAP
 * pages; each cache has a pool of its own pages (SK_PAGE_SLAB, owner the
 * cache), so that core knows every object's cache from its page: kfree of
 * a cache object works and a free to the wrong cache is caught
 * (docs/slob.md explains the choice and its cost).
 */
#ifndef SLABKIT_SLOB_INT_H
#define SLABKIT_SLOB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sk_backend.h"

#define SLOB_UNIT ((size_t)8)
#define SLOB_UNIT_SHIFT 3
#define SLOB_PAGE_UNITS ((unsigned)(SK_PAGE_SIZE / SLOB_UNIT)) /* 512 */
#define SLOB_END SLOB_PAGE_UNITS  /* "no next free block" offset */

/* List thresholds on the request size in bytes, header included (Linux
 * SLOB_BREAK1 and SLOB_BREAK2).  Pages' largest free blocks are classed
 * with the same thresholds. */
#define SLOB_BREAK_SMALL  256u
#define SLOB_BREAK_MEDIUM 1024u

/* TYPESAFE_BY_RCU caches: liburcu's head after each object (two words). */
#define SLOB_RCU_HEAD (2 * sizeof(void *))

/* The kmalloc size header: one unit. */
#define SLOB_KMALLOC_HDR SLOB_UNIT

/* Magic words in the upper half of a block's first unit. */
#define SLOB_MAGIC_FREE    0x5f7ee5b1u
#define SLOB_MAGIC_KMALLOC 0x6b3a11c5u
/* Bit 16 of a kmalloc header: the block is malloc(9)'s (SK_ALLOC_MALLOC9).
 * Bits 0-15 are the block's units, 32-63 the magic. */
#define SLOB_HDR_MALLOC9 ((uint64_t)1 << 16)

enum slob_list_id {
	SLOB_LIST_NONE = 0, /* on no list: no free block the pool can use */
	SLOB_LIST_SMALL,    /* largest free block serves requests < SLOB_BREAK_SMALL bytes */
	SLOB_LIST_MEDIUM,   /* ... requests < SLOB_BREAK_MEDIUM bytes */
	SLOB_LIST_LARGE,    /* ... larger requests */
	SLOB_NR_LISTS = SLOB_LIST_LARGE,
};

enum slob_page_kind {
	SLOB_KIND_KMALLOC = 0, /* SK_PAGE_HEAP pages of blocks with a size header */
	SLOB_KIND_CACHE,       /* SK_PAGE_SLAB pages of one cache's headerless objects */
};

static inline unsigned slob_units(size_t bytes)
{
	return (unsigned)((bytes + SLOB_UNIT - 1) >> SLOB_UNIT_SHIFT);
}

/* The size class of a request of `bytes`, and so the list it searches
 * first; also the list of a page whose largest free block is `bytes`. */
static inline enum slob_list_id slob_list_for(size_t bytes)
{
	if (bytes < SLOB_BREAK_SMALL)
		return SLOB_LIST_SMALL;
	if (bytes < SLOB_BREAK_MEDIUM)
		return SLOB_LIST_MEDIUM;
	return SLOB_LIST_LARGE;
}

/*
 * A SLOB page's head descriptor words (sk_page_words).  Synchronization:
 * the heap lock, except sp_tag: written before the page is published and
 * constant while it lives, so it may be read without the lock.
 */
struct slob_words {
	uintptr_t sp_index;  /* index of its entry in its list (when listed) */
	uintptr_t sp_isolated; /* 1: validation took its free blocks (its units no longer sum) */
	uintptr_t sp_state;  /* free units | first free offset << 16 | largest free block << 32
	                      * | list << 48 (struct slob_state, slob_heap.c) */
	uintptr_t sp_tag;    /* SLOB_PAGE_TAG | kind */
} __attribute__((may_alias));

static inline struct slob_words *slob_words(const struct sk_page *pg)
{
	return (struct slob_words *)sk_page_words((struct sk_page *)pg);
}

/*
 * One "list" of partially free pages, which is not a list: an unordered
 * array of entries {page number, largest free block}, with O(1) removal
 * (the last entry takes the hole) and a roving next-fit cursor, so that a
 * search reads eight candidates per cache line instead of one page
 * descriptor (a cache miss) per candidate.  That is why it is not
 * common/sk_list.h through the descriptors: the same policy and budget on
 * an sk_list cost 2.5-3.2x the time per call at the same footprint
 * (docs/slob.md, "Measured").  A listed page's descriptor holds its index
 * here (slob_words(pg)->sp_index).  The array grows with
 * sk_meta_array_grow.  Synchronization: every field under the heap lock.
 */
struct slob_list {
	uint64_t *entry;   /* page number << 16 | largest free block (units) */
	uint32_t count;    /* entries in use: entry[0 .. count) */
	uint32_t cap;      /* entries allocated (sk_meta_zalloc) */
	uint32_t cursor;   /* next-fit: the next search starts at entry[cursor] */
	unsigned max;      /* >= the largest free block of every entry */
};

/*
 * A pool of heap pages.  Every field is guarded by the one heap lock
 * (slob_heap.c), except the identity fields set before the pool is used.
 */
struct slob_pool {
	/* Identity: written once at creation, read-only after. */
	enum slob_page_kind kind;
	struct sk_cache *cache;   /* CACHE pools: the owner of their pages */
	unsigned min_units;       /* the smallest block the pool ever carves */
	bool keep_empty;          /* NOFREE: empty pages stay in the pool until destroy */

	/* Synchronization: heap lock.  NOFREE caches of whole-page objects:
	 * freed objects kept for reuse, linked through their first word. */
	void *free_page_objects;

	/* Synchronization: heap lock.  The three lists, by request size. */
	struct slob_list list[SLOB_NR_LISTS];
	/* Synchronization: heap lock.  Pages held, listed or not (for a cache
	 * of whole-page objects: objects held). */
	uint64_t pages;
	/* Synchronization: heap lock.  Times a page was left off its list
	 * because the list could not grow (no metadata memory).  Such a page
	 * is only hidden from searches: every free into it tries again. */
	uint64_t list_failures;
};

/* Set a pool up (empty).  min_units: smallest block it will carve. */
void slob_pool_init(struct slob_pool *pool, enum slob_page_kind kind, struct sk_cache *cache,
		    unsigned min_units);

/* fork(): take or release the one heap lock. */
void slob_heap_fork_lock(bool lock);

/* Give back a pool's list arrays; it must hold no page. */
void slob_pool_destroy(struct slob_pool *pool);
/* Free every page a NOFREE pool kept (all empty: the cache is being
 * destroyed with nothing in use), whole-page objects included. */
void slob_pool_release_kept(struct slob_pool *pool);
/* NOFREE whole-page objects: keep a freed one / take one back (NULL: none
 * on `node`, or SK_NODE_ANY for any). */
void slob_pool_keep_page_object(struct slob_pool *pool, void *obj);
void *slob_pool_take_page_object(struct slob_pool *pool, int node);

/* Pages (heap pages, or whole-page objects) a pool holds, read under the
 * heap lock; and the count kept for whole-page objects, which bypass the
 * heap. */
uint64_t slob_pool_pages(struct slob_pool *pool);
void slob_pool_count_pages(struct slob_pool *pool, int64_t delta);

/* The one pool of kmalloc and malloc(9) blocks. */
struct slob_pool *slob_kmalloc_pool(void);

/* Carve `bytes` (a multiple of SLOB_UNIT, at most a page) from the pool so
 * that the block's address + align_offset is a multiple of align (0 or a
 * power of two), from a page of `node` (SK_NODE_ANY: any page).  Takes the
 * heap lock.  NULL when the page provider fails.  `header` (0: none) is
 * written into the block's first word under the lock: a kmalloc header is
 * then never seen half made (slabkit_validate reads them under the lock). */
void *slob_pool_alloc(struct slob_pool *pool, size_t bytes, size_t align, size_t align_offset,
		      int node, uint64_t header);

/* Outcome of a free. */
enum slob_free_result {
	SLOB_FREED = 0,
	SLOB_FREE_WRONG_PAGE, /* the page is not one of this pool's */
	SLOB_FREE_OUTSIDE,    /* the block runs past its page, or is misaligned */
	SLOB_FREE_OVERLAP,    /* part of it is already free (double free) */
	SLOB_FREE_BAD_HEADER, /* no live kmalloc header before the pointer */
};

/* Give back `bytes` at `block` on pg (head descriptor) of the pool.  Takes
 * the heap lock.  Coalesces with both neighbours; frees the page when it
 * becomes empty.  On any result but SLOB_FREED nothing was changed. */
enum slob_free_result slob_pool_free(struct slob_pool *pool, struct sk_page *pg, void *block,
				     size_t bytes);

/* Free the kmalloc block whose header unit is at `header` on pg, its size
 * read from the header under the heap lock.  The header is erased. */
enum slob_free_result slob_pool_kfree(struct slob_pool *pool, struct sk_page *pg, void *header);

/* Kind of a page this backend made, read without the lock: set before the
 * page is published and never changed while it lives. */
bool slob_page_is_kmalloc(const struct sk_page *pg);

/* slabkit_validate: every listed page of the pool (c: its cache, NULL for
 * the kmalloc pool); bad pages are reported and isolated.  Takes the heap
 * lock.  Returns the errors. */
uint64_t slob_pool_validate(struct slob_pool *pool, struct sk_cache *c);

int slob_heap_init(void);
void slob_heap_fini(void);

/* --- Introspection for tests (takes the heap lock) --- */

struct sk_slob_page_info {
	int list;             /* enum slob_list_id */
	int kind;             /* enum slob_page_kind */
	unsigned free_units;  /* units free in the page */
	unsigned free_blocks; /* blocks on its free list */
	unsigned largest_free;/* units of the largest free block */
	unsigned node;
};

/* Fill *out for the SLOB page holding p; false if p is on none. */
bool sk_slob_debug_page(const void *p, struct sk_slob_page_info *out);

struct sk_slob_pool_info {
	uint64_t pages;                       /* pages held now */
	uint64_t pages_listed[SLOB_NR_LISTS]; /* per list */
	uint64_t free_units;                  /* units free on listed pages */
	uint64_t list_failures;               /* pages a list could not take */
};
/* The kmalloc pool (c == NULL) or a cache's pool; false if c has none. */
bool sk_slob_debug_pool(struct sk_cache *c, struct sk_slob_pool_info *out);

/* Heap pages taken from and given back to the page provider, all pools. */
void sk_slob_debug_page_counts(uint64_t *allocs, uint64_t *frees);

#endif /* SLABKIT_SLOB_INT_H */
