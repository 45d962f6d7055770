/*
 * SLOB backend on four nodes (HWLOC_SYNTHETIC="node:4 core:2 pu:1", set
 * before slabkit_init).  SLOB keeps no per-node lists: an explicit node is
 * honoured by carving only from pages of that node (and taking new pages
 * there); NUMA_NO_NODE takes any page.  Checked for kmalloc_node and
 * kmem_cache_alloc_node, with pages of other nodes holding free room.
 * Runs with SLABKIT_BACKEND=slob.
 */
#include <slabkit/linux/slab.h>

#include "backends/slob/slob_int.h"
#include "sk_test.h"

#define NODES 4

static unsigned node_of(const void *p)
{
	struct sk_slob_page_info info;

	if (!sk_slob_debug_page(p, &info))
		fail_msg("%p is not on a SLOB page", p);
	return info.node;
}

static void test_topology(void **state)
{
	(void)state;
	assert_string_equal(slabkit_backend(), "slob");
	assert_int_equal(slabkit_nodes(), NODES);
}

static void test_kmalloc_node(void **state)
{
	(void)state;
	enum { PER_NODE = 50 };
	void *p[NODES][PER_NODE];

	/* Interleaved, so every node's pages have room when another node
	 * asks: the request must still pass them by. */
	for (int i = 0; i < PER_NODE; i++)
		for (int n = 0; n < NODES; n++) {
			p[n][i] = kmalloc_node(100 + 8 * (size_t)i, GFP_KERNEL, n);
			assert_non_null(p[n][i]);
			if (node_of(p[n][i]) != (unsigned)n)
				fail_msg("kmalloc_node(node %d) came from a page of node %u", n,
					 node_of(p[n][i]));
			sk_fill(p[n][i], 100 + 8 * (size_t)i, (uint64_t)(n * 1000 + i));
		}
	/* Any node: served from a page that has room, whatever its node. */
	void *any = kmalloc_node(64, GFP_KERNEL, NUMA_NO_NODE);
	assert_non_null(any);
	struct sk_slob_pool_info before, after;
	assert_true(sk_slob_debug_pool(NULL, &before));
	void *any2 = kmalloc(64, GFP_KERNEL);
	assert_true(sk_slob_debug_pool(NULL, &after));
	assert_int_equal(after.pages, before.pages); /* no new page for it */
	for (int n = 0; n < NODES; n++)
		for (int i = 0; i < PER_NODE; i++) {
			assert_int_equal(sk_check(p[n][i], 100 + 8 * (size_t)i,
						  (uint64_t)(n * 1000 + i)),
					 SIZE_MAX);
			kfree(p[n][i]);
		}
	kfree(any);
	kfree(any2);
	assert_true(sk_slob_debug_pool(NULL, &after));
	assert_int_equal(after.pages, 0);
}

static void test_cache_alloc_node(void **state)
{
	(void)state;
	enum { PER_NODE = 40 };
	struct kmem_cache *s = kmem_cache_create("slob_numa", 120, 0, 0, NULL);
	assert_non_null(s);
	void *o[NODES][PER_NODE];

	for (int i = 0; i < PER_NODE; i++)
		for (int n = NODES - 1; n >= 0; n--) {
			o[n][i] = kmem_cache_alloc_node(s, GFP_KERNEL, n);
			assert_non_null(o[n][i]);
			assert_int_equal(node_of(o[n][i]), n);
		}
	/* Free half of node 2's objects: their room stays on node 2. */
	for (int i = 0; i < PER_NODE; i += 2)
		kmem_cache_free(s, o[2][i]);
	for (int i = 0; i < PER_NODE; i += 2) {
		o[2][i] = kmem_cache_alloc_node(s, GFP_KERNEL, 2);
		assert_int_equal(node_of(o[2][i]), 2);
		void *other = kmem_cache_alloc_node(s, GFP_KERNEL, 3);
		assert_int_equal(node_of(other), 3);
		kmem_cache_free(s, other);
	}
	for (int n = 0; n < NODES; n++)
		for (int i = 0; i < PER_NODE; i++)
			kmem_cache_free(s, o[n][i]);
	assert_int_equal(sk_info("slob_numa").pages, 0);
	kmem_cache_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_topology),
		SK_TEST(test_kmalloc_node),
		SK_TEST(test_cache_alloc_node),
	};

	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	setenv("SLABKIT_BACKEND", "slob", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slob_numa", tests, sk_group_setup, sk_group_teardown);
}
