/*
 * Conformance, FreeBSD front ends: malloc(9) and UMA zones.
 * See conformance.c for how the suite is run.
 */
#include "conformance.h"

/* ======================================================================
 * FreeBSD malloc(9)
 * ====================================================================== */

static void test_bsd_malloc_basic(void **state)
{
	(void)state;
	static const size_t sizes[] = { 1, 15, 16, 17, 100, 256, 257, 384, 385, 1000, 4096,
					65535, 65536, 65537, 200000, 1u << 20 };
	static const int flags[] = { M_WAITOK, M_NOWAIT, M_WAITOK | M_NODUMP, M_NOWAIT | M_NOVM };
	for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
		void *p[sizeof(sizes) / sizeof(sizes[0])];
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			p[i] = bsd_malloc(sizes[i], M_TEST, flags[f]);
			if (!p[i])
				fail_msg("bsd_malloc(%zu, flags %#x) = NULL", sizes[i], flags[f]);
			size_t u = bsd_malloc_usable_size(p[i]);
			if (u < sizes[i])
				fail_msg("bsd_malloc_usable_size(bsd_malloc(%zu)) = %zu", sizes[i], u);
			if ((uintptr_t)p[i] % sizeof(void *))
				fail_msg("bsd_malloc(%zu) = %p is not pointer aligned", sizes[i], p[i]);
			sk_fill(p[i], u, i + f * 100);
		}
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			assert_int_equal(sk_check(p[i], bsd_malloc_usable_size(p[i]), i + f * 100),
					 SIZE_MAX);
			bsd_free(p[i], M_TEST);
		}
	}
	/* malloc(0) gives a real (minimum-size) block; free(NULL) does nothing. */
	void *z = bsd_malloc(0, M_TEST, M_WAITOK);
	assert_non_null(z);
	bsd_free(z, M_TEST);
	bsd_free(NULL, M_TEST);
	assert_int_equal(sk_panic_count(), 0);
}

static void test_bsd_malloc_zero(void **state)
{
	(void)state;
	static const size_t sizes[] = { 16, 100, 384, 4000, 65536, 70000 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int round = 0; round < 4; round++) {
			unsigned char *d = bsd_malloc(sizes[i], M_TEST, M_WAITOK);
			assert_non_null(d);
			memset(d, 0xC3, bsd_malloc_usable_size(d));
			bsd_free(d, M_TEST);
			unsigned char *z = bsd_malloc(sizes[i], M_TEST,
						      (round % 2 ? M_NOWAIT : M_WAITOK) | M_ZERO);
			assert_non_null(z);
			size_t bad = sk_first_nonzero(z, sizes[i]);
			if (bad != SIZE_MAX)
				fail_msg("bsd_malloc(%zu, M_ZERO): byte %zu is 0x%02x", sizes[i], bad,
					 z[bad]);
			bsd_free(z, M_TEST);
		}
	}
}

/* Exactly one of M_WAITOK and M_NOWAIT: anything else is reported through
 * a message and the panic hook, and (the hook returning) gives NULL. */
static void test_bsd_malloc_flags_required(void **state)
{
	(void)state;
	sk_expect_panics();
	static const int bad_flags[] = { 0, M_WAITOK | M_NOWAIT, M_ZERO, M_ZERO | M_WAITOK | M_NOWAIT };
	struct malloc_type_stats_sum before = type_stats(M_TEST);
	for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
		unsigned panics = sk_panic_count();
		void *p = bsd_malloc(64, M_TEST, bad_flags[i]);
		if (p)
			fail_msg("bsd_malloc(64, flags %#x) = %p, expected NULL", bad_flags[i], p);
		if (sk_panic_count() != panics + 1)
			fail_msg("bsd_malloc(64, flags %#x): %u panic(s), expected 1", bad_flags[i],
				 sk_panic_count() - panics);
	}
	struct malloc_type_stats_sum after = type_stats(M_TEST);
	assert_int_equal(after.allocs, before.allocs);
	/* The process is healthy afterwards. */
	void *p = bsd_malloc(64, M_TEST, M_WAITOK);
	assert_non_null(p);
	bsd_free(p, M_TEST);
}

/* realloc keeps the block while alloc/2 < size <= alloc, moves otherwise,
 * and keeps the content either way. */
static void check_bsd_realloc_from(size_t first)
{
	unsigned char *p = bsd_realloc(NULL, first, M_TEST, M_WAITOK);
	assert_non_null(p);
	size_t keep = first; /* bytes whose content is known */
	uint64_t tag = first;
	sk_fill(p, keep, tag);
	size_t u = bsd_malloc_usable_size(p);
	assert_true(u >= first);

	size_t same[] = { u, u / 2 + 1, (u / 2 + u) / 2 + 1 };
	for (size_t i = 0; i < 3; i++) {
		unsigned char *q = bsd_realloc(p, same[i], M_TEST, M_WAITOK);
		if (q != p)
			fail_msg("bsd_realloc(%zu-byte block, %zu) moved it (usable %zu)", first,
				 same[i], u);
		if (same[i] < keep)
			keep = same[i];
		assert_int_equal(sk_check(q, keep, tag), SIZE_MAX);
	}
	/* Growing past the usable size moves, keeping content. */
	unsigned char *q = bsd_realloc(p, u + 1, M_TEST, M_WAITOK);
	assert_non_null(q);
	if (q == p)
		fail_msg("bsd_realloc(%zu-byte block, %zu) did not move (usable %zu)", first, u + 1,
			 u);
	assert_int_equal(sk_check(q, keep, tag), SIZE_MAX);
	assert_true(bsd_malloc_usable_size(q) >= u + 1);
	sk_fill(q, u + 1, tag + 1);
	keep = u + 1;
	tag++;
	/* Shrinking to half or less moves, keeping the prefix. */
	size_t u2 = bsd_malloc_usable_size(q);
	size_t small = u2 / 2;
	unsigned char *r = bsd_realloc(q, small, M_TEST, M_NOWAIT);
	assert_non_null(r);
	if (r == q)
		fail_msg("bsd_realloc(block of usable %zu, %zu) did not move", u2, small);
	assert_int_equal(sk_check(r, small < keep ? small : keep, tag), SIZE_MAX);
	bsd_free(r, M_TEST);
}

static void test_bsd_realloc(void **state)
{
	(void)state;
	struct malloc_type_stats_sum before = type_stats(M_TEST);
	static const size_t first[] = { 100, 300, 1000, 5000, 40000, 100000, 300000 };
	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++)
		check_bsd_realloc_from(first[i]);
	struct malloc_type_stats_sum after = type_stats(M_TEST);
	assert_int_equal(after.allocs - before.allocs, after.frees - before.frees);
	assert_int_equal(after.memalloced - before.memalloced, after.memfreed - before.memfreed);
}

static void test_bsd_reallocf(void **state)
{
	(void)state;
	/* realloc failing leaves the block; reallocf failing frees it. */
	unsigned char *p = bsd_malloc(64, M_TEST, M_WAITOK);
	assert_non_null(p);
	sk_fill(p, 64, 0xF00D);
	struct malloc_type_stats_sum s0 = type_stats(M_TEST);
	assert_null(bsd_realloc(p, v_size_max / 2, M_TEST, M_NOWAIT));
	struct malloc_type_stats_sum s1 = type_stats(M_TEST);
	assert_int_equal(s1.frees, s0.frees);
	assert_int_equal(sk_check(p, 64, 0xF00D), SIZE_MAX);

	assert_null(bsd_reallocf(p, v_size_max / 2, M_TEST, M_NOWAIT));
	struct malloc_type_stats_sum s2 = type_stats(M_TEST);
	assert_int_equal(s2.frees, s1.frees + 1);
	assert_int_equal(s2.allocs, s1.allocs);

	/* A successful reallocf is a realloc. */
	p = bsd_reallocf(NULL, 32, M_TEST, M_WAITOK);
	assert_non_null(p);
	sk_fill(p, 32, 7);
	unsigned char *q = bsd_reallocf(p, 5000, M_TEST, M_WAITOK);
	assert_non_null(q);
	assert_int_equal(sk_check(q, 32, 7), SIZE_MAX);
	bsd_free(q, M_TEST);
	assert_int_equal(sk_panic_count(), 0);
}

static void test_bsd_zfree_mallocarray(void **state)
{
	(void)state;
	struct malloc_type_stats_sum s0 = type_stats(M_TEST);
	void *p = bsd_malloc(300, M_TEST, M_WAITOK);
	memset(p, 0xAB, 300);
	bsd_zfree(p, M_TEST);
	void *big = bsd_malloc(100000, M_TEST, M_WAITOK);
	memset(big, 0xAB, 100000);
	bsd_zfree(big, M_TEST);
	bsd_zfree(NULL, M_TEST);
	struct malloc_type_stats_sum s1 = type_stats(M_TEST);
	assert_int_equal(s1.allocs - s0.allocs, 2);
	assert_int_equal(s1.frees - s0.frees, 2);

	unsigned *a = bsd_mallocarray(10, 16, M_TEST, M_WAITOK | M_ZERO);
	assert_non_null(a);
	assert_true(bsd_malloc_usable_size(a) >= 160);
	assert_int_equal(sk_first_nonzero(a, 160), SIZE_MAX);
	bsd_free(a, M_TEST);

	/* FreeBSD panics on overflow; with the hook returning, NULL. */
	sk_expect_panics();
	assert_null(bsd_mallocarray(v_half_plus, 2, M_TEST, M_NOWAIT));
	assert_null(bsd_mallocarray(3, v_size_max / 2, M_TEST, M_NOWAIT));
	struct malloc_type_stats_sum s2 = type_stats(M_TEST);
	assert_int_equal(s2.allocs, s1.allocs + 1);
}

static void test_bsd_domainset(void **state)
{
	(void)state;
	const struct domainset *ds[] = { DOMAINSET_RR(), DOMAINSET_FT(), DOMAINSET_PREF(0),
					 DOMAINSET_FIXED(0) };
	static const size_t sizes[] = { 16, 200, 3000, 65536, 200000 };
	for (size_t d = 0; d < 4; d++) {
		assert_non_null(ds[d]);
		for (int rep = 0; rep < 5; rep++)
			for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
				unsigned char *p = bsd_malloc_domainset(sizes[i], M_TEST, ds[d],
									rep % 2 ? M_NOWAIT : M_WAITOK);
				if (!p)
					fail_msg("bsd_malloc_domainset(%zu, policy %zu) = NULL",
						 sizes[i], d);
				assert_true(bsd_malloc_usable_size(p) >= sizes[i]);
				memset(p, 0x42, sizes[i]);
				bsd_free(p, M_TEST);
			}
	}
	/* M_ZERO with a policy. */
	unsigned char *z = bsd_malloc_domainset(500, M_TEST, DOMAINSET_RR(), M_WAITOK | M_ZERO);
	assert_non_null(z);
	assert_int_equal(sk_first_nonzero(z, 500), SIZE_MAX);
	bsd_free(z, M_TEST);
}

/* Per-type statistics: allocs, frees, bytes, the size classes used.
 * memalloced counts the blocks handed out (their class size, which may
 * exceed the usable size when slabkit keeps a header in the block). */
static void test_bsd_type_stats(void **state)
{
	(void)state;
	static struct malloc_type local[1] = { { NULL, M_VERSION, "sktstats", NULL } };
	slabkit_malloc_type_register(local);
	struct malloc_type_stats_sum s0 = type_stats(local);
	assert_int_equal(s0.allocs, 0);
	assert_int_equal(s0.memalloced, 0);

	static const size_t sizes[] = { 10, 100, 300, 1000, 5000, 100000 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	void *p[N];
	uint64_t usable = 0, prev_bytes = 0;
	for (size_t i = 0; i < N; i++) {
		p[i] = bsd_malloc(sizes[i], local, M_WAITOK);
		assert_non_null(p[i]);
		size_t u = bsd_malloc_usable_size(p[i]);
		usable += u;
		struct malloc_type_stats_sum si = type_stats(local);
		uint64_t block = si.memalloced - prev_bytes;
		prev_bytes = si.memalloced;
		if (block < u)
			fail_msg("bsd_malloc(%zu): memalloced grew by %llu, usable size is %zu",
				 sizes[i], (unsigned long long)block, u);
		/* The class bit of this block is set: the class that holds it,
		 * or bit 63 for a large (page-path) block. */
		int cls = bsd_class_index(block);
		if (!(si.size_mask & (1ull << cls)) && !(si.size_mask & (1ull << 63)))
			fail_msg("bsd_malloc(%zu): %llu-byte block, size_mask %#llx lacks bit %d",
				 sizes[i], (unsigned long long)block,
				 (unsigned long long)si.size_mask, cls);
	}
	struct malloc_type_stats_sum s1 = type_stats(local);
	assert_int_equal(s1.allocs, N);
	assert_int_equal(s1.frees, 0);
	assert_true(s1.memalloced >= usable);
	assert_int_equal(s1.memfreed, 0);
	assert_true(s1.size_mask & (1ull << 63)); /* the 100000-byte one is large */
	for (size_t i = 0; i < N; i++)
		bsd_free(p[i], local);
	struct malloc_type_stats_sum s2 = type_stats(local);
	assert_int_equal(s2.frees, N);
	assert_int_equal(s2.memfreed, s1.memalloced);
	assert_int_equal(s2.memalloced, s1.memalloced);

	/* Unregistering a type without live allocations is silent. */
	slabkit_malloc_type_unregister(local);
	assert_int_equal(sk_captured("leaked", NULL, NULL), 0);
}

/* A MALLOC_DEFINE'd type shows in vmstat -m once used. */
static void test_bsd_vmstat_m(void **state)
{
	(void)state;
	void *p = bsd_malloc(128, M_TEST, M_WAITOK);
	void *q = bsd_malloc(128, M_TEST2, M_WAITOK);
	assert_non_null(p);
	assert_non_null(q);
	assert_true(sk_report_has(slabkit_report_vmstat_m, "test"));
	assert_true(sk_report_has(slabkit_report_vmstat_m, "test2"));
	bsd_free(p, M_TEST);
	bsd_free(q, M_TEST2);
}

/* Unloading a type with live allocations warns with FreeBSD's wording. */
static void test_bsd_unregister_leak(void **state)
{
	(void)state;
	sk_expect_messages();
	static struct malloc_type leaky[1] = { { NULL, M_VERSION, "sktleak", NULL } };
	slabkit_malloc_type_register(leaky);
	void *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = bsd_malloc(100, leaky, M_WAITOK);
		assert_non_null(p[i]);
	}
	void *gone = bsd_malloc(2000, leaky, M_WAITOK);
	bsd_free(gone, leaky);
	struct malloc_type_stats_sum s = type_stats(leaky);
	assert_int_equal(s.allocs - s.frees, 3);
	char want[160];
	snprintf(want, sizeof(want),
		 "memory type sktleak leaked memory on destroy (3 allocations, %llu bytes leaked)",
		 (unsigned long long)(s.memalloced - s.memfreed));
	assert_true(s.memalloced - s.memfreed >= 3 * 100);
	slabkit_malloc_type_unregister(leaky);
	sk_assert_reported(want, NULL, NULL);
	/* The three blocks are leaked on purpose: the type is gone. */
}

/* bsd_free of a block with the wrong type: reported, nothing freed. */
static void check_wrong_type_refused(size_t size)
{
	unsigned char *p = bsd_malloc(size, M_TEST, M_WAITOK);
	assert_non_null(p);
	sk_fill(p, size, 0xBEEF);
	struct malloc_type_stats_sum a0 = type_stats(M_TEST), b0 = type_stats(M_TEST2);
	unsigned panics = sk_panic_count();
	bsd_free(p, M_TEST2);
	assert_int_equal(sk_panic_count(), panics + 1);
	char ptr[32];
	sk_assert_reported("free", sk_ptr_text(p, ptr), NULL);
	struct malloc_type_stats_sum a1 = type_stats(M_TEST), b1 = type_stats(M_TEST2);
	assert_int_equal(a1.frees, a0.frees);
	assert_int_equal(b1.frees, b0.frees);
	/* Not freed: a new allocation cannot be handed this block. */
	void *others[64];
	for (int i = 0; i < 64; i++) {
		others[i] = bsd_malloc(size, M_TEST, M_WAITOK);
		assert_ptr_not_equal(others[i], p);
		memset(others[i], 0, size);
	}
	assert_int_equal(sk_check(p, size, 0xBEEF), SIZE_MAX);
	for (int i = 0; i < 64; i++)
		bsd_free(others[i], M_TEST);
	bsd_free(p, M_TEST);
	assert_int_equal(type_stats(M_TEST).frees, a0.frees + 65);
}

/*
 * The type check on free: always for large blocks (their type is in the
 * page descriptor, free of charge); for class blocks only with the
 * consistency checks of SLABKIT_DEBUG=F, which keep the type in the
 * block's last 8 bytes (without it a request of n bytes takes exactly the
 * class of n, as FreeBSD's does without INVARIANTS).
 */
static void test_bsd_free_wrong_type(void **state)
{
	(void)state;
	sk_expect_panics();
	check_wrong_type_refused(100000);

	/* Without the option: a class block holds all its bytes. */
	unsigned char *p = bsd_malloc(64, M_TEST, M_WAITOK);
	assert_int_equal(bsd_malloc_usable_size(p), 64);
	bsd_free(p, M_TEST);

	setenv("SLABKIT_DEBUG", "F", 1);
	assert_int_equal(sk_fresh_init(NULL), 0);
	check_wrong_type_refused(200);
	p = bsd_malloc(64, M_TEST, M_WAITOK);
	assert_true(bsd_malloc_usable_size(p) >= 64);
	bsd_free(p, M_TEST);
	unsetenv("SLABKIT_DEBUG");
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* ======================================================================
 * FreeBSD UMA
 * ====================================================================== */

#define ITEM_INIT_MAGIC 0x1417AA11C0FFEE00ULL /* word 0 while the item is init'ed */
#define ITEM_LIVE 0x11FE11FE11FE11FEULL       /* word 1 between ctor and dtor */
#define ITEM_DEAD 0xDEADDEADDEADDEADULL

/* What one zone's hooks saw.  `bad` counts contract violations seen inside
 * a hook (ctor on an item init never ran on, dtor of an item not
 * constructed, fini of an item not init'ed, wrong size). */
struct uma_counts {
	atomic_long init, fini, ctor, dtor, bad;
	atomic_int fail_ctor;
	_Atomic(void *) ctor_arg;
	_Atomic(void *) dtor_arg;
	int size;
	bool check_init; /* items must carry ITEM_INIT_MAGIC when constructed */
};

static void uma_counts_reset(struct uma_counts *n, int size, bool check_init)
{
	atomic_store(&n->init, 0);
	atomic_store(&n->fini, 0);
	atomic_store(&n->ctor, 0);
	atomic_store(&n->dtor, 0);
	atomic_store(&n->bad, 0);
	atomic_store(&n->fail_ctor, 0);
	atomic_store(&n->ctor_arg, NULL);
	atomic_store(&n->dtor_arg, NULL);
	n->size = size;
	n->check_init = check_init;
}

static int hk_ctor(struct uma_counts *n, void *mem, int size, void *arg, int flags)
{
	uint64_t *w = mem;
	atomic_fetch_add(&n->ctor, 1);
	atomic_store(&n->ctor_arg, arg);
	if (size != n->size || (n->check_init && w[0] != ITEM_INIT_MAGIC))
		atomic_fetch_add(&n->bad, 1);
	if (atomic_load(&n->fail_ctor))
		return ENOMEM;
	w[1] = ITEM_LIVE;
	return 0;
}

static void hk_dtor(struct uma_counts *n, void *mem, int size, void *arg)
{
	uint64_t *w = mem;
	atomic_fetch_add(&n->dtor, 1);
	atomic_store(&n->dtor_arg, arg);
	if (size != n->size || w[1] != ITEM_LIVE)
		atomic_fetch_add(&n->bad, 1);
	w[1] = ITEM_DEAD;
}

static int hk_init(struct uma_counts *n, void *mem, int size, int flags)
{
	atomic_fetch_add(&n->init, 1);
	if (size != n->size)
		atomic_fetch_add(&n->bad, 1);
	((uint64_t *)mem)[0] = ITEM_INIT_MAGIC;
	return 0;
}

static void hk_fini(struct uma_counts *n, void *mem, int size)
{
	uint64_t *w = mem;
	atomic_fetch_add(&n->fini, 1);
	if (size != n->size || w[0] != ITEM_INIT_MAGIC)
		atomic_fetch_add(&n->bad, 1);
	w[0] = 0;
}

#define UMA_HOOK_FN static __attribute__((unused))
#define UMA_HOOKS(N)                                                                     \
	static struct uma_counts N;                                                      \
	UMA_HOOK_FN int N##_ctor(void *m, int s, void *a, int f) { return hk_ctor(&N, m, s, a, f); } \
	UMA_HOOK_FN void N##_dtor(void *m, int s, void *a) { hk_dtor(&N, m, s, a); }      \
	UMA_HOOK_FN int N##_init(void *m, int s, int f) { return hk_init(&N, m, s, f); }  \
	UMA_HOOK_FN void N##_fini(void *m, int s) { hk_fini(&N, m, s); }

UMA_HOOKS(hz)
UMA_HOOKS(hf)
UMA_HOOKS(hd)
UMA_HOOKS(hr)
UMA_HOOKS(hp)
UMA_HOOKS(hs)
UMA_HOOKS(hc)

static int token_a, token_b;

/* ctor/dtor on every allocation and free, with the caller's arg; init/fini
 * once per item per slab lifetime, so re-allocating a freed item does not
 * run init again; after uma_zdestroy every init'ed item was fini'ed. */
static void test_uma_hooks(void **state)
{
	(void)state;
	enum { N = 100, LOOP = 1000 };
	uma_counts_reset(&hz, 128, true);
	uma_zone_t z = uma_zcreate("skt_uma_hooks", 128, hz_ctor, hz_dtor, hz_init, hz_fini,
				   UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_string_equal(uma_zone_name(z), "skt_uma_hooks");
	void *it[N];
	for (int i = 0; i < N; i++) {
		it[i] = uma_zalloc_arg(z, &token_a, M_WAITOK);
		assert_non_null(it[i]);
		uint64_t *w = it[i];
		assert_true(w[0] == ITEM_INIT_MAGIC);
		assert_true(w[1] == ITEM_LIVE);
		sk_fill(w + 2, 128 - 16, i);
	}
	assert_int_equal(atomic_load(&hz.ctor), N);
	assert_ptr_equal(atomic_load(&hz.ctor_arg), &token_a);
	assert_true(atomic_load(&hz.init) >= N);
	assert_int_equal(uma_zone_get_cur(z), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(sk_check((uint64_t *)it[i] + 2, 128 - 16, i), SIZE_MAX);
	assert_true(sk_disjoint(it, N, 128));
	for (int i = 0; i < N; i++)
		uma_zfree_arg(z, it[i], &token_b);
	assert_int_equal(atomic_load(&hz.dtor), N);
	assert_ptr_equal(atomic_load(&hz.dtor_arg), &token_b);
	assert_int_equal(uma_zone_get_cur(z), 0);

	long init0 = atomic_load(&hz.init);
	for (int i = 0; i < LOOP; i++) {
		void *x = uma_zalloc(z, i % 2 ? M_NOWAIT : M_WAITOK);
		assert_non_null(x);
		uma_zfree(z, x);
	}
	assert_int_equal(atomic_load(&hz.ctor), N + LOOP);
	assert_int_equal(atomic_load(&hz.dtor), N + LOOP);
	long delta = atomic_load(&hz.init) - init0;
	struct slabkit_cache_info info = sk_info("skt_uma_hooks");
	assert_string_equal(info.front_end, "uma");
	long bound = sk_cache_backend_is("skt_uma_hooks", "slob") ? LOOP
		     : (long)(info.objects_per_slab ? info.objects_per_slab : 1);
	if (delta > bound)
		fail_msg("init ran %ld times over %d alloc/free pairs (bound %ld): "
			 "init must run once per item per slab lifetime", delta, LOOP, bound);
	assert_int_equal(atomic_load(&hz.bad), 0);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&hz.init), atomic_load(&hz.fini));
	assert_int_equal(atomic_load(&hz.bad), 0);
}

/* A failing ctor fails the allocation (M_WAITOK too), skips the dtor and
 * does not leak the item. */
static void test_uma_ctor_failure(void **state)
{
	(void)state;
	uma_counts_reset(&hf, 64, true);
	uma_zone_t z = uma_zcreate("skt_uma_fail", 64, hf_ctor, hf_dtor, hf_init, hf_fini,
				   UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	void *keep = uma_zalloc(z, M_WAITOK);
	assert_non_null(keep);
	atomic_store(&hf.fail_ctor, 1);
	for (int i = 0; i < 500; i++)
		assert_null(uma_zalloc(z, i % 2 ? M_NOWAIT : M_WAITOK));
	atomic_store(&hf.fail_ctor, 0);
	assert_int_equal(atomic_load(&hf.ctor), 501);
	assert_int_equal(atomic_load(&hf.dtor), 0);
	assert_int_equal(uma_zone_get_cur(z), 1);
	assert_int_equal(sk_info("skt_uma_fail").in_use, 1);
	void *again = uma_zalloc(z, M_WAITOK);
	assert_non_null(again);
	uma_zfree(z, again);
	uma_zfree(z, keep);
	assert_int_equal(uma_zone_get_cur(z), 0);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("skt_uma_fail").slabs, 0);
	assert_int_equal(atomic_load(&hf.bad), 0);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&hf.init), atomic_load(&hf.fini));
}

static void test_uma_limit(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_uma_limit", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	assert_int_equal(uma_zone_get_max(z), 0);
	int eff = uma_zone_set_max(z, 100);
	assert_true(eff >= 100);
	assert_int_equal(uma_zone_get_max(z), eff);
	assert_int_equal(sk_info("skt_uma_limit").zone_max, eff);

	int cap = eff + 64;
	void **it = calloc((size_t)cap, sizeof(*it));
	assert_non_null(it);
	int ok = 0;
	while (ok < cap) {
		void *x = uma_zalloc(z, M_NOWAIT);
		if (!x)
			break;
		it[ok++] = x;
	}
	if (ok != eff)
		fail_msg("uma_zone_set_max(100) = %d, but %d M_NOWAIT allocations succeeded", eff,
			 ok);
	assert_int_equal(uma_zone_get_cur(z), eff);
	assert_null(uma_zalloc(z, M_NOWAIT));
	uma_zfree(z, it[--ok]);
	assert_int_equal(uma_zone_get_cur(z), eff - 1);
	it[ok] = uma_zalloc(z, M_NOWAIT);
	assert_non_null(it[ok]);
	ok++;
	assert_null(uma_zalloc(z, M_NOWAIT | M_ZERO));
	while (ok > 0)
		uma_zfree(z, it[--ok]);
	assert_int_equal(uma_zone_get_cur(z), 0);
	free(it);
	uma_zdestroy(z);
}

struct waiter_ctx {
	uma_zone_t zone;
	void *item;
	atomic_int freed;
	atomic_int done;
};

static void *freer_thread(void *arg)
{
	struct waiter_ctx *w = arg;
	sk_sleep_ms(50);
	atomic_store(&w->freed, 1);
	uma_zfree(w->zone, w->item);
	/* Watchdog: the blocked allocation must come back soon after. */
	for (int i = 0; i < 1000 && !atomic_load(&w->done); i++)
		sk_sleep_ms(10);
	if (!atomic_load(&w->done)) {
		fprintf(stderr, "uma_zalloc(M_WAITOK) still blocked 10 s after a free: hang\n");
		_exit(3);
	}
	return NULL;
}

/* M_WAITOK at the limit waits for a free. */
static void test_uma_limit_waitok_blocks(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_uma_wait", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	int eff = uma_zone_set_max(z, 4);
	assert_true(eff >= 4);
	void **it = calloc((size_t)eff + 1, sizeof(*it));
	for (int i = 0; i < eff; i++) {
		it[i] = uma_zalloc(z, M_NOWAIT);
		assert_non_null(it[i]);
	}
	assert_null(uma_zalloc(z, M_NOWAIT));
	struct waiter_ctx w = { .zone = z, .item = it[0] };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, freer_thread, &w), 0);
	uint64_t t0 = sk_now_ns();
	void *x = uma_zalloc(z, M_WAITOK);
	uint64_t waited_ms = (sk_now_ns() - t0) / 1000000;
	int freed_before = atomic_load(&w.freed);
	atomic_store(&w.done, 1);
	pthread_join(t, NULL);
	assert_non_null(x);
	if (!freed_before)
		fail_msg("uma_zalloc(M_WAITOK) at the limit returned after %llu ms, before any free",
			 (unsigned long long)waited_ms);
	/* No bound on waited_ms: on a loaded machine the freer's 50 ms may
	 * have run out before t0 was read.  The order is what counts: the
	 * allocation came back only after the free began (freed_before). */
	assert_int_equal(uma_zone_get_cur(z), eff);
	uma_zfree(z, x);
	for (int i = 1; i < eff; i++)
		uma_zfree(z, it[i]);
	assert_int_equal(uma_zone_get_cur(z), 0);
	free(it);
	uma_zdestroy(z);
}

static void test_uma_zalloc_domain(void **state)
{
	(void)state;
	uma_counts_reset(&hd, 96, true);
	uma_zone_t z = uma_zcreate("skt_uma_domain", 96, hd_ctor, hd_dtor, hd_init, hd_fini,
				   UMA_ALIGN_PTR, UMA_ZONE_FIRSTTOUCH);
	assert_non_null(z);
	void *it[40];
	for (int i = 0; i < 40; i++) {
		it[i] = uma_zalloc_domain(z, &token_a, 0, i % 2 ? M_NOWAIT : M_WAITOK);
		assert_non_null(it[i]);
		assert_true(((uint64_t *)it[i])[1] == ITEM_LIVE);
	}
	assert_ptr_equal(atomic_load(&hd.ctor_arg), &token_a);
	assert_int_equal(uma_zone_get_cur(z), 40);
	/* The plain form: no argument, domain 0, may sleep. */
	void *plain = uma_zalloc_domain(z, NULL, 0, M_WAITOK);
	assert_non_null(plain);
	assert_null(atomic_load(&hd.ctor_arg));
	uma_zfree(z, plain);
	for (int i = 0; i < 40; i++)
		uma_zfree_arg(z, it[i], &token_b);
	assert_ptr_equal(atomic_load(&hd.dtor_arg), &token_b);
	assert_int_equal(atomic_load(&hd.ctor), 41);
	assert_int_equal(atomic_load(&hd.dtor), 41);
	assert_int_equal(atomic_load(&hd.bad), 0);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&hd.init), atomic_load(&hd.fini));
}

/* uma_reclaim at every level leaves every cache usable and live objects
 * intact; with everything freed, DRAIN_CPU leaves no slab anywhere. */
static void test_uma_reclaim(void **state)
{
	(void)state;
	enum { LIVE = 50 };
	uma_counts_reset(&hr, 1000, true);
	uma_zone_t z1 = uma_zcreate("skt_rec_small", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	uma_zone_t z2 = uma_zcreate("skt_rec_big", 1000, hr_ctor, hr_dtor, hr_init, hr_fini,
				    UMA_ALIGN_PTR, 0);
	struct kmem_cache *c = kmem_cache_create("skt_rec_cache", 200, 0, 0, NULL);
	assert_non_null(z1);
	assert_non_null(z2);
	assert_non_null(c);
	void *a[LIVE], *b[LIVE], *k[LIVE];
	for (int i = 0; i < LIVE; i++) {
		a[i] = uma_zalloc(z1, M_WAITOK);
		b[i] = uma_zalloc(z2, M_WAITOK);
		k[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_true(a[i] && b[i] && k[i]);
		sk_fill(a[i], 64, i);
		sk_fill((uint64_t *)b[i] + 2, 1000 - 16, i);
		sk_fill(k[i], 200, i);
	}
	static const int levels[] = { UMA_RECLAIM_TRIM, UMA_RECLAIM_DRAIN, UMA_RECLAIM_DRAIN_CPU };
	for (int l = 0; l < 3; l++) {
		void *churn[300];
		for (int i = 0; i < 300; i++)
			churn[i] = uma_zalloc(i % 2 ? z1 : z2, M_WAITOK);
		for (int i = 0; i < 300; i++)
			uma_zfree(i % 2 ? z1 : z2, churn[i]);
		uma_reclaim(levels[l]);
		for (int i = 0; i < LIVE; i++) {
			assert_int_equal(sk_check(a[i], 64, i), SIZE_MAX);
			assert_int_equal(sk_check((uint64_t *)b[i] + 2, 1000 - 16, i), SIZE_MAX);
			assert_int_equal(sk_check(k[i], 200, i), SIZE_MAX);
		}
		void *x = uma_zalloc(z1, M_NOWAIT), *y = uma_zalloc(z2, M_WAITOK);
		void *v = kmem_cache_alloc(c, GFP_KERNEL), *m = kmalloc(500, GFP_KERNEL);
		assert_true(x && y && v && m);
		uma_zfree(z1, x);
		uma_zfree(z2, y);
		kmem_cache_free(c, v);
		kfree(m);
	}
	for (int i = 0; i < LIVE; i++) {
		uma_zfree(z1, a[i]);
		uma_zfree(z2, b[i]);
		kmem_cache_free(c, k[i]);
	}
	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("skt_rec_small").slabs, 0);
	assert_int_equal(sk_info("skt_rec_big").slabs, 0);
	assert_int_equal(sk_info("skt_rec_cache").slabs, 0);
	assert_int_equal(atomic_load(&hr.init), atomic_load(&hr.fini));
	assert_int_equal(atomic_load(&hr.bad), 0);

	/* uma_zone_reclaim on one zone. */
	void *again[100];
	for (int i = 0; i < 100; i++)
		again[i] = uma_zalloc(z1, M_WAITOK);
	for (int i = 0; i < 100; i++)
		uma_zfree(z1, again[i]);
	uma_zone_reclaim(z1, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("skt_rec_small").slabs, 0);

	uma_zdestroy(z1);
	uma_zdestroy(z2);
	kmem_cache_destroy(c);
}

/* A secondary zone takes its items from the primary's keg (the keg's init
 * ran on them) and runs its own ctor/dtor, not the primary's. */
static void test_uma_secondary(void **state)
{
	(void)state;
	uma_counts_reset(&hp, 200, true);
	uma_counts_reset(&hs, 200, true);
	uma_zone_t prim = uma_zcreate("skt_keg", 200, hp_ctor, hp_dtor, hp_init, hp_fini,
				      UMA_ALIGN_PTR, 0);
	assert_non_null(prim);
	uma_zone_t sec = uma_zsecond_create("skt_second", hs_ctor, hs_dtor, NULL, NULL, prim);
	assert_non_null(sec);
	assert_string_equal(uma_zone_name(sec), "skt_second");
	void *s[50], *p[10], *all[60];
	for (int i = 0; i < 50; i++) {
		s[i] = uma_zalloc(sec, M_WAITOK);
		assert_non_null(s[i]);
		assert_true(((uint64_t *)s[i])[0] == ITEM_INIT_MAGIC);
		all[i] = s[i];
	}
	assert_int_equal(atomic_load(&hs.ctor), 50);
	assert_int_equal(atomic_load(&hp.ctor), 0);
	assert_true(atomic_load(&hp.init) >= 50);
	assert_int_equal(atomic_load(&hs.init), 0);
	assert_int_equal(uma_zone_get_cur(sec), 50);
	for (int i = 0; i < 10; i++) {
		p[i] = uma_zalloc(prim, M_WAITOK);
		assert_non_null(p[i]);
		all[50 + i] = p[i];
	}
	assert_int_equal(atomic_load(&hp.ctor), 10);
	assert_int_equal(uma_zone_get_cur(prim), 10);
	assert_true(sk_disjoint(all, 60, 200));
	for (int i = 0; i < 50; i++)
		uma_zfree(sec, s[i]);
	for (int i = 0; i < 10; i++)
		uma_zfree(prim, p[i]);
	assert_int_equal(atomic_load(&hs.dtor), 50);
	assert_int_equal(atomic_load(&hp.dtor), 10);
	assert_int_equal(uma_zone_get_cur(sec), 0);
	assert_int_equal(uma_zone_get_cur(prim), 0);
	uma_zdestroy(sec);
	uma_zdestroy(prim);
	assert_int_equal(atomic_load(&hp.init), atomic_load(&hp.fini));
	assert_int_equal(atomic_load(&hp.bad), 0);
	assert_int_equal(atomic_load(&hs.bad), 0);
}

/* A cache zone: no keg, items come from import() and go back by release(). */
#define POOL_N 64
#define POOL_ITEM 64
static _Alignas(64) unsigned char pool_mem[POOL_N][POOL_ITEM];
static bool pool_taken[POOL_N];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static long pool_out, pool_bad, pool_imports, pool_releases;
static int pool_token;

static int pool_import(void *arg, void **store, int count, int domain, int flags)
{
	int n = 0;
	pthread_mutex_lock(&pool_lock);
	if (arg != &pool_token)
		pool_bad++;
	for (int i = 0; i < POOL_N && n < count; i++)
		if (!pool_taken[i]) {
			pool_taken[i] = true;
			store[n++] = pool_mem[i];
		}
	pool_out += n;
	pool_imports++;
	pthread_mutex_unlock(&pool_lock);
	return n;
}

static void pool_release(void *arg, void **store, int count)
{
	pthread_mutex_lock(&pool_lock);
	if (arg != &pool_token)
		pool_bad++;
	for (int i = 0; i < count; i++) {
		uintptr_t off = (uintptr_t)store[i] - (uintptr_t)pool_mem;
		size_t idx = off / POOL_ITEM;
		if (off % POOL_ITEM || idx >= POOL_N || !pool_taken[idx]) {
			pool_bad++;
			continue;
		}
		pool_taken[idx] = false;
		pool_out--;
	}
	pool_releases++;
	pthread_mutex_unlock(&pool_lock);
}

static void test_uma_cache_zone(void **state)
{
	(void)state;
	uma_counts_reset(&hc, POOL_ITEM, true);
	uma_zone_t z = uma_zcache_create("skt_cachezone", POOL_ITEM, hc_ctor, hc_dtor, hc_init,
					 hc_fini, pool_import, pool_release, &pool_token, 0);
	assert_non_null(z);
	void *it[POOL_N];
	for (int i = 0; i < POOL_N; i++) {
		it[i] = uma_zalloc_arg(z, &token_a, M_NOWAIT);
		if (!it[i])
			fail_msg("cache zone: allocation %d of %d failed", i, POOL_N);
		uintptr_t off = (uintptr_t)it[i] - (uintptr_t)pool_mem;
		assert_true(off < sizeof(pool_mem) && off % POOL_ITEM == 0);
		assert_true(((uint64_t *)it[i])[1] == ITEM_LIVE);
	}
	assert_true(sk_disjoint(it, POOL_N, POOL_ITEM));
	/* The backing store is exhausted. */
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(atomic_load(&hc.ctor), POOL_N);
	for (int i = 0; i < POOL_N; i++)
		uma_zfree(z, it[i]);
	assert_int_equal(atomic_load(&hc.dtor), POOL_N);
	assert_int_equal(uma_zone_get_cur(z), 0);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	pthread_mutex_lock(&pool_lock);
	long out = pool_out, bad = pool_bad, imports = pool_imports;
	pthread_mutex_unlock(&pool_lock);
	assert_true(imports > 0);
	assert_int_equal(out, 0);
	assert_int_equal(bad, 0);
	/* Usable again after the drain. */
	void *x = uma_zalloc(z, M_WAITOK);
	assert_non_null(x);
	uma_zfree(z, x);
	uma_zdestroy(z);
	pthread_mutex_lock(&pool_lock);
	out = pool_out;
	bad = pool_bad;
	pthread_mutex_unlock(&pool_lock);
	assert_int_equal(out, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(atomic_load(&hc.init), atomic_load(&hc.fini));
	assert_int_equal(atomic_load(&hc.bad), 0);
}

static void check_zone_alignment(const char *name, size_t size, int mask, size_t want)
{
	uma_zone_t z = uma_zcreate(name, size, NULL, NULL, NULL, NULL, mask, 0);
	assert_non_null(z);
	void *it[40];
	for (int i = 0; i < 40; i++) {
		it[i] = uma_zalloc(z, M_WAITOK);
		assert_non_null(it[i]);
		if ((uintptr_t)it[i] % want)
			fail_msg("zone %s (size %zu, mask %#x): item %p not aligned to %zu", name,
				 size, mask, it[i], want);
		sk_fill(it[i], size, i);
	}
	for (int i = 0; i < 40; i++)
		assert_int_equal(sk_check(it[i], size, i), SIZE_MAX);
	assert_true(sk_disjoint(it, 40, size));
	for (int i = 0; i < 40; i++)
		uma_zfree(z, it[i]);
	uma_zdestroy(z);
}

static void test_uma_align(void **state)
{
	(void)state;
	check_zone_alignment("skt_ua_cache40", 40, UMA_ALIGN_CACHE, sk_cache_line());
	check_zone_alignment("skt_ua_cache100", 100, UMA_ALIGN_CACHE, sk_cache_line());
	check_zone_alignment("skt_ua_cache1", 1, UMA_ALIGN_CACHE, sk_cache_line());
	check_zone_alignment("skt_ua_ptr", 24, UMA_ALIGN_PTR, sizeof(void *));
	check_zone_alignment("skt_ua_256", 300, 255, 256);
	check_zone_alignment("skt_ua_ld", 32, UMA_ALIGNOF(long double), _Alignof(long double));
}

static void test_uma_zero_and_flags(void **state)
{
	(void)state;
	uma_zone_t z = uma_zcreate("skt_uma_zero", 500, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_NODUMP | UMA_ZONE_CONTIG | UMA_ZONE_MTXCLASS);
	assert_non_null(z);
	for (int i = 0; i < 40; i++) {
		unsigned char *d = uma_zalloc(z, M_WAITOK);
		memset(d, 0x99, 500);
		uma_zfree(z, d);
		unsigned char *p = uma_zalloc(z, (i % 2 ? M_NOWAIT : M_WAITOK) | M_ZERO);
		assert_non_null(p);
		size_t bad = sk_first_nonzero(p, 500);
		if (bad != SIZE_MAX)
			fail_msg("uma_zalloc(M_ZERO): byte %zu is 0x%02x", bad, p[bad]);
		uma_zfree(z, p);
	}
	uma_zdestroy(z);

	uma_zone_t nf = uma_zcreate("skt_uma_nofree", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				    UMA_ZONE_NOFREE | UMA_ZONE_NOBUCKET);
	assert_non_null(nf);
	void *x = uma_zalloc(nf, M_WAITOK);
	assert_non_null(x);
	uma_zfree(nf, x);
	uma_zdestroy(nf);
}

static void test_uma_zdestroy_reuse(void **state)
{
	(void)state;
	for (int round = 0; round < 3; round++) {
		uma_zone_t z = uma_zcreate("skt_reuse", 72, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
		assert_non_null(z);
		void *x = uma_zalloc(z, M_WAITOK);
		assert_non_null(x);
		struct slabkit_cache_info info = sk_info("skt_reuse");
		assert_int_equal(info.allocs, 1);
		assert_int_equal(info.in_use, 1);
		uma_zfree(z, x);
		uma_zdestroy(z);
		assert_int_equal(slabkit_cache_info_by_name("skt_reuse", &info), -ENOENT);
	}
}

static const struct CMUnitTest malloc9_tests[] = {
	SK_TEST(test_bsd_malloc_basic),    SK_TEST(test_bsd_malloc_zero),
	SK_TEST(test_bsd_malloc_flags_required), SK_TEST(test_bsd_realloc),
	SK_TEST(test_bsd_reallocf),        SK_TEST(test_bsd_zfree_mallocarray),
	SK_TEST(test_bsd_domainset),       SK_TEST(test_bsd_type_stats),
	SK_TEST(test_bsd_vmstat_m),        SK_TEST(test_bsd_unregister_leak),
	SK_TEST(test_bsd_free_wrong_type),
};

const struct conformance_group conformance_malloc9 = {
	"malloc9", malloc9_tests, sizeof(malloc9_tests) / sizeof(malloc9_tests[0])
};

static const struct CMUnitTest uma_tests[] = {
	SK_TEST(test_uma_hooks),           SK_TEST(test_uma_ctor_failure),
	SK_TEST(test_uma_limit),           SK_TEST(test_uma_limit_waitok_blocks),
	SK_TEST(test_uma_zalloc_domain),   SK_TEST(test_uma_reclaim),
	SK_TEST(test_uma_secondary),       SK_TEST(test_uma_cache_zone),
	SK_TEST(test_uma_align),           SK_TEST(test_uma_zero_and_flags),
	SK_TEST(test_uma_zdestroy_reuse),
};

const struct conformance_group conformance_uma = {
	"uma", uma_tests, sizeof(uma_tests) / sizeof(uma_tests[0])
};
