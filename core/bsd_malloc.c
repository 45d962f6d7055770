/*
 * The FreeBSD malloc(9) front end: malloc types with per-CPU statistics
 * over the kmemzones size classes (malloc-16 .. malloc-65536, with 384),
 * the backend's heap, or the page path above 64 KiB.
 *
 * Every block remembers its type so that bsd_free() with the wrong type is
 * caught: class and heap blocks keep the type pointer in their last word
 * (a request of n bytes takes the class of n + 8), large blocks in their
 * page descriptor.  malloc_usable_size() reports what is left for the caller.
 *
 * Lock order: types_lock is a leaf (never held while allocating).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <slabkit/freebsd/malloc.h>

#include "sk_core.h"
#include "sk_trace.h"

#define TYPE_TRAILER sizeof(void *)
#define LARGE_CLASS_BIT 63

/* One cache line of counters per CPU; bytes are block sizes (the class
 * size, or whole pages), as FreeBSD counts them.  Synchronization: atomic adds on the
 * line of the CPU the caller runs on; readers sum all lines. */
struct mt_cpu_stats {
	uint64_t numallocs, numfrees, memalloced, memfreed, size_mask;
	uint64_t memhigh; /* CPU 0's only: the type's MemUse high water, sampled on reads */
} __attribute__((aligned(64)));

/* Synchronization: types_lock guards the list and handle creation. */
static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static struct malloc_type *types_head;

static bool type_listed_locked(const struct malloc_type *t)
{
	for (struct malloc_type *it = types_head; it; it = it->ks_next)
		if (it == t)
			return true;
	return false;
}

void sk_malloc_types_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&types_lock);
}

SK_EXPORT void slabkit_malloc_type_register(struct malloc_type *type)
{
	pthread_mutex_lock(&types_lock);
	if (!type_listed_locked(type)) {
		type->ks_next = types_head;
		types_head = type;
	}
	pthread_mutex_unlock(&types_lock);
}

static size_t handle_bytes(void)
{
	return sizeof(struct mt_cpu_stats) * sk_pcpu_nr;
}

static struct mt_cpu_stats *type_stats(struct malloc_type *type)
{
	struct mt_cpu_stats *s = sk_load_acquire((struct mt_cpu_stats **)&type->ks_handle);

	if (sk_likely(s != NULL))
		return s;
	pthread_mutex_lock(&types_lock);
	if (!type_listed_locked(type)) { /* used without MALLOC_DEFINE: register it now */
		type->ks_next = types_head;
		types_head = type;
	}
	if (!(s = type->ks_handle)) {
		s = sk_meta_zalloc(handle_bytes());
		sk_store_release(&type->ks_handle, (void *)s);
	}
	pthread_mutex_unlock(&types_lock);
	return s;
}

SK_EXPORT void slabkit_malloc_type_stats(const struct malloc_type *type, struct malloc_type_stats_sum *out)
{
	memset(out, 0, sizeof(*out));
	const struct mt_cpu_stats *s = type ? sk_load_acquire((struct mt_cpu_stats **)&type->ks_handle) : NULL;
	if (!s || !sk_state.ready)
		return;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		out->allocs += sk_load(&s[cpu].numallocs);
		out->frees += sk_load(&s[cpu].numfrees);
		out->memalloced += sk_load(&s[cpu].memalloced);
		out->memfreed += sk_load(&s[cpu].memfreed);
		out->size_mask |= sk_load(&s[cpu].size_mask);
	}
	/* HighUse: sampled at every read (reports, the live view's snapshots),
	 * as a cache's high_water is at its slow paths and reads. */
	uint64_t use = out->memalloced > out->memfreed ? out->memalloced - out->memfreed : 0;
	uint64_t hw = sk_load(&((struct mt_cpu_stats *)s)[0].memhigh);
	while (use > hw && !ck_pr_cas_64_value(&((struct mt_cpu_stats *)s)[0].memhigh, hw, use, &hw))
		;
	out->memhigh = SK_MAX(use, hw);
}

static void warn_if_leaked(const struct malloc_type *type)
{
	struct malloc_type_stats_sum sum;

	slabkit_malloc_type_stats(type, &sum);
	if (sum.allocs > sum.frees) {
		sk_errorf("Warning: memory type %s leaked memory on destroy (%llu allocations, %llu bytes leaked).",
			  type->ks_shortdesc, (unsigned long long)(sum.allocs - sum.frees),
			  (unsigned long long)(sum.memalloced - sum.memfreed));
		char what[SLABKIT_NAME_MAX + 32];
		snprintf(what, sizeof(what), "memory type %s", type->ks_shortdesc);
		sk_track_report(what, NULL, type);
	}
}

SK_EXPORT void slabkit_malloc_type_unregister(struct malloc_type *type)
{
	pthread_mutex_lock(&types_lock);
	for (struct malloc_type **pp = &types_head; *pp; pp = &(*pp)->ks_next)
		if (*pp == type) {
			*pp = type->ks_next;
			break;
		}
	pthread_mutex_unlock(&types_lock);
	warn_if_leaked(type);
	/* The counters stay in metadata until slabkit_fini; the type may be
	 * registered again (a module reloaded) and starts from zero. */
	sk_store_release(&type->ks_handle, NULL);
	type->ks_next = NULL;
}

/* slabkit_fini: report what each type still holds; the counters go with the arenas. */
void sk_malloc_types_reset(void)
{
	pthread_mutex_lock(&types_lock);
	for (struct malloc_type *t = types_head; t; t = t->ks_next) {
		warn_if_leaked(t);
		t->ks_handle = NULL;
	}
	pthread_mutex_unlock(&types_lock);
}

void sk_malloc_types_visit(void (*fn)(const struct sk_type_row *row, void *arg), void *arg)
{
	pthread_mutex_lock(&types_lock);
	for (struct malloc_type *t = types_head; t; t = t->ks_next) {
		struct malloc_type_stats_sum s;
		slabkit_malloc_type_stats(t, &s);
		struct sk_type_row row = {
			.name = t->ks_shortdesc, .in_use = s.allocs - s.frees,
			.mem_use = s.memalloced - s.memfreed, .high_use = s.memhigh,
			.requests = s.allocs, .frees = s.frees, .size_mask = s.size_mask,
		};
		fn(&row, arg);
	}
	pthread_mutex_unlock(&types_lock);
}

/* --- blocks --- */

static void **trailer_of(void *p, size_t raw)
{
	return (void **)((char *)p + raw - TYPE_TRAILER);
}

/* Allocate a block for `size` bytes and mark it with type.  *raw is the
 * block size; *class_bit the vmstat -m size bit. */
static void *alloc_block(size_t size, struct malloc_type *type, int node, unsigned skf, size_t *raw,
			 int *class_bit, const void *site)
{
	const struct sk_backend_ops *heap = sk_state.bsd_heap;
	size_t need = size + TYPE_TRAILER;
	int idx = sk_bsd_index(need);
	void *p;

	if (idx >= 0 && sk_state.bsd_caches[idx]) {
		struct sk_cache *c = sk_state.bsd_caches[idx];
		p = sk_cache_alloc_node(c, node, skf, site);
		if (!p)
			return NULL;
		ck_pr_add_64(&c->ctr.slow_bytes_slack, c->object_size - size);
		*raw = c->object_size;
		*class_bit = idx;
	} else if (heap && need <= heap->kmalloc_max) {
		if (!(p = heap->kmalloc(need, node, skf | SK_ALLOC_MALLOC9)))
			return NULL;
		*raw = heap->ksize(p, sk_page_of(p));
		int bit = sk_bsd_index(*raw);
		*class_bit = bit >= 0 ? bit : LARGE_CLASS_BIT;
	} else {
		if (!(p = sk_large_alloc(size, node, skf)))
			return NULL;
		sk_page_of(p)->bk[0] = (uintptr_t)type;
		*raw = sk_large_size(sk_page_of(p));
		*class_bit = LARGE_CLASS_BIT;
		return p;
	}
	*trailer_of(p, *raw) = type;
	return p;
}

struct block_info {
	struct sk_page *pg;
	size_t raw;           /* block size */
	size_t usable;        /* what the caller may use */
	const struct malloc_type *type;
};

/* Describe a block made by alloc_block; false (reported) if it is not one. */
static bool block_info(const void *p, const char *call, struct block_info *bi)
{
	struct sk_page *pg = sk_page_of(p);

	bi->pg = pg;
	if (!pg) {
		sk_misuse("%s: pointer %p was not allocated by slabkit (or was already freed)", call, p);
		return false;
	}
	if ((pg->kind == SK_PAGE_LARGE && !pg->owner && !pg->bk[0]) ||
	    (pg->kind == SK_PAGE_HEAP && !sk_state.heap_ops->heap_is_malloc9(p, pg))) {
		sk_misuse("%s: pointer %p was not allocated by malloc(9) (a kmalloc block, or not a live "
			  "block); nothing was done", call, p);
		return false;
	}
	if (pg->kind == SK_PAGE_LARGE) {
		bi->raw = bi->usable = sk_large_size(pg);
		bi->type = (const struct malloc_type *)pg->bk[0];
	} else if ((pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->front == SK_FRONT_MALLOC) ||
		   pg->kind == SK_PAGE_HEAP) {
		bi->raw = sk_block_size(p, pg);
		bi->usable = bi->raw - TYPE_TRAILER;
		bi->type = *trailer_of((void *)p, bi->raw);
	} else {
		sk_misuse("%s: pointer %p was not allocated by malloc(9)%s%s", call, p,
			  pg->kind == SK_PAGE_SLAB ? "; it belongs to cache " : "",
			  pg->kind == SK_PAGE_SLAB ? ((struct sk_cache *)pg->owner)->name : "");
		return false;
	}
	if (pg->kind == SK_PAGE_LARGE && p != sk_page_addr(pg)) {
		sk_misuse("%s: pointer %p is inside a block at %p, not its start", call, p, sk_page_addr(pg));
		return false;
	}
	return true;
}

static const char *type_name(const struct malloc_type *t)
{
	const char *name = "(unknown)";
	pthread_mutex_lock(&types_lock);
	if (t && type_listed_locked(t))
		name = t->ks_shortdesc;
	pthread_mutex_unlock(&types_lock);
	return name;
}

static bool flags_ok(int flags, const char *call, const struct malloc_type *type)
{
	if (sk_unlikely(!type)) {
		sk_misuse("%s: NULL malloc type", call);
		return false;
	}
	if (sk_likely(((flags & M_NOWAIT) != 0) != ((flags & M_WAITOK) != 0)))
		return true;
	sk_misuse("%s(%s): flags 0x%x must include exactly one of M_WAITOK and M_NOWAIT", call,
		  type->ks_shortdesc, flags);
	return false;
}

/* Count a block of raw bytes (vmstat -m size bit class_bit, 63: large)
 * handed out for a request of size bytes. */
void sk_bsd_count_alloc(struct malloc_type *type, void *p, size_t size, size_t raw, int class_bit)
{
	struct mt_cpu_stats *s = type_stats(type);
	if (s) {
		s += sk_pcpu_current_cpu();
		ck_pr_inc_64(&s->numallocs);
		ck_pr_add_64(&s->memalloced, raw);
		if (!(sk_load(&s->size_mask) & (1ull << class_bit)))
			ck_pr_or_64(&s->size_mask, 1ull << class_bit);
	}
	sk_trace_alloc(SK_TRACE_API_BSD_MALLOC, p, size, 0);
}

static void *malloc_common(size_t size, struct malloc_type *type, int node, int flags, const char *call,
			   const void *site)
{
	size_t raw = 0;
	int class_bit = 0;
	void *p = NULL;

	if (!flags_ok(flags, call, type))
		return NULL;
	sk_ensure_init();
	if (size > ((size_t)1 << 30)) {
		if (flags & M_WAITOK)
			sk_misuse("%s(%s): M_WAITOK request of %zu bytes can never be satisfied", call,
				  type->ks_shortdesc, size);
		return NULL;
	}
	if (sk_unlikely(flags & (M_NODUMP | M_EXEC))) /* whole pages (core/bsd_malloc_pages.c) */
		return sk_bsd_malloc_pages(size, 0, type, node, flags, call, site);
	unsigned skf = (flags & M_WAITOK) ? SK_ALLOC_WAIT | SK_ALLOC_NOFAIL : 0;
	for (unsigned attempt = 0;; attempt++) {
		p = alloc_block(size, type, node, skf, &raw, &class_bit, site);
		if (p || !sk_wait_for_memory(attempt, (flags & M_WAITOK) ? SK_WAIT_NOFAIL : SK_WAIT_NONE))
			break;
	}
	if (!p) {
		if (flags & M_WAITOK)
			sk_misuse("%s(%s): M_WAITOK allocation of %zu bytes failed after draining every cache",
				  call, type->ks_shortdesc, size);
		return NULL;
	}
	/* Large blocks keep their type in the descriptor; the others in their last word. */
	size_t usable = class_bit == LARGE_CLASS_BIT ? raw : raw - TYPE_TRAILER;
	if (flags & M_ZERO)
		memset(p, 0, usable);
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF)) {
		/* Cache objects have their record (the class cache is tracked);
		 * large and heap blocks get one here.  Either way it names the type. */
		struct sk_page *pg = sk_page_of(p);
		if (pg->kind != SK_PAGE_SLAB)
			sk_track_alloc(p, NULL, pg->kind == SK_PAGE_LARGE ? SK_TRACK_LARGE : SK_TRACK_HEAP,
				       raw, site);
		sk_track_set_type(p, type);
	}
	sk_bsd_count_alloc(type, p, size, raw, class_bit);
	return p;
}

SK_EXPORT void *bsd_malloc(size_t size, struct malloc_type *type, int flags)
{
	return malloc_common(size, type, SK_NODE_ANY, flags, "bsd_malloc", SK_CALLER());
}

SK_EXPORT void *bsd_mallocarray(size_t nmemb, size_t size, struct malloc_type *type, int flags)
{
	size_t bytes;
	if (__builtin_mul_overflow(nmemb, size, &bytes)) {
		sk_errorf("slabkit: bsd_mallocarray(%s): %zu * %zu bytes overflows",
			  type ? type->ks_shortdesc : "(null)", nmemb, size);
		return NULL;
	}
	return malloc_common(bytes, type, SK_NODE_ANY, flags, "bsd_mallocarray", SK_CALLER());
}

/* --- domainsets --- */

enum ds_policy { DS_RR, DS_FT, DS_PREFER, DS_FIXED };
struct domainset {
	enum ds_policy policy;
	int domain;
};

static const struct domainset ds_rr = { DS_RR, -1 };
static const struct domainset ds_ft = { DS_FT, -1 };
static struct domainset ds_prefer[SK_MAX_NODES], ds_fixed[SK_MAX_NODES];
static unsigned ds_rr_cursor; /* Synchronization: atomic increment */

SK_EXPORT const struct domainset *slabkit_domainset_rr(void) { return &ds_rr; }
SK_EXPORT const struct domainset *slabkit_domainset_ft(void) { return &ds_ft; }

static const struct domainset *ds_for(struct domainset *table, enum ds_policy policy, int domain)
{
	if (domain < 0 || domain >= SK_MAX_NODES)
		return NULL;
	table[domain].policy = policy;
	table[domain].domain = domain;
	return &table[domain];
}

SK_EXPORT const struct domainset *slabkit_domainset_prefer(int d) { return ds_for(ds_prefer, DS_PREFER, d); }
SK_EXPORT const struct domainset *slabkit_domainset_fixed(int d) { return ds_for(ds_fixed, DS_FIXED, d); }

SK_EXPORT void *bsd_malloc_domainset(size_t size, struct malloc_type *type, const struct domainset *ds,
				     int flags)
{
	sk_ensure_init();
	if (!ds) {
		sk_misuse("bsd_malloc_domainset(%s): NULL domainset", type ? type->ks_shortdesc : "(null)");
		return NULL;
	}
	switch (ds->policy) {
	case DS_FT:
		return malloc_common(size, type, SK_NODE_ANY, flags, "bsd_malloc_domainset", SK_CALLER());
	case DS_RR: {
		int node = (int)(ck_pr_faa_32(&ds_rr_cursor, 1) % sk_state.nodes);
		return malloc_common(size, type, node, flags, "bsd_malloc_domainset", SK_CALLER());
	}
	case DS_PREFER:
	case DS_FIXED:
		if ((unsigned)ds->domain >= sk_state.nodes) {
			sk_errorf("slabkit: bsd_malloc_domainset: domain %d does not exist (%u domains)",
				  ds->domain, sk_state.nodes);
			return NULL;
		}
		void *p = malloc_common(size, type, ds->domain, ds->policy == DS_PREFER ? (flags & ~M_WAITOK) | M_NOWAIT : flags,
					"bsd_malloc_domainset", SK_CALLER());
		if (!p && ds->policy == DS_PREFER)
			p = malloc_common(size, type, SK_NODE_ANY, flags, "bsd_malloc_domainset", SK_CALLER());
		return p;
	}
	return NULL;
}

/* --- free and friends --- */

static void free_common(void *addr, struct malloc_type *type, const char *call, bool zero)
{
	struct block_info bi;

	if (!addr)
		return;
	if (!block_info(addr, call, &bi))
		return;
	if (sk_unlikely(bi.type != type)) {
		sk_misuse("%s: pointer %p was allocated with type %s, freed with type %s", call, addr,
			  type_name(bi.type), type ? type->ks_shortdesc : "(null)");
		return;
	}
	sk_trace_free(SK_TRACE_API_BSD_MALLOC, addr);
	if (zero) {
		memset(addr, 0, bi.usable);
		__asm__ volatile("" ::"r"(addr) : "memory");
	}
	struct mt_cpu_stats *s = type_stats(type);
	if (s) {
		s += sk_pcpu_current_cpu();
		ck_pr_inc_64(&s->numfrees);
		ck_pr_add_64(&s->memfreed, bi.raw);
	}
	struct sk_page *pg = bi.pg;
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF) && pg->kind != SK_PAGE_SLAB)
		sk_track_free(addr); /* cache objects: the cache's slow path */
	if (pg->kind == SK_PAGE_LARGE) {
		pg->bk[0] = 0;
		sk_large_free(addr, pg);
	} else if (pg->kind == SK_PAGE_HEAP) {
		*trailer_of(addr, bi.raw) = NULL;
		sk_state.heap_ops->kfree(addr, pg);
	} else {
		*trailer_of(addr, bi.raw) = NULL; /* a second free no longer matches the type */
		sk_cache_free(pg->owner, addr, pg);
	}
}

SK_EXPORT void bsd_free(void *addr, struct malloc_type *type)
{
	free_common(addr, type, "bsd_free", false);
}

SK_EXPORT void bsd_zfree(void *addr, struct malloc_type *type)
{
	free_common(addr, type, "bsd_zfree", true);
}

SK_EXPORT size_t bsd_malloc_usable_size(const void *addr)
{
	struct block_info bi;
	if (!addr || !block_info(addr, "bsd_malloc_usable_size", &bi))
		return 0;
	return bi.usable;
}

static void *realloc_common(void *addr, size_t size, struct malloc_type *type, int flags, const char *call,
			    bool free_on_failure, const void *site)
{
	struct block_info bi;

	if (!flags_ok(flags, call, type))
		return NULL;
	if (!addr)
		return malloc_common(size, type, SK_NODE_ANY, flags, call, site);
	if (!block_info(addr, call, &bi))
		return NULL;
	if (bi.type != type) {
		sk_misuse("%s: pointer %p was allocated with type %s, reallocated with type %s", call, addr,
			  type_name(bi.type), type->ks_shortdesc);
		return NULL;
	}
	/* Keep the block while the new size fits and is more than half of it. */
	if (size <= bi.usable && size > bi.usable / 2)
		return addr;
	void *p = malloc_common(size, type, SK_NODE_ANY, flags, call, site);
	if (!p) {
		if (free_on_failure)
			bsd_free(addr, type);
		return NULL;
	}
	memcpy(p, addr, SK_MIN(size, bi.usable));
	bsd_free(addr, type);
	return p;
}

SK_EXPORT void *bsd_realloc(void *addr, size_t size, struct malloc_type *type, int flags)
{
	return realloc_common(addr, size, type, flags, "bsd_realloc", false, SK_CALLER());
}

SK_EXPORT void *bsd_reallocf(void *addr, size_t size, struct malloc_type *type, int flags)
{
	return realloc_common(addr, size, type, flags, "bsd_reallocf", true, SK_CALLER());
}
