/*
 * The Linux slab API (include/linux/slab.h, gfp_types.h) over slabkit.
 * Names, signatures and semantics follow the kernel; where user space
 * differs, the comment says so.
 */
#ifndef SLABKIT_LINUX_SLAB_H
#define SLABKIT_LINUX_SLAB_H

#include <stddef.h>
#include <stdint.h>
#include <slabkit/slabkit.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef unsigned int gfp_t;
typedef unsigned int slab_flags_t;

/* GFP bits.  In user space nothing sleeps for memory, so the reclaim bits
 * only tell NOWAIT callers from blocking ones: __GFP_DIRECT_RECLAIM set
 * means the caller may wait (slabkit retries after draining caches). */
#define __GFP_DMA            0x01u
#define __GFP_HIGHMEM        0x02u
#define __GFP_DMA32          0x04u
#define __GFP_MOVABLE        0x08u
#define __GFP_RECLAIMABLE    0x10u
#define __GFP_HIGH           0x20u
#define __GFP_IO             0x40u
#define __GFP_FS             0x80u
#define __GFP_ZERO           0x100u
#define __GFP_DIRECT_RECLAIM 0x400u
#define __GFP_KSWAPD_RECLAIM 0x800u
#define __GFP_NOWARN         0x2000u
#define __GFP_RETRY_MAYFAIL  0x4000u
#define __GFP_NOFAIL         0x8000u
#define __GFP_NORETRY        0x10000u
#define __GFP_COMP           0x40000u
/* A node-directed request that must not fall back to another node: it
 * fails instead.  With NUMA_NO_NODE it means the caller's node. */
#define __GFP_THISNODE       0x200000u
#define __GFP_ACCOUNT        0x400000u
#define __GFP_RECLAIM        (__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM)

#define GFP_ATOMIC   (__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
#define GFP_KERNEL   (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_KERNEL_ACCOUNT (GFP_KERNEL | __GFP_ACCOUNT)
#define GFP_NOWAIT   (__GFP_KSWAPD_RECLAIM | __GFP_NOWARN)
#define GFP_NOIO     (__GFP_RECLAIM)
#define GFP_NOFS     (__GFP_RECLAIM | __GFP_IO)
#define GFP_USER     (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_DMA      __GFP_DMA
#define GFP_DMA32    __GFP_DMA32

/* Cache flags.  See docs/api.md for which are honoured by which release:
 * SLAB_POISON, SLAB_RED_ZONE, SLAB_CONSISTENCY_CHECKS and SLAB_TRACE turn
 * on the debug layer for the cache (docs/debug.md); SLAB_STORE_USER is
 * accepted but call sites are not recorded yet (a notice says so once);
 * SLAB_TYPESAFE_BY_RCU keeps slab pages the cache's until a grace period
 * has passed (docs/api.md). */
#define SLAB_CONSISTENCY_CHECKS 0x00000100u
#define SLAB_RED_ZONE           0x00000400u
#define SLAB_POISON             0x00000800u
#define SLAB_KMALLOC            0x00001000u
#define SLAB_HWCACHE_ALIGN      0x00002000u
#define SLAB_CACHE_DMA          0x00004000u
#define SLAB_CACHE_DMA32        0x00008000u
#define SLAB_STORE_USER         0x00010000u
#define SLAB_PANIC              0x00040000u
#define SLAB_TYPESAFE_BY_RCU    0x00080000u
#define SLAB_TRACE              0x00200000u
#define SLAB_NOLEAKTRACE        0x00800000u
#define SLAB_NO_MERGE           0x01000000u
#define SLAB_ACCOUNT            0x04000000u
#define SLAB_RECLAIM_ACCOUNT    0x20000000u

#define ZERO_SIZE_PTR ((void *)16)
#define ZERO_OR_NULL_PTR(x) ((unsigned long)(x) <= (unsigned long)ZERO_SIZE_PTR)
#define NUMA_NO_NODE (-1)

#define KMALLOC_MIN_SIZE 8
#define KMALLOC_MAX_CACHE_SIZE 8192
/* The largest kmalloc: what the page provider's largest block holds. */
#define KMALLOC_MAX_SIZE ((size_t)1 << 30)

struct kmem_cache;

/*
 * kmalloc family.  kmalloc and kzalloc are inline, as in the kernel: a size
 * known at compile time resolves to its size class here (no size test, no
 * lookup at run time) and calls __kmalloc_class; a constant above the
 * largest class calls kmalloc_large; any other size calls __kmalloc, which
 * finds the class with one table load.  The three are the exported entry
 * points (what an FFI binding calls).
 */
void *__kmalloc(size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1)));
/* class: slabkit_kmalloc_class(size), 1 <= size <= KMALLOC_MAX_CACHE_SIZE. */
void *__kmalloc_class(unsigned int class_index, size_t size, gfp_t flags)
	__attribute__((malloc, alloc_size(2)));
void *kmalloc_large(size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1)));

/* The index of the kmalloc size class of 1 <= size <= KMALLOC_MAX_CACHE_SIZE:
 * 8 16 32 64 96 128 192 256 512 1k 2k 4k 8k.  A constant expression when
 * size is one. */
#define slabkit_kmalloc_class(size)                                                          \
	((size) <= 8 ? 0u : (size) <= 16 ? 1u : (size) <= 32 ? 2u : (size) <= 64 ? 3u :         \
	 (size) <= 96 ? 4u : (size) <= 128 ? 5u : (size) <= 192 ? 6u : (size) <= 256 ? 7u :     \
	 (size) <= 512 ? 8u : (size) <= 1024 ? 9u : (size) <= 2048 ? 10u : (size) <= 4096 ? 11u : \
	 12u)

static inline __attribute__((always_inline, malloc, alloc_size(1))) void *kmalloc(size_t size, gfp_t flags)
{
	if (__builtin_constant_p(size) && size != 0) {
		if (size > KMALLOC_MAX_CACHE_SIZE)
			return kmalloc_large(size, flags);
		return __kmalloc_class(slabkit_kmalloc_class(size), size, flags);
	}
	return __kmalloc(size, flags);
}

static inline __attribute__((always_inline, malloc, alloc_size(1))) void *kzalloc(size_t size, gfp_t flags)
{
	return kmalloc(size, flags | __GFP_ZERO);
}

void *kmalloc_node(size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1)));
void *kzalloc_node(size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1)));
void *kmalloc_array(size_t n, size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1, 2)));
void *kcalloc(size_t n, size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1, 2)));
void *krealloc(const void *p, size_t new_size, gfp_t flags) __attribute__((alloc_size(2)));
void kfree(const void *p);
void kfree_sensitive(const void *p);
size_t ksize(const void *p);
size_t kmalloc_size_roundup(size_t size);

/*
 * kmem_cache_create, as the kernel (6.12+) spells it: a _Generic on the
 * third argument selects the form.
 *   kmem_cache_create(name, size, align, flags, ctor)   legacy 5 arguments
 *   kmem_cache_create(name, size, &args, flags)         struct kmem_cache_args
 *   kmem_cache_create(name, size, NULL, flags)          defaults
 * (kmem_cache_create)(...) in parentheses is the legacy function itself.
 */
struct kmem_cache_args {
	unsigned int align;          /* 0 or a power of two up to 4096 */
	unsigned int useroffset;     /* hardened usercopy window: checked, no */
	unsigned int usersize;       /*   meaning in user space (docs/api.md) */
	unsigned int freeptr_offset; /* only with SLAB_TYPESAFE_BY_RCU */
	_Bool use_freeptr_offset;
	void (*ctor)(void *);
};

struct kmem_cache *__kmem_cache_create_args(const char *name, unsigned int object_size,
					    struct kmem_cache_args *args, slab_flags_t flags);
struct kmem_cache *(kmem_cache_create)(const char *name, unsigned int size, unsigned int align,
				       slab_flags_t flags, void (*ctor)(void *));
struct kmem_cache *kmem_cache_create_usercopy(const char *name, unsigned int size, unsigned int align,
					      slab_flags_t flags, unsigned int useroffset,
					      unsigned int usersize, void (*ctor)(void *));

static inline struct kmem_cache *__kmem_cache_default_args(const char *name, unsigned int size,
							   struct kmem_cache_args *args,
							   slab_flags_t flags)
{
	struct kmem_cache_args defaults = { 0 };
	(void)args; /* NULL */
	return __kmem_cache_create_args(name, size, &defaults, flags);
}

#define kmem_cache_create(__name, __object_size, __args, ...)             \
	_Generic((__args),                                                \
		struct kmem_cache_args *: __kmem_cache_create_args,       \
		void *: __kmem_cache_default_args,                        \
		default: (kmem_cache_create))(__name, __object_size, __args, __VA_ARGS__)

void *kmem_cache_alloc(struct kmem_cache *s, gfp_t flags) __attribute__((malloc));
void *kmem_cache_zalloc(struct kmem_cache *s, gfp_t flags) __attribute__((malloc));
void *kmem_cache_alloc_node(struct kmem_cache *s, gfp_t flags, int node) __attribute__((malloc));
void kmem_cache_free(struct kmem_cache *s, void *obj);
/* All or nothing: returns size, or 0 with nothing allocated. */
int kmem_cache_alloc_bulk(struct kmem_cache *s, gfp_t flags, size_t size, void **p);
void kmem_cache_free_bulk(struct kmem_cache *s, size_t size, void **p);
/* 0 when every slab could be freed. */
int kmem_cache_shrink(struct kmem_cache *s);
void kmem_cache_destroy(struct kmem_cache *s);
unsigned int kmem_cache_size(struct kmem_cache *s);

#define KMEM_CACHE(__struct, __flags)                                          \
	__kmem_cache_create_args(#__struct, sizeof(struct __struct),            \
				 &(struct kmem_cache_args){                     \
					 .align = __alignof__(struct __struct), \
				 },                                             \
				 (__flags))

#define KMEM_CACHE_USERCOPY(__struct, __flags, __field)                               \
	__kmem_cache_create_args(#__struct, sizeof(struct __struct),                   \
				 &(struct kmem_cache_args){                            \
					 .align = __alignof__(struct __struct),        \
					 .useroffset = offsetof(struct __struct, __field), \
					 .usersize = sizeof(((struct __struct *)0)->__field), \
				 },                                                    \
				 (__flags))

/* Bulk free of kmalloc blocks (kmem_cache_free_bulk with a NULL cache). */
void kfree_bulk(size_t size, void **p);

/* --- More of what the kernel's slab.h offers (core/linux_util.c) --- */

void *krealloc_array(void *p, size_t new_n, size_t new_size, gfp_t flags) __attribute__((alloc_size(2, 3)));
void *kmalloc_array_node(size_t n, size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1, 2)));
void *kcalloc_node(size_t n, size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1, 2)));
void *kmalloc_track_caller(size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1)));
void *kmalloc_node_track_caller(size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1)));

/* kvmalloc: kmalloc, or vmalloc when that fails (<slabkit/linux/vmalloc.h>
 * has vmalloc itself).  kvfree frees either. */
void *kvmalloc(size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1)));
void *kvzalloc(size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1)));
void *kvmalloc_node(size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1)));
void *kvzalloc_node(size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1)));
void *kvmalloc_array(size_t n, size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1, 2)));
void *kvmalloc_array_node(size_t n, size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1, 2)));
void *kvcalloc(size_t n, size_t size, gfp_t flags) __attribute__((malloc, alloc_size(1, 2)));
void *kvcalloc_node(size_t n, size_t size, gfp_t flags, int node) __attribute__((malloc, alloc_size(1, 2)));
/* The kernel's current form (6.12+): the old size is known from p. */
void *kvrealloc(const void *p, size_t size, gfp_t flags) __attribute__((alloc_size(2)));
void kvfree(const void *p);
/* Zeroes len bytes at p, then kvfree. */
void kvfree_sensitive(const void *p, size_t len);

/* --- RCU-deferred freeing (core/rcu.c; docs/api.md "RCU") ---
 *
 * Over liburcu's urcu-memb flavour.  struct rcu_head begins with the two
 * words liburcu queues (identical to liburcu's own struct rcu_head) and
 * adds the object's address; do not include <urcu/call-rcu.h> in the same
 * file.  kfree_rcu(p, field) frees p (kmalloc, kmem_cache or kvmalloc
 * memory) after a grace period: every read-side section that may have
 * seen p has ended.  kfree_rcu_mightsleep(p) needs no rcu_head (the
 * kernel's single-argument form).  rcu_barrier() waits until every
 * callback queued before it has run; kmem_cache_destroy waits for the
 * cache's own.  Readers use rcu_read_lock()/rcu_read_unlock(); slabkit
 * registers each thread with liburcu the first time it uses RCU.  Never
 * call synchronize_rcu, rcu_barrier or kmem_cache_destroy inside a
 * read-side section. */
struct rcu_head {
	void *rh_link;                          /* liburcu's queue link */
	void (*rh_func)(struct rcu_head *head); /* liburcu's callback */
	void *rh_obj;                           /* kfree_rcu: the object */
};

void slabkit_kvfree_call_rcu(struct rcu_head *head, void *ptr);
void kfree_rcu_mightsleep(const void *ptr);
void slabkit_rcu_read_lock(void);
void slabkit_rcu_read_unlock(void);
void slabkit_synchronize_rcu(void);
void slabkit_rcu_barrier(void);

#define kfree_rcu(ptr, rhf)                                                        \
	do {                                                                       \
		__typeof__(ptr) ___p = (ptr);                                      \
		if (___p)                                                          \
			slabkit_kvfree_call_rcu(&___p->rhf, (void *)___p);        \
	} while (0)
#define kvfree_rcu(ptr, rhf) kfree_rcu(ptr, rhf)
#define kvfree_rcu_mightsleep(ptr) kfree_rcu_mightsleep(ptr)
#ifndef rcu_read_lock
#define rcu_read_lock() slabkit_rcu_read_lock()
#define rcu_read_unlock() slabkit_rcu_read_unlock()
#define synchronize_rcu() slabkit_synchronize_rcu()
#define rcu_barrier() slabkit_rcu_barrier()
#endif

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_LINUX_SLAB_H */
