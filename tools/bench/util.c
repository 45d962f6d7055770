/*
 * slabkit-bench helpers: clocks, medians, /proc readers, the machine.
 * Nothing here allocates on the paths that run around a measurement
 * (open/read rather than stdio).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("slabkit-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of n values; sorts them in place. */
double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return (n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Quantile q of sorted values, linear between neighbours. */
double bench_quantile_sorted(const double *v, int n, double q)
{
	double pos = q * (n - 1);
	int lo = (int)pos;

	if (lo >= n - 1)
		return v[n - 1];
	return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

static ssize_t read_proc(const char *path, char *buf, size_t size)
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
 * Resident anonymous bytes of this process: the "Anonymous:" line of
 * /proc/self/smaps_rollup (a page-table walk, exact; it leaves out program
 * text and libraries, which are not the allocator's).  Fallback: statm's
 * RSS (approximate since Linux 6.2, and it includes file pages).
 */
uint64_t bench_rss_anon(void)
{
	char buf[4096];
	unsigned long long kib, size_pages, resident_pages;
	const char *anon;

	if (read_proc("/proc/self/smaps_rollup", buf, sizeof(buf)) > 0 &&
	    (anon = strstr(buf, "\nAnonymous:")) && sscanf(anon + 11, "%llu", &kib) == 1)
		return (uint64_t)kib * 1024;
	if (read_proc("/proc/self/statm", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "%llu %llu", &size_pages, &resident_pages) == 2)
		return (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

/* Peak resident set of this process (VmHWM), bytes. */
uint64_t bench_peak_rss(void)
{
	char buf[4096];
	unsigned long long kib;
	const char *hwm;

	if (read_proc("/proc/self/status", buf, sizeof(buf)) > 0 && (hwm = strstr(buf, "\nVmHWM:")) &&
	    sscanf(hwm + 7, "%llu", &kib) == 1)
		return (uint64_t)kib * 1024;
	return 0;
}

void bench_cpu_model(char *out, size_t size)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, size, "unknown CPU");
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
		snprintf(out, size, "%s", colon);
		break;
	}
	fclose(f);
}

void bench_machine(char *out, size_t size)
{
	char cpu[160];
	struct utsname uts;

	bench_cpu_model(cpu, sizeof(cpu));
	if (uname(&uts) != 0)
		snprintf(uts.release, sizeof(uts.release), "unknown");
	snprintf(out, size, "%s, %ld online CPUs (%d usable by this process), Linux %s, glibc %s", cpu,
		 sysconf(_SC_NPROCESSORS_ONLN), bench_allowed_cpus(), uts.release, gnu_get_libc_version());
}

void bench_sched_mark(struct sched_mark *m)
{
	struct timespec ts;
	struct rusage ru;
	char buf[128];
	unsigned long long on_cpu, run_delay;

	m->run_delay_ns = 0;
	if (read_proc("/proc/thread-self/schedstat", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "%llu %llu", &on_cpu, &run_delay) == 2)
		m->run_delay_ns = run_delay;
	m->voluntary_switches = getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	m->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	m->wall_ns = bench_now_ns();
}

/* Share of the wall time between two marks of one thread that it was kept
 * off a CPU against its will.  Sleeping on purpose (a futex, a yield) is
 * voluntary, so CPU time lagging the wall clock only counts when the thread
 * made no voluntary switch. */
double bench_lost_share(const struct sched_mark *from, const struct sched_mark *to)
{
	double wall = (double)(to->wall_ns - from->wall_ns);
	double lost = (double)(to->run_delay_ns - from->run_delay_ns);
	double lag = wall - (double)(to->cpu_ns - from->cpu_ns);

	if (to->voluntary_switches == from->voluntary_switches && lag > lost)
		lost = lag;
	return wall > 0 ? lost / wall : 0;
}

int bench_allowed_cpus(void)
{
	cpu_set_t allowed;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return 1;
	return CPU_COUNT(&allowed);
}

int bench_allowed_cpu(int index)
{
	cpu_set_t allowed;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &allowed) && index-- == 0)
			return cpu;
	return -1;
}
