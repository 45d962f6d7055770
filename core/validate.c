/*
 * Validation shared by every backend (slabkit_validate, docs/debug.md):
 * what an object pointer held in an array or bucket must satisfy, and the
 * per-CPU slots' entries, checked here once for every SK_PCPU_ARRAY
 * backend (SLAB's arrays, SLUB's sheaves, UMA's alloc buckets).  Each
 * backend's own metadata is its ops->validate's (backends/<b>/<b>_validate.c).
 *
 * Lock order: registry_lock (slabkit_validate) -> one slot lock at a time.
 */
#include <stdbool.h>
#include <stdint.h>

#include "sk_core.h"
#include "sk_debug.h"

bool sk_validate_is_object(const struct sk_cache *c, const void *p)
{
	struct sk_page *pg = sk_page_of(p);

	if (!pg || pg->kind != SK_PAGE_SLAB || pg->owner != c)
		return false;
	/* Every page of a slab keeps its first object's address. */
	return !c->stride_magic || sk_free_on_stride(c, sk_page_of_raw(p), p);
}

/* One slot, locked: drop every entry that is not an object of c or that
 * appears twice (it would be handed out twice).  Returns the errors. */
static uint64_t validate_slot(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu)
{
	unsigned n = sk_pcpu_array_count(slot), kept = 0;
	uint64_t errors = 0;

	for (unsigned i = 0; i < n; i++) {
		void *obj = slot->entries[i];
		const char *what = NULL;

		if (!sk_validate_is_object(c, obj)) {
			what = "Per-CPU cache holds a pointer that is not an object of the cache";
		} else {
			for (unsigned k = 0; k < kept && !what; k++)
				if (slot->entries[k] == obj)
					what = "Per-CPU cache holds the same free object twice";
		}
		if (what) {
			sk_validate_report(c, what, obj, "Entry dropped from the per-CPU cache",
					   "entry %u of %u on CPU %u", i, n, cpu);
			errors++;
			continue;
		}
		slot->entries[kept++] = obj;
	}
	if (kept != n)
		sk_pcpu_set_array_count(slot, kept);
	return errors;
}

uint64_t sk_validate_slots(struct sk_cache *c)
{
	uint64_t errors = 0;

	if (!c->pcpu_base || c->pcpu_kind != SK_PCPU_ARRAY || sk_pcpu_caller_holds_slot())
		return 0;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
		if (slot->entries)
			errors += validate_slot(c, slot, cpu);
		sk_pcpu_unlock(slot);
	}
	return errors;
}
