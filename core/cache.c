/*
 * Caches: creation and destruction, the slow paths around the backend,
 * construction hooks, statistics and the large (page) path.
 *
 * Lock order: registry_lock -> slot locks -> backend locks.
 * A cache is on the registry list from creation until destruction frees it;
 * the list is walked under registry_lock (tick, shrink-all, reports).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_guard.h"
#include "sk_sanitize.h"
#include "sk_trace.h"

#define SK_MAX_OBJECT_SIZE ((size_t)64 << 20)
/* kmalloc-8k is aligned to 8 KiB; kmem_cache_create callers are held to a page. */
#define SK_MAX_ALIGN ((size_t)8192)

static void registry_add(struct sk_cache *c)
{
	pthread_mutex_lock(&sk_state.registry_lock);
	c->prev = sk_state.last;
	if (sk_state.last)
		sk_state.last->next = c;
	else
		sk_state.first = c;
	sk_state.last = c;
	pthread_mutex_unlock(&sk_state.registry_lock);
}

static void registry_remove(struct sk_cache *c)
{
	pthread_mutex_lock(&sk_state.registry_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		sk_state.first = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		sk_state.last = c->prev;
	pthread_mutex_unlock(&sk_state.registry_lock);
}

/* Alignment as Linux computes it: at least 8; with HWCACHE_ALIGN the cache
 * line, halved while the object fits in half of it. */
static size_t effective_align(const struct sk_cache_params *p)
{
	size_t align = p->align ? p->align : 8;

	if (p->flags & SK_CACHE_HWCACHE_ALIGN) {
		size_t line = sk_state.cache_line;
		while (line > 8 && p->object_size <= line / 2)
			line /= 2;
		align = SK_MAX(align, line);
	}
	return SK_MAX(align, (size_t)8);
}

/*
 * The backend a thread chose for the caches and zones it creates next
 * (slabkit_create_backend); NULL: none.  Initial-exec TLS: no allocation on
 * first use, which matters where slabkit is the process's malloc.
 */
static __thread const struct sk_backend_ops *thread_create_backend
	__attribute__((tls_model("initial-exec")));

SK_EXPORT int slabkit_create_backend(const char *name)
{
	const struct sk_backend_ops *ops = NULL;

	sk_ensure_init();
	if (name && !(ops = sk_backend_find(name))) {
		sk_errorf("slabkit_create_backend: unknown or not compiled-in backend '%s'; compiled in: %s",
			  name, SLABKIT_COMPILED_BACKENDS);
		return -EINVAL;
	}
	thread_create_backend = ops;
	return 0;
}

/* Which backend a new cache goes to: the creator's explicit choice, the
 * thread's, the tunables' key for its name, else the process default. */
static const struct sk_backend_ops *backend_for(const struct sk_cache_params *p)
{
	const struct sk_backend_ops *ops = p->ops;

	if (!ops)
		ops = thread_create_backend;
	if (!ops)
		ops = sk_tune_backend(p->name);
	return ops ? ops : sk_state.ops;
}

struct sk_cache *sk_cache_create(const struct sk_cache_params *p)
{
	const struct sk_backend_ops *ops = backend_for(p);
	struct sk_cache *c;
	int err;

	if (!p->object_size || p->object_size > SK_MAX_OBJECT_SIZE) {
		sk_errorf("slabkit: cannot create cache %s: object size %zu is outside 1..%zu",
			  p->name, p->object_size, SK_MAX_OBJECT_SIZE);
		return NULL;
	}
	if (p->align && (!SK_IS_POW2(p->align) || p->align > SK_MAX_ALIGN)) {
		sk_errorf("slabkit: cannot create cache %s: alignment %zu is not a power of two <= %zu",
			  p->name, p->align, SK_MAX_ALIGN);
		return NULL;
	}
	if (sk_backend_activate(ops) != 0)
		return NULL;
	if (!(c = sk_meta_zalloc(sizeof(*c))))
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s", p->name);
	c->ops = ops;
	c->object_size = (uint32_t)p->object_size;
	c->align = (uint32_t)effective_align(p);
	c->flags = sk_debug_flags_for(p->name, p->flags) | sk_fail_flags_for(p->name) |
		   sk_guard_flags_for(p->name, p->flags);
	c->front = p->front;
	c->ctor = p->ctor;
	c->init = p->init;
	c->fini = p->fini;
	c->front_data = p->front_data;
	c->free_tag = (uint8_t)ops->free_tag;
	if (sk_cache_numa_setup(c) != 0) {
		sk_meta_free(c, sizeof(*c));
		return NULL;
	}
	c->magic = SK_CACHE_LIVE;
	c->use_freeptr_offset = p->use_freeptr_offset;
	c->freeptr_offset = p->freeptr_offset;
	if (c->flags & (SK_CACHE_TYPESAFE_BY_RCU | SK_CACHE_SMR))
		sk_rcu_start(); /* the worker exists before any free path needs it */

	if (sk_track_mode != SK_TRACK_OFF)
		c->flags |= SK_CACHE_STORE_USER; /* SLABKIT_LEAKS: every cache */
	if (sk_track_cache(c) && !sk_track_ready()) {
		sk_errorf("slabkit: cannot create cache %s: no memory for its allocation records", c->name);
		sk_meta_free(c, sizeof(*c));
		return NULL;
	}
	/* A debug cache: the backend lays out core's debug object (red zones
	 * around the object), and its fast path stays off (sk_debug.h). */
	bool debug = (c->flags & SK_CACHE_DEBUG_ACTIVE) != 0;
	if (debug)
		c->object_size = (uint32_t)sk_debug_stride_request(c);
	err = ops->cache_create(c);
	c->object_size = (uint32_t)p->object_size;
	if (!err && debug && (err = sk_debug_attach(c)) != 0)
		ops->cache_destroy(c);
	if (err) {
		sk_errorf("slabkit: backend %s cannot create cache %s (size %zu, align %u%s): %s",
			  ops->name, c->name, p->object_size, c->align, debug ? ", debug" : "",
			  strerror(-err));
		sk_meta_free(c, sizeof(*c));
		return NULL;
	}
	if (ops->caps & SK_CAP_STRIDE)
		c->stride_magic = UINT64_MAX / c->size + 1;
	if (ops->pcpu_kind != SK_PCPU_NONE && !(c->flags & SK_CACHE_NOBUCKET)) {
		if (sk_pcpu_create(c) != 0) {
			ops->cache_destroy(c);
			sk_debug_detach(c);
			sk_meta_free(c, sizeof(*c));
			return NULL;
		}
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
			if (ops->pcpu_init)
				ops->pcpu_init(c, sk_pcpu_slot(c, cpu), cpu);
			else if (c->free_tag == SK_TAG_NODE)
				sk_pcpu_slot(c, cpu)->tag = (uintptr_t)sk_numa_cpu_node(cpu) + 1;
		/* Publish the kind last: until now the fast paths saw NONE. */
		c->pcpu_kind = (uint8_t)ops->pcpu_kind;
		if (!sk_pcpu_use_rseq)
			c->fast = SK_FAST_LOCKED;
		else if (c->pcpu_kind == SK_PCPU_LIST && c->free_tag == SK_TAG_SLAB)
			c->fast = SK_FAST_RSEQ_LIST_SLAB;
		else if (c->pcpu_kind == SK_PCPU_ARRAY && c->free_tag == SK_TAG_NODE)
			c->fast = SK_FAST_RSEQ_ARRAY_NODE;
		else
			c->fast = SK_FAST_LOCKED;
		/* Tracked: no fast path takes it; the slow path records. */
		if (sk_track_cache(c))
			c->fast = SK_FAST_TRACKED;
		/* While a trace is recorded, every call takes its front end's
		 * out-of-line path, where it is recorded (sk_trace.h). */
		if (sk_load(&sk_trace_on) || c->debug)
			c->fast = SK_FAST_NONE;
	}
	sk_apply_tunables(c);
	registry_add(c);
	return c;
}

uint64_t sk_cache_in_use(struct sk_cache *c)
{
	struct sk_pcpu_sums s;
	sk_pcpu_sum(c, &s);
	uint64_t allocs = s.allocs + sk_load(&c->ctr.slow_allocs);
	uint64_t frees = s.frees + sk_load(&c->ctr.slow_frees);
	uint64_t in_use = allocs > frees ? allocs - frees : 0;
	uint64_t hw = sk_load(&c->ctr.high_water);
	while (in_use > hw && !ck_pr_cas_64_value(&c->ctr.high_water, hw, in_use, &hw))
		;
	return in_use;
}

void sk_cache_counts_floor(struct sk_cache *c, uint64_t *allocs, uint64_t *frees)
{
	struct sk_pcpu_sums first, second;
	sk_pcpu_sum(c, &first);
	*allocs = first.allocs + sk_load_acquire(&c->ctr.slow_allocs);
	sk_fence_acquire(); /* every allocation count read before any free count */
	uint64_t slow_frees = sk_load_acquire(&c->ctr.slow_frees);
	sk_pcpu_sum(c, &second);
	*frees = second.frees + slow_frees;
}

uint64_t sk_cache_shrink(struct sk_cache *c, enum sk_shrink_level level)
{
	if (c->debug && level != SK_SHRINK_TRIM)
		sk_debug_flush(c);
	return c->ops->shrink(c, level);
}

void sk_shrink_every_cache(enum sk_shrink_level level)
{
	if (!sk_load_acquire(&sk_state.ready))
		return;
	pthread_mutex_lock(&sk_state.registry_lock);
	for (struct sk_cache *c = sk_state.first; c; c = c->next)
		sk_cache_shrink(c, level);
	pthread_mutex_unlock(&sk_state.registry_lock);
	if (level != SK_SHRINK_TRIM)
		sk_pages_release_free();
}

/* Wait until no RCU work of c is queued (kfree_rcu of its objects, its
 * TYPESAFE_BY_RCU slab pages, SMR batches): rcu_barrier until none. */
static void wait_rcu_pending(struct sk_cache *c)
{
	while (sk_load(&c->rcu_pending))
		sk_rcu_barrier();
}

uint64_t sk_cache_destroy(struct sk_cache *c, const char *caller)
{
	wait_rcu_pending(c); /* objects freed by kfree_rcu are freed first */
	sk_cache_shrink(c, SK_SHRINK_DRAIN_CPU);
	uint64_t live = sk_cache_in_use(c);

	if (live) {
		/* The kernel's wording; the cache is leaked on purpose, as there. */
		sk_errorf("BUG %s: Objects remaining on __kmem_cache_shutdown(): %llu objects, %llu bytes",
			  c->name, (unsigned long long)live, (unsigned long long)live * c->size);
		sk_errorf("%s %s: Slab cache still has objects when called from %s",
			  c->front == SK_FRONT_UMA ? "uma_zdestroy" : "kmem_cache_destroy", c->name,
			  caller);
		if (sk_track_cache(c)) {
			char what[SLABKIT_NAME_MAX + 16];
			snprintf(what, sizeof(what), "cache %s", c->name);
			sk_track_report(what, c, SK_TRACK_ANY);
		}
		if (c->debug)
			sk_debug_report_leaks(c);
		c->dead = true;
		/* Allocations now miss the fast path and are refused; frees
		 * of the remaining objects still work through the backend. */
		c->fast = SK_FAST_NONE;
		return live;
	}
	/* No record of c is left: every free of a tracked cache forgot its
	 * object, and no object is live. */
	registry_remove(c);
	c->ops->cache_destroy(c);
	sk_pcpu_destroy(c);
	sk_debug_detach(c);
	wait_rcu_pending(c); /* TYPESAFE_BY_RCU pages still name c as their owner */
	c->magic = SK_CACHE_DESTROYED;
	sk_meta_free_quarantined(c, sizeof(*c));
	return 0;
}

/* --- slow paths --- */

/* This CPU's slot, also for a tracked cache (whose fast path always misses). */
static void *slot_pop(struct sk_cache *c)
{
	return sk_unlikely(c->fast == SK_FAST_TRACKED) ? sk_track_pcpu_pop(c) : sk_pcpu_pop(c);
}

static bool slot_push(struct sk_cache *c, void *obj, struct sk_page *pg)
{
	return sk_unlikely(c->fast == SK_FAST_TRACKED) ? sk_track_pcpu_push(c, obj, pg)
						       : sk_pcpu_push(c, obj, pg);
}

/* The backend's allocation, through the debug layer for a debug cache. */
static void *backend_alloc(struct sk_cache *c, int node, unsigned flags)
{
	if (sk_unlikely(c->debug != NULL))
		return sk_debug_alloc(c, node, flags);
	return c->ops->alloc(c, node, flags);
}

static void *alloc_untracked(struct sk_cache *c, int node, unsigned flags)
{
	void *obj;

	/* The fast path also misses when its count field is full.  Never for a
	 * debug cache (see sk_cache_alloc_slow). */
	if (node == SK_NODE_ANY && !c->debug && sk_pcpu_fold_if_full(c) && (obj = slot_pop(c)))
		return obj;
	if (node == SK_NODE_ANY && sk_unlikely(c->numa_steer)) {
		/* A preferred, bound or interleaved cache: the policy names the
		 * node; only bind refuses to fall back to any other. */
		obj = backend_alloc(c, sk_cache_steer_node(c), flags);
		if (!obj && c->numa_policy.kind != SK_POLICY_BIND)
			obj = backend_alloc(c, SK_NODE_ANY, flags);
	} else {
		obj = backend_alloc(c, node, flags);
	}

	if (sk_unlikely(!obj)) {
		ck_pr_inc_64(&c->ctr.failures);
		return NULL;
	}
	/* Sample the high-water mark once every sk_pcpu_nr (rounded up to a
	 * power of two) slow allocations: the sum reads every CPU's slot, so
	 * the slow path's share of it stays constant however many CPUs there
	 * are.  Reads (slabkit_cache_info, reports) sample it too. */
	uint64_t slow = ck_pr_faa_64(&c->ctr.slow_allocs, 1);
	if ((slow & sk_pcpu_sample_mask) == 0)
		sk_cache_in_use(c);
	return obj;
}

sk_noinline void *sk_cache_alloc_slow(struct sk_cache *c, int node, unsigned flags, const void *site)
{
	if (sk_likely(!sk_track_cache(c)))
		return alloc_untracked(c, node, flags);
	/* A debug cache's objects come only from the debug layer: the CPU slot
	 * may hold objects it never saw (SLUB's CPU freelist after a refill). */
	void *obj = node == SK_NODE_ANY && !c->debug ? sk_track_pcpu_pop(c) : NULL;
	if (!obj)
		obj = alloc_untracked(c, node, flags);
	if (obj)
		sk_track_alloc(obj, c, SK_TRACK_OBJECT, c->object_size, site);
	return obj;
}

void *sk_cache_alloc_node(struct sk_cache *c, int node, unsigned flags, const void *site)
{
	if (node == SK_NODE_ANY) {
		void *obj = sk_pcpu_pop(c);
		return obj ? obj : sk_cache_alloc_slow(c, SK_NODE_ANY, flags, site);
	}
	/* Only a CPU of that node can have the object; a thread that migrates
	 * between the check and the pop puts the object back (counted twice). */
	void *obj = sk_numa_cpu_node(sk_pcpu_current_cpu()) == node ? sk_pcpu_pop(c) : NULL;
	if (obj) {
		struct sk_page *pg = sk_page_of(obj);
		if (pg->node == (unsigned)node)
			return obj;
		sk_cache_free(c, obj, pg); /* another node's: put it back */
	}
	return sk_cache_alloc_slow(c, node, flags, site);
}

static sk_cold bool report_off_stride(struct sk_cache *c, const void *obj, struct sk_page *pg)
{
	uint32_t off = (uint32_t)(uintptr_t)obj - pg->obj_base;
	sk_free_misuse(NULL, c, SK_MISUSE_INTERIOR, obj, "not the start of an object: %u bytes into the object at %p",
		       off % c->size, (const void *)((const char *)obj - off % c->size));
	return false;
}

bool sk_cache_free_check(struct sk_cache *c, const void *obj, struct sk_page *pg)
{
	if (c->debug)
		return sk_debug_check_live(c, obj);
	if (sk_unlikely(!sk_free_on_stride(c, pg, obj)))
		return report_off_stride(c, obj, pg);
	if (sk_unlikely(sk_pcpu_is_first_free(c, obj))) {
		sk_free_misuse(NULL, c, SK_MISUSE_DOUBLE_FREE, obj,
			       "it is the first free object of this CPU's cache");
		return false;
	}
	return true;
}

/* The object this thread's sk_cache_free_slow is handing to ops->free
 * (NULL otherwise): a refusal of that object answers the caller's own
 * free, any other (an array or bucket flushed meanwhile) an earlier one. */
static __thread const void *freeing_now __attribute__((tls_model("initial-exec")));

sk_noinline void sk_cache_free_slow(struct sk_cache *c, void *obj, struct sk_page *pg)
{
	if (sk_unlikely(c->debug != NULL)) {
		if (!sk_debug_free(c, obj, pg)) {
			sk_free_refused = true;
			return;
		}
		if (sk_track_cache(c))
			sk_track_free(obj);
		ck_pr_inc_64(&c->ctr.slow_frees);
		return;
	}
	if (!sk_cache_free_check(c, obj, pg)) {
		sk_free_refused = true;
		return;
	}
	if (sk_unlikely(sk_track_cache(c))) {
		sk_track_free(obj);
		if (c->fast == SK_FAST_TRACKED && sk_track_pcpu_push(c, obj, pg))
			return;
	}
	if (sk_pcpu_fold_if_full(c) && slot_push(c, obj, pg))
		return;
	ck_pr_inc_64(&c->ctr.slow_frees);
	freeing_now = obj;
	c->ops->free(c, obj, pg);
	freeing_now = NULL;
}

/* --- what core gives backends --- */

__thread bool sk_free_refused __attribute__((tls_model("initial-exec")));

void sk_cache_free_refused(struct sk_cache *c, const void *obj)
{
	ck_pr_dec_64(&c->ctr.slow_frees);
	if (obj == freeing_now)
		sk_free_refused = true;
}

void *sk_slab_pages_alloc(struct sk_cache *c, int node, unsigned order)
{
	void *addr = sk_pages_alloc_policy(&c->numa_policy, node, order, SK_PAGE_SLAB, c);

	if (addr) {
		sk_slab_set_first_object(sk_page_of_raw(addr), addr);
		if (c->flags & SK_CACHE_ZINIT)
			memset(addr, 0, SK_PAGE_SIZE << order);
		ck_pr_inc_64(&c->ctr.slabs);
		ck_pr_add_64(&c->ctr.pages, (uint64_t)1 << order);
	}
	return addr;
}

/* SLAB_TYPESAFE_BY_RCU: the pages stay the cache's (kind SLAB, owner c)
 * until a grace period has passed, so a reader that found an object in an
 * RCU read-side section reads memory of the cache's type, never unmapped
 * or another cache's memory.  The first two owner words of the head
 * descriptor (unused by the backend once it gave the slab up) carry
 * liburcu's head meanwhile. */
static void slab_pages_free_rcu(void *head)
{
	struct sk_page *pg = sk_page_of_words(head, 0);
	struct sk_cache *c = pg->owner;

	sk_pages_free(sk_page_addr(pg));
	ck_pr_dec_64(&c->rcu_pending);
}

void sk_slab_pages_free(struct sk_cache *c, void *addr)
{
	struct sk_page *pg = sk_page_of(addr);

	ck_pr_dec_64(&c->ctr.slabs);
	ck_pr_sub_64(&c->ctr.pages, pg->npages);
	if (sk_unlikely(c->flags & SK_CACHE_SANITIZE)) /* its unused bytes were closed (sk_slab_unused) */
		sk_san_open(addr, (size_t)pg->npages << SK_PAGE_SHIFT);
	if (c->flags & SK_CACHE_TYPESAFE_BY_RCU) {
		ck_pr_inc_64(&c->rcu_pending);
		sk_rcu_call(sk_page_words(pg), slab_pages_free_rcu);
		return;
	}
	sk_pages_free(addr);
}

void *sk_heap_pages_alloc(int node, unsigned order)
{
	return sk_pages_alloc(node, order, SK_PAGE_HEAP, NULL);
}

void sk_heap_pages_free(void *addr)
{
	sk_pages_free(addr);
}

int sk_cache_construct(struct sk_cache *c, void *obj, unsigned flags)
{
	if (c->debug) /* backends hand core's debug objects: the user's part */
		obj = sk_debug_user(c, obj);
	if (c->ctor)
		c->ctor(obj);
	if (c->init)
		return c->init(obj, (int)c->object_size, (flags & SK_ALLOC_WAIT) ? 0x2 : 0x1);
	return 0;
}

void sk_cache_destruct(struct sk_cache *c, void *obj)
{
	if (c->debug)
		obj = sk_debug_user(c, obj);
	if (c->fini)
		c->fini(obj, (int)c->object_size);
}

int sk_construct_each(char *first, size_t stride, unsigned count, int (*construct)(void *ctx, void *obj),
		      void (*destruct)(void *ctx, void *obj), void *ctx)
{
	for (unsigned i = 0; i < count; i++) {
		if (construct(ctx, first + (size_t)i * stride) != 0) {
			if (destruct)
				sk_destruct_each(first, stride, i, destruct, ctx);
			return -1;
		}
	}
	return 0;
}

void sk_destruct_each(char *first, size_t stride, unsigned count, void (*destruct)(void *ctx, void *obj),
		      void *ctx)
{
	for (unsigned i = count; i-- > 0;)
		destruct(ctx, first + (size_t)i * stride);
}

struct cache_construct_ctx {
	struct sk_cache *c;
	unsigned flags;
};

static int cache_construct_one(void *ctx, void *obj)
{
	const struct cache_construct_ctx *x = ctx;
	return sk_cache_construct(x->c, obj, x->flags);
}

static void cache_destruct_one(void *ctx, void *obj)
{
	sk_cache_destruct(((struct cache_construct_ctx *)ctx)->c, obj);
}

int sk_slab_construct(struct sk_cache *c, char *first, size_t stride, unsigned count, unsigned flags)
{
	if (!sk_cache_has_construct(c))
		return 0;
	struct cache_construct_ctx ctx = { c, flags };
	return sk_construct_each(first, stride, count, cache_construct_one,
				 sk_cache_has_fini(c) ? cache_destruct_one : NULL, &ctx);
}

void sk_slab_destruct(struct sk_cache *c, char *first, size_t stride, unsigned count)
{
	if (!sk_cache_has_fini(c))
		return;
	struct cache_construct_ctx ctx = { c, 0 };
	sk_destruct_each(first, stride, count, cache_destruct_one, &ctx);
}

/* --- the page path --- */

void *sk_large_alloc(size_t size, int node, unsigned flags)
{
	size_t npages = (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
	void *p = NULL;

	if (size && npages <= ((size_t)1 << SK_MAX_ORDER))
		p = sk_pages_alloc_exact(node, npages, SK_PAGE_LARGE, NULL);
	if (!p) {
		ck_pr_inc_64(&sk_state.large.failures);
		return NULL;
	}
	sk_large_words(sk_page_of(p))->lw_type = 0; /* kmalloc blocks have no malloc(9) type */
	ck_pr_inc_64(&sk_state.large.allocs);
	ck_pr_add_64(&sk_state.large.pages, npages);
	ck_pr_add_64(&sk_state.large.bytes_requested, size);
	ck_pr_add_64(&sk_state.large.bytes_allocated, npages << SK_PAGE_SHIFT);
	return p;
}

void sk_large_free(void *p, struct sk_page *pg)
{
	ck_pr_inc_64(&sk_state.large.frees);
	ck_pr_sub_64(&sk_state.large.pages, pg->npages);
	ck_pr_add_64(&sk_state.large.bytes_freed, (uint64_t)pg->npages << SK_PAGE_SHIFT);
	if (sk_unlikely(sk_san_on))
		sk_san_large_open(p, pg);
	sk_pages_free(p);
}

size_t sk_block_size(const void *p, struct sk_page *pg)
{
	if (!pg)
		return 0;
	switch (pg->kind) {
	case SK_PAGE_SLAB: {
		struct sk_cache *c = pg->owner;
		if (c->debug ? !sk_debug_size(c, p) : !sk_free_on_stride(c, pg, p))
			return 0; /* inside an object, or not live: not a block */
		return c->object_size;
	}
	case SK_PAGE_LARGE: /* the sanitizer mode closes what was not asked for */
		return sk_unlikely(sk_san_on) ? sk_san_large_usable(pg) : sk_large_size(pg);
	case SK_PAGE_HEAP:
		return sk_state.heap_ops ? sk_state.heap_ops->ksize(p, pg) : 0;
	default:
		return 0;
	}
}

/* --- statistics --- */

static const char *front_name(enum sk_front f)
{
	switch (f) {
	case SK_FRONT_KMEM_CACHE: return "kmem_cache";
	case SK_FRONT_KMALLOC: return "kmalloc";
	case SK_FRONT_MALLOC: return "malloc";
	case SK_FRONT_UMA: return "uma";
	case SK_FRONT_LIBC: return "libc";
	}
	return "?";
}

void sk_cache_fill_info(struct sk_cache *c, struct slabkit_cache_info *out)
{
	struct sk_pcpu_sums s;
	struct sk_backend_cache_info b = { 0 };

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", c->name);
	out->front_end = front_name(c->front);
	out->backend = c->ops->name;
	out->object_size = c->object_size;
	out->size = c->size;
	out->align = c->align;
	sk_pcpu_sum(c, &s);
	out->fast_allocs = s.allocs;
	out->fast_frees = s.frees;
	out->slow_allocs = sk_load(&c->ctr.slow_allocs);
	out->slow_frees = sk_load(&c->ctr.slow_frees);
	out->allocs = out->fast_allocs + out->slow_allocs;
	out->frees = out->fast_frees + out->slow_frees;
	out->refills = sk_load(&c->ctr.refills);
	out->flushes = sk_load(&c->ctr.flushes);
	out->failures = sk_load(&c->ctr.failures);
	/* From the same sums as allocs and frees, so that one report agrees with
	 * itself while other threads allocate (the reads are racy by design). */
	out->in_use = out->allocs > out->frees ? out->allocs - out->frees : 0;
	uint64_t hw = sk_load(&c->ctr.high_water);
	while (out->in_use > hw && !ck_pr_cas_64_value(&c->ctr.high_water, hw, out->in_use, &hw))
		;
	out->high_water = sk_load(&c->ctr.high_water);
	out->bytes_allocated = out->allocs * c->object_size;
	/* Size classes count what callers asked for less than the class
	 * size (the slack), so that the common request of exactly a class
	 * size costs its fast path nothing; a fixed-size cache's callers
	 * always ask for the object size. */
	if (c->flags & SK_CACHE_SIZE_CLASS) {
		uint64_t slack = s.bytes_slack + sk_load(&c->ctr.slow_bytes_slack);
		/* (racy sums: never below zero) */
		out->bytes_requested = slack < out->bytes_allocated ? out->bytes_allocated - slack : 0;
	} else
		out->bytes_requested = out->bytes_allocated;
	out->slabs = sk_load(&c->ctr.slabs);
	out->pages = sk_load(&c->ctr.pages);
	c->ops->cache_info(c, &b);
	out->objects_per_slab = b.objects_per_slab;
	out->cached_free = b.cached_free;
	out->shared_free = b.shared_free;
	out->slab_free = b.slab_free;
	out->cpu_slabs = b.cpu_slabs;
	out->partial_slabs = b.partial_slabs;
	out->empty_slabs = b.empty_slabs;
	out->active_slabs = out->slabs > b.empty_slabs ? out->slabs - b.empty_slabs : 0;
	out->xdomain_frees = b.xdomain_counted ? (int64_t)b.xdomain_frees : -1;
	out->limit = b.limit;
	out->batchcount = b.batchcount;
	out->shared = b.shared;
	if (c->front == SK_FRONT_UMA)
		out->zone_max = sk_uma_keg_limit(c);
}

SK_EXPORT int slabkit_foreach_cache(int (*fn)(const struct slabkit_cache_info *, void *), void *arg)
{
	struct slabkit_cache_info info;
	int ret = 0;

	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	for (struct sk_cache *c = sk_state.first; c && !ret; c = c->next) {
		sk_cache_fill_info(c, &info);
		ret = fn(&info, arg);
	}
	pthread_mutex_unlock(&sk_state.registry_lock);
	return ret;
}

static struct sk_cache *find_cache_locked(const char *name)
{
	for (struct sk_cache *c = sk_state.first; c; c = c->next)
		if (!c->dead && !strcmp(c->name, name))
			return c;
	return NULL;
}

SK_EXPORT int slabkit_cache_info_by_name(const char *name, struct slabkit_cache_info *out)
{
	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	struct sk_cache *c = name ? find_cache_locked(name) : NULL;
	if (c)
		sk_cache_fill_info(c, out);
	pthread_mutex_unlock(&sk_state.registry_lock);
	return c ? 0 : -ENOENT;
}

SK_EXPORT int slabkit_cache_tune(const char *cache_name, const char *key, long value)
{
	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	struct sk_cache *c = cache_name ? find_cache_locked(cache_name) : NULL;
	int ret = !c ? -ENOENT : !c->ops->tune ? -EOPNOTSUPP : c->ops->tune(c, key, value);
	pthread_mutex_unlock(&sk_state.registry_lock);
	return ret;
}

SK_EXPORT void slabkit_stats(struct slabkit_stats *out)
{
	struct sk_numa_stats ns;

	memset(out, 0, sizeof(*out));
	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	for (struct sk_cache *c = sk_state.first; c; c = c->next) {
		out->slabs += sk_load(&c->ctr.slabs);
		out->slab_pages += sk_load(&c->ctr.pages);
	}
	pthread_mutex_unlock(&sk_state.registry_lock);
	out->large_allocs = sk_load(&sk_state.large.allocs) - sk_load(&sk_state.large.frees);
	out->large_pages = sk_load(&sk_state.large.pages);
	out->page_blocks = sk_load(&sk_state.pages.allocs) - sk_load(&sk_state.pages.frees);
	out->page_block_pages = sk_load(&sk_state.pages.pages);
	out->pcpu_area_bytes = sk_pcpu_area_bytes();
	sk_numa_stats(&ns);
	out->pages_reserved = ns.pages_reserved;
	out->pages_in_use = ns.pages_in_use;
	out->pages_free_dirty = ns.pages_free_dirty;
	out->pages_released = ns.pages_released;
	out->page_alloc_failures = ns.alloc_failures;
	out->nodes = sk_state.nodes;
	out->cpus = sk_pcpu_nr;
}

SK_EXPORT void slabkit_shrink_all(void)
{
	sk_ensure_init();
	sk_shrink_every_cache(SK_SHRINK_DRAIN_CPU);
}
