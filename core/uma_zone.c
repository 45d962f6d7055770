/*
 * The FreeBSD UMA front end, over whichever backend is active.
 *
 * A zone made by uma_zcreate owns a core cache (its keg: layout, slabs,
 * init/fini once per item per slab lifetime).  Secondary zones share a
 * primary's keg; cache zones have no keg and get items from their import
 * and release callbacks.  What uma(9) promises per allocation lives here:
 * ctor/dtor on every alloc/free, a failing ctor failing the allocation,
 * limits with M_NOWAIT failing and M_WAITOK waiting first in, first out.
 *
 * Counting items in use: a plain primary zone uses its keg's exact per-CPU
 * counts (no extra cost on the fast path).  Every other zone counts its own
 * items in one atomic word, z->items, which also holds the number of
 * M_WAITOK sleepers in its upper bits (FreeBSD's uz_items and
 * UZ_ITEMS_SLEEPER_SHIFT): a secondary zone, a cache zone, a zone with a
 * reserve, and a zone with a limit.  An allocation below the limit with no
 * sleeper is one compare-and-swap on that word and takes no lock; a free is
 * one compare-and-swap and takes zone->lock only when the word says someone
 * sleeps.  A primary zone whose only difference from a plain one is that
 * count (a limit, or secondaries sharing its keg) takes its keg's per-CPU
 * slot from uma_zalloc's and
 * uma_zfree's miss paths, with that one atomic each way (counted_keg).
 * A primary zone switches from its keg's count to its own once
 * (zone_count_own) when it gets a limit, a reserve or a secondary; the
 * switch and the allocations and frees racing it err only towards counting
 * fewer items than are out (see there), never more.
 *
 * Zone-level cache (the stash): free items the zone keeps in the state its
 * zinit left them, as FreeBSD's zone buckets do, so that a secondary or
 * cache zone runs zinit/zfini only when an item enters or leaves the zone,
 * not on every allocation.  Cache zones import items in batches into it.
 * Every zone's reserve (uma_zone_reserve) lives there too.
 *
 * Lock order: zones_lock -> zone->lock; zone->stash_lock is a leaf; none is
 * held while allocating or while a user callback runs (uma_reclaim drops
 * zones_lock around each zone it drains, marking the zone busy).  zone->lock
 * guards the sleepers' queue (tickets, the condition variable) and the
 * switch to an own count; the count itself is lock-free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <slabkit/freebsd/uma.h>

#include "sk_core.h"
#include "sk_trace.h"
#include "sk_uma.h"

struct uma_zone {
	/* Hot: what uma_zalloc/uma_zfree read on their fast paths. */
	struct sk_cache *fast_keg;     /* the keg while the zone is plain (a keg, no
					* ctor/dtor/zinit/zfini, no limit, not own_count):
					* its items take the keg's fast path.  NULL otherwise. */
	struct sk_cache *keg;          /* NULL for a cache zone */
	struct sk_cache *counted_keg;  /* the keg while the zone would be plain but for
					* its own count (a limit): its items take the keg's
					* slot with one atomic on z->items each way.  NULL
					* otherwise */
	int size;

	char name[SLABKIT_NAME_MAX];
	struct uma_zone *primary;      /* secondary zones: the keg's owner */
	uma_ctor ctor;
	uma_dtor dtor;
	uma_init zinit;                /* secondary and cache zones: per item on the way in */
	uma_fini zfini;
	uma_import import;
	uma_release release;
	void *arg;
	uint32_t flags;
	bool own_count;                /* items counted in `items`, not by the keg; never
					* goes back to false.  Written under lock (release) */
	int refs;                      /* primary: 1 + live secondaries.  Sync: zones_lock */

	/* Counting and limits.  items and the counters: ck_pr atomics; the rest
	 * under lock. */
	uint64_t items;                /* own_count: items out (low ITEMS_SLEEPER_SHIFT bits)
					* and M_WAITOK sleepers (above) */
	uint32_t count_seq;            /* odd while zone_count_own switches the count */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int64_t max_items;             /* 0: no limit.  Read without the lock */
	uint64_t ticket_next, ticket_serving; /* FIFO order of M_WAITOK sleepers */
	uint64_t allocs;               /* when own_count; frees are allocs - items */
	uint64_t fails, sleeps;

	struct uma_zone *next;         /* zones list.  Sync: zones_lock */
	struct smr_batch *smr_batch;   /* SMR: frees waiting to be handed to RCU.  Sync: lock */
	uint64_t smr_pending;          /* SMR batches in flight (ck_pr atomics) */
	uint32_t magic;                /* ZONE_LIVE, or ZONE_DESTROYED while in quarantine */


	/* Core's keg (core/uma_skeg.c): per-CPU zones and zones over allocf. */
	struct sk_skeg *skeg;
	bool pcpu;
	uma_alloc allocf;              /* set before the first allocation */
	uma_free freef;
	uma_init keg_init;             /* uma_zcreate's, kept for a keg made again over allocf */
	uma_fini keg_fini;
	size_t align;

	/* The stash.  Synchronization: stash_lock. */
	pthread_mutex_t stash_lock;
	void **stash;
	uint32_t stash_n, stash_cap;
	uint32_t reserve;              /* items only M_USE_RESERVE may take */

	/* Limit reactions.  Written by the setters, read racily by allocations. */
	char *warning;
	uint64_t warned_at_ns;         /* last warning; sync: ck_pr cas */
	uma_maxaction_t maxaction;
	int64_t maxcache;              /* -1: none */
	uint64_t maxcache_frees;       /* frees since the last check; atomics */
	uint64_t reclaim_seen;         /* last uma_reclaim pass that drained it.  Sync: zones_lock */
	unsigned reclaim_busy;         /* uma_reclaim passes draining it now.  Sync: zones_lock */
};

/* z->items: the count below, the sleepers above (2^44 items, 2^20 sleepers). */
#define ITEMS_SLEEPER_SHIFT 44
#define ITEMS_SLEEPER (UINT64_C(1) << ITEMS_SLEEPER_SHIFT)
#define ITEMS_COUNT(w) ((w) & (ITEMS_SLEEPER - 1))
#define ITEMS_SLEEPERS(w) ((w) >> ITEMS_SLEEPER_SHIFT)

#define ZONE_LIVE      0x20ae11feu
#define ZONE_DESTROYED 0xdead20aeu
#define STASH_BATCH 32u /* cache zones import this many items at a time */

static pthread_mutex_t zones_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t zones_idle = PTHREAD_COND_INITIALIZER; /* a reclaim pass let go of a zone */
static uint64_t reclaim_gen;   /* uma_reclaim passes.  Sync: zones_lock */
static struct uma_zone *zones_head;

void sk_uma_fork_lock(bool lock, bool zone_locks)
{
	if (!zone_locks) {
		(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&zones_lock);
		return;
	}
	/* Caller holds zones_lock: the list is stable.  Each zone's lock, then
	 * its stash lock (a leaf). */
	for (struct uma_zone *z = zones_head; z; z = z->next) {
		(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&z->lock);
		(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&z->stash_lock);
	}
}

static void zones_add(struct uma_zone *z)
{
	pthread_mutex_lock(&zones_lock);
	z->next = zones_head;
	zones_head = z;
	pthread_mutex_unlock(&zones_lock);
}

/* Off the list, then wait until no uma_reclaim pass still drains it. */
static void zones_remove(struct uma_zone *z)
{
	pthread_mutex_lock(&zones_lock);
	for (struct uma_zone **pp = &zones_head; *pp; pp = &(*pp)->next)
		if (*pp == z) {
			*pp = z->next;
			break;
		}
	while (z->reclaim_busy)
		pthread_cond_wait(&zones_idle, &zones_lock);
	pthread_mutex_unlock(&zones_lock);
}

static void zone_free_storage(struct uma_zone *z);
static void stash_drain(struct uma_zone *z, uint32_t keep);
static bool stash_size(struct uma_zone *z);
static bool zone_full(struct uma_zone *z);
static void limit_hit(struct uma_zone *z);
static void zone_count_own(struct uma_zone *z);
static bool zone_keeps_items(const struct uma_zone *z);
static bool items_try_take(struct uma_zone *z);
static void items_give(struct uma_zone *z);

/* A zone not yet published, with its item size, flags and item hooks
 * (any hook may be NULL). */
static struct uma_zone *zone_new(const char *name, int size, uint32_t flags, uma_ctor ctor, uma_dtor dtor,
				 uma_init zinit, uma_fini zfini)
{
	struct uma_zone *z = sk_meta_zalloc(sizeof(*z));
	if (!z)
		return NULL;
	z->size = size;
	z->flags = flags;
	z->ctor = ctor;
	z->dtor = dtor;
	z->zinit = zinit;
	z->zfini = zfini;
	snprintf(z->name, sizeof(z->name), "%s", name ? name : "(unnamed)");
	pthread_mutex_init(&z->lock, NULL);
	pthread_cond_init(&z->wake, NULL);
	pthread_mutex_init(&z->stash_lock, NULL);
	z->refs = 1;
	z->magic = ZONE_LIVE;
	z->maxcache = -1;
	return z;
}

/* Whether the zone's items may take the keg's fast path directly.  Written
 * under z->lock (or before the zone is published). */
static void zone_update_plain(struct uma_zone *z)
{
	bool simple = z->keg && !z->ctor && !z->dtor && !z->zinit && !z->zfini && !z->reserve &&
		      z->maxcache < 0 && !(z->flags & UMA_ZONE_SMR) && !zone_keeps_items(z);
	bool plain = simple && !z->max_items && !z->own_count;
	sk_store(&z->fast_keg, plain ? z->keg : NULL);
	sk_store(&z->counted_keg, simple && z->own_count ? z->keg : NULL);
}

static uint32_t cache_flags_of(uint32_t f)
{
	return ((f & UMA_ZONE_ZINIT) ? SK_CACHE_ZINIT : 0) | ((f & UMA_ZONE_NOFREE) ? SK_CACHE_NOFREE : 0) |
	       ((f & UMA_ZONE_NOBUCKET) ? SK_CACHE_NOBUCKET : 0) |
	       ((f & UMA_ZONE_MAXBUCKET) ? SK_CACHE_MAXBUCKET : 0) |
	       ((f & UMA_ZONE_FIRSTTOUCH) ? SK_CACHE_FIRSTTOUCH : 0) |
	       ((f & UMA_ZONE_ROUNDROBIN) ? SK_CACHE_ROUNDROBIN : 0) |
	       ((f & UMA_ZONE_CACHESPREAD) ? SK_CACHE_CACHESPREAD : 0) |
	       ((f & UMA_ZONE_SMR) ? SK_CACHE_SMR : 0);
}

SK_EXPORT uma_zone_t uma_zcreate(const char *name, size_t size, uma_ctor ctor, uma_dtor dtor,
				 uma_init uminit, uma_fini fini, int align, uint32_t flags)
{
	sk_ensure_init();
	if (!name || !size) {
		sk_errorf("slabkit: uma_zcreate(%s): a zone needs a name and a non-zero size",
			  name ? name : "(null)");
		return NULL;
	}
	if ((flags & UMA_ZONE_SMR) && (ctor || dtor || (flags & UMA_ZONE_PCPU))) {
		sk_errorf("slabkit: uma_zcreate(%s): an SMR zone takes no ctor or dtor (readers use "
			  "its items after they are freed) and is not per-CPU", name);
		return NULL;
	}
	if ((flags & UMA_ZONE_PCPU) && (size > UMA_PCPU_ALLOC_SIZE || uminit || fini)) {
		sk_errorf("slabkit: uma_zcreate(%s): a UMA_ZONE_PCPU zone takes items of at most %d bytes and no "
			  "init/fini", name, UMA_PCPU_ALLOC_SIZE);
		return NULL;
	}
	size_t a = align == UMA_ALIGN_CACHE ? sk_state.cache_line : (size_t)align + 1;
	if (!SK_IS_POW2(a)) {
		sk_errorf("slabkit: uma_zcreate(%s): align mask %d is not a power of two minus one", name, align);
		return NULL;
	}
	struct uma_zone *z = zone_new(name, (int)size, flags, ctor, dtor, NULL, NULL);
	if (!z)
		return NULL;
	z->align = a;
	z->keg_init = uminit;
	z->keg_fini = fini;
	if (flags & UMA_ZONE_PCPU) {
		struct sk_skeg_params kp = { .name = z->name, .size = size, .align = a, .pcpu = true, .zone = z };
		if (!(z->skeg = sk_skeg_create(&kp))) {
			zone_free_storage(z);
			return NULL;
		}
		z->pcpu = true;
		z->own_count = true;
		zones_add(z);
		return z;
	}
	struct sk_cache_params p = {
		.name = name, .object_size = size, .align = a, .front = SK_FRONT_UMA,
		.init = uminit, .fini = fini, .flags = cache_flags_of(flags), .front_data = z,
	};
	if (!(z->keg = sk_cache_create(&p))) {
		sk_meta_free(z, sizeof(*z));
		return NULL;
	}
	zone_update_plain(z);
	zones_add(z);
	return z;
}

SK_EXPORT uma_zone_t uma_zsecond_create(const char *name, uma_ctor ctor, uma_dtor dtor, uma_init zinit,
					uma_fini zfini, uma_zone_t primary)
{
	if (!primary || !primary->keg) {
		sk_errorf("slabkit: uma_zsecond_create(%s): the primary must be a zone with a keg",
			  name ? name : "(null)");
		return NULL;
	}
	struct uma_zone *z =
		zone_new(name, primary->size, primary->flags | UMA_ZONE_SECONDARY, ctor, dtor, zinit, zfini);
	if (!z)
		return NULL;
	z->keg = primary->keg;
	z->primary = primary;
	z->own_count = true;
	pthread_mutex_lock(&zones_lock);
	primary->refs++;
	pthread_mutex_unlock(&zones_lock);
	/* The keg's count now covers two zones: the primary counts its own
	 * items from here on (secondaries are made at setup time, as in
	 * FreeBSD; see zone_count_own for allocations racing this call). */
	pthread_mutex_lock(&primary->lock);
	if (!primary->own_count)
		zone_count_own(primary);
	pthread_mutex_unlock(&primary->lock);
	stash_size(z); /* the zone-level cache (a failure leaves it empty) */
	zones_add(z);
	return z;
}

SK_EXPORT uma_zone_t uma_zcache_create(const char *name, int size, uma_ctor ctor, uma_dtor dtor,
				       uma_init zinit, uma_fini zfini, uma_import zimport,
				       uma_release zrelease, void *arg, int flags)
{
	sk_ensure_init();
	if (!zimport || !zrelease || size <= 0) {
		sk_errorf("slabkit: uma_zcache_create(%s): needs import, release and a positive size",
			  name ? name : "(null)");
		return NULL;
	}
	struct uma_zone *z = zone_new(name, size, (uint32_t)flags, ctor, dtor, zinit, zfini);
	if (!z)
		return NULL;
	z->import = zimport;
	z->release = zrelease;
	z->arg = arg;
	z->own_count = true;
	stash_size(z); /* the zone-level cache (a failure leaves it empty) */
	zones_add(z);
	return z;
}

/* Items out: one load of the zone's own count (every limited zone has
 * one), else the keg's sum over CPUs, which a concurrent allocation and
 * free on two CPUs can push above the truth. */
static uint64_t zone_cur(struct uma_zone *z)
{
	if (sk_load_acquire(&z->own_count))
		return ITEMS_COUNT(sk_load(&z->items));
	return sk_cache_in_use(z->keg);
}

static void zone_free_storage(struct uma_zone *z)
{
	pthread_mutex_destroy(&z->lock);
	pthread_cond_destroy(&z->wake);
	pthread_mutex_destroy(&z->stash_lock);
	if (z->stash)
		sk_meta_free(z->stash, z->stash_cap * sizeof(void *));
	if (z->warning)
		sk_meta_free(z->warning, strlen(z->warning) + 1);
	sk_store(&z->fast_keg, NULL);
	sk_store(&z->counted_keg, NULL);
	z->magic = ZONE_DESTROYED;
	sk_meta_free_quarantined(z, sizeof(*z));
}

/* A handle the caller may use; reports a destroyed zone otherwise. */
static bool zone_ok(uma_zone_t z, const char *call)
{
	if (sk_likely(z->magic == ZONE_LIVE))
		return true;
	if (z->magic == ZONE_DESTROYED)
		sk_misuse("%s: zone %p (%s) was already destroyed", call, (void *)z, z->name);
	else
		sk_misuse("%s: %p is not a zone (or one destroyed long ago)", call, (void *)z);
	return false;
}

static void smr_drain(struct uma_zone *z);
static void smr_flush(struct uma_zone *z);

SK_EXPORT void uma_zdestroy(uma_zone_t z)
{
	if (!z || !zone_ok(z, "uma_zdestroy"))
		return;
	smr_drain(z); /* batches in flight name the zone */
	if (z->own_count && ITEMS_COUNT(sk_load(&z->items)))
		sk_errorf("uma_zdestroy %s: zone still has %llu items allocated", z->name,
			  (unsigned long long)ITEMS_COUNT(sk_load(&z->items)));
	stash_drain(z, 0);
	zones_remove(z);
	pthread_mutex_lock(&zones_lock);
	struct uma_zone *owner = z->primary ? z->primary : z;
	bool last = --owner->refs == 0;
	pthread_mutex_unlock(&zones_lock);
	if (z->primary) {
		zone_free_storage(z);
		z = owner;
		if (!last)
			return;
	} else if (!last) {
		/* Secondaries still use the keg: it goes with the last of them. */
		return;
	}
	if (z->keg && sk_cache_destroy(z->keg, "uma_zdestroy") != 0)
		return; /* reported; the keg stays, and so does the zone it points to */
	if (z->skeg && sk_skeg_destroy(z->skeg) != 0)
		return; /* items still out (reported above): the keg stays */
	zone_free_storage(z);
}

/* --- counting and limits --- */

/*
 * Switching a primary zone from its keg's count to its own (a limit, a
 * reserve or a secondary arrives).  Until then the zone's items may take the
 * keg's fast path, which the zone does not see; after it every allocation
 * and free of the zone counts in z->items.  Caller holds z->lock.
 *
 * The count starts from the keg's figure, read as a lower bound
 * (sk_cache_counts_floor), after fast_keg is cleared and every other thread
 * has passed a full barrier (sk_fence_other_threads).  Operations racing
 * the switch are settled so that the count can only come out low:
 *  - a free that began before the switch (it saw fast_keg set, or own_count
 *    false) checks after its item is back whether fast_keg was cleared or
 *    count_seq moved meanwhile; if so it waits for the switch (z->lock) and
 *    takes its item off the new count.  The barrier makes the check
 *    reliable: either the floor saw that free, or the free sees the switch.
 *    Taking off an item the floor had already left out only counts low.
 *  - an allocation that began before the switch is not counted: the floor
 *    may have missed it.
 * A count that is low lets that many items more out than the limit while
 * items allocated across the switch are still out (the cost of setting a
 * limit while allocations run, as FreeBSD documents for uma_zone_set_max);
 * it never goes below zero (items_give stops at zero), so once those items
 * are back the count is exact again.  A count that came out high would
 * refuse items forever: that is the direction the above rules out.
 */
static void zone_count_own(struct uma_zone *z)
{
	sk_store(&z->count_seq, z->count_seq + 1); /* odd: switching */
	sk_store(&z->fast_keg, NULL);
	/* Without membarrier (valgrind, which runs one thread at a time, or an
	 * old kernel) a free racing this switch may be missed by both sides. */
	(void)sk_fence_other_threads();
	uint64_t allocs, frees;
	sk_cache_counts_floor(z->keg, &allocs, &frees);
	frees = SK_MIN(frees, allocs);
	sk_store(&z->items, allocs - frees); /* no sleepers: the zone had no limit */
	sk_store(&z->allocs, allocs);
	sk_store_release(&z->own_count, true);
	sk_store_release(&z->count_seq, z->count_seq + 1);
	zone_update_plain(z);
}

/* One item more, if a limit leaves room and nobody sleeps for one (they
 * come first).  Lock-free: one compare-and-swap. */
static bool items_try_take(struct uma_zone *z)
{
	uint64_t w = sk_load(&z->items);
	for (;;) {
		int64_t max = sk_load(&z->max_items);
		if (max && (ITEMS_COUNT(w) >= (uint64_t)max || ITEMS_SLEEPERS(w)))
			return false;
		if (ck_pr_cas_64_value(&z->items, w, w + 1, &w))
			return true;
	}
}

/* One item fewer: a free, or a grant given back.  Stops at zero (an item
 * allocated across zone_count_own may not be in the count).  Wakes the
 * sleepers only if the word says there are some: a sleeper registers in the
 * word before it looks at the count (items_wait), so either it saw this
 * item's room or this sees it and takes the lock, which the sleeper holds
 * until it waits. */
static void items_give(struct uma_zone *z)
{
	uint64_t w = sk_load(&z->items);
	do {
		if (!ITEMS_COUNT(w))
			return;
	} while (!ck_pr_cas_64_value(&z->items, w, w - 1, &w));
	if (sk_unlikely(ITEMS_SLEEPERS(w))) {
		pthread_mutex_lock(&z->lock);
		pthread_cond_broadcast(&z->wake);
		pthread_mutex_unlock(&z->lock);
	}
}

/* M_WAITOK at the limit: sleep in arrival order (tickets) until there is
 * room, then take the item and leave the sleepers in one compare-and-swap.
 * The wait is timed (a changed limit wakes the sleepers, but never rely on
 * one wake-up alone). */
static void items_wait(struct uma_zone *z)
{
	pthread_mutex_lock(&z->lock);
	uint64_t ticket = z->ticket_next++;
	ck_pr_inc_64(&z->sleeps);
	uint64_t w = ck_pr_faa_64(&z->items, ITEMS_SLEEPER) + ITEMS_SLEEPER;
	for (;;) {
		int64_t max = sk_load(&z->max_items);
		if (ticket == z->ticket_serving && (!max || ITEMS_COUNT(w) < (uint64_t)max)) {
			if (ck_pr_cas_64_value(&z->items, w, w + 1 - ITEMS_SLEEPER, &w))
				break;
			continue;
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 20 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&z->wake, &z->lock, &until);
		w = sk_load(&z->items);
	}
	z->ticket_serving++;
	if (ITEMS_SLEEPERS(w) > 1)
		pthread_cond_broadcast(&z->wake); /* the next ticket may fit too */
	pthread_mutex_unlock(&z->lock);
}

/* What an allocation or a free saw of the zone's counting before its item
 * touched the keg. */
struct count_view {
	uint32_t seq;
	bool own;
};

static sk_always_inline struct count_view count_view(struct uma_zone *z)
{
	struct count_view v;
	v.seq = sk_load_acquire(&z->count_seq);
	v.own = sk_load_acquire(&z->own_count);
	return v;
}

/* An item went back while (or just before) zone_count_own switched the
 * zone: wait for the switch, then take the item off the new count. */
static sk_noinline void count_put_raced(struct uma_zone *z)
{
	pthread_mutex_lock(&z->lock);
	bool own = z->own_count;
	pthread_mutex_unlock(&z->lock);
	if (own)
		items_give(z);
}

/* An item went back to the zone (stash, keg or release), by a free or an
 * allocation undone: count it as the zone counted when the item's way back
 * began.  (A free is not counted apart: uma_zone_get_frees is allocs -
 * items, one locked instruction fewer per free.) */
static void count_put(struct uma_zone *z, struct count_view v)
{
	if (v.own) {
		items_give(z);
		return;
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST); /* the item's way back, then the check */
	if (sk_unlikely(sk_load(&z->count_seq) != v.seq || (v.seq & 1)))
		count_put_raced(z);
}

SK_EXPORT int uma_zone_set_max(uma_zone_t z, int nitems)
{
	if (!z) {
		sk_errorf("slabkit: uma_zone_set_max: NULL zone");
		return 0;
	}
	if (nitems < 0) {
		sk_errorf("slabkit: uma_zone_set_max(%s, %d): a limit cannot be negative; "
			  "the limit stays %lld", z->name, nitems, (long long)z->max_items);
		return (int)z->max_items;
	}
	pthread_mutex_lock(&z->lock);
	sk_store(&z->max_items, (int64_t)nitems); /* read without the lock */
	/* A limit needs the zone's own count.  The zone keeps it when the
	 * limit goes (set_max 0): its items then stay off the keg's fast path,
	 * one atomic per allocation and free. */
	if (nitems && !z->own_count)
		zone_count_own(z);
	zone_update_plain(z);
	if (ITEMS_SLEEPERS(sk_load(&z->items)))
		pthread_cond_broadcast(&z->wake);
	pthread_mutex_unlock(&z->lock);
	return nitems;
}

SK_EXPORT int uma_zone_get_max(uma_zone_t z)
{
	return z ? (int)z->max_items : 0;
}

SK_EXPORT int uma_zone_get_cur(uma_zone_t z)
{
	return z ? (int)zone_cur(z) : 0;
}

SK_EXPORT const char *uma_zone_name(uma_zone_t z)
{
	return z ? z->name : NULL;
}

/* --- allocation --- */

static bool uma_flags_ok(uma_zone_t z, int flags, const char *call)
{
	if (sk_unlikely(!z)) {
		sk_misuse("%s: NULL zone", call);
		return false;
	}
	if (!zone_ok(z, call))
		return false;
	return sk_bsd_wait_flags_ok(flags, call, z->name);
}

static void item_release(uma_zone_t z, void *item)
{
	if (z->release)
		z->release(z->arg, &item, 1);
	else if (z->skeg)
		sk_skeg_free(z->skeg, item);
	else
		sk_cache_free(z->keg, item, sk_page_of(item));
}

/* --- the stash: free items kept at zone level --- */

/* Whether free items stay in the stash (with their zinit state) rather
 * than going back to the keg: secondary and cache zones, as FreeBSD's
 * zone buckets keep them. */
static bool zone_keeps_items(const struct uma_zone *z)
{
	return z->primary || z->import;
}

/* How many items the stash may hold. */
static uint32_t stash_limit(const struct uma_zone *z)
{
	uint64_t lim = sk_load(&z->reserve);
	int64_t maxcache = sk_load(&z->maxcache);
	if (zone_keeps_items(z))
		lim += maxcache >= 0 ? (uint64_t)maxcache : 2 * STASH_BATCH;
	return (uint32_t)SK_MIN(lim, (uint64_t)UINT32_MAX / 2);
}

/* Make room for stash_limit(z) items.  false: no metadata memory. */
static bool stash_size(struct uma_zone *z)
{
	uint32_t want = stash_limit(z);
	pthread_mutex_lock(&z->stash_lock);
	if (want > z->stash_cap) {
		void **a = sk_meta_zalloc(want * sizeof(void *));
		if (!a) {
			pthread_mutex_unlock(&z->stash_lock);
			return false;
		}
		if (z->stash) {
			memcpy(a, z->stash, z->stash_n * sizeof(void *));
			sk_meta_free(z->stash, z->stash_cap * sizeof(void *));
		}
		z->stash = a;
		z->stash_cap = want;
	}
	pthread_mutex_unlock(&z->stash_lock);
	return true;
}

/* An item from the stash if it holds more than `floor`; else NULL. */
static void *stash_pop(struct uma_zone *z, uint32_t floor)
{
	void *item = NULL;
	if (!sk_load(&z->stash_n))
		return NULL;
	pthread_mutex_lock(&z->stash_lock);
	if (z->stash_n > floor) {
		item = z->stash[z->stash_n - 1];
		sk_store(&z->stash_n, z->stash_n - 1); /* read without the lock above */
	}
	pthread_mutex_unlock(&z->stash_lock);
	return item;
}

/* Is item the stash's top entry, the item freed last?  Freeing it again is
 * a double free (the freelist-head check of core's other stacks). */
static bool stash_is_top(struct uma_zone *z, const void *item)
{
	if (!sk_load(&z->stash_n)) /* read without the lock, as stash_pop */
		return false;
	pthread_mutex_lock(&z->stash_lock);
	bool top = sk_stack_is_top(z->stash, z->stash_n, item);
	pthread_mutex_unlock(&z->stash_lock);
	return top;
}

/* Keep item if the stash holds fewer than `limit`. */
static bool stash_push(struct uma_zone *z, void *item, uint32_t limit)
{
	bool kept = false;
	pthread_mutex_lock(&z->stash_lock);
	if (z->stash_n < SK_MIN(limit, z->stash_cap)) {
		z->stash[z->stash_n] = item;
		sk_store(&z->stash_n, z->stash_n + 1);
		kept = true;
	}
	pthread_mutex_unlock(&z->stash_lock);
	return kept;
}

/* Give back (zfini, keg or release) every stashed item above `keep`. */
static void stash_drain(struct uma_zone *z, uint32_t keep)
{
	void *item;
	while ((item = stash_pop(z, keep))) {
		if (z->zfini && zone_keeps_items(z))
			z->zfini(item, z->size);
		item_release(z, item);
	}
}

/* A cache zone's import, a batch at a time: the first item for the
 * caller, the others through zinit into the stash. */
static void *import_batch(uma_zone_t z, int domain, int flags)
{
	void *store[STASH_BATCH];
	uint32_t room = stash_limit(z) > sk_load(&z->stash_n) ? stash_limit(z) - sk_load(&z->stash_n) : 0;
	int want = (int)SK_MIN(room + 1, STASH_BATCH);
	/* The user's callback is told the OS's number, as every public call. */
	int got = z->import(z->arg, store, want, sk_node_to_user(domain), flags);
	if (got <= 0)
		return NULL;
	for (int i = 1; i < SK_MIN(got, want); i++) {
		if (z->zinit && z->zinit(store[i], z->size, flags) != 0) {
			z->release(z->arg, &store[i], 1);
			continue;
		}
		if (!stash_push(z, store[i], stash_limit(z))) {
			if (z->zfini)
				z->zfini(store[i], z->size);
			z->release(z->arg, &store[i], 1);
		}
	}
	return store[0];
}

/* One item: from the stash (already through zinit), else from the keg or
 * the import callback through zinit; M_USE_RESERVE may take the reserve. */
static void *item_get(uma_zone_t z, int domain, int flags, const void *site)
{
	unsigned skf = (flags & M_WAITOK) ? SK_ALLOC_WAIT : 0;
	void *item = NULL;

	if (zone_keeps_items(z) && domain == UMA_ANYDOMAIN &&
	    (item = stash_pop(z, (flags & M_USE_RESERVE) ? 0 : sk_load(&z->reserve))))
		return item;
	for (unsigned attempt = 0;; attempt++) {
		if (z->import)
			item = import_batch(z, domain, flags);
		else if (z->skeg)
			item = sk_skeg_alloc(z->skeg, domain, flags);
		else
			item = sk_cache_alloc_node(z->keg, domain, skf, site);
		if (item && z->zinit && z->zinit(item, z->size, flags) != 0) {
			item_release(z, item);
			return NULL;
		}
		if (!item && (flags & M_USE_RESERVE) && (item = stash_pop(z, 0)))
			return item; /* the reserve: for keg zones, keg-constructed items */
		if (item || !sk_bsd_wait_for_memory(attempt, flags))
			break;
	}
	return item;
}

static void maxcache_check(uma_zone_t z);


static void item_put(uma_zone_t z, void *item)
{
	if (zone_keeps_items(z) ? stash_push(z, item, stash_limit(z))
				: (sk_load(&z->reserve) && stash_push(z, item, sk_load(&z->reserve))))
		return;
	if (z->zfini)
		z->zfini(item, z->size);
	item_release(z, item);
	if (sk_load(&z->maxcache) >= 0 && z->keg)
		maxcache_check(z);
}

static sk_noinline void *zalloc_slow(uma_zone_t z, void *arg, int domain, int flags, const char *call,
				      const void *site)
{
	if (!uma_flags_ok(z, flags, call))
		return NULL;
	int os_domain = domain;
	domain = sk_node_from_user(os_domain); /* the OS's number -> the provider's index */
	if (domain == SK_NODE_INVALID) {
		char list[128];
		sk_errorf("slabkit: %s(%s): domain %d does not exist (the OS's nodes: %s)", call, z->name,
			  os_domain, sk_node_list(list, sizeof(list)));
		return NULL;
	}
	if (sk_unlikely(z->pcpu) && !(flags & SK_UMA_PCPU_CALL)) {
		sk_misuse("%s(%s): a UMA_ZONE_PCPU zone: use uma_zalloc_pcpu", call, z->name);
		return NULL;
	}
	flags &= ~SK_UMA_PCPU_CALL;
	if (sk_load(&z->max_items) && (sk_load(&z->warning) || sk_load(&z->maxaction)) && zone_full(z))
		limit_hit(z);
	/* The count first (the limit's grant), then the item; an allocation
	 * that began before the zone counted its own items is not counted (see
	 * zone_count_own). */
	struct count_view v = count_view(z);
	if (v.own && !items_try_take(z)) {
		if (flags & M_NOWAIT) {
			ck_pr_inc_64(&z->fails);
			return NULL;
		}
		items_wait(z);
	}
	void *item = item_get(z, domain, flags, site);
	bool out_of_memory = !item;
	if (!item && v.own)
		items_give(z);
	if (item && z->ctor && z->ctor(item, z->size, arg, flags) != 0) {
		item_put(z, item); /* a failing ctor fails the allocation; no dtor */
		count_put(z, v); /* gives the grant back; wakes sleepers */
		item = NULL;
	}
	if (!item) {
		ck_pr_inc_64(&z->fails);
		if (out_of_memory && (flags & M_WAITOK))
			sk_fatal("%s(%s): M_WAITOK allocation failed after draining every cache", call, z->name);
		return NULL;
	}
	if (v.own)
		ck_pr_inc_64(&z->allocs);
	if (flags & M_ZERO)
		memset(item, 0, (size_t)z->size);
	sk_trace_alloc(SK_TRACE_API_UMA, item, (size_t)z->size, 0);
	return item;
}

/* Exactly one of M_NOWAIT (1) and M_WAITOK (2): bit 1 of flags + 1 is set
 * only for 01 and 10 in the two low bits. */
static sk_always_inline bool wait_flag_ok(int flags)
{
	return ((unsigned)flags + 1u) & 2u;
}

/* What uma_zalloc's fast path did not do: everything for a zone that is
 * not plain, a miss of the CPU slot, bad flags; M_ZERO for an item the
 * slot gave (item != NULL only for a plain zone). */
static sk_noinline void *zalloc_miss(uma_zone_t z, void *arg, int flags, void *item, const void *site)
{
	struct sk_cache *keg = z ? sk_load(&z->fast_keg) : NULL;

	if (!item && keg && wait_flag_ok(flags) && keg->fast == SK_FAST_LOCKED)
		item = sk_pcpu_pop_locked(keg); /* lock mode's slot */
	if (!item && z && (keg = sk_load(&z->counted_keg)) && wait_flag_ok(flags)) {
		/* A zone with a limit and nothing else: the count's grant, then
		 * the keg's slot.  At the limit, or on the slot's miss, the slow
		 * path does the rest (sleeping, reactions, refill). */
		if (items_try_take(z)) {
			if ((item = sk_pcpu_pop(keg))) {
				ck_pr_inc_64(&z->allocs);
				if (flags & M_ZERO)
					memset(item, 0, keg->object_size);
				return item;
			}
			items_give(z);
		}
	}
	if (!item)
		return zalloc_slow(z, arg, UMA_ANYDOMAIN, flags, "uma_zalloc", site);
	if (flags & M_ZERO)
		memset(item, 0, keg->object_size);
	return item;
}

SK_EXPORT void *uma_zalloc_arg(uma_zone_t z, void *arg, int flags)
{
	struct sk_cache *keg = sk_likely(z != NULL) ? sk_load(&z->fast_keg) : NULL;
	void *item = NULL;

	/* A plain zone (no ctor, zinit, limit, reserve, SMR: fast_keg set)
	 * is its keg's slot pop; the rest leaves through one tail call. */
	if (sk_likely(keg != NULL) && sk_likely(wait_flag_ok(flags)) && sk_likely((item = sk_pcpu_pop_rseq(keg)) != NULL) &&
	    sk_likely(!(flags & M_ZERO)))
		return item;
	return zalloc_miss(z, arg, flags, item, SK_CALLER());
}

SK_EXPORT void *uma_zalloc_domain(uma_zone_t z, void *arg, int domain, int flags)
{
	return zalloc_slow(z, arg, domain, flags, "uma_zalloc_domain", SK_CALLER());
}

static sk_noinline void zfree_common(uma_zone_t z, void *item, void *arg, bool pcpu_call)
{
	if (!item)
		return;
	if (!z) {
		sk_misuse("uma_zfree: NULL zone (item %p)", item);
		return;
	}
	if (!zone_ok(z, "uma_zfree"))
		return;
	if (sk_unlikely(z->flags & UMA_ZONE_SMR)) {
		sk_misuse("uma_zfree(%s): item %p of an SMR zone must be freed with uma_zfree_smr",
			  z->name, item);
		return;
	}
	if (z->skeg) {
		if (z->pcpu && !pcpu_call) {
			sk_misuse("uma_zfree(%s): a UMA_ZONE_PCPU zone: use uma_zfree_pcpu", z->name);
			return;
		}
		if (!sk_skeg_contains(z->skeg, item)) {
			sk_free_misuse("uma_zfree", z->keg, SK_MISUSE_FOREIGN, item, "not an allocated item of zone %s",
				       z->name);
			return;
		}
		sk_trace_free(SK_TRACE_API_UMA, item);
	} else if (z->keg) {
		struct sk_page *pg = sk_page_of(item);
		if (!pg || (pg->owner != z->keg && pg->kind != SK_PAGE_HEAP)) {
			if (!pg)
				sk_free_misuse("uma_zfree", z->keg, SK_MISUSE_FOREIGN, item, "not allocated by slabkit");
			else
				sk_free_misuse("uma_zfree", z->keg, SK_MISUSE_WRONG_CACHE, item, "it belongs to %s",
					       pg->kind == SK_PAGE_SLAB ? ((struct sk_cache *)pg->owner)->name
									: "no zone");
			return;
		}
		sk_trace_free(SK_TRACE_API_UMA, item);
		if (sk_load(&z->fast_keg)) {
			sk_free_refused = false;
			sk_cache_free(z->keg, item, pg);
			if (sk_unlikely(!sk_load(&z->fast_keg)) && !sk_free_refused)
				count_put_raced(z); /* the zone began counting meanwhile */
			return;
		}
		/* Before the dtor and the counts: a double free must not run
		 * them (a zone's count would go below zero). */
		if (pg->kind == SK_PAGE_SLAB && !sk_cache_free_check(z->keg, item, pg))
			return;
	} else {
		sk_trace_free(SK_TRACE_API_UMA, item); /* a cache zone: no keg to check against */
	}
	if (zone_keeps_items(z) && sk_unlikely(stash_is_top(z, item))) {
		sk_free_misuse("uma_zfree", z->keg, SK_MISUSE_DOUBLE_FREE, item, "it is the first free item of zone %s's cache",
			       z->name);
		return;
	}
	if (z->dtor)
		z->dtor(item, z->size, arg);
	struct count_view v = count_view(z);
	sk_free_refused = false;
	item_put(z, item);
	if (sk_free_refused)
		return; /* reported below: not a free to count */
	count_put(z, v);
}

/* uma_zfree's fast path missed: lock mode's slot for a plain zone's item,
 * else everything else. */
static sk_noinline void zfree_miss(uma_zone_t z, void *item, void *arg)
{
	struct sk_cache *keg = z ? sk_load(&z->counted_keg) : NULL;

	/* A zone with a limit and nothing else: the keg's slot, then the
	 * count (the checks are the plain zone's fast path's). */
	if (keg && sk_addr_in_arena(item)) {
		struct sk_page *pg = sk_page_head(item);
		if (pg->owner == keg && sk_free_on_stride(keg, pg, item) && sk_pcpu_push(keg, item, pg)) {
			items_give(z);
			return;
		}
	}
	keg = z ? sk_load(&z->fast_keg) : NULL;

	if (keg && keg->fast == SK_FAST_LOCKED && sk_addr_in_arena(item)) {
		struct sk_page *pg = sk_page_head(item);
		if (pg->owner == keg && sk_free_on_stride(keg, pg, item) &&
		    sk_pcpu_push_locked(keg, item, sk_free_tag_of(keg, pg))) {
			if (sk_unlikely(sk_load(&z->fast_keg) != keg))
				count_put_raced(z); /* the zone began counting meanwhile */
			return;
		}
	}
	zfree_common(z, item, arg, false);
}

SK_EXPORT void uma_zfree_arg(uma_zone_t z, void *item, void *arg)
{
	struct sk_cache *keg = sk_likely(z != NULL) ? sk_load(&z->fast_keg) : NULL;

	/* A plain zone has no dtor: its item goes back to the keg's CPU slot
	 * as kmem_cache_free's does (a list slot's slab tag stands for the
	 * owner check).  Anything else, and every misuse, goes to zfree_slow
	 * through one tail call. */
	if (sk_likely(keg != NULL) && sk_likely(sk_addr_in_arena(item))) {
		struct sk_page *pg = sk_page_head(item);
		if (sk_likely(sk_free_on_stride(keg, pg, item)) &&
		    (sk_likely(keg->fast == SK_FAST_RSEQ_LIST_SLAB) ? sk_pcpu_list_push_rseq(keg, item, (uintptr_t)pg)
								     : pg->owner == keg && sk_pcpu_push_rseq(keg, item, pg))) {
			/* The zone did not count this item; if it began to while
			 * the item went back, it must (zone_count_own). */
			if (sk_unlikely(sk_load(&z->fast_keg) != keg))
				count_put_raced(z);
			return;
		}
	}
	zfree_miss(z, item, arg);
}

/* The limit of the zone owning keg c (0: none), for slabkit_cache_info. */
long sk_uma_keg_limit(const struct sk_cache *c)
{
	const struct uma_zone *z = c->front_data;
	return z ? (long)sk_load(&z->max_items) : 0;
}

/* --- reclaim --- */

static enum sk_shrink_level level_of(int req)
{
	switch (req) {
	case UMA_RECLAIM_TRIM: return SK_SHRINK_TRIM;
	case UMA_RECLAIM_DRAIN: return SK_SHRINK_DRAIN;
	default: return SK_SHRINK_DRAIN_CPU;
	}
}

SK_EXPORT void uma_reclaim(int req)
{
	sk_ensure_init();
	if (req != UMA_RECLAIM_TRIM && req != UMA_RECLAIM_DRAIN && req != UMA_RECLAIM_DRAIN_CPU) {
		sk_errorf("slabkit: uma_reclaim: unknown request %d", req);
		return;
	}
	sk_uma_smr_flush_all();
	/* Zone-level caches first (their items go back to the kegs), one zone
	 * at a time with zones_lock dropped: zfini is a user callback.  A busy
	 * mark keeps uma_zdestroy from freeing the zone meanwhile. */
	pthread_mutex_lock(&zones_lock);
	uint64_t gen = ++reclaim_gen;
	for (;;) {
		struct uma_zone *z = zones_head;
		while (z && (z->reclaim_seen == gen || !sk_load(&z->stash_n)))
			z = z->next;
		if (!z)
			break;
		z->reclaim_seen = gen;
		z->reclaim_busy++;
		pthread_mutex_unlock(&zones_lock);
		stash_drain(z, sk_load(&z->reserve));
		pthread_mutex_lock(&zones_lock);
		if (--z->reclaim_busy == 0)
			pthread_cond_broadcast(&zones_idle);
	}
	pthread_mutex_unlock(&zones_lock);
	sk_shrink_every_cache(level_of(req));
}

SK_EXPORT void uma_zone_reclaim(uma_zone_t z, int req)
{
	if (!z)
		return;
	if (req != UMA_RECLAIM_TRIM || zone_keeps_items(z))
		stash_drain(z, sk_load(&z->reserve));
	if (z->skeg)
		sk_skeg_reclaim(z->skeg);
	smr_flush(z);
	if (!z->keg)
		return;
	sk_cache_shrink(z->keg, level_of(req));
	if (req != UMA_RECLAIM_TRIM)
		sk_pages_release_free();
}

/* --- SMR zones --- */

/*
 * Safe memory reclamation over liburcu (core/rcu.c): one grace-period
 * domain for the process, so every zone's smr_t is the same object and
 * smr_enter/smr_exit are an RCU read-side section.  uma_zfree_smr collects
 * freed items in a batch per zone (under z->lock); a full batch goes to
 * call_rcu as a whole, and after the grace period its items take the
 * zone's ordinary free path (zfini, the zone cache, the keg) with the
 * zone's counts and limit, so an item is never handed out again while a
 * reader that may have seen it is inside smr_enter.  z->smr_pending counts
 * the batches in flight; uma_zdestroy waits for them.
 */
#define SMR_BATCH 60

struct smr_batch {
	void *rcu[2];                 /* liburcu's head */
	struct uma_zone *zone;
	unsigned n;
	void *items[SMR_BATCH];
};

struct smr {
	int unused;
};
static struct smr the_smr;

/* The tail of an ordinary free, once nobody can see the item. */
static void smr_item_put(struct uma_zone *z, void *item)
{
	struct count_view v = count_view(z);
	sk_free_refused = false;
	item_put(z, item);
	if (!sk_free_refused)
		count_put(z, v);
}

static void smr_batch_done(void *head)
{
	struct smr_batch *b = head;
	struct uma_zone *z = b->zone;

	for (unsigned i = 0; i < b->n; i++)
		smr_item_put(z, b->items[i]);
	sk_meta_free(b, sizeof(*b));
	ck_pr_dec_64(&z->smr_pending);
}

static void smr_batch_submit(struct uma_zone *z, struct smr_batch *b)
{
	ck_pr_inc_64(&z->smr_pending);
	sk_rcu_call(b, smr_batch_done);
}

/* Hand a partial batch over now (reclaim, destroy, fini). */
static void smr_flush(struct uma_zone *z)
{
	if (!(z->flags & UMA_ZONE_SMR))
		return;
	pthread_mutex_lock(&z->lock);
	struct smr_batch *b = z->smr_batch;
	z->smr_batch = NULL;
	pthread_mutex_unlock(&z->lock);
	if (b)
		smr_batch_submit(z, b);
}

/* uma_zdestroy: every batch handed over and done. */
static void smr_drain(struct uma_zone *z)
{
	smr_flush(z);
	while (sk_load(&z->smr_pending))
		sk_rcu_barrier();
}

void sk_uma_smr_flush_all(void)
{
	pthread_mutex_lock(&zones_lock);
	for (struct uma_zone *z = zones_head; z; z = z->next)
		smr_flush(z);
	pthread_mutex_unlock(&zones_lock);
}

SK_EXPORT smr_t uma_zone_get_smr(uma_zone_t z)
{
	if (!z || !zone_ok(z, "uma_zone_get_smr"))
		return NULL;
	if (!(z->flags & UMA_ZONE_SMR)) {
		sk_misuse("uma_zone_get_smr(%s): not an SMR zone", z->name);
		return NULL;
	}
	return &the_smr;
}

static bool smr_zone_ok(uma_zone_t z, const char *call)
{
	if (!z) {
		sk_misuse("%s: NULL zone", call);
		return false;
	}
	if (!zone_ok(z, call))
		return false;
	if (!(z->flags & UMA_ZONE_SMR)) {
		sk_misuse("%s(%s): not an SMR zone (created without UMA_ZONE_SMR)", call, z->name);
		return false;
	}
	return true;
}

SK_EXPORT void *uma_zalloc_smr(uma_zone_t z, int flags)
{
	if (!smr_zone_ok(z, "uma_zalloc_smr"))
		return NULL;
	return zalloc_slow(z, NULL, UMA_ANYDOMAIN, flags, "uma_zalloc_smr", SK_CALLER());
}

SK_EXPORT void uma_zfree_smr(uma_zone_t z, void *item)
{
	if (!item || !smr_zone_ok(z, "uma_zfree_smr"))
		return;
	bool ours;
	if (z->skeg) {
		ours = sk_skeg_contains(z->skeg, item);
	} else {
		struct sk_page *pg = sk_page_of(item);
		ours = pg && (pg->owner == z->keg || pg->kind == SK_PAGE_HEAP);
	}
	if (!ours) {
		sk_free_misuse("uma_zfree_smr", z->keg, SK_MISUSE_WRONG_CACHE, item, "it does not belong to zone %s",
			       z->name);
		return;
	}
	sk_trace_free(SK_TRACE_API_UMA, item);

	struct smr_batch *full = NULL;
	pthread_mutex_lock(&z->lock);
	struct smr_batch *b = z->smr_batch;
	if (!b)
		b = z->smr_batch = sk_meta_zalloc(sizeof(*b));
	if (b) {
		b->zone = z;
		b->items[b->n++] = item;
		if (b->n == SMR_BATCH) {
			full = b;
			z->smr_batch = NULL;
		}
	}
	pthread_mutex_unlock(&z->lock);
	if (full) {
		smr_batch_submit(z, full);
	} else if (!b) {
		/* No memory for a batch: wait for the grace period here. */
		slabkit_synchronize_rcu();
		smr_item_put(z, item);
	}
}

SK_EXPORT void smr_enter(smr_t smr)
{
	(void)smr;
	slabkit_rcu_read_lock();
}

SK_EXPORT void smr_exit(smr_t smr)
{
	(void)smr;
	slabkit_rcu_read_unlock();
}

SK_EXPORT void smr_synchronize(smr_t smr)
{
	(void)smr;
	slabkit_synchronize_rcu();
}

/* --- more of uma(9): limits' reactions, reserves, counters, page sources --- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* At the limit, or sleepers waiting for it: one load, no lock. */
static bool zone_full(struct uma_zone *z)
{
	int64_t max = sk_load(&z->max_items);
	if (!max || !sk_load_acquire(&z->own_count))
		return false;
	uint64_t w = sk_load(&z->items);
	return ITEMS_COUNT(w) >= (uint64_t)max || ITEMS_SLEEPERS(w);
}

/* The limit stops (or delays) an allocation: FreeBSD's zone_log_warning
 * (at most every five minutes) and maxaction.  No lock held. */
static void limit_hit(struct uma_zone *z)
{
	const char *warning = sk_load(&z->warning);
	if (warning) {
		uint64_t now = now_ns(), last = sk_load(&z->warned_at_ns);
		if ((!last || now - last >= 300ull * 1000000000ull) &&
		    ck_pr_cas_64(&z->warned_at_ns, last, now ? now : 1))
			sk_errorf("[zone: %s] %s", z->name, warning);
	}
	uma_maxaction_t fn = sk_load(&z->maxaction);
	if (fn)
		fn(z, 1);
}

SK_EXPORT void uma_zone_set_warning(uma_zone_t z, const char *warning)
{
	if (!z)
		return;
	char *copy = NULL;
	if (warning && (copy = sk_meta_zalloc(strlen(warning) + 1)))
		memcpy(copy, warning, strlen(warning) + 1);
	pthread_mutex_lock(&z->lock);
	char *old = z->warning;
	sk_store(&z->warning, copy);
	pthread_mutex_unlock(&z->lock);
	(void)old; /* may still be read by a racing allocation: kept until fini */
}

SK_EXPORT void uma_zone_set_maxaction(uma_zone_t z, uma_maxaction_t fn)
{
	if (z)
		sk_store(&z->maxaction, fn);
}

SK_EXPORT int uma_zone_exhausted(uma_zone_t z)
{
	return z && zone_full(z);
}

/* A zone's allocations or frees: its own counts, or its keg cache's. */
static uint64_t zone_op_count(uma_zone_t z, bool frees)
{
	if (!z)
		return 0;
	if (sk_load_acquire(&z->own_count)) {
		/* An allocation in flight is in items before it is in allocs. */
		uint64_t items = ITEMS_COUNT(sk_load(&z->items)), allocs = sk_load(&z->allocs);
		return frees ? (allocs > items ? allocs - items : 0) : allocs;
	}
	struct slabkit_cache_info info;
	sk_cache_fill_info(z->keg, &info);
	return frees ? info.frees : info.allocs;
}

SK_EXPORT uint64_t uma_zone_get_allocs(uma_zone_t z)
{
	return zone_op_count(z, false);
}

SK_EXPORT uint64_t uma_zone_get_frees(uma_zone_t z)
{
	return zone_op_count(z, true);
}

SK_EXPORT void uma_zone_reserve(uma_zone_t z, int nitems)
{
	if (!z || nitems < 0)
		return;
	pthread_mutex_lock(&z->lock);
	if (!z->own_count && z->keg) {
		/* The reserve holds keg items the zone does not hand out: the
		 * zone counts its own items from here on (as with secondaries). */
		zone_count_own(z);
	}
	sk_store(&z->reserve, (uint32_t)nitems);
	zone_update_plain(z);
	pthread_mutex_unlock(&z->lock);
	if (!stash_size(z))
		sk_errorf("slabkit: uma_zone_reserve(%s): no memory for a reserve of %d items", z->name, nitems);
	stash_drain(z, stash_limit(z)); /* a smaller reserve gives the rest back */
}

SK_EXPORT int uma_zone_reserve_kva(uma_zone_t z, int nitems)
{
	if (!z)
		return 0;
	uma_zone_set_max(z, nitems);
	return 1;
}

SK_EXPORT void uma_prealloc(uma_zone_t z, int itemcnt)
{
	if (!z || itemcnt <= 0)
		return;
	void **items = sk_meta_zalloc((size_t)itemcnt * sizeof(void *));
	if (!items) {
		sk_errorf("slabkit: uma_prealloc(%s): no memory to track %d items", z->name, itemcnt);
		return;
	}
	/* Straight from the keg (no ctor, no limit): the zone's reserve is
	 * filled first, the rest go back to the keg, whose slabs now exist. */
	int n = 0;
	while (n < itemcnt && (items[n] = item_get(z, UMA_ANYDOMAIN, M_NOWAIT, SK_CALLER())))
		n++;
	if (n < itemcnt)
		sk_errorf("slabkit: uma_prealloc(%s): %d of %d items (out of memory)", z->name, n, itemcnt);
	while (n--) {
		void *item = items[n];
		if (stash_push(z, item, SK_MAX(sk_load(&z->reserve), zone_keeps_items(z) ? stash_limit(z) : 0)))
			continue;
		if (z->zfini && zone_keeps_items(z))
			z->zfini(item, z->size);
		item_release(z, item);
	}
	sk_meta_free(items, (size_t)itemcnt * sizeof(void *));
}

/* uma_zone_set_maxcache: at most maxcache free items stay cached.  The
 * zone's stash holds at most that many; the keg's per-CPU and node caches
 * are checked every maxcache/2 frees and drained when they hold more. */
SK_EXPORT void uma_zone_set_maxcache(uma_zone_t z, int nitems)
{
	if (!z || nitems < 0)
		return;
	pthread_mutex_lock(&z->lock);
	sk_store(&z->maxcache, (int64_t)nitems);
	zone_update_plain(z);
	pthread_mutex_unlock(&z->lock);
	if (z->keg && z->keg->ops->tune) /* a backend with bucket caches sizes them to fit */
		z->keg->ops->tune(z->keg, "bucket_cache_max", nitems);
	stash_size(z);
	stash_drain(z, stash_limit(z));
	if (z->keg)
		maxcache_check(z);
}

static void maxcache_check(uma_zone_t z)
{
	int64_t maxcache = sk_load(&z->maxcache);
	uint64_t every = SK_MAX((uint64_t)maxcache / 2, 1u);
	if (ck_pr_faa_64(&z->maxcache_frees, 1) % every)
		return;
	struct sk_backend_cache_info b = { 0 };
	z->keg->ops->cache_info(z->keg, &b);
	if (b.cached_free > (uint64_t)maxcache)
		sk_cache_shrink(z->keg, SK_SHRINK_DRAIN_CPU);
}

/* A zone over the caller's page source: its items move to core's keg,
 * laid out by core, so that the backend's slabs (which must be the page
 * provider's) are not involved.  Before the first allocation only. */
static void zone_set_source(uma_zone_t z, uma_alloc allocf, uma_free freef, const char *call)
{
	if (!z)
		return;
	pthread_mutex_lock(&zones_lock);
	bool shared = z->refs > 1 || z->primary || z->import || z->pcpu;
	pthread_mutex_unlock(&zones_lock);
	if (shared) {
		sk_errorf("slabkit: %s(%s): only a plain primary zone without secondaries takes a page source", call,
			  z->name);
		return;
	}
	if (allocf)
		z->allocf = allocf;
	if (freef)
		z->freef = freef;
	if (z->skeg) { /* already over a source: the other half of the pair */
		if (sk_skeg_set_source(z->skeg, z->allocf, z->freef) != 0)
			sk_errorf("slabkit: %s(%s): the zone already has slabs from its old source", call, z->name);
		return;
	}
	if (zone_cur(z) || uma_zone_get_allocs(z)) {
		sk_errorf("slabkit: %s(%s): the zone has already allocated; set the page source before", call,
			  z->name);
		return;
	}
	struct sk_skeg_params kp = {
		.name = z->name, .size = (size_t)z->size, .align = z->align, .allocf = z->allocf,
		.freef = z->freef, .zone = z, .init = z->keg_init, .fini = z->keg_fini,
	};
	struct sk_skeg *k = sk_skeg_create(&kp);
	if (!k) {
		sk_errorf("slabkit: %s(%s): out of metadata memory", call, z->name);
		return;
	}
	stash_drain(z, 0);
	pthread_mutex_lock(&z->lock);
	struct sk_cache *keg = z->keg;
	z->keg = NULL;
	z->skeg = k;
	z->own_count = true;
	zone_update_plain(z);
	pthread_mutex_unlock(&z->lock);
	if (keg) {
		keg->front_data = NULL;
		sk_cache_destroy(keg, call);
	}
}

SK_EXPORT void uma_zone_set_allocf(uma_zone_t z, uma_alloc allocf)
{
	zone_set_source(z, allocf, NULL, "uma_zone_set_allocf");
}

SK_EXPORT void uma_zone_set_freef(uma_zone_t z, uma_free freef)
{
	zone_set_source(z, NULL, freef, "uma_zone_set_freef");
}

/* --- per-CPU zones --- */

SK_EXPORT unsigned slabkit_curcpu(void)
{
	return sk_pcpu_current_cpu();
}

SK_EXPORT unsigned slabkit_cpu_ids(void)
{
	sk_ensure_init();
	return sk_pcpu_nr;
}

SK_EXPORT void *uma_zalloc_pcpu_arg(uma_zone_t z, void *arg, int flags)
{
	if (z && !z->pcpu) {
		sk_misuse("uma_zalloc_pcpu(%s): not a UMA_ZONE_PCPU zone", z->name);
		return NULL;
	}
	void *item = zalloc_slow(z, arg, UMA_ANYDOMAIN, (flags & ~M_ZERO) | SK_UMA_PCPU_CALL,
				 "uma_zalloc_pcpu", SK_CALLER());
	if (item && (flags & M_ZERO))
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
			memset((char *)item + (size_t)cpu * UMA_PCPU_ALLOC_SIZE, 0, (size_t)z->size);
	return item;
}

SK_EXPORT void uma_zfree_pcpu_arg(uma_zone_t z, void *item, void *arg)
{
	if (z && !z->pcpu) {
		sk_misuse("uma_zfree_pcpu(%s): not a UMA_ZONE_PCPU zone", z->name);
		return;
	}
	zfree_common(z, item, arg, true);
}

/* --- reports and teardown --- */

void sk_uma_zones_visit(void (*fn)(const struct sk_zone_row *row, void *arg), void *arg)
{
	pthread_mutex_lock(&zones_lock);
	for (struct uma_zone *z = zones_head; z; z = z->next) {
		struct slabkit_cache_info info = { 0 };
		struct sk_backend_cache_info binfo = { 0 };
		struct sk_zone_row row = {
			.name = z->name, .size = z->size, .limit = (long long)z->max_items,
			.used = zone_cur(z), .fail = sk_load(&z->fails), .sleeps = sk_load(&z->sleeps),
			.xdomain = -1, .backend = z->keg ? z->keg->ops->name : "-",
		};
		if (z->keg) {
			sk_cache_fill_info(z->keg, &info);
			z->keg->ops->cache_info(z->keg, &binfo);
		}
		if (z->own_count) {
			row.req = sk_load(&z->allocs);
		} else {
			row.req = info.allocs;
			row.fail += info.failures;
		}
		/* The keg's free items and cross-domain frees count once, on the
		 * primary zone. */
		if (!z->primary && z->keg) {
			row.free = binfo.cached_free + binfo.slab_free;
			row.xdomain = binfo.xdomain_counted ? (int64_t)binfo.xdomain_frees : -1;
		} else if (z->keg) {
			row.xdomain = binfo.xdomain_counted ? 0 : -1;
		}
		row.free += sk_load(&z->stash_n);
		if (z->skeg) {
			uint64_t in_use, skeg_free, slabs;
			sk_skeg_info(z->skeg, &in_use, &skeg_free, &slabs);
			row.free += skeg_free;
		}
		fn(&row, arg);
	}
	pthread_mutex_unlock(&zones_lock);
}

/* slabkit_fini: the zones' storage goes with the arenas; forget them. */
void sk_uma_zones_reset(void)
{
	pthread_mutex_lock(&zones_lock);
	while (zones_head) {
		struct uma_zone *z = zones_head;
		zones_head = z->next;
		if (z->keg && !z->primary)
			z->keg->front_data = NULL;
		pthread_mutex_destroy(&z->lock);
		pthread_cond_destroy(&z->wake);
		pthread_mutex_destroy(&z->stash_lock);
	}
	pthread_mutex_unlock(&zones_lock);
}
