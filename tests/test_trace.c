/*
 * The allocation trace recorder (core/sk_trace.h, docs/trace-format.md):
 * every front end's allocations and frees reach the file, in order, with
 * sizes, alignments, identities and threads, over every compiled backend;
 * nothing is recorded while tracing is off.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "core/sk_trace.h"
#include "sk_test.h"

MALLOC_DECLARE(M_TRACETEST);
MALLOC_DEFINE(M_TRACETEST, "tracetest", "trace recorder test");

struct trace_file {
	struct sk_trace_header header;
	size_t count;
	struct sk_trace_record *records;
};

static void trace_read(const char *path, struct trace_file *t)
{
	FILE *f = fopen(path, "rb");
	struct stat st;

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	assert_true((size_t)st.st_size >= sizeof(t->header));
	assert_int_equal(fread(&t->header, sizeof(t->header), 1, f), 1);
	assert_memory_equal(t->header.magic, SK_TRACE_MAGIC, 8);
	assert_int_equal(t->header.version, 1);
	assert_int_equal(t->header.record_size, sizeof(struct sk_trace_record));
	assert_int_equal(t->header.pid, (uint32_t)getpid());
	assert_int_equal(((size_t)st.st_size - sizeof(t->header)) % sizeof(struct sk_trace_record), 0);
	t->count = ((size_t)st.st_size - sizeof(t->header)) / sizeof(struct sk_trace_record);
	t->records = calloc(t->count + 1, sizeof(*t->records));
	assert_non_null(t->records);
	assert_int_equal(fread(t->records, sizeof(*t->records), t->count, f), t->count);
	fclose(f);
}

/* The index of the first record from `from` with this op and id, or -1. */
static long find(const struct trace_file *t, size_t from, unsigned op, const void *id)
{
	for (size_t i = from; i < t->count; i++)
		if (t->records[i].op == op && t->records[i].id == (uint64_t)(uintptr_t)id)
			return (long)i;
	return -1;
}

#define OP(kind, api) ((unsigned)(kind) | (unsigned)(api) << 4)

struct thread_arg {
	struct kmem_cache *cache;
	void *obj;
};

static void *alloc_in_thread(void *p)
{
	struct thread_arg *a = p;
	a->obj = kmem_cache_alloc(a->cache, GFP_KERNEL);
	return NULL;
}

/* One backend: every front end, then check what the trace says. */
static void record_one_backend(const char *backend, const char *path)
{
	struct slabkit_config cfg = { .backend = backend, .tick_ms = -1 };
	struct trace_file t;
	pthread_t tid;

	assert_int_equal(sk_trace_start(path), 0);
	assert_int_equal(slabkit_init(&cfg), 0);

	void *k = kmalloc(100, GFP_KERNEL);
	void *big = kmalloc(3 * 4096 + 5, GFP_KERNEL);
	struct kmem_cache *cache = kmem_cache_create("trace_test", 200, 64, 0, NULL);
	void *o = kmem_cache_alloc(cache, GFP_KERNEL);
	void *b = bsd_malloc(300, M_TRACETEST, M_WAITOK);
	uma_zone_t z = uma_zcreate("trace_zone", 48, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	void *u = uma_zalloc(z, M_WAITOK);
	struct thread_arg arg = { cache, NULL };

	assert_int_equal(pthread_create(&tid, NULL, alloc_in_thread, &arg), 0);
	pthread_join(tid, NULL);
	assert_non_null(k);
	assert_non_null(big);
	assert_non_null(o);
	assert_non_null(b);
	assert_non_null(u);
	assert_non_null(arg.obj);
	uma_zfree(z, u);
	bsd_free(b, M_TRACETEST);
	kmem_cache_free(cache, o);
	kmem_cache_free(cache, arg.obj);
	kfree(big);
	kfree(k);
	uma_zdestroy(z);
	kmem_cache_destroy(cache);
	slabkit_fini();
	sk_trace_stop();

	/* Off: nothing more is written. */
	assert_int_equal(slabkit_init(&cfg), 0);
	kfree(kmalloc(64, GFP_KERNEL));
	slabkit_fini();

	trace_read(path, &t);
	long ik = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_KMALLOC), k);
	long ibig = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_KMALLOC), big);
	long io = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_KMEM_CACHE), o);
	long ib = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_BSD_MALLOC), b);
	long iu = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_UMA), u);
	long it = find(&t, 0, OP(SK_TRACE_ALLOC, SK_TRACE_API_KMEM_CACHE), arg.obj);
	assert_true(ik >= 0 && ibig > ik && io > ibig && ib > io && iu > ib && it > iu);
	assert_int_equal(t.records[ik].size, 100);
	assert_int_equal(t.records[ibig].size, 3 * 4096 + 5);
	assert_int_equal(t.records[io].size, 200);
	assert_int_equal(t.records[io].align_log2, 6);
	assert_int_equal(t.records[ib].size, 300);
	assert_int_equal(t.records[iu].size, 48);
	assert_int_not_equal(t.records[it].thread, t.records[ik].thread);
	assert_true(t.records[it].thread > 0 && t.records[ik].thread > 0);

	long fu = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_UMA), u);
	long fb = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_BSD_MALLOC), b);
	long fo = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_KMEM_CACHE), o);
	long ft = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_KMEM_CACHE), arg.obj);
	long fbig = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_KMALLOC), big);
	long fk = find(&t, (size_t)it, OP(SK_TRACE_FREE, SK_TRACE_API_KMALLOC), k);
	assert_true(fu > it && fb > fu && fo > fb && ft > fo && fbig > ft && fk > fbig);
	for (size_t i = 1; i < t.count; i++)
		assert_true(t.records[i].time_ms >= t.records[i - 1].time_ms);
	/* The untraced kmalloc(64) after stop left no record. */
	for (size_t i = (size_t)fk + 1; i < t.count; i++)
		assert_int_not_equal(t.records[i].size, 64);
	free(t.records);
}

static void every_backend_records_every_front_end(void **state)
{
	char list[128], path[] = "/tmp/slabkit_trace_test_XXXXXX";
	char *save = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	slabkit_fini(); /* MALLOC_DEFINE's constructor may have initialised it */
	snprintf(list, sizeof(list), "%s", slabkit_backends_compiled());
	for (char *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save))
		record_one_backend(b, path);
	unlink(path);
}

static void recording_twice_is_refused(void **state)
{
	assert_int_equal(sk_trace_start("/dev/null"), 0);
	assert_int_equal(sk_trace_start("/dev/null"), -EALREADY);
	sk_trace_stop();
	assert_int_not_equal(sk_trace_start("/nonexistent-dir/trace"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_backend_records_every_front_end),
		cmocka_unit_test(recording_twice_is_refused),
	};
	sk_install_hooks();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
