/*
 * SLOB backend: the footprint target.  300,000 live kmalloc objects of
 * random sizes 8..1024, a random half of them freed and then reallocated
 * with new random sizes (the benchmark's footprint workload): resident
 * memory growth, library set-up included, must stay within 1.10x the live
 * bytes (the sum of the sizes asked for).
 *
 * Resident memory is read from /proc/self/statm before slabkit_init and
 * after the last reallocation; the harness's own tables are mapped and
 * touched before the first reading.  Prints the ratio, the heap's own
 * ratio (pages held / live bytes) and the time per call.
 * Also the allocation shape of the kernel's IDA/IDR test program (nodes
 * of a ctor cache freed a grace period late, test_rcu_backlog_of_ctor_nodes).
 * Runs with SLABKIT_BACKEND=slob.
 */
#include <malloc.h>
#include <sys/mman.h>

#include <slabkit/linux/slab.h>

#include "backends/slob/slob_int.h"
#include "sk_test.h"

#define OBJECTS 300000u
#define TARGET 1.10

/* A sanitizer's shadow memory is resident too: the ratio is then printed
 * but not held to the target. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static const bool sanitized = true;
#else
static const bool sanitized = false;
#endif

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void *table(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0, bytes); /* resident before the first reading */
	return p;
}

static void test_footprint_mixed_kmalloc(void **state)
{
	(void)state;
	void **objs = table(OBJECTS * sizeof(void *));
	uint16_t *sizes = table(OBJECTS * sizeof(uint16_t));
	uint32_t *order = table(OBJECTS * sizeof(uint32_t));
	uint16_t *new_sizes = table(OBJECTS / 2 * sizeof(uint16_t));
	uint64_t rng = 0x51ab0b;
	uint64_t live = 0;

	for (uint32_t i = 0; i < OBJECTS; i++) {
		sizes[i] = (uint16_t)(8 + sk_rand(&rng) % 1017);
		order[i] = i;
	}
	/* Fisher-Yates: the first half of the shuffled order is freed. */
	for (uint32_t i = OBJECTS - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(sk_rand(&rng) % (i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t k = 0; k < OBJECTS / 2; k++)
		new_sizes[k] = (uint16_t)(8 + sk_rand(&rng) % 1017);

	slabkit_fini(); /* measure from before slabkit exists */
	malloc_trim(0);
	uint64_t rss_before = rss_bytes();
	assert_int_equal(sk_fresh_init(NULL), 0);
	assert_string_equal(slabkit_backend(), "slob");

	uint64_t t0 = sk_now_ns();
	for (uint32_t i = 0; i < OBJECTS; i++) {
		objs[i] = kmalloc(sizes[i], GFP_KERNEL);
		assert_non_null(objs[i]);
		memset(objs[i], (int)(i & 0xff), sizes[i]);
	}
	for (uint32_t k = 0; k < OBJECTS / 2; k++)
		kfree(objs[order[k]]);
	for (uint32_t k = 0; k < OBJECTS / 2; k++) {
		uint32_t i = order[k];
		objs[i] = kmalloc(new_sizes[k], GFP_KERNEL);
		assert_non_null(objs[i]);
		memset(objs[i], (int)(k & 0xff), new_sizes[k]);
		sizes[i] = new_sizes[k];
	}
	uint64_t elapsed = sk_now_ns() - t0;
	uint64_t rss_after = rss_bytes();
	for (uint32_t i = 0; i < OBJECTS; i++)
		live += sizes[i];

	struct sk_slob_pool_info pool;
	assert_true(sk_slob_debug_pool(NULL, &pool));
	double ratio = (double)(rss_after - rss_before) / (double)live;
	double heap = (double)(pool.pages * 4096) / (double)live;
	printf("slob footprint: %u objects, live %.1f MiB, RSS growth %.1f MiB: %.4fx live "
	       "(heap pages alone %.4fx, %llu pages); %.0f ns per kmalloc/kfree\n",
	       OBJECTS, live / 1048576.0, (rss_after - rss_before) / 1048576.0, ratio, heap,
	       (unsigned long long)pool.pages, (double)elapsed / (OBJECTS * 2.0));
	assert_true(rss_before > 0 && rss_after > rss_before);
	if (sanitized)
		printf("slob footprint: sanitizer build, the target is not checked\n");
	else if (ratio > TARGET)
		fail_msg("resident growth is %.4fx the live bytes (target <= %.2fx)", ratio, TARGET);

	/* Every byte still holds what was written last. */
	for (uint32_t i = 0; i < OBJECTS; i += 97) {
		const unsigned char *b = objs[i];
		for (unsigned j = 0; j < sizes[i]; j++)
			assert_int_equal(b[j], b[0]);
	}
	for (uint32_t i = 0; i < OBJECTS; i++)
		kfree(objs[i]);
	assert_true(sk_slob_debug_pool(NULL, &pool));
	assert_int_equal(pool.pages, 0);
	munmap(objs, OBJECTS * sizeof(void *));
	munmap(sizes, OBJECTS * sizeof(uint16_t));
	munmap(order, OBJECTS * sizeof(uint32_t));
	munmap(new_sizes, OBJECTS / 2 * sizeof(uint16_t));
}

/* The shape of the Linux kernel's IDA/IDR test program's peak (the bench's
 * idr workload, docs/slob.md): 576-byte tree nodes from a cache with a
 * constructor, up to five allocated per writer iteration and retired, and
 * freed in retirement order a "grace period" later (what liburcu's call_rcu
 * worker does), so that a backlog of them builds up and drains.  SLOB's own
 * share must stay small: its pool holds 7 nodes per page and gives a page
 * back when it empties, so pages held stay within 2% and 4 pages of the
 * backlog's own (ceil(live / 7)) at every grace period (the pages at the
 * backlog's two ends are part-used), and none is held at the end. */
#define NODE_BYTES 576u
#define NODES_PER_PAGE (4096u / NODE_BYTES)

static void node_ctor(void *p)
{
	memset(p, 0, NODE_BYTES);
}

static void test_rcu_backlog_of_ctor_nodes(void **state)
{
	(void)state;
	enum { ITERATIONS = 60000, GRACE = 2000, QUEUE = ITERATIONS * 5 };
	struct kmem_cache *s = kmem_cache_create("slob_idr_node", NODE_BYTES, 0, 0, node_ctor);
	void **queue = calloc(QUEUE, sizeof(*queue));
	size_t head = 0, tail = 0, boundary = 0, worst_pages = 0, worst_live = 0;
	uint64_t rng = 0x1d1d1d;
	double worst_excess = 0;
	struct sk_slob_pool_info pool;

	assert_non_null(s);
	assert_non_null(queue);
	for (unsigned i = 0; i < ITERATIONS; i++) {
		unsigned nodes = 2 + (unsigned)(sk_rand(&rng) % 4); /* 2..5, as the tree grows */

		for (unsigned k = 0; k < nodes; k++) {
			uint64_t *n = kmem_cache_alloc(s, GFP_KERNEL);

			assert_non_null(n);
			assert_int_equal(n[NODE_BYTES / 8 - 1], 0); /* constructed */
			n[0] = i;
			queue[tail++] = n;
		}
		if (i % GRACE == GRACE - 1) {
			/* A grace period ended: free what was retired before the
			 * previous one, oldest first, and check the pool. */
			while (head < boundary) {
				uint64_t *n = queue[head++];

				n[0] = 0;
				kmem_cache_free(s, n);
			}
			boundary = tail;
			size_t live = tail - head;
			assert_true(sk_slob_debug_pool((struct sk_cache *)s, &pool));
			size_t own = (live + NODES_PER_PAGE - 1) / NODES_PER_PAGE;
			if ((double)pool.pages - (double)own > worst_excess) {
				worst_excess = (double)pool.pages - (double)own;
				worst_pages = pool.pages;
				worst_live = live;
			}
			if (pool.pages > own + own / 50 + 4)
				fail_msg("%llu pages held for %zu live nodes (%zu pages' worth)",
					 (unsigned long long)pool.pages, live, own);
		}
	}
	printf("slob idr-like backlog: at most %.0f pages over the nodes' own (%zu pages for %zu nodes)\n",
	       worst_excess, worst_pages, worst_live);
	while (head < tail)
		kmem_cache_free(s, queue[head++]);
	assert_true(sk_slob_debug_pool((struct sk_cache *)s, &pool));
	assert_int_equal(pool.pages, 0);
	kmem_cache_destroy(s);
	free(queue);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SK_TEST(test_footprint_mixed_kmalloc),
		SK_TEST(test_rcu_backlog_of_ctor_nodes),
	};

	setenv("SLABKIT_BACKEND", "slob", 0);
	setenv("SLABKIT_TICK_MS", "-1", 0);
	sk_apply_test_filter();
	return cmocka_run_group_tests_name("slob_footprint", tests, sk_group_setup,
					   sk_group_teardown);
}
