/*
 * Helpers shared by the SLAB backend's own tests (tests/backend_slab_*.c):
 * from a kmem_cache to the core cache and the backend's state, and the
 * entry count of CPU 0's array (the tests pin themselves to CPU 0).
 */
#ifndef SLABKIT_SLAB_TEST_H
#define SLABKIT_SLAB_TEST_H

#include <sched.h>
#include <stdio.h>

#include <slabkit/linux/slab.h>

#include "backends/slab/slab_int.h"

static inline struct sk_cache *sk_of(struct kmem_cache *s)
{
	return (struct sk_cache *)s;
}

static inline struct slab_cache *sc_of(struct kmem_cache *s)
{
	return slab_cache_of(sk_of(s));
}

static inline uint32_t cpu0_top(struct kmem_cache *s)
{
	return slab_slot_top(sk_pcpu_slot(sk_of(s), 0));
}

/* Pin the test to CPU 0, so that "this CPU's array" is slot 0; false (with
 * the reason printed) if the kernel refuses. */
static inline bool slab_test_pin_cpu0(void)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	if (sched_setaffinity(0, sizeof(one), &one) != 0) {
		perror("sched_setaffinity");
		return false;
	}
	return true;
}

#endif
