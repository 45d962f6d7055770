/*
 * Conformance: fork() while other threads allocate.
 *
 * The library registers pthread_atfork handlers that take every lock in
 * the documented order before fork() and release them on both sides, and
 * the child starts the maintenance thread again.  Without them a child
 * forked while another thread held an arena, registry, metadata or slot
 * lock deadlocks on its first allocation that needs it.
 *
 * Each child allocates and frees through the three front ends, creates and
 * destroys a cache and a zone, shrinks everything, checks that the
 * maintenance thread runs again, and (every third) forks a grandchild that
 * does the same.  A child that does not finish within a few seconds is
 * killed and fails the test.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

static unsigned count_threads(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct fork_load {
	struct kmem_cache *cache;
	uma_zone_t zone;
	atomic_bool stop;
};

static void *fork_worker(void *arg)
{
	struct fork_load *l = arg;
	uint64_t rng = (uintptr_t)&rng;
	void *keep[32] = { 0 };
	while (!atomic_load(&l->stop)) {
		unsigned k = (unsigned)(sk_rand(&rng) % 32);
		if (keep[k]) {
			switch (k % 4) {
			case 0: kfree(keep[k]); break;
			case 1: kmem_cache_free(l->cache, keep[k]); break;
			case 2: uma_zfree(l->zone, keep[k]); break;
			default: bsd_free(keep[k], M_TEST); break;
			}
			keep[k] = NULL;
			continue;
		}
		size_t n = 1 + sk_rand(&rng) % 20000;
		switch (k % 4) {
		case 0: keep[k] = kmalloc(n, GFP_KERNEL); break;
		case 1: keep[k] = kmem_cache_alloc(l->cache, GFP_KERNEL); break;
		case 2: keep[k] = uma_zalloc(l->zone, M_WAITOK); break;
		default: keep[k] = bsd_malloc(n, M_TEST, M_WAITOK); break;
		}
		if ((k % 16) == 3)
			slabkit_shrink_all(); /* drains: slot locks on every CPU */
	}
	for (unsigned k = 0; k < 32; k++)
		if (keep[k]) {
			switch (k % 4) {
			case 0: kfree(keep[k]); break;
			case 1: kmem_cache_free(l->cache, keep[k]); break;
			case 2: uma_zfree(l->zone, keep[k]); break;
			default: bsd_free(keep[k], M_TEST); break;
			}
		}
	return NULL;
}

/* What a child does; returns the exit status (0: fine). */
static int child_work(struct fork_load *l, unsigned expect_threads, bool fork_again, int depth)
{
	void *p[64];
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 64; i++) {
			switch (i % 4) {
			case 0: p[i] = kmalloc(16 + (size_t)i * 300, GFP_KERNEL); break;
			case 1: p[i] = kmem_cache_alloc(l->cache, GFP_KERNEL); break;
			case 2: p[i] = uma_zalloc(l->zone, M_WAITOK); break;
			default: p[i] = bsd_malloc(70000, M_TEST, M_WAITOK); break;
			}
			if (!p[i])
				return 10;
		}
		for (int i = 0; i < 64; i++) {
			switch (i % 4) {
			case 0: kfree(p[i]); break;
			case 1: kmem_cache_free(l->cache, p[i]); break;
			case 2: uma_zfree(l->zone, p[i]); break;
			default: bsd_free(p[i], M_TEST); break;
			}
		}
		slabkit_shrink_all();
	}
	struct kmem_cache *c = kmem_cache_create("skt_fork_child", 72, 0, 0, NULL);
	if (!c)
		return 11;
	void *o = kmem_cache_alloc(c, GFP_KERNEL);
	kmem_cache_free(c, o);
	kmem_cache_destroy(c);
	uma_zone_t z = uma_zcreate("skt_fork_child_z", 40, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	if (!z)
		return 12;
	uma_zfree(z, uma_zalloc(z, M_WAITOK));
	uma_zdestroy(z);
	slabkit_tick();
	/* The maintenance thread (if the backend has one) runs again.  (Not
	 * countable under ThreadSanitizer, whose own thread is not in the child.) */
#if !defined(__SANITIZE_THREAD__)
	if (count_threads() != expect_threads)
		return 13;
#else
	(void)expect_threads;
#endif
	if (fork_again && depth < 2) {
		pid_t g = fork();
		if (g < 0)
			return 14;
		if (g == 0)
			_exit(child_work(l, expect_threads, false, depth + 1));
		int st;
		if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 15;
	}
	return 0;
}

static void test_fork_while_allocating(void **state)
{
	(void)state;
	enum { WORKERS = 3, FORKS = 24 };
	struct slabkit_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.tick_ms = 5; /* a maintenance thread to restart in the child */
	assert_int_equal(sk_fresh_init(&cfg), 0);
	unsigned base_threads = count_threads(); /* this thread + the tick thread, if any */

	struct fork_load l = { 0 };
	l.cache = kmem_cache_create("skt_fork", 200, 0, 0, NULL);
	l.zone = uma_zcreate("skt_fork_zone", 96, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	assert_non_null(l.cache);
	assert_non_null(l.zone);
	pthread_t t[WORKERS];
	for (int i = 0; i < WORKERS; i++)
		pthread_create(&t[i], NULL, fork_worker, &l);

	int hung = 0, failed = 0, last_status = 0;
	for (int f = 0; f < FORKS; f++) {
		sk_sleep_ms(2);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(child_work(&l, base_threads, f % 3 == 0, 0));
		int st = 0;
		uint64_t until = sk_now_ns() + 20ull * 1000000000ull;
		pid_t r;
		while ((r = waitpid(pid, &st, WNOHANG)) == 0 && sk_now_ns() < until)
			sk_sleep_ms(2);
		if (r == 0) {
			hung++;
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed++;
			last_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
	}
	atomic_store(&l.stop, true);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	kmem_cache_destroy(l.cache);
	uma_zdestroy(l.zone);
	if (hung || failed)
		fail_msg("%s: of %d children forked while %d threads allocated, %d hung and %d failed "
			 "(last status %d)", slabkit_backend(), FORKS, WORKERS, hung, failed, last_status);
	assert_int_equal(sk_fresh_init(NULL), 0);
}

static const struct CMUnitTest fork_tests[] = {
	SK_TEST(test_fork_while_allocating),
};

const struct conformance_group conformance_fork = {
	"fork", fork_tests, sizeof(fork_tests) / sizeof(fork_tests[0])
};
