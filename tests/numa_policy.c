/*
 * Node policies through the public API, on every backend.
 *
 * For each process-wide policy (slabkit_config.numa_policy: local,
 * preferred:N, interleave, bind:N, N the last node's OS number) slabkit is
 * initialised afresh and threads on each node's CPU allocate without
 * naming a node, through kmalloc (small and page-path sizes), a
 * kmem_cache, a UMA zone and malloc(9).  Then:
 *  - local: every object is on the allocating CPU's node;
 *  - preferred, bind: every object is on node N;
 *  - interleave: the pages holding the objects of each call are spread
 *    over the nodes within 5% of an even share.
 * Per-cache policies: the tunable "name:policy=..." and UMA_ZONE_FIRSTTOUCH
 * / UMA_ZONE_ROUNDROBIN override the process's; bad policy text is refused
 * with a message (slabkit_init, cache creation).
 *
 * ctest runs it per backend under a synthetic 4-node topology
 * (HWLOC_SYNTHETIC); tests/numa-vm.sh runs it in 2- and 4-node QEMU guests
 * with SLABKIT_TEST_PHYSICAL=1, where every placement is also checked with
 * move_pages(2).
 */
#define _GNU_SOURCE
#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "numa_test.h"

MALLOC_DEFINE(M_POLTEST, "poltest", "numa_policy test");

enum call { CALL_KMALLOC, CALL_KMALLOC_LARGE, CALL_CACHE, CALL_ZONE, CALL_BSD, NCALLS };
static const char *const call_names[NCALLS] = {
	"kmalloc(256)", "kmalloc(5 pages)", "kmem_cache_alloc", "uma_zalloc", "malloc(9)",
};

static struct kmem_cache *cache;
static uma_zone_t zone;
static size_t per_thread = 2400;  /* objects per call and thread */

static void *call_alloc(enum call c)
{
	void *p = NULL;
	size_t size = 256;
	switch (c) {
	case CALL_KMALLOC:
		p = kmalloc(size, GFP_KERNEL);
		break;
	case CALL_KMALLOC_LARGE:
		size = 5 * 4096;
		p = kmalloc(size, GFP_KERNEL);
		break;
	case CALL_CACHE:
		p = kmem_cache_alloc(cache, GFP_KERNEL);
		break;
	case CALL_ZONE:
		p = uma_zalloc(zone, M_WAITOK);
		break;
	default:
		p = bsd_malloc(size, M_POLTEST, M_WAITOK);
		break;
	}
	assert_non_null(p);
	memset(p, 0x3c, size);
	return p;
}

static void call_free(enum call c, void *p)
{
	if (c == CALL_CACHE)
		kmem_cache_free(cache, p);
	else if (c == CALL_ZONE)
		uma_zfree(zone, p);
	else if (c == CALL_BSD)
		bsd_free(p, M_POLTEST);
	else
		kfree(p);
}

/* One thread's objects of one call, and where they are. */
struct batch {
	enum call call;
	size_t n;
	void **objs;
	int *ours;  /* slabkit_ptr_node */
	int *os;    /* move_pages: OS node (physical only) */
};

static void batch_alloc_run(void *arg)
{
	struct batch *b = arg;
	for (size_t i = 0; i < b->n; i++)
		b->objs[i] = call_alloc(b->call);
	for (size_t i = 0; i < b->n; i++)
		b->ours[i] = slabkit_node_from_os(slabkit_ptr_node(b->objs[i])); /* an index */
	if (physical)
		physical_nodes(b->objs, b->n, b->os);
}

static void batch_free_run(void *arg)
{
	struct batch *b = arg;
	for (size_t i = 0; i < b->n; i++)
		call_free(b->call, b->objs[i]);
}

static void batch_init(struct batch *b, enum call c, size_t n)
{
	b->call = c;
	b->n = n;
	b->objs = calloc(n, sizeof(void *));
	b->ours = calloc(n, sizeof(int));
	b->os = calloc(n, sizeof(int));
	assert_true(b->objs && b->ours && b->os);
}

static void batch_done(struct batch *b)
{
	free(b->objs);
	free(b->ours);
	free(b->os);
}

/* Objects of b not on `node` (for slabkit, and for the kernel). */
static size_t batch_off_node(const struct batch *b, int node, size_t *phys_off)
{
	size_t off = 0;
	*phys_off = 0;
	for (size_t i = 0; i < b->n; i++) {
		off += b->ours[i] != node;
		*phys_off += physical && b->os[i] != slabkit_node_os(node);
	}
	return off;
}

/* Distinct pages of b's objects per node (slabkit's view and the
 * kernel's), for interleave. */
static void batch_page_spread(const struct batch *b, size_t *pages, size_t *phys_pages)
{
	uintptr_t *seen = calloc(b->n * 8, sizeof(uintptr_t));
	size_t nseen = 0;
	assert_non_null(seen);
	memset(pages, 0, sizeof(size_t) * MAX_NODES);
	memset(phys_pages, 0, sizeof(size_t) * MAX_NODES);
	for (size_t i = 0; i < b->n; i++) {
		uintptr_t pg = (uintptr_t)b->objs[i] & ~(uintptr_t)4095;
		size_t span = b->call == CALL_KMALLOC_LARGE ? 5 : 1;
		for (size_t k = 0; k < span; k++, pg += 4096) {
			bool dup = false;
			/* Objects of one page are allocated close together. */
			for (size_t j = nseen > 64 ? nseen - 64 : 0; j < nseen && !dup; j++)
				dup = seen[j] == pg;
			if (dup)
				continue;
			seen[nseen++] = pg;
			pages[b->ours[i]]++;
			if (physical) {
				int os = slabkit_node_from_os(b->os[i]);
				if (os >= 0)
					phys_pages[os]++;
			}
		}
	}
	free(seen);
}

static void setup_objects(const char *cache_name, uint32_t zone_flags)
{
	cache = kmem_cache_create(cache_name, 256, 0, 0, NULL);
	zone = uma_zcreate("numa_policy_zone", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, zone_flags);
	assert_non_null(cache);
	assert_non_null(zone);
}

static void teardown_objects(void)
{
	kmem_cache_destroy(cache);
	uma_zdestroy(zone);
}

static int init_with(const char *policy, const char *tune)
{
	struct slabkit_config cfg = { .numa_policy = policy, .tune = tune, .tick_ms = -1 };
	int rc = sk_fresh_init(&cfg);
	if (rc == 0)
		numa_test_setup();
	return rc;
}

enum expect { EXPECT_LOCAL, EXPECT_NODE, EXPECT_SPREAD };

/*
 * Every reachable node's CPU allocates a batch of each call (only the first
 * CPU for a spread check, so that local placement cannot even it out); the
 * placement is checked as `expect` says (`node` for EXPECT_NODE).  Calls
 * listed in `only` (a bit mask; 0: all) are checked.
 */
static void check_policy(const char *label, enum expect expect, int node, unsigned only)
{
	for (enum call c = 0; c < NCALLS; c++) {
		if (only && !(only & (1u << c)))
			continue;
		/* A spread needs enough pages for 5% to mean something; a
		 * placement check needs only a few slabs' worth. */
		size_t n = expect == EXPECT_SPREAD ? per_thread : per_thread / 4;
		if (c == CALL_KMALLOC_LARGE)
			n /= 8;
		for (unsigned cpu_node = 0; cpu_node < nodes; cpu_node++) {
			if (node_cpu[cpu_node] < 0 || (expect == EXPECT_SPREAD && cpu_node > 0))
				continue;
			struct batch b;
			batch_init(&b, c, n);
			run_on_cpu(node_cpu[cpu_node], batch_alloc_run, &b);
			if (expect == EXPECT_SPREAD) {
				size_t pages[MAX_NODES], phys_pages[MAX_NODES], total = 0, ptotal = 0;
				batch_page_spread(&b, pages, phys_pages);
				char line[512];
				int len = snprintf(line, sizeof(line), "numa_policy: backend=%s nodes=%u policy=%s call=%s spread pages:",
						   slabkit_backend(), nodes, label, call_names[c]);
				for (unsigned k = 0; k < nodes; k++) {
					total += pages[k];
					ptotal += phys_pages[k];
					len += snprintf(line + len, sizeof(line) - (size_t)len, " %zu", pages[k]);
				}
				if (physical) {
					len += snprintf(line + len, sizeof(line) - (size_t)len, " physical:");
					for (unsigned k = 0; k < nodes; k++)
						len += snprintf(line + len, sizeof(line) - (size_t)len, " %zu", phys_pages[k]);
				}
				printf("%s\n", line);
				fflush(stdout);
				for (unsigned k = 0; k < nodes; k++) {
					double share = (double)total / nodes;
					if (pages[k] < share * 0.95 || pages[k] > share * 1.05)
						fail_msg("%s %s: node %u has %zu of %zu pages (even: %.1f)", label,
							 call_names[c], k, pages[k], total, share);
					double pshare = (double)ptotal / nodes;
					if (physical && (phys_pages[k] < pshare * 0.95 || phys_pages[k] > pshare * 1.05))
						fail_msg("%s %s: OS node %d has %zu of %zu pages (even: %.1f)", label,
							 call_names[c], slabkit_node_os((int)k), phys_pages[k], ptotal, pshare);
				}
			} else {
				int want = expect == EXPECT_LOCAL ? (int)cpu_node : node;
				size_t phys_off, off = batch_off_node(&b, want, &phys_off);
				/* Printed as the OS numbers them, like every report. */
				printf("numa_policy: backend=%s nodes=%u policy=%s call=%s cpu-node=%d placed "
				       "on node %d: %zu/%zu physical-off=%s%zu\n",
				       slabkit_backend(), nodes, label, call_names[c], os_of[cpu_node], os_of[want],
				       n - off, n, physical ? "" : "unchecked:", phys_off);
				fflush(stdout);
				if (off || phys_off)
					fail_msg("%s %s from OS node %d's CPU: %zu objects off OS node %d (%zu physically)",
						 label, call_names[c], os_of[cpu_node], off, os_of[want], phys_off);
			}
			/* Freed from the next node's CPU: cross-node frees too. */
			run_on_cpu(node_cpu[(cpu_node + 1) % nodes], batch_free_run, &b);
			batch_done(&b);
		}
	}
}

static int last_os_node(void)
{
	return slabkit_node_os((int)nodes - 1);
}

static void test_process_policies(void **state)
{
	(void)state;
	const char *kinds[] = { "local", "preferred", "interleave", "bind" };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char policy[32], shown[32];
		/* The node for preferred/bind: the last one, an OS number. */
		assert_int_equal(init_with("local", NULL), 0);
		int target_os = last_os_node();
		if (i == 1 || i == 3)
			snprintf(policy, sizeof(policy), "%s:%d", kinds[i], target_os);
		else
			snprintf(policy, sizeof(policy), "%s", kinds[i]);
		assert_int_equal(init_with(policy, NULL), 0);
		assert_string_equal(slabkit_numa_policy(shown, sizeof(shown)), nodes > 1 ? policy : shown);
		setup_objects("numa_policy_cache", 0);
		if (nodes < 2) {
			check_policy(policy, EXPECT_LOCAL, 0, 0);
		} else if (i == 0) {
			check_policy(policy, EXPECT_LOCAL, 0, 0);
		} else if (i == 2) {
			check_policy(policy, EXPECT_SPREAD, 0, 0);
		} else {
			check_policy(policy, EXPECT_NODE, (int)nodes - 1, 0);
		}
		teardown_objects();
	}
}

/* Per-cache policies override the process's. */
static void test_cache_policies(void **state)
{
	(void)state;
	char policy[32], tune[160], shown[32];

	assert_int_equal(init_with("local", NULL), 0);
	if (nodes < 2) {
		printf("numa_policy: skipped per-cache policies: one node\n");
		return;
	}
	snprintf(policy, sizeof(policy), "preferred:%d", last_os_node());
	snprintf(tune, sizeof(tune), "numa_policy_local:policy=local;numa_policy_rr:policy=interleave;"
		 "numa_policy_bind0:policy=bind:%d", slabkit_node_os(0));
	assert_int_equal(init_with(policy, tune), 0);

	/* "policy=local" beats the process's preferred node; a FIRSTTOUCH zone too. */
	setup_objects("numa_policy_local", UMA_ZONE_FIRSTTOUCH);
	assert_int_equal(slabkit_cache_numa_policy("numa_policy_local", shown, sizeof(shown)), 0);
	assert_string_equal(shown, "local");
	check_policy("cache:local+zone:FIRSTTOUCH", EXPECT_LOCAL, 0,
		     (1u << CALL_CACHE) | (1u << CALL_ZONE));
	teardown_objects();

	/* "policy=interleave" and a ROUNDROBIN zone spread. */
	setup_objects("numa_policy_rr", UMA_ZONE_ROUNDROBIN);
	assert_int_equal(slabkit_cache_numa_policy("numa_policy_rr", shown, sizeof(shown)), 0);
	assert_string_equal(shown, "interleave");
	check_policy("cache:interleave+zone:ROUNDROBIN", EXPECT_SPREAD, 0,
		     (1u << CALL_CACHE) | (1u << CALL_ZONE));
	teardown_objects();

	/* "policy=bind:<node 0>" beats preferred:<last>. */
	setup_objects("numa_policy_bind0", 0);
	check_policy("cache:bind", EXPECT_NODE, 0, 1u << CALL_CACHE);
	/* The zone has no tunable: it follows the process's preferred node. */
	check_policy(policy, EXPECT_NODE, (int)nodes - 1, 1u << CALL_ZONE);
	teardown_objects();
}

/* Bad policy text is refused clearly, never ignored. */
static void test_bad_policies(void **state)
{
	(void)state;
	sk_expect_messages();
	assert_int_equal(init_with("sideways", NULL), -EINVAL);
	sk_assert_reported("policy 'sideways'", "is not", NULL);
	assert_int_equal(init_with("bind:100000", NULL), -EINVAL);
	sk_assert_reported("bind:100000", "does not have", NULL);
	assert_int_equal(init_with("preferred", NULL), -EINVAL);
	assert_int_equal(init_with("interleave:1", NULL), -EINVAL);
	assert_int_equal(init_with("local", "numa_policy_bad:policy=nowhere"), 0);
	assert_null(kmem_cache_create("numa_policy_bad", 64, 0, 0, NULL));
	sk_assert_reported("numa_policy_bad", "nowhere", NULL);
}

static int group_teardown(void **state)
{
	return sk_group_teardown(state);
}

int main(void)
{
	sk_apply_test_filter();
	if (getenv("SLABKIT_TEST_POLICY_OBJECTS"))
		per_thread = (size_t)atol(getenv("SLABKIT_TEST_POLICY_OBJECTS"));
	const struct CMUnitTest tests[] = {
		SK_TEST(test_process_policies),
		SK_TEST(test_cache_policies),
		SK_TEST(test_bad_policies),
	};
	return cmocka_run_group_tests_name("numa_policy", tests, NULL, group_teardown);
}
