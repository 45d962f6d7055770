/*
 * SLAB backend: the slow paths of allocation and free.
 *
 * Core's fast path pops from and pushes to this CPU's array (the slot).  We
 * are called when the array was empty, a node was asked for, the array was
 * full, the freed object lives on another node, or the slot was busy.
 *
 * Allocation (Linux's cache_alloc_refill, ____cache_alloc_node):
 *   slot locked:   refill up to batchcount from the node's shared array,
 *                  else from partial then free slabs, and return the top;
 *   nothing there: let go of every lock, grow a slab (the ctor may
 *                  allocate), then take one object from it and, if the slot
 *                  is still ours and empty, fill the array from it too;
 *   slot busy, or another node asked for: one object straight from that
 *                  node's lists, or a new slab there.
 * Free (Linux's __cache_free, cache_flusharray, cache_free_alien):
 *   remote object: the alien array this node keeps for the object's node,
 *                  which goes home in one batch when full;
 *   array full:    move batchcount of the oldest entries to the shared array
 *                  (or back to their slabs), then push;
 *   slot busy:     straight back to the slab.
 *
 * Lock order (this file):
 *   slot lock (sk_pcpu_trylock_local) -> node list_lock
 *   alien lock -> node list_lock (of the alien's home node)
 * We never hold a slot lock and an alien lock together, never hold any lock
 * while growing a slab, and destroy released slabs after letting go.
 */
#include <string.h>

#include <ck_pr.h>

#include "slab_int.h"

int bslab_current_node(const struct slab_cache *sc)
{
	return (int)sk_current_node_clamped(sc->nr_nodes);
}

/* --- allocation --- */

/* How many objects a refill of this locked slot takes (one of them for the
 * caller).  An array unused since the last reap gets a partial refill, so
 * an occasional allocation does not pin a whole batch (Linux's
 * BATCHREFILL_LIMIT). */
static uint32_t slab_refill_batch(struct sk_cache *c, struct slab_cache *sc, struct sk_pcpu_slot *slot)
{
	struct slab_cpu *ex = slab_cpu_of(slot);
	uint32_t batch = SK_MIN(SK_MAX(sk_load(&sc->batchcount), 1u), slot->limit);

	if (batch > SLAB_BATCHREFILL_LIMIT && !sk_load(&ex->touched) &&
	    sk_pcpu_slot_allocs(c, slot) == sk_load(&ex->reap_allocs_seen))
		batch = SLAB_BATCHREFILL_LIMIT;
	return batch;
}

/* The slot is ours and empty: refill it from its node and return one
 * object, or NULL when the node has nothing free. */
static void *slab_refill(struct sk_cache *c, struct slab_cache *sc, struct sk_pcpu_slot *slot)
{
	struct slab_cpu *ex = slab_cpu_of(slot);
	struct slab_node *n = sc->node[slab_slot_node(slot)];
	uint32_t batch = slab_refill_batch(c, sc, slot);
	uint32_t got = 0;

	pthread_mutex_lock(&n->list_lock);
	if (n->shared && n->shared->avail) {
		struct slab_array *sh = n->shared;

		got = SK_MIN(batch, sh->avail);
		sh->avail -= got;
		sk_stack_append(slot->entries, 0, &sh->entry[sh->avail], got);
		sh->touched = 1;
	} else {
		got = bslab_take_objects(sc, n, slot->entries, batch);
	}
	pthread_mutex_unlock(&n->list_lock);
	if (!got)
		return NULL;
	sk_stat_refill(c);
	sk_store(&ex->touched, 1);
	slab_slot_set_top(slot, got - 1);
	return slot->entries[got - 1];
}

/* Grow a slab on `node` (SK_NODE_ANY: the provider's choice; a named node
 * falls back to any, as Linux without __GFP_THISNODE) and take one object;
 * when this CPU's array is empty and of that node, the rest of a refill
 * batch goes there too. */
static void *slab_alloc_grow(struct sk_cache *c, struct slab_cache *sc, int node, unsigned flags)
{
	struct sk_page *pg = bslab_grow(c, node, flags);
	struct sk_pcpu_slot *slot;
	struct slab_node *n;
	uint32_t got = 0;
	void *obj;

	if (!pg && node != SK_NODE_ANY)
		pg = bslab_grow(c, SK_NODE_ANY, flags);
	if (!pg)
		return NULL;
	n = sc->node[pg->node];
	slot = c->pcpu_base ? sk_pcpu_trylock_local(c) : NULL;
	if (slot && (slab_slot_node(slot) != pg->node || !slot->limit || slab_slot_top(slot))) {
		sk_pcpu_unlock(slot);
		slot = NULL;
	}
	pthread_mutex_lock(&n->list_lock);
	bslab_attach(sc, n, pg);
	bslab_take_from(sc, n, pg, &obj, 1);
	if (slot)
		got = bslab_take_from(sc, n, pg, slot->entries, slab_refill_batch(c, sc, slot) - 1);
	pthread_mutex_unlock(&n->list_lock);
	if (slot) {
		slab_slot_set_top(slot, got);
		sk_store(&slab_cpu_of(slot)->touched, 1);
		sk_pcpu_unlock(slot);
		if (got)
			sk_stat_refill(c);
	}
	return obj;
}

/* One object from `node`'s slabs (SK_NODE_ANY: this CPU's node), bypassing
 * every array. */
static void *slab_alloc_from_node(struct sk_cache *c, struct slab_cache *sc, int node,
				  unsigned flags)
{
	struct slab_node *n = sc->node[node == SK_NODE_ANY ? bslab_current_node(sc) : node];
	uint32_t got;
	void *obj;

	pthread_mutex_lock(&n->list_lock);
	got = bslab_take_objects(sc, n, &obj, 1);
	pthread_mutex_unlock(&n->list_lock);
	if (got)
		return obj;
	return slab_alloc_grow(c, sc, node, flags);
}

void *bslab_alloc(struct sk_cache *c, int node, unsigned flags)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct sk_pcpu_slot *slot;
	void *obj;

	if (node < 0 || (unsigned)node >= sc->nr_nodes)
		node = SK_NODE_ANY;
	if (node != SK_NODE_ANY && node != bslab_current_node(sc))
		return slab_alloc_from_node(c, sc, node, flags);
	slot = c->pcpu_base ? sk_pcpu_trylock_local(c) : NULL;
	if (!slot)
		return slab_alloc_from_node(c, sc, node, flags);
	if (!slot->limit || (node != SK_NODE_ANY && node != slab_slot_node(slot))) {
		sk_pcpu_unlock(slot);
		return slab_alloc_from_node(c, sc, node, flags);
	}
	if (slab_slot_top(slot)) {
		/* A node was asked for and it is ours, or a free refilled the
		 * array since the fast path missed. */
		obj = sk_pcpu_array_pop(slot);
	} else {
		obj = slab_refill(c, sc, slot);
	}
	sk_pcpu_unlock(slot);
	if (obj)
		return obj;
	return slab_alloc_grow(c, sc, node, flags);
}

/* --- free --- */

static void slab_free_to_node(struct sk_cache *c, struct slab_cache *sc, void *obj, int home)
{
	struct slab_node *n = sc->node[home];
	struct sk_list destroy;

	sk_list_init(&destroy);
	pthread_mutex_lock(&n->list_lock);
	bslab_free_block(c, n, &obj, 1, &destroy);
	pthread_mutex_unlock(&n->list_lock);
	bslab_destroy_list(c, &destroy);
}

void bslab_drain_alien_locked(struct sk_cache *c, struct slab_alien *al, int home,
			      struct sk_list *destroy)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct slab_node *n = sc->node[home];
	struct slab_array *ac = &al->ac;

	if (!ac->avail)
		return;
	pthread_mutex_lock(&n->list_lock);
	/* Into the home node's shared array first: those objects are hot and
	 * need not touch their slabs at all. */
	if (n->shared && n->shared->avail < n->shared->limit) {
		struct slab_array *sh = n->shared;
		uint32_t nr = SK_MIN(ac->avail, sh->limit - sh->avail);

		sk_store(&ac->avail, ac->avail - nr);
		sk_stack_append(sh->entry, sh->avail, &ac->entry[ac->avail], nr);
		sh->avail += nr;
	}
	bslab_free_block(c, n, ac->entry, ac->avail, destroy);
	sk_store(&ac->avail, 0); /* alien avail is peeked without the lock (reaper) */
	pthread_mutex_unlock(&n->list_lock);
}

/* obj lives on node `home` and was freed on node `here`: park it in the
 * alien array `here` keeps for `home`, never in this CPU's array. */
static void slab_free_alien(struct sk_cache *c, struct slab_cache *sc, void *obj, int home,
			    int here)
{
	struct slab_alien *al = sc->node[here]->alien[home];
	struct sk_list destroy;

	sk_list_init(&destroy);
	pthread_mutex_lock(&al->lock);
	if (al->ac.avail >= al->ac.limit)
		bslab_drain_alien_locked(c, al, home, &destroy);
	al->ac.entry[al->ac.avail] = obj;
	sk_store(&al->ac.avail, al->ac.avail + 1); /* peeked without the lock (reaper) */
	pthread_mutex_unlock(&al->lock);
	ck_pr_inc_64(&sc->xdomain_frees);
	bslab_destroy_list(c, &destroy);
}

/* The slot is ours and full: make room by moving its batchcount oldest
 * entries to the shared array, or back to their slabs when it is full. */
static void slab_flush_array(struct sk_cache *c, struct slab_cache *sc, struct sk_pcpu_slot *slot,
			     struct sk_list *destroy)
{
	struct slab_node *n = sc->node[slab_slot_node(slot)];
	uint32_t top = slab_slot_top(slot);
	uint32_t batch = SK_MIN(SK_MAX(sk_load(&sc->batchcount), 1u), top);
	struct slab_array *sh;

	pthread_mutex_lock(&n->list_lock);
	sh = n->shared;
	if (sh && sh->avail < sh->limit) {
		batch = SK_MIN(batch, sh->limit - sh->avail);
		sk_stack_append(sh->entry, sh->avail, slot->entries, batch);
		sh->avail += batch;
	} else {
		bslab_free_block(c, n, slot->entries, batch, destroy);
	}
	pthread_mutex_unlock(&n->list_lock);
	sk_pcpu_array_drop_oldest(slot, batch);
	sk_stat_flush(c);
}

void bslab_free(struct sk_cache *c, void *obj, struct sk_page *slab)
{
	struct slab_cache *sc = slab_cache_of(c);
	int home = slab->node, here = bslab_current_node(sc);
	struct sk_pcpu_slot *slot;
	struct sk_list destroy;

	if ((unsigned)home >= sc->nr_nodes) {
		sk_message("slab: cache %s: %p is on node %d, unknown to this cache (ignored)",
			   c->name, obj, home);
		return;
	}
	if (home != here) {
		slab_free_alien(c, sc, obj, home, here);
		return;
	}
	slot = c->pcpu_base ? sk_pcpu_trylock_local(c) : NULL;
	if (!slot) {
		slab_free_to_node(c, sc, obj, home);
		return;
	}
	if (!slot->limit || slab_slot_node(slot) != home) {
		/* No array, or we migrated to another node since `here`. */
		sk_pcpu_unlock(slot);
		slab_free_to_node(c, sc, obj, home);
		return;
	}
	sk_list_init(&destroy);
	if (slab_slot_top(slot) >= slot->limit)
		slab_flush_array(c, sc, slot, &destroy);
	sk_pcpu_array_push(slot, obj);
	sk_pcpu_unlock(slot);
	bslab_destroy_list(c, &destroy);
}
