/*
 * slabkit_bench: compare every compiled slabkit backend with glibc malloc,
 * in one run, on the same workloads.
 *
 *   slabkit_bench [--quick] [--backend a,b] [--workload w1,w2] [--csv]
 *                 [--rounds N] [--reps N] [--rep-ms MS] [--list]
 *
 * Method (docs/benchmarks.md explains how to read the output):
 * - Timing workloads run in this process.  The allocators are measured one
 *   after another, glibc first, each slabkit backend between its own
 *   slabkit_init() (tick thread off) and slabkit_fini().  That sequence is
 *   repeated for several rounds so a change in machine load over the run
 *   lands on every allocator rather than on one.
 * - In the first round each (workload, allocator) is calibrated: the pair
 *   count doubles until a run takes a few ms, then is scaled so that one
 *   repetition takes --rep-ms.  Every round starts with a warm-up run.
 * - The figure is the median over the repetitions of ns per alloc+free
 *   pair (CLOCK_MONOTONIC), with the interquartile range as a noise gauge.
 *   The machine is shared: a repetition during which a measuring thread
 *   was kept off its CPU (bench_lost_share) is rerun, and left out of the
 *   median when enough clean ones exist; the table says how many were.
 * - Footprint runs once per allocator, each in a fresh child process
 *   (tools/bench_footprint.h).
 * - The target verdicts are computed from the figures of this run only.
 *
 * Exit status: 0 when every measurement ran (whether or not targets were
 * met), 1 when one failed, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <gnu/libc-version.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "bench_footprint.h"
#include "bench_loops.h"
#include "bench_threads.h"
#include "bench_util.h"

#define MAX_TARGETS 8   /* glibc + up to the four backends, with room */
#define MAX_SAMPLES 128
#define MIXED_SEED 0x5eed5eedULL
#define FOOTPRINT_SEED 0xf00d1234ULL

enum timed_workload {
	W_CACHE64,
	W_CACHE64_BATCH,
	W_CACHE256,
	W_CACHE256_BATCH,
	W_KMALLOC_MIXED,
	W_KMALLOC_MIXED_BATCH,
	W_UMA64,
	W_UMA64_BATCH,
	W_UMA256,
	W_THREADS_LOCAL,
	W_THREADS_REMOTE,
	W_TIMED_COUNT
};

static const struct workload_info {
	const char *name;
	const char *what;     /* what slabkit does */
	const char *baseline; /* what glibc does */
} workload_info[W_TIMED_COUNT] = {
	[W_CACHE64] = { "cache64", "kmem_cache_alloc+free 64 B, one live object", "malloc(64)+free" },
	[W_CACHE64_BATCH] = { "cache64-batch", "kmem_cache 64 B, alloc 64 then free 64",
			      "malloc(64) x64 then free x64" },
	[W_CACHE256] = { "cache256", "kmem_cache_alloc+free 256 B, one live object", "malloc(256)+free" },
	[W_CACHE256_BATCH] = { "cache256-batch", "kmem_cache 256 B, alloc 64 then free 64",
			       "malloc(256) x64 then free x64" },
	[W_KMALLOC_MIXED] = { "kmalloc-mixed", "kmalloc+kfree, sizes 8..4096 from a fixed random table",
			      "malloc+free, same sizes" },
	[W_KMALLOC_MIXED_BATCH] = { "kmalloc-mixed-batch", "kmalloc 8..4096, alloc 64 then free 64",
				    "malloc, same sizes and pattern" },
	[W_UMA64] = { "uma64", "uma_zalloc+uma_zfree on a 64 B zone", "malloc(64)+free" },
	[W_UMA64_BATCH] = { "uma64-batch", "uma_zalloc 64 B zone, alloc 64 then free 64",
			    "malloc(64) x64 then free x64" },
	[W_UMA256] = { "uma256", "uma_zalloc+uma_zfree on a 256 B zone", "malloc(256)+free" },
	[W_THREADS_LOCAL] = { "threads-local", "2 threads, kmem_cache 64 B pair each; ns/pair/thread",
			      "2 threads, malloc(64)+free each" },
	[W_THREADS_REMOTE] = { "threads-remote", "producer allocs 64 B, consumer frees (remote free); wall ns/pair",
			       "same with malloc/free" },
};
#define FOOTPRINT_NAME "footprint"

struct bench_options {
	bool quick, csv, list;
	const char *backends;   /* comma list; NULL: every compiled backend */
	const char *workloads;  /* comma list; NULL: all */
	int rounds, reps_per_round;
	int max_retries;        /* extra attempts for a disturbed repetition */
	double rep_ms, calib_ms;
	uint32_t footprint_objects;
	unsigned footprint_timeout_s;
};

struct timing_cell {
	uint64_t pairs_per_rep; /* 0 until calibrated */
	int nsamples;
	double samples[MAX_SAMPLES]; /* ns per pair */
	bool disturbed[MAX_SAMPLES]; /* still disturbed after the retries */
	int retried;                 /* repetitions run again because they were disturbed */
	/* Filled by finish_cell: */
	int nused;                   /* samples the median is taken over */
	double median, iqr_pct;
};

struct target_state {
	struct bench_target t;
	bool failed;           /* slabkit_init or cache creation failed */
	bool footprint_ok;
	struct footprint_result footprint;
};

/* Everything one run measures. */
struct bench_run {
	struct bench_options opt;
	bool run_workload[W_TIMED_COUNT];
	bool run_footprint;
	int ntargets;                        /* [0] is glibc */
	struct target_state targets[MAX_TARGETS];
	struct timing_cell cells[W_TIMED_COUNT][MAX_TARGETS];
	uint16_t mixed_sizes[BENCH_MIXED_SIZES];
	char percpu_mode[16];
	char backend_names[128];             /* storage for targets[].t.name */
	bool errors;
	bool progress;                       /* stderr is a terminal */
};

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: slabkit_bench [options]\n"
		"  --quick          few short repetitions, small footprint (CI smoke run, < 20 s)\n"
		"  --backend LIST   only these backends (comma-separated; glibc is always the baseline)\n"
		"  --workload LIST  only these workloads (comma-separated names, or prefixes such as\n"
		"                   cache, kmalloc, uma, threads; footprint; --list shows them)\n"
		"  --csv            machine-readable output\n"
		"  --rounds N       rounds over all allocators (default 5, quick 1)\n"
		"  --reps N         repetitions per round (default 3, quick 3)\n"
		"  --rep-ms MS      target duration of one repetition (default 20, quick 4)\n"
		"  --list           list workloads and compiled backends, then exit\n");
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static int parse_options(int argc, char **argv, struct bench_options *o)
{
	long rounds = -1, reps = -1, rep_ms = -1;

	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--csv")) {
			o->csv = true;
		} else if (!strcmp(a, "--list")) {
			o->list = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (val && !strcmp(a, "--backend")) {
			o->backends = val, i++;
		} else if (val && !strcmp(a, "--workload")) {
			o->workloads = val, i++;
		} else if (val && !strcmp(a, "--rounds")) {
			if (!parse_int(val, 1, 20, &rounds))
				goto bad_value;
			i++;
		} else if (val && !strcmp(a, "--reps")) {
			if (!parse_int(val, 1, 20, &reps))
				goto bad_value;
			i++;
		} else if (val && !strcmp(a, "--rep-ms")) {
			if (!parse_int(val, 1, 1000, &rep_ms))
				goto bad_value;
			i++;
		} else {
			fprintf(stderr, "slabkit_bench: unknown option or missing value: %s\n", a);
			usage(stderr);
			return -1;
		}
		continue;
bad_value:
		fprintf(stderr, "slabkit_bench: bad value for %s: %s\n", a, val);
		return -1;
	}
	o->rounds = rounds > 0 ? (int)rounds : (o->quick ? 1 : 5);
	o->reps_per_round = reps > 0 ? (int)reps : 3;
	o->rep_ms = rep_ms > 0 ? (double)rep_ms : (o->quick ? 4.0 : 20.0);
	o->calib_ms = o->quick ? 1.0 : 3.0;
	o->max_retries = o->quick ? 1 : 3;
	o->footprint_objects = o->quick ? 100000 : 300000;
	o->footprint_timeout_s = o->quick ? 15 : 120;
	if (o->rounds * o->reps_per_round > MAX_SAMPLES) {
		fprintf(stderr, "slabkit_bench: --rounds x --reps must be at most %d\n", MAX_SAMPLES);
		return -1;
	}
	return 0;
}

/*
 * Sets selected[i] for every names[i] that the comma-separated list picks:
 * an item picks the name it equals, or else (allow_prefix) every name that
 * begins with it ("threads" picks threads-local and threads-remote,
 * "cache64" only cache64); "all" picks everything.  Returns -1, with a
 * message, for an item that picks nothing.
 */
static int select_names(const char *list, const char *const *names, int count, bool allow_prefix,
			bool *selected)
{
	char item[64];

	while (*list) {
		size_t len = strcspn(list, ",");
		bool exact = false, picked = false;

		if (len == 0 || len >= sizeof(item)) {
			fprintf(stderr, "slabkit_bench: bad list '%s'\n", list);
			return -1;
		}
		memcpy(item, list, len);
		item[len] = '\0';
		for (int i = 0; i < count; i++)
			exact |= !strcmp(item, names[i]);
		for (int i = 0; i < count; i++) {
			bool pick = !strcmp(item, "all") || !strcmp(item, names[i]) ||
				    (allow_prefix && !exact && !strncmp(item, names[i], len));

			selected[i] |= pick;
			picked |= pick;
		}
		if (!picked) {
			fprintf(stderr, "slabkit_bench: unknown name '%s'\n", item);
			return -1;
		}
		list += len + (list[len] == ',');
	}
	return 0;
}

static int select_workloads(struct bench_run *run)
{
	const char *names[W_TIMED_COUNT + 1];
	bool selected[W_TIMED_COUNT + 1] = { false };

	for (int w = 0; w < W_TIMED_COUNT; w++)
		names[w] = workload_info[w].name;
	names[W_TIMED_COUNT] = FOOTPRINT_NAME;
	if (select_names(run->opt.workloads ? run->opt.workloads : "all", names, W_TIMED_COUNT + 1, true,
			 selected) != 0)
		return -1;
	for (int w = 0; w < W_TIMED_COUNT; w++)
		run->run_workload[w] = selected[w];
	run->run_footprint = selected[W_TIMED_COUNT];
	return 0;
}

/* glibc first (always: it is the baseline), then the chosen compiled
 * backends in the library's order. */
static int select_targets(struct bench_run *run)
{
	char *save = NULL;
	const char *names[MAX_TARGETS];
	bool selected[MAX_TARGETS] = { false };
	int ncompiled = 0;

	snprintf(run->backend_names, sizeof(run->backend_names), "%s", slabkit_backends_compiled());
	names[ncompiled++] = "glibc";
	for (char *b = strtok_r(run->backend_names, ",", &save); b && ncompiled < MAX_TARGETS;
	     b = strtok_r(NULL, ",", &save))
		names[ncompiled++] = b;
	if (select_names(run->opt.backends ? run->opt.backends : "all", names, ncompiled, false, selected) != 0)
		return -1;
	selected[0] = true;
	for (int i = 0; i < ncompiled; i++) {
		struct target_state *ts;

		if (!selected[i])
			continue;
		ts = &run->targets[run->ntargets++];
		ts->t.name = names[i];
		ts->t.is_glibc = i == 0;
	}
	return 0;
}

static int target_index(const struct bench_run *run, const char *name)
{
	for (int i = 0; i < run->ntargets; i++)
		if (!strcmp(run->targets[i].t.name, name))
			return i;
	return -1;
}

/* ---- timing ---------------------------------------------------------------- */

/* n pairs of single-threaded workload w on target t; the elapsed ns. */
static uint64_t run_single(const struct bench_run *run, enum timed_workload w, const struct bench_target *t,
			   uint64_t n)
{
	bool g = t->is_glibc;
	const uint16_t *sizes = run->mixed_sizes;

	switch (w) {
	case W_CACHE64:
		return g ? loop_malloc_fixed_single(64, n) : loop_kcache_single(t->cache64, n);
	case W_CACHE64_BATCH:
		return g ? loop_malloc_fixed_batch(64, n) : loop_kcache_batch(t->cache64, n);
	case W_CACHE256:
		return g ? loop_malloc_fixed_single(256, n) : loop_kcache_single(t->cache256, n);
	case W_CACHE256_BATCH:
		return g ? loop_malloc_fixed_batch(256, n) : loop_kcache_batch(t->cache256, n);
	case W_KMALLOC_MIXED:
		return g ? loop_malloc_mixed_single(sizes, n) : loop_kmalloc_mixed_single(sizes, n);
	case W_KMALLOC_MIXED_BATCH:
		return g ? loop_malloc_mixed_batch(sizes, n) : loop_kmalloc_mixed_batch(sizes, n);
	case W_UMA64:
		return g ? loop_malloc_fixed_single(64, n) : loop_uma_single(t->zone64, n);
	case W_UMA64_BATCH:
		return g ? loop_malloc_fixed_batch(64, n) : loop_uma_batch(t->zone64, n);
	case W_UMA256:
		return g ? loop_malloc_fixed_single(256, n) : loop_uma_single(t->zone256, n);
	case W_THREADS_LOCAL:
	case W_THREADS_REMOTE:
	case W_TIMED_COUNT:
		break;
	}
	bench_die("workload %d is not single-threaded", (int)w);
}

/* n pairs of workload w on target t; the elapsed ns (per thread for
 * threads-local).  *lost_share: the share of that time a measuring thread
 * was kept off its CPU (bench_lost_share; the worst thread). */
static uint64_t run_pairs(const struct bench_run *run, enum timed_workload w, const struct bench_target *t,
			  uint64_t n, double *lost_share)
{
	struct bench_sched_mark from, to;
	uint64_t took;

	if (w == W_THREADS_LOCAL)
		return bench_threads_local(t, n, lost_share);
	if (w == W_THREADS_REMOTE)
		return bench_threads_remote(t, n, lost_share);
	bench_sched_mark(&from);
	took = run_single(run, w, t, n);
	bench_sched_mark(&to);
	*lost_share = bench_lost_share(&from, &to);
	return took;
}

static uint64_t round_to_batch(double pairs)
{
	uint64_t n = (uint64_t)pairs;

	n = (n + BENCH_BATCH - 1) / BENCH_BATCH * BENCH_BATCH;
	return n ? n : BENCH_BATCH;
}

/* Pairs per repetition so that one takes about rep_ms.  The doubling runs
 * double as the warm-up. */
static uint64_t calibrate(const struct bench_run *run, enum timed_workload w, const struct bench_target *t)
{
	double calib_ns = run->opt.calib_ms * 1e6, rep_ns = run->opt.rep_ms * 1e6, lost;
	uint64_t n = 4 * BENCH_BATCH, took;

	for (;;) {
		took = run_pairs(run, w, t, n, &lost);
		if ((double)took >= calib_ns || n >= (UINT64_C(1) << 36))
			break;
		n *= 2;
	}
	return round_to_batch((double)n * rep_ns / (double)(took ? took : 1));
}

/*
 * One round of repetitions.  The machine is shared, so a repetition in
 * which a measuring thread was kept off its CPU for more than MAX_LOST_SHARE
 * of the time (bench_lost_share: another process or the hypervisor ran
 * instead) is run again, up to max_retries times; if it stays disturbed,
 * it is kept but marked, and finish_cell() leaves it out when enough clean
 * samples exist.
 */
#define MAX_LOST_SHARE 0.05
#define MIN_CLEAN_SAMPLES 3

static void measure_cell(struct bench_run *run, enum timed_workload w, int ti)
{
	struct timing_cell *cell = &run->cells[w][ti];
	const struct bench_target *t = &run->targets[ti].t;
	double lost;

	if (!cell->pairs_per_rep)
		cell->pairs_per_rep = calibrate(run, w, t);
	else
		run_pairs(run, w, t, round_to_batch((double)cell->pairs_per_rep / 4), &lost); /* warm-up */
	for (int r = 0; r < run->opt.reps_per_round && cell->nsamples < MAX_SAMPLES; r++) {
		uint64_t took;

		for (int attempt = 0;; attempt++) {
			took = run_pairs(run, w, t, cell->pairs_per_rep, &lost);
			if (lost <= MAX_LOST_SHARE || attempt == run->opt.max_retries)
				break;
			cell->retried++;
		}
		cell->disturbed[cell->nsamples] = lost > MAX_LOST_SHARE;
		cell->samples[cell->nsamples++] = (double)took / (double)cell->pairs_per_rep;
	}
}

/* Median and interquartile range over the clean samples, or over all of
 * them when fewer than MIN_CLEAN_SAMPLES are clean (the table says so). */
static void finish_cell(struct timing_cell *cell)
{
	double used[MAX_SAMPLES];
	int n = 0;

	for (int i = 0; i < cell->nsamples; i++)
		if (!cell->disturbed[i])
			used[n++] = cell->samples[i];
	if (n < MIN_CLEAN_SAMPLES) {
		n = cell->nsamples;
		memcpy(used, cell->samples, sizeof(double) * (size_t)n);
	}
	cell->nused = n;
	if (!n)
		return;
	cell->median = bench_median(used, n); /* sorts used[] */
	cell->iqr_pct = 100.0 * (used[(3 * n) / 4 < n ? (3 * n) / 4 : n - 1] - used[n / 4]) / cell->median;
}

static int cell_clean_samples(const struct timing_cell *cell)
{
	int clean = 0;

	for (int i = 0; i < cell->nsamples; i++)
		clean += !cell->disturbed[i];
	return clean;
}

static void target_close(struct target_state *ts)
{
	if (ts->t.is_glibc)
		return;
	if (ts->t.zone256)
		uma_zdestroy(ts->t.zone256);
	if (ts->t.zone64)
		uma_zdestroy(ts->t.zone64);
	if (ts->t.cache256)
		kmem_cache_destroy(ts->t.cache256);
	if (ts->t.cache64)
		kmem_cache_destroy(ts->t.cache64);
	ts->t.cache64 = ts->t.cache256 = NULL;
	ts->t.zone64 = ts->t.zone256 = NULL;
	slabkit_fini();
}

/* slabkit_init for t plus the caches and zones the workloads use; on
 * failure nothing is left open. */
static int target_open(struct bench_run *run, struct target_state *ts)
{
	struct slabkit_config cfg = { .backend = ts->t.name, .tick_ms = -1 };
	int rc;

	if (ts->t.is_glibc)
		return 0;
	rc = slabkit_init(&cfg);
	if (rc != 0) {
		fprintf(stderr, "slabkit_bench: slabkit_init(%s) failed: %s\n", ts->t.name, strerror(-rc));
		return -1;
	}
	snprintf(run->percpu_mode, sizeof(run->percpu_mode), "%s", slabkit_percpu_mode());
	ts->t.cache64 = kmem_cache_create("bench_obj64", 64, 0, 0, NULL);
	ts->t.cache256 = kmem_cache_create("bench_obj256", 256, 0, 0, NULL);
	ts->t.zone64 = uma_zcreate("bench_zone64", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	ts->t.zone256 = uma_zcreate("bench_zone256", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	if (!ts->t.cache64 || !ts->t.cache256 || !ts->t.zone64 || !ts->t.zone256) {
		fprintf(stderr, "slabkit_bench: %s: creating the benchmark caches failed\n", ts->t.name);
		target_close(ts);
		return -1;
	}
	return 0;
}

/* One overwritten status line on a terminal, nothing otherwise. */
__attribute__((format(printf, 2, 3))) static void progress(const struct bench_run *run, const char *fmt, ...)
{
	va_list ap;

	if (!run->progress)
		return;
	fputs("\r\033[K", stderr);
	if (!fmt)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void run_timing(struct bench_run *run)
{
	bool any = false;

	for (int w = 0; w < W_TIMED_COUNT; w++)
		any |= run->run_workload[w];
	if (!any)
		return;
	for (int round = 1; round <= run->opt.rounds; round++) {
		for (int ti = 0; ti < run->ntargets; ti++) {
			struct target_state *ts = &run->targets[ti];

			if (ts->failed)
				continue;
			if (target_open(run, ts) != 0) {
				ts->failed = true;
				run->errors = true;
				continue;
			}
			for (int w = 0; w < W_TIMED_COUNT; w++) {
				if (!run->run_workload[w])
					continue;
				progress(run, "measuring %s %s (round %d/%d)", ts->t.name, workload_info[w].name,
					 round, run->opt.rounds);
				measure_cell(run, (enum timed_workload)w, ti);
			}
			target_close(ts);
		}
	}
	progress(run, NULL);
	for (int w = 0; w < W_TIMED_COUNT; w++)
		for (int ti = 0; ti < run->ntargets; ti++)
			finish_cell(&run->cells[w][ti]);
}

/* Before any timing, so the parent has never initialised slabkit when it
 * forks and its heap is still small. */
static void run_footprints(struct bench_run *run)
{
	struct footprint_plan plan;

	if (!run->run_footprint)
		return;
	footprint_plan_make(&plan, run->opt.footprint_objects, FOOTPRINT_SEED);
	plan.timeout_s = run->opt.footprint_timeout_s;
	for (int ti = 0; ti < run->ntargets; ti++) {
		struct target_state *ts = &run->targets[ti];

		progress(run, "footprint %s", ts->t.name);
		ts->footprint_ok = footprint_measure(ts->t.name, &plan, &ts->footprint) == 0;
		if (!ts->footprint_ok) {
			fprintf(stderr, "slabkit_bench: footprint %s failed: %s\n", ts->t.name,
				ts->footprint.error);
			run->errors = true;
		} else if (!run->percpu_mode[0] && ts->footprint.percpu_mode[0]) {
			snprintf(run->percpu_mode, sizeof(run->percpu_mode), "%s", ts->footprint.percpu_mode);
		}
	}
	progress(run, NULL);
	footprint_plan_free(&plan);
}

/* ---- output ---------------------------------------------------------------- */

static double cell_ratio(const struct bench_run *run, int w, int ti, int base_ti)
{
	const struct timing_cell *c = &run->cells[w][ti], *base;

	if (base_ti < 0 || !c->nsamples)
		return 0;
	base = &run->cells[w][base_ti];
	return base->nsamples ? c->median / base->median : 0;
}

static double footprint_factor(const struct target_state *ts)
{
	const struct footprint_result *f = &ts->footprint;

	if (!ts->footprint_ok || !f->live_bytes)
		return 0;
	return ((double)f->rss_after - (double)f->rss_before) / (double)f->live_bytes;
}

static void print_ratio(char *buf, size_t size, double ratio, bool csv)
{
	if (ratio <= 0)
		snprintf(buf, size, csv ? "" : "-");
	else
		snprintf(buf, size, csv ? "%.3f" : "%.2fx", ratio);
}

static void print_header(const struct bench_run *run)
{
	char cpu[128], date[64];
	struct utsname uts;
	time_t now = time(NULL);
	const char *p = run->opt.csv ? "# " : "";

	bench_cpu_model(cpu, sizeof(cpu));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	if (uname(&uts) != 0)
		snprintf(uts.release, sizeof(uts.release), "unknown");
	printf("%sslabkit_bench, finished %s\n", p, date);
	printf("%sCPU: %s, %ld online CPUs, Linux %s\n", p, cpu, sysconf(_SC_NPROCESSORS_ONLN), uts.release);
	printf("%sbackends compiled: %s; per-CPU mode: %s\n", p, slabkit_backends_compiled(),
	       run->percpu_mode[0] ? run->percpu_mode : "n/a (no backend initialised)");
	printf("%smethod: median of %d x %d repetitions of ~%.0f ms (CLOCK_MONOTONIC), %s\n", p,
	       run->opt.rounds, run->opt.reps_per_round, run->opt.rep_ms,
	       run->opt.quick ? "quick mode" : "full mode");
	printf("%sglibc %s, in its multi-threaded mode (a thread was started before timing)\n", p,
	       gnu_get_libc_version());
	if (bench_threads_pinned())
		printf("%sthread workloads: pinned to CPUs %d and %d\n", p, bench_allowed_cpu(0), bench_allowed_cpu(1));
	else
		printf("%sthread workloads: NOT pinned (this process may use fewer than 2 CPUs)\n", p);
	if (!run->opt.csv)
		printf("\n");
	else
		printf("kind,workload,backend,value,unit,vs_glibc,vs_slub,detail\n");
}

static void print_timing(const struct bench_run *run)
{
	int slub = target_index(run, "slub");
	bool first = true;

	for (int w = 0; w < W_TIMED_COUNT; w++) {
		if (!run->run_workload[w])
			continue;
		if (!run->opt.csv) {
			if (first)
				printf("%-20s %-6s %9s %7s %9s %8s  %s\n", "workload", "alloc", "ns/pair", "IQR",
				       "vs glibc", "vs slub", "clean");
			printf("-- %s: %s (glibc: %s)\n", workload_info[w].name, workload_info[w].what,
			       workload_info[w].baseline);
			first = false;
		}
		for (int ti = 0; ti < run->ntargets; ti++) {
			const struct timing_cell *c = &run->cells[w][ti];
			char vs_glibc[16], vs_slub[16];

			if (!c->nsamples)
				continue;
			print_ratio(vs_glibc, sizeof(vs_glibc), cell_ratio(run, w, ti, 0), run->opt.csv);
			print_ratio(vs_slub, sizeof(vs_slub), cell_ratio(run, w, ti, slub), run->opt.csv);
			if (run->opt.csv)
				printf("time,%s,%s,%.2f,ns_per_pair,%s,%s,iqr_pct=%.1f;samples=%d;clean=%d;used=%d;"
				       "reruns=%d;pairs_per_rep=%llu\n",
				       workload_info[w].name, run->targets[ti].t.name, c->median, vs_glibc, vs_slub,
				       c->iqr_pct, c->nsamples, cell_clean_samples(c), c->nused, c->retried,
				       (unsigned long long)c->pairs_per_rep);
			else
				printf("%-20s %-6s %9.2f %6.1f%% %9s %8s  %2d/%d%s\n", workload_info[w].name,
				       run->targets[ti].t.name, c->median, c->iqr_pct, vs_glibc, vs_slub,
				       cell_clean_samples(c), c->nsamples,
				       cell_clean_samples(c) < MIN_CLEAN_SAMPLES ? "  (noisy: disturbed samples used)" : "");
		}
	}
	if (!first)
		printf("\n");
}

static void print_footprint(const struct bench_run *run)
{
	int slub = target_index(run, "slub");
	double glibc_factor = footprint_factor(&run->targets[0]);
	double slub_factor = slub >= 0 ? footprint_factor(&run->targets[slub]) : 0;

	if (!run->run_footprint)
		return;
	if (!run->opt.csv) {
		printf("-- %s: %u live kmalloc objects of 8..1024 B, a random half freed and reallocated;\n"
		       "   RSS growth / live bytes, each allocator in a fresh child (glibc: malloc)\n",
		       FOOTPRINT_NAME, run->opt.footprint_objects);
		printf("%-20s %-6s %9s %10s %8s %9s %8s %8s %8s\n", "workload", "alloc", "live MiB", "RSS+ MiB",
		       "RSS/live", "vs glibc", "vs slub", "init MiB", "time ms");
	}
	for (int ti = 0; ti < run->ntargets; ti++) {
		const struct target_state *ts = &run->targets[ti];
		const struct footprint_result *f = &ts->footprint;
		double factor = footprint_factor(ts);
		char vs_glibc[16], vs_slub[16];

		if (!ts->footprint_ok)
			continue;
		print_ratio(vs_glibc, sizeof(vs_glibc), glibc_factor > 0 ? factor / glibc_factor : 0, run->opt.csv);
		print_ratio(vs_slub, sizeof(vs_slub), slub_factor > 0 ? factor / slub_factor : 0, run->opt.csv);
		if (run->opt.csv)
			printf("footprint,%s,%s,%.4f,rss_per_live_byte,%s,%s,rss_growth=%llu;live=%llu;"
			       "init_rss=%lld;ms=%.1f\n",
			       FOOTPRINT_NAME, ts->t.name, factor, vs_glibc, vs_slub,
			       (unsigned long long)(f->rss_after - f->rss_before), (unsigned long long)f->live_bytes,
			       (long long)(f->rss_after_init - f->rss_before), (double)f->elapsed_ns / 1e6);
		else
			printf("%-20s %-6s %9.1f %10.1f %7.3fx %9s %8s %8.2f %8.1f\n", FOOTPRINT_NAME, ts->t.name,
			       (double)f->live_bytes / 1048576.0,
			       ((double)f->rss_after - (double)f->rss_before) / 1048576.0, factor, vs_glibc,
			       vs_slub, ((double)f->rss_after_init - (double)f->rss_before) / 1048576.0,
			       (double)f->elapsed_ns / 1e6);
	}
	if (!run->opt.csv)
		printf("\n");
}

/* One verdict line.  state: 1 met, 0 missed, -1 not measured, -2 no target. */
static void print_verdict(const struct bench_run *run, const char *id, const char *label, const char *detail,
			  int state)
{
	static const char *const words[] = { "no numeric target", "not measured", "target missed",
					     "target met" };
	const char *word = words[state + 2];

	if (run->opt.csv)
		printf("target,%s,,,,,,%s;%s\n", id, detail, word);
	else
		printf("  %-44s %-42s %s\n", label, detail, word);
}

/* Ratios num/den of timing cells, one per (workload pair); each part of
 * the detail is "<tag> <ratio>x".  Returns 1 if all <= limit, 0 if one is
 * above, -1 if none could be computed. */
static int ratio_check(const struct bench_run *run, const char *num, const char *den, const int *num_w,
		       const int *den_w, const char *const *tags, int count, double limit, char *detail,
		       size_t size)
{
	int ni = target_index(run, num), di = target_index(run, den), verdict = -1;
	size_t used = 0;

	detail[0] = '\0';
	for (int k = 0; k < count && ni >= 0 && di >= 0; k++) {
		const struct timing_cell *a = &run->cells[num_w[k]][ni], *b = &run->cells[den_w[k]][di];
		double r;

		if (!a->nsamples || !b->nsamples)
			continue;
		r = a->median / b->median;
		used += (size_t)snprintf(detail + used, size > used ? size - used : 0, "%s%s %.3fx",
					 used ? (run->opt.csv ? ";" : ", ") : "", tags[k], r);
		if (limit > 0)
			verdict = (verdict != 0 && r <= limit) ? 1 : 0;
		else
			verdict = -2;
	}
	return verdict;
}

static void print_summary(const struct bench_run *run)
{
	static const int cache_w[] = { W_CACHE64, W_CACHE256 };
	static const int uma_w[] = { W_UMA64, W_UMA256 };
	static const int slob_w[] = { W_CACHE64, W_KMALLOC_MIXED };
	static const char *const size_tags[] = { "64 B", "256 B" };
	static const char *const slob_tags[] = { "cache64", "kmalloc-mixed" };
	char detail[160];
	int slob = target_index(run, "slob"), state;

	if (!run->opt.csv)
		printf("targets (computed from the figures above):\n");

	state = ratio_check(run, "slub", "glibc", cache_w, cache_w, size_tags, 2, 0.5, detail, sizeof(detail));
	print_verdict(run, "slub_pair_vs_glibc", "SLUB kmem_cache pair <= 0.50x glibc", detail, state);

	state = ratio_check(run, "slab", "slub", cache_w, cache_w, size_tags, 2, 1.2, detail, sizeof(detail));
	print_verdict(run, "slab_pair_vs_slub", "SLAB kmem_cache pair <= 1.20x SLUB", detail, state);

	state = ratio_check(run, "uma", "slub", uma_w, cache_w, size_tags, 2, 1.0, detail, sizeof(detail));
	print_verdict(run, "uma_zalloc_vs_slub", "UMA uma_zalloc pair <= 1.00x SLUB kmem_cache", detail, state);

	state = ratio_check(run, "uma", "slub", cache_w, cache_w, size_tags, 2, 1.0, detail, sizeof(detail));
	print_verdict(run, "uma_kcache_vs_slub", "UMA kmem_cache pair <= 1.00x SLUB (same API)", detail, state);

	/* SLOB footprint: at most 1.10x the live bytes and the lowest of the
	 * slabkit backends (glibc shown for reference only). */
	state = -1;
	detail[0] = '\0';
	if (run->run_footprint && slob >= 0 && run->targets[slob].footprint_ok) {
		double mine = footprint_factor(&run->targets[slob]), next = 0;
		const char *next_name = NULL;

		for (int ti = 1; ti < run->ntargets; ti++) {
			double f = footprint_factor(&run->targets[ti]);

			if (ti != slob && run->targets[ti].footprint_ok && (!next_name || f < next)) {
				next = f;
				next_name = run->targets[ti].t.name;
			}
		}
		const char *sep = run->opt.csv ? ";" : ", ";
		size_t used;

		state = mine <= 1.10 && (!next_name || mine < next);
		used = (size_t)snprintf(detail, sizeof(detail), "slob %.3fx", mine);
		if (next_name && used < sizeof(detail))
			used += (size_t)snprintf(detail + used, sizeof(detail) - used, "%snext %s %.3fx", sep,
						 next_name, next);
		if (run->targets[0].footprint_ok && used < sizeof(detail))
			snprintf(detail + used, sizeof(detail) - used, "%sglibc %.3fx", sep,
				 footprint_factor(&run->targets[0]));
	}
	print_verdict(run, "slob_footprint", "SLOB footprint <= 1.10x live and lowest", detail, state);

	state = ratio_check(run, "slob", "slub", slob_w, slob_w, slob_tags, 2, 0, detail, sizeof(detail));
	print_verdict(run, "slob_cost_vs_slub", "SLOB cost vs SLUB (what its footprint costs)", detail, state);
}

static void *bench_nothing(void *arg)
{
	return arg;
}

/*
 * glibc's malloc skips its arena locks while a process has never started
 * a thread, and never returns to that mode once it has.  The thread
 * workloads start threads, and so does slabkit's maintenance thread in a
 * normal program, so without this glibc would run lock-free in the first
 * round and locked in the others.  Starting one thread up front puts
 * every glibc figure in the same (multi-threaded) mode.
 */
static void bench_leave_single_threaded_mode(void)
{
	pthread_t tid;
	int rc = pthread_create(&tid, NULL, bench_nothing, NULL);

	if (rc != 0)
		bench_die("pthread_create: %s", strerror(rc));
	pthread_join(tid, NULL);
}

static void print_list(void)
{
	printf("workloads:\n");
	for (int w = 0; w < W_TIMED_COUNT; w++)
		printf("  %-20s %s\n", workload_info[w].name, workload_info[w].what);
	printf("  %-20s %s\n", FOOTPRINT_NAME, "live kmalloc objects, RSS growth / live bytes (forked child)");
	printf("backends compiled: %s (glibc is always measured as the baseline)\n", slabkit_backends_compiled());
}

int main(int argc, char **argv)
{
	static struct bench_run run; /* large; static keeps it off the stack */
	struct bench_rng rng = { MIXED_SEED };

	if (parse_options(argc, argv, &run.opt) != 0)
		return 2;
	if (run.opt.list) {
		print_list();
		return 0;
	}
	if (select_workloads(&run) != 0 || select_targets(&run) != 0) {
		usage(stderr);
		return 2;
	}
	run.progress = !run.opt.csv && isatty(STDERR_FILENO);
	for (int i = 0; i < BENCH_MIXED_SIZES; i++)
		run.mixed_sizes[i] = (uint16_t)bench_rng_range(&rng, BENCH_MIXED_MIN, BENCH_MIXED_MAX);

	run_footprints(&run);
	bench_leave_single_threaded_mode();
	run_timing(&run);

	print_header(&run);
	print_timing(&run);
	print_footprint(&run);
	print_summary(&run);
	return run.errors ? 1 : 0;
}
