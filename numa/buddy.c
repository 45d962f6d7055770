/*
 * numa/buddy.c: one binary buddy allocator per node arena.
 *
 * Lock order: each arena has one mutex.  No function here holds two of
 * them (arena locks are never nested) and none holds one across madvise.
 *
 * Blocks.  A block of order k is 2^k pages starting at a page index (pfn,
 * counted from sk_arena_base) that is a multiple of 2^k.  The reservation
 * base is 1 GiB aligned and every arena starts at a multiple of
 * 2^SK_MAX_ORDER pages, so buddy arithmetic works on global pfns: the
 * buddy of block (pfn, k) is pfn ^ 2^k, always inside the same arena.
 *
 * A free block's head descriptor carries kind SK_PAGE_FREE, its order,
 * pflags SK_PF_FREE_HEAD (plus SK_PF_CLEAN) and its link on a free list
 * (struct sk_free_words, common/sk_list.h), so insert and remove are O(1).  What must stay
 * true, under the arena lock:
 *  - SK_PF_FREE_HEAD is set on a descriptor iff it heads a block on one of
 *    the free lists.  So "the buddy is free, a head and of order k" is the
 *    exact test pflags & FREE_HEAD && order == k, never a guess from stale
 *    descriptor contents.
 *  - Every page of a free block has kind SK_PAGE_FREE (sk_pages_free marks
 *    them before giving the block back).
 *  - Every listed free block of order >= SK_RELEASE_ORDER is clean.
 *
 * Descriptors of allocated blocks are written by provider.c outside the
 * lock.  That is safe because those writes never touch pflags, and every
 * other field of a descriptor is read here only after FREE_HEAD was seen.
 *
 * Returning memory to the OS.  A free block is clean when it is known not
 * to be resident (fresh, or madvised since it was last handed out).
 * Splitting a block gives halves of its own cleanliness; merging tracks the
 * span of the dirty parts.  When a block of order >= SK_RELEASE_ORDER forms
 * with dirty parts, it is taken "in flight": off every list and without
 * FREE_HEAD, so nobody allocates it or merges with it.  The lock is dropped,
 * the dirty span (and the descriptor pages wholly inside it) is madvised,
 * and the block is given back clean under the lock again, merging with any
 * buddy freed meanwhile.  sk_arena_release_free() does the same for every
 * dirty free block.  Pages in flight count as neither used nor listed.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <ck_pr.h>

#include "common/sk_compiler.h"
#include "numa/numa_internal.h"

/* Free blocks taken in flight per round: a free decomposes into at most
 * SK_ORDERS blocks, each of which can produce one. */
#define SK_INFLIGHT_MAX 32

/* A free block in flight: off the lists while its pages [lo, hi), the
 * ones that may be resident, are madvised. */
struct sk_free_block {
	size_t pfn;
	unsigned order;
	size_t lo, hi;
};

struct sk_inflight {
	unsigned n;
	struct sk_free_block blk[SK_INFLIGHT_MAX];
};

static inline struct sk_page *desc_of(size_t pfn)
{
	return &sk_page_map[pfn];
}

static inline size_t pfn_of(const struct sk_page *pg)
{
	return (size_t)(pg - sk_page_map);
}

static inline size_t order_pages(unsigned order)
{
	return (size_t)1 << order;
}

/* Largest order of a block that starts at pfn and fits in n pages. */
static unsigned largest_block(size_t pfn, size_t n)
{
	unsigned align = pfn ? (unsigned)__builtin_ctzl(pfn) : SK_MAX_ORDER;
	unsigned fit = 63 - (unsigned)__builtin_clzl(n);
	return SK_MIN(SK_MIN(align, fit), (unsigned)SK_MAX_ORDER);
}

static struct sk_list *list_of(struct sk_arena *a, unsigned order, bool clean)
{
	return clean ? &a->free_clean[order] : &a->free_dirty[order];
}

static struct sk_list *free_link(struct sk_page *pg)
{
	return &((struct sk_free_words *)sk_page_words(pg))->fw_link;
}

static struct sk_page *block_of_link(struct sk_list *l)
{
	return sk_page_of_words(l, offsetof(struct sk_free_words, fw_link));
}

/* The first block of a free list, or NULL. */
static struct sk_page *list_first_block(struct sk_list *head)
{
	struct sk_list *l = sk_list_first(head);
	return l ? block_of_link(l) : NULL;
}

/* Put (pfn, order) on its free list as is: no merging. */
static void list_insert(struct sk_arena *a, size_t pfn, unsigned order, bool clean)
{
	struct sk_page *pg = desc_of(pfn);

	pg->owner = NULL;
	pg->npages = 0;
	pg->node = (uint16_t)a->id;
	pg->order = (uint8_t)order;
	pg->pflags = SK_PF_FREE_HEAD | (clean ? SK_PF_CLEAN : 0);
	pg->reserved = a->age; /* when it became free: sk_arena_release_idle */
	sk_list_add_head(free_link(pg), list_of(a, order, clean));
	a->nfree[order]++;
	a->nonempty |= 1u << order;
	if (!clean) {
		a->dirty_blocks++;
		a->pages_free_dirty += order_pages(order);
	}
}

static void list_remove(struct sk_arena *a, struct sk_page *pg)
{
	unsigned order = pg->order;
	bool clean = pg->pflags & SK_PF_CLEAN;

	sk_list_del(free_link(pg));
	pg->pflags = 0;
	*free_link(pg) = (struct sk_list){ NULL, NULL };
	if (--a->nfree[order] == 0)
		a->nonempty &= ~(1u << order);
	if (!clean) {
		a->dirty_blocks--;
		a->pages_free_dirty -= order_pages(order);
	}
}

/*
 * Give back the free block (pfn, order), resident over pages [lo, hi)
 * (lo == hi: clean): merge it with free buddies as far as they go, then
 * list it or, if it is a released-size block with dirty parts, append it
 * to *inflight for madvise.  Called with the lock held.  (Scalars rather
 * than a struct sk_free_block: a struct passed by value here cost a
 * store-forwarding stall on every free.)
 */
static void give_back_locked(struct sk_arena *a, size_t pfn, unsigned order, size_t lo, size_t hi,
			     struct sk_inflight *inflight)
{
	while (order < SK_MAX_ORDER) {
		size_t buddy_pfn = pfn ^ order_pages(order);
		struct sk_page *buddy = desc_of(buddy_pfn);

		if (!(buddy->pflags & SK_PF_FREE_HEAD) || buddy->order != order ||
		    buddy->kind != SK_PAGE_FREE)
			break;
		if (!(buddy->pflags & SK_PF_CLEAN)) {
			/* The dirty span grows to cover the buddy. */
			size_t blo = buddy_pfn, bhi = buddy_pfn + order_pages(order);
			bool was_clean = lo == hi;
			lo = was_clean ? blo : SK_MIN(lo, blo);
			hi = was_clean ? bhi : SK_MAX(hi, bhi);
		}
		list_remove(a, buddy);
		pfn &= ~order_pages(order);
		order++;
	}
	if (order >= SK_RELEASE_ORDER && lo != hi) {
		assert(inflight->n < SK_INFLIGHT_MAX);
		inflight->blk[inflight->n++] = (struct sk_free_block){ pfn, order, lo, hi };
		return;
	}
	list_insert(a, pfn, order, lo == hi);
}

/* madvise pages [lo, hi) and the descriptor pages that only describe
 * them.  Returns the pages released. */
static size_t release_span(size_t lo, size_t hi)
{
	static unsigned warned;
	void *addr = (void *)(sk_arena_base + (lo << SK_PAGE_SHIFT));

	if (madvise(addr, (hi - lo) << SK_PAGE_SHIFT, MADV_DONTNEED) != 0) {
		/* Only mlock'ed memory refuses; the block is treated as clean
		 * anyway so it is not retried on every free. */
		if (ck_pr_fas_uint(&warned, 1) == 0)
			sk_numa_msg("slabkit: numa: madvise(MADV_DONTNEED) of free pages failed: %s",
				    strerror(errno));
		return 0;
	}
	/* Zeroed descriptors read as free tails (kind 0, no FREE_HEAD): right
	 * for every page of an in-flight block, whose head is rewritten when it
	 * is listed again. */
	uintptr_t dlo = SK_ALIGN_UP((uintptr_t)desc_of(lo), SK_PAGE_SIZE);
	uintptr_t dhi = (uintptr_t)desc_of(hi) & ~(uintptr_t)(SK_PAGE_SIZE - 1);
	if (dlo < dhi)
		madvise((void *)dlo, dhi - dlo, MADV_DONTNEED);
	return hi - lo;
}

/*
 * madvise the in-flight blocks without the lock, then give them back
 * clean.  Giving back can merge with dirty buddies freed meanwhile and put
 * blocks in flight again, hence the loop.  Called and returns with the lock
 * held; drops it in between.
 */
static void release_inflight_locked(struct sk_arena *a, struct sk_inflight *inflight)
{
	while (inflight->n) {
		struct sk_inflight done = *inflight;
		uint64_t released = 0, calls = 0;

		pthread_mutex_unlock(&a->lock);
		for (unsigned i = 0; i < done.n; i++) {
			size_t n = release_span(done.blk[i].lo, done.blk[i].hi);
			released += n;
			calls += n != 0;
		}
		pthread_mutex_lock(&a->lock);

		a->pages_released += released;
		a->madvise_calls += calls;
		inflight->n = 0;
		for (unsigned i = 0; i < done.n; i++)
			give_back_locked(a, done.blk[i].pfn, done.blk[i].order, 0, 0, inflight);
	}
}

void sk_arena_init(struct sk_arena *a, unsigned id, size_t first_pfn, size_t npages)
{
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	for (unsigned k = 0; k < SK_ORDERS; k++) {
		sk_list_init(&a->free_dirty[k]);
		sk_list_init(&a->free_clean[k]);
	}
	a->id = id;
	/* Highest first, so the lowest block ends up at the list head. */
	for (size_t pfn = first_pfn + npages; pfn > first_pfn;) {
		pfn -= order_pages(SK_MAX_ORDER);
		list_insert(a, pfn, SK_MAX_ORDER, true);
	}
}

void sk_arena_destroy(struct sk_arena *a)
{
	pthread_mutex_destroy(&a->lock);
}

size_t sk_arena_alloc(struct sk_arena *a, unsigned order, size_t npages, unsigned how)
{
	pthread_mutex_lock(&a->lock);
	a->alloc_calls += how & SK_ARENA_FIRST;
	uint32_t fits = a->nonempty >> order;
	if (!fits) {
		a->directed_misses += (how & SK_ARENA_DIRECTED) != 0;
		pthread_mutex_unlock(&a->lock);
		return SIZE_MAX;
	}
	a->directed_hits += (how & SK_ARENA_DIRECTED) != 0;
	a->nused[order]++;
	/* The smallest block that fits; a resident one first. */
	unsigned k = order + (unsigned)__builtin_ctz(fits);
	struct sk_page *pg = list_first_block(&a->free_dirty[k]);
	if (!pg)
		pg = list_first_block(&a->free_clean[k]);
	bool clean = pg->pflags & SK_PF_CLEAN;
	size_t pfn = pfn_of(pg);

	list_remove(a, pg);
	/* Split: the upper halves go on the lists, as clean as their parent. */
	while (k > order) {
		k--;
		list_insert(a, pfn + order_pages(k), k, clean);
	}
	/* The unused tail of an exact allocation.  Each piece's buddy overlaps
	 * the allocation, so none can merge: list them as they are. */
	for (size_t p = pfn + npages, end = pfn + order_pages(order); p < end;) {
		unsigned o = largest_block(p, end - p);
		list_insert(a, p, o, clean);
		p += order_pages(o);
	}
	a->pages_in_use += npages;
	pthread_mutex_unlock(&a->lock);
	return pfn;
}

void sk_arena_free(struct sk_arena *a, size_t pfn, size_t npages, unsigned alloc_order)
{
	struct sk_inflight inflight;

	inflight.n = 0; /* not `= { 0 }`: that would clear 1 KiB on every free */
	pthread_mutex_lock(&a->lock);
	a->pages_in_use -= npages;
	if (alloc_order != SK_ARENA_PART)
		a->nused[alloc_order]--;
	/* An exact allocation is not a power of two: give it back as the
	 * aligned blocks it is made of, largest first. */
	for (size_t end = pfn + npages; pfn < end;) {
		unsigned order = largest_block(pfn, end - pfn);
		give_back_locked(a, pfn, order, pfn, pfn + order_pages(order), &inflight);
		pfn += order_pages(order);
	}
	release_inflight_locked(a, &inflight);
	pthread_mutex_unlock(&a->lock);
}

/*
 * Grow an allocation that ends at page `end` to end at `target` with the
 * free blocks that follow it.  A free block holding page `end` must start
 * there (the pages before it are allocated), and so must every following
 * one: walk them, and only when they cover [end, target) take them and list
 * the part beyond `target` again.  Its pieces cannot merge: each one's
 * buddy overlaps the pages just taken.  [end, target) must lie in this
 * arena (the caller checks).
 */
bool sk_arena_grow(struct sk_arena *a, size_t end, size_t target)
{
	size_t p = end;

	pthread_mutex_lock(&a->lock);
	while (p < target) {
		struct sk_page *pg = desc_of(p);
		if (!(pg->pflags & SK_PF_FREE_HEAD) || pg->kind != SK_PAGE_FREE) {
			pthread_mutex_unlock(&a->lock);
			return false;
		}
		p += order_pages(pg->order);
	}
	bool tail_clean = true;
	for (p = end; p < target;) {
		struct sk_page *pg = desc_of(p);
		size_t next = p + order_pages(pg->order);
		tail_clean = pg->pflags & SK_PF_CLEAN;
		list_remove(a, pg);
		p = next;
	}
	for (size_t q = target; q < p;) {
		unsigned o = largest_block(q, p - q);
		list_insert(a, q, o, tail_clean);
		q += order_pages(o);
	}
	a->pages_in_use += target - end;
	pthread_mutex_unlock(&a->lock);
	return true;
}

void sk_arena_release_free(struct sk_arena *a)
{
	struct sk_inflight inflight;

	pthread_mutex_lock(&a->lock);
	/* Each round takes at least one dirty block off the lists, and giving
	 * the cleaned blocks back never raises the number of dirty ones (a
	 * merge with a dirty buddy swaps that buddy for the merged block), so
	 * without racing frees this empties the dirty lists; the bound keeps
	 * it finite when frees race with it. */
	for (uint64_t rounds = a->dirty_blocks; rounds && a->dirty_blocks; rounds--) {
		inflight.n = 0;
		for (unsigned k = 0; k < SK_ORDERS && inflight.n < SK_INFLIGHT_MAX; k++) {
			struct sk_page *pg;
			while (inflight.n < SK_INFLIGHT_MAX && (pg = list_first_block(&a->free_dirty[k]))) {
				size_t pfn = pfn_of(pg);
				list_remove(a, pg);
				inflight.blk[inflight.n++] =
					(struct sk_free_block){ pfn, k, pfn, pfn + order_pages(k) };
			}
		}
		release_inflight_locked(a, &inflight);
	}
	pthread_mutex_unlock(&a->lock);
}

/*
 * The maintenance thread's pass: free runs smaller than SK_RELEASE_ORDER
 * stay dirty when they form (the next allocation may want them resident),
 * but one that is still free a whole period later is idle: give it back.
 * A block's `reserved` holds the pass count when it was listed; blocks
 * listed before this pass's start are taken, oldest orders' lists first
 * from the top (big runs, fewest madvise calls per page), in rounds of up
 * to SK_INFLIGHT_MAX, until max_pages are done.  Blocks merged while in
 * flight come back clean, so nothing is taken twice.
 */
uint64_t sk_arena_release_idle(struct sk_arena *a, uint64_t max_pages)
{
	struct sk_inflight inflight;
	uint64_t taken = 0;

	pthread_mutex_lock(&a->lock);
	uint64_t pass = a->age++;
	for (bool more = true; more && taken < max_pages;) {
		more = false;
		inflight.n = 0;
		for (unsigned k = SK_ORDERS; k-- > 0 && inflight.n < SK_INFLIGHT_MAX && taken < max_pages;) {
			struct sk_list *head = &a->free_dirty[k], *l = head->next;
			while (l != head && inflight.n < SK_INFLIGHT_MAX && taken < max_pages) {
				struct sk_page *pg = block_of_link(l);
				l = l->next;
				if (pg->reserved < pass) {
					size_t pfn = pfn_of(pg);
					list_remove(a, pg);
					inflight.blk[inflight.n++] =
						(struct sk_free_block){ pfn, k, pfn, pfn + order_pages(k) };
					taken += order_pages(k);
				}
			}
			more |= l != head;
		}
		if (!inflight.n)
			break;
		release_inflight_locked(a, &inflight);
	}
	pthread_mutex_unlock(&a->lock);
	return taken;
}

void sk_arena_add_stats(struct sk_arena *a, struct sk_numa_stats *out)
{
	pthread_mutex_lock(&a->lock);
	out->pages_in_use += a->pages_in_use;
	out->pages_free_dirty += a->pages_free_dirty;
	out->pages_released += a->pages_released;
	out->alloc_calls += a->alloc_calls;
	for (unsigned k = 0; k < SK_ORDERS; k++)
		out->free_blocks[k] += a->nfree[k];
	pthread_mutex_unlock(&a->lock);
}

void sk_arena_node_stats(struct sk_arena *a, struct sk_numa_node_stats *out)
{
	pthread_mutex_lock(&a->lock);
	out->pages_in_use = a->pages_in_use;
	out->pages_free_dirty = a->pages_free_dirty;
	out->pages_released = a->pages_released;
	out->madvise_calls = a->madvise_calls;
	out->alloc_calls = a->alloc_calls;
	out->directed_hits = a->directed_hits;
	out->directed_misses = a->directed_misses;
	for (unsigned k = 0; k < SK_ORDERS; k++) {
		out->free_blocks[k] = a->nfree[k];
		out->used_blocks[k] = a->nused[k];
	}
	pthread_mutex_unlock(&a->lock);
}
