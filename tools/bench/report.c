/*
 * slabkit-bench: what a run prints and writes.
 *
 *   the terminal table  one block per section, one row per (workload, allocator)
 *   the targets         issue 8's "what to reach", each with a verdict computed
 *                       from this run's figures
 *   PREFIX.csv          one row per (workload, allocator); columns in docs/benchmarks.md
 *   PREFIX.json         the same, plus the machine, the memory series, the targets
 *   PREFIX.html         one self-contained page, inline SVG charts, no network
 *
 * Every figure comes from a cell of this run; a cell that did not run, or
 * failed, prints "-" (and its error), never a number.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define MIN_CLEAN 3

void cell_finish(struct cell *c)
{
	double used[BENCH_MAX_SAMPLES];
	int clean = 0, n = 0;

	for (int i = 0; i < c->nsamples; i++)
		clean += !c->disturbed[i];
	for (int i = 0; i < c->nsamples; i++)
		if (clean < MIN_CLEAN || !c->disturbed[i])
			used[n++] = c->samples[i];
	c->nused = n;
	if (!n)
		return;
	c->median = bench_median(used, n);
	c->iqr_pct = n >= 2 && c->median > 0
			     ? 100.0 * (bench_quantile_sorted(used, n, 0.75) - bench_quantile_sorted(used, n, 0.25)) /
				       c->median
			     : 0;
}

static int clean_samples(const struct cell *c)
{
	int clean = 0;

	for (int i = 0; i < c->nsamples; i++)
		clean += !c->disturbed[i];
	return clean;
}

static bool has_time(const struct cell *c)
{
	return c->ran && !c->failed && c->nused > 0 && c->median > 0;
}

static const struct cell *cell_of(const struct run *run, const char *workload, const char *alloc)
{
	int w = bench_index_of_workload(run, workload), a = bench_index_of_alloc(run, alloc);

	return w < 0 || a < 0 ? NULL : &run->cells[w][a];
}

/* ns/op of a / ns/op of b, 0 when either is missing. */
static double time_ratio(const struct cell *a, const struct cell *b)
{
	return a && b && has_time(a) && has_time(b) ? a->median / b->median : 0;
}

static double vs_glibc(const struct run *run, int w, int a)
{
	return time_ratio(&run->cells[w][a], &run->cells[w][0]);
}

static double held_per_live(const struct cell *c)
{
	return c->ran && !c->failed && c->live > 0 ? c->held / c->live : 0;
}

/* --- targets ---------------------------------------------------------------------- */

enum { T_NOT_MEASURED = -1, T_MISSED = 0, T_MET = 1 };

struct target {
	char id[8];
	char label[96];
	char alloc[BENCH_NAME];
	char detail[256];
	int state;
	double ratio, limit; /* the worst measured ratio and its limit (0: none) */
};

#define MAX_TARGETS 64

struct targets {
	int n;
	struct target t[MAX_TARGETS];
};

static struct target *target_new(struct targets *ts, const char *id, const char *label, const char *alloc,
				  double limit)
{
	struct target *t = &ts->t[ts->n++];

	memset(t, 0, sizeof(*t));
	snprintf(t->id, sizeof(t->id), "%s", id);
	snprintf(t->label, sizeof(t->label), "%s", label);
	snprintf(t->alloc, sizeof(t->alloc), "%s", alloc);
	t->limit = limit;
	t->state = T_NOT_MEASURED;
	return t;
}

/* Adds "tag r.rrx" to the detail and folds r into the verdict. */
static void target_ratio(struct target *t, const char *tag, double r)
{
	size_t used = strlen(t->detail);

	if (r <= 0)
		return;
	snprintf(t->detail + used, sizeof(t->detail) - used, "%s%s %.2fx", used ? ", " : "", tag, r);
	if (r > t->ratio)
		t->ratio = r;
	t->state = (t->state != T_MISSED && r <= t->limit) ? T_MET : T_MISSED;
}

static const char *const main_backends[] = { "slub", "slab", "uma" };

/* One of t's ratios: backend be's time on a workload over glibc's. */
static void target_vs_glibc(struct target *t, const struct run *run, const char *tag, const char *workload,
			    const char *be)
{
	target_ratio(t, tag, time_ratio(cell_of(run, workload, be), cell_of(run, workload, "glibc")));
}

/* The same for every workload named prefix..., tagged by the rest of its name. */
static void target_vs_glibc_each(struct target *t, const struct run *run, const char *prefix, const char *be)
{
	size_t len = strlen(prefix);

	for (int w = 0; w < run->nworkloads; w++)
		if (!strncmp(run->workloads[w].name, prefix, len))
			target_vs_glibc(t, run, run->workloads[w].name + len, run->workloads[w].name, be);
}

static void compute_targets(const struct run *run, struct targets *ts)
{
	char tag[64];

	ts->n = 0;
	for (size_t b = 0; b < 3; b++) {
		const char *be = main_backends[b];
		struct target *t;

		if (bench_index_of_alloc(run, be) < 0)
			continue;
		t = target_new(ts, "1", "kmem_cache 64/256 B pair <= 0.50x glibc", be, 0.5);
		target_vs_glibc(t, run, "64 B", "cache64", be);
		target_vs_glibc(t, run, "256 B", "cache256", be);

		t = target_new(ts, "2a", "kmalloc(64) pair, constant size <= 0.60x glibc", be, 0.6);
		target_vs_glibc(t, run, "kmalloc64", "kmalloc64", be);
		t = target_new(ts, "2b", "kmalloc(n) pair, run-time size <= 0.70x glibc", be, 0.7);
		target_vs_glibc(t, run, "kmalloc-var64", "kmalloc-var64", be);

		t = target_new(ts, "3", "random window (4,096 and 1,000,000 live) <= 1.00x glibc", be, 1.0);
		target_vs_glibc_each(t, run, "window", be);

		t = target_new(ts, "4", "uma_zalloc / malloc(9) pair <= 1.10x kmem_cache / kmalloc, same backend", be,
			       1.1);
		target_ratio(t, "uma64/cache64", time_ratio(cell_of(run, "uma64", be), cell_of(run, "cache64", be)));
		target_ratio(t, "bsdmalloc64/kmalloc64",
			     time_ratio(cell_of(run, "bsdmalloc64", be), cell_of(run, "kmalloc64", be)));

		t = target_new(ts, "5", "lock mode (SLABKIT_PERCPU=lock) LIFO pair <= 1.20x glibc", be, 1.2);
		target_vs_glibc(t, run, "cache64-lock", "cache64-lock", be);

		t = target_new(ts, "6", "random window at every live-set size <= 1.00x glibc", be, 1.0);
		target_vs_glibc_each(t, run, "live-", be);
	}
	/* 7: every backend but SLOB. */
	for (int a = 0; a < run->nallocs; a++) {
		const struct allocator *al = &run->allocs[a];
		const struct cell *c = cell_of(run, "remote", al->name);
		struct target *t;

		if (al->kind != ALLOC_SLABKIT || !strcmp(al->name, "slob"))
			continue;
		t = target_new(ts, "7", "producer/consumer <= 0.50x glibc, spread < 30%", al->name, 0.5);
		target_ratio(t, "remote", time_ratio(c, cell_of(run, "remote", "glibc")));
		if (c && has_time(c) && t->state != T_NOT_MEASURED) {
			size_t used = strlen(t->detail);

			snprintf(t->detail + used, sizeof(t->detail) - used, ", spread %.0f%%", c->iqr_pct);
			if (c->iqr_pct >= 30)
				t->state = T_MISSED;
		}
	}
	/* 8: malloc(9) uses the class of n. */
	for (int a = 0; a < run->nallocs; a++) {
		const struct allocator *al = &run->allocs[a];
		const struct cell *c = cell_of(run, "bsdmalloc64", al->name);
		struct target *t;

		if (al->kind != ALLOC_SLABKIT)
			continue;
		t = target_new(ts, "8", "malloc(9): malloc_usable_size(malloc(64)) == 64", al->name, 1.0);
		if (c && c->ran && c->usable64 > 0) {
			snprintf(t->detail, sizeof(t->detail), "64 B -> %.0f, 4096 B -> %.0f", c->usable64, c->usable4096);
			t->ratio = c->usable64 / 64;
			t->state = c->usable64 == 64 && c->usable4096 == 4096 ? T_MET : T_MISSED;
		}
	}
	/* 9: SLOB's footprint: the lowest of the backends, <= 1.10x live. */
	if (bench_index_of_alloc(run, "slob") >= 0) {
		const struct cell *slob = cell_of(run, "footprint", "slob");
		struct target *t = target_new(ts, "9", "SLOB footprint <= 1.10x live and the lowest backend", "slob",
					      1.1);
		double mine = slob ? held_per_live(slob) : 0;

		if (mine > 0) {
			size_t used;

			t->ratio = mine;
			t->state = mine <= 1.10 ? T_MET : T_MISSED;
			used = (size_t)snprintf(t->detail, sizeof(t->detail), "slob %.3fx", mine);
			for (int a = 0; a < run->nallocs; a++) {
				const struct cell *c = cell_of(run, "footprint", run->allocs[a].name);
				double f = c ? held_per_live(c) : 0;

				if (a == bench_index_of_alloc(run, "slob") || f <= 0 ||
				    (run->allocs[a].kind != ALLOC_SLABKIT && a != 0))
					continue;
				snprintf(tag, sizeof(tag), ", %s %.3fx", run->allocs[a].name, f);
				used += (size_t)snprintf(t->detail + used, used < sizeof(t->detail) ? sizeof(t->detail) - used : 0,
							 "%s", tag);
				if (run->allocs[a].kind == ALLOC_SLABKIT && f < mine)
					t->state = T_MISSED;
			}
		}
	}
}

static const char *state_word(int state)
{
	return state == T_MET ? "met" : state == T_MISSED ? "MISSED" : "not measured";
}

/* --- the terminal -------------------------------------------------------------------- */

static void print_header(const struct run *run, FILE *out)
{
	char machine[512], date[64], percpu[16] = "";
	time_t now = time(NULL);

	bench_machine(machine, sizeof(machine));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
	for (int w = 0; w < run->nworkloads && !percpu[0]; w++)
		for (int a = 0; a < run->nallocs && !percpu[0]; a++)
			if (run->cells[w][a].percpu[0] && !run->workloads[w].lock_mode)
				snprintf(percpu, sizeof(percpu), "%s", run->cells[w][a].percpu);
	fprintf(out, "slabkit-bench, finished %s after %.0f s\n", date, run->elapsed_s);
	fprintf(out, "machine: %s\n", machine);
	fprintf(out, "command: %s\n", run->command);
	fprintf(out, "allocators:");
	for (int a = 0; a < run->nallocs; a++)
		fprintf(out, " %s%s", run->allocs[a].name,
			run->allocs[a].kind == ALLOC_PEER ? " (LD_PRELOAD)" : run->allocs[a].kind == ALLOC_SLABKIT ? " (libslabkit.so)" : "");
	fprintf(out, "; slabkit per-CPU mode: %s\n", percpu[0] ? percpu : "n/a");
	fprintf(out, "method: each cell in a fresh process; median of %d round(s) x %d repetition(s) of ~%.0f ms;"
		     " spread = interquartile range / median\n",
		run->opt.rounds, run->opt.reps, run->opt.rep_ms);
	if (run->opt.replay)
		fprintf(out, "replay: %s: %llu records, %llu thread(s) recorded (replayed on one), peak %llu live "
			     "objects, %.1f MiB live\n",
			run->opt.replay, (unsigned long long)run->replay_records,
			(unsigned long long)run->replay_threads, (unsigned long long)run->replay_peak_live_objects,
			run->replay_peak_live_bytes / 1048576.0);
}

static void fmt_or_dash(char *buf, size_t size, const char *fmt, double v, bool ok)
{
	if (ok)
		snprintf(buf, size, fmt, v);
	else
		snprintf(buf, size, "-");
}

void report_terminal(const struct run *run, FILE *out)
{
	const char *section = NULL;
	struct targets ts;

	print_header(run, out);
	for (int w = 0; w < run->nworkloads; w++) {
		const struct workload *wl = &run->workloads[w];

		if (!section || strcmp(section, wl->section)) {
			section = wl->section;
			fprintf(out, "\n== %s ==\n", section);
			fprintf(out, "%-20s %-9s %10s %9s %7s %9s %9s %9s %9s %8s %8s %6s\n", "workload", "alloc",
				"ns/op", "Mops/s", "spread", "vs glibc", "peak MiB", "held MiB", "held/live", "slabs",
				"pages", "clean");
		}
		fprintf(out, "-- %s: %s\n", wl->name, wl->what);
		for (int a = 0; a < run->nallocs; a++) {
			const struct cell *c = &run->cells[w][a];
			char ns[16], mops[16], spread[16], ratio[16], peak[16], held[16], hl[16], slabs[16], pages[16],
				clean[16];
			bool t = has_time(c), ok = c->ran && !c->failed;

			if (!c->ran)
				continue;
			fmt_or_dash(ns, sizeof(ns), "%.2f", c->median, t);
			fmt_or_dash(mops, sizeof(mops), "%.2f", t ? 1000.0 / c->median : 0, t);
			fmt_or_dash(spread, sizeof(spread), "%.1f%%", c->iqr_pct, t && c->nused > 1);
			fmt_or_dash(ratio, sizeof(ratio), "%.2fx", vs_glibc(run, w, a), vs_glibc(run, w, a) > 0);
			fmt_or_dash(peak, sizeof(peak), "%.1f", c->peak_rss / 1048576.0, ok && c->peak_rss > 0);
			fmt_or_dash(held, sizeof(held), "%.1f", c->held / 1048576.0, ok);
			fmt_or_dash(hl, sizeof(hl), "%.3f", held_per_live(c), held_per_live(c) > 0);
			fmt_or_dash(slabs, sizeof(slabs), "%.0f", c->slabs, ok && c->slabs >= 0);
			fmt_or_dash(pages, sizeof(pages), "%.0f", c->pages, ok && c->pages >= 0);
			snprintf(clean, sizeof(clean), "%d/%d", clean_samples(c), c->nsamples);
			fprintf(out, "%-20s %-9s %10s %9s %7s %9s %9s %9s %9s %8s %8s %6s%s%s\n", wl->name,
				run->allocs[a].name, ns, mops, spread, ratio, peak, held, hl, slabs, pages, clean,
				c->failed ? "  FAILED: " : "", c->failed ? c->error : "");
		}
	}
	compute_targets(run, &ts);
	if (ts.n && !run->opt.replay) {
		fprintf(out, "\n== targets (issue 8), computed from the figures above ==\n");
		for (int i = 0; i < ts.n; i++)
			fprintf(out, "%-3s %-66s %-5s %-13s %s\n", ts.t[i].id, ts.t[i].label, ts.t[i].alloc,
				state_word(ts.t[i].state), ts.t[i].detail);
	}
}

/* --- CSV and JSON ------------------------------------------------------------------- */

int report_csv(const struct run *run, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		perror(path);
		return 1;
	}
	fprintf(f, "workload,section,allocator,ns_per_op,mops_per_s,spread_pct,samples,clean_samples,vs_glibc,"
		   "peak_rss_bytes,held_bytes,live_bytes,held_per_live,slabs,pages,error\n");
	for (int w = 0; w < run->nworkloads; w++) {
		for (int a = 0; a < run->nallocs; a++) {
			const struct cell *c = &run->cells[w][a];
			bool t = has_time(c), ok = c->ran && !c->failed;

			if (!c->ran)
				continue;
			fprintf(f, "%s,%s,%s,", run->workloads[w].name, run->workloads[w].section, run->allocs[a].name);
			if (t)
				fprintf(f, "%.2f,%.2f,%.1f,", c->median, 1000.0 / c->median, c->iqr_pct);
			else
				fprintf(f, ",,,");
			fprintf(f, "%d,%d,", c->nsamples, clean_samples(c));
			if (vs_glibc(run, w, a) > 0)
				fprintf(f, "%.2f,", vs_glibc(run, w, a));
			else
				fprintf(f, ",");
			if (ok)
				fprintf(f, "%.0f,%.0f,%.0f,", c->peak_rss, c->held, c->live);
			else
				fprintf(f, ",,,");
			if (held_per_live(c) > 0)
				fprintf(f, "%.3f,", held_per_live(c));
			else
				fprintf(f, ",");
			if (ok && c->slabs >= 0)
				fprintf(f, "%.0f,%.0f,", c->slabs, c->pages);
			else
				fprintf(f, ",,");
			/* errors never contain commas or quotes we did not put there */
			fprintf(f, "\"%s\"\n", c->failed ? c->error : "");
		}
	}
	return fclose(f) != 0;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void json_number(FILE *f, double v, bool ok, const char *fmt)
{
	if (ok && isfinite(v))
		fprintf(f, fmt, v);
	else
		fputs("null", f);
}

int report_json(const struct run *run, const char *path)
{
	FILE *f = fopen(path, "w");
	char machine[512];
	struct targets ts;

	if (!f) {
		perror(path);
		return 1;
	}
	bench_machine(machine, sizeof(machine));
	fprintf(f, "{\n  \"tool\": \"slabkit-bench\",\n  \"machine\": ");
	json_string(f, machine);
	fprintf(f, ",\n  \"command\": ");
	json_string(f, run->command);
	fprintf(f, ",\n  \"elapsed_s\": %.1f,\n  \"rounds\": %d,\n  \"reps\": %d,\n  \"rep_ms\": %.1f,\n",
		run->elapsed_s, run->opt.rounds, run->opt.reps, run->opt.rep_ms);
	if (run->opt.replay) {
		fprintf(f, "  \"replay\": {\"file\": ");
		json_string(f, run->opt.replay);
		fprintf(f, ", \"records\": %llu, \"threads\": %llu, \"peak_live_objects\": %llu, "
			   "\"peak_live_bytes\": %.0f},\n",
			(unsigned long long)run->replay_records, (unsigned long long)run->replay_threads,
			(unsigned long long)run->replay_peak_live_objects, run->replay_peak_live_bytes);
	}
	fprintf(f, "  \"allocators\": [");
	for (int a = 0; a < run->nallocs; a++) {
		fprintf(f, "%s\n    {\"name\": ", a ? "," : "");
		json_string(f, run->allocs[a].name);
		fprintf(f, ", \"kind\": \"%s\"}",
			run->allocs[a].kind == ALLOC_GLIBC ? "glibc" : run->allocs[a].kind == ALLOC_SLABKIT ? "slabkit" : "peer");
	}
	fprintf(f, "\n  ],\n  \"workloads\": [");
	for (int w = 0; w < run->nworkloads; w++) {
		fprintf(f, "%s\n    {\"name\": ", w ? "," : "");
		json_string(f, run->workloads[w].name);
		fprintf(f, ", \"section\": ");
		json_string(f, run->workloads[w].section);
		fprintf(f, ", \"what\": ");
		json_string(f, run->workloads[w].what);
		fprintf(f, ", \"timed\": %s}", run->workloads[w].timed ? "true" : "false");
	}
	fprintf(f, "\n  ],\n  \"results\": [");
	bool first = true;
	for (int w = 0; w < run->nworkloads; w++) {
		for (int a = 0; a < run->nallocs; a++) {
			const struct cell *c = &run->cells[w][a];
			bool t = has_time(c), ok = c->ran && !c->failed;

			if (!c->ran)
				continue;
			fprintf(f, "%s\n    {\"workload\": ", first ? "" : ",");
			first = false;
			json_string(f, run->workloads[w].name);
			fprintf(f, ", \"allocator\": ");
			json_string(f, run->allocs[a].name);
			fprintf(f, ", \"ns_per_op\": ");
			json_number(f, c->median, t, "%.2f");
			fprintf(f, ", \"mops_per_s\": ");
			json_number(f, t ? 1000.0 / c->median : 0, t, "%.2f");
			fprintf(f, ", \"spread_pct\": ");
			json_number(f, c->iqr_pct, t, "%.1f");
			fprintf(f, ", \"samples\": %d, \"clean_samples\": %d, \"vs_glibc\": ", c->nsamples, clean_samples(c));
			json_number(f, vs_glibc(run, w, a), vs_glibc(run, w, a) > 0, "%.2f");
			fprintf(f, ", \"peak_rss_bytes\": ");
			json_number(f, c->peak_rss, ok, "%.0f");
			fprintf(f, ", \"held_bytes\": ");
			json_number(f, c->held, ok, "%.0f");
			fprintf(f, ", \"live_bytes\": ");
			json_number(f, c->live, ok, "%.0f");
			fprintf(f, ", \"held_per_live\": ");
			json_number(f, held_per_live(c), held_per_live(c) > 0, "%.3f");
			fprintf(f, ", \"slabs\": ");
			json_number(f, c->slabs, ok && c->slabs >= 0, "%.0f");
			fprintf(f, ", \"pages\": ");
			json_number(f, c->pages, ok && c->pages >= 0, "%.0f");
			fprintf(f, ", \"error\": ");
			if (c->failed)
				json_string(f, c->error);
			else
				fputs("null", f);
			fprintf(f, ", \"memory_series\": [");
			for (int i = 0; i < c->npoints; i++)
				fprintf(f, "%s[%.3f, %.0f, %.0f]", i ? ", " : "", c->points[i].t_ms, c->points[i].rss,
					c->points[i].live);
			fprintf(f, "]}");
		}
	}
	compute_targets(run, &ts);
	fprintf(f, "\n  ],\n  \"targets\": [");
	for (int i = 0; i < ts.n && !run->opt.replay; i++) {
		fprintf(f, "%s\n    {\"id\": ", i ? "," : "");
		json_string(f, ts.t[i].id);
		fprintf(f, ", \"label\": ");
		json_string(f, ts.t[i].label);
		fprintf(f, ", \"allocator\": ");
		json_string(f, ts.t[i].alloc);
		fprintf(f, ", \"verdict\": \"%s\", \"worst_ratio\": ", state_word(ts.t[i].state));
		json_number(f, ts.t[i].ratio, ts.t[i].state != T_NOT_MEASURED, "%.3f");
		fprintf(f, ", \"limit\": %.2f, \"detail\": ", ts.t[i].limit);
		json_string(f, ts.t[i].detail);
		fputc('}', f);
	}
	fprintf(f, "\n  ]\n}\n");
	return fclose(f) != 0;
}

/* --- HTML and SVG --------------------------------------------------------------------- */

static const char *const palette[] = { "#555555", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
				       "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22" };

static const char *color_of(int a)
{
	return palette[a % (int)(sizeof(palette) / sizeof(palette[0]))];
}

static void html_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '"')
			fputs("&quot;", f);
		else
			fputc(*s, f);
	}
}

static void svg_legend(FILE *f, const struct run *run, double x, double y)
{
	for (int a = 0; a < run->nallocs; a++) {
		fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/>", x + a * 84.0, y,
			color_of(a));
		fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">", x + a * 84.0 + 16, y + 11);
		html_text(f, run->allocs[a].name);
		fputs("</text>", f);
	}
	fputc('\n', f);
}

/* Horizontal bars per workload, one per allocator, on a log2 axis of speed
 * relative to glibc (right of the 1x line: faster than glibc). */
static void chart_speed(FILE *f, const struct run *run, bool (*pick)(const struct workload *))
{
	int rows = 0;
	double bar = 9, label_w = 170, plot_w = 560, y;
	const double lo = -5, hi = 5; /* log2 range: 1/32x .. 32x */

	for (int w = 0; w < run->nworkloads; w++)
		rows += pick(&run->workloads[w]) ? run->nallocs : 0;
	int groups = 0;
	for (int w = 0; w < run->nworkloads; w++)
		groups += pick(&run->workloads[w]);
	double height = 74 + rows * bar + groups * 8;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\" font-family=\"sans-serif\" style=\"background:#fff\">\n",
		label_w + plot_w + 80, height);
	svg_legend(f, run, 10, 6);
	double x0 = label_w + plot_w * (0 - lo) / (hi - lo);
	for (int k = (int)lo; k <= (int)hi; k++) {
		double x = label_w + plot_w * (k - lo) / (hi - lo);

		fprintf(f, "<line x1=\"%.1f\" y1=\"28\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\"/>", x, x, height - 28,
			k == 0 ? "#000" : "#ddd");
		if (k < 0)
			fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">1/%gx</text>",
				x, height - 16, pow(2, -k));
		else
			fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">%gx</text>", x,
				height - 16, pow(2, k));
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">speed relative to glibc "
		   "(glibc's time / this allocator's time): right is faster</text>\n",
		x0, height - 3);
	y = 32;
	for (int w = 0; w < run->nworkloads; w++) {
		if (!pick(&run->workloads[w]))
			continue;
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", label_w - 6,
			y + bar * run->nallocs / 2 + 4);
		html_text(f, run->workloads[w].name);
		fputs("</text>\n", f);
		for (int a = 0; a < run->nallocs; a++, y += bar) {
			double r = vs_glibc(run, w, a);

			if (r <= 0)
				continue;
			double v = log2(1.0 / r);
			v = v < lo ? lo : v > hi ? hi : v;
			double x = label_w + plot_w * (v - lo) / (hi - lo);
			fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
				   "<title>%s %s: %.2f ns/op, %.2fx glibc's time</title></rect>\n",
				BENCH_MIN(x, x0), y, fabs(x - x0) + 0.5, bar - 1, color_of(a), run->workloads[w].name,
				run->allocs[a].name, run->cells[w][a].median, r);
		}
		y += 8;
	}
	fputs("</svg>\n", f);
}

/* Lines: one per allocator, x from xs[], y from the cells of the given
 * workloads (ns/op, or throughput when mops). */
static void chart_lines(FILE *f, const struct run *run, const int *wl, const double *xs, int n, bool logx,
			bool mops, const char *xlabel, const char *ylabel)
{
	double W = 720, H = 300, L = 60, B = 40, T = 30, R = 20, ymax = 0;
	double xmin = logx ? log10(xs[0]) : xs[0], xmax = logx ? log10(xs[n - 1]) : xs[n - 1];

	if (xmax <= xmin)
		xmax = xmin + 1;
	for (int i = 0; i < n; i++)
		for (int a = 0; a < run->nallocs; a++)
			if (has_time(&run->cells[wl[i]][a]))
				ymax = BENCH_MAX(ymax, mops ? 1000.0 / run->cells[wl[i]][a].median : run->cells[wl[i]][a].median);
	if (ymax <= 0)
		ymax = 1;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\" font-family=\"sans-serif\" style=\"background:#fff\">\n", W,
		H + 20);
	svg_legend(f, run, 10, 4);
	fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#000\"/>", L, H - B, W - R, H - B);
	fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#000\"/>\n", L, T, L, H - B);
	for (int k = 0; k <= 4; k++) {
		double y = H - B - (H - B - T) * k / 4;

		fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\">%.3g</text>", L - 4, y + 3,
			ymax * k / 4);
	}
	for (int i = 0; i < n; i++) {
		double x = L + (W - L - R) * ((logx ? log10(xs[i]) : xs[i]) - xmin) / (xmax - xmin);

		if (xs[i] >= 1e6)
			fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">%gM</text>", x,
				H - B + 14, xs[i] / 1e6);
		else if (xs[i] >= 1e3)
			fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">%gk</text>", x,
				H - B + 14, xs[i] / 1e3);
		else
			fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">%g</text>", x,
				H - B + 14, xs[i]);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">", (L + W - R) / 2, H - 8);
	html_text(f, xlabel);
	fprintf(f, "</text><text x=\"12\" y=\"%.0f\" font-size=\"11\" transform=\"rotate(-90 12 %.0f)\" "
		   "text-anchor=\"middle\">",
		(T + H - B) / 2, (T + H - B) / 2);
	html_text(f, ylabel);
	fputs("</text>\n", f);
	for (int a = 0; a < run->nallocs; a++) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color_of(a));
		for (int i = 0; i < n; i++) {
			const struct cell *c = &run->cells[wl[i]][a];
			double x, y, v;

			if (!has_time(c))
				continue;
			v = mops ? 1000.0 / c->median : c->median;
			x = L + (W - L - R) * ((logx ? log10(xs[i]) : xs[i]) - xmin) / (xmax - xmin);
			y = H - B - (H - B - T) * v / ymax;
			fprintf(f, "%.1f,%.1f ", x, y);
		}
		fputs("\"/>\n", f);
	}
	fputs("</svg>\n", f);
}

/* Memory over time: resident growth per allocator against the sample index
 * (every allocator ran the same operations, sampled at the same counts),
 * with the live bytes dashed. */
static void chart_memory(FILE *f, const struct run *run, int w)
{
	double W = 720, H = 300, L = 60, B = 40, T = 30, R = 20, ymax = 0;
	int npoints = 0, live_from = -1;

	for (int a = 0; a < run->nallocs; a++) {
		const struct cell *c = &run->cells[w][a];

		npoints = BENCH_MAX(npoints, c->npoints);
		for (int i = 0; i < c->npoints; i++)
			ymax = BENCH_MAX(ymax, BENCH_MAX(c->points[i].rss, c->points[i].live));
		if (c->npoints && live_from < 0)
			live_from = a;
	}
	ymax = ymax > 0 ? ymax / 1048576.0 : 1;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\" font-family=\"sans-serif\" style=\"background:#fff\">\n", W,
		H + 20);
	svg_legend(f, run, 10, 4);
	fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#000\"/>", L, H - B, W - R, H - B);
	fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#000\"/>\n", L, T, L, H - B);
	for (int k = 0; k <= 4; k++)
		fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\">%.0f</text>", L - 4,
			H - B - (H - B - T) * k / 4 + 3, ymax * k / 4);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">progress through the "
		   "workload (the same operations for every allocator)</text>",
		(L + W - R) / 2, H - 8);
	fprintf(f, "<text x=\"12\" y=\"%.0f\" font-size=\"11\" transform=\"rotate(-90 12 %.0f)\" "
		   "text-anchor=\"middle\">MiB resident (dashed: live)</text>\n",
		(T + H - B) / 2, (T + H - B) / 2);
	for (int a = -1; a < run->nallocs; a++) {
		const struct cell *c = &run->cells[w][a < 0 ? (live_from < 0 ? 0 : live_from) : a];

		if (a < 0 && live_from < 0)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", a < 0 ? "#000" : color_of(a),
			a < 0 ? "1" : "2", a < 0 ? " stroke-dasharray=\"5,4\"" : "");
		for (int i = 0; i < c->npoints; i++) {
			double x = L + (W - L - R) * i / (npoints > 1 ? npoints - 1 : 1);
			double v = (a < 0 ? c->points[i].live : c->points[i].rss) / 1048576.0;

			fprintf(f, "%.1f,%.1f ", x, H - B - (H - B - T) * v / ymax);
		}
		fputs("\"/>\n", f);
	}
	fputs("</svg>\n", f);
}

/* Grouped vertical bars of held/live for the memory workloads. */
static void chart_footprint(FILE *f, const struct run *run, const int *wl, int n)
{
	double W = 720, H = 300, L = 60, B = 40, T = 30, ymax = 1.0;
	double group = (W - L - 20) / (n ? n : 1), bw = group * 0.8 / run->nallocs;

	for (int i = 0; i < n; i++)
		for (int a = 0; a < run->nallocs; a++)
			ymax = BENCH_MAX(ymax, held_per_live(&run->cells[wl[i]][a]));
	ymax = ceil(ymax * 2) / 2;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\" font-family=\"sans-serif\" style=\"background:#fff\">\n", W,
		H + 20);
	svg_legend(f, run, 10, 4);
	for (double k = 0; k <= ymax + 1e-9; k += 0.5) {
		double y = H - B - (H - B - T) * k / ymax;

		fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\"/>", L, y, W - 20, y,
			k == 1.0 ? "#000" : "#ddd");
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.1fx</text>", L - 4, y + 3, k);
	}
	fprintf(f, "<text x=\"12\" y=\"%.0f\" font-size=\"11\" transform=\"rotate(-90 12 %.0f)\" "
		   "text-anchor=\"middle\">resident / live bytes</text>\n",
		(T + H - B) / 2, (T + H - B) / 2);
	for (int i = 0; i < n; i++) {
		double gx = L + group * i + group * 0.1;

		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">", gx + group * 0.4,
			H - B + 14);
		html_text(f, run->workloads[wl[i]].name);
		fputs("</text>\n", f);
		for (int a = 0; a < run->nallocs; a++) {
			double v = held_per_live(&run->cells[wl[i]][a]), h = (H - B - T) * v / ymax;

			if (v <= 0)
				continue;
			fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s %s: "
				   "%.3fx</title></rect>\n",
				gx + a * bw, H - B - h, bw - 1, h, color_of(a), run->workloads[wl[i]].name,
				run->allocs[a].name, v);
		}
	}
	fputs("</svg>\n", f);
}

/* Each target's worst ratio over its limit: the 1.0 line is the limit. */
static void chart_targets(FILE *f, const struct targets *ts)
{
	double label_w = 470, plot_w = 360, bar = 14, H = 40 + ts->n * (bar + 3), xmax = 2.0;

	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\" font-family=\"sans-serif\" style=\"background:#fff\">\n",
		label_w + plot_w + 90, H);
	for (double k = 0; k <= xmax + 1e-9; k += 0.5) {
		double x = label_w + plot_w * k / xmax;

		fprintf(f, "<line x1=\"%.1f\" y1=\"16\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\"/>", x, x, H - 16,
			k == 1.0 ? "#000" : "#ddd");
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">%.1f</text>", x, H - 4, k);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"12\" font-size=\"11\">measured / limit (left of the black line: met)</text>\n",
		label_w);
	for (int i = 0; i < ts->n; i++) {
		const struct target *t = &ts->t[i];
		double y = 20 + i * (bar + 3), v = t->limit > 0 ? t->ratio / t->limit : 0;

		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s %s: ", label_w - 6,
			y + bar - 3, t->id, t->alloc);
		html_text(f, t->label);
		fputs("</text>", f);
		if (t->state == T_NOT_MEASURED) {
			fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\">not measured</text>\n", label_w + 4,
				y + bar - 3);
			continue;
		}
		fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\"><title>%s</title></rect>\n",
			label_w, y, plot_w * BENCH_MIN(v, xmax) / xmax, bar, t->state == T_MET ? "#2ca02c" : "#d62728",
			t->detail);
	}
	fputs("</svg>\n", f);
}

static bool pick_throughput(const struct workload *w)
{
	return w->timed && strcmp(w->section, "live-set scaling") && strcmp(w->section, "thread scaling");
}

static void html_table(FILE *f, const struct run *run, const char *section)
{
	fputs("<table><tr><th>workload</th><th>allocator</th><th>ns/op</th><th>Mops/s</th><th>spread</th>"
	      "<th>vs glibc</th><th>peak RSS MiB</th><th>held MiB</th><th>held/live</th><th>slabs</th><th>pages</th></tr>\n",
	      f);
	for (int w = 0; w < run->nworkloads; w++) {
		if (section && strcmp(run->workloads[w].section, section))
			continue;
		for (int a = 0; a < run->nallocs; a++) {
			const struct cell *c = &run->cells[w][a];
			bool t = has_time(c), ok = c->ran && !c->failed;

			if (!c->ran)
				continue;
			fputs("<tr><td>", f);
			html_text(f, run->workloads[w].name);
			fputs("</td><td>", f);
			html_text(f, run->allocs[a].name);
			fputs("</td>", f);
			if (t)
				fprintf(f, "<td>%.2f</td><td>%.2f</td><td>%.1f%%</td>", c->median, 1000.0 / c->median, c->iqr_pct);
			else
				fputs("<td>-</td><td>-</td><td>-</td>", f);
			if (vs_glibc(run, w, a) > 0)
				fprintf(f, "<td>%.2fx</td>", vs_glibc(run, w, a));
			else
				fputs("<td>-</td>", f);
			if (ok)
				fprintf(f, "<td>%.1f</td><td>%.1f</td>", c->peak_rss / 1048576.0, c->held / 1048576.0);
			else
				fputs("<td>-</td><td>-</td>", f);
			if (held_per_live(c) > 0)
				fprintf(f, "<td>%.3f</td>", held_per_live(c));
			else
				fputs("<td>-</td>", f);
			if (ok && c->slabs >= 0)
				fprintf(f, "<td>%.0f</td><td>%.0f</td>", c->slabs, c->pages);
			else
				fputs("<td>-</td><td>-</td>", f);
			if (c->failed) {
				fputs("<td class=\"bad\">", f);
				html_text(f, c->error);
				fputs("</td>", f);
			}
			fputs("</tr>\n", f);
		}
	}
	fputs("</table>\n", f);
}

/* A chart is drawn into memory, then written into the page and, with
 * --charts DIR, to DIR/<id>.svg as well (for docs). */
static FILE *chart_open(char **buf, size_t *len)
{
	FILE *m = open_memstream(buf, len);

	if (!m)
		bench_die("open_memstream failed");
	return m;
}

static int chart_close(FILE *m, char **buf, FILE *page, const struct run *run, const char *id)
{
	int bad = 0;

	fclose(m);
	fputs(*buf, page);
	if (run->opt.charts_dir) {
		char path[4096];
		FILE *svg;

		snprintf(path, sizeof(path), "%s/%s.svg", run->opt.charts_dir, id);
		svg = fopen(path, "w");
		if (!svg) {
			perror(path);
			bad = 1;
		} else {
			fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", svg);
			/* a standalone file needs a background and a font */
			fputs(*buf, svg);
			bad |= fclose(svg) != 0;
		}
	}
	free(*buf);
	*buf = NULL;
	return bad;
}

static void section_begin(FILE *f, const char *id, const char *title, const char *text)
{
	fprintf(f, "<section id=\"%s\">\n<h2>", id);
	html_text(f, title);
	fputs("</h2>\n<p>", f);
	html_text(f, text);
	fputs("</p>\n", f);
}

/* The end of a section with a chart: the chart (m, also saved as
 * <charts_dir>/<chart_id>.svg), the table of the workloads of
 * table_section when with_table (all of them when table_section is NULL),
 * the closing tag.  Nonzero when the SVG could not be written. */
static int section_end(FILE *m, char **buf, FILE *f, const struct run *run, const char *chart_id, bool with_table,
		       const char *table_section)
{
	int bad = chart_close(m, buf, f, run, chart_id);

	if (with_table)
		html_table(f, run, table_section);
	fputs("</section>\n", f);
	return bad;
}

int report_html(const struct run *run, const char *path)
{
	FILE *f = fopen(path, "w");
	char machine[512], date[64];
	time_t now = time(NULL);
	struct targets ts;
	int wl[BENCH_MAX_WORKLOADS], n, bad = 0;
	double xs[BENCH_MAX_WORKLOADS];
	char *buf = NULL;
	size_t len = 0;
	FILE *m;

	if (!f) {
		perror(path);
		return 1;
	}
	bench_machine(machine, sizeof(machine));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>slabkit-bench report</title>\n"
	      "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
	      "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
	      "td:first-child,td:nth-child(2){text-align:left}.bad{color:#b00}svg{display:block;margin:0.5em 0}"
	      "code{background:#f4f4f4}</style>\n</head>\n<body>\n<h1>slabkit-bench report</h1>\n<p>",
	      f);
	fprintf(f, "Finished %s after %.0f s. Machine: ", date, run->elapsed_s);
	html_text(f, machine);
	fputs(".<br>Command: <code>", f);
	html_text(f, run->command);
	fprintf(f, "</code><br>Each cell ran in a fresh process; figures are medians of %d round(s) x %d "
		   "repetition(s) of about %.0f ms; spread is the interquartile range over the median. "
		   "slabkit runs through libslabkit.so; peers through LD_PRELOAD.</p>\n",
		run->opt.rounds, run->opt.reps, run->opt.rep_ms);

	compute_targets(run, &ts);
	if (!run->opt.replay && ts.n) {
		section_begin(f, "targets", "Targets",
			      "Issue 8's targets, each computed from this run: the worst measured ratio over its limit.");
		m = chart_open(&buf, &len);
		chart_targets(m, &ts);
		bad |= chart_close(m, &buf, f, run, "targets");
		fputs("<table><tr><th>id</th><th>target</th><th>allocator</th><th>verdict</th><th>measured</th></tr>\n", f);
		for (int i = 0; i < ts.n; i++) {
			fprintf(f, "<tr><td>%s</td><td>", ts.t[i].id);
			html_text(f, ts.t[i].label);
			fprintf(f, "</td><td>%s</td><td%s>%s</td><td>", ts.t[i].alloc,
				ts.t[i].state == T_MISSED ? " class=\"bad\"" : "", state_word(ts.t[i].state));
			html_text(f, ts.t[i].detail);
			fputs("</td></tr>\n", f);
		}
		fputs("</table>\n</section>\n", f);
	}

	n = 0;
	for (int w = 0; w < run->nworkloads; w++)
		n += pick_throughput(&run->workloads[w]);
	if (n) {
		section_begin(f, "throughput", run->opt.replay ? "Replay throughput" : "Throughput per backend per workload",
			      "Speed relative to glibc in the same run, log scale: a bar right of the black line is "
			      "faster than glibc, left is slower. Hover a bar for ns per operation.");
		m = chart_open(&buf, &len);
		chart_speed(m, run, pick_throughput);
		bad |= section_end(m, &buf, f, run, run->opt.replay ? "replay-throughput" : "throughput", true, NULL);
	}

	for (int w = 0; w < run->nworkloads; w++) {
		bool any = false;

		for (int a = 0; a < run->nallocs; a++)
			any |= run->cells[w][a].npoints > 1;
		if (!any)
			continue;
		section_begin(f, run->workloads[w].kind == WK_REPLAY ? "replay-memory" : "memory",
			      run->workloads[w].kind == WK_REPLAY ? "Replay: memory over time" : "Memory over time",
			      run->workloads[w].what);
		m = chart_open(&buf, &len);
		chart_memory(m, run, w);
		bad |= section_end(m, &buf, f, run, run->workloads[w].kind == WK_REPLAY ? "replay-memory" : "memory",
				   false, NULL);
	}

	n = 0;
	for (int w = 0; w < run->nworkloads; w++)
		if (run->workloads[w].kind == WK_FOOTPRINT || run->workloads[w].kind == WK_FRAGMENT)
			wl[n++] = w;
	if (n) {
		section_begin(f, "fragmentation", "Fragmentation and footprint",
			      "Resident memory growth (from before the allocator was set up) over the bytes the "
			      "program holds, everything still live; 1.0x would be perfect.");
		m = chart_open(&buf, &len);
		chart_footprint(m, run, wl, n);
		bad |= section_end(m, &buf, f, run, "fragmentation", true, "memory");
	}

	n = 0;
	for (int w = 0; w < run->nworkloads; w++)
		if (run->workloads[w].kind == WK_THREADS)
			xs[n] = run->workloads[w].threads, wl[n++] = w;
	if (n) {
		section_begin(f, "threads", "Thread scaling",
			      "Every thread does the 64 B pair on one shared cache (glibc: malloc(64)); aggregate "
			      "millions of pairs per second.");
		m = chart_open(&buf, &len);
		chart_lines(m, run, wl, xs, n, false, true, "threads", "Mops/s (all threads)");
		bad |= section_end(m, &buf, f, run, "threads", true, "thread scaling");
	}

	n = 0;
	for (int w = 0; w < run->nworkloads; w++)
		if (!strcmp(run->workloads[w].section, "live-set scaling"))
			xs[n] = (double)run->workloads[w].live, wl[n++] = w;
	if (n) {
		section_begin(f, "live-set", "Live-set scaling",
			      "The random-window pair (a random live object freed, a new one allocated) as the live "
			      "set grows: ns per pair, lower is better.");
		m = chart_open(&buf, &len);
		chart_lines(m, run, wl, xs, n, true, false, "live objects (64 B each)", "ns per pair");
		bad |= section_end(m, &buf, f, run, "live-set", true, "live-set scaling");
	}
	fputs("</body>\n</html>\n", f);
	return (fclose(f) != 0) | bad;
}
