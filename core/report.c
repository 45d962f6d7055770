/*
 * Reports: /proc/slabinfo-like, FreeBSD vmstat -z and vmstat -m, and one
 * JSON document with everything (schema in docs/stats.md).
 *
 * Reading never stops the allocator: per-CPU counters are summed with
 * racy reads (exact counters, read at slightly different instants), and
 * backends' ops->cache_info take no slot lock and make no membarrier call
 * (sk_backend.h).  The registry lock is held while caches are visited, so
 * a report delays cache creation and destruction, never an allocation.
 *
 * Lock order: registry_lock (slabkit_foreach_cache) -> backend node locks;
 * zones_lock and types_lock are leaves taken with nothing else held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"

/* --- slabinfo --- */

static uint64_t num_objs(const struct slabkit_cache_info *i)
{
	/* A heap backend (SLOB) has no fixed slots: every object it holds is
	 * a live one. */
	return i->objects_per_slab ? i->slabs * i->objects_per_slab : i->in_use;
}

static int print_slabinfo_line(const struct slabkit_cache_info *i, void *arg)
{
	FILE *out = arg;
	uint64_t pages_per_slab = i->slabs ? i->pages / i->slabs : 0;

	fprintf(out, "%-24s %8" PRIu64 " %8" PRIu64 " %6zu %4" PRIu64 " %4" PRIu64
		     " : tunables %4ld %4ld %4ld : slabdata %6" PRIu64 " %6" PRIu64 " %6" PRIu64
		     " : backend %s\n",
		i->name, i->in_use, num_objs(i), i->size, i->objects_per_slab, pages_per_slab, i->limit,
		i->batchcount, i->shared, i->active_slabs, i->slabs, i->shared_free, i->backend);
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
	fprintf(out, "%-24s %8" PRIu64 " large allocations, %" PRIu64 " pages\n", "kmalloc-large",
		sk_load(&sk_state.large.allocs) - sk_load(&sk_state.large.frees),
		sk_load(&sk_state.large.pages));
	if (sk_state.heap_ops)
		fprintf(out, "%-24s %8" PRIu64 " heap blocks : backend %s\n", "kmalloc-heap",
			sk_load(&sk_state.heap.allocs) - sk_load(&sk_state.heap.frees),
			sk_state.heap_ops->name);
}

/* --- vmstat -z --- */

static void print_num_or_dash(FILE *out, int width, int64_t v)
{
	if (v < 0)
		fprintf(out, "%*s", width, "-");
	else
		fprintf(out, "%*" PRId64, width, v);
}

static int print_zone_line(const struct slabkit_cache_info *i, void *arg)
{
	FILE *out = arg;
	if (i->front_end[0] == 'u') /* UMA zones print their own lines */
		return 0;
	/* LIMIT and SLEEP are UMA zone properties: not applicable ("-") to a
	 * kmem_cache or size class.  XDOMAIN where the backend counts it. */
	fprintf(out, "%-20s %6zu, %6s, %6" PRIu64 ", %6" PRIu64 ", %8" PRIu64 ", %4" PRIu64 ", %4s, ",
		i->name, i->object_size, "-", i->in_use, num_objs(i) - i->in_use, i->allocs, i->failures,
		"-");
	print_num_or_dash(out, 4, i->xdomain_frees);
	fprintf(out, ", %s\n", i->backend);
	return 0;
}

static void print_uma_zone(const struct sk_zone_row *z, void *arg)
{
	FILE *out = arg;
	fprintf(out, "%-20s %6d, %6lld, %6" PRIu64 ", %6" PRIu64 ", %8" PRIu64 ", %4" PRIu64 ", %4" PRIu64
		     ", ",
		z->name, z->size, z->limit, z->used, z->free, z->req, z->fail, z->sleeps);
	print_num_or_dash(out, 4, z->xdomain);
	fprintf(out, ", %s\n", z->backend);
}

SK_EXPORT void slabkit_report_vmstat_z(FILE *out)
{
	sk_ensure_init();
	fprintf(out, "%-20s %6s  %6s  %6s  %6s  %8s  %4s  %4s  %4s  %s\n\n", "ITEM", "SIZE", "LIMIT",
		"USED", "FREE", "REQ", "FAIL", "SLEEP", "XDOMAIN", "BACKEND");
	slabkit_foreach_cache(print_zone_line, out);
	sk_uma_zones_visit(print_uma_zone, out);
}

/* --- vmstat -m --- */

static void print_sizes(FILE *out, uint64_t mask, bool json)
{
	const char *sep = "";
	for (int i = 0; i < SK_BSD_CLASSES; i++)
		if (mask & (1ull << i)) {
			fprintf(out, "%s%u", sep, sk_bsd_class_size[i]);
			sep = ",";
		}
	if (mask & (1ull << SK_TYPE_LARGE_BIT))
		fprintf(out, json ? "%s\"large\"" : "%slarge", sep);
}

static void print_type_line(const struct sk_type_row *t, void *arg)
{
	FILE *out = arg;
	fprintf(out, "%16s %9" PRIu64 " %8" PRIu64 "K %8" PRIu64 "K %12" PRIu64 " ", t->name, t->in_use,
		(t->mem_use + 1023) / 1024, (t->high_use + 1023) / 1024, t->requests);
	print_sizes(out, t->size_mask, false);
	fputc('\n', out);
}

SK_EXPORT void slabkit_report_vmstat_m(FILE *out)
{
	sk_ensure_init();
	fprintf(out, "%16s %9s %9s %9s %12s %s\n", "Type", "InUse", "MemUse", "HighUse", "Requests",
		"Size(s)");
	sk_malloc_types_visit(print_type_line, out);
}

/* --- JSON --- */

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

struct json_ctx {
	FILE *out;
	bool first;
	uint64_t bytes_held, bytes_live;
};

static int json_cache(const struct slabkit_cache_info *i, void *arg)
{
	struct json_ctx *j = arg;
	FILE *out = j->out;
	uint64_t held = i->pages * SK_PAGE_SIZE, live = i->in_use * i->object_size;
	uint64_t full = i->slabs - SK_MIN(i->slabs, i->cpu_slabs + i->partial_slabs + i->empty_slabs);

	j->bytes_held += held;
	j->bytes_live += live;
	fprintf(out, "%s\n    {\"name\": ", j->first ? "" : ",");
	j->first = false;
	json_str(out, i->name);
	fprintf(out, ", \"front_end\": ");
	json_str(out, i->front_end);
	fprintf(out, ", \"backend\": ");
	json_str(out, i->backend);
	fprintf(out, ",\n     \"object_size\": %zu, \"size\": %zu, \"align\": %zu, \"objects_per_slab\": %" PRIu64
		     ", \"pages_per_slab\": %" PRIu64 ",\n",
		i->object_size, i->size, i->align, i->objects_per_slab, i->slabs ? i->pages / i->slabs : 0);
	fprintf(out, "     \"active_objs\": %" PRIu64 ", \"total_objs\": %" PRIu64 ", \"high_water\": %" PRIu64
		     ",\n",
		i->in_use, num_objs(i), i->high_water);
	fprintf(out, "     \"slabs\": {\"total\": %" PRIu64 ", \"active\": %" PRIu64 ", \"full\": %" PRIu64
		     ", \"partial\": %" PRIu64 ", \"empty\": %" PRIu64 ", \"cpu\": %" PRIu64 "},\n",
		i->slabs, i->active_slabs, full, i->partial_slabs, i->empty_slabs, i->cpu_slabs);
	fprintf(out, "     \"pages\": %" PRIu64 ", \"bytes_held\": %" PRIu64 ", \"bytes_live\": %" PRIu64
		     ", \"efficiency\": ",
		i->pages, held, live);
	if (held)
		fprintf(out, "%.4f", (double)live / (double)held);
	else
		fprintf(out, "null");
	fprintf(out, ",\n     \"allocs\": {\"total\": %" PRIu64 ", \"fast\": %" PRIu64 ", \"slow\": %" PRIu64
		     "}, \"frees\": {\"total\": %" PRIu64 ", \"fast\": %" PRIu64 ", \"slow\": %" PRIu64 "},\n",
		i->allocs, i->fast_allocs, i->slow_allocs, i->frees, i->fast_frees, i->slow_frees);
	fprintf(out, "     \"refills\": %" PRIu64 ", \"flushes\": %" PRIu64 ", \"failures\": %" PRIu64
		     ", \"bytes_requested\": %" PRIu64 ", \"bytes_allocated\": %" PRIu64 ",\n",
		i->refills, i->flushes, i->failures, i->bytes_requested, i->bytes_allocated);
	fprintf(out, "     \"free\": {\"cpu_and_shared\": %" PRIu64 ", \"shared\": %" PRIu64 ", \"in_slabs\": %" PRIu64
		     "}, \"xdomain_frees\": ",
		i->cached_free, i->shared_free, i->slab_free);
	if (i->xdomain_frees < 0)
		fprintf(out, "null");
	else
		fprintf(out, "%" PRId64, i->xdomain_frees);
	fprintf(out, ",\n     \"tunables\": {\"limit\": %ld, \"batchcount\": %ld, \"shared\": %ld}, \"zone_max\": %ld}",
		i->limit, i->batchcount, i->shared, i->zone_max);
	return 0;
}

static void json_type(const struct sk_type_row *t, void *arg)
{
	struct json_ctx *j = arg;
	fprintf(j->out, "%s\n    {\"name\": ", j->first ? "" : ",");
	j->first = false;
	json_str(j->out, t->name);
	fprintf(j->out, ", \"in_use\": %" PRIu64 ", \"mem_use\": %" PRIu64 ", \"high_use\": %" PRIu64
			", \"requests\": %" PRIu64 ", \"frees\": %" PRIu64 ", \"sizes\": [",
		t->in_use, t->mem_use, t->high_use, t->requests, t->frees);
	print_sizes(j->out, t->size_mask, true);
	fprintf(j->out, "]}");
}

static void json_zone(const struct sk_zone_row *z, void *arg)
{
	struct json_ctx *j = arg;
	fprintf(j->out, "%s\n    {\"name\": ", j->first ? "" : ",");
	j->first = false;
	json_str(j->out, z->name);
	fprintf(j->out, ", \"backend\": ");
	json_str(j->out, z->backend);
	fprintf(j->out, ", \"size\": %d, \"limit\": %lld, \"used\": %" PRIu64 ", \"free\": %" PRIu64
			", \"requests\": %" PRIu64 ", \"failures\": %" PRIu64 ", \"sleeps\": %" PRIu64 ", \"xdomain\": ",
		z->size, z->limit, z->used, z->free, z->req, z->fail, z->sleeps);
	if (z->xdomain < 0)
		fprintf(j->out, "null}");
	else
		fprintf(j->out, "%" PRId64 "}", z->xdomain);
}

static void json_orders(FILE *out, const uint64_t *v)
{
	fputc('[', out);
	for (int o = 0; o < SLABKIT_PAGE_ORDERS; o++)
		fprintf(out, "%s%" PRIu64, o ? ", " : "", v[o]);
	fputc(']', out);
}

static void json_plain(FILE *out, const char *name, const struct sk_plain_counters *p, bool pages)
{
	fprintf(out, "  \"%s\": {\"allocs\": %" PRIu64 ", \"frees\": %" PRIu64 ", \"live\": %" PRIu64
		     ", \"failures\": %" PRIu64 ", \"bytes_requested\": %" PRIu64 ", \"bytes_allocated\": %" PRIu64
		     ", \"bytes_freed\": %" PRIu64,
		name, sk_load(&p->allocs), sk_load(&p->frees), sk_load(&p->allocs) - sk_load(&p->frees),
		sk_load(&p->failures), sk_load(&p->bytes_requested), sk_load(&p->bytes_allocated),
		sk_load(&p->bytes_freed));
	if (pages)
		fprintf(out, ", \"pages\": %" PRIu64, sk_load(&p->pages));
	fprintf(out, "},\n");
}

static void report_json(FILE *out)
{
	struct json_ctx j = { .out = out, .first = true };
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(out, "{\n  \"slabkit\": {\"version\": \"%s\", \"schema\": 1},\n", SLABKIT_VERSION_STRING);
	fprintf(out, "  \"pid\": %ld, \"time\": %.3f, \"default_backend\": ", (long)getpid(),
		(double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	json_str(out, sk_state.ops->name);
	fprintf(out, ", \"percpu\": ");
	json_str(out, sk_pcpu_mode_name());
	fprintf(out, ", \"page_size\": %zu,\n  \"caches\": [", (size_t)SK_PAGE_SIZE);
	slabkit_foreach_cache(json_cache, &j);
	fprintf(out, "\n  ],\n  \"malloc_types\": [");
	j.first = true;
	sk_malloc_types_visit(json_type, &j);
	fprintf(out, "\n  ],\n  \"uma_zones\": [");
	j.first = true;
	sk_uma_zones_visit(json_zone, &j);
	fprintf(out, "\n  ],\n  \"nodes\": [");
	for (unsigned n = 0; n < sk_state.nodes; n++) {
		struct slabkit_node_stats ns;
		if (slabkit_node_stats(sk_numa_node_os((int)n), &ns) != 0)
			continue;
		fprintf(out, "%s\n    {\"node\": %d, \"os_node\": %d, \"memory_bytes\": %" PRIu64
			     ", \"bytes_reserved\": %" PRIu64 ", \"bytes_in_use\": %" PRIu64
			     ", \"bytes_committed\": %" PRIu64 ", \"bytes_returned\": %" PRIu64
			     ", \"madvise_calls\": %" PRIu64 ", \"page_allocs\": %" PRIu64
			     ", \"directed_hits\": %" PRIu64 ", \"directed_misses\": %" PRIu64 ",\n     \"used_blocks_by_order\": ",
			n ? "," : "", ns.node, ns.os_node, ns.memory_bytes, ns.bytes_reserved, ns.bytes_in_use,
			ns.bytes_committed, ns.bytes_returned, ns.madvise_calls, ns.page_allocs, ns.directed_hits,
			ns.directed_misses);
		json_orders(out, ns.used_blocks);
		fprintf(out, ",\n     \"free_blocks_by_order\": ");
		json_orders(out, ns.free_blocks);
		fprintf(out, "}");
	}
	fprintf(out, "\n  ],\n");
	json_plain(out, "large", &sk_state.large, true);
	if (sk_state.heap_ops) {
		fprintf(out, "  \"heap_backend\": ");
		json_str(out, sk_state.heap_ops->name);
		fprintf(out, ",\n");
		json_plain(out, "heap", &sk_state.heap, false);
	}
	struct slabkit_stats st;
	slabkit_stats(&st);
	fprintf(out, "  \"tracking\": {\"mode\": \"%s\", \"records_dropped\": %" PRIu64 "},\n",
		sk_track_mode == SK_TRACK_BT ? "bt" : sk_track_mode == SK_TRACK_SITE ? "all" : "store_user",
		sk_track_dropped());
	fprintf(out, "  \"totals\": {\"caches_bytes_held\": %" PRIu64 ", \"caches_bytes_live\": %" PRIu64
		     ", \"efficiency\": ",
		j.bytes_held, j.bytes_live);
	if (j.bytes_held)
		fprintf(out, "%.4f", (double)j.bytes_live / (double)j.bytes_held);
	else
		fprintf(out, "null");
	fprintf(out, ", \"slabs\": %" PRIu64 ", \"slab_pages\": %" PRIu64 ", \"large_allocs\": %" PRIu64
		     ", \"large_pages\": %" PRIu64 ", \"pages_reserved\": %" PRIu64 ", \"pages_in_use\": %" PRIu64
		     ", \"pages_free_dirty\": %" PRIu64 ", \"pages_released\": %" PRIu64
		     ", \"page_alloc_failures\": %" PRIu64 ", \"nodes\": %u, \"cpus\": %u}\n}\n",
		st.slabs, st.slab_pages, st.large_allocs, st.large_pages, st.pages_reserved, st.pages_in_use,
		st.pages_free_dirty, st.pages_released, st.page_alloc_failures, st.nodes, st.cpus);
}

/* --- one entry point --- */

SK_EXPORT int slabkit_report(FILE *out, const char *format)
{
	if (!out || !format)
		return -EINVAL;
	if (!strcmp(format, "slabinfo"))
		slabkit_report_slabinfo(out);
	else if (!strcmp(format, "vmstat-z"))
		slabkit_report_vmstat_z(out);
	else if (!strcmp(format, "vmstat-m"))
		slabkit_report_vmstat_m(out);
	else if (!strcmp(format, "json")) {
		sk_ensure_init();
		report_json(out);
	} else
		return -EINVAL;
	return 0;
}

/* --- at exit --- */

/* SLABKIT_STATS=<format>[:path]: a report when the process exits. */
static void stats_at_exit(void)
{
	const char *e = getenv("SLABKIT_STATS");
	if (!e || !*e || !sk_load_acquire(&sk_state.ready))
		return;
	char format[16];
	const char *colon = strchr(e, ':');
	size_t n = colon ? (size_t)(colon - e) : strlen(e);
	if (n >= sizeof(format)) {
		sk_errorf("slabkit: SLABKIT_STATS='%s': unknown format (slabinfo, vmstat-m, vmstat-z, json)", e);
		return;
	}
	memcpy(format, e, n);
	format[n] = 0;
	FILE *out = stderr;
	if (colon && colon[1] && !(out = fopen(colon + 1, "w"))) {
		sk_errorf("slabkit: SLABKIT_STATS: cannot write %s: %s", colon + 1, strerror(errno));
		return;
	}
	if (slabkit_report(out, format) != 0)
		sk_errorf("slabkit: SLABKIT_STATS='%s': unknown format (slabinfo, vmstat-m, vmstat-z, json)", e);
	if (out != stderr)
		fclose(out);
	else
		fflush(stderr);
}

void sk_at_exit(void)
{
	sk_publish_stop(true);
	stats_at_exit();
	sk_track_report_at_exit();
}
