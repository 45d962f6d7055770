/*
 * Node placement through the public API, on every backend.
 *
 * ctest runs it per backend under synthetic 2- and 4-node topologies
 * (HWLOC_SYNTHETIC="node:N core:1 pu:1": CPU i is on node i, so the CPUs
 * this machine has reach distinct nodes).  tests/numa-vm.sh runs the same
 * program inside a QEMU guest with 2 and 4 real NUMA nodes and
 * SLABKIT_TEST_PHYSICAL=1: every check of slabkit's own bookkeeping
 * (slabkit_ptr_node) is then repeated against the kernel's, with
 * move_pages(2) in query mode on the page of every object.
 *
 *  - slabkit_ptr_node: -1 for what slabkit does not own, the node for
 *    every byte of what it does;
 *  - node-directed calls (kmalloc_node, kzalloc_node, kmem_cache_alloc_node,
 *    uma_zalloc_domain, malloc_domainset with a fixed domain) return
 *    memory of the node asked for, over rounds of reuse in which the
 *    objects are freed by threads on other nodes' CPUs and non-directed
 *    allocations fill the per-CPU caches in between;
 *  - per-node figures are exact (large blocks counted by order, directed
 *    hits, bytes in use summing to the whole);
 *  - OS node numbers round-trip, and every call that names a node takes
 *    and returns the OS's number (ctest also runs it with OS nodes 1 and 3,
 *    "holes", where slabkit's indexes are 0 and 1); numbers the OS does not
 *    have are refused.
 *
 * Each check prints one "numa_nodes:" summary line on stdout, which the
 * guest script copies into its log.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/gfp.h>
#include <slabkit/linux/slab.h>
#include <slabkit/linux/vmalloc.h>

#include "numa_test.h"
/* The per-CPU slots are core's (the test links the static library). */
#include "core/sk_core.h"

MALLOC_DEFINE(M_NUMATEST, "numatest", "numa_nodes test");

#define SK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ROUNDS 3

static size_t per_node = 1200; /* objects per node, per call, per round */

/* Every object of objs is on node index `node` (OS node os_of[node]) for
 * slabkit and, when physical, for the kernel; prints the summary line. */
static void check_placement(const char *call, void **objs, size_t n, int node)
{
	size_t ours = 0, phys = 0;
	int want_os = os_of[node];

	for (size_t i = 0; i < n; i++)
		ours += slabkit_ptr_node(objs[i]) == want_os;
	if (physical) {
		int *os = calloc(n, sizeof(int));
		assert_non_null(os);
		physical_nodes(objs, n, os);
		for (size_t i = 0; i < n; i++)
			phys += os[i] == want_os;
		free(os);
	}
	char phys_text[32] = "not-checked";
	if (physical)
		snprintf(phys_text, sizeof(phys_text), "%zu", phys);
	printf("numa_nodes: backend=%s nodes=%u call=%s node=%d os_node=%d objects=%zu "
	       "ptr_node_ok=%zu physical_ok=%s\n",
	       slabkit_backend(), nodes, call, node, want_os, n, ours, phys_text);
	fflush(stdout);
	if (ours != n)
		fail_msg("%s(node %d): %zu of %zu objects on that node for slabkit", call, node, ours, n);
	if (physical && phys != n)
		fail_msg("%s(node %d): %zu of %zu objects physically on OS node %d", call, node, phys,
			 n, want_os);
}

/* --- the calls under test --- */

enum call {
	CALL_KMALLOC_NODE,
	CALL_KZALLOC_NODE,
	CALL_KMALLOC_NODE_LARGE,
	CALL_CACHE_ALLOC_NODE,
	CALL_UMA_ZALLOC_DOMAIN,
	CALL_MALLOC_DOMAINSET,
	NCALLS
};

static const char *const call_names[NCALLS] = {
	"kmalloc_node", "kzalloc_node", "kmalloc_node(large)", "kmem_cache_alloc_node",
	"uma_zalloc_domain", "malloc_domainset",
};

static struct kmem_cache *cache;
static uma_zone_t zone;

static size_t call_size(enum call c, size_t i)
{
	static const size_t sizes[] = { 24, 64, 100, 200, 512, 1000, 3000 };
	switch (c) {
	case CALL_KMALLOC_NODE:
	case CALL_KZALLOC_NODE:
	case CALL_MALLOC_DOMAINSET:
		return sizes[i % SK_ARRAY_SIZE(sizes)];
	case CALL_KMALLOC_NODE_LARGE:
		return 3 * 4096 + 1000 * (i % 40); /* the page path */
	case CALL_CACHE_ALLOC_NODE:
		return 96;
	default:
		return 128;
	}
}

/* An object of call c on OS node os_node. */
static void *call_alloc(enum call c, int os_node, size_t i)
{
	size_t size = call_size(c, i);
	void *p = NULL;
	int node = os_node;

	switch (c) {
	case CALL_KMALLOC_NODE:
	case CALL_KMALLOC_NODE_LARGE:
		p = kmalloc_node(size, GFP_KERNEL, node);
		break;
	case CALL_KZALLOC_NODE:
		p = kzalloc_node(size, GFP_KERNEL, node);
		if (p)
			for (size_t b = 0; b < size; b++)
				if (((unsigned char *)p)[b])
					fail_msg("kzalloc_node: byte %zu not zero", b);
		break;
	case CALL_CACHE_ALLOC_NODE:
		p = kmem_cache_alloc_node(cache, GFP_KERNEL, node);
		break;
	case CALL_UMA_ZALLOC_DOMAIN:
		p = uma_zalloc_domain(zone, NULL, node, M_WAITOK);
		break;
	case CALL_MALLOC_DOMAINSET:
		p = bsd_malloc_domainset(size, M_NUMATEST, DOMAINSET_FIXED(node), M_WAITOK);
		break;
	default:
		break;
	}
	assert_non_null(p);
	memset(p, 0x5a, size); /* touch: move_pages reports only resident pages */
	return p;
}

static void call_free(enum call c, void *p)
{
	switch (c) {
	case CALL_CACHE_ALLOC_NODE:
		kmem_cache_free(cache, p);
		break;
	case CALL_UMA_ZALLOC_DOMAIN:
		uma_zfree(zone, p);
		break;
	case CALL_MALLOC_DOMAINSET:
		bsd_free(p, M_NUMATEST);
		break;
	default:
		kfree(p);
		break;
	}
}

/* Non-directed traffic on this CPU: fills its per-CPU caches with objects
 * of its own node (and, freed here, of others) before a directed call. */
static void churn_any(enum call c)
{
	void *tmp[64];
	for (int i = 0; i < 64; i++) {
		switch (c) {
		case CALL_CACHE_ALLOC_NODE:
			tmp[i] = kmem_cache_alloc(cache, GFP_KERNEL);
			break;
		case CALL_UMA_ZALLOC_DOMAIN:
			tmp[i] = uma_zalloc(zone, M_WAITOK);
			break;
		case CALL_MALLOC_DOMAINSET:
			tmp[i] = bsd_malloc(call_size(c, (size_t)i), M_NUMATEST, M_WAITOK);
			break;
		default:
			tmp[i] = kmalloc(call_size(c, (size_t)i), GFP_KERNEL);
			break;
		}
		assert_non_null(tmp[i]);
	}
	for (int i = 0; i < 64; i++)
		call_free(c, tmp[i]);
}

struct free_job {
	enum call call;
	void **objs;
	size_t n;
};

static void free_job_run(void *arg)
{
	struct free_job *job = arg;
	for (size_t i = 0; i < job->n; i++)
		call_free(job->call, job->objs[i]);
}

static void setup_objects(void)
{
	cache = kmem_cache_create("numa_nodes_96", 96, 0, 0, NULL);
	zone = uma_zcreate("numa_nodes_zone", 128, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(cache);
	assert_non_null(zone);
}

static void teardown_objects(void)
{
	kmem_cache_destroy(cache);
	uma_zdestroy(zone);
	cache = NULL;
	zone = NULL;
}

/* The smallest non-negative number that is not one of the OS's nodes
 * (2 on a 2-node machine, 0 with the holes topology's nodes 1 and 3). */
static int missing_os_node(void)
{
	for (int os = 0;; os++) {
		bool used = false;
		for (unsigned n = 0; n < nodes; n++)
			used |= os_of[n] == os;
		if (!used)
			return os;
	}
}

/* --- the tests --- */

static void test_ptr_node(void **state)
{
	(void)state;
	int on_stack = 0;
	void *libc = malloc(64);

	assert_int_equal(slabkit_ptr_node(NULL), -1);
	assert_int_equal(slabkit_ptr_node(&on_stack), -1);
	assert_int_equal(slabkit_ptr_node(libc), -1);
	free(libc);
	for (unsigned n = 0; n < nodes; n++) {
		char *p = kmalloc_node(3 * 4096, GFP_KERNEL, os_of[n]);
		assert_non_null(p);
		/* Every byte of the block, not only its start: the OS's number. */
		assert_int_equal(slabkit_ptr_node(p), os_of[n]);
		assert_int_equal(slabkit_ptr_node(p + 4096 + 17), os_of[n]);
		assert_int_equal(slabkit_ptr_node(p + 3 * 4096 - 1), os_of[n]);
		kfree(p);
	}
	void *any = kmalloc(64, GFP_KERNEL);
	assert_non_null(any);
	int node = slabkit_node_from_os(slabkit_ptr_node(any));
	assert_true(node >= 0 && (unsigned)node < nodes);
	kfree(any);
}

static void test_os_numbers(void **state)
{
	(void)state;
	for (unsigned n = 0; n < nodes; n++) {
		int os = slabkit_node_os((int)n);
		assert_true(os >= 0);
		assert_int_equal(slabkit_node_from_os(os), (int)n);
	}
	const char *syn = getenv("HWLOC_SYNTHETIC");
	if (syn && strstr(syn, "indexes=1,3")) { /* the ctest with holes */
		assert_int_equal(slabkit_node_os(0), 1);
		assert_int_equal(slabkit_node_os(1), 3);
		assert_int_equal(slabkit_node_from_os(0), -1);
		assert_int_equal(slabkit_node_from_os(2), -1);
	}
	assert_int_equal(slabkit_node_os(-1), -1);
	assert_int_equal(slabkit_node_os((int)nodes), -1);
	assert_int_equal(slabkit_node_from_os(-1), -1);
	assert_int_equal(slabkit_node_from_os(1 << 20), -1);
}

/* A zone over an import callback: what domain the callback is told. */
static int import_domain_seen = -2;

static int import_from_keg(void *arg, void **store, int count, int domain, int flags)
{
	import_domain_seen = domain;
	int got = 0;
	while (got < count && (store[got] = uma_zalloc_domain(arg, NULL, domain, flags)))
		got++;
	return got;
}

static void release_to_keg(void *arg, void **store, int count)
{
	for (int i = 0; i < count; i++)
		uma_zfree(arg, store[i]);
}

/* Every call that names a node takes the OS's number and every call that
 * returns one gives the OS's: with the holes topology (OS nodes 1 and 3)
 * slabkit's indexes 0 and 1 are never accepted or returned in their
 * place.  A number the OS does not have is refused with a message. */
static void test_os_numbers_in_calls(void **state)
{
	(void)state;
	for (unsigned n = 0; n < nodes; n++) {
		int os = os_of[n];
		void *p;

		assert_non_null(p = kzalloc_node(100, GFP_KERNEL, os));
		assert_int_equal(slabkit_ptr_node(p), os);
		assert_int_equal(page_to_nid(virt_to_page(p)), os);
		kfree(p);
		assert_non_null(p = kmalloc_array_node(10, 100, GFP_KERNEL, os));
		assert_int_equal(slabkit_ptr_node(p), os);
		kfree(p);
		assert_non_null(p = kvmalloc_node(3 * 4096, GFP_KERNEL, os));
		assert_int_equal(slabkit_ptr_node(p), os);
		kvfree(p);
		assert_non_null(p = vmalloc_node(5 * 4096, os));
		assert_int_equal(slabkit_ptr_node(p), os);
		vfree(p);
		struct page *pg = alloc_pages_node(os, GFP_KERNEL | __GFP_THISNODE, 2);
		assert_non_null(pg);
		assert_int_equal(page_to_nid(pg), os);
		assert_int_equal(slabkit_ptr_node(page_address(pg)), os);
		__free_pages(pg, 2);
		assert_non_null(p = bsd_malloc_domainset(200, M_NUMATEST, DOMAINSET_PREF(os), M_WAITOK));
		assert_int_equal(slabkit_ptr_node(p), os);
		bsd_free(p, M_NUMATEST);
		if (node_cpu[n] >= 0) {
			assert_true(pin_to(node_cpu[n]));
			assert_int_equal(slabkit_current_node(), os);
			unpin();
		}
	}

	/* A zone's import callback is told the OS's number too. */
	uma_zone_t czone = uma_zcache_create("numa_nodes_import", 128, NULL, NULL, NULL, NULL,
					     import_from_keg, release_to_keg, zone, 0);
	assert_non_null(czone);
	for (unsigned n = 0; n < nodes; n++) {
		import_domain_seen = -2;
		void *p = uma_zalloc_domain(czone, NULL, os_of[n], M_WAITOK);
		assert_non_null(p);
		assert_int_equal(import_domain_seen, os_of[n]);
		assert_int_equal(slabkit_ptr_node(p), os_of[n]);
		uma_zfree(czone, p);
	}
	uma_zdestroy(czone);

	/* Numbers that name no node: refused, each with a message. */
	int bad = missing_os_node();
	sk_expect_messages();
	unsigned before = sk_captured("does not exist", NULL, NULL) + sk_captured("no such", NULL, NULL);
	assert_null(kmalloc_node(64, GFP_KERNEL, bad));
	assert_null(kzalloc_node(5 * 4096, GFP_KERNEL, bad));
	assert_null(kmem_cache_alloc_node(cache, GFP_KERNEL, bad));
	assert_null(uma_zalloc_domain(zone, NULL, bad, M_NOWAIT));
	assert_null(bsd_malloc_domainset(64, M_NUMATEST, DOMAINSET_FIXED(bad), M_NOWAIT));
	assert_null(vmalloc_node(4096, bad));
	assert_null(alloc_pages_node(bad, GFP_KERNEL, 0));
	assert_null(kmalloc_node(64, GFP_KERNEL, -5));
	unsigned after = sk_captured("does not exist", NULL, NULL) + sk_captured("no such", NULL, NULL);
	assert_true(after - before >= 8);
	printf("numa_nodes: backend=%s nodes=%u OS numbers in every call:", slabkit_backend(), nodes);
	for (unsigned n = 0; n < nodes; n++)
		printf(" %d", os_of[n]);
	printf(" (OS node %d refused)\n", bad);
}

/*
 * Directed allocations on every node, ROUNDS times.  Between rounds the
 * objects are freed half here, half by a thread on another node's CPU
 * (cross-node frees), with non-directed churn before each directed batch,
 * so the caches hold objects of every node when the next round asks.
 */
static void directed_rounds(enum call c)
{
	size_t n = c == CALL_KMALLOC_NODE_LARGE ? per_node / 20 : per_node;
	void **objs = calloc(nodes * n, sizeof(void *));
	assert_non_null(objs);

	for (int round = 0; round < ROUNDS; round++) {
		for (unsigned node = 0; node < nodes; node++) {
			churn_any(c);
			for (size_t i = 0; i < n; i++)
				objs[node * n + i] = call_alloc(c, os_of[node], i);
			char what[64];
			snprintf(what, sizeof(what), "%s/round%d", call_names[c], round);
			check_placement(what, &objs[node * n], n, (int)node);
		}
		/* Free: the first half here, the rest from each other node's
		 * CPU in turn (or any CPU when this machine cannot reach it). */
		for (unsigned node = 0; node < nodes; node++) {
			void **mine = &objs[node * n];
			for (size_t i = 0; i < n / 2; i++)
				call_free(c, mine[i]);
			unsigned other = (node + 1 + (unsigned)round) % nodes;
			struct free_job job = { c, mine + n / 2, n - n / 2 };
			run_on_cpu(node_cpu[other], free_job_run, &job);
		}
	}
	free(objs);
}

static void test_kmalloc_node(void **state)
{
	(void)state;
	directed_rounds(CALL_KMALLOC_NODE);
	directed_rounds(CALL_KZALLOC_NODE);
	directed_rounds(CALL_KMALLOC_NODE_LARGE);
}

static void test_kmem_cache_alloc_node(void **state)
{
	(void)state;
	directed_rounds(CALL_CACHE_ALLOC_NODE);
}

static void test_uma_zalloc_domain(void **state)
{
	(void)state;
	directed_rounds(CALL_UMA_ZALLOC_DOMAIN);
}

static void test_malloc_domainset(void **state)
{
	(void)state;
	directed_rounds(CALL_MALLOC_DOMAINSET);
}

/* Directed calls from a thread on each node's CPU in turn, for every node:
 * what that CPU's caches hold never leaks into another node's request. */
struct from_cpu_job {
	int bad;
};

static void from_cpu_run(void *arg)
{
	struct from_cpu_job *job = arg;
	for (unsigned node = 0; node < nodes; node++) {
		void *objs[200];
		churn_any(CALL_CACHE_ALLOC_NODE);
		for (int i = 0; i < 200; i++) {
			objs[i] = kmem_cache_alloc_node(cache, GFP_KERNEL, os_of[node]);
			job->bad += !objs[i] || slabkit_ptr_node(objs[i]) != os_of[node];
		}
		/* Freed here: this CPU's caches now hold `node`'s objects. */
		for (int i = 0; i < 200; i++)
			kmem_cache_free(cache, objs[i]);
	}
}

static void test_directed_from_every_cpu(void **state)
{
	(void)state;
	for (int pass = 0; pass < 2; pass++)
		for (unsigned node = 0; node < nodes; node++) {
			struct from_cpu_job job = { 0 };
			run_on_cpu(node_cpu[node], from_cpu_run, &job);
			assert_int_equal(job.bad, 0);
		}
	printf("numa_nodes: backend=%s nodes=%u call=kmem_cache_alloc_node/from-every-cpu ok\n",
	       slabkit_backend(), nodes);
}

/* Large blocks go straight to the page provider: the per-node figures
 * move by exactly one block of the right order, on the right node. */
static void test_node_stats_exact(void **state)
{
	(void)state;
	struct slabkit_node_stats before[MAX_NODES], after[MAX_NODES];
	const size_t size = 16 * 4096; /* order 4 */

	for (unsigned n = 0; n < nodes; n++) {
		assert_int_equal(slabkit_node_stats(os_of[n], &before[n]), 0);
		assert_int_equal(before[n].node, (int)n);
		assert_int_equal(before[n].os_node, os_of[n]);
		assert_true(before[n].bytes_reserved >= ((uint64_t)1 << 30));
		assert_true(before[n].bytes_committed >= before[n].bytes_in_use);
	}
	assert_int_equal(slabkit_node_stats(missing_os_node(), &after[0]), -EINVAL);
	assert_int_equal(slabkit_node_stats(-1, &after[0]), -EINVAL);

	void *big[MAX_NODES];
	for (unsigned n = 0; n < nodes; n++) {
		big[n] = kmalloc_node(size, GFP_KERNEL, os_of[n]);
		assert_non_null(big[n]);
	}
	for (unsigned n = 0; n < nodes; n++) {
		assert_int_equal(slabkit_node_stats(os_of[n], &after[n]), 0);
		assert_int_equal(after[n].used_blocks[4], before[n].used_blocks[4] + 1);
		assert_int_equal(after[n].directed_hits, before[n].directed_hits + 1);
		assert_int_equal(after[n].directed_misses, before[n].directed_misses);
		assert_int_equal(after[n].bytes_in_use, before[n].bytes_in_use + size);
	}
	for (unsigned n = 0; n < nodes; n++)
		kfree(big[n]);
	for (unsigned n = 0; n < nodes; n++) {
		assert_int_equal(slabkit_node_stats(os_of[n], &after[n]), 0);
		assert_int_equal(after[n].used_blocks[4], before[n].used_blocks[4]);
		assert_int_equal(after[n].bytes_in_use, before[n].bytes_in_use);
	}

	/* The nodes add up to the whole. */
	struct slabkit_stats all;
	uint64_t in_use = 0, reserved = 0;
	slabkit_stats(&all);
	for (unsigned n = 0; n < nodes; n++) {
		assert_int_equal(slabkit_node_stats(os_of[n], &after[n]), 0);
		in_use += after[n].bytes_in_use;
		reserved += after[n].bytes_reserved;
		uint64_t used_pages = 0;
		for (int k = 0; k < SLABKIT_PAGE_ORDERS; k++)
			used_pages += after[n].used_blocks[k] << k;
		/* Exact allocations use fewer pages than their block order. */
		assert_true(used_pages * 4096 >= after[n].bytes_in_use);
	}
	assert_int_equal(in_use, all.pages_in_use * 4096);
	assert_int_equal(reserved, all.pages_reserved * 4096);
	printf("numa_nodes: backend=%s nodes=%u node-stats exact\n", slabkit_backend(), nodes);
}

/* Each CPU's per-CPU slot of a cache lives in the per-CPU area's unit of
 * that CPU, which the provider bound to the CPU's node: every slot at
 * area + cpu * unit + the cache's offset (slabkit's bookkeeping) and, in
 * the guests, physically on the CPU's node (move_pages).  Every kmalloc
 * cache and the test's kmem_cache are checked; SLOB has no per-CPU layer. */
static void test_pcpu_slots_on_their_node(void **state)
{
	(void)state;
	size_t unit;
	char *area = sk_numa_pcpu_area(&unit);
	struct sk_cache *checked[SK_KMALLOC_CLASSES + 1];
	unsigned ncaches = 0, slots = 0, phys_ok = 0;

	assert_non_null(area);
	assert_true(unit >= 4096 && (unit & (unit - 1)) == 0);
	for (int i = 0; i < SK_KMALLOC_CLASSES; i++)
		if (sk_state.kmalloc_caches[i] && sk_state.kmalloc_caches[i]->pcpu_base)
			checked[ncaches++] = sk_state.kmalloc_caches[i];
	if (((struct sk_cache *)cache)->pcpu_base)
		checked[ncaches++] = (struct sk_cache *)cache;
	if (!ncaches) {
		printf("numa_nodes: backend=%s no per-CPU slots to check (no per-CPU layer)\n",
		       slabkit_backend());
		return;
	}
	unsigned cpus = sk_numa_cpus();
	for (unsigned k = 0; k < ncaches; k++) {
		struct sk_cache *c = checked[k];
		assert_true(sk_pcpu_in_area(c));
		size_t off = (size_t)(c->pcpu_base - area);
		assert_true(off < unit);
		assert_int_equal(c->pcpu_stride, unit);
		for (unsigned cpu = 0; cpu < cpus; cpu++) {
			void *slot = sk_pcpu_slot(c, cpu);
			assert_ptr_equal(slot, area + (size_t)cpu * unit + off);
			slots++;
			if (physical) {
				int os = -1;
				physical_nodes(&slot, 1, &os);
				int want = slabkit_node_os(sk_numa_cpu_node(cpu));
				if (os != want)
					fail_msg("cache %s: CPU %u's slot on OS node %d, its CPU is on %d", c->name,
						 cpu, os, want);
				phys_ok++;
			}
		}
	}
	/* The area's figure moves with a cache's slots and back. */
	struct slabkit_stats before, with, after;
	slabkit_stats(&before);
	struct kmem_cache *extra = kmem_cache_create("numa_nodes_pcpu", 40, 0, 0, NULL);
	assert_non_null(extra);
	slabkit_stats(&with);
	assert_true(sk_pcpu_in_area((struct sk_cache *)extra));
	assert_true(with.pcpu_area_bytes >= before.pcpu_area_bytes + 64 * cpus);
	kmem_cache_destroy(extra);
	slabkit_stats(&after);
	assert_int_equal(after.pcpu_area_bytes, before.pcpu_area_bytes);

	char phys_text[32] = "not-checked";
	if (physical)
		snprintf(phys_text, sizeof(phys_text), "%u", phys_ok);
	printf("numa_nodes: backend=%s nodes=%u per-CPU slots in their CPU's unit: caches=%u cpus=%u "
	       "slots=%u physical_ok=%s\n", slabkit_backend(), nodes, ncaches, cpus, slots, phys_text);
}

/* Metadata: a cache made by a thread on node n's CPU has its struct on
 * node n (core/meta.c's per-node pools). */
struct make_cache_job {
	struct kmem_cache *s;
};

static void make_cache_run(void *arg)
{
	struct make_cache_job *job = arg;
	job->s = kmem_cache_create("numa_nodes_meta", 200, 0, 0, NULL);
}

static void test_metadata_on_its_node(void **state)
{
	(void)state;
	unsigned checked = 0;
	for (unsigned n = 0; n < nodes; n++) {
		if (node_cpu[n] < 0)
			continue;
		struct make_cache_job job = { NULL };
		run_on_cpu(node_cpu[n], make_cache_run, &job);
		assert_non_null(job.s);
		/* The handle is slabkit's cache struct itself. */
		assert_int_equal(slabkit_ptr_node(job.s), os_of[n]);
		kmem_cache_destroy(job.s);
		checked++;
	}
	printf("numa_nodes: backend=%s nodes=%u cache structs on their creator's node: %u nodes\n",
	       slabkit_backend(), nodes, checked);
}

/* Freed metadata goes back to the page provider during the run, not only
 * at slabkit_fini: 300 caches made and destroyed leave at most what the
 * destroy quarantine (64 structs) and one spare page per class hold. */
static void test_metadata_returned(void **state)
{
	(void)state;
	enum { NCACHES = 300 };
	struct kmem_cache *caches[NCACHES];
	struct slabkit_stats st;
	char name[32];

	slabkit_shrink_all();
	slabkit_stats(&st);
	uint64_t before = st.pages_in_use;
	for (int i = 0; i < NCACHES; i++) {
		snprintf(name, sizeof(name), "numa_meta_%d", i);
		caches[i] = kmem_cache_create(name, 64 + 8 * (size_t)(i % 32), 0, 0, NULL);
		assert_non_null(caches[i]);
	}
	slabkit_stats(&st);
	uint64_t peak = st.pages_in_use;
	printf("numa_nodes: backend=%s per-CPU area with %d caches more: %.1f KiB a CPU\n",
	       slabkit_backend(), NCACHES, st.pcpu_area_bytes / 1024.0 / st.cpus);
	for (int i = 0; i < NCACHES; i++)
		kmem_cache_destroy(caches[i]);
	slabkit_shrink_all();
	slabkit_stats(&st);
	uint64_t after = st.pages_in_use;
	printf("numa_nodes: backend=%s metadata pages: %llu before, %llu with %d caches, %llu after "
	       "destroying them\n",
	       slabkit_backend(), (unsigned long long)before, (unsigned long long)peak, NCACHES,
	       (unsigned long long)after);
	assert_true(peak > before);
	/* What 64 quarantined structs and the spares can hold, at most. */
	if (after > before + (peak - before) / 3)
		fail_msg("%llu of the %llu pages the caches took are still in use",
			 (unsigned long long)(after - before), (unsigned long long)(peak - before));
}

/* Resident memory of this process (VmRSS), bytes. */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb * 1024;
}

/*
 * Memory back to the OS: a live set of small objects on every node
 * (node-directed kmalloc and a UMA zone), all freed, then
 * uma_reclaim(UMA_RECLAIM_DRAIN_CPU): each node's committed bytes (in use
 * + free not yet returned) fall back to within 10% of the live set plus
 * 2 MiB of where they started, and so does the process's RSS (plus 4 MiB).
 */
static void test_memory_returned(void **state)
{
	(void)state;
	const size_t per_node_bytes = (size_t)16 << 20, obj = 256;
	const size_t n = per_node_bytes / obj;
	struct slabkit_node_stats before[MAX_NODES], peak[MAX_NODES], after[MAX_NODES];
	void **objs = calloc(nodes * n, sizeof(void *));
	assert_non_null(objs);
	/* The test's own table (2 MiB on four nodes) is resident before the
	 * first RSS sample, so that the RSS check measures the allocator, not
	 * the table's pages touched later.  (Not zero: calloc+memset(0) may be
	 * folded away.) */
	memset(objs, 0xff, nodes * n * sizeof(void *));

	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	for (unsigned k = 0; k < nodes; k++)
		assert_int_equal(slabkit_node_stats(os_of[k], &before[k]), 0);
	uint64_t rss0 = rss_bytes();
	for (unsigned k = 0; k < nodes; k++)
		for (size_t i = 0; i < n; i++) {
			void *p = (i & 1) ? kmalloc_node(obj, GFP_KERNEL, os_of[k])
					  : uma_zalloc_domain(zone, NULL, os_of[k], M_WAITOK);
			assert_non_null(p);
			memset(p, 1, 128);
			objs[k * n + i] = p;
		}
	uint64_t rss_peak = rss_bytes();
	for (unsigned k = 0; k < nodes; k++)
		assert_int_equal(slabkit_node_stats(os_of[k], &peak[k]), 0);
	/* Freed from another node's CPU for half of them. */
	for (unsigned k = 0; k < nodes; k++) {
		struct free_job job = { CALL_KMALLOC_NODE, NULL, 0 };
		for (size_t i = 0; i < n; i++)
			if (i & 1)
				kfree(objs[k * n + i]);
			else
				uma_zfree(zone, objs[k * n + i]);
		(void)job;
	}
	uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
	uint64_t rss1 = rss_bytes();
	for (unsigned k = 0; k < nodes; k++) {
		assert_int_equal(slabkit_node_stats(os_of[k], &after[k]), 0);
		uint64_t live = peak[k].bytes_committed - before[k].bytes_committed;
		uint64_t kept = after[k].bytes_committed > before[k].bytes_committed
					? after[k].bytes_committed - before[k].bytes_committed : 0;
		printf("numa_nodes: backend=%s os_node=%d committed: %.1f MiB before, +%.1f MiB live, "
		       "+%.2f MiB after free+reclaim (%.1f%%), %llu madvise calls for %.1f MiB returned\n",
		       slabkit_backend(), os_of[k], before[k].bytes_committed / 1048576.0, live / 1048576.0,
		       kept / 1048576.0, live ? 100.0 * kept / live : 0.0,
		       (unsigned long long)(after[k].madvise_calls - before[k].madvise_calls),
		       (after[k].bytes_returned - before[k].bytes_returned) / 1048576.0);
		if (kept > live / 10 + ((uint64_t)2 << 20))
			fail_msg("node %u keeps %llu of %llu bytes committed after free and reclaim", k,
				 (unsigned long long)kept, (unsigned long long)live);
	}
	printf("numa_nodes: backend=%s RSS %.1f MiB before, %.1f MiB with the live set, %.1f MiB after\n",
	       slabkit_backend(), rss0 / 1048576.0, rss_peak / 1048576.0, rss1 / 1048576.0);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* Sanitizer shadow memory stays resident after madvise: only the
	 * provider's committed figures above are checked. */
	printf("numa_nodes: RSS check skipped under a sanitizer (its shadow memory)\n");
	rss1 = rss0;
#endif
	if (rss1 > rss0 + (rss_peak - rss0) / 10 + ((uint64_t)4 << 20))
		fail_msg("RSS %llu after, %llu before, %llu at the peak", (unsigned long long)rss1,
			 (unsigned long long)rss0, (unsigned long long)rss_peak);
	free(objs);
}

static int group_setup(void **state)
{
	if (sk_group_setup(state))
		return -1;
	numa_test_setup();
	if (getenv("SLABKIT_TEST_OBJECTS"))
		per_node = (size_t)atol(getenv("SLABKIT_TEST_OBJECTS"));
	setup_objects();
	unsigned reachable = 0;
	for (unsigned n = 0; n < nodes; n++)
		reachable += node_cpu[n] >= 0;
	printf("numa_nodes: backend=%s nodes=%u cpus-reaching-a-node=%u physical=%s\n",
	       slabkit_backend(), nodes, reachable, physical ? "move_pages" : "no");
	return 0;
}

static int group_teardown(void **state)
{
	teardown_objects();
	return sk_group_teardown(state);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		SK_TEST(test_ptr_node),
		SK_TEST(test_os_numbers),
		SK_TEST(test_os_numbers_in_calls),
		SK_TEST(test_node_stats_exact),
		SK_TEST(test_kmalloc_node),
		SK_TEST(test_kmem_cache_alloc_node),
		SK_TEST(test_uma_zalloc_domain),
		SK_TEST(test_malloc_domainset),
		SK_TEST(test_directed_from_every_cpu),
		SK_TEST(test_metadata_on_its_node),
		SK_TEST(test_pcpu_slots_on_their_node),
		SK_TEST(test_metadata_returned),
		SK_TEST(test_memory_returned),
	};
	return cmocka_run_group_tests_name("numa_nodes", tests, group_setup, group_teardown);
}
