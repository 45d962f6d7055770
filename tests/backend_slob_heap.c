/*
 * SLOB backend: the first-fit heap.  Splitting, coalescing with both
 * neighbours, the three lists, pages going back the moment they empty,
 * alignment (kmalloc powers of two, SLAB_HWCACHE_ALIGN, explicit align),
 * kfree of a cache object, the constructor running on every carve, whole-
 * page objects, and misuse refused without harm to the heap.
 *
 * Reads the backend's page and pool state through backends/slob/slob_int.h.
 * Runs with SLABKIT_BACKEND=slob.
 */
#include <slabkit/linux/slab.h>

#include "backends/slob/slob_int.h"
#include "sk_test.h"

#define PAGE 4096u
#define UNITS_PER_PAGE (PAGE / 8)

static struct sk_slob_page_info page_info(const void *p)
{
	struct sk_slob_page_info info;

	if (!sk_slob_debug_page(p, &info))
		fail_msg("%p is not on a SLOB page", p);
	return info;
}

static struct sk_slob_pool_info kmalloc_pool(void)
{
	struct sk_slob_pool_info info;

	assert_true(sk_slob_debug_pool(NULL, &info));
	return info;
}

static struct sk_slob_pool_info cache_pool(struct kmem_cache *s)
{
	struct sk_slob_pool_info info;

	assert_true(sk_slob_debug_pool((struct sk_cache *)s, &info));
	return info;
}

static uintptr_t page_offset(const void *p)
{
	return (uintptr_t)p & (PAGE - 1);
}

/* Every test starts and ends with an empty kmalloc pool. */
static void assert_kmalloc_pool_empty(void)
{
	struct sk_slob_pool_info info = kmalloc_pool();

	if (info.pages != 0)
		fail_msg("the kmalloc pool still holds %llu pages", (unsigned long long)info.pages);
}

static void test_backend_is_slob(void **state)
{
	(void)state;
	assert_string_equal(slabkit_backend(), "slob");
	assert_kmalloc_pool_empty();
}

/* Two small requests are carved one after the other from the same page. */
static void test_split_adjacent(void **state)
{
	(void)state;
	assert_kmalloc_pool_empty();
	char *a = kmalloc(40, GFP_KERNEL);
	char *b = kmalloc(40, GFP_KERNEL);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_equal(sk_page_of(a), sk_page_of(b));
	/* A fresh page, first fit: a's header at offset 0, b's right after
	 * a's 40 bytes. */
	assert_int_equal(page_offset(a), 8);
	assert_int_equal(b - a, 40 + 8);
	assert_int_equal(ksize(a), 40);

	struct sk_slob_page_info info = page_info(a);
	assert_int_equal(info.kind, SLOB_KIND_KMALLOC);
	assert_int_equal(info.free_blocks, 1);
	assert_int_equal(info.free_units, UNITS_PER_PAGE - 2 * 6);
	assert_int_equal(info.largest_free, UNITS_PER_PAGE - 2 * 6);
	assert_int_equal(info.list, SLOB_LIST_LARGE);

	/* Sizes round up to the 8-byte unit, and ksize says so. */
	char *c = kmalloc(41, GFP_KERNEL);
	assert_ptr_equal(c, b + 48);
	assert_int_equal(ksize(c), 48);
	kfree(a);
	kfree(b);
	kfree(c);
	assert_kmalloc_pool_empty();
}

/* Free A and C, then B: the three become one free block again. */
static void test_coalesce_both_neighbours(void **state)
{
	(void)state;
	assert_kmalloc_pool_empty();
	char *o[4];
	for (int i = 0; i < 4; i++) {
		o[i] = kmalloc(100, GFP_KERNEL); /* 104 bytes + header: 14 units */
		assert_non_null(o[i]);
		if (i)
			assert_ptr_equal(o[i], o[i - 1] + 112);
	}
	/* Free blocks: the tail of the page after o[3]. */
	assert_int_equal(page_info(o[0]).free_blocks, 1);
	kfree(o[0]);
	kfree(o[2]);
	struct sk_slob_page_info before = page_info(o[1]);
	assert_int_equal(before.free_blocks, 3); /* A, C, the tail */
	kfree(o[1]);
	struct sk_slob_page_info after = page_info(o[3]);
	/* Merged with neither: 4 blocks; with one: 3; with both: 2. */
	assert_int_equal(after.free_blocks, 2);
	assert_int_equal(after.free_units, before.free_units + 14);
	/* The merged block starts at A's header and spans all three: a request
	 * of exactly its size is carved there (first fit). */
	char *abc = kmalloc(3 * 112 - 8, GFP_KERNEL);
	assert_ptr_equal(abc, o[0]);
	assert_int_equal(page_info(o[3]).free_blocks, 1);
	kfree(abc);
	/* D merges with the block before it and the tail after it: the page
	 * is empty and goes back. */
	kfree(o[3]);
	assert_kmalloc_pool_empty();

	/* The same for a cache's headerless objects. */
	struct kmem_cache *s = kmem_cache_create("slob_coalesce", 64, 0, 0, NULL);
	assert_non_null(s);
	char *c[4];
	for (int i = 0; i < 4; i++) {
		c[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(c[i]);
		if (i)
			assert_ptr_equal(c[i], c[i - 1] + 64);
	}
	kmem_cache_free(s, c[0]);
	kmem_cache_free(s, c[2]);
	assert_int_equal(page_info(c[3]).free_blocks, 3);
	kmem_cache_free(s, c[1]);
	assert_int_equal(page_info(c[3]).free_blocks, 2);
	assert_int_equal(page_info(c[3]).free_units, UNITS_PER_PAGE - 8);
	kmem_cache_free(s, c[3]);
	assert_int_equal(cache_pool(s).pages, 0);
	kmem_cache_destroy(s);
}

/*
 * Three pages whose largest free blocks fall in the three classes; then
 * requests of 100 B, 500 B and 2000 B each land on the page of their own
 * list, not on a larger block elsewhere and not on a new page.
 */
static void test_three_lists(void **state)
{
	(void)state;
	assert_kmalloc_pool_empty();
	/* Leaves 4096 - 3888 = 208 B free: serves only requests < 256 B. */
	char *fill_small = kmalloc(3880, GFP_KERNEL);
	/* Leaves 4096 - 3408 = 688 B: requests < 1 KiB. */
	char *fill_medium = kmalloc(3400, GFP_KERNEL);
	/* Leaves 4096 - 1808 = 2288 B: larger requests. */
	char *fill_large = kmalloc(1800, GFP_KERNEL);
	assert_non_null(fill_small);
	assert_non_null(fill_medium);
	assert_non_null(fill_large);
	struct sk_page *p_small = sk_page_of(fill_small), *p_medium = sk_page_of(fill_medium),
		       *p_large = sk_page_of(fill_large);
	assert_true(p_small != p_medium && p_medium != p_large && p_small != p_large);
	assert_int_equal(page_info(fill_small).list, SLOB_LIST_SMALL);
	assert_int_equal(page_info(fill_medium).list, SLOB_LIST_MEDIUM);
	assert_int_equal(page_info(fill_large).list, SLOB_LIST_LARGE);
	struct sk_slob_pool_info pool = kmalloc_pool();
	assert_int_equal(pool.pages, 3);
	assert_int_equal(pool.pages_listed[SLOB_LIST_SMALL - 1], 1);
	assert_int_equal(pool.pages_listed[SLOB_LIST_MEDIUM - 1], 1);
	assert_int_equal(pool.pages_listed[SLOB_LIST_LARGE - 1], 1);

	char *r100 = kmalloc(100, GFP_KERNEL);
	char *r500 = kmalloc(500, GFP_KERNEL);
	char *r2000 = kmalloc(2000, GFP_KERNEL);
	assert_ptr_equal(sk_page_of(r100), p_small);
	assert_ptr_equal(sk_page_of(r500), p_medium);
	assert_ptr_equal(sk_page_of(r2000), p_large);
	assert_int_equal(kmalloc_pool().pages, 3);

	/* What is left on each page moved it down a list (or off them). */
	assert_int_equal(page_info(fill_small).largest_free, (208 - 112) / 8);
	assert_int_equal(page_info(fill_small).list, SLOB_LIST_SMALL);
	assert_int_equal(page_info(fill_medium).largest_free, (688 - 512) / 8);
	assert_int_equal(page_info(fill_medium).list, SLOB_LIST_SMALL);
	assert_int_equal(page_info(fill_large).largest_free, (2288 - 2008) / 8);
	assert_int_equal(page_info(fill_large).list, SLOB_LIST_MEDIUM);

	/* A request no page can serve takes a new page. */
	char *r1500 = kmalloc(1500, GFP_KERNEL);
	assert_true(sk_page_of(r1500) != p_small && sk_page_of(r1500) != p_medium &&
		    sk_page_of(r1500) != p_large);
	assert_int_equal(kmalloc_pool().pages, 4);
	/* A small request with no room on the small list uses a larger block
	 * before it takes a page. */
	char *r200 = kmalloc(200, GFP_KERNEL);
	assert_int_equal(kmalloc_pool().pages, 4);

	char *all[] = { fill_small, fill_medium, fill_large, r100, r500, r2000, r1500, r200 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		kfree(all[i]);
	assert_kmalloc_pool_empty();
}

/* Allocate n random-size kmalloc blocks, then free them in a random order,
 * checking that the pool's page count only ever goes down and ends at 0.
 * Returns the most pages the pool held. */
static uint64_t kmalloc_cycle(void **p, int n, uint64_t seed)
{
	uint64_t rng = seed;
	for (int i = 0; i < n; i++) {
		size_t size = 8 + sk_rand(&rng) % 1017;
		p[i] = kmalloc(size, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], 0x5a, size);
	}
	uint64_t most = kmalloc_pool().pages, last = most;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(sk_rand(&rng) % (uint64_t)(i + 1));
		void *t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	for (int i = 0; i < n; i++) {
		kfree(p[i]);
		uint64_t now = kmalloc_pool().pages;
		assert_true(now <= last);
		last = now;
	}
	assert_kmalloc_pool_empty();
	return most;
}

/* A page goes back to the page provider the moment its last block is freed. */
static void test_pages_returned_when_empty(void **state)
{
	(void)state;
	enum { N = 4000 };
	assert_kmalloc_pool_empty();
	void **p = calloc(N, sizeof(*p));
	assert_non_null(p);
	struct slabkit_stats s0, s1, s2;
	uint64_t allocs0, frees0, allocs1, frees1;

	slabkit_stats(&s0);
	sk_slob_debug_page_counts(&allocs0, &frees0);
	uint64_t most = kmalloc_cycle(p, N, 0x5eed);
	assert_true(most > 0);
	sk_slob_debug_page_counts(&allocs1, &frees1);
	assert_int_equal(allocs1 - allocs0, most);
	assert_int_equal(frees1 - frees0, most);
	/* The provider has every heap page back.  What stays in use is the
	 * lists' arrays (a few metadata pages), kept for the next cycle. */
	slabkit_stats(&s1);
	assert_true(s1.pages_in_use < s0.pages_in_use + most / 64 + 4);
	/* A second cycle of the same work leaves exactly as much in use. */
	assert_int_equal(kmalloc_cycle(p, N, 0x5eed), most);
	slabkit_stats(&s2);
	assert_int_equal(s2.pages_in_use, s1.pages_in_use);

	/* A cache's pages likewise, counted as the cache's slabs and pages. */
	struct kmem_cache *s = kmem_cache_create("slob_return", 200, 0, 0, NULL);
	assert_non_null(s);
	for (int i = 0; i < N; i++) {
		p[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(p[i]);
	}
	struct slabkit_cache_info ci = sk_info("slob_return");
	assert_int_equal(ci.in_use, N);
	assert_int_equal(ci.pages, cache_pool(s).pages);
	assert_int_equal(ci.pages, (N + 19) / 20); /* 20 objects of 200 B per page */
	for (int i = 0; i < N; i += 2)
		kmem_cache_free(s, p[i]);
	for (int i = 1; i < N; i += 2)
		kmem_cache_free(s, p[i]);
	ci = sk_info("slob_return");
	assert_int_equal(ci.in_use, 0);
	assert_int_equal(ci.pages, 0);
	assert_int_equal(ci.slabs, 0);
	assert_int_equal(kmem_cache_shrink(s), 0);
	kmem_cache_destroy(s);
	free(p);
}

static void check_cache_align(const char *name, unsigned size, unsigned align, slab_flags_t flags,
			      size_t want)
{
	enum { N = 300 };
	struct kmem_cache *s = kmem_cache_create(name, size, align, flags, NULL);
	void *o[N];

	if (!s)
		fail_msg("kmem_cache_create(%s, %u, %u) failed", name, size, align);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			if (round && i % 3)
				continue; /* round 1 refills the holes round 0 left */
			o[i] = kmem_cache_alloc(s, GFP_KERNEL);
			assert_non_null(o[i]);
			if ((uintptr_t)o[i] % want)
				fail_msg("%s (size %u, align %u): object %p not aligned to %zu", name,
					 size, align, o[i], want);
			sk_fill(o[i], size, (uint64_t)i);
		}
		if (!round)
			for (int i = 0; i < N; i += 3)
				kmem_cache_free(s, o[i]);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(sk_check(o[i], size, (uint64_t)i), SIZE_MAX);
	assert_true(sk_disjoint(o, N, size));
	for (int i = 0; i < N; i++)
		kmem_cache_free(s, o[i]);
	assert_int_equal(sk_info(name).pages, 0);
	kmem_cache_destroy(s);
}

static void test_alignment(void **state)
{
	(void)state;
	assert_kmalloc_pool_empty();
	/* kmalloc: powers of two aligned to their size, in a heap whose
	 * blocks are otherwise packed at 8 bytes. */
	void *odd[64], *pow[64];
	int n = 0;
	for (int round = 0; round < 4; round++) {
		for (size_t size = 16; size <= 2048; size *= 2) {
			odd[n] = kmalloc(24 + 8 * (size_t)round, GFP_KERNEL);
			pow[n] = kmalloc(size, GFP_KERNEL);
			assert_non_null(odd[n]);
			assert_non_null(pow[n]);
			assert_int_equal((uintptr_t)odd[n] % 8, 0);
			if ((uintptr_t)pow[n] % size)
				fail_msg("kmalloc(%zu) = %p is not aligned to its size", size, pow[n]);
			assert_true(ksize(pow[n]) >= size);
			n++;
		}
	}
	for (int i = 0; i < n; i++) {
		kfree(odd[i]);
		kfree(pow[i]);
	}
	assert_kmalloc_pool_empty();

	/* Caches: SLAB_HWCACHE_ALIGN (the line, halved while the object fits
	 * in half of it) and explicit alignments. */
	static const unsigned hw_sizes[] = { 20, 33, 100, 200, 1000 };
	char name[40];
	size_t line = sk_cache_line();
	for (size_t i = 0; i < sizeof(hw_sizes) / sizeof(hw_sizes[0]); i++) {
		size_t want = line;
		while (want > 8 && hw_sizes[i] <= want / 2)
			want /= 2;
		snprintf(name, sizeof(name), "slob_hw_%u", hw_sizes[i]);
		check_cache_align(name, hw_sizes[i], 0, SLAB_HWCACHE_ALIGN, want);
	}
	static const unsigned sizes[] = { 8, 24, 72, 200, 700 };
	for (unsigned align = 64; align <= 256; align *= 2)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			snprintf(name, sizeof(name), "slob_al_%u_%u", align, sizes[i]);
			check_cache_align(name, sizes[i], align, 0, align);
		}
}

static _Atomic unsigned long ctor_runs;

static void count_ctor(void *obj)
{
	ctor_runs++;
	memset(obj, 0xC7, 48);
}

/* No slab keeps constructed objects: the ctor runs on every carve, and a
 * freed object is constructed again when it is handed out again. */
static void test_ctor_per_allocation(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slob_ctor", 48, 0, 0, count_ctor);
	assert_non_null(s);
	ctor_runs = 0;
	for (int i = 0; i < 100; i++) {
		unsigned char *o = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(o);
		for (int b = 0; b < 48; b++)
			assert_int_equal(o[b], 0xC7);
		memset(o, 0, 48);
		kmem_cache_free(s, o);
	}
	assert_int_equal(ctor_runs, 100);
	kmem_cache_destroy(s);
}

/* kfree of a kmem_cache object frees it, counted by its cache: the cache's
 * pages are its own, so core finds the cache from the page. */
static void test_kfree_cache_object(void **state)
{
	(void)state;
	enum { N = 500 };
	struct kmem_cache *s = kmem_cache_create("slob_kfree", 80, 0, 0, NULL);
	assert_non_null(s);
	void *o[N];
	for (int i = 0; i < N; i++) {
		o[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(o[i]);
		assert_int_equal(page_info(o[i]).kind, SLOB_KIND_CACHE);
		assert_int_equal(sk_page_of(o[i])->kind, SK_PAGE_SLAB);
	}
	assert_int_equal(sk_info("slob_kfree").in_use, N);
	for (int i = 0; i < N; i++)
		kfree(o[i]);
	assert_int_equal(sk_panic_count(), 0);
	struct slabkit_cache_info ci = sk_info("slob_kfree");
	assert_int_equal(ci.in_use, 0);
	assert_int_equal(ci.pages, 0);
	/* The freed space is reused by the cache. */
	void *again = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(again);
	kfree(again);
	kmem_cache_destroy(s);
	assert_kmalloc_pool_empty();
}

/* Objects of a page or more take whole pages of the cache. */
static void test_whole_page_objects(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slob_big", 5000, 0, 0, NULL);
	assert_non_null(s);
	void *o[8];
	for (int i = 0; i < 8; i++) {
		o[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(o[i]);
		assert_int_equal(page_offset(o[i]), 0);
		sk_fill(o[i], 5000, (uint64_t)i);
	}
	struct slabkit_cache_info ci = sk_info("slob_big");
	assert_int_equal(ci.slabs, 8);
	assert_int_equal(ci.pages, 16); /* order 1: 8 KiB each */
	assert_int_equal(kmem_cache_shrink(s), 1); /* every one is in use */
	for (int i = 0; i < 8; i++) {
		assert_int_equal(sk_check(o[i], 5000, (uint64_t)i), SIZE_MAX);
		kmem_cache_free(s, o[i]);
	}
	assert_int_equal(kmem_cache_shrink(s), 0);
	kmem_cache_destroy(s);
}

/* Double frees and pointers into the middle of a block are reported and
 * refused; the heap stays whole. */
static void test_misuse_refused(void **state)
{
	(void)state;
	sk_expect_panics();
	assert_kmalloc_pool_empty();
	char *a = kmalloc(100, GFP_KERNEL), *b = kmalloc(100, GFP_KERNEL);
	char *c = kmalloc(100, GFP_KERNEL);
	sk_fill(a, 100, 1);
	sk_fill(c, 100, 3);
	kfree(b);
	struct sk_slob_page_info before = page_info(a);
	unsigned panics = sk_panic_count();
	kfree(b); /* double free: b's header was erased */
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("kfree", "slob", NULL);
	kfree(a + 16); /* not a block start */
	assert_int_equal(sk_panic_count(), panics + 2);
	struct sk_slob_page_info after = page_info(a);
	assert_int_equal(after.free_units, before.free_units);
	assert_int_equal(after.free_blocks, before.free_blocks);
	assert_int_equal(sk_check(a, 100, 1), SIZE_MAX);
	assert_int_equal(sk_check(c, 100, 3), SIZE_MAX);
	kfree(a);
	kfree(c);
	assert_kmalloc_pool_empty();

	struct kmem_cache *s = kmem_cache_create("slob_misuse", 96, 0, 0, NULL);
	assert_non_null(s);
	char *x = kmem_cache_alloc(s, GFP_KERNEL), *y = kmem_cache_alloc(s, GFP_KERNEL);
	char *z = kmem_cache_alloc(s, GFP_KERNEL);
	sk_fill(x, 96, 7);
	sk_fill(z, 96, 9);
	kmem_cache_free(s, y);
	panics = sk_panic_count();
	kmem_cache_free(s, y); /* double free: the range is already free */
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("kmem_cache_free", "slob_misuse", "double free");
	kmem_cache_free(s, x + 8); /* inside an object */
	assert_int_equal(sk_panic_count(), panics + 2);
	sk_assert_reported("slob_misuse", "not the start of an object", NULL); /* core's check */
	assert_int_equal(sk_check(x, 96, 7), SIZE_MAX);
	assert_int_equal(sk_check(z, 96, 9), SIZE_MAX);
	kmem_cache_free(s, x);
	kmem_cache_free(s, z);
	assert_int_equal(cache_pool(s).pages, 0);
	kmem_cache_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_backend_is_slob),
		SK_TEST(test_split_adjacent),
		SK_TEST(test_coalesce_both_neighbours),
		SK_TEST(test_three_lists),
		SK_TEST(test_pages_returned_when_empty),
		SK_TEST(test_alignment),
		SK_TEST(test_ctor_per_allocation),
		SK_TEST(test_kfree_cache_object),
		SK_TEST(test_whole_page_objects),
		SK_TEST(test_misuse_refused),
	};

	setenv("SLABKIT_BACKEND", "slob", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slob_heap", tests, sk_group_setup, sk_group_teardown);
}
