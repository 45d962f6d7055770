/*
 * The allocating helpers of the kernel's <linux/string.h> (mm/util.c)
 * over slabkit's kmalloc.  Free what they return with kfree (kfree_const
 * for kstrdup_const).
 */
#ifndef SLABKIT_LINUX_STRING_H
#define SLABKIT_LINUX_STRING_H

#include <stddef.h>
#include <slabkit/linux/slab.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A kmalloc copy of len bytes at src (kmalloc(0) rules for len 0). */
void *kmemdup(const void *src, size_t len, gfp_t gfp) __attribute__((alloc_size(2)));
/* count * element_size bytes; NULL on overflow. */
void *kmemdup_array(const void *src, size_t count, size_t element_size, gfp_t gfp);
/* len bytes of s and a terminating NUL. */
char *kmemdup_nul(const char *s, size_t len, gfp_t gfp);
/* NULL for a NULL string. */
char *kstrdup(const char *s, gfp_t gfp);
/* At most max bytes of s, NUL-terminated. */
char *kstrndup(const char *s, size_t max, gfp_t gfp);
/* s itself when it lies in read-only data of the program or a shared
 * object (a string literal: the kernel's .rodata test); a kstrdup copy
 * otherwise.  Free with kfree_const, which leaves read-only data alone. */
const char *kstrdup_const(const char *s, gfp_t gfp);
void kfree_const(const void *p);

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_LINUX_STRING_H */
