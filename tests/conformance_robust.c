/*
 * Conformance: robustness contracts every backend meets alike.
 *
 *  - user callbacks (ctor, UMA init) may allocate with __GFP_NOFAIL or
 *    M_WAITOK while the page provider fails: no allocator lock is held
 *    around them, so waiting for memory cannot wait for the caller itself;
 *  - the failure policy (docs/api.md "When memory runs out"): small
 *    GFP_KERNEL requests do not fail while draining makes room, and
 *    waiting is proportional (one injected failure costs no sleep);
 *  - misuse is checked before anything is done (krealloc/kfree of a
 *    malloc(9) block, bsd_free of a kmalloc block, a destroyed cache or
 *    zone, a negative zone limit);
 *  - UMA_ZONE_NOFREE keeps a zone's memory; objects above 256 KiB work;
 *  - uma_zone_set_max keeps exact counts while fast paths race it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "conformance.h"

/* A hang is a failure: the test that arms this dies with a message instead
 * of sitting until ctest's timeout. */
static const char *watchdog_what;
static void watchdog_fired(int sig)
{
	(void)sig;
	static const char msg[] = "watchdog: the test hung (deadlock?): ";
	ssize_t rc = write(2, msg, sizeof(msg) - 1);
	rc = write(2, watchdog_what, strlen(watchdog_what));
	rc = write(2, "\n", 1);
	(void)rc;
	_exit(3);
}

static void watchdog_arm(const char *what, unsigned seconds)
{
	watchdog_what = what;
	signal(SIGALRM, watchdog_fired);
	alarm(seconds);
}

static void watchdog_disarm(void)
{
	alarm(0);
}

static void faulty_init(unsigned every)
{
	struct slabkit_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.page_fail_every = every;
	cfg.tick_ms = -1;
	if (sk_fresh_init(&cfg) != 0)
		fail_msg("slabkit_init(page_fail_every = %u) failed", every);
}

/* ---------------------------------------------------------------------- */

enum { CTOR_BLOCKS_MAX = 4096 };
static void *ctor_blocks[CTOR_BLOCKS_MAX];
static atomic_int ctor_nblocks;

static void allocating_ctor(void *obj)
{
	void *b = kmalloc(16384, GFP_KERNEL | __GFP_NOFAIL);
	int i = atomic_fetch_add(&ctor_nblocks, 1);
	if (i < CTOR_BLOCKS_MAX)
		ctor_blocks[i] = b;
	*(void **)obj = b;
}

static int allocating_init(void *mem, int size, int flags)
{
	(void)size;
	void *b = bsd_malloc(16384, M_TEST, M_WAITOK);
	int i = atomic_fetch_add(&ctor_nblocks, 1);
	if (i < CTOR_BLOCKS_MAX)
		ctor_blocks[i] = b;
	*(void **)mem = b;
	return 0;
}

/* A ctor that allocates with __GFP_NOFAIL (and a UMA init with M_WAITOK)
 * while every second page allocation fails: the wait-for-memory path runs
 * inside the callback and must not wait for a lock its own thread holds. */
static void test_ctor_allocates_under_faults(void **state)
{
	(void)state;
	enum { N = 300 };
	faulty_init(2);
	watchdog_arm("ctor allocating with __GFP_NOFAIL under page faults", 60);
	atomic_store(&ctor_nblocks, 0);
	struct kmem_cache *c = NULL;
	for (int i = 0; i < 20 && !c; i++)
		c = kmem_cache_create("skt_ctor_nofail", 200, 0, 0, allocating_ctor);
	assert_non_null(c);
	void *o[N];
	for (int i = 0; i < N; i++) {
		o[i] = kmem_cache_alloc(c, GFP_KERNEL | __GFP_NOFAIL);
		assert_non_null(o[i]);
		assert_non_null(*(void **)o[i]);
	}
	for (int i = 0; i < N; i++)
		kmem_cache_free(c, o[i]);
	kmem_cache_destroy(c);
	int n = atomic_load(&ctor_nblocks);
	assert_true(n > 0 && n <= CTOR_BLOCKS_MAX);
	for (int i = 0; i < n; i++)
		kfree(ctor_blocks[i]);

	atomic_store(&ctor_nblocks, 0);
	uma_zone_t z = NULL;
	for (int i = 0; i < 20 && !z; i++)
		z = uma_zcreate("skt_init_waitok", 200, NULL, NULL, allocating_init, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	for (int i = 0; i < N; i++) {
		o[i] = uma_zalloc(z, M_WAITOK);
		assert_non_null(o[i]);
	}
	for (int i = 0; i < N; i++)
		uma_zfree(z, o[i]);
	uma_zdestroy(z);
	n = atomic_load(&ctor_nblocks);
	assert_true(n > 0 && n <= CTOR_BLOCKS_MAX);
	for (int i = 0; i < n; i++)
		bsd_free(ctor_blocks[i], M_TEST);
	watchdog_disarm();
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* GFP_KERNEL requests up to 32 KiB do not fail while a retry can succeed
 * (here: one page allocation in five fails); NOWAIT ones do fail. */
static void test_gfp_kernel_does_not_fail(void **state)
{
	(void)state;
	faulty_init(5);
	uint64_t rng = 99;
	int nulls = 0, nowait_nulls = 0;
	for (int i = 0; i < 100; i++) {
		void *q = kmalloc(100000, GFP_NOWAIT); /* one page-provider call each */
		if (!q)
			nowait_nulls++;
		kfree(q);
	}
	for (int i = 0; i < 3000; i++) {
		size_t n = 1 + sk_rand(&rng) % 32768;
		void *p = kmalloc(n, GFP_KERNEL);
		if (!p)
			nulls++;
		kfree(p);
	}
	struct kmem_cache *c = NULL;
	for (int i = 0; i < 20 && !c; i++)
		c = kmem_cache_create("skt_gfp_kernel", 3000, 0, 0, NULL);
	assert_non_null(c);
	enum { M = 2000 };
	void **o = calloc(M, sizeof(*o));
	for (int i = 0; i < M; i++)
		if (!(o[i] = kmem_cache_alloc(c, GFP_KERNEL)))
			nulls++;
	for (int i = 0; i < M; i++)
		kmem_cache_free(c, o[i]);
	free(o);
	kmem_cache_destroy(c);
	if (nulls)
		fail_msg("%d GFP_KERNEL allocations of <= 32 KiB returned NULL with one page "
			 "allocation in five failing", nulls);
	assert_true(nowait_nulls > 0);
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* Waiting is proportional: an injected failure that the next attempt
 * overcomes costs no sleep.  Every second page allocation fails; 1000
 * M_WAITOK blocks of 3 pages each must take well under a second (with a
 * 5 ms sleep per failure they took over 5 s). */
static void test_waitok_waits_proportionally(void **state)
{
	(void)state;
	faulty_init(2);
	uint64_t t0 = sk_now_ns();
	for (int i = 0; i < 1000; i++) {
		void *p = bsd_malloc(70000 + (size_t)i, M_TEST, M_WAITOK);
		assert_non_null(p);
		bsd_free(p, M_TEST);
	}
	double ms = (double)(sk_now_ns() - t0) / 1e6;
	print_message("  %s: 1000 M_WAITOK allocations with every second page failing: %.0f ms\n",
		      slabkit_backend(), ms);
	if (ms > 1500)
		fail_msg("1000 M_WAITOK allocations took %.0f ms: waiting is not proportional", ms);
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* ---------------------------------------------------------------------- */

/* krealloc and kfree of malloc(9) blocks, bsd_free of kmalloc blocks: one
 * report naming the call the user made, and nothing done. */
static void test_cross_api_blocks_refused(void **state)
{
	(void)state;
	sk_expect_panics();
	size_t sizes[] = { 100, 3000, 200000 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char buf[32];
		void *p = bsd_malloc(sizes[i], M_TEST, M_WAITOK);
		assert_non_null(p);
		sk_fill(p, sizes[i], 7 + i);
		struct slabkit_stats before = stats_now();
		struct malloc_type_stats_sum tb = type_stats(M_TEST);

		unsigned panics = sk_panic_count();
		assert_null(krealloc(p, 500000, GFP_KERNEL));
		assert_int_equal(sk_panic_count(), panics + 1);
		sk_assert_reported("krealloc", sk_ptr_text(p, buf), NULL);
		assert_int_equal(stats_now().large_allocs, before.large_allocs);

		kfree(p);
		assert_int_equal(sk_panic_count(), panics + 2);
		sk_assert_reported("kfree", sk_ptr_text(p, buf), "malloc");

		assert_int_equal(sk_check(p, sizes[i], 7 + i), SIZE_MAX);
		struct malloc_type_stats_sum ta = type_stats(M_TEST);
		assert_int_equal(ta.allocs - ta.frees, tb.allocs - tb.frees);
		bsd_free(p, M_TEST); /* still a live malloc(9) block */
		assert_int_equal(sk_panic_count(), panics + 2);

		void *k = kmalloc(sizes[i], GFP_KERNEL);
		assert_non_null(k);
		bsd_free(k, M_TEST);
		assert_int_equal(sk_panic_count(), panics + 3);
		sk_assert_reported("bsd_free", sk_ptr_text(k, buf), NULL);
		kfree(k); /* still a live kmalloc block */
		assert_int_equal(sk_panic_count(), panics + 3);
	}
}

/* A negative limit is refused with a message and changes nothing. */
static void test_zone_negative_limit(void **state)
{
	(void)state;
	sk_expect_messages();
	uma_zone_t z = uma_zcreate("skt_neg_max", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_int_equal(uma_zone_set_max(z, 10), 10);
	assert_int_equal(uma_zone_set_max(z, -5), 10);
	sk_assert_reported("uma_zone_set_max", "skt_neg_max", "-5");
	assert_int_equal(uma_zone_get_max(z), 10);
	uma_zdestroy(z);
}

/* A destroyed cache or zone used again: one report, no crash. */
static void test_destroyed_handles_reported(void **state)
{
	(void)state;
	sk_expect_panics();
	struct kmem_cache *c = kmem_cache_create("skt_destroyed", 96, 0, 0, NULL);
	assert_non_null(c);
	void *o = kmem_cache_alloc(c, GFP_KERNEL);
	kmem_cache_free(c, o);
	kmem_cache_destroy(c);
	unsigned panics = sk_panic_count();
	kmem_cache_destroy(c);
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("kmem_cache_destroy", "skt_destroyed", "destroyed");
	assert_null(kmem_cache_alloc(c, GFP_KERNEL));
	assert_int_equal(sk_panic_count(), panics + 2);
	sk_assert_reported("kmem_cache_alloc", "skt_destroyed", "destroyed");

	/* Destroyed with an object remaining: it stays for that object's
	 * free, but allocating from it or destroying it again is reported. */
	c = kmem_cache_create("skt_destroyed_live", 96, 0, 0, NULL);
	o = kmem_cache_alloc(c, GFP_KERNEL);
	kmem_cache_destroy(c);
	sk_assert_reported("Objects remaining", "skt_destroyed_live", NULL);
	panics = sk_panic_count();
	assert_null(kmem_cache_alloc(c, GFP_KERNEL));
	assert_int_equal(sk_panic_count(), panics + 1);
	kmem_cache_destroy(c);
	assert_int_equal(sk_panic_count(), panics + 2);
	sk_assert_reported("kmem_cache_destroy", "skt_destroyed_live", "already destroyed");
	kmem_cache_free(c, o);
	assert_int_equal(sk_panic_count(), panics + 2);

	uma_zone_t z = uma_zcreate("skt_zdestroyed", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	uma_zdestroy(z);
	panics = sk_panic_count();
	uma_zdestroy(z);
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("uma_zdestroy", "skt_zdestroyed", "destroyed");
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(sk_panic_count(), panics + 2);
	sk_assert_reported("uma_zalloc", "skt_zdestroyed", "destroyed");
}

/* UMA_ZONE_NOFREE: freed items' memory stays with the zone on every
 * backend; the same zone without the flag gives it back. */
static void test_nofree_zone_keeps_memory(void **state)
{
	(void)state;
	int sizes[] = { 128, 8192 };
	for (int s = 0; s < 2; s++) {
		for (int nofree = 0; nofree < 2; nofree++) {
			char name[32];
			snprintf(name, sizeof(name), "skt_nofree_%d_%d", sizes[s], nofree);
			uma_zone_t z = uma_zcreate(name, (size_t)sizes[s], NULL, NULL, NULL, NULL,
						   UMA_ALIGN_PTR, nofree ? UMA_ZONE_NOFREE : 0);
			assert_non_null(z);
			void *it[200];
			for (int i = 0; i < 200; i++)
				assert_non_null(it[i] = uma_zalloc(z, M_WAITOK));
			uint64_t held = sk_info(name).pages;
			for (int i = 0; i < 200; i++)
				uma_zfree(z, it[i]);
			uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
			uint64_t left = sk_info(name).pages;
			if (nofree && left < held)
				fail_msg("%s: NOFREE zone of %d-byte items went from %llu to %llu pages",
					 slabkit_backend(), sizes[s], (unsigned long long)held,
					 (unsigned long long)left);
			if (!nofree && left != 0)
				fail_msg("%s: zone of %d-byte items kept %llu pages after reclaim",
					 slabkit_backend(), sizes[s], (unsigned long long)left);
			/* Reuse works, and destroy gives everything back. */
			for (int i = 0; i < 200; i++)
				assert_non_null(it[i] = uma_zalloc(z, M_WAITOK));
			assert_true(sk_disjoint(it, 200, (size_t)sizes[s]));
			for (int i = 0; i < 200; i++)
				uma_zfree(z, it[i]);
			uma_zdestroy(z);
		}
	}
}

/* Objects above 256 KiB on every backend; above 64 MiB refused alike. */
static void test_large_objects_alike(void **state)
{
	(void)state;
	size_t sizes[] = { (256u << 10) + 1, (1u << 20) + 8, 3u << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct kmem_cache *c = kmem_cache_create("skt_big", (unsigned)sizes[i], 0, 0, NULL);
		if (!c)
			fail_msg("%s: kmem_cache_create of %zu-byte objects refused", slabkit_backend(),
				 sizes[i]);
		void *a = kmem_cache_alloc(c, GFP_KERNEL), *b = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(a);
		assert_non_null(b);
		sk_fill(a, sizes[i], 1);
		sk_fill(b, sizes[i], 2);
		assert_int_equal(sk_check(a, sizes[i], 1), SIZE_MAX);
		kmem_cache_free(c, a);
		assert_int_equal(sk_check(b, sizes[i], 2), SIZE_MAX);
		kmem_cache_free(c, b);
		kmem_cache_destroy(c);
	}
	sk_expect_messages();
	assert_null(kmem_cache_create("skt_too_big", (64u << 20) + 1, 0, 0, NULL));
	sk_assert_reported("skt_too_big", NULL, NULL);
}

/* uma_zone_set_max while other threads allocate and free on the zone's
 * fast path: afterwards the count is exact (0 when all is freed) and
 * M_NOWAIT allocations under the limit never fail. */
struct limit_race {
	uma_zone_t z;
	atomic_bool go, stop;
	atomic_int fails;
};

static void *limit_racer(void *arg)
{
	struct limit_race *r = arg;
	void *held[8] = { 0 };
	uint64_t rng = (uintptr_t)&held;
	while (!atomic_load(&r->go))
		;
	for (unsigned i = 0; !atomic_load(&r->stop) || i < 2000; i++) {
		unsigned k = (unsigned)(sk_rand(&rng) % 8);
		if (held[k]) {
			uma_zfree(r->z, held[k]);
			held[k] = NULL;
		} else if (!(held[k] = uma_zalloc(r->z, M_NOWAIT))) {
			atomic_fetch_add(&r->fails, 1);
		}
	}
	for (int k = 0; k < 8; k++)
		if (held[k])
			uma_zfree(r->z, held[k]);
	return NULL;
}

static void test_zone_set_max_races(void **state)
{
	(void)state;
	enum { THREADS = 3, ROUNDS = 40 };
	for (int round = 0; round < ROUNDS; round++) {
		struct limit_race r = { 0 };
		r.z = uma_zcreate("skt_max_race", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
		assert_non_null(r.z);
		pthread_t t[THREADS];
		for (int i = 0; i < THREADS; i++)
			pthread_create(&t[i], NULL, limit_racer, &r);
		atomic_store(&r.go, true);
		for (volatile int spin = 0; spin < (round % 8) * 2000; spin++)
			;
		assert_int_equal(uma_zone_set_max(r.z, 1000), 1000);
		atomic_store(&r.stop, true);
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
		int cur = uma_zone_get_cur(r.z);
		if (cur != 0 || atomic_load(&r.fails))
			fail_msg("round %d: after every item was freed the zone counts %d in use "
				 "(%d M_NOWAIT failures under a limit of 1000 with at most %d out)",
				 round, cur, atomic_load(&r.fails), THREADS * 8);
		/* The limit still holds exactly. */
		void *it[1001];
		int got = 0;
		while (got < 1001 && (it[got] = uma_zalloc(r.z, M_NOWAIT)))
			got++;
		assert_int_equal(got, 1000);
		while (got--)
			uma_zfree(r.z, it[got]);
		assert_int_equal(uma_zone_get_cur(r.z), 0);
		uma_zdestroy(r.z);
	}
}

/* Found by tests/fuzz/fuzz_kmem_cache: a cache with SLAB_STORE_USER and
 * red zones or poisoning handed out objects from its CPU slot (SLUB's CPU
 * freelist) without the debug layer, which then refused their frees as
 * "not an object of this cache in use" and leaked them.  Every object of
 * such a cache, through every free call, must be freed cleanly. */
static void test_debug_store_user_cache_frees(void **state)
{
	(void)state;
	static const unsigned flag_sets[] = {
		SLAB_STORE_USER | SLAB_RED_ZONE, SLAB_STORE_USER | SLAB_POISON,
		SLAB_STORE_USER | SLAB_RED_ZONE | SLAB_POISON,
	};
	for (unsigned f = 0; f < sizeof(flag_sets) / sizeof(flag_sets[0]); f++) {
		struct kmem_cache *c = kmem_cache_create("skt_dbg_user", 839, 256, flag_sets[f], NULL);
		assert_non_null(c);
		void *p[40];
		for (int round = 0; round < 3; round++) {
			for (int i = 0; i < 40; i++) {
				p[i] = kmem_cache_alloc(c, GFP_KERNEL);
				assert_non_null(p[i]);
				memset(p[i], i, 839);
			}
			for (int i = 0; i < 40; i++) {
				if (i % 2)
					kfree(p[i]);
				else
					kmem_cache_free(c, p[i]);
			}
		}
		assert_int_equal(sk_panic_count(), 0);
		struct slabkit_cache_info info = sk_info("skt_dbg_user");
		assert_int_equal(info.in_use, 0);
		assert_int_equal(info.allocs, 120);
		assert_int_equal(info.frees, 120);
		kmem_cache_destroy(c);
	}
}

static const struct CMUnitTest robust_tests[] = {
	SK_TEST(test_debug_store_user_cache_frees),
	SK_TEST(test_ctor_allocates_under_faults),
	SK_TEST(test_gfp_kernel_does_not_fail),
	SK_TEST(test_waitok_waits_proportionally),
	SK_TEST(test_cross_api_blocks_refused),
	SK_TEST(test_zone_negative_limit),
	SK_TEST(test_destroyed_handles_reported),
	SK_TEST(test_nofree_zone_keeps_memory),
	SK_TEST(test_large_objects_alike),
	SK_TEST(test_zone_set_max_races),
};

const struct conformance_group conformance_robust = {
	"robust", robust_tests, sizeof(robust_tests) / sizeof(robust_tests[0])
};
