/*
 * malloc(9) beyond the size classes: malloc_aligned and
 * malloc_domainset_aligned, contigmalloc / contigfree, and the flags that
 * only whole pages can honour, M_NODUMP and M_EXEC.
 *
 * Page blocks here are ordinary malloc(9) large blocks (the type in the
 * head descriptor's lw_type), so bsd_free, bsd_realloc and
 * bsd_malloc_usable_size treat them like any other; the page provider
 * undoes M_NODUMP / M_EXEC when the pages are freed.
 *
 * No lock of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include <slabkit/freebsd/malloc.h>

#include "sk_core.h"

#define LARGE_CLASS_BIT 63
#define TYPE_TRAILER sk_bsd_type_trailer

void *sk_bsd_malloc_pages(size_t size, size_t align, struct malloc_type *type, int node, int flags,
			  const char *call, const void *site)
{
	unsigned skf = (flags & M_WAITOK) ? SK_ALLOC_WAIT | SK_ALLOC_NOFAIL : 0;
	unsigned attrs = ((flags & M_NODUMP) ? SK_PAGES_NODUMP : 0) | ((flags & M_EXEC) ? SK_PAGES_EXEC : 0);
	void *p = NULL;

	for (unsigned attempt = 0;; attempt++) {
		p = sk_large_alloc_aligned(size ? size : 1, SK_MAX(align, SK_PAGE_SIZE), node, skf);
		if (p || !sk_bsd_wait_for_memory(attempt, flags))
			break;
	}
	if (!p)
		return sk_bsd_alloc_failed(size, type, flags, call);
	struct sk_page *pg = sk_page_of(p);
	int err = attrs ? sk_pages_set_attrs(p, attrs) : 0;
	if (err) {
		/* The system forbids it (an executable mapping refused by policy):
		 * refused, whatever M_WAITOK says, since waiting cannot help. */
		sk_large_free(p, pg);
		sk_misuse("%s(%s): cannot honour %s: %s", call, type->ks_shortdesc,
			  (attrs & SK_PAGES_EXEC) ? "M_EXEC (executable memory)" : "M_NODUMP", strerror(-err));
		return NULL;
	}
	sk_large_words(pg)->lw_type = (uintptr_t)type;
	size_t raw = sk_large_size(pg);
	if (flags & M_ZERO)
		memset(p, 0, raw);
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF)) {
		sk_track_alloc(p, NULL, SK_TRACK_LARGE, raw, site);
		sk_track_set_type(p, type);
	}
	sk_bsd_count_alloc(type, p, size, raw, LARGE_CLASS_BIT);
	return p;
}

/*
 * The request size that makes malloc(9) hand out a block aligned to
 * `align` (FreeBSD rounds the size up to a power of two, since its zones
 * align items to their size).  While the type check is on, the type
 * trailer takes the last 8 bytes of a block, so the power of two must hold
 * size + 8: the request is that power of two minus 8, whose class (power-of-two classes are aligned
 * to their size, up to a page) is aligned enough.  A backend heap (SLOB)
 * aligns blocks to 8 only: larger alignments take whole pages there.
 */
static size_t aligned_request(size_t size, size_t align)
{
	size_t need = SK_MAX(size + TYPE_TRAILER, align);
	size_t pow2 = need <= 16 ? 16 : (size_t)1 << (64 - __builtin_clzl(need - 1));
	int idx = sk_bsd_index(pow2);

	if (idx >= 0 && sk_state.bsd_caches[idx] && sk_state.bsd_caches[idx]->object_size == pow2)
		return pow2 - TYPE_TRAILER;
	const struct sk_backend_ops *heap = sk_state.bsd_heap;
	if (align > 8 && heap && size + TYPE_TRAILER <= heap->kmalloc_max)
		return heap->kmalloc_max + 1 - TYPE_TRAILER; /* past the heap: the page path */
	return size;
}

static bool align_ok(size_t align, const struct malloc_type *type, const char *call)
{
	if (SK_IS_POW2(align) && align <= SK_PAGE_SIZE)
		return true;
	sk_misuse("%s(%s): alignment %zu is not a power of two <= PAGE_SIZE", call,
		  type ? type->ks_shortdesc : "(null)", align);
	return false;
}

SK_EXPORT void *bsd_malloc_aligned(size_t size, size_t align, struct malloc_type *type, int flags)
{
	sk_ensure_init();
	if (!align_ok(align, type, "malloc_aligned"))
		return NULL;
	void *p = bsd_malloc(aligned_request(size, align), type, flags);
	if (p && ((uintptr_t)p & (align - 1)))
		sk_fatal("malloc_aligned: %p is not aligned to %zu", p, align); /* a broken rule above */
	return p;
}

SK_EXPORT void *bsd_malloc_domainset_aligned(size_t size, size_t align, struct malloc_type *type,
					     const struct domainset *ds, int flags)
{
	sk_ensure_init();
	if (!align_ok(align, type, "malloc_domainset_aligned"))
		return NULL;
	void *p = bsd_malloc_domainset(aligned_request(size, align), type, ds, flags);
	if (p && ((uintptr_t)p & (align - 1)))
		sk_fatal("malloc_domainset_aligned: %p is not aligned to %zu", p, align);
	return p;
}

/*
 * contigmalloc(9): virtually contiguous pages aligned to `alignment` that
 * do not cross a multiple of `boundary`.  low and high bound physical
 * addresses, which user space does not have: they are not looked at.
 * A block starts on a multiple of its own buddy size, which is >= size, so
 * it crosses no boundary >= size; a boundary below size cannot be met.
 */
SK_EXPORT void *bsd_contigmalloc(unsigned long size, struct malloc_type *type, int flags, uint64_t low,
				 uint64_t high, unsigned long alignment, uint64_t boundary)
{
	(void)low;
	(void)high;
	if (!sk_bsd_flags_ok(flags, "contigmalloc", type))
		return NULL;
	sk_ensure_init();
	if (!size || size > ((size_t)1 << 30) || (alignment && !SK_IS_POW2(alignment)) ||
	    alignment > ((size_t)1 << 30) || (boundary && (!SK_IS_POW2(boundary) || boundary < size))) {
		sk_errorf("slabkit: contigmalloc(%s): cannot place %lu bytes aligned to %lu within boundary %llu",
			  type->ks_shortdesc, size, alignment, (unsigned long long)boundary);
		return NULL;
	}
	return sk_bsd_malloc_pages(size, alignment, type, SK_NODE_ANY, flags, "contigmalloc", SK_CALLER());
}

SK_EXPORT void bsd_contigfree(void *addr, unsigned long size, struct malloc_type *type)
{
	if (!addr)
		return;
	struct sk_page *pg = sk_page_of(addr);
	if (pg && pg->kind == SK_PAGE_LARGE && sk_large_origin(pg) == SK_LARGE_MALLOC &&
	    addr == sk_page_addr(pg) &&
	    SK_ALIGN_UP((size_t)size, SK_PAGE_SIZE) > sk_large_size(pg)) {
		sk_misuse("contigfree(%s): block %p holds %zu bytes, freed with size %lu",
			  type ? type->ks_shortdesc : "(null)", addr, sk_large_size(pg), size);
		return;
	}
	bsd_free(addr, type); /* checks the rest: a malloc(9) block of this type */
}
