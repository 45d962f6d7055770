/*
 * slabkit_bench: the two-thread workloads.  Included only by
 * tools/slabkit_bench.c.
 *
 * threads-local:  two threads, each doing the 64 B kmem_cache pair (glibc:
 *                 malloc(64)/free) on the same cache; the figure is ns per
 *                 pair per thread (mean of the two threads' own clocks).
 * threads-remote: a producer allocates 64 B objects and hands them through
 *                 a single-producer/single-consumer ring to a consumer that
 *                 frees them, so every free is a remote (cross-thread and,
 *                 pinned, cross-CPU) free; the figure is wall ns per pair
 *                 (first thread start to last thread end, over n pairs).
 *
 * Threads are created outside the timed region, pinned to two different
 * CPUs when the process may use two (so "remote" really crosses CPUs and
 * the two "local" threads really run side by side), and start together
 * from a barrier.  On a machine with as many CPUs as threads (2 here),
 * anything else running lands on one of them: each thread reports how much
 * of its time it lost (bench_lost_share) so such repetitions can be rerun.
 */
#ifndef SLABKIT_BENCH_THREADS_H
#define SLABKIT_BENCH_THREADS_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

#include "bench_loops.h"

#define BENCH_THREADS 2
/* Ring capacity (a power of two): enough that the threads rarely wait on
 * each other, small enough that objects stay in flight only briefly. */
#define BENCH_RING_SLOTS 256

struct bench_thread_arg {
	const struct bench_target *target;
	uint64_t pairs;
	pthread_barrier_t *start_line;
	/* Written by the thread, read after join: */
	uint64_t start_ns, end_ns;
	double lost_share; /* bench_lost_share() over the timed part */
};

/* Synchronization: head is written only by the producer and tail only by
 * the consumer, each published with release and read with acquire, so a
 * slot's pointer is visible before the index that covers it.  Each side
 * keeps a private copy of the other's index and rereads the shared one
 * only when that copy says full (or empty), so the index lines move
 * between CPUs once per burst rather than once per object: the harness
 * should cost little next to the remote free it measures. */
struct bench_ring {
	_Alignas(64) uint64_t head; /* next slot the producer fills */
	uint64_t producer_seen_tail; /* producer-private */
	_Alignas(64) uint64_t tail; /* next slot the consumer empties */
	uint64_t consumer_seen_head; /* consumer-private */
	_Alignas(64) void *slots[BENCH_RING_SLOTS];
};

struct bench_pc_arg {
	struct bench_thread_arg thread;
	struct bench_ring *ring;
};

/* Back off while the other side catches up; yield now and then so a
 * machine with fewer free CPUs than threads still makes progress. */
static inline void bench_ring_wait(unsigned *spins)
{
	if (++*spins % 128 == 0)
		sched_yield();
	else
		__asm__ volatile("" ::: "memory");
}

/* Waiting for room or for objects, each side asks for a whole burst
 * (BENCH_RING_BURST, or what is left), so that a slightly faster side does
 * not drag the index lines across CPUs once per object. */
#define BENCH_RING_BURST 32

static inline void bench_ring_push(struct bench_ring *ring, void *obj)
{
	uint64_t head = ring->head;
	unsigned spins = 0;

	if (bench_unlikely(head - ring->producer_seen_tail == BENCH_RING_SLOTS)) {
		for (;;) {
			ring->producer_seen_tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
			if (BENCH_RING_SLOTS - (head - ring->producer_seen_tail) >= BENCH_RING_BURST)
				break;
			bench_ring_wait(&spins);
		}
	}
	ring->slots[head & (BENCH_RING_SLOTS - 1)] = obj;
	__atomic_store_n(&ring->head, head + 1, __ATOMIC_RELEASE);
}

/* remaining: objects the consumer still expects, including this one. */
static inline void *bench_ring_pop(struct bench_ring *ring, uint64_t remaining)
{
	uint64_t tail = ring->tail;
	unsigned spins = 0;
	void *obj;

	if (bench_unlikely(ring->consumer_seen_head == tail)) {
		uint64_t want = BENCH_MIN(remaining, (uint64_t)BENCH_RING_BURST);

		for (;;) {
			ring->consumer_seen_head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
			if (ring->consumer_seen_head - tail >= want)
				break;
			bench_ring_wait(&spins);
		}
	}
	obj = ring->slots[tail & (BENCH_RING_SLOTS - 1)];
	__atomic_store_n(&ring->tail, tail + 1, __ATOMIC_RELEASE);
	return obj;
}

static void *bench_local_thread(void *p)
{
	struct bench_thread_arg *arg = p;
	const struct bench_target *t = arg->target;
	struct bench_sched_mark from, to;
	uint64_t took;

	pthread_barrier_wait(arg->start_line);
	bench_sched_mark(&from);
	arg->start_ns = bench_now_ns();
	took = t->is_glibc ? loop_malloc_fixed_single(64, arg->pairs)
			   : loop_kcache_single(t->cache64, arg->pairs);
	arg->end_ns = arg->start_ns + took;
	bench_sched_mark(&to);
	arg->lost_share = bench_lost_share(&from, &to);
	return NULL;
}

static void *bench_producer_thread(void *p)
{
	struct bench_pc_arg *arg = p;
	const struct bench_target *t = arg->thread.target;
	uint64_t n = arg->thread.pairs;
	struct bench_sched_mark from, to;

	pthread_barrier_wait(arg->thread.start_line);
	bench_sched_mark(&from);
	arg->thread.start_ns = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uintptr_t *obj = t->is_glibc ? malloc(64) : kmem_cache_alloc(t->cache64, GFP_KERNEL);

		if (bench_unlikely(!obj))
			bench_alloc_failed("producer");
		obj[0] = (uintptr_t)i;
		bench_ring_push(arg->ring, obj);
	}
	arg->thread.end_ns = bench_now_ns();
	bench_sched_mark(&to);
	arg->thread.lost_share = bench_lost_share(&from, &to);
	return NULL;
}

static void *bench_consumer_thread(void *p)
{
	struct bench_pc_arg *arg = p;
	const struct bench_target *t = arg->thread.target;
	uint64_t n = arg->thread.pairs;
	struct bench_sched_mark from, to;

	pthread_barrier_wait(arg->thread.start_line);
	bench_sched_mark(&from);
	arg->thread.start_ns = bench_now_ns();
	if (t->is_glibc) {
		for (uint64_t i = 0; i < n; i++)
			free(bench_ring_pop(arg->ring, n - i));
	} else {
		for (uint64_t i = 0; i < n; i++)
			kmem_cache_free(t->cache64, bench_ring_pop(arg->ring, n - i));
	}
	arg->thread.end_ns = bench_now_ns();
	bench_sched_mark(&to);
	arg->thread.lost_share = bench_lost_share(&from, &to);
	return NULL;
}

/* The index-th CPU this process may run on, or -1 if there are fewer. */
static int bench_allowed_cpu(int index)
{
	cpu_set_t allowed;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &allowed) && index-- == 0)
			return cpu;
	return -1;
}

/* Starts fn on the slot-th allowed CPU; unpinned when the process may use
 * fewer than BENCH_THREADS CPUs (the figures then mean less, and
 * bench_threads_pinned() says so). */
static void bench_start_thread(pthread_t *tid, int slot, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int cpu = bench_allowed_cpu(BENCH_THREADS - 1) >= 0 ? bench_allowed_cpu(slot) : -1;
	int rc;

	pthread_attr_init(&attr);
	if (cpu >= 0) {
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

static bool bench_threads_pinned(void)
{
	return bench_allowed_cpu(BENCH_THREADS - 1) >= 0;
}

/* n pairs in each of two threads; returns the mean of the threads' own
 * elapsed times, so dividing by n gives ns per pair per thread.
 * *lost_share: the larger bench_lost_share() of the two threads. */
static uint64_t bench_threads_local(const struct bench_target *t, uint64_t n, double *lost_share)
{
	pthread_barrier_t start_line;
	struct bench_thread_arg args[BENCH_THREADS];
	pthread_t tids[BENCH_THREADS];
	uint64_t sum = 0;

	pthread_barrier_init(&start_line, NULL, BENCH_THREADS);
	for (int i = 0; i < BENCH_THREADS; i++) {
		args[i] = (struct bench_thread_arg){ .target = t, .pairs = n, .start_line = &start_line };
		bench_start_thread(&tids[i], i, bench_local_thread, &args[i]);
	}
	for (int i = 0; i < BENCH_THREADS; i++) {
		pthread_join(tids[i], NULL);
		sum += args[i].end_ns - args[i].start_ns;
	}
	pthread_barrier_destroy(&start_line);
	*lost_share = BENCH_MAX(args[0].lost_share, args[1].lost_share);
	return sum / BENCH_THREADS;
}

/* n objects allocated by one thread and freed by the other; returns the
 * wall time from the first start to the last end. */
static uint64_t bench_threads_remote(const struct bench_target *t, uint64_t n, double *lost_share)
{
	static struct bench_ring ring; /* reset below; static keeps its alignment simple */
	pthread_barrier_t start_line;
	struct bench_pc_arg producer, consumer;
	pthread_t producer_tid, consumer_tid;
	uint64_t first_start, last_end;

	memset(&ring, 0, sizeof(ring));
	pthread_barrier_init(&start_line, NULL, 2);
	producer = (struct bench_pc_arg){ { .target = t, .pairs = n, .start_line = &start_line }, &ring };
	consumer = producer;
	bench_start_thread(&producer_tid, 0, bench_producer_thread, &producer);
	bench_start_thread(&consumer_tid, 1, bench_consumer_thread, &consumer);
	pthread_join(producer_tid, NULL);
	pthread_join(consumer_tid, NULL);
	pthread_barrier_destroy(&start_line);
	first_start = BENCH_MIN(producer.thread.start_ns, consumer.thread.start_ns);
	last_end = BENCH_MAX(producer.thread.end_ns, consumer.thread.end_ns);
	*lost_share = BENCH_MAX(producer.thread.lost_share, consumer.thread.lost_share);
	return last_end - first_start;
}

#endif /* SLABKIT_BENCH_THREADS_H */
