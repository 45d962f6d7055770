/*
 * UMA's metadata check (ops->validate, called by slabkit_validate): the
 * buckets and the keg's slabs.
 *
 *   - every CPU's alloc, free and cross-domain buckets, under its slot lock
 *     (core has checked the alloc bucket's entries are objects of the
 *     cache), and every domain's cached buckets under uzd_lock: the count
 *     within the bucket's size, each item an object of this zone's keg,
 *     not twice in the bucket, and not free in its slab's bitset as well
 *     (it would be handed out twice);
 *   - the keg (uma_keg.c, skuma_keg_validate): each slab's free bitset
 *     against its free count and list, the domains' counters.
 *
 * Repair: bad items are dropped from their bucket (leaked); a slab with a
 * bad bitset loses its free items (skuma_keg_validate).
 *
 * Lock order: slot lock -> uzd_lock -> ukd_lock (uma_int.h), the keg lock
 * only inside skuma_keg_item_free_in_slab.
 */
#include "uma_int.h"

/* Drop the bad items of items[0 .. *cnt); returns the errors. */
static uint64_t check_items(struct sk_cache *c, struct uma_kz *kz, void **items, uint32_t *cnt,
			    const char *where)
{
	uint32_t kept = 0, n = *cnt;
	uint64_t errors = 0;

	for (uint32_t i = 0; i < n; i++) {
		void *item = items[i];
		const char *what = NULL;
		if (!sk_validate_is_object(c, item))
			what = "Bucket holds a pointer that is not an item of the zone";
		for (uint32_t k = 0; k < kept && !what; k++)
			if (items[k] == item)
				what = "Bucket holds the same free item twice";
		if (!what && skuma_keg_item_free_in_slab(kz, item))
			what = "Item free both in a bucket and in its slab";
		if (what) {
			sk_validate_report(c, what, item, "Item dropped from the bucket", "%s, entry %u of %u",
					   where, i, n);
			errors++;
			continue;
		}
		items[kept++] = item;
	}
	*cnt = kept;
	return errors;
}

static uint64_t check_bucket(struct sk_cache *c, struct uma_kz *kz, struct uma_bucket *b, const char *where)
{
	uint64_t errors = 0;

	if (b->ub_cnt > b->ub_entries) {
		sk_validate_report(c, "Bucket count corrupt", (void *)b, "Emptying the bucket (its items are lost)",
				   "%s: %u items in a bucket of %u", where, b->ub_cnt, b->ub_entries);
		b->ub_cnt = 0;
		return 1;
	}
	errors += check_items(c, kz, b->ub_bucket, &b->ub_cnt, where);
	return errors;
}

static uint64_t validate_cpu(struct sk_cache *c, struct uma_kz *kz, struct sk_pcpu_slot *slot)
{
	struct uma_cache *uc = sk_pcpu_extra(slot);
	uint64_t errors = 0;

	if (slot->entries) {
		uint32_t n = sk_pcpu_array_count(slot), kept = n;
		errors += check_items(c, kz, slot->entries, &kept, "CPU alloc bucket");
		if (kept != n)
			sk_pcpu_set_array_count(slot, kept);
	}
	if (uc->uc_freebucket) {
		errors += check_bucket(c, kz, uc->uc_freebucket, "CPU free bucket");
		sk_store(&uc->uc_free_cnt, uc->uc_freebucket->ub_cnt);
	}
	if (uc->uc_crossbucket) {
		errors += check_bucket(c, kz, uc->uc_crossbucket, "CPU cross-domain bucket");
		sk_store(&uc->uc_cross_cnt, uc->uc_crossbucket->ub_cnt);
	}
	return errors;
}

static uint64_t validate_domain(struct sk_cache *c, struct uma_kz *kz, struct uma_zone_domain *zd)
{
	uint64_t errors = 0;
	int64_t nitems = 0;

	pthread_mutex_lock(&zd->uzd_lock);
	for (struct uma_bucket *b = zd->uzd_buckets; b; b = b->ub_next) {
		errors += check_bucket(c, kz, b, "domain bucket cache");
		nitems += b->ub_cnt;
	}
	if (nitems != zd->uzd_nitems) {
		/* Dropped items, or a count gone wrong: the count follows the
		 * buckets (the working-set marks stay at or below it). */
		if (!errors) {
			sk_validate_report(c, "Bucket cache count disagrees with its buckets", (void *)zd, "Recounted",
					   "%lld items in the buckets, the count says %lld", (long long)nitems,
					   (long long)zd->uzd_nitems);
			errors++;
		}
		sk_store((uint64_t *)&zd->uzd_nitems, (uint64_t)nitems);
		if (zd->uzd_bimin > nitems)
			zd->uzd_bimin = nitems;
		if (zd->uzd_imin > nitems)
			zd->uzd_imin = nitems;
	}
	pthread_mutex_unlock(&zd->uzd_lock);
	return errors;
}

uint64_t skuma_validate(struct sk_cache *c)
{
	struct uma_kz *kz = c->backend;
	uint64_t errors = 0;

	for (unsigned cpu = 0; c->pcpu_base && !sk_pcpu_caller_holds_slot() && cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
		errors += validate_cpu(c, kz, slot);
		sk_pcpu_unlock(slot);
	}
	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		errors += validate_domain(c, kz, &kz->kz_zone.uz_domain[d]);
	return errors + skuma_keg_validate(c, kz);
}
