/*
 * slabkit-bench: the workloads (child side) and the suite they form.
 *
 * What must stay true for the figures to mean anything:
 * - a timed loop is the API call and nothing else of weight: no indirect
 *   call, no branch on the allocator, no division (random indices use a
 *   multiply-shift), sizes from a pre-generated table;
 * - every object is written (one word) and escapes (bench_escape), so the
 *   compiler can neither drop nor merge an alloc+free pair;
 * - the slabkit loop and the malloc loop of a workload come from one macro,
 *   so the baseline runs the same code with malloc/free;
 * - harness memory (pointer tables) is mapped and touched before the
 *   resident-memory baseline is read, so it never counts as the allocator's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "bench.h"
#include "idr.h"

MALLOC_DECLARE(M_BENCH);
MALLOC_DEFINE(M_BENCH, "bench", "slabkit-bench objects");

#define BATCH 64
#define MIXED_SIZES 8192 /* a power of two */
#define MIXED_MIN 8
#define MIXED_MAX 4096
#define RING_SLOTS 256
#define RING_BURST 32
#define LARSON_SLOTS 4096
#define MAX_THREADS 64
#define MAX_LOST_SHARE 0.05
#define MIN_CLEAN 3

/* --- the suite ----------------------------------------------------------------- */

static struct workload *add(struct run *run, const char *name, const char *section, enum wl_kind kind,
			    enum wl_api api, unsigned size, const char *what)
{
	struct workload *w;

	if (run->nworkloads == BENCH_MAX_WORKLOADS)
		bench_die("too many workloads");
	w = &run->workloads[run->nworkloads++];
	memset(w, 0, sizeof(*w));
	snprintf(w->name, sizeof(w->name), "%.*s", BENCH_NAME - 1, name);
	w->section = section;
	snprintf(w->what, sizeof(w->what), "%s", what);
	w->kind = kind;
	w->api = api;
	w->size = size;
	w->timed = kind != WK_FOOTPRINT && kind != WK_FRAGMENT && kind != WK_STEADY && kind != WK_IDR &&
		   kind != WK_RELEASE;
	return w;
}

static const char *count_name(uint64_t n, char *buf, size_t size)
{
	if (n >= 1000000 && n % 1000000 == 0)
		snprintf(buf, size, "%llum", (unsigned long long)(n / 1000000));
	else if (n >= 1000 && n % 1000 == 0)
		snprintf(buf, size, "%lluk", (unsigned long long)(n / 1000));
	else if (n == 4096)
		snprintf(buf, size, "4k");
	else
		snprintf(buf, size, "%llu", (unsigned long long)n);
	return buf;
}

void workload_define_all(struct run *run)
{
	const struct options *o = &run->opt;
	char name[BENCH_NAME + 32], what[160], num[24];
	struct workload *w;
	uint64_t big_window = o->tiny ? 20000 : 1000000;
	uint64_t footprint_objects = o->tiny ? 20000 : o->quick ? 100000 : 300000;
	uint64_t steady_objects = o->tiny ? 10000 : o->quick ? 50000 : 200000;
	static const uint64_t live_full[] = { 1000, 10000, 100000, 1000000, 10000000 };
	int nlive = o->tiny ? 2 : o->quick ? 4 : 5;

	if (o->replay) {
		w = add(run, "replay", "replay", WK_REPLAY, API_KMALLOC_VAR, 0,
			"the recorded trace: kmalloc/kfree (kmem_cache for cache records); peers: malloc/free");
		return;
	}
	add(run, "cache64", "pairs", WK_PAIR, API_CACHE, 64, "kmem_cache_alloc+free, 64 B cache");
	add(run, "cache256", "pairs", WK_PAIR, API_CACHE, 256, "kmem_cache_alloc+free, 256 B cache");
	add(run, "kmalloc64", "pairs", WK_PAIR, API_KMALLOC, 64, "kmalloc(64)+kfree, size a compile-time constant");
	add(run, "kmalloc-var64", "pairs", WK_PAIR, API_KMALLOC_VAR, 64,
	    "kmalloc(n)+kfree, n = 64 known only at run time");
	add(run, "kmalloc-mixed", "pairs", WK_PAIR, API_KMALLOC_MIXED, 0,
	    "kmalloc+kfree, random sizes 8..4096 from a table");
	add(run, "uma64", "pairs", WK_PAIR, API_UMA, 64, "uma_zalloc+uma_zfree, 64 B zone");
	add(run, "bsdmalloc64", "pairs", WK_PAIR, API_BSD, 64, "FreeBSD malloc(64, M_BENCH, M_WAITOK)+free");
	w = add(run, "cache64-lock", "pairs", WK_PAIR, API_CACHE, 64,
		"kmem_cache 64 B pair with SLABKIT_PERCPU=lock (valgrind, TSan, no rseq)");
	w->lock_mode = true;

	add(run, "cache256-batch", "batches", WK_BATCH, API_CACHE, 256, "kmem_cache 256 B, 64 allocated then 64 freed");
	add(run, "kmalloc-mixed-batch", "batches", WK_BATCH, API_KMALLOC_MIXED, 0,
	    "kmalloc 8..4096 B, 64 allocated then 64 freed");

	for (int k = 0; k < 2; k++) {
		uint64_t live = k ? big_window : 4096;

		for (int api = 0; api < 2; api++) {
			snprintf(name, sizeof(name), "window%s-%s", count_name(live, num, sizeof(num)),
				 api ? "kmalloc" : "cache");
			snprintf(what, sizeof(what), "%llu live 64 B objects, a random one freed and reallocated (%s)",
				 (unsigned long long)live, api ? "kmalloc(64)" : "kmem_cache");
			w = add(run, name, "random window", WK_WINDOW, api ? API_KMALLOC : API_CACHE, 64, what);
			w->live = live;
		}
	}
	for (int k = 0; k < nlive; k++) {
		snprintf(name, sizeof(name), "live-%s", count_name(live_full[k], num, sizeof(num)));
		snprintf(what, sizeof(what), "random window over %llu live 64 B kmem_cache objects",
			 (unsigned long long)live_full[k]);
		w = add(run, name, "live-set scaling", WK_WINDOW, API_CACHE, 64, what);
		w->live = live_full[k];
	}

	add(run, "remote", "threads", WK_REMOTE, API_CACHE, 64,
	    "producer allocates 64 B, consumer frees (cross-CPU frees); wall ns per object");
	w = add(run, "larson", "threads", WK_LARSON, API_KMALLOC_VAR, 0, "");
	w->threads = BENCH_MAX(2, bench_allowed_cpus());
	snprintf(w->what, sizeof(w->what),
		 "%d threads swap kmalloc 16..256 B objects through a shared table of %d (Larson-like server)",
		 w->threads, LARSON_SLOTS);

	{
		char list[128], *save = NULL;

		snprintf(list, sizeof(list), "%s", o->threads);
		for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			int n = atoi(t);

			snprintf(name, sizeof(name), "threads-%d", n);
			snprintf(what, sizeof(what), "%d thread%s, each a kmem_cache 64 B pair; aggregate ns per pair", n,
				 n > 1 ? "s" : "");
			w = add(run, name, "thread scaling", WK_THREADS, API_CACHE, 64, what);
			w->threads = n;
		}
	}

	snprintf(what, sizeof(what), "%llu kmalloc of 8..1024 B, a random half freed and reallocated; RSS / live",
		 (unsigned long long)footprint_objects);
	w = add(run, "footprint", "memory", WK_FOOTPRINT, API_KMALLOC_VAR, 0, what);
	w->live = footprint_objects;
	snprintf(what, sizeof(what),
		 "%llu kmalloc of 8..512 B, a random 90%% freed, as many reallocated at 512..2048 B; RSS / live",
		 (unsigned long long)footprint_objects);
	w = add(run, "fragmentation", "memory", WK_FRAGMENT, API_KMALLOC_VAR, 0, what);
	w->live = footprint_objects;
	snprintf(what, sizeof(what),
		 "long-lived kmalloc 16..1024 B: grow to %llu, churn, shrink to 10%%, churn, regrow; RSS sampled",
		 (unsigned long long)steady_objects);
	w = add(run, "steady", "memory", WK_STEADY, API_KMALLOC_VAR, 0, what);
	w->live = steady_objects;
	w = add(run, "idr", "memory", WK_IDR, API_KMALLOC_VAR, 0,
		"the Linux IDA/IDR test's allocations: 576 B nodes (cache, ctor) freed by call_rcu, "
		"128 B bitmaps, 20 threads; peak RSS");
	w->live = o->tiny ? 0 : o->quick ? 1 : 2; /* the scale (run_idr) */
	snprintf(what, sizeof(what),
		 "%llu kmalloc of 16..1024 B, all freed in random order, then uma_reclaim(DRAIN_CPU) "
		 "(malloc: malloc_trim); RSS kept / live at the peak",
		 (unsigned long long)footprint_objects);
	w = add(run, "release", "memory", WK_RELEASE, API_KMALLOC_VAR, 0, what);
	w->live = footprint_objects;
}

/* --- the child's context ----------------------------------------------------------- */

struct ctx {
	const struct allocator *alloc;
	const struct workload *wl;
	bool sk;                   /* a slabkit backend (else malloc/free) */
	struct kmem_cache *cache;
	uma_zone_t zone;
	size_t size;               /* fixed size, read at run time */
	uint16_t mixed[MIXED_SIZES];
	void **table;              /* WK_WINDOW: the live objects */
	size_t table_bytes;
	uint64_t live;
	uint64_t rng_state;
};

bench_cold static void alloc_failed(const char *what)
{
	bench_die("%s returned NULL during a timed loop", what);
}

/* Harness memory, not the allocator's: mapped and touched up front. */
static void *harness_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap %zu bytes: %s", bytes, strerror(errno));
	return p;
}

/* --- timed loops -------------------------------------------------------------- */

/* Defines pair_<api>, batch_<api> and window_<api>.  ALLOC(c, i) and
 * FREE(c, o) are the calls under test; PROLOGUE (statements, may be empty)
 * runs at the top of each loop function, before its clock starts. */
#define DEFINE_LOOPS_WITH(api, ALLOC, FREE, PROLOGUE)                             \
	bench_noinline static uint64_t pair_##api(struct ctx *c, uint64_t n)      \
	{                                                                         \
		PROLOGUE                                                          \
		uint64_t start = bench_now_ns();                                  \
		for (uint64_t i = 0; i < n; i++) {                                \
			uintptr_t *o = (uintptr_t *)(ALLOC(c, i));                \
			if (bench_unlikely(!o))                                   \
				alloc_failed(#api);                               \
			o[0] = (uintptr_t)i;                                      \
			bench_escape(o);                                          \
			FREE(c, o);                                               \
		}                                                                 \
		return bench_now_ns() - start;                                    \
	}                                                                         \
	bench_noinline static uint64_t batch_##api(struct ctx *c, uint64_t n)     \
	{                                                                         \
		PROLOGUE                                                          \
		void *objs[BATCH];                                                \
		uint64_t start = bench_now_ns();                                  \
		for (uint64_t base = 0; base < n; base += BATCH) {                \
			for (unsigned j = 0; j < BATCH; j++) {                    \
				uintptr_t *o = (uintptr_t *)(ALLOC(c, base + j)); \
				if (bench_unlikely(!o))                           \
					alloc_failed(#api);                       \
				o[0] = (uintptr_t)j;                              \
				objs[j] = o;                                      \
			}                                                         \
			bench_escape(objs);                                       \
			for (unsigned j = 0; j < BATCH; j++)                      \
				FREE(c, objs[j]);                                 \
		}                                                                 \
		return bench_now_ns() - start;                                    \
	}                                                                         \
	bench_noinline static uint64_t window_##api(struct ctx *c, uint64_t n)    \
	{                                                                         \
		PROLOGUE                                                          \
		void **table = c->table;                                          \
		uint64_t live = c->live;                                          \
		struct bench_rng r = { c->rng_state };                            \
		uint64_t start = bench_now_ns();                                  \
		for (uint64_t i = 0; i < n; i++) {                                \
			uint64_t j = ((bench_rng_next(&r) >> 32) * live) >> 32;   \
			FREE(c, table[j]);                                        \
			uintptr_t *o = (uintptr_t *)(ALLOC(c, i));                \
			if (bench_unlikely(!o))                                   \
				alloc_failed(#api);                               \
			o[0] = (uintptr_t)i;                                      \
			table[j] = o;                                             \
		}                                                                 \
		uint64_t took = bench_now_ns() - start;                           \
		c->rng_state = r.state;                                           \
		return took;                                                      \
	}
#define DEFINE_LOOPS(api, ALLOC, FREE) DEFINE_LOOPS_WITH(api, ALLOC, FREE, )

#define A_CACHE(c, i) kmem_cache_alloc((c)->cache, GFP_KERNEL)
#define F_CACHE(c, o) kmem_cache_free((c)->cache, (o))
DEFINE_LOOPS(cache, A_CACHE, F_CACHE)
#define A_KMALLOC64(c, i) kmalloc(64, GFP_KERNEL)
#define F_KFREE(c, o) kfree(o)
DEFINE_LOOPS(kmalloc64, A_KMALLOC64, F_KFREE)
#define A_KMALLOC_VAR(c, i) kmalloc(size, GFP_KERNEL)
#define A_KMALLOC_MIXED(c, i) kmalloc((c)->mixed[(i) & (MIXED_SIZES - 1)], GFP_KERNEL)
DEFINE_LOOPS(kmalloc_mixed, A_KMALLOC_MIXED, F_KFREE)
#define A_UMA(c, i) uma_zalloc((c)->zone, M_WAITOK)
#define F_UMA(c, o) uma_zfree((c)->zone, (o))
DEFINE_LOOPS(uma, A_UMA, F_UMA)
#define A_BSD64(c, i) bsd_malloc(64, M_BENCH, M_WAITOK)
#define F_BSD(c, o) bsd_free((o), M_BENCH)
DEFINE_LOOPS(bsd64, A_BSD64, F_BSD)
#define A_MALLOC_MIXED(c, i) malloc((c)->mixed[(i) & (MIXED_SIZES - 1)])
#define F_FREE(c, o) free(o)
DEFINE_LOOPS(malloc_mixed, A_MALLOC_MIXED, F_FREE)

/* The run-time-size variants read the size once into a local the compiler
 * cannot see through: the call is kmalloc(n) with n in a register. */
static size_t opaque_size(const struct ctx *c)
{
	size_t size = c->size;

	__asm__ volatile("" : "+r"(size));
	return size;
}
#define DEFINE_VAR_LOOPS(api, ALLOC, FREE) \
	DEFINE_LOOPS_WITH(api, ALLOC, FREE, size_t size = opaque_size(c);)
DEFINE_VAR_LOOPS(kmalloc_var, A_KMALLOC_VAR, F_KFREE)
#define A_MALLOC_VAR(c, i) malloc(size)
DEFINE_VAR_LOOPS(malloc_var, A_MALLOC_VAR, F_FREE)

typedef uint64_t (*loop_fn)(struct ctx *c, uint64_t n);

/* The loop of one single-threaded workload on this allocator. */
static loop_fn pick_loop(const struct ctx *c)
{
	const struct workload *w = c->wl;
	int shape = w->kind == WK_PAIR ? 0 : w->kind == WK_BATCH ? 1 : 2;
	static const loop_fn malloc_fixed[3] = { pair_malloc_var, batch_malloc_var, window_malloc_var };
	static const loop_fn malloc_mixed[3] = { pair_malloc_mixed, batch_malloc_mixed, window_malloc_mixed };
	static const loop_fn cache[3] = { pair_cache, batch_cache, window_cache };
	static const loop_fn kmalloc64[3] = { pair_kmalloc64, batch_kmalloc64, window_kmalloc64 };
	static const loop_fn kmalloc_var[3] = { pair_kmalloc_var, batch_kmalloc_var, window_kmalloc_var };
	static const loop_fn kmalloc_mixed[3] = { pair_kmalloc_mixed, batch_kmalloc_mixed, window_kmalloc_mixed };
	static const loop_fn uma[3] = { pair_uma, batch_uma, window_uma };
	static const loop_fn bsd64[3] = { pair_bsd64, batch_bsd64, window_bsd64 };

	if (!c->sk)
		return w->api == API_KMALLOC_MIXED ? malloc_mixed[shape] : malloc_fixed[shape];
	switch (w->api) {
	case API_CACHE: return cache[shape];
	case API_KMALLOC: return c->size == 64 ? kmalloc64[shape] : kmalloc_var[shape];
	case API_KMALLOC_VAR: return kmalloc_var[shape];
	case API_KMALLOC_MIXED: return kmalloc_mixed[shape];
	case API_UMA: return uma[shape];
	case API_BSD: return c->size == 64 ? bsd64[shape] : NULL;
	}
	return NULL;
}

/* --- threads ---------------------------------------------------------------- */

struct thread_arg {
	struct ctx *c;
	loop_fn loop;
	uint64_t n;
	pthread_barrier_t *start_line;
	uint64_t start_ns, end_ns;
	double lost;
	int index, nthreads;
	void **larson;        /* WK_LARSON: the shared table */
	struct ring *ring;    /* WK_REMOTE */
};

/* Starts fn pinned to the slot-th allowed CPU when every thread gets its own. */
static void start_thread(pthread_t *tid, int slot, int nthreads, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int rc;

	pthread_attr_init(&attr);
	if (nthreads <= bench_allowed_cpus()) {
		int cpu = bench_allowed_cpu(slot);
		cpu_set_t one;

		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
	}
	rc = pthread_create(tid, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		bench_die("pthread_create: %s", strerror(rc));
}

/* A worker's timed section starts when every worker has reached the start
 * line, and ends with a's end time and the share of CPU time it lost to
 * other work (the disturbance check).  Inlined: the clock reads sit exactly
 * where each worker had them written out. */
static inline __attribute__((always_inline)) void thread_clock_start(struct thread_arg *a,
								     struct sched_mark *from)
{
	pthread_barrier_wait(a->start_line);
	bench_sched_mark(from);
	a->start_ns = bench_now_ns();
}

static inline __attribute__((always_inline)) void thread_clock_stop(struct thread_arg *a,
								    const struct sched_mark *from)
{
	struct sched_mark to;

	a->end_ns = bench_now_ns();
	bench_sched_mark(&to);
	a->lost = bench_lost_share(from, &to);
}

static void *local_thread(void *p)
{
	struct thread_arg *a = p;
	struct sched_mark from;

	thread_clock_start(a, &from);
	a->loop(a->c, a->n);
	thread_clock_stop(a, &from);
	return NULL;
}

/* Synchronization: head is written only by the producer, tail only by the
 * consumer (release/acquire); each side keeps a private copy of the other's
 * index and rereads it only when that says full (empty), a burst at a time. */
struct ring {
	_Alignas(64) uint64_t head;
	uint64_t producer_seen_tail;
	_Alignas(64) uint64_t tail;
	uint64_t consumer_seen_head;
	_Alignas(64) void *slots[RING_SLOTS];
};

static void ring_wait(unsigned *spins)
{
	if (++*spins % 128 == 0)
		sched_yield();
	else
		__asm__ volatile("" ::: "memory");
}

static void ring_push(struct ring *r, void *obj)
{
	uint64_t head = r->head;
	unsigned spins = 0;

	if (bench_unlikely(head - r->producer_seen_tail == RING_SLOTS)) {
		for (;;) {
			r->producer_seen_tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
			if (RING_SLOTS - (head - r->producer_seen_tail) >= RING_BURST)
				break;
			ring_wait(&spins);
		}
	}
	r->slots[head & (RING_SLOTS - 1)] = obj;
	__atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
}

static void *ring_pop(struct ring *r, uint64_t remaining)
{
	uint64_t tail = r->tail;
	unsigned spins = 0;
	void *obj;

	if (bench_unlikely(r->consumer_seen_head == tail)) {
		uint64_t want = BENCH_MIN(remaining, (uint64_t)RING_BURST);

		for (;;) {
			r->consumer_seen_head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
			if (r->consumer_seen_head - tail >= want)
				break;
			ring_wait(&spins);
		}
	}
	obj = r->slots[tail & (RING_SLOTS - 1)];
	__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
	return obj;
}

static void *producer_thread(void *p)
{
	struct thread_arg *a = p;
	struct ctx *c = a->c;
	struct sched_mark from;

	thread_clock_start(a, &from);
	for (uint64_t i = 0; i < a->n; i++) {
		uintptr_t *o = c->sk ? kmem_cache_alloc(c->cache, GFP_KERNEL) : malloc(64);

		if (bench_unlikely(!o))
			alloc_failed("producer");
		o[0] = (uintptr_t)i;
		ring_push(a->ring, o);
	}
	thread_clock_stop(a, &from);
	return NULL;
}

static void *consumer_thread(void *p)
{
	struct thread_arg *a = p;
	struct ctx *c = a->c;
	struct sched_mark from;

	thread_clock_start(a, &from);
	if (c->sk)
		for (uint64_t i = 0; i < a->n; i++)
			kmem_cache_free(c->cache, ring_pop(a->ring, a->n - i));
	else
		for (uint64_t i = 0; i < a->n; i++)
			free(ring_pop(a->ring, a->n - i));
	thread_clock_stop(a, &from);
	return NULL;
}

static void *larson_thread(void *p)
{
	struct thread_arg *a = p;
	struct ctx *c = a->c;
	struct bench_rng r = { 0x1a2b3c4dULL * (uint64_t)(a->index + 1) };
	struct sched_mark from;

	thread_clock_start(a, &from);
	for (uint64_t i = 0; i < a->n; i++) {
		uint64_t x = bench_rng_next(&r);
		size_t size = 16 + ((x & 0xffff) * 241 >> 16);   /* 16..256 */
		uint64_t j = ((x >> 32) * LARSON_SLOTS) >> 32;
		uintptr_t *o = c->sk ? kmalloc(size, GFP_KERNEL) : malloc(size);
		void *old;

		if (bench_unlikely(!o))
			alloc_failed("larson");
		o[0] = (uintptr_t)i;
		old = __atomic_exchange_n(&a->larson[j], (void *)o, __ATOMIC_ACQ_REL);
		if (old) {
			if (c->sk)
				kfree(old);
			else
				free(old);
		}
	}
	thread_clock_stop(a, &from);
	return NULL;
}

/* n ops of a threaded workload: wall ns from the first start to the last
 * end, divided by the threads' count for WK_THREADS and WK_LARSON (so
 * every figure is ns per op of the whole process).  Oversubscribed runs
 * (more threads than CPUs) lose CPU time by design: no disturbance check. */
static uint64_t run_threads(struct ctx *c, uint64_t n, double *lost)
{
	static struct ring ring;
	const struct workload *w = c->wl;
	int nthreads = w->kind == WK_REMOTE ? 2 : w->threads;
	struct thread_arg args[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	pthread_barrier_t start_line;
	uint64_t first = UINT64_MAX, last = 0;
	uint64_t per_thread = w->kind == WK_REMOTE ? n : (n + (uint64_t)nthreads - 1) / (uint64_t)nthreads;

	memset(&ring, 0, sizeof(ring));
	pthread_barrier_init(&start_line, NULL, (unsigned)nthreads);
	*lost = 0;
	for (int i = 0; i < nthreads; i++) {
		void *(*fn)(void *) = local_thread;

		args[i] = (struct thread_arg){ .c = c, .loop = pair_malloc_var, .n = per_thread,
					       .start_line = &start_line, .index = i, .nthreads = nthreads,
					       .larson = c->table, .ring = &ring };
		if (w->kind == WK_THREADS)
			args[i].loop = c->sk ? pair_cache : pair_malloc_var;
		else if (w->kind == WK_REMOTE)
			fn = i == 0 ? producer_thread : consumer_thread;
		else
			fn = larson_thread;
		start_thread(&tids[i], i, nthreads, fn, &args[i]);
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(tids[i], NULL);
		first = BENCH_MIN(first, args[i].start_ns);
		last = BENCH_MAX(last, args[i].end_ns);
		if (nthreads <= bench_allowed_cpus())
			*lost = BENCH_MAX(*lost, args[i].lost);
	}
	pthread_barrier_destroy(&start_line);
	if (w->kind == WK_REMOTE)
		return last - first;
	/* ns per op over all threads: wall * (n / total ops done) */
	return (uint64_t)((double)(last - first) * (double)n / (double)(per_thread * (uint64_t)nthreads));
}

/* n ops; ns they took: the thread's CPU time for a single-threaded loop,
 * the wall time of a threaded workload (waiting for the other threads is
 * part of what it measures). */
static uint64_t run_ops(struct ctx *c, loop_fn loop, uint64_t n, double *lost)
{
	struct sched_mark from, to;
	uint64_t took;

	if (!loop)
		return run_threads(c, n, lost);
	bench_sched_mark(&from);
	took = loop(c, n);
	bench_sched_mark(&to);
	*lost = bench_lost_share(&from, &to);
	/* One thread: its CPU time, so that time other processes of a shared
	 * machine held the CPU does not count (the wall time is the fallback
	 * if the thread clock did not move). */
	return to.cpu_ns > from.cpu_ns ? to.cpu_ns - from.cpu_ns : took;
}

/* --- set-up ------------------------------------------------------------------ */

static void fill_mixed(struct ctx *c)
{
	struct bench_rng r = { 0x5eed5eedULL };

	for (int i = 0; i < MIXED_SIZES; i++)
		c->mixed[i] = (uint16_t)bench_rng_range(&r, MIXED_MIN, MIXED_MAX);
}

static void *ctx_alloc_one(struct ctx *c)
{
	if (!c->sk)
		return malloc(c->size);
	if (c->wl->api == API_CACHE)
		return kmem_cache_alloc(c->cache, GFP_KERNEL);
	return kmalloc(c->size, GFP_KERNEL);
}

static int ctx_setup(struct ctx *c)
{
	const struct workload *w = c->wl;

	c->size = w->size;
	c->rng_state = 0x9e3779b97f4a7c15ULL;
	fill_mixed(c);
	if (c->sk) {
		char name[48];

		snprintf(name, sizeof(name), "bench%u", w->size ? w->size : 64);
		if (w->api == API_CACHE || w->kind == WK_REMOTE || w->kind == WK_THREADS)
			c->cache = kmem_cache_create(name, w->size ? w->size : 64, 0, 0, NULL);
		if (w->api == API_UMA)
			c->zone = uma_zcreate(name, w->size, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
		if ((w->api == API_CACHE && !c->cache) || (w->api == API_UMA && !c->zone)) {
			printf("error creating the benchmark cache failed\n");
			return 1;
		}
	}
	if (w->kind == WK_WINDOW) {
		c->live = w->live;
		for (uint64_t i = 0; i < c->live; i++) {
			void *p = ctx_alloc_one(c);

			if (!p) {
				printf("error allocation %llu of the window failed\n", (unsigned long long)i);
				return 1;
			}
			*(uintptr_t *)p = i;
			c->table[i] = p;
		}
	}
	return 0;
}

/* --- timed cells ------------------------------------------------------------- */

static uint64_t round_up_batch(double ops)
{
	uint64_t n = (uint64_t)ops;

	n = (n + BATCH - 1) / BATCH * BATCH;
	return n ? n : BATCH;
}

/* Ops per repetition so that one takes about rep_ms; the doubling runs are
 * the warm-up. */
static uint64_t calibrate(struct ctx *c, loop_fn loop, double calib_ms, double rep_ms)
{
	uint64_t n = 4 * BATCH, took;
	double lost;

	for (;;) {
		took = run_ops(c, loop, n, &lost);
		if ((double)took >= calib_ms * 1e6 || n >= (UINT64_C(1) << 36))
			break;
		n *= 2;
	}
	return round_up_batch((double)n * rep_ms * 1e6 / (double)(took ? took : 1));
}

static void print_memory(struct ctx *c, uint64_t rss_before, double live_bytes)
{
	struct slabkit_stats st;
	uint64_t rss = bench_rss_anon();

	printf("mem %.0f %.0f %.0f", (double)bench_peak_rss(), (double)(rss > rss_before ? rss - rss_before : 0),
	       live_bytes);
	if (c->sk) {
		slabkit_stats(&st);
		printf(" %llu %llu\n", (unsigned long long)st.slabs,
		       (unsigned long long)(st.slab_pages + st.large_pages));
	} else {
		printf(" -1 -1\n");
	}
}

static int run_timed(struct ctx *c, const struct child_params *p, uint64_t rss_before)
{
	loop_fn loop = (c->wl->kind == WK_THREADS || c->wl->kind == WK_REMOTE || c->wl->kind == WK_LARSON)
			       ? NULL : pick_loop(c);
	double samples[BENCH_MAX_SAMPLES], lost;
	int disturbed[BENCH_MAX_SAMPLES], reruns = 0, reps = BENCH_MIN(p->reps, BENCH_MAX_SAMPLES);
	uint64_t n = p->ops_per_rep;

	if (!loop && c->wl->kind != WK_THREADS && c->wl->kind != WK_REMOTE && c->wl->kind != WK_LARSON) {
		printf("error no loop for this workload and API\n");
		return 1;
	}
	if (c->wl->kind == WK_LARSON) {
		for (int i = 0; i < LARSON_SLOTS; i++) {
			c->table[i] = c->sk ? kmalloc(64, GFP_KERNEL) : malloc(64);
			if (!c->table[i]) {
				printf("error the Larson table could not be filled\n");
				return 1;
			}
		}
	}
	if (!n)
		n = calibrate(c, loop, p->calib_ms, p->rep_ms);
	else
		run_ops(c, loop, round_up_batch((double)n / 4), &lost); /* warm-up */
	printf("calib %llu\n", (unsigned long long)n);
	for (int r = 0; r < reps; r++) {
		uint64_t took;

		for (int attempt = 0;; attempt++) {
			took = run_ops(c, loop, n, &lost);
			if (lost <= MAX_LOST_SHARE || attempt >= p->max_retries)
				break;
			reruns++;
		}
		samples[r] = (double)took / (double)n;
		disturbed[r] = lost > MAX_LOST_SHARE;
	}
	for (int r = 0; r < reps; r++)
		printf("sample %.4f %d\n", samples[r], disturbed[r]);
	printf("reruns %d\n", reruns);
	print_memory(c, rss_before, c->wl->kind == WK_WINDOW ? (double)c->live * c->size : 0);
	return 0;
}

/* --- memory workloads ------------------------------------------------------------ */

static void *mem_alloc(struct ctx *c, size_t size)
{
	void *p = c->sk ? kmalloc(size, GFP_KERNEL) : malloc(size);

	if (!p)
		bench_die("allocation of %zu bytes failed", size);
	memset(p, 0x5a, size); /* every byte touched, as a program would */
	return p;
}

static void mem_free(struct ctx *c, void *p)
{
	if (c->sk)
		kfree(p);
	else
		free(p);
}

static void shuffle(uint32_t *v, uint32_t n, struct bench_rng *r)
{
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(bench_rng_next(r) % (i + 1));
		uint32_t t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

/* footprint and fragmentation: one plan, allocated, a share freed in random
 * order, reallocated; RSS and live bytes at the end, everything still live. */
static int run_fragment(struct ctx *c, uint64_t rss_before, bool ninety)
{
	uint32_t n = (uint32_t)c->wl->live, nfree = ninety ? n / 10 * 9 : n / 2;
	uint32_t *order = harness_map(n * sizeof(uint32_t));
	uint32_t *sizes = harness_map(n * sizeof(uint32_t));
	void **objs = c->table;
	struct bench_rng r = { 0xf00d1234ULL };
	size_t lo = 8, hi = ninety ? 512 : 1024, relo = ninety ? 512 : 8, rehi = ninety ? 2048 : 1024;
	double live = 0;
	uint64_t start;

	/* The plan first, so its memory is the harness's. */
	for (uint32_t i = 0; i < n; i++) {
		sizes[i] = (uint32_t)bench_rng_range(&r, lo, hi);
		order[i] = i;
	}
	shuffle(order, n, &r);
	start = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		objs[i] = mem_alloc(c, sizes[i]);
		live += sizes[i];
	}
	for (uint32_t k = 0; k < nfree; k++) {
		mem_free(c, objs[order[k]]);
		live -= sizes[order[k]];
	}
	for (uint32_t k = 0; k < nfree; k++) {
		size_t size = bench_rng_range(&r, relo, rehi);

		objs[order[k]] = mem_alloc(c, size);
		live += (double)size;
	}
	printf("calib %u\n", n + 2 * nfree);
	printf("sample %.4f 0\n", (double)(bench_now_ns() - start) / (double)(n + 2 * nfree));
	print_memory(c, rss_before, live);
	return 0;
}

/* steady: grow, churn, shrink, churn, regrow; RSS sampled along the way. */
static int run_steady(struct ctx *c, uint64_t rss_before)
{
	uint64_t target = c->wl->live, total, done = 0, every;
	void **objs = c->table;
	uint32_t *sizes = harness_map(target * sizeof(uint32_t));
	uint64_t nlive = 0, start = bench_now_ns();
	double live = 0;
	struct bench_rng r = { 0xabcdef12ULL };
	struct {
		int kind; /* 0 grow, 1 churn, 2 shrink */
		uint64_t ops;
	} phases[] = { { 0, target }, { 1, 2 * target }, { 2, target / 10 * 9 }, { 1, target }, { 0, target / 10 * 9 } };
	int points = 0;

	total = 0;
	for (size_t k = 0; k < sizeof(phases) / sizeof(phases[0]); k++)
		total += phases[k].ops;
	every = total / (BENCH_MAX_POINTS - 4);
	printf("point 0 %.0f 0\n", (double)(bench_rss_anon() - rss_before));
	for (size_t k = 0; k < sizeof(phases) / sizeof(phases[0]); k++) {
		for (uint64_t i = 0; i < phases[k].ops; i++) {
			if (phases[k].kind != 0 && nlive) { /* free a random live object */
				uint64_t j = ((bench_rng_next(&r) >> 32) * nlive) >> 32;

				mem_free(c, objs[j]);
				live -= sizes[j];
				objs[j] = objs[nlive - 1];
				sizes[j] = sizes[nlive - 1];
				nlive--;
			}
			if (phases[k].kind != 2 && nlive < target) {
				uint32_t size = (uint32_t)bench_rng_range(&r, 16, 1024);

				objs[nlive] = mem_alloc(c, size);
				sizes[nlive++] = size;
				live += size;
			}
			if (++done % every == 0 && points < BENCH_MAX_POINTS - 2) {
				uint64_t rss = bench_rss_anon();

				printf("point %.3f %.0f %.0f\n", (double)(bench_now_ns() - start) / 1e6,
				       (double)(rss > rss_before ? rss - rss_before : 0), live);
				points++;
			}
		}
	}
	printf("calib %llu\n", (unsigned long long)total);
	printf("sample %.4f 0\n", (double)(bench_now_ns() - start) / (double)total);
	print_memory(c, rss_before, live);
	return 0;
}

/* idr: the model of the kernel's IDA/IDR test (idr.c), over kmem_cache and
 * kmalloc or over malloc (the node constructor run on every malloc, as the
 * kernel harness's own cache does when its free list is empty). */
static void idr_node_ctor(void *p)
{
	memset(p, 0, IDR_NODE_BYTES);
}

static void *idr_sk_node_alloc(void *ctx)
{
	return kmem_cache_alloc(((struct ctx *)ctx)->cache, GFP_KERNEL);
}

static void idr_sk_node_free(void *ctx, void *node)
{
	kmem_cache_free(((struct ctx *)ctx)->cache, node);
}

static void *idr_sk_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return kmalloc(size, GFP_KERNEL);
}

static void idr_sk_free(void *ctx, void *p)
{
	(void)ctx;
	kfree(p);
}

static void *idr_libc_node_alloc(void *ctx)
{
	void *p = malloc(IDR_NODE_BYTES);

	(void)ctx;
	if (p)
		idr_node_ctor(p);
	return p;
}

static void idr_libc_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static void *idr_libc_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static int run_idr(struct ctx *c, uint64_t rss_before)
{
	struct idr_mem m = { .ctx = c };
	struct idr_scale s = { .idr_items = 10000, .conv_ids = 1000000, .random_toggles = 100000 };
	uint64_t took, calls = 0;

	/* The program loops on time (10 s, 2 s); the model on counts, scaled
	 * to the run's size. */
	s.find_iterations = c->wl->live >= 2 ? 400000 : c->wl->live ? 100000 : 10000;
	s.random_rounds = c->wl->live >= 2 ? 3 : 1;
	s.leak_iterations = c->wl->live >= 2 ? 20000 : c->wl->live ? 5000 : 500;
	if (!c->wl->live) {
		s.conv_ids = 100000;
		s.random_toggles = 10000;
	}
	if (c->sk) {
		c->cache = kmem_cache_create("idr_node", IDR_NODE_BYTES, 0, 0, idr_node_ctor);
		if (!c->cache) {
			printf("error creating the node cache failed\n");
			return 1;
		}
		m.node_alloc = idr_sk_node_alloc;
		m.node_free = idr_sk_node_free;
		m.small_alloc = idr_sk_alloc;
		m.small_free = idr_sk_free;
	} else {
		m.node_alloc = idr_libc_node_alloc;
		m.node_free = idr_libc_free;
		m.small_alloc = idr_libc_alloc;
		m.small_free = idr_libc_free;
	}
	took = idr_model_run(&m, &s, rss_before, &calls);
	printf("calib %llu\n", (unsigned long long)calls);
	printf("sample %.4f 0\n", (double)took / (double)(calls ? calls : 1));
	print_memory(c, rss_before, 0);
	return 0;
}

/*
 * release: memory back to the OS.  A live set of 16..1024 B objects is
 * allocated, all of it freed in random order, then the allocator is asked
 * to give memory back: slabkit uma_reclaim(UMA_RECLAIM_DRAIN_CPU) (every
 * cache of every front end), glibc and the peers malloc_trim(0) (a no-op
 * for allocators that do not implement it).  Resident memory is sampled
 * through all three phases; the mem line's HELD is what stays resident
 * after, its LIVE the live set at its peak, so held/live is the share kept.
 */
static int run_release(struct ctx *c, uint64_t rss_before)
{
	uint64_t n = c->wl->live, every = BENCH_MAX(2 * n / (BENCH_MAX_POINTS - 8), 1);
	void **objs = c->table;
	uint32_t *sizes = harness_map(n * sizeof(uint32_t));
	uint32_t *order = harness_map(n * sizeof(uint32_t));
	struct bench_rng r = { 0x5eed1234ULL };
	double live = 0, peak_live;
	uint64_t start, done = 0;
	int points = 0;

	for (uint32_t i = 0; i < n; i++) {
		sizes[i] = (uint32_t)bench_rng_range(&r, 16, 1024);
		order[i] = i;
	}
	shuffle(order, (uint32_t)n, &r);
	start = bench_now_ns();
#define RELEASE_POINT()                                                                                	do {                                                                                           		uint64_t rss = bench_rss_anon();                                                       		if (points < BENCH_MAX_POINTS - 2)                                                     			printf("point %.3f %.0f %.0f\n", (double)(bench_now_ns() - start) / 1e6,       			       (double)(rss > rss_before ? rss - rss_before : 0), live);              		points++;                                                                              	} while (0)
	RELEASE_POINT();
	for (uint64_t i = 0; i < n; i++) {
		objs[i] = mem_alloc(c, sizes[i]);
		live += sizes[i];
		if (++done % every == 0)
			RELEASE_POINT();
	}
	peak_live = live;
	for (uint64_t k = 0; k < n; k++) {
		mem_free(c, objs[order[k]]);
		live -= sizes[order[k]];
		if (++done % every == 0)
			RELEASE_POINT();
	}
	RELEASE_POINT(); /* everything freed, nothing asked back yet */
	uint64_t ops_end = bench_now_ns();
	if (c->sk)
		uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	else
		malloc_trim(0);
	RELEASE_POINT(); /* after the reclaim */
#undef RELEASE_POINT
	printf("calib %llu\n", (unsigned long long)(2 * n));
	printf("sample %.4f 0\n", (double)(ops_end - start) / (double)(2 * n));
	print_memory(c, rss_before, peak_live);
	return 0;
}

/* --- the child's entry ---------------------------------------------------------- */

static void *nothing(void *arg)
{
	return arg;
}

int workload_run(const struct child_params *p)
{
	static struct ctx ctx;
	struct ctx *c = &ctx;
	const struct workload *w = &p->wl;
	uint64_t rss_before;
	pthread_t tid;
	int rc;

	c->alloc = p->alloc;
	c->wl = w;
	c->sk = p->alloc->kind == ALLOC_SLABKIT;

	/* glibc's malloc skips its locks until a process starts a thread; a
	 * real program (and slabkit's maintenance thread) has threads, so every
	 * child is put in that mode first. */
	if (pthread_create(&tid, NULL, nothing, NULL) != 0)
		bench_die("pthread_create failed");
	pthread_join(tid, NULL);

	if (w->kind == WK_REPLAY)
		replay_prepare(p); /* the trace file and its tables are the harness's */
	if (w->kind == WK_WINDOW || w->kind == WK_FOOTPRINT || w->kind == WK_FRAGMENT || w->kind == WK_STEADY ||
	    w->kind == WK_RELEASE)
		c->table_bytes = w->live * sizeof(void *);
	else if (w->kind == WK_LARSON)
		c->table_bytes = LARSON_SLOTS * sizeof(void *);
	if (c->table_bytes)
		c->table = harness_map(c->table_bytes);
	malloc_trim(0);
	rss_before = bench_rss_anon();

	if (c->sk) {
		/* Timed cells run without the maintenance thread (it would steal
		 * one of the two CPUs at random); memory cells with the default
		 * one, as a program runs. */
		struct slabkit_config cfg = { .backend = p->alloc->name, .tick_ms = w->timed ? -1 : 0 };

		rc = slabkit_init(&cfg);
		if (rc != 0) {
			printf("error slabkit_init(%s): %s\n", p->alloc->name, strerror(-rc));
			return 1;
		}
		printf("percpu %s\n", slabkit_percpu_mode());
		if (w->api == API_BSD) {
			void *a = bsd_malloc(64, M_BENCH, M_WAITOK), *b = bsd_malloc(4096, M_BENCH, M_WAITOK);

			printf("usable %zu %zu\n", bsd_malloc_usable_size(a), bsd_malloc_usable_size(b));
			bsd_free(a, M_BENCH);
			bsd_free(b, M_BENCH);
		}
	}
	if (w->kind == WK_REPLAY)
		return replay_run(p, rss_before);
	if (ctx_setup(c) != 0)
		return 1;
	switch (w->kind) {
	case WK_FOOTPRINT:
		return run_fragment(c, rss_before, false);
	case WK_FRAGMENT:
		return run_fragment(c, rss_before, true);
	case WK_STEADY:
		return run_steady(c, rss_before);
	case WK_IDR:
		return run_idr(c, rss_before);
	case WK_RELEASE:
		return run_release(c, rss_before);
	default:
		return run_timed(c, p, rss_before);
	}
}
