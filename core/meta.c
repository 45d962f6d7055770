/*
 * Metadata memory for core and backends (cache structs, per-CPU slots,
 * per-node structs, buckets), from the page provider, never from malloc:
 * slabkit may one day be the process's malloc.
 *
 * Sizes up to 2 KiB come from power-of-two classes carved out of META
 * pages, each block aligned to its class size; larger requests take whole
 * pages (given back to the provider on free).
 *
 * One pool per node.  sk_meta_zalloc carves from the caller's node's pool
 * (sk_meta_zalloc_node from a named node's), so a structure lands on the
 * node of the CPU that makes it; a free goes back to the pool of the page's
 * own node (the page's owner, as the provider records it, names the pool
 * that carved it).  Each carved page is a small slab: its head descriptor's
 * owner words (struct meta_page) keep its free list, its live count and
 * its link on the pool's list of pages with free blocks.  A page whose last block is freed goes back to the page provider
 * at once, except the one most recently emptied page of each class and
 * node, kept against alloc/free churn: so metadata freed during a run is
 * returned during the run, not only at slabkit_fini.
 *
 * Why not slabkit's own caches, as Linux carves kmem_cache structs from a
 * kmem_cache: callers allocate metadata with slot, backend and tracker
 * locks held, so the pool lock must stay a leaf above the page provider
 * (docs/architecture.md, "Why metadata does not come from slabkit's own
 * caches").
 *
 * Lock order: quarantine_lock -> pool[n].lock -> page provider node locks.
 * Pool locks are never nested with each other (sk_meta_fork_lock takes
 * those of the nodes in use, in index order, with no other pool lock held).
 */
#include <pthread.h>
#include <string.h>

#include "sk_core.h"
#include "../common/sk_list.h"

#define META_MIN_SHIFT 4   /* 16 B */
#define META_MAX_SHIFT 11  /* 2 KiB */
#define META_CLASSES (META_MAX_SHIFT - META_MIN_SHIFT + 1)

struct meta_free {
	struct meta_free *next;
};

/* A carved page's state, in its head descriptor's owner words. */
struct meta_page {
	struct meta_free *mp_freelist; /* free blocks */
	uintptr_t mp_live;             /* blocks handed out */
	struct sk_list mp_link;        /* on its pool's partial list of its class */
} __attribute__((may_alias));

static struct meta_page *meta_page(struct sk_page *pg)
{
	return (struct meta_page *)sk_page_words(pg);
}

/*
 * Synchronization: lock guards every field and the words of the pool's
 * carved pages.
 */
struct meta_pool {
	pthread_mutex_t lock;
	/* Pages with a free block.  Statically zero: partial_list() links
	 * each head to itself on first use. */
	struct sk_list partial[META_CLASSES];
	struct sk_page *spare[META_CLASSES];   /* one empty page kept per class (or NULL) */
	uint64_t pages;                        /* carved pages held (spares included) */
} __attribute__((aligned(64)));

static struct meta_pool pools[SK_MAX_NODES] = {
	[0 ... SK_MAX_NODES - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};

/* Metadata follows the caller's node whatever the process's policy:
 * slabkit's own structures are read by the CPUs that use them. */
static struct sk_numa_policy meta_policy = { .kind = SK_POLICY_LOCAL };

static unsigned meta_class(size_t size)
{
	unsigned shift = META_MIN_SHIFT;
	while (((size_t)1 << shift) < size)
		shift++;
	return shift - META_MIN_SHIFT;
}

static struct sk_list *partial_list(struct meta_pool *pool, unsigned cls)
{
	struct sk_list *head = &pool->partial[cls];
	if (sk_unlikely(!head->next))
		sk_list_init(head);
	return head;
}

static void partial_push(struct meta_pool *pool, unsigned cls, struct sk_page *pg)
{
	sk_list_add_head(&meta_page(pg)->mp_link, partial_list(pool, cls));
}

static void partial_remove(struct sk_page *pg)
{
	sk_list_del(&meta_page(pg)->mp_link);
}

/* A fresh page of class cls for `pool` (its owner), on `node`, all its
 * blocks free; called with the pool lock held (the provider's node lock
 * nests inside it). */
static struct sk_page *carve_page(struct meta_pool *pool, int node, unsigned cls)
{
	size_t block = (size_t)1 << (cls + META_MIN_SHIFT);
	char *page = node == SK_NODE_ANY
			     ? sk_pages_alloc_policy(&meta_policy, SK_NODE_ANY, 0, SK_PAGE_META, pool)
			     : sk_pages_alloc(node, 0, SK_PAGE_META, pool);
	if (!page)
		return NULL;
	struct sk_page *pg = sk_page_of(page);
	struct meta_free *list = NULL;
	for (size_t off = SK_PAGE_SIZE; off >= block; off -= block) {
		struct meta_free *f = (struct meta_free *)(page + off - block);
		f->next = list;
		list = f;
	}
	meta_page(pg)->mp_freelist = list;
	meta_page(pg)->mp_live = 0;
	return pg;
}

static void *meta_zalloc(size_t size, int node)
{
	if (!size)
		size = 1;
	if (size > ((size_t)1 << META_MAX_SHIFT)) {
		size_t npages = (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
		void *p = node == SK_NODE_ANY
				  ? sk_pages_alloc_exact_policy(&meta_policy, SK_NODE_ANY, npages,
								SK_PAGE_META, NULL)
				  : sk_pages_alloc_exact(node, npages, SK_PAGE_META, NULL);
		if (p)
			memset(p, 0, npages << SK_PAGE_SHIFT);
		return p;
	}
	unsigned cls = meta_class(size);
	size_t block = (size_t)1 << (cls + META_MIN_SHIFT);
	int home = node == SK_NODE_ANY ? sk_numa_current_node() : node;
	struct meta_pool *pool = &pools[home];

	pthread_mutex_lock(&pool->lock);
	struct sk_list *first = sk_list_first(partial_list(pool, cls));
	struct sk_page *pg = first ? sk_page_of_words(first, offsetof(struct meta_page, mp_link)) : NULL;
	if (!pg) {
		pg = pool->spare[cls];
		pool->spare[cls] = NULL;
		if (!pg) {
			/* SK_NODE_ANY may spill to another node when this one is
			 * exhausted: the page then still joins this pool's list,
			 * and its frees find it through this pool (below). */
			pg = carve_page(pool, node, cls);
			if (!pg) {
				pthread_mutex_unlock(&pool->lock);
				return NULL;
			}
			pool->pages++;
		}
		partial_push(pool, cls, pg);
	}
	struct meta_page *mp = meta_page(pg);
	struct meta_free *f = mp->mp_freelist;
	mp->mp_freelist = f->next;
	mp->mp_live++;
	if (!f->next)
		partial_remove(pg); /* full */
	pthread_mutex_unlock(&pool->lock);
	memset(f, 0, block);
	return f;
}

void *sk_meta_zalloc(size_t size)
{
	return meta_zalloc(size, SK_NODE_ANY);
}

void *sk_meta_zalloc_node(size_t size, int node)
{
	if (node < 0 || (unsigned)node >= sk_numa_nodes())
		node = SK_NODE_ANY;
	return meta_zalloc(size, node);
}

void *sk_meta_array_grow(void *array, uint32_t count, uint32_t *cap, size_t elem, uint32_t first_cap)
{
	uint32_t room = *cap ? *cap * 2 : first_cap;
	void *grown;

	if (count < *cap)
		return array;
	if (!(grown = sk_meta_zalloc(room * elem)))
		return NULL;
	if (count)
		memcpy(grown, array, count * elem);
	sk_meta_free(array, *cap * elem);
	*cap = room;
	return grown;
}

void sk_meta_free(void *p, size_t size)
{
	if (!p)
		return;
	if (!size)
		size = 1;
	if (size > ((size_t)1 << META_MAX_SHIFT)) {
		sk_pages_free(p);
		return;
	}
	unsigned cls = meta_class(size);
	struct sk_page *pg = sk_page_of(p);
	struct meta_pool *pool = pg->owner; /* the pool that carved the page */
	struct sk_page *to_free = NULL;

	pthread_mutex_lock(&pool->lock);
	struct meta_free *f = p;
	struct meta_page *mp = meta_page(pg);
	bool was_full = !mp->mp_freelist;
	f->next = mp->mp_freelist;
	mp->mp_freelist = f;
	if (was_full)
		partial_push(pool, cls, pg);
	if (--mp->mp_live == 0) {
		partial_remove(pg);
		to_free = pool->spare[cls];
		pool->spare[cls] = pg;
		if (to_free)
			pool->pages--;
	}
	pthread_mutex_unlock(&pool->lock);
	if (to_free)
		sk_pages_free(sk_page_addr(to_free));
}

/*
 * Structs the user holds a handle to (caches, zones) are not reused at
 * once after destruction: the last META_QUARANTINE of them wait here, so
 * that a second destroy or an allocation through a stale handle finds the
 * "destroyed" mark and is reported.  Older ones are really freed (a handle
 * used long after its destruction is undefined, as in the kernel).
 */
#define META_QUARANTINE 64
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *p;
	size_t size;
} quarantine[META_QUARANTINE];
static unsigned quarantine_next;

/* Pools locked by sk_meta_fork_lock(true): the nodes in use (only pools
 * below sk_numa_nodes() are ever used), not all SK_MAX_NODES, to hold as
 * few locks across fork as needed.  Written and read by the forking
 * thread only. */
static unsigned fork_locked_pools;

void sk_meta_fork_lock(bool lock)
{
	if (lock) {
		pthread_mutex_lock(&quarantine_lock);
		fork_locked_pools = SK_MIN(sk_numa_nodes(), (unsigned)SK_MAX_NODES);
		for (unsigned n = 0; n < fork_locked_pools; n++)
			pthread_mutex_lock(&pools[n].lock);
	} else {
		for (unsigned n = fork_locked_pools; n-- > 0;)
			pthread_mutex_unlock(&pools[n].lock);
		pthread_mutex_unlock(&quarantine_lock);
	}
}

void sk_meta_free_quarantined(void *p, size_t size)
{
	void *old;
	size_t old_size;

	pthread_mutex_lock(&quarantine_lock);
	old = quarantine[quarantine_next].p;
	old_size = quarantine[quarantine_next].size;
	quarantine[quarantine_next].p = p;
	quarantine[quarantine_next].size = size;
	quarantine_next = (quarantine_next + 1) % META_QUARANTINE;
	pthread_mutex_unlock(&quarantine_lock);
	sk_meta_free(old, old_size);
}

uint64_t sk_meta_pages(int node)
{
	if (node < 0 || node >= SK_MAX_NODES)
		return 0;
	pthread_mutex_lock(&pools[node].lock);
	uint64_t pages = pools[node].pages;
	pthread_mutex_unlock(&pools[node].lock);
	return pages;
}

/* Forget every carved page: slabkit_fini is about to unmap the arenas. */
void sk_meta_reset(void)
{
	pthread_mutex_lock(&quarantine_lock);
	memset(quarantine, 0, sizeof(quarantine));
	quarantine_next = 0;
	pthread_mutex_unlock(&quarantine_lock);
	for (unsigned n = 0; n < SK_MAX_NODES; n++) {
		pthread_mutex_lock(&pools[n].lock);
		memset(pools[n].partial, 0, sizeof(pools[n].partial));
		memset(pools[n].spare, 0, sizeof(pools[n].spare));
		pools[n].pages = 0;
		pthread_mutex_unlock(&pools[n].lock);
	}
}
