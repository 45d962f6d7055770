/*
 * slabkit_bench helpers: clock, pseudo-random numbers, medians, resident
 * memory, machine description.  Included only by tools/slabkit_bench.c
 * (every .c file in tools/ is its own program, so shared code lives in
 * headers).
 */
#ifndef SLABKIT_BENCH_UTIL_H
#define SLABKIT_BENCH_UTIL_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The benchmark uses only the public headers, so it has its own few
 * compiler helpers rather than core/sk_compiler.h. */
#define bench_unlikely(x) __builtin_expect(!!(x), 0)
#define bench_noinline __attribute__((noinline))
#define bench_cold __attribute__((cold, noinline))
#define BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BENCH_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Tell the compiler the object escapes and memory may have changed, so an
 * alloc+write+free triple can be neither elided nor merged across
 * iterations.  Costs no instruction. */
#define bench_escape(p) __asm__ volatile("" : : "r"(p) : "memory")

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Was this thread kept off its CPU while it measured?  The machine is
 * shared, so a repetition can lose time to other processes (the wait shows
 * as run_delay in /proc/thread-self/schedstat) or to the hypervisor (steal:
 * CPU time then lags the wall clock).  A thread that sleeps on purpose
 * (a contended lock's futex, sched_yield giving way) also lags, but then
 * it made voluntary context switches, so the lag alone only counts when
 * there were none.
 */
struct bench_sched_mark {
	uint64_t wall_ns, cpu_ns, run_delay_ns;
	long voluntary_switches;
};

static void bench_sched_mark(struct bench_sched_mark *m)
{
	struct timespec ts;
	struct rusage ru;
	char buf[128];
	unsigned long long on_cpu, run_delay;
	ssize_t got;
	int fd;

	m->run_delay_ns = 0;
	fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		got = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (got > 0) {
			buf[got] = '\0';
			if (sscanf(buf, "%llu %llu", &on_cpu, &run_delay) == 2)
				m->run_delay_ns = run_delay;
		}
	}
	m->voluntary_switches = getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	m->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	m->wall_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Share of the wall time between two marks of one thread that it was kept
 * off a CPU against its will (0 when undisturbed). */
static double bench_lost_share(const struct bench_sched_mark *from, const struct bench_sched_mark *to)
{
	double wall = (double)(to->wall_ns - from->wall_ns);
	double lost = (double)(to->run_delay_ns - from->run_delay_ns);
	double lag = wall - (double)(to->cpu_ns - from->cpu_ns);

	if (to->voluntary_switches == from->voluntary_switches && lag > lost)
		lost = lag;
	return wall > 0 ? lost / wall : 0;
}

__attribute__((noreturn, format(printf, 1, 2))) static void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("slabkit_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* xorshift64*: fast, deterministic for a given seed, good enough to pick
 * sizes and shuffle indices. */
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

/* Uniform in [lo, hi] (the modulo bias is far below what matters here). */
static inline size_t bench_rng_range(struct bench_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(bench_rng_next(r) % (hi - lo + 1));
}

static int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of n samples; sorts them in place. */
static double bench_median(double *samples, int n)
{
	qsort(samples, (size_t)n, sizeof(*samples), bench_cmp_double);
	return (n % 2) ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0;
}

/* Reads a small /proc file into buf with open/read (stdio would malloc,
 * and this runs around the footprint measurement); bytes read, or -1. */
static ssize_t bench_read_proc(const char *path, char *buf, size_t size)
{
	ssize_t got, total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1 && (got = read(fd, buf + total, size - 1 - (size_t)total)) > 0)
		total += got;
	close(fd);
	buf[total] = '\0';
	return total;
}

/*
 * Resident anonymous bytes of this process (what an allocator's memory
 * is), or 0 when they cannot be read.  The "Anonymous:" line of
 * /proc/self/smaps_rollup comes from a page-table walk and is exact; it
 * leaves out file-backed pages such as program text, which a freshly
 * forked child faults in as it runs code for the first time (about half a
 * MiB here, even for a child that allocates nothing).  The fallback is the
 * RSS field of /proc/self/statm, which includes those and, since Linux 6.2,
 * is read from per-CPU counters without summing them (approximate).
 */
static uint64_t bench_rss_bytes(void)
{
	char buf[4096];
	unsigned long long kib, size_pages, resident_pages;
	const char *anon;

	if (bench_read_proc("/proc/self/smaps_rollup", buf, sizeof(buf)) > 0 &&
	    (anon = strstr(buf, "\nAnonymous:")) && sscanf(anon + 11, "%llu", &kib) == 1)
		return (uint64_t)kib * 1024;
	if (bench_read_proc("/proc/self/statm", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "%llu %llu", &size_pages, &resident_pages) == 2)
		return (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

/* "model name" from /proc/cpuinfo, or "unknown". */
static void bench_cpu_model(char *out, size_t out_size)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, out_size, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) != 0 || !colon)
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, out_size, "%s", colon);
		break;
	}
	fclose(f);
}

#endif /* SLABKIT_BENCH_UTIL_H */
