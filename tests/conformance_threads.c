/*
 * Conformance, threads: objects allocated on one thread and freed on
 * another, for every front end, malloc(9) statistics under signals, and a
 * million live objects.
 * See conformance.c.
 */
#define _GNU_SOURCE /* pthread_kill, sigaction */
#include <signal.h>

#include "conformance.h"

/* ======================================================================
 * Threads
 * ====================================================================== */

enum xkind { X_KMALLOC, X_CACHE, X_UMA, X_BSD };

struct xfer {
	void *p;
	size_t size;
	uint64_t tag;
};

/* A bounded multi-producer multi-consumer queue under one mutex.
 * Synchronization: every field under lock. */
struct xqueue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct xfer buf[512];
	unsigned head, count;
	int producers_left;
};

static void xq_push(struct xqueue *q, struct xfer x)
{
	pthread_mutex_lock(&q->lock);
	while (q->count == 512)
		pthread_cond_wait(&q->nonfull, &q->lock);
	q->buf[(q->head + q->count) % 512] = x;
	q->count++;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

static bool xq_pop(struct xqueue *q, struct xfer *x)
{
	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && q->producers_left > 0)
		pthread_cond_wait(&q->nonempty, &q->lock);
	bool got = q->count > 0;
	if (got) {
		*x = q->buf[q->head];
		q->head = (q->head + 1) % 512;
		q->count--;
		pthread_cond_signal(&q->nonfull);
	}
	pthread_mutex_unlock(&q->lock);
	return got;
}

static void xq_producer_done(struct xqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->producers_left--;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

struct xctx {
	struct xqueue q;
	enum xkind kind;
	struct kmem_cache *cache;
	uma_zone_t zone;
	unsigned per_producer;
	atomic_long alloc_failures, corruptions, transferred;
};

struct xworker {
	struct xctx *x;
	unsigned id;
};

static void *x_producer(void *arg)
{
	struct xworker *w = arg;
	struct xctx *x = w->x;
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (w->id + 1);
	for (unsigned i = 0; i < x->per_producer; i++) {
		struct xfer t = { .tag = (uint64_t)w->id << 40 | i };
		switch (x->kind) {
		case X_KMALLOC:
			t.size = sk_rand(&rng) % 64 == 0 ? 8193 + sk_rand(&rng) % 60000
							 : 1 + sk_rand(&rng) % 2048;
			t.p = kmalloc(t.size, GFP_KERNEL);
			break;
		case X_CACHE:
			t.size = 64;
			t.p = kmem_cache_alloc(x->cache, GFP_KERNEL);
			break;
		case X_UMA:
			t.size = 96;
			t.p = uma_zalloc(x->zone, M_WAITOK);
			break;
		case X_BSD:
			t.size = 1 + sk_rand(&rng) % 3000;
			t.p = bsd_malloc(t.size, M_TEST, M_WAITOK);
			break;
		}
		if (!t.p) {
			atomic_fetch_add(&x->alloc_failures, 1);
			continue;
		}
		sk_fill(t.p, t.size, t.tag);
		xq_push(&x->q, t);
	}
	xq_producer_done(&x->q);
	return NULL;
}

static void *x_consumer(void *arg)
{
	struct xworker *w = arg;
	struct xctx *x = w->x;
	struct xfer t;
	while (xq_pop(&x->q, &t)) {
		if (sk_check(t.p, t.size, t.tag) != SIZE_MAX)
			atomic_fetch_add(&x->corruptions, 1);
		switch (x->kind) {
		case X_KMALLOC: kfree(t.p); break;
		case X_CACHE: kmem_cache_free(x->cache, t.p); break;
		case X_UMA: uma_zfree(x->zone, t.p); break;
		case X_BSD: bsd_free(t.p, M_TEST); break;
		}
		atomic_fetch_add(&x->transferred, 1);
	}
	return NULL;
}

/* Two producers allocate, two consumers free (4 threads); every object is
 * checked for its pattern on the other side. */
static void run_cross_thread(enum xkind kind, struct kmem_cache *c, uma_zone_t z)
{
	enum { PRODUCERS = 2, CONSUMERS = 2 };
	struct xctx *x = calloc(1, sizeof(*x));
	assert_non_null(x);
	pthread_mutex_init(&x->q.lock, NULL);
	pthread_cond_init(&x->q.nonempty, NULL);
	pthread_cond_init(&x->q.nonfull, NULL);
	x->q.producers_left = PRODUCERS;
	x->kind = kind;
	x->cache = c;
	x->zone = z;
	x->per_producer = 30000;
	pthread_t t[PRODUCERS + CONSUMERS];
	struct xworker w[PRODUCERS + CONSUMERS];
	for (unsigned i = 0; i < PRODUCERS + CONSUMERS; i++) {
		w[i] = (struct xworker){ x, i };
		assert_int_equal(pthread_create(&t[i], NULL, i < PRODUCERS ? x_producer : x_consumer,
						&w[i]),
				 0);
	}
	for (unsigned i = 0; i < PRODUCERS + CONSUMERS; i++)
		pthread_join(t[i], NULL);
	long failures = atomic_load(&x->alloc_failures), bad = atomic_load(&x->corruptions);
	long moved = atomic_load(&x->transferred);
	pthread_cond_destroy(&x->q.nonempty);
	pthread_cond_destroy(&x->q.nonfull);
	pthread_mutex_destroy(&x->q.lock);
	free(x);
	assert_int_equal(failures, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(moved, PRODUCERS * 30000);
}

static void test_threads_cross_free_kmalloc(void **state)
{
	(void)state;
	struct slabkit_stats s0 = stats_now();
	run_cross_thread(X_KMALLOC, NULL, NULL);
	assert_int_equal(stats_now().large_allocs, s0.large_allocs);
}

static void test_threads_cross_free_cache(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_xthread", 64, 0, 0, NULL);
	assert_non_null(c);
	run_cross_thread(X_CACHE, c, NULL);
	struct slabkit_cache_info info = sk_info("skt_xthread");
	assert_int_equal(info.in_use, 0);
	assert_int_equal(info.allocs, 60000);
	assert_int_equal(info.frees, 60000);
	assert_int_equal(kmem_cache_shrink(c), 0);
	kmem_cache_destroy(c);
}

static void test_threads_cross_free_uma(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_xthread_uma", 96, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	run_cross_thread(X_UMA, NULL, z);
	assert_int_equal(uma_zone_get_cur(z), 0);
	uma_zdestroy(z);
}

static void test_threads_cross_free_bsd(void **state)
{
	(void)state;
	struct malloc_type_stats_sum s0 = type_stats(M_TEST);
	run_cross_thread(X_BSD, NULL, NULL);
	struct malloc_type_stats_sum s1 = type_stats(M_TEST);
	assert_int_equal(s1.allocs - s0.allocs, 60000);
	assert_int_equal(s1.frees - s0.frees, 60000);
}

/* malloc(9)'s per-type statistics stay exact while the fast paths' restartable
 * sequences are aborted: four threads (more than this machine's CPUs, so
 * that they are also preempted and migrated) allocate and free 64-byte and
 * 200-byte blocks of one type in tight loops while a fifth sends them
 * signals until they have taken SIG_TARGET of them; each signal aborts the
 * sequence in flight, if any (the count and the pop or push share one
 * sequence: an abort after the count must not count twice, nor lose it).
 * Every figure is checked against what the workers did. */
enum { SIG_WORKERS = 4 };
static MALLOC_DEFINE(M_SIGSTATS, "sigstats", "stats under signals");
static atomic_int sig_stop;
static atomic_long sig_seen;

static void sig_count(int sig)
{
	(void)sig;
	atomic_fetch_add_explicit(&sig_seen, 1, memory_order_relaxed);
}

static void *sig_worker(void *arg)
{
	unsigned long *rounds = arg;
	void *v[16];
	while (!atomic_load_explicit(&sig_stop, memory_order_relaxed)) {
		for (int i = 0; i < 16; i++)
			if (!(v[i] = bsd_malloc(i & 1 ? 200 : 64, M_SIGSTATS, M_NOWAIT)))
				abort();
		for (int i = 15; i >= 0; i--)
			bsd_free(v[i], M_SIGSTATS);
		++*rounds;
	}
	return NULL;
}

static void test_bsd_stats_exact_under_signals(void **state)
{
	(void)state;
	struct sigaction sa = { .sa_handler = sig_count }, old;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	/* What each size takes (a class; on SLOB, the heap's block). */
	void *p64 = bsd_malloc(64, M_SIGSTATS, M_WAITOK), *p200 = bsd_malloc(200, M_SIGSTATS, M_WAITOK);
	size_t b64 = bsd_malloc_usable_size(p64), b200 = bsd_malloc_usable_size(p200);
	bsd_free(p64, M_SIGSTATS);
	bsd_free(p200, M_SIGSTATS);
	struct malloc_type_stats_sum s0 = type_stats(M_SIGSTATS);
	long target = (long)sk_scaled(5000);
	unsigned long rounds[SIG_WORKERS] = { 0 };
	pthread_t w[SIG_WORKERS];
	atomic_store(&sig_stop, 0);
	atomic_store(&sig_seen, 0);
	for (int i = 0; i < SIG_WORKERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, sig_worker, &rounds[i]), 0);
	/* Until enough signals were taken, or 2 s on a machine that
	 * delivers them slowly. */
	uint64_t t0 = sk_now_ns();
	for (int i = 0; atomic_load(&sig_seen) < target && sk_now_ns() - t0 < 2000000000ull; i++)
		pthread_kill(w[i % SIG_WORKERS], SIGUSR1);
	atomic_store(&sig_stop, 1);
	for (int i = 0; i < SIG_WORKERS; i++)
		pthread_join(w[i], NULL);
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
	struct malloc_type_stats_sum s1 = type_stats(M_SIGSTATS);
	uint64_t blocks = 0;
	for (int i = 0; i < SIG_WORKERS; i++)
		blocks += rounds[i] * 16;
	assert_int_equal(s1.allocs - s0.allocs, blocks);
	assert_int_equal(s1.frees - s0.frees, blocks);
	/* Half of them of 64 bytes, half of 200. */
	assert_int_equal(s1.memalloced - s0.memalloced, blocks / 2 * (b64 + b200));
	assert_int_equal(s1.memfreed - s0.memfreed, blocks / 2 * (b64 + b200));
	assert_true(s1.size_mask & (1ull << bsd_class_index(b64)));
	assert_true(s1.size_mask & (1ull << bsd_class_index(b200)));
	printf("  malloc(9) stats under signals: %ld signals taken, %lu blocks (%s mode)\n", atomic_load(&sig_seen),
	       (unsigned long)blocks, slabkit_percpu_mode());
	assert_true(atomic_load(&sig_seen) > 0);
}

/* 1.1 million live 32-byte objects: distinct, writable, and all slabs go
 * after they are freed and the cache is shrunk. */
static void test_million_live_objects(void **state)
{
	(void)state;
	enum { N = 1100000, SZ = 32 };
	struct kmem_cache *c = kmem_cache_create("skt_million", SZ, 0, 0, NULL);
	assert_non_null(c);
	void **p = malloc(N * sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < N; i++) {
		uint64_t *o = kmem_cache_alloc(c, GFP_KERNEL);
		if (!o)
			fail_msg("kmem_cache_alloc #%zu = NULL", i);
		o[0] = i;
		o[1] = ~(uint64_t)i;
		o[2] = (uintptr_t)o;
		o[3] = i * 0x9E3779B97F4A7C15ULL;
		p[i] = o;
	}
	for (size_t i = 0; i < N; i++) {
		uint64_t *o = p[i];
		if (o[0] != i || o[1] != ~(uint64_t)i || o[2] != (uintptr_t)o ||
		    o[3] != i * 0x9E3779B97F4A7C15ULL)
			fail_msg("object #%zu at %p was overwritten", i, (void *)o);
	}
	struct slabkit_cache_info full = sk_info("skt_million");
	assert_int_equal(full.in_use, N);
	assert_true(full.high_water >= N);
	if (!sk_cache_backend_is("skt_million", "slob"))
		assert_true(full.slabs > 0);
	assert_true(sk_disjoint(p, N, SZ));
	for (size_t i = 0; i < N; i++)
		kmem_cache_free(c, p[i]);
	free(p);
	assert_int_equal(kmem_cache_shrink(c), 0);
	struct slabkit_cache_info empty = sk_info("skt_million");
	assert_int_equal(empty.in_use, 0);
	assert_int_equal(empty.slabs, 0);
	kmem_cache_destroy(c);
}

static const struct CMUnitTest threads_tests[] = {
	SK_TEST(test_threads_cross_free_kmalloc), SK_TEST(test_threads_cross_free_cache),
	SK_TEST(test_threads_cross_free_uma),     SK_TEST(test_threads_cross_free_bsd),
	SK_TEST(test_bsd_stats_exact_under_signals), SK_TEST(test_million_live_objects),
};

const struct conformance_group conformance_threads = {
	"threads", threads_tests, sizeof(threads_tests) / sizeof(threads_tests[0])
};
