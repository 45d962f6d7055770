/*
 * The kernel's <linux/vmalloc.h> over slabkit: virtually contiguous whole
 * pages from the page provider (up to 1 GiB, the largest block).  User
 * space has no separate vmalloc area: vmalloc memory comes from the same
 * per-node arenas as everything else, page-aligned, and is counted with
 * the large allocations in slabkit_stats.  Free it with vfree or kvfree;
 * kfree of vmalloc memory is misuse, as in the kernel.
 */
#ifndef SLABKIT_LINUX_VMALLOC_H
#define SLABKIT_LINUX_VMALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <slabkit/linux/slab.h>

#ifdef __cplusplus
extern "C" {
#endif

void *vmalloc(unsigned long size) __attribute__((malloc, alloc_size(1)));
void *vzalloc(unsigned long size) __attribute__((malloc, alloc_size(1)));
void *vmalloc_node(unsigned long size, int node) __attribute__((malloc, alloc_size(1)));
void *vzalloc_node(unsigned long size, int node) __attribute__((malloc, alloc_size(1)));
/* With GFP flags: __GFP_ZERO, __GFP_NOWARN, __GFP_NOFAIL, __GFP_THISNODE. */
void *__vmalloc(unsigned long size, gfp_t gfp) __attribute__((malloc, alloc_size(1)));
void *vmalloc_array(size_t n, size_t size) __attribute__((malloc, alloc_size(1, 2)));
void *vcalloc(size_t n, size_t size) __attribute__((malloc, alloc_size(1, 2)));
/* NULL does nothing; anything but the start of a vmalloc block is misuse. */
void vfree(const void *addr);
/* Whether addr lies in a vmalloc block. */
bool is_vmalloc_addr(const void *addr);

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_LINUX_VMALLOC_H */
