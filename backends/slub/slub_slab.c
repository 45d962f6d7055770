/*
 * SLUB's slab state machine: the {freelist, counters} cmpxchg transitions,
 * the node and per-CPU partial lists, new and discarded slabs.
 *
 * Lock order: slot lock -> slub_node.list_lock -> page provider (slub.h).
 *
 * Why the lock-free transitions are correct
 * =========================================
 *
 * A slab's freelist and counters {inuse, objects, frozen} live side by side
 * in its head descriptor (ss_freelist, ss_counters) and change together, by one 16-byte
 * compare-and-swap (slub_cmpxchg_slab).  A thread reads both, computes the
 * new pair and swaps; if anything changed in between, the swap fails and it
 * starts over.  So every transition below is decided on the slab's exact
 * state at the instant it takes effect.
 *
 * Every slab is in one of these states, and the state names its owner, the
 * one thread allowed to take objects off its freelist:
 *
 *   state          frozen freelist  where                 owner
 *   active         1      any       a slot's CPU slab     that slot's lock holder
 *   CPU partial    0      non-NULL  a slot's slub_cpu     that slot's lock holder
 *   node partial   0      non-NULL  slub_node.partial     the list_lock holder
 *   in transit     0      any       no list (held)        the thread holding it
 *   full           0      NULL      nowhere               nobody
 *
 * Everybody else may only push: a free (slub_free) links the object in
 * front of the freelist it read and swaps.  Two rules make that safe:
 *
 *  1. Only the owner pops, so pops never race each other.  A push needs
 *     nothing but "the head is still what I read", which the swap checks,
 *     so pushes are immune to ABA.  A pop (slub_pop_unfrozen_locked) reads
 *     head A and A's next; for the head to be A again after changing, A
 *     would have to leave the list, i.e. be popped, and only this owner
 *     pops.  So a successful swap means A's next pointer was still right.
 *     Taking the whole list (slub_take_freelist) is a single swap
 *     to NULL and needs no such argument.
 *
 *  2. Ownership changes hands only where one swap singles out one thread:
 *
 *   - full -> partial.  A slab nobody owns has no list to be found on.
 *     The free whose swap finds freelist == NULL on an unfrozen slab is
 *     the only one that sees it so (the next free sees that object), and
 *     it adopts the slab: onto its CPU's partial list, or onto the node
 *     list under list_lock (it took list_lock before the swap in that case,
 *     see the last point).
 *
 *   - active -> no longer active.  Only the owning CPU unfreezes its slab
 *     (slub_deactivate), with a swap that also splices the CPU freelist
 *     back.  The new state decides: nothing in use means nobody can free
 *     into it any more, so it may be discarded; free objects mean it goes
 *     on the node list; a NULL freelist means it is full, and the first
 *     free will adopt it as above.  Taking the remote frees of the active
 *     slab (slub_take_freelist) unfreezes it in the same swap when the
 *     freelist was empty, so an active slab is never left frozen without a
 *     CPU that knows it: the CPU drops it (tag = 0) and it is simply full.
 *
 *   - list -> owner.  Taking a slab off a node list happens under
 *     list_lock; off a CPU list under that slot's lock.  The taker then
 *     freezes it (swap: whole freelist out, inuse = objects, frozen = 1)
 *     or pops from it in place (the single-object path, which removes it
 *     from the list first, pops, and puts it back while still holding
 *     list_lock, so a pop that leaves it full leaves it on no list).
 *
 *   - partial -> empty.  A free that brings inuse to 0 on an unfrozen
 *     slab with a non-NULL freelist takes the node's list_lock BEFORE its
 *     swap and asks under it whether the slab is on the node list
 *     (sk_list_linked: only list_lock holders change that word).  On the node list: the
 *     freer decides (discard, or keep if the node is short of partial
 *     slabs) while no one else can reach the slab.  Off the node list:
 *     the slab is on a CPU partial list or in transit, its holder will put
 *     it on a node list only under the same list_lock, and will then see
 *     inuse == 0 (slub_flush_partials discards or keeps it).  Either the
 *     freer's critical section comes first, and the holder sees inuse 0,
 *     or the holder's does, and the freer sees the flag.  An inuse of 0
 *     read under list_lock never changes again: nothing is in use, and no
 *     owner pops from a slab it is about to discard.
 *
 *   - full with no CPU partial list (no slots, or cpu_partial = 0): the
 *     full -> partial freer also takes list_lock before its swap and adds
 *     the slab to the node list while still holding it, so a second free
 *     that empties the slab cannot look for it on the list too early and
 *     leave it on no list at all.
 *
 * Frozen slabs need no lock from freers: the CPU that froze it owns every
 * decision about it, and a remote free only grows its freelist.
 */
#include <string.h>

#include "slub.h"

/* --- new and discarded slabs --- */

struct sk_page *slub_new_slab(struct sk_cache *c, int node, unsigned flags, void **freelist)
{
	struct slub_cache *s = slub_of(c);
	unsigned order = s->order, objects = s->objects;
	/* Like SLUB, try the preferred order first, then the smallest order
	 * that holds one object (__GFP_NORETRY on the first try there). */
	char *base = sk_slab_pages_alloc(c, node, order);

	if (!base && s->min_order != order) {
		order = s->min_order;
		objects = s->min_objects;
		base = sk_slab_pages_alloc(c, node, order);
	}
	if (!base)
		return NULL;

	/* SK_CACHE_ZINIT memory was zeroed by sk_slab_pages_alloc. */
	if (sk_slab_construct(c, base, c->size, objects, flags) != 0) {
		sk_slab_pages_free(c, base);
		return NULL;
	}
	for (unsigned i = 0; i + 1 < objects; i++)
		slub_set_next(c, base + (size_t)i * c->size, base + (size_t)(i + 1) * c->size);
	slub_set_next(c, base + (size_t)(objects - 1) * c->size, NULL);

	struct sk_page *slab = sk_page_head(base); /* base: the head of a live block */
	union slub_counters ctr = { .word = 0 };
	ctr.objects = (uint16_t)objects;
	ctr.inuse = objects; /* the caller hands the freelist out or puts it back */
	/* Atomic: slabkit_validate's walk of every slab may read them now. */
	slub_store_word(&slub_words(slab)->ss_freelist, 0);
	slub_store_word(&slub_words(slab)->ss_counters, ctr.word);
	sk_list_init(slub_link(slab));
	sk_slab_unused(c, base + (size_t)objects * c->size, (SK_PAGE_SIZE << order) - (size_t)objects * c->size);
	*freelist = base;
	return slab;
}

void slub_discard_slab(struct sk_cache *c, struct sk_page *slab)
{
	char *base = sk_page_addr(slab);

	sk_slab_destruct(c, base, c->size, slub_counters(slab).objects);
	sk_slab_pages_free(c, base);
}

bool slub_may_discard(const struct sk_cache *c, struct slub_node *n)
{
	if (c->flags & SK_CACHE_NOFREE)
		return false;
	return sk_load(&n->nr_partial) >= sk_load(&slub_of(c)->min_partial);
}

/* --- node partial lists (caller holds n->list_lock) --- */

void slub_add_partial(struct slub_node *n, struct sk_page *slab, bool tail)
{
	if (tail)
		sk_list_add_tail(slub_link(slab), &n->partial);
	else
		sk_list_add_head(slub_link(slab), &n->partial);
	sk_store(&n->nr_partial, n->nr_partial + 1);
}

void slub_remove_partial(struct slub_node *n, struct sk_page *slab)
{
	sk_list_del(slub_link(slab));
	sk_store(&n->nr_partial, n->nr_partial - 1);
}

/* --- owner transitions --- */

void *slub_take_freelist(struct sk_page *slab)
{
	void *freelist;
	union slub_counters old, new;

	do {
		freelist = slub_freelist(slab);
		old = slub_counters(slab);
		new = old;
		new.inuse = new.objects;
		new.frozen = freelist != NULL;
	} while (!slub_cmpxchg_slab(slab, freelist, old.word, NULL, new.word));
	return freelist;
}

struct sk_page *slub_deactivate(struct sk_cache *c, struct sk_pcpu_slot *slot)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	struct sk_page *slab = pc->active;
	void *cpu_freelist = pc->freelist, *tail = NULL, *old_fl;
	union slub_counters old, new;
	uint32_t cpu_free = 0;

	sk_store(&pc->active, NULL);
	pc->freelist = NULL;
	sk_stat_flush(c);

	/* Stage one: count the CPU freelist and find its last object. */
	for (void *p = cpu_freelist; p; p = slub_get_next(c, p)) {
		tail = p;
		cpu_free++;
	}

	/* Stage two: splice it in front of the slab's freelist and unfreeze. */
	do {
		old_fl = slub_freelist(slab);
		old = slub_counters(slab);
		new = old;
		new.frozen = 0;
		if (tail) {
			new.inuse -= cpu_free;
			slub_set_next(c, tail, old_fl);
		}
	} while (!slub_cmpxchg_slab(slab, old_fl, old.word, tail ? cpu_freelist : old_fl,
				    new.word));

	/* Stage three: the new state decides where the slab goes. */
	struct slub_node *n = slub_node_of(slub_of(c), slab);
	if (!new.inuse && slub_may_discard(c, n))
		return slab;
	if (tail || old_fl) {
		pthread_mutex_lock(&n->list_lock);
		/* Remote frees arrived: the slab is cache-cold, try it last. */
		slub_add_partial(n, slab, old_fl != NULL);
		pthread_mutex_unlock(&n->list_lock);
	}
	/* else full: the first free adopts it. */
	return NULL;
}

void *slub_pop_unfrozen_locked(struct sk_cache *c, struct slub_node *n, struct sk_page *slab)
{
	void *obj, *next;
	union slub_counters old, new;

	slub_remove_partial(n, slab);
	do {
		obj = slub_freelist(slab);
		old = slub_counters(slab);
		next = slub_get_next(c, obj);
		new = old;
		new.inuse++;
	} while (!slub_cmpxchg_slab(slab, obj, old.word, next, new.word));
	if (next)
		slub_add_partial(n, slab, false);
	return obj;
}

/* --- per-CPU partial lists --- */

struct sk_list *slub_cpu_partial_push(struct sk_cache *c, struct sk_pcpu_slot *slot,
				      struct sk_page *slab)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	struct sk_list *full_list = NULL;

	if (pc->partial && pc->nr_partial >= sk_load(&slub_of(c)->cpu_partial_slabs)) {
		full_list = pc->partial;
		pc->partial = NULL;
		sk_store(&pc->nr_partial, 0);
	}
	slub_cpu_partial_link(slot, slab);
	return full_list;
}

struct sk_list *slub_cpu_partial_detach(struct sk_pcpu_slot *slot)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	struct sk_list *list = pc->partial;

	pc->partial = NULL;
	sk_store(&pc->nr_partial, 0);
	return list;
}

void slub_flush_partials(struct sk_cache *c, struct sk_list *chain)
{
	struct slub_cache *s = slub_of(c);
	struct slub_node *n = NULL;
	struct sk_list *discard = NULL;
	struct sk_page *slab;

	while ((slab = slub_chain_pop(&chain))) {
		struct slub_node *sn = slub_node_of(s, slab);

		if (sn != n) {
			if (n)
				pthread_mutex_unlock(&n->list_lock);
			n = sn;
			pthread_mutex_lock(&n->list_lock);
		}
		/* inuse read under list_lock: 0 is final (see the top). */
		if (!slub_counters(slab).inuse && slub_may_discard(c, n))
			slub_chain_push(&discard, slab);
		else
			slub_add_partial(n, slab, true);
	}
	if (n)
		pthread_mutex_unlock(&n->list_lock);
	slub_discard_list(c, discard);
}

/* A free just made a full slab partial and the caller adopted it.  held:
 * the caller's locked slot, or NULL. */
static void put_cpu_partial(struct sk_cache *c, struct sk_page *slab, struct sk_pcpu_slot *held)
{
	struct sk_pcpu_slot *slot = held ? held : sk_pcpu_trylock_local(c);
	struct sk_list *flush = NULL;

	if (held) {
		/* A sheaf flush under the slot lock: past the limit for now
		 * (by at most one sheaf's worth); slub_free spills the list
		 * once the slot lock is dropped. */
		slub_cpu_partial_link(slot, slab);
		return;
	}
	if (!slot) {
		/* The slot is busy (another thread of this CPU is in a slow
		 * path, or a drainer): straight to the node list. */
		slub_chain_push(&flush, slab);
		slub_flush_partials(c, flush);
		return;
	}
	flush = slub_cpu_partial_push(c, slot, slab);
	if (!held)
		sk_pcpu_unlock(slot);
	if (flush)
		slub_flush_partials(c, flush);
}

/* --- __slab_free --- */

void slub_slab_free(struct sk_cache *c, void *obj, struct sk_page *slab, struct sk_pcpu_slot *held,
		    struct sk_list **discard)
{
	struct slub_cache *s = slub_of(c);
	struct slub_node *n = NULL;
	/* A slab of another node is never adopted by this CPU: it goes back
	 * to its own node's partial list, so this CPU's allocations that name
	 * no node stay on its node. */
	const bool cpu_partial = slub_has_pcpu(c) && sk_load(&s->cpu_partial_slabs) != 0 &&
				 (s->nr_nodes == 1 || slab->node == (unsigned)sk_numa_current_node());
	bool was_frozen, on_node_partial = false;
	void *prior;
	union slub_counters old, new;

	do {
		if (n) {
			pthread_mutex_unlock(&n->list_lock);
			n = NULL;
		}
		prior = slub_freelist(slab);
		old = slub_counters(slab);
		if (sk_unlikely(prior == obj || !old.inuse)) {
			/* The hardened freelist's check: obj is already free. */
			sk_free_misuse(NULL, c, SK_MISUSE_DOUBLE_FREE, obj,
				       "it is the first free object of its slab");
			sk_cache_free_refused(c, obj);
			return;
		}
		slub_set_next(c, obj, prior);
		new = old;
		was_frozen = new.frozen;
		new.inuse--;
		if ((!new.inuse || !prior) && !was_frozen) {
			/* A list transition: empty, or full -> partial without a
			 * CPU partial list.  Decide it under list_lock. */
			if (!cpu_partial || prior) {
				n = slub_node_of(s, slab);
				pthread_mutex_lock(&n->list_lock);
				on_node_partial = slub_on_node_partial(slab);
			}
		}
	} while (!slub_cmpxchg_slab(slab, prior, old.word, obj, new.word));

	if (!n) {
		/* Frozen: its CPU owns it.  Full -> partial: we adopt it. */
		if (!was_frozen && !prior)
			put_cpu_partial(c, slab, held);
		return;
	}

	if (prior && !on_node_partial) {
		/* Emptied while on a CPU partial list or in transit: its
		 * holder sees inuse == 0 under list_lock. */
		pthread_mutex_unlock(&n->list_lock);
		return;
	}
	if (!new.inuse && slub_may_discard(c, n)) {
		if (prior)
			slub_remove_partial(n, slab);
		pthread_mutex_unlock(&n->list_lock);
		if (discard) { /* the caller holds a slot lock: fini must wait */
			slub_chain_push(discard, slab);
		} else {
			slub_discard_slab(c, slab);
		}
		return;
	}
	if (!prior)
		slub_add_partial(n, slab, true);
	pthread_mutex_unlock(&n->list_lock);
}

/* --- the sheaf --- */

void slub_sheaf_flush(struct sk_cache *c, struct sk_pcpu_slot *slot, uint32_t count, struct sk_list **discard)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	uint32_t n = sk_pcpu_array_count(slot);

	if (count > n)
		count = n;
	sk_stat_flush(c);
	for (uint32_t i = 0; i < count; i++) {
		void *obj = slot->entries[i];
		struct sk_page *slab = sk_page_head(obj);

		if (slab == pc->active) {
			/* The CPU slab's objects count in use while it is frozen,
			 * its CPU freelist included: no counter changes. */
			slub_set_next(c, obj, pc->freelist);
			pc->freelist = obj;
		} else {
			slub_slab_free(c, obj, slab, slot, discard);
		}
	}
	sk_pcpu_array_drop_oldest(slot, count);
}

/* --- the barn --- */

static struct slub_node *slot_node(struct slub_cache *s, const struct sk_pcpu_slot *slot)
{
	return &s->node[slot->tag - 1]; /* tag: the slot's node + 1 (slub_pcpu_init) */
}

/* Hand the `count` oldest objects of a locked slot's full sheaf to its
 * node's barn.  false: no barn, or no room for them all; the caller then
 * flushes them to their slabs, as a sheaf without a barn does. */
static bool barn_put(struct sk_cache *c, struct sk_pcpu_slot *slot, uint32_t count)
{
	struct slub_cache *s = slub_of(c);
	struct slub_node *n = slot_node(s, slot);
	const uint32_t depth = sk_load(&s->barn_sheaves) * slot->limit;
	bool put = false;

	if (sk_load(&n->barn_count) + count > depth)
		return false; /* a racy hint: the decision is made below */
	pthread_mutex_lock(&n->list_lock);
	if (!n->barn) {
		/* The first overflow of a full sheaf on this node: the store
		 * is made for the deepest barn the tunable allows, so that
		 * caches that never pass objects between CPUs pay nothing.
		 * (meta's lock is a leaf: it may be taken under list_lock.) */
		size_t room = (size_t)SLUB_BARN_SHEAVES * s->sheaf_room;
		if ((n->barn = sk_meta_zalloc(room * sizeof(void *))))
			n->barn_room = (uint32_t)room;
	}
	if (n->barn_count + count <= SK_MIN(depth, n->barn_room)) {
		sk_stack_append(n->barn, n->barn_count, slot->entries, count);
		sk_store(&n->barn_count, n->barn_count + count);
		put = true;
	}
	pthread_mutex_unlock(&n->list_lock);
	if (put) {
		sk_pcpu_array_drop_oldest(slot, count);
		sk_stat_flush(c);
	}
	return put;
}

uint32_t slub_barn_take(struct sk_cache *c, struct sk_pcpu_slot *slot, uint32_t want)
{
	struct slub_node *n = slot_node(slub_of(c), slot);
	uint32_t got;

	if (!sk_load(&n->barn_count))
		return 0;
	pthread_mutex_lock(&n->list_lock);
	if ((got = SK_MIN(want, n->barn_count))) {
		/* The most recently put objects: the warmest in some cache. */
		sk_stack_append(slot->entries, 0, n->barn + n->barn_count - got, got);
		sk_store(&n->barn_count, n->barn_count - got);
		n->barn_touched = true;
	}
	pthread_mutex_unlock(&n->list_lock);
	if (got)
		sk_stat_refill(c);
	return got;
}

void slub_barn_flush(struct sk_cache *c, struct slub_node *n, bool idle_only)
{
	void *batch[64];
	uint32_t got;

	if (idle_only) {
		pthread_mutex_lock(&n->list_lock);
		bool touched = n->barn_touched;
		n->barn_touched = false;
		pthread_mutex_unlock(&n->list_lock);
		if (touched)
			return;
	}
	/* In batches, each one copied out under list_lock and freed to its
	 * slabs without it (__slab_free takes list_lock itself). */
	do {
		pthread_mutex_lock(&n->list_lock);
		if ((got = SK_MIN((uint32_t)(sizeof(batch) / sizeof(batch[0])), n->barn_count))) {
			sk_stack_append(batch, 0, n->barn + n->barn_count - got, got);
			sk_store(&n->barn_count, n->barn_count - got);
		}
		pthread_mutex_unlock(&n->list_lock);
		for (uint32_t i = 0; i < got; i++)
			slub_slab_free(c, batch[i], sk_page_head(batch[i]), NULL, NULL);
	} while (got);
}

void slub_free(struct sk_cache *c, void *obj, struct sk_page *slab)
{
	struct sk_pcpu_slot *slot;

	if (slub_has_pcpu(c) && (slot = sk_pcpu_trylock_local(c)) != NULL) {
		/* The fast path missed: the sheaf is full (its older half
		 * goes to the node's barn, or to the slabs when the barn is
		 * full), or the object is of another node, or the counts
		 * needed a fold. */
		if (slot->limit && slot->tag == (uintptr_t)slab->node + 1) {
			struct sk_list *discard = NULL, *spill = NULL;
			const uint32_t half = (slot->limit + 1) / 2;
			if (sk_pcpu_array_count(slot) >= slot->limit && !barn_put(c, slot, half)) {
				slub_sheaf_flush(c, slot, half, &discard);
				/* The flush adopted slabs past the CPU partial
				 * limit: spill the list now.  A thread that only
				 * frees (an RCU worker) adopts only here, and its
				 * list would otherwise grow without bound,
				 * keeping every slab its frees empty. */
				if (slub_cpu_of(slot)->nr_partial > sk_load(&slub_of(c)->cpu_partial_slabs))
					spill = slub_cpu_partial_detach(slot);
			}
			sk_pcpu_array_push(slot, obj);
			sk_pcpu_unlock(slot);
			slub_discard_list(c, discard);
			if (spill)
				slub_flush_partials(c, spill);
			return;
		}
		sk_pcpu_unlock(slot);
	}
	slub_slab_free(c, obj, slab, NULL, NULL);
}

void slub_discard_list(struct sk_cache *c, struct sk_list *chain)
{
	struct sk_page *slab;

	while ((slab = slub_chain_pop(&chain)))
		slub_discard_slab(c, slab);
}

void slub_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu)
{
	struct slub_cache *s = slub_of(c);
	struct slub_cpu *pc = slub_cpu_of(slot);
	int node = sk_numa_cpu_node(cpu);

	if (node < 0 || (unsigned)node >= s->nr_nodes)
		node = 0;
	slot->tag = (uintptr_t)node + 1;
	slot->entries = pc->sheaf;
	slot->limit = sk_load(&s->sheaf_capacity);
}
