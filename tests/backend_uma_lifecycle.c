/*
 * UMA backend: item lifetimes and slab layout.
 *
 *  - init/fini run once per item per slab lifetime: as many inits as slabs
 *    times items per slab, none again when items are reused, fini for every
 *    item when reclaim frees the slabs; ctor/dtor on every alloc/free.
 *  - A failing ctor fails the allocation; a failing init gives back the
 *    half-built slab (fini for the items already initialised).
 *  - ZINIT slabs are zero when init sees them; NOFREE slabs survive reclaim.
 *  - Layout: rsize, items per slab, where the free bitset lives, >= 90%
 *    efficiency, CACHESPREAD strides; NOBUCKET zones cache nothing.
 *
 * Runs with SLABKIT_BACKEND=uma, SLABKIT_TICK_MS=-1; the thread is pinned
 * to CPU 0 so every per-CPU bucket is that CPU's.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include <slabkit/freebsd/uma.h>

#include "backends/uma/uma_int.h"
#include "sk_test.h"

#define MAGIC 0x5eed5eed5eed5eedULL

struct counts {
	atomic_long init, fini, ctor, dtor, bad;
	atomic_long fail_init_at;   /* init call number that fails (0: none) */
	atomic_bool fail_ctor;
	atomic_long init_nonzero;   /* inits that saw a non-zero byte */
};

static struct counts cnt;
static int item_size = 200;

static void counts_reset(int size)
{
	memset(&cnt, 0, sizeof(cnt));
	item_size = size;
}

static int t_init(void *mem, int size, int flags)
{
	long n = atomic_fetch_add(&cnt.init, 1) + 1;

	if (size != item_size || !((flags & M_WAITOK) || (flags & M_NOWAIT)))
		atomic_fetch_add(&cnt.bad, 1);
	if (sk_first_nonzero(mem, (size_t)size) != SIZE_MAX)
		atomic_fetch_add(&cnt.init_nonzero, 1);
	if (atomic_load(&cnt.fail_init_at) == n)
		return ENOMEM;
	*(uint64_t *)mem = MAGIC;
	return 0;
}

static void t_fini(void *mem, int size)
{
	if (*(uint64_t *)mem != MAGIC)
		atomic_fetch_add(&cnt.bad, 1);
	*(uint64_t *)mem = 0;
	atomic_fetch_add(&cnt.fini, 1);
}

static int t_ctor(void *mem, int size, void *arg, int flags)
{
	if (*(uint64_t *)mem != MAGIC)
		atomic_fetch_add(&cnt.bad, 1);
	if (atomic_load(&cnt.fail_ctor))
		return ENOMEM;
	atomic_fetch_add(&cnt.ctor, 1);
	return 0;
}

static void t_dtor(void *mem, int size, void *arg)
{
	atomic_fetch_add(&cnt.dtor, 1);
}

static void pin_cpu0(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
}

/* init once per item per slab lifetime; ctor/dtor every time. */
static void test_init_once_per_slab_lifetime(void **state)
{
	enum { N = 300 };
	void *p[N];

	counts_reset(200);
	uma_zone_t z = uma_zcreate("ut_life", 200, t_ctor, t_dtor, t_init, t_fini, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	for (int i = 0; i < N; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	struct slabkit_cache_info in = sk_info("ut_life");
	assert_true(in.slabs > 0);
	assert_int_equal(atomic_load(&cnt.init), (long)(in.slabs * in.objects_per_slab));
	assert_int_equal(atomic_load(&cnt.ctor), N);
	assert_int_equal(atomic_load(&cnt.fini), 0);
	long inits = atomic_load(&cnt.init);

	/* Reuse: frees go to the buckets, allocations come back from them or
	 * the same slabs: no new init, ctor/dtor each time. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++)
			uma_zfree(z, p[i]);
		for (int i = 0; i < N; i++)
			assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	}
	assert_int_equal(atomic_load(&cnt.init), inits);
	assert_int_equal(atomic_load(&cnt.ctor), 4 * N);
	assert_int_equal(atomic_load(&cnt.dtor), 3 * N);

	/* Reclaim with everything free: every slab goes, fini for every item. */
	for (int i = 0; i < N; i++)
		uma_zfree(z, p[i]);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	in = sk_info("ut_life");
	assert_int_equal(in.slabs, 0);
	assert_int_equal(in.cached_free, 0);
	assert_int_equal(atomic_load(&cnt.fini), inits);

	/* New slabs: init again, once per item. */
	void *q = uma_zalloc(z, M_WAITOK);
	assert_non_null(q);
	in = sk_info("ut_life");
	assert_int_equal(atomic_load(&cnt.init) - inits, (long)(in.slabs * in.objects_per_slab));
	uma_zfree(z, q);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&cnt.init), atomic_load(&cnt.fini));
	assert_int_equal(atomic_load(&cnt.bad), 0);
}

/* A failing ctor fails the allocation and the item is not lost. */
static void test_failing_ctor(void **state)
{
	counts_reset(64);
	uma_zone_t z = uma_zcreate("ut_ctorfail", 64, t_ctor, t_dtor, t_init, t_fini, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	void *ok = uma_zalloc(z, M_WAITOK);
	assert_non_null(ok);
	atomic_store(&cnt.fail_ctor, true);
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_null(uma_zalloc(z, M_NOWAIT));
	atomic_store(&cnt.fail_ctor, false);
	assert_int_equal(uma_zone_get_cur(z), 1);
	assert_int_equal(atomic_load(&cnt.dtor), 0); /* no dtor for a failed ctor */
	void *again = uma_zalloc(z, M_WAITOK);
	assert_non_null(again);
	uma_zfree(z, again);
	uma_zfree(z, ok);
	assert_int_equal(uma_zone_get_cur(z), 0);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&cnt.init), atomic_load(&cnt.fini));
	assert_int_equal(atomic_load(&cnt.bad), 0);
}

/* A failing init: the slab being built is given back, fini for the items
 * already initialised, and the allocation fails (M_NOWAIT). */
static void test_failing_init(void **state)
{
	counts_reset(512);
	uma_zone_t z = uma_zcreate("ut_initfail", 512, NULL, NULL, t_init, t_fini, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	atomic_store(&cnt.fail_init_at, 3);
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(atomic_load(&cnt.init), 3);
	assert_int_equal(atomic_load(&cnt.fini), 2);
	assert_int_equal(sk_info("ut_initfail").slabs, 0);
	atomic_store(&cnt.fail_init_at, 0);
	void *p = uma_zalloc(z, M_NOWAIT);
	assert_non_null(p);
	struct slabkit_cache_info in = sk_info("ut_initfail");
	assert_int_equal(in.slabs, 1);
	assert_int_equal(atomic_load(&cnt.init) - 3, (long)in.objects_per_slab);
	uma_zfree(z, p);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&cnt.init) - 1, atomic_load(&cnt.fini));
	assert_int_equal(atomic_load(&cnt.bad), 0);
}

/* ZINIT: init sees zeroed memory even when the pages held data before. */
static void test_zinit(void **state)
{
	enum { N = 200 };
	void *p[N];

	counts_reset(256);
	uma_zone_t z = uma_zcreate("ut_zinit", 256, NULL, NULL, t_init, t_fini, UMA_ALIGN_PTR,
				   UMA_ZONE_ZINIT);
	assert_non_null(z);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
			memset((char *)p[i] + 8, 0xa5, 248); /* dirty all but the magic */
		}
		for (int i = 0; i < N; i++)
			uma_zfree(z, p[i]);
		uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU); /* pages go back dirty */
	}
	assert_true(atomic_load(&cnt.init) >= 3 * N);
	assert_int_equal(atomic_load(&cnt.init_nonzero), 0);
	uma_zdestroy(z);
}

/* NOFREE: reclaim keeps the slabs (and runs no fini); destroy frees them. */
static void test_nofree(void **state)
{
	enum { N = 100 };
	void *p[N];

	counts_reset(128);
	uma_zone_t z = uma_zcreate("ut_nofree", 128, NULL, NULL, t_init, t_fini, UMA_ALIGN_PTR,
				   UMA_ZONE_NOFREE);
	assert_non_null(z);
	for (int i = 0; i < N; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < N; i++)
		uma_zfree(z, p[i]);
	uint64_t slabs = sk_info("ut_nofree").slabs;
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	struct slabkit_cache_info in = sk_info("ut_nofree");
	assert_int_equal(in.slabs, slabs);
	assert_int_equal(in.cached_free, 0); /* the buckets did go */
	assert_int_equal(atomic_load(&cnt.fini), 0);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&cnt.fini), atomic_load(&cnt.init));
}

/* NOBUCKET: no per-CPU or domain caching; every free goes to the slab. */
static void test_nobucket(void **state)
{
	enum { N = 100 };
	void *p[N];

	uma_zone_t z = uma_zcreate("ut_nobucket", 96, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_NOBUCKET);
	assert_non_null(z);
	for (int i = 0; i < N; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	assert_true(sk_disjoint(p, N, 96));
	for (int i = 0; i < N; i++)
		uma_zfree(z, p[i]);
	struct slabkit_cache_info in = sk_info("ut_nobucket");
	assert_int_equal(in.cached_free, 0);
	assert_int_equal(in.limit, 0);
	assert_int_equal(in.in_use, 0);
	assert_int_equal(in.allocs, N);
	uma_zdestroy(z);
}

/* A second free of an item that went straight to its slab is caught by
 * the slab's bitset and reported, not corrupting the slab. */
static void test_keg_double_free_reported(void **state)
{
	uma_zone_t z = uma_zcreate("ut_dfree", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_NOBUCKET);
	assert_non_null(z);
	void *a = uma_zalloc(z, M_WAITOK), *b = uma_zalloc(z, M_WAITOK);
	assert_non_null(a);
	assert_non_null(b);
	sk_expect_panics();
	uma_zfree(z, a);
	uma_zfree(z, a);
	char buf[32];
	sk_assert_reported("ut_dfree", sk_ptr_text(a, buf), NULL);
	void *c = uma_zalloc(z, M_WAITOK), *d = uma_zalloc(z, M_WAITOK);
	assert_true(c != d && c != b && d != b); /* `a` was not handed out twice */
	uma_zfree(z, b);
	uma_zfree(z, c);
	uma_zfree(z, d);
	uma_zdestroy(z);
}

/* Layout through the keg itself: rsize, items per slab, bitset placement. */
static struct uma_kz *kz_of_zone(uma_zone_t z, void **item)
{
	*item = uma_zalloc(z, M_WAITOK);
	assert_non_null(*item);
	struct uma_kz *kz = skuma_kz_of_item(*item);
	assert_non_null(kz);
	return kz;
}

static void check_layout(const char *name, size_t size, int align, uint32_t flags, uint32_t rsize,
			 uint32_t ipers, enum uma_slab_hdr hdr, uint32_t order)
{
	void *item;
	uma_zone_t z = uma_zcreate(name, size, NULL, NULL, NULL, NULL, align, flags);
	assert_non_null(z);
	struct uma_kz *kz = kz_of_zone(z, &item);
	const struct uma_keg *keg = &kz->kz_keg;
	if (keg->uk_rsize != rsize || keg->uk_ipers != ipers || keg->uk_hdr != hdr ||
	    keg->uk_order != order)
		fail_msg("%s (size %zu): rsize %u ipers %u hdr %u order %u, expected %u %u %u %u", name,
			 size, keg->uk_rsize, keg->uk_ipers, keg->uk_hdr, keg->uk_order, rsize, ipers,
			 hdr, order);
	assert_int_equal(sk_info(name).objects_per_slab, ipers);
	assert_int_equal(sk_info(name).size, rsize);
	uma_zfree(z, item);
	uma_zdestroy(z);
}

static void test_layout(void **state)
{
	/* <= 64 items: bitset in the page descriptor. */
	check_layout("ut_l200", 200, UMA_ALIGN_PTR, 0, 200, 20, UMA_HDR_DESC, 0);
	check_layout("ut_l64", 64, UMA_ALIGN_PTR, 0, 64, 64, UMA_HDR_DESC, 0);
	/* 8 B: 504 items and an inline bitset pack as well as 512 items with
	 * a 64-byte offpage one (98.4%); the tie goes to inline. */
	check_layout("ut_l1", 1, UMA_ALIGN_CHAR, 0, 8, 504, UMA_HDR_INLINE, 0);
	/* 40 B: 102 items leave 16 bytes, enough for the bitset: inline. */
	check_layout("ut_l40", 40, UMA_ALIGN_PTR, 0, 40, 102, UMA_HDR_INLINE, 0);
	/* 32 B: 128 items fill the page; an inline bitset would cost an item,
	 * an offpage one packs better (128*32/(4096+16) > 127*32/4096). */
	check_layout("ut_l32", 32, UMA_ALIGN_PTR, 0, 32, 128, UMA_HDR_OFFPAGE, 0);
	/* Alignment rounds the stride. */
	check_layout("ut_la", 100, 63, 0, 128, 32, UMA_HDR_DESC, 0);
	/* 5000 B: one item per 8 KiB (61%) is too wasteful; 3 per 16 KiB. */
	check_layout("ut_l5000", 5000, UMA_ALIGN_PTR, 0, 5000, 3, UMA_HDR_DESC, 2);
	check_layout("ut_l64k", 65536, UMA_ALIGN_PTR, 0, 65536, 1, UMA_HDR_DESC, 4);
}

/* Every size from 8 B to 64 KiB lays out with at most 10% waste. */
static void test_layout_efficiency(void **state)
{
	struct sk_cache c;
	struct uma_kz kz;
	unsigned worst = 1000;
	size_t worst_size = 0;

	for (size_t size = 8; size <= 65536; size += size < 1024 ? 8 : size < 8192 ? 56 : 1000) {
		memset(&c, 0, sizeof(c));
		memset(&kz, 0, sizeof(kz));
		c.object_size = (uint32_t)size;
		c.align = 8;
		assert_int_equal(skuma_keg_layout(&kz, &c), 0);
		assert_true(kz.kz_keg.uk_ipers >= 1);
		assert_true((size_t)kz.kz_keg.uk_rsize * kz.kz_keg.uk_ipers <=
			    (SK_PAGE_SIZE << kz.kz_keg.uk_order));
		if (kz.kz_keg.uk_eff_permille < worst) {
			worst = kz.kz_keg.uk_eff_permille;
			worst_size = size;
		}
	}
	if (worst < 900)
		fail_msg("size %zu lays out at %u/1000", worst_size, worst);
}

/* CACHESPREAD: an odd number of cache lines per item, so the items of a
 * slab start on every line offset of a page. */
static void test_cachespread(void **state)
{
	size_t line = sk_cache_line();
	uma_zone_t z = uma_zcreate("ut_spread", 2 * line, NULL, NULL, NULL, NULL, UMA_ALIGN_CACHE,
				   UMA_ZONE_CACHESPREAD);
	assert_non_null(z);
	struct slabkit_cache_info in = sk_info("ut_spread");
	assert_int_equal(in.size, 3 * line);
	size_t per_page = SK_PAGE_SIZE / line;
	assert_true(in.objects_per_slab >= per_page);

	void *item;
	struct uma_kz *kz = kz_of_zone(z, &item);
	char *base = sk_page_addr(sk_page_of(item));
	bool seen[SK_PAGE_SIZE / 8] = { false };
	for (size_t i = 0; i < per_page; i++)
		seen[((size_t)(base + i * kz->kz_keg.uk_rsize) % SK_PAGE_SIZE) / line] = true;
	for (size_t l = 0; l < per_page; l++)
		assert_true(seen[l]);
	uma_zfree(z, item);
	uma_zdestroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_init_once_per_slab_lifetime),
		SK_TEST(test_failing_ctor),
		SK_TEST(test_failing_init),
		SK_TEST(test_zinit),
		SK_TEST(test_nofree),
		SK_TEST(test_nobucket),
		SK_TEST(test_keg_double_free_reported),
		SK_TEST(test_layout),
		SK_TEST(test_layout_efficiency),
		SK_TEST(test_cachespread),
	};

	sk_apply_test_filter();
	pin_cpu0();
	return cmocka_run_group_tests_name("uma_lifecycle", tests, sk_group_setup, sk_group_teardown);
}
