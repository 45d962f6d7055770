/*
 * Shared helpers for slabkit's cmocka suites.
 *
 *  - A recorder for the panic hook and the message hook: every line slabkit
 *    reports is kept for the running test, so a test can ask "was a line
 *    containing X and Y printed?".  A panic the test did not announce with
 *    sk_expect_panics() fails the test in its teardown, because the default
 *    hook would have aborted the program.
 *  - A fresh-init fixture: each cmocka group starts with slabkit_init(NULL)
 *    (after a slabkit_fini() if something already initialised the library,
 *    e.g. a MALLOC_DEFINE constructor) and ends with slabkit_fini().
 *  - Small tools: a per-thread PRNG, monotonic time, report scanning,
 *    the stress scale factor.
 *
 * Header-only; a program made of several files shares one recorder.  It never
 * defines UNIT_TESTING (cmocka would then wrap malloc/free, and these tests
 * hand libc pointers to slabkit on purpose).
 *
 * Lock order: sk_cap.lock is a leaf; the hooks may be called with slabkit
 * locks held, so nothing here calls into slabkit while holding it.
 */
#ifndef SLABKIT_SK_TEST_H
#define SLABKIT_SK_TEST_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <slabkit/slabkit.h>

#define SK_CAPTURE_LINES 256
#define SK_CAPTURE_LEN 512

/*
 * What the hooks recorded since the last sk_capture_reset().
 * Synchronization: lock (hooks may run on any thread).
 */
struct sk_capture {
	pthread_mutex_t lock;
	unsigned nlines;          /* message-hook lines kept (<= SK_CAPTURE_LINES) */
	unsigned lines_seen;      /* message-hook lines received, kept or not */
	unsigned npanics;         /* panic-hook calls received */
	bool expect_panics;       /* the running test provokes misuse on purpose */
	bool quiet;               /* do not echo messages to stderr */
	bool verbose;             /* $SK_TEST_VERBOSE: echo everything */
	char lines[SK_CAPTURE_LINES][SK_CAPTURE_LEN];
	char panics[SK_CAPTURE_LINES][SK_CAPTURE_LEN];
};

/* One instance per program even when several files include this header
 * (the conformance suite): a weak definition the linker merges. */
__attribute__((weak)) struct sk_capture sk_cap = { .lock = PTHREAD_MUTEX_INITIALIZER };

static inline void sk_capture_message(const char *line)
{
	pthread_mutex_lock(&sk_cap.lock);
	if (sk_cap.nlines < SK_CAPTURE_LINES)
		snprintf(sk_cap.lines[sk_cap.nlines++], SK_CAPTURE_LEN, "%s", line);
	sk_cap.lines_seen++;
	bool echo = sk_cap.verbose || !sk_cap.quiet;
	pthread_mutex_unlock(&sk_cap.lock);
	if (echo)
		fprintf(stderr, "  [slabkit message] %s\n", line);
}

static inline void sk_capture_panic(const char *message)
{
	pthread_mutex_lock(&sk_cap.lock);
	unsigned n = sk_cap.npanics++;
	if (n < SK_CAPTURE_LINES)
		snprintf(sk_cap.panics[n], SK_CAPTURE_LEN, "%s", message ? message : "(null)");
	bool echo = sk_cap.verbose || !sk_cap.expect_panics;
	pthread_mutex_unlock(&sk_cap.lock);
	if (echo)
		fprintf(stderr, "  [slabkit panic] %s\n", message ? message : "(null)");
}

/* Install both hooks (they persist across slabkit_fini/init). */
static inline void sk_install_hooks(void)
{
	sk_cap.verbose = getenv("SK_TEST_VERBOSE") != NULL;
	/* The suites check the allocators' own behaviour (fast paths, reuse
	 * order, footprints): in an ASan build or under valgrind they run
	 * without the sanitizer mode (docs/debug.md) unless a test asks. */
	setenv("SLABKIT_SANITIZE", "off", 0);
	/* They count refused frees through the panic hook: the panic policy
	 * (the default, report, is tested in conformance_misuse.c). */
	setenv("SLABKIT_MISUSE", "panic", 0);
	slabkit_set_message_hook(sk_capture_message);
	slabkit_set_panic_hook(sk_capture_panic);
}

static inline void sk_capture_reset(void)
{
	pthread_mutex_lock(&sk_cap.lock);
	sk_cap.nlines = 0;
	sk_cap.lines_seen = 0;
	sk_cap.npanics = 0;
	sk_cap.expect_panics = false;
	sk_cap.quiet = false;
	pthread_mutex_unlock(&sk_cap.lock);
}

/* The running test provokes panics (misuse) and messages on purpose. */
static inline void sk_expect_panics(void)
{
	pthread_mutex_lock(&sk_cap.lock);
	sk_cap.expect_panics = true;
	sk_cap.quiet = true;
	pthread_mutex_unlock(&sk_cap.lock);
}

/* The running test provokes messages (leak reports...) on purpose. */
static inline void sk_expect_messages(void)
{
	pthread_mutex_lock(&sk_cap.lock);
	sk_cap.quiet = true;
	pthread_mutex_unlock(&sk_cap.lock);
}

static inline unsigned sk_panic_count(void)
{
	pthread_mutex_lock(&sk_cap.lock);
	unsigned n = sk_cap.npanics;
	pthread_mutex_unlock(&sk_cap.lock);
	return n;
}

static inline unsigned sk_message_count(void)
{
	pthread_mutex_lock(&sk_cap.lock);
	unsigned n = sk_cap.lines_seen;
	pthread_mutex_unlock(&sk_cap.lock);
	return n;
}

/* Number of recorded lines (messages and panic texts) containing every
 * non-NULL needle.  A message line and the panic text of the same misuse
 * both count. */
static inline unsigned sk_captured(const char *a, const char *b, const char *c)
{
	unsigned hits = 0;
	pthread_mutex_lock(&sk_cap.lock);
	for (unsigned pass = 0; pass < 2; pass++) {
		unsigned n = pass ? sk_cap.npanics : sk_cap.nlines;
		if (n > SK_CAPTURE_LINES)
			n = SK_CAPTURE_LINES;
		for (unsigned i = 0; i < n; i++) {
			const char *l = pass ? sk_cap.panics[i] : sk_cap.lines[i];
			if ((!a || strstr(l, a)) && (!b || strstr(l, b)) && (!c || strstr(l, c)))
				hits++;
		}
	}
	pthread_mutex_unlock(&sk_cap.lock);
	return hits;
}

/* Print what was captured (for a failing assertion's context). */
static inline void sk_capture_dump(const char *why)
{
	pthread_mutex_lock(&sk_cap.lock);
	fprintf(stderr, "  --- captured (%s): %u message(s), %u panic(s)\n", why, sk_cap.lines_seen,
		sk_cap.npanics);
	for (unsigned i = 0; i < sk_cap.nlines; i++)
		fprintf(stderr, "  message: %s\n", sk_cap.lines[i]);
	for (unsigned i = 0; i < sk_cap.npanics && i < SK_CAPTURE_LINES; i++)
		fprintf(stderr, "  panic:   %s\n", sk_cap.panics[i]);
	pthread_mutex_unlock(&sk_cap.lock);
}

/* Assert that a line containing all needles was reported; dump otherwise. */
static inline void sk_assert_reported_at(const char *a, const char *b, const char *c,
					 const char *file, int line)
{
	if (sk_captured(a, b, c) != 0)
		return;
	fprintf(stderr, "  expected a line containing \"%s\" \"%s\" \"%s\"\n", a ? a : "",
		b ? b : "", c ? c : "");
	sk_capture_dump("expected line missing");
	_fail(file, line);
}
#define sk_assert_reported(a, b, c) sk_assert_reported_at((a), (b), (c), __FILE__, __LINE__)

/* The pointer as slabkit's messages spell it, without "0x" and leading
 * zeros, so "%p", "0x%lx" and "%#018lx" all contain it. */
static inline const char *sk_ptr_text(const void *p, char buf[32])
{
	snprintf(buf, 32, "%lx", (unsigned long)(uintptr_t)p);
	return buf;
}

/* --- Fixtures --- */

/* (Re)initialise slabkit with cfg (NULL: defaults and environment). */
static inline int sk_fresh_init(const struct slabkit_config *cfg)
{
	sk_install_hooks();
	int rc = slabkit_init(cfg);
	if (rc == -EALREADY) {
		slabkit_fini();
		rc = slabkit_init(cfg);
	}
	return rc;
}

/*
 * $SK_TEST_ROTATE_BACKENDS=1 (the mixed conformance run): each test makes
 * its caches and zones on the next compiled backend in turn, whatever the
 * process default is, so that one process holds caches of every backend.
 */
static inline bool sk_rotating_backends(void)
{
	const char *rotate = getenv("SK_TEST_ROTATE_BACKENDS");
	return rotate && strcmp(rotate, "1") == 0;
}

/* The turn-th compiled backend, round the list. */
static inline void sk_backend_in_turn(unsigned turn, char *name, size_t len)
{
	const char *list = slabkit_backends_compiled();
	unsigned count = 1;
	for (const char *s = list; *s; s++)
		count += *s == ',';
	unsigned pick = turn % count;
	const char *s = list;
	while (pick--)
		s = strchr(s, ',') + 1;
	snprintf(name, len, "%.*s", (int)strcspn(s, ","), s);
}

static inline void sk_rotate_backend(void)
{
	static unsigned turn;
	char name[16];
	if (!sk_rotating_backends())
		return;
	sk_backend_in_turn(turn++, name, sizeof(name));
	if (slabkit_create_backend(name) != 0)
		fail_msg("slabkit_create_backend(\"%s\") failed", name);
}

/* Before init: give every kmalloc and malloc(9) class a backend in turn
 * through $SLABKIT_TUNE (unless the run sets it itself). */
static inline void sk_rotate_class_backends(void)
{
	static const char *const classes[] = {
		"kmalloc-8", "kmalloc-16", "kmalloc-32", "kmalloc-64", "kmalloc-96", "kmalloc-128",
		"kmalloc-192", "kmalloc-256", "kmalloc-512", "kmalloc-1k", "kmalloc-2k", "kmalloc-4k",
		"kmalloc-8k", "malloc-16", "malloc-32", "malloc-64", "malloc-128", "malloc-256",
		"malloc-384", "malloc-512", "malloc-1024", "malloc-2048", "malloc-4096",
		"malloc-8192", "malloc-16384", "malloc-32768", "malloc-65536",
	};
	char tune[2048] = "", name[16];
	if (!sk_rotating_backends() || getenv("SLABKIT_TUNE"))
		return;
	for (unsigned i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		sk_backend_in_turn(i, name, sizeof(name));
		size_t used = strlen(tune);
		snprintf(tune + used, sizeof(tune) - used, "%s:backend=%s;", classes[i], name);
	}
	setenv("SLABKIT_TUNE", tune, 1);
}

static inline int sk_group_setup(void **state)
{
	(void)state;
	sk_rotate_class_backends();
	int rc = sk_fresh_init(NULL);
	if (rc != 0) {
		fprintf(stderr, "sk_group_setup: slabkit_init(NULL) = %d\n", rc);
		return -1;
	}
	return 0;
}

static inline int sk_group_teardown(void **state)
{
	(void)state;
	sk_capture_reset();
	sk_expect_messages(); /* fini reports leaks the misuse tests left on purpose */
	slabkit_fini();
	return 0;
}

static inline int sk_test_setup(void **state)
{
	(void)state;
	sk_capture_reset();
	sk_rotate_backend();
	return 0;
}

/* A panic nobody asked for would have aborted the program: fail the test. */
static inline int sk_test_teardown(void **state)
{
	(void)state;
	if (sk_panic_count() != 0 && !sk_cap.expect_panics) {
		sk_capture_dump("unexpected panic");
		return -1;
	}
	return 0;
}

#define SK_TEST(fn) cmocka_unit_test_setup_teardown(fn, sk_test_setup, sk_test_teardown)

/* $SK_TEST_FILTER: a cmocka pattern ("*krealloc*") selecting the tests to run. */
static inline void sk_apply_test_filter(void)
{
	const char *f = getenv("SK_TEST_FILTER");
	if (f && *f)
		cmocka_set_test_filter(f);
}

/* --- Small tools --- */

static inline uint64_t sk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sk_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* xorshift64*: per-thread, reproducible from a seed. */
static inline uint64_t sk_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* TSan runs these tests 10-20 times slower: its builds do a quarter of the
 * iterations so each stress test stays within its time budget. */
#if defined(__SANITIZE_THREAD__)
#define SK_SANITIZER_SCALE 0.25
#else
#define SK_SANITIZER_SCALE 1.0
#endif

/* Multiplier for stress iteration counts: $SLABKIT_STRESS_SCALE (default 1),
 * times SK_SANITIZER_SCALE. */
static inline double sk_stress_scale(void)
{
	const char *s = getenv("SLABKIT_STRESS_SCALE");
	double v = s ? strtod(s, NULL) : 1.0;
	return (v > 0.001 ? v : 1.0) * SK_SANITIZER_SCALE;
}

static inline unsigned long sk_scaled(unsigned long base)
{
	double v = (double)base * sk_stress_scale();
	return v < 1.0 ? 1ul : (unsigned long)v;
}

/* The cache line size the machine reports (what slabkit detects too). */
static inline size_t sk_cache_line(void)
{
	long l = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
	return l > 0 ? (size_t)l : 64;
}

static inline bool sk_backend_is(const char *name)
{
	const char *b = slabkit_backend();
	return b && strcmp(b, name) == 0;
}

/* Whether `word` appears in the report as a whole token: preceded by the
 * line start or a blank, followed by a blank, ':', ',', or the line end.
 * On a miss the report is copied to stderr. */
static inline bool sk_report_has(void (*report)(FILE *), const char *word)
{
	FILE *f = tmpfile();
	if (!f)
		return false;
	report(f);
	fflush(f);
	rewind(f);
	char line[1024];
	size_t wl = strlen(word);
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		for (char *s = strstr(line, word); s; s = strstr(s + 1, word)) {
			bool start_ok = s == line || s[-1] == ' ' || s[-1] == '\t';
			char e = s[wl];
			bool end_ok = e == '\0' || e == ' ' || e == '\t' || e == ':' || e == ',' ||
				      e == '\n';
			if (start_ok && end_ok) {
				found = true;
				break;
			}
		}
	}
	if (!found) {
		fprintf(stderr, "  report does not name \"%s\"; it reads:\n", word);
		rewind(f);
		while (fgets(line, sizeof(line), f))
			fprintf(stderr, "  | %s", line);
	}
	fclose(f);
	return found;
}

/* Fill / check a block with a pattern derived from a 64-bit tag.  Byte i
 * of the pattern depends only on (tag, i), so any prefix of a filled block
 * checks against the same tag (krealloc and realloc tests rely on it). */
static inline uint64_t sk_pattern_word(uint64_t tag, size_t offset)
{
	return tag ^ (offset * 0x9E3779B97F4A7C15ULL) ^ 0x0123456789ABCDEFULL;
}

static inline void sk_fill(void *p, size_t n, uint64_t tag)
{
	unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = sk_pattern_word(tag, i);
		memcpy(b + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = sk_pattern_word(tag, i);
		memcpy(b + i, &w, n - i);
	}
}

/* Offset of the first byte that differs from the pattern, or SIZE_MAX. */
static inline size_t sk_check(const void *p, size_t n, uint64_t tag)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = sk_pattern_word(tag, i), v = 0;
		size_t k = n - i < 8 ? n - i : 8;
		memcpy(&v, b + i, k);
		if (k < 8)
			w &= (1ULL << (k * 8)) - 1;
		if (v != w) {
			for (size_t j = 0; j < k; j++)
				if (((v >> (j * 8)) & 0xff) != ((w >> (j * 8)) & 0xff))
					return i + j;
		}
	}
	return SIZE_MAX;
}

/* Offset of the first non-zero byte, or SIZE_MAX. */
static inline size_t sk_first_nonzero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return i;
	return SIZE_MAX;
}

static inline int sk_cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

/* True when the n blocks of `stride` bytes at ptrs[] are pairwise disjoint
 * (sorts ptrs in place). */
static inline bool sk_disjoint(void **ptrs, size_t n, size_t stride)
{
	qsort(ptrs, n, sizeof(*ptrs), sk_cmp_ptr);
	for (size_t i = 1; i < n; i++)
		if ((uintptr_t)ptrs[i] - (uintptr_t)ptrs[i - 1] < stride)
			return false;
	return true;
}

/* Cache figures, failing the test when the cache is unknown. */
static inline struct slabkit_cache_info sk_info(const char *name)
{
	struct slabkit_cache_info info;
	memset(&info, 0, sizeof(info));
	int rc = slabkit_cache_info_by_name(name, &info);
	if (rc != 0) {
		fprintf(stderr, "  slabkit_cache_info_by_name(\"%s\") = %d\n", name, rc);
		fail();
	}
	return info;
}

/* Whether the cache named `cache` runs on `backend`: a cache's own backend,
 * which the mixed conformance run rotates (sk_rotate_backend). */
static inline bool sk_cache_backend_is(const char *cache, const char *backend)
{
	return strcmp(sk_info(cache).backend, backend) == 0;
}


/* Column `col` of a zone's `vmstat -z` line (0 SIZE, 1 LIMIT, 2 USED,
 * 3 FREE, 4 REQ, 5 FAIL, 6 SLEEP, 7 XDOMAIN), or -1 without such a line. */
static inline long sk_vmstat_z_column(const char *zone, int col)
{
	FILE *f = tmpfile();
	char line[512];
	long value = -1;

	assert_non_null(f);
	slabkit_report_vmstat_z(f);
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(zone);
		if (strncmp(line, zone, n) || (line[n] != ' ' && line[n] != ':'))
			continue;
		long v[8];
		const char *rest = strchr(line + n, ' ');
		if (rest && sscanf(rest, " %ld, %ld, %ld, %ld, %ld, %ld, %ld, %ld", &v[0], &v[1], &v[2],
				   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
			value = v[col];
	}
	fclose(f);
	return value;
}

#endif /* SLABKIT_SK_TEST_H */
