/*
 * SLUB's metadata check (ops->validate, called by slabkit_validate): the
 * free lists that live inside free objects.
 *
 * It walks every slab it may pop from (the owner rule at the top of
 * slub_slab.c), so that no object on a list it walks can be handed out
 * meanwhile; other threads may only push in front of the head it read:
 *   - each CPU's active slab (its CPU freelist and the slab's own list of
 *     remote frees) and per-CPU partial slabs, under that slot's lock;
 *   - each node's partial slabs, under the node's list_lock.
 * Then every slab of the cache, full ones included (they sit on no list),
 * from the page provider's descriptors under its node lock (so that none
 * is freed meanwhile): what one atomic snapshot of {freelist, counters}
 * shows, which holds whoever owns the slab and whatever list it is on:
 * sane counters, the free list empty exactly when every object is in use,
 * its head an object start inside the slab.
 *
 * For a slab it checks: every free pointer lands on an object start inside
 * the slab (core's sk_validate_index), no object appears twice (a cycle),
 * and the list's length is what {inuse, objects} say is free.
 *
 * Repair: a bad slab's free objects are taken out of circulation (freelist
 * emptied, every object counted in use): the slab becomes "full" and
 * leaves its list; objects its users free later go back to it as usual and
 * are handed out again, the lost ones never are, so the slab is never
 * empty and never discarded (leaked).
 *
 * Lock order: slot lock -> list_lock (slub.h), one slot at a time; the
 * provider's node lock alone (nothing else is taken under it).
 */
#include <stdio.h>

#include "slub.h"

/* {freelist, counters} as they were at one instant: a compare-and-swap of
 * the pair with itself confirms what two loads read. */
static void snapshot(struct sk_page *slab, void **fl, union slub_counters *ctr)
{
	for (;;) {
		*fl = slub_freelist(slab);
		*ctr = slub_counters(slab);
		if (slub_cmpxchg_slab(slab, *fl, ctr->word, *fl, ctr->word))
			return;
	}
}

/* Empty the slab's free list and count every object in use (pushes that
 * race in are taken out too). */
static void leak_free_objects(struct sk_page *slab)
{
	void *fl;
	union slub_counters ctr, leaked;

	do {
		snapshot(slab, &fl, &ctr);
		leaked = ctr;
		leaked.inuse = ctr.objects;
	} while (!slub_cmpxchg_slab(slab, fl, ctr.word, NULL, leaked.word));
}

struct walk {
	uint32_t count;       /* good objects followed */
	const char *what;     /* NULL: the list is sound */
	void *from, *to;      /* the bad link: object `from` points to `to` */
};

/* Follow a free list of slab (objects starting at its first byte), marking
 * each object in seen.  An object's next pointer is read only once the
 * object is known to be inside the slab. */
static bool walk_list(struct sk_cache *c, struct sk_page *slab, uint32_t nr, void *head,
		      struct sk_validate_seen *seen, struct walk *w)
{
	char *base = sk_page_addr(slab);
	void *prev = NULL;

	w->count = 0;
	w->what = NULL;
	for (void *p = head; p; prev = p, p = slub_get_next(c, p)) {
		long i = sk_validate_index(c, base, nr, p);
		if (i < 0)
			w->what = "Free pointer corrupt (outside the slab or not on an object boundary)";
		else if (!sk_validate_seen_add(seen, (uint32_t)i) || w->count >= nr)
			w->what = "Free list corrupt (an object appears twice: a cycle)";
		if (w->what) {
			w->from = prev;
			w->to = p;
			return false;
		}
		w->count++;
	}
	return true;
}

#define ISOLATE "Isolating the slab's free objects (never handed out again)"

static void report_walk(struct sk_cache *c, struct sk_page *slab, const char *list, const struct walk *w,
			const char *fix)
{
	if (w->from)
		sk_validate_report(c, w->what, sk_page_addr(slab), fix,
				   "%s free list: free object %p points to %p (free pointer at offset %u), after %u good object(s)",
				   list, w->from, w->to, c->free_offset, w->count);
	else
		sk_validate_report(c, w->what, sk_page_addr(slab), fix, "%s free list starts at %p", list, w->to);
}

/*
 * Check an unfrozen slab the caller owns (on a node or CPU partial list),
 * or the slab list of a frozen one (`seen` already holds its CPU
 * freelist).  Returns true when it is sound; false when it was reported:
 * the caller takes it off its list, then isolates its free objects (in
 * that order: once its freelist is empty a freer may adopt it).
 */
static bool check_slab(struct sk_cache *c, struct sk_page *slab, struct sk_validate_seen *seen, bool reset,
		       const char *list)
{
	void *fl;
	union slub_counters ctr;
	uint32_t max = (uint32_t)(((size_t)slab->npages << SK_PAGE_SHIFT) / c->size);
	struct walk w;

	snapshot(slab, &fl, &ctr);
	if (ctr.objects > max || ctr.inuse > ctr.objects) {
		sk_validate_report(c, "Slab counters corrupt", sk_page_addr(slab), ISOLATE,
				   "inuse %u, objects %u; the slab has room for %u", ctr.inuse, ctr.objects, max);
		return false;
	}
	if (reset)
		sk_validate_seen_reset(seen, ctr.objects);
	if (!walk_list(c, slab, ctr.objects, fl, seen, &w)) {
		report_walk(c, slab, list, &w, ISOLATE);
		return false;
	}
	if (w.count != ctr.objects - ctr.inuse) {
		sk_validate_report(c, "Free count mismatch", sk_page_addr(slab), ISOLATE,
				   "%s free list holds %u object(s); the counters say %u of %u are free", list,
				   w.count, ctr.objects - ctr.inuse, ctr.objects);
		return false;
	}
	return true;
}

/* A CPU's slabs, its slot locked. */
static uint64_t validate_cpu(struct sk_cache *c, struct sk_pcpu_slot *slot, struct sk_validate_seen *seen)
{
	struct slub_cpu *pc = slub_cpu_of(slot);
	struct sk_page *slab = pc->active;
	uint64_t errors = 0;

	if (slab) {
		/* The CPU freelist and the slab's remote frees are disjoint
		 * parts of one slab: one set of seen objects for both. */
		union slub_counters ctr = slub_counters(slab);
		struct walk w;
		sk_validate_seen_reset(seen, ctr.objects);
		if (!walk_list(c, slab, ctr.objects, pc->freelist, seen, &w)) {
			/* Its objects count in use already (frozen): drop the list. */
			report_walk(c, slab, "CPU", &w, "Isolating the CPU freelist (its objects stay counted in use)");
			pc->freelist = NULL;
			errors++;
		}
		if (!check_slab(c, slab, seen, false, "Active slab's")) {
			leak_free_objects(slab); /* stays frozen: on no list */
			errors++;
		}
	}
	struct sk_list **at = &pc->partial;
	while (*at) {
		slab = slub_slab_of(*at);
		if (check_slab(c, slab, seen, true, "CPU partial slab's")) {
			at = &(*at)->prev;
			continue;
		}
		/* Now full: it leaves the list; the next free adopts it. */
		sk_chain_take(at);
		sk_store(&pc->nr_partial, pc->nr_partial - 1);
		leak_free_objects(slab);
		errors++;
	}
	return errors;
}

/* The whole-slab walk: problems found under the provider's lock,
 * reported after it (a report calls the message hook). */
#define WALK_REPORTS 16
struct any_slab_walk {
	struct sk_cache *c;
	uint32_t found;
	struct {
		struct sk_page *slab;
		const char *what;
		void *freelist;
		union slub_counters ctr;
	} bad[WALK_REPORTS];
};

/* Any slab of the cache, from one snapshot (provider lock held; no other
 * lock).  A bad one loses its free objects, as on the lists. */
static void check_any_slab(struct sk_page *slab, void *arg)
{
	struct any_slab_walk *w = arg;
	struct sk_cache *c = w->c;
	uint32_t max = (uint32_t)(((size_t)slab->npages << SK_PAGE_SHIFT) / c->size);
	const char *what = NULL;
	void *fl;
	union slub_counters ctr;

	snapshot(slab, &fl, &ctr);
	if (!ctr.objects && !fl)
		return; /* being made: its words are not written yet */
	if (ctr.objects > max || ctr.inuse > ctr.objects)
		what = "Slab counters corrupt";
	else if (!fl && ctr.inuse != ctr.objects)
		what = "Free count mismatch";
	else if (fl && sk_validate_index(c, sk_page_addr(slab), ctr.objects, fl) < 0)
		what = "Free pointer corrupt (outside the slab or not on an object boundary)";
	if (!what)
		return;
	leak_free_objects(slab);
	if (w->found < WALK_REPORTS)
		w->bad[w->found] = (__typeof__(w->bad[0])){ slab, what, fl, ctr };
	w->found++;
}

static uint64_t validate_every_slab(struct sk_cache *c)
{
	struct any_slab_walk *w = sk_meta_zalloc(sizeof(*w));
	if (!w)
		return 0;
	w->c = c;
	sk_pages_walk_locked(SK_PAGE_SLAB, c, check_any_slab, w);
	uint32_t found = w->found;
	for (uint32_t i = 0; i < found && i < WALK_REPORTS; i++)
		sk_validate_report(c, w->bad[i].what, sk_page_addr(w->bad[i].slab), ISOLATE,
				   "walking every slab: free list head %p, inuse %u of %u objects, frozen %u",
				   w->bad[i].freelist, w->bad[i].ctr.inuse, w->bad[i].ctr.objects, w->bad[i].ctr.frozen);
	if (found > WALK_REPORTS)
		sk_validate_report(c, "More corrupt slabs", NULL, ISOLATE, "%u more, not listed", found - WALK_REPORTS);
	sk_meta_free(w, sizeof(*w));
	return found;
}

uint64_t slub_validate(struct sk_cache *c)
{
	struct slub_cache *s = slub_of(c);
	struct sk_validate_seen *seen = sk_meta_zalloc(sizeof(*seen));
	uint64_t errors = 0;

	if (!seen) {
		sk_message("slabkit: validate %s: no memory to check its free lists", c->name);
		return 0;
	}
	for (unsigned cpu = 0; slub_has_pcpu(c) && !sk_pcpu_caller_holds_slot() && cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
		errors += validate_cpu(c, slot, seen);
		sk_pcpu_unlock(slot);
	}
	for (unsigned i = 0; i < s->nr_nodes; i++) {
		struct slub_node *n = &s->node[i];
		struct sk_list *link, *next;

		pthread_mutex_lock(&n->list_lock);
		sk_list_for_each_safe(link, next, &n->partial) {
			struct sk_page *slab = slub_slab_of(link);
			if (check_slab(c, slab, seen, true, "Partial slab's"))
				continue;
			/* A partial slab has free objects: this one is now
			 * full, and leaves the list (a later free adopts it). */
			slub_remove_partial(n, slab);
			leak_free_objects(slab);
			errors++;
		}
		pthread_mutex_unlock(&n->list_lock);
	}
	sk_meta_free(seen, sizeof(*seen));
	return errors + validate_every_slab(c);
}
