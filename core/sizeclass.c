/* Size classes of kmalloc and malloc(9); see sk_sizeclass.h. */
#include "sk_sizeclass.h"

const uint32_t sk_kmalloc_class_size[SK_KMALLOC_CLASSES] = {
	8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};

const uint32_t sk_bsd_class_size[SK_BSD_CLASSES] = {
	16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
};

/* Linux's kmalloc_size_index: class of sizes 1..192 by (size - 1) / 8. */
static const uint8_t kmalloc_small_index[24] = {
	0,             /* 1..8 */
	1,             /* 9..16 */
	2, 2,          /* ..32 */
	3, 3, 3, 3,    /* ..64 */
	4, 4, 4, 4,    /* ..96 */
	5, 5, 5, 5,    /* ..128 */
	6, 6, 6, 6, 6, 6, 6, 6, /* ..192 */
};

static inline unsigned fls_size(size_t x)
{
	return x ? (unsigned)(64 - __builtin_clzll((unsigned long long)x)) : 0;
}

int sk_kmalloc_index(size_t size)
{
	if (size <= 192)
		return kmalloc_small_index[(size - 1) >> 3];
	if (size > SK_KMALLOC_MAX_CACHE_SIZE)
		return -1;
	/* 256 -> 7, 512 -> 8, ..., 8192 -> 12 */
	return (int)fls_size(size - 1) - 1;
}

int sk_bsd_index(size_t size)
{
	if (size <= 256)
		return size <= 16 ? 0 : (int)fls_size(size - 1) - 4;
	if (size <= 384)
		return 5;
	if (size > SK_BSD_MAX_CACHE_SIZE)
		return -1;
	/* 512 -> 6, 1024 -> 7, ..., 65536 -> 13 */
	return (int)fls_size(size - 1) - 3;
}
