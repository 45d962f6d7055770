/*
 * The SLOB heap: first-fit heaps of small blocks carved from 4 KiB pages
 * (after Linux mm/slob.c).
 *
 * Pools and lists.  Pages belong to a pool: the kmalloc pool (shared by
 * every kmalloc and malloc(9) size) or one cache's pool.  Partially free
 * pages of a pool sit on three lists by request size: pages whose largest
 * free block can serve only requests under 256 bytes, those that can serve
 * requests under 1 KiB, and the rest.  (Linux listed a page by the request
 * that created it, or by the first block freed into it once full; listing
 * by what a page can serve now is what keeps the footprint near the live
 * bytes: docs/slob.md has both measured.)  A page whose free blocks are all
 * smaller than anything the pool carves is on no list.
 *
 * Allocation order:
 *   1. the list of the request's size, then the lists of larger blocks,
 *      each searched next-fit: from where the previous search of that list
 *      stopped, skipping pages whose largest free block is too small (or
 *      that are on the wrong node), for at most SLOB_SEARCH_BUDGET pages;
 *   2. inside a page, first-fit along its address-ordered free list,
 *      splitting the block found (and trimming off a leading fragment when
 *      an alignment is asked for);
 *   3. a new page from the page provider.
 * Freeing inserts the block in address order and merges it with the free
 * neighbour on either side; a page whose last block is freed goes straight
 * back to the page provider.
 *
 * Locking: one mutex, slob_heap.lock, guards every pool's lists, every
 * SLOB page's state (its descriptor's sp_index, sp_state) and every free block's
 * header.  This is the design's choice, as in Linux (one slob_lock): a
 * page's state, its list and its pool's search position change together,
 * and one lock needs no lock order.  The page provider is never asked for
 * or given pages with the lock held (slabkit_validate's walk of its
 * descriptors takes a node lock under it), and constructors never run
 * under it (slob.c).  The lock is a
 * pthread mutex (adaptive where glibc has it), not a spinlock: a preempted
 * spinlock holder would stall every waiter.
 *
 * Lock order:
 *   slob_heap.lock
 *     -> core's metadata lock (sk_meta_zalloc / sk_meta_free: a list array
 *        grows or is freed under the heap lock)
 *       -> the page provider's node lock (also sk_pages_walk_locked)
 * Core never calls into SLOB while holding either of the inner two.
 *
 * Per-page state, in the head descriptor's owner words (struct slob_words;
 * SLOB pages are order 0).  A pool's lists are arrays of {page, largest}
 * entries rather than linked lists: the first-fit search scans the array
 * without touching the pages' descriptors.
 * Invariants, while the lock is free:
 *   - free units == the sum of the sizes on the page's free list, and
 *     largest == the largest of them;
 *   - free blocks are in increasing address order and never adjacent
 *     (adjacent ones are always merged);
 *   - a page is on list slob_list_wanted() of its pool;
 *   - a listed page's entry records its largest free block, and each
 *     list's max bounds those from above;
 *   - no held page is entirely free.
 */
#include <pthread.h>
#include <string.h>

#include "slob_int.h"

#define SLOB_PAGE_TAG 0x510b0000u

/* Pages a list search looks at before moving on to the next list (or a new
 * page).  Trades time for footprint; docs/slob.md has the measurements. */
#define SLOB_SEARCH_BUDGET 512u

static struct slob_heap {
	/* Synchronization: the one heap lock (see top of file). */
	pthread_mutex_t lock;
	/* Synchronization: lock (the pool's own fields are documented in
	 * slob_int.h). */
	struct slob_pool kmalloc_pool;
	/* Synchronization: lock.  Pages taken and given back, all pools. */
	uint64_t page_allocs, page_frees;
} slob_heap = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* --- Per-page state (caller holds the lock, except the kind) --- */

/* sp_state, unpacked. */
struct slob_state {
	unsigned free_units; /* units free in the page */
	unsigned free_off;   /* first free block, SLOB_END if none */
	unsigned largest;    /* units of the largest free block */
	enum slob_list_id list;
};

static inline struct slob_state slob_state_get(const struct sk_page *pg)
{
	uintptr_t w = slob_words(pg)->sp_state;
	return (struct slob_state){
		.free_units = (unsigned)(w & 0xffff),
		.free_off = (unsigned)((w >> 16) & 0xffff),
		.largest = (unsigned)((w >> 32) & 0xffff),
		.list = (enum slob_list_id)((w >> 48) & 0xff),
	};
}

static inline void slob_state_put(struct sk_page *pg, struct slob_state st)
{
	slob_words(pg)->sp_state = (uintptr_t)st.free_units | (uintptr_t)st.free_off << 16 |
		    (uintptr_t)st.largest << 32 | (uintptr_t)st.list << 48;
}

static inline unsigned slob_page_largest(const struct sk_page *pg)
{
	return slob_state_get(pg).largest;
}

static inline void slob_page_set_list(struct sk_page *pg, enum slob_list_id list)
{
	struct slob_state st = slob_state_get(pg);
	st.list = list;
	slob_state_put(pg, st);
}

/* The provider's page kind for a pool's pages. */
static inline uint8_t slob_provider_kind(const struct slob_pool *pool)
{
	return pool->kind == SLOB_KIND_KMALLOC ? SK_PAGE_HEAP : SK_PAGE_SLAB;
}

/* Is pg a live page of this pool?  No lock: kind and tag are constant
 * while the page lives, owner likewise. */
static inline bool slob_page_in_pool(const struct sk_page *pg, const struct slob_pool *pool)
{
	return pg->kind == slob_provider_kind(pool) &&
	       slob_words(pg)->sp_tag == (SLOB_PAGE_TAG | (uintptr_t)pool->kind) &&
	       (pool->kind == SLOB_KIND_KMALLOC || pg->owner == pool->cache);
}

bool slob_page_is_kmalloc(const struct sk_page *pg)
{
	return pg->kind == SK_PAGE_HEAP && slob_words(pg)->sp_tag == (SLOB_PAGE_TAG | SLOB_KIND_KMALLOC);
}

/* --- Free blocks: the first unit holds {units, next offset, magic} --- */

static inline uint64_t *slob_word(char *base, unsigned off)
{
	return (uint64_t *)(base + ((size_t)off << SLOB_UNIT_SHIFT));
}

static inline void slob_set_free(char *base, unsigned off, unsigned units, unsigned next)
{
	*slob_word(base, off) = (uint64_t)units | (uint64_t)next << 16 | (uint64_t)SLOB_MAGIC_FREE << 32;
}

static inline unsigned slob_block_units(char *base, unsigned off)
{
	return (unsigned)(*slob_word(base, off) & 0xffff);
}

static inline unsigned slob_block_next(char *base, unsigned off)
{
	return (unsigned)((*slob_word(base, off) >> 16) & 0xffff);
}

static inline void slob_set_next(char *base, unsigned off, unsigned next)
{
	slob_set_free(base, off, slob_block_units(base, off), next);
}

/* --- The lists: arrays of {page number, largest free block} --- */

static inline uint64_t slob_entry(const struct sk_page *pg, unsigned largest)
{
	return (uint64_t)(pg - sk_page_map) << 16 | largest;
}

static inline struct sk_page *slob_entry_page(uint64_t entry)
{
	return &sk_page_map[entry >> 16];
}

static inline unsigned slob_entry_largest(uint64_t entry)
{
	return (unsigned)(entry & 0xffff);
}

/* Make room for one more entry.  Called with the heap lock held: takes the
 * metadata allocator's lock inside it (see "Lock order"). */
static bool slob_list_reserve(struct slob_list *l)
{
	uint64_t *entry = sk_meta_array_grow(l->entry, l->count, &l->cap, sizeof(*entry), 64);

	if (entry)
		l->entry = entry;
	return entry != NULL;
}

static inline void slob_list_put(struct slob_list *l, uint32_t idx, uint64_t entry)
{
	l->entry[idx] = entry;
	slob_words(slob_entry_page(entry))->sp_index = idx;
}

/*
 * Add pg to a list just behind the cursor, so that the roving search
 * reaches it last, as a page added before the head of Linux's circular
 * list: pg takes the cursor's slot, whose page moves to the end, and the
 * cursor moves on by one.  (Appending instead let pages that had just
 * changed lists be searched first, and cost about 1% more pages on the
 * benchmark's workload.)  If the list cannot grow, pg stays on none, which
 * only hides its free space from searches until it is relisted.
 */
static bool slob_list_add(struct slob_pool *pool, struct sk_page *pg, enum slob_list_id list)
{
	struct slob_list *l = &pool->list[list - 1];
	unsigned largest = slob_state_get(pg).largest;

	if (!slob_list_reserve(l)) {
		pool->list_failures++;
		return false;
	}
	if (l->count == 0) {
		slob_list_put(l, 0, slob_entry(pg, largest));
		l->cursor = 0;
	} else {
		uint32_t at = l->cursor;
		slob_list_put(l, l->count, l->entry[at]);
		slob_list_put(l, at, slob_entry(pg, largest));
		l->cursor = at + 1;
	}
	l->count++;
	if (largest > l->max)
		l->max = largest;
	slob_page_set_list(pg, list);
	return true;
}

/* Remove pg from its list: the last entry takes its place. */
static void slob_list_del(struct slob_pool *pool, struct sk_page *pg)
{
	struct slob_list *l = &pool->list[slob_state_get(pg).list - 1];
	uint32_t idx = (uint32_t)slob_words(pg)->sp_index;
	uint64_t last = l->entry[--l->count];

	if (idx != l->count)
		slob_list_put(l, idx, last);
	if (l->cursor >= l->count)
		l->cursor = 0;
	slob_words(pg)->sp_index = 0;
	slob_page_set_list(pg, SLOB_LIST_NONE);
}

/* The list a page belongs on: that of the largest request its largest free
 * block can serve; none when the pool can carve nothing from it. */
static enum slob_list_id slob_list_wanted(const struct slob_pool *pool, const struct slob_state *st)
{
	if (st->largest < pool->min_units)
		return SLOB_LIST_NONE;
	return slob_list_for((size_t)st->largest << SLOB_UNIT_SHIFT);
}

/* Move pg to the list its state calls for, after a carve or a release,
 * and keep its entry's largest block current. */
static void slob_page_relist(struct slob_pool *pool, struct sk_page *pg)
{
	struct slob_state st = slob_state_get(pg);
	enum slob_list_id want = slob_list_wanted(pool, &st);

	if (want == st.list) {
		if (want != SLOB_LIST_NONE) {
			struct slob_list *l = &pool->list[want - 1];
			l->entry[slob_words(pg)->sp_index] = slob_entry(pg, st.largest);
			if (st.largest > l->max)
				l->max = st.largest;
		}
		return;
	}
	if (st.list != SLOB_LIST_NONE)
		slob_list_del(pool, pg);
	if (want != SLOB_LIST_NONE)
		slob_list_add(pool, pg, want);
}

/* --- Inside one page --- */

static unsigned slob_page_scan_largest(char *base, unsigned off)
{
	unsigned largest = 0;

	for (; off != SLOB_END; off = slob_block_next(base, off)) {
		unsigned units = slob_block_units(base, off);
		if (units > largest)
			largest = units;
	}
	return largest;
}

/*
 * First-fit: carve `units` units from pg's free list so that the block's
 * address + align_offset is a multiple of align (0: any unit).  Returns
 * the block's unit offset, or -1 if no free block fits.  Caller holds the
 * lock.
 */
static int slob_page_carve(struct sk_page *pg, unsigned units, size_t align, size_t align_offset)
{
	char *base = sk_page_addr(pg);
	struct slob_state st = slob_state_get(pg);
	unsigned prev = SLOB_END, cur = st.free_off;

	while (cur != SLOB_END) {
		unsigned avail = slob_block_units(base, cur);
		unsigned next = slob_block_next(base, cur);
		unsigned found = avail, delta = 0;

		if (align > SLOB_UNIT) {
			uintptr_t addr = (uintptr_t)slob_word(base, cur);
			uintptr_t aligned = SK_ALIGN_UP(addr + align_offset, align) - align_offset;
			delta = (unsigned)((aligned - addr) >> SLOB_UNIT_SHIFT);
		}
		if (avail >= units + delta) {
			if (delta) {
				/* Keep the leading fragment as its own free block. */
				slob_set_free(base, cur, delta, cur + delta);
				prev = cur;
				cur += delta;
				avail -= delta;
			}
			if (avail > units) {
				slob_set_free(base, cur + units, avail - units, next);
				next = cur + units;
			}
			if (prev == SLOB_END)
				st.free_off = next;
			else
				slob_set_next(base, prev, next);
			st.free_units -= units;
			if (found == st.largest)
				st.largest = slob_page_scan_largest(base, st.free_off);
			slob_state_put(pg, st);
			return (int)cur;
		}
		prev = cur;
		cur = next;
	}
	return -1;
}

/*
 * Return `units` units at offset `off` to pg's free list, in address order,
 * merging with the free blocks on either side.  Checks first that the range
 * lies in the page and overlaps no free block; on failure nothing changes.
 * Caller holds the lock.
 */
static enum slob_free_result slob_page_release(struct sk_page *pg, unsigned off, unsigned units)
{
	char *base = sk_page_addr(pg);
	struct slob_state st = slob_state_get(pg);
	unsigned end = off + units;
	unsigned merged; /* size of the free block the range ends up in */

	if (units == 0 || end > SLOB_PAGE_UNITS)
		return SLOB_FREE_OUTSIDE;

	if (st.free_off == SLOB_END || end <= st.free_off) {
		/* Before every free block (or none is left). */
		unsigned next = st.free_off;
		merged = units;
		if (next != SLOB_END && end == next) {
			merged += slob_block_units(base, next);
			next = slob_block_next(base, next);
		}
		slob_set_free(base, off, merged, next);
		st.free_off = off;
	} else {
		unsigned prev = st.free_off, next = slob_block_next(base, prev);
		unsigned prev_units;

		while (next != SLOB_END && next <= off) {
			prev = next;
			next = slob_block_next(base, prev);
		}
		/* Now prev <= off < next: refuse any overlap (double free). */
		prev_units = slob_block_units(base, prev);
		if (prev + prev_units > off)
			return SLOB_FREE_OVERLAP;
		if (next != SLOB_END && end > next)
			return SLOB_FREE_OVERLAP;
		merged = units;
		if (next != SLOB_END && end == next) {
			merged += slob_block_units(base, next);
			next = slob_block_next(base, next);
		}
		if (prev + prev_units == off) {
			merged += prev_units;
			slob_set_free(base, prev, merged, next);
			/* Erase the block's old first word (a kmalloc header):
			 * a second kfree of it must not find a valid header. */
			*slob_word(base, off) = 0;
		} else {
			slob_set_free(base, off, merged, next);
			slob_set_next(base, prev, off);
		}
	}
	st.free_units += units;
	if (merged > st.largest)
		st.largest = merged;
	slob_state_put(pg, st);
	return SLOB_FREED;
}

/* --- Pools --- */

void slob_pool_init(struct slob_pool *pool, enum slob_page_kind kind, struct sk_cache *cache,
		    unsigned min_units)
{
	memset(pool, 0, sizeof(*pool));
	pool->kind = kind;
	pool->cache = cache;
	pool->min_units = min_units ? min_units : 1;
}

void slob_pool_destroy(struct slob_pool *pool)
{
	pthread_mutex_lock(&slob_heap.lock);
	for (int i = 0; i < SLOB_NR_LISTS; i++) {
		struct slob_list *l = &pool->list[i];
		if (l->entry)
			sk_meta_free(l->entry, l->cap * sizeof(*l->entry));
		memset(l, 0, sizeof(*l));
	}
	pthread_mutex_unlock(&slob_heap.lock);
}

static void slob_pool_page_free(struct slob_pool *pool, void *addr);

void slob_pool_release_kept(struct slob_pool *pool)
{
	for (;;) {
		struct sk_page *pg = NULL;
		void *obj;

		pthread_mutex_lock(&slob_heap.lock);
		if ((obj = pool->free_page_objects)) {
			pool->free_page_objects = *(void **)obj;
			pool->pages--;
		} else {
			for (int i = 0; i < SLOB_NR_LISTS && !pg; i++)
				if (pool->list[i].count)
					pg = slob_entry_page(pool->list[i].entry[0]);
			if (pg) {
				slob_list_del(pool, pg);
				pool->pages--;
				slob_heap.page_frees++;
			}
		}
		pthread_mutex_unlock(&slob_heap.lock);
		if (obj) {
			sk_slab_pages_free(pool->cache, obj);
			continue;
		}
		if (!pg)
			return;
		slob_words(pg)->sp_tag = 0;
		slob_pool_page_free(pool, sk_page_addr(pg));
	}
}

void slob_pool_keep_page_object(struct slob_pool *pool, void *obj)
{
	pthread_mutex_lock(&slob_heap.lock);
	*(void **)obj = pool->free_page_objects;
	pool->free_page_objects = obj;
	pthread_mutex_unlock(&slob_heap.lock);
}

void *slob_pool_take_page_object(struct slob_pool *pool, int node)
{
	void **link, *obj = NULL;

	pthread_mutex_lock(&slob_heap.lock);
	for (link = &pool->free_page_objects; *link; link = (void **)*link)
		if (node == SK_NODE_ANY || sk_page_of(*link)->node == (unsigned)node) {
			obj = *link;
			*link = *(void **)obj;
			break;
		}
	pthread_mutex_unlock(&slob_heap.lock);
	return obj;
}

void slob_heap_fork_lock(bool lock)
{
	if (lock)
		pthread_mutex_lock(&slob_heap.lock);
	else
		pthread_mutex_unlock(&slob_heap.lock);
}

void slob_pool_count_pages(struct slob_pool *pool, int64_t delta)
{
	pthread_mutex_lock(&slob_heap.lock);
	pool->pages += (uint64_t)delta;
	pthread_mutex_unlock(&slob_heap.lock);
}

uint64_t slob_pool_pages(struct slob_pool *pool)
{
	uint64_t pages;

	pthread_mutex_lock(&slob_heap.lock);
	pages = pool->pages;
	pthread_mutex_unlock(&slob_heap.lock);
	return pages;
}

struct slob_pool *slob_kmalloc_pool(void)
{
	return &slob_heap.kmalloc_pool;
}

static void *slob_pool_page_alloc(struct slob_pool *pool, int node)
{
	if (pool->kind == SLOB_KIND_KMALLOC)
		return sk_heap_pages_alloc(node, 0);
	return sk_slab_pages_alloc(pool->cache, node, 0);
}

static void slob_pool_page_free(struct slob_pool *pool, void *addr)
{
	if (pool->kind == SLOB_KIND_KMALLOC)
		sk_heap_pages_free(addr);
	else
		sk_slab_pages_free(pool->cache, addr);
}

/*
 * Search one list next-fit, from its cursor, for a page whose first fitting
 * block can take the request.  Gives up after SLOB_SEARCH_BUDGET entries,
 * leaving the cursor where it stopped so that the next search goes on from
 * there.  Caller holds the lock.
 */
static void *slob_list_search(struct slob_pool *pool, enum slob_list_id list, unsigned units,
			      size_t align, size_t align_offset, int node)
{
	struct slob_list *l = &pool->list[list - 1];
	uint32_t n = l->count, idx = l->cursor;
	uint32_t budget = n < SLOB_SEARCH_BUDGET ? n : SLOB_SEARCH_BUDGET;
	unsigned seen_max = 0;

	if (n == 0 || units > l->max)
		return NULL;
	for (uint32_t i = 0; i < budget; i++, idx = idx + 1 == n ? 0 : idx + 1) {
		uint64_t entry = l->entry[idx];
		unsigned largest = slob_entry_largest(entry);
		struct sk_page *pg;
		int off;

		if (largest > seen_max)
			seen_max = largest;
		if (largest < units)
			continue;
		pg = slob_entry_page(entry);
		if (node != SK_NODE_ANY && pg->node != (unsigned)node)
			continue;
		off = slob_page_carve(pg, units, align, align_offset);
		if (off < 0)
			continue; /* alignment did not fit */
		/* Next-fit: the next search starts here (Knuth vol. 1, 2.5),
		 * which spreads fragments and shortens searches.  The relist
		 * may move the page away; the cursor then names its successor
		 * in this list. */
		l->cursor = idx;
		slob_page_relist(pool, pg);
		return slob_word(sk_page_addr(pg), (unsigned)off);
	}
	if (budget == n)
		l->max = seen_max; /* the whole list was read: the bound is exact */
	l->cursor = idx;
	return NULL;
}

void *slob_pool_alloc(struct slob_pool *pool, size_t bytes, size_t align, size_t align_offset,
		      int node, uint64_t header)
{
	unsigned units = slob_units(bytes);
	enum slob_list_id list = slob_list_for(bytes), to;
	struct sk_page *pg;
	void *block = NULL;
	int off;

	/* The request's own list first (pages whose largest block is in the
	 * request's class: the tightest fits), then the lists of larger
	 * blocks, which fit unless alignment gets in the way. */
	pthread_mutex_lock(&slob_heap.lock);
	for (int l = list; !block && l <= SLOB_NR_LISTS; l++)
		block = slob_list_search(pool, (enum slob_list_id)l, units, align, align_offset, node);
	if (block && header)
		*(uint64_t *)block = header;
	pthread_mutex_unlock(&slob_heap.lock);
	if (block)
		return block;

	/* A new page, taken without the lock (the provider has its own);
	 * its words are written under the lock, where slabkit_validate's
	 * walk of every page reads them. */
	block = slob_pool_page_alloc(pool, node);
	if (!block)
		return NULL;
	pg = sk_page_of(block);

	pthread_mutex_lock(&slob_heap.lock);
	slob_words(pg)->sp_index = slob_words(pg)->sp_isolated = 0;
	slob_words(pg)->sp_tag = SLOB_PAGE_TAG | (uintptr_t)pool->kind;
	slob_set_free(block, 0, SLOB_PAGE_UNITS, SLOB_END);
	slob_state_put(pg, (struct slob_state){ .free_units = SLOB_PAGE_UNITS, .free_off = 0,
						.largest = SLOB_PAGE_UNITS,
						.list = SLOB_LIST_NONE });
	pool->pages++;
	slob_heap.page_allocs++;
	/* Every request fits an empty page at any alignment it may ask for:
	 * slob.c keeps requests and alignments below a page. */
	off = slob_page_carve(pg, units, align, align_offset);
	if (sk_unlikely(off < 0)) {
		/* Cannot happen for what slob.c asks; refuse rather than
		 * hand out a wild pointer. */
		pool->pages--;
		slob_heap.page_frees++;
		pthread_mutex_unlock(&slob_heap.lock);
		slob_words(pg)->sp_tag = 0;
		slob_pool_page_free(pool, block);
		return NULL;
	}
	to = slob_list_wanted(pool, &(struct slob_state){ .largest = slob_page_largest(pg) });
	/* The next search of its list starts on the new page, as Linux's
	 * list_add to the head did. */
	if (to != SLOB_LIST_NONE && slob_list_add(pool, pg, to))
		pool->list[to - 1].cursor = (uint32_t)slob_words(pg)->sp_index;
	if (header)
		*slob_word(block, (unsigned)off) = header;
	pthread_mutex_unlock(&slob_heap.lock);
	return slob_word(block, (unsigned)off);
}

/*
 * Free `bytes` at `block`, or (bytes == 0) the kmalloc block whose header
 * is at `block`, its size read from the header under the lock so that two
 * racing kfrees of one pointer see one header each: the second finds it
 * erased (or the range free) and is refused.
 */
static enum slob_free_result slob_pool_free_common(struct slob_pool *pool, struct sk_page *pg,
						   void *block, size_t bytes)
{
	uintptr_t base = (uintptr_t)sk_page_addr(pg);
	uintptr_t addr = (uintptr_t)block;
	enum slob_free_result res;
	bool empty;

	if (!slob_page_in_pool(pg, pool))
		return SLOB_FREE_WRONG_PAGE;
	if (addr < base || addr - base + bytes > SK_PAGE_SIZE || (addr & (SLOB_UNIT - 1)) ||
	    (bytes & (SLOB_UNIT - 1)))
		return SLOB_FREE_OUTSIDE;

	pthread_mutex_lock(&slob_heap.lock);
	if (bytes == 0) {
		uint64_t hdr = *(uint64_t *)block;
		bytes = (size_t)(hdr & 0xffff) << SLOB_UNIT_SHIFT;
		if ((uint32_t)(hdr >> 32) != SLOB_MAGIC_KMALLOC || bytes == 0 ||
		    addr - base + bytes > SK_PAGE_SIZE) {
			pthread_mutex_unlock(&slob_heap.lock);
			return SLOB_FREE_BAD_HEADER;
		}
	}
	res = slob_page_release(pg, (unsigned)((addr - base) >> SLOB_UNIT_SHIFT),
				(unsigned)(bytes >> SLOB_UNIT_SHIFT));
	if (res != SLOB_FREED) {
		pthread_mutex_unlock(&slob_heap.lock);
		return res;
	}
	empty = slob_state_get(pg).free_units == SLOB_PAGE_UNITS && !pool->keep_empty;
	if (empty) {
		if (slob_state_get(pg).list != SLOB_LIST_NONE)
			slob_list_del(pool, pg);
		pool->pages--;
		slob_heap.page_frees++;
	} else {
		slob_page_relist(pool, pg);
	}
	pthread_mutex_unlock(&slob_heap.lock);

	if (empty) {
		/* Unlisted: nobody else can reach it any more. */
		slob_words(pg)->sp_tag = 0;
		slob_pool_page_free(pool, (void *)base);
	}
	return SLOB_FREED;
}

enum slob_free_result slob_pool_free(struct slob_pool *pool, struct sk_page *pg, void *block,
				     size_t bytes)
{
	if (bytes == 0)
		return SLOB_FREE_OUTSIDE;
	return slob_pool_free_common(pool, pg, block, bytes);
}

enum slob_free_result slob_pool_kfree(struct slob_pool *pool, struct sk_page *pg, void *header)
{
	return slob_pool_free_common(pool, pg, header, 0);
}

int slob_heap_init(void)
{
	pthread_mutexattr_t attr;
	int err;

	/* Start empty: slabkit_init may follow slabkit_fini, whose arenas (and
	 * every page listed here) are gone. */
	slob_pool_init(&slob_heap.kmalloc_pool, SLOB_KIND_KMALLOC, NULL,
		       slob_units(SLOB_KMALLOC_HDR + SLOB_UNIT));
	slob_heap.page_allocs = slob_heap.page_frees = 0;

	pthread_mutexattr_init(&attr);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
	/* Spin briefly before sleeping: critical sections are short. */
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
	pthread_mutex_destroy(&slob_heap.lock);
	err = pthread_mutex_init(&slob_heap.lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return -err;
}

void slob_heap_fini(void)
{
	/* Pages still held hold leaked blocks: core reports the leaks and the
	 * page provider unmaps the pages; forget them here.  The list arrays
	 * are metadata, still valid while ops->fini runs. */
	slob_pool_destroy(&slob_heap.kmalloc_pool);
	pthread_mutex_lock(&slob_heap.lock);
	slob_pool_init(&slob_heap.kmalloc_pool, SLOB_KIND_KMALLOC, NULL,
		       slob_units(SLOB_KMALLOC_HDR + SLOB_UNIT));
	pthread_mutex_unlock(&slob_heap.lock);
}

/* --- Introspection --- */

bool sk_slob_debug_page(const void *p, struct sk_slob_page_info *out)
{
	struct sk_page *pg = sk_page_of(p);
	struct slob_state st;
	char *base;

	if (!pg || (slob_words(pg)->sp_tag & ~(uintptr_t)0xff) != SLOB_PAGE_TAG ||
	    (pg->kind != SK_PAGE_HEAP && pg->kind != SK_PAGE_SLAB))
		return false;
	base = sk_page_addr(pg);
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&slob_heap.lock);
	st = slob_state_get(pg);
	out->list = st.list;
	out->kind = (int)(slob_words(pg)->sp_tag & 0xff);
	out->free_units = st.free_units;
	out->largest_free = st.largest;
	out->node = pg->node;
	for (unsigned off = st.free_off; off != SLOB_END; off = slob_block_next(base, off))
		out->free_blocks++;
	pthread_mutex_unlock(&slob_heap.lock);
	return true;
}

bool sk_slob_debug_pool(struct sk_cache *c, struct sk_slob_pool_info *out)
{
	struct slob_pool *pool = c ? c->backend : &slob_heap.kmalloc_pool;

	memset(out, 0, sizeof(*out));
	if (!pool)
		return false;
	pthread_mutex_lock(&slob_heap.lock);
	out->pages = pool->pages;
	out->list_failures = pool->list_failures;
	for (int i = 0; i < SLOB_NR_LISTS; i++) {
		const struct slob_list *l = &pool->list[i];
		out->pages_listed[i] = l->count;
		for (uint32_t k = 0; k < l->count; k++)
			out->free_units += slob_state_get(slob_entry_page(l->entry[k])).free_units;
	}
	pthread_mutex_unlock(&slob_heap.lock);
	return true;
}

void sk_slob_debug_page_counts(uint64_t *allocs, uint64_t *frees)
{
	pthread_mutex_lock(&slob_heap.lock);
	*allocs = slob_heap.page_allocs;
	*frees = slob_heap.page_frees;
	pthread_mutex_unlock(&slob_heap.lock);
}

/* --- slabkit_validate: block headers and free lists --- */

#define ISOLATE "Isolating the page's free blocks (never handed out again)"

/*
 * One listed page, under the lock: its free list in address order, each
 * block inside the page with a free header, never adjacent to the next;
 * the units and the largest block as its state says; and on a kmalloc
 * page, every unit between free blocks in kmalloc blocks with a valid
 * header, so that the blocks' units sum to the page.  Returns true when
 * sound.
 */
static bool slob_page_sound(struct slob_pool *pool, struct sk_cache *c, struct sk_page *pg)
{
	char *base = sk_page_addr(pg);
	struct slob_state st = slob_state_get(pg);
	unsigned units = 0, largest = 0, blocks = 0, used_from = 0;
	unsigned obj_units = pool->kind == SLOB_KIND_CACHE ? pool->min_units : 0;

	for (unsigned off = st.free_off, prev_end = 0; off != SLOB_END; blocks++) {
		uint64_t word = off < SLOB_PAGE_UNITS ? *slob_word(base, off) : 0;
		unsigned n = (unsigned)(word & 0xffff), next = (unsigned)((word >> 16) & 0xffff);
		const char *what = NULL;

		if (off >= SLOB_PAGE_UNITS || (blocks && off <= prev_end))
			what = "Free list corrupt (a link out of the page or out of address order)";
		else if ((uint32_t)(word >> 32) != SLOB_MAGIC_FREE || !n || off + n > SLOB_PAGE_UNITS)
			what = "Free block header corrupt";
		else if (next != SLOB_END && next <= off + n)
			what = "Free list corrupt (blocks overlap or touch without merging)";
		if (!what && obj_units && (off - used_from) % obj_units)
			what = "Free block inside an object (the used units are not whole objects)";
		for (unsigned u = used_from; !what && !obj_units && u < off;) {
			uint64_t h = *slob_word(base, u);
			unsigned hn = (unsigned)(h & 0xffff);
			if ((uint32_t)(h >> 32) != SLOB_MAGIC_KMALLOC || hn < 2 || u + hn > off)
				what = "kmalloc block header corrupt (the blocks do not sum to the page)";
			else
				u += hn;
		}
		if (what) {
			sk_validate_report(c, what, base, ISOLATE,
					   "%s page: block at unit %u reads %#llx; %u free block(s) of %u unit(s) before it",
					   c ? "cache" : "kmalloc", off, (unsigned long long)word, blocks, units);
			return false;
		}
		units += n;
		largest = n > largest ? n : largest;
		prev_end = off + n;
		used_from = off + n;
		off = next;
	}
	for (unsigned u = used_from; !obj_units && u < SLOB_PAGE_UNITS;) {
		uint64_t h = *slob_word(base, u);
		unsigned hn = (unsigned)(h & 0xffff);
		if ((uint32_t)(h >> 32) != SLOB_MAGIC_KMALLOC || hn < 2 || u + hn > SLOB_PAGE_UNITS) {
			sk_validate_report(c, "kmalloc block header corrupt (the blocks do not sum to the page)",
					   base, ISOLATE, "kmalloc page: header at unit %u reads %#llx", u,
					   (unsigned long long)h);
			return false;
		}
		u += hn;
	}
	if (units != st.free_units || largest != st.largest) {
		sk_validate_report(c, "Page free counts disagree with its free list", base, ISOLATE,
				   "%u free unit(s), largest block %u on the list; the page says %u and %u", units,
				   largest, st.free_units, st.largest);
		return false;
	}
	return true;
}

/* Full pages (no free block) sit on no list: the page provider's walk
 * finds them.  Called with the heap lock held, under which a pool's page
 * words are written and no page of the pool is freed; the provider's node
 * lock is held too, so nothing is reported here. */
struct full_pages {
	struct slob_pool *pool;
	struct sk_page **page;
	uint64_t count, cap;
};

static void collect_full_page(struct sk_page *pg, void *arg)
{
	struct full_pages *f = arg;
	struct slob_state st = slob_state_get(pg);

	/* Empty and partial pages are not read further: a page being
	 * given back (empty) has its tag cleared outside the lock. */
	if (st.free_off != SLOB_END || st.list != SLOB_LIST_NONE || slob_words(pg)->sp_isolated ||
	    !slob_page_in_pool(pg, f->pool) || f->count == f->cap)
		return;
	f->page[f->count++] = pg;
}

/* Heap lock held.  A bad full page keeps its blocks (they are all live)
 * and is marked so that it is reported once. */
static uint64_t slob_validate_full_pages(struct slob_pool *pool, struct sk_cache *c)
{
	struct full_pages f = { .pool = pool, .cap = pool->pages };
	uint64_t errors = 0;

	if (!f.cap || !(f.page = sk_meta_zalloc(f.cap * sizeof(*f.page))))
		return 0;
	sk_pages_walk_locked(slob_provider_kind(pool), pool->kind == SLOB_KIND_CACHE ? (void *)c : NULL,
			     collect_full_page, &f);
	for (uint64_t i = 0; i < f.count; i++)
		if (!slob_page_sound(pool, c, f.page[i])) {
			slob_words(f.page[i])->sp_isolated = 1;
			errors++;
		}
	sk_meta_free(f.page, f.cap * sizeof(*f.page));
	return errors;
}

uint64_t slob_pool_validate(struct slob_pool *pool, struct sk_cache *c)
{
	uint64_t errors = 0;

	pthread_mutex_lock(&slob_heap.lock);
	for (int i = 0; i < SLOB_NR_LISTS; i++) {
		struct slob_list *l = &pool->list[i];
		for (uint32_t k = 0; k < l->count;) {
			struct sk_page *pg = slob_entry_page(l->entry[k]);
			if (!slob_page_in_pool(pg, pool) || slob_words(pg)->sp_index != k) {
				sk_validate_report(c, "Page list corrupt", sk_page_addr(pg), "Entry dropped from the list",
						   "list %d entry %u names a page that is not this pool's (or not there)",
						   i + 1, k);
				l->entry[k] = l->entry[--l->count];
				if (k < l->count)
					slob_words(slob_entry_page(l->entry[k]))->sp_index = k;
				if (l->cursor >= l->count)
					l->cursor = 0;
				errors++;
				continue;
			}
			if (slob_page_sound(pool, c, pg)) {
				k++;
				continue;
			}
			/* Isolate: off its list (the last entry moves to k),
			 * and no free block left.  Blocks freed into it later
			 * start a sound free list; the lost units keep it from
			 * ever being empty, so it is never released (leaked). */
			slob_list_del(pool, pg);
			slob_state_put(pg, (struct slob_state){ .free_units = 0, .free_off = SLOB_END,
								.largest = 0, .list = SLOB_LIST_NONE });
			slob_words(pg)->sp_isolated = 1;
			errors++;
		}
	}
	errors += slob_validate_full_pages(pool, c);
	pthread_mutex_unlock(&slob_heap.lock);
	return errors;
}
