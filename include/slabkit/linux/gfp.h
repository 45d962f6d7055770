/*
 * The kernel's page allocator (<linux/gfp.h>, get_order from
 * <asm-generic/getorder.h>) over slabkit's page provider: a binary buddy
 * allocator per NUMA node, blocks of 2^order 4 KiB pages, order 0 to
 * MAX_PAGE_ORDER (18: 1 GiB).
 *
 * struct page is opaque: a handle on the block's page descriptor (one per
 * 4 KiB page), turned into an address by page_address() and back by
 * virt_to_page().  User space has no physical pages: the block is
 * virtually contiguous and its memory is committed when first touched.
 * The GFP bits are those of <slabkit/linux/slab.h>.
 *
 * Node rules (as the kernel's): alloc_pages_node(nid) prefers nid and falls
 * back to the other nodes; with __GFP_THISNODE it fails instead.
 * NUMA_NO_NODE (and alloc_pages) means the caller's node first.
 */
#ifndef SLABKIT_LINUX_GFP_H
#define SLABKIT_LINUX_GFP_H

#include <stddef.h>
#include <slabkit/linux/slab.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PAGE_SHIFT
#define PAGE_SHIFT 12
#endif
#ifndef PAGE_SIZE
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#endif
#define MAX_PAGE_ORDER 18
#define NR_PAGE_ORDERS (MAX_PAGE_ORDER + 1)

struct page;

/* 2^order pages, or NULL (with a message unless __GFP_NOWARN).
 * __GFP_ZERO zeroes them; __GFP_NOFAIL retries after draining every cache
 * and never returns NULL. */
struct page *alloc_pages(gfp_t gfp, unsigned int order);
struct page *alloc_pages_node(int nid, gfp_t gfp, unsigned int order);
#define alloc_page(gfp) alloc_pages((gfp), 0)
/* order must be the order the block was allocated with. */
void __free_pages(struct page *page, unsigned int order);
#define __free_page(page) __free_pages((page), 0)

/* The same blocks by address.  free_pages(0, order) does nothing. */
unsigned long __get_free_pages(gfp_t gfp, unsigned int order);
#define __get_free_page(gfp) __get_free_pages((gfp), 0)
unsigned long get_zeroed_page(gfp_t gfp);
void free_pages(unsigned long addr, unsigned int order);
#define free_page(addr) free_pages((addr), 0)

/* Exactly the pages size needs (size rounded up to pages), not a whole
 * power-of-two block; free with the same size. */
void *alloc_pages_exact(size_t size, gfp_t gfp);
void free_pages_exact(void *virt, size_t size);

void *page_address(const struct page *page);
/* The page holding addr (slabkit memory only; NULL otherwise). */
struct page *virt_to_page(const void *addr);
/* The node of the page. */
int page_to_nid(const struct page *page);

/* The order of the smallest block holding size bytes (size 0: undefined in
 * the kernel; here 52, what its generic code computes). */
static inline int get_order(unsigned long size)
{
	size = (size - 1) >> PAGE_SHIFT;
	return size ? (int)(64 - __builtin_clzl(size)) : 0;
}

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_LINUX_GFP_H */
