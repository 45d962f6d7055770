/*
 * Helpers shared by the SLAB backend's own tests (tests/backend_slab_*.c):
 * from a kmem_cache to the core cache and the backend's state, and the
 * entry count of CPU 0's array (the tests pin themselves to CPU 0).
 */
#ifndef SLABKIT_SLAB_TEST_H
#define SLABKIT_SLAB_TEST_H

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

#endif
