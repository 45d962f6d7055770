/*
 * Reports: /proc/slabinfo-like, FreeBSD vmstat -z and vmstat -m.
 */
#include <stdio.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"

void sk_report_zones(FILE *out);
void sk_report_malloc_types(FILE *out);

static int print_slabinfo_line(const struct slabkit_cache_info *i, void *arg)
{
	FILE *out = arg;
	uint64_t pages_per_slab = i->slabs ? i->pages / i->slabs : 0;

	fprintf(out, "%-24s %8llu %8llu %6zu %4llu %4llu : tunables %4ld %4ld %4ld : slabdata %6llu %6llu %6llu"
		     " : backend %s\n",
		i->name, (unsigned long long)i->in_use,
		(unsigned long long)(i->slabs * i->objects_per_slab), i->size,
		(unsigned long long)i->objects_per_slab, (unsigned long long)pages_per_slab, i->limit,
		i->batchcount, i->shared, (unsigned long long)i->slabs, (unsigned long long)i->slabs,
		(unsigned long long)i->cached_free, i->backend);
	return 0;
}

SK_EXPORT void slabkit_report_slabinfo(FILE *out)
{
	sk_ensure_init();
	fprintf(out, "slabinfo - version: 2.1 (slabkit, default backend %s, per-CPU %s)\n",
		sk_state.ops->name, sk_pcpu_mode_name());
	fprintf(out, "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
		     " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs>"
		     " <sharedavail> : backend <name>\n");
	slabkit_foreach_cache(print_slabinfo_line, out);
	fprintf(out, "%-24s %8llu large allocations, %llu pages\n", "kmalloc-large",
		(unsigned long long)(sk_load(&sk_state.large.allocs) - sk_load(&sk_state.large.frees)),
		(unsigned long long)sk_load(&sk_state.large.pages));
	if (sk_state.heap_ops)
		fprintf(out, "%-24s %8llu heap blocks : backend %s\n", "kmalloc-heap",
			(unsigned long long)(sk_load(&sk_state.heap.allocs) - sk_load(&sk_state.heap.frees)),
			sk_state.heap_ops->name);
}

static int print_zone_line(const struct slabkit_cache_info *i, void *arg)
{
	FILE *out = arg;
	if (i->front_end[0] == 'u') /* UMA zones print their own lines */
		return 0;
	fprintf(out, "%-20s %6zu, %6ld, %6llu, %6llu, %8llu, %4llu, %4llu, %4llu, %s\n", i->name,
		i->object_size, 0L, (unsigned long long)i->in_use, (unsigned long long)i->cached_free,
		(unsigned long long)i->allocs, (unsigned long long)i->failures, 0ULL, 0ULL, i->backend);
	return 0;
}

SK_EXPORT void slabkit_report_vmstat_z(FILE *out)
{
	sk_ensure_init();
	fprintf(out, "%-20s %6s  %6s  %6s  %6s  %8s  %4s  %4s  %4s  %s\n\n", "ITEM", "SIZE", "LIMIT",
		"USED", "FREE", "REQ", "FAIL", "SLEEP", "XDOMAIN", "BACKEND");
	slabkit_foreach_cache(print_zone_line, out);
	sk_report_zones(out);
}

SK_EXPORT void slabkit_report_vmstat_m(FILE *out)
{
	sk_ensure_init();
	sk_report_malloc_types(out);
}

void sk_at_exit(void)
{
	sk_track_report_at_exit();
}
