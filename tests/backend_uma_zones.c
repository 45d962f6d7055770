/*
 * UMA zones over the UMA backend: the parts of uma(9) that core's front
 * end provides, checked with this backend's per-CPU buckets underneath.
 *
 *  - uma_zone_set_max: returns the limit; M_NOWAIT beyond it fails (and is
 *    counted), a free makes room again, even though freed items sit in
 *    per-CPU buckets rather than slabs;
 *  - M_WAITOK at the limit sleeps until another thread frees;
 *  - uma_zsecond_create shares the primary's keg (same slabs, keg init
 *    once per item) with its own ctor/dtor and its own count;
 *  - uma_zcache_create calls import and release and owns no keg.
 *
 * Runs with SLABKIT_BACKEND=uma, SLABKIT_TICK_MS=-1.
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include <slabkit/freebsd/uma.h>

#include "backends/uma/uma_int.h"
#include "sk_test.h"

static void test_limit_nowait(void **state)
{
	enum { MAX = 10 };
	void *p[MAX];

	uma_zone_t z = uma_zcreate("ut_limit", 128, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_int_equal(uma_zone_set_max(z, MAX), MAX);
	assert_int_equal(uma_zone_get_max(z), MAX);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < MAX; i++)
			assert_non_null(p[i] = uma_zalloc(z, M_NOWAIT));
		assert_int_equal(uma_zone_get_cur(z), MAX);
		assert_null(uma_zalloc(z, M_NOWAIT));
		uma_zfree(z, p[0]); /* lands in a CPU bucket, still makes room */
		assert_non_null(p[0] = uma_zalloc(z, M_NOWAIT));
		assert_null(uma_zalloc(z, M_NOWAIT));
		for (int i = 0; i < MAX; i++)
			uma_zfree(z, p[i]);
		assert_int_equal(uma_zone_get_cur(z), 0);
	}
	long fail = sk_vmstat_z_column("ut_limit", 5);
	if (fail != 6)
		fail_msg("vmstat -z FAIL for ut_limit is %ld, expected 6", fail);
	uma_zdestroy(z);
}

struct waiter {
	uma_zone_t z;
	atomic_int state; /* 0 started, 1 about to sleep, 2 got an item */
	void *item;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->state, 1);
	w->item = uma_zalloc(w->z, M_WAITOK);
	atomic_store(&w->state, 2);
	return NULL;
}

static void test_limit_waitok_woken_by_free(void **state)
{
	enum { MAX = 4 };
	void *p[MAX];

	uma_zone_t z = uma_zcreate("ut_waitok", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_int_equal(uma_zone_set_max(z, MAX), MAX);
	for (int i = 0; i < MAX; i++)
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));

	struct waiter w = { .z = z };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
	while (atomic_load(&w.state) == 0)
		sk_sleep_ms(1);
	sk_sleep_ms(100);
	assert_int_equal(atomic_load(&w.state), 1); /* still asleep at the limit */
	uma_zfree(z, p[MAX - 1]);
	uint64_t start = sk_now_ns();
	while (atomic_load(&w.state) != 2 && sk_now_ns() - start < 5ull * 1000000000)
		sk_sleep_ms(1);
	assert_int_equal(atomic_load(&w.state), 2);
	pthread_join(t, NULL);
	assert_non_null(w.item);
	p[MAX - 1] = w.item;
	assert_int_equal(uma_zone_get_cur(z), MAX);
	for (int i = 0; i < MAX; i++)
		uma_zfree(z, p[i]);
	uma_zdestroy(z);
}

/* Secondary zones: one keg, two sets of ctor/dtor. */
static atomic_long keg_init, keg_fini, pri_ctor, sec_ctor, sec_dtor;

static int k_init(void *mem, int size, int flags)
{
	atomic_fetch_add(&keg_init, 1);
	return 0;
}

static void k_fini(void *mem, int size)
{
	atomic_fetch_add(&keg_fini, 1);
}

static int p_ctor(void *mem, int size, void *arg, int flags)
{
	atomic_fetch_add(&pri_ctor, 1);
	return 0;
}

static int s_ctor(void *mem, int size, void *arg, int flags)
{
	atomic_fetch_add(&sec_ctor, 1);
	return 0;
}

static void s_dtor(void *mem, int size, void *arg)
{
	atomic_fetch_add(&sec_dtor, 1);
}

static void test_secondary_shares_keg(void **state)
{
	enum { N = 40 };
	void *s[N], *p[N];

	uma_zone_t prim = uma_zcreate("ut_prim", 192, p_ctor, NULL, k_init, k_fini, UMA_ALIGN_PTR, 0);
	assert_non_null(prim);
	uma_zone_t sec = uma_zsecond_create("ut_sec", s_ctor, s_dtor, NULL, NULL, prim);
	assert_non_null(sec);
	for (int i = 0; i < N; i++) {
		assert_non_null(s[i] = uma_zalloc(sec, M_WAITOK));
		assert_non_null(p[i] = uma_zalloc(prim, M_WAITOK));
	}
	/* One keg: every item of both zones is a slab item of the same cache. */
	struct uma_kz *kz = skuma_kz_of_item(p[0]);
	assert_non_null(kz);
	for (int i = 0; i < N; i++) {
		assert_ptr_equal(skuma_kz_of_item(s[i]), kz);
		assert_ptr_equal(skuma_kz_of_item(p[i]), kz);
	}
	struct slabkit_cache_info in = sk_info("ut_prim");
	assert_int_equal(atomic_load(&keg_init), (long)(in.slabs * in.objects_per_slab));
	assert_int_equal(atomic_load(&pri_ctor), N);
	assert_int_equal(atomic_load(&sec_ctor), N);
	assert_int_equal(uma_zone_get_cur(sec), N);
	/* The primary's own count (core keeps the keg-wide count for it). */
	if (uma_zone_get_cur(prim) != N)
		fail_msg("uma_zone_get_cur(primary) = %d with %d primary and %d secondary items out: "
			 "core counts the shared keg, not the primary zone",
			 uma_zone_get_cur(prim), N, N);
	for (int i = 0; i < N; i++) {
		uma_zfree(sec, s[i]);
		uma_zfree(prim, p[i]);
	}
	assert_int_equal(atomic_load(&sec_dtor), N);
	uma_zdestroy(sec);
	uma_zdestroy(prim);
	assert_int_equal(atomic_load(&keg_init), atomic_load(&keg_fini));
}

/* Cache zones: items come from import and go back through release. */
#define POOL 64
struct pool {
	char mem[POOL][96];
	bool out[POOL];
	int imports, released, import_calls, release_calls;
	pthread_mutex_t lock;
};

static int pool_import(void *arg, void **store, int count, int domain, int flags)
{
	struct pool *p = arg;
	int n = 0;

	pthread_mutex_lock(&p->lock);
	p->import_calls++;
	for (int i = 0; i < POOL && n < count; i++)
		if (!p->out[i]) {
			p->out[i] = true;
			store[n++] = p->mem[i];
		}
	p->imports += n;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static void pool_release(void *arg, void **store, int count)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	p->release_calls++;
	for (int i = 0; i < count; i++) {
		int idx = (int)(((char *)store[i] - p->mem[0]) / 96);
		assert_true(idx >= 0 && idx < POOL && p->out[idx]);
		p->out[idx] = false;
	}
	p->released += count;
	pthread_mutex_unlock(&p->lock);
}

static void test_cache_zone_import_release(void **state)
{
	static struct pool pool = { .lock = PTHREAD_MUTEX_INITIALIZER };
	void *it[POOL];

	uma_zone_t z = uma_zcache_create("ut_czone", 96, NULL, NULL, NULL, NULL, pool_import,
					 pool_release, &pool, 0);
	assert_non_null(z);
	for (int i = 0; i < POOL; i++) {
		assert_non_null(it[i] = uma_zalloc(z, M_NOWAIT));
		assert_true((char *)it[i] >= pool.mem[0] && (char *)it[i] < pool.mem[POOL]);
	}
	assert_null(uma_zalloc(z, M_NOWAIT)); /* the import source is dry */
	assert_true(pool.import_calls > 0);
	assert_int_equal(pool.imports, POOL);
	assert_int_equal(uma_zone_get_cur(z), POOL);
	for (int i = 0; i < POOL; i++)
		uma_zfree(z, it[i]);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_true(pool.release_calls > 0);
	assert_int_equal(pool.released, POOL);
	assert_int_equal(uma_zone_get_cur(z), 0);
	uma_zdestroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_limit_nowait),
		SK_TEST(test_limit_waitok_woken_by_free),
		SK_TEST(test_secondary_shares_keg),
		SK_TEST(test_cache_zone_import_release),
	};

	sk_apply_test_filter();
	return cmocka_run_group_tests_name("uma_zones", tests, sk_group_setup, sk_group_teardown);
}
