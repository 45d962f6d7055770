/*
 * slabkit-bench: the "idr" workload (idr.c), a model of the allocations of
 * the Linux kernel's IDA/IDR test program.  Kept apart from workloads.c
 * because it includes liburcu's call_rcu header, whose struct rcu_head
 * <slabkit/linux/slab.h> defines too.
 */
#ifndef SLABKIT_BENCH_IDR_H
#define SLABKIT_BENCH_IDR_H

#include <stddef.h>
#include <stdint.h>

#define IDR_NODE_BYTES 576 /* the kernel's xa_node / radix_tree_node on 64-bit */
#define IDR_THREADS 20     /* the program's thread tests */

/* The allocator under test. */
struct idr_mem {
	void *(*node_alloc)(void *ctx);            /* a constructed 576-byte node */
	void (*node_free)(void *ctx, void *node);  /* from the RCU worker */
	void *(*small_alloc)(void *ctx, size_t size);
	void (*small_free)(void *ctx, void *p);
	void *ctx;
};

struct idr_scale {
	unsigned long idr_items;     /* phase idr: 10,000 */
	uint64_t find_iterations;    /* phase find: store+erase pairs per direction */
	unsigned long conv_ids;      /* phase conv: 1,000,000 */
	unsigned random_rounds;      /* phase random: rounds per thread */
	unsigned random_toggles;     /* ... of 100,000 toggles */
	uint64_t leak_iterations;    /* phase leak: per thread */
};

/* Runs the five phases; prints "idr" and "point" lines; returns the ns and
 * sets *calls to the allocations and frees made. */
uint64_t idr_model_run(const struct idr_mem *mem, const struct idr_scale *scale, uint64_t rss_before,
		       uint64_t *calls);

#endif
