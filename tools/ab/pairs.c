/*
 * A/B timing of the fast paths through the shared library: one process
 * per measurement, linked against whichever libslabkit.so LD_LIBRARY_PATH
 * names (tools/ab/ab_bench.sh alternates two builds and prints medians).
 * Prints "<workload> <ns per alloc+free pair>" for each workload: the best
 * of AB_REPS repetitions (default 5).  AB_BATCH (default 64, at most 64)
 * objects are allocated, then freed in reverse; AB_BATCH=1 is one object
 * at a time, slabkit-bench's pairs, whose time is the latency of the
 * chain from one free to the next allocation.
 * Arguments: [pairs per repetition] [one workload's name].
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <slabkit/slabkit.h>
#include <slabkit/linux/slab.h>
#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>

MALLOC_DEFINE(M_AB, "ab", "A/B bench");

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define BATCH_MAX 64
static void *volatile sink;
static int reps = 5, batch = BATCH_MAX;

#define TIME_PAIRS(name, alloc, release)                                             \
	if (!only || !strcmp(only, name))                                            \
	do {                                                                         \
		void *v[BATCH_MAX];                                                  \
		double best = 1e30;                                                  \
		for (int rep = 0; rep < reps; rep++) {                               \
			double t0 = now_ns();                                        \
			for (long it = 0; it < iters / batch; it++) {                \
				for (int i = 0; i < batch; i++)                      \
					v[i] = (alloc);                              \
				sink = v[batch - 1];                                 \
				for (int i = batch - 1; i >= 0; i--)                 \
					release(v[i]);                               \
			}                                                            \
			double ns = (now_ns() - t0) / (double)(iters / batch * batch); \
			if (ns < best)                                               \
				best = ns;                                           \
		}                                                                    \
		printf("%s %.3f\n", name, best);                                     \
	} while (0)

static struct kmem_cache *cache;
static uma_zone_t zone, zone_limited;
static void kc_free(void *p) { kmem_cache_free(cache, p); }
static void z_free(void *p) { uma_zfree(zone, p); }
static void zl_free(void *p) { uma_zfree(zone_limited, p); }
static void b_free(void *p) { bsd_free(p, M_AB); }

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 1000000;
	const char *only = argc > 2 ? argv[2] : NULL; /* one workload (instruction counts) */
	if (getenv("AB_REPS"))
		reps = atoi(getenv("AB_REPS")) > 0 ? atoi(getenv("AB_REPS")) : reps;
	if (getenv("AB_BATCH"))
		batch = atoi(getenv("AB_BATCH")) >= 1 && atoi(getenv("AB_BATCH")) <= BATCH_MAX ? atoi(getenv("AB_BATCH")) : batch;

	if (slabkit_init(NULL) != 0)
		return 1;
	cache = kmem_cache_create("ab64", 64, 0, 0, NULL);
	zone = uma_zcreate("ab64z", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	/* The same zone with a limit far above the live set (issue 8, target 4). */
	zone_limited = uma_zcreate("ab64zl", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	uma_zone_set_max(zone_limited, 1 << 20);
	TIME_PAIRS("glibc64", malloc(64), free); /* the baseline, in the same process */
	TIME_PAIRS("kmalloc64", kmalloc(64, GFP_KERNEL), kfree);
	TIME_PAIRS("cache64", kmem_cache_alloc(cache, GFP_KERNEL), kc_free);
	TIME_PAIRS("uma64", uma_zalloc(zone, M_WAITOK), z_free);
	TIME_PAIRS("uma64_limit", uma_zalloc(zone_limited, M_WAITOK), zl_free);
	TIME_PAIRS("malloc9_64", bsd_malloc(64, M_AB, M_WAITOK), b_free);
	kmem_cache_destroy(cache);
	uma_zdestroy(zone);
	uma_zdestroy(zone_limited);
	slabkit_fini();
	return 0;
}
