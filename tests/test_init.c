/*
 * Initialisation, configuration, lazy init and their error paths.
 *
 * No fixture: every test sets slabkit up and tears it down itself, and the
 * first tests run before anything initialised the library (this file
 * defines no MALLOC_DEFINE, whose constructor could touch slabkit early).
 * Order matters: cmocka runs the tests as listed in main().
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "sk_test.h"

/* --- stderr capture: fd 2 into a temporary file --- */

struct stderr_capture {
	int saved_fd;
	FILE *file;
};

static void stderr_begin(struct stderr_capture *c)
{
	fflush(stderr);
	c->file = tmpfile();
	assert_non_null(c->file);
	c->saved_fd = dup(2);
	assert_true(c->saved_fd >= 0);
	assert_true(dup2(fileno(c->file), 2) >= 0);
}

/* Restore fd 2; the captured text goes to buf (NUL-terminated). */
static void stderr_end(struct stderr_capture *c, char *buf, size_t len)
{
	fflush(stderr);
	dup2(c->saved_fd, 2);
	close(c->saved_fd);
	rewind(c->file);
	size_t n = fread(buf, 1, len - 1, c->file);
	buf[n] = '\0';
	fclose(c->file);
}

/* Every name of the comma-separated list appears in text. */
static bool names_every_backend(const char *text, const char *list)
{
	char name[32];
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, ",");
		if (n == 0 || n >= sizeof(name))
			return false;
		memcpy(name, s, n);
		name[n] = '\0';
		if (!strstr(text, name))
			return false;
		s += n;
		if (*s == ',')
			s++;
	}
	return true;
}

/* --- Before any init --- */

static void test_uninitialised(void **state)
{
	(void)state;
	assert_null(slabkit_backend());
	const char *list = slabkit_backends_compiled();
	assert_non_null(list);
	assert_true(strlen(list) > 0);
}

/* Fork a child that runs `body` and returns its exit status; its stderr is
 * collected into out. */
static int run_child(void (*body)(void), char *out, size_t len)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		body();
		_exit(0);
	}
	close(fds[1]);
	size_t used = 0;
	ssize_t r;
	while ((r = read(fds[0], out + used, len - 1 - used)) > 0 && used < len - 1)
		used += (size_t)r;
	out[used] = '\0';
	close(fds[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status))
		fail_msg("child killed by signal %d; stderr:\n%s", WTERMSIG(status), out);
	return WEXITSTATUS(status);
}

static void child_lazy_ok(void)
{
	void *p = kmalloc(32, GFP_KERNEL);
	if (!p || !slabkit_backend())
		_exit(1);
	memset(p, 1, 32);
	kfree(p);
	const char *env = getenv("SLABKIT_BACKEND");
	if (env && *env && strcmp(env, slabkit_backend()) != 0)
		_exit(4);
	_exit(0);
}

static void child_lazy_bogus(void)
{
	setenv("SLABKIT_BACKEND", "bogus", 1);
	void *p = kmalloc(32, GFP_KERNEL);
	(void)p;
	_exit(0); /* reaching here means the lazy init did not fail */
}

static void child_lazy_bogus_uma(void)
{
	setenv("SLABKIT_BACKEND", "bogus", 1);
	uma_zone_t z = uma_zcreate("skt_lazy", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	(void)z;
	_exit(0);
}

/* A program that never calls slabkit_init is initialised by its first
 * allocation. */
static void test_lazy_init(void **state)
{
	(void)state;
	char out[4096];
	int rc = run_child(child_lazy_ok, out, sizeof(out));
	if (rc != 0)
		fail_msg("lazy-init child exited %d; stderr:\n%s", rc, out);
}

/* A lazy init that fails prints why and exits with status 2. */
static void test_lazy_init_bogus_backend(void **state)
{
	(void)state;
	char out[4096];
	void (*bodies[])(void) = { child_lazy_bogus, child_lazy_bogus_uma };
	for (int i = 0; i < 2; i++) {
		int rc = run_child(bodies[i], out, sizeof(out));
		if (rc != 2)
			fail_msg("lazy init with SLABKIT_BACKEND=bogus: exit status %d, expected 2; "
				 "stderr:\n%s", rc, out);
		if (!strstr(out, "bogus"))
			fail_msg("the lazy-init failure does not name \"bogus\":\n%s", out);
		if (!names_every_backend(out, slabkit_backends_compiled()))
			fail_msg("the lazy-init failure does not list the compiled backends (%s):\n%s",
				 slabkit_backends_compiled(), out);
	}
}

/* --- Explicit init --- */

static void test_init_bogus_backend(void **state)
{
	(void)state;
	sk_install_hooks();
	sk_capture_reset();
	sk_expect_messages();
	struct slabkit_config cfg = { .backend = "bogus", .tick_ms = -1 };
	struct stderr_capture cap;
	char err[4096];
	stderr_begin(&cap);
	int rc = slabkit_init(&cfg);
	stderr_end(&cap, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(slabkit_backend());
	/* The reason names the bad name and the compiled-in list, on stderr or
	 * through the message hook. */
	bool in_stderr = strstr(err, "bogus") &&
			 names_every_backend(err, slabkit_backends_compiled());
	bool in_hook = sk_captured("bogus", NULL, NULL) > 0;
	if (!in_stderr && !in_hook) {
		sk_capture_dump("init(bogus)");
		fail_msg("slabkit_init(\"bogus\") reported nothing naming it and the list \"%s\"; "
			 "stderr:\n%s", slabkit_backends_compiled(), err);
	}
	/* Nothing half-initialised: a good init works afterwards. */
	assert_int_equal(slabkit_init(NULL), 0);
	assert_non_null(slabkit_backend());
	slabkit_fini();
}

static void test_init_env_bogus(void **state)
{
	(void)state;
	sk_expect_messages();
	char *saved = getenv("SLABKIT_BACKEND") ? strdup(getenv("SLABKIT_BACKEND")) : NULL;
	setenv("SLABKIT_BACKEND", "bogus", 1);
	struct stderr_capture cap;
	char err[4096];
	stderr_begin(&cap);
	int rc = slabkit_init(NULL);
	stderr_end(&cap, err, sizeof(err));
	if (saved) {
		setenv("SLABKIT_BACKEND", saved, 1);
		free(saved);
	} else {
		unsetenv("SLABKIT_BACKEND");
	}
	if (rc == 0)
		slabkit_fini();
	assert_int_equal(rc, -EINVAL);
	assert_true(strstr(err, "bogus") || sk_captured("bogus", NULL, NULL) > 0);
}

static void test_init_twice(void **state)
{
	(void)state;
	assert_int_equal(slabkit_init(NULL), 0);
	const char *b = slabkit_backend();
	assert_non_null(b);
	assert_int_equal(slabkit_init(NULL), -EALREADY);
	struct slabkit_config other = { .backend = "slab", .tick_ms = -1 };
	assert_int_equal(slabkit_init(&other), -EALREADY);
	assert_ptr_equal(slabkit_backend(), b);
	void *p = kmalloc(10, GFP_KERNEL);
	assert_non_null(p);
	kfree(p);
	slabkit_fini();
	assert_null(slabkit_backend());
}

static int smoke_ctor_calls;
static void smoke_ctor(void *p)
{
	memset(p, 0x5C, 40);
	smoke_ctor_calls++;
}

static struct malloc_type smoke_type[1] = { { NULL, M_VERSION, "sktinit", NULL } };

/* Every front end works on the active backend. */
static void smoke(const char *backend)
{
	void *k[50];
	for (int i = 0; i < 50; i++) {
		k[i] = kmalloc((size_t)(i + 1) * 173, GFP_KERNEL);
		if (!k[i])
			fail_msg("%s: kmalloc(%d) = NULL", backend, (i + 1) * 173);
		memset(k[i], i, (size_t)(i + 1) * 173);
	}
	for (int i = 0; i < 50; i++)
		kfree(k[i]);

	struct kmem_cache *c = kmem_cache_create("skt_smoke", 40, 0, SLAB_HWCACHE_ALIGN, smoke_ctor);
	assert_non_null(c);
	for (int i = 0; i < 50; i++) {
		k[i] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(k[i]);
		assert_int_equal(((unsigned char *)k[i])[39], 0x5C);
	}
	assert_int_equal(sk_info("skt_smoke").in_use, 50);
	for (int i = 0; i < 50; i++)
		kmem_cache_free(c, k[i]);
	kmem_cache_destroy(c);

	uma_zone_t z = uma_zcreate("skt_smoke_zone", 88, NULL, NULL, NULL, NULL, UMA_ALIGN_CACHE, 0);
	assert_non_null(z);
	for (int i = 0; i < 50; i++) {
		k[i] = uma_zalloc(z, M_WAITOK | M_ZERO);
		assert_non_null(k[i]);
	}
	assert_int_equal(uma_zone_get_cur(z), 50);
	for (int i = 0; i < 50; i++)
		uma_zfree(z, k[i]);
	uma_zdestroy(z);

	for (int i = 0; i < 50; i++) {
		k[i] = bsd_malloc((size_t)(i + 1) * 311, smoke_type, M_WAITOK);
		assert_non_null(k[i]);
	}
	for (int i = 0; i < 50; i++)
		bsd_free(k[i], smoke_type);
}

/* fini then init with each compiled backend in turn. */
static void test_each_backend(void **state)
{
	(void)state;
	sk_install_hooks();
	slabkit_malloc_type_register(smoke_type);
	const char *list = slabkit_backends_compiled();
	int count = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (const char *s = list; *s;) {
			char name[32];
			size_t n = strcspn(s, ",");
			assert_true(n > 0 && n < sizeof(name));
			memcpy(name, s, n);
			name[n] = '\0';
			struct slabkit_config cfg = { .backend = name, .tick_ms = -1 };
			int rc = slabkit_init(&cfg);
			if (rc != 0)
				fail_msg("slabkit_init(backend \"%s\") = %d", name, rc);
			assert_string_equal(slabkit_backend(), name);
			smoke(name);
			slabkit_fini();
			count++;
			s += n;
			if (*s == ',')
				s++;
		}
	}
	assert_true(count >= 2);
	assert_int_equal(slabkit_init(NULL), 0);
	slabkit_malloc_type_unregister(smoke_type);
	slabkit_fini();
}

struct mode_worker {
	atomic_int failures;
};

static void *mode_thread(void *arg)
{
	struct mode_worker *w = arg;
	for (int i = 0; i < 20000; i++) {
		void *p = kmalloc(16 + (size_t)(i % 200), GFP_KERNEL);
		if (!p) {
			atomic_fetch_add(&w->failures, 1);
			continue;
		}
		memset(p, 1, 16);
		kfree(p);
	}
	return NULL;
}

static void exercise_threads(void)
{
	struct mode_worker w = { 0 };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, mode_thread, &w), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&w.failures), 0);
}

static void test_percpu_modes(void **state)
{
	(void)state;
	sk_expect_messages();
	struct slabkit_config cfg = { .percpu = "lock", .tick_ms = -1 };
	assert_int_equal(slabkit_init(&cfg), 0);
	assert_string_equal(slabkit_percpu_mode(), "lock");
	exercise_threads();
	slabkit_fini();

	cfg.percpu = "auto";
	assert_int_equal(slabkit_init(&cfg), 0);
	const char *m = slabkit_percpu_mode();
	assert_true(strcmp(m, "rseq") == 0 || strcmp(m, "lock") == 0);
	exercise_threads();
	slabkit_fini();

	/* rseq is either available (and used) or refused with an error. */
	cfg.percpu = "rseq";
	int rc = slabkit_init(&cfg);
	if (rc == 0) {
		assert_string_equal(slabkit_percpu_mode(), "rseq");
		exercise_threads();
		slabkit_fini();
	} else {
		assert_true(rc < 0 && rc != -EALREADY);
	}

	cfg.percpu = "bogus";
	struct stderr_capture cap;
	char err[2048];
	stderr_begin(&cap);
	rc = slabkit_init(&cfg);
	stderr_end(&cap, err, sizeof(err));
	if (rc == 0)
		slabkit_fini();
	assert_int_equal(rc, -EINVAL);
}

static void test_percpu_env(void **state)
{
	(void)state;
	setenv("SLABKIT_PERCPU", "lock", 1);
	int rc = slabkit_init(NULL);
	unsetenv("SLABKIT_PERCPU");
	assert_int_equal(rc, 0);
	assert_string_equal(slabkit_percpu_mode(), "lock");
	exercise_threads();
	slabkit_fini();
}

/* With a maintenance thread running, allocation works and fini stops it
 * promptly. */
static void test_tick_thread(void **state)
{
	(void)state;
	struct slabkit_config cfg = { .tick_ms = 5 };
	assert_int_equal(slabkit_init(&cfg), 0);
	struct kmem_cache *c = kmem_cache_create("skt_ticked", 128, 0, 0, NULL);
	assert_non_null(c);
	uint64_t end = sk_now_ns() + 100 * 1000000ull;
	void *keep[64] = { 0 };
	unsigned i = 0;
	while (sk_now_ns() < end) {
		unsigned s = i++ % 64;
		if (keep[s])
			kmem_cache_free(c, keep[s]);
		keep[s] = kmem_cache_alloc(c, GFP_KERNEL);
		assert_non_null(keep[s]);
	}
	for (unsigned s = 0; s < 64; s++)
		if (keep[s])
			kmem_cache_free(c, keep[s]);
	kmem_cache_destroy(c);
	uint64_t t0 = sk_now_ns();
	slabkit_fini();
	uint64_t ms = (sk_now_ns() - t0) / 1000000;
	if (ms > 2000)
		fail_msg("slabkit_fini took %llu ms with the tick thread running",
			 (unsigned long long)ms);

	/* No thread: slabkit_tick() runs a pass by hand. */
	cfg.tick_ms = -1;
	assert_int_equal(slabkit_init(&cfg), 0);
	slabkit_tick();
	slabkit_fini();
}

/* A small arena runs out: allocations fail (no crash), failures are
 * counted, and freeing makes room again.  The provider may round the
 * arena up (to its largest block), so the bound is "at least what was
 * asked, less than the default". */
static void check_small_arena(size_t asked_bytes, uint64_t default_pages)
{
	struct slabkit_stats s;
	slabkit_stats(&s);
	assert_true(s.nodes >= 1);
	uint64_t per_node = s.pages_reserved / s.nodes * 4096;
	if (per_node < asked_bytes || s.pages_reserved >= default_pages)
		fail_msg("asked for %zu bytes per node: %llu bytes per node reserved "
			 "(default run: %llu pages in all)", asked_bytes,
			 (unsigned long long)per_node, (unsigned long long)default_pages);
	size_t cap = (size_t)(s.pages_reserved * 4096 >> 20) + 64;
	void **p = calloc(cap, sizeof(*p));
	assert_non_null(p);
	size_t got = 0;
	while (got < cap) {
		p[got] = kmalloc(1u << 20, GFP_KERNEL | __GFP_RETRY_MAYFAIL | __GFP_NOWARN);
		if (!p[got])
			break;
		memset(p[got], 0x1, 64);
		got++;
	}
	if (got == cap)
		fail_msg("%zu 1 MiB allocations fit in %llu reserved pages", got,
			 (unsigned long long)s.pages_reserved);
	assert_true(got > 0);
	slabkit_stats(&s);
	assert_true(s.page_alloc_failures > 0);
	for (size_t i = 0; i < got; i++)
		kfree(p[i]);
	free(p);
	void *again = kmalloc(1u << 20, GFP_KERNEL);
	assert_non_null(again);
	kfree(again);
}

static void test_arena_limit(void **state)
{
	(void)state;
	sk_expect_messages();
	assert_int_equal(slabkit_init(NULL), 0);
	struct slabkit_stats def;
	slabkit_stats(&def);
	slabkit_fini();

	struct slabkit_config cfg = { .arena_bytes_per_node = 64u << 20, .tick_ms = -1 };
	assert_int_equal(slabkit_init(&cfg), 0);
	check_small_arena(64u << 20, def.pages_reserved);
	slabkit_fini();

	setenv("SLABKIT_ARENA_MB", "48", 1);
	int rc = slabkit_init(NULL);
	unsetenv("SLABKIT_ARENA_MB");
	assert_int_equal(rc, 0);
	check_small_arena(48u << 20, def.pages_reserved);
	slabkit_fini();
}

static unsigned count_nowait_failures(void)
{
	unsigned nulls = 0;
	for (int i = 0; i < 200; i++) {
		void *p = kmalloc(65536, GFP_NOWAIT);
		if (!p)
			nulls++;
		else
			kfree(p);
	}
	return nulls;
}

static void test_fail_every_env(void **state)
{
	(void)state;
	setenv("SLABKIT_FAIL_EVERY", "3", 1);
	int rc = slabkit_init(NULL);
	unsetenv("SLABKIT_FAIL_EVERY");
	assert_int_equal(rc, 0);
	assert_true(count_nowait_failures() > 0);
	struct slabkit_stats s;
	slabkit_stats(&s);
	assert_true(s.page_alloc_failures > 0);
	slabkit_fini();

	assert_int_equal(slabkit_init(NULL), 0);
	assert_int_equal(count_nowait_failures(), 0);
	slabkit_stats(&s);
	assert_int_equal(s.page_alloc_failures, 0);
	slabkit_fini();
}

static bool compiled(const char *backend)
{
	const char *list = slabkit_backends_compiled();
	size_t n = strlen(backend);
	for (const char *s = list; *s;) {
		size_t len = strcspn(s, ",");
		if (len == n && strncmp(s, backend, n) == 0)
			return true;
		s += len;
		if (*s == ',')
			s++;
	}
	return false;
}

/* Per-cache tunables from the config string (SLAB has limit/batchcount). */
static void test_tune_config(void **state)
{
	(void)state;
	if (!compiled("slab"))
		skip();
	struct slabkit_config cfg = {
		.backend = "slab",
		.tune = "skt_tuned:limit=60,batchcount=30;kmalloc-64:limit=50,batchcount=20",
		.tick_ms = -1,
	};
	assert_int_equal(slabkit_init(&cfg), 0);
	struct kmem_cache *c = kmem_cache_create("skt_tuned", 100, 0, 0, NULL);
	assert_non_null(c);
	struct slabkit_cache_info info = sk_info("skt_tuned");
	assert_int_equal(info.limit, 60);
	assert_int_equal(info.batchcount, 30);
	assert_int_equal(slabkit_cache_tune("skt_tuned", "limit", 100), 0);
	assert_int_equal(sk_info("skt_tuned").limit, 100);
	assert_int_equal(slabkit_cache_tune("skt_tuned", "limit", -5), -EINVAL);
	assert_int_equal(slabkit_cache_tune("skt_tuned", "no_such_key", 1), -EINVAL);
	void *o[200];
	for (int i = 0; i < 200; i++)
		o[i] = kmem_cache_alloc(c, GFP_KERNEL);
	for (int i = 0; i < 200; i++)
		kmem_cache_free(c, o[i]);
	kmem_cache_destroy(c);
	void *k = kmalloc(64, GFP_KERNEL);
	kfree(k);
	struct slabkit_cache_info km = sk_info("kmalloc-64");
	assert_int_equal(km.limit, 50);
	assert_int_equal(km.batchcount, 20);
	slabkit_fini();
}

/* After fini, a new init starts from nothing: caches of the previous run
 * are gone, the same names can be created again. */
static void test_reinit_fresh_state(void **state)
{
	(void)state;
	sk_install_hooks();
	sk_expect_messages();
	assert_int_equal(slabkit_init(NULL), 0);
	struct kmem_cache *c = kmem_cache_create("skt_old_run", 64, 0, 0, NULL);
	assert_non_null(c);
	assert_non_null(kmem_cache_alloc(c, GFP_KERNEL)); /* left live on purpose */
	slabkit_fini();
	assert_int_equal(slabkit_init(NULL), 0);
	struct slabkit_cache_info info;
	assert_int_equal(slabkit_cache_info_by_name("skt_old_run", &info), -ENOENT);
	c = kmem_cache_create("skt_old_run", 64, 0, 0, NULL);
	assert_non_null(c);
	assert_int_equal(sk_info("skt_old_run").allocs, 0);
	kmem_cache_destroy(c);
	slabkit_fini();
}

/* A test that failed half-way may leave slabkit initialised: start clean. */
static int init_test_setup(void **state)
{
	sk_test_setup(state);
	if (slabkit_backend())
		slabkit_fini();
	return 0;
}

#define INIT_TEST(fn) cmocka_unit_test_setup_teardown(fn, init_test_setup, sk_test_teardown)

int main(void)
{
	sk_apply_test_filter();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uninitialised),
		cmocka_unit_test(test_lazy_init),
		cmocka_unit_test(test_lazy_init_bogus_backend),
		INIT_TEST(test_init_bogus_backend),
		INIT_TEST(test_init_env_bogus),
		INIT_TEST(test_init_twice),
		INIT_TEST(test_each_backend),
		INIT_TEST(test_percpu_modes),
		INIT_TEST(test_percpu_env),
		INIT_TEST(test_tick_thread),
		INIT_TEST(test_arena_limit),
		INIT_TEST(test_fail_every_env),
		INIT_TEST(test_tune_config),
		INIT_TEST(test_reinit_fresh_state),
	};
	return cmocka_run_group_tests_name("init", tests, NULL, NULL);
}
