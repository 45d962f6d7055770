/*
 * The rest of the kernel's allocation helpers that everyday kernel code
 * calls, over the kmalloc front end (core/linux_slab.c) and the page path:
 *
 *   - vmalloc / vzalloc / vfree (<slabkit/linux/vmalloc.h>): whole pages,
 *     virtually contiguous, from the page provider.  A vmalloc block is a
 *     large allocation whose origin is SK_LARGE_VMALLOC (sk_core.h), so
 *     vfree can tell it from a kmalloc block and kfree refuses it.
 *   - kvmalloc and friends (<slabkit/linux/slab.h>): kmalloc first, then
 *     vmalloc, as the kernel does; kvfree frees either.
 *   - kmemdup, kstrdup and friends (<slabkit/linux/string.h>).
 *   - krealloc_array, kmalloc_array_node, kcalloc_node, *_track_caller.
 *
 * No lock of its own: everything here calls the public front ends or
 * core's large path, which do their own synchronization.
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <string.h>

#include <slabkit/linux/slab.h>
#include <slabkit/linux/string.h>
#include <slabkit/linux/vmalloc.h>

#include "sk_core.h"

/* The provider's index of OS node `os_node` (NUMA_NO_NODE stays), or
 * SK_NODE_INVALID, reported, for a number that names no node. */
static int node_index(int os_node, const char *call)
{
	int node = sk_node_from_user(os_node);
	if (node == SK_NODE_INVALID) {
		char list[128];
		sk_errorf("slabkit: %s: node %d does not exist (the OS's nodes: %s)", call, os_node,
			  sk_node_list(list, sizeof(list)));
	}
	return node;
}

/* --- vmalloc --- */

/* Whole pages on `node` (NUMA_NO_NODE: any); __GFP_THISNODE pins an
 * unspecified node to the caller's; __GFP_NOFAIL retries like kmalloc. */
static void *vmalloc_pages(size_t size, gfp_t gfp, int os_node, const char *call)
{
	sk_ensure_init();
	int node = node_index(os_node, call);
	if (!size || size > KMALLOC_MAX_SIZE || node == SK_NODE_INVALID) {
		if (size && !(gfp & __GFP_NOWARN))
			sk_errorf("slabkit: %s: allocation of %zu bytes failed (%s)", call, size,
				  size > KMALLOC_MAX_SIZE ? "larger than the largest block, 1 GiB" : "bad node");
		return NULL;
	}
	int want = node;
	if (want == NUMA_NO_NODE && (gfp & __GFP_THISNODE))
		want = sk_numa_cpu_node(sk_pcpu_current_cpu());
	void *p = NULL;
	for (unsigned attempt = 0;; attempt++) {
		p = sk_large_alloc(size, want == NUMA_NO_NODE ? SK_NODE_ANY : want, sk_gfp_alloc_flags(gfp));
		if (p || !sk_wait_for_memory(attempt, sk_gfp_wait_policy(gfp, size)))
			break;
	}
	if (!p) {
		if (gfp & __GFP_NOFAIL)
			sk_fatal("%s: __GFP_NOFAIL allocation of %zu bytes failed after draining every cache",
				 call, size);
		else if (!(gfp & __GFP_NOWARN))
			sk_errorf("slabkit: %s: allocation of %zu bytes failed (gfp 0x%x)", call, size, gfp);
		return NULL;
	}
	struct sk_page *pg = sk_page_of(p);
	sk_large_set_origin(pg, SK_LARGE_VMALLOC);
	if (gfp & __GFP_ZERO)
		memset(p, 0, sk_large_size(pg));
	return p;
}

SK_EXPORT void *vmalloc(unsigned long size)
{
	return vmalloc_pages(size, GFP_KERNEL, NUMA_NO_NODE, "vmalloc");
}

SK_EXPORT void *vzalloc(unsigned long size)
{
	return vmalloc_pages(size, GFP_KERNEL | __GFP_ZERO, NUMA_NO_NODE, "vzalloc");
}

SK_EXPORT void *vmalloc_node(unsigned long size, int node)
{
	return vmalloc_pages(size, GFP_KERNEL, node, "vmalloc_node");
}

SK_EXPORT void *vzalloc_node(unsigned long size, int node)
{
	return vmalloc_pages(size, GFP_KERNEL | __GFP_ZERO, node, "vzalloc_node");
}

SK_EXPORT void *__vmalloc(unsigned long size, gfp_t gfp)
{
	return vmalloc_pages(size, gfp, NUMA_NO_NODE, "__vmalloc");
}

SK_EXPORT void *vmalloc_array(size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return vmalloc_pages(bytes, GFP_KERNEL, NUMA_NO_NODE, "vmalloc_array");
}

SK_EXPORT void *vcalloc(size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return vmalloc_pages(bytes, GFP_KERNEL | __GFP_ZERO, NUMA_NO_NODE, "vcalloc");
}

static struct sk_page *vmalloc_head(const void *p)
{
	struct sk_page *pg = sk_page_of(p);
	if (pg && pg->kind == SK_PAGE_LARGE && sk_large_origin(pg) == SK_LARGE_VMALLOC &&
	    p == sk_page_addr(pg))
		return pg;
	return NULL;
}

SK_EXPORT bool is_vmalloc_addr(const void *p)
{
	struct sk_page *pg = sk_page_of(p);
	return pg && pg->kind == SK_PAGE_LARGE && sk_large_origin(pg) == SK_LARGE_VMALLOC;
}

SK_EXPORT void vfree(const void *p)
{
	if (!p)
		return;
	struct sk_page *pg = vmalloc_head(p);
	if (!pg) {
		sk_misuse("vfree: pointer %p is not the start of a vmalloc allocation%s", p,
			  sk_page_of(p) ? " (kmalloc memory is freed with kfree or kvfree)" : "");
		return;
	}
	sk_large_set_origin(pg, SK_LARGE_MALLOC);
	sk_large_free((void *)p, pg);
}

/* --- kvmalloc --- */

/* kmalloc first, quietly and without retrying for anything above a page
 * (the kernel's kmalloc_gfp_adjust); then vmalloc, unless the caller
 * cannot wait (vmalloc needs GFP_KERNEL in the kernel). */
static void *kv_alloc(size_t size, gfp_t gfp, int node, const char *call)
{
	gfp_t kgfp = gfp;
	if (size > SK_PAGE_SIZE) {
		kgfp |= __GFP_NOWARN;
		if (!(kgfp & __GFP_RETRY_MAYFAIL))
			kgfp |= __GFP_NORETRY;
		kgfp &= ~__GFP_NOFAIL;
	}
	void *p = kmalloc_node(size, kgfp, node);
	if (p || size <= SK_PAGE_SIZE || !(gfp & __GFP_DIRECT_RECLAIM))
		return p;
	return vmalloc_pages(size, gfp, node, call);
}

SK_EXPORT void *kvmalloc_node(size_t size, gfp_t flags, int node)
{
	return kv_alloc(size, flags, node, "kvmalloc_node");
}

SK_EXPORT void *kvmalloc(size_t size, gfp_t flags)
{
	return kv_alloc(size, flags, NUMA_NO_NODE, "kvmalloc");
}

SK_EXPORT void *kvzalloc(size_t size, gfp_t flags)
{
	return kv_alloc(size, flags | __GFP_ZERO, NUMA_NO_NODE, "kvzalloc");
}

SK_EXPORT void *kvzalloc_node(size_t size, gfp_t flags, int node)
{
	return kv_alloc(size, flags | __GFP_ZERO, node, "kvzalloc_node");
}

SK_EXPORT void *kvmalloc_array_node(size_t n, size_t size, gfp_t flags, int node)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return kv_alloc(bytes, flags, node, "kvmalloc_array");
}

SK_EXPORT void *kvmalloc_array(size_t n, size_t size, gfp_t flags)
{
	return kvmalloc_array_node(n, size, flags, NUMA_NO_NODE);
}

SK_EXPORT void *kvcalloc(size_t n, size_t size, gfp_t flags)
{
	return kvmalloc_array_node(n, size, flags | __GFP_ZERO, NUMA_NO_NODE);
}

SK_EXPORT void *kvcalloc_node(size_t n, size_t size, gfp_t flags, int node)
{
	return kvmalloc_array_node(n, size, flags | __GFP_ZERO, node);
}

SK_EXPORT void kvfree(const void *p)
{
	if (is_vmalloc_addr(p))
		vfree(p);
	else
		kfree(p);
}

SK_EXPORT void kvfree_sensitive(const void *p, size_t len)
{
	if (ZERO_OR_NULL_PTR(p))
		return;
	memset((void *)p, 0, len);
	__asm__ volatile("" ::"r"(p) : "memory"); /* keep the wipe */
	kvfree(p);
}

/* The kernel's kvrealloc (6.12+): krealloc while p is a kmalloc block;
 * otherwise a new kvmalloc block, the contents copied, p freed.  Size 0
 * frees p and returns ZERO_SIZE_PTR; on failure p is untouched. */
SK_EXPORT void *kvrealloc(const void *p, size_t size, gfp_t flags)
{
	if (!size) {
		kvfree(p);
		return ZERO_SIZE_PTR;
	}
	if (!is_vmalloc_addr(p)) {
		void *q = krealloc(p, size, flags | __GFP_NOWARN);
		if (q || size <= SK_PAGE_SIZE)
			return q;
	} else if (size <= sk_large_size(sk_page_of(p))) {
		struct sk_page *pg = sk_page_of(p);
		if (flags & __GFP_ZERO)
			memset((char *)p + size, 0, sk_large_size(pg) - size);
		return (void *)p;
	}
	void *q = kv_alloc(size, flags, NUMA_NO_NODE, "kvrealloc");
	if (!q)
		return NULL;
	if (!ZERO_OR_NULL_PTR(p)) {
		size_t old = sk_block_size(p, sk_page_of(p));
		memcpy(q, p, SK_MIN(old, size));
		kvfree(p);
	}
	return q;
}

/* --- kmalloc variants --- */

SK_EXPORT void *krealloc_array(void *p, size_t new_n, size_t new_size, gfp_t flags)
{
	size_t bytes;
	if (__builtin_mul_overflow(new_n, new_size, &bytes))
		return NULL;
	return krealloc(p, bytes, flags);
}

SK_EXPORT void *kmalloc_array_node(size_t n, size_t size, gfp_t flags, int node)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	return kmalloc_node(bytes, flags, node);
}

SK_EXPORT void *kcalloc_node(size_t n, size_t size, gfp_t flags, int node)
{
	return kmalloc_array_node(n, size, flags | __GFP_ZERO, node);
}

SK_EXPORT void *kmalloc_track_caller(size_t size, gfp_t flags)
{
	return kmalloc(size, flags);
}

SK_EXPORT void *kmalloc_node_track_caller(size_t size, gfp_t flags, int node)
{
	return kmalloc_node(size, flags, node);
}

/* --- string.h --- */

SK_EXPORT void *kmemdup(const void *src, size_t len, gfp_t gfp)
{
	void *p = kmalloc(len, gfp);
	if (!ZERO_OR_NULL_PTR(p))
		memcpy(p, src, len);
	return p;
}

SK_EXPORT char *kmemdup_nul(const char *s, size_t len, gfp_t gfp)
{
	if (!s || len == SIZE_MAX)
		return NULL;
	char *p = kmalloc(len + 1, gfp);
	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

SK_EXPORT char *kstrdup(const char *s, gfp_t gfp)
{
	return s ? kmemdup_nul(s, strlen(s), gfp) : NULL;
}

SK_EXPORT char *kstrndup(const char *s, size_t max, gfp_t gfp)
{
	return s ? kmemdup_nul(s, strnlen(s, max), gfp) : NULL;
}

SK_EXPORT void *kmemdup_array(const void *src, size_t count, size_t element_size, gfp_t gfp)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, element_size, &bytes))
		return NULL;
	return kmemdup(src, bytes, gfp);
}

/*
 * The kernel's is_kernel_rodata(): here, whether p lies in a read-only
 * loaded segment (PT_LOAD without PF_W) of the program or a shared object,
 * where string literals live.  kstrdup_const returns such strings as they
 * are and kfree_const leaves them alone.
 */
struct rodata_probe {
	uintptr_t addr;
	bool found;
};

static int rodata_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct rodata_probe *probe = arg;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (probe->addr - lo < ph->p_memsz) {
			probe->found = true;
			return 1;
		}
	}
	return 0;
}

static bool is_rodata(const void *p)
{
	struct rodata_probe probe = { (uintptr_t)p, false };
	if (!p || sk_addr_in_arena(p))
		return false;
	dl_iterate_phdr(rodata_visit, &probe);
	return probe.found;
}

SK_EXPORT const char *kstrdup_const(const char *s, gfp_t gfp)
{
	if (is_rodata(s))
		return s;
	return kstrdup(s, gfp);
}

SK_EXPORT void kfree_const(const void *p)
{
	if (!is_rodata(p))
		kfree(p);
}
