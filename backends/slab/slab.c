/*
 * SLAB: Bonwick's slab allocator as Linux mm/slab.c ran it (2.6 .. 6.7).
 *
 * Files:
 *   slab_int.h     structures, invariants, the slab descriptor
 *   slab_layout.c  object layout, slab order and colour, growing and
 *                  destroying slabs, the per-node lists, destroy
 *   slab_alloc.c   allocation and free slow paths (refill, flush, alien)
 *   slab_reap.c    reaping, shrinking, tunables, report figures
 *
 * Allocation order: this CPU's array (core's fast path) -> the node's shared
 * array -> partial slabs -> free slabs -> a new slab from the page provider.
 *
 * Lock order for the whole backend (each file repeats the part it uses):
 *   tune_lock (per cache: tune, shrink, tick, destroy)
 *     -> slot lock (core's per-CPU slot: trylock on slow paths, lock_cpu
 *        for drains)
 *       -> alien lock (per node pair) -> node list_lock
 * Slot lock and alien lock are never held together.  No backend lock is
 * held across the page provider's allocation, a ctor or UMA init; slabs are
 * destroyed (fini, page free) with at most tune_lock held.
 */
#include "slab_int.h"

/* fork(): the lock order above as levels: 0 tune_lock (before the slot
 * locks), 1 every alien lock, 2 every node list_lock. */
static void bslab_fork_lock(struct sk_cache *c, unsigned level, bool lock)
{
	struct slab_cache *sc = c ? slab_cache_of(c) : NULL;
	int (*op)(pthread_mutex_t *) = lock ? pthread_mutex_lock : pthread_mutex_unlock;

	if (!sc)
		return;
	if (level == 0)
		op(&sc->tune_lock);
	for (unsigned n = 0; n < sc->nr_nodes; n++) {
		struct slab_node *node = sc->node[n];
		if (!node)
			continue;
		if (level == 1) {
			for (unsigned m = 0; m < sc->nr_nodes; m++)
				if (node->alien[m])
					op(&node->alien[m]->lock);
		} else if (level == 2) {
			op(&node->list_lock);
		}
	}
}

const struct sk_backend_ops sk_slab_ops = {
	.name = "slab",
	.caps = SK_CAP_PERCPU | SK_CAP_NODE_LISTS | SK_CAP_TUNABLES | SK_CAP_COLOUR | SK_CAP_STRIDE,
	.pcpu_kind = SK_PCPU_ARRAY,
	.free_tag = SK_TAG_NODE,
	.cache_create = bslab_cache_create,
	.pcpu_init = bslab_pcpu_init,
	.cache_destroy = bslab_cache_destroy,
	.alloc = bslab_alloc,
	.free = bslab_free,
	.shrink = bslab_shrink,
	.tick = bslab_tick,
	.cache_info = bslab_cache_info,
	.validate = bslab_validate,
	.tune = bslab_tune,
	.fork_lock = bslab_fork_lock,
};
