/*
 * Reports, run once per backend: exact figures after known sequences on
 * several threads, every format parsed back (the text ones by their
 * columns, the JSON by Python's json module through
 * tests/check_report_json.py), SLABKIT_STATS at exit, and reading without
 * stopping the allocator (no membarrier call, no slot lock taken by a
 * drainer, while reports run).
 */
#define _GNU_SOURCE
#include "sk_test.h"

#include <dlfcn.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "core/sk_core.h"

/* --- membarrier calls, counted by interposing syscall(2) --- */

static uint64_t membarrier_calls;

long syscall(long number, ...)
{
	static long (*real)(long, ...);
	va_list ap;
	long a[6];

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_membarrier)
		__atomic_add_fetch(&membarrier_calls, 1, __ATOMIC_RELAXED);
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* --- helpers --- */

static char self_path[4096];
static const char *checker = SK_SOURCE_DIR "/tests/check_report_json.py";

static bool have_python(void)
{
	return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

/* Run the JSON checker on path with the expectations; its exit status. */
static int check_json(const char *path, const char *expect)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "python3 %s %s %s", checker, path, expect);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A report in memory. */
static char *report_text(const char *format)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(slabkit_report(f, format), 0);
	fclose(f);
	return buf;
}

/* The line of `text` starting with `name` and a blank or a comma. */
static const char *line_of(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, name, n) && (l[n] == ' ' || l[n] == ','))
			return l;
	fail_msg("no line for %s in:\n%s", name, text);
	return NULL;
}

#define THREADS 4
#define PER_THREAD 200
#define FREED_PER_THREAD 50

struct worker {
	struct kmem_cache *cache;
	unsigned cpu;
	void *objs[PER_THREAD];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set); /* every CPU's slot gets state */
	for (int i = 0; i < PER_THREAD; i++)
		w->objs[i] = kmem_cache_alloc(w->cache, GFP_KERNEL);
	for (int i = 0; i < FREED_PER_THREAD; i++)
		kmem_cache_free(w->cache, w->objs[i]);
	return NULL;
}

static void run_workers(struct kmem_cache *c, struct worker *w)
{
	pthread_t t[THREADS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .cache = c, .cpu = (unsigned)(i % (ncpu > 0 ? ncpu : 1)) };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

MALLOC_DEFINE(M_REPTEST, "rep_type", "report test type");

/* Known sequences on threads; every format says exactly what happened. */
static void exact_figures_in_every_format(void **state)
{
	struct kmem_cache *c = kmem_cache_create("rep_cache", 100, 0, 0, NULL);
	struct worker w[THREADS];
	assert_non_null(c);
	run_workers(c, w);
	const uint64_t live = THREADS * (PER_THREAD - FREED_PER_THREAD);

	void *m[3];
	for (int i = 0; i < 3; i++)
		m[i] = bsd_malloc(100, M_REPTEST, M_WAITOK);
	bsd_free(m[0], M_REPTEST);
	uma_zone_t z = uma_zcreate("rep_zone", 72, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	void *zi[5];
	for (int i = 0; i < 5; i++)
		zi[i] = uma_zalloc(z, M_WAITOK);
	uma_zfree(z, zi[0]);

	/* slabinfo: the kernel's columns. */
	char *text = report_text("slabinfo");
	assert_true(!strncmp(text, "slabinfo - version: 2.1", 23));
	char name[64];
	unsigned long long active, num, opslab, pps, aslabs, nslabs, shared;
	size_t objsize;
	long limit, batch, sf;
	assert_int_equal(sscanf(line_of(text, "rep_cache"),
				"%63s %llu %llu %zu %llu %llu : tunables %ld %ld %ld : slabdata %llu %llu %llu",
				name, &active, &num, &objsize, &opslab, &pps, &limit, &batch, &sf, &aslabs,
				&nslabs, &shared),
			 12);
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("rep_cache", &info), 0);
	assert_int_equal(active, live);
	assert_int_equal(info.in_use, live);
	assert_int_equal(info.allocs, THREADS * PER_THREAD);
	assert_int_equal(info.frees, THREADS * FREED_PER_THREAD);
	assert_int_equal(info.fast_allocs + info.slow_allocs, info.allocs);
	assert_int_equal(nslabs, info.slabs);
	if (opslab) {
		assert_int_equal(num, nslabs * opslab);
		assert_true(num >= live);
	} else {
		assert_int_equal(num, live); /* SLOB: no fixed slots */
	}
	assert_true(aslabs <= nslabs);
	assert_int_equal(aslabs, info.slabs - info.empty_slabs);
	free(text);

	/* vmstat -z: LIMIT and SLEEP do not apply to a kmem_cache. */
	text = report_text("vmstat-z");
	char lim[16], sleep_[16], xd[16];
	unsigned long long used, freec, req, fail;
	assert_int_equal(sscanf(line_of(text, "rep_cache"), "%63s %zu, %15[^,], %llu, %llu, %llu, %llu, %15[^,], %15[^,],",
				name, &objsize, lim, &used, &freec, &req, &fail, sleep_, xd),
			 9);
	assert_string_equal(lim, "-");
	assert_true(strstr(sleep_, "-") != NULL);
	assert_int_equal(used, live);
	assert_int_equal(req, THREADS * PER_THREAD);
	assert_int_equal(freec, (opslab ? num : live) - live);
	if (sk_backend_is("slab") || sk_backend_is("uma"))
		assert_true(strtoll(xd, NULL, 10) >= 0 && !strchr(xd, '-'));
	else
		assert_true(strchr(xd, '-') != NULL);
	assert_int_equal(sscanf(line_of(text, "rep_zone"), "%63s %zu, %15[^,], %llu, %llu, %llu,", name, &objsize,
				lim, &used, &freec, &req),
			 6);
	assert_int_equal(used, 4);
	assert_int_equal(req, 5);
	free(text);

	/* vmstat -m */
	text = report_text("vmstat-m");
	unsigned long long inuse, memuse, highuse, requests;
	const char *l = strstr(text, " rep_type ");
	assert_non_null(l);
	assert_int_equal(sscanf(l, "%63s %llu %lluK %lluK %llu", name, &inuse, &memuse, &highuse, &requests), 5);
	assert_int_equal(inuse, 2);
	assert_int_equal(requests, 3);
	assert_true(highuse >= memuse && memuse > 0);
	free(text);

	assert_int_equal(slabkit_report(stdout, "bogus"), -EINVAL);

	/* JSON, parsed by Python's json module. */
	if (!have_python()) {
		print_message("skipped: python3 not found: the JSON is not parsed back\n");
	} else {
		char path[64], expect[1024];
		snprintf(path, sizeof(path), "/tmp/slabkit_report_%d.json", (int)getpid());
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(slabkit_report(f, "json"), 0);
		fclose(f);
		snprintf(expect, sizeof(expect),
			 "caches:rep_cache:active_objs=%llu caches:rep_cache:allocs.total=%d "
			 "caches:rep_cache:frees.total=%d caches:rep_cache:backend=%s caches:rep_cache:front_end=kmem_cache "
			 "caches:rep_cache:slabs.total=%llu malloc_types:rep_type:in_use=2 malloc_types:rep_type:requests=3 "
			 "uma_zones:rep_zone:used=4 uma_zones:rep_zone:requests=5 totals::nodes=%u",
			 (unsigned long long)live, THREADS * PER_THREAD, THREADS * FREED_PER_THREAD,
			 slabkit_backend(), (unsigned long long)info.slabs, slabkit_nodes());
		int rc = check_json(path, expect);
		unlink(path);
		assert_int_equal(rc, 0);
	}

	for (int i = 1; i < 5; i++)
		uma_zfree(z, zi[i]);
	uma_zdestroy(z);
	bsd_free(m[1], M_REPTEST);
	bsd_free(m[2], M_REPTEST);
	for (int t = 0; t < THREADS; t++)
		for (int i = FREED_PER_THREAD; i < PER_THREAD; i++)
			kmem_cache_free(c, w[t].objs[i]);
	kmem_cache_destroy(c);
}

/* Reports read while every CPU's slot holds state: no membarrier call, no
 * drainer's slot lock, and the figures stay exact. */
static void reports_do_not_stop_the_allocator(void **state)
{
	struct kmem_cache *c = kmem_cache_create("rep_quiet", 64, 0, 0, NULL);
	struct worker w[THREADS];
	run_workers(c, w);
	FILE *null = fopen("/dev/null", "w");
	assert_non_null(null);

	uint64_t mb = __atomic_load_n(&membarrier_calls, __ATOMIC_RELAXED);
	uint64_t locks = sk_load(&sk_pcpu_drain_locks);
	static const char *formats[] = { "slabinfo", "vmstat-z", "vmstat-m", "json" };
	for (int i = 0; i < 100; i++)
		assert_int_equal(slabkit_report(null, formats[i % 4]), 0);
	struct slabkit_cache_info info;
	for (int i = 0; i < 100; i++)
		assert_int_equal(slabkit_cache_info_by_name("rep_quiet", &info), 0);
	assert_int_equal(__atomic_load_n(&membarrier_calls, __ATOMIC_RELAXED), mb);
	assert_int_equal(sk_load(&sk_pcpu_drain_locks), locks);
	assert_int_equal(info.in_use, THREADS * (PER_THREAD - FREED_PER_THREAD));
	fclose(null);

	/* The counter does see drainers: destroying drains every CPU. */
	for (int t = 0; t < THREADS; t++)
		for (int i = FREED_PER_THREAD; i < PER_THREAD; i++)
			kmem_cache_free(c, w[t].objs[i]);
	bool has_slots = ((struct sk_cache *)c)->pcpu_base != NULL;
	kmem_cache_destroy(c);
	if (has_slots)
		assert_true(sk_load(&sk_pcpu_drain_locks) > locks);
}

/* A slow allocation samples the high-water mark, a sum over every CPU's
 * slot, only once in every (sk_pcpu_sample_mask + 1): the slow path's cost
 * must not grow with the number of CPUs.  Reads still see the exact peak. */
static void slow_paths_rarely_sum_every_cpu(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct kmem_cache *c = kmem_cache_create("rep_hw_sample", 64, 0, 0, NULL);
	assert_non_null(c);
	void **objs = calloc(N, sizeof(*objs));
	assert_non_null(objs);
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("rep_hw_sample", &info), 0);
	uint64_t slow_before = info.slow_allocs;
	uint64_t sums_before = sk_load(&sk_pcpu_sums_taken);
	for (int i = 0; i < N; i++)
		assert_non_null(objs[i] = kmem_cache_alloc(c, GFP_KERNEL));
	uint64_t sums = sk_load(&sk_pcpu_sums_taken) - sums_before;
	assert_int_equal(slabkit_cache_info_by_name("rep_hw_sample", &info), 0);
	uint64_t slow = info.slow_allocs - slow_before, period = sk_pcpu_sample_mask + 1;
	print_message("  %llu slow allocations took %llu sums over %u CPUs (one every %llu)\n",
		      (unsigned long long)slow, (unsigned long long)sums, sk_pcpu_nr,
		      (unsigned long long)period);
	if (!((struct sk_cache *)c)->pcpu_base) {
		assert_int_equal(sums, 0); /* no slots, nothing to sum */
	} else {
		/* +2: another thread (the maintenance tick) may read a figure. */
		assert_true(sums <= slow / period + 2);
	}
	assert_true(info.high_water >= N); /* a read samples the peak itself */
	for (int i = 0; i < N; i++)
		kmem_cache_free(c, objs[i]);
	free(objs);
	kmem_cache_destroy(c);
}

/* SLABKIT_STATS=json:<path>: the report a process writes at exit. */
static void stats_at_exit(void **state)
{
	if (!have_python()) {
		print_message("skipped: python3 not found: the JSON is not parsed back\n");
		return;
	}
	char path[64], env[128], backend[64];
	snprintf(path, sizeof(path), "/tmp/slabkit_exit_%d.json", (int)getpid());
	snprintf(env, sizeof(env), "SLABKIT_STATS=json:%s", path);
	snprintf(backend, sizeof(backend), "SLABKIT_BACKEND=%s", slabkit_backend());
	unlink(path);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { self_path, "--exit-child", NULL };
		char *envp[] = { env, backend, "SLABKIT_TICK_MS=-1", NULL };
		execve(self_path, argv, envp);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int rc = check_json(path, "caches:exit_cache:active_objs=7 caches:exit_cache:frees.total=3");
	unlink(path);
	assert_int_equal(rc, 0);
}

/* The child of stats_at_exit: allocate, and exit without slabkit_fini. */
static int exit_child(void)
{
	struct kmem_cache *c = kmem_cache_create("exit_cache", 48, 0, 0, NULL);
	void *p[10];
	for (int i = 0; i < 10; i++)
		p[i] = kmem_cache_alloc(c, GFP_KERNEL);
	for (int i = 0; i < 3; i++)
		kmem_cache_free(c, p[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--exit-child"))
		return exit_child();
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (n > 0)
		self_path[n] = 0;
	const struct CMUnitTest tests[] = {
		SK_TEST(exact_figures_in_every_format),
		SK_TEST(reports_do_not_stop_the_allocator),
		SK_TEST(slow_paths_rarely_sum_every_cpu),
		SK_TEST(stats_at_exit),
	};
	sk_apply_test_filter();
	return cmocka_run_group_tests(tests, sk_group_setup, sk_group_teardown);
}
