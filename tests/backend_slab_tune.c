/*
 * SLAB backend tunables: Linux's defaults by object size, limit / batchcount
 * / shared through slabkit_cache_tune and through the SLABKIT_TUNE config
 * string (environment and struct slabkit_config), bad values refused,
 * and resizing the per-CPU arrays while other threads allocate and free.
 *
 * Runs with SLABKIT_BACKEND=slab and SLABKIT_TICK_MS=-1.  The main thread
 * is pinned to CPU 0 so "this CPU's array" is slot 0; workers run anywhere.
 */
#define _GNU_SOURCE
#include <sched.h>

#include <slabkit/linux/slab.h>

#include "slab_test.h"
#include "sk_test.h"

#define ENV_TUNE "slab_cfg64:limit=30,batchcount=7,shared=2;slab_cfg_big:limit=500"

static struct sk_pcpu_slot *slot0(struct kmem_cache *s)
{
	return sk_pcpu_slot(sk_of(s), 0);
}

static void expect_tunables(const char *name, long limit, long batch, long shared)
{
	struct slabkit_cache_info info = sk_info(name);

	if (info.limit != limit || info.batchcount != batch || info.shared != shared)
		fprintf(stderr, "  %s: limit %ld batchcount %ld shared %ld, expected %ld %ld %ld\n",
			name, info.limit, info.batchcount, info.shared, limit, batch, shared);
	assert_int_equal(info.limit, limit);
	assert_int_equal(info.batchcount, batch);
	assert_int_equal(info.shared, shared);
}

/* Every initialised slot has `limit` and an entries array that holds it. */
static void expect_slot_limits(struct kmem_cache *s, uint32_t limit)
{
	struct slab_cache *sc = sc_of(s);

	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_slot(sk_of(s), cpu);
		struct slab_cpu *ex = slab_cpu_of(slot);

		assert_int_equal(slot->limit, limit);
		if (limit <= sc->inline_capacity) {
			assert_ptr_equal(slot->entries, ex->inline_entries);
			assert_int_equal(ex->external_capacity, 0);
		} else {
			assert_int_equal(ex->external_capacity, limit);
			assert_int_equal(sk_page_of(slot->entries)->kind, SK_PAGE_META);
		}
	}
}

static void test_defaults_by_size(void **state)
{
	(void)state;
	long shared = sk_numa_cpus() > 1 ? 8 : 0;

	/* Linux's enable_cpucache: 120 (<= 256 B), 54, 24 (<= 4 KiB), 8, 1. */
	void *p[4] = { kmalloc(64, GFP_KERNEL), kmalloc(512, GFP_KERNEL), kmalloc(2048, GFP_KERNEL),
		       kmalloc(8192, GFP_KERNEL) };
	expect_tunables("kmalloc-64", 120, 60, shared);
	expect_tunables("kmalloc-256", 120, 60, shared);
	expect_tunables("kmalloc-512", 54, 27, shared);
	expect_tunables("kmalloc-2k", 24, 12, shared);
	expect_tunables("kmalloc-4k", 24, 12, shared);
	expect_tunables("kmalloc-8k", 8, 4, 0);
	for (int i = 0; i < 4; i++)
		kfree(p[i]);

	struct kmem_cache *s = kmem_cache_create("slab_huge", 200 * 1024, 0, 0, NULL);
	assert_non_null(s);
	expect_tunables("slab_huge", 1, 1, 0);
	assert_int_equal(sc_of(s)->alien_limit, 1);
	void *obj = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(obj);
	kmem_cache_free(s, obj);
	kmem_cache_destroy(s);
}

static void test_tune_api(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_tune64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	long shared = sc->shared;
	enum { N = 400 };
	void *objs[N];

	/* Raise the limit beyond what the slot's own area holds. */
	assert_int_equal(slabkit_cache_tune("slab_tune64", "limit", 200), 0);
	expect_tunables("slab_tune64", 200, 60, shared);
	expect_slot_limits(s, 200);
	for (int i = 0; i < N; i++)
		assert_non_null(objs[i] = kmem_cache_alloc(s, GFP_KERNEL));
	kmem_cache_shrink(s);
	for (int i = 0; i < 200; i++)
		kmem_cache_free(s, objs[i]);
	assert_int_equal(slab_slot_top(slot0(s)), 200);
	for (int i = 200; i < N; i++)
		kmem_cache_free(s, objs[i]);

	/* Lower it below the batch: the batch follows, the arrays are flushed
	 * and back in the slot's own area. */
	assert_int_equal(slabkit_cache_tune("slab_tune64", "limit", 10), 0);
	expect_tunables("slab_tune64", 10, 5, shared);
	expect_slot_limits(s, 10);
	assert_int_equal(slab_slot_top(slot0(s)), 0);
	if (shared)
		assert_int_equal(sc->node[0]->shared->capacity, shared * 5);

	assert_int_equal(slabkit_cache_tune("slab_tune64", "batchcount", 10), 0);
	expect_tunables("slab_tune64", 10, 10, shared);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "batchcount", 11), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "batchcount", 0), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "limit", 0), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "limit", 1000000), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "shared", -1), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_tune64", "colour", 1), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slab_no_such_cache", "limit", 10), -ENOENT);
	expect_tunables("slab_tune64", 10, 10, shared);

	/* No shared array: a full array flushes straight to the slabs. */
	assert_int_equal(slabkit_cache_tune("slab_tune64", "shared", 0), 0);
	expect_tunables("slab_tune64", 10, 10, 0);
	assert_null(sc->node[0]->shared);
	for (int i = 0; i < 11; i++)
		assert_non_null(objs[i] = kmem_cache_alloc(s, GFP_KERNEL));
	kmem_cache_shrink(s);
	for (int i = 0; i < 11; i++)
		kmem_cache_free(s, objs[i]);
	assert_int_equal(slab_slot_top(slot0(s)), 1);
	assert_int_equal(sk_info("slab_tune64").cached_free, 1);

	assert_int_equal(slabkit_cache_tune("slab_tune64", "shared", 3), 0);
	assert_int_equal(sc->node[0]->shared->capacity, 30);
	kmem_cache_destroy(s);
}

/* What SLABKIT_TUNE said when the program started (set in main). */
static void test_tune_env_string(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_cfg64", 64, 0, 0, NULL);
	assert_non_null(s);
	expect_tunables("slab_cfg64", 30, 7, 2);
	expect_slot_limits(s, 30);
	assert_int_equal(sc_of(s)->node[0]->shared->capacity, 14);
	kmem_cache_destroy(s);

	s = kmem_cache_create("slab_cfg_big", 64, 0, 0, NULL);
	assert_non_null(s);
	expect_tunables("slab_cfg_big", 500, 60, sk_numa_cpus() > 1 ? 8 : 0);
	expect_slot_limits(s, 500);
	void *objs[600];
	for (int i = 0; i < 600; i++)
		assert_non_null(objs[i] = kmem_cache_alloc(s, GFP_KERNEL));
	kmem_cache_shrink(s);
	for (int i = 0; i < 600; i++)
		kmem_cache_free(s, objs[i]);
	assert_true(slab_slot_top(slot0(s)) > 120);
	kmem_cache_destroy(s);
}

/* Workers never call cmocka asserts (they would jump across threads):
 * they count what went wrong and the main thread checks. */
struct churn {
	struct kmem_cache *s;
	_Atomic bool stop;
	unsigned long ops, failures, corrupted;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	cpu_set_t all;
	uint64_t rng = (uintptr_t)&rng | 1;
	void *held[256] = { 0 };

	CPU_ZERO(&all);
	for (int cpu = 0; cpu < CPU_SETSIZE && cpu < 64; cpu++)
		CPU_SET(cpu, &all);
	sched_setaffinity(0, sizeof(all), &all);
	while (!ch->stop) {
		unsigned i = (unsigned)(sk_rand(&rng) % 256);
		if (held[i]) {
			if (*(uint64_t *)held[i] != (uintptr_t)&held[i])
				ch->corrupted++;
			kmem_cache_free(ch->s, held[i]);
			held[i] = NULL;
		} else {
			held[i] = kmem_cache_alloc(ch->s, GFP_KERNEL);
			if (!held[i]) {
				ch->failures++;
				continue;
			}
			*(uint64_t *)held[i] = (uintptr_t)&held[i];
		}
		ch->ops++;
	}
	for (unsigned i = 0; i < 256; i++)
		if (held[i])
			kmem_cache_free(ch->s, held[i]);
	return NULL;
}

/* Resizing arrays, shared arrays and batches under load loses nothing. */
static void test_tune_while_busy(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_tune_busy", 64, 0, 0, NULL);
	assert_non_null(s);
	struct churn ch[3] = { { .s = s }, { .s = s }, { .s = s } };
	pthread_t t[3];
	static const long limits[] = { 1, 200, 7, 120, 300, 2, 60 };

	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn_main, &ch[i]), 0);
	for (int round = 0; round < 70; round++) {
		long limit = limits[round % SK_ARRAY_SIZE(limits)];
		assert_int_equal(slabkit_cache_tune("slab_tune_busy", "limit", limit), 0);
		assert_int_equal(slabkit_cache_tune("slab_tune_busy", "batchcount", (limit + 1) / 2), 0);
		assert_int_equal(slabkit_cache_tune("slab_tune_busy", "shared", round % 4), 0);
		if (round % 5 == 0)
			slabkit_tick();
		sk_sleep_ms(2);
	}
	for (int i = 0; i < 3; i++) {
		ch[i].stop = true;
		pthread_join(t[i], NULL);
		assert_true(ch[i].ops > 0);
		assert_int_equal(ch[i].failures, 0);
		assert_int_equal(ch[i].corrupted, 0);
	}
	assert_int_equal(sk_message_count(), 0); /* no bad object ever reached a slab */
	struct slabkit_cache_info info = sk_info("slab_tune_busy");
	assert_int_equal(info.in_use, 0);
	assert_int_equal(kmem_cache_shrink(s), 0);
	assert_int_equal(sk_info("slab_tune_busy").slabs, 0);
	kmem_cache_destroy(s);
}

/* The same string through struct slabkit_config (re-initialises slabkit). */
static void test_tune_config_struct(void **state)
{
	(void)state;
	struct slabkit_config cfg = { .backend = "slab", .tick_ms = -1,
				      .tune = "slab_cfg_struct:shared=1,limit=16,batchcount=3" };

	slabkit_fini();
	assert_int_equal(sk_fresh_init(&cfg), 0);
	struct kmem_cache *s = kmem_cache_create("slab_cfg_struct", 100, 0, 0, NULL);
	assert_non_null(s);
	expect_tunables("slab_cfg_struct", 16, 3, 1);
	expect_slot_limits(s, 16);
	kmem_cache_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_defaults_by_size),
		SK_TEST(test_tune_api),
		SK_TEST(test_tune_env_string),
		SK_TEST(test_tune_while_busy),
		SK_TEST(test_tune_config_struct),
	};
	if (!slab_test_pin_cpu0())
		return 1;
	setenv("SLABKIT_TUNE", ENV_TUNE, 1);
	setenv("SLABKIT_BACKEND", "slab", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slab_tune", tests, sk_group_setup, sk_group_teardown);
}
