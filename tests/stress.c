/*
 * Stress: threads doing random mixes of allocations and frees on shared
 * caches, handing objects to each other so frees are cross-thread, while a
 * separate thread shrinks, reclaims, ticks and prints reports.
 *
 * Every live object carries a pattern derived from a tag unique to its
 * allocation; it is checked before every free (and after realloc), so an
 * object handed out twice, or memory the allocator wrote into while it was
 * live, shows up as a corruption.  Worker threads never call cmocka
 * asserts: they count problems, the main thread asserts on the counts.
 *
 * Bounded: a test takes a few seconds on 2 cores; ASan/TSan builds take
 * longer.  $SLABKIT_STRESS_SCALE multiplies every iteration count
 * (0.1 for a quick run, 10 for a long one).  Run once per backend by ctest
 * (stress_<backend>).
 */
#include <stdatomic.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "sk_exchange.h"
#include "sk_test.h"

MALLOC_DEFINE(M_STRESS, "stress", "slabkit stress test type");

enum obj_kind { K_CACHE_SMALL, K_CACHE_ALIGNED, K_UMA, K_KMALLOC, K_BSD, K_NKINDS };

struct obj {
	void *p;
	size_t size;     /* bytes covered by the pattern */
	uint64_t tag;
	enum obj_kind kind;
};

/* Problems seen by any thread.  Synchronization: atomics. */
struct problems {
	atomic_long corruptions, alloc_failures, bulk_failures, duplicate_in_bulk,
		uma_ctor_bad, limit_exceeded;
};

/* Room for objects parked by one thread for another to free (sk_exchange.h). */
#define EXCHANGE_CAP 4096

struct stress {
	struct kmem_cache *small, *aligned;
	uma_zone_t zone;
	struct obj xchg_slots[EXCHANGE_CAP];
	struct sk_exchange xchg; /* objects parked for another thread to free */
	struct problems bad;
	atomic_int stop_reclaimer;
	atomic_long reclaim_passes;
	unsigned long ops_per_worker;
	unsigned large_one_in; /* kmalloc: one allocation in N is > 8 KiB */
};

#define SMALL_SIZE 48
#define ALIGNED_SIZE 200
#define ZONE_SIZE 96
#define UMA_LIVE 0x5eed5eed5eed5eedULL

/* The zone's ctor/dtor mark word 0; the pattern covers the rest. */
static int zone_ctor(void *mem, int size, void *arg, int flags)
{
	*(uint64_t *)mem = UMA_LIVE;
	return 0;
}

static void zone_dtor(void *mem, int size, void *arg)
{
	struct stress *s = arg;
	if (*(uint64_t *)mem != UMA_LIVE && s)
		atomic_fetch_add(&s->bad.uma_ctor_bad, 1);
	*(uint64_t *)mem = 0;
}

static void *pattern_start(const struct obj *o)
{
	return o->kind == K_UMA ? (char *)o->p + 8 : o->p;
}

/* Large blocks: pattern only the first and last 256 bytes (speed). */
static void obj_fill(const struct obj *o)
{
	unsigned char *p = pattern_start(o);
	if (o->size <= 4096) {
		sk_fill(p, o->size, o->tag);
	} else {
		sk_fill(p, 256, o->tag);
		sk_fill(p + o->size - 256, 256, ~o->tag);
	}
}

static bool obj_intact(const struct obj *o)
{
	const unsigned char *p = pattern_start(o);
	if (o->size <= 4096)
		return sk_check(p, o->size, o->tag) == SIZE_MAX;
	return sk_check(p, 256, o->tag) == SIZE_MAX &&
	       sk_check(p + o->size - 256, 256, ~o->tag) == SIZE_MAX;
}

static size_t random_kmalloc_size(struct stress *s, uint64_t *rng)
{
	if (sk_rand(rng) % s->large_one_in == 0)
		return 8193 + sk_rand(rng) % 120000;
	return 1 + sk_rand(rng) % (sk_rand(rng) % 4 ? 512 : 4096);
}

static bool obj_alloc(struct stress *s, struct obj *o, enum obj_kind kind, uint64_t tag,
		      uint64_t *rng)
{
	o->kind = kind;
	o->tag = tag;
	switch (kind) {
	case K_CACHE_SMALL:
		o->size = SMALL_SIZE;
		o->p = kmem_cache_alloc(s->small, GFP_KERNEL);
		break;
	case K_CACHE_ALIGNED:
		o->size = ALIGNED_SIZE;
		o->p = kmem_cache_alloc(s->aligned, GFP_KERNEL);
		break;
	case K_UMA:
		o->size = ZONE_SIZE - 8;
		o->p = uma_zalloc_arg(s->zone, s, M_WAITOK);
		break;
	case K_KMALLOC:
		o->size = random_kmalloc_size(s, rng);
		o->p = kmalloc(o->size, GFP_KERNEL);
		break;
	case K_BSD:
		o->size = 1 + sk_rand(rng) % (sk_rand(rng) % 16 ? 2048 : 70000);
		o->p = bsd_malloc(o->size, M_STRESS, M_WAITOK);
		break;
	default:
		o->p = NULL;
	}
	if (!o->p) {
		atomic_fetch_add(&s->bad.alloc_failures, 1);
		return false;
	}
	obj_fill(o);
	return true;
}

static void obj_free(struct stress *s, struct obj *o)
{
	if (!obj_intact(o))
		atomic_fetch_add(&s->bad.corruptions, 1);
	switch (o->kind) {
	case K_CACHE_SMALL: kmem_cache_free(s->small, o->p); break;
	case K_CACHE_ALIGNED: kmem_cache_free(s->aligned, o->p); break;
	case K_UMA: uma_zfree_arg(s->zone, o->p, s); break;
	case K_KMALLOC: kfree(o->p); break;
	case K_BSD: bsd_free(o->p, M_STRESS); break;
	default: break;
	}
	o->p = NULL;
}

/* Bulk allocation from the small cache: n distinct, patterned, freed in bulk. */
static void bulk_round(struct stress *s, uint64_t tag, uint64_t *rng)
{
	enum { MAXB = 64 };
	void *p[MAXB], *sorted[MAXB];
	size_t n = 1 + sk_rand(rng) % MAXB;
	int got = kmem_cache_alloc_bulk(s->small, GFP_KERNEL, n, p);
	if (got != (int)n) {
		atomic_fetch_add(&s->bad.bulk_failures, 1);
		return;
	}
	for (size_t i = 0; i < n; i++)
		sk_fill(p[i], SMALL_SIZE, tag + i);
	memcpy(sorted, p, n * sizeof(void *));
	if (!sk_disjoint(sorted, n, SMALL_SIZE))
		atomic_fetch_add(&s->bad.duplicate_in_bulk, 1);
	for (size_t i = 0; i < n; i++)
		if (sk_check(p[i], SMALL_SIZE, tag + i) != SIZE_MAX)
			atomic_fetch_add(&s->bad.corruptions, 1);
	kmem_cache_free_bulk(s->small, n, p);
}

/* krealloc a kmalloc object: the prefix survives. */
static void realloc_round(struct stress *s, struct obj *o, uint64_t *rng)
{
	if (!obj_intact(o))
		atomic_fetch_add(&s->bad.corruptions, 1);
	size_t n = random_kmalloc_size(s, rng);
	void *q = krealloc(o->p, n, GFP_KERNEL);
	if (!q) {
		atomic_fetch_add(&s->bad.alloc_failures, 1);
		return;
	}
	size_t keep = n < o->size ? n : o->size;
	if (keep <= 4096 && o->size <= 4096 && sk_check(q, keep, o->tag) != SIZE_MAX)
		atomic_fetch_add(&s->bad.corruptions, 1);
	o->p = q;
	o->size = n;
	obj_fill(o);
}

struct worker {
	struct stress *s;
	unsigned id;
};

#define LOCAL_SLOTS 128

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct stress *s = w->s;
	uint64_t rng = 0xC0FFEE1234567ULL * (w->id + 1);
	uint64_t seq = (uint64_t)(w->id + 1) << 44;
	struct obj local[LOCAL_SLOTS];
	memset(local, 0, sizeof(local));
	for (unsigned long op = 0; op < s->ops_per_worker; op++) {
		unsigned r = (unsigned)(sk_rand(&rng) % 100);
		struct obj *o = &local[sk_rand(&rng) % LOCAL_SLOTS];
		if (r < 60) {
			if (!o->p) {
				obj_alloc(s, o, (enum obj_kind)(sk_rand(&rng) % K_NKINDS), seq++, &rng);
			} else if (sk_rand(&rng) % 2 && sk_exchange_put(&s->xchg, o)) {
				o->p = NULL; /* another thread frees it */
			} else {
				obj_free(s, o);
			}
		} else if (r < 75) {
			struct obj t;
			if (sk_exchange_take(&s->xchg, &t, &rng))
				obj_free(s, &t);
		} else if (r < 82) {
			bulk_round(s, seq, &rng);
			seq += 64;
		} else if (r < 88) {
			if (o->p && o->kind == K_KMALLOC)
				realloc_round(s, o, &rng);
		} else {
			/* A short burst of the same kind: fills slabs, empties them. */
			struct obj burst[16];
			enum obj_kind k = (enum obj_kind)(sk_rand(&rng) % K_NKINDS);
			int n = 0;
			for (int i = 0; i < 16; i++)
				if (obj_alloc(s, &burst[n], k, seq++, &rng))
					n++;
			for (int i = n - 1; i >= 0; i--)
				obj_free(s, &burst[i]);
		}
	}
	for (unsigned i = 0; i < LOCAL_SLOTS; i++)
		if (local[i].p)
			obj_free(s, &local[i]);
	return NULL;
}

static int count_cache(const struct slabkit_cache_info *info, void *arg)
{
	(*(unsigned long *)arg)++;
	return 0;
}

static void *reclaimer_main(void *arg)
{
	struct stress *s = arg;
	uint64_t rng = 777;
	FILE *null = fopen("/dev/null", "w");
	while (!atomic_load(&s->stop_reclaimer)) {
		switch (sk_rand(&rng) % 10) {
		case 0: kmem_cache_shrink(s->small); break;
		case 1: kmem_cache_shrink(s->aligned); break;
		case 2: uma_reclaim(UMA_RECLAIM_TRIM); break;
		case 3: uma_reclaim(UMA_RECLAIM_DRAIN); break;
		case 4: uma_reclaim(UMA_RECLAIM_DRAIN_CPU); break;
		case 5: uma_zone_reclaim(s->zone, UMA_RECLAIM_DRAIN_CPU); break;
		case 6: slabkit_shrink_all(); break;
		case 7: slabkit_tick(); break;
		case 8:
			if (null) {
				slabkit_report_slabinfo(null);
				slabkit_report_vmstat_z(null);
				slabkit_report_vmstat_m(null);
			}
			break;
		default: {
			unsigned long n = 0;
			slabkit_foreach_cache(count_cache, &n);
			struct slabkit_cache_info info;
			if (slabkit_cache_info_by_name("skt_stress_small", &info) == 0 &&
			    info.in_use > info.high_water)
				atomic_fetch_add(&s->bad.limit_exceeded, 1);
			break;
		}
		}
		atomic_fetch_add(&s->reclaim_passes, 1);
		sk_sleep_ms(1);
	}
	if (null)
		fclose(null);
	return NULL;
}

/* Run nthreads (<= 8) workers against the reclaimer thread, wait for all of
 * them, then free whatever is left in the exchange. */
static void run_workers(struct stress *s, unsigned nthreads)
{
	pthread_t rec, t[8];
	struct worker w[8];

	assert_true(nthreads <= 8);
	assert_int_equal(pthread_create(&rec, NULL, reclaimer_main, s), 0);
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ s, i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	atomic_store(&s->stop_reclaimer, 1);
	pthread_join(rec, NULL);
	struct obj o;
	uint64_t rng = 1;
	while (sk_exchange_take(&s->xchg, &o, &rng))
		obj_free(s, &o);
}

static void check_problems(struct stress *s)
{
	long corrupt = atomic_load(&s->bad.corruptions);
	long fails = atomic_load(&s->bad.alloc_failures);
	long bulk = atomic_load(&s->bad.bulk_failures);
	long dup = atomic_load(&s->bad.duplicate_in_bulk);
	long ctor = atomic_load(&s->bad.uma_ctor_bad);
	long hw = atomic_load(&s->bad.limit_exceeded);
	if (corrupt || fails || bulk || dup || ctor || hw)
		fail_msg("corruptions %ld, allocation failures %ld, bulk failures %ld, "
			 "duplicates in bulk %ld, uma dtor saw unconstructed %ld, "
			 "in_use above high_water %ld",
			 corrupt, fails, bulk, dup, ctor, hw);
}

static void run_mixed(unsigned nthreads)
{
	struct stress *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	sk_exchange_init(&s->xchg, s->xchg_slots, EXCHANGE_CAP, sizeof(s->xchg_slots[0]));
	s->small = kmem_cache_create("skt_stress_small", SMALL_SIZE, 0, 0, NULL);
	s->aligned = kmem_cache_create("skt_stress_aligned", ALIGNED_SIZE, 0, SLAB_HWCACHE_ALIGN,
				       NULL);
	s->zone = uma_zcreate("skt_stress_zone", ZONE_SIZE, zone_ctor, zone_dtor, NULL, NULL,
			      UMA_ALIGN_PTR, 0);
	assert_non_null(s->small);
	assert_non_null(s->aligned);
	assert_non_null(s->zone);
	s->ops_per_worker = sk_scaled(600000) / nthreads;
	s->large_one_in = 64;
	struct slabkit_stats base;
	slabkit_stats(&base);
	struct malloc_type_stats_sum t0;
	slabkit_malloc_type_stats(M_STRESS, &t0);

	uint64_t start = sk_now_ns();
	run_workers(s, nthreads);
	uint64_t ms = (sk_now_ns() - start) / 1000000;
	print_message("  %u workers x %lu ops, %ld reclaim passes, %llu ms\n", nthreads,
		      s->ops_per_worker, atomic_load(&s->reclaim_passes), (unsigned long long)ms);

	check_problems(s);
	assert_int_equal(sk_info("skt_stress_small").in_use, 0);
	assert_int_equal(sk_info("skt_stress_aligned").in_use, 0);
	assert_int_equal(uma_zone_get_cur(s->zone), 0);
	struct slabkit_stats end;
	slabkit_stats(&end);
	assert_int_equal(end.large_allocs, base.large_allocs);
	struct malloc_type_stats_sum t1;
	slabkit_malloc_type_stats(M_STRESS, &t1);
	assert_int_equal(t1.allocs - t0.allocs, t1.frees - t0.frees);
	assert_int_equal(t1.memalloced - t0.memalloced, t1.memfreed - t0.memfreed);
	/* Everything freed: a full drain leaves the caches without slabs. */
	assert_int_equal(kmem_cache_shrink(s->small), 0);
	assert_int_equal(kmem_cache_shrink(s->aligned), 0);
	uma_zone_reclaim(s->zone, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("skt_stress_zone").slabs, 0);
	kmem_cache_destroy(s->small);
	kmem_cache_destroy(s->aligned);
	uma_zdestroy(s->zone);
	sk_exchange_destroy(&s->xchg);
	free(s);
}

static void test_mixed_2_threads(void **state)
{
	(void)state;
	run_mixed(2);
}

static void test_mixed_4_threads(void **state)
{
	(void)state;
	run_mixed(4);
}

static void test_mixed_8_threads(void **state)
{
	(void)state;
	run_mixed(8);
}

/* Threads create, use and destroy their own caches and zones while another
 * walks the registry and prints reports. */
struct lifecycle {
	atomic_int stop;
	atomic_long failures, corruptions;
	unsigned long rounds;
};

struct lc_worker {
	struct lifecycle *l;
	unsigned id;
};

static void *lifecycle_worker(void *arg)
{
	struct lc_worker *w = arg;
	struct lifecycle *l = w->l;
	char name[SLABKIT_NAME_MAX];
	void *o[100];
	for (unsigned long r = 0; r < l->rounds; r++) {
		unsigned size = 16 + (unsigned)((r * 37 + w->id * 11) % 400);
		snprintf(name, sizeof(name), "skt_lc_%u_%lu", w->id, r);
		if (r % 2) {
			struct kmem_cache *c = kmem_cache_create(name, size, 0, 0, NULL);
			if (!c) {
				atomic_fetch_add(&l->failures, 1);
				continue;
			}
			for (int i = 0; i < 100; i++) {
				o[i] = kmem_cache_alloc(c, GFP_KERNEL);
				if (!o[i]) {
					atomic_fetch_add(&l->failures, 1);
					continue;
				}
				sk_fill(o[i], size, r << 8 | (unsigned)i);
			}
			for (int i = 0; i < 100; i++) {
				if (!o[i])
					continue;
				if (sk_check(o[i], size, r << 8 | (unsigned)i) != SIZE_MAX)
					atomic_fetch_add(&l->corruptions, 1);
				kmem_cache_free(c, o[i]);
			}
			kmem_cache_destroy(c);
		} else {
			uma_zone_t z = uma_zcreate(name, size, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
			if (!z) {
				atomic_fetch_add(&l->failures, 1);
				continue;
			}
			for (int i = 0; i < 100; i++) {
				o[i] = uma_zalloc(z, M_WAITOK);
				if (o[i])
					sk_fill(o[i], size, r << 8 | (unsigned)i);
			}
			for (int i = 0; i < 100; i++) {
				if (!o[i]) {
					atomic_fetch_add(&l->failures, 1);
					continue;
				}
				if (sk_check(o[i], size, r << 8 | (unsigned)i) != SIZE_MAX)
					atomic_fetch_add(&l->corruptions, 1);
				uma_zfree(z, o[i]);
			}
			uma_zdestroy(z);
		}
	}
	return NULL;
}

static void *lifecycle_observer(void *arg)
{
	struct lifecycle *l = arg;
	FILE *null = fopen("/dev/null", "w");
	while (!atomic_load(&l->stop)) {
		unsigned long n = 0;
		slabkit_foreach_cache(count_cache, &n);
		if (null) {
			slabkit_report_slabinfo(null);
			slabkit_report_vmstat_z(null);
		}
		uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
		slabkit_tick();
		sk_sleep_ms(1);
	}
	if (null)
		fclose(null);
	return NULL;
}

static void test_cache_lifecycle(void **state)
{
	(void)state;
	enum { THREADS = 4 };
	struct lifecycle l = { .rounds = sk_scaled(300) };
	pthread_t obs, t[THREADS];
	struct lc_worker w[THREADS];
	assert_int_equal(pthread_create(&obs, NULL, lifecycle_observer, &l), 0);
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct lc_worker){ &l, i };
		assert_int_equal(pthread_create(&t[i], NULL, lifecycle_worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&l.stop, 1);
	pthread_join(obs, NULL);
	assert_int_equal(atomic_load(&l.failures), 0);
	assert_int_equal(atomic_load(&l.corruptions), 0);
	/* Every cache the workers made is gone. */
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("skt_lc_0_1", &info), -ENOENT);
	assert_int_equal(slabkit_cache_info_by_name("skt_lc_3_0", &info), -ENOENT);
}

/* A zone with a tiny limit: threads wait for each other with M_WAITOK and
 * try with M_NOWAIT (every third allocation, which may be refused); the
 * number of items out never exceeds the limit, and every M_WAITOK returns
 * an item.  (A lost wake-up would not hang it: sleepers also wake every
 * 20 ms.  It would show as a run many times longer.) */
struct limited {
	uma_zone_t zone;
	int max;
	atomic_int held, peak;
	atomic_long failures, over, refused;
	unsigned long ops;
};

static void *limited_worker(void *arg)
{
	struct limited *z = arg;
	for (unsigned long i = 0; i < z->ops; i++) {
		bool nowait = i % 3 == 0;
		void *p = uma_zalloc(z->zone, nowait ? M_NOWAIT : M_WAITOK);
		if (!p) {
			atomic_fetch_add(nowait ? &z->refused : &z->failures, 1);
			continue;
		}
		int now = atomic_fetch_add(&z->held, 1) + 1;
		if (now > z->max)
			atomic_fetch_add(&z->over, 1);
		int peak = atomic_load(&z->peak);
		while (now > peak && !atomic_compare_exchange_weak(&z->peak, &peak, now))
			;
		if (uma_zone_get_cur(z->zone) > z->max)
			atomic_fetch_add(&z->over, 1);
		memset(p, (int)i, 64);
		if (i % 16 == 0)
			sched_yield();
		atomic_fetch_sub(&z->held, 1);
		uma_zfree(z->zone, p);
	}
	return NULL;
}

static void test_uma_limit_contention(void **state)
{
	(void)state;
	enum { THREADS = 4 };
	struct limited z = { .ops = sk_scaled(40000) };
	z.zone = uma_zcreate("skt_stress_limit", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z.zone);
	z.max = uma_zone_set_max(z.zone, 2);
	assert_true(z.max >= 2);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, limited_worker, &z), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	print_message("  limit %d, peak items held %d, M_NOWAIT refused %ld\n", z.max, atomic_load(&z.peak),
		      atomic_load(&z.refused));
	assert_int_equal(atomic_load(&z.failures), 0);
	assert_int_equal(atomic_load(&z.over), 0);
	assert_int_equal(uma_zone_get_cur(z.zone), 0);
	uma_zdestroy(z.zone);
}

/* Large (page path) allocations from several threads, freed by others,
 * while pages are returned to the OS concurrently. */
static void test_large_cross_thread(void **state)
{
	(void)state;
	struct stress *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	sk_exchange_init(&s->xchg, s->xchg_slots, EXCHANGE_CAP, sizeof(s->xchg_slots[0]));
	s->small = kmem_cache_create("skt_stress_small", SMALL_SIZE, 0, 0, NULL);
	s->aligned = kmem_cache_create("skt_stress_aligned", ALIGNED_SIZE, 0, 0, NULL);
	s->zone = uma_zcreate("skt_stress_zone", ZONE_SIZE, zone_ctor, zone_dtor, NULL, NULL,
			      UMA_ALIGN_PTR, 0);
	assert_non_null(s->small);
	assert_non_null(s->aligned);
	assert_non_null(s->zone);
	s->ops_per_worker = sk_scaled(120000) / 4;
	s->large_one_in = 2; /* half the kmallocs take the page path */
	struct slabkit_stats base;
	slabkit_stats(&base);
	run_workers(s, 4);
	check_problems(s);
	struct slabkit_stats end;
	slabkit_stats(&end);
	assert_int_equal(end.large_allocs, base.large_allocs);
	assert_int_equal(end.large_pages, base.large_pages);
	kmem_cache_destroy(s->small);
	kmem_cache_destroy(s->aligned);
	uma_zdestroy(s->zone);
	sk_exchange_destroy(&s->xchg);
	free(s);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		SK_TEST(test_mixed_2_threads),     SK_TEST(test_mixed_4_threads),
		SK_TEST(test_mixed_8_threads),     SK_TEST(test_cache_lifecycle),
		SK_TEST(test_uma_limit_contention), SK_TEST(test_large_cross_thread),
	};
	return cmocka_run_group_tests_name("stress", tests, sk_group_setup, sk_group_teardown);
}
