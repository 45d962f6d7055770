/*
 * slabkit_bench: the timed loops.  Each loop performs n alloc+free pairs
 * with one API and returns the nanoseconds they took.  Included only by
 * tools/slabkit_bench.c.
 *
 * What must stay true for the figures to mean anything:
 * - the loop body is the API call and nothing else of weight: no indirect
 *   call, no branch on the backend, no size computation (mixed sizes come
 *   from a pre-generated table, the same one for glibc);
 * - every object is written (one word) and escapes through bench_escape(),
 *   so the compiler can neither drop a malloc/free pair nor hoist it;
 * - the same pattern is generated for glibc and for slabkit from one macro,
 *   so the baseline runs exactly the code the backends run.
 */
#ifndef SLABKIT_BENCH_LOOPS_H
#define SLABKIT_BENCH_LOOPS_H

#include <stdint.h>
#include <stdlib.h>

#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "bench_util.h"

/* Objects held live at once by the batch variants. */
#define BENCH_BATCH 64
/* Length of the mixed-size table (a power of two, indexed by i & mask). */
#define BENCH_MIXED_SIZES 8192
#define BENCH_MIXED_MIN 8
#define BENCH_MIXED_MAX 4096

/* One allocator under test: glibc, or slabkit running one backend.  The
 * caches and zones exist between that backend's slabkit_init() and
 * slabkit_fini(); for glibc they stay NULL. */
struct bench_target {
	const char *name; /* "glibc" or a backend name */
	int is_glibc;
	struct kmem_cache *cache64, *cache256;
	uma_zone_t zone64, zone256;
};

bench_cold static void bench_alloc_failed(const char *api)
{
	bench_die("%s returned NULL during a timed loop", api);
}

/*
 * Defines loop_<api>_single (one live object at a time) and loop_<api>_batch
 * (allocate BENCH_BATCH, then free them in allocation order; n is rounded
 * up to a whole batch by the caller).  ALLOC(ctx, i) and FREE(ctx, p) are
 * the API under test.
 */
#define BENCH_DEFINE_LOOPS(api, ctx_type, ALLOC, FREE)                                      \
	bench_noinline static uint64_t loop_##api##_single(ctx_type ctx, uint64_t n)           \
	{                                                                                   \
		uint64_t start = bench_now_ns();                                            \
		for (uint64_t i = 0; i < n; i++) {                                          \
			uintptr_t *obj = ALLOC(ctx, i);                                     \
			if (bench_unlikely(!obj))                                              \
				bench_alloc_failed(#api);                                   \
			obj[0] = (uintptr_t)i;                                              \
			bench_escape(obj);                                                  \
			FREE(ctx, obj);                                                     \
		}                                                                           \
		return bench_now_ns() - start;                                              \
	}                                                                                   \
	bench_noinline static uint64_t loop_##api##_batch(ctx_type ctx, uint64_t n)            \
	{                                                                                   \
		void *objs[BENCH_BATCH];                                                    \
		uint64_t start = bench_now_ns();                                            \
		for (uint64_t base = 0; base < n; base += BENCH_BATCH) {                    \
			for (unsigned j = 0; j < BENCH_BATCH; j++) {                        \
				uintptr_t *obj = ALLOC(ctx, base + j);                      \
				if (bench_unlikely(!obj))                                      \
					bench_alloc_failed(#api);                           \
				obj[0] = (uintptr_t)j;                                      \
				objs[j] = obj;                                              \
			}                                                                   \
			bench_escape(objs);                                                 \
			for (unsigned j = 0; j < BENCH_BATCH; j++)                          \
				FREE(ctx, objs[j]);                                         \
		}                                                                           \
		return bench_now_ns() - start;                                              \
	}

#define BENCH_KCACHE_ALLOC(cache, i) ((uintptr_t *)kmem_cache_alloc((cache), GFP_KERNEL))
#define BENCH_KCACHE_FREE(cache, obj) kmem_cache_free((cache), (obj))
BENCH_DEFINE_LOOPS(kcache, struct kmem_cache *, BENCH_KCACHE_ALLOC, BENCH_KCACHE_FREE)

#define BENCH_UMA_ALLOC(zone, i) ((uintptr_t *)uma_zalloc((zone), M_WAITOK))
#define BENCH_UMA_FREE(zone, obj) uma_zfree((zone), (obj))
BENCH_DEFINE_LOOPS(uma, uma_zone_t, BENCH_UMA_ALLOC, BENCH_UMA_FREE)

#define BENCH_KMALLOC_MIXED_ALLOC(sizes, i) \
	((uintptr_t *)kmalloc((sizes)[(i) & (BENCH_MIXED_SIZES - 1)], GFP_KERNEL))
#define BENCH_KMALLOC_FREE(sizes, obj) kfree(obj)
BENCH_DEFINE_LOOPS(kmalloc_mixed, const uint16_t *, BENCH_KMALLOC_MIXED_ALLOC, BENCH_KMALLOC_FREE)

/* The glibc baselines: the same patterns over malloc/free. */
#define BENCH_MALLOC_FIXED_ALLOC(size, i) ((uintptr_t *)malloc(size))
#define BENCH_MALLOC_FREE(ctx, obj) free(obj)
BENCH_DEFINE_LOOPS(malloc_fixed, size_t, BENCH_MALLOC_FIXED_ALLOC, BENCH_MALLOC_FREE)

#define BENCH_MALLOC_MIXED_ALLOC(sizes, i) \
	((uintptr_t *)malloc((sizes)[(i) & (BENCH_MIXED_SIZES - 1)]))
BENCH_DEFINE_LOOPS(malloc_mixed, const uint16_t *, BENCH_MALLOC_MIXED_ALLOC, BENCH_MALLOC_FREE)

#endif /* SLABKIT_BENCH_LOOPS_H */
