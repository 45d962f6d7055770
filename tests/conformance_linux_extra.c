/*
 * Conformance, the rest of the Linux allocation API: kmemdup/kstrdup
 * (<slabkit/linux/string.h>), kvmalloc and vmalloc, kfree_bulk, every form
 * of kmem_cache_create, the _node and _array variants, and __GFP_THISNODE
 * (on a synthetic two-node topology).  See conformance.c for how the suite
 * is run.
 */
#define _GNU_SOURCE
#include <sched.h>

#include <slabkit/linux/gfp.h>
#include <slabkit/linux/string.h>
#include <slabkit/linux/vmalloc.h>

#include "conformance.h"

static uint64_t kmalloc_in_use(void)
{
	uint64_t n = 0;
	for (size_t i = 0; i < 13; i++) {
		static const char *const names[] = { "kmalloc-8",   "kmalloc-16",  "kmalloc-32", "kmalloc-64",
						     "kmalloc-96",  "kmalloc-128", "kmalloc-192", "kmalloc-256",
						     "kmalloc-512", "kmalloc-1k",  "kmalloc-2k", "kmalloc-4k",
						     "kmalloc-8k" };
		struct slabkit_cache_info info;
		if (slabkit_cache_info_by_name(names[i], &info) == 0)
			n += info.in_use;
	}
	return n;
}

static void test_kstrdup_family(void **state)
{
	(void)state;
	char src[] = "slabkit string";
	char *a = kstrdup(src, GFP_KERNEL);
	assert_non_null(a);
	assert_ptr_not_equal(a, src);
	assert_string_equal(a, src);
	assert_true(ksize(a) >= sizeof(src));
	assert_null(kstrdup(NULL, GFP_KERNEL));

	char *b = kstrndup(src, 7, GFP_KERNEL);
	assert_string_equal(b, "slabkit");
	char *c = kstrndup(src, 100, GFP_KERNEL);
	assert_string_equal(c, src);
	assert_null(kstrndup(NULL, 3, GFP_KERNEL));

	char *d = kmemdup_nul("abcdef", 3, GFP_KERNEL);
	assert_string_equal(d, "abc");

	unsigned char bytes[300];
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 7);
	unsigned char *e = kmemdup(bytes, sizeof(bytes), GFP_KERNEL);
	assert_non_null(e);
	assert_memory_equal(e, bytes, sizeof(bytes));
	assert_ptr_equal(kmemdup(bytes, 0, GFP_KERNEL), ZERO_SIZE_PTR); /* kmalloc(0) */

	int arr[5] = { 1, 2, 3, 4, 5 };
	int *f = kmemdup_array(arr, 5, sizeof(int), GFP_KERNEL);
	assert_memory_equal(f, arr, sizeof(arr));
	assert_null(kmemdup_array(arr, v_half_plus, 2, GFP_KERNEL)); /* overflow */

	kfree(a);
	kfree(b);
	kfree(c);
	kfree(d);
	kfree(e);
	kfree(f);
}

static void test_kstrdup_const(void **state)
{
	(void)state;
	uint64_t before = kmalloc_in_use();
	static const char literal[] = "read-only data";
	const char *same = kstrdup_const(literal, GFP_KERNEL);
	assert_ptr_equal(same, literal); /* .rodata: returned as it is */
	const char *lit2 = kstrdup_const("a string literal", GFP_KERNEL);
	assert_string_equal(lit2, "a string literal");

	char stack[] = "on the stack";
	const char *copy = kstrdup_const(stack, GFP_KERNEL);
	assert_ptr_not_equal(copy, stack);
	assert_string_equal(copy, stack);
	char *heap = strdup("from libc");
	const char *copy2 = kstrdup_const(heap, GFP_KERNEL);
	assert_ptr_not_equal(copy2, heap);
	free(heap);
	if (!sk_backend_is("slob")) /* SLOB has no kmalloc-N caches to count in */
		assert_int_equal(kmalloc_in_use(), before + 2);

	kfree_const(same);
	kfree_const(lit2);
	kfree_const(copy);
	kfree_const(copy2);
	kfree_const(NULL);
	assert_int_equal(kmalloc_in_use(), before);
}

static void test_vmalloc(void **state)
{
	(void)state;
	struct slabkit_stats s0 = stats_now();
	unsigned char *v = vmalloc(3 * PAGE + 10);
	assert_non_null(v);
	assert_int_equal((uintptr_t)v % PAGE, 0);
	assert_true(is_vmalloc_addr(v));
	assert_true(is_vmalloc_addr(v + 3 * PAGE)); /* anywhere inside */
	memset(v, 0x5a, 3 * PAGE + 10);
	struct slabkit_stats s1 = stats_now();
	assert_int_equal(s1.large_allocs, s0.large_allocs + 1);
	assert_int_equal(s1.large_pages, s0.large_pages + 4);

	unsigned char *z = vzalloc(5 * PAGE);
	assert_non_null(z);
	for (size_t i = 0; i < 5 * PAGE; i++)
		if (z[i])
			fail_msg("vzalloc byte %zu is 0x%x", i, z[i]);
	unsigned char *n = vzalloc_node(PAGE, 0);
	assert_non_null(n);
	assert_int_equal(page_to_nid(virt_to_page(n)), 0);
	assert_null(vmalloc_array(v_half_plus, 2));
	unsigned *arr = vcalloc(1000, sizeof(unsigned));
	assert_non_null(arr);
	assert_int_equal(arr[999], 0);

	char *k = kmalloc(100, GFP_KERNEL);
	assert_false(is_vmalloc_addr(k));
	assert_false(is_vmalloc_addr(NULL));

	/* Each free with its own call; the other one is misuse and frees nothing. */
	sk_expect_panics();
	kfree(v);
	assert_int_equal(sk_captured("kfree", "vmalloc", "vfree"), 2);
	assert_int_equal(stats_now().large_allocs, s1.large_allocs + 3);
	vfree(k);
	assert_true(sk_captured("vfree", "not the start of a vmalloc", NULL) >= 1);
	vfree(v + PAGE);
	assert_int_equal(sk_panic_count(), 3);
	assert_true(v[3 * PAGE + 9] == 0x5a); /* still ours */

	vfree(v);
	vfree(z);
	vfree(n);
	vfree(arr);
	vfree(NULL);
	kfree(k);
	assert_int_equal(stats_now().large_allocs, s0.large_allocs);
	assert_int_equal(stats_now().large_pages, s0.large_pages);
}

static void test_kvmalloc(void **state)
{
	(void)state;
	uint64_t before = kmalloc_in_use();
	struct slabkit_stats s0 = stats_now();

	char *small = kvmalloc(100, GFP_KERNEL);
	assert_non_null(small);
	assert_false(is_vmalloc_addr(small));
	assert_int_equal(ksize(small), kmalloc_size_roundup(100));
	assert_int_equal(kmalloc_in_use(), before + (sk_backend_is("slob") ? 0 : 1));

	size_t big_size = (size_t)1 << 20;
	unsigned char *big = kvzalloc(big_size, GFP_KERNEL);
	assert_non_null(big);
	assert_true(sk_first_nonzero(big, big_size) == SIZE_MAX);
	memset(big, 0x33, big_size);

	assert_null(kvmalloc_array(v_half_plus, 2, GFP_KERNEL));
	assert_null(kvcalloc(v_size_max, 8, GFP_KERNEL));
	uint64_t *arr = kvcalloc(4000, sizeof(uint64_t), GFP_KERNEL);
	assert_non_null(arr);
	assert_true(sk_first_nonzero(arr, 4000 * sizeof(uint64_t)) == SIZE_MAX);
	char *node = kvmalloc_node(5000, GFP_KERNEL, 0);
	assert_non_null(node);
	assert_int_equal(page_to_nid(virt_to_page(node)), 0);

	/* kvrealloc: grows and shrinks keeping the contents, also from a vmalloc block. */
	big = kvrealloc(big, 2 * big_size, GFP_KERNEL);
	assert_non_null(big);
	assert_int_equal(big[big_size - 1], 0x33);
	unsigned char *v = vmalloc(2 * PAGE);
	memset(v, 0x44, 2 * PAGE);
	unsigned char *v2 = kvrealloc(v, PAGE, GFP_KERNEL);
	assert_ptr_equal(v2, v); /* fits: kept */
	v2 = kvrealloc(v2, 6 * PAGE, GFP_KERNEL);
	assert_non_null(v2);
	assert_int_equal(v2[PAGE - 1], 0x44);
	assert_ptr_equal(kvrealloc(v2, 0, GFP_KERNEL), ZERO_SIZE_PTR);
	char *r = kvrealloc(NULL, 50, GFP_KERNEL);
	assert_non_null(r);
	strcpy(r, "kept");
	r = kvrealloc(r, 20000, GFP_KERNEL);
	assert_string_equal(r, "kept");

	kvfree_sensitive(small, 100);
	kvfree(big);
	kvfree(arr);
	kvfree(node);
	kvfree(r);
	kvfree(NULL);
	assert_int_equal(kmalloc_in_use(), before);
	assert_int_equal(stats_now().large_allocs, s0.large_allocs);
}

static void test_kfree_bulk(void **state)
{
	(void)state;
	uint64_t before = kmalloc_in_use();
	struct slabkit_stats s0 = stats_now();
	void *p[64];
	for (size_t i = 0; i < 64; i++) {
		p[i] = kmalloc(i % 8 == 7 ? 20000 : 8 + i * 37, GFP_KERNEL);
		assert_non_null(p[i]);
	}
	assert_int_equal(stats_now().large_allocs, s0.large_allocs + 8);
	kfree_bulk(32, p);
	kmem_cache_free_bulk(NULL, 32, p + 32);
	assert_int_equal(kmalloc_in_use(), before);
	assert_int_equal(stats_now().large_allocs, s0.large_allocs);
	kfree_bulk(0, NULL);
}

struct skt_obj {
	long a;
	char name[20];
	_Alignas(64) long b;
};

static int ctor_runs;
static void count_ctor(void *p)
{
	(void)p;
	__atomic_add_fetch(&ctor_runs, 1, __ATOMIC_RELAXED);
}

static void test_cache_create_forms(void **state)
{
	(void)state;
	/* Legacy five arguments. */
	struct kmem_cache *legacy = kmem_cache_create("skt_legacy", 100, 32, 0, NULL);
	assert_non_null(legacy);
	assert_int_equal(kmem_cache_size(legacy), 100);
	assert_int_equal(sk_info("skt_legacy").align, 32);

	/* struct kmem_cache_args. */
	struct kmem_cache_args args = { .align = 256, .ctor = count_ctor };
	struct kmem_cache *withargs = kmem_cache_create("skt_args", 200, &args, SLAB_HWCACHE_ALIGN);
	assert_non_null(withargs);
	assert_int_equal(sk_info("skt_args").align, 256);
	ctor_runs = 0;
	void *o = kmem_cache_alloc(withargs, GFP_KERNEL);
	assert_non_null(o);
	assert_int_equal((uintptr_t)o % 256, 0);
	assert_true(ctor_runs >= 1);
	kmem_cache_free(withargs, o);

	/* NULL: the defaults. */
	struct kmem_cache *defaults = kmem_cache_create("skt_nullargs", 24, NULL, 0);
	assert_non_null(defaults);
	assert_int_equal(kmem_cache_size(defaults), 24);
	assert_int_equal(sk_info("skt_nullargs").align, 8);

	/* The macros. */
	struct kmem_cache *m = KMEM_CACHE(skt_obj, 0);
	assert_non_null(m);
	assert_int_equal(kmem_cache_size(m), sizeof(struct skt_obj));
	assert_int_equal(sk_info("skt_obj").align, 64);
	struct skt_obj *x = kmem_cache_alloc(m, GFP_KERNEL);
	assert_int_equal((uintptr_t)x % 64, 0);
	kmem_cache_free(m, x);
	kmem_cache_destroy(m);
	m = KMEM_CACHE_USERCOPY(skt_obj, SLAB_HWCACHE_ALIGN, name);
	assert_non_null(m);
	kmem_cache_destroy(m);

	struct kmem_cache *uc = kmem_cache_create_usercopy("skt_uc", 64, 0, 0, 8, 16, NULL);
	assert_non_null(uc);
	assert_int_equal(kmem_cache_size(uc), 64);
	kmem_cache_destroy(uc);

	/* Windows and free-pointer offsets the kernel refuses. */
	sk_expect_messages();
	assert_null(kmem_cache_create_usercopy("skt_uc_bad", 64, 0, 0, 60, 16, NULL));
	assert_true(sk_captured("skt_uc_bad", "usercopy", NULL) >= 1);
	struct kmem_cache_args nosize = { .useroffset = 4 };
	assert_null(kmem_cache_create("skt_uc_bad2", 64, &nosize, 0));
	struct kmem_cache_args fp = { .use_freeptr_offset = 1, .freeptr_offset = 8 };
	assert_null(kmem_cache_create("skt_fp", 64, &fp, 0));
	assert_true(sk_captured("skt_fp", "freeptr_offset", NULL) >= 1);
	struct kmem_cache_args badalign = { .align = 48 };
	assert_null(kmem_cache_create("skt_badalign", 64, &badalign, 0));
	assert_int_equal(kmem_cache_size(NULL), 0);

	kmem_cache_destroy(legacy);
	kmem_cache_destroy(withargs);
	kmem_cache_destroy(defaults);
}

static void test_array_node_variants(void **state)
{
	(void)state;
	char *p = kmalloc(10, GFP_KERNEL);
	strcpy(p, "abc");
	assert_null(krealloc_array(p, v_half_plus, 2, GFP_KERNEL)); /* overflow: p untouched */
	assert_string_equal(p, "abc");
	char *q = krealloc_array(p, 100, 3, GFP_KERNEL);
	assert_non_null(q);
	assert_true(ksize(q) >= 300);
	assert_string_equal(q, "abc");
	kfree(q);

	uint32_t *z = kcalloc_node(50, 4, GFP_KERNEL, 0);
	assert_non_null(z);
	assert_true(sk_first_nonzero(z, 200) == SIZE_MAX);
	assert_null(kmalloc_array_node(v_size_max, 2, GFP_KERNEL, 0));
	void *a = kmalloc_array_node(3, 10, GFP_KERNEL, NUMA_NO_NODE);
	assert_true(ksize(a) >= 30);
	void *t = kmalloc_track_caller(70, GFP_KERNEL);
	assert_int_equal(ksize(t), kmalloc_size_roundup(70));
	void *tn = kmalloc_node_track_caller(70, GFP_KERNEL, 0);
	assert_non_null(tn);
	kfree(z);
	kfree(a);
	kfree(t);
	kfree(tn);
}

/* --- __GFP_THISNODE on two synthetic nodes --- */

/* Fill node `node`'s arena with page-allocator blocks (largest first).
 * Returns how many blocks; their addresses in blocks[], orders in orders[]. */
static size_t fill_node(int node, unsigned long *blocks, unsigned *orders, size_t max)
{
	size_t n = 0;
	for (int order = MAX_PAGE_ORDER; order >= 0; order--) {
		while (n < max) {
			struct page *pg = alloc_pages_node(node, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN,
							   (unsigned)order);
			if (!pg)
				break;
			assert_int_equal(page_to_nid(pg), node);
			orders[n] = (unsigned)order;
			blocks[n++] = (unsigned long)page_address(pg);
		}
	}
	return n;
}

static void test_gfp_thisnode(void **state)
{
	(void)state;
	cpu_set_t old, one;
	assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
	int cpu = 0;
	while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old))
		cpu++;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);

	slabkit_fini();
	setenv("HWLOC_SYNTHETIC", "node:2 core:1 pu:1", 1);
	struct slabkit_config cfg = { .arena_bytes_per_node = (size_t)1 << 30 };
	int rc = sk_fresh_init(&cfg);
	unsetenv("HWLOC_SYNTHETIC");
	assert_int_equal(rc, 0);
	assert_int_equal(slabkit_nodes(), 2);
	int local = slabkit_current_node(), other = 1 - local;

	struct kmem_cache *c = kmem_cache_create("skt_thisnode", 256, 0, 0, NULL);
	assert_non_null(c);
	static unsigned long blocks[64];
	static unsigned orders[64];
	size_t nblocks = fill_node(local, blocks, orders, 64);
	assert_true(nblocks > 0);
	assert_true(nblocks < 64);

	/* The local node is full: __GFP_THISNODE fails, the rest fall back. */
	sk_expect_messages();
	assert_null(alloc_pages(GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, 0));
	assert_null(alloc_pages_node(local, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, 0));
	struct page *fb = alloc_pages(GFP_KERNEL, 0);
	assert_non_null(fb);
	assert_int_equal(page_to_nid(fb), other);
	struct page *fb2 = alloc_pages_node(local, GFP_KERNEL, 2);
	assert_non_null(fb2);
	assert_int_equal(page_to_nid(fb2), other);

	assert_null(kmalloc(64 * 1024, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN));
	void *big = kmalloc(64 * 1024, GFP_KERNEL);
	assert_non_null(big);
	assert_int_equal(page_to_nid(virt_to_page(big)), other);
	void *there = kmalloc_node(64 * 1024, GFP_KERNEL | __GFP_THISNODE, other);
	assert_non_null(there);
	assert_int_equal(page_to_nid(virt_to_page(there)), other);
	assert_null(__vmalloc(3 * PAGE, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN));

	/* A cache with no slab on the local node cannot serve it. */
	assert_null(kmem_cache_alloc(c, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN));
	assert_null(kmem_cache_alloc_node(c, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, local));
	void *obj = kmem_cache_alloc_node(c, GFP_KERNEL | __GFP_THISNODE, other);
	assert_non_null(obj);
	assert_int_equal(page_to_nid(virt_to_page(obj)), other);
	kmem_cache_free(c, obj);

	/* Room again: the same calls succeed on the local node. */
	for (size_t i = 0; i < nblocks; i++)
		free_pages(blocks[i], orders[i]);
	struct page *mine = alloc_pages(GFP_KERNEL | __GFP_THISNODE, 0);
	assert_non_null(mine);
	assert_int_equal(page_to_nid(mine), local);
	void *o2 = kmem_cache_alloc(c, GFP_KERNEL | __GFP_THISNODE);
	assert_non_null(o2);
	assert_int_equal(page_to_nid(virt_to_page(o2)), local);
	char *z = kmalloc(100, GFP_KERNEL | __GFP_THISNODE | __GFP_ZERO);
	assert_non_null(z);
	assert_int_equal(page_to_nid(virt_to_page(z)), local);
	assert_int_equal(z[99], 0);

	kfree(z);
	kmem_cache_free(c, o2);
	__free_pages(mine, 0);
	__free_pages(fb, 0);
	__free_pages(fb2, 2);
	kfree(big);
	kfree(there);
	kmem_cache_destroy(c);

	slabkit_fini();
	assert_int_equal(sk_fresh_init(NULL), 0);
	assert_int_equal(sched_setaffinity(0, sizeof(old), &old), 0);
}

static const struct CMUnitTest linux_extra_tests[] = {
	SK_TEST(test_kstrdup_family), SK_TEST(test_kstrdup_const),     SK_TEST(test_vmalloc),
	SK_TEST(test_kvmalloc),       SK_TEST(test_kfree_bulk),        SK_TEST(test_cache_create_forms),
	SK_TEST(test_array_node_variants), SK_TEST(test_gfp_thisnode),
};

const struct conformance_group conformance_linux_extra = {
	"linux_extra", linux_extra_tests, sizeof(linux_extra_tests) / sizeof(linux_extra_tests[0])
};
