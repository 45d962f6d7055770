/*
 * The debug layer (docs/debug.md), on every compiled-in backend: each bug
 * class injected is detected, reported once (one BUG block, one count in
 * slabkit_debug_errors), repaired, and the process keeps allocating
 * correctly.  Includes the kernel's lib/slub_kunit.c cases.
 *
 * Each test runs its body once per backend, on a fresh slabkit_init with
 * the debug letters it needs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "sk_test.h"

/* The backends' own metadata, for the validation tests that corrupt it. */
#include "core/sk_cache.h"
#include "core/sk_percpu.h"
#include "backends/slab/slab_int.h"
#include "backends/slob/slob_int.h"
#include "backends/slub/slub.h"
#include "backends/uma/uma_int.h"
#include "core/sk_guard.h"
#include "core/sk_debug.h"

MALLOC_DEFINE(M_DBGTEST, "dbgtest", "debug layer tests");

/* Hide where a pointer came from, so that the compiler lets a test write
 * past the size it asked for (the point of a red-zone test). */
static unsigned char *launder(void *p)
{
	__asm__("" : "+r"(p));
	return p;
}

static const char *const all_backends[] = { "slab", "slub", "slob", "uma" };

static bool compiled(const char *b)
{
	const char *list = slabkit_backends_compiled();
	size_t n = strlen(b);
	for (const char *p = list; (p = strstr(p, b)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
			return true;
	return false;
}

static void init_with(const char *backend, const char *debug, const char *fail)
{
	struct slabkit_config cfg = { .backend = backend, .debug = debug, .fail_alloc = fail, .tick_ms = -1 };
	sk_capture_reset();
	sk_expect_messages();
	int rc = sk_fresh_init(&cfg);
	if (rc)
		fail_msg("slabkit_init(%s, debug %s) = %d", backend, debug, rc);
}

/* Run body(backend) for every compiled backend. */
#define FOR_EACH_BACKEND(body)                                                                   \
	for (size_t _i = 0; _i < sizeof(all_backends) / sizeof(all_backends[0]); _i++)           \
		if (compiled(all_backends[_i]))                                                   \
			body(all_backends[_i])

/* A cmocka test that runs its body once per compiled backend: the table
 * in main names each (BACKEND_TEST). */
struct backend_case {
	void (*body)(const char *backend);
};

static void run_on_every_backend(void **state)
{
	const struct backend_case *bc = *state;
	FOR_EACH_BACKEND(bc->body);
}

#define BACKEND_TEST(test, fn)                                                                   \
	{ .name = #test, .test_func = run_on_every_backend,                                      \
	  .initial_state = &(struct backend_case){ .body = fn } }

static unsigned bug_lines(const char *what)
{
	return sk_captured("BUG ", what, NULL);
}

/* Exactly `n` errors since `before`, and `n_what` BUG blocks naming `what`
 * (one block per error: each is reported once). */
static void expect_errors_of(uint64_t before, unsigned n, const char *what, unsigned n_what,
			     const char *backend)
{
	uint64_t now = slabkit_debug_errors();
	if (now - before != n || bug_lines(what) != n_what || bug_lines("") != n) {
		sk_capture_dump(what);
		fail_msg("%s: %llu error(s), %u BUG line(s) for \"%s\" (%u in all), expected %u and %u",
			 backend, (unsigned long long)(now - before), bug_lines(what), what, bug_lines(""), n,
			 n_what);
	}
}
#define expect_errors(before, n, what, b) expect_errors_of((before), (n), (what), (n), (b))

/* The cache still works: many objects, distinct, writable, freed cleanly. */
static void still_works(struct kmem_cache *s, size_t size)
{
	void *p[200];
	uint64_t before = slabkit_debug_errors();
	for (int i = 0; i < 200; i++) {
		p[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], i, size);
	}
	for (int i = 0; i < 200; i++)
		for (int j = i + 1; j < 200; j++)
			assert_ptr_not_equal(p[i], p[j]);
	for (int i = 0; i < 200; i++)
		kmem_cache_free(s, p[i]);
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), before);
}

/* --- red zones (slub_kunit test_clobber_zone, test_clobber_redzone_free) --- */

static void clobber_zone(const char *b)
{
	init_with(b, "Z,skt_rz", NULL);
	struct kmem_cache *s = kmem_cache_create("skt_rz", 64, 0, 0, NULL);
	assert_non_null(s);
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(p);

	uint64_t e0 = slabkit_debug_errors();
	p[64] = 0x12; /* right red zone of a live object */
	assert_int_equal(slabkit_validate("skt_rz"), 1);
	expect_errors(e0, 1, "Right Redzone", b);
	assert_int_equal(slabkit_validate("skt_rz"), 0); /* repaired: reported once */

	p[-1] = 0x34; /* left red zone */
	assert_int_equal(slabkit_validate(NULL), 1);
	expect_errors(e0, 2, "Redzone", b);
	kmem_cache_free(s, p); /* nothing left to report */
	assert_int_equal(slabkit_debug_errors(), e0 + 2);

	/* Overwritten after free: found by validation while quarantined. */
	p = kmem_cache_alloc(s, GFP_KERNEL);
	kmem_cache_free(s, p);
	p[64] = 0x56;
	assert_int_equal(slabkit_validate("skt_rz"), 1);
	expect_errors(e0, 3, "Redzone", b);

	/* Overwritten live, found at free. */
	p = kmem_cache_alloc(s, GFP_KERNEL);
	p[70] = 0x78;
	kmem_cache_free(s, p);
	expect_errors(e0, 4, "Redzone", b);
	still_works(s, 64);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* --- poisoning (test_first_word, test_clobber_50th_byte) --- */

static void clobber_poison(const char *b)
{
	init_with(b, "P,skt_poison", NULL);
	struct kmem_cache *s = kmem_cache_create("skt_poison", 64, 0, 0, NULL);
	assert_non_null(s);
	uint64_t e0 = slabkit_debug_errors();
	static const size_t offsets[] = { 0, 50, 63 };
	for (unsigned k = 0; k < 3; k++) {
		unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(p);
		kmem_cache_free(s, p);
		p[offsets[k]] = 0x12; /* use after free */
		assert_int_equal(slabkit_validate("skt_poison"), 1);
		assert_int_equal(slabkit_validate("skt_poison"), 0);
		expect_errors(e0, k + 1, "Poison overwritten", b);
		assert_int_equal(sk_captured("BUG skt_poison", NULL, NULL), k + 1);
	}
	/* Without validation: found when the object leaves the quarantine. */
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	kmem_cache_free(s, p);
	p[10] = 0x99;
	kmem_cache_shrink(s);
	expect_errors(e0, 4, "Poison overwritten", b);
	still_works(s, 64);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* --- kmalloc red zone (test_kmalloc_redzone_access) --- */

static void kmalloc_zone(const char *b)
{
	init_with(b, "Z,kmalloc-*", NULL);
	uint64_t e0 = slabkit_debug_errors();
	unsigned char *p = launder(kmalloc(18, GFP_KERNEL));
	assert_non_null(p);
	memset(p, 0x11, 18);
	p[18] = 0xab; /* past the 18 bytes asked for */
	p[19] = 0xab;
	assert_int_equal(slabkit_validate(NULL), 1);
	expect_errors(e0, 1, "kmalloc Redzone", b);
	sk_assert_reported("offset 18", NULL, NULL);
	kfree(p);
	assert_int_equal(slabkit_debug_errors(), e0 + 1);
	/* ksize hands the whole object to the caller: no red zone any more. */
	p = kmalloc(18, GFP_KERNEL);
	size_t n = ksize(p);
	assert_true(n >= 18);
	memset(p, 0x22, n);
	assert_int_equal(slabkit_validate(NULL), 0);
	kfree(p);
	assert_int_equal(slabkit_debug_errors(), e0 + 1);
	slabkit_fini();
}

/* --- krealloc (test_krealloc_redzone_zeroing) --- */

static void krealloc_zeroing(const char *b)
{
	init_with(b, "ZP,kmalloc-*", NULL);
	uint64_t e0 = slabkit_debug_errors();
	unsigned char *p = kmalloc(48, GFP_KERNEL);
	assert_non_null(p);
	memset(p, 0xff, 48);
	p = launder(krealloc(p, 40, GFP_KERNEL)); /* shrink in place: 40..47 become red zone */
	assert_non_null(p);
	for (int i = 40; i < 48; i++)
		assert_int_equal(p[i], 0xcc);
	p = krealloc(p, 56, GFP_KERNEL | __GFP_ZERO); /* grow in place: 40..55 zeroed */
	assert_non_null(p);
	for (int i = 0; i < 40; i++)
		assert_int_equal(p[i], 0xff);
	for (int i = 40; i < 56; i++)
		assert_int_equal(p[i], 0);
	p = krealloc(p, 112, GFP_KERNEL | __GFP_ZERO); /* moves: data kept */
	assert_non_null(p);
	for (int i = 0; i < 40; i++)
		assert_int_equal(p[i], 0xff);
	for (int i = 40; i < 112; i++)
		assert_int_equal(p[i], 0);
	assert_int_equal(slabkit_validate(NULL), 0);
	kfree(p);
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), e0);
	slabkit_fini();
}

/* --- double and invalid frees, on every front end --- */

static void frees(const char *b)
{
	init_with(b, "F", NULL);
	uint64_t e0 = slabkit_debug_errors();
	struct kmem_cache *s = kmem_cache_create("skt_dfree", 40, 0, 0, NULL);
	char *p = kmem_cache_alloc(s, GFP_KERNEL), *q = kmem_cache_alloc(s, GFP_KERNEL);
	kmem_cache_free(s, p);
	kmem_cache_free(s, q);
	kmem_cache_free(s, p); /* not at any list head: only the live table sees it */
	expect_errors(e0, 1, "already free", b);
	void *a = kmem_cache_alloc(s, GFP_KERNEL), *a2 = kmem_cache_alloc(s, GFP_KERNEL);
	assert_ptr_not_equal(a, a2);
	kmem_cache_free(s, p + 8);
	expect_errors_of(e0, 2, "Invalid free", 1, b);
	kmem_cache_free(s, a);
	kmem_cache_free(s, a2);
	still_works(s, 40);
	kmem_cache_destroy(s);

	char *k = kmalloc(100, GFP_KERNEL);
	kfree(k);
	kfree(k);
	expect_errors_of(e0, 3, "already free", 2, b);

	uma_zone_t z = uma_zcreate("skt_dzone", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	uma_zone_set_max(z, 100);
	char *i1 = uma_zalloc(z, M_WAITOK);
	uma_zfree(z, i1);
	uma_zfree(z, i1);
	expect_errors_of(e0, 4, "already free", 3, b);
	assert_int_equal(uma_zone_get_cur(z), 0);
	i1 = uma_zalloc(z, M_WAITOK);
	uma_zfree(z, i1 + 16);
	expect_errors_of(e0, 5, "Invalid free", 2, b);
	assert_int_equal(uma_zone_get_cur(z), 1);
	uma_zfree(z, i1);
	uma_zdestroy(z);

	char *m = bsd_malloc(50, M_DBGTEST, M_WAITOK);
	bsd_free(m, M_DBGTEST);
	unsigned p0 = sk_panic_count();
	sk_expect_panics();
	bsd_free(m, M_DBGTEST); /* its type word is gone: malloc(9)'s own check */
	assert_int_equal(sk_panic_count() + slabkit_debug_errors() - e0, p0 + 5 + 1);
	slabkit_fini();
}

/* --- leaks on destroy (test_leak_destroy) --- */

static void leak_destroy(const char *b)
{
	init_with(b, "FZ,skt_leak", NULL);
	struct kmem_cache *s = kmem_cache_create("skt_leak", 64, 0, 0, NULL);
	void *p = kmem_cache_alloc(s, GFP_KERNEL);
	kmem_cache_destroy(s);
	sk_assert_reported("BUG skt_leak", "Objects remaining", NULL);
	char pt[32];
	sk_assert_reported("Object", sk_ptr_text(p, pt), NULL);
	slabkit_fini();
}

/* --- every cache at once, under load: no false reports --- */

static void everything_clean(const char *b)
{
	init_with(b, "FZP", NULL);
	void *p[300];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 300; i++) {
			p[i] = kmalloc(1 + (size_t)(i * 37) % 3000, GFP_KERNEL);
			assert_non_null(p[i]);
			memset(p[i], i, 1 + (size_t)(i * 37) % 3000);
		}
		for (int i = 0; i < 300; i += 2)
			kfree(p[i]);
		assert_int_equal(slabkit_validate(NULL), 0);
		for (int i = 1; i < 300; i += 2)
			kfree(p[i]);
		void *m = bsd_malloc(300, M_DBGTEST, M_WAITOK | M_ZERO);
		bsd_free(m, M_DBGTEST);
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), 0);
	slabkit_fini();
}

/* --- FreeBSD INVARIANTS: trash fill of freed malloc(9) and UMA items --- */

static void invariants(const char *b)
{
	init_with(b, "P,malloc-*,skt_uzone", NULL);
	uint64_t e0 = slabkit_debug_errors();
	unsigned char *m = bsd_malloc(64, M_DBGTEST, M_WAITOK);
	memset(m, 0x33, 64);
	bsd_free(m, M_DBGTEST);
	uint32_t w;
	memcpy(&w, m, 4);
	assert_int_equal(w, 0xdeadc0de); /* the trash pattern */
	launder(m)[8] = 0x11;            /* modified after free */
	assert_int_equal(slabkit_validate(NULL), 1);
	expect_errors(e0, 1, "Memory modified after free", b);
	sk_assert_reported("Most recently used by", "dbgtest", NULL);
	assert_int_equal(slabkit_validate(NULL), 0);

	/* Found when it leaves the quarantine to be handed out again, too. */
	m = bsd_malloc(64, M_DBGTEST, M_WAITOK);
	bsd_free(m, M_DBGTEST);
	launder(m)[20] = 0x22;
	for (int i = 0; i < 600; i++)
		bsd_free(bsd_malloc(64, M_DBGTEST, M_WAITOK), M_DBGTEST);
	expect_errors(e0, 2, "Memory modified after free", b);

	uma_zone_t z = uma_zcreate("skt_uzone", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	unsigned char *it = uma_zalloc(z, M_WAITOK);
	uma_zfree(z, it);
	memcpy(&w, it + 60, 4);
	assert_int_equal(w, 0xdeadc0de); /* UMA items: the pattern to the end */
	launder(it)[0] = 0;
	assert_int_equal(slabkit_validate("skt_uzone"), 1);
	expect_errors(e0, 3, "Memory modified after free", b);
	for (int i = 0; i < 100; i++)
		uma_zfree(z, uma_zalloc(z, M_WAITOK));
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), e0 + 3);
	uma_zdestroy(z);
	slabkit_fini();
}

/* --- backend metadata (slub_kunit test_next_pointer) ---
 *
 * With debug off, a free object's backend metadata is corrupted the way a
 * write after free would: SLUB's in-object free pointer, SLAB's free-index
 * array, SLOB's free block header, UMA's free bitset.  Validation reports
 * it once, isolates the slab, and the cache keeps allocating. */

/* Corrupt the metadata that says `f` (a free object whose neighbours are
 * live, back in its slab) is free.  Returns what the report names. */
static const char *corrupt_free_metadata(const char *b, struct sk_cache *c, unsigned char *f)
{
	struct sk_page *pg = sk_page_of(f);

	if (!strcmp(b, "slub")) {
		/* The next pointer now lands inside an object. */
		*(void **)(f + c->free_offset) = f + 8;
		return "Free pointer corrupt";
	}
	if (!strcmp(b, "slab")) {
		struct slab_cache *sc = slab_cache_of(c);
		void *fl = slab_freelist(sc, pg);
		uint32_t active = slab_active(pg);
		assert_true(active + 1 < sc->num);
		/* Two entries name the same object. */
		slab_freelist_set(sc, fl, active, slab_freelist_get(sc, fl, active + 1));
		return "Free-index array corrupt";
	}
	if (!strcmp(b, "slob")) {
		/* The free block's next-block offset points backwards. */
		uint64_t *hdr = (uint64_t *)(void *)f;
		*hdr = (*hdr & ~((uint64_t)0xffff << 16)) | (uint64_t)1 << 16;
		return "Free list corrupt";
	}
	/* uma: f's bit cleared while the slab's free count still counts it. */
	struct uma_kz *kz = skuma_kz_of_item(f);
	struct uma_keg *keg = &kz->kz_keg;
	uma_bitword_t *bits = keg->uk_hdr == UMA_HDR_DESC ? (uma_bitword_t *)&pg->bk[3] : (uma_bitword_t *)pg->bk[3];
	size_t idx = (size_t)(f - (unsigned char *)sk_page_addr(pg)) / keg->uk_rsize;
	assert_true((bits[idx / UMA_WORD_BITS] >> (idx % UMA_WORD_BITS)) & 1);
	bits[idx / UMA_WORD_BITS] &= ~((uma_bitword_t)1 << (idx % UMA_WORD_BITS));
	return "Free bitset corrupt";
}

static void free_pointer(const char *b)
{
	init_with(b, NULL, NULL);
	struct kmem_cache *s = kmem_cache_create("skt_fp", 64, 0, 0, NULL);
	assert_non_null(s);
	enum { N = 300 };
	unsigned char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], 0x11, 64);
	}
	/* Every other object freed, then every per-CPU and node cache
	 * drained, so that the freed ones sit in their slabs' metadata. */
	for (int i = 1; i < N; i += 2)
		kmem_cache_free(s, p[i]);
	kmem_cache_shrink(s);
	assert_int_equal(slabkit_validate(NULL), 0);

	uint64_t e0 = slabkit_debug_errors();
	const char *what = corrupt_free_metadata(b, (struct sk_cache *)s, p[N / 2 + 1]);
	assert_int_equal(slabkit_validate("skt_fp"), 1);
	expect_errors(e0, 1, what, b);
	sk_assert_reported("FIX skt_fp", "Isolating", NULL);
	assert_int_equal(slabkit_validate("skt_fp"), 0); /* isolated: reported once */

	/* Objects go on being handed out and freed correctly, the live ones
	 * of the isolated slab included, and nothing is corrupt afterwards. */
	still_works(s, 64);
	for (int i = 0; i < N; i += 2)
		kmem_cache_free(s, p[i]);
	still_works(s, 64);
	assert_int_equal(slabkit_debug_errors(), e0 + 1);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* A full slab (every object allocated): SLUB keeps it on no list, SLAB and
 * UMA on their full lists.  Its metadata corrupted, validation finds it
 * once and repairs it.  SLOB: a full page of the kmalloc heap (on no
 * list), a live block's header corrupted (a full cache page is whole
 * objects, with no metadata to corrupt). */
static bool slab_is_full(const char *b, struct sk_cache *c, struct sk_page *pg)
{
	if (!strcmp(b, "slub")) {
		union slub_counters ctr = slub_counters(pg);
		return !slub_freelist(pg) && ctr.inuse == ctr.objects && !ctr.frozen &&
		       !slub_on_node_partial(pg);
	}
	if (!strcmp(b, "slab"))
		return slab_active(pg) == slab_cache_of(c)->num;
	return uma_slab(pg)->us_freecount == 0;
}

static const char *corrupt_full_slab(const char *b, struct sk_cache *c, struct sk_page *pg)
{
	if (!strcmp(b, "slub")) { /* its free list now starts inside an object */
		slub_words(pg)->ss_freelist = (uintptr_t)sk_page_addr(pg) + 3;
		return "Free pointer corrupt";
	}
	if (!strcmp(b, "slab")) {
		slab_desc(pg)->sd_active = slab_cache_of(c)->num + 3;
		return "Slab descriptor corrupt";
	}
	struct uma_kz *kz = skuma_kz_of_item(sk_page_addr(pg)); /* one item's bit set, the count 0 */
	uma_bitword_t *bits = kz->kz_keg.uk_hdr == UMA_HDR_DESC ? (uma_bitword_t *)&pg->bk[3] : (uma_bitword_t *)pg->bk[3];
	bits[0] |= 1;
	return "Free bitset corrupt";
}

static void full_slob_page(void)
{
	init_with("slob", NULL, NULL);
	enum { N = 400 }; /* 248 bytes and the header: 32 units, 16 to a page, filling it */
	unsigned char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmalloc(248, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], 0x33, 248);
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	uint64_t *hdr = NULL;
	for (int i = 0; i < N && !hdr; i++) {
		struct sk_page *pg = sk_page_of(p[i]);
		if (pg->kind == SK_PAGE_HEAP && ((slob_words(pg)->sp_state >> 16) & 0xffff) == SLOB_END)
			hdr = (uint64_t *)(void *)(p[i] - SLOB_KMALLOC_HDR); /* a full page's live block */
	}
	assert_non_null(hdr);
	if (!hdr)
		return;
	uint64_t saved = *hdr;
	uint64_t e0 = slabkit_debug_errors();
	*hdr ^= (uint64_t)1 << 40; /* its magic */
	assert_int_equal(slabkit_validate(NULL), 1);
	expect_errors(e0, 1, "kmalloc block header corrupt", "slob");
	assert_int_equal(slabkit_validate(NULL), 0); /* reported once */
	*hdr = saved; /* so that its block can be freed */
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	for (int i = 0; i < N; i++) { /* the heap still works */
		p[i] = kmalloc(248, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], 0x44, 248);
	}
	for (int i = 0; i < N; i++)
		kfree(p[i]);
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), e0 + 1);
	slabkit_fini();
}

static void full_slab(const char *b)
{
	if (!strcmp(b, "slob")) {
		full_slob_page();
		return;
	}
	init_with(b, NULL, NULL);
	struct kmem_cache *s = kmem_cache_create("skt_full", 64, 0, 0, NULL);
	struct sk_cache *c = (struct sk_cache *)s;
	enum { N = 600 };
	unsigned char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], 0x22, 64);
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	struct sk_page *full = NULL;
	for (int i = 0; i < N && !full; i++)
		if (slab_is_full(b, c, sk_page_of(p[i])))
			full = sk_page_of(p[i]);
	assert_non_null(full);
	if (!full)
		return;
	uint64_t e0 = slabkit_debug_errors();
	const char *what = corrupt_full_slab(b, c, full);
	assert_int_equal(slabkit_validate("skt_full"), 1);
	expect_errors(e0, 1, what, b);
	assert_true(slab_is_full(b, c, full)); /* repaired: still full, nothing free in it */
	assert_int_equal(slabkit_validate("skt_full"), 0);
	for (int i = 0; i < N; i++)
		kmem_cache_free(s, p[i]);
	still_works(s, 64);
	assert_int_equal(slabkit_debug_errors(), e0 + 1);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* A per-CPU cache (SLAB's array, SLUB's sheaf, UMA's alloc bucket) holding
 * an interior pointer: core's check of the slots finds and drops it. */
static void slot_entry(const char *b)
{
	init_with(b, NULL, NULL);
	struct kmem_cache *s = kmem_cache_create("skt_slot", 64, 0, 0, NULL);
	struct sk_cache *c = (struct sk_cache *)s;
	if (!c->pcpu_base) { /* SLOB: no per-CPU layer */
		kmem_cache_destroy(s);
		slabkit_fini();
		return;
	}
	void *p[8];
	for (int i = 0; i < 8; i++)
		p[i] = kmem_cache_alloc(s, GFP_KERNEL);
	for (int i = 0; i < 8; i++)
		kmem_cache_free(s, p[i]);
	struct sk_pcpu_slot *slot = NULL;
	unsigned n = 0;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr && !slot; cpu++)
		if ((n = sk_pcpu_array_count(sk_pcpu_slot(c, cpu))))
			slot = sk_pcpu_slot(c, cpu);
	assert_non_null(slot);
	if (!slot) /* tells the compiler too: it warned of a NULL read below */
		return;
	slot->entries[n - 1] = (char *)slot->entries[n - 1] + 8;

	uint64_t e0 = slabkit_debug_errors();
	assert_int_equal(slabkit_validate("skt_slot"), 1);
	expect_errors(e0, 1, "Per-CPU cache holds a pointer", b);
	assert_int_equal(sk_pcpu_array_count(slot), n - 1);
	assert_int_equal(slabkit_validate("skt_slot"), 0);
	still_works(s, 64);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* Validation while other threads allocate and free: no false report, and
 * nothing it touches races (TSan runs it). */
#include <pthread.h>

struct churn {
	struct kmem_cache *s;
	uma_zone_t z;
	volatile int stop;
};

static void *churn_worker(void *arg)
{
	struct churn *ch = arg;
	void *p[64];
	unsigned seed = 1;
	while (!__atomic_load_n(&ch->stop, __ATOMIC_ACQUIRE)) {
		for (int i = 0; i < 64; i++) {
			seed = seed * 1103515245u + 12345u;
			p[i] = (seed >> 16) % 3 == 0 ? kmalloc(8 + (seed >> 20) % 500, GFP_KERNEL)
			       : (seed >> 16) % 3 == 1 ? kmem_cache_alloc(ch->s, GFP_KERNEL)
						       : uma_zalloc(ch->z, M_WAITOK);
			assert_non_null(p[i]);
		}
		for (int i = 63; i >= 0; i--) {
			struct sk_page *pg = sk_page_of(p[i]);
			struct sk_cache *c = pg && pg->kind == SK_PAGE_SLAB ? pg->owner : NULL;
			if (c == (struct sk_cache *)ch->s)
				kmem_cache_free(ch->s, p[i]);
			else if (c && c->front == SK_FRONT_UMA)
				uma_zfree(ch->z, p[i]);
			else
				kfree(p[i]);
		}
	}
	return NULL;
}

static void validate_under_load(const char *b)
{
	init_with(b, NULL, NULL);
	struct churn ch = { .s = kmem_cache_create("skt_churn", 72, 0, 0, NULL),
			    .z = uma_zcreate("skt_zchurn", 40, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0) };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn_worker, &ch), 0);
	for (int round = 0; round < 30; round++)
		assert_int_equal(slabkit_validate(NULL), 0);
	__atomic_store_n(&ch.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), 0);
	uma_zdestroy(ch.z);
	kmem_cache_destroy(ch.s);
	slabkit_fini();
}

/* --- the program's own sanitizers (sk_sanitize.h) ---
 *
 * In the ASan build: a child process makes a cache with the sanitizer
 * mode on and reads a freed object, or writes one byte past a live one;
 * ASan must stop it at that access with its report. */

#if defined(__SANITIZE_ADDRESS__)
#define SKT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SKT_ASAN 1
#endif
#endif

#include <sys/wait.h>
#include <unistd.h>

enum asan_bug { ASAN_USE_AFTER_FREE, ASAN_OVERFLOW, ASAN_KMALLOC_TAIL, ASAN_SLAB_TAIL, ASAN_LARGE_KMALLOC,
		ASAN_LARGE_MALLOC9 };

/* The first byte after the last object of a slab of s (5000-byte objects:
 * every backend leaves a tail), through an object of that slab; exits if
 * no slab shows one. */
static unsigned char *slab_tail_of(struct kmem_cache *s, unsigned char **obj)
{
	struct sk_cache *c = (struct sk_cache *)s;
	for (int i = 0; i < 64; i++) {
		unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
		if (!p)
			_exit(6);
		struct sk_page *pg = sk_page_of(p);
		unsigned char *end = (unsigned char *)sk_page_addr(pg) + ((size_t)pg->npages << 12);
		unsigned char *next = p - sk_debug_layout_of(c)->rz_left + c->size; /* after its stride */
		if (next + c->size > end && next < end) {
			*obj = p;
			return next;
		}
	}
	_exit(7);
}

/* The child: never returns. */
static void asan_child(const char *b, int bug)
{
	setenv("SLABKIT_SANITIZE", "on", 1);
	struct slabkit_config cfg = { .backend = b, .tick_ms = -1 };
	slabkit_fini();
	if (slabkit_init(&cfg) != 0)
		_exit(3);
	struct kmem_cache *s = kmem_cache_create("skt_asan", 64, 0, 0, NULL);
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	unsigned char *q = kmalloc(18, GFP_KERNEL);
	if (!p || !q)
		_exit(4);
	memset(p, 1, 64); /* a live object is writable ... */
	memset(q, 1, 18);
	volatile unsigned char sink;
	switch (bug) {
	case ASAN_USE_AFTER_FREE:
		kmem_cache_free(s, p);
		sink = launder(p)[10];
		break;
	case ASAN_OVERFLOW:
		launder(p)[64] = 2;
		break;
	case ASAN_KMALLOC_TAIL:
		launder(q)[18] = 2;
		break;
	case ASAN_SLAB_TAIL: { /* past the last object and its red zone, into the slab's tail */
		struct kmem_cache *t = kmem_cache_create("skt_asan_tail", 5000, 0, 0, NULL);
		unsigned char *last, *tail = slab_tail_of(t, &last);
		memset(last, 1, 5000);
		launder(last)[tail - last] = 2;
		break;
	}
	case ASAN_LARGE_KMALLOC: { /* one byte past a block of the page path */
		unsigned char *big = kmalloc(70000, GFP_KERNEL);
		memset(big, 1, 70000);
		launder(big)[70000] = 2;
		break;
	}
	case ASAN_LARGE_MALLOC9: {
		unsigned char *big = bsd_malloc(100000, M_DBGTEST, M_WAITOK | M_ZERO);
		memset(big, 1, 100000);
		launder(big)[100000] = 2;
		break;
	}
	}
	(void)sink;
	_exit(0); /* not caught */
}

/* Run child(b, bug) in a forked process (it never returns), its stderr
 * read into out; returns its wait status. */
static int run_child(void (*child)(const char *, int), const char *b, int bug, char *out, size_t len)
{
	int fd[2];
	assert_int_equal(pipe(fd), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		child(b, bug);
	}
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < len && (r = read(fd[0], out + n, len - n - 1)) > 0)
		n += (size_t)r;
	out[n] = 0;
	char drain[256];
	while (read(fd[0], drain, sizeof(drain)) > 0)
		;
	close(fd[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

/* Run the bug in a child; true if ASan reported it there. */
static bool asan_catches(const char *b, enum asan_bug bug, char *out, size_t len)
{
	int status = run_child(asan_child, b, (int)bug, out, len);
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(out, "AddressSanitizer") &&
	       strstr(out, "use-after-poison");
}

#ifdef SKT_ASAN
#include <sanitizer/asan_interface.h>
#define POISONED(p) (__asan_address_is_poisoned(p) != 0)
#define OPEN(p) (__asan_address_is_poisoned(p) == 0)
#else
#define POISONED(p) ((void)(p), true) /* no tool to ask: the calls below still run */
#define OPEN(p) ((void)(p), true)
#endif

/* The sanitizer mode's large blocks and slab tails, in this process (in
 * the ASan build slabkit itself is instrumented: a byte it touched while
 * closed would be reported here): what is closed, and that ksize,
 * krealloc, kfree_sensitive, bsd_realloc, bsd_zfree and usable sizes work
 * on the open part only, with nothing reported. */
static void sanitize_large(const char *b)
{
	const char *was = getenv("SLABKIT_SANITIZE");
	char saved[16];
	snprintf(saved, sizeof(saved), "%s", was ? was : "");
	setenv("SLABKIT_SANITIZE", "on", 1);
	init_with(b, NULL, NULL);
	if (was) /* ctest runs the suites with the mode off (tests/CMakeLists.txt) */
		setenv("SLABKIT_SANITIZE", saved, 1);
	else
		unsetenv("SLABKIT_SANITIZE");
	unsigned char *k = kmalloc(70000, GFP_KERNEL | __GFP_ZERO);
	assert_non_null(k);
	assert_int_equal(k[69999], 0);
	assert_true(OPEN(k + 69999));
	assert_true(POISONED(k + 70000));
	k = krealloc(k, 50000, GFP_KERNEL | __GFP_ZERO); /* shrinks in place */
	assert_true(POISONED(k + 50000));
	k = krealloc(k, 72000, GFP_KERNEL);               /* grows: a new block */
	assert_non_null(k);
	assert_true(POISONED(k + 72000));
	assert_int_equal(ksize(k), 73728);                /* the caller may use all of it now */
	assert_true(OPEN(k + 73727));
	memset(launder(k), 3, 73728);
	kfree_sensitive(k);

	unsigned char *m = bsd_malloc(100000, M_DBGTEST, M_WAITOK | M_ZERO);
	assert_non_null(m);
	assert_int_equal(bsd_malloc_usable_size(m), 100000);
	assert_true(POISONED(m + 100000));
	m = bsd_realloc(m, 90000, M_DBGTEST, M_WAITOK);   /* in place */
	assert_true(POISONED(m + 90000));
	memset(m, 4, 90000);
	m = bsd_realloc(m, 200000, M_DBGTEST, M_WAITOK);  /* moved: 90000 bytes copied */
	assert_int_equal(m[89999], 4);
	bsd_zfree(m, M_DBGTEST);

	struct kmem_cache *t = kmem_cache_create("skt_san_tail", 5000, 0, 0, NULL);
	struct sk_cache *c = (struct sk_cache *)t;
	unsigned char *p[64];
	unsigned tails = 0;
	for (int i = 0; i < 64; i++) {
		p[i] = kmem_cache_alloc(t, GFP_KERNEL);
		assert_non_null(p[i]);
		memset(p[i], i, 5000);
		struct sk_page *pg = sk_page_of(p[i]);
		unsigned char *end = (unsigned char *)sk_page_addr(pg) + ((size_t)pg->npages << 12);
		unsigned char *next = p[i] - sk_debug_layout_of(c)->rz_left + c->size;
		if (next + c->size > end && next < end) { /* the last object: then the tail */
			assert_true(POISONED(next));
			tails++;
		}
	}
	assert_true(tails > 0);
	assert_int_equal(slabkit_validate(NULL), 0);
	for (int i = 0; i < 64; i++)
		kmem_cache_free(t, p[i]);
	kmem_cache_destroy(t); /* slabs opened again before they go back */
	assert_int_equal(slabkit_debug_errors(), 0);
	assert_int_equal(sk_panic_count(), 0);
	slabkit_fini();
}

static __attribute__((unused)) void asan_bugs(const char *b)
{
	static const char *const names[] = { "use after free", "overflow by one byte",
					     "write past kmalloc(18)", "write into a slab's tail",
					     "write past kmalloc(70000)", "write past malloc(9) of 100000" };
	static char out[16384];
	for (int bug = ASAN_USE_AFTER_FREE; bug <= ASAN_LARGE_MALLOC9; bug++)
		if (!asan_catches(b, (enum asan_bug)bug, out, sizeof(out))) {
			fprintf(stderr, "%s\n", out);
			fail_msg("%s: ASan did not catch a %s of a slab object", b, names[bug]);
		}
}

static void test_asan_sees_slab_objects(void **state)
{
	(void)state;
#ifdef SKT_ASAN
	FOR_EACH_BACKEND(asan_bugs);
#else
	printf("skipped: not an ASan build (make check-asan runs it)\n");
#endif
}

/* Under valgrind: a child reads a freed object and leaks another; memcheck
 * must report the read and the leak.  test_valgrind_sees_slab_objects runs
 * this program itself under valgrind with --valgrind-child. */
static int valgrind_child(const char *b)
{
	setenv("SLABKIT_SANITIZE", "on", 1);
	struct slabkit_config cfg = { .backend = b, .tick_ms = -1 };
	if (slabkit_init(&cfg) != 0)
		return 3;
	struct kmem_cache *s = kmem_cache_create("skt_vg", 64, 0, 0, NULL);
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	unsigned char *leak = kmem_cache_alloc(s, GFP_KERNEL);
	if (!p || !leak)
		return 4;
	memset(p, 1, 64);
	memset(leak, 1, 64);
	kmem_cache_free(s, p);
	volatile unsigned char sink = launder(p)[10];
	(void)sink;
	leak = NULL; /* nobody points to it any more */
	return 0;
}

static char *self_path;

static __attribute__((unused)) void valgrind_sees(const char *b)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "SLABKIT_ARENA_MB=256 valgrind -q --leak-check=full --show-leak-kinds=definite "
		 "--errors-for-leak-kinds=definite %s --valgrind-child %s 2>&1",
		 self_path, b);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	static char out[65536];
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = 0;
	pclose(f);
	if (!strstr(out, "Invalid read of size 1") || !strstr(out, "64 bytes in 1 blocks are definitely lost")) {
		fprintf(stderr, "%s\n", out);
		fail_msg("%s: memcheck did not see the use after free and the leak of slab objects", b);
	}
}

static void test_valgrind_sees_slab_objects(void **state)
{
	(void)state;
#if defined(SKT_ASAN) || defined(SLABKIT_TSAN) || defined(__SANITIZE_THREAD__)
	printf("skipped: valgrind does not run sanitizer builds\n");
#else
	if (system("valgrind --version >/dev/null 2>&1") != 0) {
		printf("skipped: valgrind is not installed\n");
		return;
	}
	/* One backend: valgrind takes seconds to start slabkit, and the
	 * annotations are core's, the same for every backend. */
	for (size_t i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
		if (compiled(all_backends[i])) {
			valgrind_sees(all_backends[i]);
			break;
		}
#endif
}

/* --- guard pages (SLABKIT_GUARD: memguard, KFENCE) ---
 *
 * A child process with guards on its cache writes one byte past a live
 * object, or reads a freed one: either must fault (SIGSEGV) at that access.
 * Then a normal run with guards on: everything works, nothing is
 * reported, and guarded objects were handed out. */

#include <signal.h>

enum guard_bug { GUARD_OVERRUN, GUARD_USE_AFTER_FREE, GUARD_KMALLOC_UAF, GUARD_TYPE_OVERRUN, GUARD_CTOR_OVERRUN };

static void ctor_fill(void *obj);

static void guard_child(const char *b, int bug)
{
	signal(SIGSEGV, SIG_DFL); /* cmocka's handler would carry on with the next test */
	setenv("SLABKIT_GUARD",
	       bug == GUARD_TYPE_OVERRUN ? "type=dbgtest" : bug == GUARD_CTOR_OVERRUN ? "sample=1" : "skt_guard,kmalloc-64",
	       1);
	struct slabkit_config cfg = { .backend = b, .tick_ms = -1 };
	slabkit_fini();
	if (slabkit_init(&cfg) != 0)
		_exit(3);
	struct kmem_cache *s = kmem_cache_create("skt_guard", 64, 0, 0, NULL);
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	unsigned char *k = kmalloc(64, GFP_KERNEL);
	if (!p || !k)
		_exit(4);
	memset(p, 1, 64); /* the whole object is usable */
	memset(k, 1, 64);
	volatile unsigned char sink = 0;
	switch (bug) {
	case GUARD_OVERRUN:
		launder(p)[64] = 2;
		break;
	case GUARD_USE_AFTER_FREE:
		kmem_cache_free(s, p);
		sink = launder(p)[0];
		break;
	case GUARD_KMALLOC_UAF:
		kfree(k);
		launder(k)[63] = 3;
		break;
	case GUARD_TYPE_OVERRUN: { /* malloc(9) of the named type: one byte past its block */
		unsigned char *m = bsd_malloc(100, M_DBGTEST, M_WAITOK);
		memset(m, 1, 100);
		launder(m)[bsd_malloc_usable_size(m)] = 4;
		break;
	}
	case GUARD_CTOR_OVERRUN: { /* a sampled object of a ctor cache */
		struct kmem_cache *t = kmem_cache_create("skt_gctor1", 48, 0, 0, ctor_fill);
		unsigned char *q = t ? kmem_cache_alloc(t, GFP_KERNEL) : NULL;
		if (!q || q[47] != 0x5c)
			_exit(5);
		launder(q)[48] = 5;
		break;
	}
	}
	(void)sink;
	_exit(0); /* not caught */
}

/* True if the child died of SIGSEGV (or, in the ASan build, ASan caught
 * the SEGV and said so). */
static bool guard_faults(const char *b, enum guard_bug bug)
{
	static char out[16384];
	int status = run_child(guard_child, b, (int)bug, out, sizeof(out));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
		return true;
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "SEGV"))
		return true;
	fprintf(stderr, "child: %s %d, %s\n", WIFSIGNALED(status) ? "signal" : "exit",
		WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
	return false;
}

static void guard_bugs(const char *b)
{
	static const char *const names[] = { "one-byte overrun", "use after free", "kmalloc write after free",
					     "malloc(9) overrun of a guarded type", "sampled ctor object overrun" };
	for (int bug = GUARD_OVERRUN; bug <= GUARD_CTOR_OVERRUN; bug++)
		if (!guard_faults(b, (enum guard_bug)bug))
			fail_msg("%s: a %s of a guarded object did not fault", b, names[bug]);
}

static void ctor_fill(void *obj)
{
	memset(obj, 0x5c, 48);
}

/* Guards on everything (every 2nd allocation, and every one of skt_gctor):
 * the basics work and nothing is reported. */
static void guard_basics(const char *b)
{
	setenv("SLABKIT_GUARD", "sample=2,skt_gctor", 1);
	init_with(b, NULL, NULL);
	unsetenv("SLABKIT_GUARD");
	struct kmem_cache *s = kmem_cache_create("skt_gplain", 64, 0, 0, NULL);
	struct kmem_cache *t = kmem_cache_create("skt_gctor", 48, 0, 0, ctor_fill);
	uma_zone_t z = uma_zcreate("skt_gzone", 100, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	enum { N = 200 };
	void *p[N], *q[N], *k[N], *u[N], *m[N];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			p[i] = kmem_cache_alloc(s, GFP_KERNEL);
			q[i] = kmem_cache_alloc(t, GFP_KERNEL);
			k[i] = kmalloc(1 + (size_t)(i * 37) % 3000, GFP_KERNEL);
			u[i] = uma_zalloc(z, M_WAITOK);
			m[i] = bsd_malloc(1 + (size_t)(i * 53) % 2000, M_DBGTEST, M_WAITOK | M_ZERO);
			assert_true(p[i] && q[i] && k[i] && u[i] && m[i]);
			assert_int_equal(((unsigned char *)q[i])[47], 0x5c); /* constructed */
			memset(p[i], i, 64);
			memset(k[i], i, 1 + (size_t)(i * 37) % 3000);
			memset(u[i], i, 100);
			assert_int_equal(((unsigned char *)m[i])[0], 0);
		}
		for (int i = 0; i < N; i++) {
			assert_int_equal(((unsigned char *)p[i])[63], (unsigned char)i);
			k[i] = krealloc(k[i], 4000, GFP_KERNEL);
			assert_non_null(k[i]);
			assert_int_equal(((unsigned char *)k[i])[0], (unsigned char)i);
		}
		assert_int_equal(slabkit_validate(NULL), 0);
		for (int i = 0; i < N; i++) {
			kmem_cache_free(s, p[i]);
			kmem_cache_free(t, q[i]);
			kfree(k[i]);
			uma_zfree(z, u[i]);
			bsd_free(m[i], M_DBGTEST);
		}
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	assert_int_equal(slabkit_debug_errors(), 0);
	assert_int_equal(sk_panic_count(), 0);
	/* Every skt_gctor object, and about half of the rest, were guarded. */
	assert_true(sk_guard_allocations() >= 2 * N + 2 * N);
	uma_zdestroy(z);
	kmem_cache_destroy(t);
	kmem_cache_destroy(s);
	slabkit_fini();
}

/* SLABKIT_GUARD=type=NAME: every malloc(9) block of that type (up to the
 * largest class) is guarded, blocks of other types never are. */
static void guard_by_type(const char *b)
{
	static struct malloc_type other = { .ks_shortdesc = "dbgother" };
	setenv("SLABKIT_GUARD", "type=dbgtest", 1);
	init_with(b, NULL, NULL);
	unsetenv("SLABKIT_GUARD");
	slabkit_malloc_type_register(&other);
	enum { N = 40 };
	void *m[N], *o[N];
	uint64_t g0 = sk_guard_allocations();
	for (int i = 0; i < N; i++) {
		size_t size = 1 + (size_t)(i * 997) % 9000;
		o[i] = bsd_malloc(size, &other, M_WAITOK);
		assert_non_null(o[i]);
		assert_int_equal(sk_guard_allocations(), g0 + (uint64_t)i);
		m[i] = bsd_malloc(size, M_DBGTEST, M_WAITOK | M_ZERO);
		assert_non_null(m[i]);
		assert_int_equal(sk_guard_allocations(), g0 + (uint64_t)i + 1);
		/* Against its guard page: the block ends where the page does. */
		assert_int_equal(((uintptr_t)m[i] + bsd_malloc_usable_size(m[i])) % 4096, 0);
		assert_int_equal(((unsigned char *)m[i])[size - 1], 0);
		memset(m[i], i, size);
		memset(o[i], i, size);
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	for (int i = 0; i < N; i++) {
		bsd_free(m[i], M_DBGTEST);
		bsd_free(o[i], &other);
	}
	assert_int_equal(slabkit_debug_errors(), 0);
	assert_int_equal(sk_panic_count(), 0);
	slabkit_malloc_type_unregister(&other);
	slabkit_fini();
}

/* Sampled guard pages of caches with a constructor (sample=1: every
 * allocation guarded).  Each guarded object is a slab of its own: the
 * ctor (or UMA init) runs once when its pages are made, with no allocator
 * lock held; the object is handed out constructed, freed in constructed
 * state and never reused, and UMA's fini runs once when its pages go. */
static unsigned long ctor_calls, init_calls, fini_calls;

static void counting_ctor(void *obj)
{
	assert_false(sk_pcpu_caller_holds_slot()); /* no allocator lock */
	void *x = kmalloc(32, GFP_KERNEL);          /* allocating from a ctor works */
	assert_non_null(x);
	kfree(x);
	memset(obj, 0x5c, 48);
	ctor_calls++;
}

static int counting_init(void *mem, int size, int flags)
{
	(void)flags;
	assert_false(sk_pcpu_caller_holds_slot());
	memset(mem, 0x3a, (size_t)size);
	init_calls++;
	return 0;
}

static void counting_fini(void *mem, int size)
{
	(void)size;
	assert_int_equal(((unsigned char *)mem)[0], 0x3a); /* freed constructed */
	fini_calls++;
}

static void guard_ctor_sampled(const char *b)
{
	setenv("SLABKIT_GUARD", "sample=1", 1);
	init_with(b, NULL, NULL);
	unsetenv("SLABKIT_GUARD");
	ctor_calls = init_calls = fini_calls = 0;
	struct kmem_cache *t = kmem_cache_create("skt_gsctor", 48, 0, 0, counting_ctor);
	uma_zone_t z = uma_zcreate("skt_gsinit", 40, NULL, NULL, counting_init, counting_fini, UMA_ALIGN_PTR, 0);
	assert_true(t && z);
	enum { N = 16 };
	void *q[N], *u[N];
	uint64_t g0 = sk_guard_allocations();
	for (int round = 1; round <= 2; round++) {
		for (int i = 0; i < N; i++) {
			q[i] = kmem_cache_alloc(t, GFP_KERNEL);
			u[i] = uma_zalloc(z, M_WAITOK);
			assert_true(q[i] && u[i]);
			assert_int_equal(((unsigned char *)q[i])[0], 0x5c);
			assert_int_equal(((unsigned char *)q[i])[47], 0x5c);
			assert_int_equal(((unsigned char *)u[i])[39], 0x3a);
			((unsigned char *)q[i])[0] = 1; /* in use ... */
		}
		/* One construction per guarded object, none more (each ctor's
		 * kmalloc is guarded too: 3 guarded allocations per i). */
		assert_int_equal(sk_guard_allocations(), g0 + (uint64_t)(3 * N * round));
		assert_int_equal(ctor_calls, (unsigned long)(N * round));
		assert_int_equal(init_calls, (unsigned long)(N * round));
		for (int i = 0; i < N; i++) {
			((unsigned char *)q[i])[0] = 0x5c; /* ... and freed constructed */
			kmem_cache_free(t, q[i]);
			uma_zfree(z, u[i]);
		}
		assert_int_equal(ctor_calls, (unsigned long)(N * round));
	}
	assert_int_equal(slabkit_validate(NULL), 0);
	uma_zdestroy(z); /* the kept pages go: fini once per init */
	assert_int_equal(fini_calls, init_calls);
	kmem_cache_destroy(t);
	assert_int_equal(slabkit_debug_errors(), 0);
	assert_int_equal(sk_panic_count(), 0);
	slabkit_fini();
}

/* --- failure injection --- */

static void failures(const char *b)
{
	init_with(b, NULL, "every=2,cache=skt_fail");
	struct kmem_cache *s = kmem_cache_create("skt_fail", 64, 0, 0, NULL);
	struct kmem_cache *other = kmem_cache_create("skt_nofail", 64, 0, 0, NULL);
	void *p[40];
	int failed = 0;
	for (int i = 0; i < 40; i++)
		if (!(p[i] = kmem_cache_alloc(s, GFP_NOWAIT | __GFP_NOWARN)))
			failed++;
	assert_int_equal(failed, 20);
	for (int i = 0; i < 40; i++) {
		if (p[i])
			kmem_cache_free(s, p[i]);
		p[i] = NULL;
	}
	for (int i = 0; i < 40; i++) { /* blocking and NOFAIL requests never fail */
		void *x = kmem_cache_alloc(s, i & 1 ? GFP_KERNEL : GFP_ATOMIC | __GFP_NOFAIL);
		assert_non_null(x);
		kmem_cache_free(s, x);
		x = kmem_cache_alloc(other, GFP_NOWAIT);
		assert_non_null(x);
		kmem_cache_free(other, x);
	}
	kmem_cache_destroy(s);
	kmem_cache_destroy(other);
	slabkit_fini();

	/* A malloc(9) type, every third M_NOWAIT request; M_WAITOK never. */
	init_with(b, NULL, "every=3,type=dbgtest");
	failed = 0;
	for (int i = 0; i < 30; i++) {
		void *m = bsd_malloc(100, M_DBGTEST, M_NOWAIT);
		failed += !m;
		bsd_free(m, M_DBGTEST);
		m = bsd_malloc(100, M_DBGTEST, M_WAITOK);
		assert_non_null(m);
		bsd_free(m, M_DBGTEST);
	}
	assert_int_equal(failed, 10);
	slabkit_fini();

	/* "wait": blocking requests fail too; a probability; the A letter. */
	init_with(b, "A,skt_fa", "probability=50,wait");
	s = kmem_cache_create("skt_fa", 32, 0, 0, NULL);
	other = kmem_cache_create("skt_fb", 32, 0, 0, NULL);
	failed = 0;
	for (int i = 0; i < 400; i++) {
		void *x = kmem_cache_alloc(s, GFP_KERNEL | __GFP_NOWARN);
		failed += !x;
		if (x)
			kmem_cache_free(s, x);
		x = kmem_cache_alloc(other, GFP_KERNEL);
		assert_non_null(x);
		kmem_cache_free(other, x);
	}
	assert_in_range(failed, 120, 280);
	kmem_cache_destroy(s);
	kmem_cache_destroy(other);
	slabkit_fini();
}

static void test_bad_spec(void **state)
{
	(void)state;
	struct slabkit_config cfg = { .debug = "FQ", .tick_ms = -1 };
	sk_install_hooks();
	sk_capture_reset();
	sk_expect_messages();
	slabkit_fini();
	assert_int_equal(slabkit_init(&cfg), -EINVAL);
	sk_assert_reported("unknown letter", NULL, NULL);
	struct slabkit_config cfg2 = { .fail_alloc = "every=0", .tick_ms = -1 };
	assert_int_equal(slabkit_init(&cfg2), -EINVAL);
	sk_assert_reported("SLABKIT_FAIL_ALLOC", NULL, NULL);
}

int main(int argc, char **argv)
{
	self_path = argv[0];
	if (argc == 3 && !strcmp(argv[1], "--valgrind-child"))
		return valgrind_child(argv[2]);
	if (getenv("SKT_TEST_FILTER")) /* e.g. test_validate_under_load, to repeat one test */
		cmocka_set_test_filter(getenv("SKT_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		BACKEND_TEST(test_red_zones, clobber_zone),
		BACKEND_TEST(test_poison, clobber_poison),
		BACKEND_TEST(test_kmalloc_redzone, kmalloc_zone),
		BACKEND_TEST(test_krealloc_redzone, krealloc_zeroing),
		BACKEND_TEST(test_double_and_invalid_free, frees),
		BACKEND_TEST(test_leak_destroy, leak_destroy),
		BACKEND_TEST(test_all_caches_clean, everything_clean),
		BACKEND_TEST(test_invariants_trash, invariants),
		BACKEND_TEST(test_free_pointer, free_pointer),
		BACKEND_TEST(test_full_slab, full_slab),
		BACKEND_TEST(test_slot_entries, slot_entry),
		BACKEND_TEST(test_validate_under_load, validate_under_load),
		cmocka_unit_test(test_asan_sees_slab_objects),
		BACKEND_TEST(test_sanitize_large_and_tails, sanitize_large),
		cmocka_unit_test(test_valgrind_sees_slab_objects),
		BACKEND_TEST(test_guard_faults, guard_bugs),
		BACKEND_TEST(test_guard_basics, guard_basics),
		BACKEND_TEST(test_guard_by_type, guard_by_type),
		BACKEND_TEST(test_guard_ctor_sampled, guard_ctor_sampled),
		BACKEND_TEST(test_failure_injection, failures),
		cmocka_unit_test(test_bad_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
