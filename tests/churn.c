/*
 * Churn: more threads than cores mix every front end (kmalloc, kmem_cache,
 * UMA, malloc(9)) for a fixed number of operations, with cross-thread
 * frees, while threads are created and joined during the run; then the
 * same under the page provider's fault injection (every Nth page
 * allocation, and the random mode).
 *
 * Every object carries a checksum in its first 8 bytes over the bytes it
 * was filled with (all of them up to 8 KiB; the first and last 4 KiB of
 * larger ones); it is verified when the object is freed, by whichever
 * thread frees it.  An object handed out twice, or written by the
 * allocator while live, fails its checksum.
 *
 * Objects outlive the thread that allocated them: a worker leaving parks
 * some of its objects in a shared exchange, where later workers (or the
 * main thread at the end) free them.
 *
 * Under fault injection the failure policy (docs/api.md, "When memory runs
 * out") is checked per request: GFP_NOWAIT, M_NOWAIT and GFP_KERNEL above
 * 32 KiB may return NULL; GFP_KERNEL up to 32 KiB, __GFP_NOFAIL, M_WAITOK
 * and kmem_cache / UMA allocations with GFP_KERNEL / M_WAITOK may not.
 * After each run every object is freed and the figures reconcile: caches
 * and the zone hold nothing, the malloc type's blocks and bytes balance,
 * no large block is left, the kmalloc classes are back where they were,
 * and once the caches are destroyed the page provider holds no more pages
 * than before the run.
 *
 * Workers never call cmocka asserts: they count, the main thread asserts.
 * ctest runs it per backend as churn_<b> and churn_<b>_lock
 * (SLABKIT_PERCPU=lock); $SLABKIT_STRESS_SCALE scales the operations
 * (TSan builds a further 0.25).
 */
#include <stdatomic.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "numa/sk_numa.h" /* the provider's fault injection switches */
#include "sk_exchange.h"
#include "sk_test.h"

MALLOC_DEFINE(M_CHURN, "churn", "slabkit churn test type");

enum kind { K_KMALLOC, K_CACHE_SMALL, K_CACHE_LINE, K_UMA, K_BSD, K_NKINDS };

#define SMALL_SIZE 64
#define LINE_SIZE 700
#define ZONE_SIZE 128
#define CHECKED_EDGE 4096 /* larger objects: checksum over the first and last 4 KiB */
#define COSTLY 32768      /* SK_COSTLY_SIZE: GFP_KERNEL above it may fail */

struct obj {
	void *p;
	size_t size;
	enum kind kind;
};

/* Synchronization: atomics. */
struct counts {
	atomic_long ops, allocs, corrupt, must_not_fail_failed, may_fail_failed, bulk_failed;
};

#define EXCHANGE_CAP 8192

struct churn {
	struct kmem_cache *small, *line;
	uma_zone_t zone;
	bool faults; /* requests may meet injected page failures */
	struct obj xchg_slots[EXCHANGE_CAP];
	struct sk_exchange xchg; /* objects parked for another thread to free */
	struct counts c;
};

/* --- checksums --- */

static uint64_t mix(uint64_t h, uint64_t w)
{
	h ^= w;
	h *= 0x100000001B3ull;
	return h ^ (h >> 29);
}

static uint64_t sum_range(uint64_t h, const unsigned char *p, size_t from, size_t to)
{
	size_t i = from;
	for (; i + 8 <= to; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = mix(h, w);
	}
	for (; i < to; i++)
		h = mix(h, p[i]);
	return h;
}

static uint64_t checksum(const void *obj, size_t n)
{
	const unsigned char *p = obj;
	uint64_t h = mix(0xCBF29CE484222325ull, n);
	if (n <= 2 * CHECKED_EDGE)
		return sum_range(h, p, 8, n);
	h = sum_range(h, p, 8, CHECKED_EDGE);
	return sum_range(h, p, n - CHECKED_EDGE, n);
}

static void fill_range(unsigned char *p, size_t from, size_t to, uint64_t *rng)
{
	size_t i = from;
	for (; i + 8 <= to; i += 8) {
		uint64_t w = sk_rand(rng);
		memcpy(p + i, &w, 8);
	}
	for (; i < to; i++)
		p[i] = (unsigned char)sk_rand(rng);
}

/* Fill with random bytes and store the checksum in the first 8. */
static void seal(const struct obj *o, uint64_t *rng)
{
	unsigned char *p = o->p;
	if (o->size <= 2 * CHECKED_EDGE) {
		fill_range(p, 8, o->size, rng);
	} else {
		fill_range(p, 8, CHECKED_EDGE, rng);
		fill_range(p, o->size - CHECKED_EDGE, o->size, rng);
	}
	uint64_t h = checksum(p, o->size);
	memcpy(p, &h, 8);
}

static bool intact(const struct obj *o)
{
	uint64_t h;
	memcpy(&h, o->p, 8);
	return h == checksum(o->p, o->size);
}

/* --- allocation under the failure policy --- */

static size_t kmalloc_size(uint64_t *rng)
{
	unsigned r = (unsigned)(sk_rand(rng) % 256);
	if (r == 0)
		return 65537 + sk_rand(rng) % (448 * 1024); /* the page path, up to 512 KiB */
	if (r < 8)
		return 8193 + sk_rand(rng) % 57344;         /* above the classes, to 64 KiB */
	return 16 + sk_rand(rng) % (r < 64 ? 8177 : 1009);
}

/* Allocate o->kind; true if it may fail under the policy and did. */
static bool obj_alloc(struct churn *s, struct obj *o, enum kind kind, uint64_t *rng)
{
	unsigned pick = (unsigned)(sk_rand(rng) % 8);
	bool may_fail = false;
	o->kind = kind;
	o->p = NULL;
	switch (kind) {
	case K_KMALLOC: {
		o->size = kmalloc_size(rng);
		gfp_t g = GFP_KERNEL;
		if (pick < 2) {
			g = GFP_NOWAIT;
			may_fail = true;
		} else if (pick == 2 && o->size <= 8192) {
			g = GFP_KERNEL | __GFP_NOFAIL;
		} else if (o->size > COSTLY) {
			may_fail = true;
		}
		o->p = kmalloc(o->size, g | (may_fail ? __GFP_NOWARN : 0));
		break;
	}
	case K_CACHE_SMALL:
	case K_CACHE_LINE: {
		struct kmem_cache *c = kind == K_CACHE_SMALL ? s->small : s->line;
		o->size = kind == K_CACHE_SMALL ? SMALL_SIZE : LINE_SIZE;
		may_fail = pick < 2;
		o->p = kmem_cache_alloc(c, may_fail ? GFP_NOWAIT : GFP_KERNEL);
		break;
	}
	case K_UMA:
		o->size = ZONE_SIZE;
		may_fail = pick < 2;
		o->p = uma_zalloc(s->zone, may_fail ? M_NOWAIT : M_WAITOK);
		break;
	default:
		o->size = 16 + sk_rand(rng) % (sk_rand(rng) % 32 ? 4096 : 131072);
		may_fail = pick < 2;
		o->p = bsd_malloc(o->size, M_CHURN, may_fail ? M_NOWAIT : M_WAITOK);
		break;
	}
	if (!o->p) {
		if (may_fail && s->faults)
			atomic_fetch_add(&s->c.may_fail_failed, 1);
		else
			atomic_fetch_add(&s->c.must_not_fail_failed, 1);
		return false;
	}
	atomic_fetch_add(&s->c.allocs, 1);
	seal(o, rng);
	return true;
}

static void obj_free(struct churn *s, struct obj *o)
{
	if (!intact(o))
		atomic_fetch_add(&s->c.corrupt, 1);
	switch (o->kind) {
	case K_KMALLOC: kfree(o->p); break;
	case K_CACHE_SMALL: kmem_cache_free(s->small, o->p); break;
	case K_CACHE_LINE: kmem_cache_free(s->line, o->p); break;
	case K_UMA: uma_zfree(s->zone, o->p); break;
	default: bsd_free(o->p, M_CHURN); break;
	}
	o->p = NULL;
}

/* krealloc keeps the checksummed prefix; the object is resealed after. */
static void realloc_round(struct churn *s, struct obj *o, uint64_t *rng)
{
	if (!intact(o))
		atomic_fetch_add(&s->c.corrupt, 1);
	size_t n = kmalloc_size(rng);
	bool may_fail = n > COSTLY;
	void *q = krealloc(o->p, n, GFP_KERNEL | (may_fail ? __GFP_NOWARN : 0));
	if (!q) {
		/* a failed krealloc leaves the block as it was */
		atomic_fetch_add(may_fail && s->faults ? &s->c.may_fail_failed
						       : &s->c.must_not_fail_failed, 1);
		if (!intact(o))
			atomic_fetch_add(&s->c.corrupt, 1);
		return;
	}
	o->p = q;
	o->size = n;
	seal(o, rng);
}

static void bulk_round(struct churn *s, uint64_t *rng)
{
	enum { MAXB = 32 };
	struct obj b[MAXB];
	void *p[MAXB];
	size_t n = 1 + sk_rand(rng) % MAXB;
	if (kmem_cache_alloc_bulk(s->line, GFP_KERNEL, n, p) != (int)n) {
		/* bulk gives all or nothing; under faults it may give nothing */
		atomic_fetch_add(s->faults ? &s->c.bulk_failed : &s->c.must_not_fail_failed, 1);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		b[i] = (struct obj){ p[i], LINE_SIZE, K_CACHE_LINE };
		seal(&b[i], rng);
	}
	for (size_t i = 0; i < n; i++)
		if (!intact(&b[i]))
			atomic_fetch_add(&s->c.corrupt, 1);
	kmem_cache_free_bulk(s->line, n, p);
}

/* --- workers: each does `ops` operations and leaves --- */

#define LOCAL 48

struct worker {
	struct churn *s;
	pthread_t thread;
	unsigned long ops;
	uint64_t seed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct churn *s = w->s;
	uint64_t rng = w->seed;
	struct obj local[LOCAL];
	memset(local, 0, sizeof(local));
	for (unsigned long op = 0; op < w->ops; op++) {
		unsigned r = (unsigned)(sk_rand(&rng) % 100);
		struct obj *o = &local[sk_rand(&rng) % LOCAL];
		if (r < 55) {
			if (!o->p)
				obj_alloc(s, o, (enum kind)(sk_rand(&rng) % K_NKINDS), &rng);
			else if (sk_rand(&rng) % 2 && sk_exchange_put(&s->xchg, o))
				o->p = NULL; /* another thread frees it */
			else
				obj_free(s, o);
		} else if (r < 72) {
			struct obj t;
			if (sk_exchange_take(&s->xchg, &t, &rng))
				obj_free(s, &t);
		} else if (r < 78) {
			if (o->p && o->kind == K_KMALLOC)
				realloc_round(s, o, &rng);
		} else if (r < 84) {
			bulk_round(s, &rng);
		} else {
			/* a burst of one kind: fills slabs, empties them */
			struct obj burst[12];
			enum kind k = (enum kind)(sk_rand(&rng) % K_NKINDS);
			int n = 0;
			for (int i = 0; i < 12; i++)
				if (obj_alloc(s, &burst[n], k, &rng))
					n++;
			while (n--)
				obj_free(s, &burst[n]);
		}
	}
	/* Leaving: half of what is left outlives this thread. */
	for (unsigned i = 0; i < LOCAL; i++)
		if (local[i].p && !(i % 2 && sk_exchange_put(&s->xchg, &local[i])))
			obj_free(s, &local[i]);
	atomic_fetch_add(&s->c.ops, (long)w->ops);
	return NULL;
}

/* Run `jobs` workers of `ops_each` operations, at most `live` at once:
 * the oldest is joined while the others run, and a new one takes its
 * place, so threads come and go all through the run. */
static void run_jobs(struct churn *s, unsigned jobs, unsigned live, unsigned long ops_each)
{
	struct worker *w = calloc(jobs, sizeof(*w));
	assert_non_null(w);
	unsigned started = 0, joined = 0;
	while (joined < jobs) {
		while (started < jobs && started - joined < live) {
			w[started] = (struct worker){ .s = s, .ops = ops_each,
						      .seed = 0x5EED0000ull + started * 7919 };
			assert_int_equal(pthread_create(&w[started].thread, NULL, worker_main,
							&w[started]), 0);
			started++;
		}
		pthread_join(w[joined++].thread, NULL);
	}
	free(w);
}

/* --- the figures --- */

static int sum_kmalloc(const struct slabkit_cache_info *info, void *arg)
{
	if (info->front_end && !strcmp(info->front_end, "kmalloc"))
		*(uint64_t *)arg += info->in_use;
	return 0;
}

static uint64_t kmalloc_in_use(void)
{
	uint64_t n = 0;
	slabkit_foreach_cache(sum_kmalloc, &n);
	return n;
}

enum fault_mode { NO_FAULTS, FAIL_EVERY, FAIL_RANDOM };

static void run_churn(enum fault_mode mode)
{
	struct churn *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	sk_exchange_init(&s->xchg, s->xchg_slots, EXCHANGE_CAP, sizeof(s->xchg_slots[0]));
	sk_expect_messages(); /* failure warnings under faults */
	slabkit_shrink_all();
	struct slabkit_stats st0;
	slabkit_stats(&st0);
	uint64_t kmalloc0 = kmalloc_in_use();
	struct malloc_type_stats_sum t0;
	slabkit_malloc_type_stats(M_CHURN, &t0);

	s->small = kmem_cache_create("skt_churn_small", SMALL_SIZE, 0, 0, NULL);
	s->line = kmem_cache_create("skt_churn_line", LINE_SIZE, 0, SLAB_HWCACHE_ALIGN, NULL);
	s->zone = uma_zcreate("skt_churn_zone", ZONE_SIZE, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(s->small);
	assert_non_null(s->line);
	assert_non_null(s->zone);

	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned live = cpus > 0 && cpus < 4 ? 3 * (unsigned)cpus : 12;
	if (live < 6)
		live = 6;
	unsigned long total = sk_scaled(120000), ops_each = 2000;
	unsigned jobs = (unsigned)((total + ops_each - 1) / ops_each);
	if (jobs < 2 * live)
		jobs = 2 * live; /* every slot is refilled at least once */

	s->faults = mode != NO_FAULTS;
	if (mode == FAIL_EVERY)
		sk_pages_set_fail_every(5);
	else if (mode == FAIL_RANDOM)
		sk_pages_set_fail_random(20, 0xC0FFEE);
	uint64_t start = sk_now_ns();
	run_jobs(s, jobs, live, ops_each);
	sk_pages_set_fail_every(0);
	sk_pages_set_fail_random(0, 0);
	uint64_t ms = (sk_now_ns() - start) / 1000000;

	struct slabkit_stats st1;
	slabkit_stats(&st1);
	print_message("  %u threads (%u at once) x %lu ops, %ld objects, %llu page failures "
		      "injected, %ld allowed NULLs, %ld bulk NULLs, %llu ms\n",
		      jobs, live, ops_each, atomic_load(&s->c.allocs),
		      (unsigned long long)(st1.page_alloc_failures - st0.page_alloc_failures),
		      atomic_load(&s->c.may_fail_failed), atomic_load(&s->c.bulk_failed),
		      (unsigned long long)ms);

	struct obj o;
	uint64_t rng = 1;
	while (sk_exchange_take(&s->xchg, &o, &rng))
		obj_free(s, &o);

	assert_int_equal(atomic_load(&s->c.ops), (long)jobs * (long)ops_each);
	assert_int_equal(atomic_load(&s->c.corrupt), 0);
	assert_int_equal(atomic_load(&s->c.must_not_fail_failed), 0);
	if (mode != NO_FAULTS)
		assert_true(st1.page_alloc_failures > st0.page_alloc_failures);

	/* Everything freed: the figures reconcile. */
	assert_int_equal(sk_info("skt_churn_small").in_use, 0);
	assert_int_equal(sk_info("skt_churn_line").in_use, 0);
	assert_int_equal(uma_zone_get_cur(s->zone), 0);
	assert_int_equal(kmalloc_in_use(), kmalloc0);
	struct malloc_type_stats_sum t1;
	slabkit_malloc_type_stats(M_CHURN, &t1);
	assert_int_equal(t1.allocs - t0.allocs, t1.frees - t0.frees);
	assert_int_equal(t1.memalloced - t0.memalloced, t1.memfreed - t0.memfreed);
	struct slabkit_stats st2;
	slabkit_stats(&st2);
	assert_int_equal(st2.large_allocs, st0.large_allocs);
	assert_int_equal(st2.large_pages, st0.large_pages);

	unsigned remaining = sk_captured("remaining", NULL, NULL) + sk_captured("leak", NULL, NULL);
	kmem_cache_destroy(s->small);
	kmem_cache_destroy(s->line);
	uma_zdestroy(s->zone);
	assert_int_equal(sk_captured("remaining", NULL, NULL) + sk_captured("leak", NULL, NULL),
			 remaining);
	/* Nothing leaked below the caches either: once the caches are gone and
	 * every cache is drained, no slab is left anywhere, and the provider
	 * holds no more pages than before but what slabkit's metadata pools
	 * grew to (per-thread and per-CPU records of 120 threads: a few pages,
	 * kept for reuse; a leak per object would be thousands). */
	slabkit_shrink_all();
	struct slabkit_stats st3;
	slabkit_stats(&st3);
	assert_int_equal(st3.slabs, st0.slabs);
	assert_int_equal(st3.slab_pages, st0.slab_pages);
	assert_int_equal(st3.page_blocks, st0.page_blocks);
	if (st3.pages_in_use > st0.pages_in_use + 64)
		fail_msg("pages in use: %llu before the run, %llu after it and cleanup",
			 (unsigned long long)st0.pages_in_use, (unsigned long long)st3.pages_in_use);
	assert_int_equal(sk_panic_count(), 0);
	sk_exchange_destroy(&s->xchg);
	free(s);
}

static void test_churn_checksums(void **state)
{
	(void)state;
	run_churn(NO_FAULTS);
}

static void test_churn_fail_every_5th_page(void **state)
{
	(void)state;
	run_churn(FAIL_EVERY);
}

static void test_churn_fail_random_20_percent(void **state)
{
	(void)state;
	run_churn(FAIL_RANDOM);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		SK_TEST(test_churn_checksums),
		SK_TEST(test_churn_fail_every_5th_page),
		SK_TEST(test_churn_fail_random_20_percent),
	};
	return cmocka_run_group_tests_name("churn", tests, sk_group_setup, sk_group_teardown);
}
