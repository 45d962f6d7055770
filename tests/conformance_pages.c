/*
 * Conformance, the Linux page allocator API (<slabkit/linux/gfp.h>) over
 * the page provider: blocks of 2^order pages, page handles, zeroing, the
 * order checks on free, statistics, refusals.  (__GFP_THISNODE and node
 * fallback are tested on two synthetic nodes in conformance_linux_extra.c.)
 */
#include <slabkit/linux/gfp.h>
#include <slabkit/linux/vmalloc.h>

#include "conformance.h"

static void test_get_order(void **state)
{
	(void)state;
	assert_int_equal(get_order(1), 0);
	assert_int_equal(get_order(PAGE), 0);
	assert_int_equal(get_order(PAGE + 1), 1);
	assert_int_equal(get_order(2 * PAGE), 1);
	assert_int_equal(get_order(2 * PAGE + 1), 2);
	assert_int_equal(get_order(1UL << 20), 8);
	assert_int_equal(get_order(1UL << 30), MAX_PAGE_ORDER);
	assert_int_equal(get_order(0), 52);
}

static void test_alloc_pages_orders(void **state)
{
	(void)state;
	struct slabkit_stats s0 = stats_now();
	struct page *pg[6];
	uint64_t pages = 0;
	for (unsigned order = 0; order < 6; order++) {
		pg[order] = alloc_pages(GFP_KERNEL, order);
		assert_non_null(pg[order]);
		unsigned char *a = page_address(pg[order]);
		assert_non_null(a);
		/* Buddy blocks are aligned to their size. */
		assert_int_equal((uintptr_t)a % ((uintptr_t)PAGE << order), 0);
		memset(a, 0xa5, (size_t)PAGE << order);
		assert_ptr_equal(virt_to_page(a), pg[order]);
		int nid = page_to_nid(pg[order]);
		assert_true(nid >= 0 && (unsigned)nid < slabkit_nodes());
		pages += 1u << order;
	}
	struct slabkit_stats s1 = stats_now();
	assert_int_equal(s1.page_blocks, s0.page_blocks + 6);
	assert_int_equal(s1.page_block_pages, s0.page_block_pages + pages);
	assert_true(s1.pages_in_use >= s0.pages_in_use + pages);
	/* Page-allocator blocks are not kmalloc's large blocks. */
	assert_int_equal(s1.large_allocs, s0.large_allocs);

	/* Tail pages have handles of their own. */
	unsigned char *a5 = page_address(pg[5]);
	struct page *tail = virt_to_page(a5 + 3 * PAGE + 17);
	assert_ptr_not_equal(tail, pg[5]);
	assert_ptr_equal(page_address(tail), a5 + 3 * PAGE);
	assert_null(virt_to_page(&s0)); /* not slabkit memory */

	for (unsigned order = 0; order < 6; order++)
		__free_pages(pg[order], order);
	struct slabkit_stats s2 = stats_now();
	assert_int_equal(s2.page_blocks, s0.page_blocks);
	assert_int_equal(s2.page_block_pages, s0.page_block_pages);
}

static void test_get_free_pages(void **state)
{
	(void)state;
	struct slabkit_stats s0 = stats_now();
	unsigned long a = __get_free_pages(GFP_KERNEL, 3);
	assert_true(a != 0);
	assert_int_equal(a % (8 * PAGE), 0);
	memset((void *)a, 0x77, 8 * PAGE);
	unsigned long one = __get_free_page(GFP_KERNEL);
	assert_true(one != 0);
	memset((void *)one, 0x66, PAGE);
	free_page(one);
	free_pages(a, 3);

	/* Zeroed pages even where the memory was just dirtied. */
	for (int round = 0; round < 4; round++) {
		unsigned long z = get_zeroed_page(GFP_KERNEL);
		assert_true(z != 0);
		assert_true(sk_first_nonzero((void *)z, PAGE) == SIZE_MAX);
		memset((void *)z, 0x11, PAGE);
		free_page(z);
		struct page *zp = alloc_pages(GFP_KERNEL | __GFP_ZERO, 3);
		assert_true(sk_first_nonzero(page_address(zp), 8 * PAGE) == SIZE_MAX);
		memset(page_address(zp), 0x22, 8 * PAGE);
		__free_pages(zp, 3);
	}
	free_pages(0, 4); /* nothing */

	/* Exact: the pages size needs, not a power of two. */
	void *ex = alloc_pages_exact(5 * PAGE + 1, GFP_KERNEL | __GFP_ZERO);
	assert_non_null(ex);
	assert_int_equal(stats_now().page_block_pages, s0.page_block_pages + 6);
	assert_true(sk_first_nonzero(ex, 6 * PAGE) == SIZE_MAX);
	free_pages_exact(ex, 5 * PAGE + 1);
	free_pages_exact(NULL, 10);

	struct page *node0 = alloc_pages_node(0, GFP_KERNEL | __GFP_THISNODE, 1);
	assert_non_null(node0);
	assert_int_equal(page_to_nid(node0), 0);
	__free_pages(node0, 1);
	struct page *any = alloc_pages_node(NUMA_NO_NODE, GFP_KERNEL, 0);
	assert_non_null(any);
	__free_page(any);

	struct slabkit_stats s1 = stats_now();
	assert_int_equal(s1.page_blocks, s0.page_blocks);
	assert_int_equal(s1.page_block_pages, s0.page_block_pages);
}

static void test_pages_refusals(void **state)
{
	(void)state;
	sk_expect_messages();
	assert_null(alloc_pages(GFP_KERNEL, MAX_PAGE_ORDER + 1));
	assert_true(sk_captured("alloc_pages", "order too large", NULL) >= 1);
	unsigned before = sk_message_count();
	assert_null(alloc_pages(GFP_KERNEL | __GFP_NOWARN, MAX_PAGE_ORDER + 1));
	assert_int_equal(sk_message_count(), before); /* __GFP_NOWARN: quiet */
	assert_null(alloc_pages_node((int)slabkit_nodes(), GFP_KERNEL, 0));
	assert_true(sk_captured("alloc_pages_node", "no such node", NULL) >= 1);
	assert_true(__get_free_pages(GFP_KERNEL | __GFP_NOWARN, 40) == 0);
	assert_null(alloc_pages_exact(0, GFP_KERNEL | __GFP_NOWARN));
}

static void test_pages_misuse(void **state)
{
	(void)state;
	struct slabkit_stats s0 = stats_now();
	struct page *pg = alloc_pages(GFP_KERNEL, 2);
	unsigned char *a = page_address(pg);
	a[0] = 1;
	sk_expect_panics();

	__free_pages(pg, 1); /* wrong order: refused, nothing freed */
	assert_int_equal(sk_captured("__free_pages", "order 2", "freed with order 1"), 2);
	free_pages((unsigned long)a, 3);
	free_pages((unsigned long)(a + PAGE), 0); /* not the start */
	assert_true(sk_captured("free_pages", "not its start", NULL) >= 1);
	__free_pages(virt_to_page(a + PAGE), 0);
	kfree(a); /* kfree of page-allocator memory */
	assert_true(sk_captured("kfree", "page allocator", "free_pages") >= 1);
	vfree(a);
	bsd_free(a, M_TEST);
	free_pages_exact(a, PAGE);
	assert_int_equal(stats_now().page_blocks, s0.page_blocks + 1);
	assert_int_equal(a[0], 1);

	/* Other memory is not the page allocator's. */
	char *k = kmalloc(40000, GFP_KERNEL);
	free_pages((unsigned long)k, get_order(40000));
	assert_true(sk_captured("free_pages", "not allocated by the page allocator", NULL) >= 1);
	long local;
	free_page((unsigned long)&local);
	assert_true(sk_captured("free_pages", "not allocated by slabkit", NULL) >= 1);
	unsigned panics = sk_panic_count();
	assert_int_equal(panics, 10);

	kfree(k);
	__free_pages(pg, 2);
	assert_int_equal(stats_now().page_blocks, s0.page_blocks);
}

static const struct CMUnitTest pages_tests[] = {
	SK_TEST(test_get_order),     SK_TEST(test_alloc_pages_orders), SK_TEST(test_get_free_pages),
	SK_TEST(test_pages_refusals), SK_TEST(test_pages_misuse),
};

const struct conformance_group conformance_pages = {
	"pages", pages_tests, sizeof(pages_tests) / sizeof(pages_tests[0])
};
