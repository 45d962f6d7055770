/*
 * Unit tests of the page provider (numa/): buddy orders and alignment,
 * split and coalesce, page descriptors, exact allocations, reuse, fault
 * injection, exhaustion, return of memory to the OS, a synthetic 4-node
 * topology, init/fini cycles and concurrent use.  They call sk_numa_*
 * directly; nothing else of slabkit is initialised.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "numa/sk_numa.h"

#define GiB ((size_t)1 << 30)
#define BLOCK_PAGES ((size_t)1 << SK_MAX_ORDER)

static int tag_a, tag_b; /* owners: any distinct addresses do */

static void init_provider(size_t arena_bytes, unsigned fail_every)
{
	struct sk_numa_config cfg = { .arena_bytes_per_node = arena_bytes, .fail_every = fail_every };
	assert_int_equal(sk_numa_init(&cfg), 0);
}

static int teardown(void **state)
{
	sk_numa_fini();
	unsetenv("HWLOC_SYNTHETIC");
	return 0;
}

static struct sk_numa_stats stats(void)
{
	struct sk_numa_stats st;
	sk_numa_stats(&st);
	return st;
}

static uint64_t free_pages(const struct sk_numa_stats *st)
{
	uint64_t n = 0;
	for (unsigned k = 0; k <= SK_MAX_ORDER; k++)
		n += st->free_blocks[k] << k;
	return n;
}

/* Everything free and coalesced into whole 1 GiB blocks. */
static void assert_all_free(void)
{
	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_in_use, 0);
	assert_int_equal(free_pages(&st), st.pages_reserved);
	assert_int_equal(st.free_blocks[SK_MAX_ORDER], st.pages_reserved / BLOCK_PAGES);
}

static size_t resident_pages(void *addr, size_t npages)
{
	unsigned char *vec = calloc(npages, 1);
	assert_non_null(vec);
	assert_int_equal(mincore(addr, npages * SK_PAGE_SIZE, vec), 0);
	size_t n = 0;
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	free(vec);
	return n;
}

static void test_topology(void **state)
{
	init_provider(GiB, 0);
	assert_true(sk_numa_nodes() >= 1 && sk_numa_nodes() <= SK_MAX_NODES);
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	assert_true(sk_numa_cpus() >= (unsigned)conf);
	int cpu = sched_getcpu();
	assert_true(cpu >= 0 && (unsigned)cpu < sk_numa_cpus());
	assert_true(sk_numa_current_node() >= 0 && (unsigned)sk_numa_current_node() < sk_numa_nodes());
	assert_int_equal(sk_numa_cpu_node(sk_numa_cpus() + 1000), 0);
	size_t line = sk_numa_cache_line();
	assert_true(line >= 16 && (line & (line - 1)) == 0);
}

/* Every order at once: each aligned to its size, none overlapping, all
 * coalesced back afterwards. */
static void test_every_order_aligned(void **state)
{
	void *blk[SK_MAX_ORDER + 1];
	init_provider(2 * GiB, 0);
	for (unsigned k = 0; k <= SK_MAX_ORDER; k++) {
		blk[k] = sk_pages_alloc(0, k, SK_PAGE_SLAB, &tag_a);
		assert_non_null(blk[k]);
		assert_int_equal((uintptr_t)blk[k] % (SK_PAGE_SIZE << k), 0);
		assert_true(sk_addr_in_arena(blk[k]));
		struct sk_page *pg = sk_page_of(blk[k]);
		assert_ptr_equal(pg, sk_page_of_raw(blk[k]));
		assert_int_equal(pg->order, k);
		assert_int_equal(pg->npages, 1u << k);
	}
	for (unsigned i = 0; i <= SK_MAX_ORDER; i++)
		for (unsigned j = i + 1; j <= SK_MAX_ORDER; j++) {
			uintptr_t a = (uintptr_t)blk[i], b = (uintptr_t)blk[j];
			assert_true(a + (SK_PAGE_SIZE << i) <= b || b + (SK_PAGE_SIZE << j) <= a);
		}
	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_in_use, (1u << (SK_MAX_ORDER + 1)) - 1);
	for (unsigned k = 0; k <= SK_MAX_ORDER; k++)
		sk_pages_free(blk[k]);
	assert_all_free();
}

static void test_split_and_coalesce(void **state)
{
	init_provider(GiB, 0);
	/* One 1 GiB block per node; node 0's is the one split below. */
	const unsigned others = sk_numa_nodes() - 1;
	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_reserved, BLOCK_PAGES * sk_numa_nodes());
	assert_int_equal(st.free_blocks[SK_MAX_ORDER], sk_numa_nodes());

	char *a = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
	assert_non_null(a);
	st = stats();
	/* The 1 GiB block split into one free block of every lower order. */
	for (unsigned k = 0; k < SK_MAX_ORDER; k++)
		assert_int_equal(st.free_blocks[k], 1);
	assert_int_equal(st.free_blocks[SK_MAX_ORDER], others);

	char *b = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_b);
	assert_ptr_equal(b, a + SK_PAGE_SIZE); /* a's buddy */
	st = stats();
	assert_int_equal(st.free_blocks[0], 0);
	assert_int_equal(st.pages_in_use, 2);

	sk_pages_free(a);
	st = stats();
	assert_int_equal(st.free_blocks[0], 1); /* cannot merge: b is in use */
	assert_int_equal(st.free_blocks[SK_MAX_ORDER], others);
	sk_pages_free(b);
	assert_all_free();
	st = stats();
	for (unsigned k = 0; k < SK_MAX_ORDER; k++)
		assert_int_equal(st.free_blocks[k], 0);

	/* Two order-3 buddies give back one order-4 block. */
	char *c = sk_pages_alloc(0, 3, SK_PAGE_SLAB, &tag_a);
	char *d = sk_pages_alloc(0, 3, SK_PAGE_SLAB, &tag_a);
	assert_ptr_equal(d, c + 8 * SK_PAGE_SIZE);
	st = stats();
	assert_int_equal(st.free_blocks[3], 0);
	assert_int_equal(st.free_blocks[4], 1); /* the pair's buddy */
	sk_pages_free(c);
	st = stats();
	assert_int_equal(st.free_blocks[3], 1);
	assert_int_equal(st.free_blocks[4], 1);
	sk_pages_free(d);
	assert_all_free();
}

static void test_descriptors(void **state)
{
	init_provider(GiB, 0);
	char *p = sk_pages_alloc(0, 3, SK_PAGE_SLAB, &tag_a);
	assert_non_null(p);
	struct sk_page *head = sk_page_of(p);
	assert_non_null(head);
	assert_ptr_equal(sk_page_addr(head), p);
	assert_ptr_equal(sk_page_of(p + 5 * SK_PAGE_SIZE + 100), head);
	assert_ptr_equal(sk_page_of(p + 8 * SK_PAGE_SIZE - 1), head);
	assert_int_equal(head->kind, SK_PAGE_SLAB);
	assert_ptr_equal(head->owner, &tag_a);
	assert_int_equal(head->node, 0);
	assert_int_equal(head->npages, 8);
	assert_int_equal(head->order, 3);
	assert_int_equal(head->head_delta, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(head->bk[i], 0);
	struct sk_page *tail = sk_page_of_raw(p + 7 * SK_PAGE_SIZE);
	assert_int_equal(tail->head_delta, 7);
	assert_int_equal(tail->kind, SK_PAGE_SLAB);
	assert_int_equal(tail->node, 0);
	/* The page after the block is free. */
	assert_null(sk_page_of(p + 8 * SK_PAGE_SIZE));

	/* A second kind and owner, written by a backend into bk[]. */
	char *q = sk_pages_alloc(0, 0, SK_PAGE_META, &tag_b);
	char *q_buddy = sk_pages_alloc(0, 0, SK_PAGE_META, &tag_b);
	assert_int_equal(sk_page_of(q)->kind, SK_PAGE_META);
	assert_ptr_equal(sk_page_of(q)->owner, &tag_b);
	sk_page_of(q)->bk[2] = 42;
	sk_page_of(q)->bk[3] = 43;

	/* Outside the arenas. */
	int local;
	assert_null(sk_page_of(&local));
	assert_null(sk_page_of(NULL));

	sk_pages_free(p);
	assert_null(sk_page_of(p));
	assert_null(sk_page_of(p + 5 * SK_PAGE_SIZE));
	assert_null(sk_page_of(p + 8 * SK_PAGE_SIZE - 1));
	/* A stale bk[] does not leak into the next allocation (q's buddy is
	 * held, so q is reused as it is, not merged and released). */
	sk_pages_free(q);
	assert_ptr_equal(sk_pages_alloc(0, 0, SK_PAGE_LARGE, NULL), q);
	assert_int_equal(sk_page_of(q)->bk[2], 0);
	assert_int_equal(sk_page_of(q)->bk[3], 0);
	assert_null(sk_page_of(q)->owner);
	sk_pages_free(q);
	sk_pages_free(q_buddy);
	assert_all_free();
}

static void test_exact(void **state)
{
	init_provider(GiB, 0);
	char *p = sk_pages_alloc_exact(0, 5, SK_PAGE_LARGE, &tag_a);
	assert_non_null(p);
	struct sk_page *head = sk_page_of(p);
	assert_int_equal(head->npages, 5);
	assert_int_equal(head->order, 3);
	assert_ptr_equal(sk_page_of(p + 4 * SK_PAGE_SIZE), head);
	assert_null(sk_page_of(p + 5 * SK_PAGE_SIZE)); /* the tail went back */

	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_in_use, 5);
	assert_int_equal(free_pages(&st) + 5, st.pages_reserved);
	assert_int_equal(st.free_blocks[0], 1); /* page 5 */
	assert_int_equal(st.free_blocks[1], 1); /* pages 6-7 */
	assert_int_equal(st.free_blocks[2], 0);

	/* The tail is really free: the next single page is page 5. */
	char *q = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_b);
	assert_ptr_equal(q, p + 5 * SK_PAGE_SIZE);
	sk_pages_free(p);
	st = stats();
	assert_int_equal(st.pages_in_use, 1);
	assert_int_equal(free_pages(&st) + 1, st.pages_reserved);
	sk_pages_free(q);
	assert_all_free();

	/* Sizes whose tail and whose freeing cross the release order. */
	static const size_t sizes[] = { 1, 3, 511, 513, 600, 1536, 3 * 512 + 7, BLOCK_PAGES - 1, BLOCK_PAGES };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *r = sk_pages_alloc_exact(0, sizes[i], SK_PAGE_LARGE, &tag_a);
		assert_non_null(r);
		assert_int_equal(sk_page_of(r)->npages, sizes[i]);
		assert_ptr_equal(sk_page_of(r + sizes[i] * SK_PAGE_SIZE - 1), sk_page_of(r));
		st = stats();
		assert_int_equal(st.pages_in_use, sizes[i]);
		assert_int_equal(free_pages(&st) + sizes[i], st.pages_reserved);
		sk_pages_free(r);
		assert_all_free();
	}
}

static void test_reuse(void **state)
{
	init_provider(GiB, 0);
	char *keep = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
	for (unsigned k = 0; k <= 12; k += 4) {
		void *p = sk_pages_alloc(0, k, SK_PAGE_SLAB, &tag_a);
		assert_non_null(p);
		sk_pages_free(p);
		void *q = sk_pages_alloc(0, k, SK_PAGE_SLAB, &tag_b);
		assert_ptr_equal(q, p);
		assert_ptr_equal(sk_page_of(q)->owner, &tag_b);
		sk_pages_free(q);
	}
	sk_pages_free(keep);
	assert_all_free();
}

static void test_fail_injection(void **state)
{
	init_provider(GiB, 3); /* from the config: every third call fails */
	void *p[9];
	struct sk_numa_stats before = stats();
	for (int i = 0; i < 9; i++) {
		p[i] = i % 2 ? sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a)
			     : sk_pages_alloc_exact(SK_NODE_ANY, 3, SK_PAGE_LARGE, &tag_a);
		if (i % 3 == 2)
			assert_null(p[i]);
		else
			assert_non_null(p[i]);
	}
	struct sk_numa_stats after = stats();
	assert_int_equal(after.alloc_calls - before.alloc_calls, 9);
	assert_int_equal(after.alloc_failures - before.alloc_failures, 3);

	sk_pages_set_fail_every(1);
	assert_null(sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a));
	sk_pages_set_fail_every(0);
	for (int i = 0; i < 9; i++) {
		void *q = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
		assert_non_null(q);
		sk_pages_free(q);
	}
	for (int i = 0; i < 9; i++)
		if (p[i])
			sk_pages_free(p[i]);
	assert_all_free();
}

static void test_exhaustion_and_bad_arguments(void **state)
{
	init_provider(GiB, 0);
	enum { N = 4 };
	void *quarter[N];
	for (int i = 0; i < N; i++) {
		quarter[i] = sk_pages_alloc(0, SK_MAX_ORDER - 2, SK_PAGE_LARGE, &tag_a);
		assert_non_null(quarter[i]);
	}
	struct sk_numa_stats before = stats();
	assert_int_equal(before.pages_in_use, before.pages_reserved);
	assert_null(sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a));
	assert_null(sk_pages_alloc_exact(0, 1, SK_PAGE_SLAB, &tag_a));
	assert_int_equal(stats().alloc_failures - before.alloc_failures, 2);
	/* SK_NODE_ANY fails only when every node is full. */
	void *any = sk_pages_alloc(SK_NODE_ANY, 0, SK_PAGE_SLAB, &tag_a);
	if (sk_numa_nodes() == 1) {
		assert_null(any);
		assert_int_equal(stats().alloc_failures - before.alloc_failures, 3);
	} else {
		assert_non_null(any);
		assert_int_not_equal(sk_page_of(any)->node, 0);
		sk_pages_free(any);
	}

	/* Free one quarter: it is usable again, page by page. */
	sk_pages_free(quarter[1]);
	void *p = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
	assert_ptr_equal(p, quarter[1]);
	sk_pages_free(p);
	for (int i = 0; i < N; i++)
		if (i != 1)
			sk_pages_free(quarter[i]);
	assert_all_free();

	/* The whole arena in one piece, then nothing more. */
	void *all = sk_pages_alloc(0, SK_MAX_ORDER, SK_PAGE_LARGE, &tag_a);
	assert_non_null(all);
	assert_null(sk_pages_alloc_exact(0, 1, SK_PAGE_LARGE, &tag_a));
	sk_pages_free(all);

	/* Out of range requests. */
	assert_null(sk_pages_alloc(0, SK_MAX_ORDER + 1, SK_PAGE_LARGE, &tag_a));
	assert_null(sk_pages_alloc_exact(0, BLOCK_PAGES + 1, SK_PAGE_LARGE, &tag_a));
	assert_null(sk_pages_alloc_exact(0, 0, SK_PAGE_LARGE, &tag_a));
	assert_null(sk_pages_alloc((int)sk_numa_nodes(), 0, SK_PAGE_SLAB, &tag_a));
	assert_null(sk_pages_alloc(-2, 0, SK_PAGE_SLAB, &tag_a));
	assert_null(sk_pages_alloc(0, 0, SK_PAGE_FREE, &tag_a));
	assert_all_free();
}

/* Misuse is reported on stderr and ignored, never corrupts the arena. */
static void test_bad_free(void **state)
{
	init_provider(GiB, 0);
	char *p = sk_pages_alloc(0, 2, SK_PAGE_SLAB, &tag_a);
	assert_non_null(p);
	sk_pages_free(NULL);
	sk_pages_free(p + SK_PAGE_SIZE); /* a tail page */
	sk_pages_free(p + 100);          /* inside the head page */
	int local;
	sk_pages_free(&local);           /* not in an arena */
	assert_ptr_equal(sk_page_of(p + SK_PAGE_SIZE), sk_page_of(p));
	assert_int_equal(stats().pages_in_use, 4);
	sk_pages_free(p);
	sk_pages_free(p);                /* double free */
	assert_all_free();
}

static void test_release_to_os(void **state)
{
	init_provider(GiB, 0);
	const size_t npages = (4u << 20) / SK_PAGE_SIZE; /* 4 MiB, order 10 */
	char *p = sk_pages_alloc(0, 10, SK_PAGE_LARGE, &tag_a);
	assert_non_null(p);
	memset(p, 0x5a, npages * SK_PAGE_SIZE);
	assert_int_equal(resident_pages(p, npages), npages);
	uint64_t released = stats().pages_released;
	sk_pages_free(p);
	struct sk_numa_stats st = stats();
	assert_true(st.pages_released >= released + npages);
	assert_int_equal(st.pages_free_dirty, 0);
	assert_int_equal(resident_pages(p, npages), 0);

	/* Small free blocks stay resident until sk_pages_release_free. */
	char *a = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
	char *b = sk_pages_alloc(0, 0, SK_PAGE_SLAB, &tag_a);
	assert_ptr_equal(b, a + SK_PAGE_SIZE);
	memset(a, 1, SK_PAGE_SIZE);
	memset(b, 2, SK_PAGE_SIZE);
	released = stats().pages_released;
	sk_pages_free(a); /* b holds its buddy: a stays a dirty order-0 block */
	st = stats();
	assert_int_equal(st.pages_free_dirty, 1);
	assert_int_equal(st.pages_released, released);
	assert_int_equal(resident_pages(a, 1), 1);
	sk_pages_release_free();
	st = stats();
	assert_int_equal(st.pages_free_dirty, 0);
	assert_int_equal(st.pages_released, released + 1);
	assert_int_equal(resident_pages(a, 1), 0);
	assert_int_equal(resident_pages(b, 1), 1);
	assert_int_equal(b[SK_PAGE_SIZE - 1], 2); /* b untouched */
	sk_pages_free(b);
	assert_int_equal(resident_pages(b, 1), 0); /* the 1 GiB block formed again */
	assert_all_free();

	/* Two dirty halves of a 2 MiB block: both go when it forms. */
	char *lo = sk_pages_alloc(0, SK_RELEASE_ORDER - 1, SK_PAGE_LARGE, &tag_a);
	char *hi = sk_pages_alloc(0, SK_RELEASE_ORDER - 1, SK_PAGE_LARGE, &tag_a);
	const size_t half = (size_t)1 << (SK_RELEASE_ORDER - 1);
	assert_ptr_equal(hi, lo + half * SK_PAGE_SIZE);
	memset(lo, 3, half * SK_PAGE_SIZE);
	memset(hi, 4, half * SK_PAGE_SIZE);
	sk_pages_free(lo);
	assert_int_equal(stats().pages_free_dirty, half);
	assert_int_equal(resident_pages(lo, half), half);
	released = stats().pages_released;
	sk_pages_free(hi);
	assert_int_equal(stats().pages_released, released + 2 * half);
	assert_int_equal(resident_pages(lo, 2 * half), 0);
	assert_all_free();
}

/* Free runs under 2 MiB stay resident when they form, and go back to the
 * OS once they have been free for a whole period of the idle-release pass
 * (what the maintenance thread calls each tick). */
static void test_release_idle(void **state)
{
	(void)state;
	init_provider(GiB, 0);
	char *run = sk_pages_alloc(0, 4, SK_PAGE_SLAB, &tag_a);   /* 64 KiB */
	char *pin = sk_pages_alloc(0, 4, SK_PAGE_SLAB, &tag_a);   /* its buddy, kept */
	assert_non_null(run);
	assert_non_null(pin);
	memset(run, 1, 16 * SK_PAGE_SIZE);
	memset(pin, 1, 16 * SK_PAGE_SIZE);
	sk_pages_free(run);
	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_free_dirty, 16);
	assert_int_equal(resident_pages(run, 16), 16);

	/* The first pass only notes it: it became free during this period. */
	assert_int_equal(sk_pages_release_idle(), 0);
	assert_int_equal(resident_pages(run, 16), 16);
	/* Still free a whole period later: returned, in one madvise. */
	uint64_t released = stats().pages_released;
	struct sk_numa_node_stats ns0, ns1;
	assert_int_equal(sk_numa_node_stats(0, &ns0), 0);
	assert_int_equal(sk_pages_release_idle(), 16);
	assert_int_equal(sk_numa_node_stats(0, &ns1), 0);
	assert_int_equal(ns1.madvise_calls, ns0.madvise_calls + 1);
	st = stats();
	assert_int_equal(st.pages_free_dirty, 0);
	assert_int_equal(st.pages_released, released + 16);
	assert_int_equal(resident_pages(run, 16), 0);
	/* Live pages are never touched. */
	assert_int_equal(resident_pages(pin, 16), 16);
	sk_pages_free(pin);
}

static void test_multi_node_synthetic(void **state)
{
	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	init_provider(GiB, 0);
	assert_int_equal(sk_numa_nodes(), 4);
	assert_true(sk_numa_cpus() >= 8);
	assert_int_equal(sk_numa_cpu_node(0), 0);
	assert_int_equal(sk_numa_cpu_node(3), 1);
	assert_int_equal(sk_numa_cpu_node(7), 3);
	struct sk_numa_stats st = stats();
	assert_int_equal(st.pages_reserved, 4 * BLOCK_PAGES);
	assert_int_equal(sk_arena_size, 4 * GiB);

	char *p = sk_pages_alloc(3, 2, SK_PAGE_SLAB, &tag_a);
	assert_non_null(p);
	assert_true((uintptr_t)p >= sk_arena_base + 3 * GiB && (uintptr_t)p < sk_arena_base + 4 * GiB);
	assert_int_equal(sk_page_of(p)->node, 3);
	assert_int_equal(sk_page_of_raw(p + 3 * SK_PAGE_SIZE)->node, 3);
	sk_pages_free(p);

	/* A specific node never spills over; SK_NODE_ANY does. */
	char *whole = sk_pages_alloc(3, SK_MAX_ORDER, SK_PAGE_LARGE, &tag_a);
	assert_non_null(whole);
	assert_null(sk_pages_alloc(3, 0, SK_PAGE_SLAB, &tag_a));
	int local = sk_numa_current_node();
	char *local_whole = sk_pages_alloc(local, SK_MAX_ORDER, SK_PAGE_LARGE, &tag_a);
	assert_non_null(local_whole);
	char *any = sk_pages_alloc(SK_NODE_ANY, 0, SK_PAGE_SLAB, &tag_a);
	assert_non_null(any);
	int spilled = sk_page_of(any)->node;
	assert_true(spilled != local && spilled != 3);
	uintptr_t lo = sk_arena_base + (uintptr_t)spilled * GiB;
	assert_true((uintptr_t)any >= lo && (uintptr_t)any < lo + GiB);
	sk_pages_free(any);
	sk_pages_free(local_whole);
	/* With room on the local node, SK_NODE_ANY stays local. */
	any = sk_pages_alloc(SK_NODE_ANY, 0, SK_PAGE_SLAB, &tag_a);
	assert_int_equal(sk_page_of(any)->node, sk_numa_current_node());
	sk_pages_free(any);
	sk_pages_free(whole);
	assert_all_free();
	assert_null(sk_pages_alloc(4, 0, SK_PAGE_SLAB, &tag_a));
}

/* A node with more memory than the 64 GiB default gets an arena as large
 * as its memory (hwloc's local_memory), so all of it can be used; the
 * address -> node arithmetic still holds past the first 64 GiB. */
static void test_arena_sized_from_node_memory(void **state)
{
	setenv("HWLOC_SYNTHETIC", "node:2(memory=100GB) core:1 pu:1", 1);
	assert_int_equal(sk_numa_init(NULL), 0);
	assert_int_equal(sk_numa_nodes(), 2);
	uint64_t mem = sk_numa_node_memory(0);
	assert_true(mem >= (uint64_t)90 * GiB); /* hwloc: 100e9 bytes */
	struct sk_numa_stats st = stats();
	uint64_t per_node = (st.pages_reserved / 2) << SK_PAGE_SHIFT;
	assert_true(per_node >= mem);
	assert_true(per_node > (uint64_t)64 * GiB);
	assert_int_equal(per_node % GiB, 0);
	/* Past the default's end: still node 0, then node 1. */
	char *base = (char *)sk_arena_base;
	assert_int_equal(sk_numa_addr_node(base + 64 * GiB + 4096), 0);
	assert_int_equal(sk_numa_addr_node(base + per_node - 1), 0);
	assert_int_equal(sk_numa_addr_node(base + per_node), 1);
	assert_int_equal(sk_numa_addr_node(base + 2 * per_node - 1), 1);
	assert_int_equal(sk_numa_addr_node(base + 2 * per_node), -1);
	/* An explicit size still wins. */
	sk_numa_fini();
	init_provider(GiB, 0);
	assert_int_equal(stats().pages_reserved, 2 * BLOCK_PAGES);
}

/* With the address space limited, the 64 GiB default halves until the
 * kernel accepts it, and the smaller arena works. */
static void test_reservation_halves(void **state)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	skip(); /* sanitizers need their own huge mappings under the limit */
#endif
	/* Room for about 3 GiB per node: far less than 64 GiB each. */
	init_provider(GiB, 0);
	const rlim_t room = (rlim_t)(sk_numa_nodes() + 1) * 3 * GiB;
	sk_numa_fini();
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld", &pages), 1);
	fclose(f);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + room;
	assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
	int err = sk_numa_init(NULL);
	assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
	assert_int_equal(err, 0);

	struct sk_numa_stats st = stats();
	uint64_t per_node = st.pages_reserved / sk_numa_nodes();
	assert_true(per_node >= BLOCK_PAGES && per_node < 64 * BLOCK_PAGES);
	assert_int_equal(per_node % BLOCK_PAGES, 0);
	void *p = sk_pages_alloc(0, SK_MAX_ORDER, SK_PAGE_LARGE, &tag_a);
	assert_non_null(p);
	sk_pages_free(p);
	assert_all_free();
}

static void test_init_fini_cycles(void **state)
{
	char *old = NULL;
	for (int round = 0; round < 3; round++) {
		assert_false(sk_addr_in_arena(old));
		assert_null(sk_page_map);
		init_provider(round == 0 ? 0 : GiB, 0); /* round 0: the 64 GiB default (or less) */
		assert_int_equal(sk_numa_init(NULL), -EALREADY);
		struct sk_numa_stats st = stats();
		assert_int_equal(st.pages_in_use, 0);
		assert_int_equal(st.alloc_calls, 0);
		assert_true(st.pages_reserved >= BLOCK_PAGES * sk_numa_nodes());
		assert_int_equal(sk_arena_base % GiB, 0);
		old = sk_pages_alloc(0, 1, SK_PAGE_SLAB, &tag_a);
		assert_non_null(old);
		memset(old, 7, 2 * SK_PAGE_SIZE);
		assert_true(sk_addr_in_arena(old));
		sk_pages_free(old);
		sk_numa_fini();
	}
	assert_int_equal(sk_arena_base, 0);
	assert_int_equal(sk_arena_size, 0);
	assert_int_equal(sk_numa_nodes(), 0);
	sk_numa_fini(); /* harmless twice */
}

/* --- concurrency --- */

enum { THREADS = 4, HELD = 64, ROUNDS = 20000 };

struct worker {
	pthread_t tid;
	unsigned seed;
	unsigned errors;
	unsigned allocs;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char *held[HELD] = { 0 };
	unsigned orders[HELD] = { 0 };

	for (unsigned r = 0; r < ROUNDS; r++) {
		unsigned slot = rand_r(&w->seed) % HELD;
		if (held[slot]) {
			/* Our pattern survived and the descriptor still says ours. */
			char *last = held[slot] + (SK_PAGE_SIZE << orders[slot]) - sizeof(w);
			struct sk_page *pg = sk_page_of(last);
			if (!pg || pg->owner != w || *(struct worker **)held[slot] != w ||
			    *(struct worker **)last != w)
				w->errors++;
			sk_pages_free(held[slot]);
			held[slot] = NULL;
		} else {
			/* Mostly small blocks; one in 16 of 2-4 MiB, whose free
			 * madvises it while other threads allocate around it. */
			unsigned order = rand_r(&w->seed) % 16 ? rand_r(&w->seed) % 5
							      : SK_RELEASE_ORDER + rand_r(&w->seed) % 2;
			int node = rand_r(&w->seed) % 2 ? SK_NODE_ANY : 0;
			char *p = sk_pages_alloc(node, order, SK_PAGE_SLAB, w);
			w->allocs++;
			held[slot] = p;
			orders[slot] = order;
			if (!p) {
				w->errors++;
				continue;
			}
			*(struct worker **)p = w;
			*(struct worker **)(p + (SK_PAGE_SIZE << order) - sizeof(w)) = w;
		}
	}
	for (unsigned i = 0; i < HELD; i++)
		if (held[i])
			sk_pages_free(held[i]);
	return NULL;
}

static void test_concurrent(void **state)
{
	init_provider(GiB, 0);
	struct worker w[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .seed = 12345 + i };
		assert_int_equal(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
	}
	/* Sample the stats while they run: they must always add up. */
	for (int i = 0; i < 200; i++) {
		struct sk_numa_stats st = stats();
		assert_true(st.pages_in_use + free_pages(&st) <= st.pages_reserved);
		sched_yield();
	}
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(w[i].tid, NULL), 0);
		assert_int_equal(w[i].errors, 0);
	}
	assert_all_free();
	struct sk_numa_stats st = stats();
	assert_int_equal(st.alloc_failures, 0);
	assert_true(st.pages_released > 0);
	uint64_t allocs = 0;
	for (unsigned i = 0; i < THREADS; i++)
		allocs += w[i].allocs;
	assert_int_equal(st.alloc_calls, allocs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_topology, teardown),
		cmocka_unit_test_teardown(test_every_order_aligned, teardown),
		cmocka_unit_test_teardown(test_split_and_coalesce, teardown),
		cmocka_unit_test_teardown(test_descriptors, teardown),
		cmocka_unit_test_teardown(test_exact, teardown),
		cmocka_unit_test_teardown(test_reuse, teardown),
		cmocka_unit_test_teardown(test_fail_injection, teardown),
		cmocka_unit_test_teardown(test_exhaustion_and_bad_arguments, teardown),
		cmocka_unit_test_teardown(test_bad_free, teardown),
		cmocka_unit_test_teardown(test_release_to_os, teardown),
		cmocka_unit_test_teardown(test_release_idle, teardown),
		cmocka_unit_test_teardown(test_multi_node_synthetic, teardown),
		cmocka_unit_test_teardown(test_arena_sized_from_node_memory, teardown),
		cmocka_unit_test_teardown(test_reservation_halves, teardown),
		cmocka_unit_test_teardown(test_init_fini_cycles, teardown),
		cmocka_unit_test_teardown(test_concurrent, teardown),
	};
	return cmocka_run_group_tests_name("numa", tests, NULL, NULL);
}
