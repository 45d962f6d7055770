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
#define _GNU_SOURCE /* mremap */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ck_pr.h>

#include "common/sk_compiler.h"
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
	uint32_t fail_percent;   /* random mode: each call fails with this chance (0: never) */
	uint64_t fail_seed;      /* random mode: where each thread's draws start */
	uint64_t fail_streams;   /* random mode: threads that drew so far */
	uint64_t refused_calls;  /* calls failed before reaching an arena */
	uint64_t alloc_failures; /* all failed calls */
	/* Set by init; the cursor is a ck_pr atomic. */
	struct sk_numa_policy policy; /* for SK_NODE_ANY: never DEFAULT after init */
} prov;

/* Synchronization: set by sk_numa_init before anything else runs. */
static sk_numa_message_fn numa_message;

void sk_numa_msg(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (numa_message)
		numa_message("%s", line);
	else
		fprintf(stderr, "%s\n", line);
}

/* fork(): every arena lock (never two held by anyone else at once, so
 * any order is safe). */
void sk_numa_fork_lock(bool lock)
{
	for (unsigned i = 0; i < prov.nodes; i++)
		(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&prov.arena[i].lock);
}

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
			sk_numa_msg("slabkit: numa: cannot reserve %u x 1 GiB of address space",
				    prov.nodes);
			return -ENOMEM;
		}
		arena_bytes = SK_MAX(arena_bytes / 2 & ~(SK_BLOCK_BYTES - 1), SK_BLOCK_BYTES);
	}
}

/*
 * Per-node arena size: cfg's (rounded up to whole 1 GiB blocks), else the
 * larger of 64 GiB and the largest node's memory as hwloc reports it, so a
 * node with more memory than the default can still be used fully.  Every
 * node gets the same size (node n's arena is base + n * size: O(1) from an
 * address).  The cap is 2^46 bytes over all nodes.
 */
static size_t arena_bytes_wanted(const struct sk_numa_config *cfg, unsigned nodes)
{
	size_t limit = (SK_MAX_RESERVATION / nodes) & ~(SK_BLOCK_BYTES - 1);
	size_t want = SK_MAX(SK_DEFAULT_ARENA_BYTES, (size_t)sk_topo_largest_node_memory());
	if (cfg && cfg->arena_bytes_per_node)
		want = cfg->arena_bytes_per_node;
	if (want >= limit) {
		if (!(cfg && cfg->arena_bytes_per_node) && want > limit)
			sk_numa_msg("slabkit: numa: a node has %zu GiB, more than the %zu GiB "
				    "arena %u nodes leave each; the rest of it is not used",
				    want >> 30, limit >> 30, nodes);
		return limit;
	}
	return SK_MAX(SK_ALIGN_UP(want, SK_BLOCK_BYTES), SK_BLOCK_BYTES);
}

/* --- the per-CPU area --- */

static char *pcpu_area;       /* Synchronization: written by init/fini only */
static size_t pcpu_area_unit;

/* Reserve sk_numa_cpus() units and bind each run of CPUs of one node to it
 * (needs the hwloc topology open).  No area (and a message) if the address
 * space cannot be had: core then carves slots from its metadata pools. */
static void pcpu_area_reserve(size_t unit)
{
	unsigned cpus = sk_numa_cpus();
	/* The fast paths compute cpu * unit in 32 bits (sk_fastpath.h). */
	while (unit > SK_PAGE_SIZE && (uint64_t)cpus * unit > UINT32_MAX)
		unit /= 2;
	if (!unit || (uint64_t)cpus * unit > UINT32_MAX)
		return;
	size_t len = (size_t)cpus * unit;
	char *area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (area == MAP_FAILED) {
		sk_numa_msg("slabkit: numa: no address space for the per-CPU area (%zu bytes); "
			    "per-CPU slots come from the metadata pools", len);
		return;
	}
	/* Each unit is touched a few lines at a time: a transparent huge
	 * page would commit 2 MiB of it at once. */
	madvise(area, len, MADV_NOHUGEPAGE);
	for (unsigned first = 0; first < cpus;) {
		int node = sk_numa_cpu_node(first);
		unsigned end = first + 1;
		while (end < cpus && sk_numa_cpu_node(end) == node)
			end++;
		sk_topo_bind(area + (size_t)first * unit, (size_t)(end - first) * unit, (unsigned)node);
		first = end;
	}
	pcpu_area = area;
	pcpu_area_unit = unit;
}

void *sk_numa_pcpu_area(size_t *unit_bytes)
{
	*unit_bytes = pcpu_area_unit;
	return pcpu_area;
}

int sk_numa_init(const struct sk_numa_config *cfg)
{
	numa_message = cfg ? cfg->message : NULL;
	if (prov.nodes) {
		sk_numa_msg("slabkit: numa: sk_numa_init called twice without sk_numa_fini");
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
	if (cfg && cfg->pcpu_unit_bytes)
		pcpu_area_reserve(cfg->pcpu_unit_bytes);
	sk_topo_close_hwloc();
	sk_arena_size = prov.nodes * arena_bytes;
	sk_pages_set_fail_every(cfg ? cfg->fail_every : 0);
	sk_pages_set_fail_random(0, 0);
	prov.policy = (struct sk_numa_policy){ .kind = SK_POLICY_LOCAL };
	if (cfg && cfg->policy && *cfg->policy) {
		const char *why;
		if (sk_numa_policy_parse(cfg->policy, &prov.policy, &why) != 0) {
			sk_numa_msg("slabkit: numa: policy '%s' %s", cfg->policy, why);
			sk_numa_fini();
			return -EINVAL;
		}
	}
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
	if (pcpu_area)
		munmap(pcpu_area, (size_t)sk_numa_cpus() * pcpu_area_unit);
	pcpu_area = NULL;
	pcpu_area_unit = 0;
	sk_topo_reset();
}

/* --- node policies --- */

struct sk_numa_policy sk_numa_process_policy(void)
{
	return prov.policy;
}

struct sk_numa_policy sk_numa_policy_resolve(struct sk_numa_policy pol)
{
	if (pol.kind == SK_POLICY_DEFAULT) {
		uint32_t cursor = pol.cursor;
		pol = prov.policy;
		pol.cursor = cursor;
	}
	return pol;
}

int sk_numa_policy_node(struct sk_numa_policy *pol)
{
	unsigned kind = pol->kind == SK_POLICY_DEFAULT ? prov.policy.kind : pol->kind;
	unsigned node = pol->kind == SK_POLICY_DEFAULT ? prov.policy.node : pol->node;

	switch (kind) {
	case SK_POLICY_PREFERRED:
	case SK_POLICY_BIND:
		return (int)node;
	case SK_POLICY_INTERLEAVE:
		return prov.nodes ? (int)(ck_pr_faa_32(&pol->cursor, 1) % prov.nodes) : 0;
	default:
		return sk_numa_current_node();
	}
}

/* "local", "preferred:N", "interleave", "bind:N"; N an OS node number. */
int sk_numa_policy_parse(const char *text, struct sk_numa_policy *out, const char **why)
{
	static const struct {
		const char *name;
		enum sk_numa_policy_kind kind;
		bool needs_node;
	} names[] = {
		{ "local", SK_POLICY_LOCAL, false },
		{ "preferred", SK_POLICY_PREFERRED, true },
		{ "interleave", SK_POLICY_INTERLEAVE, false },
		{ "bind", SK_POLICY_BIND, true },
	};
	size_t len = strcspn(text, ":");

	*why = NULL;
	for (size_t i = 0; i < SK_ARRAY_SIZE(names); i++) {
		if (strlen(names[i].name) != len || strncmp(text, names[i].name, len))
			continue;
		*out = (struct sk_numa_policy){ .kind = (uint8_t)names[i].kind };
		if (!names[i].needs_node) {
			if (text[len]) {
				*why = "takes no node";
				return -EINVAL;
			}
			return 0;
		}
		char *end;
		const char *num = text + len + 1;
		long os = text[len] == ':' ? strtol(num, &end, 10) : -1;
		if (!text[len] || end == num || *end || os < 0 || os > INT32_MAX) {
			*why = "needs an OS node number (preferred:N, bind:N)";
			return -EINVAL;
		}
		int node = sk_numa_node_from_os((int)os);
		if (node < 0) {
			*why = "names a node this machine does not have";
			return -EINVAL;
		}
		out->node = (uint8_t)node;
		return 0;
	}
	*why = "is not local, preferred:N, interleave or bind:N";
	return -EINVAL;
}

const char *sk_numa_policy_name(struct sk_numa_policy pol, char *buf, size_t len)
{
	pol = sk_numa_policy_resolve(pol);
	switch (pol.kind) {
	case SK_POLICY_PREFERRED:
		snprintf(buf, len, "preferred:%d", sk_numa_node_os(pol.node));
		break;
	case SK_POLICY_BIND:
		snprintf(buf, len, "bind:%d", sk_numa_node_os(pol.node));
		break;
	case SK_POLICY_INTERLEAVE:
		snprintf(buf, len, "interleave");
		break;
	default:
		snprintf(buf, len, "local");
		break;
	}
	return buf;
}

/* --- allocation --- */

/* Random mode draws from a per-thread xorshift64*: no shared cache line
 * on the allocation path, and a run is reproducible per thread. */
static __thread uint64_t fail_rng;

static sk_noinline bool random_failure(uint32_t percent)
{
	if (!fail_rng)
		fail_rng = (ck_pr_load_64(&prov.fail_seed) ^
			    (ck_pr_faa_64(&prov.fail_streams, 1) + 1) * 0x9E3779B97F4A7C15ull) | 1;
	fail_rng ^= fail_rng >> 12;
	fail_rng ^= fail_rng << 25;
	fail_rng ^= fail_rng >> 27;
	return (fail_rng * 0x2545F4914F6CDD1Dull >> 33) % 100 < percent;
}

static bool injected_failure(void)
{
	uint32_t every = ck_pr_load_32(&prov.fail_every);
	if (sk_unlikely(every))
		return ck_pr_faa_64(&prov.fail_tick, 1) % every == every - 1;
	uint32_t percent = ck_pr_load_32(&prov.fail_percent);
	return sk_unlikely(percent) && random_failure(percent);
}

void sk_pages_set_fail_random(unsigned percent, uint64_t seed)
{
	ck_pr_store_32(&prov.fail_percent, 0);
	ck_pr_store_64(&prov.fail_seed, seed);
	ck_pr_store_32(&prov.fail_percent, percent > 100 ? 100 : percent);
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
	head->obj_base = 0;
	head->reserved = 0;
	memset(head->bk, 0, sizeof(head->bk));
	/* kind last, released: sk_pages_walk_locked reads it first, without
	 * the ordering of this block's allocation. */
	__atomic_store_n(&head->kind, (uint8_t)kind, __ATOMIC_RELEASE);
	for (size_t i = 1; i < npages; i++) {
		head[i].owner = owner; /* kfree reads it without going to the head */
		head[i].head_delta = (uint32_t)i;
		head[i].node = (uint16_t)node;
		__atomic_store_n(&head[i].kind, (uint8_t)kind, __ATOMIC_RELEASE);
	}
}

/*
 * The node a call starts on and whether it may go on to the others.  An
 * explicit node never spills; SK_NODE_ANY follows *pol (DEFAULT: the
 * process's policy kind with *pol's cursor).
 */
static void *pages_alloc(struct sk_numa_policy *pol, int node, unsigned order, size_t npages,
			 enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely((kind != SK_PAGE_META && injected_failure()) || kind == SK_PAGE_FREE || kind > SK_PAGE_META ||
			prov.nodes == 0))
		return alloc_refused();

	size_t pfn = SIZE_MAX;
	unsigned got = 0;
	if (node == SK_NODE_ANY) {
		unsigned pkind = pol->kind == SK_POLICY_DEFAULT ? prov.policy.kind : pol->kind;
		unsigned first = (unsigned)sk_numa_policy_node(pol);
		bool directed = pkind == SK_POLICY_PREFERRED || pkind == SK_POLICY_BIND;

		pfn = sk_arena_alloc(&prov.arena[first], order, npages,
				     SK_ARENA_FIRST | (directed ? SK_ARENA_DIRECTED : 0));
		got = first;
		for (unsigned n = 0; pfn == SIZE_MAX && pkind != SK_POLICY_BIND && n < prov.nodes; n++) {
			if (n != first) {
				pfn = sk_arena_alloc(&prov.arena[n], order, npages, 0);
				got = n;
			}
		}
	} else if (node >= 0 && (unsigned)node < prov.nodes) {
		pfn = sk_arena_alloc(&prov.arena[node], order, npages, SK_ARENA_FIRST | SK_ARENA_DIRECTED);
		got = (unsigned)node;
	} else {
		return alloc_refused();
	}
	if (sk_unlikely(pfn == SIZE_MAX))
		return alloc_failed();
	mark_allocated(pfn, npages, order, got, kind, owner);
	return (void *)(sk_arena_base + (pfn << SK_PAGE_SHIFT));
}

void *sk_pages_alloc_policy(struct sk_numa_policy *pol, int node, unsigned order,
			    enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely(order > SK_MAX_ORDER))
		return alloc_refused();
	return pages_alloc(pol, node, order, (size_t)1 << order, kind, owner);
}

void *sk_pages_alloc_exact_policy(struct sk_numa_policy *pol, int node, size_t npages,
				  enum sk_page_kind kind, void *owner)
{
	if (sk_unlikely(npages == 0 || npages > ((size_t)1 << SK_MAX_ORDER)))
		return alloc_refused();
	unsigned order = sk_order_for_pages(npages);
	return pages_alloc(pol, node, order, npages, kind, owner);
}

void *sk_pages_alloc(int node, unsigned order, enum sk_page_kind kind, void *owner)
{
	return sk_pages_alloc_policy(&prov.policy, node, order, kind, owner);
}

void *sk_pages_alloc_exact(int node, size_t npages, enum sk_page_kind kind, void *owner)
{
	return sk_pages_alloc_exact_policy(&prov.policy, node, npages, kind, owner);
}

/* --- block attributes (head->reserved holds SK_PAGES_*) --- */

int sk_pages_set_attrs(void *addr, unsigned attrs)
{
	struct sk_page *head = sk_page_of_raw(addr);
	size_t len = (size_t)head->npages << SK_PAGE_SHIFT;

	if ((attrs & SK_PAGES_NODUMP) && !(head->reserved & SK_PAGES_NODUMP)) {
		if (madvise(addr, len, MADV_DONTDUMP) != 0)
			return -errno;
		head->reserved |= SK_PAGES_NODUMP;
	}
	if ((attrs & SK_PAGES_EXEC) && !(head->reserved & SK_PAGES_EXEC)) {
		if (mprotect(addr, len, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
			return -errno;
		head->reserved |= SK_PAGES_EXEC;
	}
	return 0;
}

static sk_cold void clear_attrs(void *addr, size_t npages, unsigned attrs)
{
	size_t len = npages << SK_PAGE_SHIFT;

	if (attrs & SK_PAGES_NODUMP)
		madvise(addr, len, MADV_DODUMP);
	if (attrs & SK_PAGES_EXEC)
		mprotect(addr, len, PROT_READ | PROT_WRITE);
}

static sk_cold void bad_free(void *addr, const char *why)
{
	sk_numa_msg("slabkit: numa: sk_pages_free(%p): %s; ignored", addr, why);
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

	if (sk_unlikely(head->reserved)) /* attributes: gone before the pages are reused */
		clear_attrs(addr, npages, (unsigned)head->reserved);
	unsigned order = head->order;

	/* Outside live blocks, head_delta is 0 and owner NULL (sk_numa.h):
	 * sk_page_head() of a stale pointer then lands on a free page. */
	__atomic_store_n(&head->owner, NULL, __ATOMIC_RELAXED); /* atomic: the walk reads it */
	for (size_t i = 1; i < npages; i++) {
		head[i].owner = NULL;
		__atomic_store_n(&head[i].kind, SK_PAGE_FREE, __ATOMIC_RELAXED);
		__atomic_store_n(&head[i].head_delta, 0, __ATOMIC_RELAXED);
	}
	sk_arena_free(&prov.arena[node], pfn, npages, order);
}

/* --- resizing a page allocation (large blocks, realloc) --- */

/* The live allocation starting at addr, or NULL (reported). */
static struct sk_page *live_head(void *addr, const char *call)
{
	struct sk_page *head = sk_page_of_raw(addr);

	if (sk_unlikely(!head || ((uintptr_t)addr & (SK_PAGE_SIZE - 1)) || head->head_delta != 0 ||
			head->kind == SK_PAGE_FREE)) {
		sk_numa_msg("slabkit: numa: %s(%p): not the start of a page allocation; ignored", call, addr);
		return NULL;
	}
	return head;
}

bool sk_pages_grow(void *addr, size_t npages)
{
	struct sk_page *head = live_head(addr, "sk_pages_grow");

	if (!head || npages > ((size_t)1 << SK_MAX_ORDER))
		return false;
	size_t old = head->npages;
	if (npages <= old)
		return npages == old;
	size_t pfn = (size_t)(head - sk_page_map);
	size_t arena_end = ((size_t)head->node + 1) * prov.arena_pages;
	if (pfn + npages > arena_end ||
	    !sk_arena_grow(&prov.arena[head->node], pfn + old, pfn + npages))
		return false;
	/* The new pages are ours now: describe them as tails of the block. */
	for (size_t i = old; i < npages; i++) {
		head[i].node = head->node;
		__atomic_store_n(&head[i].head_delta, (uint32_t)i, __ATOMIC_RELAXED);
		__atomic_store_n(&head[i].kind, head->kind, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&head->npages, (uint32_t)npages, __ATOMIC_RELAXED);
	return true;
}

void sk_pages_trim(void *addr, size_t npages)
{
	struct sk_page *head = live_head(addr, "sk_pages_trim");

	if (!head || npages == 0 || npages >= head->npages)
		return;
	size_t old = head->npages;
	__atomic_store_n(&head->npages, (uint32_t)npages, __ATOMIC_RELAXED);
	for (size_t i = npages; i < old; i++) {
		__atomic_store_n(&head[i].kind, SK_PAGE_FREE, __ATOMIC_RELAXED);
		__atomic_store_n(&head[i].head_delta, 0, __ATOMIC_RELAXED);
	}
	sk_arena_free(&prov.arena[head->node], (size_t)(head - sk_page_map) + npages, old - npages,
		      SK_ARENA_PART);
}

int sk_pages_move(void *dst, void *src, size_t npages)
{
	size_t len = npages << SK_PAGE_SHIFT;

	if (mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED)
		return -errno;
	/* src is a hole now: map fresh pages there so the arena stays whole
	 * (and the buddy's "clean" notion holds: they are not resident). */
	if (mmap(src, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
		 -1, 0) == MAP_FAILED) {
		/* Without the hole filled the arena is broken: say so loudly. */
		perror("slabkit: numa: cannot map pages back into the arena after mremap");
		abort();
	}
	return 0;
}

void sk_pages_release_free(void)
{
	for (unsigned n = 0; n < prov.nodes; n++)
		sk_arena_release_free(&prov.arena[n]);
}

uint64_t sk_pages_release_idle(void)
{
	uint64_t released = 0;
	for (unsigned n = 0; n < prov.nodes; n++)
		released += sk_arena_release_idle(&prov.arena[n], SK_IDLE_RELEASE_PAGES);
	return released;
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

int sk_numa_node_stats(int node, struct sk_numa_node_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (node < 0 || (unsigned)node >= prov.nodes)
		return -EINVAL;
	sk_arena_node_stats(&prov.arena[node], out);
	out->pages_reserved = prov.arena_pages;
	return 0;
}

int sk_numa_addr_node(const void *addr)
{
	if (!sk_addr_in_arena(addr))
		return -1;
	return (int)(((uintptr_t)addr - sk_arena_base) / (prov.arena_pages << SK_PAGE_SHIFT));
}

/* --- the validation walk --- */

void sk_pages_walk_locked(enum sk_page_kind kind, const void *owner, void (*fn)(struct sk_page *head, void *arg),
			  void *arg)
{
	for (unsigned n = 0; n < prov.nodes; n++) {
		struct sk_arena *a = &prov.arena[n];
		size_t pfn = (size_t)n * prov.arena_pages, end = pfn + prov.arena_pages;

		pthread_mutex_lock(&a->lock);
		while (pfn < end) {
			struct sk_page *pg = &sk_page_map[pfn];
			/* A free block: its head's flags and order are the lock's. */
			if (pg->pflags & SK_PF_FREE_HEAD) {
				pfn += (size_t)1 << pg->order;
				continue;
			}
			/* A live block's words are written outside the lock, kind
			 * last (mark_allocated): read it first.  FREE here is a
			 * block being made or given back: step over its pages. */
			uint8_t k = __atomic_load_n(&pg->kind, __ATOMIC_ACQUIRE);
			if (k == SK_PAGE_FREE) {
				pfn++;
				continue;
			}
			uint32_t delta = __atomic_load_n(&pg->head_delta, __ATOMIC_RELAXED);
			if (delta) { /* inside a block (stepped in above): past its end */
				uint32_t np = __atomic_load_n(&pg[-(ptrdiff_t)delta].npages, __ATOMIC_RELAXED);
				pfn = np > delta ? pfn - delta + np : pfn + 1;
				continue;
			}
			uint32_t np = __atomic_load_n(&pg->npages, __ATOMIC_RELAXED);
			if (k == (uint8_t)kind && (!owner || __atomic_load_n(&pg->owner, __ATOMIC_RELAXED) == owner))
				fn(pg, arg);
			pfn += np ? np : 1;
		}
		pthread_mutex_unlock(&a->lock);
	}
}
