/*
 * SLUB caches: layout and slab order, shrinking, destruction, reports and
 * tunables; the backend's one exported symbol, sk_slub_ops, at the end.
 *
 * Lock order: slot lock -> list_lock -> page provider (slub.h).
 */
#include <errno.h>
#include <string.h>

#include "slub.h"

/* --- layout --- */

static unsigned order_objects(unsigned order, size_t size)
{
	size_t n = (SK_PAGE_SIZE << order) / size;
	return n > SLUB_MAX_OBJS_PER_SLAB ? SLUB_MAX_OBJS_PER_SLAB : (unsigned)n;
}

static unsigned fls32(unsigned x)
{
	return x ? 32u - (unsigned)__builtin_clz(x) : 0;
}

static unsigned ilog2_size(size_t x)
{
	return 63u - (unsigned)__builtin_clzll((unsigned long long)x);
}

/* The smallest order in [min_order, max_order] wasting at most
 * 1/fract_leftover of the slab; max_order + 1 if none does. */
static unsigned calc_slab_order(size_t size, unsigned min_order, unsigned max_order,
				unsigned fract_leftover)
{
	unsigned order;

	for (order = min_order; order <= max_order; order++) {
		size_t slab_size = SK_PAGE_SIZE << order;
		if (slab_size % size <= slab_size / fract_leftover)
			break;
	}
	return order;
}

/* calculate_order: enough objects per slab for the CPU count (more CPUs,
 * more objects, fewer trips to the node lists), little waste, and no more
 * than SLUB_MAX_ORDER unless a single object needs more. */
static unsigned calculate_order(size_t size)
{
	unsigned nr_cpus = sk_numa_cpus();
	unsigned min_objects = 4 * (fls32(nr_cpus ? nr_cpus : 1) + 1);
	unsigned max_objects = order_objects(SLUB_MAX_ORDER, size);
	unsigned min_order;

	if (max_objects < 1)
		max_objects = 1;
	if (min_objects > max_objects)
		min_objects = max_objects;
	min_order = sk_order_for_bytes((size_t)min_objects * size);

	/* Waste at most 1/16, then 1/8, 1/4, 1/2 (the last accepts anything
	 * that fits at SLUB_MAX_ORDER). */
	for (unsigned fraction = 16; fraction > 1; fraction /= 2) {
		unsigned order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction);
		if (order <= SLUB_MAX_ORDER)
			return order;
	}
	return sk_order_for_bytes(size);
}

/* SLUB's per-CPU partial sizing: fewer objects for bigger ones, and the
 * limit in slabs assuming they are half full. */
static uint32_t default_cpu_partial(size_t size)
{
	if (size >= SK_PAGE_SIZE)
		return 6;
	if (size >= 1024)
		return 24;
	if (size >= 256)
		return 52;
	return 120;
}

static uint32_t cpu_partial_slabs_for(uint32_t cpu_partial, uint32_t objects)
{
	return (uint32_t)(((uint64_t)cpu_partial * 2 + objects - 1) / objects);
}

static int slub_cache_create(struct sk_cache *c)
{
	size_t size, offset;

	/* Any size core accepts (up to 64 MiB, the same bound on every
	 * backend): a large object gets a slab of one object at the smallest
	 * order that holds it, as SLUB does above slub_max_order. */
	if ((c->flags & SK_CACHE_TYPESAFE_BY_RCU) && c->use_freeptr_offset) {
		/* The creator names a word that readers of freed objects do
		 * not rely on (kmem_cache_args.freeptr_offset). */
		size = SK_ALIGN_UP(SK_MAX((size_t)c->object_size, sizeof(void *)), (size_t)c->align);
		offset = c->freeptr_offset;
	} else if (c->ctor || c->init || (c->flags & (SK_CACHE_ZINIT | SK_CACHE_TYPESAFE_BY_RCU))) {
		/* Free objects keep their constructed contents (or a new
		 * slab's zeroes), and TYPESAFE_BY_RCU readers may still read
		 * them: the free pointer goes after the object. */
		offset = SK_ALIGN_UP((size_t)c->object_size, 8);
		size = SK_ALIGN_UP(offset + sizeof(void *), (size_t)c->align);
	} else {
		/* In the middle, away from the edges an overrun would hit. */
		size = SK_ALIGN_UP(SK_MAX((size_t)c->object_size, sizeof(void *)), (size_t)c->align);
		offset = ((size_t)c->object_size / 2) & ~(size_t)7;
	}

	unsigned nodes = sk_numa_nodes();
	if (nodes < 1)
		nodes = 1;
	if (nodes > SK_MAX_NODES)
		nodes = SK_MAX_NODES;
	size_t bytes = sizeof(struct slub_cache) + nodes * sizeof(struct slub_node);
	struct slub_cache *s = sk_meta_zalloc(bytes);
	if (!s)
		return -ENOMEM;
	s->meta_bytes = bytes;
	s->nr_nodes = nodes;
	s->order = calculate_order(size);
	s->objects = order_objects(s->order, size);
	s->min_order = sk_order_for_bytes(size);
	s->min_objects = order_objects(s->min_order, size);
	s->min_partial = SK_MIN(SLUB_MAX_PARTIAL, SK_MAX(SLUB_MIN_PARTIAL, ilog2_size(size) / 2));
	s->cpu_partial = default_cpu_partial(size);
	s->cpu_partial_slabs = cpu_partial_slabs_for(s->cpu_partial, s->objects);
	for (unsigned i = 0; i < nodes; i++) {
		pthread_mutex_init(&s->node[i].list_lock, NULL);
		sk_list_init(&s->node[i].partial);
	}

	/* The sheaf: enough objects that a burst of frees in any order
	 * stays on the fast path, fewer for big objects (Linux's sheaf
	 * capacity is a per-cache choice too). */
	s->sheaf_room = size <= 256 ? 64 : size <= 1024 ? 32 : size <= 4096 ? 16 : 8;
	s->sheaf_capacity = (c->flags & SK_CACHE_NOBUCKET) ? 0 : s->sheaf_room;
	s->barn_sheaves = SLUB_BARN_SHEAVES;
	c->size = (uint32_t)size;
	c->free_offset = (uint32_t)offset;
	c->pcpu_extra = (uint32_t)(sizeof(struct slub_cpu) + s->sheaf_room * sizeof(void *));
	c->backend = s;
	return 0;
}

/* --- shrinking --- */

#define SHRINK_PROMOTE_MAX 32 /* as SLUB: slabs with at most this many free objects are sorted */

/*
 * Discard the empty slabs of one node list (keeping `keep` partial slabs
 * for TRIM), and with `sort` move the fullest slabs to the head, as
 * __kmem_cache_do_shrink does: fewer free objects first, so allocations
 * fill nearly full slabs and the emptiest ones get a chance to empty.
 */
static void shrink_node(struct sk_cache *c, struct slub_node *n, uint64_t keep, bool sort)
{
	struct sk_list *promote[SHRINK_PROMOTE_MAX] = { NULL };
	struct sk_list *discard = NULL, *link, *next;
	struct sk_page *slab;
	const bool nofree = c->flags & SK_CACHE_NOFREE;

	pthread_mutex_lock(&n->list_lock);
	sk_list_for_each_safe(link, next, &n->partial) {
		union slub_counters ctr = slub_counters(slab = slub_slab_of(link));
		uint32_t free = ctr.objects - ctr.inuse;

		if (!ctr.inuse && !nofree && n->nr_partial > keep) {
			slub_remove_partial(n, slab);
			slub_chain_push(&discard, slab);
		} else if (sort && free && free <= SHRINK_PROMOTE_MAX) {
			slub_remove_partial(n, slab);
			slub_chain_push(&promote[free - 1], slab);
		}
	}
	/* Each bucket is a stack (reverse list order); adding its slabs at
	 * the head one by one restores list order, fullest bucket first. */
	for (int i = SHRINK_PROMOTE_MAX - 1; i >= 0; i--)
		while ((slab = slub_chain_pop(&promote[i])))
			slub_add_partial(n, slab, false);
	pthread_mutex_unlock(&n->list_lock);

	slub_discard_list(c, discard);
}

/* flush_all for one CPU: its active slab and its partial list go back to
 * the node lists.  Waits for the slot. */
static void flush_cpu(struct sk_cache *c, unsigned cpu)
{
	struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
	struct sk_list *list, *discard = NULL;
	struct sk_page *empty = NULL;

	slub_sheaf_flush(c, slot, sk_pcpu_array_count(slot), &discard);
	if (slub_cpu_of(slot)->active)
		empty = slub_deactivate(c, slot);
	list = slub_cpu_partial_detach(slot);
	sk_pcpu_unlock(slot);
	if (empty)
		slub_discard_slab(c, empty);
	slub_discard_list(c, discard);
	slub_flush_partials(c, list);
}

static uint64_t slub_shrink(struct sk_cache *c, enum sk_shrink_level level)
{
	struct slub_cache *s = slub_of(c);

	/* The barns first: the slabs their objects go back to may then be
	 * adopted by this CPU's partial list, which DRAIN_CPU flushes next.
	 * A trim gives back only a barn no allocation used since the last
	 * one. */
	for (unsigned i = 0; i < s->nr_nodes; i++)
		slub_barn_flush(c, &s->node[i], level == SK_SHRINK_TRIM);
	if (level == SK_SHRINK_DRAIN_CPU && slub_has_pcpu(c))
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
			flush_cpu(c, cpu);
	uint64_t keep = level == SK_SHRINK_TRIM ? sk_load(&s->min_partial) : 0;
	for (unsigned i = 0; i < s->nr_nodes; i++)
		shrink_node(c, &s->node[i], keep, level == SK_SHRINK_DRAIN_CPU);
	return sk_load(&c->ctr.slabs);
}

/* The maintenance tick: a barn no allocation took from since the last tick
 * goes back to its slabs.  (Linux empties barns only when it shrinks;
 * here an idle cache would otherwise keep a barn's slabs for good, and
 * SLUB gives memory back eagerly.) */
static void slub_tick(struct sk_cache *c)
{
	struct slub_cache *s = slub_of(c);

	for (unsigned i = 0; i < s->nr_nodes; i++)
		if (sk_load(&s->node[i].barn_count))
			slub_barn_flush(c, &s->node[i], true);
}

static void slub_cache_destroy(struct sk_cache *c)
{
	struct slub_cache *s = slub_of(c);

	if (!s)
		return;
	/* Core drained every CPU just before; a slot still holding something
	 * would mean a caller raced the destruction.  Give it back anyway. */
	if (slub_has_pcpu(c))
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
			struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
			if (slub_cpu_of(slot)->active || slub_cpu_of(slot)->partial ||
			    sk_pcpu_array_count(slot))
				flush_cpu(c, cpu);
		}
	for (unsigned i = 0; i < s->nr_nodes; i++)
		slub_barn_flush(c, &s->node[i], false);
	for (unsigned i = 0; i < s->nr_nodes; i++) {
		struct slub_node *n = &s->node[i];
		struct sk_page *slab;

		/* NOFREE or not: the cache goes away.  No caller can reach the
		 * cache any more; the lock is taken for the list's invariants,
		 * and dropped around each discard (UMA fini is user code). */
		pthread_mutex_lock(&n->list_lock);
		while ((slab = slub_first_partial(n))) {
			slub_remove_partial(n, slab);
			pthread_mutex_unlock(&n->list_lock);
			slub_discard_slab(c, slab);
			pthread_mutex_lock(&n->list_lock);
		}
		pthread_mutex_unlock(&n->list_lock);
		pthread_mutex_destroy(&n->list_lock);
		if (n->barn)
			sk_meta_free(n->barn, (size_t)n->barn_room * sizeof(void *));
	}
	c->backend = NULL;
	sk_meta_free(s, s->meta_bytes);
}

/* --- reports --- */

void slub_inspect(struct sk_cache *c, struct slub_inspect *out)
{
	struct slub_cache *s = slub_of(c);

	memset(out, 0, sizeof(*out));
	out->order = s->order;
	out->objects = s->objects;
	out->min_order = s->min_order;
	out->min_objects = s->min_objects;
	out->min_partial = sk_load(&s->min_partial);
	out->cpu_partial = sk_load(&s->cpu_partial);
	out->cpu_partial_slabs = sk_load(&s->cpu_partial_slabs);

	for (unsigned cpu = 0; slub_has_pcpu(c) && cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
		struct sk_page *slab = slub_cpu_of(slot)->active;

		if (slab)
			out->cpu_slabs++;
		out->cpu_free += sk_pcpu_array_count(slot);
		for (void *p = slub_cpu_of(slot)->freelist; p; p = slub_get_next(c, p))
			out->cpu_free++;
		for (struct sk_list *l = slub_cpu_of(slot)->partial; l; l = sk_chain_next(l))
			out->cpu_partial_held++;
		sk_pcpu_unlock(slot);
	}
	for (unsigned i = 0; i < s->nr_nodes; i++) {
		struct slub_node *n = &s->node[i];

		pthread_mutex_lock(&n->list_lock);
		out->node_partial[i] = n->nr_partial;
		out->barn_free[i] = n->barn_count;
		struct sk_list *link;
		sk_list_for_each(link, &n->partial)
			if (!slub_counters(slub_slab_of(link)).inuse)
				out->node_empty[i]++;
		pthread_mutex_unlock(&n->list_lock);
	}
}

static uint64_t free_in_slab(const struct sk_page *slab)
{
	union slub_counters ctr = slub_counters(slab);
	return ctr.objects - ctr.inuse;
}

/*
 * Reports read without stopping any CPU: the per-CPU part is two racy
 * words per slot (the active slab, the per-CPU partial count); the node
 * partial lists are walked under their list_lock, as the kernel's
 * count_partial does.  Free objects held by CPUs (freelists, frozen and
 * per-CPU partial slabs) are what the exact counters leave once the node
 * lists are accounted for.
 */
static void slub_cache_info(struct sk_cache *c, struct sk_backend_cache_info *out)
{
	struct slub_cache *s = slub_of(c);
	uint64_t slab_free = 0;

	out->objects_per_slab = s->objects;
	for (unsigned cpu = 0; slub_has_pcpu(c) && cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
		out->cpu_slabs += (sk_load(&slub_cpu_of(slot)->active) != NULL) +
				  sk_load(&slub_cpu_of(slot)->nr_partial);
	}
	for (unsigned i = 0; i < s->nr_nodes; i++) {
		struct slub_node *n = &s->node[i];

		pthread_mutex_lock(&n->list_lock);
		struct sk_list *link;
		sk_list_for_each(link, &n->partial) {
			uint64_t f = free_in_slab(slub_slab_of(link));
			slab_free += f;
			if (f == s->objects)
				out->empty_slabs++;
			else
				out->partial_slabs++;
		}
		pthread_mutex_unlock(&n->list_lock);
	}
	uint64_t held = sk_load(&c->ctr.slabs) * s->objects, in_use = sk_cache_in_use(c);
	uint64_t free_total = held > in_use ? held - in_use : 0;
	out->slab_free = slab_free;
	out->cached_free = free_total > slab_free ? free_total - slab_free : 0;
}

/* --- tunables (sysfs min_partial and cpu_partial) --- */

static int slub_tune(struct sk_cache *c, const char *key, long value)
{
	struct slub_cache *s = slub_of(c);

	if (!key || value < 0 || value > (long)UINT32_MAX / 2)
		return -EINVAL;
	if (!strcmp(key, "min_partial")) {
		sk_store(&s->min_partial, (uint32_t)value);
		return 0;
	}
	if (!strcmp(key, "sheaf_capacity")) {
		/* Up to the room each slot was made with; 0 turns the sheaves
		 * off (every free then goes to its slab, as SLUB before 6.18).
		 * Every sheaf is flushed so that the new limit holds now. */
		if ((uint32_t)value > s->sheaf_room || !slub_has_pcpu(c))
			return -EINVAL;
		sk_store(&s->sheaf_capacity, (uint32_t)value);
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
			struct sk_list *discard = NULL;
			struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
			slub_sheaf_flush(c, slot, sk_pcpu_array_count(slot), &discard);
			slot->limit = (uint32_t)value;
			sk_pcpu_unlock(slot);
			slub_discard_list(c, discard);
		}
		for (unsigned i = 0; i < s->nr_nodes; i++)
			slub_barn_flush(c, &s->node[i], false);
		return 0;
	}
	if (!strcmp(key, "barn_sheaves")) {
		/* Up to the depth a barn's store is made for; 0 turns the
		 * barns off (a full sheaf then flushes to its slabs, as SLUB
		 * before 6.18).  The barns are emptied so the new depth holds
		 * now. */
		if ((uint32_t)value > SLUB_BARN_SHEAVES)
			return -EINVAL;
		sk_store(&s->barn_sheaves, (uint32_t)value);
		for (unsigned i = 0; i < s->nr_nodes; i++)
			slub_barn_flush(c, &s->node[i], false);
		return 0;
	}
	if (!strcmp(key, "cpu_partial")) {
		sk_store(&s->cpu_partial, (uint32_t)value);
		sk_store(&s->cpu_partial_slabs, cpu_partial_slabs_for((uint32_t)value, s->objects));
		/* As SLUB's sysfs store does: flush so the new limit holds now. */
		for (unsigned cpu = 0; slub_has_pcpu(c) && cpu < sk_pcpu_nr; cpu++) {
			struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
			struct sk_list *list = slub_cpu_partial_detach(slot);
			sk_pcpu_unlock(slot);
			slub_flush_partials(c, list);
		}
		return 0;
	}
	return -EINVAL;
}

/* fork(): level 1 is every node's list_lock (below the slot locks). */
static void slub_fork_lock(struct sk_cache *c, unsigned level, bool lock)
{
	struct slub_cache *s = c ? slub_of(c) : NULL;

	if (!s || level != 1)
		return;
	for (unsigned i = 0; i < s->nr_nodes; i++)
		(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&s->node[i].list_lock);
}

const struct sk_backend_ops sk_slub_ops = {
	.name = "slub",
	.caps = SK_CAP_PERCPU | SK_CAP_NODE_LISTS | SK_CAP_TUNABLES | SK_CAP_STRIDE,
	.pcpu_kind = SK_PCPU_ARRAY,
	.free_tag = SK_TAG_NODE,
	.pcpu_init = slub_pcpu_init,
	.cache_create = slub_cache_create,
	.cache_destroy = slub_cache_destroy,
	.alloc = slub_alloc,
	.free = slub_free,
	.shrink = slub_shrink,
	.tick = slub_tick,
	.cache_info = slub_cache_info,
	.validate = slub_validate,
	.tune = slub_tune,
	.fork_lock = slub_fork_lock,
};
