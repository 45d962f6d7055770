/*
 * SLUB's allocation slow path (___slab_alloc), behind core's fast path.
 *
 * Core's fast path pops the slot's sheaf (an array of free objects); it
 * calls slub_alloc when the sheaf is empty or a node was asked for.  With
 * the CPU's slot locked, half a sheaf is refilled from the CPU slab's
 * freelist, and the CPU slab is replaced in SLUB's order:
 *
 *   1. objects freed onto the CPU freelist meanwhile, then the remote
 *      frees that piled up on the active slab's own freelist;
 *   2. a slab from this CPU's partial list;
 *   3. a slab from the node's partial list (refilling the CPU partial list
 *      up to half its limit on the way);
 *   4. a new slab from the page provider;
 *   5. the other nodes' partial lists (SK_NODE_ANY only), when the page
 *      provider has nothing: Linux's remote_node_defrag_ratio at 0, so a
 *      request naming no node stays on the caller's node while memory lasts.
 *
 * If the slot is busy (another thread of this CPU is in a slow path, or a
 * drainer holds it), one object comes straight from a node partial slab or
 * a new slab, without the per-CPU layer; caches without slots always take
 * that path (SLUB_TINY's shape).
 *
 * Lock order: slot lock -> list_lock -> page provider (slub.h).
 */
#include "slub.h"

/* Take a slab on `node` (any node for SK_NODE_ANY) off the per-CPU partial
 * list.  Caller holds the slot lock. */
static struct sk_page *cpu_partial_take(struct sk_pcpu_slot *slot, int node)
{
	struct slub_cpu *pc = slub_cpu_of(slot);

	for (struct sk_list **at = &pc->partial; *at; at = &(*at)->prev) {
		if (node != SK_NODE_ANY && slub_slab_of(*at)->node != node)
			continue;
		sk_store(&pc->nr_partial, pc->nr_partial - 1);
		return slub_slab_of(sk_chain_take(at));
	}
	return NULL;
}

/* get_partial_node: first slab of n's partial list for the caller, and up
 * to half the per-CPU limit more onto the slot's partial list. */
static struct sk_page *get_partial_node(struct sk_cache *c, struct slub_node *n,
					struct sk_pcpu_slot *slot)
{
	struct slub_cache *s = slub_of(c);
	struct slub_cpu *pc = slub_cpu_of(slot);
	uint32_t limit = sk_load(&s->cpu_partial_slabs);
	struct sk_page *slab;

	/* A racy peek, as SLUB does: an empty list is not worth the lock. */
	if (!sk_load(&n->nr_partial))
		return NULL;
	pthread_mutex_lock(&n->list_lock);
	slab = slub_first_partial(n);
	if (slab) {
		struct sk_page *more;

		slub_remove_partial(n, slab);
		for (uint32_t taken = 0; taken < limit / 2 && pc->nr_partial < limit; taken++) {
			if (!(more = slub_first_partial(n)))
				break;
			slub_remove_partial(n, more);
			slub_cpu_partial_link(slot, more);
		}
	}
	pthread_mutex_unlock(&n->list_lock);
	return slab;
}

/* Steps 3 and 4: `node`'s list, then (any_node) the others in turn. */
static struct sk_page *get_partial(struct sk_cache *c, struct sk_pcpu_slot *slot, int node,
				   bool any_node)
{
	struct slub_cache *s = slub_of(c);
	unsigned tries = any_node ? s->nr_nodes : 1;

	for (unsigned i = 0; i < tries; i++) {
		struct sk_page *slab = get_partial_node(c, &s->node[((unsigned)node + i) % s->nr_nodes],
							slot);
		if (slab)
			return slab;
	}
	return NULL;
}

/* ___slab_alloc with the slot locked.  `node` is SK_NODE_ANY, or the node
 * of the active slab (or of the slot's CPU when there is none).  A cache
 * with constructor hooks gets no new slab here (*build_unlocked is set):
 * user callbacks never run under the slot lock (a ctor that allocates may
 * wait for memory, and that drains every slot). */
static void *cpu_slab_pop(struct sk_cache *c, struct sk_pcpu_slot *slot, int node,
			  int slot_node, unsigned flags, bool *build_unlocked)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	struct sk_page *slab = pc->active;
	void *freelist;

	if (slab) {
		/* Sheaf flushes put the CPU slab's own objects back on the
		 * CPU freelist. */
		if (pc->freelist) {
			freelist = pc->freelist;
			goto load_freelist;
		}
		freelist = slub_take_freelist(slab);
		if (freelist) {
			sk_stat_refill(c);
			goto load_freelist;
		}
		/* Unfrozen and full now: the first free adopts it. */
		sk_store(&pc->active, NULL);
	}

	slab = cpu_partial_take(slot, node);
	if (!slab)
		slab = get_partial(c, slot, node == SK_NODE_ANY ? slot_node : node, false);
	if (slab) {
		freelist = slub_take_freelist(slab);
	} else {
		if (sk_cache_has_construct(c)) {
			*build_unlocked = true;
			return NULL;
		}
		slab = slub_new_slab(c, node, flags, &freelist);
		if (!slab && node == SK_NODE_ANY &&
		    (slab = get_partial(c, slot, slot_node, true)) != NULL) {
			freelist = slub_take_freelist(slab);
			goto have_slab;
		}
		if (!slab)
			return NULL;
		union slub_counters ctr = slub_counters(slab);
		ctr.frozen = 1; /* inuse = objects: the whole freelist is the CPU's */
		slub_store_word(&slub_words(slab)->ss_counters, ctr.word);
	}
have_slab:
	sk_store(&pc->active, slab);
	sk_stat_refill(c);

load_freelist:
	pc->freelist = slub_get_next(c, freelist);
	return freelist;
}

/* The sheaf is empty (slot locked): refill half of it from the node's
 * barn, or else from the CPU slab, and return one object.  Stops early
 * rather than build a slab of a cache with constructor hooks under the
 * lock (*build_unlocked when it got nothing). */
static void *sheaf_refill(struct sk_cache *c, struct sk_pcpu_slot *slot, int slot_node, unsigned flags,
			  bool *build_unlocked)
{
	const uint32_t batch = (slot->limit + 1) / 2;
	const uint32_t from_barn = slub_barn_take(c, slot, batch);
	uint32_t got = from_barn;

	while (!from_barn && got < batch) {
		bool unlocked = false;
		void *obj = cpu_slab_pop(c, slot, SK_NODE_ANY, slot_node, flags, &unlocked);
		if (!obj) {
			*build_unlocked = unlocked && !got;
			break;
		}
		slot->entries[got++] = obj;
		if (!slub_cpu_of(slot)->freelist && got > 1)
			break; /* the CPU slab ran out: do not take a new one for more */
	}
	if (!got)
		return NULL;
	sk_pcpu_set_array_count(slot, got - 1);
	return slot->entries[got - 1];
}

/* One object off a partial slab of node `start`, or of the nodes after it
 * (`tries` nodes in turn); NULL when they have none. */
static void *pop_node_partial(struct sk_cache *c, unsigned start, unsigned tries)
{
	struct slub_cache *s = slub_of(c);

	for (unsigned i = 0; i < tries; i++) {
		struct slub_node *n = &s->node[(start + i) % s->nr_nodes];
		if (!sk_load(&n->nr_partial))
			continue;
		pthread_mutex_lock(&n->list_lock);
		struct sk_page *slab = slub_first_partial(n);
		void *obj = slab ? slub_pop_unfrozen_locked(c, n, slab) : NULL;
		pthread_mutex_unlock(&n->list_lock);
		if (obj)
			return obj;
	}
	return NULL;
}

/* One object without the per-CPU layer: the node's partial slabs, then a
 * new slab that goes on the node list with the rest of its objects, then
 * (SK_NODE_ANY, no memory) the other nodes' partial slabs.  Holds no lock
 * while the new slab's objects are constructed. */
static void *alloc_single(struct sk_cache *c, int node, unsigned flags)
{
	struct slub_cache *s = slub_of(c);
	int start = node == SK_NODE_ANY ? (int)sk_current_node_clamped(s->nr_nodes) : node;
	void *obj = pop_node_partial(c, (unsigned)start, 1);
	if (obj)
		return obj;

	struct sk_page *slab = slub_new_slab(c, node, flags, &obj);
	if (!slab)
		return node == SK_NODE_ANY ? pop_node_partial(c, (unsigned)start + 1, s->nr_nodes - 1)
					   : NULL;
	void *rest = slub_get_next(c, obj);
	union slub_counters ctr = slub_counters(slab);
	ctr.inuse = 1;
	slub_store_word(&slub_words(slab)->ss_freelist, (uintptr_t)rest);
	slub_store_word(&slub_words(slab)->ss_counters, ctr.word);
	if (rest) {
		struct slub_node *n = slub_node_of(s, slab);
		pthread_mutex_lock(&n->list_lock);
		slub_add_partial(n, slab, false);
		pthread_mutex_unlock(&n->list_lock);
	}
	return obj;
}

void *slub_alloc(struct sk_cache *c, int node, unsigned flags)
{
	struct slub_cache *s = slub_of(c);
	struct sk_pcpu_slot *slot;

	if (node != SK_NODE_ANY && (node < 0 || (unsigned)node >= s->nr_nodes))
		node = SK_NODE_ANY;
	if (!slub_has_pcpu(c) || !(slot = sk_pcpu_trylock_local(c)))
		return alloc_single(c, node, flags);

	int slot_node = sk_numa_cpu_node(sk_pcpu_slot_cpu(c, slot));
	if (node != SK_NODE_ANY) {
		/* Served by the per-CPU slab only if it is on that node; a
		 * request for another node does not replace the CPU's slab
		 * (SLUB would deactivate it; alternating callers would then
		 * thrash it). */
		struct sk_page *active = slub_cpu_of(slot)->active;
		if (active ? active->node != node : node != slot_node) {
			sk_pcpu_unlock(slot);
			return alloc_single(c, node, flags);
		}
	}
	bool build_unlocked = false;
	void *obj;
	uint32_t n = slot->limit ? sk_pcpu_array_count(slot) : 0;
	if (node != SK_NODE_ANY || !slot->limit) {
		/* From the CPU slab, whose node was checked above (or no sheaf). */
		obj = cpu_slab_pop(c, slot, node, slot_node, flags, &build_unlocked);
	} else if (n) {
		/* A free refilled the sheaf since the fast path missed. */
		obj = sk_pcpu_array_pop(slot);
	} else {
		obj = sheaf_refill(c, slot, slot_node, flags, &build_unlocked);
	}
	sk_pcpu_unlock(slot);
	if (build_unlocked)
		obj = alloc_single(c, node, flags);
	return obj;
}
