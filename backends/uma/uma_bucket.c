/*
 * UMA buckets and the per-domain bucket caches (uma_core.c bucket_select,
 * zone_domain_lock, zone_put_bucket, zone_fetch_bucket, zone_free_cross,
 * zone_domain_update_wss, bucket_cache_reclaim_domain).
 *
 * Each domain keeps a LIFO list of non-empty buckets (the "bucket cache")
 * and a short list of empty ones for reuse (UMA takes those from its
 * bucket zones; here they come from sk_meta_zalloc and stay per domain,
 * under the same lock).
 *
 * Bucket size adapts to contention: a domain lock found held on the way in
 * (trylock fails) moves the zone one class up, to at most uz_bucket_idx_max;
 * reclaim moves it back down (uma_backend.c).  Buckets already made keep
 * their size; new ones take the current size.
 *
 * Working set (per domain, items): while running, imax is the largest item
 * count since the last update and bimin the smallest since imax last rose,
 * so imax - bimin is the largest batch drawn from the cache.  Each update
 * (once per maintenance tick, or at a reclaim) sets
 *     wss = max(wss * 3/4, imax - bimin)
 * and restarts the period.  Trimming releases the coldest buckets (the end
 * of the list) while at least wss items stay.
 *
 * Lock order: a domain's uzd_lock may be taken with a slot lock held; keg
 * domain locks are never taken under it here (items released to the keg
 * are collected first, then released after uzd_lock is dropped).  Two
 * uzd_locks are never held at once.
 */
#include <errno.h>
#include <string.h>

#include "uma_int.h"

_Static_assert(sizeof(struct uma_zone_domain) % 64 == 0, "zone domains fill whole cache lines");

/* Bucket capacities, and the largest item size a zone starts in that class
 * with (UMA's bucket_zones[]: 16-byte header, so 254 entries is 2 KiB). */
const uint32_t skuma_bucket_entries[UMA_BUCKET_CLASSES] = { 2, 4, 8, 16, 32, 64, 128, 254 };
static const uint32_t bucket_maxsize[UMA_BUCKET_CLASSES] = { 4096, 3072, 2048, 1024,
							      512,  256,  128,  64 };

_Static_assert(sizeof(struct uma_bucket) == 16, "254 entries make a 2 KiB bucket");

unsigned skuma_bucket_select(size_t item_size)
{
	for (unsigned i = UMA_BUCKET_CLASSES; i-- > 0;)
		if (item_size <= bucket_maxsize[i])
			return i;
	return 0; /* items over 4 KiB: the smallest bucket */
}

static inline size_t bucket_bytes(uint32_t entries)
{
	return sizeof(struct uma_bucket) + (size_t)entries * sizeof(void *);
}

static inline struct uma_zone_domain *zone_domain(struct uma_kz *kz, int domain)
{
	return &kz->kz_zone.uz_domain[domain];
}

/* Take a domain's lock; finding it held counts as contention and grows the
 * zone's bucket size one class (UMA's zone_domain_lock). */
static void zone_domain_lock(struct uma_kz *kz, struct uma_zone_domain *zd)
{
	struct uma_zcache *zone = &kz->kz_zone;

	if (pthread_mutex_trylock(&zd->uzd_lock) == 0)
		return;
	ck_pr_inc_64(&zone->uz_contended);
	uint32_t idx = sk_load(&zone->uz_bucket_idx);
	if (idx < sk_load(&zone->uz_bucket_idx_max))
		ck_pr_cas_32(&zone->uz_bucket_idx, idx, idx + 1);
	pthread_mutex_lock(&zd->uzd_lock);
}

/* --- empty buckets --- */

struct uma_bucket *skuma_bucket_alloc(struct uma_kz *kz, int domain)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);
	uint32_t entries = skuma_bucket_size_now(kz);
	struct uma_bucket *b = NULL;

	if (sk_load(&zd->uzd_empty)) {
		zone_domain_lock(kz, zd);
		b = zd->uzd_empty;
		if (b && b->ub_entries == entries) {
			sk_store(&zd->uzd_empty, b->ub_next);
			sk_store(&zd->uzd_nempty, zd->uzd_nempty - 1);
		} else {
			b = NULL;
		}
		pthread_mutex_unlock(&zd->uzd_lock);
	}
	if (!b) {
		b = sk_meta_zalloc(bucket_bytes(entries));
		if (!b)
			return NULL;
		b->ub_entries = entries;
	}
	b->ub_next = NULL;
	b->ub_cnt = 0;
	return b;
}

static void bucket_meta_free(struct uma_bucket *b)
{
	sk_meta_free(b, bucket_bytes(b->ub_entries));
}

void skuma_bucket_free(struct uma_kz *kz, int domain, struct uma_bucket *b)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);

	if (b->ub_entries == skuma_bucket_size_now(kz) &&
	    sk_load(&zd->uzd_nempty) < UMA_EMPTY_KEEP) {
		zone_domain_lock(kz, zd);
		if (zd->uzd_nempty < UMA_EMPTY_KEEP) {
			b->ub_cnt = 0;
			b->ub_next = zd->uzd_empty;
			sk_store(&zd->uzd_empty, b);
			sk_store(&zd->uzd_nempty, zd->uzd_nempty + 1);
			b = NULL;
		}
		pthread_mutex_unlock(&zd->uzd_lock);
	}
	if (b)
		bucket_meta_free(b);
}

void skuma_bucket_drain_free(struct uma_kz *kz, struct uma_bucket *b)
{
	skuma_keg_release(kz, b->ub_bucket, b->ub_cnt);
	b->ub_cnt = 0;
	bucket_meta_free(b);
}

void skuma_zone_release_empty(struct uma_kz *kz)
{
	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++) {
		struct uma_zone_domain *zd = zone_domain(kz, (int)d);
		struct uma_bucket *list;

		pthread_mutex_lock(&zd->uzd_lock);
		list = zd->uzd_empty;
		sk_store(&zd->uzd_empty, NULL);
		sk_store(&zd->uzd_nempty, 0);
		pthread_mutex_unlock(&zd->uzd_lock);
		while (list) {
			struct uma_bucket *next = list->ub_next;

			bucket_meta_free(list);
			list = next;
		}
	}
}

/* --- the bucket cache --- */

/* nitems rose to a new maximum: close the batch (zone_domain_imax_set). */
static void zone_domain_imax_set(struct uma_zone_domain *zd)
{
	if (zd->uzd_nitems <= zd->uzd_imax)
		return;
	if (zd->uzd_wss < zd->uzd_imax - zd->uzd_bimin)
		sk_store((uint64_t *)&zd->uzd_wss, (uint64_t)(zd->uzd_imax - zd->uzd_bimin));
	zd->uzd_imax = zd->uzd_nitems;
	zd->uzd_bimin = zd->uzd_nitems;
}

static void zone_domain_set_nitems(struct uma_zone_domain *zd, int64_t nitems)
{
	sk_store((uint64_t *)&zd->uzd_nitems, (uint64_t)nitems);
}

void skuma_zone_put_bucket(struct uma_kz *kz, int domain, struct uma_bucket *b, bool ws)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);
	int64_t cnt = b->ub_cnt;

	if (cnt == 0) {
		skuma_bucket_free(kz, domain, b);
		return;
	}
	zone_domain_lock(kz, zd);
	if ((uint64_t)(zd->uzd_nitems + cnt) > sk_load(&kz->kz_zone.uz_bucket_max)) {
		/* Over the cache limit: the items go back to their slabs. */
		pthread_mutex_unlock(&zd->uzd_lock);
		skuma_keg_release(kz, b->ub_bucket, b->ub_cnt);
		b->ub_cnt = 0;
		skuma_bucket_free(kz, domain, b);
		return;
	}
	zone_domain_set_nitems(zd, zd->uzd_nitems + cnt);
	if (ws) {
		zone_domain_imax_set(zd);
	} else {
		/* Not demand: shift the period's bounds so the estimate ignores it. */
		zd->uzd_imax += cnt;
		zd->uzd_imin += cnt;
		zd->uzd_bimin += cnt;
	}
	b->ub_next = zd->uzd_buckets;
	zd->uzd_buckets = b;
	zd->uzd_nbuckets++;
	pthread_mutex_unlock(&zd->uzd_lock);
}

/* Items left the cache on demand: track the period's minima. */
static void zone_domain_note_fetch(struct uma_zone_domain *zd)
{
	if (zd->uzd_bimin > zd->uzd_nitems)
		zd->uzd_bimin = zd->uzd_nitems;
	if (zd->uzd_imin > zd->uzd_nitems)
		zd->uzd_imin = zd->uzd_nitems;
}

struct uma_bucket *skuma_zone_fetch_bucket(struct uma_kz *kz, int domain)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);
	struct uma_bucket *b;

	if (sk_load((uint64_t *)&zd->uzd_nitems) == 0)
		return NULL; /* skip the lock when there is nothing to take */
	zone_domain_lock(kz, zd);
	b = zd->uzd_buckets;
	if (b) {
		zd->uzd_buckets = b->ub_next;
		zd->uzd_nbuckets--;
		zone_domain_set_nitems(zd, zd->uzd_nitems - b->ub_cnt);
		zone_domain_note_fetch(zd);
		b->ub_next = NULL;
	}
	pthread_mutex_unlock(&zd->uzd_lock);
	return b;
}

void *skuma_zone_fetch_item(struct uma_kz *kz, int domain)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);
	struct uma_bucket *b, *emptied = NULL;
	void *item = NULL;

	if (sk_load((uint64_t *)&zd->uzd_nitems) == 0)
		return NULL;
	zone_domain_lock(kz, zd);
	b = zd->uzd_buckets;
	if (b) {
		item = sk_stack_pop(b->ub_bucket, &b->ub_cnt);
		if (b->ub_cnt == 0) {
			zd->uzd_buckets = b->ub_next;
			zd->uzd_nbuckets--;
			emptied = b;
		}
		zone_domain_set_nitems(zd, zd->uzd_nitems - 1);
		zone_domain_note_fetch(zd);
	}
	pthread_mutex_unlock(&zd->uzd_lock);
	if (emptied)
		skuma_bucket_free(kz, domain, emptied);
	return item;
}

/*
 * A cross bucket filled up: its items belong to other domains' caches.
 * The items of the first item's domain stay in `b`; the rest are sorted
 * into one new bucket per domain (UMA sorts under a zone-wide cross lock;
 * here the sorting buckets live on this thread's stack, so no lock).
 */
void skuma_zone_free_cross(struct uma_kz *kz, struct uma_bucket *b)
{
	struct uma_bucket *sorted[SK_MAX_NODES] = { NULL };
	int first = skuma_slab_domain(kz, sk_page_of(b->ub_bucket[0]));
	uint32_t keep = 0;

	for (uint32_t i = 0; i < b->ub_cnt; i++) {
		void *item = b->ub_bucket[i];
		struct sk_page *slab = sk_page_of(item);
		int d = skuma_slab_domain(kz, slab);

		if (d == first) {
			b->ub_bucket[keep++] = item;
			continue;
		}
		if (!sorted[d] && !(sorted[d] = skuma_bucket_alloc(kz, d))) {
			skuma_keg_free_item(kz, item, slab);
			continue;
		}
		sk_stack_push(sorted[d]->ub_bucket, &sorted[d]->ub_cnt, item);
		if (sorted[d]->ub_cnt == sorted[d]->ub_entries) {
			skuma_zone_put_bucket(kz, d, sorted[d], false);
			sorted[d] = NULL;
		}
	}
	b->ub_cnt = keep;
	skuma_zone_put_bucket(kz, first, b, false);
	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++)
		if (sorted[d])
			skuma_zone_put_bucket(kz, (int)d, sorted[d], false);
}

int skuma_zone_domain_most(const struct uma_kz *kz)
{
	int best = 0;
	uint64_t most = 0;

	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++) {
		uint64_t n = skuma_domain_cached(kz, (int)d);

		if (n > most) {
			most = n;
			best = (int)d;
		}
	}
	return best;
}

int skuma_zone_domain_fewest(const struct uma_kz *kz)
{
	int best = 0;
	uint64_t fewest = UINT64_MAX;

	for (unsigned d = 0; d < kz->kz_zone.uz_ndomains; d++) {
		uint64_t n = skuma_domain_cached(kz, (int)d);

		if (n < fewest) {
			fewest = n;
			best = (int)d;
		}
	}
	return best;
}

/* --- working set and trimming --- */

/* Close the period: fold the largest batch into the estimate, start over
 * (zone_domain_update_wss; half of imax's excess is kept against edge
 * effects). */
static void zone_domain_update_wss(struct uma_zone_domain *zd)
{
	int64_t wss = SK_MAX(zd->uzd_wss * 3 / 4, zd->uzd_imax - zd->uzd_bimin);

	sk_store((uint64_t *)&zd->uzd_wss, (uint64_t)wss);
	zd->uzd_imax -= (zd->uzd_imax - zd->uzd_nitems + 1) / 2;
	zd->uzd_imin = zd->uzd_bimin = zd->uzd_nitems;
}

uint64_t skuma_zone_trim_domain(struct uma_kz *kz, int domain, enum uma_trim_kind kind)
{
	struct uma_zone_domain *zd = zone_domain(kz, domain);
	struct uma_bucket *cut, **link;
	int64_t target, kept = 0, released = 0;

	pthread_mutex_lock(&zd->uzd_lock);
	zone_domain_update_wss(zd);
	target = kind == UMA_TRIM_ALL ? 0 : zd->uzd_wss;
	/* Keep the most recently used buckets until they hold the target;
	 * everything after them is cold and goes. */
	link = &zd->uzd_buckets;
	while (*link && kept < target) {
		kept += (*link)->ub_cnt;
		link = &(*link)->ub_next;
	}
	cut = *link;
	*link = NULL;
	for (struct uma_bucket *b = cut; b; b = b->ub_next) {
		int64_t cnt = b->ub_cnt;
		int64_t shift = SK_MIN(zd->uzd_bimin, cnt);

		/* Shift the period's bounds so the trim is not read as demand. */
		zd->uzd_imax -= shift;
		zd->uzd_bimin -= shift;
		zd->uzd_imin -= SK_MIN(zd->uzd_imin, cnt);
		zd->uzd_nbuckets--;
		released += cnt;
	}
	zone_domain_set_nitems(zd, zd->uzd_nitems - released);
	pthread_mutex_unlock(&zd->uzd_lock);

	while (cut) {
		struct uma_bucket *next = cut->ub_next;

		skuma_bucket_drain_free(kz, cut);
		cut = next;
	}
	return (uint64_t)released;
}
