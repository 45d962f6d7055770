/*
 * UMA backend under concurrency, on four synthetic nodes
 * (HWLOC_SYNTHETIC="node:4 core:2 pu:1"): worker threads allocate from any
 * domain or a chosen one, free their own items and items other threads
 * hand them (so frees cross CPUs and domains), while a reclaimer thread runs
 * maintenance ticks and every reclaim level.
 *
 * Checks: an item is never handed out twice (ctor sees a free item, dtor an
 * allocated one), item contents survive until their free, init and fini
 * balance after destruction, and nothing is left in use.
 *
 * Runs with SLABKIT_BACKEND=uma, SLABKIT_TICK_MS=-1; scaled by
 * SLABKIT_STRESS_SCALE.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include <slabkit/freebsd/uma.h>

#include "backends/uma/uma_int.h"
#include "sk_test.h"

enum { STATE_FREE = 0x46524545, STATE_USED = 0x55534544 };
enum { WORKERS = 4, SLOTS = 512, HANDOFF = 64 };

struct item {
	uint32_t state;
	uint32_t owner;
	uint64_t tag;
	char body[];
};

static atomic_long n_init, n_fini, n_bad;
static int zone_size;

static int c_init(void *mem, int size, int flags)
{
	struct item *it = mem;

	atomic_fetch_add(&n_init, 1);
	it->state = STATE_FREE;
	return 0;
}

static void c_fini(void *mem, int size)
{
	struct item *it = mem;

	if (it->state != STATE_FREE)
		atomic_fetch_add(&n_bad, 1);
	atomic_fetch_add(&n_fini, 1);
}

static int c_ctor(void *mem, int size, void *arg, int flags)
{
	struct item *it = mem;

	if (it->state != STATE_FREE)
		atomic_fetch_add(&n_bad, 1);
	it->state = STATE_USED;
	return 0;
}

static void c_dtor(void *mem, int size, void *arg)
{
	struct item *it = mem;

	if (it->state != STATE_USED)
		atomic_fetch_add(&n_bad, 1);
	it->state = STATE_FREE;
}

/* A one-slot mailbox per worker: others drop items in, the owner frees them. */
struct mailbox {
	pthread_mutex_t lock;
	void *items[HANDOFF];
	int n;
};

static struct mailbox boxes[WORKERS];
static uma_zone_t zones[2];
static atomic_bool stop;
static atomic_long corrupt;
static atomic_long t_allocs, t_frees;

static void stamp(struct item *it, uint32_t owner, uint64_t tag)
{
	it->owner = owner;
	it->tag = tag;
	sk_fill(it->body, (size_t)zone_size - sizeof(*it), tag);
}

static void check_and_free(uma_zone_t z, struct item *it)
{
	if (sk_check(it->body, (size_t)zone_size - sizeof(*it), it->tag) != SIZE_MAX)
		atomic_fetch_add(&corrupt, 1);
	atomic_fetch_add(&t_frees, 1);
	uma_zfree(z, it);
}

struct worker {
	int id;
	unsigned long ops;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct item *mine[SLOTS] = { NULL };
	uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);
	uint64_t seq = 0;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(w->id % 2, &set);
	sched_setaffinity(0, sizeof(set), &set);
	while (!atomic_load(&stop)) {
		uint64_t r = sk_rand(&rng);
		unsigned slot = (unsigned)(r % SLOTS);
		uma_zone_t z = zones[(r >> 20) & 1];

		if (mine[slot]) {
			if ((r >> 24) % 8 == 0) {
				/* Hand it to another worker, who frees it. */
				struct mailbox *b = &boxes[(w->id + 1 + (r >> 28) % (WORKERS - 1)) % WORKERS];
				pthread_mutex_lock(&b->lock);
				if (b->n < HANDOFF) {
					b->items[b->n++] = mine[slot];
					mine[slot] = NULL;
				}
				pthread_mutex_unlock(&b->lock);
			}
			if (mine[slot]) {
				check_and_free(zones[mine[slot]->owner >> 16], mine[slot]);
				mine[slot] = NULL;
			}
		} else {
			int domain = (r >> 32) % 3 == 0 ? (int)((r >> 40) % 4) : UMA_ANYDOMAIN;
			struct item *it = domain == UMA_ANYDOMAIN ? uma_zalloc(z, M_WAITOK)
								  : uma_zalloc_domain(z, NULL, domain, M_WAITOK);
			if (!it) {
				atomic_fetch_add(&corrupt, 1000000);
				break;
			}
			atomic_fetch_add(&t_allocs, 1);
			stamp(it, (uint32_t)(((z == zones[1]) << 16) | (unsigned)w->id), seq++);
			mine[slot] = it;
		}
		if ((r >> 48) % 16 == 0) {
			struct mailbox *b = &boxes[w->id];
			void *got[HANDOFF];
			int n;
			pthread_mutex_lock(&b->lock);
			n = b->n;
			memcpy(got, b->items, (size_t)n * sizeof(void *));
			b->n = 0;
			pthread_mutex_unlock(&b->lock);
			for (int i = 0; i < n; i++) {
				struct item *it = got[i];
				check_and_free(zones[it->owner >> 16], it);
			}
		}
		w->ops++;
	}
	for (int i = 0; i < SLOTS; i++)
		if (mine[i])
			check_and_free(zones[mine[i]->owner >> 16], mine[i]);
	return NULL;
}

static void *reclaimer_main(void *arg)
{
	unsigned long *passes = arg;
	static const int levels[] = { UMA_RECLAIM_TRIM, UMA_RECLAIM_DRAIN, UMA_RECLAIM_DRAIN_CPU };

	while (!atomic_load(&stop)) {
		slabkit_tick();
		uma_zone_reclaim(zones[*passes % 2], levels[*passes % 3]);
		(*passes)++;
		sk_sleep_ms(2);
	}
	return NULL;
}

static int conc_setup(void **state)
{
	setenv("HWLOC_SYNTHETIC", "node:4 core:2 pu:1", 1);
	return sk_group_setup(state);
}

static void run(unsigned ms)
{
	struct worker w[WORKERS];
	pthread_t t[WORKERS], rt;
	unsigned long passes = 0, ops = 0;

	atomic_store(&stop, false);
	for (int i = 0; i < WORKERS; i++) {
		pthread_mutex_init(&boxes[i].lock, NULL);
		boxes[i].n = 0;
	}
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	assert_int_equal(pthread_create(&rt, NULL, reclaimer_main, &passes), 0);
	sk_sleep_ms(ms);
	atomic_store(&stop, true);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(t[i], NULL);
		ops += w[i].ops;
	}
	pthread_join(rt, NULL);
	/* Items still in mailboxes. */
	for (int i = 0; i < WORKERS; i++)
		for (int j = 0; j < boxes[i].n; j++) {
			struct item *it = boxes[i].items[j];
			check_and_free(zones[it->owner >> 16], it);
		}
	fprintf(stderr, "  %lu operations, %lu reclaim passes\n", ops, passes);
}

static void test_concurrent_mix(void **state)
{
	zone_size = 200;
	atomic_store(&n_init, 0);
	atomic_store(&n_fini, 0);
	atomic_store(&n_bad, 0);
	atomic_store(&corrupt, 0);
	zones[0] = uma_zcreate("ut_conc_ft", 200, c_ctor, c_dtor, c_init, c_fini, UMA_ALIGN_PTR, 0);
	zones[1] = uma_zsecond_create("ut_conc_sec", c_ctor, c_dtor, NULL, NULL, zones[0]);
	assert_non_null(zones[0]);
	assert_non_null(zones[1]);

	run((unsigned)sk_scaled(1500));

	assert_int_equal(atomic_load(&corrupt), 0);
	assert_int_equal(atomic_load(&n_bad), 0);
	struct slabkit_cache_info in;
	assert_int_equal(slabkit_cache_info_by_name("ut_conc_ft", &in), 0);
	/* Every allocation the test made was counted and freed (core may count
	 * more: uma_zalloc_domain can pop a CPU item and put it back). */
	assert_int_equal(atomic_load(&t_allocs), atomic_load(&t_frees));
	/* The zones count their own allocations exactly; the keg counts fewer
	 * (the secondary's zone-level cache serves some) or more (see above). */
	assert_int_equal(atomic_load(&t_allocs), uma_zone_get_allocs(zones[0]) + uma_zone_get_allocs(zones[1]));
	assert_int_equal(atomic_load(&t_frees), uma_zone_get_frees(zones[0]) + uma_zone_get_frees(zones[1]));
	assert_int_equal(uma_zone_get_cur(zones[0]), 0);
	assert_int_equal(uma_zone_get_cur(zones[1]), 0);
	/* Every item is back: DRAIN_CPU (which also empties the secondary's
	 * zone-level cache) leaves no slab behind. */
	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(slabkit_cache_info_by_name("ut_conc_ft", &in), 0);
	assert_int_equal(in.allocs, in.frees);
	assert_int_equal(in.in_use, 0);
	assert_int_equal(in.cached_free, 0);
	assert_int_equal(in.slabs, 0);
	uma_zdestroy(zones[1]);
	uma_zdestroy(zones[0]);
	assert_int_equal(atomic_load(&n_init), atomic_load(&n_fini));
	assert_int_equal(atomic_load(&n_bad), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_concurrent_mix),
	};

	sk_apply_test_filter();
	return cmocka_run_group_tests_name("uma_concurrency", tests, conc_setup, sk_group_teardown);
}
