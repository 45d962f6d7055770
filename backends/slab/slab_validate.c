/*
 * SLAB's metadata check (ops->validate, called by slabkit_validate).
 *
 * Under each node's list_lock: every slab on the three lists, its active
 * count against the list it is on, and its free-index array (the entries
 * active .. num-1 name free objects: each below num, none twice); the
 * node's counters against the sum over its slabs; the shared array's
 * entries (objects of this cache on this node, none twice).  Then each
 * alien array under its own lock.  Core checks the per-CPU arrays.
 *
 * Repair.  A slab whose index array is corrupt loses its free objects:
 * active becomes num (every object counted out of the slab), so it goes
 * on the full list and nothing is taken from its bad entries; objects its
 * users free later are written back into the array as usual and handed
 * out again, the lost ones never are, so the slab is never empty and
 * never released (leaked).  Counters are recomputed; bad array entries are
 * dropped.
 *
 * Lock order: alien lock -> node list_lock (slab_alloc.c); this file takes
 * one lock at a time.
 */
#include "slab_int.h"

#define ISOLATE "Isolating the slab's free objects (never handed out again)"

enum verdict { SLAB_SOUND, SLAB_MISFILED, SLAB_BAD };

/* Check one slab found on list `expect` (0 full, 1 partial, 2 free).  The
 * caller refiles a misfiled one and isolates a bad one. */
static enum verdict check_slab(struct sk_cache *c, struct slab_cache *sc, struct sk_page *pg, int expect,
		       struct sk_validate_seen *seen)
{
	static const char *const list_name[] = { "full", "partial", "free" };
	uint32_t active = slab_active(pg);
	void *fl = slab_freelist(sc, pg);

	if (pg->owner != c || active > sc->num) {
		sk_validate_report(c, "Slab descriptor corrupt", sk_page_addr(pg), ISOLATE,
				   "owner %p (expected %p), active %u of %u", pg->owner, (void *)c, active,
				   sc->num);
		return SLAB_BAD;
	}
	int is = active == sc->num ? 0 : active == 0 ? 2 : 1;
	if (is != expect) {
		/* The list is wrong, not the array: refile (not an isolation). */
		sk_validate_report(c, "Slab on the wrong list", sk_page_addr(pg), "Moving it to its list",
				   "active %u of %u, on the %s list", active, sc->num, list_name[expect]);
		return SLAB_MISFILED;
	}
	sk_validate_seen_reset(seen, sc->num);
	for (uint32_t i = active; i < sc->num; i++) {
		unsigned idx = slab_freelist_get(sc, fl, i);
		const char *what = NULL;
		if (idx >= sc->num)
			what = "Free-index array corrupt (an index past the slab's objects)";
		else if (!sk_validate_seen_add(seen, idx))
			what = "Free-index array corrupt (an object listed free twice)";
		if (what) {
			sk_validate_report(c, what, sk_page_addr(pg), ISOLATE,
					   "entry %u of %u reads %u; active %u, objects at %p, %u bytes apart", i,
					   sc->num, idx, active, (void *)slab_s_mem(pg), sc->size);
			return SLAB_BAD;
		}
	}
	return SLAB_SOUND;
}

/* Every slab of node n onto the list its active count says (a slab found
 * on the wrong list is moved), isolating bad ones; then the counters. */
static uint64_t validate_lists(struct sk_cache *c, struct slab_cache *sc, struct slab_node *n,
			       struct sk_validate_seen *seen)
{
	struct sk_list *heads[3] = { &n->slabs_full, &n->slabs_partial, &n->slabs_free };
	struct sk_list found;
	uint64_t errors = 0;
	uint64_t slabs = 0, free_slabs = 0, free_objects = 0;

	/* Take every slab off the lists, then file each again. */
	sk_list_init(&found);
	for (int k = 0; k < 3; k++) {
		uint64_t steps = 0;
		while (!sk_list_empty(heads[k]) && steps++ <= n->total_slabs + 1) {
			struct sk_list *l = heads[k]->next;
			struct sk_page *pg = slab_of_link(l);
			sk_list_del(l);
			enum verdict v = check_slab(c, sc, pg, k, seen);
			errors += v != SLAB_SOUND;
			if (v == SLAB_BAD) {
				uint32_t active = slab_active(pg) > sc->num ? sc->num : slab_active(pg);
				n->free_objects -= sc->num - active;
				n->free_slabs -= active == 0;
				slab_set_active(pg, sc->num);
			}
			sk_list_add_tail(l, &found);
		}
	}
	while (!sk_list_empty(&found)) {
		struct sk_list *l = found.next;
		struct sk_page *pg = slab_of_link(l);
		uint32_t active = slab_active(pg);
		sk_list_del(l);
		sk_list_add_tail(l, active == sc->num ? &n->slabs_full
				      : active == 0   ? &n->slabs_free
						      : &n->slabs_partial);
		slabs++;
		free_slabs += active == 0;
		free_objects += sc->num - active;
	}
	if (slabs != n->total_slabs || free_slabs != n->free_slabs || free_objects != n->free_objects) {
		sk_validate_report(c, "Node counters disagree with the slabs", (void *)n, "Recounted",
				   "node %d: %llu slabs, %llu empty, %llu free objects counted; the node said %llu, %llu, %llu",
				   n->id, (unsigned long long)slabs, (unsigned long long)free_slabs,
				   (unsigned long long)free_objects, (unsigned long long)n->total_slabs,
				   (unsigned long long)n->free_slabs, (unsigned long long)n->free_objects);
		n->total_slabs = slabs;
		n->free_slabs = free_slabs;
		n->free_objects = free_objects;
		errors++;
	}
	return errors;
}

/* A shared or alien array of objects of node `home`: drop entries that are
 * not such objects or appear twice. */
static uint64_t validate_array(struct sk_cache *c, struct slab_array *a, int home, const char *which)
{
	uint32_t kept = 0, avail = a->avail;
	uint64_t errors = 0;

	if (avail > a->capacity) {
		sk_validate_report(c, "Array count corrupt", (void *)a, "Emptying the array (its objects are lost)",
				   "%s array: %u entries, capacity %u", which, avail, a->capacity);
		sk_store(&a->avail, 0);
		return 1;
	}
	for (uint32_t i = 0; i < avail; i++) {
		void *obj = a->entry[i];
		const char *what = NULL;
		if (!sk_validate_is_object(c, obj) || sk_page_of(obj)->node != home)
			what = "Array holds a pointer that is not an object of the cache on its node";
		for (uint32_t k = 0; k < kept && !what; k++)
			if (a->entry[k] == obj)
				what = "Array holds the same free object twice";
		if (what) {
			sk_validate_report(c, what, obj, "Entry dropped", "%s array of node %d, entry %u of %u",
					   which, home, i, avail);
			errors++;
			continue;
		}
		a->entry[kept++] = obj;
	}
	if (kept != avail)
		sk_store(&a->avail, kept);
	return errors;
}

uint64_t bslab_validate(struct sk_cache *c)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct sk_validate_seen *seen = sk_meta_zalloc(sizeof(*seen));
	uint64_t errors = 0;

	if (!seen) {
		sk_message("slabkit: validate %s: no memory to check its index arrays", c->name);
		return 0;
	}
	for (unsigned i = 0; i < sc->nr_nodes; i++) {
		struct slab_node *n = sc->node[i];
		if (!n)
			continue;
		pthread_mutex_lock(&n->list_lock);
		errors += validate_lists(c, sc, n, seen);
		if (n->shared)
			errors += validate_array(c, n->shared, n->id, "shared");
		pthread_mutex_unlock(&n->list_lock);
		for (unsigned m = 0; m < sc->nr_nodes; m++) {
			struct slab_alien *al = n->alien[m];
			if (!al)
				continue;
			pthread_mutex_lock(&al->lock);
			errors += validate_array(c, &al->ac, (int)m, "alien");
			pthread_mutex_unlock(&al->lock);
		}
	}
	sk_meta_free(seen, sizeof(*seen));
	return errors;
}
