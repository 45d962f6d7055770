/*
 * SLAB backend: giving memory back (reaping, shrinking), the tunables and
 * the figures for reports.
 *
 * Reaping (Linux's cache_reap, run here from core's tick, every 2 s by
 * default):
 *   every pass:       drain every alien array home; give 1/5 of each idle
 *                     per-CPU array back to its slabs.  An array is idle if
 *                     no refill set its `touched` flag and the fast path
 *                     popped nothing since the previous pass;
 *   every 2nd pass:   the same for each node's shared array (its own
 *                     touched flag), then release up to
 *                     free_limit / (5 * num) empty slabs per node, unless a
 *                     refill took an empty slab since the last time.
 * Shrinking drains all of it and releases every empty slab (kmem_cache_shrink,
 * uma_reclaim); destroy does the same unconditionally.
 *
 * Lock order (this file):
 *   tune_lock -> slot lock (sk_pcpu_lock_cpu) -> node list_lock
 *   tune_lock -> alien lock -> node list_lock
 * tune_lock serialises tune, shrink, tick and destroy; it is the only lock
 * held while slabs are destroyed (fini runs there) and arrays are freed.
 */
#include <errno.h>
#include <string.h>

#include <ck_pr.h>

#include "slab_int.h"

void bslab_flush_slot(struct sk_cache *c, struct sk_pcpu_slot *slot, struct sk_list *destroy)
{
	struct slab_node *n = slab_cache_of(c)->node[slab_slot_node(slot)];
	uint32_t top = slab_slot_top(slot);

	if (!top)
		return;
	pthread_mutex_lock(&n->list_lock);
	bslab_free_block(c, n, slot->entries, top, destroy);
	pthread_mutex_unlock(&n->list_lock);
	slab_slot_set_top(slot, 0);
}

/* How much of an idle array one reap gives back (Linux's drain_array_locked). */
static uint32_t slab_reap_amount(uint32_t limit, uint32_t avail)
{
	uint32_t tofree = (limit + SLAB_REAP_DIVISOR - 1) / SLAB_REAP_DIVISOR;

	if (tofree > avail)
		tofree = (avail + 1) / 2;
	return tofree;
}

static void slab_drain_aliens(struct sk_cache *c, struct slab_cache *sc, struct sk_list *destroy)
{
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		for (unsigned m = 0; m < sc->nr_nodes; m++) {
			struct slab_alien *al = sc->node[id]->alien[m];

			if (!al || !sk_load(&al->ac.avail))
				continue;
			pthread_mutex_lock(&al->lock);
			bslab_drain_alien_locked(c, al, (int)m, destroy);
			pthread_mutex_unlock(&al->lock);
		}
	}
}

/* Give 1/5 of CPU `cpu`'s array back if it was idle since the last pass. */
static void slab_reap_cpu(struct sk_cache *c, unsigned cpu, struct sk_list *destroy)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
	struct slab_cpu *ex = slab_cpu_of(slot);
	uint64_t allocs;
	bool touched;
	uint32_t top, tofree;
	struct slab_node *n;

	if (!slab_slot_ready(slot) || sc->nobucket)
		return;
	allocs = sk_pcpu_slot_allocs(c, slot);
	/* The compiler's exchange rather than ck_pr_fas_32: in TSan builds ck's
	 * builtin port loads with a volatile access TSan takes for a plain read. */
	touched = __atomic_exchange_n(&ex->touched, 0, __ATOMIC_RELAXED) != 0;
	if (allocs != ex->reap_allocs_seen)
		touched = true;
	sk_store(&ex->reap_allocs_seen, allocs);
	/* Only an idle, non-empty array is worth the lock (a syscall in rseq
	 * mode when it belongs to another CPU). */
	if (touched || !slab_slot_top(slot))
		return;

	slot = sk_pcpu_lock_cpu(c, cpu);
	top = slab_slot_top(slot);
	if (top) {
		n = sc->node[slab_slot_node(slot)];
		tofree = slab_reap_amount(slot->limit, top);
		pthread_mutex_lock(&n->list_lock);
		bslab_free_block(c, n, slot->entries, tofree, destroy);
		pthread_mutex_unlock(&n->list_lock);
		sk_pcpu_array_drop_oldest(slot, tofree);
	}
	sk_pcpu_unlock(slot);
}

/* The node half of a reap: the shared array, then empty slabs. */
static void slab_reap_node(struct sk_cache *c, struct slab_cache *sc, struct slab_node *n,
			   struct sk_list *destroy)
{
	struct slab_array *sh;

	pthread_mutex_lock(&n->list_lock);
	sh = n->shared;
	if (sh && sh->avail) {
		if (sh->touched) {
			sh->touched = 0;
		} else {
			uint32_t tofree = slab_reap_amount(sh->limit, sh->avail);

			bslab_free_block(c, n, sh->entry, tofree, destroy);
			sk_stack_drop_oldest(sh->entry, sh->avail, tofree);
			sh->avail -= tofree;
		}
	}
	if (n->free_touched) {
		n->free_touched = false;
	} else if (!sc->nofree) {
		uint64_t per_pass = SLAB_REAP_DIVISOR * (uint64_t)sc->num;

		bslab_detach_free(sc, n, (n->free_limit + per_pass - 1) / per_pass, destroy);
	}
	pthread_mutex_unlock(&n->list_lock);
}

/* One reap pass; the caller holds tune_lock. */
static void slab_reap(struct sk_cache *c, struct slab_cache *sc, bool node_pass)
{
	struct sk_list destroy;

	sk_list_init(&destroy);
	slab_drain_aliens(c, sc, &destroy);
	if (c->pcpu_base)
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
			slab_reap_cpu(c, cpu, &destroy);
	if (node_pass)
		for (unsigned id = 0; id < sc->nr_nodes; id++)
			slab_reap_node(c, sc, sc->node[id], &destroy);
	bslab_destroy_list(c, &destroy);
}

void bslab_tick(struct sk_cache *c)
{
	struct slab_cache *sc = slab_cache_of(c);

	/* A shrink or tune in progress does this pass's work better. */
	if (pthread_mutex_trylock(&sc->tune_lock) != 0)
		return;
	sc->reap_passes++;
	slab_reap(c, sc, sc->reap_passes % 2 == 0);
	pthread_mutex_unlock(&sc->tune_lock);
}

static uint64_t slab_slabs_held(struct slab_cache *sc)
{
	uint64_t held = 0;

	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		pthread_mutex_lock(&n->list_lock);
		held += n->total_slabs;
		pthread_mutex_unlock(&n->list_lock);
	}
	return held;
}

uint64_t bslab_shrink(struct sk_cache *c, enum sk_shrink_level level)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct sk_list destroy;
	uint64_t held;

	sk_list_init(&destroy);
	pthread_mutex_lock(&sc->tune_lock);
	if (level == SK_SHRINK_TRIM) {
		slab_reap(c, sc, true);
		goto out;
	}
	if (level == SK_SHRINK_DRAIN_CPU && c->pcpu_base) {
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
			struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);

			/* An empty array needs no lock (nor its syscall); a free
			 * racing with this check is one made after the shrink. */
			if (!slab_slot_ready(slot) || !slab_slot_top(slot))
				continue;
			slot = sk_pcpu_lock_cpu(c, cpu);
			bslab_flush_slot(c, slot, &destroy);
			sk_pcpu_unlock(slot);
		}
	}
	slab_drain_aliens(c, sc, &destroy);
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		pthread_mutex_lock(&n->list_lock);
		if (n->shared && n->shared->avail) {
			bslab_free_block(c, n, n->shared->entry, n->shared->avail, &destroy);
			n->shared->avail = 0;
		}
		if (!sc->nofree)
			bslab_detach_free(sc, n, UINT64_MAX, &destroy);
		pthread_mutex_unlock(&n->list_lock);
	}
	bslab_destroy_list(c, &destroy);
out:
	held = slab_slabs_held(sc);
	pthread_mutex_unlock(&sc->tune_lock);
	return held;
}

/* --- tunables --- */

/* Give every initialised CPU slot an empty array of `limit` entries: lock
 * it, flush it, swap the entries array.  Caller holds tune_lock. */
static int slab_resize_cpu_arrays(struct sk_cache *c, struct slab_cache *sc, uint32_t limit)
{
	if (!c->pcpu_base || sc->nobucket)
		return 0;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
		struct slab_cpu *ex = slab_cpu_of(slot);
		void **fresh = NULL, **old;
		uint32_t old_capacity;
		struct sk_list destroy;

		if (!slab_slot_ready(slot))
			continue; /* pcpu_init will read sc->limit */
		if (limit > sc->inline_capacity) {
			fresh = sk_meta_zalloc((size_t)limit * sizeof(void *));
			if (!fresh)
				return -ENOMEM;
		}
		sk_list_init(&destroy);
		slot = sk_pcpu_lock_cpu(c, cpu);
		bslab_flush_slot(c, slot, &destroy);
		old = slot->entries;
		old_capacity = ex->external_capacity;
		slot->entries = fresh ? fresh : ex->inline_entries;
		ex->external_capacity = fresh ? limit : 0;
		slot->limit = limit;
		sk_pcpu_unlock(slot);
		if (old_capacity)
			sk_meta_free(old, (size_t)old_capacity * sizeof(void *));
		bslab_destroy_list(c, &destroy);
	}
	return 0;
}

/* Replace node n's shared array with an empty one of `entries` (none if 0). */
static int slab_resize_shared(struct sk_cache *c, struct slab_node *n, uint32_t entries)
{
	struct slab_array *fresh = NULL, *old;
	struct sk_list destroy;

	if ((n->shared ? n->shared->capacity : 0) == entries)
		return 0;
	if (entries) {
		fresh = bslab_array_alloc(entries);
		if (!fresh)
			return -ENOMEM;
	}
	sk_list_init(&destroy);
	pthread_mutex_lock(&n->list_lock);
	old = n->shared;
	if (old)
		bslab_free_block(c, n, old->entry, old->avail, &destroy);
	n->shared = fresh;
	pthread_mutex_unlock(&n->list_lock);
	bslab_array_free(old);
	bslab_destroy_list(c, &destroy);
	return 0;
}

static void slab_set_alien_limit(struct sk_cache *c, struct slab_cache *sc, uint32_t alien_limit)
{
	struct sk_list destroy;

	sk_list_init(&destroy);
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		for (unsigned m = 0; m < sc->nr_nodes; m++) {
			struct slab_alien *al = sc->node[id]->alien[m];

			if (!al)
				continue;
			pthread_mutex_lock(&al->lock);
			if (al->ac.avail > alien_limit)
				bslab_drain_alien_locked(c, al, (int)m, &destroy);
			al->ac.limit = alien_limit;
			pthread_mutex_unlock(&al->lock);
		}
	}
	bslab_destroy_list(c, &destroy);
}

/* Linux's do_tune_cpucache; caller holds tune_lock. */
static int slab_apply_tunables(struct sk_cache *c, struct slab_cache *sc, uint32_t limit,
			       uint32_t batch, uint32_t shared)
{
	int rc;

	if (limit != sc->limit) {
		/* Publish the smaller batch first: slow paths clamp it to the
		 * slot's limit anyway, but never let them see batch > limit. */
		if (batch < sc->batchcount)
			sk_store(&sc->batchcount, batch);
		rc = slab_resize_cpu_arrays(c, sc, limit);
		if (rc)
			return rc;
		sk_store(&sc->limit, limit);
		if ((limit > 1 ? SLAB_ALIEN_LIMIT : 1) != sc->alien_limit) {
			sc->alien_limit = limit > 1 ? SLAB_ALIEN_LIMIT : 1;
			slab_set_alien_limit(c, sc, sc->alien_limit);
		}
	}
	sk_store(&sc->batchcount, batch);
	sk_store(&sc->shared, shared);
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		rc = slab_resize_shared(c, n, shared * batch);
		if (rc)
			return rc;
		pthread_mutex_lock(&n->list_lock);
		n->free_limit = bslab_free_limit(sc, n);
		pthread_mutex_unlock(&n->list_lock);
	}
	return 0;
}

int bslab_tune(struct sk_cache *c, const char *key, long value)
{
	struct slab_cache *sc = slab_cache_of(c);
	uint32_t limit, batch, shared;
	int rc = 0;

	pthread_mutex_lock(&sc->tune_lock);
	limit = sc->limit;
	batch = sc->batchcount;
	shared = sc->shared;
	if (!strcmp(key, "limit")) {
		if (value < 1 || value > (long)SLAB_LIMIT_MAX) {
			rc = -EINVAL;
		} else {
			limit = (uint32_t)value;
			/* Linux sets all three at once; one key at a time, a
			 * limit below the batch brings the batch to its default. */
			if (batch > limit)
				batch = (limit + 1) / 2;
		}
	} else if (!strcmp(key, "batchcount")) {
		if (value < 1 || value > (long)limit)
			rc = -EINVAL;
		else
			batch = (uint32_t)value;
	} else if (!strcmp(key, "shared")) {
		if (value < 0 || value > (long)SLAB_SHARED_ENTRIES_MAX)
			rc = -EINVAL;
		else
			shared = (uint32_t)value;
	} else {
		rc = -EINVAL;
	}
	if (!rc && (uint64_t)shared * batch > SLAB_SHARED_ENTRIES_MAX)
		rc = -EINVAL;
	if (!rc)
		rc = slab_apply_tunables(c, sc, limit, batch, shared);
	pthread_mutex_unlock(&sc->tune_lock);
	return rc;
}

/* --- reports --- */

void bslab_cache_info(struct sk_cache *c, struct sk_backend_cache_info *out)
{
	struct slab_cache *sc = slab_cache_of(c);
	uint64_t cached = 0, slab_free = 0, shared_free = 0, partial = 0, empty = 0;

	if (c->pcpu_base)
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
			cached += slab_slot_top(sk_pcpu_slot(c, cpu));
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		pthread_mutex_lock(&n->list_lock);
		slab_free += n->free_objects;
		empty += n->free_slabs;
		for (struct sk_list *l = n->slabs_partial.next; l != &n->slabs_partial; l = l->next)
			partial++;
		if (n->shared)
			shared_free += n->shared->avail;
		pthread_mutex_unlock(&n->list_lock);
		for (unsigned m = 0; m < sc->nr_nodes; m++)
			if (n->alien[m])
				cached += sk_load(&n->alien[m]->ac.avail);
	}
	out->objects_per_slab = sc->num;
	out->cached_free = cached + shared_free;
	out->shared_free = shared_free;
	out->slab_free = slab_free;
	out->partial_slabs = partial;
	out->empty_slabs = empty;
	out->xdomain_frees = sk_load(&sc->xdomain_frees);
	out->xdomain_counted = true;
	out->limit = sk_load(&sc->limit);
	out->batchcount = sk_load(&sc->batchcount);
	out->shared = sk_load(&sc->shared);
}
