/*
 * The Linux page allocator API (<slabkit/linux/gfp.h>) over the page
 * provider's buddy allocators, and the names of the APIs that make large
 * blocks (sk_large_origin, sk_core.h).
 *
 * A page-allocator block is a provider block of kind SK_PAGE_LARGE whose
 * origin is SK_LARGE_PAGES: kfree and bsd_free refuse it, __free_pages
 * checks its order.  struct page * is the descriptor of a page (sk_numa.h),
 * so page_address and virt_to_page are arithmetic.
 *
 * Counted in sk_state.pages (ck_pr atomics): blocks, pages, failures; they
 * appear in slabkit_stats as page_blocks and page_block_pages.  No lock of
 * its own: the provider locks its node arenas.
 */
#define _GNU_SOURCE
#include <string.h>

#include <slabkit/linux/gfp.h>

#include "sk_core.h"

const char *sk_large_owner_name(const struct sk_page *pg)
{
	switch (sk_large_origin(pg)) {
	case SK_LARGE_VMALLOC: return "vmalloc";
	case SK_LARGE_PAGES: return "the page allocator (alloc_pages)";
	case SK_LARGE_UMA_SKEG: return "a per-CPU UMA zone";
	default: return "kmalloc";
	}
}

const char *sk_large_owner_free(const struct sk_page *pg)
{
	switch (sk_large_origin(pg)) {
	case SK_LARGE_VMALLOC: return "vfree or kvfree";
	case SK_LARGE_PAGES: return "free_pages, __free_pages or free_pages_exact";
	case SK_LARGE_UMA_SKEG: return "uma_zfree_pcpu";
	default: return "kfree";
	}
}

/* npages pages (a whole 2^order block when exact is false) on nid, or
 * (without __GFP_THISNODE) any node after nid. */
static void *block_alloc(int os_nid, gfp_t gfp, unsigned order, size_t npages, bool exact, const char *call)
{
	sk_ensure_init();
	int nid = sk_node_from_user(os_nid); /* the OS's number -> the provider's index */
	if (order > MAX_PAGE_ORDER || nid == SK_NODE_INVALID) {
		char list[128];
		if (!(gfp & __GFP_NOWARN))
			sk_errorf("slabkit: %s: %s (order %u, node %d; the OS's nodes: %s, largest order %d)",
				  call, order > MAX_PAGE_ORDER ? "order too large" : "no such node", order,
				  os_nid, sk_node_list(list, sizeof(list)), MAX_PAGE_ORDER);
		ck_pr_inc_64(&sk_state.pages.failures);
		return NULL;
	}
	int first = nid;
	if (first == NUMA_NO_NODE && (gfp & __GFP_THISNODE))
		first = sk_numa_cpu_node(sk_pcpu_current_cpu());
	void *p = NULL;
	for (unsigned attempt = 0;; attempt++) {
		int node = first == NUMA_NO_NODE ? SK_NODE_ANY : first;
		p = exact ? sk_pages_alloc_exact(node, npages, SK_PAGE_LARGE, NULL)
			  : sk_pages_alloc(node, order, SK_PAGE_LARGE, NULL);
		if (!p && first != NUMA_NO_NODE && !(gfp & __GFP_THISNODE)) /* then any node */
			p = exact ? sk_pages_alloc_exact(SK_NODE_ANY, npages, SK_PAGE_LARGE, NULL)
				  : sk_pages_alloc(SK_NODE_ANY, order, SK_PAGE_LARGE, NULL);
		if (p || !sk_wait_for_memory(attempt, sk_gfp_wait_policy(gfp, npages << SK_PAGE_SHIFT)))
			break;
	}
	if (!p) {
		ck_pr_inc_64(&sk_state.pages.failures);
		if (gfp & __GFP_NOFAIL)
			sk_fatal("%s: __GFP_NOFAIL allocation of %zu pages failed after draining every cache",
				 call, npages);
		else if (!(gfp & __GFP_NOWARN))
			sk_errorf("slabkit: %s: allocation of %zu pages (order %u) failed (gfp 0x%x)", call,
				  npages, order, gfp);
		return NULL;
	}
	sk_large_set_origin(sk_page_of(p), SK_LARGE_PAGES);
	ck_pr_inc_64(&sk_state.pages.allocs);
	ck_pr_add_64(&sk_state.pages.pages, npages);
	ck_pr_add_64(&sk_state.pages.bytes_allocated, npages << SK_PAGE_SHIFT);
	if (gfp & __GFP_ZERO)
		memset(p, 0, npages << SK_PAGE_SHIFT);
	return p;
}

/* The head descriptor of a page-allocator block starting at addr, or NULL
 * (reported). */
static struct sk_page *block_head(const void *addr, const char *call)
{
	struct sk_page *pg = sk_page_of(addr);

	if (!pg) {
		sk_misuse("%s: address %p was not allocated by slabkit (or was already freed)", call, addr);
		return NULL;
	}
	if (pg->kind != SK_PAGE_LARGE || sk_large_origin(pg) != SK_LARGE_PAGES) {
		sk_misuse("%s: address %p was not allocated by the page allocator", call, addr);
		return NULL;
	}
	if (addr != sk_page_addr(pg)) {
		sk_misuse("%s: address %p is inside the block at %p, not its start", call, addr,
			  sk_page_addr(pg));
		return NULL;
	}
	return pg;
}

static void block_free(struct sk_page *pg)
{
	size_t npages = pg->npages;

	ck_pr_inc_64(&sk_state.pages.frees);
	ck_pr_sub_64(&sk_state.pages.pages, npages);
	ck_pr_add_64(&sk_state.pages.bytes_freed, npages << SK_PAGE_SHIFT);
	sk_large_set_origin(pg, SK_LARGE_MALLOC);
	sk_pages_free(sk_page_addr(pg));
}

/* An order-sized block; order must match on free. */
static void free_order(const void *addr, unsigned order, const char *call)
{
	struct sk_page *pg = block_head(addr, call);
	if (!pg)
		return;
	if (pg->order != order || pg->npages != (uint32_t)1 << order) {
		sk_misuse("%s: block %p has order %u (%u pages), freed with order %u", call, addr, pg->order,
			  pg->npages, order);
		return;
	}
	block_free(pg);
}

SK_EXPORT struct page *alloc_pages_node(int nid, gfp_t gfp, unsigned int order)
{
	void *p = block_alloc(nid, gfp, order, (size_t)1 << SK_MIN(order, 63u), false, "alloc_pages_node");
	return p ? (struct page *)sk_page_of(p) : NULL;
}

SK_EXPORT struct page *alloc_pages(gfp_t gfp, unsigned int order)
{
	void *p = block_alloc(NUMA_NO_NODE, gfp, order, (size_t)1 << SK_MIN(order, 63u), false, "alloc_pages");
	return p ? (struct page *)sk_page_of(p) : NULL;
}

SK_EXPORT void __free_pages(struct page *page, unsigned int order)
{
	struct sk_page *pg = (struct sk_page *)page;
	uintptr_t off = (uintptr_t)pg - (uintptr_t)sk_page_map;
	if (!pg || off % sizeof(*pg) || off / sizeof(*pg) >= sk_arena_size >> SK_PAGE_SHIFT) {
		sk_misuse("__free_pages: %p is not a page of slabkit's", (void *)page);
		return;
	}
	free_order(sk_page_addr(pg), order, "__free_pages");
}

SK_EXPORT unsigned long __get_free_pages(gfp_t gfp, unsigned int order)
{
	return (unsigned long)block_alloc(NUMA_NO_NODE, gfp, order, (size_t)1 << SK_MIN(order, 63u), false,
					  "__get_free_pages");
}

SK_EXPORT unsigned long get_zeroed_page(gfp_t gfp)
{
	return (unsigned long)block_alloc(NUMA_NO_NODE, gfp | __GFP_ZERO, 0, 1, false, "get_zeroed_page");
}

SK_EXPORT void free_pages(unsigned long addr, unsigned int order)
{
	if (addr)
		free_order((const void *)addr, order, "free_pages");
}

SK_EXPORT void *alloc_pages_exact(size_t size, gfp_t gfp)
{
	size_t npages = (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
	if (!size || npages > ((size_t)1 << MAX_PAGE_ORDER)) {
		if (!(gfp & __GFP_NOWARN))
			sk_errorf("slabkit: alloc_pages_exact: %zu bytes is outside 1 .. 1 GiB", size);
		return NULL;
	}
	return block_alloc(NUMA_NO_NODE, gfp, (unsigned)get_order(size), npages, true, "alloc_pages_exact");
}

SK_EXPORT void free_pages_exact(void *virt, size_t size)
{
	if (!virt)
		return;
	struct sk_page *pg = block_head(virt, "free_pages_exact");
	if (!pg)
		return;
	if ((size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT != pg->npages) {
		sk_misuse("free_pages_exact: block %p has %u pages, freed with size %zu", virt, pg->npages, size);
		return;
	}
	block_free(pg);
}

SK_EXPORT void *page_address(const struct page *page)
{
	return page ? sk_page_addr((const struct sk_page *)page) : NULL;
}

SK_EXPORT struct page *virt_to_page(const void *addr)
{
	return (struct page *)sk_page_of_raw(addr);
}

SK_EXPORT int page_to_nid(const struct page *page)
{
	return page ? sk_node_to_user(((const struct sk_page *)page)->node) : NUMA_NO_NODE;
}

/* --- aligned large blocks (malloc(9)'s contigmalloc, malloc_aligned) --- */

void *sk_large_alloc_aligned(size_t size, size_t align, int node, unsigned flags)
{
	size_t npages = (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
	unsigned order = sk_order_for_pages(npages);

	/* An exact block starts on a multiple of its enclosing buddy block. */
	if (align <= (SK_PAGE_SIZE << order))
		return sk_large_alloc(size, node, flags);
	order = (unsigned)__builtin_ctzl(align) - SK_PAGE_SHIFT;
	void *p = order <= SK_MAX_ORDER && size ? sk_pages_alloc(node, order, SK_PAGE_LARGE, NULL) : NULL;
	if (!p) {
		ck_pr_inc_64(&sk_state.large.failures);
		return NULL;
	}
	npages = (size_t)1 << order;
	ck_pr_inc_64(&sk_state.large.allocs);
	ck_pr_add_64(&sk_state.large.pages, npages);
	ck_pr_add_64(&sk_state.large.bytes_requested, size);
	ck_pr_add_64(&sk_state.large.bytes_allocated, npages << SK_PAGE_SHIFT);
	return p;
}
