/*
 * SLAB backend: slab layout.  Colour offsets rotate from slab to slab, the
 * free-index array sits on the slab for small objects and off it from
 * 128 bytes up, u8/u16 indices, slab order as Linux chose it, alignment of
 * the first object, and the ctor running when a slab is populated.
 *
 * Reads the backend's private structures (backends/slab/slab_int.h) to see
 * what the public figures cannot show.  Runs with SLABKIT_BACKEND=slab.
 */
#define _GNU_SOURCE
#include <sched.h>

#include <slabkit/linux/slab.h>

#include "slab_test.h"
#include "sk_test.h"

static struct sk_page *slab_head(const void *obj)
{
	struct sk_page *pg = sk_page_of(obj);

	assert_non_null(pg);
	assert_int_equal(pg->kind, SK_PAGE_SLAB);
	return pg;
}

/* Allocate n objects, returning them in out[]. */
static void alloc_n(struct kmem_cache *s, void **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		out[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(out[i]);
	}
}

static void free_n(struct kmem_cache *s, void **objs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kmem_cache_free(s, objs[i]);
}

/* Distinct slabs of objs[], in the order their first object appears. */
static size_t distinct_slabs(void **objs, size_t n, struct sk_page **slabs, size_t max)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct sk_page *pg = slab_head(objs[i]);
		size_t j;

		for (j = 0; j < k && slabs[j] != pg; j++)
			;
		if (j == k && k < max)
			slabs[k++] = pg;
	}
	return k;
}

static void test_colour_rotates(void **state)
{
	(void)state;
	/* 300-byte objects (stride 304): 13 per page, 144 bytes left: two colours of 64. */
	struct kmem_cache *s = kmem_cache_create("slab_colour300", 300, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	size_t line = sk_numa_cache_line();

	assert_int_equal(sc->order, 0);
	assert_int_equal(sc->num, 4096 / 304);
	assert_int_equal(sc->colour_off, SK_MAX(line, (size_t)8));
	assert_int_equal(sc->colour, sc->leftover / sc->colour_off);
	assert_true(sc->colour >= 2);

	enum { SLABS = 9 };
	size_t n = (size_t)sc->num * SLABS;
	void **objs = calloc(n, sizeof(*objs));
	struct sk_page *slabs[SLABS + 2];
	assert_non_null(objs);
	alloc_n(s, objs, n);

	size_t k = distinct_slabs(objs, n, slabs, SLABS + 2);
	assert_true(k >= SLABS - 1);
	/* Slab i was grown i-th on node 0: colour index i mod colour. */
	uint32_t first = slab_colour_offset(slabs[0]) / sc->colour_off;
	for (size_t i = 0; i < k; i++) {
		uint32_t off = slab_colour_offset(slabs[i]);
		assert_int_equal(off % sc->colour_off, 0);
		assert_true(off <= sc->leftover);
		assert_int_equal(off / sc->colour_off, (first + i) % sc->colour);
	}
	/* Seen from outside: an object's offset inside its page, modulo the
	 * stride, is its slab's colour offset. */
	for (size_t i = 0; i < n; i++) {
		uintptr_t in_slab = (uintptr_t)objs[i] - (uintptr_t)sk_page_addr(slab_head(objs[i]));
		assert_int_equal(in_slab % sc->size, slab_colour_offset(slab_head(objs[i])));
	}
	free_n(s, objs, n);
	free(objs);
	kmem_cache_destroy(s);
}

static void test_index_on_slab_for_small(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_idx64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);

	assert_int_equal(sc->freelist_where, SLAB_FREELIST_ON_SLAB);
	assert_int_equal(sc->idx_bytes, 1);
	assert_int_equal(sc->num, 4096 / 65);   /* each object costs one index byte */

	void *obj = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(obj);
	struct sk_page *pg = slab_head(obj);
	char *base = sk_page_addr(pg);
	char *fl = slab_freelist(sc, pg);
	/* The index array is the slab's last num bytes, after the last object. */
	assert_ptr_equal(fl, base + sc->slab_bytes - sc->num);
	assert_true(slab_s_mem(pg) + (size_t)sc->num * sc->size <= fl);
	kmem_cache_free(s, obj);
	kmem_cache_destroy(s);

	/* Just below the threshold (120 bytes) still on the slab. */
	s = kmem_cache_create("slab_idx120", 120, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(sc_of(s)->freelist_where, SLAB_FREELIST_ON_SLAB);
	kmem_cache_destroy(s);

	/* 8-byte objects: more than 256 per slab, so u16 indices. */
	s = kmem_cache_create("slab_idx8", 8, 0, 0, NULL);
	assert_non_null(s);
	sc = sc_of(s);
	assert_int_equal(sc->idx_bytes, 2);
	assert_int_equal(sc->num, 4096 / 10);
	void *objs[600];
	alloc_n(s, objs, 600);
	assert_true(sk_disjoint(objs, 600, 8));
	free_n(s, objs, 600);
	kmem_cache_destroy(s);
}

static void test_index_off_slab_for_large(void **state)
{
	(void)state;
	/* 128 bytes and up: off the slab, every byte of the slab for objects. */
	struct kmem_cache *s = kmem_cache_create("slab_idx128", 128, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	assert_int_not_equal(sc->freelist_where, SLAB_FREELIST_ON_SLAB);
	assert_int_equal(sc->num, 32);
	assert_int_equal(sc->leftover, 0);
	/* 32 u8 indices do not fit in the descriptor: metadata memory. */
	assert_int_equal(sc->freelist_where, SLAB_FREELIST_META);

	void *objs[64];
	alloc_n(s, objs, 64);
	for (int i = 0; i < 64; i++) {
		struct sk_page *pg = slab_head(objs[i]);
		char *fl = slab_freelist(sc, pg);
		char *base = sk_page_addr(pg);
		assert_true(fl < base || fl >= base + sc->slab_bytes);
		assert_int_equal(sk_page_of(fl)->kind, SK_PAGE_META);
	}
	free_n(s, objs, 64);
	kmem_cache_destroy(s);

	/* 512-byte objects: 8 indices, kept inside the page descriptor. */
	s = kmem_cache_create("slab_idx512", 512, 0, 0, NULL);
	assert_non_null(s);
	sc = sc_of(s);
	assert_int_equal(sc->num, 8);
	assert_int_equal(sc->freelist_where, SLAB_FREELIST_IN_DESC);
	alloc_n(s, objs, 20);
	assert_true(sk_disjoint(objs, 20, 512));
	for (int i = 0; i < 20; i++) {
		struct sk_page *pg = slab_head(objs[i]);
		assert_ptr_equal(slab_freelist(sc, pg), &pg->bk[3]);
	}
	free_n(s, objs, 20);
	kmem_cache_destroy(s);
}

/* Linux's calculate_slab_order: waste <= 1/8, at most order 1 unless one
 * object needs more. */
static void test_slab_order(void **state)
{
	(void)state;
	static const struct {
		unsigned size, order, num;
	} cases[] = {
		{ 64, 0, 63 },      /* on slab, u8 */
		{ 1000, 0, 4 },     /* 96 B left: fine */
		{ 3000, 1, 2 },     /* order 0 wastes 1096 B > 512 */
		{ 5000, 1, 1 },     /* max order 1 reached */
		{ 20000, 3, 1 },    /* the first order holding one object */
	};
	for (size_t i = 0; i < SK_ARRAY_SIZE(cases); i++) {
		char name[32];
		snprintf(name, sizeof(name), "slab_order%u", cases[i].size);
		struct kmem_cache *s = kmem_cache_create(name, cases[i].size, 0, 0, NULL);
		assert_non_null(s);
		struct slab_cache *sc = sc_of(s);
		assert_int_equal(sc->order, cases[i].order);
		assert_int_equal(sc->num, cases[i].num);

		void *obj = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(obj);
		struct slabkit_cache_info info = sk_info(name);
		assert_int_equal(info.objects_per_slab, cases[i].num);
		assert_int_equal(info.slabs, 1);
		assert_int_equal(info.pages, 1u << cases[i].order);
		kmem_cache_free(s, obj);
		kmem_cache_destroy(s);
	}
}

/* The first object of every slab keeps c->align, colour or not. */
static void test_alignment_kept(void **state)
{
	(void)state;
	/* 64-byte alignment with leftover to colour: 100 -> stride 128. */
	struct kmem_cache *s = kmem_cache_create("slab_align64", 100, 64, 0, NULL);
	assert_non_null(s);
	void *objs[400];
	alloc_n(s, objs, 400);
	for (int i = 0; i < 400; i++)
		assert_int_equal((uintptr_t)objs[i] % 64, 0);
	free_n(s, objs, 400);
	kmem_cache_destroy(s);

	/* 256-byte alignment, 300-byte objects: stride 512, colour_off 256. */
	s = kmem_cache_create("slab_align256", 300, 256, 0, NULL);
	assert_non_null(s);
	assert_int_equal(sc_of(s)->colour_off, 256);
	alloc_n(s, objs, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal((uintptr_t)objs[i] % 256, 0);
	free_n(s, objs, 100);
	kmem_cache_destroy(s);

	/* Power-of-two kmalloc classes are aligned to their size. */
	for (size_t size = 8; size <= 8192; size *= 2) {
		void *p[40];
		for (int i = 0; i < 40; i++) {
			p[i] = kmalloc(size, GFP_KERNEL);
			assert_non_null(p[i]);
			assert_int_equal((uintptr_t)p[i] % size, 0);
		}
		for (int i = 0; i < 40; i++)
			kfree(p[i]);
	}
}

static unsigned ctor_calls;

static void count_ctor(void *obj)
{
	memset(obj, 0x5c, 96);
	__atomic_add_fetch(&ctor_calls, 1, __ATOMIC_RELAXED);
}

/* The ctor runs for every object when a slab is populated, not per
 * allocation: one allocation constructs a whole slab. */
static void test_ctor_on_populate(void **state)
{
	(void)state;
	ctor_calls = 0;
	struct kmem_cache *s = kmem_cache_create("slab_ctor96", 96, 0, 0, count_ctor);
	assert_non_null(s);
	uint32_t num = sc_of(s)->num;

	void *obj = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(obj);
	assert_int_equal(ctor_calls, num);
	assert_int_equal(((unsigned char *)obj)[95], 0x5c);
	kmem_cache_free(s, obj);
	for (int i = 0; i < 100; i++) {
		obj = kmem_cache_alloc(s, GFP_KERNEL);
		kmem_cache_free(s, obj);
	}
	assert_int_equal(ctor_calls, num);
	kmem_cache_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_colour_rotates),
		SK_TEST(test_index_on_slab_for_small),
		SK_TEST(test_index_off_slab_for_large),
		SK_TEST(test_slab_order),
		SK_TEST(test_alignment_kept),
		SK_TEST(test_ctor_on_populate),
	};
	/* One CPU, so slab growth order is this thread's order. */
	if (!slab_test_pin_cpu0())
		return 1;
	setenv("SLABKIT_BACKEND", "slab", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slab_layout", tests, sk_group_setup, sk_group_teardown);
}
