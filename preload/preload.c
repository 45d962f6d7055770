/*
 * libslabkit-preload.so: slabkit as the process's malloc.
 *
 *     SLABKIT_BACKEND=uma LD_PRELOAD=libslabkit-preload.so ./program
 *
 * This file only gives the libc allocation surface its names; the rules
 * (size classes, large blocks, bootstrap before init, errno) are core's
 * libc front end (core/sk_libc.h, core/libc_malloc.c), so that every
 * backend serves malloc exactly as it serves any other cache.
 *
 * Every libc entry point is exported, so that no pointer from glibc's own
 * heap ever reaches slabkit's free: malloc, free, calloc, realloc,
 * reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
 * malloc_usable_size, malloc_trim.  C++ new and delete reach them through
 * libstdc++'s operator new/delete, which call malloc, aligned_alloc and
 * free.  free preserves errno.  Thread-local state (the bootstrap flag) is
 * initial-exec TLS.  Per-CPU slots hold what a thread frees, so a thread
 * that exits leaves no cache of its own behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "core/sk_libc.h"

/* Initialise when the library is loaded, before the program runs: a bad
 * SLABKIT_BACKEND stops every program at once with a message (exit
 * status 2), even one that never calls malloc.  Calls made before this
 * constructor (other libraries' constructors) initialise on first use. */
__attribute__((constructor)) static void preload_init(void)
{
	sk_libc_init();
}

SK_EXPORT void *malloc(size_t size)
{
	return sk_libc_alloc(size);
}

SK_EXPORT void free(void *p)
{
	sk_libc_free(p);
}

SK_EXPORT void *calloc(size_t n, size_t size)
{
	return sk_libc_calloc(n, size, SK_CALLER());
}

SK_EXPORT void *realloc(void *p, size_t size)
{
	return sk_libc_realloc(p, size, SK_CALLER());
}

SK_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return sk_libc_realloc(p, bytes, SK_CALLER());
}

SK_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	int saved = errno;

	if (!SK_IS_POW2(align) || align % sizeof(void *) != 0)
		return EINVAL;
	void *p = sk_libc_memalign(align, size, SK_CALLER());
	if (!p) {
		int err = errno;
		errno = saved;
		return err;
	}
	*out = p;
	errno = saved;
	return 0;
}

SK_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	return sk_libc_memalign(align, size, SK_CALLER());
}

SK_EXPORT void *memalign(size_t align, size_t size)
{
	return sk_libc_memalign(align, size, SK_CALLER());
}

SK_EXPORT void *valloc(size_t size)
{
	return sk_libc_memalign(SK_PAGE_SIZE, size, SK_CALLER());
}

SK_EXPORT void *pvalloc(size_t size)
{
	size_t rounded = SK_ALIGN_UP(size ? size : 1, SK_PAGE_SIZE);

	if (rounded < size) {
		errno = ENOMEM;
		return NULL;
	}
	return sk_libc_memalign(SK_PAGE_SIZE, rounded, SK_CALLER());
}

SK_EXPORT size_t malloc_usable_size(void *p)
{
	return sk_libc_usable_size(p);
}

SK_EXPORT int malloc_trim(size_t pad)
{
	(void)pad;
	return sk_libc_trim();
}
