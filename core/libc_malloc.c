/*
 * The libc front end (sk_libc.h): malloc, free, realloc, memalign over the
 * libc size classes and the page path.
 *
 * Large blocks (over SK_LIBC_MAX_CACHE_SIZE) are page allocations.  The
 * page provider gives whole free blocks of 2 MiB and more back to the OS
 * as soon as they form, so a program that frees a block of megabytes and
 * allocates another one would fault every page in again, every time (two
 * packaged allocators are six times slower than glibc on such a workload
 * for that reason).  A few freed blocks are therefore kept, resident, in
 * `large_cache` and handed out again to requests they fit (the excess
 * pages trimmed off); what is not reused within LARGE_CACHE_AGE_NS, or
 * does not fit under LARGE_CACHE_PAGES, goes back to the provider.
 * realloc of a large block trims it in place when it shrinks, grows it in
 * place when the pages after it are free, and otherwise moves its pages
 * by remapping them (numa's sk_pages_move) instead of copying.
 *
 * Bootstrap.  slabkit's own initialisation calls malloc: hwloc's
 * topology load makes hundreds of calls, pthread_create may make some.
 * While a thread initialises (libc_initialising, an initial-exec TLS flag:
 * no allocation to reach it), its calls are served from boot_heap, a
 * static bump arena, with a 16-byte header holding the size.  Their frees
 * are no-ops (the newest block is popped, since hwloc frees much of what
 * it just took); a realloc copies out of it.  Other threads wait for
 * initialisation on the init locks.  Nothing here calls libc's malloc, so
 * there is no recursion and no glibc heap behind slabkit's.
 *
 * Lock order: large_lock, init_lock (state.c) are taken alone here;
 * large_lock -> numa arena locks (trimming and freeing under it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sk_libc.h"
#include "sk_trace.h"
#include "sk_track.h"

struct sk_libc_state sk_libc;

/* --- bootstrap --- */

#define BOOT_HEAP_BYTES ((size_t)4 << 20) /* bss: only the pages used become resident */
#define BOOT_HDR 16

static __thread bool libc_initialising __attribute__((tls_model("initial-exec")));
static char boot_heap[BOOT_HEAP_BYTES] __attribute__((aligned(SK_PAGE_SIZE)));
/* Synchronization: only the initialising thread moves it (init locks
 * held); atomics keep the accesses race-free all the same. */
static size_t boot_used;

static bool in_boot_heap(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot_heap < BOOT_HEAP_BYTES;
}

static size_t boot_size(const void *p)
{
	return *(const size_t *)((const char *)p - BOOT_HDR);
}

static void *boot_alloc(size_t size, size_t align)
{
	size_t used = sk_load(&boot_used);
	size_t start = SK_ALIGN_UP(used + BOOT_HDR, SK_MAX(align, (size_t)16));

	if (size > BOOT_HEAP_BYTES || start + size > BOOT_HEAP_BYTES) {
		static const char msg[] = "slabkit: malloc: the bootstrap heap is exhausted during initialisation\n";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			(void)0;
		errno = ENOMEM;
		return NULL;
	}
	*(size_t *)(boot_heap + start - BOOT_HDR) = size;
	sk_store(&boot_used, SK_ALIGN_UP(start + size, (size_t)16));
	return boot_heap + start;
}

/* Pop the newest block; older ones stay (a bump arena). */
static void boot_free(void *p)
{
	size_t end = (size_t)((char *)p - boot_heap) + SK_ALIGN_UP(boot_size(p), (size_t)16);
	if (libc_initialising && end == sk_load(&boot_used))
		sk_store(&boot_used, (size_t)((char *)p - boot_heap) - BOOT_HDR);
}

size_t sk_libc_boot_bytes(void)
{
	return sk_load(&boot_used);
}

/* Synchronization: libc_init_lock makes the caches once. */
static pthread_mutex_t libc_init_lock = PTHREAD_MUTEX_INITIALIZER;

/* slabkit's own init, as malloc wants it: no maintenance thread unless
 * SLABKIT_TICK_MS asks for one (a thread started from inside a program's
 * first malloc, in every process, costs more than what it reclaims). */
static void init_slabkit(void)
{
	const char *tick = getenv("SLABKIT_TICK_MS");
	struct slabkit_config cfg = { .tick_ms = tick && *tick ? 0 : -1 };

	int err = slabkit_init(&cfg);
	if (err && err != -EALREADY) {
		static const char msg[] = "slabkit: malloc: initialisation failed (the reason is above); exiting\n";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			(void)0;
		_exit(2);
	}
}

int sk_libc_init(void)
{
	char name[SLABKIT_NAME_MAX];
	int err = 0;

	if (sk_load_acquire(&sk_libc.ready))
		return 0;
	libc_initialising = true;
	if (!sk_load_acquire(&sk_state.ready))
		init_slabkit();
	pthread_mutex_lock(&libc_init_lock);
	for (unsigned i = 0; !sk_libc.ready && i < SK_LIBC_CLASSES && !err; i++) {
		uint32_t size = sk_libc_class_size[i];
		if (sk_libc.classes[i])
			continue;
		snprintf(name, sizeof(name), "libc-%u", size);
		struct sk_cache_params p = {
			.name = name, .object_size = size, .align = 16, .front = SK_FRONT_LIBC,
			.flags = SK_CACHE_SIZE_CLASS,
		};
		if (!(sk_libc.classes[i] = sk_cache_create(&p)))
			err = -ENOMEM;
	}
	for (unsigned i = 0; !sk_libc.ready && i < SK_LIBC_ALIGNED_CLASSES && !err; i++) {
		uint32_t size = 32u << i;
		if (sk_libc.aligned[i])
			continue;
		snprintf(name, sizeof(name), "libc-aligned-%u", size);
		struct sk_cache_params p = {
			.name = name, .object_size = size, .align = size, .front = SK_FRONT_LIBC,
			.flags = SK_CACHE_SIZE_CLASS,
		};
		if (!(sk_libc.aligned[i] = sk_cache_create(&p)))
			err = -ENOMEM;
	}
	if (!err)
		sk_store_release(&sk_libc.ready, true);
	else
		sk_errorf("slabkit: cannot create the libc size-class caches");
	pthread_mutex_unlock(&libc_init_lock);
	libc_initialising = false;
	return err;
}

/* --- large blocks --- */

#define LARGE_CACHE_SLOTS 16
#define LARGE_CACHE_PAGES ((size_t)(64 << 20) >> SK_PAGE_SHIFT) /* 64 MiB resident at most */
#define LARGE_CACHE_AGE_NS 1000000000ull                       /* unused for a second: released */
#define LARGE_MOVE_PAGES 64 /* blocks of 256 KiB and more move by remapping, not copying */

struct large_entry {
	void *addr;
	size_t npages;
	uint64_t freed_ns;
};

/* Synchronization: large_lock guards the cache; entries are owned by it. */
static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct large_entry large_cache[LARGE_CACHE_SLOTS];
static unsigned large_cached;      /* entries in use, oldest first (also peeked unlocked) */
static size_t large_cached_pages;

/* A cached block's head descriptor carries this in lw_cached (lw_type and
 * lw_origin are malloc(9)'s type and the block's origin; owner stays NULL, as on
 * every page that is not a live slab's): a free() of it is a double free. */
#define LARGE_CACHED_MARK ((uintptr_t)0x5eca1ed1ab1eull)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void large_count_pages(int64_t delta)
{
	ck_pr_add_64(&sk_state.large.pages, (uint64_t)delta);
}

/* Drop entry i (large_lock held); the caller owns the block afterwards. */
static struct large_entry large_take_locked(unsigned i)
{
	struct large_entry e = large_cache[i];

	memmove(&large_cache[i], &large_cache[i + 1], (large_cached - i - 1) * sizeof(e));
	sk_store(&large_cached, large_cached - 1); /* atomic: large_alloc peeks without the lock */
	large_cached_pages -= e.npages;
	return e;
}

/* Give a block back to the page provider (no lock needed). */
static void large_release(void *addr, size_t npages)
{
	struct sk_page *pg = sk_page_of(addr);

	sk_large_words(pg)->lw_cached = 0;
	large_count_pages(-(int64_t)npages);
	sk_pages_free(addr);
}

/* Blocks taken out of the cache by expiry or overflow, released unlocked. */
struct large_victims {
	unsigned n;
	struct large_entry e[LARGE_CACHE_SLOTS];
};

static void large_expire_locked(uint64_t now, struct large_victims *v)
{
	while (large_cached && now - large_cache[0].freed_ns > LARGE_CACHE_AGE_NS)
		v->e[v->n++] = large_take_locked(0);
}

static void large_release_victims(struct large_victims *v)
{
	for (unsigned i = 0; i < v->n; i++)
		large_release(v->e[i].addr, v->e[i].npages);
	v->n = 0;
}

/* A block of exactly npages pages aligned to align_pages pages (a power of
 * two), from the cache when one fits, else from the page provider. */
static void *large_alloc(size_t npages, size_t align_pages)
{
	struct large_victims v = { 0 };
	void *p = NULL;
	size_t got = 0;

	if (sk_load(&large_cached)) { /* a racy peek: an empty cache costs no lock */
		uint64_t now = now_ns();
		pthread_mutex_lock(&large_lock);
		large_expire_locked(now, &v);
		int best = -1;
		for (unsigned i = 0; i < large_cached; i++) {
			struct large_entry *e = &large_cache[i];
			if (e->npages >= npages && ((uintptr_t)e->addr & ((align_pages << SK_PAGE_SHIFT) - 1)) == 0 &&
			    (best < 0 || e->npages < large_cache[best].npages))
				best = (int)i;
		}
		if (best >= 0) {
			struct large_entry e = large_take_locked((unsigned)best);
			p = e.addr;
			got = e.npages;
		}
		pthread_mutex_unlock(&large_lock);
		large_release_victims(&v);
	}
	if (p) {
		sk_large_words(sk_page_of(p))->lw_cached = 0;
		ck_pr_inc_64(&sk_state.large.allocs);
	} else {
		/* An allocation of 2^k pages starts at a multiple of 2^k pages. */
		size_t want = SK_MAX(npages, align_pages);
		p = sk_large_alloc(want << SK_PAGE_SHIFT, SK_NODE_ANY, 0);
		if (!p)
			return NULL;
		got = want;
	}
	if (got > npages) {
		sk_pages_trim(p, npages);
		large_count_pages(-(int64_t)(got - npages));
	}
	return p;
}

/* free() of a large block: into the cache, or back to the provider. */
static void large_free(void *p, struct sk_page *pg)
{
	size_t npages = pg->npages;
	struct large_victims v = { 0 };

	ck_pr_inc_64(&sk_state.large.frees);
	if (npages > LARGE_CACHE_PAGES) {
		large_release(p, npages);
		return;
	}
	uint64_t now = now_ns();
	pthread_mutex_lock(&large_lock);
	large_expire_locked(now, &v);
	/* Make room: the oldest entries go first. */
	while (large_cached && (large_cached == LARGE_CACHE_SLOTS ||
				large_cached_pages + npages > LARGE_CACHE_PAGES))
		v.e[v.n++] = large_take_locked(0);
	sk_large_words(pg)->lw_cached = LARGE_CACHED_MARK;
	large_cache[large_cached] = (struct large_entry){ p, npages, now };
	sk_store(&large_cached, large_cached + 1);
	large_cached_pages += npages;
	pthread_mutex_unlock(&large_lock);
	large_release_victims(&v);
}

static void large_flush(void)
{
	struct large_victims v = { 0 };

	pthread_mutex_lock(&large_lock);
	while (large_cached)
		v.e[v.n++] = large_take_locked(0);
	pthread_mutex_unlock(&large_lock);
	large_release_victims(&v);
}

static size_t pages_for(size_t size)
{
	return (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
}

/* --- allocation --- */

static sk_noinline void *enomem(void)
{
	errno = ENOMEM;
	return NULL;
}

/* SLABKIT_LEAKS: large blocks are recorded here (class objects by their
 * cache's slow path), with the caller of malloc as the site. */
static void track_large(const void *p, const void *site)
{
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF) && p)
		sk_track_alloc(p, NULL, SK_TRACK_LARGE, sk_large_size(sk_page_of(p)), site);
}

static void untrack_large(const void *p)
{
	if (sk_unlikely(sk_track_mode != SK_TRACK_OFF))
		sk_track_free(p);
}

static void *class_alloc(struct sk_cache *c, size_t size, const void *site)
{
	void *p = sk_pcpu_pop(c);
	if (!p)
		p = sk_cache_alloc_slow(c, SK_NODE_ANY, 0, site);
	if (sk_unlikely(!p))
		return enomem();
	sk_count_requested(c, size);
	return p;
}

/* Before the caches exist: the bootstrap heap for the initialising thread,
 * else initialise.  True when the caches are ready. */
static sk_noinline bool libc_ready_slow(void)
{
	if (libc_initialising)
		return false;
	return sk_libc_init() == 0;
}

static sk_always_inline bool libc_ready(void)
{
	return sk_likely(sk_load_acquire(&sk_libc.ready)) || libc_ready_slow();
}

/* The slow path of malloc without its trace record (realloc records once). */
static void *alloc_untraced(size_t size, const void *site)
{
	if (sk_unlikely(!libc_ready()))
		return libc_initialising ? boot_alloc(size, 16) : enomem();
	if (size == 0)
		size = 1; /* a unique pointer, as glibc gives */
	if (size <= SK_LIBC_MAX_CACHE_SIZE)
		return class_alloc(sk_libc.classes[sk_libc_index(size)], size, site);
	if (size > SK_LIBC_MAX_SIZE)
		return enomem();
	void *p = large_alloc(pages_for(size), 1);
	if (!p)
		return enomem();
	ck_pr_add_64(&sk_state.large.bytes_requested, size);
	track_large(p, site);
	return p;
}

void *sk_libc_alloc_slow(size_t size, const void *site)
{
	void *p = alloc_untraced(size, site);
	if (!libc_initialising) /* bootstrap blocks are not slabkit's to replay */
		sk_trace_alloc(SK_TRACE_API_LIBC, p, size, 0);
	return p;
}

/* malloc for realloc: the fast path, else the slow one, never recorded. */
static sk_always_inline void *alloc_inner(size_t size, const void *site)
{
	void *p = sk_libc_pop(size);

	if (sk_likely(p != NULL))
		return p;
	return alloc_untraced(size, site);
}

void *sk_libc_calloc(size_t n, size_t size, const void *site)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes))
		return enomem();
	void *p = sk_libc_alloc_at(bytes, site);
	if (p)
		memset(p, 0, bytes);
	return p;
}

static void *memalign_untraced(size_t align, size_t size, const void *site)
{
	if (!SK_IS_POW2(align)) {
		errno = EINVAL;
		return NULL;
	}
	if (align <= 16)
		return alloc_inner(size, site);
	if (sk_unlikely(!libc_ready()))
		return libc_initialising ? boot_alloc(size, align) : enomem();
	if (size == 0)
		size = 1;
	if (size > SK_LIBC_MAX_SIZE || align > SK_LIBC_MAX_SIZE)
		return enomem();
	if (size <= SK_PAGE_SIZE && align <= SK_PAGE_SIZE) {
		/* The power-of-two class of max(size, align), aligned to its size. */
		size_t s = SK_MAX(align, size);
		unsigned bits = 64 - (unsigned)__builtin_clzll((unsigned long long)(s - 1)); /* 2^bits >= s */
		return class_alloc(sk_libc.aligned[SK_MAX(bits, 5u) - 5], size, site);
	}
	void *p = large_alloc(pages_for(size), SK_MAX(align >> SK_PAGE_SHIFT, (size_t)1));
	if (!p)
		return enomem();
	ck_pr_add_64(&sk_state.large.bytes_requested, size);
	track_large(p, site);
	return p;
}

void *sk_libc_memalign(size_t align, size_t size, const void *site)
{
	void *p = memalign_untraced(align, size, site);
	if (!libc_initialising)
		sk_trace_alloc(SK_TRACE_API_LIBC, p, size, align);
	return p;
}

/* --- free --- */

/* free's slow path; `trace`: record the free (realloc records its own). */
static void free_slow(void *p, bool trace)
{
	if (!p)
		return;
	struct sk_page *pg = sk_page_of(p);
	if (sk_unlikely(!pg)) {
		if (in_boot_heap(p)) {
			boot_free(p);
			return;
		}
		sk_free_misuse("free", NULL, SK_MISUSE_FOREIGN, p, "not allocated by slabkit's malloc, or already freed");
		return;
	}
	switch (pg->kind) {
	case SK_PAGE_SLAB: {
		struct sk_cache *c = pg->owner;
		if (sk_unlikely(c->front != SK_FRONT_LIBC)) {
			sk_free_misuse("free", NULL, SK_MISUSE_WRONG_CACHE, p, "it belongs to cache %s, not to malloc",
				       c->name);
			return;
		}
		if (trace)
			sk_trace_free(SK_TRACE_API_LIBC, p);
		sk_cache_free_slow(c, p, pg); /* the CPU's slot did not take it */
		return;
	}
	case SK_PAGE_LARGE:
		if (sk_unlikely(p != sk_page_addr(pg))) {
			sk_free_misuse("free", NULL, SK_MISUSE_INTERIOR, p, "inside the block at %p, not its start",
				       sk_page_addr(pg));
			return;
		}
		if (sk_unlikely(sk_large_words(pg)->lw_cached == LARGE_CACHED_MARK)) {
			sk_free_misuse("free", NULL, SK_MISUSE_DOUBLE_FREE, p, "already freed");
			return;
		}
		if (trace)
			sk_trace_free(SK_TRACE_API_LIBC, p);
		untrack_large(p);
		large_free(p, pg);
		return;
	case SK_PAGE_HEAP:
		sk_free_misuse("free", NULL, SK_MISUSE_WRONG_CACHE, p, "in the backend's kmalloc heap, not a block of malloc");
		return;
	default:
		sk_free_misuse("free", NULL, SK_MISUSE_FOREIGN, p, "slabkit's metadata, not a block of malloc");
	}
}

void sk_libc_free_slow(void *p)
{
	int saved = errno;

	free_slow(p, true);
	errno = saved;
}

/* free for realloc: the fast path, else the slow one, never recorded. */
static sk_always_inline void free_inner(void *p)
{
	if (sk_likely(sk_libc_push(p)))
		return;
	free_slow(p, false);
}

/* Usable size of a live malloc block; 0 (reported) for anything else. */
static size_t block_size(const void *p, struct sk_page *pg, const char *call)
{
	if (pg && pg->kind == SK_PAGE_SLAB && ((struct sk_cache *)pg->owner)->front == SK_FRONT_LIBC)
		return ((struct sk_cache *)pg->owner)->object_size;
	if (pg && pg->kind == SK_PAGE_LARGE && p == sk_page_addr(pg) && sk_large_words(pg)->lw_cached != LARGE_CACHED_MARK)
		return sk_large_size(pg);
	sk_misuse("%s: pointer %p is not a live block of malloc", call, p);
	return 0;
}

size_t sk_libc_usable_size(const void *p)
{
	if (!p)
		return 0;
	if (in_boot_heap(p))
		return boot_size(p);
	return block_size(p, sk_page_of(p), "malloc_usable_size");
}

/* --- realloc --- */

/* A large block resized to new_size (> SK_LIBC_MAX_CACHE_SIZE): in place
 * when it shrinks or the pages after it are free, else by moving its pages. */
static void *large_realloc(void *p, struct sk_page *pg, size_t new_size, const void *site)
{
	size_t old_np = pg->npages, new_np = pages_for(new_size);

	if (new_np <= old_np) {
		if (new_np < old_np) {
			sk_pages_trim(p, new_np);
			large_count_pages(-(int64_t)(old_np - new_np));
			untrack_large(p);
			track_large(p, site);
		}
		return p;
	}
	if (sk_pages_grow(p, new_np)) {
		large_count_pages((int64_t)(new_np - old_np));
		untrack_large(p);
		track_large(p, site);
		return p;
	}
	void *q = large_alloc(new_np, 1);
	if (!q)
		return enomem();
	if (old_np < LARGE_MOVE_PAGES || sk_pages_move(q, p, old_np) != 0)
		memcpy(q, p, old_np << SK_PAGE_SHIFT);
	ck_pr_inc_64(&sk_state.large.frees);
	/* Moved pages leave fresh zero pages behind: nothing worth caching. */
	untrack_large(p);
	large_release(p, old_np);
	track_large(q, site);
	return q;
}

static void *realloc_untraced(void *p, size_t size, const void *site)
{
	if (size > SK_LIBC_MAX_SIZE)
		return enomem();
	if (sk_unlikely(in_boot_heap(p))) { /* out of the bootstrap heap, for good */
		void *q = alloc_inner(size, site);
		if (q)
			memcpy(q, p, SK_MIN(size, boot_size(p)));
		return q;
	}
	struct sk_page *pg = sk_page_of(p);
	size_t old = block_size(p, pg, "realloc");
	if (!old)
		return NULL; /* reported */
	if (pg->kind == SK_PAGE_LARGE && size > SK_LIBC_MAX_CACHE_SIZE)
		return large_realloc(p, pg, size, site);
	/* A class block stays while the new size fits and uses more than half
	 * of it; so does a large block asked to grow by nothing. */
	if (size <= old && (size > old / 2 || old <= 16))
		return p;
	void *q = alloc_inner(size, site);
	if (!q)
		return NULL; /* errno set; p untouched */
	memcpy(q, p, SK_MIN(old, size));
	free_inner(p);
	return q;
}

void *sk_libc_realloc(void *p, size_t size, const void *site)
{
	if (!p)
		return sk_libc_alloc_at(size, site);
	if (size == 0) { /* glibc: realloc(p, 0) frees p and returns NULL */
		sk_libc_free(p);
		return NULL;
	}
	void *q = realloc_untraced(p, size, site);
	sk_trace_realloc(SK_TRACE_API_LIBC, p, q, size);
	return q;
}

int sk_libc_trim(void)
{
	if (!sk_load_acquire(&sk_libc.ready))
		return 0;
	large_flush();
	slabkit_shrink_all();
	return 1;
}

void sk_libc_reset(void)
{
	large_flush();
	pthread_mutex_lock(&libc_init_lock);
	sk_store(&sk_libc.ready, false);
	memset(sk_libc.classes, 0, sizeof(sk_libc.classes));
	memset(sk_libc.aligned, 0, sizeof(sk_libc.aligned));
	pthread_mutex_unlock(&libc_init_lock);
}

/* fork (core/fork.c): the libc init lock right after init_lock (outer),
 * the large-block lock before the metadata lock (inner). */
void sk_libc_fork_lock(bool lock, bool inner)
{
	pthread_mutex_t *m = inner ? &large_lock : &libc_init_lock;

	if (lock)
		pthread_mutex_lock(m);
	else
		pthread_mutex_unlock(m);
}
