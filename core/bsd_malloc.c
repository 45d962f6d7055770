/*
 * The FreeBSD malloc(9) front end: malloc types with per-CPU statistics
 * over the kmemzones size classes (malloc-16 .. malloc-65536, with 384),
 * the backend's heap, or the page path above 64 KiB.
 *
 * A request of n bytes takes the class of n, as FreeBSD's kmemzones do.
 * Checking the type on free is a consistency check of the debug option
 * (SLABKIT_DEBUG containing F, read at slabkit_init): then class and heap
 * blocks keep the type pointer in their last word (a request of n bytes
 * takes the class of n + 8) and bsd_free() with the wrong type is caught.
 * Large blocks always keep their type in their page descriptor, which
 * costs nothing, and are always checked.  malloc_usable_size() reports what
 * is left for the caller.
 *
 * Statistics (FreeBSD's per-CPU malloc_type_stats): per CPU, one count of
 * allocations and one of frees per size class, with no locked instruction;
 * bytes and the classes used follow from them.  Blocks outside the classes
 * (the page path, a backend heap) are counted with atomic adds on their
 * slow paths.
 *
 * bsd_malloc and bsd_free are leaves on their fast path, as kmalloc is: a
 * class-sized pop or push on the CPU slot whose restartable sequence also
 * bumps the type's counter (sk_pcpu_pop_counted_rseq: one sequence, as
 * FreeBSD does both in one critical section).
 *
 * Lock order: types_lock is a leaf (never held while allocating).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <slabkit/freebsd/malloc.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_guard.h"
#include "sk_sanitize.h"
#include "sk_trace.h"

#define TYPE_TRAILER sk_bsd_type_trailer
#define LARGE_CLASS_BIT 63

/* 8 while the type check is on (SLABKIT_DEBUG with F), else 0.  Set by
 * slabkit_init, fixed while any block lives. */
size_t sk_bsd_type_trailer;

/* One CPU's counters of one type: class blocks allocated and freed, per
 * class, in 16-byte pairs (the counted fast paths tell an allocation
 * counter from a free counter by bit 3 of its address: SK_PCPU_*_PHASE).
 * Synchronization: the CPU's restartable sequence (or atomic adds in lock
 * mode); readers sum all CPUs with plain loads. */
struct mt_cpu_stats {
	struct {
		uint64_t allocs, frees;
	} cls[SK_BSD_CLASSES] __attribute__((aligned(16)));
};
_Static_assert(offsetof(struct mt_cpu_stats, cls[1].allocs) % 16 == SK_PCPU_ALLOC_PHASE, "allocation counters' phase");
_Static_assert(offsetof(struct mt_cpu_stats, cls[1].frees) % 16 == SK_PCPU_FREE_PHASE, "free counters' phase");

_Static_assert(sizeof(struct mt_cpu_stats) <= SK_PCPU_COUNTERS_STRIDE, "one CPU's counters fit the stride");

/* type->ks_handle: this header, then CPU n's struct mt_cpu_stats at
 * MT_CPU_BASE + n * SK_PCPU_COUNTERS_STRIDE. */
struct mt_stats {
	/* Blocks outside the classes: bytes are their sizes (whole pages, or
	 * what the heap gave).  Synchronization: ck_pr atomics. */
	uint64_t other_allocs, other_frees, other_alloced, other_freed, other_mask;
	uint64_t memhigh;  /* the type's MemUse high water, sampled on reads (ck_pr CAS) */
};

#define MT_CPU_BASE SK_ALIGN_UP(sizeof(struct mt_stats), 64)
_Static_assert(SK_PCPU_COUNTERS_STRIDE % 16 == 0 && MT_CPU_BASE % 16 == 0, "counters keep their phase");
/* CPU 0's copy of a counter (what the per-CPU sequences take).  The
 * handle is 64-byte aligned (metadata blocks are aligned to their class). */
#define MT_ALLOC_CTR(s, idx) ((char *)(s) + MT_CPU_BASE + (size_t)(idx) * 16)
#define MT_FREE_CTR(s, idx) ((char *)(s) + MT_CPU_BASE + (size_t)(idx) * 16 + 8)

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

/* Reports only: debug.c calls it holding a cache's debug lock, which no
 * path takes under types_lock. */
const char *sk_bsd_type_name(const void *type)
{
	const char *name = NULL;
	pthread_mutex_lock(&types_lock);
	if (type && type_listed_locked(type))
		name = ((const struct malloc_type *)type)->ks_shortdesc;
	pthread_mutex_unlock(&types_lock);
	return name;
}

void sk_bsd_classes_created(void)
{
	for (int i = 0; i < SK_BSD_CLASSES; i++)
		if (sk_state.bsd_caches[i])
			sk_state.bsd_caches[i]->bsd_fast_class = TYPE_TRAILER ? 0 : (uint8_t)(i + 1);
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

/* The header, then 64-byte aligned per-CPU counters. */
static size_t handle_bytes(void)
{
	return MT_CPU_BASE + (size_t)SK_PCPU_COUNTERS_STRIDE * sk_pcpu_nr;
}

static sk_noinline struct mt_stats *type_stats_create(struct malloc_type *type)
{
	struct mt_stats *s;

	pthread_mutex_lock(&types_lock);
	if (!type_listed_locked(type)) { /* used without MALLOC_DEFINE: register it now */
		type->ks_next = types_head;
		types_head = type;
	}
	if (!(s = type->ks_handle) && (s = sk_meta_zalloc(handle_bytes())) != NULL)
		sk_store_release(&type->ks_handle, (void *)s);
	pthread_mutex_unlock(&types_lock);
	return s;
}

static inline struct mt_stats *type_stats(struct malloc_type *type)
{
	struct mt_stats *s = sk_load_acquire((struct mt_stats **)&type->ks_handle);

	return sk_likely(s != NULL) ? s : type_stats_create(type);
}

static inline struct mt_cpu_stats *mt_cpu(const struct mt_stats *s, unsigned cpu)
{
	return (struct mt_cpu_stats *)(void *)((char *)s + MT_CPU_BASE + (size_t)cpu * SK_PCPU_COUNTERS_STRIDE);
}

SK_EXPORT void slabkit_malloc_type_stats(const struct malloc_type *type, struct malloc_type_stats_sum *out)
{
	memset(out, 0, sizeof(*out));
	const struct mt_stats *s = type ? sk_load_acquire((struct mt_stats **)&type->ks_handle) : NULL;
	if (!s || !sk_state.ready)
		return;
	for (int i = 0; i < SK_BSD_CLASSES; i++) {
		uint64_t a = 0, f = 0;
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
			a += sk_load(&mt_cpu(s, cpu)->cls[i].allocs);
			f += sk_load(&mt_cpu(s, cpu)->cls[i].frees);
		}
		out->allocs += a;
		out->frees += f;
		out->memalloced += a * sk_bsd_class_size[i];
		out->memfreed += f * sk_bsd_class_size[i];
		if (a)
			out->size_mask |= 1ull << i;
	}
	out->allocs += sk_load(&s->other_allocs);
	out->frees += sk_load(&s->other_frees);
	out->memalloced += sk_load(&s->other_alloced);
	out->memfreed += sk_load(&s->other_freed);
	out->size_mask |= sk_load(&s->other_mask);
	/* HighUse: sampled at every read (reports, the live view's snapshots),
	 * as a cache's high_water is at its slow paths and reads. */
	uint64_t use = out->memalloced > out->memfreed ? out->memalloced - out->memfreed : 0;
	uint64_t hw = sk_load(&s->memhigh);
	while (use > hw && !ck_pr_cas_64_value((uint64_t *)&s->memhigh, hw, use, &hw))
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
	size_t need = SK_MAX(size + TYPE_TRAILER, (size_t)1); /* malloc(0): the smallest class */
	int idx = sk_bsd_index(need);
	void *p;

	if (idx >= 0 && sk_state.bsd_caches[idx]) {
		struct sk_cache *c = sk_state.bsd_caches[idx];
		sk_guard_alloc_type = type; /* SLABKIT_GUARD=type=...: the class picks by type */
		p = sk_cache_alloc_node(c, node, skf, site);
		sk_guard_alloc_type = NULL;
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
		sk_large_words(sk_page_of(p))->lw_type = (uintptr_t)type;
		*raw = sk_large_size(sk_page_of(p));
		*class_bit = LARGE_CLASS_BIT;
		return p;
	}
	if (TYPE_TRAILER)
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
		sk_free_misuse(call, NULL, SK_MISUSE_FOREIGN, p, "not allocated by slabkit, or already freed");
		return false;
	}
	if ((pg->kind == SK_PAGE_LARGE && (sk_large_origin(pg) != SK_LARGE_MALLOC || !sk_large_words(pg)->lw_type)) ||
	    (pg->kind == SK_PAGE_HEAP && !sk_state.heap_ops->heap_is_malloc9(p, pg))) {
		sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p,
			       "not allocated by malloc(9): a kmalloc block, or not a live block");
		return false;
	}
	if (pg->kind == SK_PAGE_LARGE) {
		bi->raw = bi->usable = sk_large_size(pg);
		if (sk_unlikely(sk_san_on)) /* the rest is closed (sk_sanitize.h) */
			bi->usable = sk_san_large_usable(pg);
		bi->type = (const struct malloc_type *)sk_large_words(pg)->lw_type;
	} else if ((pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->front == SK_FRONT_MALLOC) ||
		   pg->kind == SK_PAGE_HEAP) {
		bi->raw = sk_block_size(p, pg);
		bi->usable = bi->raw ? bi->raw - TYPE_TRAILER : 0;
		/* NULL: not recorded (the type check is off), or not a block */
		bi->type = TYPE_TRAILER && bi->raw ? *trailer_of((void *)p, bi->raw) : NULL;
	} else {
		sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p, "not allocated by malloc(9)%s%s",
			       pg->kind == SK_PAGE_SLAB ? "; it belongs to cache " : "",
			       pg->kind == SK_PAGE_SLAB ? ((struct sk_cache *)pg->owner)->name : "");
		return false;
	}
	if ((pg->kind == SK_PAGE_LARGE && p != sk_page_addr(pg)) || (pg->kind == SK_PAGE_SLAB && !bi->raw)) {
		sk_free_misuse(call, NULL, SK_MISUSE_INTERIOR, p, "inside a block at %p, not its start", sk_page_addr(pg));
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

static sk_cold bool wait_flags_refused(int flags, const char *call, const char *what)
{
	sk_misuse("%s(%s): flags 0x%x must include exactly one of M_WAITOK and M_NOWAIT", call, what,
		  flags);
	return false;
}

static sk_cold bool null_type_refused(const char *call)
{
	sk_misuse("%s: NULL malloc type", call);
	return false;
}

/* Inline here: malloc_common checks the flags on every bsd_malloc. */
static sk_always_inline bool wait_flags_ok(int flags, const char *call, const char *what)
{
	if (sk_likely(((flags & M_NOWAIT) != 0) != ((flags & M_WAITOK) != 0)))
		return true;
	return wait_flags_refused(flags, call, what);
}

static sk_always_inline bool bsd_flags_ok(int flags, const char *call, const struct malloc_type *type)
{
	if (sk_unlikely(!type))
		return null_type_refused(call);
	return wait_flags_ok(flags, call, type->ks_shortdesc);
}

bool sk_bsd_wait_flags_ok(int flags, const char *call, const char *what)
{
	return wait_flags_ok(flags, call, what);
}

bool sk_bsd_flags_ok(int flags, const char *call, const struct malloc_type *type)
{
	return bsd_flags_ok(flags, call, type);
}

bool sk_bsd_wait_for_memory(unsigned attempt, int flags)
{
	return sk_wait_for_memory(attempt, (flags & M_WAITOK) ? SK_WAIT_NOFAIL : SK_WAIT_NONE);
}

void *sk_bsd_alloc_failed(size_t size, const struct malloc_type *type, int flags, const char *call)
{
	if (flags & M_WAITOK)
		sk_fatal("%s(%s): M_WAITOK allocation of %zu bytes failed after draining every cache", call,
			 type->ks_shortdesc, size);
	return NULL;
}

/* Count a block outside the classes, of raw bytes (vmstat -m size bit
 * class_bit, 63: large), handed out for a request of size bytes. */
void sk_bsd_count_alloc(struct malloc_type *type, void *p, size_t size, size_t raw, int class_bit)
{
	struct mt_stats *s = type_stats(type);
	if (s) {
		ck_pr_inc_64(&s->other_allocs);
		ck_pr_add_64(&s->other_alloced, raw);
		if (!(sk_load(&s->other_mask) & (1ull << class_bit)))
			ck_pr_or_64(&s->other_mask, 1ull << class_bit);
	}
	sk_trace_alloc(SK_TRACE_API_BSD_MALLOC, p, size, 0);
}

/* Count a block of class idx (from the class cache). */
static void count_class_alloc(struct malloc_type *type, void *p, size_t size, int idx)
{
	struct mt_stats *s = type_stats(type);
	if (s)
		sk_pcpu_counter_inc(MT_ALLOC_CTR(s, idx));
	sk_trace_alloc(SK_TRACE_API_BSD_MALLOC, p, size, 0);
}

static void *malloc_common(size_t size, struct malloc_type *type, int node, int flags, const char *call,
			   const void *site)
{
	size_t raw = 0;
	int class_bit = 0;
	void *p = NULL;

	if (!bsd_flags_ok(flags, call, type))
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
	/* MALLOC_MAKE_FAILURES: injected failures of M_NOWAIT requests. */
	if (sk_unlikely(sk_fail_on) && sk_fail_should(NULL, type->ks_shortdesc, skf))
		return NULL;
	for (unsigned attempt = 0;; attempt++) {
		p = alloc_block(size, type, node, skf, &raw, &class_bit, site);
		if (p || !sk_bsd_wait_for_memory(attempt, flags))
			break;
	}
	if (!p)
		return sk_bsd_alloc_failed(size, type, flags, call);
	/* Large blocks keep their type in the descriptor; the others in their
	 * last word while the type check is on. */
	struct sk_page *pg = sk_page_of(p);
	size_t usable = pg->kind == SK_PAGE_LARGE ? raw : raw - TYPE_TRAILER;
	if (flags & M_ZERO)
		memset(p, 0, usable);
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF)) {
		/* Cache objects have their record (the class cache is tracked);
		 * large and heap blocks get one here.  Either way it names the type. */
		if (pg->kind != SK_PAGE_SLAB)
			sk_track_alloc(p, NULL, pg->kind == SK_PAGE_LARGE ? SK_TRACK_LARGE : SK_TRACK_HEAP,
				       raw, site);
		sk_track_set_type(p, type);
	}
	if (pg->kind == SK_PAGE_SLAB)
		count_class_alloc(type, p, size, class_bit);
	else
		sk_bsd_count_alloc(type, p, size, raw, class_bit);
	if (pg->kind == SK_PAGE_LARGE && sk_unlikely(sk_san_on))
		sk_san_large_set_size(p, size); /* the rest of its last page closed */
	return p;
}

/* The flags a fast path serves: exactly one of M_NOWAIT and M_WAITOK, and
 * none of those that need more than a pop. */
#define FAST_FLAGS_MASK (M_NOWAIT | M_WAITOK | M_ZERO | M_NODUMP | M_EXEC)
static inline bool fast_flags(int flags)
{
	return (unsigned)(flags & FAST_FLAGS_MASK) - 1u < 2u; /* M_NOWAIT (1) or M_WAITOK (2) */
}

SK_EXPORT void *bsd_malloc(size_t size, struct malloc_type *type, int flags)
{
	struct mt_stats *s;
	struct sk_cache *c;
	unsigned idx;
	void *p;

	/* A class up to 1 KiB (one table load), this CPU's slot and the
	 * type's counter in one restartable sequence. */
	if (sk_likely(size - 1 < SK_BSD_TABLE_MAX) && sk_likely(fast_flags(flags)) && sk_likely(type != NULL) &&
	    sk_likely((s = sk_load((struct mt_stats **)&type->ks_handle)) != NULL) &&
	    sk_likely((c = sk_state.bsd_caches[idx = sk_bsd_class_of[(size - 1) >> 4]]) != NULL) &&
	    sk_likely(c->bsd_fast_class) && /* no type trailer to write */
	    sk_likely((p = sk_pcpu_pop_counted_rseq(c, MT_ALLOC_CTR(s, idx))) != NULL)) {
		if (sk_unlikely(size != c->object_size))
			sk_pcpu_add_slack(c, c->object_size - size);
		return p;
	}
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

/* A domain is the OS's node number (as FreeBSD's are the kernel's), mapped
 * to the provider's index when the set is used.  Linux numbers nodes below
 * MAX_NUMNODES (at most 1024): one preallocated set per number. */
#define DS_MAX_OS_NODES 1024
enum ds_policy { DS_RR, DS_FT, DS_PREFER, DS_FIXED };
struct domainset {
	enum ds_policy policy;
	int domain;
};

static const struct domainset ds_rr = { DS_RR, -1 };
static const struct domainset ds_ft = { DS_FT, -1 };
static struct domainset ds_prefer[DS_MAX_OS_NODES], ds_fixed[DS_MAX_OS_NODES];
static unsigned ds_rr_cursor; /* Synchronization: atomic increment */

SK_EXPORT const struct domainset *slabkit_domainset_rr(void) { return &ds_rr; }
SK_EXPORT const struct domainset *slabkit_domainset_ft(void) { return &ds_ft; }

static const struct domainset *ds_for(struct domainset *table, enum ds_policy policy, int domain)
{
	if (domain < 0 || domain >= DS_MAX_OS_NODES) {
		sk_errorf("slabkit: DOMAINSET_%s(%d): no such domain", policy == DS_PREFER ? "PREF" : "FIXED",
			  domain);
		return NULL;
	}
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
	case DS_FIXED: {
		int node = sk_node_from_user(ds->domain); /* the OS's number -> the provider's index */
		if (node < 0) {
			char list[128];
			sk_errorf("slabkit: bsd_malloc_domainset: domain %d does not exist (the OS's nodes: %s)",
				  ds->domain, sk_node_list(list, sizeof(list)));
			return NULL;
		}
		void *p = malloc_common(size, type, node, ds->policy == DS_PREFER ? (flags & ~M_WAITOK) | M_NOWAIT : flags,
					"bsd_malloc_domainset", SK_CALLER());
		if (!p && ds->policy == DS_PREFER)
			p = malloc_common(size, type, SK_NODE_ANY, flags, "bsd_malloc_domainset", SK_CALLER());
		return p;
	}
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
	if (sk_unlikely(!type)) {
		sk_misuse("%s: NULL malloc type", call);
		return;
	}
	if (sk_unlikely(bi.type != type) && (bi.type || bi.pg->kind == SK_PAGE_LARGE)) {
		sk_misuse("%s: pointer %p was allocated with type %s, freed with type %s", call, addr,
			  type_name(bi.type), type->ks_shortdesc);
		return;
	}
	sk_trace_free(SK_TRACE_API_BSD_MALLOC, addr);
	if (zero) {
		memset(addr, 0, bi.usable);
		__asm__ volatile("" ::"r"(addr) : "memory");
	}
	struct mt_stats *s = type_stats(type);
	struct sk_page *pg = bi.pg;
	/* Read once: after a cache object goes back, its slab may be freed and
	 * its page reused by another thread before this function returns. */
	const uint8_t kind = sk_load(&pg->kind);
	if (kind == SK_PAGE_SLAB) {
		/* Freed first: a free the cache refuses (a double free the
		 * always-on checks or the debug layer catch) is not counted. */
		if (TYPE_TRAILER)
			*trailer_of(addr, bi.raw) = NULL;
		sk_free_refused = false;
		sk_debug_free_type = type; /* INVARIANTS: the debug layer writes it into the item */
		sk_cache_free(pg->owner, addr, pg);
		sk_debug_free_type = NULL;
		if (sk_free_refused)
			return;
	}
	if (s && kind == SK_PAGE_SLAB) {
		sk_pcpu_counter_inc(MT_FREE_CTR(s, sk_bsd_index(bi.raw)));
	} else if (s) {
		ck_pr_inc_64(&s->other_frees);
		ck_pr_add_64(&s->other_freed, bi.raw);
	}
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF) && kind != SK_PAGE_SLAB)
		sk_track_free(addr); /* cache objects: the cache's slow path */
	if (kind == SK_PAGE_LARGE) {
		sk_large_words(pg)->lw_type = 0;
		sk_large_free(addr, pg);
	} else if (kind == SK_PAGE_HEAP) {
		if (TYPE_TRAILER) /* a second free no longer matches the type */
			*trailer_of(addr, bi.raw) = NULL;
		sk_state.heap_ops->kfree(addr, pg);
	}
}

SK_EXPORT void bsd_free(void *addr, struct malloc_type *type)
{
	/* A class block this CPU's slot takes back, counted in the same
	 * sequence.  Only the pages of a live slab have an owner, and only
	 * malloc(9)'s class caches have a bsd_fast_class: other APIs' objects
	 * go to free_common's report. */
	if (sk_likely(sk_addr_in_arena(addr)) && sk_likely(type != NULL)) {
		struct sk_page *raw = sk_page_of_raw(addr);
		struct sk_cache *c = raw->owner;
		struct mt_stats *s = sk_load((struct mt_stats **)&type->ks_handle);
		unsigned cls;
		if (sk_likely(c != NULL) && sk_likely((cls = c->bsd_fast_class) != 0) && sk_likely(s != NULL) &&
		    sk_likely(sk_free_on_stride(c, raw, addr)) &&
		    sk_likely(sk_pcpu_push_counted_rseq_page(c, addr, raw, MT_FREE_CTR(s, cls - 1))))
			return;
	}
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

	if (!bsd_flags_ok(flags, call, type))
		return NULL;
	if (!addr)
		return malloc_common(size, type, SK_NODE_ANY, flags, call, site);
	if (!block_info(addr, call, &bi))
		return NULL;
	if (bi.type != type && (bi.type || bi.pg->kind == SK_PAGE_LARGE)) {
		sk_misuse("%s: pointer %p was allocated with type %s, reallocated with type %s", call, addr,
			  type_name(bi.type), type->ks_shortdesc);
		return NULL;
	}
	/* Keep the block while the new size fits and is more than half of it. */
	if (size <= bi.usable && size > bi.usable / 2) {
		if (bi.pg->kind == SK_PAGE_LARGE && sk_unlikely(sk_san_on))
			sk_san_large_set_size(addr, size);
		return addr;
	}
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
