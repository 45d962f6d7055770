/*
 * numa/provider.c: the page provider's entry points: init and fini (the
 * topology, one virtual reservation for every arena, the descriptor map),
 * node policy, descriptor writes, fault injection and stats.
 *
 * Lock order: this file takes arena locks only through buddy.c, one at a
 * time (sk_numa_stats visits the nodes in turn; SK_NODE_ANY tries them in
 * turn); no lock is held when a function here returns.
 *
 * Layout.  One reservation of nodes * arena_bytes, aligned to the largest
 * block (2^SK_MAX_ORDER pages, 1 GiB): node n's arena is
 * [sk_arena_base + n * arena_bytes, + arena_bytes).  The descriptor map
 * (64 bytes per page) is a second reservation, touched only where
 * descriptors are written.  Both are MAP_NORESERVE: memory is committed by
 * the pages actually touched.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <ck_pr.h>

#include "core/sk_compiler.h"
#include "numa/numa_internal.h"

#define SK_BLOCK_BYTES ((size_t)SK_PAGE_SIZE << SK_MAX_ORDER) /* 1 GiB */
#define SK_DEFAULT_ARENA_BYTES ((size_t)64 << 30)
/* Keep nodes * arena_bytes well inside a 47-bit user address space. */
#define SK_MAX_RESERVATION ((size_t)1 << 46)

/* Synchronization: written by sk_numa_init/sk_numa_fini only (which must
 * not run concurrently with anything else in the provider); read without
 * locks by sk_page_of() and friends. */
uintptr_t sk_arena_base, sk_arena_size;
struct sk_page *sk_page_map;

/* The provider's one state object. */
static struct sk_provider {
	/* Synchronization: each arena has its own lock (buddy.c). */
	struct sk_arena arena[SK_MAX_NODES];
	/* Synchronization: set by init, cleared by fini; read-only between. */
	unsigned nodes;          /* 0: not initialised */
	size_t arena_pages;      /* per node, a multiple of 2^SK_MAX_ORDER */
	size_t page_map_bytes;
	/* Synchronization: ck_pr atomics, any thread.  Calls that reach an
	 * arena are counted there, under its lock, to keep a shared atomic
	 * off the allocation path. */
	uint32_t fail_every;     /* every Nth allocation call fails (0: never) */
	uint64_t fail_tick;      /* allocation calls since fail_every was set */
	uint64_t refused_calls;  /* calls failed before reaching an arena */
	uint64_t alloc_failures; /* all failed calls */
} prov;

/* --- reservation --- */

/* mmap len bytes of NORESERVE address space aligned to `align`. */
static void *map_aligned(size_t len, size_t align)
{
	size_t span = len + align;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *start = (char *)SK_ALIGN_UP((uintptr_t)raw, align);
	if (start > raw)
		munmap(raw, (size_t)(start - raw));
	if (raw + span > start + len)
		munmap(start + len, (size_t)(raw + span - (start + len)));
	return start;
}

/* Reserve the arenas and the descriptor map, halving the per-node size
 * while the kernel refuses, down to one largest block per node. */
static int reserve(size_t arena_bytes)
{
	for (;;) {
		size_t total = arena_bytes * prov.nodes;
		size_t map_bytes = (total >> SK_PAGE_SHIFT) * sizeof(struct sk_page);
		void *arenas = map_aligned(total, SK_BLOCK_BYTES);
		void *map = arenas ? map_aligned(map_bytes, SK_PAGE_SIZE) : NULL;

		if (map) {
			/* The map is touched sparsely (a head descriptor per
			 * free 1 GiB block): huge pages would commit 2 MiB each. */
			madvise(map, map_bytes, MADV_NOHUGEPAGE);
			sk_page_map = map;
			sk_arena_base = (uintptr_t)arenas;
			prov.arena_pages = arena_bytes >> SK_PAGE_SHIFT;
			prov.page_map_bytes = map_bytes;
			return 0;
		}
		if (arenas)
			munmap(arenas, total);
		if (arena_bytes <= SK_BLOCK_BYTES) {
			fprintf(stderr, "slabkit: numa: cannot reserve %u x 1 GiB of address space\n",
				prov.nodes);
			return -ENOMEM;
		}
		arena_bytes = SK_MAX(arena_bytes / 2 & ~(SK_BLOCK_BYTES - 1), SK_BLOCK_BYTES);
	}
}

/* Per-node arena size: cfg's (rounded up to whole 1 GiB blocks) or 64 GiB. */
static size_t arena_bytes_wanted(const struct sk_numa_config *cfg, unsigned nodes)
{
	size_t limit = (SK_MAX_RESERVATION / nodes) & ~(SK_BLOCK_BYTES - 1);
	size_t want = cfg && cfg->arena_bytes_per_node ? cfg->arena_bytes_per_node
						       : SK_DEFAULT_ARENA_BYTES;
	if (want >= limit)
		return limit;
	return SK_MAX(SK_ALIGN_UP(want, SK_BLOCK_BYTES), SK_BLOCK_BYTES);
}

int sk_numa_init(const struct sk_numa_config *cfg)
{
	if (prov.nodes) {
		fprintf(stderr, "slabkit: numa: sk_numa_init called twice without sk_numa_fini\n");
		return -EALREADY;
	}
	int err = sk_topo_load();
	if (err)
		return err;
	prov.nodes = sk_numa_nodes();
	err = reserve(arena_bytes_wanted(cfg, prov.nodes));
	if (err) {
		sk_topo_close_hwloc();
		sk_topo_reset();
		memset(&prov, 0, sizeof(prov));
		return err;
	}
	size_t arena_bytes = prov.arena_pages << SK_PAGE_SHIFT;
	for (unsigned n = 0; n < prov.nodes; n++) {
		sk_arena_init(&prov.arena[n], n, n * prov.arena_pages, prov.arena_pages);
		sk_topo_bind((void *)(sk_arena_base + n * arena_bytes), arena_bytes, n);
	}
	sk_topo_close_hwloc();
	sk_arena_size = prov.nodes * arena_bytes;
	sk_pages_set_fail_every(cfg ? cfg->fail_every : 0);
	return 0;
}

void sk_numa_fini(void)
{
	if (prov.nodes) {
		void *arenas = (void *)sk_arena_base;
		size_t total = sk_arena_size;
		void *map = sk_page_map;

		sk_arena_base = sk_arena_size = 0;
		sk_page_map = NULL;
		for (unsigned n = 0; n < prov.nodes; n++)
			sk_arena_destroy(&prov.arena[n]);
		munmap(arenas, total);
		munmap(map, prov.page_map_bytes);
		memset(&prov, 0, sizeof(prov));
	}
	sk_topo_reset();
}

/* --- allocation --- */

static bool injected_failure(void)
{
	uint32_t every = ck_pr_load_32(&prov.fail_every);
	return sk_unlikely(every) && ck_pr_faa_64(&prov.fail_tick, 1) % every == every - 1;
}

void sk_pages_set_fail_every(unsigned n)
{
	ck_pr_store_32(&prov.fail_every, 0);
	ck_pr_store_64(&prov.fail_tick, 0);
	ck_pr_store_32(&prov.fail_every, n);
}

static sk_noinline void *alloc_failed(void)
{
	ck_pr_inc_64(&prov.alloc_failures);
	return NULL;
}

/* A call that fails before reaching an arena (bad argument, injected
 * failure): counted here, since no arena counts it. */
static sk_noinline void *alloc_refused(void)
{
	ck_pr_inc_64(&prov.refused_calls);
	return alloc_failed();
}

/* Write the descriptors of a block the arena just handed out.  No lock:
 * the block is ours, and pflags (the one field buddy.c reads without
 * checking FREE_HEAD first) is left alone. */
static void mark_allocated(size_t pfn, size_t npages, unsigned order, unsigned node,
			   enum sk_page_kind kind, void *owner)
{
	struct sk_page *head = &sk_page_map[pfn];

	head->owner = owner;
	head->head_delta = 0;
	head->npages = (uint32_t)npages;
	head->node = (uint16_t)node;
	head->order = (uint8_t)order;
	head->reserved = 0;
	memset(head->bk, 0, sizeof(head->bk));
	head->kind = (uint8_t)kind;
	for (size_t i = 1; i < npages; i++) {
		head[i].head_delta = (uint32_t)i;
		head[i].node = (uint16_t)node;
		head[i].kind = (uint8_t)kind;
	}
}

static void *pages_alloc(int node, unsigned order, size_t npages, enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely((kind != SK_PAGE_META && injected_failure()) || kind == SK_PAGE_FREE || kind > SK_PAGE_META ||
			prov.nodes == 0))
		return alloc_refused();

	size_t pfn = SIZE_MAX;
	unsigned got = 0;
	if (node == SK_NODE_ANY) {
		unsigned local = (unsigned)sk_numa_current_node();
		pfn = sk_arena_alloc(&prov.arena[local], order, npages, true);
		got = local;
		for (unsigned n = 0; pfn == SIZE_MAX && n < prov.nodes; n++) {
			if (n != local) {
				pfn = sk_arena_alloc(&prov.arena[n], order, npages, false);
				got = n;
			}
		}
	} else if (node >= 0 && (unsigned)node < prov.nodes) {
		pfn = sk_arena_alloc(&prov.arena[node], order, npages, true);
		got = (unsigned)node;
	} else {
		return alloc_refused();
	}
	if (sk_unlikely(pfn == SIZE_MAX))
		return alloc_failed();
	mark_allocated(pfn, npages, order, got, kind, owner);
	return (void *)(sk_arena_base + (pfn << SK_PAGE_SHIFT));
}

void *sk_pages_alloc(int node, unsigned order, enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely(order > SK_MAX_ORDER))
		return alloc_refused();
	return pages_alloc(node, order, (size_t)1 << order, kind, owner);
}

void *sk_pages_alloc_exact(int node, size_t npages, enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely(npages == 0 || npages > ((size_t)1 << SK_MAX_ORDER)))
		return alloc_refused();
	unsigned order = npages == 1 ? 0 : 64 - (unsigned)__builtin_clzl(npages - 1);
	return pages_alloc(node, order, npages, kind, owner);
}

static sk_cold void bad_free(void *addr, const char *why)
{
	fprintf(stderr, "slabkit: numa: sk_pages_free(%p): %s; ignored\n", addr, why);
}

void sk_pages_free(void *addr)
{
	struct sk_page *head = sk_page_of_raw(addr);

	if (!addr)
		return;
	if (sk_unlikely(!head)) {
		bad_free(addr, "not in the page arenas");
		return;
	}
	if (sk_unlikely(((uintptr_t)addr & (SK_PAGE_SIZE - 1)) || head->head_delta != 0)) {
		bad_free(addr, "not the start of a page allocation");
		return;
	}
	/* Claim the block atomically, so a racing double free loses here. */
	if (sk_unlikely(ck_pr_fas_8(&head->kind, SK_PAGE_FREE) == SK_PAGE_FREE)) {
		bad_free(addr, "not allocated (double free?)");
		return;
	}
	size_t pfn = (size_t)(head - sk_page_map);
	size_t npages = head->npages;
	unsigned node = head->node; /* written by mark_allocated; saves a division */

	/* Outside live blocks, head_delta is 0 and owner NULL (sk_numa.h):
	 * sk_page_head() of a stale pointer then lands on a free page. */
	head->owner = NULL;
	for (size_t i = 1; i < npages; i++) {
		head[i].kind = SK_PAGE_FREE;
		head[i].head_delta = 0;
	}
	sk_arena_free(&prov.arena[node], pfn, npages);
}

void sk_pages_release_free(void)
{
	for (unsigned n = 0; n < prov.nodes; n++)
		sk_arena_release_free(&prov.arena[n]);
}

void sk_numa_stats(struct sk_numa_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->pages_reserved = (uint64_t)prov.nodes * prov.arena_pages;
	for (unsigned n = 0; n < prov.nodes; n++)
		sk_arena_add_stats(&prov.arena[n], out);
	/* faa of 0: an atomic read ThreadSanitizer recognises (ck_pr_load is
	 * a plain volatile access in ck's gcc port). */
	out->alloc_calls += ck_pr_faa_64(&prov.refused_calls, 0);
	out->alloc_failures = ck_pr_faa_64(&prov.alloc_failures, 0);
}
