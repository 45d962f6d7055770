/*
 * What the NUMA placement tests share (tests/numa_nodes.c,
 * tests/numa_policy.c): where an object physically is (move_pages(2) in
 * query mode), a CPU of each node, and threads pinned to one.
 *
 * Header-only, included by one file per program.
 */
#ifndef SLABKIT_NUMA_TEST_H
#define SLABKIT_NUMA_TEST_H

#include <sched.h>
#include <sys/syscall.h>

#include "sk_test.h"

#define MAX_NODES 64

/* Nodes are enumerated by slabkit's index 0..nodes-1; every public call
 * takes and returns the OS's number, os_of[index]. */
static unsigned nodes;
static int os_of[MAX_NODES];   /* slabkit_node_os(index) */
static bool physical;          /* check move_pages too (a real multi-node kernel) */
static int node_cpu[MAX_NODES];/* a CPU of each node (by index) this process may run on, or -1 */

/* --- where an object is --- */

/* The OS node of each page holding objs[i] (move_pages query mode), into
 * os[i]; the pages must have been touched. */
static void physical_nodes(void **objs, size_t n, int *os)
{
	void **pages = calloc(n, sizeof(void *));
	assert_non_null(pages);
	for (size_t i = 0; i < n; i++)
		pages[i] = (void *)((uintptr_t)objs[i] & ~(uintptr_t)4095);
	long rc = syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, os, 0);
	if (rc != 0)
		fail_msg("move_pages(query) failed: %s", strerror(errno));
	free(pages);
}

/* --- threads on a given node --- */

static bool pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0;
}

static void unpin(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* Find, for each node, one CPU this process may run on. */
static void find_node_cpus(void)
{
	cpu_set_t allowed;
	for (unsigned n = 0; n < MAX_NODES; n++)
		node_cpu[n] = -1;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || !pin_to(cpu))
			continue;
		int node = slabkit_node_from_os(slabkit_current_node());
		if (node >= 0 && node < MAX_NODES && node_cpu[node] < 0)
			node_cpu[node] = cpu;
	}
	unpin();
}

/* A thread that runs fn(arg) pinned to `cpu` (any CPU when -1). */
struct pinned {
	int cpu;
	void (*fn)(void *);
	void *arg;
};

static void *pinned_main(void *p)
{
	struct pinned *pt = p;
	if (pt->cpu >= 0)
		pin_to(pt->cpu);
	pt->fn(pt->arg);
	return NULL;
}

static void run_on_cpu(int cpu, void (*fn)(void *), void *arg)
{
	struct pinned pt = { cpu, fn, arg };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, pinned_main, &pt), 0);
	pthread_join(t, NULL);
}

/* After slabkit_init: the node count, the physical switch
 * ($SLABKIT_TEST_PHYSICAL=1, set by tests/numa-vm.sh), the node CPUs. */
static void numa_test_setup(void)
{
	nodes = slabkit_nodes();
	for (unsigned n = 0; n < nodes && n < MAX_NODES; n++)
		os_of[n] = slabkit_node_os((int)n);
	physical = getenv("SLABKIT_TEST_PHYSICAL") && atoi(getenv("SLABKIT_TEST_PHYSICAL"));
	find_node_cpus();
}

#endif /* SLABKIT_NUMA_TEST_H */
