/*
 * The libc front end (core/sk_libc.h), run once per backend: what
 * libslabkit-preload.so gives a program as malloc, called here by its core
 * names so that the sanitizer builds check it too.
 *
 *  - every block is aligned to 16 and its usable size is its class, at
 *    most a fifth more than asked above 128 B;
 *  - memalign & co. honour every power-of-two alignment, refuse others
 *    with EINVAL; impossible sizes give NULL with ENOMEM;
 *  - realloc keeps the contents across classes and the page path, keeps
 *    the block while it shrinks by less than half, grows large blocks in
 *    place or by remapping;
 *  - a freed large block is handed out again without being given back to
 *    the OS (no refault), and malloc_trim gives it back;
 *  - misuse (foreign pointer, double free of a large block, a pointer
 *    inside a block, a kmalloc object) is reported with the call and the
 *    pointer, and changes nothing;
 *  - threads allocate and free each other's blocks.
 */
#define _GNU_SOURCE
#include <slabkit/linux/slab.h>

#include "core/sk_libc.h"
#include "sk_test.h"

/* The tests call the front end directly; the site (SLABKIT_LEAKS) is theirs. */
#define sk_libc_calloc(n, size) (sk_libc_calloc)((n), (size), SK_CALLER())
#define sk_libc_realloc(p, size) (sk_libc_realloc)((p), (size), SK_CALLER())
#define sk_libc_memalign(align, size) (sk_libc_memalign)((align), (size), SK_CALLER())

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static bool check(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return false;
	return true;
}

static void test_classes_aligned(void **state)
{
	(void)state;
	for (size_t n = 0; n <= 40000; n += n < 4200 ? 1 : 37) {
		unsigned char *p = sk_libc_alloc(n);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 16, 0);
		size_t usable = sk_libc_usable_size(p);
		assert_true(usable >= n);
		if (n > 128 && n <= SK_LIBC_MAX_CACHE_SIZE)
			assert_true((usable - n) * 5 < usable);
		fill(p, n, (unsigned)n);
		assert_true(check(p, n, (unsigned)n));
		sk_libc_free(p);
	}
	/* Each class is a cache every backend serves, named libc-<size>. */
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("libc-160", &info), 0);
	assert_string_equal(info.front_end, "libc");
	assert_int_equal(info.object_size, 160);
}

static void test_calloc_zeroes(void **state)
{
	(void)state;
	for (size_t n = 1; n < 100000; n = n * 3 + 1) {
		unsigned char *p = sk_libc_alloc(n);
		memset(p, 0xa5, n);
		sk_libc_free(p);
		unsigned char *q = sk_libc_calloc(1, n);
		assert_non_null(q);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(q[i], 0);
		sk_libc_free(q);
	}
}

static void test_memalign(void **state)
{
	(void)state;
	static const size_t sizes[] = { 0, 1, 100, 4096, 5000, 100000 };
	for (size_t align = 1; align <= ((size_t)1 << 21); align <<= 1) {
		for (size_t i = 0; i < SK_ARRAY_SIZE(sizes); i++) {
			unsigned char *p = sk_libc_memalign(align, sizes[i]);
			assert_non_null(p);
			assert_int_equal((uintptr_t)p % SK_MAX(align, (size_t)16), 0);
			assert_true(sk_libc_usable_size(p) >= sizes[i]);
			fill(p, sizes[i], 3);
			assert_true(check(p, sizes[i], 3));
			sk_libc_free(p);
		}
	}
	errno = 0;
	assert_null(sk_libc_memalign(24, 10));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(sk_libc_memalign(0, 10));
	assert_int_equal(errno, EINVAL);
}

static void test_errno_enomem(void **state)
{
	(void)state;
	errno = 0;
	assert_null(sk_libc_alloc(SIZE_MAX));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(sk_libc_alloc(SIZE_MAX - 4096));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(sk_libc_calloc(SIZE_MAX / 2, 3));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(sk_libc_memalign(64, SIZE_MAX));
	assert_int_equal(errno, ENOMEM);

	unsigned char *p = sk_libc_alloc(100);
	fill(p, 100, 9);
	errno = 0;
	assert_null(sk_libc_realloc(p, SIZE_MAX));
	assert_int_equal(errno, ENOMEM);
	assert_true(check(p, 100, 9)); /* untouched, still ours */
	sk_libc_free(p);
}

static void test_realloc_rules(void **state)
{
	(void)state;
	unsigned char *p = sk_libc_realloc(NULL, 50);
	assert_non_null(p);
	fill(p, 50, 1);
	/* Shrinking by less than half keeps the block. */
	assert_ptr_equal(sk_libc_realloc(p, 40), p);
	/* Growth through classes and onto the page path keeps the contents. */
	size_t have = 40;
	for (size_t n = 100; n < ((size_t)8 << 20); n = n * 2 + 4000) {
		p = sk_libc_realloc(p, n);
		assert_non_null(p);
		assert_true(check(p, have, 1));
		fill(p, n, 1);
		have = n;
	}
	/* Shrinking a large block trims it in place. */
	unsigned char *q = sk_libc_realloc(p, have - 3 * SK_PAGE_SIZE);
	assert_ptr_equal(q, p);
	assert_int_equal(sk_libc_usable_size(q), SK_ALIGN_UP(have - 3 * SK_PAGE_SIZE, SK_PAGE_SIZE));
	assert_true(check(q, have - 3 * SK_PAGE_SIZE, 1));
	/* Down to a class: moved, contents kept. */
	q = sk_libc_realloc(q, 1000);
	assert_true(check(q, 1000, 1));
	assert_true(sk_libc_usable_size(q) < 2000);
	/* realloc(p, 0) frees and returns NULL, as glibc's does. */
	assert_null(sk_libc_realloc(q, 0));
}

static void test_realloc_large_moves(void **state)
{
	(void)state;
	/* A big block next to a live one cannot grow in place: it moves (by
	 * remapping), and the contents come along. */
	size_t n = (size_t)2 << 20;
	unsigned char *p = sk_libc_alloc(n);
	fill(p, n, 5);
	unsigned char *fence = sk_libc_memalign(SK_PAGE_SIZE, SK_PAGE_SIZE * 16);
	unsigned char *q = sk_libc_realloc(p, n * 8);
	assert_non_null(q);
	assert_true(check(q, n, 5));
	fill(q, n * 8, 6);
	assert_true(check(q, n * 8, 6));
	/* Growing the last block of a fresh region finds free pages after it. */
	unsigned char *r = sk_libc_alloc(40 * SK_PAGE_SIZE);
	fill(r, 40 * SK_PAGE_SIZE, 8);
	unsigned char *r2 = sk_libc_realloc(r, 48 * SK_PAGE_SIZE);
	assert_true(check(r2, 40 * SK_PAGE_SIZE, 8));
	sk_libc_free(r2);
	sk_libc_free(q);
	sk_libc_free(fence);
}

static uint64_t pages_released(void)
{
	struct slabkit_stats st;
	slabkit_stats(&st);
	return st.pages_released;
}

static void test_large_reuse_without_refault(void **state)
{
	(void)state;
	size_t n = (size_t)6 << 20;
	sk_libc_trim();
	unsigned char *p = sk_libc_alloc(n);
	memset(p, 1, n);
	uint64_t released = pages_released();
	sk_libc_free(p);
	/* A smaller request reuses the block (trimmed); nothing of its first
	 * 5 MiB went back to the OS. */
	unsigned char *q = sk_libc_alloc(n - SK_PAGE_SIZE * 5);
	assert_ptr_equal(q, p);
	assert_int_equal(q[12345], 1);
	sk_libc_free(q);
	/* malloc_trim gives cached blocks back. */
	assert_int_equal(sk_libc_trim(), 1);
	assert_true(pages_released() > released);
}

static void test_misuse_reported(void **state)
{
	(void)state;
	char buf[32];
	int on_stack;

	sk_expect_panics();
	sk_libc_free(&on_stack);
	sk_assert_reported("free", sk_ptr_text(&on_stack, buf), "not allocated");

	unsigned char *big = sk_libc_alloc((size_t)1 << 20);
	sk_libc_free(big + 64);
	sk_assert_reported("free", sk_ptr_text(big + 64, buf), "inside");
	sk_libc_free(big);
	sk_libc_free(big);
	sk_assert_reported("free", sk_ptr_text(big, buf), "double free");

	void *k = kmalloc(64, GFP_KERNEL);
	sk_libc_free(k);
	sk_assert_reported("free", sk_ptr_text(k, buf), "kmalloc");
	kfree(k);
	assert_int_equal(sk_libc_usable_size(&on_stack), 0);
	sk_assert_reported("malloc_usable_size", sk_ptr_text(&on_stack, buf), "not a live block");
}

#define XFER 256
struct xfer {
	void *slot[XFER];
	size_t size[XFER];
	int done;
};

static void *producer(void *arg)
{
	struct xfer *x = arg;
	unsigned seed = 7;
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < XFER; i++) {
			seed = seed * 1103515245 + 12345;
			size_t n = (seed >> 8) % (i % 64 == 0 ? 200000 : 2000) + 1;
			unsigned char *p = sk_libc_alloc(n);
			assert_non_null(p);
			fill(p, n < 64 ? n : 64, (unsigned)n);
			while (__atomic_load_n(&x->slot[i], __ATOMIC_ACQUIRE))
				sched_yield();
			x->size[i] = n;
			__atomic_store_n(&x->slot[i], p, __ATOMIC_RELEASE);
		}
	}
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *consumer(void *arg)
{
	struct xfer *x = arg;
	for (;;) {
		bool any = false;
		for (int i = 0; i < XFER; i++) {
			unsigned char *p = __atomic_load_n(&x->slot[i], __ATOMIC_ACQUIRE);
			if (!p)
				continue;
			any = true;
			size_t n = x->size[i];
			assert_true(check(p, n < 64 ? n : 64, (unsigned)n));
			sk_libc_free(p);
			__atomic_store_n(&x->slot[i], NULL, __ATOMIC_RELEASE);
		}
		if (!any && __atomic_load_n(&x->done, __ATOMIC_ACQUIRE)) {
			bool empty = true;
			for (int i = 0; i < XFER; i++)
				empty &= __atomic_load_n(&x->slot[i], __ATOMIC_ACQUIRE) == NULL;
			if (empty)
				return NULL;
		}
	}
}

static void test_threads_cross_free(void **state)
{
	(void)state;
	static struct xfer x[2];
	pthread_t t[4];
	memset(x, 0, sizeof(x));
	for (int i = 0; i < 2; i++) {
		pthread_create(&t[2 * i], NULL, producer, &x[i]);
		pthread_create(&t[2 * i + 1], NULL, consumer, &x[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		SK_TEST(test_classes_aligned),
		SK_TEST(test_calloc_zeroes),
		SK_TEST(test_memalign),
		SK_TEST(test_errno_enomem),
		SK_TEST(test_realloc_rules),
		SK_TEST(test_realloc_large_moves),
		SK_TEST(test_large_reuse_without_refault),
		SK_TEST(test_misuse_reported),
		SK_TEST(test_threads_cross_free),
	};
	return cmocka_run_group_tests_name("libc", tests, sk_group_setup, sk_group_teardown);
}
