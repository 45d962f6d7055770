/*
 * Conformance: RCU-deferred freeing, on every backend.
 *
 *  - kfree_rcu / kfree_rcu_mightsleep free only after every read-side
 *    section that began before them has ended; rcu_barrier waits for them;
 *    kmem_cache_destroy waits for its cache's pending frees;
 *  - SLAB_TYPESAFE_BY_RCU: a reader holding a pointer across its free (and
 *    across shrinks that give slabs back) always reads memory of the
 *    cache's type, never unmapped or another cache's memory;
 *  - UMA SMR zones: an item freed with uma_zfree_smr is not reused while a
 *    reader that may have seen it is inside smr_enter/smr_exit.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "conformance.h"

struct rcu_obj {
	uint64_t magic;
	uint64_t payload[6];
	struct rcu_head rh;
	uint64_t magic2;
};

#define RCU_MAGIC 0x7e57ab1e5afe0001ull

/* A reader that enters a read-side section, signals, and leaves when told. */
struct parked_reader {
	atomic_int state; /* 0 start, 1 inside, 2 leave, 3 left */
};

static void *parked_reader_main(void *arg)
{
	struct parked_reader *r = arg;
	rcu_read_lock();
	atomic_store(&r->state, 1);
	while (atomic_load(&r->state) != 2)
		sk_sleep_ms(1);
	rcu_read_unlock();
	atomic_store(&r->state, 3);
	return NULL;
}

static void park_reader(struct parked_reader *r, pthread_t *t)
{
	atomic_store(&r->state, 0);
	pthread_create(t, NULL, parked_reader_main, r);
	while (atomic_load(&r->state) != 1)
		sk_sleep_ms(1);
}

static void release_reader(struct parked_reader *r, pthread_t t)
{
	atomic_store(&r->state, 2);
	pthread_join(t, NULL);
}

/* kfree_rcu of cache objects and kmalloc blocks: nothing is freed while a
 * reader that started before is inside; rcu_barrier then frees them all. */
static void test_kfree_rcu_waits_for_readers(void **state)
{
	(void)state;
	enum { N = 200 };
	struct kmem_cache *c = kmem_cache_create("skt_kfree_rcu", sizeof(struct rcu_obj), 0, 0, NULL);
	assert_non_null(c);
	struct rcu_obj *o[N];
	for (int i = 0; i < N; i++) {
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(o[i]);
	}
	struct rcu_obj *k = kmalloc(sizeof(*k), GFP_KERNEL);
	void *m = kmalloc(5000, GFP_KERNEL);
	assert_non_null(k);
	assert_non_null(m);

	struct parked_reader r;
	pthread_t t;
	park_reader(&r, &t);
	for (int i = 0; i < N; i++)
		kfree_rcu(o[i], rh);
	kfree_rcu(k, rh);
	kfree_rcu_mightsleep(m);
	kfree_rcu((struct rcu_obj *)NULL, rh); /* a no-op, as in the kernel */
	sk_sleep_ms(30);
	assert_int_equal(sk_info("skt_kfree_rcu").in_use, N); /* the reader may still see them */
	release_reader(&r, t);
	rcu_barrier();
	assert_int_equal(sk_info("skt_kfree_rcu").in_use, 0);
	assert_int_equal(kmem_cache_shrink(c), 0);
	kmem_cache_destroy(c);
	assert_int_equal(sk_message_count(), 0);
}

/* kmem_cache_destroy right after kfree_rcu: it waits for the pending
 * frees instead of reporting "Objects remaining". */
static void test_destroy_waits_for_kfree_rcu(void **state)
{
	(void)state;
	for (int round = 0; round < 3; round++) {
		struct kmem_cache *c = kmem_cache_create("skt_rcu_destroy", sizeof(struct rcu_obj), 0,
							 0, NULL);
		assert_non_null(c);
		for (int i = 0; i < 500; i++) {
			struct rcu_obj *p = kmem_cache_alloc(c, GFP_KERNEL);
			assert_non_null(p);
			if (i % 2)
				kfree_rcu(p, rh);
			else
				kfree_rcu_mightsleep(p);
		}
		kmem_cache_destroy(c);
	}
	assert_int_equal(sk_captured("Objects remaining", NULL, NULL), 0);
	assert_int_equal(sk_message_count(), 0);
}

/* kfree_rcu of a malloc(9) block or a foreign pointer: reported, nothing
 * queued. */
static void test_kfree_rcu_misuse(void **state)
{
	(void)state;
	sk_expect_panics();
	struct rcu_obj *b = bsd_malloc(sizeof(struct rcu_obj), M_TEST, M_WAITOK);
	assert_non_null(b);
	unsigned panics = sk_panic_count();
	kfree_rcu(b, rh);
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("kfree_rcu", "malloc", NULL);
	rcu_barrier();
	bsd_free(b, M_TEST); /* still live */
	assert_int_equal(sk_panic_count(), panics + 1);
}

/* ---------------------------------------------------------------------- */

/* SLAB_TYPESAFE_BY_RCU.  Writers replace published objects and free the
 * old ones at once, shrink the cache (slabs go back) and churn another
 * cache of the same size (which would reuse pages given back too early)
 * while readers, inside rcu_read_lock, read the objects they found again
 * and again.  Every read must see the cache's constructed magic words. */
enum { TS_SLOTS = 64 };

struct ts_state {
	struct kmem_cache *cache, *other;
	_Atomic(struct rcu_obj *) slot[TS_SLOTS];
	atomic_bool stop;
	atomic_ulong reads, bad, frees;
};

/* Let the readers and writers run for at least `ms`, and on until the
 * writers have freed more than 1000 objects: a loaded machine (TSan, other
 * jobs) may give them little CPU, and the test is about what readers see
 * across frees, not about how fast they come.  Gives up after two minutes
 * (the assertion on frees then fails with the count). */
static void run_until_frees(atomic_ulong *frees, unsigned ms)
{
	sk_sleep_ms(ms);
	for (unsigned waited = 0; atomic_load(frees) <= 1000 && waited < 120000; waited += 10)
		sk_sleep_ms(10);
}

static void ts_ctor(void *p)
{
	struct rcu_obj *o = p;
	/* Atomic: TYPESAFE_BY_RCU readers may read a slab's memory while it is
	 * being constructed again (that is the point); TSan sees the pairing. */
	__atomic_store_n(&o->magic, RCU_MAGIC, __ATOMIC_RELAXED);
	__atomic_store_n(&o->magic2, RCU_MAGIC, __ATOMIC_RELAXED);
}

static void *ts_writer(void *arg)
{
	struct ts_state *s = arg;
	uint64_t rng = (uintptr_t)&rng;
	void *junk[64] = { 0 };
	for (unsigned long i = 0; !atomic_load(&s->stop); i++) {
		unsigned k = (unsigned)(sk_rand(&rng) % TS_SLOTS);
		struct rcu_obj *n = kmem_cache_alloc(s->cache, GFP_KERNEL);
		if (!n)
			continue;
		n->payload[0] = i;
		struct rcu_obj *old = atomic_exchange(&s->slot[k], n);
		if (old) {
			kmem_cache_free(s->cache, old);
			atomic_fetch_add(&s->frees, 1);
		}
		/* Another cache and the page path churn through free pages. */
		unsigned j = (unsigned)(i % 64);
		if (junk[j]) {
			memset(junk[j], 0xee, sizeof(struct rcu_obj));
			kmem_cache_free(s->other, junk[j]);
		}
		junk[j] = kmem_cache_alloc(s->other, GFP_KERNEL);
		if ((i % 512) == 0) {
			/* Empty the published slots' slabs as far as possible. */
			for (unsigned x = 0; x < TS_SLOTS; x += 2) {
				struct rcu_obj *o = atomic_exchange(&s->slot[x], NULL);
				if (o)
					kmem_cache_free(s->cache, o);
			}
			kmem_cache_shrink(s->cache);
			slabkit_shrink_all(); /* gives free pages back to the OS */
		}
	}
	for (unsigned j = 0; j < 64; j++)
		if (junk[j])
			kmem_cache_free(s->other, junk[j]);
	return NULL;
}

static void *ts_reader(void *arg)
{
	struct ts_state *s = arg;
	uint64_t rng = (uintptr_t)&rng;
	while (!atomic_load(&s->stop)) {
		rcu_read_lock();
		struct rcu_obj *o = atomic_load(&s->slot[sk_rand(&rng) % TS_SLOTS]);
		if (o) {
			for (int rep = 0; rep < 50; rep++) {
				uint64_t a = __atomic_load_n(&o->magic, __ATOMIC_RELAXED);
				uint64_t b = __atomic_load_n(&o->magic2, __ATOMIC_RELAXED);
				if (a != RCU_MAGIC || b != RCU_MAGIC)
					atomic_fetch_add(&s->bad, 1);
				atomic_fetch_add(&s->reads, 1);
				if (rep % 10 == 9)
					sched_yield(); /* let writers free it meanwhile */
			}
		}
		rcu_read_unlock();
	}
	return NULL;
}

static void test_typesafe_by_rcu_readers(void **state)
{
	(void)state;
	struct ts_state *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->cache = kmem_cache_create("skt_typesafe", sizeof(struct rcu_obj), 0, SLAB_TYPESAFE_BY_RCU,
				     ts_ctor);
	s->other = kmem_cache_create("skt_typesafe_other", sizeof(struct rcu_obj), 0, 0, NULL);
	assert_non_null(s->cache);
	assert_non_null(s->other);
	pthread_t w[2], r[2];
	for (int i = 0; i < 2; i++) {
		pthread_create(&w[i], NULL, ts_writer, s);
		pthread_create(&r[i], NULL, ts_reader, s);
	}
	run_until_frees(&s->frees, (unsigned)(600 * sk_stress_scale()) + 100);
	atomic_store(&s->stop, true);
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
	}
	print_message("  %s: %lu reads of objects freed %lu times, %lu saw another type\n",
		      slabkit_backend(), atomic_load(&s->reads), atomic_load(&s->frees),
		      atomic_load(&s->bad));
	assert_true(atomic_load(&s->frees) > 1000);
	assert_int_equal(atomic_load(&s->bad), 0);
	for (int k = 0; k < TS_SLOTS; k++) {
		struct rcu_obj *o = atomic_load(&s->slot[k]);
		if (o)
			kmem_cache_free(s->cache, o);
	}
	/* Destroy waits for the slabs still in their grace period. */
	kmem_cache_destroy(s->cache);
	kmem_cache_destroy(s->other);
	assert_int_equal(sk_captured("Objects remaining", NULL, NULL), 0);
	free(s);
}

/* Freed objects are reused at once (only slab pages wait), except on SLOB,
 * whose objects wait a grace period each (docs/slob.md). */
static void test_typesafe_reuse_and_stats(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_typesafe_stats", 100, 0, SLAB_TYPESAFE_BY_RCU,
						 NULL);
	assert_non_null(c);
	void *p[300];
	for (int i = 0; i < 300; i++)
		assert_non_null(p[i] = kmem_cache_alloc(c, GFP_KERNEL));
	for (int i = 0; i < 300; i++)
		kmem_cache_free(c, p[i]);
	assert_int_equal(sk_info("skt_typesafe_stats").in_use, 0);
	kmem_cache_shrink(c);
	rcu_barrier();
	kmem_cache_shrink(c);
	rcu_barrier();
	assert_int_equal(sk_info("skt_typesafe_stats").slabs, 0);
	kmem_cache_destroy(c);
}

/* ---------------------------------------------------------------------- */

/* UMA SMR zones.  Writers publish fresh items (each stamped with a unique
 * sequence) and free the ones they replace with uma_zfree_smr; readers
 * inside smr_enter re-read an item's stamp: it must never change (an item
 * reused early would be re-stamped by a writer). */
struct smr_item {
	uint64_t seq;
	uint64_t check;
	char pad[48];
};

struct smr_state {
	uma_zone_t zone;
	smr_t smr;
	_Atomic(struct smr_item *) slot[TS_SLOTS];
	atomic_bool stop;
	atomic_ulong seq, reads, bad, frees;
};

static void *smr_writer(void *arg)
{
	struct smr_state *s = arg;
	uint64_t rng = (uintptr_t)&rng;
	while (!atomic_load(&s->stop)) {
		struct smr_item *n = uma_zalloc_smr(s->zone, M_WAITOK);
		uint64_t seq = atomic_fetch_add(&s->seq, 1) + 1;
		__atomic_store_n(&n->seq, seq, __ATOMIC_RELAXED);
		__atomic_store_n(&n->check, ~seq, __ATOMIC_RELAXED);
		struct smr_item *old = atomic_exchange(&s->slot[sk_rand(&rng) % TS_SLOTS], n);
		if (old) {
			uma_zfree_smr(s->zone, old);
			atomic_fetch_add(&s->frees, 1);
		}
	}
	return NULL;
}

static void *smr_reader(void *arg)
{
	struct smr_state *s = arg;
	uint64_t rng = (uintptr_t)&rng;
	while (!atomic_load(&s->stop)) {
		smr_enter(s->smr);
		struct smr_item *it = atomic_load(&s->slot[sk_rand(&rng) % TS_SLOTS]);
		if (it) {
			uint64_t seq = __atomic_load_n(&it->seq, __ATOMIC_RELAXED);
			for (int rep = 0; rep < 40; rep++) {
				if (__atomic_load_n(&it->seq, __ATOMIC_RELAXED) != seq ||
				    __atomic_load_n(&it->check, __ATOMIC_RELAXED) != ~seq)
					atomic_fetch_add(&s->bad, 1);
				atomic_fetch_add(&s->reads, 1);
				if (rep % 10 == 9)
					sched_yield();
			}
		}
		smr_exit(s->smr);
	}
	return NULL;
}

static void test_uma_smr_zone(void **state)
{
	(void)state;
	struct smr_state *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->zone = uma_zcreate("skt_smr", sizeof(struct smr_item), NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
			      UMA_ZONE_SMR);
	assert_non_null(s->zone);
	s->smr = uma_zone_get_smr(s->zone);
	assert_non_null(s->smr);
	pthread_t w[2], r[2];
	for (int i = 0; i < 2; i++) {
		pthread_create(&w[i], NULL, smr_writer, s);
		pthread_create(&r[i], NULL, smr_reader, s);
	}
	run_until_frees(&s->frees, (unsigned)(500 * sk_stress_scale()) + 100);
	atomic_store(&s->stop, true);
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
	}
	print_message("  %s: SMR zone: %lu reads, %lu items freed, %lu saw a reused item\n",
		      slabkit_backend(), atomic_load(&s->reads), atomic_load(&s->frees),
		      atomic_load(&s->bad));
	assert_true(atomic_load(&s->frees) > 1000);
	assert_int_equal(atomic_load(&s->bad), 0);
	for (int k = 0; k < TS_SLOTS; k++) {
		struct smr_item *it = atomic_load(&s->slot[k]);
		if (it)
			uma_zfree_smr(s->zone, it);
	}
	/* After reclaim and a barrier every item is back: the count is 0. */
	uma_zone_reclaim(s->zone, UMA_RECLAIM_DRAIN);
	rcu_barrier();
	assert_int_equal(uma_zone_get_cur(s->zone), 0);

	/* Misuse: a plain free, and SMR calls on a plain zone. */
	sk_expect_panics();
	void *it = uma_zalloc_smr(s->zone, M_WAITOK);
	unsigned panics = sk_panic_count();
	uma_zfree(s->zone, it);
	assert_int_equal(sk_panic_count(), panics + 1);
	sk_assert_reported("uma_zfree", "uma_zfree_smr", NULL);
	uma_zfree_smr(s->zone, it);
	uma_zone_t plain = uma_zcreate("skt_not_smr", 32, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_null(uma_zalloc_smr(plain, M_WAITOK));
	assert_int_equal(sk_panic_count(), panics + 2);
	uma_zdestroy(plain);
	uma_zdestroy(s->zone); /* waits for the batches in flight */
	assert_int_equal(sk_captured("Objects remaining", NULL, NULL), 0);
	free(s);
}

static const struct CMUnitTest rcu_tests[] = {
	SK_TEST(test_kfree_rcu_waits_for_readers),
	SK_TEST(test_destroy_waits_for_kfree_rcu),
	SK_TEST(test_kfree_rcu_misuse),
	SK_TEST(test_typesafe_by_rcu_readers),
	SK_TEST(test_typesafe_reuse_and_stats),
	SK_TEST(test_uma_smr_zone),
};

const struct conformance_group conformance_rcu = {
	"rcu", rcu_tests, sizeof(rcu_tests) / sizeof(rcu_tests[0])
};
