/*
 * UMA per-CPU caches: the slow paths behind core's fast path
 * (uma_core.c cache_alloc, cache_alloc_retry, cache_free, zone_free_cross).
 *
 * Each CPU slot holds three buckets.  The alloc bucket *is* the slot: its
 * item array is slot->entries, its count sk_pcpu_array_count(slot), its capacity
 * slot->limit, so core's fast path pops and pushes on it without calling
 * here.  The free bucket and the cross-domain bucket are in the slot's extra
 * area (struct uma_cache).  slot->tag is the slot's node + 1: core only
 * pushes items of that node, so the alloc and free buckets of a FIRSTTOUCH
 * zone hold items of the CPU's own domain and a foreign item always comes
 * here.
 *
 * ops->alloc (the alloc bucket was empty):
 *   1. swap in the free bucket if it has items;
 *   2. else a bucket from the domain's bucket cache;
 *   3. else fill a new bucket from the keg (slot lock dropped meanwhile:
 *      pages may be allocated and init hooks run), install it if the slot
 *      still wants one, else cache it;
 *   4. else one item straight from the keg.
 * ops->free (alloc bucket full, none installed, or a foreign item):
 *   - full: swap with the free bucket if that has room; else the full free
 *     bucket goes to the domain cache, the full alloc bucket becomes the
 *     free bucket and an empty bucket becomes the alloc bucket;
 *   - foreign (FIRSTTOUCH, >1 domain): into the cross bucket, counted as an
 *     xdomain free; a full cross bucket is sorted into the owning domains'
 *     caches.  ROUNDROBIN zones take foreign items into the alloc bucket.
 * If the slot is busy (sk_pcpu_trylock_local fails: another thread on this
 * CPU holds it, or we migrated), the domain cache and keg serve directly.
 * Zones without per-CPU slots (NOBUCKET) use the keg only.
 *
 * Lock order: slot lock -> domain bucket-cache lock (uzd_lock) -> keg
 * domain lock (ukd_lock).  Work that may sleep or call user hooks (keg
 * imports, putting full buckets away) happens after the slot lock is
 * dropped wherever the algorithm allows.
 */
#include <string.h>

#include "uma_int.h"

static inline struct uma_cache *slot_cache(struct sk_pcpu_slot *slot)
{
	return (struct uma_cache *)sk_pcpu_extra(slot);
}

static inline uint32_t slot_count(const struct sk_pcpu_slot *slot)
{
	return sk_pcpu_array_count(slot);
}

static inline void slot_set_count(struct sk_pcpu_slot *slot, uint32_t n)
{
	sk_pcpu_set_array_count(slot, n);
}

/* The slot's domain (its CPU's node). */
static inline int slot_domain(const struct sk_pcpu_slot *slot)
{
	return (int)slot->tag - 1;
}

/* Make b (or nothing) the slot's alloc bucket; the old one must be unloaded. */
static void load_alloc(struct sk_pcpu_slot *slot, struct uma_cache *uc, struct uma_bucket *b)
{
	sk_store(&uc->uc_allocbucket, b);
	slot->entries = b ? b->ub_bucket : NULL;
	slot->limit = b ? b->ub_entries : 0;
	slot_set_count(slot, b ? b->ub_cnt : 0);
}

static struct uma_bucket *unload_alloc(struct sk_pcpu_slot *slot, struct uma_cache *uc)
{
	struct uma_bucket *b = uc->uc_allocbucket;

	if (b)
		b->ub_cnt = slot_count(slot);
	load_alloc(slot, uc, NULL);
	return b;
}

static void set_free(struct uma_cache *uc, struct uma_bucket *b)
{
	sk_store(&uc->uc_freebucket, b);
	sk_store(&uc->uc_free_cnt, b ? b->ub_cnt : 0);
}

static void swap_alloc_free(struct sk_pcpu_slot *slot, struct uma_cache *uc)
{
	struct uma_bucket *was_free = uc->uc_freebucket;

	set_free(uc, unload_alloc(slot, uc));
	load_alloc(slot, uc, was_free);
}

/* Which domain's bucket cache a slot trades with. */
static int fetch_domain(const struct uma_kz *kz, const struct sk_pcpu_slot *slot)
{
	return kz->kz_zone.uz_roundrobin ? skuma_zone_domain_most(kz) : slot_domain(slot);
}

static int put_domain(const struct uma_kz *kz, const struct sk_pcpu_slot *slot)
{
	return kz->kz_zone.uz_roundrobin ? skuma_zone_domain_fewest(kz) : slot_domain(slot);
}

/* This thread's node, for paths without a slot. */
static int current_domain(const struct uma_kz *kz)
{
	return (int)sk_current_node_clamped(kz->kz_zone.uz_ndomains);
}

/* --- allocation --- */

/*
 * The alloc bucket is empty and no bucket could be fetched: fill a new one
 * from the keg without holding the slot, keep one item, and hand the rest
 * to this CPU's slot if it still has an empty alloc bucket (and, FIRSTTOUCH,
 * is on the same domain), else to the domain cache.
 */
static sk_noinline void *cache_import(struct sk_cache *c, struct uma_kz *kz, int domain,
				      unsigned flags)
{
	struct uma_bucket *b = skuma_bucket_alloc(kz, domain);
	void *item;

	if (!b)
		return skuma_keg_alloc_item(kz, SK_NODE_ANY, flags);
	int n = kz->kz_zone.uz_roundrobin
			? skuma_keg_import_rr(kz, b->ub_bucket, (int)b->ub_entries, flags)
			: skuma_keg_import(kz, domain, b->ub_bucket, (int)b->ub_entries, flags);
	if (n == 0) {
		skuma_bucket_free(kz, domain, b);
		/* That domain has no memory (a round-robin import tried them
		 * all); for one item, another node will do. */
		return kz->kz_zone.uz_roundrobin ? NULL
						 : skuma_keg_alloc_item_elsewhere(kz, domain, flags);
	}
	b->ub_cnt = (uint32_t)n;
	item = sk_stack_pop(b->ub_bucket, &b->ub_cnt);
	if (b->ub_cnt == 0) {
		skuma_bucket_free(kz, domain, b);
		return item;
	}

	struct sk_pcpu_slot *slot = sk_pcpu_trylock_local(c);
	if (slot && slot_count(slot) == 0 &&
	    (kz->kz_zone.uz_roundrobin || slot_domain(slot) == domain)) {
		struct uma_cache *uc = slot_cache(slot);
		struct uma_bucket *old = unload_alloc(slot, uc);

		load_alloc(slot, uc, b);
		sk_stat_refill(c);
		b = NULL;
		if (old && !uc->uc_freebucket) {
			set_free(uc, old);
			old = NULL;
		}
		sk_pcpu_unlock(slot);
		if (old)
			skuma_bucket_free(kz, domain, old);
	} else {
		if (slot)
			sk_pcpu_unlock(slot);
		/* Lost the race or migrated: cache the filled bucket. */
		skuma_zone_put_bucket(kz, domain, b, false);
	}
	return item;
}

/* Slot locked, alloc bucket empty (or refilled meanwhile).  Unlocks. */
static void *cache_alloc(struct sk_cache *c, struct uma_kz *kz, struct sk_pcpu_slot *slot,
			 unsigned flags)
{
	struct uma_cache *uc = slot_cache(slot);
	struct uma_bucket *b, *old = NULL;
	void *item;
	int domain;

	if (slot_count(slot) > 0)
		goto pop;
	if (uc->uc_freebucket && uc->uc_freebucket->ub_cnt > 0) {
		swap_alloc_free(slot, uc);
		goto pop;
	}
	domain = fetch_domain(kz, slot);
	b = skuma_zone_fetch_bucket(kz, domain);
	if (!b) {
		sk_pcpu_unlock(slot);
		return cache_import(c, kz, domain, flags);
	}
	/* The empty alloc bucket becomes the free bucket if there is none. */
	old = unload_alloc(slot, uc);
	load_alloc(slot, uc, b);
	sk_stat_refill(c);
	if (old && !uc->uc_freebucket) {
		set_free(uc, old);
		old = NULL;
	}
pop:
	item = sk_pcpu_array_pop(slot);
	sk_pcpu_unlock(slot);
	if (old)
		skuma_bucket_free(kz, slot_domain(slot), old);
	return item;
}

void *skuma_alloc(struct sk_cache *c, int node, unsigned flags)
{
	struct uma_kz *kz = c->backend;
	void *item;

	if (node != SK_NODE_ANY) {
		if (node < 0 || (unsigned)node >= kz->kz_zone.uz_ndomains)
			node = current_domain(kz);
		/* uma_zalloc_domain: that domain's bucket cache, then its keg. */
		if (c->pcpu_base && !kz->kz_zone.uz_roundrobin &&
		    (item = skuma_zone_fetch_item(kz, node)))
			return item;
		return skuma_keg_alloc_item(kz, node, flags);
	}
	if (!c->pcpu_base)
		return skuma_keg_alloc_item(kz, SK_NODE_ANY, flags);

	struct sk_pcpu_slot *slot = sk_pcpu_trylock_local(c);
	if (sk_likely(slot))
		return cache_alloc(c, kz, slot, flags);
	/* Slot busy: the bucket cache, then the keg. */
	int domain = kz->kz_zone.uz_roundrobin ? skuma_zone_domain_most(kz) : current_domain(kz);
	item = skuma_zone_fetch_item(kz, domain);
	return item ? item : skuma_keg_alloc_item(kz, SK_NODE_ANY, flags);
}

/* --- free --- */

/* A FIRSTTOUCH item of another domain.  Slot locked; unlocks. */
static void cache_free_cross(struct uma_kz *kz, struct sk_pcpu_slot *slot, void *item,
			     struct sk_page *slab)
{
	struct uma_cache *uc = slot_cache(slot);
	struct uma_bucket *b = uc->uc_crossbucket;

	if (!b) {
		b = skuma_bucket_alloc(kz, slot_domain(slot));
		if (!b) {
			sk_pcpu_unlock(slot);
			skuma_keg_free_item(kz, item, slab);
			return;
		}
		sk_store(&uc->uc_crossbucket, b);
	}
	ck_pr_inc_64(&kz->kz_zone.uz_xdomain);
	sk_stack_push(b->ub_bucket, &b->ub_cnt, item);
	if (b->ub_cnt < b->ub_entries) {
		sk_store(&uc->uc_cross_cnt, b->ub_cnt);
		sk_pcpu_unlock(slot);
		return;
	}
	sk_store(&uc->uc_crossbucket, NULL);
	sk_store(&uc->uc_cross_cnt, 0);
	sk_pcpu_unlock(slot);
	skuma_zone_free_cross(kz, b);
}

/* Slot locked, the item belongs in the alloc bucket.  Unlocks. */
static void cache_free(struct uma_kz *kz, struct sk_pcpu_slot *slot, void *item,
		       struct sk_page *slab)
{
	struct uma_cache *uc = slot_cache(slot);
	struct uma_bucket *full = NULL, *b;

	if (slot_count(slot) < slot->limit)
		goto push;
	if (uc->uc_freebucket && uc->uc_freebucket->ub_cnt < uc->uc_freebucket->ub_entries) {
		/* (With no alloc bucket this just installs the free bucket.) */
		swap_alloc_free(slot, uc);
		if (slot_count(slot) < slot->limit)
			goto push;
	}
	b = skuma_bucket_alloc(kz, slot_domain(slot));
	if (!b) {
		sk_pcpu_unlock(slot);
		skuma_keg_free_item(kz, item, slab);
		return;
	}
	if (uc->uc_allocbucket) {
		/* Both full: the free bucket goes to the domain cache and the
		 * alloc bucket takes its place. */
		full = uc->uc_freebucket;
		set_free(uc, unload_alloc(slot, uc));
	}
	load_alloc(slot, uc, b);
push:
	sk_pcpu_array_push(slot, item);
	int domain = put_domain(kz, slot);
	sk_pcpu_unlock(slot);
	if (full) {
		sk_stat_flush(kz->kz_cache);
		skuma_zone_put_bucket(kz, domain, full, true);
	}
}

void skuma_free(struct sk_cache *c, void *obj, struct sk_page *slab)
{
	struct uma_kz *kz = c->backend;

	if (!c->pcpu_base) {
		skuma_keg_free_item(kz, obj, slab);
		return;
	}
	struct sk_pcpu_slot *slot = sk_pcpu_trylock_local(c);
	if (sk_unlikely(!slot)) {
		/* Slot busy: straight back to the slab (zone_free_item). */
		skuma_keg_free_item(kz, obj, slab);
		return;
	}
	if (kz->kz_zone.uz_crossdomain &&
	    (uintptr_t)skuma_slab_domain(kz, slab) + 1 != slot->tag) {
		cache_free_cross(kz, slot, obj, slab);
		return;
	}
	cache_free(kz, slot, obj, slab);
}

/* --- set-up, drain, counting --- */

void skuma_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu)
{
	struct uma_kz *kz = c->backend;
	int node = sk_numa_cpu_node(cpu);

	if (node < 0 || (unsigned)node >= kz->kz_zone.uz_ndomains)
		node = 0;
	memset(slot_cache(slot), 0, sizeof(struct uma_cache));
	slot->entries = NULL;
	slot->limit = 0;
	slot_set_count(slot, 0);
	slot->tag = (uintptr_t)node + 1;
}

/*
 * UMA_RECLAIM_DRAIN_CPU: every CPU's buckets go back to the keg.  A slot
 * with no bucket is skipped without locking (a bucket installed right after
 * the check is the same as one installed right after the drain).
 */
void skuma_cache_drain_cpus(struct sk_cache *c)
{
	struct uma_kz *kz = c->backend;

	if (!c->pcpu_base)
		return;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct uma_cache *uc = slot_cache(sk_pcpu_slot(c, cpu));
		struct uma_bucket *bs[3];

		if (!sk_load(&uc->uc_allocbucket) && !sk_load(&uc->uc_freebucket) &&
		    !sk_load(&uc->uc_crossbucket))
			continue;
		struct sk_pcpu_slot *slot = sk_pcpu_lock_cpu(c, cpu);
		bs[0] = unload_alloc(slot, uc);
		bs[1] = uc->uc_freebucket;
		bs[2] = uc->uc_crossbucket;
		set_free(uc, NULL);
		sk_store(&uc->uc_crossbucket, NULL);
		sk_store(&uc->uc_cross_cnt, 0);
		sk_pcpu_unlock(slot);
		for (size_t i = 0; i < SK_ARRAY_SIZE(bs); i++)
			if (bs[i])
				skuma_bucket_drain_free(kz, bs[i]);
	}
}

uint64_t skuma_cache_cpu_items(const struct sk_cache *c)
{
	uint64_t n = 0;

	if (!c->pcpu_base)
		return 0;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
		struct uma_cache *uc = slot_cache(slot);

		n += slot_count(slot) + sk_load(&uc->uc_free_cnt) +
		     sk_load(&uc->uc_cross_cnt);
	}
	return n;
}
