/*
 * Guard-page mode (FreeBSD's memguard, Linux's KFENCE): chosen caches, or
 * a sample of every cache's allocations, get objects on pages of their
 * own, the object's end against an inaccessible page, so that an overrun
 * faults at the faulting instruction; a freed guarded object's pages are
 * made inaccessible and kept out of use for a while (a FIFO), so that a
 * use after free faults too.  docs/debug.md ("Guard pages") has the switch.
 *
 * A guarded object is an object of its cache in every front end's eyes:
 * its pages are SK_PAGE_SLAB pages owned by the cache, their obj_base the
 * object, so kfree, kmem_cache_free, uma_zfree and free(9) find the cache
 * and the debug layer (the cache runs its slow path), which knows the
 * object is guarded from its live table and hands it back here.
 *
 * Lock order: guard.lock is a leaf.  The page provider and user hooks
 * (ctor, UMA init/fini) are called without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <slabkit/freebsd/malloc.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_guard.h"

/* Freed guarded objects kept inaccessible before their pages go back. */
#define GUARD_FIFO 64u
/* Guarded objects live at once at most (each splits the arena's mapping
 * in two places; the kernel limits mappings per process). */
#define GUARD_MAX_LIVE 1024u
#define GUARD_MAX_NAMES 16

struct guarded {
	struct sk_cache *cache;
	void *base;        /* first page */
	size_t npages;     /* data pages + the guard page */
	void *obj;
};

/* Written by sk_guard_configure at init, read-only afterwards. */
static struct {
	unsigned sample;   /* every Nth allocation of any cache (0: off) */
	unsigned nr_names, nr_types;
	char names[GUARD_MAX_NAMES][SLABKIT_NAME_MAX];  /* caches, classes, zones */
	char types[GUARD_MAX_NAMES][SLABKIT_NAME_MAX];  /* malloc(9) types' short descriptions */
} cfg;

__thread const void *sk_guard_alloc_type __attribute__((tls_model("initial-exec")));

static struct {
	pthread_mutex_t lock;
	/* Synchronization: lock. */
	struct guarded fifo[GUARD_FIFO];
	unsigned head, count;
	/* Synchronization: ck_pr atomics. */
	uint64_t live, counter, guarded_total;
} guard = { .lock = PTHREAD_MUTEX_INITIALIZER };

bool sk_guard_on;

void sk_guard_reset(void)
{
	/* Kept pages go with the arenas (slabkit_fini unmaps them). */
	pthread_mutex_lock(&guard.lock);
	guard.head = guard.count = 0;
	pthread_mutex_unlock(&guard.lock);
	ck_pr_store_64(&guard.live, 0);
	ck_pr_store_64(&guard.counter, 0);
	ck_pr_store_64(&guard.guarded_total, 0);
	memset(&cfg, 0, sizeof(cfg));
	sk_guard_on = false;
}

int sk_guard_configure(const char *spec)
{
	memset(&cfg, 0, sizeof(cfg));
	sk_guard_on = false;
	if (!spec || !*spec)
		return 0;
	for (const char *s = spec; *s;) {
		const char *end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		size_t len = (size_t)(end - s);
		if (len > 7 && !strncmp(s, "sample=", 7)) {
			char *e;
			cfg.sample = (unsigned)strtoul(s + 7, &e, 10);
			if (e != end || !cfg.sample)
				goto bad;
		} else if (len > 5 && !strncmp(s, "type=", 5)) {
			if (len - 5 >= SLABKIT_NAME_MAX || cfg.nr_types == GUARD_MAX_NAMES)
				goto bad;
			memcpy(cfg.types[cfg.nr_types], s + 5, len - 5);
			cfg.types[cfg.nr_types++][len - 5] = 0;
		} else if (len && len < SLABKIT_NAME_MAX && cfg.nr_names < GUARD_MAX_NAMES) {
			memcpy(cfg.names[cfg.nr_names], s, len);
			cfg.names[cfg.nr_names++][len] = 0;
		} else {
			goto bad;
		}
		s = *end ? end + 1 : end;
	}
	sk_guard_on = true;
	return 0;
bad:
	sk_errorf("slabkit: SLABKIT_GUARD '%s': expected cache names, type=NAME (a malloc(9) type's short "
		  "description; a trailing * matches a prefix) and/or sample=N, separated by commas "
		  "(at most %d of each)", spec, GUARD_MAX_NAMES);
	memset(&cfg, 0, sizeof(cfg));
	return -EINVAL;
}

static bool name_matches(const char *pattern, const char *name)
{
	size_t n = strlen(pattern);
	return n && pattern[n - 1] == '*' ? !strncmp(pattern, name, n - 1) : !strcmp(pattern, name);
}

unsigned sk_guard_mode_for(const char *name, uint32_t flags)
{
	unsigned mode = 0;

	if (!sk_guard_on || (flags & (SK_CACHE_TYPESAFE_BY_RCU | SK_CACHE_SMR)))
		return 0;
	/* Caches with a ctor or UMA init are sampled too: a guarded object
	 * is a slab of one object, constructed when its pages are made (as
	 * KFENCE does), freed in constructed state and never reused. */
	if (cfg.sample)
		mode |= SK_GUARD_SAMPLE;
	for (unsigned i = 0; i < cfg.nr_names; i++)
		if (name_matches(cfg.names[i], name))
			mode |= SK_GUARD_ALL;
	/* A malloc type's blocks come from the malloc-N classes it shares
	 * with every other type: the classes pick by the allocating type. */
	if (cfg.nr_types && !strncmp(name, "malloc-", 7))
		mode |= SK_GUARD_TYPES;
	return mode;
}

uint32_t sk_guard_flags_for(const char *name, uint32_t flags)
{
	return sk_guard_mode_for(name, flags) ? SK_CACHE_GUARD : 0;
}

static bool type_guarded(const struct malloc_type *type)
{
	if (!type || !type->ks_shortdesc)
		return false;
	for (unsigned i = 0; i < cfg.nr_types; i++)
		if (name_matches(cfg.types[i], type->ks_shortdesc))
			return true;
	return false;
}

bool sk_guard_pick(const struct sk_cache *c, unsigned mode)
{
	(void)c;
	if (ck_pr_load_64(&guard.live) >= GUARD_MAX_LIVE)
		return false;
	if ((mode & SK_GUARD_ALL) || ((mode & SK_GUARD_TYPES) && type_guarded(sk_guard_alloc_type)))
		return true;
	return (mode & SK_GUARD_SAMPLE) && ck_pr_faa_64(&guard.counter, 1) % cfg.sample == 0;
}

/* The object's place: its end against the guard page, its start aligned. */
static size_t guard_data_pages(const struct sk_cache *c)
{
	return (SK_ALIGN_UP((size_t)c->object_size, (size_t)c->align) + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
}

void *sk_guard_alloc(struct sk_cache *c, int node, unsigned flags)
{
	size_t data = guard_data_pages(c), npages = data + 1;
	char *base = sk_pages_alloc_exact(node, npages, SK_PAGE_SLAB, c);
	if (!base)
		return NULL;
	char *guard_page = base + (data << SK_PAGE_SHIFT);
	char *obj = guard_page - SK_ALIGN_UP((size_t)c->object_size, (size_t)c->align);
	sk_slab_set_first_object(sk_page_of_raw(base), obj);
	if (c->flags & SK_CACHE_ZINIT)
		memset(base, 0, data << SK_PAGE_SHIFT);
	if (mprotect(guard_page, SK_PAGE_SIZE, PROT_NONE) != 0) {
		sk_pages_free(base);
		return NULL;
	}
	/* Constructor hooks get the user pointer from the debug base. */
	if (sk_cache_construct(c, sk_debug_base(c, obj), flags) != 0) {
		mprotect(guard_page, SK_PAGE_SIZE, PROT_READ | PROT_WRITE);
		sk_pages_free(base);
		return NULL;
	}
	ck_pr_inc_64(&guard.live);
	ck_pr_inc_64(&guard.guarded_total);
	return obj;
}

/* Give a guarded object's pages back (no lock held). */
static void guard_release(const struct guarded *g)
{
	mprotect(g->base, g->npages << SK_PAGE_SHIFT, PROT_READ | PROT_WRITE);
	if (g->cache && sk_cache_has_fini(g->cache))
		sk_cache_destruct(g->cache, sk_debug_base(g->cache, g->obj));
	sk_pages_free(g->base);
}

void sk_guard_free(struct sk_cache *c, void *obj)
{
	size_t data = guard_data_pages(c);
	char *guard_page = (char *)obj + SK_ALIGN_UP((size_t)c->object_size, (size_t)c->align);
	struct guarded g = { c, guard_page - (data << SK_PAGE_SHIFT), data + 1, obj }, victim = { 0 };

	/* From now on any access to the object faults. */
	mprotect(g.base, data << SK_PAGE_SHIFT, PROT_NONE);
	ck_pr_dec_64(&guard.live);
	pthread_mutex_lock(&guard.lock);
	if (guard.count == GUARD_FIFO) {
		victim = guard.fifo[guard.head];
		guard.head = (guard.head + 1) % GUARD_FIFO;
		guard.count--;
	}
	guard.fifo[(guard.head + guard.count) % GUARD_FIFO] = g;
	guard.count++;
	pthread_mutex_unlock(&guard.lock);
	if (victim.base)
		guard_release(&victim);
}

bool sk_guard_recently_freed(const void *obj)
{
	bool found = false;
	pthread_mutex_lock(&guard.lock);
	for (unsigned k = 0; k < guard.count && !found; k++)
		found = guard.fifo[(guard.head + k) % GUARD_FIFO].obj == obj;
	pthread_mutex_unlock(&guard.lock);
	return found;
}

/* Release the kept pages of cache c (NULL: all), before it goes away. */
void sk_guard_forget(struct sk_cache *c)
{
	for (;;) {
		struct guarded victim = { 0 };
		pthread_mutex_lock(&guard.lock);
		for (unsigned k = 0; k < guard.count; k++) {
			unsigned at = (guard.head + k) % GUARD_FIFO;
			if (c && guard.fifo[at].cache != c)
				continue;
			victim = guard.fifo[at];
			/* Close the gap: later entries move up by one. */
			for (unsigned j = k; j + 1 < guard.count; j++)
				guard.fifo[(guard.head + j) % GUARD_FIFO] =
					guard.fifo[(guard.head + j + 1) % GUARD_FIFO];
			guard.count--;
			break;
		}
		pthread_mutex_unlock(&guard.lock);
		if (!victim.base)
			return;
		guard_release(&victim);
	}
}

uint64_t sk_guard_allocations(void)
{
	return ck_pr_load_64(&guard.guarded_total);
}
