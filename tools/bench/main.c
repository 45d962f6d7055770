/*
 * slabkit-bench: options, the plan and the orchestrator.
 *
 * The orchestrator runs every cell (workload x allocator) in a fresh child
 * process: it re-executes this program with "--child" and the cell's
 * parameters, with SLABKIT_BACKEND (and SLABKIT_PERCPU=lock for lock-mode
 * workloads) or LD_PRELOAD=<peer library> in the child's environment, and
 * reads what the child measured from a pipe (child.c prints it).  Timed
 * workloads are repeated over rounds, and within a round every allocator
 * runs the workload one after another, so a change in machine load falls
 * on all of them rather than on one.
 *
 * Exit status: 0 when every cell ran (whether or not the targets were met:
 * it is a report, not a test), 1 when one failed, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <slabkit/slabkit.h>

#include "bench.h"

extern char **environ;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: slabkit-bench [options]\n"
		"  --quick           one round of short repetitions, smaller live sets (< 60 s)\n"
		"  --tiny            the smallest run (implies --quick): for tests, not for figures\n"
		"  --backend LIST    allocators to measure, comma-separated: glibc, the compiled backends\n"
		"                    (slab, slub, slob, uma) and installed peers (jemalloc, tcmalloc,\n"
		"                    mimalloc); glibc is always measured (it is the baseline)\n"
		"  --workload LIST   workloads by name or prefix (cache, kmalloc, window, live, threads,\n"
		"                    ...) or section (pairs, batches, memory, ...); --list shows them\n"
		"  --threads LIST    thread counts for the scaling workloads (default 1,2,4,... up to\n"
		"                    twice the CPUs)\n"
		"  --replay FILE     replay an allocation trace (docs/trace-format.md) over every allocator\n"
		"  --out PREFIX      write PREFIX.csv, PREFIX.json, PREFIX.html (default: slabkit-bench)\n"
		"  --charts DIR      also write every chart of the report as DIR/<section>.svg\n"
		"  --no-report       only the terminal table\n"
		"  --no-peers        do not measure jemalloc, tcmalloc, mimalloc even if installed\n"
		"  --rounds N        rounds over all allocators (default 3; quick 1)\n"
		"  --reps N          repetitions per round (default 3)\n"
		"  --rep-ms MS       duration of one repetition (default 20; quick 4)\n"
		"  --timeout S       seconds a cell may take before it is killed (default 300; quick 60)\n"
		"  --list            list workloads and allocators, then exit\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out)
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

static char default_threads[64];

static int parse_options(int argc, char **argv, struct options *o)
{
	long rounds = -1, reps = -1, rep_ms = -1, timeout = -1;
	/* The options that take a value: a string kept as given (str), or a
	 * number from 1 to hi (num). */
	const struct {
		const char *name;
		const char **str;
		long *num, hi;
	} valued[] = {
		{ "--backend", .str = &o->backends },
		{ "--workload", .str = &o->workloads },
		{ "--threads", .str = &o->threads },
		{ "--replay", .str = &o->replay },
		{ "--out", .str = &o->out_prefix },
		{ "--charts", .str = &o->charts_dir },
		{ "--rounds", .num = &rounds, .hi = 20 },
		{ "--reps", .num = &reps, .hi = 20 },
		{ "--rep-ms", .num = &rep_ms, .hi = 1000 },
		{ "--timeout", .num = &timeout, .hi = 3600 },
	};

	memset(o, 0, sizeof(*o));
	o->peers = true;
	o->out_prefix = "slabkit-bench";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		size_t v = 0;

		if (!strcmp(a, "--quick"))
			o->quick = true;
		else if (!strcmp(a, "--tiny"))
			o->tiny = o->quick = true;
		else if (!strcmp(a, "--list"))
			o->list = true;
		else if (!strcmp(a, "--no-report"))
			o->no_report = true;
		else if (!strcmp(a, "--no-peers"))
			o->peers = false;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else {
			while (v < sizeof(valued) / sizeof(valued[0]) && strcmp(a, valued[v].name))
				v++;
			if (!val || v == sizeof(valued) / sizeof(valued[0])) {
				fprintf(stderr, "slabkit-bench: unknown option or missing value: %s\n", a);
				usage(stderr);
				return -1;
			}
			if (valued[v].str)
				*valued[v].str = val;
			else if (!parse_long(val, 1, valued[v].hi, valued[v].num)) {
				fprintf(stderr, "slabkit-bench: bad value for %s: %s (1..%ld)\n", a, val, valued[v].hi);
				return -1;
			}
			i++;
		}
	}
	o->rounds = rounds > 0 ? (int)rounds : (o->quick ? 1 : 3);
	o->reps = reps > 0 ? (int)reps : (o->tiny ? 2 : 3);
	o->rep_ms = rep_ms > 0 ? (double)rep_ms : (o->tiny ? 1.0 : o->quick ? 4.0 : 20.0);
	o->calib_ms = o->tiny ? 0.5 : o->quick ? 1.0 : 3.0;
	o->max_retries = o->quick ? 1 : 3;
	o->timeout_s = timeout > 0 ? (unsigned)timeout : (o->quick ? 60 : 300);
	if (o->rounds * o->reps > BENCH_MAX_SAMPLES) {
		fprintf(stderr, "slabkit-bench: --rounds x --reps must be at most %d\n", BENCH_MAX_SAMPLES);
		return -1;
	}
	if (!o->threads) {
		size_t used = 0;
		int max = o->tiny ? 2 : 2 * bench_allowed_cpus();

		for (int t = 1; t <= BENCH_MAX(max, 1) && t <= 32; t *= 2)
			used += (size_t)snprintf(default_threads + used, sizeof(default_threads) - used, "%s%d",
						 used ? "," : "", t);
		o->threads = default_threads;
	} else {
		for (const char *s = o->threads; *s; s++)
			if ((*s < '0' || *s > '9') && *s != ',') {
				fprintf(stderr, "slabkit-bench: --threads takes numbers such as 1,2,4\n");
				return -1;
			}
		for (const char *s = o->threads; *s;) {
			long n = strtol(s, (char **)&s, 10);

			if (n < 1 || n > 64) {
				fprintf(stderr, "slabkit-bench: --threads: each count must be 1..64\n");
				return -1;
			}
			if (*s == ',')
				s++;
		}
	}
	return 0;
}

/* --- allocators ------------------------------------------------------------------ */

static const struct {
	const char *name, *soname;
} peers[] = {
	{ "jemalloc", "libjemalloc.so.2" },
	{ "tcmalloc", "libtcmalloc_minimal.so.4" },
	{ "mimalloc", "libmimalloc.so.2" },
};

/* Where Debian installs shared libraries. */
static bool find_library(const char *soname, char *out, size_t size)
{
	static const char *const dirs[] = {
#if defined(__x86_64__)
		"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
#elif defined(__aarch64__)
		"/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
#endif
		"/usr/lib64", "/usr/lib", "/usr/local/lib",
	};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(out, size, "%s/%s", dirs[i], soname);
		if (access(out, R_OK) == 0)
			return true;
	}
	return false;
}

static void add_alloc(struct run *run, const char *name, enum alloc_kind kind, const char *preload)
{
	struct allocator *a = &run->allocs[run->nallocs++];

	snprintf(a->name, sizeof(a->name), "%s", name);
	a->kind = kind;
	snprintf(a->preload, sizeof(a->preload), "%s", preload ? preload : "");
}

/* Is name in the comma list (NULL: everything is)? */
static bool in_list(const char *list, const char *name)
{
	size_t len = strlen(name);

	if (!list)
		return true;
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, ",");

		if (n == len && !strncmp(s, name, n))
			return true;
		s += n + (s[n] == ',');
	}
	return false;
}

static int select_allocators(struct run *run)
{
	char compiled[128], *save = NULL, path[512];
	const char *want = run->opt.backends;

	add_alloc(run, "glibc", ALLOC_GLIBC, NULL);
	snprintf(compiled, sizeof(compiled), "%s", slabkit_backends_compiled());
	for (char *b = strtok_r(compiled, ",", &save); b; b = strtok_r(NULL, ",", &save))
		if (in_list(want, b))
			add_alloc(run, b, ALLOC_SLABKIT, NULL);
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		bool asked = want && in_list(want, peers[i].name);

		if (!asked && (!run->opt.peers || want))
			continue;
		if (find_library(peers[i].soname, path, sizeof(path)))
			add_alloc(run, peers[i].name, ALLOC_PEER, path);
		else if (asked) {
			fprintf(stderr, "slabkit-bench: %s is not installed (%s; Debian: apt-get install %s)\n",
				peers[i].name, peers[i].soname,
				i == 0 ? "libjemalloc2" : i == 1 ? "libtcmalloc-minimal4" : "libmimalloc2.0");
			return -1;
		}
	}
	/* Every name asked for must exist. */
	for (const char *s = want; s && *s;) {
		size_t n = strcspn(s, ",");
		char name[BENCH_NAME];

		snprintf(name, sizeof(name), "%.*s", (int)BENCH_MIN(n, sizeof(name) - 1), s);
		if (bench_index_of_alloc(run, name) < 0) {
			fprintf(stderr, "slabkit-bench: unknown allocator '%s' (compiled backends: %s; glibc; peers: "
					"jemalloc, tcmalloc, mimalloc when installed)\n",
				name, slabkit_backends_compiled());
			return -1;
		}
		s += n + (s[n] == ',');
	}
	return 0;
}

int bench_index_of_alloc(const struct run *run, const char *name)
{
	for (int i = 0; i < run->nallocs; i++)
		if (!strcmp(run->allocs[i].name, name))
			return i;
	return -1;
}

/* Keep the workloads the --workload list picks: an item picks the name it
 * equals, else every name it prefixes, and a section name picks its section. */
static int select_workloads(struct run *run)
{
	const char *list = run->opt.workloads;
	bool keep[BENCH_MAX_WORKLOADS] = { false };
	int n = 0;

	if (!list)
		return 0;
	for (const char *s = list; *s;) {
		size_t len = strcspn(s, ",");
		char item[64];
		bool exact = false, picked = false;

		if (!len || len >= sizeof(item)) {
			fprintf(stderr, "slabkit-bench: bad --workload list '%s'\n", list);
			return -1;
		}
		snprintf(item, sizeof(item), "%.*s", (int)len, s);
		for (int w = 0; w < run->nworkloads; w++)
			exact |= !strcmp(item, run->workloads[w].name);
		for (int w = 0; w < run->nworkloads; w++) {
			const struct workload *wl = &run->workloads[w];
			bool pick = !strcmp(item, "all") || !strcmp(item, wl->name) || !strcmp(item, wl->section) ||
				    (!exact && !strncmp(item, wl->name, len));

			keep[w] |= pick;
			picked |= pick;
		}
		if (!picked) {
			fprintf(stderr, "slabkit-bench: unknown workload '%s' (--list shows them)\n", item);
			return -1;
		}
		s += len + (s[len] == ',');
	}
	for (int w = 0; w < run->nworkloads; w++)
		if (keep[w])
			run->workloads[n++] = run->workloads[w];
	run->nworkloads = n;
	return 0;
}

/* --- running one cell in a child -------------------------------------------------- */

static bool once(const struct workload *w);

/* Parses the child's output into the cell. */
static void parse_child_output(struct cell *c, char *text, bool first_round)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		double a, b, d, e, f;
		int dist;
		unsigned long long n;

		if (sscanf(line, "sample %lf %d", &a, &dist) == 2) {
			if (c->nsamples < BENCH_MAX_SAMPLES) {
				c->disturbed[c->nsamples] = dist != 0;
				c->samples[c->nsamples++] = a;
			}
		} else if (sscanf(line, "calib %llu", &n) == 1) {
			if (!c->ops_per_rep)
				c->ops_per_rep = n;
		} else if (sscanf(line, "reruns %d", &dist) == 1) {
			c->reruns += dist;
		} else if (first_round && sscanf(line, "mem %lf %lf %lf %lf %lf", &a, &b, &d, &e, &f) == 5) {
			c->peak_rss = a, c->held = b, c->live = d, c->slabs = e, c->pages = f;
		} else if (first_round && sscanf(line, "point %lf %lf %lf", &a, &b, &d) == 3) {
			if (c->npoints < BENCH_MAX_POINTS)
				c->points[c->npoints++] = (struct mem_point){ a, b, d };
		} else if (sscanf(line, "usable %lf %lf", &a, &b) == 2) {
			c->usable64 = a, c->usable4096 = b;
		} else if (!strncmp(line, "percpu ", 7)) {
			snprintf(c->percpu, sizeof(c->percpu), "%s", line + 7);
		} else if (!strncmp(line, "error ", 6)) {
			c->failed = true;
			snprintf(c->error, sizeof(c->error), "%s", line + 6);
		} else if (!strncmp(line, "replay ", 7)) {
			/* informational: what the replay saw */
		}
	}
}

static void set_env(char **env, int *n, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		bench_die("out of memory");
	va_end(ap);
	env[(*n)++] = s;
}

/* The environment of a child: ours without the variables we decide, then
 * the allocator's. */
static char **child_env(const struct allocator *a, const struct workload *w)
{
	static const char *const ours[] = { "SLABKIT_BACKEND=", "SLABKIT_PERCPU=", "SLABKIT_TRACE=", "LD_PRELOAD=",
					    "SLABKIT_TICK_MS=" };
	int count = 0, n = 0;
	char **env;

	while (environ[count])
		count++;
	env = calloc((size_t)count + 8, sizeof(*env));
	if (!env)
		bench_die("out of memory");
	for (int i = 0; i < count; i++) {
		bool drop = false;

		for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++)
			drop |= !strncmp(environ[i], ours[k], strlen(ours[k]));
		if (!drop)
			env[n++] = environ[i];
	}
	if (a->kind == ALLOC_SLABKIT) {
		set_env(env, &n, "SLABKIT_BACKEND=%s", a->name);
		if (w->lock_mode)
			set_env(env, &n, "SLABKIT_PERCPU=lock");
	} else if (a->kind == ALLOC_PEER) {
		set_env(env, &n, "LD_PRELOAD=%s", a->preload);
	}
	env[n] = NULL;
	return env;
}

/* Runs one cell in a child and adds what it measured to *c. */
static void run_cell(struct run *run, int wi, int ai, int round)
{
	const struct workload *w = &run->workloads[wi];
	const struct allocator *a = &run->allocs[ai];
	struct cell *c = &run->cells[wi][ai];
	char ops[32], reps[16], retries[16], rep_ms[32], calib_ms[32];
	const char *mode = run->opt.tiny ? "tiny" : run->opt.quick ? "quick" : "full";
	char *argv[16];
	char **env;
	int fds[2], status, argc = 0;
	size_t size = 65536, used = 0;
	char *out = malloc(size);
	double deadline;
	pid_t pid;

	if (!out)
		bench_die("out of memory");
	snprintf(ops, sizeof(ops), "%llu", (unsigned long long)c->ops_per_rep);
	snprintf(reps, sizeof(reps), "%d", once(w) ? run->opt.reps * run->opt.rounds : run->opt.reps);
	snprintf(retries, sizeof(retries), "%d", run->opt.max_retries);
	snprintf(rep_ms, sizeof(rep_ms), "%g", run->opt.rep_ms);
	snprintf(calib_ms, sizeof(calib_ms), "%g", run->opt.calib_ms);
	argv[argc++] = run->self;
	argv[argc++] = "--child";
	argv[argc++] = (char *)a->name;
	argv[argc++] = a->kind == ALLOC_GLIBC ? "glibc" : a->kind == ALLOC_SLABKIT ? "slabkit" : "peer";
	argv[argc++] = (char *)w->name;
	argv[argc++] = ops;
	argv[argc++] = reps;
	argv[argc++] = retries;
	argv[argc++] = rep_ms;
	argv[argc++] = calib_ms;
	argv[argc++] = (char *)mode;
	argv[argc++] = (char *)run->opt.threads;
	argv[argc++] = (char *)(run->opt.replay ? run->opt.replay : "-");
	argv[argc] = NULL;
	env = child_env(a, w);

	if (pipe2(fds, O_CLOEXEC) != 0)
		bench_die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		execve(run->self, argv, env);
		fprintf(stderr, "slabkit-bench: exec %s: %s\n", run->self, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	for (int i = 0; env[i]; i++)
		if (!strncmp(env[i], "SLABKIT_BACKEND=", 16) || !strncmp(env[i], "SLABKIT_PERCPU=", 15) ||
		    !strncmp(env[i], "LD_PRELOAD=", 11))
			free(env[i]);
	free(env);

	deadline = (double)bench_now_ns() / 1e9 + run->opt.timeout_s;
	bool timed_out = false;
	for (;;) {
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		double left = deadline - (double)bench_now_ns() / 1e9;
		ssize_t got;

		if (left <= 0) {
			kill(pid, SIGKILL); /* our own child, by its id */
			timed_out = true;
			break;
		}
		if (poll(&pfd, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			break;
		if (used + 4096 > size && !(out = realloc(out, size *= 2)))
			bench_die("out of memory");
		got = read(fds[0], out + used, size - used - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		used += (size_t)got;
	}
	out[used] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	c->ran = true;
	parse_child_output(c, out, round == 1);
	free(out);
	if (timed_out) {
		c->failed = true;
		snprintf(c->error, sizeof(c->error), "timed out after %u s (--timeout)", run->opt.timeout_s);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (!c->failed) {
			if (WIFSIGNALED(status))
				snprintf(c->error, sizeof(c->error), "child killed by signal %d", WTERMSIG(status));
			else
				snprintf(c->error, sizeof(c->error), "child exited with status %d",
					 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		}
		c->failed = true;
	}
	if (c->failed)
		run->errors = true;
}

__attribute__((format(printf, 2, 3))) static void progress(const struct run *run, const char *fmt, ...)
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

/* Cells run in the first round only: memory workloads (bytes do not move
 * with load), and windows of a million objects or more, whose set-up takes
 * seconds (they run all the rounds' repetitions at once). */
static bool once(const struct workload *w)
{
	return !w->timed || (w->kind == WK_WINDOW && w->live >= 1000000);
}

static void run_all(struct run *run)
{
	int total = 0, done = 0;

	for (int w = 0; w < run->nworkloads; w++)
		total += (once(&run->workloads[w]) ? 1 : run->opt.rounds) * run->nallocs;
	for (int round = 1; round <= run->opt.rounds; round++) {
		for (int w = 0; w < run->nworkloads; w++) {
			if (once(&run->workloads[w]) && round > 1)
				continue;
			for (int a = 0; a < run->nallocs; a++) {
				if (run->cells[w][a].failed)
					continue; /* a cell that failed once is not retried */
				progress(run, "[%3d/%d] %-20s %-9s round %d/%d  %.0f s", ++done, total,
					 run->workloads[w].name, run->allocs[a].name, round, run->opt.rounds,
					 (double)bench_now_ns() / 1e9 - run->started_s);
				run_cell(run, w, a, round);
			}
		}
	}
	progress(run, NULL);
	for (int w = 0; w < run->nworkloads; w++)
		for (int a = 0; a < run->nallocs; a++)
			cell_finish(&run->cells[w][a]);
}

static void print_list(struct run *run)
{
	const char *section = "";

	printf("workloads:\n");
	for (int w = 0; w < run->nworkloads; w++) {
		const struct workload *wl = &run->workloads[w];

		if (strcmp(section, wl->section))
			printf(" %s:\n", section = wl->section);
		printf("  %-20s %s\n", wl->name, wl->what);
	}
	printf("allocators:");
	for (int a = 0; a < run->nallocs; a++)
		printf(" %s%s", run->allocs[a].name, run->allocs[a].kind == ALLOC_PEER ? " (LD_PRELOAD)" : "");
	printf("\n");
}

int main(int argc, char **argv)
{
	static struct run run;
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	if (parse_options(argc, argv, &run.opt) != 0)
		return 2;
	n = readlink("/proc/self/exe", run.self, sizeof(run.self) - 1);
	if (n <= 0)
		bench_die("cannot find this program (/proc/self/exe): %s", strerror(errno));
	run.self[n] = '\0';
	for (int i = 0, used = 0; i < argc && used < (int)sizeof(run.command) - 1; i++)
		used += snprintf(run.command + used, sizeof(run.command) - (size_t)used, "%s%s", i ? " " : "",
				 i ? argv[i] : "slabkit-bench");

	if (run.opt.replay) {
		struct trace_summary ts;
		char err[256];

		if (trace_summarize(run.opt.replay, &ts, err, sizeof(err)) != 0) {
			fprintf(stderr, "slabkit-bench: --replay %s: %s\n", run.opt.replay, err);
			return 2;
		}
		run.replay_records = ts.records;
		run.replay_threads = ts.threads;
		run.replay_peak_live_objects = ts.peak_live_objects;
		run.replay_peak_live_bytes = (double)ts.peak_live_bytes;
	}
	workload_define_all(&run);
	if (select_allocators(&run) != 0 || select_workloads(&run) != 0) {
		usage(stderr);
		return 2;
	}
	if (run.opt.list) {
		print_list(&run);
		return 0;
	}
	run.progress = isatty(STDERR_FILENO);
	run.started_s = (double)bench_now_ns() / 1e9;
	run_all(&run);
	run.elapsed_s = (double)bench_now_ns() / 1e9 - run.started_s;

	report_terminal(&run, stdout);
	if (!run.opt.no_report) {
		char path[PATH_MAX];
		int bad = 0;

		snprintf(path, sizeof(path), "%s.csv", run.opt.out_prefix);
		bad |= report_csv(&run, path);
		snprintf(path, sizeof(path), "%s.json", run.opt.out_prefix);
		bad |= report_json(&run, path);
		snprintf(path, sizeof(path), "%s.html", run.opt.out_prefix);
		bad |= report_html(&run, path);
		if (bad)
			run.errors = true;
		else
			printf("\nwrote %s.csv, %s.json, %s.html\n", run.opt.out_prefix, run.opt.out_prefix,
			       run.opt.out_prefix);
	}
	return run.errors ? 1 : 0;
}
