/*
 * UMA kegs: how items are laid out in slabs, and the per-domain slab lists
 * (FreeBSD sys/vm/uma_core.c keg_layout, keg_alloc_slab, slab_alloc_item,
 * slab_free_item, keg_drain).
 *
 * Layout.  rsize = roundup(max(size, 8), align).  A slab is 2^order pages
 * (the page provider hands out orders); starting from the smallest order
 * that holds one item, the order grows until items fill at least 90% of
 * the slab (UMA_MAX_WASTE), or the best layout seen is kept.  The free
 * bitset goes where it costs least:
 *   - up to 64 items: in the head page descriptor (no space in the slab);
 *   - more: at the slab's end, or off the slab in sk_meta_zalloc memory when
 *     that packs more efficiently (UMA counts an offpage header as waste
 *     too: items / (slab + header)).
 * The slab is found from any item in O(1) through the page descriptor.
 * The bitset's operations (fill, take, put, test, count) are core's
 * (core/sk_slab_bits.h), shared with core's keg for per-CPU zones and
 * zones over the user's allocf (core/uma_skeg.c), which keeps its slabs
 * in user memory with no descriptors.
 *
 * Lifetimes.  A new slab is zeroed (ZINIT, done by sk_slab_pages_alloc),
 * then every item gets the
 * cache's init hook (sk_cache_construct) before the slab is listed; if one
 * fails, the ones done get fini and the slab goes back.  Free slabs stay on
 * their domain's free list until keg_drain; fini then runs on every item.
 * NOFREE slabs are only freed when the cache is destroyed.
 *
 * Lock order: only the keg domain locks (ukd_lock) are taken here, one at a
 * time, and nothing is called with one held except list and bitset work.
 * Callers may hold a slot lock or a domain bucket-cache lock (see
 * uma_cache.c: slot lock -> uzd_lock -> ukd_lock).
 */
#include <errno.h>
#include <string.h>

#include "uma_int.h"

_Static_assert(sizeof(struct uma_keg_domain) % 64 == 0, "keg domains fill whole cache lines");

/* --- slab header accessors (the head page descriptor) --- */

static inline uint32_t slab_freecount(struct sk_page *slab)
{
	return (uint32_t)uma_slab(slab)->us_freecount;
}

static inline uma_bitword_t *slab_bitset(const struct uma_keg *keg, struct sk_page *slab)
{
	if (keg->uk_hdr == UMA_HDR_DESC)
		return &uma_slab(slab)->us_bits;
	return (uma_bitword_t *)uma_slab(slab)->us_bits;
}

static inline char *slab_base(const struct sk_page *slab)
{
	return (char *)sk_page_addr(slab);
}

/* --- layout --- */

struct uma_layout {
	uint32_t order, ipers, hdr, words, off, eff;
};

/* Efficiency of `ipers` items of `rsize` in `bytes` (slab plus any
 * offpage header), in thousandths. */
static uint32_t layout_eff(uint32_t ipers, size_t rsize, size_t bytes)
{
	return (uint32_t)((uint64_t)ipers * rsize * 1000 / bytes);
}

static void layout_one(size_t rsize, unsigned order, struct uma_layout *out)
{
	size_t slab = SK_PAGE_SIZE << order;
	uint32_t raw = (uint32_t)SK_MIN(slab / rsize, (size_t)UINT32_MAX / 2);

	memset(out, 0, sizeof(*out));
	out->order = order;
	if (raw <= UMA_WORD_BITS) {
		out->hdr = UMA_HDR_DESC;
		out->ipers = raw;
		out->words = 1;
		out->eff = layout_eff(raw, rsize, slab);
		return;
	}
	/* Inline: give up items at the end until the bitset fits after them. */
	uint32_t in = raw;
	while (in > 0 && (size_t)in * rsize + sk_slab_bits_bytes(in) > slab)
		in--;
	uint32_t eff_in = layout_eff(in, rsize, slab);
	uint32_t eff_off = layout_eff(raw, rsize, slab + sk_slab_bits_bytes(raw));

	if (in <= UMA_WORD_BITS) {
		/* Losing items to an inline bitset brought it under one word. */
		out->hdr = UMA_HDR_DESC;
		out->ipers = in;
		out->words = 1;
		out->eff = eff_in;
	} else if (eff_off > eff_in) {
		out->hdr = UMA_HDR_OFFPAGE;
		out->ipers = raw;
		out->words = sk_slab_bits_words(raw);
		out->eff = eff_off;
	} else {
		out->hdr = UMA_HDR_INLINE;
		out->ipers = in;
		out->words = sk_slab_bits_words(in);
		out->off = (uint32_t)(slab - sk_slab_bits_bytes(in));
		out->eff = eff_in;
	}
}

static unsigned order_for(size_t bytes)
{
	return SK_MIN(sk_order_for_bytes(bytes), (unsigned)SK_MAX_ORDER);
}

int skuma_keg_layout(struct uma_kz *kz, const struct sk_cache *c)
{
	struct uma_keg *keg = &kz->kz_keg;
	size_t align = c->align >= 8 ? c->align : 8;
	size_t rsize = SK_ALIGN_UP(SK_MAX((size_t)c->object_size, (size_t)8), align);
	size_t line = sk_numa_cache_line();
	unsigned min_order, max_order;

	if (!SK_IS_POW2(align) || rsize > (SK_PAGE_SIZE << SK_MAX_ORDER))
		return -EINVAL;
	if (line < 8 || !SK_IS_POW2(line))
		line = 64;
	min_order = order_for(SK_MAX(rsize, align));
	if ((c->flags & SK_CACHE_CACHESPREAD) && align <= line) {
		/* An odd number of cache lines per item: consecutive items start
		 * on different lines of the cache's sets.  The slab holds about
		 * a page's worth of line offsets (PAGE_SIZE / line items). */
		rsize = SK_ALIGN_UP(rsize, line);
		if ((rsize / line) % 2 == 0)
			rsize += line;
		unsigned spread = order_for(rsize * (SK_PAGE_SIZE / line));
		min_order = SK_MAX(min_order, SK_MIN(spread, (unsigned)UMA_CACHESPREAD_MAX_ORDER));
	}
	max_order = SK_MIN(min_order + UMA_SLAB_MAX_EXTRA_ORDERS, (unsigned)SK_MAX_ORDER);
	if (max_order > UMA_SLAB_MAX_ORDER)
		max_order = SK_MAX(min_order, (unsigned)UMA_SLAB_MAX_ORDER);

	struct uma_layout best = { 0 }, cur;
	for (unsigned order = min_order; order <= max_order; order++) {
		layout_one(rsize, order, &cur);
		if (cur.ipers > 0 && cur.eff > best.eff)
			best = cur;
		if (best.eff >= 1000 - UMA_MAX_WASTE * 10)
			break; /* the smallest slab that wastes at most 10% */
	}
	if (best.ipers == 0)
		return -EINVAL;

	keg->uk_rsize = (uint32_t)rsize;
	keg->uk_ipers = best.ipers;
	keg->uk_order = best.order;
	keg->uk_hdr = best.hdr;
	keg->uk_bitset_words = best.words;
	keg->uk_bitset_off = best.off;
	keg->uk_eff_permille = best.eff;
	keg->uk_nofree = (c->flags & SK_CACHE_NOFREE) != 0;
	keg->uk_roundrobin = (c->flags & SK_CACHE_ROUNDROBIN) != 0;
	return 0;
}

/* --- slab lists (keg domain lock held) --- */

static struct sk_list *slab_list(struct uma_keg *keg, struct uma_keg_domain *kd, uint32_t freecount)
{
	if (freecount == 0)
		return &kd->ukd_full;
	if (freecount == keg->uk_ipers)
		return &kd->ukd_free;
	return &kd->ukd_part;
}

/* Change a listed slab's free count, moving it between lists as needed. */
static void slab_set_freecount(struct uma_keg *keg, struct uma_keg_domain *kd,
			       struct sk_page *slab, uint32_t now)
{
	uint32_t was = slab_freecount(slab);

	if (slab_list(keg, kd, was) != slab_list(keg, kd, now)) {
		sk_list_del(&uma_slab(slab)->us_link);
		sk_list_add_head(&uma_slab(slab)->us_link, slab_list(keg, kd, now));
		if (was == keg->uk_ipers)
			sk_store(&kd->ukd_free_slabs, kd->ukd_free_slabs - 1);
		if (now == keg->uk_ipers)
			sk_store(&kd->ukd_free_slabs, kd->ukd_free_slabs + 1);
	}
	sk_store(&kd->ukd_free_items, kd->ukd_free_items + now - was);
	uma_slab(slab)->us_freecount = now;
}

/* Take up to max free items out of a listed slab. */
static int slab_take(struct uma_keg *keg, struct uma_keg_domain *kd, struct sk_page *slab,
		     void **store, int max)
{
	uint32_t freecount = slab_freecount(slab);
	uint32_t n = sk_slab_bits_take(slab_bitset(keg, slab), keg->uk_bitset_words, freecount,
				       slab_base(slab), keg->uk_rsize, store, (uint32_t)max);

	slab_set_freecount(keg, kd, slab, freecount - n);
	return (int)n;
}

/* Return one item to its listed slab; false (and nothing changed) if the
 * pointer is not an item start or the item is already free. */
static bool slab_put(struct uma_keg *keg, struct uma_keg_domain *kd, struct sk_page *slab, void *item)
{
	long idx = sk_slab_bits_index(slab_base(slab), keg->uk_rsize, keg->uk_ipers, item);

	if (idx < 0 || !sk_slab_bits_put(slab_bitset(keg, slab), (size_t)idx))
		return false;
	slab_set_freecount(keg, kd, slab, slab_freecount(slab) + 1);
	return true;
}

/* --- slab creation and destruction (no lock held) --- */

static void slab_release_pages(struct uma_kz *kz, struct sk_page *slab)
{
	struct uma_keg *keg = &kz->kz_keg;

	if (keg->uk_hdr == UMA_HDR_OFFPAGE && uma_slab(slab)->us_bits)
		sk_meta_free((void *)uma_slab(slab)->us_bits, sk_slab_bits_bytes(keg->uk_ipers));
	uma_slab(slab)->us_bits = 0;
	sk_slab_pages_free(kz->kz_cache, slab_base(slab));
}

/* fini on the first `constructed` items, then the pages back. */
static void slab_free(struct uma_kz *kz, struct sk_page *slab, uint32_t constructed)
{
	struct sk_cache *c = kz->kz_cache;
	char *base = slab_base(slab);

	sk_slab_destruct(c, base, kz->kz_keg.uk_rsize, constructed);
	slab_release_pages(kz, slab);
}

/* A new slab on `node`, every item free and constructed; not yet listed. */
static struct sk_page *slab_alloc(struct uma_kz *kz, int node, unsigned flags)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct sk_cache *c = kz->kz_cache;
	char *base = sk_slab_pages_alloc(c, node, keg->uk_order);

	if (!base)
		return NULL;
	struct sk_page *slab = sk_page_of_raw(base);
	sk_list_init(&uma_slab(slab)->us_link);
	uma_slab(slab)->us_bits = 0;
	if ((uintptr_t)base & (c->align - 1)) {
		sk_message("uma: slab %p of zone %s is not aligned to %u bytes", (void *)base, c->name,
			   c->align);
		slab_release_pages(kz, slab);
		return NULL;
	}
	/* ZINIT: sk_slab_pages_alloc has zeroed the pages (core does it for
	 * every backend), so init sees zeroed memory. */

	uma_bitword_t *bits;
	if (keg->uk_hdr == UMA_HDR_DESC) {
		bits = &uma_slab(slab)->us_bits;
	} else if (keg->uk_hdr == UMA_HDR_INLINE) {
		bits = (uma_bitword_t *)(base + keg->uk_bitset_off);
		uma_slab(slab)->us_bits = (uintptr_t)bits;
	} else {
		bits = sk_meta_zalloc(sk_slab_bits_bytes(keg->uk_ipers));
		if (!bits) {
			slab_release_pages(kz, slab);
			return NULL;
		}
		uma_slab(slab)->us_bits = (uintptr_t)bits;
	}
	sk_slab_bits_fill(bits, keg->uk_ipers);

	if (sk_slab_construct(c, base, keg->uk_rsize, keg->uk_ipers, flags) != 0) {
		slab_release_pages(kz, slab);
		return NULL;
	}
	uma_slab(slab)->us_freecount = keg->uk_ipers;
	/* After the items: no one's bytes, but an inline bitset's. */
	char *tail = base + (size_t)keg->uk_ipers * keg->uk_rsize, *end = base + (SK_PAGE_SIZE << keg->uk_order);
	if (keg->uk_hdr == UMA_HDR_INLINE) {
		char *set = base + keg->uk_bitset_off, *set_end = set + sk_slab_bits_bytes(keg->uk_ipers);
		sk_slab_unused(c, tail, set > tail ? (size_t)(set - tail) : 0);
		sk_slab_unused(c, set_end, (size_t)(end - set_end));
	} else {
		sk_slab_unused(c, tail, (size_t)(end - tail));
	}
	return slab;
}

/* List a new slab on its domain (lock held). */
static void slab_insert(struct uma_keg *keg, struct uma_keg_domain *kd, struct sk_page *slab)
{
	sk_list_add_head(&uma_slab(slab)->us_link, &kd->ukd_free);
	sk_store(&kd->ukd_slabs, kd->ukd_slabs + 1);
	sk_store(&kd->ukd_free_slabs, kd->ukd_free_slabs + 1);
	sk_store(&kd->ukd_free_items, kd->ukd_free_items + keg->uk_ipers);
}

/* --- import and release --- */

/*
 * Up to max items from `domain`'s slabs; with `grow`, one new slab on that
 * node when the lists run dry.  Never more than one: a bucket that still
 * got items from a first slab would hide the page provider's failure on a
 * second one, so a failure reaches the caller exactly when the keg had
 * nothing else to give (FreeBSD's zone_import keeps going with M_NOWAIT
 * instead; the number of slabs made is the same either way).
 */
static int keg_import_domain(struct uma_kz *kz, int domain, void **store, int max, unsigned flags,
			     bool grow)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct uma_keg_domain *kd = &keg->uk_domain[domain];
	int n = 0;

	if (!grow && sk_load(&kd->ukd_free_items) == 0)
		return 0;
	pthread_mutex_lock(&kd->ukd_lock);
	while (n < max) {
		struct sk_list *link = sk_list_first(&kd->ukd_part);

		if (!link)
			link = sk_list_first(&kd->ukd_free);
		if (link) {
			n += slab_take(keg, kd, uma_slab_page(link), store + n, max - n);
			continue;
		}
		if (!grow)
			break;
		grow = false;
		pthread_mutex_unlock(&kd->ukd_lock);
		struct sk_page *slab = slab_alloc(kz, domain, flags);
		if (!slab)
			return n;
		int got = skuma_slab_domain(kz, slab);
		struct uma_keg_domain *gd = &keg->uk_domain[got];
		pthread_mutex_lock(&gd->ukd_lock);
		slab_insert(keg, gd, slab);
		if (got != domain) {
			/* The provider placed it elsewhere: it serves that domain. */
			pthread_mutex_unlock(&gd->ukd_lock);
			return n;
		}
	}
	pthread_mutex_unlock(&kd->ukd_lock);
	return n;
}

int skuma_keg_import(struct uma_kz *kz, int domain, void **store, int max, unsigned flags)
{
	return keg_import_domain(kz, domain, store, max, flags, true);
}

int skuma_keg_import_rr(struct uma_kz *kz, void **store, int max, unsigned flags)
{
	struct uma_keg *keg = &kz->kz_keg;
	unsigned nd = keg->uk_ndomains;
	unsigned start = sk_load(&keg->uk_rr_next);
	int n = 0;

	for (unsigned i = 0; i < nd && n < max; i++)
		n += keg_import_domain(kz, (int)((start + i) % nd), store + n, max - n, flags, false);
	/* Else one new slab, on the next node in turn (another node only if
	 * that one has no memory). */
	for (unsigned tries = 0; n == 0 && tries < nd; tries++) {
		int domain = (int)(ck_pr_faa_32(&keg->uk_rr_next, 1) % nd);

		n = keg_import_domain(kz, domain, store, max, flags, true);
	}
	return n;
}

void *skuma_keg_alloc_item(struct uma_kz *kz, int node, unsigned flags)
{
	struct uma_keg *keg = &kz->kz_keg;
	unsigned nd = keg->uk_ndomains;
	void *item = NULL;

	if (node != SK_NODE_ANY)
		return keg_import_domain(kz, node, &item, 1, flags, true) ? item : NULL;
	if (keg->uk_roundrobin)
		return skuma_keg_import_rr(kz, &item, 1, flags) ? item : NULL;
	/* First touch: this CPU's node, then the others. */
	int home = (int)sk_current_node_clamped(nd);
	if (keg_import_domain(kz, home, &item, 1, flags, true))
		return item;
	return skuma_keg_alloc_item_elsewhere(kz, home, flags);
}

/* `tried` had nothing and no memory: any other node that has a free item,
 * then a new slab on another node.  Never retries `tried` itself, so an
 * allocation failure of the page provider is not papered over. */
void *skuma_keg_alloc_item_elsewhere(struct uma_kz *kz, int tried, unsigned flags)
{
	unsigned nd = kz->kz_keg.uk_ndomains;
	void *item = NULL;

	for (unsigned i = 1; i < nd; i++)
		if (keg_import_domain(kz, (int)((tried + i) % nd), &item, 1, flags, false))
			return item;
	for (unsigned i = 1; i < nd; i++)
		if (keg_import_domain(kz, (int)((tried + i) % nd), &item, 1, flags, true))
			return item;
	return NULL;
}

/* slab_put refused item, or it is on no slab of the zone: core's misuse
 * policy (reported once, dropped, its free taken back). */
static sk_cold void report_bad_free(struct uma_kz *kz, void *item)
{
	struct sk_cache *c = kz->kz_cache;
	const struct sk_page *slab = sk_page_of(item);

	if (!slab || slab->owner != c)
		sk_free_misuse(NULL, c, SK_MISUSE_FOREIGN, item, "not on a slab of this zone");
	else if ((size_t)((char *)item - slab_base(slab)) % kz->kz_keg.uk_rsize)
		sk_free_misuse(NULL, c, SK_MISUSE_INTERIOR, item, "not the start of an item");
	else
		sk_free_misuse(NULL, c, SK_MISUSE_DOUBLE_FREE, item, "its slab's bitset says it is free");
	sk_cache_free_refused(c, item);
}

void skuma_keg_free_item(struct uma_kz *kz, void *item, struct sk_page *slab)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct uma_keg_domain *kd = &keg->uk_domain[skuma_slab_domain(kz, slab)];
	bool ok;

	pthread_mutex_lock(&kd->ukd_lock);
	ok = slab_put(keg, kd, slab, item);
	pthread_mutex_unlock(&kd->ukd_lock);
	if (!ok)
		report_bad_free(kz, item);
}

/* Free a run of items, taking each domain's lock once per run of items of
 * that domain. */
void skuma_keg_release(struct uma_kz *kz, void **items, uint32_t n)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct uma_keg_domain *held = NULL;

	for (uint32_t i = 0; i < n; i++) {
		struct sk_page *slab = sk_page_of(items[i]);

		if (!slab || slab->owner != kz->kz_cache) {
			report_bad_free(kz, items[i]);
			continue;
		}
		struct uma_keg_domain *kd = &keg->uk_domain[skuma_slab_domain(kz, slab)];
		if (kd != held) {
			if (held)
				pthread_mutex_unlock(&held->ukd_lock);
			pthread_mutex_lock(&kd->ukd_lock);
			held = kd;
		}
		if (!slab_put(keg, kd, slab, items[i])) {
			pthread_mutex_unlock(&held->ukd_lock);
			held = NULL;
			report_bad_free(kz, items[i]);
		}
	}
	if (held)
		pthread_mutex_unlock(&held->ukd_lock);
}

/* --- drain and destroy --- */

static void keg_drain_domain(struct uma_kz *kz, int domain)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct uma_keg_domain *kd = &keg->uk_domain[domain];
	struct sk_list list, *link, *next;
	uint64_t count;

	if (sk_load(&kd->ukd_free_slabs) == 0)
		return;
	pthread_mutex_lock(&kd->ukd_lock);
	sk_list_take_all(&list, &kd->ukd_free);
	count = kd->ukd_free_slabs;
	sk_store(&kd->ukd_free_slabs, 0);
	sk_store(&kd->ukd_slabs, kd->ukd_slabs - count);
	sk_store(&kd->ukd_free_items, kd->ukd_free_items - count * keg->uk_ipers);
	pthread_mutex_unlock(&kd->ukd_lock);

	sk_list_for_each_safe(link, next, &list)
		slab_free(kz, uma_slab_page(link), keg->uk_ipers);
}

void skuma_keg_drain(struct uma_kz *kz, int domain)
{
	if (kz->kz_keg.uk_nofree)
		return;
	if (domain >= 0) {
		keg_drain_domain(kz, domain);
		return;
	}
	for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++)
		keg_drain_domain(kz, (int)d);
}

/* Only when no item is in use: partial and full slabs then hold items that
 * core has already accounted as leaked, and their memory goes anyway. */
void skuma_keg_destroy(struct uma_kz *kz)
{
	struct uma_keg *keg = &kz->kz_keg;

	for (unsigned d = 0; d < keg->uk_ndomains; d++) {
		struct uma_keg_domain *kd = &keg->uk_domain[d];
		struct sk_list *lists[] = { &kd->ukd_free, &kd->ukd_part, &kd->ukd_full };

		pthread_mutex_lock(&kd->ukd_lock);
		for (size_t l = 0; l < SK_ARRAY_SIZE(lists); l++) {
			struct sk_list slabs, *link, *next;

			sk_list_take_all(&slabs, lists[l]);
			sk_list_for_each_safe(link, next, &slabs)
				slab_free(kz, uma_slab_page(link), keg->uk_ipers);
		}
		kd->ukd_slabs = kd->ukd_free_slabs = kd->ukd_free_items = 0;
		pthread_mutex_unlock(&kd->ukd_lock);
	}
}

uint64_t skuma_keg_slabs(const struct uma_kz *kz)
{
	uint64_t n = 0;

	for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++)
		n += sk_load(&kz->kz_keg.uk_domain[d].ukd_slabs);
	return n;
}

void skuma_keg_slab_counts(struct uma_kz *kz, uint64_t *partial, uint64_t *empty)
{
	*partial = *empty = 0;
	for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++) {
		struct uma_keg_domain *kd = &kz->kz_keg.uk_domain[d];
		pthread_mutex_lock(&kd->ukd_lock);
		struct sk_list *link;
		sk_list_for_each(link, &kd->ukd_part)
			(*partial)++;
		*empty += kd->ukd_free_slabs;
		pthread_mutex_unlock(&kd->ukd_lock);
	}
}

uint64_t skuma_keg_free_items(const struct uma_kz *kz)
{
	uint64_t n = 0;

	for (unsigned d = 0; d < kz->kz_keg.uk_ndomains; d++)
		n += sk_load(&kz->kz_keg.uk_domain[d].ukd_free_items);
	return n;
}

/* --- slabkit_validate: the slab lists and bitsets (uma_validate.c has the rest) --- */

#define ISOLATE "Isolating the slab's free items (never handed out again)"

enum keg_verdict { KEG_SOUND, KEG_MOVED, KEG_BAD };

/* A listed slab, under its domain's lock: its free count on the right list
 * (else it is moved), the number of set bits equal to it, no bit past the
 * slab's items. */
static enum keg_verdict keg_check_slab(struct sk_cache *c, struct uma_keg *keg, struct uma_keg_domain *kd,
				       struct sk_page *slab, struct sk_list *on)
{
	uint32_t freecount = slab_freecount(slab), set, past;

	if (freecount > keg->uk_ipers) {
		sk_validate_report(c, "Slab free count corrupt", slab_base(slab), ISOLATE,
				   "free count %u, the slab holds %u items", freecount, keg->uk_ipers);
		return KEG_BAD;
	}
	set = sk_slab_bits_count(slab_bitset(keg, slab), keg->uk_ipers, &past);
	if (set != freecount || past) {
		sk_validate_report(c, "Free bitset corrupt", slab_base(slab), ISOLATE,
				   "%u item bit(s) set (and %u past the %u items); the free count says %u", set, past,
				   keg->uk_ipers, freecount);
		return KEG_BAD;
	}
	if (slab_list(keg, kd, freecount) != on) {
		sk_validate_report(c, "Slab on the wrong list", slab_base(slab), "Moving it to its list",
				   "free count %u of %u", freecount, keg->uk_ipers);
		sk_list_del(&uma_slab(slab)->us_link);
		sk_list_add_head(&uma_slab(slab)->us_link, slab_list(keg, kd, freecount));
		return KEG_MOVED;
	}
	return KEG_SOUND;
}

/* Take a bad slab's free items out of circulation: no bit set, a free
 * count of 0, on the full list.  Items its users free later come back as
 * usual; the slab is never free again (leaked). */
static void keg_isolate_slab(struct uma_keg *keg, struct uma_keg_domain *kd, struct sk_page *slab)
{
	uint32_t was = slab_freecount(slab) > keg->uk_ipers ? keg->uk_ipers : slab_freecount(slab);

	sk_list_del(&uma_slab(slab)->us_link);
	memset(slab_bitset(keg, slab), 0, sk_slab_bits_bytes(keg->uk_ipers));
	uma_slab(slab)->us_freecount = 0;
	sk_list_add_head(&uma_slab(slab)->us_link, &kd->ukd_full);
	sk_store(&kd->ukd_free_items, kd->ukd_free_items - was);
	if (was == keg->uk_ipers)
		sk_store(&kd->ukd_free_slabs, kd->ukd_free_slabs - 1);
}

uint64_t skuma_keg_validate(struct sk_cache *c, struct uma_kz *kz)
{
	struct uma_keg *keg = &kz->kz_keg;
	uint64_t errors = 0;

	for (unsigned d = 0; d < keg->uk_ndomains; d++) {
		struct uma_keg_domain *kd = &keg->uk_domain[d];
		struct sk_list *lists[3] = { &kd->ukd_part, &kd->ukd_free, &kd->ukd_full };
		uint64_t slabs = 0, free_slabs = 0, free_items = 0;

		pthread_mutex_lock(&kd->ukd_lock);
		for (int k = 0; k < 3; k++) {
			struct sk_list *link = lists[k]->next, *next;
			for (uint64_t steps = 0; link != lists[k] && steps <= kd->ukd_slabs; steps++, link = next) {
				struct sk_page *slab = uma_slab_page(link);
				next = link->next;
				if (slab->owner != c) {
					sk_validate_report(c, "Slab list corrupt", slab_base(slab),
							   "Stopped walking the list",
							   "a slab on domain %u's list is owned by %p", d, slab->owner);
					errors++;
					break;
				}
				enum keg_verdict v = keg_check_slab(c, keg, kd, slab, lists[k]);
				errors += v != KEG_SOUND;
				if (v == KEG_BAD)
					keg_isolate_slab(keg, kd, slab);
			}
		}
		for (int k = 0; k < 3; k++)
			for (struct sk_list *link = lists[k]->next; link != lists[k] && slabs <= kd->ukd_slabs;
			     link = link->next) {
				struct sk_page *slab = uma_slab_page(link);
				slabs++;
				free_slabs += slab_freecount(slab) == keg->uk_ipers;
				free_items += slab_freecount(slab);
			}
		if (slabs != kd->ukd_slabs || free_slabs != kd->ukd_free_slabs || free_items != kd->ukd_free_items) {
			sk_validate_report(c, "Keg counters disagree with the slabs", (void *)kd, "Recounted",
					   "domain %u: %llu slabs, %llu free, %llu free items counted; the keg said %llu, %llu, %llu",
					   d, (unsigned long long)slabs, (unsigned long long)free_slabs,
					   (unsigned long long)free_items, (unsigned long long)kd->ukd_slabs,
					   (unsigned long long)kd->ukd_free_slabs, (unsigned long long)kd->ukd_free_items);
			sk_store(&kd->ukd_slabs, slabs);
			sk_store(&kd->ukd_free_slabs, free_slabs);
			sk_store(&kd->ukd_free_items, free_items);
			errors++;
		}
		pthread_mutex_unlock(&kd->ukd_lock);
	}
	return errors;
}

bool skuma_keg_item_free_in_slab(struct uma_kz *kz, const void *item)
{
	struct uma_keg *keg = &kz->kz_keg;
	struct sk_page *slab = sk_page_of(item);
	struct uma_keg_domain *kd = &keg->uk_domain[skuma_slab_domain(kz, slab)];
	size_t idx = (size_t)((const char *)item - slab_base(slab)) / keg->uk_rsize;

	pthread_mutex_lock(&kd->ukd_lock);
	bool free = sk_slab_bits_test(slab_bitset(keg, slab), idx);
	pthread_mutex_unlock(&kd->ukd_lock);
	return free;
}
