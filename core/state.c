/*
 * The one state object: initialisation (explicit or lazy), configuration,
 * the backend table, hooks, messages and the maintenance thread.
 *
 * Lock order: init_lock -> backend_lock -> registry_lock (see sk_core.h for
 * the rest).  backend_lock is held while a backend's process-wide setup
 * runs for the first cache that needs it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_sanitize.h"
#include "sk_guard.h"
#include "sk_trace.h"

#ifdef SLABKIT_HAVE_SLAB
extern const struct sk_backend_ops sk_slab_ops;
#endif
#ifdef SLABKIT_HAVE_SLUB
extern const struct sk_backend_ops sk_slub_ops;
#endif
#ifdef SLABKIT_HAVE_SLOB
extern const struct sk_backend_ops sk_slob_ops;
#endif
#ifdef SLABKIT_HAVE_UMA
extern const struct sk_backend_ops sk_uma_ops;
#endif

static const struct sk_backend_ops *const compiled_backends[] = {
#ifdef SLABKIT_HAVE_SLAB
	&sk_slab_ops,
#endif
#ifdef SLABKIT_HAVE_SLUB
	&sk_slub_ops,
#endif
#ifdef SLABKIT_HAVE_SLOB
	&sk_slob_ops,
#endif
#ifdef SLABKIT_HAVE_UMA
	&sk_uma_ops,
#endif
};

struct sk_state sk_state;

/* Synchronization: init_lock serialises init, lazy init and fini. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- messages and hooks --- */

static void default_message(const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static __attribute__((noreturn)) void default_panic(const char *message)
{
	(void)message; /* already printed through the message hook */
	abort();
}

static slabkit_message_fn message_hook = default_message;
static slabkit_panic_fn panic_hook = (slabkit_panic_fn)default_panic;

SK_EXPORT slabkit_panic_fn slabkit_set_panic_hook(slabkit_panic_fn fn)
{
	slabkit_panic_fn old = panic_hook;
	panic_hook = fn ? fn : (slabkit_panic_fn)default_panic;
	return old;
}

SK_EXPORT slabkit_message_fn slabkit_set_message_hook(slabkit_message_fn fn)
{
	slabkit_message_fn old = message_hook;
	message_hook = fn ? fn : default_message;
	return old;
}

static void vmessage(const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	message_hook(line);
}

void sk_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
}

void sk_message(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
}

/* Misuse is reported, the call dropped, and the program goes on (the
 * default, SLABKIT_MISUSE=report): nothing already allocated is harmed, so
 * stopping the program is the program's choice (SLABKIT_MISUSE=panic), as
 * the debug layer's abort is.  Set by slabkit_init; true until then. */
static bool misuse_report_only = true;

/* One "slabkit: ..." line to the message hook; then the panic hook if
 * `panic`. */
static void report_line(bool panic, const char *fmt, va_list ap)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "slabkit: ");
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	message_hook(line);
	if (panic)
		panic_hook(line);
}

void sk_misuse(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_line(!misuse_report_only, fmt, ap);
	va_end(ap);
}

void sk_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_line(true, fmt, ap);
	va_end(ap);
}

/* --- the misuse policy for a refused free (sk_backend.h) --- */

static const char *const misuse_class[] = {
	[SK_MISUSE_DOUBLE_FREE] = "double free of",
	[SK_MISUSE_INTERIOR] = "interior pointer",
	[SK_MISUSE_WRONG_CACHE] = "object of another cache",
	[SK_MISUSE_FOREIGN] = "pointer to no live allocation",
};

/* The call a user made to free an object of c. */
static const char *free_call_of(const struct sk_cache *c)
{
	switch (c ? c->front : SK_FRONT_KMALLOC) {
	case SK_FRONT_KMEM_CACHE:
		return "kmem_cache_free";
	case SK_FRONT_KMALLOC:
		return "kfree";
	case SK_FRONT_UMA:
		return "uma_zfree";
	case SK_FRONT_MALLOC:
	case SK_FRONT_LIBC:
		return "free";
	}
	return "free";
}

void sk_free_misuse(const char *call, const struct sk_cache *c, enum sk_misuse_kind kind, const void *p,
		    const char *fmt, ...)
{
	char detail[256] = "", line[512];
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	snprintf(line, sizeof(line), "slabkit: %s%s%s%s: %s %p%s%s%s; ignored",
		 call ? call : free_call_of(c), c ? "(" : "", c ? c->name : "", c ? ")" : "",
		 misuse_class[kind], p, *detail ? " (" : "", detail, *detail ? ")" : "");
	message_hook(line);
	if (!misuse_report_only)
		panic_hook(line);
}

static int misuse_configure(const char *mode)
{
	if (!mode || !*mode || !strcmp(mode, "report")) {
		misuse_report_only = true;
	} else if (!strcmp(mode, "panic")) {
		misuse_report_only = false;
	} else {
		sk_errorf("slabkit: unknown misuse policy '%s' (expected report or panic)", mode);
		return -EINVAL;
	}
	return 0;
}

/* --- configuration --- */

SK_EXPORT const char *slabkit_backends_compiled(void)
{
	return SLABKIT_COMPILED_BACKENDS;
}

const struct sk_backend_ops *sk_backend_find(const char *name)
{
	for (size_t i = 0; i < SK_ARRAY_SIZE(compiled_backends); i++)
		if (!strcmp(compiled_backends[i]->name, name))
			return compiled_backends[i];
	return NULL;
}

/* --- backends in use --- */

/*
 * A backend's process-wide state (SLOB's heap lists) is set up when the
 * first cache on it is made, so that a process pays only for the backends
 * it uses.  Synchronization: backend_lock; sk_state.backends_active is
 * written under it and read under it (creation and fini only, never on a
 * hot path).
 */
static pthread_mutex_t backend_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned backend_bit(const struct sk_backend_ops *ops)
{
	for (unsigned i = 0; i < SK_ARRAY_SIZE(compiled_backends); i++)
		if (compiled_backends[i] == ops)
			return 1u << i;
	return 0;
}

int sk_backend_activate(const struct sk_backend_ops *ops)
{
	int err = 0;

	pthread_mutex_lock(&backend_lock);
	if (!(sk_state.backends_active & backend_bit(ops))) {
		if (ops->init && (err = ops->init()) != 0)
			sk_errorf("slabkit: backend '%s' failed to initialise (%s)", ops->name,
				  strerror(-err));
		else
			sk_state.backends_active |= backend_bit(ops);
	}
	pthread_mutex_unlock(&backend_lock);
	return err;
}

/* fork(): backend_lock (early in the order: it is held around a backend's
 * init only), or every active backend's global locks at `level` (after the
 * caches' locks). */
void sk_backends_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&backend_lock);
}

void sk_backends_fork_global(bool lock)
{
	for (unsigned i = 0; i < SK_ARRAY_SIZE(compiled_backends); i++)
		if ((sk_state.backends_active & (1u << i)) && compiled_backends[i]->fork_lock)
			compiled_backends[i]->fork_lock(NULL, 1, lock);
}

/* Tear down every backend that was set up (their caches are gone). */
static void backends_fini(void)
{
	pthread_mutex_lock(&backend_lock);
	for (unsigned i = 0; i < SK_ARRAY_SIZE(compiled_backends); i++)
		if ((sk_state.backends_active & (1u << i)) && compiled_backends[i]->fini)
			compiled_backends[i]->fini();
	sk_state.backends_active = 0;
	pthread_mutex_unlock(&backend_lock);
}

/*
 * The backend a front end's size classes use: a per-front key of the
 * tunables ("kmalloc:backend=slob", "malloc:backend=uma"), else the
 * process default.  A backend with its own kmalloc heap (SLOB) then serves
 * every size of that front end that has no class cache of its own.
 */
static const struct sk_backend_ops *front_backend(const char *front)
{
	const struct sk_backend_ops *ops = sk_tune_backend(front);
	return ops ? ops : sk_state.ops;
}

static const struct sk_backend_ops *heap_of(const struct sk_backend_ops *ops)
{
	return (ops->caps & SK_CAP_HEAP_KMALLOC) ? ops : NULL;
}

static const char *env_or(const char *value, const char *env)
{
	if (value)
		return value;
	const char *e = getenv(env);
	return e && *e ? e : NULL;
}

static long env_long(const char *env, long fallback)
{
	const char *e = getenv(env);
	if (!e || !*e)
		return fallback;
	char *end;
	long v = strtol(e, &end, 10);
	return *end ? fallback : v;
}

static char *meta_strdup(const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *copy = sk_meta_zalloc(n);
	if (copy)
		memcpy(copy, s, n);
	return copy;
}

/* --- the size-class caches --- */

/*
 * Make the class caches of one front end.  A class takes the backend its
 * own key names ("kmalloc-64:backend=uma"), else the front end's; a class
 * whose backend is the front end's heap gets no cache (the heap serves it).
 */
static int create_front_classes(struct sk_cache **caches, int count, const uint32_t *sizes,
				const char *fmt_front, enum sk_front front,
				const struct sk_backend_ops *front_ops)
{
	char name[SLABKIT_NAME_MAX];

	for (int i = 0; i < count; i++) {
		uint32_t size = sizes[i];
		if (front == SK_FRONT_KMALLOC && size >= 1024)
			snprintf(name, sizeof(name), "%s-%uk", fmt_front, size / 1024);
		else
			snprintf(name, sizeof(name), "%s-%u", fmt_front, size);
		const struct sk_backend_ops *ops = sk_tune_backend(name);
		if (!ops)
			ops = front_ops;
		/* A heap backend (SLOB) serves the class itself, unless the class
		 * is debugged: then it is a cache of that backend, so that core's
		 * debug layer sees every block (docs/debug.md). */
		if (ops == heap_of(front_ops) && !(sk_debug_flags_for(name, 0) & SK_CACHE_DEBUG_ACTIVE) &&
		    !sk_guard_flags_for(name, 0))
			continue;
		size_t align = front == SK_FRONT_KMALLOC
				       /* Power-of-two sizes are aligned to their size. */
				       ? (SK_IS_POW2(size) ? size : 8)
				       : (SK_IS_POW2(size) ? SK_MIN(size, SK_PAGE_SIZE) : 16);
		struct sk_cache_params p = {
			.name = name, .object_size = size, .front = front, .ops = ops,
			.align = align, .flags = SK_CACHE_SIZE_CLASS,
		};
		if (!(caches[i] = sk_cache_create(&p)))
			return -ENOMEM;
	}
	return 0;
}

static int create_class_caches(void)
{
	const struct sk_backend_ops *kmalloc_ops = front_backend("kmalloc");
	const struct sk_backend_ops *bsd_ops = front_backend("malloc");
	int err;

	sk_state.kmalloc_heap = heap_of(kmalloc_ops);
	sk_state.bsd_heap = heap_of(bsd_ops);
	if (sk_state.kmalloc_heap && sk_state.bsd_heap && sk_state.kmalloc_heap != sk_state.bsd_heap) {
		sk_errorf("slabkit: kmalloc and malloc(9) cannot use two different heap backends (%s, %s)",
			  sk_state.kmalloc_heap->name, sk_state.bsd_heap->name);
		return -EINVAL;
	}
	sk_state.heap_ops = sk_state.kmalloc_heap ? sk_state.kmalloc_heap : sk_state.bsd_heap;
	if (sk_state.heap_ops && (err = sk_backend_activate(sk_state.heap_ops)) != 0)
		return err;
	if ((err = create_front_classes(sk_state.kmalloc_caches, SK_KMALLOC_CLASSES,
					sk_kmalloc_class_size, "kmalloc", SK_FRONT_KMALLOC,
					kmalloc_ops)) != 0)
		return err;
	if ((err = create_front_classes(sk_state.bsd_caches, SK_BSD_CLASSES, sk_bsd_class_size, "malloc",
					SK_FRONT_MALLOC, bsd_ops)) != 0)
		return err;
	sk_bsd_classes_created();
	return 0;
}

/* --- maintenance thread --- */

static void *tick_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sk_state.tick_lock);
	while (!sk_state.tick_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += sk_state.tick_ms / 1000;
		until.tv_nsec += (long)(sk_state.tick_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&sk_state.tick_cond, &sk_state.tick_lock, &until) == ETIMEDOUT &&
		    !sk_state.tick_stop) {
			pthread_mutex_unlock(&sk_state.tick_lock);
			slabkit_tick();
			sk_publish_tick(); /* the live view's snapshot, rate-limited */
			pthread_mutex_lock(&sk_state.tick_lock);
		}
	}
	pthread_mutex_unlock(&sk_state.tick_lock);
	return NULL;
}

SK_EXPORT void slabkit_tick(void)
{
	if (!sk_load_acquire(&sk_state.ready))
		return;
	pthread_mutex_lock(&sk_state.registry_lock);
	for (struct sk_cache *c = sk_state.first; c; c = c->next)
		if (!c->dead && c->ops->tick)
			c->ops->tick(c);
	pthread_mutex_unlock(&sk_state.registry_lock);
	/* Free page runs idle since the last tick go back to the OS. */
	sk_pages_release_idle();
}

void sk_init_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&init_lock);
}

/* The child of fork() has only the forking thread: the maintenance thread
 * is gone.  Its lock and condition may have been held by it: make new ones
 * and start the thread again. */
void sk_fork_child_restart_tick(void)
{
	if (!sk_state.ready || !sk_state.tick_running)
		return;
	pthread_mutex_init(&sk_state.tick_lock, NULL);
	pthread_cond_init(&sk_state.tick_cond, NULL);
	sk_state.tick_stop = false;
	sk_state.tick_running = pthread_create(&sk_state.tick_thread, NULL, tick_main, NULL) == 0;
}

/* --- init and fini --- */

static int init_locked(const struct slabkit_config *cfg)
{
	static const struct slabkit_config defaults;
	const char *from = "the build default";
	int err;

	if (!cfg)
		cfg = &defaults;
	if (sk_state.ready)
		return -EALREADY;

	const char *name = cfg->backend;
	if (name)
		from = "slabkit_config.backend";
	else if ((name = env_or(NULL, "SLABKIT_BACKEND")))
		from = "SLABKIT_BACKEND";
	else
		name = SLABKIT_DEFAULT_BACKEND_NAME;
	const struct sk_backend_ops *ops = sk_backend_find(name);
	if (!ops) {
		sk_errorf("slabkit: unknown or not compiled-in backend '%s' (from %s); compiled in: %s",
			  name, from, SLABKIT_COMPILED_BACKENDS);
		return -EINVAL;
	}

	size_t arena = cfg->arena_bytes_per_node;
	if (!arena)
		arena = (size_t)env_long("SLABKIT_ARENA_MB", 0) << 20;
	unsigned fail_every = cfg->page_fail_every;
	if (!fail_every)
		fail_every = (unsigned)env_long("SLABKIT_FAIL_EVERY", 0);
	struct sk_numa_config ncfg = {
		.arena_bytes_per_node = arena, .fail_every = fail_every, .message = sk_message,
		.policy = env_or(cfg->numa_policy, "SLABKIT_NUMA_POLICY"),
		.pcpu_unit_bytes = SK_PCPU_UNIT_BYTES, /* per-CPU slots on their CPU's node */
	};
	if ((err = sk_numa_init(&ncfg)) != 0)
		return err;
	/* SLABKIT_FAIL_RANDOM=PERCENT: the provider's random fault mode. */
	long fail_percent = env_long("SLABKIT_FAIL_RANDOM", 0);
	if (fail_percent > 0 && !fail_every)
		sk_pages_set_fail_random((unsigned)fail_percent, (uint64_t)getpid());
	if ((err = sk_pcpu_init(env_or(cfg->percpu, "SLABKIT_PERCPU"))) != 0)
		goto fail_numa;

	pthread_mutex_init(&sk_state.registry_lock, NULL);
	sk_state.ops = ops;
	sk_state.cache_line = sk_numa_cache_line();
	sk_state.nodes = sk_numa_nodes();
	sk_state.tune = meta_strdup(env_or(cfg->tune, "SLABKIT_TUNE"));
	/* Before the first cache: caches made while tracing leave their fast
	 * paths off so every call is recorded (sk_trace.h).  A trace that
	 * cannot be opened is reported and the program runs untraced. */
	const char *trace_path = getenv("SLABKIT_TRACE");
	if (trace_path && *trace_path && !sk_load(&sk_trace_on))
		sk_trace_start(trace_path);
	if ((err = sk_track_init()) != 0)
		goto fail_numa;
	if ((err = sk_tune_check_backends(sk_state.tune)) != 0)
		goto fail_numa;
	/* Before the first cache too: debug letters and injected failures
	 * are decided when a cache is created. */
	if ((err = sk_san_configure(getenv("SLABKIT_SANITIZE"))) != 0 ||
	    (err = sk_guard_configure(getenv("SLABKIT_GUARD"))) != 0 ||
	    (err = sk_debug_configure(env_or(cfg->debug, "SLABKIT_DEBUG"),
				      cfg->debug_abort || env_long("SLABKIT_DEBUG_ABORT", 0))) != 0 ||
	    (err = sk_fail_configure(env_or(cfg->fail_alloc, "SLABKIT_FAIL_ALLOC"))) != 0 ||
	    (err = misuse_configure(env_or(cfg->misuse, "SLABKIT_MISUSE"))) != 0)
		goto fail_numa;
	/* F (consistency checks, as slub_debug=F) on the malloc(9) classes:
	 * blocks record their type so that a free with another type is caught.
	 * Fixed until slabkit_fini: blocks are laid out by it. */
	sk_bsd_type_trailer = (sk_debug_flags_for("malloc-16", 0) & SK_CACHE_CONSISTENCY) ? sizeof(void *) : 0;
	if ((err = sk_backend_activate(ops)) != 0)
		goto fail_numa;
	if ((err = create_class_caches()) != 0) {
		sk_errorf("slabkit: cannot create the size-class caches");
		goto fail_backend;
	}

	int tick_ms = cfg->tick_ms ? cfg->tick_ms : (int)env_long("SLABKIT_TICK_MS", 2000);
	sk_state.tick_ms = tick_ms;
	pthread_mutex_init(&sk_state.tick_lock, NULL);
	pthread_cond_init(&sk_state.tick_cond, NULL);
	sk_fork_register();
	sk_store_release(&sk_state.ready, true);
	static bool exit_hooked; /* under init_lock */
	if (!exit_hooked)
		exit_hooked = atexit(sk_at_exit) == 0;
	if (tick_ms > 0) {
		sk_state.tick_stop = false;
		sk_state.tick_running = pthread_create(&sk_state.tick_thread, NULL, tick_main, NULL) == 0;
	}
	return 0;

fail_backend:
	while (sk_state.last) /* the class caches made before the failure */
		sk_cache_destroy(sk_state.last, "slabkit_init");
	backends_fini();
fail_numa:
	sk_track_fini();
	sk_debug_reset();
	sk_meta_reset();
	sk_pcpu_area_reset();
	sk_numa_fini();
	memset(&sk_state, 0, sizeof(sk_state));
	return err;
}

SK_EXPORT int slabkit_init(const struct slabkit_config *cfg)
{
	pthread_mutex_lock(&init_lock);
	int err = init_locked(cfg);
	pthread_mutex_unlock(&init_lock);
	return err;
}

void sk_lazy_init(void)
{
	pthread_mutex_lock(&init_lock);
	int err = sk_state.ready ? 0 : init_locked(NULL);
	pthread_mutex_unlock(&init_lock);
	if (err) {
		fprintf(stderr, "slabkit: initialisation on first use failed (%s); exiting\n",
			strerror(-err));
		exit(2);
	}
}

SK_EXPORT void slabkit_fini(void)
{
	pthread_mutex_lock(&init_lock);
	if (!sk_state.ready) {
		pthread_mutex_unlock(&init_lock);
		return;
	}
	if (sk_state.tick_running) {
		pthread_mutex_lock(&sk_state.tick_lock);
		sk_state.tick_stop = true;
		pthread_cond_signal(&sk_state.tick_cond);
		pthread_mutex_unlock(&sk_state.tick_lock);
		pthread_join(sk_state.tick_thread, NULL);
	}
	sk_publish_stop(false);
	sk_uma_smr_flush_all();
	sk_rcu_barrier(); /* kfree_rcu, TYPESAFE_BY_RCU and SMR work queued before fini */
	sk_uma_zones_reset();
	sk_malloc_types_reset();
	sk_libc_reset();
	/* Newest first: the caches a program made, then the size classes. */
	while (sk_state.last) {
		struct sk_cache *c = sk_state.last;
		if (!c->dead && !(c->flags & SK_CACHE_SIZE_CLASS))
			sk_errorf("slabkit_fini: cache %s was never destroyed", c->name);
		if (c->dead) { /* already reported; its memory goes with the arenas */
			sk_state.last = c->prev;
			if (sk_state.last)
				sk_state.last->next = NULL;
			else
				sk_state.first = NULL;
			continue;
		}
		sk_cache_destroy(c, "slabkit_fini");
	}
	sk_track_report("large and heap blocks", SK_TRACK_NO_CACHE, SK_TRACK_NO_TYPE);
	sk_track_fini();
	backends_fini();
	sk_store(&sk_state.ready, false);
	sk_debug_reset();
	sk_meta_reset();
	sk_pcpu_area_reset();
	sk_numa_fini();
	pthread_mutex_destroy(&sk_state.registry_lock);
	memset(&sk_state, 0, sizeof(sk_state));
	pthread_mutex_unlock(&init_lock);
}

SK_EXPORT const char *slabkit_backend(void)
{
	return sk_state.ready ? sk_state.ops->name : NULL;
}

SK_EXPORT const char *slabkit_percpu_mode(void)
{
	return sk_state.ready ? sk_pcpu_mode_name() : NULL;
}

SK_EXPORT unsigned slabkit_nodes(void)
{
	sk_ensure_init();
	return sk_state.nodes;
}

SK_EXPORT int slabkit_current_node(void)
{
	sk_ensure_init();
	return sk_node_to_user(sk_numa_cpu_node(sk_pcpu_current_cpu()));
}

/*
 * The failure policy (docs/api.md, "When memory runs out"), as the kernels
 * have it: a caller that may wait is not told "no" while draining caches
 * can still make room.  Waiting is proportional to how long memory has been
 * short: the first retry is immediate (a transient failure, such as one
 * injected fault, costs nothing), the second drains every cache, later ones
 * drain and sleep 50 us doubling to 20 ms.  The schedule sums to about two
 * seconds over SK_WAIT_ATTEMPTS_LONG attempts.
 *
 * A thread that holds a slot lock (a callback of an allocation in progress
 * that reached here) does not drain: draining would wait for its own lock.
 */
#define SK_WAIT_ATTEMPTS_LONG 110u
#define SK_WAIT_ATTEMPTS_MAYFAIL 4u
#define SK_WAIT_ATTEMPTS_BRIEF 2u

static unsigned wait_attempts(enum sk_wait_policy policy)
{
	switch (policy) {
	case SK_WAIT_NONE: return 0;
	case SK_WAIT_BRIEF: return SK_WAIT_ATTEMPTS_BRIEF;
	case SK_WAIT_MAYFAIL: return SK_WAIT_ATTEMPTS_MAYFAIL;
	case SK_WAIT_LONG:
	case SK_WAIT_NOFAIL: return SK_WAIT_ATTEMPTS_LONG;
	}
	return 0;
}

bool sk_wait_for_memory(unsigned attempt, enum sk_wait_policy policy)
{
	if (sk_unlikely(sk_fail_injected)) {
		/* An injected failure is the answer, as failslab's: no retry. */
		sk_fail_injected = false;
		return false;
	}
	if (attempt >= wait_attempts(policy))
		return false;
	if (attempt == 0)
		return true;
	ck_pr_inc_64(&sk_state.memory_waits);
	if (!sk_pcpu_caller_holds_slot())
		sk_shrink_every_cache(SK_SHRINK_DRAIN_CPU);
	else
		sk_pages_release_free();
	if (attempt >= 2) {
		unsigned shift = SK_MIN(attempt - 2, 9u);
		long ns = SK_MIN(50000L << shift, 20000000L);
		struct timespec ts = { 0, ns };
		nanosleep(&ts, NULL);
	}
	return true;
}
