/*
 * libslabkit-preload.so from the outside: a plain program (not linked with
 * slabkit) run by ctest with LD_PRELOAD=libslabkit-preload.so and
 * SLABKIT_BACKEND=<b>, once per backend.
 *
 * Getting here at all means the bootstrap works: the library initialises
 * in its constructor or at the first malloc before it, and hwloc's topology
 * load inside that makes hundreds of malloc calls, served by the bootstrap
 * heap (were they to recurse into init, the program would hang there).
 *
 *  - malloc is slabkit's (class sizes, the backend the environment asked
 *    for), and every libc name is;
 *  - the glibc manual's rules: free keeps errno, ENOMEM and EINVAL;
 *  - 16-byte alignment of every block, page alignment of valloc/pvalloc;
 *  - threads that allocate, hand blocks over and exit, many times;
 *  - fork while other threads allocate: the child allocates, frees, forks
 *    again and exits cleanly, every time;
 *  - a foreign pointer passed to free is reported with the call and the
 *    pointer, and the program is stopped.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static void test_malloc_is_slabkit(void **state)
{
	(void)state;
	const char *(*backend)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "slabkit_backend");
	assert_non_null(backend);
	const char *want = getenv("SLABKIT_BACKEND");
	assert_non_null(want);
	assert_string_equal(backend(), want);
	/* Classes of four per power of two: glibc would say 136 here. */
	void *p = malloc(129);
	assert_int_equal(malloc_usable_size(p), 160);
	free(p);
	p = calloc(3, 100);
	assert_int_equal(malloc_usable_size(p), 320);
	free(p);
}

/* Through a volatile, so the compiler neither warns about nor folds the
 * impossible sizes on purpose. */
static volatile size_t huge = SIZE_MAX;

static void test_errno_rules(void **state)
{
	(void)state;
	void *small = malloc(10), *big = malloc((size_t)3 << 20);
	errno = EDOM;
	free(small);
	free(big);
	free(NULL);
	assert_int_equal(errno, EDOM);

	errno = 0;
	assert_null(malloc(huge));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(calloc(huge / 4, 8));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(reallocarray(NULL, huge / 4, 8));
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(aligned_alloc(48, 100));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(memalign(3, 100));
	assert_int_equal(errno, EINVAL);
	void *out = (void *)1;
	errno = EDOM;
	assert_int_equal(posix_memalign(&out, 24, 100), EINVAL);
	assert_int_equal(posix_memalign(&out, 64, huge), ENOMEM);
	assert_int_equal(errno, EDOM);
	assert_int_equal(posix_memalign(&out, 64, 100), 0);
	assert_int_equal((uintptr_t)out % 64, 0);
	free(out);
}

static void test_alignment(void **state)
{
	(void)state;
	for (size_t n = 1; n <= 70000; n += n < 2048 ? 1 : 997) {
		char *p = malloc(n);
		assert_int_equal((uintptr_t)p % 16, 0);
		p[0] = p[n - 1] = 1;
		free(p);
	}
	char *v = valloc(100), *pv = pvalloc(5000);
	assert_int_equal((uintptr_t)v % 4096, 0);
	assert_int_equal((uintptr_t)pv % 4096, 0);
	assert_true(malloc_usable_size(pv) >= 8192);
	free(v);
	free(pv);
	for (size_t a = 32; a <= 65536; a <<= 1) {
		char *p = aligned_alloc(a, a * 3);
		assert_int_equal((uintptr_t)p % a, 0);
		memset(p, 1, a * 3);
		free(p);
	}
}

static void test_realloc_keeps_contents(void **state)
{
	(void)state;
	char *p = NULL;
	size_t old = 0;
	for (size_t n = 1; n < (1u << 24); old = n, n = n * 3 + 7) {
		p = realloc(p, n);
		assert_non_null(p);
		for (size_t i = 0; i < old && i < n; i += 61)
			assert_int_equal((unsigned char)p[i], (unsigned char)(i * 13));
		for (size_t i = 0; i < n; i++)
			p[i] = (char)(i * 13);
	}
	assert_null(realloc(p, 0));
}

#define HANDOFF 64
static void *worker(void *arg)
{
	void **out = arg;
	void *keep[256];
	for (int i = 0; i < 256; i++) {
		keep[i] = malloc((size_t)(i * 37 % 3000) + 1);
		memset(keep[i], i, 1);
	}
	for (int i = 0; i < 256; i++)
		if (i < HANDOFF)
			out[i] = keep[i]; /* outlives the thread */
		else
			free(keep[i]);
	return NULL;
}

static void test_threads_come_and_go(void **state)
{
	(void)state;
	for (int round = 0; round < 50; round++) {
		void *handed[4][HANDOFF];
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			assert_int_equal(pthread_create(&t[i], NULL, worker, handed[i]), 0);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < HANDOFF; j++) {
				assert_int_equal(*(unsigned char *)handed[i][j], (unsigned char)j);
				free(handed[i][j]);
			}
	}
}

static volatile int churn_stop;

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *slot[64] = { 0 };
	while (!__atomic_load_n(&churn_stop, __ATOMIC_RELAXED)) {
		seed = seed * 1103515245 + 12345;
		unsigned i = (seed >> 10) % 64;
		free(slot[i]);
		size_t n = (seed >> 16) % 64 == 0 ? ((seed >> 4) % (1u << 20)) + 40000 : (seed >> 16) % 4000 + 1;
		slot[i] = malloc(n);
		memset(slot[i], 1, n < 128 ? n : 128);
	}
	for (int i = 0; i < 64; i++)
		free(slot[i]);
	return NULL;
}

/* What a child does: allocate, free, and (depth 1) fork once more. */
static int child_work(int depth)
{
	alarm(20); /* a hung child dies of SIGALRM, which the parent sees */
	void *p[200];
	for (int i = 0; i < 200; i++) {
		p[i] = malloc(i % 50 == 0 ? 100000 : (size_t)i * 13 + 1);
		if (!p[i])
			return 3;
		memset(p[i], i, 1);
	}
	for (int i = 0; i < 200; i += 2)
		free(p[i]);
	if (depth == 1) {
		pid_t g = fork();
		if (g == 0)
			exit(child_work(2));
		int st;
		if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 4;
	}
	for (int i = 1; i < 200; i += 2)
		free(p[i]);
	return 0;
}

static void test_fork_while_threads_allocate(void **state)
{
	(void)state;
	pthread_t t[3];
	churn_stop = 0;
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
	int bad = 0;
	for (int round = 0; round < 30; round++) {
		pid_t c = fork();
		assert_true(c >= 0);
		if (c == 0)
			exit(child_work(1)); /* exit, not _exit: atexit handlers run too */
		int st;
		assert_int_equal(waitpid(c, &st, 0), c);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child %d: %s %d\n", round, WIFEXITED(st) ? "exit" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			bad++;
		}
	}
	__atomic_store_n(&churn_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(bad, 0);
}

static void test_foreign_free_reported(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	static int not_heap;
	pid_t c = fork();
	if (c == 0) {
		dup2(fds[1], 2);
		void *volatile foreign = &not_heap;
		free(foreign);
		_exit(0); /* the default misuse policy reports, drops the free and goes on */
	}
	close(fds[1]);
	char buf[1024] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(buf) - 1 && (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	int st;
	waitpid(c, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char ptr[32];
	snprintf(ptr, sizeof(ptr), "%lx", (unsigned long)(uintptr_t)&not_heap);
	assert_non_null(strstr(buf, "free"));
	assert_non_null(strstr(buf, ptr));
}

/* SLABKIT_LEAKS=1 and SLABKIT_STATS=slabinfo under the preload: a child
 * (this program again, in "leak" mode) leaks two blocks; at exit the leak
 * report names this program's call sites, and the slabinfo report shows
 * the libc classes. */
static void leak_mode(void)
{
	for (int i = 0; i < 5; i++) {
		char *volatile p = malloc(100);
		p[0] = 1;
	}
	char *volatile big = malloc(300000);
	big[0] = 1;
	exit(0);
}

static void test_leaks_and_stats_at_exit(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t c = fork();
	if (c == 0) {
		dup2(fds[1], 2);
		setenv("SLABKIT_LEAKS", "1", 1);
		setenv("SLABKIT_STATS", "slabinfo", 1);
		execl("/proc/self/exe", "preload_check", "leak", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	static char buf[65536];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(buf) - 1 && (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = 0;
	close(fds[0]);
	int st;
	waitpid(c, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_non_null(strstr(buf, "leaks in the process at exit: 6 objects"));
	assert_non_null(strstr(buf, "allocated at preload_check+"));
	assert_non_null(strstr(buf, "libc-112"));
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "leak"))
		leak_mode();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malloc_is_slabkit),
		cmocka_unit_test(test_errno_rules),
		cmocka_unit_test(test_alignment),
		cmocka_unit_test(test_realloc_keeps_contents),
		cmocka_unit_test(test_threads_come_and_go),
		cmocka_unit_test(test_fork_while_threads_allocate),
		cmocka_unit_test(test_foreign_free_reported),
		cmocka_unit_test(test_leaks_and_stats_at_exit),
	};
	return cmocka_run_group_tests_name("preload", tests, NULL, NULL);
}
