/*
 * Conformance, Linux slab API: the kmalloc family and kmem_cache.
 * See conformance.c for how the suite is run.
 */
#include "conformance.h"

/* ======================================================================
 * Linux kmalloc family
 * ====================================================================== */

static void test_kmalloc_zero_size(void **state)
{
	(void)state;
	assert_ptr_equal(kmalloc(0, GFP_KERNEL), ZERO_SIZE_PTR);
	assert_ptr_equal(kzalloc(0, GFP_KERNEL), ZERO_SIZE_PTR);
	assert_ptr_equal(kmalloc_node(0, GFP_KERNEL, NUMA_NO_NODE), ZERO_SIZE_PTR);
	assert_ptr_equal(kzalloc_node(0, GFP_KERNEL, 0), ZERO_SIZE_PTR);
	assert_ptr_equal(kcalloc(0, 8, GFP_KERNEL), ZERO_SIZE_PTR);
	assert_ptr_equal(kmalloc_array(8, 0, GFP_KERNEL), ZERO_SIZE_PTR);
	assert_true(ZERO_OR_NULL_PTR(kmalloc(0, GFP_ATOMIC)));
	assert_int_equal((uintptr_t)ZERO_SIZE_PTR, 16);

	kfree(NULL);
	kfree(ZERO_SIZE_PTR);
	kfree_sensitive(NULL);
	kfree_sensitive(ZERO_SIZE_PTR);
	assert_int_equal(ksize(NULL), 0);
	assert_int_equal(ksize(ZERO_SIZE_PTR), 0);
	assert_int_equal(kmalloc_size_roundup(0), 0);
	assert_int_equal(sk_panic_count(), 0);
}

/* Every size 1..8192: the right class, ksize agrees with
 * kmalloc_size_roundup, at least 8-byte alignment, usable to ksize. */
/* What kmalloc(n) hands out: the size class, except on SLOB, which has no
 * classes (its footprint): sub-page blocks are n rounded up to 8 bytes
 * (Linux SLOB's ALIGN(size, ARCH_KMALLOC_MINALIGN)), larger ones whole pages. */
static size_t kmalloc_expected_size(size_t n)
{
	if (!sk_backend_is("slob"))
		return kmalloc_class_of(n);
	size_t aligned = (n + 7) & ~(size_t)7;
	return aligned <= 4096 - 8 ? aligned : (n + 4095) & ~(size_t)4095;
}

static void test_kmalloc_size_classes(void **state)
{
	(void)state;
	/* Check every size, then report the first example of each violation. */
	size_t bad_align = 0, bad_small = 0, bad_class = 0, bad_agree = 0, nbad = 0;
	size_t ks_at_agree = 0, round_at_class = 0, round_at_agree = 0;
	for (size_t n = 1; n <= KMALLOC_MAX_CACHE_SIZE; n++) {
		unsigned char *p = kmalloc(n, GFP_KERNEL);
		if (!p)
			fail_msg("kmalloc(%zu) returned NULL", n);
		size_t ks = ksize(p), want = kmalloc_expected_size(n), round = kmalloc_size_roundup(n);
		bool bad = false;
		if ((uintptr_t)p % KMALLOC_MIN_SIZE && !bad_align)
			bad_align = n, bad = true;
		if (ks < n && !bad_small)
			bad_small = n, bad = true;
		if (round != want) {
			if (!bad_class)
				bad_class = n, round_at_class = round;
			bad = true;
		}
		if (ks != round) {
			if (!bad_agree)
				bad_agree = n, ks_at_agree = ks, round_at_agree = round;
			bad = true;
		}
		nbad += bad;
		if (ks >= n) {
			p[0] = 1;
			p[ks - 1] = 2;
		}
		kfree(p);
	}
	if (bad_align)
		print_error("  kmalloc(%zu) is not %d-byte aligned\n", bad_align, KMALLOC_MIN_SIZE);
	if (bad_small)
		print_error("  ksize(kmalloc(%zu)) < %zu\n", bad_small, bad_small);
	if (bad_class)
		print_error("  kmalloc_size_roundup(%zu) = %zu, expected %zu\n", bad_class,
			    round_at_class, kmalloc_expected_size(bad_class));
	if (bad_agree)
		print_error("  ksize(kmalloc(%zu)) = %zu but kmalloc_size_roundup(%zu) = %zu\n",
			    bad_agree, ks_at_agree, bad_agree, round_at_agree);
	if (nbad)
		fail_msg("%zu of %u sizes break the kmalloc size-class contract", nbad,
			 KMALLOC_MAX_CACHE_SIZE);
	for (size_t n = KMALLOC_MAX_CACHE_SIZE + 1; n <= 3 * PAGE * 4; n += 1531) {
		size_t round = kmalloc_size_roundup(n);
		if (round < n || round % PAGE)
			fail_msg("kmalloc_size_roundup(%zu) = %zu: large sizes round to pages", n,
				 round);
	}
}

/* Power-of-two sizes are aligned to their size (8..8192); the page path is
 * page aligned.  Several objects per size so more than one slab slot is
 * seen, and they must not overlap. */
static void test_kmalloc_alignment(void **state)
{
	(void)state;
	enum { N = 48 };
	void *p[N];
	for (size_t size = 8; size <= KMALLOC_MAX_CACHE_SIZE; size *= 2) {
		for (int i = 0; i < N; i++) {
			p[i] = kmalloc(size, GFP_KERNEL);
			assert_non_null(p[i]);
			if ((uintptr_t)p[i] % size)
				fail_msg("kmalloc(%zu) = %p is not aligned to %zu", size, p[i], size);
		}
		assert_true(sk_disjoint(p, N, size));
		for (int i = 0; i < N; i++)
			kfree(p[i]);
	}
	static const size_t large[] = { 16384, 65536, 1u << 20, 12289 };
	for (size_t k = 0; k < sizeof(large) / sizeof(large[0]); k++) {
		for (int i = 0; i < 8; i++) {
			p[i] = kmalloc(large[k], GFP_KERNEL);
			assert_non_null(p[i]);
			if ((uintptr_t)p[i] % PAGE)
				fail_msg("kmalloc(%zu) = %p is not page aligned", large[k], p[i]);
			assert_true(ksize(p[i]) >= large[k]);
		}
		for (int i = 0; i < 8; i++)
			kfree(p[i]);
	}
}

/* The whole ksize() is usable: fill many live blocks to their ksize and
 * check none overwrote another. */
static void test_kmalloc_ksize_usable(void **state)
{
	(void)state;
	static const size_t sizes[] = { 1, 7, 8, 9, 63, 65, 95, 97, 129, 191, 193, 255, 257,
					511, 513, 1023, 1025, 2047, 2049, 4095, 4097, 8191, 8192,
					8193, 20000 };
	enum { N = 24 };
	void *p[N];
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int i = 0; i < N; i++) {
			p[i] = kmalloc(sizes[k], GFP_KERNEL);
			assert_non_null(p[i]);
			sk_fill(p[i], ksize(p[i]), (uint64_t)k << 32 | (uint64_t)i);
		}
		for (int i = 0; i < N; i++) {
			size_t bad = sk_check(p[i], ksize(p[i]), (uint64_t)k << 32 | (uint64_t)i);
			if (bad != SIZE_MAX)
				fail_msg("kmalloc(%zu) block %d corrupted at offset %zu of ksize %zu",
					 sizes[k], i, bad, ksize(p[i]));
		}
		for (int i = 0; i < N; i++)
			kfree(p[i]);
	}
}

enum zero_kind { Z_KZALLOC, Z_KCALLOC, Z_GFP_ZERO, Z_KZALLOC_NODE_ANY, Z_KZALLOC_NODE0,
		 Z_KMALLOC_NODE_GFP_ZERO, Z_KINDS };
static const char *const zero_kind_name[Z_KINDS] = {
	"kzalloc", "kcalloc", "kmalloc(__GFP_ZERO)", "kzalloc_node(NUMA_NO_NODE)",
	"kzalloc_node(0)", "kmalloc_node(__GFP_ZERO)"
};

static void *zero_alloc(enum zero_kind k, size_t n)
{
	switch (k) {
	case Z_KZALLOC: return kzalloc(n, GFP_KERNEL);
	case Z_KCALLOC: return n % 4 ? kcalloc(n, 1, GFP_KERNEL) : kcalloc(n / 4, 4, GFP_KERNEL);
	case Z_GFP_ZERO: return kmalloc(n, GFP_KERNEL | __GFP_ZERO);
	case Z_KZALLOC_NODE_ANY: return kzalloc_node(n, GFP_KERNEL, NUMA_NO_NODE);
	case Z_KZALLOC_NODE0: return kzalloc_node(n, GFP_KERNEL, 0);
	case Z_KMALLOC_NODE_GFP_ZERO: return kmalloc_node(n, GFP_KERNEL | __GFP_ZERO, 0);
	default: return NULL;
	}
}

/* Dirty a block, free it, allocate zeroed (the same block is the likely
 * one to come back): every byte must be zero. */
static void test_kmalloc_zeroing(void **state)
{
	(void)state;
	static const size_t sizes[] = { 8, 24, 64, 96, 100, 192, 256, 1000, 4096, 8192, 10000,
					70000 };
	for (int k = 0; k < Z_KINDS; k++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t n = sizes[s];
			for (int round = 0; round < 3; round++) {
				unsigned char *d = kmalloc(n, GFP_KERNEL);
				assert_non_null(d);
				memset(d, 0xA5, ksize(d));
				kfree(d);
				unsigned char *z = zero_alloc((enum zero_kind)k, n);
				if (!z)
					fail_msg("%s(%zu) returned NULL", zero_kind_name[k], n);
				size_t bad = sk_first_nonzero(z, n);
				if (bad != SIZE_MAX)
					fail_msg("%s(%zu): byte %zu is 0x%02x, not zero",
						 zero_kind_name[k], n, bad, z[bad]);
				memset(z, 0x5A, n);
				kfree(z);
			}
		}
	}
}

static void test_kmalloc_array_overflow(void **state)
{
	(void)state;
	size_t big = v_half_plus;
	assert_null(kcalloc(big, 2, GFP_KERNEL));
	assert_null(kcalloc(2, big, GFP_KERNEL));
	assert_null(kmalloc_array(big, 2, GFP_KERNEL));
	assert_null(kmalloc_array(v_size_max / 8, 16, GFP_KERNEL | __GFP_NOWARN));
	assert_int_equal(sk_panic_count(), 0);

	unsigned *a = kmalloc_array(100, sizeof(unsigned), GFP_KERNEL);
	assert_non_null(a);
	assert_true(ksize(a) >= 100 * sizeof(unsigned));
	for (unsigned i = 0; i < 100; i++)
		a[i] = i;
	kfree(a);
	unsigned *c = kcalloc(1000, sizeof(unsigned), GFP_KERNEL);
	assert_non_null(c);
	assert_int_equal(sk_first_nonzero(c, 1000 * sizeof(unsigned)), SIZE_MAX);
	kfree(c);
}

static void test_krealloc(void **state)
{
	(void)state;
	/* krealloc(NULL, n) and krealloc(ZERO_SIZE_PTR, n) allocate. */
	unsigned char *p = krealloc(NULL, 24, GFP_KERNEL);
	assert_non_null(p);
	assert_true(ksize(p) >= 24);
	sk_fill(p, 24, 0x1111);
	void *z = krealloc(ZERO_SIZE_PTR, 40, GFP_KERNEL);
	assert_non_null(z);
	assert_true(!ZERO_OR_NULL_PTR(z));
	kfree(z);

	/* Within ksize the block stays where it is. */
	size_t ks = ksize(p);
	assert_ptr_equal(krealloc(p, ks, GFP_KERNEL), p);
	assert_int_equal(sk_check(p, 24, 0x1111), SIZE_MAX);

	/* Growing through the classes and into the page path keeps content. */
	static const size_t grow[] = { 100, 5000, 8192, 100000, 1u << 20 };
	size_t have = 24;
	for (size_t i = 0; i < sizeof(grow) / sizeof(grow[0]); i++) {
		unsigned char *q = krealloc(p, grow[i], GFP_KERNEL);
		assert_non_null(q);
		assert_true(ksize(q) >= grow[i]);
		size_t bad = sk_check(q, have, 0x1111 + i);
		if (bad != SIZE_MAX)
			fail_msg("krealloc to %zu lost byte %zu of %zu", grow[i], bad, have);
		sk_fill(q, grow[i], 0x1111 + i + 1);
		p = q;
		have = grow[i];
	}
	/* Shrinking keeps the prefix. */
	static const size_t shrink[] = { 70000, 9000, 3000, 100, 8 };
	uint64_t tag = 0x1111 + sizeof(grow) / sizeof(grow[0]);
	for (size_t i = 0; i < sizeof(shrink) / sizeof(shrink[0]); i++) {
		unsigned char *q = krealloc(p, shrink[i], GFP_KERNEL);
		assert_non_null(q);
		assert_true(ksize(q) >= shrink[i]);
		size_t bad = sk_check(q, shrink[i], tag);
		if (bad != SIZE_MAX)
			fail_msg("krealloc shrinking to %zu lost byte %zu", shrink[i], bad);
		sk_fill(q, shrink[i], tag + 1);
		tag++;
		p = q;
	}
	/* krealloc(p, 0) frees and returns ZERO_SIZE_PTR: watch a large one go. */
	struct slabkit_stats before = stats_now();
	void *large = kmalloc(200000, GFP_KERNEL);
	assert_non_null(large);
	assert_int_equal(stats_now().large_allocs, before.large_allocs + 1);
	assert_ptr_equal(krealloc(large, 0, GFP_KERNEL), ZERO_SIZE_PTR);
	assert_int_equal(stats_now().large_allocs, before.large_allocs);
	assert_ptr_equal(krealloc(p, 0, GFP_KERNEL), ZERO_SIZE_PTR);

	/* A krealloc that cannot be satisfied returns NULL and leaves p alone. */
	p = kmalloc(64, GFP_KERNEL);
	assert_non_null(p);
	sk_fill(p, 64, 0x2222);
	assert_null(krealloc(p, v_size_max / 2, GFP_KERNEL | __GFP_NOWARN));
	assert_int_equal(sk_check(p, 64, 0x2222), SIZE_MAX);
	kfree(p);
}

static void test_kmalloc_node(void **state)
{
	(void)state;
	int nodes[] = { NUMA_NO_NODE, 0, slabkit_current_node() };
	static const size_t sizes[] = { 8, 100, 4096, 8192, 50000 };
	for (size_t k = 0; k < sizeof(nodes) / sizeof(nodes[0]); k++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			unsigned char *p = kmalloc_node(sizes[s], GFP_KERNEL, nodes[k]);
			if (!p)
				fail_msg("kmalloc_node(%zu, node %d) = NULL", sizes[s], nodes[k]);
			assert_true(ksize(p) >= sizes[s]);
			sk_fill(p, sizes[s], sizes[s]);
			unsigned char *z = kzalloc_node(sizes[s], GFP_KERNEL, nodes[k]);
			if (!z)
				fail_msg("kzalloc_node(%zu, node %d) = NULL", sizes[s], nodes[k]);
			assert_int_equal(sk_first_nonzero(z, sizes[s]), SIZE_MAX);
			assert_int_equal(sk_check(p, sizes[s], sizes[s]), SIZE_MAX);
			kfree(p);
			kfree(z);
		}
	}
}

/* Beyond 8192 bytes kmalloc takes the page path: counted in large_allocs
 * while live, gone after kfree. */
static void test_kmalloc_large(void **state)
{
	(void)state;
	static const size_t sizes[] = { 8193, 16384, 65536, 100000, 1u << 20, 4u << 20 };
	struct slabkit_stats base = stats_now();
	void *p[sizeof(sizes) / sizeof(sizes[0])];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = kmalloc(sizes[i], GFP_KERNEL);
		if (!p[i])
			fail_msg("kmalloc(%zu) = NULL", sizes[i]);
		assert_true(ksize(p[i]) >= sizes[i]);
		assert_int_equal((uintptr_t)p[i] % PAGE, 0);
		sk_fill(p[i], sizes[i], i);
		struct slabkit_stats now = stats_now();
		if (now.large_allocs != base.large_allocs + i + 1)
			fail_msg("after kmalloc(%zu): large_allocs %llu, expected %llu", sizes[i],
				 (unsigned long long)now.large_allocs,
				 (unsigned long long)(base.large_allocs + i + 1));
		assert_true(now.large_pages >= base.large_pages + sizes[i] / PAGE);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		assert_int_equal(sk_check(p[i], sizes[i], i), SIZE_MAX);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		kfree(p[i]);
	struct slabkit_stats end = stats_now();
	assert_int_equal(end.large_allocs, base.large_allocs);
	assert_int_equal(end.large_pages, base.large_pages);

	/* kfree_sensitive frees too. */
	void *s = kmalloc(30000, GFP_KERNEL);
	assert_non_null(s);
	memset(s, 0x77, 30000);
	kfree_sensitive(s);
	assert_int_equal(stats_now().large_allocs, base.large_allocs);
	s = kmalloc(40, GFP_KERNEL);
	assert_non_null(s);
	kfree_sensitive(s);
}

static void test_kmalloc_impossible(void **state)
{
	(void)state;
	size_t huge = v_size_max;
	assert_null(kmalloc(huge, GFP_KERNEL | __GFP_NOWARN));
	assert_null(kmalloc(huge - PAGE, GFP_KERNEL | __GFP_NOWARN));
	assert_null(kmalloc(KMALLOC_MAX_SIZE + 1 + (huge - v_size_max), GFP_KERNEL | __GFP_NOWARN));
	assert_null(kzalloc(huge, GFP_ATOMIC | __GFP_NOWARN));
	assert_null(kmalloc_node(huge, GFP_KERNEL | __GFP_NOWARN, 0));
	assert_int_equal(sk_panic_count(), 0);
	void *p = kmalloc(64, GFP_KERNEL);
	assert_non_null(p);
	kfree(p);
}

/* ======================================================================
 * kmem_cache
 * ====================================================================== */

#define CTOR_SIZE 96
#define CTOR_MAGIC 0x5ca1ab1e0ddba11ULL
static atomic_ulong ctor_calls;

static void ctor_fill(void *obj)
{
	uint64_t *w = obj;
	for (unsigned i = 0; i < CTOR_SIZE / 8; i++)
		w[i] = CTOR_MAGIC ^ i;
	atomic_fetch_add(&ctor_calls, 1);
}

/* Offset of the first word not in constructed state, or -1. */
static int ctor_state_bad(const void *obj)
{
	const uint64_t *w = obj;
	for (unsigned i = 0; i < CTOR_SIZE / 8; i++)
		if (w[i] != (CTOR_MAGIC ^ i))
			return (int)(i * 8);
	return -1;
}

/*
 * The constructor runs when an object is created in a slab, not on every
 * allocation, and objects come back in constructed state (so the backend
 * must keep its free-list link outside a constructed object).  SLOB has no
 * slabs and may construct on every allocation; for it the bound is one
 * call per allocation.
 */
static void test_cache_ctor(void **state)
{
	(void)state;
	enum { N = 300, LOOP = 2000 };
	atomic_store(&ctor_calls, 0);
	struct kmem_cache *c = kmem_cache_create("skt_ctor", CTOR_SIZE, 0, 0, ctor_fill);
	assert_non_null(c);
	void *o[N];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			o[i] = kmem_cache_alloc(c, GFP_KERNEL);
			assert_non_null(o[i]);
			int bad = ctor_state_bad(o[i]);
			if (bad >= 0)
				fail_msg("round %d object %d not constructed at offset %d", round, i,
					 bad);
		}
		assert_true(sk_disjoint(o, N, CTOR_SIZE));
		for (int i = 0; i < N; i++)
			kmem_cache_free(c, o[i]);
	}
	assert_true(atomic_load(&ctor_calls) > 0);

	unsigned long before = atomic_load(&ctor_calls);
	for (int i = 0; i < LOOP; i++) {
		void *x = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(x);
		int bad = ctor_state_bad(x);
		if (bad >= 0)
			fail_msg("recycled object (iteration %d) not constructed at offset %d", i, bad);
		kmem_cache_free(c, x);
	}
	unsigned long delta = atomic_load(&ctor_calls) - before;
	struct slabkit_cache_info info = sk_info("skt_ctor");
	if (sk_cache_backend_is("skt_ctor", "slob")) {
		if (delta > LOOP)
			fail_msg("slob: %lu ctor calls for %d allocations", delta, LOOP);
	} else {
		/* At most one slab repopulated while one object is recycled. */
		unsigned long bound = info.objects_per_slab ? info.objects_per_slab : 1;
		if (delta > bound)
			fail_msg("%lu ctor calls for %d alloc/free pairs of one object "
				 "(objects_per_slab %llu): the ctor runs per allocation",
				 delta, LOOP, (unsigned long long)info.objects_per_slab);
	}
	/* Bulk allocations come constructed too. */
	void *b[64];
	assert_int_equal(kmem_cache_alloc_bulk(c, GFP_KERNEL, 64, b), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(ctor_state_bad(b[i]), -1);
	kmem_cache_free_bulk(c, 64, b);
	kmem_cache_destroy(c);
}

static void check_cache_alignment(const char *name, unsigned size, unsigned align,
				  slab_flags_t flags, size_t want)
{
	enum { N = 40 };
	struct kmem_cache *c = kmem_cache_create(name, size, align, flags, NULL);
	if (!c)
		fail_msg("kmem_cache_create(%s, %u, %u, %#x) = NULL", name, size, align, flags);
	assert_int_equal(kmem_cache_size(c), size);
	void *o[N];
	for (int i = 0; i < N; i++) {
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(o[i]);
		if ((uintptr_t)o[i] % want)
			fail_msg("%s (size %u align %u flags %#x): object %p not aligned to %zu",
				 name, size, align, flags, o[i], want);
		sk_fill(o[i], size, i);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(sk_check(o[i], size, i), SIZE_MAX);
	struct slabkit_cache_info info = sk_info(name);
	assert_true(info.align >= want);
	assert_true(info.size >= size);
	assert_int_equal(info.object_size, size);
	assert_true(sk_disjoint(o, N, size));
	for (int i = 0; i < N; i++)
		kmem_cache_free(c, o[i]);
	kmem_cache_destroy(c);
}

static void test_cache_hwcache_align(void **state)
{
	(void)state;
	static const unsigned sizes[] = { 33, 40, 64, 65, 100, 200, 1000, 3000 };
	char name[32];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(name, sizeof(name), "skt_hw_%u", sizes[i]);
		check_cache_alignment(name, sizes[i], 0, SLAB_HWCACHE_ALIGN, sk_cache_line());
	}
}

static void test_cache_explicit_align(void **state)
{
	(void)state;
	static const unsigned sizes[] = { 24, 200 };
	char name[32];
	for (unsigned align = 8; align <= 4096; align *= 2) {
		for (size_t i = 0; i < 2; i++) {
			snprintf(name, sizeof(name), "skt_al_%u_%u", align, sizes[i]);
			check_cache_alignment(name, sizes[i], align, 0, align);
		}
	}
}

static void test_cache_alloc_node(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_node", 128, 0, 0, NULL);
	assert_non_null(c);
	int nodes[] = { NUMA_NO_NODE, 0, slabkit_current_node() };
	void *o[3][20];
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 20; i++) {
			o[k][i] = kmem_cache_alloc_node(c, GFP_KERNEL, nodes[k]);
			if (!o[k][i])
				fail_msg("kmem_cache_alloc_node(node %d) = NULL", nodes[k]);
			sk_fill(o[k][i], 128, (uint64_t)k * 100 + i);
		}
	assert_int_equal(sk_info("skt_node").in_use, 60);
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 20; i++) {
			assert_int_equal(sk_check(o[k][i], 128, (uint64_t)k * 100 + i), SIZE_MAX);
			kmem_cache_free(c, o[k][i]);
		}
	assert_int_equal(sk_info("skt_node").in_use, 0);
	kmem_cache_destroy(c);
}

static void test_cache_zalloc(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_zalloc", 200, 0, 0, NULL);
	assert_non_null(c);
	for (int round = 0; round < 50; round++) {
		unsigned char *d = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(d);
		memset(d, 0xEE, 200);
		kmem_cache_free(c, d);
		unsigned char *z = round % 2 ? kmem_cache_zalloc(c, GFP_KERNEL)
					     : kmem_cache_alloc(c, GFP_KERNEL | __GFP_ZERO);
		assert_non_null(z);
		size_t bad = sk_first_nonzero(z, 200);
		if (bad != SIZE_MAX)
			fail_msg("%s: byte %zu is 0x%02x",
				 round % 2 ? "kmem_cache_zalloc" : "kmem_cache_alloc(__GFP_ZERO)", bad,
				 z[bad]);
		kmem_cache_free(c, z);
	}
	kmem_cache_destroy(c);
}

static void test_cache_bulk(void **state)
{
	(void)state;
	enum { N = 1500 };
	struct kmem_cache *c = kmem_cache_create("skt_bulk", 64, 0, 0, NULL);
	assert_non_null(c);
	void **p = calloc(N, sizeof(*p));
	void **sorted = calloc(N, sizeof(*p));
	assert_non_null(p);
	for (int round = 0; round < 3; round++) {
		uint64_t in_use = sk_info("skt_bulk").in_use;
		assert_int_equal(kmem_cache_alloc_bulk(c, GFP_KERNEL, N, p), N);
		for (int i = 0; i < N; i++) {
			assert_non_null(p[i]);
			sk_fill(p[i], 64, (uint64_t)round << 32 | (uint64_t)i);
		}
		memcpy(sorted, p, N * sizeof(*p));
		assert_true(sk_disjoint(sorted, N, 64));
		for (int i = 0; i < N; i++)
			assert_int_equal(sk_check(p[i], 64, (uint64_t)round << 32 | (uint64_t)i),
					 SIZE_MAX);
		assert_int_equal(sk_info("skt_bulk").in_use, in_use + N);
		kmem_cache_free_bulk(c, N, p);
		assert_int_equal(sk_info("skt_bulk").in_use, in_use);
	}
	/* Bulk and single calls mix. */
	void *one = kmem_cache_alloc(c, GFP_KERNEL);
	assert_int_equal(kmem_cache_alloc_bulk(c, GFP_KERNEL, 10, p), 10);
	kmem_cache_free(c, one);
	kmem_cache_free_bulk(c, 10, p);
	assert_int_equal(sk_info("skt_bulk").in_use, 0);
	free(p);
	free(sorted);
	kmem_cache_destroy(c);
}

/* Modern Linux lets kfree() free a kmem_cache object.  SLOB may instead
 * report it as misuse; either way, no crash and no leak. */
static void test_cache_kfree_object(void **state)
{
	(void)state;
	sk_expect_panics();
	struct kmem_cache *c = kmem_cache_create("skt_kfree", 80, 0, 0, NULL);
	assert_non_null(c);
	for (int i = 0; i < 100; i++) {
		void *o = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(o);
		memset(o, 0x33, 80);
		unsigned panics = sk_panic_count();
		kfree(o);
		if (sk_panic_count() != panics) {
			if (!sk_cache_backend_is("skt_kfree", "slob"))
				fail_msg("kfree of a kmem_cache object was reported as misuse on %s",
					 sk_info("skt_kfree").backend);
			assert_int_equal(sk_info("skt_kfree").in_use, 1);
			kmem_cache_free(c, o);
		}
		uint64_t in_use = sk_info("skt_kfree").in_use;
		if (in_use != 0)
			fail_msg("kfree of a kmem_cache object neither freed it (in_use %llu) nor "
				 "reported it through the panic hook", (unsigned long long)in_use);
	}
	assert_int_equal(kmem_cache_shrink(c), 0);
	kmem_cache_destroy(c);
}

static void test_cache_shrink(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct kmem_cache *c = kmem_cache_create("skt_shrink", 128, 0, 0, NULL);
	assert_non_null(c);
	void **p = calloc(N, sizeof(*p));
	assert_non_null(p);
	for (int i = 0; i < N; i++) {
		p[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(p[i]);
	}
	struct slabkit_cache_info full = sk_info("skt_shrink");
	assert_int_equal(full.in_use, N);
	if (!sk_cache_backend_is("skt_shrink", "slob"))
		assert_true(full.slabs > 0);
	/* Free in an interleaved order so slabs empty out of order. */
	for (int i = 0; i < N; i += 2)
		kmem_cache_free(c, p[i]);
	for (int i = 1; i < N; i += 2)
		kmem_cache_free(c, p[i]);
	assert_int_equal(kmem_cache_shrink(c), 0);
	struct slabkit_cache_info empty = sk_info("skt_shrink");
	assert_int_equal(empty.in_use, 0);
	assert_int_equal(empty.slabs, 0);
	assert_int_equal(empty.pages, 0);
	/* Still usable after a shrink. */
	void *o = kmem_cache_alloc(c, GFP_KERNEL);
	assert_non_null(o);
	kmem_cache_free(c, o);
	free(p);
	kmem_cache_destroy(c);
}

static void test_cache_destroy(void **state)
{
	(void)state;
	kmem_cache_destroy(NULL);
	assert_int_equal(sk_panic_count(), 0);

	/* An empty cache goes away silently and its name is free again. */
	struct kmem_cache *c = kmem_cache_create("skt_gone", 48, 0, 0, NULL);
	assert_non_null(c);
	void *o = kmem_cache_alloc(c, GFP_KERNEL);
	kmem_cache_free(c, o);
	kmem_cache_destroy(c);
	assert_int_equal(sk_captured("Objects remaining", NULL, NULL), 0);
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("skt_gone", &info), -ENOENT);

	/* With live objects the destroy reports them, naming the cache. */
	sk_expect_messages();
	struct kmem_cache *l = kmem_cache_create("skt_leaky", 48, 0, 0, NULL);
	assert_non_null(l);
	for (int i = 0; i < 3; i++)
		assert_non_null(kmem_cache_alloc(l, GFP_KERNEL));
	kmem_cache_destroy(l);
	sk_assert_reported("Objects remaining", "skt_leaky", NULL);
}

static void test_cache_info_counts(void **state)
{
	(void)state;
	struct kmem_cache *c = kmem_cache_create("skt_info", 72, 0, 0, NULL);
	assert_non_null(c);
	assert_int_equal(kmem_cache_size(c), 72);
	struct slabkit_cache_info i0 = sk_info("skt_info");
	assert_string_equal(i0.name, "skt_info");
	assert_string_equal(i0.front_end, "kmem_cache");
	assert_int_equal(i0.object_size, 72);
	assert_true(i0.size >= 72);
	assert_true(i0.align >= 8);
	assert_int_equal(i0.allocs, 0);
	assert_int_equal(i0.frees, 0);
	assert_int_equal(i0.in_use, 0);

	void *o[10];
	for (int i = 0; i < 10; i++)
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
	struct slabkit_cache_info i1 = sk_info("skt_info");
	assert_int_equal(i1.allocs, 10);
	assert_int_equal(i1.in_use, 10);
	assert_true(i1.high_water >= 10);
	assert_true(i1.bytes_allocated >= 10 * 72);
	for (int i = 0; i < 4; i++)
		kmem_cache_free(c, o[i]);
	struct slabkit_cache_info i2 = sk_info("skt_info");
	assert_int_equal(i2.frees, 4);
	assert_int_equal(i2.in_use, 6);
	assert_true(i2.high_water >= 10);
	for (int i = 0; i < 3; i++)
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
	struct slabkit_cache_info i3 = sk_info("skt_info");
	assert_int_equal(i3.allocs, 13);
	assert_int_equal(i3.in_use, 9);
	assert_true(i3.high_water >= 10);
	for (int i = 0; i < 3; i++)
		kmem_cache_free(c, o[i]);
	for (int i = 4; i < 10; i++)
		kmem_cache_free(c, o[i]);
	struct slabkit_cache_info i4 = sk_info("skt_info");
	assert_int_equal(i4.allocs, 13);
	assert_int_equal(i4.frees, 13);
	assert_int_equal(i4.in_use, 0);
	assert_true(i4.high_water >= 10 && i4.high_water <= 13);
	kmem_cache_destroy(c);
}

struct skt_struct {
	long a;
	char b[40];
};

static void test_cache_flags(void **state)
{
	(void)state;
	sk_expect_messages(); /* "accepted, not yet checked" notices */
	struct kmem_cache *c = kmem_cache_create(
		"skt_debugflags", 64, 0, SLAB_POISON | SLAB_RED_ZONE | SLAB_STORE_USER, NULL);
	assert_non_null(c);
	void *o = kmem_cache_alloc(c, GFP_KERNEL);
	assert_non_null(o);
	memset(o, 1, 64);
	kmem_cache_free(c, o);
	kmem_cache_destroy(c);

	c = kmem_cache_create("skt_acct", 64, 0,
			      SLAB_ACCOUNT | SLAB_RECLAIM_ACCOUNT | SLAB_NO_MERGE | SLAB_PANIC, NULL);
	assert_non_null(c);
	kmem_cache_free(c, kmem_cache_alloc(c, GFP_KERNEL));
	kmem_cache_destroy(c);

	/* Honoured (conformance_rcu.c tests what it promises). */
	c = kmem_cache_create("skt_rcu", 64, 0, SLAB_TYPESAFE_BY_RCU, NULL);
	assert_non_null(c);
	kmem_cache_free(c, kmem_cache_alloc(c, GFP_KERNEL));
	kmem_cache_destroy(c);

	struct kmem_cache *k = KMEM_CACHE(skt_struct, 0);
	assert_non_null(k);
	assert_int_equal(kmem_cache_size(k), sizeof(struct skt_struct));
	struct skt_struct *s = kmem_cache_alloc(k, GFP_KERNEL);
	assert_non_null(s);
	assert_int_equal((uintptr_t)s % __alignof__(struct skt_struct), 0);
	kmem_cache_free(k, s);
	assert_int_equal(sk_info("skt_struct").object_size, sizeof(struct skt_struct));
	kmem_cache_destroy(k);
	assert_int_equal(sk_panic_count(), 0);
}

/* Sizes known at compile time take the header's inline path (the class
 * resolved by the compiler, __kmalloc_class, kmalloc_large); they must
 * land in the same classes as the run-time path, and the requested bytes
 * a class reports must be exactly what callers asked for. */
static void test_kmalloc_constant_sizes(void **state)
{
	(void)state;
	void *p8 = kmalloc(8, GFP_KERNEL), *p65 = kmalloc(65, GFP_KERNEL);
	void *p192 = kzalloc(192, GFP_KERNEL), *p8192 = kmalloc(8192, GFP_KERNEL);
	void *p8193 = kmalloc(8193, GFP_KERNEL);
	assert_true(p8 && p65 && p192 && p8192 && p8193);
	assert_int_equal(ksize(p8), kmalloc_expected_size(8));
	assert_int_equal(ksize(p65), kmalloc_expected_size(65));
	assert_int_equal(ksize(p192), kmalloc_expected_size(192));
	assert_int_equal(ksize(p8192), kmalloc_expected_size(8192));
	assert_int_equal(ksize(p8193), kmalloc_size_roundup(8193));
	assert_true(ksize(p8193) >= 8193);
	for (size_t i = 0; i < 192; i++)
		assert_int_equal(((unsigned char *)p192)[i], 0);
	kfree(p8);
	kfree(p65);
	kfree(p192);
	kfree(p8192);
	kfree(p8193);
	assert_ptr_equal(kmalloc(0, GFP_KERNEL), ZERO_SIZE_PTR);

	/* A direct caller that names a class too small, or none at all, still
	 * gets a block that holds the size. */
	void *q = __kmalloc_class(0, 100, GFP_KERNEL);
	assert_non_null(q);
	assert_true(ksize(q) >= 100);
	kfree(q);
	q = __kmalloc_class(1000, 100, GFP_KERNEL);
	assert_non_null(q);
	assert_true(ksize(q) >= 100);
	kfree(q);

	if (sk_backend_is("slob"))
		return; /* SLOB's heap has no kmalloc-N classes to count in */
	struct slabkit_cache_info a = sk_info("kmalloc-64");
	volatile size_t n40 = 40;
	void *o[4] = { kmalloc(64, GFP_KERNEL), kmalloc(n40, GFP_KERNEL), kmalloc(64, GFP_KERNEL),
		       kzalloc(n40 + 10, GFP_KERNEL) };
	struct slabkit_cache_info b = sk_info("kmalloc-64");
	assert_int_equal(b.allocs - a.allocs, 4);
	assert_int_equal(b.bytes_allocated - a.bytes_allocated, 4 * 64);
	assert_int_equal(b.bytes_requested - a.bytes_requested, 64 + 40 + 64 + 50);
	for (int i = 0; i < 4; i++)
		kfree(o[i]);
}

static const struct CMUnitTest kmalloc_tests[] = {
	SK_TEST(test_kmalloc_zero_size),   SK_TEST(test_kmalloc_size_classes),
	SK_TEST(test_kmalloc_alignment),   SK_TEST(test_kmalloc_ksize_usable),
	SK_TEST(test_kmalloc_zeroing),     SK_TEST(test_kmalloc_array_overflow),
	SK_TEST(test_krealloc),            SK_TEST(test_kmalloc_node),
	SK_TEST(test_kmalloc_large),       SK_TEST(test_kmalloc_impossible),
	SK_TEST(test_kmalloc_constant_sizes),
};

const struct conformance_group conformance_kmalloc = {
	"kmalloc", kmalloc_tests, sizeof(kmalloc_tests) / sizeof(kmalloc_tests[0])
};

/* Counts stay exact past the point where the per-CPU fast paths fold their
 * counters (every 255 operations of a list slot, 32767 frees of an array
 * slot), with threads allocating, freeing and reading at once. */
struct count_ctx {
	struct kmem_cache *cache;
	long pairs;
};

static void *count_pairs_main(void *arg)
{
	struct count_ctx *ctx = arg;
	void *held[8];
	for (long i = 0; i < ctx->pairs; i++) {
		/* Mix single pairs and short bursts so both slot ends move. */
		int burst = (int)(i % 8) + 1;
		for (int j = 0; j < burst; j++)
			held[j] = kmem_cache_alloc(ctx->cache, GFP_KERNEL);
		for (int j = 0; j < burst; j++)
			kmem_cache_free(ctx->cache, held[j]);
	}
	return NULL;
}

static void test_cache_counts_exact_many(void **state)
{
	(void)state;
	struct count_ctx ctx = { kmem_cache_create("skt_counts", 48, 0, 0, NULL), 20000 };
	assert_non_null(ctx.cache);
	long expect = 0;
	for (long i = 0; i < ctx.pairs; i++)
		expect += (i % 8) + 1;

	/* One thread first: exact after every phase. */
	count_pairs_main(&ctx);
	struct slabkit_cache_info one = sk_info("skt_counts");
	assert_int_equal(one.allocs, (uint64_t)expect);
	assert_int_equal(one.frees, (uint64_t)expect);
	assert_int_equal(one.in_use, 0);

	/* Three threads, while this one keeps reading: counts only grow, and
	 * in_use never exceeds what three threads can hold (8 each). */
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, count_pairs_main, &ctx), 0);
	uint64_t last_allocs = one.allocs;
	for (int r = 0; r < 200; r++) {
		struct slabkit_cache_info mid = sk_info("skt_counts");
		assert_true(mid.allocs >= last_allocs);
		assert_true(mid.in_use <= 24);
		last_allocs = mid.allocs;
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	struct slabkit_cache_info all = sk_info("skt_counts");
	assert_int_equal(all.allocs, (uint64_t)expect * 4);
	assert_int_equal(all.frees, (uint64_t)expect * 4);
	assert_int_equal(all.in_use, 0);
	assert_true(all.high_water >= 1);
	kmem_cache_destroy(ctx.cache);
}

static const struct CMUnitTest kmem_cache_tests[] = {
	SK_TEST(test_cache_ctor),          SK_TEST(test_cache_hwcache_align),
	SK_TEST(test_cache_explicit_align), SK_TEST(test_cache_alloc_node),
	SK_TEST(test_cache_zalloc),        SK_TEST(test_cache_bulk),
	SK_TEST(test_cache_kfree_object),  SK_TEST(test_cache_shrink),
	SK_TEST(test_cache_destroy),       SK_TEST(test_cache_info_counts),
	SK_TEST(test_cache_flags),         SK_TEST(test_cache_counts_exact_many),
};

const struct conformance_group conformance_kmem_cache = {
	"kmem_cache", kmem_cache_tests, sizeof(kmem_cache_tests) / sizeof(kmem_cache_tests[0])
};
