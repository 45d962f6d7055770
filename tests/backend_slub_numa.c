/*
 * SLUB backend on a synthetic 4-node topology (HWLOC_SYNTHETIC, set before
 * slabkit_init; memory binding is a no-op on a one-node machine, but the
 * page provider keeps one arena per node and every page descriptor names
 * its node).
 *
 *  - kmem_cache_alloc_node / kmalloc_node return objects on the node asked
 *    for, one node at a time and alternating, without disturbing the
 *    per-CPU slab that serves SK_NODE_ANY;
 *  - freed objects go back to their own node's partial list, and
 *    node-specific allocations reuse those slabs before making new ones;
 *  - everything freed from another thread, kmem_cache_shrink leaves no slab.
 *
 * Runs with SLABKIT_BACKEND=slub.
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include <slabkit/linux/slab.h>

#include "backends/slub/slub.h"
#include "sk_test.h"

#define NODES 4

static struct sk_cache *sk_of(struct kmem_cache *s)
{
	return (struct sk_cache *)s;
}

static int node_of(const void *p)
{
	struct sk_page *pg = sk_page_of(p);
	assert_non_null(pg);
	return pg->node;
}

/* No two live objects overlap (checked on a sorted copy). */
static void assert_all_disjoint(void **objs, size_t n)
{
	void **copy = calloc(n, sizeof(void *));
	assert_non_null(copy);
	memcpy(copy, objs, n * sizeof(void *));
	assert_true(sk_disjoint(copy, n, 200));
	free(copy);
}

static void test_topology(void **state)
{
	(void)state;
	assert_int_equal(slabkit_nodes(), NODES);
	struct kmem_cache *s = kmem_cache_create("slub_numa_topo", 64, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(slub_of(sk_of(s))->nr_nodes, NODES);
	kmem_cache_destroy(s);
}

static void test_alloc_node(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_numa", 200, 0, 0, NULL);
	assert_non_null(s);
	struct slub_inspect in;
	slub_inspect(sk_of(s), &in);
	size_t per_node = 3 * (size_t)in.objects + 5;
	void **objs = calloc(NODES * per_node, sizeof(void *));
	assert_non_null(objs);

	/* An ANY allocation first: the CPU gets an active slab. */
	void *any = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(any);

	/* One node after the other. */
	for (int node = 0; node < NODES; node++)
		for (size_t i = 0; i < per_node; i++) {
			void *p = kmem_cache_alloc_node(s, GFP_KERNEL, node);
			assert_non_null(p);
			if (node_of(p) != node)
				fail_msg("object %zu asked on node %d is on node %d", i, node, node_of(p));
			memset(p, node, 200);
			objs[node * per_node + i] = p;
		}
	assert_all_disjoint(objs, NODES * per_node);

	/* Alternating nodes, and ANY in between. */
	void *alt[400];
	for (int i = 0; i < 400; i++) {
		int node = i % (NODES + 1) - 1; /* -1 is NUMA_NO_NODE */
		alt[i] = node < 0 ? kmem_cache_alloc(s, GFP_KERNEL)
				  : kmem_cache_alloc_node(s, GFP_KERNEL, node);
		assert_non_null(alt[i]);
		if (node >= 0)
			assert_int_equal(node_of(alt[i]), node);
	}
	for (int i = 0; i < 400; i++)
		kmem_cache_free(s, alt[i]);

	/* The kmalloc front end goes the same way. */
	for (int node = 0; node < NODES; node++) {
		void *p = kmalloc_node(100, GFP_KERNEL, node);
		assert_non_null(p);
		assert_int_equal(node_of(p), node);
		kfree(p);
	}

	/* Free every other object: the slabs become partial on their node. */
	assert_int_equal(slabkit_cache_tune("slub_numa", "min_partial", 100), 0);
	for (int node = 0; node < NODES; node++)
		for (size_t i = 0; i < per_node; i += 2) {
			kmem_cache_free(s, objs[node * per_node + i]);
			objs[node * per_node + i] = NULL;
		}
	kmem_cache_shrink(s); /* CPU partial lists out to the nodes */
	slub_inspect(sk_of(s), &in);
	for (int node = 0; node < NODES; node++)
		if (in.node_partial[node] < 3)
			fail_msg("node %d has %llu partial slabs", node,
				 (unsigned long long)in.node_partial[node]);

	/* Node allocations take those slabs again: no new slab. */
	uint64_t slabs = sk_info("slub_numa").slabs;
	for (int node = 0; node < NODES; node++)
		for (size_t i = 0; i < per_node; i += 2) {
			void *p = kmem_cache_alloc_node(s, GFP_KERNEL, node);
			assert_non_null(p);
			assert_int_equal(node_of(p), node);
			objs[node * per_node + i] = p;
		}
	assert_int_equal(sk_info("slub_numa").slabs, slabs);
	assert_all_disjoint(objs, NODES * per_node);

	for (size_t i = 0; i < NODES * per_node; i++)
		kmem_cache_free(s, objs[i]);
	kmem_cache_free(s, any);
	free(objs);
	assert_int_equal(kmem_cache_shrink(s), 0);
	assert_int_equal(sk_info("slub_numa").slabs, 0);
	kmem_cache_destroy(s);
}

/* Threads allocate on all nodes, another thread frees: nothing is left. */
struct numa_share {
	struct kmem_cache *s;
	void **objs;
	size_t n;
	atomic_int bad;
};

static void *numa_alloc_thread(void *arg)
{
	struct numa_share *sh = arg;
	for (size_t i = 0; i < sh->n; i++) {
		int node = (int)(i % NODES);
		void *p = kmem_cache_alloc_node(sh->s, GFP_KERNEL, node);
		if (!p || node_of(p) != node)
			atomic_fetch_add(&sh->bad, 1);
		sh->objs[i] = p;
	}
	return NULL;
}

static void *numa_free_thread(void *arg)
{
	struct numa_share *sh = arg;
	for (size_t i = 0; i < sh->n; i++)
		if (sh->objs[i])
			kmem_cache_free(sh->s, sh->objs[i]);
	return NULL;
}

static void test_cross_thread_nodes(void **state)
{
	(void)state;
	struct numa_share sh = { .n = 20000 };
	sh.s = kmem_cache_create("slub_numa_x", 48, 0, 0, NULL);
	sh.objs = calloc(sh.n, sizeof(void *));
	assert_non_null(sh.s);
	assert_non_null(sh.objs);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, numa_alloc_thread, &sh), 0);
	pthread_join(t, NULL);
	assert_int_equal(pthread_create(&t, NULL, numa_free_thread, &sh), 0);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&sh.bad), 0);
	assert_int_equal(sk_info("slub_numa_x").in_use, 0);
	assert_int_equal(kmem_cache_shrink(sh.s), 0);
	assert_int_equal(sk_info("slub_numa_x").slabs, 0);
	kmem_cache_destroy(sh.s);
	free(sh.objs);
}

int main(void)
{
	sk_apply_test_filter();
	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	const struct CMUnitTest tests[] = {
		SK_TEST(test_topology),
		SK_TEST(test_alloc_node),
		SK_TEST(test_cross_thread_nodes),
	};
	return cmocka_run_group_tests_name("slub_numa", tests, sk_group_setup, sk_group_teardown);
}
