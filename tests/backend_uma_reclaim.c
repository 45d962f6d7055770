/*
 * UMA backend: what each reclaim level gives back, the working-set
 * estimate behind TRIM and the maintenance tick, and bucket sizes that grow
 * under contention and shrink on reclaim.
 *
 *  - TRIM keeps the domain cache's working set (what the last cycle drew
 *    from it); ticks without demand decay the estimate by 3/4 each and trim
 *    down to it, until nothing is left.
 *  - DRAIN empties the domain bucket cache but not the per-CPU buckets;
 *    DRAIN_CPU empties those too, and then every slab (all items free) goes.
 *  - The bucket size (cache_info limit) grows one class when a domain lock
 *    is found held: deterministically (the test holds the lock) and with two
 *    threads hammering one zone; DRAIN takes it one class back down.
 *
 * Runs with SLABKIT_BACKEND=uma, SLABKIT_TICK_MS=-1.  The main thread is
 * pinned to CPU 0.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include <slabkit/freebsd/uma.h>

#include "backends/uma/uma_int.h"
#include "sk_test.h"

static void pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
}

static struct uma_kz *kz_of(uma_zone_t z)
{
	void *item = uma_zalloc(z, M_WAITOK);
	assert_non_null(item);
	struct uma_kz *kz = skuma_kz_of_item(item);
	uma_zfree(z, item);
	assert_non_null(kz);
	return kz;
}

static void cycle(uma_zone_t z, void **p, int n)
{
	for (int i = 0; i < n; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < n; i++)
		uma_zfree(z, p[i]);
}

enum { N = 2000 };
static void *items[N];

/* TRIM keeps the working set; idle ticks decay it to nothing. */
static void test_trim_keeps_working_set(void **state)
{
	uma_zone_t z = uma_zcreate("ut_wss", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	struct uma_kz *kz = kz_of(z);

	cycle(z, items, N);
	cycle(z, items, N); /* this cycle drew the whole domain cache */
	uint64_t cached = skuma_domain_cached(kz, 0);
	uint64_t cpu = sk_info("ut_wss").cached_free - cached;
	assert_true(cached > 0);
	assert_true(cached + cpu >= N); /* every item is cached somewhere */

	uma_zone_reclaim(z, UMA_RECLAIM_TRIM);
	assert_int_equal(skuma_domain_cached(kz, 0), cached);
	assert_true((uint64_t)skuma_domain_wss(kz, 0) >= cached);

	/* No demand: each tick lowers the estimate to 3/4 and trims to it. */
	uint64_t prev = cached;
	int ticks = 0;
	while (skuma_domain_cached(kz, 0) > 0 && ticks < 100) {
		int64_t wss_before = skuma_domain_wss(kz, 0);
		slabkit_tick();
		ticks++;
		uint64_t now = skuma_domain_cached(kz, 0);
		int64_t wss = skuma_domain_wss(kz, 0);
		assert_true(now <= prev);
		assert_int_equal(wss, wss_before * 3 / 4);
		/* Trimming keeps whole buckets until the estimate is covered. */
		assert_true((int64_t)now >= wss);
		assert_true((int64_t)now < wss + 254 || now == prev);
		prev = now;
	}
	assert_int_equal(skuma_domain_cached(kz, 0), 0);
	assert_true(ticks > 5 && ticks < 40);
	/* The per-CPU buckets are not the tick's business. */
	assert_int_equal(sk_info("ut_wss").cached_free, cpu);
	uma_zdestroy(z);
}

/* DRAIN empties the bucket cache, DRAIN_CPU the CPUs' buckets too. */
static void test_drain_levels(void **state)
{
	uma_zone_t z = uma_zcreate("ut_drain", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	struct uma_kz *kz = kz_of(z);

	cycle(z, items, N);
	struct slabkit_cache_info in = sk_info("ut_drain");
	uint64_t domain = skuma_domain_cached(kz, 0);
	assert_true(domain > 0);
	assert_true(in.cached_free > domain);
	uint64_t slabs = in.slabs;

	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN);
	in = sk_info("ut_drain");
	assert_int_equal(skuma_domain_cached(kz, 0), 0);
	assert_true(in.cached_free > 0);     /* CPU 0's buckets stay */
	assert_true(in.cached_free <= 2 * 254);
	assert_true(in.slabs < slabs);       /* slabs emptied by the drain went */

	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	in = sk_info("ut_drain");
	assert_int_equal(in.cached_free, 0);
	assert_int_equal(in.slabs, 0);
	assert_int_equal(in.in_use, 0);

	/* uma_reclaim() reaches this zone too. */
	cycle(z, items, N);
	assert_true(sk_info("ut_drain").cached_free > 0);
	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("ut_drain").cached_free, 0);
	assert_int_equal(sk_info("ut_drain").slabs, 0);
	uma_zdestroy(z);
}

/* Holding a domain lock while this CPU needs the domain cache is
 * contention: the bucket size grows one class; DRAIN takes it back. */
struct holder {
	struct uma_kz *kz;
	atomic_bool locked;
};

/* Hold domain 0's lock until someone has found it held (or 5 s passed). */
static void *hold_lock(void *arg)
{
	struct holder *h = arg;
	struct uma_zone_domain *zd = &h->kz->kz_zone.uz_domain[0];
	uint64_t start = sk_now_ns();

	pthread_mutex_lock(&zd->uzd_lock);
	atomic_store(&h->locked, true);
	while (ck_pr_load_64(&h->kz->kz_zone.uz_contended) == 0 &&
	       sk_now_ns() - start < 5ull * 1000000000)
		sk_sleep_ms(1);
	pthread_mutex_unlock(&zd->uzd_lock);
	return NULL;
}

static void test_bucket_grows_on_contention(void **state)
{
	/* 256-byte items start with 64-entry buckets. */
	uma_zone_t z = uma_zcreate("ut_grow1", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	struct uma_kz *kz = kz_of(z);
	assert_int_equal(sk_info("ut_grow1").limit, 64);

	/* CPU 0's two buckets hold at most 128 items: of the last 128 frees,
	 * at least one must put a full bucket into the domain cache. */
	enum { M = 4 * 64 };
	void *p[M];
	for (int i = 0; i < M; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < M / 2; i++)
		uma_zfree(z, p[i]);
	uint64_t contended = ck_pr_load_64(&kz->kz_zone.uz_contended);
	assert_int_equal(contended, 0);

	struct holder h = { .kz = kz };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, hold_lock, &h), 0);
	while (!atomic_load(&h.locked))
		sk_sleep_ms(1);
	for (int i = M / 2; i < M; i++)
		uma_zfree(z, p[i]);
	pthread_join(t, NULL);
	assert_true(kz->kz_zone.uz_contended >= 1);
	assert_int_equal(sk_info("ut_grow1").limit, 128);

	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN);
	assert_int_equal(sk_info("ut_grow1").limit, 64);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN); /* not below the start size */
	assert_int_equal(sk_info("ut_grow1").limit, 64);
	uma_zdestroy(z);
}

/* Two threads hammering one zone on two CPUs meet on the domain lock. */
struct hammer {
	uma_zone_t z;
	int cpu;
	atomic_bool *stop;
	unsigned long rounds;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	enum { K = 400 };
	void *p[K];

	pin_cpu(h->cpu);
	while (!atomic_load(h->stop)) {
		for (int i = 0; i < K; i++)
			p[i] = uma_zalloc(h->z, M_WAITOK);
		for (int i = 0; i < K; i++)
			uma_zfree(h->z, p[i]);
		h->rounds++;
	}
	return NULL;
}

static void test_bucket_grows_under_two_threads(void **state)
{
	uma_zone_t z = uma_zcreate("ut_grow2", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	struct uma_kz *kz = kz_of(z);
	assert_int_equal(sk_info("ut_grow2").limit, 64);

	atomic_bool stop = false;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct hammer h[2] = { { z, 0, &stop, 0 }, { z, ncpu > 1 ? 1 : 0, &stop, 0 } };
	pthread_t t[2];
	uint64_t start = sk_now_ns();
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
	while (sk_info("ut_grow2").limit == 64 && sk_now_ns() - start < 20ull * 1000000000)
		sk_sleep_ms(5);
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	long grown = sk_info("ut_grow2").limit;
	fprintf(stderr, "  bucket size %ld after %.1f ms, %lu + %lu rounds, %llu contended locks\n",
		grown, (double)(sk_now_ns() - start) / 1e6, h[0].rounds, h[1].rounds,
		(unsigned long long)ck_pr_load_64(&kz->kz_zone.uz_contended));
	assert_true(grown > 64);

	/* Reclaim shrinks it: DRAIN one class, DRAIN_CPU at least one more
	 * (halfway to the start class first). */
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN);
	long after_drain = sk_info("ut_grow2").limit;
	assert_true(after_drain < grown);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	long after_cpu = sk_info("ut_grow2").limit;
	assert_true(after_cpu < after_drain || after_cpu == 64);
	assert_int_equal(sk_info("ut_grow2").cached_free, 0);
	uma_zdestroy(z);
}

/* MAXBUCKET starts at the largest size; tunables move the size by hand. */
static void test_bucket_tunables(void **state)
{
	uma_zone_t z = uma_zcreate("ut_maxb", 1024, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_MAXBUCKET);
	assert_non_null(z);
	assert_int_equal(sk_info("ut_maxb").limit, 254);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU); /* the start size is the floor */
	assert_int_equal(sk_info("ut_maxb").limit, 254);
	uma_zdestroy(z);

	z = uma_zcreate("ut_tune", 1024, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_int_equal(sk_info("ut_tune").limit, 16);
	assert_int_equal(slabkit_cache_tune("ut_tune", "bucket_size", 100), 0);
	assert_int_equal(sk_info("ut_tune").limit, 64);
	assert_int_equal(slabkit_cache_tune("ut_tune", "bucket_max", 32), 0);
	assert_int_equal(sk_info("ut_tune").limit, 32);
	assert_int_equal(slabkit_cache_tune("ut_tune", "bucket_size", 0), -EINVAL);
	assert_int_equal(slabkit_cache_tune("ut_tune", "limit", 5), -EINVAL);

	/* bucket_cache_max=0: full buckets go back to the slabs. */
	assert_int_equal(slabkit_cache_tune("ut_tune", "bucket_cache_max", 0), 0);
	void *p[200];
	cycle(z, p, 200);
	struct uma_kz *kz = kz_of(z);
	assert_int_equal(skuma_domain_cached(kz, 0), 0);
	assert_true(sk_info("ut_tune").cached_free <= 2 * 32);
	uma_zdestroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_trim_keeps_working_set),
		SK_TEST(test_drain_levels),
		SK_TEST(test_bucket_grows_on_contention),
		SK_TEST(test_bucket_grows_under_two_threads),
		SK_TEST(test_bucket_tunables),
	};

	sk_apply_test_filter();
	pin_cpu(0);
	return cmocka_run_group_tests_name("uma_reclaim", tests, sk_group_setup, sk_group_teardown);
}
