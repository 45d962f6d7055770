/*
 * Unit test of the size-class tables (core/sk_sizeclass.h).
 *
 * Linux kmalloc: 8 16 32 64 96 128 192 256 512 1k 2k 4k 8k, every size
 * 1..8192 to the smallest class that holds it (96 and 192 included), -1
 * above.  FreeBSD malloc(9): 16 32 64 128 256 384 512 1k .. 64k, 1..65536,
 * -1 above.  libc (the malloc front end): 16..128 by 16, then four classes
 * per power of two up to 32k, each a multiple of 16, waste under a fifth.
 */
#include "core/sk_sizeclass.h"
#include <slabkit/linux/slab.h>

#include "sk_test.h"

static const uint32_t want_kmalloc[] = { 8, 16, 32, 64, 96, 128, 192, 256, 512,
					 1024, 2048, 4096, 8192 };
static const uint32_t want_bsd[] = { 16, 32, 64, 128, 256, 384, 512, 1024,
				     2048, 4096, 8192, 16384, 32768, 65536 };

static void test_tables(void **state)
{
	(void)state;
	assert_int_equal(SK_KMALLOC_CLASSES, sizeof(want_kmalloc) / sizeof(want_kmalloc[0]));
	assert_int_equal(SK_BSD_CLASSES, sizeof(want_bsd) / sizeof(want_bsd[0]));
	for (int i = 0; i < SK_KMALLOC_CLASSES; i++)
		assert_int_equal(sk_kmalloc_class_size[i], want_kmalloc[i]);
	for (int i = 0; i < SK_BSD_CLASSES; i++)
		assert_int_equal(sk_bsd_class_size[i], want_bsd[i]);
	assert_int_equal(sk_kmalloc_class_size[SK_KMALLOC_CLASSES - 1], SK_KMALLOC_MAX_CACHE_SIZE);
	assert_int_equal(sk_bsd_class_size[SK_BSD_CLASSES - 1], SK_BSD_MAX_CACHE_SIZE);
}

/* idx is the smallest class >= size. */
static void check_smallest(const char *what, const uint32_t *table, int nclasses, size_t size,
			   int idx)
{
	if (idx < 0 || idx >= nclasses) {
		fail_msg("%s(%zu) = %d, out of range", what, size, idx);
		return;
	}
	if (table[idx] < size)
		fail_msg("%s(%zu) = %d (class %u) is too small", what, size, idx, table[idx]);
	if (idx > 0 && table[idx - 1] >= size)
		fail_msg("%s(%zu) = %d (class %u), but class %u fits", what, size, idx, table[idx],
			 table[idx - 1]);
}

static void test_kmalloc_index(void **state)
{
	(void)state;
	unsigned used[SK_KMALLOC_CLASSES] = { 0 };
	for (size_t n = 1; n <= SK_KMALLOC_MAX_CACHE_SIZE; n++) {
		int idx = sk_kmalloc_index(n);
		check_smallest("sk_kmalloc_index", sk_kmalloc_class_size, SK_KMALLOC_CLASSES, n, idx);
		used[idx]++;
	}
	for (int i = 0; i < SK_KMALLOC_CLASSES; i++)
		assert_true(used[i] > 0);
	/* 96 and 192 are used for exactly the sizes they should take. */
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(65)], 96);
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(96)], 96);
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(97)], 128);
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(129)], 192);
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(192)], 192);
	assert_int_equal(sk_kmalloc_class_size[sk_kmalloc_index(193)], 256);
	assert_int_equal(used[4], 32);  /* 65..96 */
	assert_int_equal(used[6], 64);  /* 129..192 */

	assert_int_equal(sk_kmalloc_index(SK_KMALLOC_MAX_CACHE_SIZE + 1), -1);
	assert_int_equal(sk_kmalloc_index(16384), -1);
	assert_int_equal(sk_kmalloc_index((size_t)1 << 40), -1);
	assert_int_equal(sk_kmalloc_index(SIZE_MAX), -1);
}

/* <slabkit/linux/slab.h> resolves constant sizes with its own macro: it
 * must name the class core's table names, for every size. */
static void test_public_kmalloc_class(void **state)
{
	(void)state;
	for (size_t n = 1; n <= SK_KMALLOC_MAX_CACHE_SIZE; n++)
		if ((int)slabkit_kmalloc_class(n) != sk_kmalloc_index(n))
			fail_msg("slabkit_kmalloc_class(%zu) = %u, core's class is %d", n,
				 slabkit_kmalloc_class(n), sk_kmalloc_index(n));
	assert_int_equal(KMALLOC_MAX_CACHE_SIZE, SK_KMALLOC_MAX_CACHE_SIZE);
}

static void test_bsd_index(void **state)
{
	(void)state;
	unsigned used[SK_BSD_CLASSES] = { 0 };
	for (size_t n = 1; n <= SK_BSD_MAX_CACHE_SIZE; n++) {
		int idx = sk_bsd_index(n);
		check_smallest("sk_bsd_index", sk_bsd_class_size, SK_BSD_CLASSES, n, idx);
		used[idx]++;
	}
	for (int i = 0; i < SK_BSD_CLASSES; i++)
		assert_true(used[i] > 0);
	assert_int_equal(sk_bsd_class_size[sk_bsd_index(257)], 384);
	assert_int_equal(sk_bsd_class_size[sk_bsd_index(384)], 384);
	assert_int_equal(sk_bsd_class_size[sk_bsd_index(385)], 512);
	assert_int_equal(used[5], 128); /* 257..384 */
	assert_int_equal(sk_bsd_index(SK_BSD_MAX_CACHE_SIZE + 1), -1);
	assert_int_equal(sk_bsd_index((size_t)1 << 40), -1);
	assert_int_equal(sk_bsd_index(SIZE_MAX), -1);
}

static void test_libc_index(void **state)
{
	(void)state;
	unsigned used[SK_LIBC_CLASSES] = { 0 };
	for (int i = 0; i < SK_LIBC_CLASSES; i++) {
		assert_int_equal(sk_libc_class_size[i] % 16, 0);
		if (i > 0)
			assert_true(sk_libc_class_size[i] > sk_libc_class_size[i - 1]);
	}
	assert_int_equal(sk_libc_class_size[SK_LIBC_CLASSES - 1], SK_LIBC_MAX_CACHE_SIZE);
	for (size_t n = 1; n <= SK_LIBC_MAX_CACHE_SIZE; n++) {
		unsigned idx = sk_libc_index(n);
		check_smallest("sk_libc_index", sk_libc_class_size, SK_LIBC_CLASSES, n, (int)idx);
		used[idx]++;
		/* The class wastes less than a fifth of itself above 128 B. */
		if (n > 128)
			assert_true((sk_libc_class_size[idx] - n) * 5 < sk_libc_class_size[idx]);
	}
	for (int i = 0; i < SK_LIBC_CLASSES; i++)
		assert_true(used[i] > 0);
	assert_int_equal(sk_libc_class_size[sk_libc_index(129)], 160);
	assert_int_equal(sk_libc_class_size[sk_libc_index(257)], 320);
	assert_int_equal(sk_libc_class_size[sk_libc_index(4097)], 5120);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_kmalloc_index),
		cmocka_unit_test(test_public_kmalloc_class),
		cmocka_unit_test(test_bsd_index),
		cmocka_unit_test(test_libc_index),
	};
	return cmocka_run_group_tests_name("sizeclass", tests, NULL, NULL);
}
