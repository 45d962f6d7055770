/*
 * Conformance, misuse: freeing what slabkit never handed out, or handing an
 * object to the wrong cache, is reported (one line naming the call and the
 * pointer, then the panic hook under SLABKIT_MISUSE=panic, which the suites
 * set) and does nothing.
 * The same contract for every backend.  See conformance.c.
 */
#include <sys/wait.h>

#include "conformance.h"
#include "numa/sk_numa.h" /* sk_pages_set_fail_every */

/* ======================================================================
 * Misuse: the same contract for every backend
 * ====================================================================== */

/* Call `free_fn(victim)`; exactly one panic, and a line naming `call` and
 * the pointer. */
#define EXPECT_MISUSE(call, ptr, stmt)                                                   \
	do {                                                                             \
		char _pt[32];                                                            \
		unsigned _p0 = sk_panic_count();                                         \
		stmt;                                                                    \
		if (sk_panic_count() != _p0 + 1) {                                       \
			sk_capture_dump(#stmt);                                          \
			fail_msg("%s: %u panic(s), expected 1", #stmt,                    \
				 sk_panic_count() - _p0);                                 \
		}                                                                        \
		sk_assert_reported((call), sk_ptr_text((ptr), _pt), NULL);               \
	} while (0)

struct foreign {
	_Alignas(64) unsigned char stack[256];
	unsigned char *libc;
};

/* The libc block of the running misuse test; freed by its teardown if an
 * assertion ended the test early. */
static unsigned char *foreign_libc_block;

static void foreign_setup(struct foreign *f)
{
	memset(f->stack, 0x11, sizeof(f->stack));
	f->libc = malloc(256);
	assert_non_null(f->libc);
	foreign_libc_block = f->libc;
	sk_fill(f->libc, 256, 0xABCD);
}

static int misuse_teardown(void **state)
{
	free(foreign_libc_block);
	foreign_libc_block = NULL;
	return sk_test_teardown(state);
}

#define MISUSE_TEST(fn) cmocka_unit_test_setup_teardown(fn, sk_test_setup, misuse_teardown)

/* The foreign memory is untouched and libc can still free its block. */
static void foreign_check(struct foreign *f)
{
	for (size_t i = 0; i < sizeof(f->stack); i++)
		assert_int_equal(f->stack[i], 0x11);
	assert_int_equal(sk_check(f->libc, 256, 0xABCD), SIZE_MAX);
	free(f->libc);
	foreign_libc_block = NULL;
}

static void healthy_after_misuse(void)
{
	void *p[100];
	for (int i = 0; i < 100; i++) {
		p[i] = kmalloc(16 + i * 8, GFP_KERNEL);
		assert_non_null(p[i]);
	}
	for (int i = 0; i < 100; i++)
		kfree(p[i]);
}

static void test_misuse_kfree(void **state)
{
	(void)state;
	sk_expect_panics();
	struct foreign f;
	foreign_setup(&f);
	EXPECT_MISUSE("kfree", f.stack, kfree(f.stack));
	EXPECT_MISUSE("kfree", f.libc, kfree(f.libc));
	EXPECT_MISUSE("kfree", f.stack + 64, kfree_sensitive(f.stack + 64));
	foreign_check(&f);
	healthy_after_misuse();
}

static void test_misuse_bsd_free(void **state)
{
	(void)state;
	sk_expect_panics();
	struct foreign f;
	foreign_setup(&f);
	struct malloc_type_stats_sum s0 = type_stats(M_TEST);
	EXPECT_MISUSE("free", f.stack, bsd_free(f.stack, M_TEST));
	EXPECT_MISUSE("free", f.libc, bsd_free(f.libc, M_TEST));
	assert_int_equal(type_stats(M_TEST).frees, s0.frees);
	foreign_check(&f);
	void *p = bsd_malloc(100, M_TEST, M_WAITOK);
	assert_non_null(p);
	bsd_free(p, M_TEST);
}

static void test_misuse_kmem_cache_free(void **state)
{
	(void)state;
	sk_expect_panics();
	struct kmem_cache *a = kmem_cache_create("skt_mis_a", 64, 0, 0, NULL);
	struct kmem_cache *b = kmem_cache_create("skt_mis_b", 64, 0, 0, NULL);
	assert_non_null(a);
	assert_non_null(b);
	struct foreign f;
	foreign_setup(&f);
	EXPECT_MISUSE("kmem_cache_free", f.stack, kmem_cache_free(a, f.stack));
	EXPECT_MISUSE("kmem_cache_free", f.libc, kmem_cache_free(a, f.libc));
	sk_assert_reported("kmem_cache_free(skt_mis_a): pointer to no live allocation", "; ignored", NULL);
	foreign_check(&f);

	/* An object of another cache: reported with the owner's name. */
	void *keep_a = kmem_cache_alloc(a, GFP_KERNEL);
	unsigned char *ob = kmem_cache_alloc(b, GFP_KERNEL);
	assert_non_null(ob);
	sk_fill(ob, 64, 0xB0B);
	struct slabkit_cache_info a0 = sk_info("skt_mis_a"), b0 = sk_info("skt_mis_b");
	EXPECT_MISUSE("kmem_cache_free", ob, kmem_cache_free(a, ob));
	sk_assert_reported("kmem_cache_free(skt_mis_a): object of another cache", "belongs to cache skt_mis_b",
			   "; ignored");
	struct slabkit_cache_info a1 = sk_info("skt_mis_a"), b1 = sk_info("skt_mis_b");
	assert_int_equal(a1.frees, a0.frees);
	assert_int_equal(a1.in_use, a0.in_use);
	assert_int_equal(b1.in_use, b0.in_use);
	assert_int_equal(sk_check(ob, 64, 0xB0B), SIZE_MAX);

	/* A kmalloc object is not a kmem_cache object of `a` either. */
	void *km = kmalloc(64, GFP_KERNEL);
	EXPECT_MISUSE("kmem_cache_free", km, kmem_cache_free(a, km));
	void *big = kmalloc(50000, GFP_KERNEL);
	EXPECT_MISUSE("kmem_cache_free", big, kmem_cache_free(a, big));
	kfree(km);
	kfree(big);

	kmem_cache_free(b, ob);
	kmem_cache_free(a, keep_a);
	assert_int_equal(sk_info("skt_mis_a").in_use, 0);
	assert_int_equal(sk_info("skt_mis_b").in_use, 0);
	kmem_cache_destroy(a);
	kmem_cache_destroy(b);
	healthy_after_misuse();
}

static void test_misuse_uma_zfree(void **state)
{
	(void)state;
	sk_expect_panics();
	uma_zone_t a = uma_zcreate("skt_umis_a", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	uma_zone_t b = uma_zcreate("skt_umis_b", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(a);
	assert_non_null(b);
	struct foreign f;
	foreign_setup(&f);
	EXPECT_MISUSE("uma_zfree", f.stack, uma_zfree(a, f.stack));
	EXPECT_MISUSE("uma_zfree", f.libc, uma_zfree_arg(a, f.libc, NULL));
	foreign_check(&f);

	unsigned char *ib = uma_zalloc(b, M_WAITOK);
	assert_non_null(ib);
	sk_fill(ib, 64, 0x1B);
	EXPECT_MISUSE("uma_zfree", ib, uma_zfree(a, ib));
	assert_int_equal(uma_zone_get_cur(a), 0);
	assert_int_equal(uma_zone_get_cur(b), 1);
	assert_int_equal(sk_check(ib, 64, 0x1B), SIZE_MAX);
	uma_zfree(b, ib);
	assert_int_equal(uma_zone_get_cur(b), 0);
	uma_zdestroy(a);
	uma_zdestroy(b);
	healthy_after_misuse();
}

/* ======================================================================
 * Always on, with debug off: double frees of the object a CPU cache holds
 * first and frees of interior pointers are caught on every backend.
 * ====================================================================== */

/* `stmt` makes exactly one report naming ptr. */
#define EXPECT_ONE_REPORT(ptr, stmt)                                                      \
	do {                                                                             \
		char _pt[32];                                                            \
		unsigned _p0 = sk_panic_count();                                         \
		stmt;                                                                    \
		if (sk_panic_count() != _p0 + 1) {                                       \
			sk_capture_dump(#stmt);                                          \
			fail_msg("%s: %u report(s), expected 1", #stmt,                   \
				 sk_panic_count() - _p0);                                 \
		}                                                                        \
		sk_assert_reported(sk_ptr_text((ptr), _pt), NULL, NULL);                 \
	} while (0)

/* The next two allocations are distinct and the first is not live elsewhere. */
#define EXPECT_DISTINCT(alloc, release)                                                   \
	do {                                                                             \
		void *_a = (alloc), *_b = (alloc);                                       \
		assert_non_null(_a);                                                     \
		assert_non_null(_b);                                                     \
		assert_ptr_not_equal(_a, _b);                                            \
		release(_a);                                                             \
		release(_b);                                                             \
	} while (0)

static void *km64(void) { return kmalloc(64, GFP_KERNEL); }
static void km_free(void *p) { kfree(p); }

static void test_misuse_double_free_kfree(void **state)
{
	(void)state;
	sk_expect_panics();
	for (int round = 0; round < 3; round++) {
		char *p = kmalloc(64, GFP_KERNEL);
		assert_non_null(p);
		kfree(p);
		EXPECT_ONE_REPORT(p, kfree(p));
		EXPECT_DISTINCT(km64(), km_free);
	}
	healthy_after_misuse();
}

static void test_misuse_interior_kfree(void **state)
{
	(void)state;
	sk_expect_panics();
	char *p = kmalloc(64, GFP_KERNEL);
	assert_non_null(p);
	sk_fill(p, 64, 0x1A7);
	EXPECT_ONE_REPORT(p + 8, kfree(p + 8));
	EXPECT_ONE_REPORT(p + 8, assert_int_equal(ksize(p + 8), 0));
	EXPECT_ONE_REPORT(p + 8, assert_null(krealloc(p + 8, 200, GFP_KERNEL)));
	/* p is still live and whole; nothing hands out p + 8. */
	void *q[64];
	for (int i = 0; i < 64; i++) {
		q[i] = kmalloc(64, GFP_KERNEL);
		assert_ptr_not_equal(q[i], p + 8);
		assert_ptr_not_equal(q[i], p);
	}
	for (int i = 0; i < 64; i++)
		kfree(q[i]);
	assert_int_equal(sk_check(p, 64, 0x1A7), SIZE_MAX);
	kfree(p);
	healthy_after_misuse();
}

static struct kmem_cache *dbl_cache;
static void *dbl_alloc(void) { return kmem_cache_alloc(dbl_cache, GFP_KERNEL); }
static void dbl_free(void *p) { kmem_cache_free(dbl_cache, p); }

static void test_misuse_double_free_kmem_cache(void **state)
{
	(void)state;
	sk_expect_panics();
	char pt[32];
	dbl_cache = kmem_cache_create("skt_dbl", 96, 0, 0, NULL);
	assert_non_null(dbl_cache);
	/* keep holds the slab (SLOB gives an empty page back at once, and
	 * a second free there would find no live allocation instead). */
	void *keep = kmem_cache_alloc(dbl_cache, GFP_KERNEL);
	char *p = kmem_cache_alloc(dbl_cache, GFP_KERNEL);
	assert_non_null(keep);
	assert_non_null(p);
	kmem_cache_free(dbl_cache, p);
	EXPECT_ONE_REPORT(p, kmem_cache_free(dbl_cache, p));
	sk_assert_reported("kmem_cache_free(skt_dbl): double free of", sk_ptr_text(p, pt), "; ignored");
	EXPECT_DISTINCT(dbl_alloc(), dbl_free);

	p = kmem_cache_alloc(dbl_cache, GFP_KERNEL);
	EXPECT_ONE_REPORT(p + 8, kmem_cache_free(dbl_cache, p + 8));
	sk_assert_reported("kmem_cache_free(skt_dbl): interior pointer", sk_ptr_text(p + 8, pt), "; ignored");
	kmem_cache_free(dbl_cache, keep);
	void *q = kmem_cache_alloc(dbl_cache, GFP_KERNEL);
	assert_ptr_not_equal(q, p + 8);
	kmem_cache_free(dbl_cache, q);
	kmem_cache_free(dbl_cache, p);
	assert_int_equal(sk_info("skt_dbl").in_use, 0);
	kmem_cache_destroy(dbl_cache);
	healthy_after_misuse();
}

static uma_zone_t dbl_zone;
static void *dbl_zalloc(void) { return uma_zalloc(dbl_zone, M_WAITOK); }
static void dbl_zfree(void *p) { uma_zfree(dbl_zone, p); }

/* Two items of z, the second freed twice: one report naming the call and
 * the item (needles a and b), and the zone counts one item out.  Returns
 * the first, still live (it holds the slab). */
static char *zone_double_free(uma_zone_t z, const char *a, const char *b)
{
	char pt[32];
	char *keep = uma_zalloc(z, M_WAITOK), *p = uma_zalloc(z, M_WAITOK);
	assert_non_null(keep);
	assert_non_null(p);
	uma_zfree(z, p);
	EXPECT_ONE_REPORT(p, uma_zfree(z, p));
	sk_assert_reported(a, sk_ptr_text(p, pt), b);
	assert_int_equal(uma_zone_get_cur(z), 1);
	return keep;
}

static void test_misuse_double_free_uma(void **state)
{
	(void)state;
	sk_expect_panics();
	char pt[32];
	/* A plain zone, one with a limit (its count must not go below what
	 * is live), and the same two with no per-CPU buckets: their frees
	 * reach the backend's slab, whose own record catches the second free
	 * of the object it freed last (SLAB's free-index array, SLUB's slab
	 * free list, UMA's bitset, SLOB's heap), reported by core's one policy
	 * all the same.  keep holds the slab (SLUB and SLOB give an empty one
	 * back at once). */
	for (int variant = 0; variant < 4; variant++) {
		dbl_zone = uma_zcreate("skt_udbl", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				       variant >= 2 ? UMA_ZONE_NOBUCKET : 0);
		assert_non_null(dbl_zone);
		if (variant & 1)
			uma_zone_set_max(dbl_zone, 1000);
		char *keep = zone_double_free(dbl_zone, "uma_zfree(skt_udbl): double free of", "; ignored");
		EXPECT_DISTINCT(dbl_zalloc(), dbl_zfree);

		char *p = uma_zalloc(dbl_zone, M_WAITOK);
		EXPECT_ONE_REPORT(p + 8, uma_zfree(dbl_zone, p + 8));
		sk_assert_reported("uma_zfree(skt_udbl): interior pointer", sk_ptr_text(p + 8, pt), "; ignored");
		assert_int_equal(uma_zone_get_cur(dbl_zone), 2);
		void *q = uma_zalloc(dbl_zone, M_WAITOK);
		assert_ptr_not_equal(q, p + 8);
		uma_zfree(dbl_zone, q);
		uma_zfree(dbl_zone, p);
		uma_zfree(dbl_zone, keep);
		assert_int_equal(uma_zone_get_cur(dbl_zone), 0);
		uma_zdestroy(dbl_zone);
	}
	/* A secondary zone counts its items itself: a second free is caught
	 * by its own cache of free items (the item freed last), or, when it
	 * keeps none, by the backend's slab; either way it is not counted. */
	uma_zone_t primary = uma_zcreate("skt_udbl_p", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, UMA_ZONE_NOBUCKET);
	assert_non_null(primary);
	for (int keeps = 1; keeps >= 0; keeps--) {
		uma_zone_t second = uma_zsecond_create("skt_udbl_s", NULL, NULL, NULL, NULL, primary);
		assert_non_null(second);
		if (!keeps)
			uma_zone_set_maxcache(second, 0);
		char *keep = zone_double_free(second, "uma_zfree", "double free of");
		uma_zfree(second, keep);
		assert_int_equal(uma_zone_get_cur(second), 0);
		uma_zdestroy(second);
	}
	uma_zdestroy(primary);
	healthy_after_misuse();
}

static void test_misuse_interior_bsd_free(void **state)
{
	(void)state;
	sk_expect_panics();
	struct malloc_type_stats_sum s0 = type_stats(M_TEST);
	char *p = bsd_malloc(100, M_TEST, M_WAITOK);
	assert_non_null(p);
	EXPECT_ONE_REPORT(p + 16, bsd_free(p + 16, M_TEST));
	bsd_free(p, M_TEST);
	EXPECT_ONE_REPORT(p, bsd_free(p, M_TEST));
	struct malloc_type_stats_sum s1 = type_stats(M_TEST);
	assert_int_equal(s1.frees - s0.frees, 1);
	assert_int_equal(s1.allocs - s0.allocs, 1);
	healthy_after_misuse();
}

/* The report policy, the default (no setting at all) and
 * SLABKIT_MISUSE=report (slabkit_config.misuse): the same reports, no
 * panic hook (the default one, which would abort, is in place), and the
 * process goes on, after refused frees and after other bad input (bad
 * flags, a NULL zone or cache, a pointer slabkit never returned).  In a child, which re-initialises slabkit so; the
 * suites themselves run with the panic policy (sk_install_hooks). */
static void report_policy_in_child(const char *misuse)
{
	sk_expect_panics();
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		slabkit_fini();
		sk_capture_reset();
		sk_expect_panics();
		unsetenv("SLABKIT_MISUSE");
		struct slabkit_config cfg = { .misuse = misuse, .tick_ms = -1 };
		if (slabkit_init(&cfg) != 0)
			_exit(10);
		slabkit_set_panic_hook(NULL); /* the default: abort */
		static char not_ours[64];
		struct kmem_cache *c = kmem_cache_create("skt_rep", 64, 0, 0, NULL);
		char *p = kmem_cache_alloc(c, GFP_KERNEL);
		char *k = kmalloc(64, GFP_KERNEL), *keep = kmem_cache_alloc(c, GFP_KERNEL);
		void *keep_k = kmalloc(64, GFP_KERNEL);
		if (!c || !p || !k || !keep || !keep_k)
			_exit(11);
		kmem_cache_free(c, p + 8);
		kmem_cache_free(c, k);
		kfree(not_ours);
		kmem_cache_free(c, p);
		kmem_cache_free(c, p);
		kfree(k);
		kfree(k);
		if (sk_captured("interior pointer", NULL, NULL) != 1 ||
		    sk_captured("object of another cache", NULL, NULL) != 1 ||
		    sk_captured("pointer to no live allocation", NULL, NULL) != 1 ||
		    sk_captured("double free of", NULL, NULL) != 2 || sk_panic_count() != 0)
			_exit(12);
		char *again[2] = { kmem_cache_alloc(c, GFP_KERNEL), kmem_cache_alloc(c, GFP_KERNEL) };
		if (!again[0] || again[0] == again[1])
			_exit(13);
		/* Other bad input under the same policy: reported, the call
		 * dropped (NULL, 0 or nothing), the program goes on. */
		unsigned reports = sk_message_count();
		void *bad_flags = bsd_malloc(64, M_TEST, M_WAITOK | M_NOWAIT);
		void *no_zone = uma_zalloc(NULL, M_NOWAIT);
		void *no_cache = kmem_cache_alloc(NULL, GFP_KERNEL);
		uma_zfree(NULL, keep);
		size_t size_of_stack = ksize(not_ours);
		if (bad_flags || no_zone || no_cache || size_of_stack || sk_message_count() != reports + 5 ||
		    sk_panic_count() != 0)
			_exit(14);
		/* What slabkit cannot keep is not misuse: an M_WAITOK
		 * allocation with no memory left runs the panic hook under
		 * this policy too (a counting hook here, which returns). */
		slabkit_set_panic_hook(sk_capture_panic);
		sk_pages_set_fail_every(1);
		void *no_memory = bsd_malloc(1 << 20, M_TEST, M_WAITOK);
		sk_pages_set_fail_every(0);
		slabkit_set_panic_hook(NULL);
		if (no_memory || sk_panic_count() != 1 || !sk_captured("M_WAITOK allocation", "failed", NULL))
			_exit(15);
		kmem_cache_free(c, again[0]);
		kmem_cache_free(c, again[1]);
		kmem_cache_free(c, keep);
		kfree(keep_k);
		kmem_cache_destroy(c);
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("child (misuse %s): %s %d (10 init, 11 alloc, 12 reports, 13 reuse, 14 other bad input, "
			 "15 no fatal panic; a signal: it aborted)",
			 misuse ? misuse : "default", WIFEXITED(st) ? "exit" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void test_misuse_report_policy(void **state)
{
	(void)state;
	report_policy_in_child(NULL);
	report_policy_in_child("report");
}

static const struct CMUnitTest misuse_tests[] = {
	MISUSE_TEST(test_misuse_kfree),    MISUSE_TEST(test_misuse_bsd_free),
	MISUSE_TEST(test_misuse_kmem_cache_free), MISUSE_TEST(test_misuse_uma_zfree),
	MISUSE_TEST(test_misuse_double_free_kfree), MISUSE_TEST(test_misuse_interior_kfree),
	MISUSE_TEST(test_misuse_double_free_kmem_cache), MISUSE_TEST(test_misuse_double_free_uma),
	MISUSE_TEST(test_misuse_interior_bsd_free),
	MISUSE_TEST(test_misuse_report_policy),
};

const struct conformance_group conformance_misuse = {
	"misuse", misuse_tests, sizeof(misuse_tests) / sizeof(misuse_tests[0])
};
