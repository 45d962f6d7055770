/*
 * Internal: core's own keg (core/uma_skeg.c) for UMA zones whose slab
 * layout no backend provides: per-CPU zones and zones over a page source
 * of the user's.
 */
#ifndef SLABKIT_UMA_INTERNAL_H
#define SLABKIT_UMA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <slabkit/freebsd/uma.h>

#pragma GCC visibility push(hidden)

struct sk_skeg_params {
	const char *name;
	size_t size, align;
	bool pcpu;                 /* one page per CPU id, items in the first */
	uma_alloc allocf;          /* NULL: the page provider */
	uma_free freef;
	uma_zone_t zone;           /* passed to allocf */
	int (*init)(void *, int, int);
	void (*fini)(void *, int);
};

struct sk_skeg;
struct sk_skeg *sk_skeg_create(const struct sk_skeg_params *p);
/* One item (initialised), or NULL when the page source fails. */
void *sk_skeg_alloc(struct sk_skeg *k, int domain, int flags);
/* 0, -EINVAL (not an item of k), -EALREADY (already free). */
int sk_skeg_free(struct sk_skeg *k, void *item);
/* Whether item is an allocated item of k. */
bool sk_skeg_contains(struct sk_skeg *k, const void *item);
/* Change the page source; -EBUSY if allocf changes while slabs exist. */
int sk_skeg_set_source(struct sk_skeg *k, uma_alloc allocf, uma_free freef);
uint64_t sk_skeg_reclaim(struct sk_skeg *k);
void sk_skeg_info(struct sk_skeg *k, uint64_t *in_use, uint64_t *free_items, uint64_t *slabs);
/* Items still out, or 0 after freeing everything. */
uint64_t sk_skeg_destroy(struct sk_skeg *k);

/* uma_zone.c: the internal flag that says a per-CPU zone is allocated
 * through uma_zalloc_pcpu (never a FreeBSD M_ flag). */
#define SK_UMA_PCPU_CALL 0x40000000

#pragma GCC visibility pop

#endif
