/*
 * SLOB (Linux mm/slob.c): the smallest-footprint backend.
 *
 * No per-CPU layer, no per-node lists, no slabs of fixed-size slots: every
 * allocation is carved first-fit from a heap of 4 KiB pages (slob_heap.c)
 * under one lock, and every free goes straight back to it, coalescing.
 * Core calls ops->alloc and ops->free for every cache operation and counts
 * them itself.
 *
 * What goes where:
 *   - kmalloc / malloc(9) of up to sk_slob_ops.kmalloc_max bytes: a block
 *     with an 8-byte size header in the kmalloc pool, whose pages every size
 *     shares; power-of-two sizes aligned to their size, other sizes to 8.
 *     Larger requests take core's page path (whole pages).
 *   - cache objects of less than a page: a headerless block of c->size
 *     bytes at c->align in the cache's own pool.  The constructor runs
 *     every time one is carved (no slab keeps constructed objects), fini
 *     every time one is freed.
 *   - cache objects of a page or more: whole pages of the cache, one
 *     object each.
 *
 * kfree of a cache object works: a cache's pages are SK_PAGE_SLAB pages
 * owned by it, so core finds the cache from the page and frees (and
 * counts) the object as kmem_cache_free would.  It costs no byte per
 * object; the price is that caches do not share pages (docs/slob.md).
 *
 * Node requests: an explicit node is honoured by searching only pages of
 * that node and taking new pages from it; SK_NODE_ANY takes any page.
 *
 * Locking: this file takes no lock of its own; the heap's one lock is
 * taken inside slob_pool_alloc / slob_pool_free.  Constructors and
 * finalisers run without it (they may allocate).
 */
#include <errno.h>
#include <string.h>

#include "slob_int.h"

/* kmalloc blocks up to a page minus their header live in the heap. */
#define SLOB_KMALLOC_MAX (SK_PAGE_SIZE - SLOB_KMALLOC_HDR)

/* A free the heap refused: core's misuse policy (sk_free_misuse); c NULL
 * for the kmalloc heap. */
static sk_cold void slob_report(const struct sk_cache *c, const void *p, enum slob_free_result res)
{
	switch (res) {
	case SLOB_FREE_WRONG_PAGE:
		sk_free_misuse(c ? NULL : "kfree", c, SK_MISUSE_WRONG_CACHE, p, "not on a page of this slob heap");
		break;
	case SLOB_FREE_OUTSIDE:
		sk_free_misuse(c ? NULL : "kfree", c, SK_MISUSE_INTERIOR, p, "not a block start inside its slob page");
		break;
	case SLOB_FREE_OVERLAP:
		sk_free_misuse(c ? NULL : "kfree", c, SK_MISUSE_DOUBLE_FREE, p, "part of it is already free in the slob heap");
		break;
	case SLOB_FREE_BAD_HEADER:
		sk_free_misuse(c ? NULL : "kfree", c, SK_MISUSE_DOUBLE_FREE, p,
			       "no live block of the slob heap starts here: freed already, or never returned");
		break;
	case SLOB_FREED:
		break;
	}
}

/* --- kmalloc and malloc(9) --- */

static size_t slob_ksize(const void *p, struct sk_page *pg);

static void *slob_kmalloc(size_t size, int node, unsigned flags)
{
	size_t bytes = SLOB_KMALLOC_HDR + SK_ALIGN_UP(size, SLOB_UNIT);
	/* Power-of-two sizes are aligned to their size (Linux >= 5.4); the
	 * header sits just below the aligned address. */
	size_t align = SK_IS_POW2(size) && size > SLOB_UNIT ? size : 0;
	uint64_t *hdr;

	if (sk_unlikely(size == 0 || size > SLOB_KMALLOC_MAX))
		return NULL;
	hdr = slob_pool_alloc(slob_kmalloc_pool(), bytes, align, SLOB_KMALLOC_HDR, node,
			      (uint64_t)(bytes >> SLOB_UNIT_SHIFT) | (uint64_t)SLOB_MAGIC_KMALLOC << 32 |
				      ((flags & SK_ALLOC_MALLOC9) ? SLOB_HDR_MALLOC9 : 0));
	if (sk_unlikely(!hdr))
		return NULL;
	return hdr + 1;
}

/* The header's front bit; only meaningful for a block slob_ksize accepts. */
static bool slob_heap_is_malloc9(const void *p, struct sk_page *pg)
{
	return slob_ksize(p, pg) && (*((const uint64_t *)p - 1) & SLOB_HDR_MALLOC9);
}

static void slob_kfree(void *p, struct sk_page *pg)
{
	enum slob_free_result res = slob_pool_kfree(slob_kmalloc_pool(), pg, (uint64_t *)p - 1);

	if (sk_unlikely(res != SLOB_FREED))
		slob_report(NULL, p, res);
}

/*
 * The usable size of a kmalloc block: its units less the header.  Core
 * calls this before every kfree (for its byte counts), so a pointer that is
 * no live kmalloc block gets 0 here, silently, and is reported once, by
 * slob_kfree.
 */
static size_t slob_ksize(const void *p, struct sk_page *pg)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)sk_page_addr(pg);
	uint64_t word, units;

	if (!slob_page_is_kmalloc(pg) || off < SLOB_KMALLOC_HDR || (off & (SLOB_UNIT - 1)))
		return 0;
	/* Read without the heap lock: the caller owns the live block. */
	word = *((const uint64_t *)p - 1);
	units = word & 0xffff;
	if ((uint32_t)(word >> 32) != SLOB_MAGIC_KMALLOC || units < 2 ||
	    off - SLOB_KMALLOC_HDR + (units << SLOB_UNIT_SHIFT) > SK_PAGE_SIZE)
		return 0;
	return (size_t)(units << SLOB_UNIT_SHIFT) - SLOB_KMALLOC_HDR;
}

/* --- Caches --- */

static int slob_init(void)
{
	return slob_heap_init();
}

static void slob_fini(void)
{
	slob_heap_fini();
}

static bool slob_uses_whole_pages(const struct sk_cache *c)
{
	return c->size >= SK_PAGE_SIZE;
}

static unsigned slob_pages_order(const struct sk_cache *c)
{
	unsigned order = 0;

	while ((SK_PAGE_SIZE << order) < c->size)
		order++;
	return order;
}

static int slob_cache_create(struct sk_cache *c)
{
	/* A free block needs one unit; every block is whole units and
	 * c->align (>= 8) is a multiple of the unit.  Below a page, c->align
	 * is at most half a page (size is a multiple of it), so an empty page
	 * always fits an aligned object. */
	size_t size = SK_ALIGN_UP(SK_MAX((size_t)c->object_size, SLOB_UNIT), (size_t)c->align);
	struct slob_pool *pool;

	/* TYPESAFE_BY_RCU: a freed object's first unit would become a free
	 * block's header at once, so (as Linux's SLOB did) each object's free
	 * waits for a grace period, with liburcu's head in two words after
	 * the object. */
	if (c->flags & SK_CACHE_TYPESAFE_BY_RCU)
		size = SK_ALIGN_UP(SK_ALIGN_UP((size_t)c->object_size, SLOB_UNIT) + SLOB_RCU_HEAD,
				   (size_t)c->align);

	if (size > UINT32_MAX)
		return -EINVAL;
	pool = sk_meta_zalloc(sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	c->size = (uint32_t)size;
	c->free_offset = 0;
	c->pcpu_extra = 0;
	slob_pool_init(pool, SLOB_KIND_CACHE, c, slob_units(size));
	pool->keep_empty = (c->flags & SK_CACHE_NOFREE) != 0;
	c->backend = pool;
	return 0;
}

static void slob_cache_destroy(struct sk_cache *c)
{
	/* Core destroys a cache only when none of its objects is in use, and
	 * pages go back as they empty: the pool holds no page now. */
	struct slob_pool *pool = c->backend;

	if (!pool)
		return;
	slob_pool_release_kept(pool); /* NOFREE pages: held until now */
	slob_pool_destroy(pool);
	sk_meta_free(pool, sizeof(*pool));
	c->backend = NULL;
}

/* Whole-page objects: one per 2^order pages of the cache. */
static void *slob_page_object_alloc(struct sk_cache *c, int node)
{
	void *obj;

	if ((c->flags & SK_CACHE_NOFREE) && (obj = slob_pool_take_page_object(c->backend, node)))
		return obj; /* still counted in the pool's pages */
	obj = sk_slab_pages_alloc(c, node, slob_pages_order(c));

	if (obj) {
		slob_pool_count_pages(c->backend, 1);
		/* Past the object to the end of its pages: no one's bytes. */
		sk_slab_unused(c, (char *)obj + c->size, (SK_PAGE_SIZE << slob_pages_order(c)) - c->size);
	}
	return obj;
}

static void slob_page_object_free(struct sk_cache *c, void *obj)
{
	if (c->flags & SK_CACHE_NOFREE) {
		slob_pool_keep_page_object(c->backend, obj);
		return;
	}
	slob_pool_count_pages(c->backend, -1);
	sk_slab_pages_free(c, obj);
}

/* Give an object that was never handed out back where it came from. */
static void slob_release_raw(struct sk_cache *c, void *obj)
{
	if (slob_uses_whole_pages(c))
		slob_page_object_free(c, obj);
	else
		slob_pool_free(c->backend, sk_page_of(obj), obj, c->size);
}

static void *slob_cache_alloc(struct sk_cache *c, int node, unsigned flags)
{
	void *obj;

	if (slob_uses_whole_pages(c))
		obj = slob_page_object_alloc(c, node);
	else
		obj = slob_pool_alloc(c->backend, c->size, c->align > SLOB_UNIT ? c->align : 0, 0,
				      node, 0);
	if (sk_unlikely(!obj))
		return NULL;
	if (c->flags & SK_CACHE_ZINIT)
		memset(obj, 0, c->size);
	/* No slab keeps constructed objects: construct on every carve. */
	if (sk_unlikely(sk_cache_construct(c, obj, flags) != 0)) {
		slob_release_raw(c, obj);
		return NULL;
	}
	return obj;
}

/* A free of a cache object that is not one (or is already free). */
static sk_cold void slob_refuse(struct sk_cache *c, const void *obj, enum slob_free_result res)
{
	slob_report(c, obj, res);
	sk_cache_free_refused(c, obj);
}

static void slob_cache_free_now(struct sk_cache *c, void *obj, struct sk_page *pg);

/* TYPESAFE_BY_RCU: the grace period after a free has passed. */
static void slob_cache_free_rcu(void *head)
{
	struct sk_cache *c = sk_page_of(head)->owner;
	void *obj = (char *)head - (c->size - SLOB_RCU_HEAD);

	slob_cache_free_now(c, obj, sk_page_of(obj));
	ck_pr_dec_64(&c->rcu_pending);
}

static void slob_cache_free(struct sk_cache *c, void *obj, struct sk_page *pg)
{
	if (sk_unlikely(c->flags & SK_CACHE_TYPESAFE_BY_RCU)) {
		ck_pr_inc_64(&c->rcu_pending);
		sk_rcu_call((char *)obj + c->size - SLOB_RCU_HEAD, slob_cache_free_rcu);
		return;
	}
	slob_cache_free_now(c, obj, pg);
}

static void slob_cache_free_now(struct sk_cache *c, void *obj, struct sk_page *pg)
{
	enum slob_free_result res;

	/* Core has checked that pg is a page of c. */
	if (slob_uses_whole_pages(c)) {
		if (sk_unlikely(obj != sk_page_addr(pg))) {
			slob_refuse(c, obj, SLOB_FREE_OUTSIDE);
			return;
		}
		if (sk_cache_has_fini(c))
			sk_cache_destruct(c, obj);
		slob_page_object_free(c, obj);
		return;
	}
	/* Every block of a cache's pool is carved at a multiple of c->size
	 * from its page's start (the page starts as one free block and every
	 * split and merge is in whole objects), so this catches any pointer
	 * into the middle of an object. */
	if (sk_unlikely(((uintptr_t)obj - (uintptr_t)sk_page_addr(pg)) % c->size)) {
		slob_refuse(c, obj, SLOB_FREE_OUTSIDE);
		return;
	}
	if (sk_cache_has_fini(c))
		sk_cache_destruct(c, obj);
	res = slob_pool_free(c->backend, pg, obj, c->size);
	if (sk_unlikely(res != SLOB_FREED))
		slob_refuse(c, obj, res);
}

static uint64_t slob_shrink(struct sk_cache *c, enum sk_shrink_level level)
{
	/* Nothing is cached: a page goes back the moment it empties, so the
	 * pages left each hold a live object (a NOFREE cache keeps its empty
	 * pages until it is destroyed, as UMA_ZONE_NOFREE asks). */
	return slob_pool_pages(c->backend);
}

static void slob_cache_info(struct sk_cache *c, struct sk_backend_cache_info *out)
{
	/* No slabs of fixed slots, no caches of free objects: a page holds as
	 * many objects as first-fit packed into it. */
	memset(out, 0, sizeof(*out));
}

/* slabkit_validate: a cache's pool, or (c NULL) the kmalloc heap. */
static uint64_t slob_validate(struct sk_cache *c)
{
	return slob_pool_validate(c ? (struct slob_pool *)c->backend : slob_kmalloc_pool(), c);
}

/* fork(): the one heap lock covers every pool; caches have no lock. */
static void slob_fork_lock(struct sk_cache *c, unsigned level, bool lock)
{
	if (!c && level == 1)
		slob_heap_fork_lock(lock);
}

const struct sk_backend_ops sk_slob_ops = {
	.name = "slob",
	.caps = SK_CAP_HEAP_KMALLOC | SK_CAP_STRIDE,
	.pcpu_kind = SK_PCPU_NONE,
	.free_tag = SK_TAG_NONE,
	.init = slob_init,
	.fini = slob_fini,
	.cache_create = slob_cache_create,
	.pcpu_init = NULL,
	.cache_destroy = slob_cache_destroy,
	.alloc = slob_cache_alloc,
	.free = slob_cache_free,
	.shrink = slob_shrink,
	.tick = NULL,
	.cache_info = slob_cache_info,
	.validate = slob_validate,
	.tune = NULL,
	.kmalloc_max = SLOB_KMALLOC_MAX,
	.kmalloc = slob_kmalloc,
	.kfree = slob_kfree,
	.ksize = slob_ksize,
	.heap_is_malloc9 = slob_heap_is_malloc9,
	.fork_lock = slob_fork_lock,
};
