/*
 * SLAB backend: giving memory back.  Reaping (slabkit_tick) drains idle
 * per-CPU arrays 1/5 at a time, the shared array every second pass, and
 * releases empty slabs a few per pass until none is left; kmem_cache_shrink
 * and uma_reclaim drain every array at once; free_limit bounds the empty
 * slabs kept between reaps; an idle array gets a partial refill.
 *
 * The test thread is pinned to CPU 0, so "this CPU's array" is slot 0.
 * Runs with SLABKIT_BACKEND=slab and SLABKIT_TICK_MS=-1 (no background tick).
 */
#define _GNU_SOURCE
#include <sched.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "slab_test.h"
#include "sk_test.h"

static uint32_t shared_avail(struct kmem_cache *s, int node)
{
	struct slab_node *n = sc_of(s)->node[node];
	uint32_t avail;

	pthread_mutex_lock(&n->list_lock);
	avail = n->shared ? n->shared->avail : 0;
	pthread_mutex_unlock(&n->list_lock);
	return avail;
}

/* What one reap takes from an idle array (Linux's drain_array_locked). */
static uint32_t reap_amount(uint32_t limit, uint32_t avail)
{
	uint32_t tofree = (limit + 4) / 5;

	return tofree > avail ? (avail + 1) / 2 : tofree;
}

static void **alloc_n(struct kmem_cache *s, size_t n)
{
	void **objs = calloc(n, sizeof(*objs));

	assert_non_null(objs);
	for (size_t i = 0; i < n; i++) {
		objs[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(objs[i]);
	}
	return objs;
}

static void free_all(struct kmem_cache *s, void **objs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kmem_cache_free(s, objs[i]);
	free(objs);
}

static void test_reap_frees_idle_slabs(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_reap64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	free_all(s, alloc_n(s, 5000), 5000);

	struct slabkit_cache_info before = sk_info("slab_reap64");
	uint32_t top = cpu0_top(s), shared = shared_avail(s, 0);
	assert_int_equal(before.in_use, 0);
	assert_true(before.slabs > 0);
	assert_true(top > sc->limit / 5);
	assert_true(before.cached_free >= top);

	/* Pass 1: the array was used since the (first) reap: left alone. */
	slabkit_tick();
	assert_int_equal(cpu0_top(s), top);
	/* Pass 2: idle now; 1/5 of limit goes back, and (a node pass) 1/5 of
	 * the untouched shared array. */
	slabkit_tick();
	assert_int_equal(cpu0_top(s), top - reap_amount(sc->limit, top));
	if (sc->shared && shared)
		assert_int_equal(shared_avail(s, 0), shared - reap_amount(sc->shared * sc->batchcount, shared));

	/* Gradually, everything: no slab and no cached object is left. */
	unsigned ticks = 2;
	uint64_t slabs_after_two = sk_info("slab_reap64").slabs;
	struct slabkit_cache_info now;
	do {
		slabkit_tick();
		ticks++;
		now = sk_info("slab_reap64");
	} while ((now.slabs || now.cached_free) && ticks < 1000);
	assert_int_equal(now.slabs, 0);
	assert_int_equal(now.cached_free, 0);
	assert_int_equal(now.pages, 0);
	assert_true(slabs_after_two > 0);
	assert_true(ticks > 4); /* a fifth at a time, not all at once */
	kmem_cache_destroy(s);
}

static void test_shrink_drains_arrays(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_shrink64", 64, 0, 0, NULL);
	assert_non_null(s);
	void **objs = alloc_n(s, 1000);
	void *keep = objs[999];
	for (int i = 0; i < 999; i++)
		kmem_cache_free(s, objs[i]);
	free(objs);
	assert_true(sk_info("slab_shrink64").cached_free > 0);

	/* One object still out: its slab stays, everything else goes. */
	assert_int_not_equal(kmem_cache_shrink(s), 0);
	struct slabkit_cache_info info = sk_info("slab_shrink64");
	assert_int_equal(info.cached_free, 0);
	assert_int_equal(info.slabs, 1);
	assert_int_equal(cpu0_top(s), 0);
	assert_int_equal(shared_avail(s, 0), 0);

	kmem_cache_free(s, keep);
	assert_int_equal(kmem_cache_shrink(s), 0);
	info = sk_info("slab_shrink64");
	assert_int_equal(info.cached_free, 0);
	assert_int_equal(info.slabs, 0);
	kmem_cache_destroy(s);
}

/* Between reaps, free slabs are kept only up to free_limit free objects. */
static void test_free_limit_bounds_empty_slabs(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_limit64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	struct slab_node *n = sc->node[0];
	size_t count = (size_t)sc->num * 60;

	free_all(s, alloc_n(s, count), count);
	pthread_mutex_lock(&n->list_lock);
	uint64_t free_objects = n->free_objects, free_limit = n->free_limit;
	uint64_t free_slabs = n->free_slabs, total = n->total_slabs;
	pthread_mutex_unlock(&n->list_lock);
	assert_int_equal(free_limit, (1 + (uint64_t)n->cpus) * sc->batchcount + sc->num);
	assert_true(free_slabs == 0 || free_objects <= free_limit);
	assert_true(total < 60);
	/* The count held is exactly what the figures say. */
	assert_int_equal(sk_info("slab_limit64").slabs, total);
	kmem_cache_destroy(s);
}

/* An array idle since the last reap is refilled with 16 objects only
 * (Linux's BATCHREFILL_LIMIT); a busy one with a whole batch. */
static void test_idle_refill_is_partial(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_refill64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	free_all(s, alloc_n(s, 300), 300);
	kmem_cache_shrink(s);
	slabkit_tick();
	slabkit_tick();

	void *a = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(a);
	assert_int_equal(cpu0_top(s), SLAB_BATCHREFILL_LIMIT - 1);
	void *more[SLAB_BATCHREFILL_LIMIT];
	for (unsigned i = 0; i < SLAB_BATCHREFILL_LIMIT; i++)
		assert_non_null(more[i] = kmem_cache_alloc(s, GFP_KERNEL));
	/* Busy now: a whole batch, as far as the one partial slab goes (a
	 * refill that found objects does not grow a slab). */
	assert_int_equal(cpu0_top(s), SK_MIN(sc->batchcount, sc->num - SLAB_BATCHREFILL_LIMIT) - 1);
	assert_true(cpu0_top(s) >= SLAB_BATCHREFILL_LIMIT);
	for (unsigned i = 0; i < SLAB_BATCHREFILL_LIMIT; i++)
		kmem_cache_free(s, more[i]);
	kmem_cache_free(s, a);
	kmem_cache_destroy(s);
}

/* Freeing into a full array moves batchcount entries to the shared array. */
static void test_full_array_flushes_to_shared(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_flush64", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	size_t count = sc->limit + 1;
	void **objs = alloc_n(s, count);
	kmem_cache_shrink(s); /* what the allocations left in the array goes */
	assert_int_equal(cpu0_top(s), 0);

	for (size_t i = 0; i < sc->limit; i++)
		kmem_cache_free(s, objs[i]);
	assert_int_equal(cpu0_top(s), sc->limit);
	assert_int_equal(shared_avail(s, 0), 0);
	kmem_cache_free(s, objs[sc->limit]);
	if (sc->shared) {
		assert_int_equal(shared_avail(s, 0), sc->batchcount);
		/* The oldest went: the first objects freed. */
		struct slab_node *n = sc->node[0];
		pthread_mutex_lock(&n->list_lock);
		assert_ptr_equal(n->shared->entry[0], objs[0]);
		pthread_mutex_unlock(&n->list_lock);
	}
	assert_int_equal(cpu0_top(s), sc->limit - sc->batchcount + 1);
	free(objs);
	kmem_cache_destroy(s);
}

/* UMA_ZONE_NOFREE: arrays drain, slabs stay. */
static void test_nofree_keeps_slabs(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("slab_nofree", 64, NULL, NULL, NULL, NULL, 0, UMA_ZONE_NOFREE);
	assert_non_null(z);
	void *objs[500];
	for (int i = 0; i < 500; i++)
		assert_non_null(objs[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < 500; i++)
		uma_zfree(z, objs[i]);
	uint64_t slabs = sk_info("slab_nofree").slabs;
	assert_true(slabs >= 500 / 63);
	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	for (int i = 0; i < 20; i++)
		slabkit_tick();
	struct slabkit_cache_info info = sk_info("slab_nofree");
	assert_int_equal(info.cached_free, 0);
	assert_int_equal(info.slabs, slabs);
	uma_zdestroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_reap_frees_idle_slabs),
		SK_TEST(test_shrink_drains_arrays),
		SK_TEST(test_free_limit_bounds_empty_slabs),
		SK_TEST(test_idle_refill_is_partial),
		SK_TEST(test_full_array_flushes_to_shared),
		SK_TEST(test_nofree_keeps_slabs),
	};
	if (!slab_test_pin_cpu0())
		return 1;
	setenv("SLABKIT_BACKEND", "slab", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slab_reap", tests, sk_group_setup, sk_group_teardown);
}
