/*
 * SLAB backend on four nodes (HWLOC_SYNTHETIC="node:4 core:2 pu:1", set
 * before slabkit_init): node-specific allocations come from that node's
 * slabs, remote frees go home through the alien arrays and never into this
 * CPU's array, a full alien array flushes home by itself, reaping drains
 * aliens, and node-local frees still use the per-CPU array.
 *
 * The test thread is pinned to CPU 0, which the synthetic topology puts on
 * node 0.  Runs with SLABKIT_BACKEND=slab and SLABKIT_TICK_MS=-1.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include <slabkit/linux/slab.h>

#include "slab_test.h"
#include "sk_test.h"

static bool in_cpu0_array(struct kmem_cache *s, const void *obj)
{
	struct sk_pcpu_slot *slot = sk_pcpu_slot(sk_of(s), 0);

	for (uint32_t i = 0; i < slab_slot_top(slot); i++)
		if (slot->entries[i] == obj)
			return true;
	return false;
}

static struct slab_alien *alien(struct kmem_cache *s, int here, int home)
{
	return sc_of(s)->node[here]->alien[home];
}

static uint32_t alien_avail(struct kmem_cache *s, int here, int home)
{
	struct slab_alien *al = alien(s, here, home);
	uint32_t avail;

	pthread_mutex_lock(&al->lock);
	avail = al->ac.avail;
	pthread_mutex_unlock(&al->lock);
	return avail;
}

/* Free objects node `node` holds in its shared array and slabs. */
static uint64_t node_free(struct kmem_cache *s, int node)
{
	struct slab_node *n = sc_of(s)->node[node];
	uint64_t count;

	pthread_mutex_lock(&n->list_lock);
	count = n->free_objects + (n->shared ? n->shared->avail : 0);
	pthread_mutex_unlock(&n->list_lock);
	return count;
}

static bool node_has(struct kmem_cache *s, int node, const void *obj)
{
	struct slab_node *n = sc_of(s)->node[node];
	bool found = false;

	pthread_mutex_lock(&n->list_lock);
	for (uint32_t i = 0; n->shared && i < n->shared->avail; i++)
		found |= n->shared->entry[i] == obj;
	pthread_mutex_unlock(&n->list_lock);
	return found;
}

static void test_topology(void **state)
{
	(void)state;
	assert_int_equal(slabkit_nodes(), 4);
	assert_int_equal(slabkit_current_node(), 0);
}

static void test_alloc_node_uses_that_node(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_numa_alloc", 64, 0, 0, NULL);
	assert_non_null(s);
	void *objs[100];

	for (int node = 0; node < 4; node++) {
		uint32_t top = cpu0_top(s);

		for (int i = 0; i < 100; i++) {
			objs[i] = kmem_cache_alloc_node(s, GFP_KERNEL, node);
			assert_non_null(objs[i]);
			assert_int_equal(sk_page_of(objs[i])->node, node);
		}
		/* A remote node's objects never pass through this CPU's array. */
		if (node != 0)
			assert_int_equal(cpu0_top(s), top);
		for (int i = 0; i < 100; i++)
			kmem_cache_free(s, objs[i]);
		if (node != 0)
			assert_int_equal(cpu0_top(s), top);
	}
	kmem_cache_destroy(s);
}

static void test_remote_free_goes_home(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_numa_free", 64, 0, 0, NULL);
	assert_non_null(s);
	struct slab_cache *sc = sc_of(s);
	struct sk_backend_cache_info bi;

	/* Some node-0 objects in this CPU's array first. */
	void *local = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(local);
	kmem_cache_free(s, local);
	uint32_t top = cpu0_top(s);
	assert_true(top > 0);

	void *obj = kmem_cache_alloc_node(s, GFP_KERNEL, 2);
	assert_non_null(obj);
	assert_int_equal(sk_page_of(obj)->node, 2);
	uint64_t home_free = node_free(s, 2);

	kmem_cache_free(s, obj);
	assert_int_equal(cpu0_top(s), top);
	assert_false(in_cpu0_array(s, obj));
	assert_int_equal(alien_avail(s, 0, 2), 1);
	assert_ptr_equal(alien(s, 0, 2)->ac.entry[0], obj);
	sk_of(s)->ops->cache_info(sk_of(s), &bi);
	assert_int_equal(bi.xdomain_frees, 1);

	/* The reaper sends it home: node 2's shared array (or its slab). */
	slabkit_tick();
	assert_int_equal(alien_avail(s, 0, 2), 0);
	assert_int_equal(node_free(s, 2), home_free + 1);
	if (sc->shared)
		assert_true(node_has(s, 2, obj));
	/* And it is node 2's again. */
	void *again = kmem_cache_alloc_node(s, GFP_KERNEL, 2);
	assert_non_null(again);
	assert_int_equal(sk_page_of(again)->node, 2);
	kmem_cache_free(s, again);
	kmem_cache_destroy(s);
}

/* A full alien array goes home on its own, under the home node's lock. */
static void test_full_alien_flushes_home(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_numa_flush", 64, 0, 0, NULL);
	assert_non_null(s);
	uint32_t limit = sc_of(s)->alien_limit;
	void *objs[64];

	assert_int_equal(limit, SLAB_ALIEN_LIMIT);
	for (uint32_t i = 0; i <= limit; i++)
		assert_non_null(objs[i] = kmem_cache_alloc_node(s, GFP_KERNEL, 3));
	uint64_t home_free = node_free(s, 3);
	for (uint32_t i = 0; i < limit; i++)
		kmem_cache_free(s, objs[i]);
	assert_int_equal(alien_avail(s, 0, 3), limit);
	assert_int_equal(node_free(s, 3), home_free);

	kmem_cache_free(s, objs[limit]);
	assert_int_equal(alien_avail(s, 0, 3), 1);
	assert_int_equal(node_free(s, 3), home_free + limit);
	assert_int_equal(cpu0_top(s), 0);

	/* kmem_cache_shrink empties aliens too. */
	kmem_cache_shrink(s);
	assert_int_equal(alien_avail(s, 0, 3), 0);
	struct slabkit_cache_info info = sk_info("slab_numa_flush");
	assert_int_equal(info.cached_free, 0);
	assert_int_equal(info.slabs, 0);
	kmem_cache_destroy(s);
}

/* Node-local objects still take the per-CPU fast path. */
static void test_local_free_uses_array(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_numa_local", 64, 0, 0, NULL);
	assert_non_null(s);
	void *obj = kmem_cache_alloc_node(s, GFP_KERNEL, 0);
	assert_non_null(obj);
	assert_int_equal(sk_page_of(obj)->node, 0);
	uint32_t top = cpu0_top(s);
	kmem_cache_free(s, obj);
	assert_int_equal(cpu0_top(s), top + 1);
	assert_true(in_cpu0_array(s, obj));
	assert_int_equal(alien_avail(s, 0, 1) + alien_avail(s, 0, 2) + alien_avail(s, 0, 3), 0);
	kmem_cache_destroy(s);
}

/* Threads on any CPU allocate from random nodes and free each other's
 * objects (through a shared pool) while the main thread reaps: every object
 * comes back, nothing is lost or reported. */
#define POOL 512
static void *_Atomic pool[POOL];

struct churn {
	struct kmem_cache *s;
	_Atomic bool *stop;
	uint64_t seed;
	unsigned long ops, failures, corrupted;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	cpu_set_t all;

	CPU_ZERO(&all);
	for (int cpu = 0; cpu < 64; cpu++)
		CPU_SET(cpu, &all);
	sched_setaffinity(0, sizeof(all), &all);
	while (!atomic_load(ch->stop)) {
		uint64_t r = sk_rand(&ch->seed);
		int node = (int)(r % 5) - 1; /* -1: no node asked for */
		void *obj = node < 0 ? kmem_cache_alloc(ch->s, GFP_KERNEL)
				     : kmem_cache_alloc_node(ch->s, GFP_KERNEL, node);
		if (!obj) {
			ch->failures++;
			continue;
		}
		*(uint64_t *)obj = (uintptr_t)obj ^ 0x5a5a;
		void *old = atomic_exchange(&pool[(r >> 8) % POOL], obj);
		if (old) {
			if (*(uint64_t *)old != ((uintptr_t)old ^ 0x5a5a))
				ch->corrupted++;
			kmem_cache_free(ch->s, old);
		}
		ch->ops++;
	}
	return NULL;
}

static void test_threads_remote_churn(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slab_numa_churn", 64, 0, 0, NULL);
	assert_non_null(s);
	_Atomic bool stop = false;
	struct churn ch[3];
	pthread_t t[3];

	for (int i = 0; i < 3; i++) {
		ch[i] = (struct churn){ .s = s, .stop = &stop, .seed = 0x9e3779b97f4a7c15ull * (i + 1) };
		assert_int_equal(pthread_create(&t[i], NULL, churn_main, &ch[i]), 0);
	}
	for (int i = 0; i < 100; i++) {
		sk_sleep_ms(3);
		slabkit_tick();
		if (i % 25 == 0)
			kmem_cache_shrink(s);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_true(ch[i].ops > 0);
		assert_int_equal(ch[i].failures, 0);
		assert_int_equal(ch[i].corrupted, 0);
	}
	for (int i = 0; i < POOL; i++) {
		void *obj = atomic_exchange(&pool[i], NULL);
		if (obj)
			kmem_cache_free(s, obj);
	}
	struct sk_backend_cache_info bi;
	sk_of(s)->ops->cache_info(sk_of(s), &bi);
	assert_true(bi.xdomain_frees > 0);
	assert_int_equal(sk_message_count(), 0);
	assert_int_equal(sk_info("slab_numa_churn").in_use, 0);
	assert_int_equal(kmem_cache_shrink(s), 0);
	struct slabkit_cache_info info = sk_info("slab_numa_churn");
	assert_int_equal(info.slabs, 0);
	assert_int_equal(info.cached_free, 0);
	kmem_cache_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_topology),
		SK_TEST(test_alloc_node_uses_that_node),
		SK_TEST(test_remote_free_goes_home),
		SK_TEST(test_full_alien_flushes_home),
		SK_TEST(test_local_free_uses_array),
		SK_TEST(test_threads_remote_churn),
	};
	if (!slab_test_pin_cpu0())
		return 1;
	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	setenv("SLABKIT_BACKEND", "slab", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slab_numa", tests, sk_group_setup, sk_group_teardown);
}
