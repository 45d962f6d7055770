/*
 * slabkit-bench: the "idr" workload, a model of the allocation pattern of
 * the Linux kernel's IDA/IDR test program (tools/testing/radix-tree,
 * idr-test.c over lib/idr.c and lib/xarray.c).  issue 8, target 9: that
 * program peaked at 105-368 MB resident on SLOB against 32-79 MB on the
 * other backends; this workload reproduces its allocations so the figure
 * can be measured, explained and compared with glibc in one run.
 *
 * Written for slabkit from the behaviour of those files, none of their
 * code.  What the kernel's program allocates, and what the model does:
 *
 *  - tree nodes: 576 bytes (64 slots, parent, shift, count, three mark
 *    words) from a kmem_cache with a constructor; an empty node, or a
 *    root left with only slot 0, is removed at once and FREED THROUGH
 *    RCU (liburcu's call_rcu, as the kernel's user-space harness does:
 *    one worker thread frees them in batches after a grace period);
 *  - IDA chunks: 1024 ids per tree entry, an entry is an inline value
 *    while only ids 0..61 of the chunk are set, else a 128-byte bitmap from
 *    kmalloc (kzalloc), freed at once (kfree) when its last id goes;
 *  - IDR items: 16-byte objects from kmalloc.
 *
 * and the phases, in the program's order (counts instead of its 10-second
 * and 2-second loops, so that every allocator does the same work):
 *  1. idr: 10,000 items inserted at ids 0..9999, the first 5,000 removed in
 *     order, the rest destroyed; again 9,999 from id 1;
 *  2. find: a writer thread stores and erases one id (100000 with an anchor
 *     at 0, then 0 with an anchor at 100000) while the main thread looks the
 *     tree up under rcu_read_lock: every iteration grows the tree by up to
 *     five nodes and shrinks it again, the nodes going to call_rcu;
 *  3. conv: 1,000,000 ids allocated in order (977 bitmaps), destroyed;
 *  4. random: a 2048-id IDA toggled at random 100,000 times a round, then
 *     destroyed: one thread, then 20 threads each with its own IDA;
 *  5. leak: 20 threads allocate and free id 128 of one shared IDA (a
 *     128-byte bitmap allocated and freed every time).
 *
 * The allocator is reached through struct idr_mem (workloads.c fills it
 * with kmem_cache/kmalloc or malloc/free), because this file includes
 * liburcu's call_rcu header, which <slabkit/linux/slab.h> may not meet.
 * Prints, besides the protocol's lines, one "idr" line per phase (ignored
 * by the orchestrator): its resident growth, the largest number of nodes
 * waiting for a grace period, and the time.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/call-rcu.h>

#include "bench.h"
#include "idr.h"

#define FAN_SHIFT 6
#define FAN (1u << FAN_SHIFT)
#define CHUNK_IDS 1024u        /* ids per IDA bitmap */
#define VALUE_IDS 62u          /* ids an inline value holds */
#define BITMAP_BYTES 128u
#define ITEM_BYTES 16u

struct tnode {
	struct rcu_head rcu;        /* two words: liburcu's queue link and callback */
	struct tnode *parent;
	uint8_t shift, offset;      /* level (0: leaf), slot in the parent */
	uint16_t count;             /* non-NULL slots */
	uint32_t unused;
	void *slot[FAN];
	uint64_t marks[4];
};
_Static_assert(sizeof(struct tnode) == IDR_NODE_BYTES, "the kernel's node is 576 bytes");

struct tree {
	pthread_mutex_t lock;
	/* A node tagged with NODE_TAG, or the entry of index 0, or NULL: one
	 * word, so that a lockless reader sees either form whole. */
	void *root;
};

#define NODE_TAG ((uintptr_t)2) /* entries are values (bit 0) or 8-aligned pointers */

static const struct idr_mem *mem;
static uint64_t pending, pending_max; /* nodes waiting for a grace period */
static uint64_t calls;                /* allocations and frees, all threads */

/* --- nodes and RCU ----------------------------------------------------------------- */

static struct tnode *node_new(unsigned shift)
{
	struct tnode *n = mem->node_alloc(mem->ctx);

	__atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
	if (!n)
		bench_die("idr: node allocation failed");
	n->shift = (uint8_t)shift;
	n->offset = 0;
	return n;
}

static void node_rcu_free(struct rcu_head *head)
{
	struct tnode *n = caa_container_of(head, struct tnode, rcu);

	/* The constructed state again (the kernel's callback clears what it
	 * used before it frees). */
	memset(n->slot, 0, sizeof(n->slot));
	n->count = 0;
	n->parent = NULL;
	__atomic_fetch_sub(&pending, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
	mem->node_free(mem->ctx, n);
}

static void node_retire(struct tnode *n)
{
	uint64_t now = __atomic_add_fetch(&pending, 1, __ATOMIC_RELAXED);
	uint64_t max = __atomic_load_n(&pending_max, __ATOMIC_RELAXED);

	while (now > max && !__atomic_compare_exchange_n(&pending_max, &max, now, true, __ATOMIC_RELAXED,
							 __ATOMIC_RELAXED))
		;
	urcu_memb_call_rcu(&n->rcu, node_rcu_free);
}

/* --- the tree: 64-way radix, the kernel's shape --------------------------------------- */

static void *load_slot(void *const *slot)
{
	return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

static void publish(void **slot, void *v)
{
	__atomic_store_n(slot, v, __ATOMIC_RELEASE);
}

static struct tnode *as_node(void *root)
{
	return ((uintptr_t)root & NODE_TAG) ? (struct tnode *)((uintptr_t)root & ~NODE_TAG) : NULL;
}

static void *node_root(struct tnode *n)
{
	return (void *)((uintptr_t)n | NODE_TAG);
}

/* A lookup, lockless: what the find phase's reader does under RCU. */
static void *tree_load(struct tree *t, unsigned long index)
{
	void *e = load_slot(&t->root);
	struct tnode *n = as_node(e);

	if (!n)
		return index == 0 ? e : NULL;
	if (index >= ((unsigned long)FAN << n->shift))
		return NULL;
	for (;;) {
		e = load_slot(&n->slot[(index >> n->shift) & (FAN - 1)]);
		if (!e || n->shift == 0)
			return e;
		n = e;
	}
}

/* Caller holds t->lock.  Makes the root a node that covers index. */
static void tree_expand(struct tree *t, unsigned long index)
{
	struct tnode *root = as_node(t->root);

	if (!t->root) { /* empty: one node of the height index needs */
		unsigned shift = 0;

		while ((index >> shift) >= FAN)
			shift += FAN_SHIFT;
		publish(&t->root, node_root(node_new(shift)));
		return;
	}
	while (!root || index >= ((unsigned long)FAN << root->shift)) {
		struct tnode *n = node_new(root ? root->shift + FAN_SHIFT : 0);

		n->slot[0] = root ? (void *)root : t->root;
		n->count = 1;
		if (root)
			root->parent = n;
		publish(&t->root, node_root(n));
		root = n;
	}
}

/* Caller holds t->lock. */
static void tree_store(struct tree *t, unsigned long index, void *entry)
{
	struct tnode *n;

	if (!as_node(t->root) && index == 0) {
		publish(&t->root, entry);
		return;
	}
	tree_expand(t, index);
	for (n = as_node(t->root); n->shift; ) {
		unsigned off = (index >> n->shift) & (FAN - 1);
		struct tnode *child = n->slot[off];

		if (!child) {
			child = node_new(n->shift - FAN_SHIFT);
			child->parent = n;
			child->offset = (uint8_t)off;
			publish(&n->slot[off], child);
			n->count++;
		}
		n = child;
	}
	if (!n->slot[index & (FAN - 1)])
		n->count++;
	publish(&n->slot[index & (FAN - 1)], entry);
}

/* Caller holds t->lock.  A root left with slot 0 alone gives way to it. */
static void tree_shrink(struct tree *t)
{
	struct tnode *root;

	while ((root = as_node(t->root))) {
		if (root->count == 0) {
			publish(&t->root, NULL);
		} else if (root->count == 1 && root->slot[0]) {
			void *below = root->slot[0];

			if (root->shift) {
				((struct tnode *)below)->parent = NULL;
				below = node_root(below);
			}
			publish(&t->root, below);
		} else {
			return;
		}
		node_retire(root);
	}
}

/* Caller holds t->lock.  Returns the entry that was there. */
static void *tree_erase(struct tree *t, unsigned long index)
{
	struct tnode *n = as_node(t->root);
	void *old;

	if (!n) {
		if (index != 0 || !t->root)
			return NULL;
		old = t->root;
		publish(&t->root, NULL);
		return old;
	}
	if (index >= ((unsigned long)FAN << n->shift))
		return NULL;
	while (n->shift) {
		n = n->slot[(index >> n->shift) & (FAN - 1)];
		if (!n)
			return NULL;
	}
	old = n->slot[index & (FAN - 1)];
	if (!old)
		return NULL;
	publish(&n->slot[index & (FAN - 1)], NULL);
	n->count--;
	/* Empty nodes below the root go at once. */
	while (n->count == 0 && n->parent) {
		struct tnode *parent = n->parent;

		publish(&parent->slot[n->offset], NULL);
		parent->count--;
		node_retire(n);
		n = parent;
	}
	tree_shrink(t);
	return old;
}

/* Caller holds t->lock: every entry handed to fn, every node retired. */
static void node_destroy(struct tnode *n, void (*fn)(void *entry))
{
	for (unsigned i = 0; i < FAN; i++) {
		if (!n->slot[i])
			continue;
		if (n->shift)
			node_destroy(n->slot[i], fn);
		else if (fn)
			fn(n->slot[i]);
	}
	node_retire(n);
}

static void tree_destroy(struct tree *t, void (*fn)(void *entry))
{
	if (as_node(t->root))
		node_destroy(as_node(t->root), fn);
	else if (t->root && fn)
		fn(t->root);
	publish(&t->root, NULL);
}

static void *small_alloc(size_t size)
{
	void *p = mem->small_alloc(mem->ctx, size);

	__atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
	if (!p)
		bench_die("idr: allocation of %zu bytes failed", size);
	return p;
}

static void small_free(void *p)
{
	__atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
	mem->small_free(mem->ctx, p);
}

/* --- the IDA: chunks of 1024 ids, inline values or 128-byte bitmaps -------------------- */

static bool is_value(const void *e)
{
	return (uintptr_t)e & 1;
}

/* Values keep bit 1 clear: a root word with bit 1 set is a node. */
static uint64_t value_bits(const void *e)
{
	return (uintptr_t)e >> 2;
}

static void *make_value(uint64_t bits)
{
	return (void *)(uintptr_t)((bits << 2) | 1);
}

static void *bitmap_new(void)
{
	void *b = small_alloc(BITMAP_BYTES);

	memset(b, 0, BITMAP_BYTES);
	return b;
}

/* Caller holds t->lock; id is free. */
static void ida_set(struct tree *t, unsigned long id)
{
	unsigned long chunk = id / CHUNK_IDS;
	unsigned bit = (unsigned)(id % CHUNK_IDS);
	void *e = tree_load(t, chunk);
	uint64_t *words;

	if ((!e || is_value(e)) && bit < VALUE_IDS) {
		tree_store(t, chunk, make_value((e ? value_bits(e) : 0) | (UINT64_C(1) << bit)));
		return;
	}
	if (!e || is_value(e)) {
		words = bitmap_new();
		words[0] = e ? value_bits(e) : 0;
		tree_store(t, chunk, words);
	} else {
		words = e;
	}
	words[bit / 64] |= UINT64_C(1) << (bit % 64);
}

/* Caller holds t->lock; id is allocated. */
static void ida_clear(struct tree *t, unsigned long id)
{
	unsigned long chunk = id / CHUNK_IDS;
	unsigned bit = (unsigned)(id % CHUNK_IDS);
	void *e = tree_load(t, chunk);
	uint64_t *words = e, any = 0;

	if (is_value(e)) {
		uint64_t bits = value_bits(e) & ~(UINT64_C(1) << bit);

		if (bits)
			tree_store(t, chunk, make_value(bits));
		else
			tree_erase(t, chunk);
		return;
	}
	words[bit / 64] &= ~(UINT64_C(1) << (bit % 64));
	for (unsigned w = 0; w < BITMAP_BYTES / 8; w++)
		any |= words[w];
	if (!any) {
		tree_erase(t, chunk);
		small_free(words);
	}
}

static void chunk_free(void *e)
{
	if (!is_value(e))
		small_free(e);
}

static void item_free(void *e)
{
	small_free(e);
}

/* --- the phases ------------------------------------------------------------------------ */

struct idr_run {
	const struct idr_scale *scale;
	struct tree shared;
	uint64_t rss_before;
	volatile bool writer_done;
	unsigned long anchor, throbber;
};

static void phase_idr(struct idr_run *r)
{
	struct tree t = { .lock = PTHREAD_MUTEX_INITIALIZER };
	unsigned long n = r->scale->idr_items;

	pthread_mutex_lock(&t.lock);
	for (unsigned long i = 0; i < n; i++) {
		unsigned long *item = small_alloc(ITEM_BYTES);

		item[0] = i;
		tree_store(&t, i, item);
	}
	for (unsigned long i = 0; i < n / 2; i++)
		small_free(tree_erase(&t, i));
	tree_destroy(&t, item_free);
	for (unsigned long i = 1; i < n; i++) {
		unsigned long *item = small_alloc(ITEM_BYTES);

		item[0] = i;
		tree_store(&t, i, item);
	}
	tree_destroy(&t, item_free);
	pthread_mutex_unlock(&t.lock);
}

static void *find_writer(void *arg)
{
	struct idr_run *r = arg;
	struct tree *t = &r->shared;

	urcu_memb_register_thread();
	for (uint64_t i = 0; i < r->scale->find_iterations; i++) {
		pthread_mutex_lock(&t->lock);
		tree_store(t, r->throbber, make_value(r->throbber));
		pthread_mutex_unlock(&t->lock);
		pthread_mutex_lock(&t->lock);
		tree_erase(t, r->throbber);
		pthread_mutex_unlock(&t->lock);
	}
	__atomic_store_n(&r->writer_done, true, __ATOMIC_RELEASE);
	urcu_memb_unregister_thread();
	return NULL;
}

static void phase_find(struct idr_run *r, unsigned long anchor, unsigned long throbber)
{
	struct tree *t = &r->shared;
	pthread_t tid;
	uint64_t lookups = 0;

	r->anchor = anchor;
	r->throbber = throbber;
	r->writer_done = false;
	pthread_mutex_lock(&t->lock);
	tree_store(t, anchor, make_value(anchor));
	pthread_mutex_unlock(&t->lock);
	if (pthread_create(&tid, NULL, find_writer, r) != 0)
		bench_die("idr: pthread_create failed");
	while (!__atomic_load_n(&r->writer_done, __ATOMIC_ACQUIRE)) {
		urcu_memb_read_lock();
		if (tree_load(t, anchor) != make_value(anchor))
			bench_die("idr: the anchor %lu vanished (root %p)", anchor, load_slot(&t->root));
		urcu_memb_read_unlock();
		lookups++;
	}
	pthread_join(tid, NULL);
	pthread_mutex_lock(&t->lock);
	tree_erase(t, anchor);
	pthread_mutex_unlock(&t->lock);
	if (t->root)
		bench_die("idr: the tree is not empty after the find phase");
}

static void phase_conv(struct idr_run *r)
{
	struct tree t = { .lock = PTHREAD_MUTEX_INITIALIZER };

	pthread_mutex_lock(&t.lock);
	for (unsigned long i = 0; i < r->scale->conv_ids; i++)
		ida_set(&t, i);
	tree_destroy(&t, chunk_free);
	pthread_mutex_unlock(&t.lock);
}

static void *random_thread(void *arg)
{
	const struct idr_scale *s = arg;
	struct tree t = { .lock = PTHREAD_MUTEX_INITIALIZER };
	uint64_t set[2048 / 64];
	struct bench_rng rng = { (uint64_t)(uintptr_t)&t ^ 0x1da1da1dULL };

	urcu_memb_register_thread();
	for (unsigned round = 0; round < s->random_rounds; round++) {
		memset(set, 0, sizeof(set));
		for (unsigned i = 0; i < s->random_toggles; i++) {
			unsigned id = (unsigned)(bench_rng_next(&rng) >> 53);

			pthread_mutex_lock(&t.lock);
			if (set[id / 64] >> (id % 64) & 1)
				ida_clear(&t, id);
			else
				ida_set(&t, id);
			pthread_mutex_unlock(&t.lock);
			set[id / 64] ^= UINT64_C(1) << (id % 64);
		}
		pthread_mutex_lock(&t.lock);
		tree_destroy(&t, chunk_free);
		pthread_mutex_unlock(&t.lock);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static void *leak_thread(void *arg)
{
	struct idr_run *r = arg;
	struct tree *t = &r->shared;

	urcu_memb_register_thread();
	for (uint64_t i = 0; i < r->scale->leak_iterations; i++) {
		bool mine;

		pthread_mutex_lock(&t->lock);
		mine = tree_load(t, 0) == NULL;
		if (mine)
			ida_set(t, 128);
		pthread_mutex_unlock(&t->lock);
		if (mine) {
			pthread_mutex_lock(&t->lock);
			ida_clear(t, 128);
			pthread_mutex_unlock(&t->lock);
		}
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static void run_threads(void *(*fn)(void *), void *arg, unsigned n)
{
	pthread_t tids[IDR_THREADS];

	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&tids[i], NULL, fn, arg) != 0)
			bench_die("idr: pthread_create failed");
	for (unsigned i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
}

static void phase_end(struct idr_run *r, const char *name, uint64_t start)
{
	uint64_t rss = bench_rss_anon();

	uint64_t backlog = __atomic_exchange_n(&pending_max, 0, __ATOMIC_RELAXED);

	/* The peak so far, and what the nodes waiting for a grace period
	 * alone were at their most: the rest of the peak is the allocator's
	 * (and the program's base). */
	printf("idr %s held %.1f MiB peak %.1f MiB rcu-backlog-max %llu nodes %.1f MiB %.0f ms\n", name,
	       (rss > r->rss_before ? rss - r->rss_before : 0) / 1048576.0, bench_peak_rss() / 1048576.0,
	       (unsigned long long)backlog, backlog * (double)IDR_NODE_BYTES / 1048576.0,
	       (bench_now_ns() - start) / 1e6);
	printf("point %.3f %.0f 0\n", (bench_now_ns() - start) / 1e6, (double)(rss > r->rss_before ? rss - r->rss_before : 0));
	fflush(stdout);
}

uint64_t idr_model_run(const struct idr_mem *m, const struct idr_scale *s, uint64_t rss_before, uint64_t *ncalls)
{
	static struct idr_run r;
	uint64_t start = bench_now_ns(), t;

	mem = m;
	r.scale = s;
	r.rss_before = rss_before;
	pthread_mutex_init(&r.shared.lock, NULL);
	urcu_memb_register_thread();

	t = bench_now_ns();
	phase_idr(&r);
	urcu_memb_barrier();
	phase_end(&r, "idr", t);

	t = bench_now_ns();
	phase_find(&r, 0, 100000);
	phase_find(&r, 100000, 0);
	urcu_memb_barrier();
	phase_end(&r, "find", t);

	t = bench_now_ns();
	phase_conv(&r);
	urcu_memb_barrier();
	phase_end(&r, "conv", t);

	t = bench_now_ns();
	urcu_memb_unregister_thread(); /* random_thread registers its caller */
	random_thread((void *)s);
	run_threads(random_thread, (void *)s, IDR_THREADS);
	urcu_memb_barrier();
	phase_end(&r, "random", t);

	t = bench_now_ns();
	run_threads(leak_thread, &r, IDR_THREADS);
	urcu_memb_barrier();
	phase_end(&r, "leak", t);
	*ncalls = __atomic_load_n(&calls, __ATOMIC_RELAXED);
	return bench_now_ns() - start;
}
