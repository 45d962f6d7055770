/*
 * Size classes of the two kmalloc-style front ends.
 *
 * Linux kmalloc: 8 16 32 64 96 128 192 256 512 1k 2k 4k 8k.  The class of
 * any size up to 8192 is one byte load from a table indexed by
 * (size - 1) / 8 (1 KiB): the run-time kmalloc pays no function call and
 * no bit scan.  <slabkit/linux/slab.h> resolves sizes known at compile
 * time with the same numbering (slabkit_kmalloc_class).  FreeBSD malloc(9)
 * (kmemzones): 16 32 64 128 256 384 512 1k 2k 4k 8k 16k 32k 64k, a table
 * indexed by (size - 1) / 16 up to 1024, the highest bit above.  Anything
 * larger goes to the page path.
 *
 * The libc front end (malloc for whole programs, core/libc_malloc.c) has a
 * finer table, as jemalloc, tcmalloc and mimalloc do: steps of 16 up to
 * 128, then four classes per power of two (160 192 224 256, 320 384 448
 * 512, ..., 28k 32k), so a block wastes at most a fifth of itself instead
 * of up to half.  Every class is a multiple of 16 (alignof(max_align_t)).
 */
#ifndef SLABKIT_SIZECLASS_H
#define SLABKIT_SIZECLASS_H

#include <stddef.h>
#include <stdint.h>

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

#define SK_KMALLOC_CLASSES 13
#define SK_KMALLOC_MAX_CACHE_SIZE 8192u
#define SK_BSD_CLASSES 14
#define SK_BSD_MAX_CACHE_SIZE 65536u
#define SK_BSD_TABLE_MAX 1024u

extern const uint32_t sk_kmalloc_class_size[SK_KMALLOC_CLASSES];
extern const uint32_t sk_bsd_class_size[SK_BSD_CLASSES];
/* Class of size s (1 <= s <= 8192) at [(s - 1) >> 3]. */
extern const uint8_t sk_kmalloc_class_of[SK_KMALLOC_MAX_CACHE_SIZE / 8];
/* Class of size s (1 <= s <= 1024) at [(s - 1) >> 4]. */
extern const uint8_t sk_bsd_class_of[SK_BSD_TABLE_MAX / 16];

/* Class index for 1 <= size <= SK_KMALLOC_MAX_CACHE_SIZE; -1 above (and for 0). */
static inline int sk_kmalloc_index(size_t size)
{
	if (size - 1 >= SK_KMALLOC_MAX_CACHE_SIZE)
		return -1;
	return sk_kmalloc_class_of[(size - 1) >> 3];
}

/* Class index for 1 <= size <= SK_BSD_MAX_CACHE_SIZE; -1 above (and for 0). */
static inline int sk_bsd_index(size_t size)
{
	if (size - 1 < SK_BSD_TABLE_MAX)
		return sk_bsd_class_of[(size - 1) >> 4];
	if (size > SK_BSD_MAX_CACHE_SIZE)
		return -1;
	/* 2048 -> 8, 4096 -> 9, ..., 65536 -> 13 */
	return (int)(64 - __builtin_clzll((unsigned long long)(size - 1))) - 3;
}

#define SK_LIBC_CLASSES 40
#define SK_LIBC_MAX_CACHE_SIZE 32768u
extern const uint32_t sk_libc_class_size[SK_LIBC_CLASSES];

/* Class index for 1 <= size <= SK_LIBC_MAX_CACHE_SIZE (inline: malloc's
 * fast path).  Above 128: the power of two above size-1 picks a group of
 * four, the two bits below its top bit pick the class. */
static inline unsigned sk_libc_index(size_t size)
{
	if (size <= 128)
		return (unsigned)((size + 15) >> 4) - 1;
	size_t s = size - 1;
	unsigned bits = 64 - (unsigned)__builtin_clzll((unsigned long long)s); /* 2^(bits-1) <= s */
	return 8 + (bits - 8) * 4 + (unsigned)((s >> (bits - 3)) & 3);
}


#pragma GCC visibility pop

#endif
