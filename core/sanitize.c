/*
 * The user's own sanitizers (sk_sanitize.h): ASan through its public
 * interface, valgrind through its client requests.
 *
 * ASan is found at build time (__SANITIZE_ADDRESS__, __has_feature) or at
 * run time: the interface functions are weak references here, which the
 * dynamic linker binds to the ASan runtime when the program loaded one, so
 * a libslabkit.so built without ASan still poisons for a program built
 * with it.  Valgrind's requests compile to a few no-op instructions that
 * valgrind recognises; its headers are optional at build time.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "sk_core.h"
#include "sk_sanitize.h"

#if defined(__SANITIZE_ADDRESS__)
#define SK_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_ASAN_BUILD 1
#endif
#endif
#ifndef SK_ASAN_BUILD
#define SK_ASAN_BUILD 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SK_HAVE_VALGRIND 1
#endif
#endif
#ifndef SK_HAVE_VALGRIND
#define SK_HAVE_VALGRIND 0
#endif

/* ASan's public interface (sanitizer/asan_interface.h), weak: NULL when
 * no ASan runtime is loaded. */
void __asan_poison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));

bool sk_san_on;
static bool san_asan, san_valgrind;

int sk_san_configure(const char *mode)
{
	bool asan = SK_ASAN_BUILD || (__asan_poison_memory_region && __asan_unpoison_memory_region);
	bool vg = false;
#if SK_HAVE_VALGRIND
	vg = RUNNING_ON_VALGRIND != 0;
#endif
	san_asan = san_valgrind = sk_san_on = false;
	if (!mode || !*mode || !strcmp(mode, "auto")) {
		san_asan = asan;
		san_valgrind = vg;
	} else if (!strcmp(mode, "on") || !strcmp(mode, "1")) {
		san_asan = asan;
		san_valgrind = vg;
		if (!asan && !vg)
			sk_message("slabkit: SLABKIT_SANITIZE=on: neither ASan nor valgrind is present; "
				   "caches run with red zones and quarantine only");
	} else if (strcmp(mode, "off") && strcmp(mode, "0")) {
		sk_errorf("slabkit: SLABKIT_SANITIZE '%s': expected auto, on or off", mode);
		return -EINVAL;
	} else {
		return 0;
	}
	sk_san_on = san_asan || san_valgrind || (mode && (!strcmp(mode, "on") || !strcmp(mode, "1")));
	return 0;
}

const char *sk_san_tools(void)
{
	if (san_asan && san_valgrind)
		return "asan+valgrind";
	return san_asan ? "asan" : san_valgrind ? "valgrind" : "none";
}

void sk_san_alloc(const void *p, size_t size, bool defined)
{
	if (san_asan)
		__asan_unpoison_memory_region(p, size);
#if SK_HAVE_VALGRIND
	if (san_valgrind)
		VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, defined);
#else
	(void)defined;
#endif
}

void sk_san_free(const void *p, size_t size)
{
	if (san_asan)
		__asan_poison_memory_region(p, size);
#if SK_HAVE_VALGRIND
	if (san_valgrind)
		VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
}

void sk_san_open(const void *p, size_t size)
{
	if (san_asan)
		__asan_unpoison_memory_region(p, size);
#if SK_HAVE_VALGRIND
	if (san_valgrind)
		(void)VALGRIND_MAKE_MEM_DEFINED(p, size);
#endif
}

void sk_san_close(const void *p, size_t size)
{
	if (san_asan)
		__asan_poison_memory_region(p, size);
#if SK_HAVE_VALGRIND
	if (san_valgrind)
		(void)VALGRIND_MAKE_MEM_NOACCESS(p, size);
#endif
}

void sk_san_slab_unused_slow(void *from, size_t len)
{
	sk_san_close(from, len);
}

/* --- large blocks (the page path) --- */

void sk_san_large_set_size(void *p, size_t size)
{
	struct sk_page *pg = sk_page_of(p);
	size_t block = sk_large_size(pg);

	if (size > block)
		size = block;
	sk_large_words(pg)->lw_san_size = size;
	sk_san_open(p, size);
	if (size < block)
		sk_san_close((char *)p + size, block - size);
}

size_t sk_san_large_usable(const struct sk_page *pg)
{
	size_t size = sk_large_words(pg)->lw_san_size;
	return size ? size : sk_large_size(pg);
}

void sk_san_large_open(void *p, struct sk_page *pg)
{
	sk_large_words(pg)->lw_san_size = 0;
	sk_san_open(p, sk_large_size(pg));
}
