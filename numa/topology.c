/*
 * numa/topology.c: what the page provider knows about the machine.
 *
 * hwloc is used here only, and only inside sk_numa_init: a topology load
 * takes milliseconds and hundreds of mallocs, so sk_topo_load() copies what
 * the hot paths need into plain tables (cpu -> node, node count, cache
 * line).  The hwloc topology stays open just long enough for the provider
 * to bind its arenas, then sk_topo_close_hwloc() destroys it.
 *
 * Node ids are hwloc NUMA-node logical indexes 0..n-1; node_os[] keeps
 * each one's OS number (what /sys/devices/system/node, libnuma and
 * move_pages(2) use), which differs on machines with holes in their node
 * numbering.  In hwloc 2.x NUMA
 * nodes are memory children of the objects they attach to, so the cpu ->
 * node table is built from each node's cpuset rather than by looking for a
 * NUMA ancestor of a PU (which does not exist).
 *
 * HWLOC_SYNTHETIC="node:4 core:2 pu:1" in the environment is honoured by
 * hwloc_topology_load() itself (checked with hwloc 2.9): the provider then
 * sees 4 nodes on any machine.  Such a topology is not "this system", so
 * binding is skipped.
 */
#define _GNU_SOURCE /* sched_getcpu */
#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sk_compiler.h"
#include "numa/numa_internal.h"

#define SK_DEFAULT_CACHE_LINE 64

/*
 * The one topology state object.
 * Synchronization: written only by sk_topo_load/_close_hwloc/_reset, which
 * run inside sk_numa_init/sk_numa_fini (never concurrently with other
 * provider calls); read without locks afterwards.
 */
static struct sk_topology {
	unsigned nodes;      /* 1..SK_MAX_NODES; 0 before init */
	unsigned cpus;       /* every CPU id the kernel can report is below it */
	size_t cache_line;
	uint16_t *cpu_node;  /* [cpus]: node of each CPU id (0 when unknown) */
	int node_os[SK_MAX_NODES];      /* provider node -> OS node number */
	uint64_t node_mem[SK_MAX_NODES];/* hwloc's local_memory (folded nodes summed) */
	bool bind;           /* a real multi-node machine: bind the arenas */
	hwloc_topology_t hw; /* open between sk_topo_load and sk_topo_close_hwloc */
} topo;

/* Highest CPU id in /sys/devices/system/cpu/possible ("0-3,8-11"), or -1. */
static int possible_cpu_max(void)
{
	char buf[4096];
	int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	long max = -1;
	for (char *p = buf; *p;) {
		if (*p >= '0' && *p <= '9') {
			long v = strtol(p, &p, 10);
			max = v > max ? v : max;
		} else {
			p++;
		}
	}
	return max > 1 << 20 ? -1 : (int)max;
}

/* One past the highest CPU id anything can report. */
static unsigned count_cpu_ids(hwloc_topology_t hw)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);
	unsigned cpus = n > 0 ? (unsigned)n : 1;
	int possible = possible_cpu_max();
	if (possible >= 0)
		cpus = SK_MAX(cpus, (unsigned)possible + 1);
	int npu = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PU);
	for (int i = 0; i < npu; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(hw, HWLOC_OBJ_PU, (unsigned)i);
		cpus = SK_MAX(cpus, pu->os_index + 1);
	}
	return cpus;
}

static size_t find_cache_line(hwloc_topology_t hw)
{
	static const hwloc_obj_type_t levels[] = { HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L2CACHE };
	for (size_t i = 0; i < SK_ARRAY_SIZE(levels); i++) {
		hwloc_obj_t c = hwloc_get_obj_by_type(hw, levels[i], 0);
		if (c && c->attr && c->attr->cache.linesize)
			return c->attr->cache.linesize;
	}
	return SK_DEFAULT_CACHE_LINE;
}

int sk_topo_load(void)
{
	int err;
	if (hwloc_topology_init(&topo.hw) != 0) {
		err = errno ? -errno : -ENOMEM;
		sk_numa_msg("slabkit: numa: hwloc_topology_init failed: %s", strerror(-err));
		topo.hw = NULL;
		return err;
	}
	/* Without hwloc's x86 backend: it runs cpuid on every PU by binding
	 * the loading thread to each in turn, which costs ~30 ms a process
	 * on a busy machine (measured: 30 loads 2.55 s with it, 0.64 s
	 * without) and moves the caller's thread around inside its first
	 * malloc under the preload.  Linux's sysfs gives the same nodes,
	 * CPUs and cache lines.  HWLOC_COMPONENTS still overrides. */
	if (!getenv("HWLOC_COMPONENTS"))
		hwloc_topology_set_components(topo.hw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "x86");
	if (hwloc_topology_load(topo.hw) != 0) {
		err = errno ? -errno : -EINVAL;
		sk_numa_msg("slabkit: numa: hwloc_topology_load failed: %s", strerror(-err));
		goto fail;
	}

	int hw_nodes = hwloc_get_nbobjs_by_type(topo.hw, HWLOC_OBJ_NUMANODE);
	if (hw_nodes < 1)
		hw_nodes = 1; /* hwloc always reports one; be safe anyway */
	if (hw_nodes > SK_MAX_NODES)
		sk_numa_msg("slabkit: numa: %d NUMA nodes, folding them onto %d", hw_nodes,
			    SK_MAX_NODES);
	topo.nodes = (unsigned)SK_MIN(hw_nodes, SK_MAX_NODES);
	topo.cpus = count_cpu_ids(topo.hw);
	topo.cache_line = find_cache_line(topo.hw);
	topo.cpu_node = calloc(topo.cpus, sizeof(*topo.cpu_node));
	if (!topo.cpu_node) {
		err = -ENOMEM;
		sk_numa_msg("slabkit: numa: no memory for the cpu table");
		goto fail;
	}

	/* Every CPU in node i's cpuset runs on node i (i folded below
	 * SK_MAX_NODES); CPUs no node claims stay on node 0. */
	for (int i = 0; i < hwloc_get_nbobjs_by_type(topo.hw, HWLOC_OBJ_NUMANODE); i++) {
		hwloc_obj_t node = hwloc_get_obj_by_type(topo.hw, HWLOC_OBJ_NUMANODE, (unsigned)i);
		unsigned cpu, n = node->logical_index % SK_MAX_NODES;
		if (node->logical_index < SK_MAX_NODES)
			topo.node_os[n] = (int)node->os_index;
		topo.node_mem[n] += node->attr ? node->attr->numanode.local_memory : 0;
		if (!node->cpuset)
			continue;
		hwloc_bitmap_foreach_begin(cpu, node->cpuset) {
			if (cpu < topo.cpus)
				topo.cpu_node[cpu] = (uint16_t)(node->logical_index % SK_MAX_NODES);
		}
		hwloc_bitmap_foreach_end();
	}
	topo.bind = topo.nodes > 1 && hwloc_topology_is_thissystem(topo.hw);
	for (unsigned a = 0; a < topo.nodes; a++)
		for (unsigned b = a + 1; b < topo.nodes; b++)
			if (topo.node_os[a] == topo.node_os[b])
				sk_numa_msg("slabkit: numa: nodes %u and %u both report OS number %d",
					    a, b, topo.node_os[a]);
	return 0;

fail:
	sk_topo_close_hwloc();
	sk_topo_reset();
	return err;
}

void sk_topo_bind(void *addr, size_t len, unsigned node)
{
	if (!topo.bind || !topo.hw)
		return;
	hwloc_nodeset_t set = hwloc_bitmap_alloc();
	if (!set)
		return;
	/* The hwloc nodes folded onto this provider node. */
	for (int i = 0; i < hwloc_get_nbobjs_by_type(topo.hw, HWLOC_OBJ_NUMANODE); i++) {
		hwloc_obj_t obj = hwloc_get_obj_by_type(topo.hw, HWLOC_OBJ_NUMANODE, (unsigned)i);
		if (obj->logical_index % SK_MAX_NODES == node)
			hwloc_bitmap_or(set, set, obj->nodeset);
	}
	if (hwloc_set_area_membind(topo.hw, addr, len, set, HWLOC_MEMBIND_BIND,
				   HWLOC_MEMBIND_BYNODESET) != 0)
		/* Not fatal: the arena still works, placed by first touch. */
		sk_numa_msg("slabkit: numa: binding node %u's arena failed (%s); "
			    "its pages go where they are first touched", node, strerror(errno));
	hwloc_bitmap_free(set);
}

void sk_topo_close_hwloc(void)
{
	if (topo.hw)
		hwloc_topology_destroy(topo.hw);
	topo.hw = NULL;
}

void sk_topo_reset(void)
{
	free(topo.cpu_node);
	topo = (struct sk_topology){ 0 };
}

unsigned sk_numa_nodes(void)
{
	return topo.nodes;
}

int sk_numa_node_os(int node)
{
	return node >= 0 && (unsigned)node < topo.nodes ? topo.node_os[node] : -1;
}

int sk_numa_node_from_os(int os_node)
{
	/* Without holes (nearly every machine) the numbers are the indexes. */
	if (os_node >= 0 && (unsigned)os_node < topo.nodes && topo.node_os[os_node] == os_node)
		return os_node;
	for (unsigned n = 0; os_node >= 0 && n < topo.nodes; n++)
		if (topo.node_os[n] == os_node)
			return (int)n;
	return -1;
}

uint64_t sk_numa_node_memory(int node)
{
	return node >= 0 && (unsigned)node < topo.nodes ? topo.node_mem[node] : 0;
}

uint64_t sk_topo_largest_node_memory(void)
{
	uint64_t max = 0;
	for (unsigned n = 0; n < topo.nodes; n++)
		max = SK_MAX(max, topo.node_mem[n]);
	return max;
}

unsigned sk_numa_cpus(void)
{
	return topo.cpus;
}

int sk_numa_cpu_node(unsigned cpu)
{
	return cpu < topo.cpus ? topo.cpu_node[cpu] : 0;
}

size_t sk_numa_cache_line(void)
{
	return topo.cache_line ? topo.cache_line : SK_DEFAULT_CACHE_LINE;
}

int sk_numa_current_node(void)
{
	int cpu = sched_getcpu();
	return cpu < 0 ? 0 : sk_numa_cpu_node((unsigned)cpu);
}
