/*
 * The Linux slab API front end: kmalloc and friends over the kmalloc-N
 * size classes (or the backend's own heap), kmem_cache over core caches.
 * Misuse is reported through sk_misuse (message + panic hook).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <slabkit/linux/slab.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_sanitize.h"
#include "sk_trace.h"

unsigned sk_gfp_alloc_flags(unsigned int gfp)
{
	unsigned f = 0;
	if (gfp & __GFP_DIRECT_RECLAIM)
		f |= SK_ALLOC_WAIT;
	if (gfp & __GFP_NOFAIL)
		f |= SK_ALLOC_NOFAIL | SK_ALLOC_WAIT;
	return f;
}

/* How long a failed request of `size` bytes may retry (sk_core.h). */
enum sk_wait_policy sk_gfp_wait_policy(unsigned int gfp, size_t size)
{
	if (gfp & __GFP_NOFAIL)
		return SK_WAIT_NOFAIL;
	if (!(gfp & __GFP_DIRECT_RECLAIM))
		return SK_WAIT_NONE;
	if (gfp & (__GFP_NORETRY | __GFP_THISNODE))
		return SK_WAIT_BRIEF;
	if ((gfp & __GFP_RETRY_MAYFAIL) || size > SK_COSTLY_SIZE)
		return SK_WAIT_MAYFAIL;
	return SK_WAIT_LONG;
}

/* SLABKIT_LEAKS: record a large or heap block (cache objects are recorded
 * by the cache's slow path). */
static void track_block(const void *p, const void *site)
{
	struct sk_page *pg = sk_page_of(p);

	if (pg->kind == SK_PAGE_LARGE)
		sk_track_alloc(p, NULL, SK_TRACK_LARGE, sk_large_size(pg), site);
	else if (pg->kind == SK_PAGE_HEAP)
		sk_track_alloc(p, NULL, SK_TRACK_HEAP, sk_block_size(p, pg), site);
}

static void alloc_failed(const char *call, size_t size, gfp_t gfp)
{
	if (!(gfp & __GFP_NOWARN))
		sk_errorf("slabkit: %s: allocation of %zu bytes failed (gfp 0x%x)", call, size, gfp);
}

/* Everything kmalloc's inline path does not: lazy init, node requests, the
 * backend's heap, the page path, failures and the retries sk_gfp_wait_policy allows. */
static sk_noinline void *kmalloc_slow(size_t size, gfp_t gfp, int node, const char *call,
				       const void *site)
{
	void *p = NULL;

	sk_ensure_init();
	if (!size)
		return ZERO_SIZE_PTR;
	int os_node = node;
	node = sk_node_from_user(os_node); /* the OS's number -> the provider's index */
	if (node == SK_NODE_INVALID) {
		char list[128];
		sk_errorf("slabkit: %s: node %d does not exist (the OS's nodes: %s)", call, os_node,
			  sk_node_list(list, sizeof(list)));
		return NULL;
	}
	if (size > KMALLOC_MAX_SIZE) {
		alloc_failed(call, size, gfp);
		return NULL;
	}
	if ((gfp & __GFP_THISNODE) && node == NUMA_NO_NODE) /* the caller's node, no other */
		node = sk_numa_cpu_node(sk_pcpu_current_cpu());
	enum sk_wait_policy policy = sk_gfp_wait_policy(gfp, size);
	for (unsigned attempt = 0;; attempt++) {
		const struct sk_backend_ops *heap = sk_state.kmalloc_heap;
		int idx = sk_kmalloc_index(size);

		if (idx >= 0 && sk_state.kmalloc_caches[idx]) {
			struct sk_cache *c = sk_state.kmalloc_caches[idx];
			p = sk_cache_alloc_node(c, node == NUMA_NO_NODE ? SK_NODE_ANY : node,
						sk_gfp_alloc_flags(gfp), site);
			if (p)
				sk_count_requested(c, size);
		} else if (heap && size <= heap->kmalloc_max) {
			p = heap->kmalloc(size, node == NUMA_NO_NODE ? SK_NODE_ANY : node, sk_gfp_alloc_flags(gfp));
			if (p) {
				ck_pr_inc_64(&sk_state.heap.allocs);
				ck_pr_add_64(&sk_state.heap.bytes_requested, size);
				ck_pr_add_64(&sk_state.heap.bytes_allocated, heap->ksize(p, sk_page_of(p)));
			} else {
				ck_pr_inc_64(&sk_state.heap.failures);
			}
		} else {
			p = sk_large_alloc(size, node == NUMA_NO_NODE ? SK_NODE_ANY : node, sk_gfp_alloc_flags(gfp));
		}
		if (p && (gfp & __GFP_THISNODE) && sk_page_of(p)->node != (unsigned)node) {
			kfree(p); /* another node's memory: __GFP_THISNODE fails instead */
			p = NULL;
		}
		if (p || !sk_wait_for_memory(attempt, policy))
			break;
	}
	if (!p) {
		if (gfp & __GFP_NOFAIL)
			sk_fatal("%s: __GFP_NOFAIL allocation of %zu bytes failed after draining every cache",
				 call, size);
		else
			alloc_failed(call, size, gfp);
		return NULL;
	}
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF))
		track_block(p, site);
	if (gfp & __GFP_ZERO) /* the whole block, as ksize() will report it */
		memset(p, 0, sk_block_size(p, sk_page_of(p)));
	struct sk_page *pg = sk_page_of(p);
	if (pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->debug)
		sk_debug_set_size(pg->owner, p, size); /* and its kmalloc red zone */
	else if (pg->kind == SK_PAGE_LARGE && sk_unlikely(sk_san_on))
		sk_san_large_set_size(p, size); /* the rest of its last page closed */
	sk_trace_alloc(SK_TRACE_API_KMALLOC, p, size, 0);
	return p;
}

/*
 * kmalloc's entry points are leaves: pop from the CPU slot of the class
 * and return when the request is exactly the class size and needs no
 * zeroing; everything else leaves through one tail call to kmalloc_miss
 * with what the fast path got.
 */

/* The rest of a kmalloc of class idx (SK_KMALLOC_CLASSES: the size decides)
 * whose fast path popped p (NULL: it did not). */
static sk_noinline void *kmalloc_miss(unsigned idx, size_t size, gfp_t gfp, void *p, const void *site)
{
	if (!p)
		return kmalloc_slow(size, gfp, NUMA_NO_NODE, "kmalloc", site);
	struct sk_cache *c = sk_state.kmalloc_caches[idx];
	/* __kmalloc_class named too small a class, or the caller's node only
	 * (which the slot does not promise): give it back, start over. */
	if (sk_unlikely(size > c->object_size || (gfp & __GFP_THISNODE))) {
		sk_cache_free(c, p, sk_page_of(p));
		return kmalloc_slow(size, gfp, NUMA_NO_NODE, "kmalloc", site);
	}
	sk_count_requested(c, size);
	if (gfp & __GFP_ZERO)
		memset(p, 0, c->object_size);
	return p;
}

/* The entry points below inline their helpers, so that SK_CALLER() in
 * them is the user's call site. */

/* A size known at run time: the class is one table load (sk_sizeclass.h). */
static sk_always_inline void *kmalloc_inline(size_t size, gfp_t flags)
{
	struct sk_cache *c;
	unsigned idx = 0;
	void *p = NULL;

	if (sk_likely(size - 1 < SK_KMALLOC_MAX_CACHE_SIZE) &&
	    sk_likely((c = sk_state.kmalloc_caches[idx = sk_kmalloc_class_of[(size - 1) >> 3]]) != NULL) &&
	    sk_likely((p = sk_pcpu_pop(c)) != NULL) && sk_likely(size == c->object_size) &&
	    sk_likely(!(flags & (__GFP_ZERO | __GFP_THISNODE))))
		return p;
	return kmalloc_miss(idx, size, flags, p, SK_CALLER());
}

SK_EXPORT void *__kmalloc(size_t size, gfp_t flags)
{
	return kmalloc_inline(size, flags);
}

/* <slabkit/linux/slab.h>'s kmalloc resolved the class at compile time. */
SK_EXPORT void *__kmalloc_class(unsigned int class_index, size_t size, gfp_t flags)
{
	struct sk_cache *c;
	void *p = NULL;

	if (sk_likely(class_index < SK_KMALLOC_CLASSES) &&
	    sk_likely((c = sk_state.kmalloc_caches[class_index]) != NULL) &&
	    sk_likely((p = sk_pcpu_pop(c)) != NULL) && sk_likely(size == c->object_size) &&
	    sk_likely(!(flags & (__GFP_ZERO | __GFP_THISNODE))))
		return p;
	/* (a class index out of range: kmalloc_miss serves the size) */
	return kmalloc_miss(class_index, size, flags, p, SK_CALLER());
}

SK_EXPORT void *kmalloc_large(size_t size, gfp_t flags)
{
	return kmalloc_slow(size, flags, NUMA_NO_NODE, "kmalloc", SK_CALLER());
}

static sk_always_inline void *kmalloc_node_inline(size_t size, gfp_t flags, int node)
{
	if (node == NUMA_NO_NODE)
		return kmalloc_inline(size, flags);
	return kmalloc_slow(size, flags, node, "kmalloc_node", SK_CALLER());
}

SK_EXPORT void *kmalloc_node(size_t size, gfp_t flags, int node)
{
	return kmalloc_node_inline(size, flags, node);
}

SK_EXPORT void *kzalloc_node(size_t size, gfp_t flags, int node)
{
	return kmalloc_node_inline(size, flags | __GFP_ZERO, node);
}

static sk_always_inline void *kmalloc_array_inline(size_t n, size_t size, gfp_t flags)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return kmalloc_inline(bytes, flags);
}

SK_EXPORT void *kmalloc_array(size_t n, size_t size, gfp_t flags)
{
	return kmalloc_array_inline(n, size, flags);
}

SK_EXPORT void *kcalloc(size_t n, size_t size, gfp_t flags)
{
	return kmalloc_array_inline(n, size, flags | __GFP_ZERO);
}

/* Is p a block the Linux API may free or resize (a kmalloc or kmem_cache
 * object, the start of a kmalloc page-path block, a kmalloc heap block)?
 * Reports the misuse naming `call` and returns false otherwise.  Nothing
 * is changed either way.  `freeing`: a heap block that is not live is left
 * to the heap's kfree, which says precisely what is wrong. */
static bool linux_block_ok(const void *p, struct sk_page *pg, const char *call, bool freeing)
{
	if (sk_unlikely(!pg)) {
		sk_free_misuse(call, NULL, SK_MISUSE_FOREIGN, p, "not allocated by slabkit, or already freed");
		return false;
	}
	switch (pg->kind) {
	case SK_PAGE_SLAB: {
		struct sk_cache *c = pg->owner;
		if (sk_unlikely(c->front == SK_FRONT_MALLOC || c->front == SK_FRONT_UMA)) {
			sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p, "it belongs to %s %s; free it with %s",
				       c->front == SK_FRONT_UMA ? "UMA zone" : "malloc(9) class", c->name,
				       c->front == SK_FRONT_UMA ? "uma_zfree" : "bsd_free");
			return false;
		}
		return true;
	}
	case SK_PAGE_LARGE:
		if (sk_unlikely(sk_large_origin(pg) != SK_LARGE_MALLOC)) { /* vmalloc, alloc_pages */
			sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p, "allocated by %s; free it with %s",
				       sk_large_owner_name(pg), sk_large_owner_free(pg));
			return false;
		}
		if (p != sk_page_addr(pg)) {
			sk_free_misuse(call, NULL, SK_MISUSE_INTERIOR, p, "inside a large allocation at %p, not its start",
				       sk_page_addr(pg));
			return false;
		}
		if (sk_large_words(pg)->lw_type) {
			sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p, "it belongs to malloc(9); free it with bsd_free");
			return false;
		}
		return true;
	case SK_PAGE_HEAP:
		if (!sk_state.heap_ops->ksize(p, pg)) {
			if (freeing)
				return true;
			sk_free_misuse(call, NULL, SK_MISUSE_DOUBLE_FREE, p,
				       "not a live block of the kmalloc heap: freed already, or never returned");
			return false;
		}
		if (sk_state.heap_ops->heap_is_malloc9(p, pg)) {
			sk_free_misuse(call, NULL, SK_MISUSE_WRONG_CACHE, p, "it belongs to malloc(9); free it with bsd_free");
			return false;
		}
		return true;
	default:
		sk_free_misuse(call, NULL, SK_MISUSE_FOREIGN, p, "slabkit's own metadata, not an allocation");
		return false;
	}
}

/* Free any block: a cache object, a large allocation, a heap block.
 * `call` names the public function in misuse reports. */
static void free_block(const void *p, const char *call)
{
	struct sk_page *pg = sk_page_of(p);

	if (!linux_block_ok(p, pg, call, true))
		return;
	switch (pg->kind) {
	case SK_PAGE_SLAB:
		sk_cache_free(pg->owner, (void *)p, pg);
		return;
	case SK_PAGE_LARGE:
		if (sk_unlikely(sk_track_mode != SK_TRACK_OFF))
			sk_track_free(p);
		sk_large_free((void *)p, pg);
		return;
	case SK_PAGE_HEAP:
		if (sk_unlikely(sk_track_mode != SK_TRACK_OFF))
			sk_track_free(p);
		ck_pr_inc_64(&sk_state.heap.frees);
		ck_pr_add_64(&sk_state.heap.bytes_freed, sk_state.heap_ops->ksize(p, pg));
		sk_state.heap_ops->kfree((void *)p, pg);
		return;
	default:
		return;
	}
}

static sk_noinline void kfree_miss(const void *p)
{
	struct sk_page *pg = sk_page_of(p);

	if (ZERO_OR_NULL_PTR(p))
		return;
	sk_trace_free(SK_TRACE_API_KMALLOC, p);
	if (pg && pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->front <= SK_FRONT_KMALLOC)
		sk_cache_free(pg->owner, (void *)p, pg); /* lock mode, or the slot refused it */
	else
		free_block(p, "kfree");
}

SK_EXPORT void kfree(const void *p)
{
	/* The common case: an object of a kmalloc class or a kmem_cache whose
	 * CPU slot takes it back.  Only the pages of a live slab have an owner
	 * (sk_numa.h), so the owner test stands for the page kind test.  The
	 * owner is read from the object's own page, not its block's head: the
	 * slot's address depends on it, and in an alloc-free loop that chain of
	 * loads is the loop's latency (on SLAB, kfree cost 2.0x kmem_cache_free
	 * in such a loop from the head, 1.3-1.5x from the page, measured). */
	if (sk_likely(sk_addr_in_arena(p))) {
		struct sk_page *raw = sk_page_of_raw(p);
		struct sk_cache *c = raw->owner;
		if (sk_likely(c != NULL) && sk_likely(c->front <= SK_FRONT_KMALLOC) &&
		    sk_likely(sk_free_on_stride(c, raw, p)) &&
		    sk_likely(sk_pcpu_push_rseq_page(c, (void *)p, raw)))
			return;
	}
	kfree_miss(p);
}

SK_EXPORT size_t ksize(const void *p)
{
	if (ZERO_OR_NULL_PTR(p))
		return 0;
	struct sk_page *pg = sk_page_of(p);
	if (!pg) {
		sk_misuse("ksize: pointer %p was not allocated by slabkit", p);
		return 0;
	}
	size_t n = sk_block_size(p, pg);
	if (!n)
		sk_misuse("ksize: pointer %p is not the start of an allocation", p);
	else if (pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->debug)
		/* The caller may now use all n bytes: no kmalloc red zone (as Linux). */
		sk_debug_set_size(pg->owner, (void *)p, n);
	else if (pg->kind == SK_PAGE_LARGE && sk_unlikely(sk_san_on))
		sk_san_large_set_size((void *)p, n = sk_large_size(pg)); /* the same for a large block */
	return n;
}

/* The bytes the caller may use: sk_block_size, or for a debug kmalloc
 * object the size it asked for (the rest is its red zone). */
static size_t debug_size(const void *p, struct sk_page *pg)
{
	if (pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->debug)
		return sk_debug_size(pg->owner, p);
	return sk_block_size(p, pg);
}

SK_EXPORT void kfree_sensitive(const void *p)
{
	if (ZERO_OR_NULL_PTR(p))
		return;
	struct sk_page *pg = sk_page_of(p);
	if (!linux_block_ok(p, pg, "kfree_sensitive", true))
		return;
	size_t n = debug_size(p, pg);
	if (n) {
		memset((void *)p, 0, n);
		__asm__ volatile("" ::"r"(p) : "memory"); /* keep the wipe */
	}
	free_block(p, "kfree_sensitive");
}

SK_EXPORT size_t kmalloc_size_roundup(size_t size)
{
	sk_ensure_init();
	if (!size)
		return 0;
	int idx = sk_kmalloc_index(size);
	if (idx >= 0 && sk_state.kmalloc_caches[idx])
		return sk_kmalloc_class_size[idx];
	if (size > KMALLOC_MAX_SIZE)
		return SIZE_MAX;
	if (sk_state.kmalloc_heap && size <= sk_state.kmalloc_heap->kmalloc_max)
		return SK_ALIGN_UP(size, 8); /* the heap's contract (sk_backend.h) */
	return SK_ALIGN_UP(size, SK_PAGE_SIZE);
}

SK_EXPORT void *krealloc(const void *p, size_t new_size, gfp_t flags)
{
	size_t old = 0;
	if (!ZERO_OR_NULL_PTR(p)) {
		/* Checked before anything is allocated, copied or freed. */
		struct sk_page *pg = sk_page_of(p);
		if (!linux_block_ok(p, pg, "krealloc", false))
			return NULL;
		if (sk_unlikely(!new_size)) {
			free_block(p, "krealloc");
			return ZERO_SIZE_PTR;
		}
		old = debug_size(p, pg);
		if (!old) {
			sk_misuse("krealloc: pointer %p is not the start of an allocation", p);
			return NULL;
		}
		if (pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->debug &&
		    new_size <= ((struct sk_cache *)pg->owner)->object_size) {
			/* In place: the kmalloc red zone follows the new size. */
			sk_debug_resize(pg->owner, (void *)p, new_size, flags & __GFP_ZERO);
			return (void *)p;
		}
		if (new_size <= old) {
			if (flags & __GFP_ZERO)
				memset((char *)p + new_size, 0, old - new_size);
			if (pg->kind == SK_PAGE_LARGE && sk_unlikely(sk_san_on))
				sk_san_large_set_size((void *)p, new_size);
			return (void *)p;
		}
	}
	if (sk_unlikely(!new_size))
		return ZERO_SIZE_PTR; /* krealloc(NULL or ZERO_SIZE_PTR, 0) */
	void *q = kmalloc_inline(new_size, flags);
	if (!q)
		return NULL; /* p is untouched */
	if (old)
		memcpy(q, p, old);
	kfree(p);
	return q;
}

/* --- RCU-deferred freeing (core/rcu.c has the machinery) --- */

/* The cache whose rcu_pending counts p's deferred free, or NULL. */
static struct sk_cache *rcu_cache_of(const void *p)
{
	struct sk_page *pg = sk_page_of(p);
	return pg && pg->kind == SK_PAGE_SLAB ? pg->owner : NULL;
}

static void kfree_rcu_done(void *head)
{
	void *obj = ((struct rcu_head *)head)->rh_obj;
	struct sk_cache *c = rcu_cache_of(obj);

	kvfree(obj);
	if (c)
		ck_pr_dec_64(&c->rcu_pending); /* after the free: destroy waits for it */
}

SK_EXPORT void slabkit_kvfree_call_rcu(struct rcu_head *head, void *ptr)
{
	if (ZERO_OR_NULL_PTR(ptr))
		return;
	sk_ensure_init();
	struct sk_page *pg = sk_page_of(ptr);
	/* Checked now, where the caller can be named (kvmalloc's vmalloc
	 * blocks are kvfree's to check). */
	if (!(pg && pg->kind == SK_PAGE_LARGE && sk_large_origin(pg) == SK_LARGE_VMALLOC) &&
	    !linux_block_ok(ptr, pg, "kfree_rcu", false))
		return;
	size_t size = sk_block_size(ptr, pg);
	if ((char *)head < (char *)ptr || (size && (size_t)((char *)head - (char *)ptr) + sizeof(*head) > size)) {
		sk_misuse("kfree_rcu: rcu_head %p is not inside the object %p", (void *)head, ptr);
		return;
	}
	sk_rcu_start();
	head->rh_obj = ptr;
	struct sk_cache *c = rcu_cache_of(ptr);
	if (c)
		ck_pr_inc_64(&c->rcu_pending);
	sk_rcu_call(head, kfree_rcu_done);
}

/* kfree_rcu_mightsleep: no rcu_head in the object, so a small one from
 * slabkit's metadata carries it; without one, wait for the grace period
 * here and free at once (the kernel does the same). */
struct rcu_ptr_box {
	void *link, *func; /* liburcu's head */
	void *obj;
};

static void kfree_rcu_box_done(void *head)
{
	struct rcu_ptr_box *box = head;
	void *obj = box->obj;
	struct sk_cache *c = rcu_cache_of(obj);

	sk_meta_free(box, sizeof(*box));
	kvfree(obj);
	if (c)
		ck_pr_dec_64(&c->rcu_pending);
}

SK_EXPORT void kfree_rcu_mightsleep(const void *ptr)
{
	if (ZERO_OR_NULL_PTR(ptr))
		return;
	sk_ensure_init();
	struct sk_page *pg = sk_page_of(ptr);
	if (!(pg && pg->kind == SK_PAGE_LARGE && pg->owner) &&
	    !linux_block_ok(ptr, pg, "kfree_rcu_mightsleep", false))
		return;
	sk_rcu_start();
	struct rcu_ptr_box *box = sk_meta_zalloc(sizeof(*box));
	if (!box) {
		slabkit_synchronize_rcu();
		kvfree(ptr);
		return;
	}
	box->obj = (void *)ptr;
	struct sk_cache *c = rcu_cache_of(ptr);
	if (c)
		ck_pr_inc_64(&c->rcu_pending);
	sk_rcu_call(box, kfree_rcu_box_done);
}

/* --- kmem_cache --- */

static bool check_cache(const struct kmem_cache *s, const char *call)
{
	const struct sk_cache *c = (const struct sk_cache *)s;

	if (sk_likely(c != NULL && c->magic == SK_CACHE_LIVE))
		return true;
	if (!c)
		sk_misuse("%s: NULL cache", call);
	else if (c->magic == SK_CACHE_DESTROYED)
		sk_misuse("%s: cache %p (%s) was already destroyed", call, (const void *)c, c->name);
	else
		sk_misuse("%s: %p is not a cache (or one destroyed long ago)", call, (const void *)c);
	return false;
}

/* Allocation also refuses a cache destroyed with objects remaining. */
static bool check_cache_alloc(const struct kmem_cache *s, const char *call)
{
	if (!check_cache(s, call))
		return false;
	if (sk_likely(!((const struct sk_cache *)s)->dead))
		return true;
	sk_misuse("%s: cache %s was destroyed (with objects remaining); it cannot allocate", call,
		  ((const struct sk_cache *)s)->name);
	return false;
}

/* The backend, with the retries sk_gfp_wait_policy allows.  NULL: reported, or a
 * __GFP_NOFAIL that could not be met (the panic hook returned). */
static void *cache_alloc_retrying(struct sk_cache *c, int node, gfp_t flags, const char *call,
				  const void *site)
{
	enum sk_wait_policy policy = sk_gfp_wait_policy(flags, c->object_size);
	void *obj;

	for (unsigned attempt = 0;; attempt++) {
		obj = node == SK_NODE_ANY ? sk_cache_alloc_slow(c, node, sk_gfp_alloc_flags(flags), site)
					  : sk_cache_alloc_node(c, node, sk_gfp_alloc_flags(flags), site);
		if (obj && (flags & __GFP_THISNODE) && sk_page_of(obj)->node != (unsigned)node) {
			sk_cache_free(c, obj, sk_page_of(obj)); /* __GFP_THISNODE fails instead */
			obj = NULL;
		}
		if (obj || !sk_wait_for_memory(attempt, policy))
			break;
	}
	if (!obj) {
		if (flags & __GFP_NOFAIL)
			sk_fatal("%s(%s): __GFP_NOFAIL allocation failed after draining every cache",
				 call, c->name);
		else
			alloc_failed(call, c->object_size, flags);
	}
	return obj;
}

/* One object of c on provider node `node` (an index, checked): the backend,
 * with retries, tracing and zeroing. */
static void *cache_alloc_on(struct sk_cache *c, gfp_t flags, int node, const char *call,
			    const void *site)
{
	void *obj = cache_alloc_retrying(c, node, flags, call, site);
	if (!obj)
		return NULL;
	sk_trace_alloc(SK_TRACE_API_KMEM_CACHE, obj, c->object_size, c->align);
	if (flags & __GFP_ZERO)
		memset(obj, 0, c->object_size);
	return obj;
}

/* Everything kmem_cache_alloc's fast path does not: a NULL cache, the
 * backend, __GFP_NOFAIL retries, zeroing.  obj is what the fast path got. */
static sk_noinline void *kmem_cache_alloc_miss(struct sk_cache *c, gfp_t flags, void *obj,
						const void *site)
{
	if (flags & __GFP_THISNODE) { /* the caller's node and no other */
		int node = sk_numa_cpu_node(sk_pcpu_current_cpu());
		if (obj) {
			struct sk_page *pg = sk_page_of(obj);
			if (pg->node == (unsigned)node)
				goto got;
			sk_cache_free(c, obj, pg);
		}
		if (!check_cache_alloc((struct kmem_cache *)c, "kmem_cache_alloc"))
			return NULL;
		return cache_alloc_on(c, flags, node, "kmem_cache_alloc", site);
	}
	if (!obj) {
		if (!check_cache_alloc((struct kmem_cache *)c, "kmem_cache_alloc"))
			return NULL;
		obj = cache_alloc_retrying(c, SK_NODE_ANY, flags, "kmem_cache_alloc", site);
		if (!obj)
			return NULL;
		sk_trace_alloc(SK_TRACE_API_KMEM_CACHE, obj, c->object_size, c->align);
	}
got:
	if (flags & __GFP_ZERO)
		memset(obj, 0, c->object_size);
	return obj;
}

static sk_always_inline void *kmem_cache_alloc_inline(struct kmem_cache *s, gfp_t flags)
{
	struct sk_cache *c = (struct sk_cache *)s;
	void *obj = NULL;

	if (sk_likely(c != NULL) && sk_likely((obj = sk_pcpu_pop(c)) != NULL) &&
	    sk_likely(!(flags & (__GFP_ZERO | __GFP_THISNODE))))
		return obj;
	return kmem_cache_alloc_miss(c, flags, obj, SK_CALLER());
}

SK_EXPORT void *kmem_cache_alloc(struct kmem_cache *s, gfp_t flags)
{
	return kmem_cache_alloc_inline(s, flags);
}

SK_EXPORT void *kmem_cache_zalloc(struct kmem_cache *s, gfp_t flags)
{
	return kmem_cache_alloc_inline(s, flags | __GFP_ZERO);
}

SK_EXPORT void *kmem_cache_alloc_node(struct kmem_cache *s, gfp_t flags, int os_node)
{
	struct sk_cache *c = (struct sk_cache *)s;

	if (os_node == NUMA_NO_NODE)
		return kmem_cache_alloc_inline(s, flags);
	if (!check_cache_alloc(s, "kmem_cache_alloc_node"))
		return NULL;
	int node = sk_node_from_user(os_node); /* the OS's number -> the provider's index */
	if (node == SK_NODE_INVALID) {
		char list[128];
		sk_errorf("slabkit: kmem_cache_alloc_node(%s): node %d does not exist (the OS's nodes: %s)",
			  c->name, os_node, sk_node_list(list, sizeof(list)));
		return NULL;
	}
	return cache_alloc_on(c, flags, node, "kmem_cache_alloc_node", SK_CALLER());
}

/* The object's page, checked to belong to c; NULL (reported) otherwise. */
static struct sk_page *cache_page_of(struct sk_cache *c, const void *obj, const char *call)
{
	struct sk_page *pg = sk_page_of(obj);

	if (sk_likely(pg && pg->owner == c))
		return pg;
	if (!pg)
		sk_free_misuse(call, c, SK_MISUSE_FOREIGN, obj, "not allocated by slabkit, or already freed");
	else if (pg->kind == SK_PAGE_HEAP)
		return pg; /* a heap backend (SLOB): the backend checks */
	else if (pg->kind == SK_PAGE_SLAB)
		sk_free_misuse(call, c, SK_MISUSE_WRONG_CACHE, obj, "it belongs to cache %s",
			       ((struct sk_cache *)pg->owner)->name);
	else
		sk_free_misuse(call, c, SK_MISUSE_WRONG_CACHE, obj, "not an object of any cache");
	return NULL;
}

static sk_noinline void kmem_cache_free_miss(struct sk_cache *c, void *obj)
{
	if (!obj || !check_cache((struct kmem_cache *)c, "kmem_cache_free"))
		return;
	struct sk_page *pg = cache_page_of(c, obj, "kmem_cache_free");
	if (pg) {
		sk_trace_free(SK_TRACE_API_KMEM_CACHE, obj);
		sk_cache_free(c, obj, pg);
	}
}

SK_EXPORT void kmem_cache_free(struct kmem_cache *s, void *obj)
{
	struct sk_cache *c = (struct sk_cache *)s;

	/* Fast: this CPU's slot takes the object back.  A list slot takes only
	 * objects of its active slab, which belongs to c, so its tag check
	 * stands for the owner check; anything else is checked in full below. */
	if (sk_likely(c && sk_addr_in_arena(obj))) {
		struct sk_page *pg = sk_page_head(obj);
		if (sk_likely(sk_free_on_stride(c, pg, obj)) &&
		    (sk_likely(c->fast == SK_FAST_RSEQ_LIST_SLAB) ? sk_pcpu_list_push_rseq(c, obj, (uintptr_t)pg)
								   : pg->owner == c && sk_pcpu_push(c, obj, pg)))
			return;
	}
	kmem_cache_free_miss(c, obj);
}

SK_EXPORT int kmem_cache_alloc_bulk(struct kmem_cache *s, gfp_t flags, size_t size, void **p)
{
	struct sk_cache *c = (struct sk_cache *)s;
	size_t i;

	if (!check_cache_alloc(s, "kmem_cache_alloc_bulk") || (size && !p))
		return 0;
	for (i = 0; i < size; i++) {
		p[i] = sk_pcpu_pop(c);
		if (!p[i] && !(p[i] = cache_alloc_retrying(c, SK_NODE_ANY, flags | __GFP_NOWARN,
							 "kmem_cache_alloc_bulk", SK_CALLER())))
			break;
		if (flags & __GFP_ZERO)
			memset(p[i], 0, c->object_size);
	}
	if (i == size) {
		for (i = 0; i < size; i++)
			sk_trace_alloc(SK_TRACE_API_KMEM_CACHE, p[i], c->object_size, c->align);
		return (int)size;
	}
	/* All or nothing: give back what we got. */
	while (i--)
		sk_cache_free(c, p[i], sk_page_of(p[i]));
	alloc_failed("kmem_cache_alloc_bulk", c->object_size * size, flags);
	return 0;
}

/* A NULL cache frees kmalloc blocks (kfree_bulk), as the kernel allows. */
SK_EXPORT void kmem_cache_free_bulk(struct kmem_cache *s, size_t size, void **p)
{
	if (!s) {
		for (size_t i = 0; i < size; i++)
			kfree(p[i]);
		return;
	}
	for (size_t i = 0; i < size; i++)
		kmem_cache_free(s, p[i]);
}

SK_EXPORT void kfree_bulk(size_t size, void **p)
{
	kmem_cache_free_bulk(NULL, size, p);
}

SK_EXPORT int kmem_cache_shrink(struct kmem_cache *s)
{
	if (!check_cache(s, "kmem_cache_shrink"))
		return -EINVAL;
	uint64_t left = sk_cache_shrink((struct sk_cache *)s, SK_SHRINK_DRAIN_CPU);
	sk_pages_release_free();
	return left ? 1 : 0;
}

SK_EXPORT void kmem_cache_destroy(struct kmem_cache *s)
{
	if (!s || !check_cache(s, "kmem_cache_destroy"))
		return;
	if (((struct sk_cache *)s)->dead) {
		sk_misuse("kmem_cache_destroy: cache %s was already destroyed (with objects remaining)",
			  ((struct sk_cache *)s)->name);
		return;
	}
	sk_cache_destroy((struct sk_cache *)s, "kmem_cache_destroy");
}

SK_EXPORT unsigned int kmem_cache_size(struct kmem_cache *s)
{
	return s ? ((struct sk_cache *)s)->object_size : 0;
}
