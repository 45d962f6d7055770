/*
 * The libc front end: malloc's rules over core's caches, for a program
 * that takes slabkit as its malloc (preload/, libslabkit-preload.so).
 *
 * Blocks of up to SK_LIBC_MAX_CACHE_SIZE bytes are objects of the libc
 * size classes (sk_sizeclass.h: four per power of two), caches like any
 * other, served by every backend, aligned to 16 (alignof(max_align_t)).
 * Over-aligned small requests (memalign & co.) use power-of-two caches
 * aligned to their size.  Larger blocks are page allocations (the page
 * path) with a small cache of freed blocks in front of the provider, so a
 * program that frees and allocates blocks of megabytes in turn does not
 * fault every page in again (see libc_malloc.c).
 *
 * Every function here follows the glibc manual's rules for a malloc
 * replacement: failures return NULL with errno ENOMEM (or EINVAL for an
 * alignment that is not a power of two); free never changes errno.
 * Nothing here knows about bootstrap or LD_PRELOAD: preload/ does.
 */
#ifndef SLABKIT_LIBC_H
#define SLABKIT_LIBC_H

#include <errno.h>
#include <stddef.h>

#include "sk_core.h"
#include "sk_track.h"

#pragma GCC visibility push(hidden)

#define SK_LIBC_ALIGNED_CLASSES 8 /* 32 64 ... 4096, each aligned to its size */
#define SK_LIBC_MAX_SIZE ((size_t)1 << 30) /* the page provider's largest block */

struct sk_libc_state {
	/* NULL until sk_libc_init has made them; written once, then read-only. */
	struct sk_cache *classes[SK_LIBC_CLASSES];
	struct sk_cache *aligned[SK_LIBC_ALIGNED_CLASSES];
	bool ready; /* published with release order after the caches */
};
extern struct sk_libc_state sk_libc;

/* Initialise slabkit if needed and make the libc classes.  Idempotent,
 * thread-safe.  0, or -errno with the reason printed. */
int sk_libc_init(void);

/* `site`: the caller of malloc (SLABKIT_LEAKS reports it); SK_CALLER()
 * in the public entry point. */
void *sk_libc_alloc_slow(size_t size, const void *site);
/* free's slow path; keeps errno (it may reach madvise or a message). */
void sk_libc_free_slow(void *p);
void *sk_libc_calloc(size_t n, size_t size, const void *site);
void *sk_libc_realloc(void *p, size_t size, const void *site);
/* align: any value (checked here: a power of two, else EINVAL). */
void *sk_libc_memalign(size_t align, size_t size, const void *site);
size_t sk_libc_usable_size(const void *p);
/* malloc_trim: drain every cache, drop the cached large blocks, give free
 * pages back to the OS.  Returns 1 (memory may have been released). */
int sk_libc_trim(void);
/* Bytes of the bootstrap heap in use (tests). */
size_t sk_libc_boot_bytes(void);


/* malloc's fast path: a block of size's libc class from this CPU's slot,
 * or NULL (too large, not initialised, slot empty: the caller's slow path). */
static sk_always_inline void *sk_libc_pop(size_t size)
{
	if (sk_likely(size - 1 < SK_LIBC_MAX_CACHE_SIZE)) {
		struct sk_cache *c = sk_libc.classes[sk_libc_index(size)];
		if (sk_likely(c != NULL)) {
			void *p = sk_pcpu_pop(c);
			if (sk_likely(p != NULL)) {
				sk_count_requested(c, size);
				return p;
			}
		}
	}
	return NULL;
}

/* malloc: a libc class from this CPU's slot, else the slow path. */
static sk_always_inline void *sk_libc_alloc_at(size_t size, const void *site)
{
	void *p = sk_libc_pop(size);

	if (sk_likely(p != NULL))
		return p;
	return sk_libc_alloc_slow(size, site);
}

/* Inlined into the public malloc, SK_CALLER() is malloc's caller. */
#define sk_libc_alloc(size) sk_libc_alloc_at((size), SK_CALLER())

/* free's fast path: true when this CPU's slot took p; false for the slow
 * path (NULL, other CPUs' slabs, large blocks, misuse). */
static sk_always_inline bool sk_libc_push(void *p)
{
	if (sk_likely(sk_addr_in_arena(p))) {
		struct sk_page *pg = sk_page_head(p);
		return sk_likely(pg->kind == SK_PAGE_SLAB) &&
		       sk_likely(((struct sk_cache *)pg->owner)->front == SK_FRONT_LIBC) &&
		       sk_likely(sk_pcpu_push(pg->owner, p, pg));
	}
	return false;
}

/* free: back onto this CPU's slot when it takes it, else the slow path.
 * errno is left as it was (glibc's free keeps it too). */
static sk_always_inline void sk_libc_free(void *p)
{
	if (sk_likely(sk_libc_push(p)))
		return;
	sk_libc_free_slow(p);
}

#pragma GCC visibility pop

#endif /* SLABKIT_LIBC_H */
