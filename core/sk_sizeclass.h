/*
 * Size classes of the two kmalloc-style front ends.
 *
 * Linux kmalloc: 8 16 32 64 96 128 192 256 512 1k 2k 4k 8k; sizes up to 192
 * go through a table indexed by (size-1)/8 so 96 and 192 are used, larger
 * ones by the highest set bit.  FreeBSD malloc(9) (kmemzones): 16 32 64 128
 * 256 384 512 1k 2k 4k 8k 16k 32k 64k, indexed by (size+15)/16 up to 512
 * then by the highest bit.  Anything larger goes to the page path.
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

extern const uint32_t sk_kmalloc_class_size[SK_KMALLOC_CLASSES];
extern const uint32_t sk_bsd_class_size[SK_BSD_CLASSES];

/* Class index for 1 <= size <= SK_KMALLOC_MAX_CACHE_SIZE; -1 above. */
int sk_kmalloc_index(size_t size);
/* Class index for 1 <= size <= SK_BSD_MAX_CACHE_SIZE; -1 above. */
int sk_bsd_index(size_t size);

#pragma GCC visibility pop

#endif
