/*
 * SLUB backend: layout, and the slab state transitions the public figures
 * cannot show on their own.
 *
 *  - layout: object stride, where the free pointer lives, slab order and
 *    the fallback order when the page provider refuses the preferred one;
 *  - remote frees (a thread pinned to another CPU) land on the owning
 *    slab's freelist, and the slabs are reused afterwards;
 *  - a full slab that gains a free object goes to the freeing CPU's
 *    partial list, which spills to the node list at its limit, and an
 *    allocation refills the CPU partial list from the node list;
 *  - empty slabs go back to the page provider, and kmem_cache_shrink
 *    leaves no slab once everything is free, even after racing threads;
 *  - constructed contents survive free (the free pointer is outside), and
 *    UMA init/fini pair up, also when init fails halfway through a slab.
 *
 * Reads SLUB's private structures (backends/slub/slub.h) through
 * slub_inspect() and the slab descriptors.  Runs with SLABKIT_BACKEND=slub.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "backends/slub/slub.h"
#include "sk_test.h"

static struct sk_cache *sk_of(struct kmem_cache *s)
{
	return (struct sk_cache *)s;
}

static struct slub_inspect inspect(struct kmem_cache *s)
{
	struct slub_inspect in;
	slub_inspect(sk_of(s), &in);
	return in;
}

static struct sk_page *slab_of(const void *obj)
{
	struct sk_page *pg = sk_page_of(obj);
	assert_non_null(pg);
	assert_int_equal(pg->kind, SK_PAGE_SLAB);
	return pg;
}

/* Objects on a slab's own freelist (not the CPU freelist). */
static unsigned slab_freelist_length(struct kmem_cache *s, struct sk_page *slab)
{
	unsigned n = 0;
	for (void *p = slub_freelist(slab); p; p = slub_get_next(sk_of(s), p)) {
		assert_ptr_equal(sk_page_of(p), slab);
		n++;
	}
	return n;
}

/* --- pinning: the per-CPU transitions need two known CPUs --- */

static cpu_set_t saved_affinity;

/* The first two CPUs this process may run on, both with a slot.  False
 * (the test is skipped) on a one-CPU machine. */
static bool pick_two_cpus(int *a, int *b)
{
	cpu_set_t set;
	int found = 0;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return false;
	for (int i = 0; i < CPU_SETSIZE && found < 2; i++) {
		if (!CPU_ISSET(i, &set) || (unsigned)i >= sk_pcpu_nr)
			continue;
		if (found++ == 0)
			*a = i;
		else
			*b = i;
	}
	return found == 2;
}

static void pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
	/* Let the scheduler move us before the first slot is chosen. */
	sched_yield();
	assert_int_equal(sched_getcpu(), cpu);
}

static void pin_main(int cpu)
{
	assert_int_equal(sched_getaffinity(0, sizeof(saved_affinity), &saved_affinity), 0);
	pin_to(cpu);
}

/* Pin to the first CPU we may use: keeps one slot for the whole test. */
static void pin_main_first(void)
{
	int a = 0, b;
	cpu_set_t set;
	if (!pick_two_cpus(&a, &b) && sched_getaffinity(0, sizeof(set), &set) == 0)
		for (a = 0; a < CPU_SETSIZE && !CPU_ISSET(a, &set); a++)
			;
	pin_main(a);
}

static void unpin_main(void)
{
	sched_setaffinity(0, sizeof(saved_affinity), &saved_affinity);
}

struct on_cpu {
	int cpu;
	void (*fn)(void *arg);
	void *arg;
};

static void *on_cpu_thread(void *p)
{
	struct on_cpu *oc = p;
	pin_to(oc->cpu);
	oc->fn(oc->arg);
	return NULL;
}

/* Run fn(arg) on a new thread pinned to cpu, and wait for it. */
static void run_on_cpu(int cpu, void (*fn)(void *), void *arg)
{
	struct on_cpu oc = { cpu, fn, arg };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, on_cpu_thread, &oc), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

struct obj_batch {
	struct kmem_cache *s;
	void **objs;
	size_t n;
};

static void free_batch(void *p)
{
	struct obj_batch *b = p;
	for (size_t i = 0; i < b->n; i++)
		kmem_cache_free(b->s, b->objs[i]);
}

static void alloc_n(struct kmem_cache *s, void **objs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		objs[i] = kmem_cache_alloc(s, GFP_KERNEL);
		assert_non_null(objs[i]);
	}
}

static void free_n(struct kmem_cache *s, void **objs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kmem_cache_free(s, objs[i]);
}

/* Shrink to nothing and destroy: every test leaves no slab behind. */
static void shrink_and_destroy(struct kmem_cache *s, const char *name)
{
	assert_int_equal(kmem_cache_shrink(s), 0);
	struct slabkit_cache_info info = sk_info(name);
	assert_int_equal(info.slabs, 0);
	assert_int_equal(info.pages, 0);
	assert_int_equal(info.in_use, 0);
	kmem_cache_destroy(s);
}

/* --- layout --- */

static void test_layout(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_lay100", 100, 0, 0, NULL);
	assert_non_null(s);
	/* Word-aligned stride; the free pointer in the middle, word aligned. */
	assert_int_equal(sk_of(s)->size, 104);
	assert_int_equal(sk_of(s)->free_offset, 48);
	struct slub_inspect in = inspect(s);
	assert_true(in.order <= SLUB_MAX_ORDER);
	assert_int_equal(in.objects, (SK_PAGE_SIZE << in.order) / 104);
	/* SLUB's min_partial: clamp(ilog2(104) / 2, 5, 10) = 5. */
	assert_int_equal(in.min_partial, 5);
	assert_int_equal(in.cpu_partial, 120);
	assert_int_equal(in.cpu_partial_slabs, (120 * 2 + in.objects - 1) / in.objects);
	assert_int_equal(sk_info("slub_lay100").objects_per_slab, in.objects);
	kmem_cache_destroy(s);

	/* The smallest object is a word; its free pointer is the word. */
	s = kmem_cache_create("slub_lay1", 1, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(sk_of(s)->size, 8);
	assert_int_equal(sk_of(s)->free_offset, 0);
	kmem_cache_destroy(s);

	/* Cache-line alignment: the stride is a multiple of it. */
	s = kmem_cache_create("slub_layhw", 100, 0, SLAB_HWCACHE_ALIGN, NULL);
	assert_non_null(s);
	assert_int_equal(sk_of(s)->size % sk_of(s)->align, 0);
	assert_true(sk_of(s)->size >= 100);
	kmem_cache_destroy(s);

	/* Sizes up to 8 KiB stay within the maximum order and waste at most
	 * half a slab; objects per slab is what fits. */
	for (unsigned size = 8; size <= 8192; size += size < 512 ? 8 : 248) {
		char name[32];
		snprintf(name, sizeof(name), "slub_lay_%u", size);
		s = kmem_cache_create(name, size, 0, 0, NULL);
		assert_non_null(s);
		in = inspect(s);
		size_t slab = SK_PAGE_SIZE << in.order, stride = sk_of(s)->size;
		assert_true(in.order <= SLUB_MAX_ORDER);
		assert_int_equal(in.objects, slab / stride);
		assert_true(slab % stride <= slab / 2);
		assert_int_equal(in.min_order, stride <= SK_PAGE_SIZE ? 0 : stride <= 2 * SK_PAGE_SIZE ? 1 : 2);
		kmem_cache_destroy(s);
	}

	/* 8 KiB objects: at least 8 wanted (4 * (fls(cpus) + 1)), only 4
	 * fit at order 3, so order 3 with 4 objects. */
	s = kmem_cache_create("slub_lay8k", 8192, 0, 0, NULL);
	in = inspect(s);
	assert_int_equal(in.order, 3);
	assert_int_equal(in.objects, 4);
	assert_int_equal(in.min_order, 1);
	kmem_cache_destroy(s);

	/* Bigger than the maximum order allows: the order one object needs. */
	s = kmem_cache_create("slub_lay64k", 65536, 0, 0, NULL);
	in = inspect(s);
	assert_int_equal(in.order, 4);
	assert_int_equal(in.objects, 1);
	void *p = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(p);
	memset(p, 0x77, 65536);
	kmem_cache_free(s, p);
	shrink_and_destroy(s, "slub_lay64k");

	/* 256 KiB: order 6, one object. */
	s = kmem_cache_create("slub_lay256k", 256 << 10, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(inspect(s).order, 6);
	p = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(p);
	memset(p, 0x55, 256 << 10);
	kmem_cache_free(s, p);
	shrink_and_destroy(s, "slub_lay256k");

	/* Larger objects too (the same bound as every backend, core's 64 MiB):
	 * one object per slab at the smallest order that holds it. */
	s = kmem_cache_create("slub_lay_1m", (1 << 20) + 8, 0, 0, NULL);
	assert_non_null(s);
	in = inspect(s);
	assert_int_equal(in.order, 9);
	assert_int_equal(in.objects, 1);
	p = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(p);
	memset(p, 0x55, (1 << 20) + 8);
	kmem_cache_free(s, p);
	shrink_and_destroy(s, "slub_lay_1m");
}

/* --- constructed contents survive free --- */

#define CTOR_SIZE 64
static atomic_ulong ctor_calls;

static void pattern_ctor(void *obj)
{
	memset(obj, 0xc7, CTOR_SIZE);
	atomic_fetch_add(&ctor_calls, 1);
}

static void test_ctor_free_pointer_outside(void **state)
{
	(void)state;
	atomic_store(&ctor_calls, 0);
	struct kmem_cache *s = kmem_cache_create("slub_ctor", CTOR_SIZE, 0, 0, pattern_ctor);
	assert_non_null(s);
	assert_int_equal(sk_of(s)->free_offset, CTOR_SIZE);
	assert_int_equal(sk_of(s)->size, CTOR_SIZE + 8);

	unsigned per_slab = inspect(s).objects;
	size_t n = 3 * per_slab;
	void **objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	pin_main_first();
	for (int round = 0; round < 3; round++) {
		alloc_n(s, objs, n);
		for (size_t i = 0; i < n; i++) {
			unsigned char *b = objs[i];
			for (size_t j = 0; j < CTOR_SIZE; j++)
				if (b[j] != 0xc7)
					fail_msg("round %d object %zu byte %zu is %#x after free", round, i,
						 j, b[j]);
		}
		free_n(s, objs, n);
	}
	/* Once per object per slab lifetime: the slabs stayed. */
	unpin_main();
	struct slabkit_cache_info info = sk_info("slub_ctor");
	assert_int_equal(info.slabs, 3);
	assert_int_equal(atomic_load(&ctor_calls), info.slabs * per_slab);
	free(objs);
	shrink_and_destroy(s, "slub_ctor");
}

/* --- remote frees land on the owning slab --- */

static void test_remote_free_to_owner(void **state)
{
	(void)state;
	int a, b;
	if (!pick_two_cpus(&a, &b))
		skip();
	struct kmem_cache *s = kmem_cache_create("slub_remote", 256, 0, 0, NULL);
	assert_non_null(s);
	/* Frees go straight to the node list and empty slabs stay there, so
	 * every slab can be looked at afterwards. */
	assert_int_equal(slabkit_cache_tune("slub_remote", "sheaf_capacity", 0), 0); /* the slabs behind */
	assert_int_equal(slabkit_cache_tune("slub_remote", "cpu_partial", 0), 0);
	assert_int_equal(slabkit_cache_tune("slub_remote", "min_partial", 1000), 0);
	unsigned per_slab = inspect(s).objects;
	size_t n = 4 * per_slab;
	void **objs = calloc(n, sizeof(*objs));
	void **again = calloc(n, sizeof(*again));
	assert_non_null(objs);
	assert_non_null(again);

	pin_main(a);
	alloc_n(s, objs, n); /* three full slabs and the active one, used up */
	struct slabkit_cache_info info = sk_info("slub_remote");
	assert_int_equal(info.slabs, 4);
	struct sk_page *active = slab_of(objs[n - 1]);
	assert_int_equal(slub_counters(active).frozen, 1);

	struct obj_batch batch = { s, objs, n };
	run_on_cpu(b, free_batch, &batch);

	assert_int_equal(sk_info("slub_remote").in_use, 0);
	struct slub_inspect in = inspect(s);
	/* The active slab is still CPU a's; the others went to the node list
	 * when their first object came back, and stayed there empty. */
	assert_int_equal(in.cpu_slabs, 1);
	assert_int_equal(in.node_partial[active->node], 3);
	assert_int_equal(in.node_empty[active->node], 3);
	assert_int_equal(in.cpu_free, 0);
	for (size_t i = 0; i < n; i += per_slab) {
		struct sk_page *slab = slab_of(objs[i]);
		/* Every object is back on its own slab's freelist. */
		assert_int_equal(slab_freelist_length(s, slab), per_slab);
		assert_int_equal(slub_counters(slab).inuse, 0);
		assert_int_equal(slub_counters(slab).frozen, slab == active);
	}

	/* CPU a gets exactly those objects back, without a new slab. */
	alloc_n(s, again, n);
	assert_int_equal(sk_info("slub_remote").slabs, 4);
	qsort(objs, n, sizeof(*objs), sk_cmp_ptr);
	qsort(again, n, sizeof(*again), sk_cmp_ptr);
	assert_memory_equal(objs, again, n * sizeof(*objs));
	free_n(s, again, n);
	unpin_main();
	free(objs);
	free(again);
	shrink_and_destroy(s, "slub_remote");
}

/* --- per-CPU partial list, its spill to the node list, and refill --- */

struct partial_walk {
	struct kmem_cache *s;
	void **objs;
	unsigned per_slab, limit, slabs;
	int node; /* of the slabs (the CPU's) */
};

static void free_one_per_slab(void *p)
{
	struct partial_walk *w = p;

	for (unsigned i = 0; i < w->slabs; i++) {
		kmem_cache_free(w->s, w->objs[(size_t)i * w->per_slab]);
		w->objs[(size_t)i * w->per_slab] = NULL;
		struct slub_inspect in = inspect(w->s);
		/* The list grows to its limit, then spills whole to the node. */
		unsigned spilled = i < w->limit ? 0 : w->limit;
		assert_int_equal(in.cpu_partial_held, i < w->limit ? i + 1 : i + 1 - w->limit);
		assert_int_equal(in.node_partial[w->node], spilled);
	}
}

static void test_cpu_partial_spills_to_node(void **state)
{
	(void)state;
	int a, b;
	if (!pick_two_cpus(&a, &b))
		skip();
	struct kmem_cache *s = kmem_cache_create("slub_cpupartial", 512, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(slabkit_cache_tune("slub_cpupartial", "sheaf_capacity", 0), 0);
	struct slub_inspect in = inspect(s);
	struct partial_walk w = { s, NULL, in.objects, in.cpu_partial_slabs, 0, 0 };
	assert_true(w.limit >= 2);
	w.slabs = w.limit + 2;
	size_t n = (size_t)(w.slabs + 1) * w.per_slab; /* + the active slab */
	w.objs = calloc(n, sizeof(void *));
	assert_non_null(w.objs);

	pin_main(a);
	alloc_n(s, w.objs, n);
	assert_int_equal(sk_info("slub_cpupartial").slabs, w.slabs + 1);
	w.node = slab_of(w.objs[0])->node;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(slab_of(w.objs[i])->node, w.node);

	/* One free into each full slab from CPU b. */
	run_on_cpu(b, free_one_per_slab, &w);
	in = inspect(s);
	unsigned on_node = w.limit, on_b = w.slabs - w.limit;
	assert_int_equal(in.node_partial[w.node], on_node);
	assert_int_equal(in.cpu_partial_held, on_b);

	/* CPU a's active slab is used up: the next allocation takes a node
	 * partial slab and moves up to half the limit more to CPU a. */
	void *p = kmem_cache_alloc(s, GFP_KERNEL);
	assert_non_null(p);
	unsigned moved = SK_MIN(w.limit / 2, on_node - 1);
	in = inspect(s);
	assert_int_equal(in.node_partial[w.node], on_node - 1 - moved);
	assert_int_equal(in.cpu_partial_held, on_b + moved);
	assert_int_equal(in.cpu_slabs, 1);
	/* It came from one of the slabs that had a free object: no new slab. */
	assert_int_equal(sk_info("slub_cpupartial").slabs, w.slabs + 1);
	bool from_freed = false;
	for (unsigned i = 0; i < w.slabs; i++)
		from_freed |= slab_of(p) == slab_of(w.objs[(size_t)i * w.per_slab + 1]);
	assert_true(from_freed);

	kmem_cache_free(s, p);
	for (size_t i = 0; i < n; i++)
		if (w.objs[i])
			kmem_cache_free(s, w.objs[i]);
	unpin_main();
	free(w.objs);
	shrink_and_destroy(s, "slub_cpupartial");
}

/* --- empty slabs go back --- */

static void test_empty_slabs_released(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_release", 128, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(slabkit_cache_tune("slub_release", "sheaf_capacity", 0), 0);
	struct slub_inspect in = inspect(s);
	size_t n = 64 * (size_t)in.objects;
	void **objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	alloc_n(s, objs, n);
	struct slabkit_cache_info full = sk_info("slub_release");
	assert_true(full.slabs >= 64);
	free_n(s, objs, n);

	/* What may stay: min_partial empty slabs per node, each CPU's
	 * partial list and active slab. */
	struct slabkit_cache_info after = sk_info("slub_release");
	uint64_t bound = (uint64_t)in.min_partial * slabkit_nodes() +
			 (uint64_t)sk_pcpu_nr * (in.cpu_partial_slabs + 1);
	assert_int_equal(after.in_use, 0);
	assert_true(after.slabs < full.slabs);
	if (after.slabs > bound)
		fail_msg("%llu slabs kept after freeing everything (bound %llu)",
			 (unsigned long long)after.slabs, (unsigned long long)bound);
	/* Every free object is accounted for somewhere: held by CPUs
	 * (freelists, active and per-CPU partial slabs) or on node lists. */
	assert_int_equal(after.cached_free + after.slab_free,
			 after.slabs * after.objects_per_slab - after.in_use);
	assert_true(after.cached_free >= inspect(s).cpu_free);
	assert_int_equal(after.active_slabs, after.slabs - after.empty_slabs);

	/* DRAIN (UMA's level) frees the node lists' empty slabs but leaves
	 * the CPUs alone; kmem_cache_shrink (DRAIN_CPU) frees everything. */
	uint64_t left = sk_of(s)->ops->shrink(sk_of(s), SK_SHRINK_DRAIN);
	in = inspect(s);
	for (unsigned i = 0; i < slabkit_nodes(); i++)
		assert_int_equal(in.node_partial[i], 0);
	assert_true(left <= in.cpu_slabs + in.cpu_partial_held);
	free(objs);
	shrink_and_destroy(s, "slub_release");
}

/* The same with the sheaf on, so that every free reaches the slabs through
 * a sheaf flush (which holds the slot lock): the slabs those frees make
 * partial join the CPU partial list, which must still spill at its limit.
 * A thread that only frees (liburcu's call_rcu worker freeing a cache's
 * nodes) otherwise grew the list without bound, keeping every slab it
 * emptied: 1 GB for 55 MB of nodes in the bench's idr workload. */
static void test_empty_slabs_released_through_sheaf(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_release_sheaf", 128, 0, 0, NULL);
	assert_non_null(s);
	struct slub_inspect in = inspect(s);
	uint32_t sheaf = sk_load(&slub_of(sk_of(s))->sheaf_capacity);
	size_t n = 512 * (size_t)in.objects;
	void **objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	assert_true(sheaf > 0);

	pin_main_first();
	alloc_n(s, objs, n);
	struct slabkit_cache_info full = sk_info("slub_release_sheaf");
	free_n(s, objs, n);

	/* What may stay: min_partial empty slabs per node, and per CPU its
	 * partial list, its active slab and a slab per object in its sheaf. */
	struct slabkit_cache_info after = sk_info("slub_release_sheaf");
	uint64_t bound = (uint64_t)in.min_partial * slabkit_nodes() +
			 (uint64_t)sk_pcpu_nr * (in.cpu_partial_slabs + 1 + sheaf);
	assert_int_equal(after.in_use, 0);
	assert_true(full.slabs > 2 * bound);
	if (after.slabs > bound)
		fail_msg("%llu of %llu slabs kept after freeing everything through the sheaf (bound %llu)",
			 (unsigned long long)after.slabs, (unsigned long long)full.slabs,
			 (unsigned long long)bound);
	assert_true(inspect(s).cpu_partial_held <= in.cpu_partial_slabs);
	unpin_main();
	free(objs);
	shrink_and_destroy(s, "slub_release_sheaf");
}

/* TRIM keeps min_partial slabs per node; DRAIN_CPU sorts fullest first. */
static void test_trim_and_sort(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_trim", 256, 0, 0, NULL);
	assert_non_null(s);
	assert_int_equal(slabkit_cache_tune("slub_trim", "min_partial", 1000), 0);
	assert_int_equal(slabkit_cache_tune("slub_trim", "cpu_partial", 0), 0);
	assert_int_equal(slabkit_cache_tune("slub_trim", "sheaf_capacity", 0), 0);
	unsigned per = inspect(s).objects;
	size_t slabs = 12, n = slabs * per;
	void **objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	pin_main_first(); /* slab i holds objs[i * per .. i * per + per - 1] */
	alloc_n(s, objs, n);
	unpin_main();
	unsigned nd = slab_of(objs[0])->node;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(slab_of(objs[i])->node, nd);
	/* Slab i keeps i objects (slab 0 goes empty), the last one stays full. */
	for (size_t i = 0; i + 1 < slabs; i++)
		for (size_t j = i; j < per; j++) {
			kmem_cache_free(s, objs[i * per + j]);
			objs[i * per + j] = NULL;
		}
	struct slub_inspect in = inspect(s);
	assert_int_equal(in.node_empty[nd], 1);
	uint64_t partial = in.node_partial[nd];

	/* TRIM keeps min_partial partial slabs per node: with 11 on the list
	 * and min_partial 20 the empty one stays, with 5 it goes. */
	assert_int_equal(partial, slabs - 1);
	assert_int_equal(slabkit_cache_tune("slub_trim", "min_partial", 20), 0);
	sk_of(s)->ops->shrink(sk_of(s), SK_SHRINK_TRIM);
	in = inspect(s);
	assert_int_equal(in.node_partial[nd], partial);
	assert_int_equal(in.node_empty[nd], 1);
	assert_int_equal(slabkit_cache_tune("slub_trim", "min_partial", 5), 0);
	sk_of(s)->ops->shrink(sk_of(s), SK_SHRINK_TRIM);
	in = inspect(s);
	assert_int_equal(in.node_partial[nd], partial - 1);
	assert_int_equal(in.node_empty[nd], 0);

	/* DRAIN_CPU: fullest first (fewest free objects). */
	assert_int_not_equal(kmem_cache_shrink(s), 0);
	in = inspect(s);
	assert_int_equal(in.node_partial[nd], partial - 1);
	struct slub_node *node = &slub_of(sk_of(s))->node[nd];
	unsigned prev_free = 0;
	pthread_mutex_lock(&node->list_lock);
	struct sk_list *link;
	sk_list_for_each(link, &node->partial) {
		union slub_counters c = slub_counters(slub_slab_of(link));
		assert_true((unsigned)(c.objects - c.inuse) >= prev_free);
		prev_free = c.objects - c.inuse;
	}
	pthread_mutex_unlock(&node->list_lock);
	for (size_t i = 0; i < n; i++)
		if (objs[i])
			kmem_cache_free(s, objs[i]);
	free(objs);
	shrink_and_destroy(s, "slub_trim");
}

/* --- racing threads, then nothing left --- */

#define RACE_THREADS 4
#define RACE_RING 1024
#define RACE_SIZE 96

struct race {
	struct kmem_cache *s;
	_Atomic(void *) ring[RACE_RING];
	atomic_int stop, bad;
	unsigned long iters;
};

static void race_fill(void *p, uint64_t tag)
{
	uint64_t *w = p;
	for (size_t i = 0; i < RACE_SIZE / 8; i++)
		w[i] = tag ^ (i * 0x9E3779B97F4A7C15ULL);
}

static void race_check(struct race *r, void *p)
{
	uint64_t *w = p, tag = w[0];
	for (size_t i = 1; i < RACE_SIZE / 8; i++)
		if (w[i] != (tag ^ (i * 0x9E3779B97F4A7C15ULL)))
			atomic_fetch_add(&r->bad, 1);
}

static void *race_worker(void *arg)
{
	struct race *r = arg;
	uint64_t seed = (uintptr_t)&seed ^ sk_now_ns();
	void *mine[32];
	unsigned nmine = 0;

	for (unsigned long it = 0; it < r->iters; it++) {
		uint64_t x = sk_rand(&seed);
		if (nmine < 32 && (x & 3) == 0) {
			void *p = kmem_cache_alloc(r->s, GFP_KERNEL);
			if (!p) {
				atomic_fetch_add(&r->bad, 1);
				continue;
			}
			race_fill(p, x);
			mine[nmine++] = p;
		} else if (nmine && (x & 3) == 1) {
			race_check(r, mine[--nmine]);
			kmem_cache_free(r->s, mine[nmine]);
		} else if (nmine) {
			/* Hand it to whichever thread comes by: remote frees. */
			void *p = mine[--nmine];
			race_check(r, p);
			p = atomic_exchange(&r->ring[(x >> 8) % RACE_RING], p);
			if (p) {
				race_check(r, p);
				kmem_cache_free(r->s, p);
			}
		}
	}
	while (nmine) {
		race_check(r, mine[--nmine]);
		kmem_cache_free(r->s, mine[nmine]);
	}
	return NULL;
}

static void *race_shrinker(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		kmem_cache_shrink(r->s);
		struct slabkit_cache_info info;
		slabkit_cache_info_by_name("slub_race", &info);
		sk_sleep_ms(1);
	}
	return NULL;
}

static void test_race_then_shrink_to_zero(void **state)
{
	(void)state;
	static struct race r;
	memset(&r, 0, sizeof(r));
	r.s = kmem_cache_create("slub_race", RACE_SIZE, 0, 0, NULL);
	assert_non_null(r.s);
	r.iters = sk_scaled(200000);
	pthread_t t[RACE_THREADS], shrinker;
	for (int i = 0; i < RACE_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_worker, &r), 0);
	assert_int_equal(pthread_create(&shrinker, NULL, race_shrinker, &r), 0);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&r.stop, 1);
	pthread_join(shrinker, NULL);
	for (int i = 0; i < RACE_RING; i++) {
		void *p = atomic_load(&r.ring[i]);
		if (p) {
			race_check(&r, p);
			kmem_cache_free(r.s, p);
		}
	}
	assert_int_equal(atomic_load(&r.bad), 0);
	shrink_and_destroy(r.s, "slub_race");
}

/* --- UMA init/fini pair up; a failing init leaves nothing behind --- */

static atomic_long inits, finis, init_budget;

static int counting_init(void *mem, int size, int flags)
{
	(void)flags;
	if (atomic_fetch_sub(&init_budget, 1) <= 0)
		return ENOMEM;
	memset(mem, 0x3c, (size_t)size);
	atomic_fetch_add(&inits, 1);
	return 0;
}

static void counting_fini(void *mem, int size)
{
	unsigned char *b = mem;
	for (int i = 0; i < size; i++)
		assert_int_equal(b[i], 0x3c); /* init's contents survived every free */
	atomic_fetch_add(&finis, 1);
}

static void test_uma_init_fini(void **state)
{
	(void)state;
	atomic_store(&inits, 0);
	atomic_store(&finis, 0);
	atomic_store(&init_budget, 1 << 30);
	uma_zone_t z = uma_zcreate("slub_uma", 200, NULL, NULL, counting_init, counting_fini,
				   UMA_ALIGN_PTR, 0);
	assert_non_null(z);
	void *items[500];
	for (int i = 0; i < 500; i++)
		assert_non_null(items[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < 500; i++)
		uma_zfree(z, items[i]);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("slub_uma").slabs, 0);
	assert_int_equal(atomic_load(&inits), atomic_load(&finis));
	assert_true(atomic_load(&inits) >= 500);

	/* init fails on the 3rd object of the next slab: the two constructed
	 * ones are finished, the slab goes back, the allocation fails. */
	atomic_store(&init_budget, 2);
	long before = atomic_load(&finis);
	assert_null(uma_zalloc(z, M_NOWAIT));
	assert_int_equal(atomic_load(&finis) - before, 2);
	assert_int_equal(sk_info("slub_uma").slabs, 0);
	atomic_store(&init_budget, 1 << 30);
	void *p = uma_zalloc(z, M_NOWAIT);
	assert_non_null(p);
	uma_zfree(z, p);
	uma_zdestroy(z);
	assert_int_equal(atomic_load(&inits), atomic_load(&finis));
}

/* --- zone flags: no per-CPU slots, never free, zeroed slabs --- */

static void zone_churn(uma_zone_t z, const char *name, size_t size, bool expect_zero)
{
	enum { N = 3000 };
	static void *items[N];
	for (int i = 0; i < N; i++) {
		items[i] = uma_zalloc(z, M_WAITOK);
		assert_non_null(items[i]);
		if (expect_zero)
			assert_int_equal(sk_first_nonzero(items[i], size), SIZE_MAX);
		memset(items[i], 0xa5, size);
	}
	/* Half back, half again, then everything back. */
	for (int i = 0; i < N; i += 2)
		uma_zfree(z, items[i]);
	for (int i = 0; i < N; i += 2)
		assert_non_null(items[i] = uma_zalloc(z, M_WAITOK));
	for (int i = 0; i < N; i++)
		uma_zfree(z, items[i]);
	assert_int_equal(sk_info(name).in_use, 0);
}

static void test_uma_zone_flags(void **state)
{
	(void)state;
	/* NOBUCKET: no slots; every call takes SLUB's single-object path. */
	uma_zone_t z = uma_zcreate("slub_nobucket", 80, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR,
				   UMA_ZONE_NOBUCKET);
	assert_non_null(z);
	zone_churn(z, "slub_nobucket", 80, false);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("slub_nobucket").slabs, 0);
	uma_zdestroy(z);

	/* NOFREE: slabs stay after everything is freed and drained. */
	z = uma_zcreate("slub_nofree", 80, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, UMA_ZONE_NOFREE);
	assert_non_null(z);
	zone_churn(z, "slub_nofree", 80, false);
	uint64_t held = sk_info("slub_nofree").slabs;
	assert_true(held >= 3000 / sk_info("slub_nofree").objects_per_slab);
	uma_zone_reclaim(z, UMA_RECLAIM_DRAIN_CPU);
	assert_int_equal(sk_info("slub_nofree").slabs, held);
	uma_zdestroy(z);

	/* ZINIT: objects of a new slab are all zero; the free pointer lives
	 * after the object so that holds for every byte. */
	z = uma_zcreate("slub_zinit", 80, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, UMA_ZONE_ZINIT);
	assert_non_null(z);
	zone_churn(z, "slub_zinit", 80, true);
	uma_zdestroy(z);
}

/* --- the page provider refuses the preferred order --- */

static void test_fallback_order(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_fallback", 8192, 0, 0, NULL);
	assert_non_null(s);
	struct slub_inspect in = inspect(s);
	assert_int_equal(in.order, 3);
	assert_int_equal(in.min_objects, 1);

	/* Every second page allocation fails: after the first slab, each
	 * order-3 try fails and the order-1 retry succeeds. */
	void *objs[12];
	sk_pages_set_fail_every(2);
	for (int i = 0; i < 12; i++)
		objs[i] = kmem_cache_alloc(s, GFP_NOWAIT);
	sk_pages_set_fail_every(0);
	unsigned small = 0;
	for (int i = 0; i < 12; i++) {
		assert_non_null(objs[i]);
		struct sk_page *slab = slab_of(objs[i]);
		unsigned objects = slub_counters(slab).objects;
		assert_true(objects == in.objects || objects == in.min_objects);
		assert_int_equal(slab->npages, SK_PAGE_SIZE << (objects == 1 ? 1 : 3) >> SK_PAGE_SHIFT);
		small += objects == in.min_objects;
	}
	assert_true(small >= 4);
	free_n(s, objs, 12);

	/* Nothing at all: a NOWAIT allocation fails and leaves no trace. */
	assert_int_equal(kmem_cache_shrink(s), 0);
	sk_expect_messages();
	sk_pages_set_fail_every(1);
	void *p = kmem_cache_alloc(s, GFP_NOWAIT);
	sk_pages_set_fail_every(0);
	assert_null(p);
	assert_int_equal(sk_info("slub_fallback").slabs, 0);
	shrink_and_destroy(s, "slub_fallback");
}

/* --- sheaves: frees in any order stay per CPU --- */

/* Frees of objects of many slabs, in any order, go into the CPU's sheaf
 * and touch no slab; sheaf_capacity 0 gives them back to their slabs. */
static void test_sheaf_random_frees(void **state)
{
	(void)state;
	struct kmem_cache *s = kmem_cache_create("slub_sheaf", 64, 0, 0, NULL);
	assert_non_null(s);
	unsigned per = inspect(s).objects;
	size_t n = 8 * (size_t)per, freed = 20;
	void **objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);

	pin_main_first();
	alloc_n(s, objs, n);
	struct slub_inspect before = inspect(s);
	/* One object of each slab in turn, and back to front. */
	for (size_t i = 0; i < freed; i++) {
		size_t k = n - 1 - (i % 8) * per - i / 8;
		kmem_cache_free(s, objs[k]);
		objs[k] = NULL;
	}
	struct slub_inspect in = inspect(s);
	assert_int_equal(in.cpu_free, before.cpu_free + freed);
	assert_int_equal(in.cpu_partial_held, before.cpu_partial_held);
	for (unsigned i = 0; i < slabkit_nodes(); i++)
		assert_int_equal(in.node_partial[i], before.node_partial[i]);

	/* No sheaf: back to the slabs, which are partial now. */
	assert_int_equal(slabkit_cache_tune("slub_sheaf", "sheaf_capacity", 0), 0);
	in = inspect(s);
	assert_true(in.cpu_free < before.cpu_free + freed);
	uint64_t partial = in.cpu_partial_held;
	for (unsigned i = 0; i < slabkit_nodes(); i++)
		partial += in.node_partial[i];
	assert_true(partial > before.cpu_partial_held);
	assert_int_equal(sk_info("slub_sheaf").in_use, n - freed);
	assert_int_equal(slabkit_cache_tune("slub_sheaf", "sheaf_capacity", 100000), -EINVAL);

	for (size_t i = 0; i < n; i++)
		if (objs[i])
			kmem_cache_free(s, objs[i]);
	unpin_main();
	free(objs);
	shrink_and_destroy(s, "slub_sheaf");
}

/* --- the barn: a full sheaf on one CPU feeds an empty one on another --- */

static bool in_set(void *const *set, size_t n, const void *p)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == p)
			return true;
	return false;
}

/* A barn test: a 64 B cache, the main thread pinned to CPU a (producer),
 * n objects allocated there, of which CPU b (consumer) frees all with
 * free_barn_case(); n overflows b's sheaf `overflows` times (once at
 * cap + 1, then every half sheaf).  False: no two CPUs (skipped). */
struct barn_case {
	struct kmem_cache *s;
	const char *name;
	int a, b, node;
	uint32_t cap, half;
	size_t n;
	void **objs, **again; /* again: room for what CPU a allocates back */
};

static void barn_case_open(struct barn_case *bc, const char *name, unsigned overflows)
{
	if (!pick_two_cpus(&bc->a, &bc->b)) {
		print_message("skipped: the barn test needs two CPUs with a slot\n");
		skip();
	}
	bc->name = name;
	bc->s = kmem_cache_create(name, 64, 0, 0, NULL);
	assert_non_null(bc->s);
	bc->cap = slub_of(sk_of(bc->s))->sheaf_capacity;
	bc->half = (bc->cap + 1) / 2;
	bc->n = (size_t)bc->cap + bc->half + (overflows - 1);
	bc->objs = calloc(bc->n, sizeof(void *));
	bc->again = calloc(bc->cap + bc->half, sizeof(void *));
	assert_non_null(bc->objs);
	assert_non_null(bc->again);
	pin_main(bc->a);
	bc->node = (int)sk_pcpu_slot(sk_of(bc->s), (unsigned)bc->a)->tag - 1;
	alloc_n(bc->s, bc->objs, bc->n);
}

/* CPU b frees every object of bc->objs. */
static void barn_case_consume(struct barn_case *bc)
{
	struct obj_batch consumer = { bc->s, bc->objs, bc->n };
	run_on_cpu(bc->b, free_batch, &consumer);
}

static void barn_case_close(struct barn_case *bc)
{
	unpin_main();
	free(bc->again);
	free(bc->objs);
	shrink_and_destroy(bc->s, bc->name);
}

/* Producer on CPU a, consumer on CPU b: the consumer's full sheaf hands
 * its older half to the node's barn, no object goes back to a slab, and
 * the producer's next empty sheaf is refilled from the barn with exactly
 * those objects.  With barn_sheaves 0 the same frees go to the slabs. */
static void test_barn_producer_consumer(void **state)
{
	(void)state;
	struct barn_case bc;
	barn_case_open(&bc, "slub_barn", 1);
	const uint32_t half = bc.half;
	const int node = bc.node;
	struct slub_inspect before = inspect(bc.s);
	barn_case_consume(&bc);
	struct slub_inspect in = inspect(bc.s);
	assert_int_equal(in.barn_free[node], before.barn_free[node] + half);
	assert_int_equal(in.cpu_partial_held, before.cpu_partial_held); /* no slab became partial */
	for (unsigned i = 0; i < slabkit_nodes(); i++)
		assert_int_equal(in.node_partial[i], before.node_partial[i]);

	/* The producer empties its own sheaf, then takes half a sheaf from
	 * the barn: the objects the consumer freed first. */
	size_t k = 0;
	while (sk_pcpu_array_count(sk_pcpu_slot(sk_of(bc.s), (unsigned)bc.a))) {
		bc.again[k] = kmem_cache_alloc(bc.s, GFP_KERNEL);
		assert_non_null(bc.again[k]);
		assert_false(in_set(bc.objs, half, bc.again[k]));
		k++;
	}
	for (uint32_t i = 0; i < half; i++, k++) {
		bc.again[k] = kmem_cache_alloc(bc.s, GFP_KERNEL);
		assert_true(in_set(bc.objs, half, bc.again[k]));
	}
	assert_int_equal(inspect(bc.s).barn_free[node], in.barn_free[node] - half);

	/* No barn: the same overflow goes back to the slabs. */
	assert_int_equal(slabkit_cache_tune("slub_barn", "barn_sheaves", SLUB_BARN_SHEAVES + 1), -EINVAL);
	assert_int_equal(slabkit_cache_tune("slub_barn", "barn_sheaves", 0), 0);
	free_n(bc.s, bc.again, k);
	alloc_n(bc.s, bc.objs, bc.n);
	before = inspect(bc.s);
	barn_case_consume(&bc);
	in = inspect(bc.s);
	assert_int_equal(in.barn_free[node], 0);
	uint64_t partial_before = before.cpu_partial_held, partial_after = in.cpu_partial_held;
	for (unsigned i = 0; i < slabkit_nodes(); i++) {
		partial_before += before.node_partial[i];
		partial_after += in.node_partial[i];
	}
	assert_true(in.cpu_free < before.cpu_free + bc.n || partial_after != partial_before);
	barn_case_close(&bc);
}

/* A barn no allocation took from since the last tick goes back to its
 * slabs at the next tick; one a CPU just took from waits one tick more. */
static void test_barn_idle_trimmed_by_tick(void **state)
{
	(void)state;
	struct barn_case bc;
	barn_case_open(&bc, "slub_barn_tick", 2);
	barn_case_consume(&bc);
	assert_int_equal(inspect(bc.s).barn_free[bc.node], 2 * bc.half);

	/* CPU a takes half a sheaf from the barn: it is not idle. */
	size_t k = 0;
	while (sk_pcpu_array_count(sk_pcpu_slot(sk_of(bc.s), (unsigned)bc.a)))
		bc.again[k++] = kmem_cache_alloc(bc.s, GFP_KERNEL);
	bc.again[k++] = kmem_cache_alloc(bc.s, GFP_KERNEL);
	assert_int_equal(inspect(bc.s).barn_free[bc.node], bc.half);
	slabkit_tick();
	assert_int_equal(inspect(bc.s).barn_free[bc.node], bc.half);
	slabkit_tick();
	assert_int_equal(inspect(bc.s).barn_free[bc.node], 0);
	assert_int_equal(sk_info("slub_barn_tick").in_use, k);
	free_n(bc.s, bc.again, k);
	barn_case_close(&bc);
}

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		SK_TEST(test_layout),
		SK_TEST(test_ctor_free_pointer_outside),
		SK_TEST(test_remote_free_to_owner),
		SK_TEST(test_cpu_partial_spills_to_node),
		SK_TEST(test_empty_slabs_released),
		SK_TEST(test_empty_slabs_released_through_sheaf),
		SK_TEST(test_trim_and_sort),
		SK_TEST(test_race_then_shrink_to_zero),
		SK_TEST(test_uma_init_fini),
		SK_TEST(test_uma_zone_flags),
		SK_TEST(test_fallback_order),
		SK_TEST(test_sheaf_random_frees),
		SK_TEST(test_barn_producer_consumer),
		SK_TEST(test_barn_idle_trimmed_by_tick),
	};
	return cmocka_run_group_tests_name("slub_transitions", tests, sk_group_setup,
					   sk_group_teardown);
}
