/*
 * Conformance, the rest of malloc(9): malloc_aligned,
 * malloc_domainset_aligned, contigmalloc / contigfree, M_NODUMP (checked
 * in /proc/self/smaps: the block's mapping carries the "dd" flag) and
 * M_EXEC (the block runs code).  See conformance.c for how the suite runs.
 */
#define _GNU_SOURCE
#include <stdio.h>

#include <slabkit/linux/gfp.h>

#include "conformance.h"

static void test_malloc_aligned(void **state)
{
	(void)state;
	static const size_t sizes[] = { 1, 7, 8, 24, 100, 250, 300, 1000, 4000, 5000, 70000 };
	struct malloc_type_stats_sum t0 = type_stats(M_TEST);
	unsigned n = 0;
	for (size_t align = 1; align <= PAGE; align <<= 1)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			unsigned char *p = bsd_malloc_aligned(sizes[i], align, M_TEST, M_WAITOK | M_ZERO);
			assert_non_null(p);
			if ((uintptr_t)p % align)
				fail_msg("malloc_aligned(%zu, %zu) = %p", sizes[i], align, (void *)p);
			assert_true(bsd_malloc_usable_size(p) >= sizes[i]);
			assert_true(sk_first_nonzero(p, sizes[i]) == SIZE_MAX);
			memset(p, 0xee, sizes[i]);
			bsd_free(p, M_TEST);
			n++;
		}
	struct malloc_type_stats_sum t1 = type_stats(M_TEST);
	assert_int_equal(t1.allocs - t0.allocs, n);
	assert_int_equal(t1.frees - t0.frees, n);

	for (int d = 0; d < (int)slabkit_nodes(); d++) {
		void *p = bsd_malloc_domainset_aligned(200, 128, M_TEST, DOMAINSET_FIXED(d), M_WAITOK);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 128, 0);
		assert_int_equal(page_to_nid(virt_to_page(p)), d);
		bsd_free(p, M_TEST);
	}
	void *rr = bsd_malloc_domainset_aligned(3000, 64, M_TEST, DOMAINSET_RR(), M_NOWAIT);
	assert_int_equal((uintptr_t)rr % 64, 0);
	bsd_free(rr, M_TEST);

	sk_expect_panics();
	assert_null(bsd_malloc_aligned(64, 48, M_TEST, M_WAITOK));
	assert_null(bsd_malloc_aligned(64, 2 * PAGE, M_TEST, M_WAITOK));
	assert_true(sk_captured("malloc_aligned", "not a power of two", NULL) >= 2);
	assert_int_equal(sk_panic_count(), 2);
}

static void test_contigmalloc(void **state)
{
	(void)state;
	struct malloc_type_stats_sum t0 = type_stats(M_TEST);
	unsigned char *a = bsd_contigmalloc(3 * PAGE, M_TEST, M_WAITOK | M_ZERO, 0, ~0ull, 64 * 1024, 0);
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % (64 * 1024), 0);
	assert_true(sk_first_nonzero(a, 3 * PAGE) == SIZE_MAX);
	assert_true(bsd_malloc_usable_size(a) >= 3 * PAGE);
	memset(a, 1, 3 * PAGE);

	/* Boundaries: never crossed, and impossible ones refused. */
	void *b[16];
	for (int i = 0; i < 16; i++) {
		b[i] = bsd_contigmalloc(20000, M_TEST, M_NOWAIT, 0, ~0ull, PAGE, 32768);
		assert_non_null(b[i]);
		uintptr_t lo = (uintptr_t)b[i], hi = lo + 20000 - 1;
		assert_int_equal(lo / 32768, hi / 32768);
	}
	void *small = bsd_contigmalloc(100, M_TEST, M_NOWAIT, 0, 0xffffffffull, 0, 0);
	assert_non_null(small);
	assert_int_equal((uintptr_t)small % PAGE, 0);
	sk_expect_messages();
	assert_null(bsd_contigmalloc(3 * PAGE, M_TEST, M_NOWAIT, 0, ~0ull, PAGE, 2 * PAGE));
	assert_null(bsd_contigmalloc(PAGE, M_TEST, M_NOWAIT, 0, ~0ull, 3000, 0));
	assert_true(sk_captured("contigmalloc", "boundary", NULL) >= 2);

	struct malloc_type_stats_sum t1 = type_stats(M_TEST);
	assert_int_equal(t1.allocs - t0.allocs, 18);
	assert_true(t1.size_mask & (1ull << 63)); /* whole pages */

	sk_expect_panics();
	bsd_contigfree(a, PAGE * 17, M_TEST); /* more than it holds (16 pages): refused */
	assert_true(sk_captured("contigfree", "freed with size", NULL) >= 1);
	bsd_contigfree(a, 3 * PAGE, M_TEST2); /* another type: refused */
	assert_int_equal(sk_panic_count(), 2);
	assert_int_equal(a[3 * PAGE - 1], 1);

	bsd_contigfree(a, 3 * PAGE, M_TEST);
	for (int i = 0; i < 16; i++)
		(i & 1 ? bsd_free(b[i], M_TEST) : bsd_contigfree(b[i], 20000, M_TEST));
	bsd_contigfree(small, 100, M_TEST);
	bsd_contigfree(NULL, 100, M_TEST);
	struct malloc_type_stats_sum t2 = type_stats(M_TEST);
	assert_int_equal(t2.frees - t0.frees, 18);
}

/* The VmFlags of the mapping holding p in /proc/self/smaps ("" if none). */
static bool vma_flags(const void *p, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[480];
	bool inside = false, found = false;
	out[0] = 0;
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, len, "%s", line + 8);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

static bool has_flag(const char *flags, const char *flag)
{
	char pat[8];
	snprintf(pat, sizeof(pat), " %s", flag);
	return strstr(flags, pat) != NULL;
}

static void test_m_nodump(void **state)
{
	(void)state;
	char flags[512];
	unsigned char *p = bsd_malloc(100, M_TEST, M_WAITOK | M_NODUMP | M_ZERO);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % PAGE, 0); /* whole pages */
	assert_true(sk_first_nonzero(p, 100) == SIZE_MAX);
	if (!vma_flags(p, flags, sizeof(flags))) {
		print_message("skipped: /proc/self/smaps has no VmFlags here\n");
		bsd_free(p, M_TEST);
		return;
	}
	if (!has_flag(flags, "dd"))
		fail_msg("M_NODUMP block %p: VmFlags%s", (void *)p, flags);
	unsigned char *q = bsd_malloc(3 * PAGE, M_TEST, M_NOWAIT | M_NODUMP);
	assert_non_null(q);
	assert_true(vma_flags(q, flags, sizeof(flags)) && has_flag(flags, "dd"));
	/* An ordinary block is dumped. */
	unsigned char *plain = bsd_malloc(100000, M_TEST, M_WAITOK);
	assert_true(vma_flags(plain, flags, sizeof(flags)) && !has_flag(flags, "dd"));
	bsd_free(p, M_TEST);
	assert_true(vma_flags(p, flags, sizeof(flags)) && !has_flag(flags, "dd")); /* undone on free */
	bsd_free(q, M_TEST);
	bsd_free(plain, M_TEST);
	/* Through realloc and the domainset variant as well. */
	void *r = bsd_malloc_domainset(64, M_TEST, DOMAINSET_FIXED(0), M_WAITOK | M_NODUMP);
	assert_true(vma_flags(r, flags, sizeof(flags)) && has_flag(flags, "dd"));
	bsd_free(r, M_TEST);
}

static void test_m_exec(void **state)
{
	(void)state;
	char flags[512];
	sk_expect_panics();
	unsigned char *code = bsd_malloc(64, M_TEST, M_NOWAIT | M_EXEC);
	if (!code && sk_captured("M_EXEC", "cannot honour", NULL)) {
		print_message("skipped: this system refuses executable anonymous memory\n");
		return;
	}
	assert_non_null(code);
	assert_int_equal(sk_panic_count(), 0);
	assert_int_equal((uintptr_t)code % PAGE, 0);
	if (vma_flags(code, flags, sizeof(flags)))
		assert_true(has_flag(flags, "ex"));
#if defined(__x86_64__)
	static const unsigned char ret42[] = { 0xb8, 42, 0, 0, 0, 0xc3 }; /* mov $42, %eax; ret */
	memcpy(code, ret42, sizeof(ret42));
	__builtin___clear_cache((char *)code, (char *)code + sizeof(ret42));
	int (*fn)(void) = (int (*)(void))(void *)code;
	assert_int_equal(fn(), 42);
#endif
	bsd_free(code, M_TEST);
	if (vma_flags(code, flags, sizeof(flags)))
		assert_false(has_flag(flags, "ex")); /* undone on free */
}

static const struct CMUnitTest freebsd_extra_tests[] = {
	SK_TEST(test_malloc_aligned), SK_TEST(test_contigmalloc), SK_TEST(test_m_nodump),
	SK_TEST(test_m_exec),
};

const struct conformance_group conformance_freebsd_extra = {
	"freebsd_extra", freebsd_extra_tests, sizeof(freebsd_extra_tests) / sizeof(freebsd_extra_tests[0])
};
