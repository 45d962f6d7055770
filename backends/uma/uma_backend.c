/*
 * The UMA backend's ops table: cache creation and destruction, reclaim
 * levels, the periodic working-set trim, reports and tunables.  The other
 * files hold the mechanisms (uma_keg.c slabs, uma_bucket.c bucket caches,
 * uma_cache.c per-CPU slow paths); see uma_int.h for the overview.
 *
 * Reclaim (ops->shrink), as uma_reclaim(9):
 *   SK_SHRINK_TRIM       each domain's bucket cache down to its working-set
 *                        estimate (which the call updates first, so repeated
 *                        trims of an idle zone release more each time);
 *   SK_SHRINK_DRAIN      every domain's bucket cache and the spare empty
 *                        buckets; the bucket size shrinks one class;
 *   SK_SHRINK_DRAIN_CPU  first every CPU's buckets too, and the bucket size
 *                        first halves its distance to the start class
 *                        (cache_shrink) before the one-class step.
 * Each level ends with keg_drain: fully free slabs go back to the page
 * provider (never for NOFREE zones, until destruction).
 *
 * Period: one maintenance tick (slabkit_tick, every tick_ms) is one UMA
 * timeout period (UMA_TIMEOUT, 20 s in FreeBSD): each tick updates every
 * domain's estimate and trims the cache beyond it, then frees the slabs
 * that became empty.
 *
 * Lock order: this file takes the domain and keg locks only through the
 * other files' functions, never two at once.
 */
#include <errno.h>
#include <string.h>

#include "uma_int.h"

static int uma_cache_create(struct sk_cache *c)
{
	unsigned nd = sk_numa_nodes();
	size_t head = SK_ALIGN_UP(sizeof(struct uma_kz), (size_t)64);
	size_t bytes;
	struct uma_kz *kz;
	int err;

	if (nd == 0)
		nd = 1;
	if (nd > SK_MAX_NODES)
		nd = SK_MAX_NODES;
	bytes = head + nd * (sizeof(struct uma_keg_domain) + sizeof(struct uma_zone_domain));
	kz = sk_meta_zalloc(bytes);
	if (!kz)
		return -ENOMEM;
	kz->kz_bytes = bytes;
	kz->kz_cache = c;
	kz->kz_keg.uk_ndomains = nd;
	kz->kz_keg.uk_domain = (struct uma_keg_domain *)((char *)kz + head);
	kz->kz_zone.uz_ndomains = nd;
	kz->kz_zone.uz_domain = (struct uma_zone_domain *)(kz->kz_keg.uk_domain + nd);

	err = skuma_keg_layout(kz, c);
	if (err) {
		sk_meta_free(kz, bytes);
		return err;
	}
	for (unsigned d = 0; d < nd; d++) {
		struct uma_keg_domain *kd = &kz->kz_keg.uk_domain[d];

		pthread_mutex_init(&kd->ukd_lock, NULL);
		sk_list_init(&kd->ukd_part);
		sk_list_init(&kd->ukd_free);
		sk_list_init(&kd->ukd_full);
		pthread_mutex_init(&kz->kz_zone.uz_domain[d].uzd_lock, NULL);
	}

	struct uma_zcache *zone = &kz->kz_zone;
	zone->uz_roundrobin = kz->kz_keg.uk_roundrobin;
	zone->uz_crossdomain = !zone->uz_roundrobin && nd > 1;
	zone->uz_bucket_idx_max = UMA_BUCKET_CLASSES - 1;
	zone->uz_bucket_idx = (c->flags & SK_CACHE_MAXBUCKET) ? zone->uz_bucket_idx_max
							       : skuma_bucket_select(c->object_size);
	zone->uz_bucket_idx_min = zone->uz_bucket_idx;
	zone->uz_bucket_max = UINT64_MAX;

	c->size = kz->kz_keg.uk_rsize;
	c->pcpu_extra = sizeof(struct uma_cache);
	c->backend = kz;
	return 0;
}

static void uma_cache_destroy(struct sk_cache *c)
{
	struct uma_kz *kz = c->backend;

	if (!kz)
		return;
	skuma_cache_drain_cpus(c);
	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		skuma_zone_trim_domain(kz, (int)d, UMA_TRIM_ALL);
	skuma_zone_release_empty(kz);
	skuma_keg_destroy(kz);
	for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++) {
		pthread_mutex_destroy(&kz->kz_keg.uk_domain[d].ukd_lock);
		pthread_mutex_destroy(&kz->kz_zone.uz_domain[d].uzd_lock);
	}
	c->backend = NULL;
	sk_meta_free(kz, kz->kz_bytes);
}

/* Smaller buckets after a drain (bucket_cache_reclaim's uz_bucket_size--,
 * and for DRAIN_CPU first cache_shrink's halving). */
static void zone_bucket_shrink(struct uma_zcache *zone, bool halve)
{
	uint32_t idx = sk_load(&zone->uz_bucket_idx);
	uint32_t min = sk_load(&zone->uz_bucket_idx_min);

	if (halve && idx > min)
		idx = min + (idx - min) / 2;
	if (idx > min)
		idx--;
	sk_store(&zone->uz_bucket_idx, idx);
}

static uint64_t uma_shrink(struct sk_cache *c, enum sk_shrink_level level)
{
	struct uma_kz *kz = c->backend;
	enum uma_trim_kind kind = level == SK_SHRINK_TRIM ? UMA_TRIM_WSS : UMA_TRIM_ALL;

	if (level == SK_SHRINK_DRAIN_CPU)
		skuma_cache_drain_cpus(c);
	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		skuma_zone_trim_domain(kz, (int)d, kind);
	if (level != SK_SHRINK_TRIM) {
		zone_bucket_shrink(&kz->kz_zone, level == SK_SHRINK_DRAIN_CPU);
		skuma_zone_release_empty(kz);
	}
	skuma_keg_drain(kz, -1);
	return skuma_keg_slabs(kz);
}

static void uma_tick(struct sk_cache *c)
{
	struct uma_kz *kz = c->backend;

	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		if (skuma_zone_trim_domain(kz, (int)d, UMA_TRIM_WSS) > 0)
			skuma_keg_drain(kz, (int)d);
}

static void uma_cache_info(struct sk_cache *c, struct sk_backend_cache_info *out)
{
	struct uma_kz *kz = c->backend;
	uint64_t cached = skuma_cache_cpu_items(c);

	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		cached += skuma_domain_cached(kz, (int)d);
	memset(out, 0, sizeof(*out));
	out->objects_per_slab = kz->kz_keg.uk_ipers;
	out->cached_free = cached;
	out->slab_free = skuma_keg_free_items(kz);
	skuma_keg_slab_counts(kz, &out->partial_slabs, &out->empty_slabs);
	out->xdomain_frees = skuma_xdomain_frees(kz);
	out->xdomain_counted = true;
	out->limit = (c->flags & SK_CACHE_NOBUCKET) || !c->pcpu_base
			     ? 0
			     : (long)skuma_bucket_size_now(kz);
}

/* The largest bucket class holding at most `entries` items (class 0 if
 * even that is larger). */
static uint32_t class_at_most(long entries)
{
	uint32_t idx = 0;

	while (idx + 1 < UMA_BUCKET_CLASSES && skuma_bucket_entries[idx + 1] <= entries)
		idx++;
	return idx;
}

/*
 * Tunables:
 *   bucket_size=N       current bucket size: the largest class <= N (>= 1)
 *   bucket_max=N        ceiling for contention growth: largest class <= N
 *   bucket_cache_max=N  items the domain bucket caches may hold in all
 *                       (uz_bucket_max; 0 keeps no full buckets)
 * Buckets made before a change keep their size.
 */
static int uma_tune(struct sk_cache *c, const char *key, long value)
{
	struct uma_kz *kz = c->backend;
	struct uma_zcache *zone = &kz->kz_zone;

	if (!strcmp(key, "bucket_cache_max")) {
		if (value < 0)
			return -EINVAL;
		sk_store(&zone->uz_bucket_max, (uint64_t)value);
		return 0;
	}
	if (c->flags & SK_CACHE_NOBUCKET)
		return -EINVAL;
	if (!strcmp(key, "bucket_size")) {
		if (value < 1)
			return -EINVAL;
		uint32_t idx = SK_MIN(class_at_most(value), sk_load(&zone->uz_bucket_idx_max));
		sk_store(&zone->uz_bucket_idx, idx);
		if (sk_load(&zone->uz_bucket_idx_min) > idx)
			sk_store(&zone->uz_bucket_idx_min, idx);
		return 0;
	}
	if (!strcmp(key, "bucket_max")) {
		if (value < 1)
			return -EINVAL;
		uint32_t max = class_at_most(value);
		sk_store(&zone->uz_bucket_idx_max, max);
		if (sk_load(&zone->uz_bucket_idx) > max)
			sk_store(&zone->uz_bucket_idx, max);
		if (sk_load(&zone->uz_bucket_idx_min) > max)
			sk_store(&zone->uz_bucket_idx_min, max);
		return 0;
	}
	return -EINVAL;
}

/* fork(): level 1 every domain bucket-cache lock, level 2 every keg
 * domain lock (uma_int.h's order below the slot locks). */
static void uma_fork_lock(struct sk_cache *c, unsigned level, bool lock)
{
	struct uma_kz *kz = c ? c->backend : NULL;
	int (*op)(pthread_mutex_t *) = lock ? pthread_mutex_lock : pthread_mutex_unlock;

	if (!kz)
		return;
	if (level == 1)
		for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
			op(&kz->kz_zone.uz_domain[d].uzd_lock);
	else if (level == 2)
		for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++)
			op(&kz->kz_keg.uk_domain[d].ukd_lock);
}

const struct sk_backend_ops sk_uma_ops = {
	.name = "uma",
	.caps = SK_CAP_PERCPU | SK_CAP_NODE_LISTS | SK_CAP_TUNABLES | SK_CAP_ROUNDROBIN | SK_CAP_STRIDE,
	.pcpu_kind = SK_PCPU_ARRAY,
	.free_tag = SK_TAG_NODE,
	.cache_create = uma_cache_create,
	.pcpu_init = skuma_pcpu_init,
	.cache_destroy = uma_cache_destroy,
	.alloc = skuma_alloc,
	.free = skuma_free,
	.shrink = uma_shrink,
	.tick = uma_tick,
	.cache_info = uma_cache_info,
	.validate = skuma_validate,
	.tune = uma_tune,
	.fork_lock = uma_fork_lock,
};
