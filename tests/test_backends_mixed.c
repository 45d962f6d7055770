/*
 * Several policies in one process: caches, UMA zones and size classes on
 * every compiled backend side by side, chosen by slabkit_create_backend()
 * or by the tunables' `backend` key, freed with the usual calls from any
 * thread, reported and torn down per cache.
 */
#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

#include "sk_test.h"

MALLOC_DEFINE(M_MIXED, "mixed", "slabkit mixed-backend test type");

enum { MAX_BACKENDS = 4, PER_CACHE = 3000, OBJ = 96 };

/* The compiled backends, from slabkit_backends_compiled(). */
static char backends[MAX_BACKENDS][16];
static unsigned nbackends;

static void list_backends(void)
{
	nbackends = 0;
	for (const char *s = slabkit_backends_compiled(); *s && nbackends < MAX_BACKENDS;) {
		size_t n = strcspn(s, ",");
		snprintf(backends[nbackends++], sizeof(backends[0]), "%.*s", (int)n, s);
		s += n + (s[n] == ',');
	}
}

static struct kmem_cache *cache_on(const char *backend, const char *name, unsigned size)
{
	assert_int_equal(slabkit_create_backend(backend), 0);
	struct kmem_cache *c = kmem_cache_create(name, size, 0, 0, NULL);
	assert_int_equal(slabkit_create_backend(NULL), 0);
	assert_non_null(c);
	assert_string_equal(sk_info(name).backend, backend);
	return c;
}

static void test_caches_of_every_backend(void **state)
{
	(void)state;
	struct kmem_cache *c[MAX_BACKENDS];
	void **objs[MAX_BACKENDS];
	char name[96];

	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_%s", backends[b]);
		c[b] = cache_on(backends[b], name, OBJ);
		objs[b] = calloc(PER_CACHE, sizeof(void *));
		assert_non_null(objs[b]);
	}
	/* Interleave the backends so their objects live side by side. */
	for (int i = 0; i < PER_CACHE; i++)
		for (unsigned b = 0; b < nbackends; b++) {
			objs[b][i] = kmem_cache_alloc(c[b], GFP_KERNEL);
			assert_non_null(objs[b][i]);
			sk_fill(objs[b][i], OBJ, (int)(i * MAX_BACKENDS + b));
		}
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_%s", backends[b]);
		assert_int_equal(sk_info(name).in_use, PER_CACHE);
		void **sorted = malloc(PER_CACHE * sizeof(void *));
		assert_non_null(sorted);
		memcpy(sorted, objs[b], PER_CACHE * sizeof(void *));
		assert_true(sk_disjoint(sorted, PER_CACHE, OBJ)); /* sorts its copy */
		free(sorted);
	}
	for (int i = 0; i < PER_CACHE; i++)
		for (unsigned b = 0; b < nbackends; b++) {
			assert_int_equal(sk_check(objs[b][i], OBJ, (int)(i * MAX_BACKENDS + b)), SIZE_MAX);
			assert_true(ksize(objs[b][i]) >= OBJ);
			/* kfree finds every object's cache, whatever its backend. */
			if (i % 2)
				kmem_cache_free(c[b], objs[b][i]);
			else
				kfree(objs[b][i]);
		}
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_%s", backends[b]);
		assert_int_equal(sk_info(name).in_use, 0);
		kmem_cache_destroy(c[b]);
		free(objs[b]);
	}
}

static void test_unknown_backend_is_refused(void **state)
{
	(void)state;
	sk_expect_messages();
	assert_int_equal(slabkit_create_backend("slob"), 0);
	assert_int_equal(slabkit_create_backend("no_such_backend"), -EINVAL);
	sk_assert_reported("no_such_backend", "compiled in", NULL);
	/* The refused call changed nothing: the earlier choice still holds. */
	struct kmem_cache *c = kmem_cache_create("mx_still_slob", 64, 0, 0, NULL);
	assert_non_null(c);
	assert_string_equal(sk_info("mx_still_slob").backend, "slob");
	kmem_cache_destroy(c);
	assert_int_equal(slabkit_create_backend(NULL), 0);
	c = kmem_cache_create("mx_default", 64, 0, 0, NULL);
	assert_string_equal(sk_info("mx_default").backend, slabkit_backend());
	kmem_cache_destroy(c);
}

static void test_wrong_cache_across_backends(void **state)
{
	(void)state;
	sk_expect_panics();
	struct kmem_cache *a = cache_on(backends[0], "mx_wrong_a", 128);
	struct kmem_cache *b = cache_on(backends[nbackends - 1], "mx_wrong_b", 128);
	void *o = kmem_cache_alloc(a, GFP_KERNEL);
	assert_non_null(o);
	unsigned before = sk_panic_count();
	kmem_cache_free(b, o); /* an object of another cache, on another backend */
	assert_int_equal(sk_panic_count(), before + 1);
	assert_int_equal(sk_info("mx_wrong_a").in_use, 1);
	/* A pointer slabkit never returned is refused the same on every backend. */
	char on_stack[64];
	kfree(on_stack + 8);
	assert_int_equal(sk_panic_count(), before + 2);
	kmem_cache_free(a, o);
	kmem_cache_destroy(a);
	kmem_cache_destroy(b);
}

/* --- frees from other threads --- */

struct remote_batch {
	void **objs;
	int count;
};

static void *free_remote(void *arg)
{
	struct remote_batch *rb = arg;
	for (int i = 0; i < rb->count; i++)
		kfree(rb->objs[i]);
	return NULL;
}

static void test_cross_thread_frees(void **state)
{
	(void)state;
	struct kmem_cache *c[MAX_BACKENDS];
	struct remote_batch rb[MAX_BACKENDS];
	pthread_t t[MAX_BACKENDS];
	char name[96];

	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_remote_%s", backends[b]);
		c[b] = cache_on(backends[b], name, 200);
		rb[b].count = PER_CACHE;
		rb[b].objs = calloc(PER_CACHE, sizeof(void *));
		for (int i = 0; i < PER_CACHE; i++)
			assert_non_null(rb[b].objs[i] = kmem_cache_alloc(c[b], GFP_KERNEL));
	}
	for (unsigned b = 0; b < nbackends; b++)
		assert_int_equal(pthread_create(&t[b], NULL, free_remote, &rb[b]), 0);
	for (unsigned b = 0; b < nbackends; b++)
		pthread_join(t[b], NULL);
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_remote_%s", backends[b]);
		assert_int_equal(sk_info(name).in_use, 0);
		/* The memory the remote frees returned is usable again at once. */
		void *o = kmem_cache_alloc(c[b], GFP_KERNEL);
		assert_non_null(o);
		kmem_cache_free(c[b], o);
		kmem_cache_destroy(c[b]);
		free(rb[b].objs);
	}
}

static void test_zones_on_every_backend(void **state)
{
	(void)state;
	char name[96];
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_zone_%s", backends[b]);
		assert_int_equal(slabkit_create_backend(backends[b]), 0);
		uma_zone_t z = uma_zcreate(name, 72, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
		assert_int_equal(slabkit_create_backend(NULL), 0);
		assert_non_null(z);
		assert_string_equal(sk_info(name).backend, backends[b]);
		void *items[100];
		for (int i = 0; i < 100; i++)
			assert_non_null(items[i] = uma_zalloc(z, M_WAITOK | M_ZERO));
		for (int i = 0; i < 100; i++)
			uma_zfree(z, items[i]);
		assert_true(sk_report_has(slabkit_report_vmstat_z, backends[b]));
		uma_zdestroy(z);
	}
}

static void test_leaks_reported_per_cache(void **state)
{
	(void)state;
	sk_expect_messages();
	char name[96];
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_leak_%s", backends[b]);
		struct kmem_cache *c = cache_on(backends[b], name, 48);
		for (unsigned i = 0; i <= b; i++) /* b + 1 objects left behind */
			assert_non_null(kmem_cache_alloc(c, GFP_KERNEL));
		kmem_cache_destroy(c);
	}
	for (unsigned b = 0; b < nbackends; b++) {
		char count[48];
		snprintf(name, sizeof(name), "mx_leak_%s", backends[b]);
		snprintf(count, sizeof(count), ": %u objects", b + 1);
		sk_assert_reported(name, "Objects remaining", count);
	}
}

/* Reports name each cache's backend (slabinfo's last column). */
static void test_slabinfo_names_backends(void **state)
{
	(void)state;
	struct kmem_cache *c[MAX_BACKENDS];
	char name[96], line[64];
	for (unsigned b = 0; b < nbackends; b++) {
		snprintf(name, sizeof(name), "mx_report_%s", backends[b]);
		c[b] = cache_on(backends[b], name, 32);
	}
	FILE *f = tmpfile();
	assert_non_null(f);
	slabkit_report_slabinfo(f);
	rewind(f);
	unsigned found = 0;
	char buf[512];
	while (fgets(buf, sizeof(buf), f))
		for (unsigned b = 0; b < nbackends; b++) {
			snprintf(name, sizeof(name), "mx_report_%s ", backends[b]);
			snprintf(line, sizeof(line), ": backend %s\n", backends[b]);
			if (!strncmp(buf, name, strlen(name)) && strstr(buf, line))
				found |= 1u << b;
		}
	fclose(f);
	assert_int_equal(found, (1u << nbackends) - 1);
	for (unsigned b = 0; b < nbackends; b++)
		kmem_cache_destroy(c[b]);
}

/* --- the tunables' backend key: caches by name, size classes, front ends --- */

static bool has_backend(const char *name)
{
	for (unsigned b = 0; b < nbackends; b++)
		if (!strcmp(backends[b], name))
			return true;
	return false;
}

static void test_tunables_choose_backends(void **state)
{
	(void)state;
	if (!has_backend("slob") || !has_backend("uma") || !has_backend("slab")) {
		print_message("skipped: needs slab, slob and uma compiled in\n");
		return;
	}
	struct slabkit_config cfg = {
		.backend = "slub",
		.tune = "mx_dentry:backend=slob;mx_mbuf:backend=uma;kmalloc:backend=slob;"
			"kmalloc-64:backend=slab;malloc-384:backend=uma",
		.tick_ms = -1,
	};
	if (!has_backend("slub"))
		cfg.backend = "slab";
	slabkit_fini();
	assert_int_equal(slabkit_init(&cfg), 0);

	struct kmem_cache *d = kmem_cache_create("mx_dentry", 200, 0, 0, NULL);
	uma_zone_t z = uma_zcreate("mx_mbuf", 256, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	struct kmem_cache *other = kmem_cache_create("mx_other", 200, 0, 0, NULL);
	assert_non_null(d);
	assert_non_null(z);
	assert_non_null(other);
	assert_string_equal(sk_info("mx_dentry").backend, "slob");
	assert_string_equal(sk_info("mx_mbuf").backend, "uma");
	assert_string_equal(sk_info("mx_other").backend, cfg.backend);

	/* kmalloc's front end is SLOB's heap, except the class given to SLAB. */
	assert_string_equal(sk_info("kmalloc-64").backend, "slab");
	assert_int_equal(slabkit_cache_info_by_name("kmalloc-128", &(struct slabkit_cache_info){ 0 }),
			 -ENOENT);
	void *k64 = kmalloc(64, GFP_KERNEL), *k100 = kmalloc(100, GFP_KERNEL);
	assert_non_null(k64);
	assert_non_null(k100);
	assert_int_equal(ksize(k64), 64);
	assert_int_equal(ksize(k100), 104); /* SLOB's heap: n rounded up to 8 */
	assert_int_equal(sk_info("kmalloc-64").in_use, 1);
	assert_true(sk_report_has(slabkit_report_slabinfo, "kmalloc-heap"));
	/* malloc(9) keeps the process default, but for one class. */
	assert_string_equal(sk_info("malloc-384").backend, "uma");
	assert_string_equal(sk_info("malloc-64").backend, cfg.backend);
	void *m = bsd_malloc(300, M_MIXED, M_WAITOK);
	assert_non_null(m);
	assert_int_equal(sk_info("malloc-384").in_use, 1);

	bsd_free(m, M_MIXED);
	kfree(k64);
	kfree(k100);
	kmem_cache_destroy(d);
	kmem_cache_destroy(other);
	uma_zdestroy(z);
	assert_int_equal(sk_info("kmalloc-64").in_use, 0);

	/* A backend name that is not compiled in fails init, naming the entry. */
	slabkit_fini();
	sk_expect_messages();
	struct slabkit_config bad = { .tune = "mx_dentry:backend=slab;mx_x:backend=nope", .tick_ms = -1 };
	assert_int_equal(slabkit_init(&bad), -EINVAL);
	sk_assert_reported("mx_x", "nope", "compiled in");
	assert_int_equal(sk_fresh_init(NULL), 0);
}

/* slabkit_fini tears every backend down, and init starts clean again. */
static void test_fini_with_every_backend(void **state)
{
	(void)state;
	char name[96];
	for (unsigned round = 0; round < 3; round++) {
		struct kmem_cache *c[MAX_BACKENDS];
		void *o[MAX_BACKENDS];
		for (unsigned b = 0; b < nbackends; b++) {
			snprintf(name, sizeof(name), "mx_fini_%s", backends[b]);
			c[b] = cache_on(backends[b], name, 500);
			assert_non_null(o[b] = kmem_cache_alloc(c[b], GFP_KERNEL));
			memset(o[b], 0x5c, 500);
		}
		for (unsigned b = 0; b < nbackends; b++) {
			kmem_cache_free(c[b], o[b]);
			kmem_cache_destroy(c[b]);
		}
		slabkit_fini();
		assert_int_equal(sk_fresh_init(NULL), 0);
	}
}

int main(void)
{
	sk_apply_test_filter();
	sk_install_hooks();
	list_backends();
	if (nbackends < 2) {
		printf("skipped: only one backend compiled in (%s)\n", slabkit_backends_compiled());
		return 0;
	}
	const struct CMUnitTest tests[] = {
		SK_TEST(test_caches_of_every_backend), SK_TEST(test_unknown_backend_is_refused),
		SK_TEST(test_wrong_cache_across_backends), SK_TEST(test_cross_thread_frees),
		SK_TEST(test_zones_on_every_backend), SK_TEST(test_leaks_reported_per_cache),
		SK_TEST(test_slabinfo_names_backends), SK_TEST(test_tunables_choose_backends),
		SK_TEST(test_fini_with_every_backend),
	};
	return cmocka_run_group_tests_name("backends_mixed", tests, sk_group_setup, sk_group_teardown);
}
