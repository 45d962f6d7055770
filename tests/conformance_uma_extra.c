/*
 * Conformance, the rest of uma(9): per-CPU zones and a counter(9) built on
 * them, zones over the caller's page source, reserves and M_USE_RESERVE,
 * uma_prealloc, limit warnings and maxaction, uma_zone_exhausted, the
 * allocation counters, maxcache, secondary zones keeping their items
 * initialised, cache zones importing in batches, a limited zone's
 * allocations and frees taking no zone lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "conformance.h"
#include "core/sk_core.h"

/* --- per-CPU zones: counter(9) --- */

typedef uint64_t *counter_u64_t;

static uma_zone_t pcpu_zone_8;

static counter_u64_t counter_u64_alloc(int flags)
{
	return uma_zalloc_pcpu(pcpu_zone_8, flags | M_ZERO);
}

static void counter_u64_free(counter_u64_t c)
{
	uma_zfree_pcpu(pcpu_zone_8, c);
}

/* User space: the thread may migrate after zpcpu_get, so the add is atomic
 * (on a line no other CPU normally writes). */
static void counter_u64_add(counter_u64_t c, int64_t v)
{
	__atomic_fetch_add(zpcpu_get(c), (uint64_t)v, __ATOMIC_RELAXED);
}

static uint64_t counter_u64_fetch(counter_u64_t c)
{
	uint64_t sum = 0;
	for (unsigned cpu = 0; cpu < slabkit_cpu_ids(); cpu++)
		sum += __atomic_load_n(zpcpu_get_cpu(c, cpu), __ATOMIC_RELAXED);
	return sum;
}

struct counter_ctx {
	counter_u64_t c[4];
	unsigned rounds;
};

static void *counter_main(void *arg)
{
	struct counter_ctx *ctx = arg;
	for (unsigned i = 0; i < ctx->rounds; i++)
		for (int k = 0; k < 4; k++)
			counter_u64_add(ctx->c[k], k + 1);
	return NULL;
}

static void test_pcpu_counter(void **state)
{
	(void)state;
	pcpu_zone_8 = uma_zcreate("pcpu-8", sizeof(uint64_t), NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, UMA_ZONE_PCPU);
	assert_non_null(pcpu_zone_8);
	assert_true(slabkit_cpu_ids() >= 1);

	/* Many counters: distinct, every CPU's copy zeroed and writable. */
	counter_u64_t many[600];
	for (int i = 0; i < 600; i++) {
		many[i] = counter_u64_alloc(M_WAITOK);
		assert_non_null(many[i]);
		for (unsigned cpu = 0; cpu < slabkit_cpu_ids(); cpu++) {
			uint64_t *copy = zpcpu_get_cpu(many[i], cpu);
			assert_int_equal(*copy, 0);
			*copy = 0x1000u * cpu + (unsigned)i;
		}
	}
	for (int i = 0; i < 600; i++)
		for (unsigned cpu = 0; cpu < slabkit_cpu_ids(); cpu++)
			assert_int_equal(*zpcpu_get_cpu(many[i], cpu), 0x1000u * cpu + (unsigned)i);
	assert_int_equal(uma_zone_get_cur(pcpu_zone_8), 600);
	for (int i = 0; i < 600; i++)
		counter_u64_free(many[i]);
	assert_int_equal(uma_zone_get_cur(pcpu_zone_8), 0);

	/* The calling CPU's copy is where zpcpu_get says. */
	counter_u64_t one = counter_u64_alloc(M_WAITOK);
	counter_u64_add(one, 5);
	assert_int_equal(counter_u64_fetch(one), 5);
	counter_u64_free(one);

	/* Threads adding to four counters: the sums are exact. */
	struct counter_ctx ctx = { .rounds = (unsigned)sk_scaled(20000) };
	for (int k = 0; k < 4; k++)
		ctx.c[k] = counter_u64_alloc(M_WAITOK);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, counter_main, &ctx), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int k = 0; k < 4; k++) {
		assert_int_equal(counter_u64_fetch(ctx.c[k]), (uint64_t)4 * ctx.rounds * (k + 1));
		counter_u64_free(ctx.c[k]);
	}

	/* Misuse: the wrong calls, foreign pointers; too large items refused. */
	sk_expect_panics();
	assert_null(uma_zalloc(pcpu_zone_8, M_WAITOK));
	assert_true(sk_captured("uma_zalloc", "UMA_ZONE_PCPU", "uma_zalloc_pcpu") >= 1);
	counter_u64_t c = counter_u64_alloc(M_NOWAIT);
	uma_zfree(pcpu_zone_8, c);
	long local;
	uma_zfree_pcpu(pcpu_zone_8, &local);
	uma_zfree_pcpu(pcpu_zone_8, (char *)c + 4);
	kfree(c);
	assert_int_equal(sk_panic_count(), 5);
	assert_int_equal(uma_zone_get_cur(pcpu_zone_8), 1);
	counter_u64_free(c);
	assert_null(uma_zcreate("pcpu-big", 8192, NULL, NULL, NULL, NULL, 0, UMA_ZONE_PCPU));
	uma_zdestroy(pcpu_zone_8);
}

/* --- a zone over the caller's page source --- */

static int pages_out, allocf_calls, freef_calls;
static unsigned char arena[64][4096] __attribute__((aligned(4096)));
static bool arena_used[64];

static void *test_allocf(uma_zone_t zone, size_t size, int domain, uint8_t *pflag, int wait)
{
	(void)zone;
	(void)domain;
	(void)wait;
	allocf_calls++;
	if (size != 4096)
		return NULL;
	for (int i = 0; i < 64; i++)
		if (!arena_used[i]) {
			arena_used[i] = true;
			pages_out++;
			*pflag = (uint8_t)(i + 1);
			return arena[i];
		}
	return NULL;
}

static void test_freef(void *mem, size_t size, uint8_t pflag)
{
	int i = (int)(((unsigned char (*)[4096])mem) - arena);
	assert_int_equal(size, 4096);
	assert_int_equal(pflag, i + 1);
	arena_used[i] = false;
	pages_out--;
	freef_calls++;
}

static int item_inits;
static int count_init(void *mem, int size, int flags)
{
	(void)mem;
	(void)size;
	(void)flags;
	item_inits++;
	return 0;
}

/* A zone of 100-byte items over test_allocf/test_freef's pages. */
static uma_zone_t page_source_zone(const char *name, uma_init init, uma_fini fini)
{
	uma_zone_t z = uma_zcreate(name, 100, NULL, NULL, init, fini, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	uma_zone_set_allocf(z, test_allocf);
	uma_zone_set_freef(z, test_freef);
	return z;
}

static void test_zone_page_source(void **state)
{
	(void)state;
	uma_zone_t z = page_source_zone("skt_allocf", count_init, NULL);
	void *items[200];
	for (int i = 0; i < 200; i++) {
		items[i] = uma_zalloc(z, M_WAITOK);
		assert_non_null(items[i]);
		uintptr_t a = (uintptr_t)items[i];
		assert_true(a >= (uintptr_t)arena && a < (uintptr_t)arena + sizeof(arena));
		assert_int_equal(a % 8, 0);
		memset(items[i], i, 100);
	}
	int slabs = pages_out;
	assert_int_equal(slabs, (200 + 38) / 39); /* 39 items of 104 bytes (100, 8-aligned) in a page */
	assert_int_equal(item_inits, slabs * 39);   /* init once per item per slab */
	for (int i = 0; i < 200; i++)
		assert_true(((unsigned char *)items[i])[0] == (unsigned char)i &&
			    ((unsigned char *)items[i])[99] == (unsigned char)i);

	sk_expect_panics();
	long local;
	uma_zfree(z, &local);
	uma_zfree(z, (char *)items[3] + 1);
	assert_int_equal(sk_panic_count(), 2);

	for (int i = 0; i < 200; i++)
		uma_zfree(z, items[i]);
	assert_int_equal(pages_out, slabs); /* empty slabs stay until reclaim */
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN);
	assert_int_equal(pages_out, 0);
	assert_int_equal(freef_calls, slabs);
	assert_int_equal(uma_zone_get_allocs(z), 200);
	assert_int_equal(uma_zone_get_frees(z), 200);
	uma_zdestroy(z);

	/* Too late once the zone has allocated. */
	uma_zone_t late = uma_zcreate("skt_allocf_late", 64, NULL, NULL, NULL, NULL, 0, 0);
	void *it = uma_zalloc(late, M_WAITOK);
	sk_expect_messages();
	uma_zone_set_allocf(late, test_allocf);
	assert_true(sk_captured("uma_zone_set_allocf", "already allocated", NULL) >= 1);
	uma_zfree(late, it);
	uma_zdestroy(late);
}

/* A failing init on a zone over the caller's pages: the items of the slab
 * already initialised are finalised (last first), the page goes back to
 * freef, and the next slab builds; every init has its fini by destroy. */
static int inits_left, item_finis;
static void *last_fini;
static int init_until(void *mem, int size, int flags)
{
	(void)mem;
	(void)size;
	(void)flags;
	if (inits_left == 0)
		return ENOMEM;
	inits_left--;
	item_inits++;
	return 0;
}

static void count_fini(void *mem, int size)
{
	(void)size;
	item_finis++;
	last_fini = mem;
}

static void test_zone_page_source_init_fails(void **state)
{
	(void)state;
	uma_zone_t z = page_source_zone("skt_allocf_init", init_until, count_fini);
	int out0 = pages_out, frees0 = freef_calls;
	item_inits = item_finis = 0;
	inits_left = 5; /* the sixth item of the slab fails */
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(item_inits, 5);
	assert_int_equal(item_finis, 5);
	assert_ptr_equal(last_fini, arena[0]); /* unwound last first: item 0 last */
	assert_int_equal(pages_out, out0);
	assert_int_equal(freef_calls, frees0 + 1);

	inits_left = -1; /* never fails again */
	void *it = uma_zalloc(z, M_NOWAIT);
	assert_non_null(it);
	uma_zfree(z, it);
	uma_zdestroy(z);
	assert_int_equal(item_finis, item_inits);
	assert_int_equal(pages_out, out0);
}

/* --- limits: warning, maxaction, exhausted --- */

static int maxaction_calls;
static uma_zone_t maxaction_zone;
static void note_full(uma_zone_t z, int pending)
{
	(void)pending;
	maxaction_zone = z;
	maxaction_calls++;
}

static void test_limit_reactions(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_warn", 64, NULL, NULL, NULL, NULL, 0, 0);
	assert_int_equal(uma_zone_set_max(z, 3), 3);
	uma_zone_set_warning(z, "skt_warn limit reached");
	uma_zone_set_maxaction(z, note_full);
	void *a[3];
	for (int i = 0; i < 3; i++)
		a[i] = uma_zalloc(z, M_NOWAIT);
	assert_int_equal(maxaction_calls, 0);
	assert_true(uma_zone_exhausted(z));
	sk_expect_messages();
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(sk_captured("skt_warn", "skt_warn limit reached", NULL), 1); /* once per 5 minutes */
	assert_int_equal(maxaction_calls, 2);
	assert_ptr_equal(maxaction_zone, z);
	uma_zfree(z, a[0]);
	assert_false(uma_zone_exhausted(z));
	a[0] = uma_zalloc(z, M_NOWAIT);
	assert_non_null(a[0]);
	for (int i = 0; i < 3; i++)
		uma_zfree(z, a[i]);
	assert_int_equal(uma_zone_get_allocs(z), 4);
	assert_int_equal(uma_zone_get_frees(z), 4);
	uma_zdestroy(z);

	/* reserve_kva: FreeBSD caps the zone at nitems. */
	uma_zone_t k = uma_zcreate("skt_kva", 128, NULL, NULL, NULL, NULL, 0, 0);
	assert_int_equal(uma_zone_reserve_kva(k, 5), 1);
	assert_int_equal(uma_zone_get_max(k), 5);
	uma_zdestroy(k);
}

/* --- reserve and prealloc --- */

static void test_reserve_prealloc(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_reserve", 256, NULL, NULL, NULL, NULL, 0, 0);
	uma_zone_reserve(z, 4);
	uma_prealloc(z, 20);
	struct slabkit_cache_info info = sk_info("skt_reserve");
	assert_true(info.slabs >= 1);
	assert_int_equal(info.in_use, 4); /* the reserve holds 4 items out of the keg */
	uint64_t allocs_before = uma_zone_get_allocs(z);

	/* Ordinary allocations never touch the reserve; M_USE_RESERVE uses it
	 * only when the keg cannot serve. */
	void *p = uma_zalloc(z, M_NOWAIT | M_USE_RESERVE);
	assert_non_null(p);
	assert_int_equal(sk_info("skt_reserve").in_use, 5);
	uma_zfree(z, p);
	assert_int_equal(uma_zone_get_allocs(z), allocs_before + 1);

	/* (The reserve under exhaustion: test_cache_zone_batches.) */
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("skt_reserve").in_use, 4); /* the reserve survives reclaim */
	uma_zone_reserve(z, 0);
	assert_int_equal(sk_info("skt_reserve").in_use, 0);
	uma_zdestroy(z);
}

static int import_calls, import_items, release_items, cz_inits, cz_finis;
static bool import_fails;
static int test_import(void *arg, void **store, int count, int domain, int flags)
{
	(void)arg;
	(void)domain;
	(void)flags;
	import_calls++;
	if (import_fails)
		return 0;
	for (int i = 0; i < count; i++)
		store[i] = kmalloc(96, GFP_KERNEL);
	import_items += count;
	return count;
}
static void test_release(void *arg, void **store, int count)
{
	(void)arg;
	for (int i = 0; i < count; i++)
		kfree(store[i]);
	release_items += count;
}
static int cz_init(void *mem, int size, int flags)
{
	(void)flags;
	memset(mem, 0x3c, (size_t)size);
	cz_inits++;
	return 0;
}
static void cz_fini(void *mem, int size)
{
	(void)mem;
	(void)size;
	cz_finis++;
}

static void test_cache_zone_batches(void **state)
{
	(void)state;
	import_calls = import_items = release_items = cz_inits = cz_finis = 0;
	import_fails = false;
	uma_zone_t z = uma_zcache_create("skt_czone", 96, NULL, NULL, cz_init, cz_fini, test_import,
					 test_release, NULL, 0);
	assert_non_null(z);
	void *p[100];
	for (int i = 0; i < 100; i++) {
		p[i] = uma_zalloc(z, M_WAITOK);
		assert_non_null(p[i]);
		assert_int_equal(((unsigned char *)p[i])[95], 0x3c);
	}
	/* In batches, not one call per item. */
	assert_true(import_calls <= 100 / 8);
	assert_true(import_items >= 100);
	for (int i = 0; i < 100; i++)
		uma_zfree(z, p[i]);
	/* Freed items stay initialised in the zone: no zinit on reuse. */
	int inits = cz_inits;
	for (int i = 0; i < 20; i++)
		p[i] = uma_zalloc(z, M_WAITOK);
	assert_int_equal(cz_inits, inits);
	for (int i = 0; i < 20; i++)
		uma_zfree(z, p[i]);

	/* The reserve: kept for M_USE_RESERVE when import fails. */
	uma_zone_reserve(z, 3);
	uma_prealloc(z, 3);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN);
	import_fails = true;
	assert_null(uma_zalloc(z, M_NOWAIT));
	void *r[3];
	for (int i = 0; i < 3; i++)
		assert_non_null(r[i] = uma_zalloc(z, M_NOWAIT | M_USE_RESERVE));
	assert_null(uma_zalloc(z, M_NOWAIT | M_USE_RESERVE));
	for (int i = 0; i < 3; i++)
		uma_zfree(z, r[i]);
	import_fails = false;

	uma_zdestroy(z);
	assert_int_equal(import_items, release_items); /* everything went back */
	assert_int_equal(cz_inits, cz_finis);
}

static int sec_inits, sec_finis;
static int sec_init(void *mem, int size, int flags)
{
	(void)mem;
	(void)size;
	(void)flags;
	sec_inits++;
	return 0;
}
static void sec_fini(void *mem, int size)
{
	(void)mem;
	(void)size;
	sec_finis++;
}

static void test_secondary_keeps_items(void **state)
{
	(void)state;
	sec_inits = sec_finis = 0;
	uma_zone_t prim = uma_zcreate("skt_prim", 128, NULL, NULL, NULL, NULL, 0, 0);
	uma_zone_t sec = uma_zsecond_create("skt_sec", NULL, NULL, sec_init, sec_fini, prim);
	void *p[10];
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 10; i++)
			p[i] = uma_zalloc(sec, M_WAITOK);
		for (int i = 0; i < 10; i++)
			uma_zfree(sec, p[i]);
	}
	/* zinit once per item entering the zone, not 500 times. */
	assert_int_equal(sec_inits, 10);
	assert_int_equal(sec_finis, 0);
	assert_int_equal(uma_zone_get_allocs(sec), 500);
	uma_reclaim(UMA_RECLAIM_DRAIN);
	assert_int_equal(sec_finis, 10);
	uma_zdestroy(sec);
	uma_zdestroy(prim);
}

static void test_maxcache(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_maxcache", 64, NULL, NULL, NULL, NULL, 0, 0);
	uma_zone_set_maxcache(z, 8);
	void *p[400];
	for (int i = 0; i < 400; i++)
		p[i] = uma_zalloc(z, M_WAITOK);
	for (int i = 0; i < 400; i++)
		uma_zfree(z, p[i]);
	struct slabkit_cache_info info = sk_info("skt_maxcache");
	if (info.cached_free > 8 + 4)
		fail_msg("maxcache 8: %llu items cached", (unsigned long long)info.cached_free);
	uma_zdestroy(z);
}

/* --- a limit takes no lock below it --- */

struct unlocked_calls {
	uma_zone_t z;
	void *held[3];        /* the zone's limit is 4: three out before the calls */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	bool refused_at_limit, got_below_limit, exhausted_seen;
	int cur_seen;
};

static void *limited_calls(void *arg)
{
	struct unlocked_calls *u = arg;
	void *fourth = uma_zalloc(u->z, M_NOWAIT);              /* below the limit */
	void *fifth = uma_zalloc(u->z, M_NOWAIT);               /* at it: refused */
	u->exhausted_seen = uma_zone_exhausted(u->z);
	u->cur_seen = uma_zone_get_cur(u->z);
	uma_zfree(u->z, u->held[0]);                            /* room again */
	u->held[0] = uma_zalloc(u->z, M_NOWAIT | M_ZERO);
	u->got_below_limit = fourth && u->held[0];
	u->refused_at_limit = !fifth;
	uma_zfree(u->z, fourth);
	uma_zfree(u->z, fifth);
	pthread_mutex_lock(&u->mu);
	u->done = true;
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* A zone with a limit: uma_zalloc(M_NOWAIT) below the limit and at it,
 * uma_zfree, uma_zone_get_cur and uma_zone_exhausted complete while every
 * zone lock is held (as fork's prepare hook holds them).  A limit that took
 * the zone's mutex on each call would block them: the calls run in another
 * thread, given 10 s. */
static void test_limit_takes_no_lock(void **state)
{
	(void)state;
	struct unlocked_calls u = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	u.z = uma_zcreate("skt_limit_nolock", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(u.z);
	assert_int_equal(uma_zone_set_max(u.z, 4), 4);
	for (int i = 0; i < 3; i++)
		assert_non_null(u.held[i] = uma_zalloc(u.z, M_WAITOK));

	sk_uma_fork_lock(true, false);
	sk_uma_fork_lock(true, true);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, limited_calls, &u), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&u.mu);
	while (!u.done && pthread_cond_timedwait(&u.cv, &u.mu, &until) == 0)
		;
	bool done_while_locked = u.done;
	pthread_mutex_unlock(&u.mu);
	sk_uma_fork_lock(false, true);
	sk_uma_fork_lock(false, false);
	pthread_join(t, NULL);

	if (!done_while_locked)
		fail_msg("allocations and frees of a limited zone waited for the zone lock");
	assert_true(u.got_below_limit);
	assert_true(u.refused_at_limit);
	assert_true(u.exhausted_seen);
	assert_int_equal(u.cur_seen, 4);
	assert_int_equal(uma_zone_get_cur(u.z), 3);
	for (int i = 0; i < 3; i++)
		uma_zfree(u.z, u.held[i]);
	assert_int_equal(uma_zone_get_cur(u.z), 0);
	uma_zdestroy(u.z);
}

static const struct CMUnitTest uma_extra_tests[] = {
	SK_TEST(test_pcpu_counter),     SK_TEST(test_zone_page_source), SK_TEST(test_zone_page_source_init_fails), SK_TEST(test_limit_reactions),
	SK_TEST(test_reserve_prealloc), SK_TEST(test_cache_zone_batches), SK_TEST(test_secondary_keeps_items),
	SK_TEST(test_maxcache),         SK_TEST(test_limit_takes_no_lock),
};

const struct conformance_group conformance_uma_extra = {
	"uma_extra", uma_extra_tests, sizeof(uma_extra_tests) / sizeof(uma_extra_tests[0])
};
