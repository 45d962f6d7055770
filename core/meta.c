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
 * that carved it).  Each carved page is a small slab: its head descriptor's bk[]
 * words (the holder's, see numa/sk_numa.h) keep its free list, its class
 * and live count, and its links on the pool's list of pages with free
 * blocks.  A page whose last block is freed goes back to the page provider
 * at once, except the one most recently emptied page of each class and
 * node, kept against alloc/free churn: so metadata freed during a run is
 * returned during the run, not only at slabkit_fini.
 *
 * Lock order: quarantine_lock -> pool[n].lock -> page provider node locks.
 * Pool locks are never nested with each other (sk_meta_fork_lock takes
 * those of the nodes in use, in index order, with no other pool lock held).
 */
#include <pthread.h>
#include <string.h>

#include "sk_core.h"

#define META_MIN_SHIFT 4   /* 16 B */
#define META_MAX_SHIFT 11  /* 2 KiB */
#define META_CLASSES (META_MAX_SHIFT - META_MIN_SHIFT + 1)

struct meta_free {
	struct meta_free *next;
};

/* A carved page's state, in its head descriptor's bk[] words. */
#define PG_FREELIST(pg) ((pg)->bk[0])  /* struct meta_free *: free blocks */
#define PG_LIVE(pg) ((pg)->bk[1])      /* blocks handed out */
#define PG_NEXT(pg) ((pg)->bk[2])      /* struct sk_page *: the pool's partial list */
#define PG_PREV(pg) ((pg)->bk[3])

/*
 * Synchronization: lock guards every field and the bk[] words of the
 * pool's carved pages.
 */
struct meta_pool {
	pthread_mutex_t lock;
	struct sk_page *partial[META_CLASSES]; /* pages with a free block */
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

static void partial_push(struct meta_pool *pool, unsigned cls, struct sk_page *pg)
{
	struct sk_page *head = pool->partial[cls];
	PG_PREV(pg) = 0;
	PG_NEXT(pg) = (uintptr_t)head;
	if (head)
		PG_PREV(head) = (uintptr_t)pg;
	pool->partial[cls] = pg;
}

static void partial_remove(struct meta_pool *pool, unsigned cls, struct sk_page *pg)
{
	struct sk_page *next = (struct sk_page *)PG_NEXT(pg), *prev = (struct sk_page *)PG_PREV(pg);
	if (prev)
		PG_NEXT(prev) = (uintptr_t)next;
	else
		pool->partial[cls] = next;
	if (next)
		PG_PREV(next) = (uintptr_t)prev;
	PG_NEXT(pg) = PG_PREV(pg) = 0;
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
	PG_FREELIST(pg) = (uintptr_t)list;
	PG_LIVE(pg) = 0;
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
	struct sk_page *pg = pool->partial[cls];
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
	struct meta_free *f = (struct meta_free *)PG_FREELIST(pg);
	PG_FREELIST(pg) = (uintptr_t)f->next;
	PG_LIVE(pg)++;
	if (!f->next)
		partial_remove(pool, cls, pg); /* full */
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
	bool was_full = !PG_FREELIST(pg);
	f->next = (struct meta_free *)PG_FREELIST(pg);
	PG_FREELIST(pg) = (uintptr_t)f;
	if (was_full)
		partial_push(pool, cls, pg);
	if (--PG_LIVE(pg) == 0) {
		partial_remove(pool, cls, pg);
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
