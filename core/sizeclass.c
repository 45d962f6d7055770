/* Size classes of kmalloc and malloc(9); see sk_sizeclass.h. */
#include "sk_sizeclass.h"

const uint32_t sk_kmalloc_class_size[SK_KMALLOC_CLASSES] = {
	8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};

const uint32_t sk_bsd_class_size[SK_BSD_CLASSES] = {
	16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
};

/* Entry i holds the class of sizes 8i+1 .. 8i+8. */
const uint8_t sk_kmalloc_class_of[SK_KMALLOC_MAX_CACHE_SIZE / 8] = {
	[0] = 0,              /* 1..8 */
	[1] = 1,              /* ..16 */
	[2 ... 3] = 2,        /* ..32 */
	[4 ... 7] = 3,        /* ..64 */
	[8 ... 11] = 4,       /* ..96 */
	[12 ... 15] = 5,      /* ..128 */
	[16 ... 23] = 6,      /* ..192 */
	[24 ... 31] = 7,      /* ..256 */
	[32 ... 63] = 8,      /* ..512 */
	[64 ... 127] = 9,     /* ..1024 */
	[128 ... 255] = 10,   /* ..2048 */
	[256 ... 511] = 11,   /* ..4096 */
	[512 ... 1023] = 12,  /* ..8192 */
};

/* Entry i holds the class of sizes 16i+1 .. 16i+16. */
const uint8_t sk_bsd_class_of[SK_BSD_TABLE_MAX / 16] = {
	[0] = 0,              /* 1..16 */
	[1] = 1,              /* ..32 */
	[2 ... 3] = 2,        /* ..64 */
	[4 ... 7] = 3,        /* ..128 */
	[8 ... 15] = 4,       /* ..256 */
	[16 ... 23] = 5,      /* ..384 */
	[24 ... 31] = 6,      /* ..512 */
	[32 ... 63] = 7,      /* ..1024 */
};
