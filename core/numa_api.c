/*
 * The public NUMA calls of <slabkit/slabkit.h>: which node holds a
 * pointer, node numbers in the OS's terms, per-node figures.  Everything
 * here reads the page provider (numa/), which keeps the arenas, the
 * OS-number mapping and the counters; this file only translates.
 */
#include <errno.h>
#include <string.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"

_Static_assert(SLABKIT_PAGE_ORDERS == SK_MAX_ORDER + 1, "one figure per buddy order");

SK_EXPORT int slabkit_ptr_node(const void *p)
{
	/* No init needed: before init the arenas are empty and nothing is ours. */
	return sk_numa_addr_node(p);
}

SK_EXPORT int slabkit_node_os(int node)
{
	sk_ensure_init();
	return sk_numa_node_os(node);
}

SK_EXPORT int slabkit_node_from_os(int os_node)
{
	sk_ensure_init();
	return sk_numa_node_from_os(os_node);
}

SK_EXPORT int slabkit_node_stats(int node, struct slabkit_node_stats *out)
{
	struct sk_numa_node_stats ns;

	memset(out, 0, sizeof(*out));
	sk_ensure_init();
	if (sk_numa_node_stats(node, &ns) != 0)
		return -EINVAL;
	out->node = node;
	out->os_node = sk_numa_node_os(node);
	out->memory_bytes = sk_numa_node_memory(node);
	out->bytes_reserved = ns.pages_reserved << SK_PAGE_SHIFT;
	out->bytes_in_use = ns.pages_in_use << SK_PAGE_SHIFT;
	out->bytes_committed = (ns.pages_in_use + ns.pages_free_dirty) << SK_PAGE_SHIFT;
	out->bytes_returned = ns.pages_released << SK_PAGE_SHIFT;
	out->madvise_calls = ns.madvise_calls;
	out->page_allocs = ns.alloc_calls;
	out->directed_hits = ns.directed_hits;
	out->directed_misses = ns.directed_misses;
	memcpy(out->used_blocks, ns.used_blocks, sizeof(out->used_blocks));
	memcpy(out->free_blocks, ns.free_blocks, sizeof(out->free_blocks));
	return 0;
}
