/*
 * slabkit-bench: the comparison users run first.
 *
 * One invocation measures a suite of workloads over every compiled slabkit
 * backend, glibc and the malloc peers that are installed (jemalloc,
 * tcmalloc, mimalloc), and writes a terminal table, CSV, JSON and a
 * self-contained HTML report.  docs/benchmarks.md explains the method and
 * every column.
 *
 * Shape of the program:
 *   main.c      options, the plan (workloads x allocators x rounds), the
 *               orchestrator that runs each cell in a fresh child process
 *   child.c     what one child does: set its allocator up, run one cell,
 *               print what it measured (a line protocol on stdout)
 *   workloads.c the workloads themselves (timed loops, windows, threads,
 *               memory), over slabkit's APIs or over malloc
 *   replay.c    trace files (docs/trace-format.md): load, prepare, replay
 *   report.c    the table, the targets, CSV, JSON, HTML
 *   util.c      clocks, random numbers, medians, /proc readers, machine
 *
 * Every allocator runs in its own process, never several mallocs in one:
 * the orchestrator re-executes itself per cell with SLABKIT_BACKEND (and
 * SLABKIT_PERCPU for lock mode) or LD_PRELOAD=<peer> in the environment.
 * The orchestrator itself never initialises slabkit and never measures.
 */
#ifndef SLABKIT_BENCH_H
#define SLABKIT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_MAX_ALLOCS 12
#define BENCH_MAX_WORKLOADS 48
#define BENCH_MAX_SAMPLES 64
#define BENCH_MAX_POINTS 64
#define BENCH_NAME 32

#define bench_unlikely(x) __builtin_expect(!!(x), 0)
#define bench_noinline __attribute__((noinline))
#define bench_cold __attribute__((cold, noinline))
#define BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BENCH_MAX(a, b) ((a) > (b) ? (a) : (b))
/* The object escapes and memory may have changed: an alloc+write+free
 * triple can be neither elided nor merged across iterations. */
#define bench_escape(p) __asm__ volatile("" : : "r"(p) : "memory")

/* --- allocators ------------------------------------------------------------ */

enum alloc_kind {
	ALLOC_GLIBC,   /* the baseline: glibc malloc */
	ALLOC_SLABKIT, /* one slabkit backend (SLABKIT_BACKEND) */
	ALLOC_PEER,    /* another malloc, LD_PRELOADed */
};

struct allocator {
	char name[BENCH_NAME];     /* "glibc", "slub", "jemalloc", ... */
	enum alloc_kind kind;
	char preload[512];         /* ALLOC_PEER: the library's path */
};

/* --- workloads ------------------------------------------------------------- */

enum wl_kind {
	WK_PAIR,      /* one object allocated and freed at once */
	WK_BATCH,     /* 64 allocated, then the 64 freed */
	WK_WINDOW,    /* `live` objects; a random one freed and a new one allocated */
	WK_THREADS,   /* `threads` threads, each doing the pair; aggregate ns/pair */
	WK_REMOTE,    /* producer allocates, consumer frees */
	WK_LARSON,    /* threads swap objects in a shared table: cross-thread frees */
	WK_FOOTPRINT, /* mixed 8..1024 B, a random half freed and reallocated */
	WK_FRAGMENT,  /* mixed 8..512 B, a random 90% freed, reallocated at 512..2048 B */
	WK_STEADY,    /* long-lived objects: grow, churn, shrink; memory over time */
	WK_RELEASE,   /* a live set allocated, all freed, memory given back; what stays resident */
	WK_REPLAY,    /* a recorded trace */
	WK_IDR,       /* a model of the kernel's IDA/IDR test program (idr.c) */
};

/* Which slabkit API a workload calls (glibc and peers: malloc/free of the
 * same sizes). */
enum wl_api {
	API_CACHE,         /* kmem_cache_alloc / kmem_cache_free */
	API_KMALLOC,       /* kmalloc(size) with the size a compile-time constant */
	API_KMALLOC_VAR,   /* kmalloc(size) with the size known only at run time */
	API_KMALLOC_MIXED, /* kmalloc of sizes 8..4096 from a table */
	API_UMA,           /* uma_zalloc / uma_zfree */
	API_BSD,           /* FreeBSD malloc(9) / free(9) */
};

struct workload {
	char name[BENCH_NAME];
	const char *section;  /* groups rows in the table and charts */
	char what[160];       /* one line: what the slabkit side does */
	enum wl_kind kind;
	enum wl_api api;
	unsigned size;        /* object size (fixed-size workloads) */
	uint64_t live;        /* WK_WINDOW: live objects; memory workloads: objects */
	int threads;          /* WK_THREADS, WK_LARSON */
	bool lock_mode;       /* slabkit backends run with SLABKIT_PERCPU=lock */
	bool timed;           /* has an ns/op figure (memory workloads: once, no rounds) */
};

/* --- what one cell (workload x allocator) measured ------------------------- */

struct mem_point {
	double t_ms;
	double rss;   /* resident anonymous bytes above the start */
	double live;  /* bytes the program holds */
};

struct cell {
	bool ran, failed;
	char error[160];
	uint64_t ops_per_rep;       /* calibrated in the first round */
	int nsamples;
	double samples[BENCH_MAX_SAMPLES]; /* ns per op */
	bool disturbed[BENCH_MAX_SAMPLES];
	int reruns;
	/* Memory, from the first round: */
	double peak_rss;            /* VmHWM of the child, bytes */
	double held;                /* resident anonymous growth since before init */
	double live;                /* bytes live when `held` was read */
	double slabs, pages;        /* slabkit_stats (slabkit only; -1 otherwise) */
	double usable64, usable4096;/* malloc(9) usable sizes (bsd workload, slabkit) */
	char percpu[16];
	int npoints;
	struct mem_point points[BENCH_MAX_POINTS];
	/* Filled by cell_finish: */
	int nused;
	double median, iqr_pct;     /* ns per op; spread = IQR / median */
};

/* --- options and the run --------------------------------------------------- */

struct options {
	bool quick, tiny, list, no_report;
	const char *backends;   /* comma list of allocator names; NULL: all available */
	const char *workloads;  /* comma list (names or prefixes); NULL: all */
	const char *threads;    /* thread counts for scaling, e.g. "1,2,4" */
	const char *replay;     /* --replay FILE */
	const char *out_prefix; /* where csv/json/html go: <prefix>.csv ... */
	const char *charts_dir; /* --charts DIR: every chart also as DIR/<id>.svg */
	int rounds, reps;
	int max_retries;
	double rep_ms, calib_ms;
	unsigned timeout_s;     /* per child */
	bool peers;             /* measure installed peers (default on) */
};

struct run {
	struct options opt;
	char command[1024];     /* the command line, for the report */
	char self[4096];        /* path of this executable */
	int nallocs;
	struct allocator allocs[BENCH_MAX_ALLOCS];
	int nworkloads;
	struct workload workloads[BENCH_MAX_WORKLOADS];
	struct cell cells[BENCH_MAX_WORKLOADS][BENCH_MAX_ALLOCS];
	bool errors;
	bool progress;          /* stderr is a terminal */
	double started_s, elapsed_s;
	/* replay mode */
	uint64_t replay_records, replay_threads, replay_peak_live_objects;
	double replay_peak_live_bytes;
};

/* main.c */
int bench_index_of_alloc(const struct run *run, const char *name);
int bench_index_of_workload(const struct run *run, const char *name);

/* child.c: runs when argv[1] is "--child". */
int child_main(int argc, char **argv);

/* workloads.c (child side).  One call runs the cell: prints the protocol
 * lines on stdout.  Returns 0, or 1 with an "error" line printed. */
struct child_params {
	const struct allocator *alloc;
	struct workload wl;
	uint64_t ops_per_rep;   /* 0: calibrate */
	int reps, max_retries;
	double rep_ms, calib_ms;
	const char *trace;      /* WK_REPLAY */
};
int workload_run(const struct child_params *p);
void workload_define_all(struct run *run); /* the suite, from the options */

/* replay.c */
struct trace_summary {
	uint64_t records, allocs, frees, reallocs;
	uint64_t threads, peak_live_objects;
	uint64_t peak_live_bytes;
	double duration_ms;
};
int trace_summarize(const char *path, struct trace_summary *out, char *err, size_t errlen);
void replay_prepare(const struct child_params *p);
int replay_run(const struct child_params *p, uint64_t rss_before);

/* report.c */
void cell_finish(struct cell *c);
void report_terminal(const struct run *run, FILE *out);
int report_csv(const struct run *run, const char *path);
int report_json(const struct run *run, const char *path);
int report_html(const struct run *run, const char *path);

/* util.c */
uint64_t bench_now_ns(void);
double bench_median(double *v, int n);
double bench_quantile_sorted(const double *v, int n, double q);
uint64_t bench_rss_anon(void);
uint64_t bench_peak_rss(void);
void bench_cpu_model(char *out, size_t size);
void bench_machine(char *out, size_t size); /* one line: CPU, cores, kernel, glibc */
__attribute__((noreturn, format(printf, 1, 2))) void bench_die(const char *fmt, ...);

struct bench_rng {
	uint64_t state;
};
static inline uint64_t bench_rng_next(struct bench_rng *r)
{
	r->state ^= r->state >> 12;
	r->state ^= r->state << 25;
	r->state ^= r->state >> 27;
	return r->state * 0x2545F4914F6CDD1DULL;
}
static inline size_t bench_rng_range(struct bench_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(bench_rng_next(r) % (hi - lo + 1));
}

/* Was a measuring thread kept off its CPU?  (run-queue wait, or CPU time
 * lagging the wall clock without voluntary sleeps: hypervisor steal) */
struct sched_mark {
	uint64_t wall_ns, cpu_ns, run_delay_ns;
	long voluntary_switches;
};
void bench_sched_mark(struct sched_mark *m);
double bench_lost_share(const struct sched_mark *from, const struct sched_mark *to);

/* CPUs this process may run on; the index-th of them (-1: fewer). */
int bench_allowed_cpus(void);
int bench_allowed_cpu(int index);

#endif /* SLABKIT_BENCH_H */
