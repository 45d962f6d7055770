/*
 * UMA backend on four nodes (HWLOC_SYNTHETIC="node:4 core:2 pu:1", set
 * before slabkit_init; the synthetic topology puts CPUs 0 and 1 on node 0):
 *
 *  - uma_zalloc_domain(zone, NULL, 2, ...) returns node-2 items, from
 *    domain 2's bucket cache when it has some, else from node-2 slabs;
 *  - freeing them from node 0 goes through the cross-domain bucket: never
 *    into this CPU's buckets, counted as XDOMAIN (cache_info and vmstat -z),
 *    and each full cross bucket lands in domain 2's bucket cache;
 *  - local frees are not cross-domain; first-touch slabs are local;
 *  - ROUNDROBIN stripes new slabs over every node.
 *
 * The test thread is pinned to CPU 0.  Runs with SLABKIT_BACKEND=uma and
 * SLABKIT_TICK_MS=-1.
 */
#define _GNU_SOURCE
#include <sched.h>

#include <slabkit/freebsd/uma.h>

#include "backends/uma/uma_int.h"
#include "sk_test.h"

static int numa_setup(void **state)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		return -1;
	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	return sk_group_setup(state);
}

static int node_of(const void *item)
{
	return sk_page_of(item)->node;
}

static void test_topology(void **state)
{
	assert_int_equal(slabkit_nodes(), 4);
	assert_int_equal(slabkit_current_node(), 0);
}

static void test_cross_domain_frees(void **state)
{
	enum { HOME = 2 };
	uma_zone_t z = uma_zcreate("ut_xdom", 128, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	long b = sk_info("ut_xdom").limit; /* the cross bucket's size */
	assert_true(b >= 2);
	int n = (int)(2 * b + 3);
	void **p = calloc((size_t)n, sizeof(*p));
	assert_non_null(p);

	for (int i = 0; i < n; i++) {
		assert_non_null(p[i] = uma_zalloc_domain(z, NULL, HOME, M_WAITOK));
		assert_int_equal(node_of(p[i]), HOME);
	}
	struct uma_kz *kz = skuma_kz_of_item(p[0]);
	assert_non_null(kz);
	uint64_t cpu_before = sk_info("ut_xdom").cached_free;
	for (int i = 0; i < n; i++)
		uma_zfree(z, p[i]);

	/* Two full cross buckets went to domain 2's cache, three items wait in
	 * CPU 0's cross bucket, nothing went to domain 0. */
	assert_int_equal(skuma_xdomain_frees(kz), (uint64_t)n);
	assert_int_equal(skuma_domain_cached(kz, HOME), (uint64_t)(2 * b));
	assert_int_equal(skuma_domain_cached(kz, 0), 0);
	assert_int_equal(sk_info("ut_xdom").cached_free, cpu_before + (uint64_t)n);
	long x = sk_vmstat_z_column("ut_xdom", 7);
	if (x != n)
		fail_msg("vmstat -z XDOMAIN for ut_xdom is %ld, expected %d", x, n);

	/* uma_zalloc_domain takes from that domain's bucket cache first. */
	void *again = uma_zalloc_domain(z, NULL, HOME, M_WAITOK);
	assert_non_null(again);
	assert_int_equal(node_of(again), HOME);
	assert_int_equal(skuma_domain_cached(kz, HOME), (uint64_t)(2 * b - 1));
	uma_zfree(z, again);

	/* Local items are not cross-domain and first touch puts them here. */
	uint64_t xd = skuma_xdomain_frees(kz);
	assert_int_equal(xd, (uint64_t)n + 1); /* `again` went home the same way */
	for (int i = 0; i < n; i++) {
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
		assert_int_equal(node_of(p[i]), 0);
	}
	for (int i = 0; i < n; i++)
		uma_zfree(z, p[i]);
	assert_int_equal(skuma_xdomain_frees(kz), xd);

	/* DRAIN_CPU gives everything back, the cross bucket included. */
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("ut_xdom").cached_free, 0);
	assert_int_equal(sk_info("ut_xdom").slabs, 0);
	free(p);
	uma_zdestroy(z);
}

/* Items of several foreign domains in one cross bucket are sorted home. */
static void test_cross_bucket_sorted(void **state)
{
	uma_zone_t z = uma_zcreate("ut_xsort", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	long b = sk_info("ut_xsort").limit;
	int n = (int)b; /* exactly one cross bucket */
	void **p = calloc((size_t)n, sizeof(*p));
	assert_non_null(p);
	int per[4] = { 0 };
	for (int i = 0; i < n; i++) {
		int d = 1 + i % 3;
		assert_non_null(p[i] = uma_zalloc_domain(z, NULL, d, M_WAITOK));
		per[d]++;
	}
	struct uma_kz *kz = skuma_kz_of_item(p[0]);
	for (int i = 0; i < n; i++)
		uma_zfree(z, p[i]);
	for (int d = 1; d < 4; d++)
		assert_int_equal(skuma_domain_cached(kz, d), (uint64_t)per[d]);
	assert_int_equal(skuma_domain_cached(kz, 0), 0);
	assert_int_equal(skuma_xdomain_frees(kz), (uint64_t)n);
	free(p);
	uma_zdestroy(z);
}

/* ROUNDROBIN: new slabs go to every node in turn. */
static void test_roundrobin_stripes(void **state)
{
	uma_zone_t z = uma_zcreate("ut_rr", 1024, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_ROUNDROBIN);
	assert_non_null(z);
	enum { N = 64 };
	void *p[N];
	int per[4] = { 0 };
	for (int i = 0; i < N; i++) {
		assert_non_null(p[i] = uma_zalloc(z, M_WAITOK));
		per[node_of(p[i])]++;
	}
	for (int d = 0; d < 4; d++)
		if (per[d] == 0)
			fail_msg("no ROUNDROBIN item on node %d (%d %d %d %d)", d, per[0], per[1],
				 per[2], per[3]);
	struct uma_kz *kz = skuma_kz_of_item(p[0]);
	for (int i = 0; i < N; i++)
		uma_zfree(z, p[i]);
	assert_int_equal(skuma_xdomain_frees(kz), 0); /* not a first-touch zone */
	assert_int_equal(sk_info("ut_rr").in_use, 0);
	uma_zdestroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_topology),
		SK_TEST(test_cross_domain_frees),
		SK_TEST(test_cross_bucket_sorted),
		SK_TEST(test_roundrobin_stripes),
	};

	sk_apply_test_filter();
	return cmocka_run_group_tests_name("uma_numa", tests, numa_setup, sk_group_teardown);
}
