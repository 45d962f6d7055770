/*
 * Core's own keg for the two kinds of UMA zone whose slab layout no
 * backend can provide, on every backend (SLAB, SLUB and SLOB have no kegs,
 * and UMA's keg takes its slabs from the page provider):
 *
 *  - per-CPU zones (UMA_ZONE_PCPU): a slab is one page per CPU id, and an
 *    item at offset o of the first page has CPU c's copy at
 *    o + c * UMA_PCPU_ALLOC_SIZE, which is what zpcpu_get computes;
 *  - zones over a page source of the user's (uma_zone_set_allocf/freef):
 *    slabs come from the user's allocf and go back through freef.
 *
 * What it shares with UMA's keg (backends/uma/uma_keg.c) is written once:
 * each slab keeps a bitmap of its free items, taken, put back, tested and
 * filled by core/sk_slab_bits.h.  What differs stays here.  User memory has
 * no page descriptors, so there is nowhere to keep a slab header or find a
 * slab from an item in O(1) as UMA's keg does: the slab headers are
 * metadata (sk_meta_zalloc), and a slab is found from an item by a binary
 * search over an array sorted by address, which is also how a free checks
 * that the item is an item of this keg.  The items' init and fini are the
 * zone's own (there is no sk_cache for sk_slab_construct), run by the same
 * construct-and-unwind loop (sk_construct_each).  One lock and no per-domain lists: these zones are rare and
 * small (FreeBSD's per-CPU zones are counters).  Empty slabs stay until
 * reclaim or destroy (FreeBSD keeps them in the keg's free list until
 * trimmed).
 *
 * Synchronization: one mutex per keg (a leaf) over the slab array and
 * bitmaps.  User callbacks (allocf, freef, init, fini) never run under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <slabkit/freebsd/uma.h>

#include "sk_core.h"
#include "sk_slab_bits.h"
#include "sk_uma.h"

struct skeg_slab {
	char *mem;                /* the slab's memory (allocf's, or arena pages) */
	size_t bytes;             /* what allocf was asked for */
	uint8_t pflag;            /* allocf's pflag, given back to freef */
	uint32_t nfree;
	sk_bitword_t free_map[];  /* bit set: item free (sk_slab_bits) */
};

struct sk_skeg {
	struct sk_skeg_params p;
	size_t stride;            /* item size rounded up to the alignment */
	size_t slab_bytes;        /* asked of the page source */
	uint32_t per_slab;        /* items per slab */
	uint32_t map_words;

	pthread_mutex_t lock;     /* the slab array and every bitmap */
	struct skeg_slab **slabs; /* sorted by mem.  Sync: lock */
	uint32_t nslabs, cap;
	uint64_t in_use;          /* items handed out.  Sync: lock */
};

static size_t slab_struct_bytes(const struct sk_skeg *k)
{
	return sizeof(struct skeg_slab) + sk_slab_bits_bytes(k->per_slab);
}

struct sk_skeg *sk_skeg_create(const struct sk_skeg_params *p)
{
	struct sk_skeg *k = sk_meta_zalloc(sizeof(*k));
	if (!k)
		return NULL;
	k->p = *p;
	k->stride = SK_ALIGN_UP(p->size, p->align ? p->align : 8);
	if (p->pcpu) {
		k->slab_bytes = (size_t)sk_pcpu_nr * UMA_PCPU_ALLOC_SIZE;
		k->per_slab = (uint32_t)(UMA_PCPU_ALLOC_SIZE / k->stride);
	} else {
		k->slab_bytes = SK_MAX(SK_PAGE_SIZE, SK_ALIGN_UP(k->stride, SK_PAGE_SIZE));
		k->per_slab = (uint32_t)(k->slab_bytes / k->stride);
	}
	k->map_words = sk_slab_bits_words(k->per_slab);
	pthread_mutex_init(&k->lock, NULL);
	return k;
}

/* The slab holding addr (lock held), or NULL. */
static struct skeg_slab *slab_of_locked(struct sk_skeg *k, const void *addr, uint32_t *pos)
{
	uint32_t lo = 0, hi = k->nslabs;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		struct skeg_slab *s = k->slabs[mid];
		if ((const char *)addr < s->mem) {
			hi = mid;
		} else if ((const char *)addr >= s->mem + k->slab_bytes) {
			lo = mid + 1;
		} else {
			*pos = mid;
			return s;
		}
	}
	*pos = lo;
	return NULL;
}

/* The zone's init and fini as core's construct loop calls them
 * (sk_construct_each: the same order and unwinding as a cache's slab). */
struct item_ctx {
	struct sk_skeg *k;
	int flags;
};

static int item_init(void *ctx, void *item)
{
	const struct item_ctx *x = ctx;
	return x->k->p.init(item, (int)x->k->p.size, x->flags);
}

static void item_fini(void *ctx, void *item)
{
	const struct item_ctx *x = ctx;
	x->k->p.fini(item, (int)x->k->p.size);
}

static void *source_alloc(struct sk_skeg *k, int domain, int flags, uint8_t *pflag)
{
	if (k->p.allocf)
		/* The user's page source is told the OS's node number. */
		return k->p.allocf(k->p.zone, k->slab_bytes, sk_node_to_user(domain), pflag, flags);
	void *mem = sk_pages_alloc_exact(domain == UMA_ANYDOMAIN ? SK_NODE_ANY : domain,
					 k->slab_bytes >> SK_PAGE_SHIFT, SK_PAGE_LARGE, NULL);
	if (mem)
		sk_large_set_origin(sk_page_of(mem), SK_LARGE_UMA_SKEG);
	return mem;
}

static void source_free(struct sk_skeg *k, struct skeg_slab *s)
{
	if (k->p.freef)
		k->p.freef(s->mem, s->bytes, s->pflag);
	else if (k->p.allocf)
		sk_errorf("slabkit: zone %s: no freef for a slab of its allocf; %zu bytes at %p leaked",
			  k->p.name, s->bytes, (void *)s->mem);
	else
		sk_pages_free(s->mem);
}

/* A new slab with every item initialised; NULL if the source fails. */
static struct skeg_slab *slab_new(struct sk_skeg *k, int domain, int flags)
{
	uint8_t pflag = 0;
	char *mem = source_alloc(k, domain, flags, &pflag);
	if (!mem)
		return NULL;
	struct skeg_slab *s = sk_meta_zalloc(slab_struct_bytes(k));
	if (!s) {
		struct skeg_slab tmp = { .mem = mem, .bytes = k->slab_bytes, .pflag = pflag };
		source_free(k, &tmp);
		return NULL;
	}
	s->mem = mem;
	s->bytes = k->slab_bytes;
	s->pflag = pflag;
	struct item_ctx ctx = { k, flags };
	if (k->p.init && sk_construct_each(mem, k->stride, k->per_slab, item_init, k->p.fini ? item_fini : NULL,
					   &ctx) != 0) {
		source_free(k, s);
		sk_meta_free(s, slab_struct_bytes(k));
		return NULL;
	}
	sk_slab_bits_fill(s->free_map, k->per_slab);
	s->nfree = k->per_slab;
	return s;
}

static void slab_destroy(struct sk_skeg *k, struct skeg_slab *s)
{
	struct item_ctx ctx = { k, 0 };
	if (k->p.fini)
		sk_destruct_each(s->mem, k->stride, k->per_slab, item_fini, &ctx);
	source_free(k, s);
	sk_meta_free(s, slab_struct_bytes(k));
}

/* Insert s in the sorted array (lock held).  false: no memory for the array. */
static bool slab_insert_locked(struct sk_skeg *k, struct skeg_slab *s)
{
	struct skeg_slab **grown = sk_meta_array_grow(k->slabs, k->nslabs, &k->cap, sizeof(*grown), 16);

	if (!grown)
		return false;
	k->slabs = grown;
	uint32_t pos;
	slab_of_locked(k, s->mem, &pos);
	memmove(&k->slabs[pos + 1], &k->slabs[pos], (k->nslabs - pos) * sizeof(*k->slabs));
	k->slabs[pos] = s;
	k->nslabs++;
	return true;
}

static void *take_locked(struct sk_skeg *k)
{
	void *item;

	for (uint32_t n = 0; n < k->nslabs; n++) {
		struct skeg_slab *s = k->slabs[n];
		if (sk_slab_bits_take(s->free_map, k->map_words, s->nfree, s->mem, k->stride, &item, 1)) {
			s->nfree--;
			k->in_use++;
			return item;
		}
	}
	return NULL;
}

void *sk_skeg_alloc(struct sk_skeg *k, int domain, int flags)
{
	pthread_mutex_lock(&k->lock);
	void *item = take_locked(k);
	pthread_mutex_unlock(&k->lock);
	if (item)
		return item;
	struct skeg_slab *s = slab_new(k, domain, flags);
	if (!s)
		return NULL;
	pthread_mutex_lock(&k->lock);
	if (!slab_insert_locked(k, s)) {
		pthread_mutex_unlock(&k->lock);
		slab_destroy(k, s);
		return NULL;
	}
	item = take_locked(k);
	pthread_mutex_unlock(&k->lock);
	return item;
}

int sk_skeg_free(struct sk_skeg *k, void *item)
{
	uint32_t pos;
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	struct skeg_slab *s = slab_of_locked(k, item, &pos);
	long i = s ? sk_slab_bits_index(s->mem, k->stride, k->per_slab, item) : -1;
	if (i < 0) {
		ret = -EINVAL;
	} else if (!sk_slab_bits_put(s->free_map, (size_t)i)) {
		ret = -EALREADY;
	} else {
		s->nfree++;
		k->in_use--;
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

bool sk_skeg_contains(struct sk_skeg *k, const void *item)
{
	uint32_t pos;
	bool ok = false;
	pthread_mutex_lock(&k->lock);
	struct skeg_slab *s = slab_of_locked(k, item, &pos);
	long i = s ? sk_slab_bits_index(s->mem, k->stride, k->per_slab, item) : -1;
	ok = i >= 0 && !sk_slab_bits_test(s->free_map, (size_t)i);
	pthread_mutex_unlock(&k->lock);
	return ok;
}

int sk_skeg_set_source(struct sk_skeg *k, uma_alloc allocf, uma_free freef)
{
	int ret = 0;
	pthread_mutex_lock(&k->lock);
	if (allocf != k->p.allocf && k->nslabs)
		ret = -EBUSY;
	else {
		k->p.allocf = allocf;
		k->p.freef = freef;
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

/* Give every empty slab back to the page source.  Returns the slabs kept. */
uint64_t sk_skeg_reclaim(struct sk_skeg *k)
{
	for (;;) {
		struct skeg_slab *empty = NULL;
		pthread_mutex_lock(&k->lock);
		for (uint32_t n = 0; n < k->nslabs; n++)
			if (k->slabs[n]->nfree == k->per_slab) {
				empty = k->slabs[n];
				memmove(&k->slabs[n], &k->slabs[n + 1], (k->nslabs - n - 1) * sizeof(*k->slabs));
				k->nslabs--;
				break;
			}
		uint64_t kept = k->nslabs;
		pthread_mutex_unlock(&k->lock);
		if (!empty)
			return kept;
		slab_destroy(k, empty); /* fini and freef outside the lock */
	}
}

void sk_skeg_info(struct sk_skeg *k, uint64_t *in_use, uint64_t *free_items, uint64_t *slabs)
{
	pthread_mutex_lock(&k->lock);
	*in_use = k->in_use;
	*slabs = k->nslabs;
	*free_items = (uint64_t)k->nslabs * k->per_slab - k->in_use;
	pthread_mutex_unlock(&k->lock);
}

uint64_t sk_skeg_destroy(struct sk_skeg *k)
{
	uint64_t in_use, free_items, slabs;
	sk_skeg_info(k, &in_use, &free_items, &slabs);
	if (in_use)
		return in_use;
	sk_skeg_reclaim(k);
	if (k->slabs)
		sk_meta_free(k->slabs, k->cap * sizeof(*k->slabs));
	pthread_mutex_destroy(&k->lock);
	sk_meta_free(k, sizeof(*k));
	return 0;
}
