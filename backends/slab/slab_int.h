/*
 * SLAB backend, private interface (Bonwick's slab allocator as Linux
 * mm/slab.c ran it).  Only the files of backends/slab/ and the tests
 * named tests/backend_slab_<name>.c include this header.
 *
 * Where a free object can be, fastest first:
 *   1. the per-CPU array of the CPU that freed it (core's slot: a LIFO of
 *      object pointers, `limit` deep, refilled and flushed `batchcount` at
 *      a time);
 *   2. the shared array of its node (`shared * batchcount` deep);
 *   3. an alien array of some other node (a remote free on its way home);
 *   4. its slab, on its node's partial or free list.
 * Allocation takes from 1, then refills 1 from 2, then from 4 (partial
 * slabs first), then grows a new slab from the page provider.
 *
 * Invariants:
 *   - every object in a slot's array, in node n's shared array or in any
 *     node's alien array for n lives in a slab on node n;
 *   - a slab is on exactly one list of its node: full (active == num),
 *     partial (0 < active < num) or free (active == 0);
 *   - n->free_objects == sum over n's slabs of (num - active);
 *   - n->total_slabs == slabs on n's three lists;
 *   - the first object of every slab is aligned to c->align (colour
 *     offsets are multiples of colour_off, itself a multiple of c->align).
 *
 * Cross-file functions are prefixed bslab_ ("backend slab"); the library is
 * built with hidden visibility, so the only exported symbol is sk_slab_ops.
 */
#ifndef SLABKIT_BACKEND_SLAB_INT_H
#define SLABKIT_BACKEND_SLAB_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>

#include "../../common/sk_list.h"
#include "../../core/sk_backend.h"

/* Linux's constants (mm/slab.c, include/linux/slab.h). */
#define SLAB_BATCHREFILL_LIMIT 16u  /* refill cap for an array idle since the last reap */
#define SLAB_ALIEN_LIMIT 12u        /* alien array depth (1 when limit is 1) */
#define SLAB_MAX_ORDER_HI 1u        /* slab_max_order on machines with > 32 MiB */
#define SLAB_KMALLOC_MIN_SIZE 8u
/* Objects at least this big keep their index array off the slab. */
#define SLAB_OFF_SLAB_MIN SK_MAX(SK_PAGE_SIZE >> 5, SLAB_KMALLOC_MIN_SIZE + 1)
#define SLAB_REAP_DIVISOR 5u        /* reaping gives back 1/5 at a time */

/* slabkit's own bounds on the tunables (Linux had none below memory). */
#define SLAB_LIMIT_MAX 4096u
#define SLAB_SHARED_ENTRIES_MAX 65536u

/* --- the slab descriptor: the head page's owner words --- */
/*
 * Synchronization: the list_lock of the slab's node, except while the slab
 * is being built or destroyed (then it is on no list and only its builder
 * or destroyer sees it).
 */
struct slab_desc {
	struct sk_list sd_link;   /* on its node's full, partial or free list */
	uint32_t sd_active;       /* objects handed out of this slab */
	uint32_t sd_colour_off;   /* offset of the first object (the colour) */
	/* The free-index array: its address (on the slab's tail, or from
	 * sk_meta_zalloc), or the array itself when it fits in 8 bytes
	 * (SLAB_FREELIST_IN_DESC). */
	uintptr_t sd_freelist;
} __attribute__((may_alias));

enum slab_freelist_where {
	SLAB_FREELIST_ON_SLAB, /* at the end of the slab's own memory */
	SLAB_FREELIST_IN_DESC, /* off the slab, inside the descriptor's sd_freelist */
	SLAB_FREELIST_META,    /* off the slab, from sk_meta_zalloc */
};

static inline struct slab_desc *slab_desc(struct sk_page *pg)
{
	return (struct slab_desc *)sk_page_words(pg);
}

static inline struct sk_list *slab_link_of(struct sk_page *pg)
{
	return &slab_desc(pg)->sd_link;
}

static inline struct sk_page *slab_of_link(struct sk_list *l)
{
	return sk_page_of_words(l, offsetof(struct slab_desc, sd_link));
}

static inline uint32_t slab_active(struct sk_page *pg)
{
	return slab_desc(pg)->sd_active;
}

static inline void slab_set_active(struct sk_page *pg, uint32_t active)
{
	slab_desc(pg)->sd_active = active;
}

static inline uint32_t slab_colour_offset(struct sk_page *pg)
{
	return slab_desc(pg)->sd_colour_off;
}

static inline char *slab_s_mem(struct sk_page *pg)
{
	return (char *)sk_page_addr(pg) + slab_colour_offset(pg);
}

/* --- per-cache, per-node and per-CPU state --- */

/* A bounded LIFO of object pointers (Linux's array_cache), used for the
 * shared and alien arrays.  Synchronization: the lock of its owner (the
 * node's list_lock for shared, the alien's own lock for alien). */
struct slab_array {
	uint32_t avail;      /* entries in entry[0 .. avail-1]; entry[avail-1] is hottest */
	uint32_t limit;      /* current capacity (<= the allocated capacity) */
	uint32_t touched;    /* shared: a refill used it since the last reap */
	uint32_t capacity;   /* entries allocated after the header */
	void *entry[];
};

/* Frees of node `home`'s objects made on another node, on their way back.
 * Synchronization: lock covers ac; drains and reports peek at ac.avail with
 * a ck_pr load first and take the lock only if it is non-zero. */
struct slab_alien {
	pthread_mutex_t lock;
	struct slab_array ac;   /* entry[SLAB_ALIEN_LIMIT] follows */
};

struct slab_node {
	/*
	 * Synchronization: list_lock covers the three lists, the counters,
	 * free_limit, free_touched and the shared array (pointer and contents).
	 */
	pthread_mutex_t list_lock;
	struct sk_list slabs_full, slabs_partial, slabs_free;
	uint64_t total_slabs;      /* slabs on the three lists */
	uint64_t free_slabs;       /* slabs on slabs_free */
	uint64_t free_objects;     /* free objects in this node's slabs (not in arrays) */
	uint64_t free_limit;       /* above this, empty slabs are released at once */
	bool free_touched;         /* a refill took a free slab since the last reap */
	struct slab_array *shared; /* NULL when shared == 0 */

	/* Synchronization: ck_pr atomic increment; wraps harmlessly. */
	uint32_t colour_next;      /* next colour index for a slab grown on this node */
	/* Written at creation, read-only afterwards. */
	int id;
	unsigned cpus;             /* CPU ids whose node is this one */

	/* alien[m]: frees made on this node of node m's objects (NULL for m == id).
	 * The pointers are written at creation only; each alien has its lock. */
	struct slab_alien *alien[];
};

/*
 * The backend area after each core slot header (c->pcpu_extra bytes).
 * The slot's `entries` points at inline_entries, or at a bigger array from
 * sk_meta_zalloc after `limit` was raised above inline capacity.
 */
struct slab_cpu {
	/* Set by slow paths under the slot lock, taken (fetch-and-store 0) by
	 * the reaper under tune_lock: the array was refilled since the last reap. */
	uint32_t touched;
	/* Capacity of the sk_meta_zalloc'd entries array, 0 when inline.
	 * Synchronization: the slot lock holder. */
	uint32_t external_capacity;
	/* sk_pcpu_slot_allocs() at the last reap: a change means the fast path popped
	 * from the array (Linux sets `touched` there; core's fast path does not
	 * call us).  Synchronization: written by the tune_lock holder (ck_pr
	 * store), read racily by refills (ck_pr load): a stale value only
	 * changes whether one refill is capped. */
	uint64_t reap_allocs_seen;
	void *inline_entries[];
};

struct slab_cache {
	/* Layout: written by cache_create, read-only afterwards. */
	uint32_t size;             /* object stride (== c->size) */
	uint32_t num;              /* objects per slab */
	uint32_t order;            /* slab = 2^order pages */
	uint32_t slab_bytes;
	uint32_t size_reciprocal;  /* ceil(2^32 / size): offset -> index without a divide */
	uint32_t colour;           /* number of distinct colours (leftover / colour_off) */
	uint32_t colour_off;       /* max(cache line, c->align) */
	uint32_t leftover;         /* bytes of a slab no object uses */
	uint32_t freelist_bytes;   /* num * idx_bytes */
	uint8_t idx_bytes;         /* 1 (num <= 256) or 2 */
	uint8_t freelist_where;    /* enum slab_freelist_where */
	bool nofree;               /* SK_CACHE_NOFREE: never release a slab */
	bool nobucket;             /* SK_CACHE_NOBUCKET: per-CPU arrays stay empty */
	uint32_t inline_capacity;  /* entries in each slot's extra area */
	unsigned nr_nodes;

	/*
	 * Tunables.  Synchronization: written under tune_lock with ck_pr
	 * stores; slow paths read them with ck_pr loads and clamp what they
	 * read against the slot's own limit, so a racing tune is harmless.
	 */
	uint32_t limit, batchcount, shared, alien_limit;

	/* One maintenance pass (tune, shrink, tick, destroy) at a time. */
	pthread_mutex_t tune_lock;
	uint64_t reap_passes;      /* Synchronization: tune_lock */

	/* Synchronization: ck_pr atomics. */
	uint64_t xdomain_frees;

	struct slab_node *node[];  /* nr_nodes entries */
};

static inline struct slab_cache *slab_cache_of(const struct sk_cache *c)
{
	return (struct slab_cache *)c->backend;
}

static inline struct slab_cpu *slab_cpu_of(struct sk_pcpu_slot *slot)
{
	return (struct slab_cpu *)sk_pcpu_extra(slot);
}

/* Node whose objects a slot caches (pcpu_init stores node + 1 in tag). */
static inline int slab_slot_node(const struct sk_pcpu_slot *slot)
{
	return (int)slot->tag - 1;
}

/* A slot pcpu_init has seen (tags start at 1).  The tag is written once,
 * before the cache is published, so a plain read is enough. */
static inline bool slab_slot_ready(const struct sk_pcpu_slot *slot)
{
	return slot->tag != 0;
}

/* The array's entry count, kept by core in the slot's `top` word (fast
 * paths on the slot's CPU change it too): set by the lock holder, read by
 * anyone. */
static inline uint32_t slab_slot_top(const struct sk_pcpu_slot *slot)
{
	return sk_pcpu_array_count(slot);
}

static inline void slab_slot_set_top(struct sk_pcpu_slot *slot, uint32_t top)
{
	sk_pcpu_set_array_count(slot, top);
}

/* --- the free-index array --- */

static inline void *slab_freelist(const struct slab_cache *sc, struct sk_page *pg)
{
	if (sc->freelist_where == SLAB_FREELIST_IN_DESC)
		return &slab_desc(pg)->sd_freelist;
	return (void *)slab_desc(pg)->sd_freelist;
}

static inline unsigned slab_freelist_get(const struct slab_cache *sc, const void *fl, unsigned i)
{
	if (sc->idx_bytes == 1)
		return ((const uint8_t *)fl)[i];
	return ((const uint16_t *)fl)[i];
}

static inline void slab_freelist_set(const struct slab_cache *sc, void *fl, unsigned i, unsigned idx)
{
	if (sc->idx_bytes == 1)
		((uint8_t *)fl)[i] = (uint8_t)idx;
	else
		((uint16_t *)fl)[i] = (uint16_t)idx;
}

/* Index of the object at byte offset `off` from s_mem; exact for every
 * multiple of size below 2^32 (the error term k * (size*recip - 2^32) stays
 * below 2^32). */
static inline uint32_t slab_offset_to_index(const struct slab_cache *sc, uint32_t off)
{
	return (uint32_t)(((uint64_t)off * sc->size_reciprocal) >> 32);
}

/* --- slab_layout.c: layout, growth, node lists --- */

/* Compute the layout and tunables for c and allocate the node structures. */
int bslab_cache_create(struct sk_cache *c);
void bslab_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu);
void bslab_cache_destroy(struct sk_cache *c);

/* A new slab on `node` (SK_NODE_ANY: the provider's choice), constructed and
 * on no list.  Called with no lock held (the ctor may allocate).  NULL when
 * the provider or a UMA init fails. */
struct sk_page *bslab_grow(struct sk_cache *c, int node, unsigned flags);
/* Destroy the slabs on `list` (unlinked already).  No lock held. */
void bslab_destroy_list(struct sk_cache *c, struct sk_list *list);

/* Arrays for the shared and alien caches (sk_meta_zalloc). */
struct slab_array *bslab_array_alloc(uint32_t capacity);
void bslab_array_free(struct slab_array *a);

/* Under n->list_lock: */
/* Put a slab fresh from bslab_grow on n's free list. */
void bslab_attach(struct slab_cache *sc, struct slab_node *n, struct sk_page *pg);
/* Move up to `want` objects of one slab into out[] and refile the slab. */
uint32_t bslab_take_from(struct slab_cache *sc, struct slab_node *n, struct sk_page *pg,
			 void **out, uint32_t want);
/* Move up to `want` objects from n's slabs into out[]; returns how many. */
uint32_t bslab_take_objects(struct slab_cache *sc, struct slab_node *n, void **out, uint32_t want);
/* Return nr objects of node n to their slabs; slabs released past
 * free_limit go to *destroy. */
void bslab_free_block(struct sk_cache *c, struct slab_node *n, void **objs, uint32_t nr,
		      struct sk_list *destroy);
/* Unlink up to max empty slabs (oldest first) onto *destroy; returns how many. */
uint64_t bslab_detach_free(struct slab_cache *sc, struct slab_node *n, uint64_t max,
			   struct sk_list *destroy);
/* The free_limit of n for the current batchcount. */
uint64_t bslab_free_limit(const struct slab_cache *sc, const struct slab_node *n);

/* --- slab_alloc.c: the slow paths --- */

void *bslab_alloc(struct sk_cache *c, int node, unsigned flags);
void bslab_free(struct sk_cache *c, void *obj, struct sk_page *slab);
/* Empty an alien array into its home node.  Caller holds al->lock. */
void bslab_drain_alien_locked(struct sk_cache *c, struct slab_alien *al, int home,
			      struct sk_list *destroy);
/* Current node, clamped to the nodes this cache knows. */
int bslab_current_node(const struct slab_cache *sc);

/* --- slab_reap.c: reaping, shrinking, tunables, reports --- */

void bslab_tick(struct sk_cache *c);
uint64_t bslab_shrink(struct sk_cache *c, enum sk_shrink_level level);
int bslab_tune(struct sk_cache *c, const char *key, long value);
void bslab_cache_info(struct sk_cache *c, struct sk_backend_cache_info *out);
/* Return every object of a locked slot's array to its node's slabs. */
void bslab_flush_slot(struct sk_cache *c, struct sk_pcpu_slot *slot, struct sk_list *destroy);

/* --- slab_validate.c: slabkit_validate --- */

uint64_t bslab_validate(struct sk_cache *c);

#endif /* SLABKIT_BACKEND_SLAB_INT_H */
