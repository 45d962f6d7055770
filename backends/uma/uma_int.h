/*
 * The UMA backend's private interface (FreeBSD sys/vm/uma_int.h in spirit).
 *
 * A slabkit cache run by this backend is one UMA keg plus the caching half
 * of its zone.  An allocation that core's per-CPU fast path cannot serve
 * tries, in order (uma_core.c's order):
 *
 *   1. this CPU's buckets: the alloc bucket is the slot's entries/top/limit
 *      (core pops and pushes on it); the free and cross-domain buckets sit
 *      in the slot's extra area (struct uma_cache);
 *   2. the per-domain bucket cache: full buckets (struct uma_zone_domain);
 *   3. the keg: slabs with a free bitset on per-domain partial/free/full
 *      lists (struct uma_keg_domain);
 *   4. the page provider (sk_slab_pages_alloc).
 *
 * Field prefixes say the owner: ub_ bucket, uc_ per-CPU cache, uzd_ zone
 * domain, uz_ zone caching state, ukd_ keg domain, uk_ keg, kz_ the pair.
 *
 * Lock order (all files): a CPU slot lock (sk_pcpu_trylock_local or
 * sk_pcpu_lock_cpu) -> one domain bucket-cache lock (uzd_lock) -> one keg
 * domain lock (ukd_lock).  Never two locks of the same level at once; user
 * hooks (init, fini) and page allocation run with no backend lock held.
 *
 * Nothing here is exported from the library: core sees only sk_uma_ops.
 * Cross-file functions are prefixed skuma_ (hidden visibility); the static
 * inline readers at the end exist for tests/backend_uma_*.c.
 */
#ifndef SLABKIT_UMA_INT_H
#define SLABKIT_UMA_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>

#include "../../common/sk_list.h"
#include "../../core/sk_backend.h"
#include "../../core/sk_slab_bits.h"

/* --- Constants --- */

#define UMA_BUCKET_CLASSES 8     /* 2, 4, 8, 16, 32, 64, 128, 254 entries */
#define UMA_MAX_WASTE 10         /* percent of a slab layout may be lost (uma_int.h) */
#define UMA_SLAB_MAX_EXTRA_ORDERS 4 /* try slabs up to 16x the smallest that fits one item */
#define UMA_SLAB_MAX_ORDER 8     /* ...but not beyond 1 MiB unless one item needs more */
#define UMA_CACHESPREAD_MAX_ORDER 5 /* CACHESPREAD slabs stop at 128 KiB, as in UMA */
#define UMA_EMPTY_KEEP 16        /* empty buckets a domain keeps for reuse */

/* Bitset words: core's slab bitset (core/sk_slab_bits.h, shared with
 * core's own keg, which says why not ck_bitmap); a slab of at most
 * UMA_WORD_BITS items keeps its whole bitset in the head page descriptor. */
typedef sk_bitword_t uma_bitword_t;
#define UMA_WORD_BITS SK_BITWORD_BITS

/* Where a slab's free bitset lives. */
enum uma_slab_hdr {
	UMA_HDR_DESC,    /* in the head page descriptor's us_bits (ipers <= 64) */
	UMA_HDR_INLINE,  /* at the end of the slab, in space items cannot use */
	UMA_HDR_OFFPAGE, /* in sk_meta_zalloc memory, us_bits points at it */
};

/*
 * Slab header, kept in the head page descriptor of the slab's pages (its
 * owner words, sk_page_words; written only under the owning keg domain's
 * lock once the slab is listed).  A set bit means the item is free in the
 * slab (UMA's us_free).  The slab's domain is the descriptor's node; which
 * list it is on follows from the free count: 0 full, uk_ipers free,
 * anything else partial.
 */
struct uma_slab {
	struct sk_list us_link;  /* on its keg domain's free, partial or full list */
	uintptr_t us_freecount;  /* free items */
	uintptr_t us_bits;       /* the bitset word (UMA_HDR_DESC) or the bitset's address */
} __attribute__((may_alias));

static inline struct uma_slab *uma_slab(struct sk_page *pg)
{
	return (struct uma_slab *)sk_page_words(pg);
}

static inline struct sk_page *uma_slab_page(struct sk_list *link)
{
	return sk_page_of_words(link, offsetof(struct uma_slab, us_link));
}

/*
 * A bucket: a stack of free, constructed items.
 * Synchronization: owned by exactly one holder at a time: a CPU slot (under
 * its lock), a domain cache (under uzd_lock) or a thread that took it out.
 */
struct uma_bucket {
	struct uma_bucket *ub_next; /* link in a domain's full or empty list */
	uint32_t ub_cnt;            /* items in ub_bucket[0 .. ub_cnt-1]; stale while the
	                             * bucket is a slot's alloc bucket (sk_pcpu_array_count counts then) */
	uint32_t ub_entries;        /* capacity: one of uma_bucket_entries[] */
	void *ub_bucket[];
};

/*
 * The extra area of each per-CPU slot (UMA's struct uma_cache minus the
 * alloc bucket, which is the slot itself: entries = its ub_bucket, top = its
 * count, limit = its ub_entries).
 * Synchronization: the slot lock (fast paths never look here).  Drainers
 * peek at the pointers and reports read the _cnt mirrors without it, so
 * all five are written with ck_pr stores.
 */
struct uma_cache {
	struct uma_bucket *uc_allocbucket; /* NULL: slot->entries NULL, limit 0 */
	struct uma_bucket *uc_freebucket;  /* items of this CPU's domain */
	struct uma_bucket *uc_crossbucket; /* items of other domains (FIRSTTOUCH, >1 node) */
	uint32_t uc_free_cnt;              /* == uc_freebucket->ub_cnt */
	uint32_t uc_cross_cnt;             /* == uc_crossbucket->ub_cnt */
};

/*
 * One domain's bucket cache (uma_zone_domain).
 * Synchronization: uzd_lock for everything; uzd_nitems, uzd_wss, uzd_empty
 * and uzd_nempty are also read without it (ck_pr) to skip the lock when
 * there is nothing to take, and by reports: they are written with ck_pr
 * stores.
 * Invariant under the lock: imax >= nitems >= bimin >= imin >= 0.
 */
struct uma_zone_domain {
	pthread_mutex_t uzd_lock;
	struct uma_bucket *uzd_buckets; /* non-empty buckets, most recently put first */
	struct uma_bucket *uzd_empty;   /* empty buckets kept for reuse */
	uint32_t uzd_nbuckets;
	uint32_t uzd_nempty;
	int64_t uzd_nitems;             /* items in uzd_buckets */
	int64_t uzd_imax;               /* largest nitems this period */
	int64_t uzd_imin;               /* smallest nitems this period */
	int64_t uzd_bimin;              /* smallest nitems since imax last rose (this batch) */
	int64_t uzd_wss;                /* working-set estimate, items */
	char uzd_pad[24];               /* 128 bytes: domains on separate cache lines */
};

/*
 * One domain of a keg.
 * Synchronization: ukd_lock for the lists and the slabs' headers; the
 * counters are also read without it by reports (ck_pr loads).
 */
struct uma_keg_domain {
	pthread_mutex_t ukd_lock;
	struct sk_list ukd_part;        /* slabs with some items free, most recently moved first */
	struct sk_list ukd_free;        /* slabs with every item free */
	struct sk_list ukd_full;        /* slabs with no item free */
	uint64_t ukd_slabs;             /* slabs on the three lists */
	uint64_t ukd_free_slabs;        /* slabs on ukd_free */
	uint64_t ukd_free_items;        /* free items over all three lists */
	char ukd_pad[16];               /* 128 bytes */
};

/* Layout and page source.  Written in cache_create, read-only after
 * (except uk_rr_next, an atomic cursor). */
struct uma_keg {
	uint32_t uk_rsize;         /* item stride: roundup(max(size, 8), align) */
	uint32_t uk_ipers;         /* items per slab */
	uint32_t uk_order;         /* slab = 2^order pages */
	uint32_t uk_hdr;           /* enum uma_slab_hdr */
	uint32_t uk_bitset_words;  /* words of the free bitset */
	uint32_t uk_bitset_off;    /* UMA_HDR_INLINE: byte offset of the bitset in the slab */
	uint32_t uk_eff_permille;  /* items' share of the slab (and offpage bitset), /1000 */
	bool uk_nofree;            /* never free slabs before destroy */
	bool uk_roundrobin;        /* stripe new slabs over nodes */
	uint32_t uk_rr_next;       /* Synchronization: ck_pr_faa_32 */
	unsigned uk_ndomains;
	struct uma_keg_domain *uk_domain;
};

/* The caching half of the zone. */
struct uma_zcache {
	/* Current bucket class.  Synchronization: ck_pr loads/CAS; racy by
	 * design, like uz_bucket_size (a lost update only delays a step). */
	uint32_t uz_bucket_idx;
	/* Shrinking stops at min (the start class), growth at max; both
	 * change only through tunables.  Synchronization: ck_pr. */
	uint32_t uz_bucket_idx_min;
	uint32_t uz_bucket_idx_max;
	uint64_t uz_bucket_max;       /* items the domain caches may hold (ck_pr) */
	uint64_t uz_xdomain;          /* cross-domain frees (ck_pr_inc_64) */
	uint64_t uz_contended;        /* domain lock found held (ck_pr_inc_64) */
	/* Read-only after cache_create: */
	bool uz_crossdomain;          /* FIRSTTOUCH with more than one domain */
	bool uz_roundrobin;
	unsigned uz_ndomains;
	struct uma_zone_domain *uz_domain;
};

/* c->backend: one sk_meta_zalloc block holding this and the domain arrays.
 * kz_cache and kz_bytes are read-only after cache_create. */
struct uma_kz {
	struct sk_cache *kz_cache;
	size_t kz_bytes;
	struct uma_keg kz_keg;
	struct uma_zcache kz_zone;
};

/* --- uma_keg.c: layout and slabs --- */

int skuma_keg_layout(struct uma_kz *kz, const struct sk_cache *c);
/* Up to max items of `domain` (existing slabs first, else one new slab on
 * that node).  Returns how many were stored. */
int skuma_keg_import(struct uma_kz *kz, int domain, void **store, int max, unsigned flags);
/* Round-robin import: existing slabs of any domain, else one new slab on
 * the next node in turn (slabs striped over the nodes). */
int skuma_keg_import_rr(struct uma_kz *kz, void **store, int max, unsigned flags);
/* One item: from `node` only, or (SK_NODE_ANY) by the keg's policy with a
 * fall back to the other nodes. */
void *skuma_keg_alloc_item(struct uma_kz *kz, int node, unsigned flags);
/* One item from any domain but `tried` (FIRSTTOUCH fall back). */
void *skuma_keg_alloc_item_elsewhere(struct uma_kz *kz, int tried, unsigned flags);
void skuma_keg_free_item(struct uma_kz *kz, void *item, struct sk_page *slab);
void skuma_keg_release(struct uma_kz *kz, void **items, uint32_t n);
/* Free every fully free slab of `domain` (all domains: -1) unless NOFREE. */
void skuma_keg_drain(struct uma_kz *kz, int domain);
/* Free every slab (cache destruction). */
void skuma_keg_destroy(struct uma_kz *kz);
uint64_t skuma_keg_slabs(const struct uma_kz *kz);
uint64_t skuma_keg_free_items(const struct uma_kz *kz);
/* Slabs on the domains' partial and free lists (takes each domain lock). */
void skuma_keg_slab_counts(struct uma_kz *kz, uint64_t *partial, uint64_t *empty);

static inline int skuma_slab_domain(const struct uma_kz *kz, const struct sk_page *slab)
{
	return slab->node < kz->kz_keg.uk_ndomains ? (int)slab->node : 0;
}

/* --- uma_bucket.c: buckets and the per-domain bucket caches --- */

extern const uint32_t skuma_bucket_entries[UMA_BUCKET_CLASSES];
unsigned skuma_bucket_select(size_t item_size);
static inline uint32_t skuma_bucket_size_now(const struct uma_kz *kz)
{
	return skuma_bucket_entries[sk_load((uint32_t *)&kz->kz_zone.uz_bucket_idx)];
}

/* An empty bucket of the current size (domain's reuse list or new). */
struct uma_bucket *skuma_bucket_alloc(struct uma_kz *kz, int domain);
/* Give an empty bucket back (kept for reuse or freed). */
void skuma_bucket_free(struct uma_kz *kz, int domain, struct uma_bucket *b);
/* Release a bucket's items to the keg, then the bucket itself. */
void skuma_bucket_drain_free(struct uma_kz *kz, struct uma_bucket *b);

/* Put a non-empty bucket into domain's cache; `ws`: these items count as
 * working set (false for cross-domain refills). */
void skuma_zone_put_bucket(struct uma_kz *kz, int domain, struct uma_bucket *b, bool ws);
struct uma_bucket *skuma_zone_fetch_bucket(struct uma_kz *kz, int domain);
/* One item out of domain's cache, or NULL. */
void *skuma_zone_fetch_item(struct uma_kz *kz, int domain);
/* Sort a full cross bucket into the caches of the items' domains. */
void skuma_zone_free_cross(struct uma_kz *kz, struct uma_bucket *b);
/* Domain with the most (fewest) cached items (ROUNDROBIN zones). */
int skuma_zone_domain_most(const struct uma_kz *kz);
int skuma_zone_domain_fewest(const struct uma_kz *kz);

enum uma_trim_kind { UMA_TRIM_WSS, UMA_TRIM_ALL };
/* Update domain's WSS estimate and release buckets beyond it (or all).
 * Returns the number of items released to the keg. */
uint64_t skuma_zone_trim_domain(struct uma_kz *kz, int domain, enum uma_trim_kind kind);
/* Free the empty buckets kept for reuse. */
void skuma_zone_release_empty(struct uma_kz *kz);

/* --- uma_cache.c: per-CPU slow paths --- */

void *skuma_alloc(struct sk_cache *c, int node, unsigned flags);
void skuma_free(struct sk_cache *c, void *obj, struct sk_page *slab);
void skuma_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu);
/* Empty every CPU's buckets into the keg. */
void skuma_cache_drain_cpus(struct sk_cache *c);
/* Free items held by CPU buckets (racy sum, for reports). */
uint64_t skuma_cache_cpu_items(const struct sk_cache *c);

/* --- slabkit_validate (uma_validate.c, the keg part in uma_keg.c) --- */

uint64_t skuma_validate(struct sk_cache *c);
/* The keg's slab lists and bitsets, each domain under its lock. */
uint64_t skuma_keg_validate(struct sk_cache *c, struct uma_kz *kz);
/* Is this item (an object of the keg) marked free in its slab?  Takes its
 * domain's keg lock. */
bool skuma_keg_item_free_in_slab(struct uma_kz *kz, const void *item);

/* --- Readers for tests (no locking beyond ck_pr loads) --- */

/* The backend state of the cache an item belongs to; NULL if not a slab item. */
static inline struct uma_kz *skuma_kz_of_item(const void *item)
{
	struct sk_page *pg = sk_page_of(item);

	if (!pg || pg->kind != SK_PAGE_SLAB || !pg->owner)
		return NULL;
	return (struct uma_kz *)((struct sk_cache *)pg->owner)->backend;
}

static inline uint64_t skuma_domain_cached(const struct uma_kz *kz, int domain)
{
	return sk_load((uint64_t *)&kz->kz_zone.uz_domain[domain].uzd_nitems);
}

static inline int64_t skuma_domain_wss(const struct uma_kz *kz, int domain)
{
	return (int64_t)sk_load((uint64_t *)&kz->kz_zone.uz_domain[domain].uzd_wss);
}

static inline uint64_t skuma_domain_free_slabs(const struct uma_kz *kz, int domain)
{
	return sk_load((uint64_t *)&kz->kz_keg.uk_domain[domain].ukd_free_slabs);
}

static inline uint64_t skuma_xdomain_frees(const struct uma_kz *kz)
{
	return sk_load((uint64_t *)&kz->kz_zone.uz_xdomain);
}

#endif /* SLABKIT_UMA_INT_H */
