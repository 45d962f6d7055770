/*
 * Allocation tracking and leak reports with call sites (core/track.c),
 * run once per backend: SLAB_STORE_USER caches, SLABKIT_LEAKS=1 for every
 * cache, size class, large block, malloc(9) type and UMA zone, and
 * SLABKIT_LEAKS=bt backtraces.  The program is linked with its symbols
 * exported, so that the reports can name the allocating functions.
 */
#define _GNU_SOURCE
#include "sk_test.h"

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "core/sk_core.h"

#define THREADS 4
#define PER_THREAD_A 64
#define PER_THREAD_B 16
#define SITE_SPAN 4096 /* a call site lies within this many bytes of its function */

/* Call sites the reports must name (global: exported for dladdr). */
__attribute__((noinline)) void *track_site_a(struct kmem_cache *c)
{
	void *p = kmem_cache_alloc(c, GFP_KERNEL);
	__asm__ volatile("" ::: "memory"); /* no tail call: the site stays here */
	return p;
}

__attribute__((noinline)) void *track_site_b(struct kmem_cache *c)
{
	void *p = kmem_cache_zalloc(c, GFP_KERNEL);
	__asm__ volatile("" ::: "memory");
	return p;
}

/* noclone: kmalloc is inline, and a clone specialised for a constant size
 * would be a local symbol the site report cannot name. */
__attribute__((noinline, noclone)) void *track_site_kmalloc(size_t n)
{
	void *p = kmalloc(n, GFP_KERNEL);
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) void *track_site_bsd(size_t n, struct malloc_type *t)
{
	void *p = bsd_malloc(n, t, M_WAITOK);
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) void *track_site_zone(uma_zone_t z)
{
	void *p = uma_zalloc(z, M_WAITOK);
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) void *track_outer(struct kmem_cache *c)
{
	void *p = track_site_a(c);
	__asm__ volatile("" ::: "memory");
	return p;
}

static bool site_in(const void *site, void *(*fn)())
{
	return (const char *)site > (const char *)fn && (const char *)site < (const char *)fn + SITE_SPAN;
}

struct worker {
	struct kmem_cache *cache;
	pid_t tid;
	void *a[PER_THREAD_A], *b[PER_THREAD_B];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->tid = (pid_t)gettid();
	for (int i = 0; i < PER_THREAD_A; i++)
		w->a[i] = track_site_a(w->cache);
	for (int i = 0; i < PER_THREAD_B; i++)
		w->b[i] = track_site_b(w->cache);
	/* Free every second A object and all B objects but three. */
	for (int i = 0; i < PER_THREAD_A; i += 2)
		kmem_cache_free(w->cache, w->a[i]);
	for (int i = 3; i < PER_THREAD_B; i++)
		kmem_cache_free(w->cache, w->b[i]);
	return NULL;
}

/* SLAB_STORE_USER: records across threads, lookups, the report on destroy. */
static void store_user_cache(void **state)
{
	struct kmem_cache *c = kmem_cache_create("trk_user", 40, 0, SLAB_STORE_USER, NULL);
	struct worker w[THREADS];
	pthread_t t[THREADS];

	assert_non_null(c);
	assert_int_equal(((struct sk_cache *)c)->flags & SK_CACHE_STORE_USER, SK_CACHE_STORE_USER);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .cache = c };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	/* Live objects have their record; a freed address has none unless
	 * another thread got it again. */
	void *live[THREADS * (PER_THREAD_A + PER_THREAD_B)];
	unsigned nlive = 0;
	for (int i = 0; i < THREADS; i++) {
		for (int k = 1; k < PER_THREAD_A; k += 2)
			live[nlive++] = w[i].a[k];
		for (int k = 0; k < 3; k++)
			live[nlive++] = w[i].b[k];
	}
	struct sk_track_rec r;
	for (int i = 0; i < THREADS; i++) {
		for (int k = 0; k < PER_THREAD_A; k++) {
			bool is_live = false;
			for (unsigned j = 0; j < nlive; j++)
				is_live |= live[j] == w[i].a[k];
			assert_int_equal(sk_track_lookup(w[i].a[k], &r), is_live);
			if (k % 2 == 1) {
				assert_true(site_in(r.site[0], (void *(*)())track_site_a));
				assert_int_equal(r.tid, w[i].tid);
				assert_int_equal(r.size, 40);
				assert_ptr_equal(r.cache, (struct sk_cache *)c);
			}
		}
		for (int k = 0; k < PER_THREAD_B; k++) {
			bool is_live = false;
			for (unsigned j = 0; j < nlive; j++)
				is_live |= live[j] == w[i].b[k];
			assert_int_equal(sk_track_lookup(w[i].b[k], &r), is_live);
			if (k < 3) {
				assert_true(site_in(r.site[0], (void *(*)())track_site_b));
				assert_int_equal(r.tid, w[i].tid);
			}
		}
	}
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("trk_user", &info), 0);
	uint64_t live_a = THREADS * PER_THREAD_A / 2, live_b = THREADS * 3;
	assert_int_equal(info.in_use, live_a + live_b);

	/* Destroy with leaks: grouped by site, largest first, exact counts. */
	sk_expect_messages();
	sk_capture_reset();
	kmem_cache_destroy(c);
	char line[160];
	snprintf(line, sizeof(line), "leaks in cache trk_user: %llu objects, %llu bytes, from 2 call sites",
		 (unsigned long long)(live_a + live_b), (unsigned long long)(live_a + live_b) * 40);
	sk_assert_reported(line, NULL, NULL);
	snprintf(line, sizeof(line), "%llu objects, %llu bytes allocated at track_site_a+",
		 (unsigned long long)live_a, (unsigned long long)live_a * 40);
	sk_assert_reported(line, NULL, NULL);
	snprintf(line, sizeof(line), "%llu objects, %llu bytes allocated at track_site_b+",
		 (unsigned long long)live_b, (unsigned long long)live_b * 40);
	sk_assert_reported(line, NULL, NULL);
	/* Largest first: A's line comes before B's. */
	int at_a = -1, at_b = -1;
	for (unsigned i = 0; i < sk_cap.nlines; i++) {
		if (strstr(sk_cap.lines[i], "allocated at track_site_a+"))
			at_a = (int)i;
		if (strstr(sk_cap.lines[i], "allocated at track_site_b+"))
			at_b = (int)i;
	}
	assert_true(at_a >= 0 && at_b > at_a);
}

/* A cache without SLAB_STORE_USER keeps its fast path and records nothing. */
static void untracked_cache(void **state)
{
	struct kmem_cache *c = kmem_cache_create("trk_plain", 40, 0, 0, NULL);
	assert_non_null(c);
	assert_int_not_equal(((struct sk_cache *)c)->fast, SK_FAST_TRACKED);
	void *p = track_site_a(c);
	assert_false(sk_track_lookup(p, NULL));
	kmem_cache_free(c, p);
	kmem_cache_destroy(c);
}

MALLOC_DEFINE(M_TRKTEST, "trktest", "tracking test type");

static int with_leaks_env(const char *mode)
{
	setenv("SLABKIT_LEAKS", mode, 1);
	int rc = sk_fresh_init(NULL);
	unsetenv("SLABKIT_LEAKS");
	return rc;
}

/* SLABKIT_LEAKS=1: size classes, large blocks, malloc types, UMA zones. */
static void leaks_everywhere(void **state)
{
	assert_int_equal(with_leaks_env("1"), 0);
	assert_int_equal(sk_track_mode, SK_TRACK_SITE);
	slabkit_malloc_type_register(M_TRKTEST);

	void *small[5], *large = track_site_kmalloc(100000);
	for (int i = 0; i < 5; i++)
		small[i] = track_site_kmalloc(100);
	kfree(small[0]);
	struct sk_track_rec r;
	assert_false(sk_track_lookup(small[0], NULL));
	assert_true(sk_track_lookup(small[1], &r));
	assert_true(site_in(r.site[0], (void *(*)())track_site_kmalloc));
	assert_true(sk_track_lookup(large, &r));
	assert_true(site_in(r.site[0], (void *(*)())track_site_kmalloc));
	assert_int_equal(r.kind, SK_TRACK_LARGE);

	void *m1 = track_site_bsd(50, M_TRKTEST), *m2 = track_site_bsd(50, M_TRKTEST);
	void *m3 = track_site_bsd(200000, M_TRKTEST);
	bsd_free(m1, M_TRKTEST);
	assert_true(sk_track_lookup(m2, &r));
	assert_ptr_equal(r.type, M_TRKTEST);
	assert_true(site_in(r.site[0], (void *(*)())track_site_bsd));
	assert_true(sk_track_lookup(m3, &r));
	assert_ptr_equal(r.type, M_TRKTEST);

	uma_zone_t z = uma_zcreate("trk_zone", 72, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	void *zi[3];
	for (int i = 0; i < 3; i++)
		zi[i] = track_site_zone(z);
	uma_zfree(z, zi[2]);
	assert_true(sk_track_lookup(zi[0], &r));
	assert_true(site_in(r.site[0], (void *(*)())track_site_zone));
	assert_false(sk_track_lookup(zi[2], NULL));

	sk_expect_messages();
	sk_capture_reset();
	slabkit_malloc_type_unregister(M_TRKTEST);
	sk_assert_reported("leaks in memory type trktest: 2 objects", NULL, NULL);
	sk_assert_reported("2 objects", "allocated at track_site_bsd+", NULL);

	sk_capture_reset();
	uma_zdestroy(z);
	sk_assert_reported("leaks in cache trk_zone: 2 objects", NULL, NULL);
	sk_assert_reported("2 objects", "allocated at track_site_zone+", NULL);

	/* slabkit_fini reports the size class and the large block. */
	bool slob = sk_backend_is("slob");
	sk_capture_reset();
	slabkit_fini();
	if (slob) { /* kmalloc is SLOB's heap: small blocks are heap blocks */
		sk_assert_reported("leaks in large and heap blocks: 5 objects", NULL, NULL);
		sk_assert_reported("5 objects", "allocated at track_site_kmalloc+", NULL);
	} else {
		sk_assert_reported("leaks in cache kmalloc-128: 4 objects, 512 bytes", NULL, NULL);
		sk_assert_reported("4 objects, 512 bytes allocated at track_site_kmalloc+", NULL, NULL);
		sk_assert_reported("leaks in large and heap blocks: 1 objects", NULL, NULL);
		sk_assert_reported("1 objects", "allocated at track_site_kmalloc+", NULL);
	}
	assert_int_equal(sk_fresh_init(NULL), 0); /* the fixture's teardown finis */
}

/* SLABKIT_LEAKS=bt: the frames above the call site. */
static void leaks_backtrace(void **state)
{
	assert_int_equal(with_leaks_env("bt"), 0);
	struct kmem_cache *c = kmem_cache_create("trk_bt", 24, 0, 0, NULL);
	void *p = track_outer(c);
	struct sk_track_rec r;
	assert_true(sk_track_lookup(p, &r));
	assert_true(site_in(r.site[0], (void *(*)())track_site_a));
	assert_true(r.nframes >= 2);
	assert_true(site_in(r.site[1], (void *(*)())track_outer));

	sk_expect_messages();
	sk_capture_reset();
	kmem_cache_destroy(c);
	sk_assert_reported("1 objects, 24 bytes allocated at track_site_a+", NULL, NULL);
	sk_assert_reported("#1 track_outer+", NULL, NULL);
	slabkit_fini();
	assert_int_equal(sk_fresh_init(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(store_user_cache),
		SK_TEST(untracked_cache),
		SK_TEST(leaks_everywhere),
		SK_TEST(leaks_backtrace),
	};
	sk_apply_test_filter();
	return cmocka_run_group_tests(tests, sk_group_setup, sk_group_teardown);
}
