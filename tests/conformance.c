/*
 * The conformance suite: the contract every backend honours.
 *
 * Written only against the public headers and run once per compiled backend
 * (ctest conformance_<backend>, SLABKIT_BACKEND set).  It must pass
 * unchanged for slab, slub, slob and uma.  The few places where a backend
 * may legitimately differ (SLOB has no slabs, so a constructor may run per
 * allocation; SLOB may report kfree of a cache object) are spelled out
 * where they are tested, with the weaker assertion that holds for all.
 *
 * Groups, each with a fresh slabkit_init(NULL) / slabkit_fini():
 *   kmalloc, kmem_cache (conformance_linux.c), malloc9, uma
 *   (conformance_freebsd.c), misuse (conformance_misuse.c), threads
 *   (conformance_threads.c), reports and fault (this file, with the runner).
 *
 * Run one test: SK_TEST_FILTER='*krealloc*' SLABKIT_BACKEND=slab ./conformance
 */
#include "conformance.h"

volatile size_t v_size_max = SIZE_MAX;
volatile size_t v_half_plus = SIZE_MAX / 2 + 1;

MALLOC_DEFINE(M_TEST, "test", "slabkit conformance test type");
MALLOC_DEFINE(M_TEST2, "test2", "slabkit conformance second type");

static const size_t kmalloc_classes[] = { 8, 16, 32, 64, 96, 128, 192, 256, 512,
					  1024, 2048, 4096, 8192 };
static const size_t bsd_classes[] = { 16, 32, 64, 128, 256, 384, 512, 1024,
				      2048, 4096, 8192, 16384, 32768, 65536 };

size_t kmalloc_class_of(size_t n)
{
	for (size_t i = 0; i < sizeof(kmalloc_classes) / sizeof(kmalloc_classes[0]); i++)
		if (kmalloc_classes[i] >= n)
			return kmalloc_classes[i];
	return 0;
}

int bsd_class_index(size_t n)
{
	for (size_t i = 0; i < sizeof(bsd_classes) / sizeof(bsd_classes[0]); i++)
		if (bsd_classes[i] >= n)
			return (int)i;
	return 63;
}

struct slabkit_stats stats_now(void)
{
	struct slabkit_stats s;
	memset(&s, 0, sizeof(s));
	slabkit_stats(&s);
	return s;
}

struct malloc_type_stats_sum type_stats(const struct malloc_type *t)
{
	struct malloc_type_stats_sum s;
	memset(&s, 0, sizeof(s));
	slabkit_malloc_type_stats(t, &s);
	return s;
}

/* ======================================================================
 * Reports and process-wide figures
 * ====================================================================== */

static void test_reports_name_things(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_report_cache", 100, 0, 0, NULL);
	uma_zone_t z = uma_zcreate("skt_report_zone", 100, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(c);
	assert_non_null(z);
	void *o = kmem_cache_alloc(c, GFP_KERNEL), *i = uma_zalloc(z, M_WAITOK);
	void *m = bsd_malloc(50, M_TEST, M_WAITOK);
	assert_true(sk_report_has(slabkit_report_slabinfo, "skt_report_cache"));
	assert_true(sk_report_has(slabkit_report_vmstat_z, "skt_report_zone"));
	assert_true(sk_report_has(slabkit_report_vmstat_m, "test"));
	kmem_cache_free(c, o);
	uma_zfree(z, i);
	bsd_free(m, M_TEST);
	kmem_cache_destroy(c);
	uma_zdestroy(z);
}

struct visit {
	int pos_a, pos_b, count, stop_at;
};

static int visit_cache(const struct slabkit_cache_info *info, void *arg)
{
	struct visit *v = arg;
	if (strcmp(info->name, "skt_visit_a") == 0)
		v->pos_a = v->count;
	if (strcmp(info->name, "skt_visit_b") == 0)
		v->pos_b = v->count;
	v->count++;
	return v->stop_at && v->count == v->stop_at ? 42 : 0;
}

static void test_foreach_cache(void **state)
{
	(void)state;
	struct kmem_cache *a = kmem_cache_create("skt_visit_a", 40, 0, 0, NULL);
	struct kmem_cache *b = kmem_cache_create("skt_visit_b", 40, 0, 0, NULL);
	assert_non_null(a);
	assert_non_null(b);
	struct visit v = { -1, -1, 0, 0 };
	assert_int_equal(slabkit_foreach_cache(visit_cache, &v), 0);
	assert_true(v.pos_a >= 0 && v.pos_b >= 0);
	assert_true(v.pos_a < v.pos_b); /* creation order */
	struct visit stop = { -1, -1, 0, 2 };
	assert_int_equal(slabkit_foreach_cache(visit_cache, &stop), 42);
	assert_int_equal(stop.count, 2);
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("skt_no_such_cache", &info), -ENOENT);
	kmem_cache_destroy(a);
	kmem_cache_destroy(b);
}

static void test_backend_identity(void **state)
{
	(void)state;
	const char *b = slabkit_backend();
	assert_non_null(b);
	const char *env = getenv("SLABKIT_BACKEND");
	if (env && *env)
		assert_string_equal(b, env);
	/* The active backend is one of the compiled ones. */
	const char *list = slabkit_backends_compiled();
	assert_non_null(list);
	bool found = false;
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, ",");
		if (n == strlen(b) && strncmp(s, b, n) == 0)
			found = true;
		s += n;
		if (*s == ',')
			s++;
	}
	if (!found)
		fail_msg("backend \"%s\" not in compiled list \"%s\"", b, list);
	const char *mode = slabkit_percpu_mode();
	assert_non_null(mode);
	assert_true(strcmp(mode, "rseq") == 0 || strcmp(mode, "lock") == 0);
}

static void test_stats_and_maintenance(void **state)
{
	(void)state;
	struct slabkit_stats s = stats_now();
	assert_true(s.nodes >= 1);
	assert_true(s.cpus >= 1);
	assert_int_equal(slabkit_nodes(), s.nodes);
	int node = slabkit_current_node();
	assert_true(node >= 0 && (unsigned)node < s.nodes);
	assert_true(s.pages_reserved > 0);

	struct kmem_cache *c = kmem_cache_create("skt_maint", 256, 0, 0, NULL);
	assert_non_null(c);
	void *o[2000];
	for (int i = 0; i < 2000; i++) {
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(o[i]);
		sk_fill(o[i], 256, i);
	}
	struct slabkit_stats busy = stats_now();
	assert_true(busy.pages_in_use > 0);
	if (!sk_cache_backend_is("skt_maint", "slob"))
		assert_true(busy.slabs > 0 && busy.slab_pages >= busy.slabs);
	slabkit_tick();
	slabkit_shrink_all();
	for (int i = 0; i < 2000; i++)
		assert_int_equal(sk_check(o[i], 256, i), SIZE_MAX);
	for (int i = 0; i < 2000; i++)
		kmem_cache_free(c, o[i]);
	slabkit_shrink_all();
	assert_int_equal(sk_info("skt_maint").slabs, 0);
	slabkit_tick();

	/* Tunables: unknown cache, unknown key (a backend without tunables
	 * may say so first). */
	int rc = slabkit_cache_tune("skt_no_such_cache", "limit", 10);
	assert_true(rc == -ENOENT || rc == -EOPNOTSUPP);
	rc = slabkit_cache_tune("skt_maint", "no_such_tunable", 10);
	assert_true(rc == -EINVAL || rc == -EOPNOTSUPP);
	kmem_cache_destroy(c);
}

/* ======================================================================
 * Fault injection (page provider fails every Nth page allocation)
 * ====================================================================== */

static void fault_init(unsigned every)
{
	struct slabkit_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.page_fail_every = every;
	cfg.tick_ms = -1;
	int rc = sk_fresh_init(&cfg);
	if (rc != 0)
		fail_msg("slabkit_init(page_fail_every = %u) = %d", every, rc);
}

static void fault_restore(void)
{
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* A bulk allocation that cannot be satisfied returns 0 with nothing taken.
 * "Cannot": more objects than the (small) arena holds, so no retry, order
 * fallback or other node can save it. */
static void test_fault_bulk_all_or_nothing(void **state)
{
	(void)state;
	enum { OBJ = 256 * 1024 };
	struct slabkit_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.arena_bytes_per_node = 64u << 20; /* the provider may round this up */
	cfg.tick_ms = -1;
	assert_int_equal(sk_fresh_init(&cfg), 0);
	size_t n = (size_t)(stats_now().pages_reserved * PAGE / OBJ) + 64;
	struct kmem_cache *c = kmem_cache_create("skt_fault_bulk", OBJ, 0, 0, NULL);
	assert_non_null(c);
	void **p = calloc(n, sizeof(*p));
	assert_non_null(p);
	void *keep = kmem_cache_alloc(c, GFP_KERNEL);
	assert_non_null(keep);
	uint64_t failures = stats_now().page_alloc_failures;
	int got = kmem_cache_alloc_bulk(c, GFP_KERNEL | __GFP_NOWARN, n, p);
	if (got != 0)
		fail_msg("kmem_cache_alloc_bulk of %zu x %d bytes (more than the arena) = %d, "
			 "expected 0", n, OBJ, got);
	uint64_t in_use = sk_info("skt_fault_bulk").in_use;
	if (in_use != 1)
		fail_msg("a failed bulk left in_use at %llu (1 before)", (unsigned long long)in_use);
	assert_true(stats_now().page_alloc_failures > failures);
	/* What the failed bulk built was given back: a small bulk works. */
	assert_int_equal(kmem_cache_alloc_bulk(c, GFP_KERNEL, 64, p), 64);
	assert_true(sk_disjoint(p, 64, OBJ));
	kmem_cache_free_bulk(c, 64, p);
	kmem_cache_free(c, keep);
	assert_int_equal(kmem_cache_shrink(c), 0);
	assert_int_equal(sk_info("skt_fault_bulk").slabs, 0);
	free(p);
	kmem_cache_destroy(c);
	fault_restore();
}

/* Under injected page failures a bulk is still all or nothing.  (Whether
 * one fails depends on the backend: order and node fallbacks may absorb an
 * injected failure.) */
static void test_fault_bulk_injected(void **state)
{
	(void)state;
	enum { N = 50000 };
	fault_init(50);
	struct kmem_cache *c = NULL;
	for (int i = 0; i < 20 && !c; i++)
		c = kmem_cache_create("skt_fault_inj", 256, 0, 0, NULL);
	assert_non_null(c);
	void **p = calloc(N, sizeof(*p));
	assert_non_null(p);
	int zeros = 0;
	for (int attempt = 0; attempt < 6; attempt++) {
		uint64_t in_use = sk_info("skt_fault_inj").in_use;
		int n = kmem_cache_alloc_bulk(c, GFP_NOWAIT, N, p);
		if (n == 0) {
			zeros++;
			uint64_t after = sk_info("skt_fault_inj").in_use;
			if (after != in_use)
				fail_msg("failed bulk changed in_use from %llu to %llu",
					 (unsigned long long)in_use, (unsigned long long)after);
		} else {
			if (n != N)
				fail_msg("kmem_cache_alloc_bulk(%d) = %d: all or nothing", N, n);
			assert_int_equal(sk_info("skt_fault_inj").in_use, in_use + N);
			kmem_cache_free_bulk(c, N, p);
		}
	}
	print_message("  %s: %d of 6 GFP_NOWAIT bulks of %d failed\n", slabkit_backend(), zeros, N);
	void *o = kmem_cache_alloc(c, GFP_KERNEL | __GFP_NOFAIL);
	assert_non_null(o);
	kmem_cache_free(c, o);
	free(p);
	kmem_cache_destroy(c);
	fault_restore();
}

/* M_WAITOK and __GFP_NOFAIL never return NULL, even when pages fail;
 * M_NOWAIT and GFP_NOWAIT do fail, are counted, and do not panic. */
static void test_fault_waitok_never_null(void **state)
{
	(void)state;
	fault_init(5);
	uint64_t rng = 12345;
	for (int i = 0; i < 300; i++) {
		size_t n = 8192 + sk_rand(&rng) % 200000;
		void *p = bsd_malloc(n, M_TEST, M_WAITOK);
		if (!p)
			fail_msg("bsd_malloc(%zu, M_WAITOK) = NULL under fault injection", n);
		bsd_free(p, M_TEST);
		void *k = kmalloc(n, GFP_KERNEL | __GFP_NOFAIL);
		if (!k)
			fail_msg("kmalloc(%zu, __GFP_NOFAIL) = NULL under fault injection", n);
		kfree(k);
	}
	uma_zone_t z = NULL;
	for (int i = 0; i < 20 && !z; i++)
		z = uma_zcreate("skt_fault_zone", 4096, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	void *it[500];
	for (int i = 0; i < 500; i++) {
		it[i] = uma_zalloc(z, M_WAITOK);
		if (!it[i])
			fail_msg("uma_zalloc(M_WAITOK) #%d = NULL under fault injection", i);
	}
	for (int i = 0; i < 500; i++)
		uma_zfree(z, it[i]);
	uma_zdestroy(z);

	int nowait_null = 0;
	for (int i = 0; i < 300; i++) {
		void *p = bsd_malloc(100000, M_TEST, M_NOWAIT);
		if (!p)
			nowait_null++;
		else
			bsd_free(p, M_TEST);
	}
	assert_true(nowait_null > 0);

	/* A GFP_NOWAIT cache allocation may fail (a backend may also absorb a
	 * failed page allocation by falling back to a smaller slab order, as
	 * SLUB does); when it fails it returns NULL, is counted, and leaves
	 * in_use exact. */
	struct kmem_cache *c = NULL;
	for (int i = 0; i < 20 && !c; i++)
		c = kmem_cache_create("skt_fault_cache", 512, 0, 0, NULL);
	assert_non_null(c);
	enum { MAXO = 20000 };
	void **o = calloc(MAXO, sizeof(*o));
	int got = 0, nulls = 0;
	for (int i = 0; i < MAXO; i++) {
		void *x = kmem_cache_alloc(c, GFP_NOWAIT);
		if (x)
			o[got++] = x;
		else
			nulls++;
	}
	struct slabkit_cache_info ci = sk_info("skt_fault_cache");
	assert_int_equal(ci.in_use, got);
	assert_true(ci.failures >= (uint64_t)nulls);
	print_message("  %s: %d of %d GFP_NOWAIT cache allocations failed\n", slabkit_backend(),
		      nulls, MAXO);
	for (int i = 0; i < got; i++)
		kmem_cache_free(c, o[i]);
	free(o);
	kmem_cache_destroy(c);

	/* Page-path allocations are one page-provider call each: some fail. */
	int large_nulls = 0;
	for (int i = 0; i < 100; i++) {
		void *p = kmalloc(100000, GFP_NOWAIT);
		if (!p)
			large_nulls++;
		kfree(p);
	}
	assert_true(large_nulls > 0);
	assert_true(stats_now().page_alloc_failures > 0);
	fault_restore();
}

/* ======================================================================
 * Runner
 * ====================================================================== */

static const struct CMUnitTest report_tests[] = {
	SK_TEST(test_reports_name_things), SK_TEST(test_foreach_cache),
	SK_TEST(test_backend_identity),    SK_TEST(test_stats_and_maintenance),
};

static const struct CMUnitTest fault_tests[] = {
	SK_TEST(test_fault_bulk_all_or_nothing), SK_TEST(test_fault_bulk_injected),
	SK_TEST(test_fault_waitok_never_null),
};

static int run_group(const struct conformance_group *g)
{
	return _cmocka_run_group_tests(g->name, g->tests, g->count, sk_group_setup,
				       sk_group_teardown);
}

int main(void)
{
	sk_apply_test_filter();
	const struct conformance_group reports = {
		"reports", report_tests, sizeof(report_tests) / sizeof(report_tests[0])
	};
	const struct conformance_group fault = {
		"fault", fault_tests, sizeof(fault_tests) / sizeof(fault_tests[0])
	};
	const struct conformance_group *groups[] = {
		&conformance_kmalloc, &conformance_kmem_cache, &conformance_malloc9,
		&conformance_uma,     &conformance_misuse,     &conformance_threads,
		&reports,             &fault,
		&conformance_linux_extra, &conformance_pages, &conformance_freebsd_extra,
		&conformance_robust,
		&conformance_fork,
		&conformance_uma_extra,
		&conformance_rcu,
	};
	int failed = 0;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		failed += run_group(groups[i]);
	return failed ? 1 : 0;
}
