/*
 * Allocation tracking (sk_track.h): a striped hash table from object
 * address to its record, and the leak report grouped by call site.
 *
 * Lock order: one stripe lock at a time, as a leaf.  table_lock (making
 * and dropping the table) is taken with no stripe lock held.
 *
 * Memory: the bucket array and the records come from core's metadata
 * (never malloc), so tracking works the same whether or not slabkit is the
 * process's malloc; the records are recycled through per-stripe free lists
 * and go away with the metadata at slabkit_fini.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sk_core.h"
#include "sk_fastpath.h"
#include "sk_track.h"

#define TRACK_BUCKET_SHIFT 16
#define TRACK_BUCKETS (1u << TRACK_BUCKET_SHIFT)
#define TRACK_STRIPES 16u /* fork() takes them all: TSan allows 64 locks held */
#define TRACK_CHUNK (64u << 10) /* records are carved out of metadata chunks this big */

uint8_t sk_track_mode;

struct track_node {
	struct track_node *next;
	struct sk_track_rec rec;
};

/* Synchronization: lock guards this stripe's buckets (those whose index is
 * congruent to the stripe's modulo TRACK_STRIPES) and its free list. */
struct track_stripe {
	pthread_mutex_t lock;
	struct track_node *free;
} __attribute__((aligned(64)));

static struct track_stripe stripes[TRACK_STRIPES];
static struct track_node **buckets;     /* published with release order */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t dropped;                /* ck_pr atomics */
static uint64_t live_records;           /* ck_pr atomics: records in the table */

/* fork(): table_lock, then every stripe (each a leaf elsewhere, so taking
 * them all in index order cannot deadlock). */
void sk_track_fork_lock(bool lock)
{
	if (lock)
		pthread_mutex_lock(&table_lock);
	/* Stripes exist only with the table (made under table_lock, which
	 * is held from prepare to release): no table, no stripe to take. */
	if (buckets)
		for (unsigned i = 0; i < TRACK_STRIPES; i++)
			(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&stripes[i].lock);
	if (!lock)
		pthread_mutex_unlock(&table_lock);
}

static __thread pid_t tls_tid __attribute__((tls_model("initial-exec")));

static pid_t current_tid(void)
{
	if (sk_unlikely(!tls_tid))
		tls_tid = (pid_t)gettid();
	return tls_tid;
}

static inline unsigned bucket_of(const void *obj)
{
	uint64_t h = (uint64_t)(uintptr_t)obj * UINT64_C(0x9e3779b97f4a7c15);
	return (unsigned)(h >> (64 - TRACK_BUCKET_SHIFT));
}

static inline struct track_stripe *stripe_of(unsigned bucket)
{
	return &stripes[bucket % TRACK_STRIPES];
}

int sk_track_init(void)
{
	const char *e = getenv("SLABKIT_LEAKS");

	sk_track_mode = SK_TRACK_OFF;
	if (!e || !*e || !strcmp(e, "0"))
		return 0;
	if (!strcmp(e, "1"))
		sk_track_mode = SK_TRACK_SITE;
	else if (!strcmp(e, "bt"))
		sk_track_mode = SK_TRACK_BT;
	else {
		sk_errorf("slabkit: SLABKIT_LEAKS='%s' is not one of 0, 1, bt", e);
		return -EINVAL;
	}
	if (sk_track_mode == SK_TRACK_BT) {
		/* glibc's first backtrace() loads the unwinder (and mallocs):
		 * do it now, not under an allocation. */
		void *warm[2];
		backtrace(warm, 2);
	}
	return sk_track_ready() ? 0 : -ENOMEM;
}

bool sk_track_ready(void)
{
	if (sk_likely(sk_load_acquire(&buckets) != NULL))
		return true;
	pthread_mutex_lock(&table_lock);
	if (!buckets) {
		for (unsigned i = 0; i < TRACK_STRIPES; i++) {
			pthread_mutex_init(&stripes[i].lock, NULL);
			stripes[i].free = NULL;
		}
		struct track_node **b = sk_meta_zalloc(TRACK_BUCKETS * sizeof(*b));
		if (b)
			sk_store_release(&buckets, b);
	}
	pthread_mutex_unlock(&table_lock);
	return buckets != NULL;
}

void sk_track_fini(void)
{
	pthread_mutex_lock(&table_lock);
	if (buckets) {
		/* The records and the array are metadata: sk_meta_reset takes them. */
		for (unsigned i = 0; i < TRACK_STRIPES; i++)
			pthread_mutex_destroy(&stripes[i].lock);
		memset(stripes, 0, sizeof(stripes));
		sk_store(&buckets, NULL);
	}
	sk_store(&dropped, 0);
	sk_store(&live_records, 0);
	sk_track_mode = SK_TRACK_OFF;
	pthread_mutex_unlock(&table_lock);
}

/* A free record of stripe s (its lock held); NULL when out of metadata. */
static struct track_node *node_get(struct track_stripe *s)
{
	struct track_node *n = s->free;

	if (!n) {
		char *chunk = sk_meta_zalloc(TRACK_CHUNK);
		if (!chunk)
			return NULL;
		for (size_t off = 0; off + sizeof(*n) <= TRACK_CHUNK; off += sizeof(*n)) {
			struct track_node *m = (struct track_node *)(chunk + off);
			m->next = s->free;
			s->free = m;
		}
		n = s->free;
	}
	s->free = n->next;
	return n;
}

/* Fill site[] with the call site and, in bt mode, the frames above it. */
static unsigned capture_sites(const void *site, const void **out)
{
	out[0] = site;
	if (sk_track_mode != SK_TRACK_BT)
		return 1;
	void *frames[SK_TRACK_FRAMES + 8];
	int n = backtrace(frames, (int)SK_ARRAY_SIZE(frames));
	int at = -1;
	for (int i = 0; i < n; i++)
		if (frames[i] == site) {
			at = i;
			break;
		}
	/* The site is in the backtrace unless the front end was a tail
	 * call; then keep what follows slabkit's own frames (about 3). */
	int from = at >= 0 ? at + 1 : SK_MIN(n, 3);
	unsigned k = 1;
	for (int i = from; i < n && k < SK_TRACK_FRAMES; i++)
		out[k++] = frames[i];
	return k;
}

void sk_track_alloc(const void *obj, struct sk_cache *cache, enum sk_track_kind kind, uint64_t size,
		    const void *site)
{
	struct sk_track_rec rec = {
		.obj = obj, .cache = cache, .size = size, .kind = (uint8_t)kind, .tid = current_tid(),
	};
	struct timespec ts;

	if (!obj || !sk_track_ready()) {
		ck_pr_inc_64(&dropped);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	rec.time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	rec.nframes = (uint8_t)capture_sites(site, rec.site);

	unsigned b = bucket_of(obj);
	struct track_stripe *s = stripe_of(b);
	pthread_mutex_lock(&s->lock);
	struct track_node *n = node_get(s);
	if (n) {
		n->rec = rec;
		n->next = buckets[b];
		sk_store(&buckets[b], n); /* reports peek at heads without the lock */
		ck_pr_inc_64(&live_records);
	}
	pthread_mutex_unlock(&s->lock);
	if (!n)
		ck_pr_inc_64(&dropped);
}

/* The node of obj in bucket b (stripe lock held); prev gets its link. */
static struct track_node *find_locked(const void *obj, unsigned b, struct track_node ***link)
{
	struct track_node **pp = &buckets[b];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->rec.obj == obj) {
			if (link)
				*link = pp;
			return *pp;
		}
	return NULL;
}

bool sk_track_free(const void *obj)
{
	if (!sk_load_acquire(&buckets))
		return false;
	unsigned b = bucket_of(obj);
	struct track_stripe *s = stripe_of(b);
	struct track_node **link, *n;

	pthread_mutex_lock(&s->lock);
	if ((n = find_locked(obj, b, &link))) {
		sk_store(link, n->next);
		ck_pr_dec_64(&live_records);
		n->next = s->free;
		s->free = n;
	}
	pthread_mutex_unlock(&s->lock);
	return n != NULL;
}

bool sk_track_lookup(const void *obj, struct sk_track_rec *out)
{
	if (!sk_load_acquire(&buckets))
		return false;
	unsigned b = bucket_of(obj);
	struct track_stripe *s = stripe_of(b);

	pthread_mutex_lock(&s->lock);
	struct track_node *n = find_locked(obj, b, NULL);
	if (n && out)
		*out = n->rec;
	pthread_mutex_unlock(&s->lock);
	return n != NULL;
}

void sk_track_set_type(const void *obj, const void *type)
{
	if (!sk_load_acquire(&buckets))
		return;
	unsigned b = bucket_of(obj);
	struct track_stripe *s = stripe_of(b);

	pthread_mutex_lock(&s->lock);
	struct track_node *n = find_locked(obj, b, NULL);
	if (n)
		n->rec.type = type;
	pthread_mutex_unlock(&s->lock);
}

uint64_t sk_track_dropped(void)
{
	return sk_load(&dropped);
}

/* --- the tracked caches' slot operations --- */

void *sk_track_pcpu_pop(struct sk_cache *c)
{
	if (!c->pcpu_base || c->pcpu_kind == SK_PCPU_NONE)
		return NULL;
	if (sk_pcpu_use_rseq && c->pcpu_kind == SK_PCPU_LIST && c->free_tag == SK_TAG_SLAB)
		return sk_pcpu_list_pop_rseq(c);
	if (sk_pcpu_use_rseq && c->pcpu_kind == SK_PCPU_ARRAY && c->free_tag == SK_TAG_NODE)
		return sk_pcpu_array_pop_rseq(c);
	return sk_pcpu_pop_locked(c);
}

bool sk_track_pcpu_push(struct sk_cache *c, void *obj, const struct sk_page *pg)
{
	if (!c->pcpu_base || c->pcpu_kind == SK_PCPU_NONE)
		return false;
	if (sk_pcpu_use_rseq && c->pcpu_kind == SK_PCPU_LIST && c->free_tag == SK_TAG_SLAB)
		return sk_pcpu_list_push_rseq(c, obj, (uintptr_t)pg);
	if (sk_pcpu_use_rseq && c->pcpu_kind == SK_PCPU_ARRAY && c->free_tag == SK_TAG_NODE)
		return sk_pcpu_array_push_rseq(c, obj, (uintptr_t)pg->node + 1);
	return sk_pcpu_push_locked(c, obj, sk_free_tag_of(c, pg));
}

/* --- reports --- */

void sk_track_symbolize(const void *addr, char *buf, size_t len)
{
	Dl_info di;

	/* A return address: the call is the instruction before it. */
	if (addr && dladdr((const char *)addr - 1, &di) && di.dli_fname) {
		const char *mod = strrchr(di.dli_fname, '/');
		mod = mod ? mod + 1 : di.dli_fname;
		if (di.dli_sname && di.dli_saddr)
			snprintf(buf, len, "%s+0x%lx (%s)", di.dli_sname,
				 (unsigned long)((const char *)addr - (const char *)di.dli_saddr), mod);
		else
			snprintf(buf, len, "%s+0x%lx", *mod ? mod : "?",
				 (unsigned long)((const char *)addr - (const char *)di.dli_fbase));
		return;
	}
	snprintf(buf, len, "%p", addr);
}

struct leak_group {
	struct sk_track_rec first;   /* the oldest record of the group */
	uint64_t count, bytes;
};

static bool matches(const struct sk_track_rec *r, const struct sk_cache *cache, const void *type)
{
	if (cache == SK_TRACK_NO_CACHE ? r->cache != NULL : cache && r->cache != cache)
		return false;
	if (type == SK_TRACK_NO_TYPE)
		return r->type == NULL;
	return !type || r->type == type;
}

static int by_bytes_desc(const void *a, const void *b)
{
	const struct leak_group *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

/* Add r to its group (same call site; in bt mode the same backtrace). */
static void group_add(struct leak_group *g, size_t *ng, size_t cap, const struct sk_track_rec *r)
{
	for (size_t i = 0; i < *ng; i++)
		if (g[i].first.nframes == r->nframes &&
		    !memcmp(g[i].first.site, r->site, r->nframes * sizeof(r->site[0]))) {
			g[i].count++;
			g[i].bytes += r->size;
			if (r->time_ns < g[i].first.time_ns)
				g[i].first = *r;
			return;
		}
	if (*ng < cap)
		g[(*ng)++] = (struct leak_group){ .first = *r, .count = 1, .bytes = r->size };
}

/* The records that match, bucket by bucket under each stripe's lock.  With
 * no groups (g NULL) only counted; else the first `cap` are grouped and
 * their bytes added to *bytes. */
static uint64_t each_match(const struct sk_cache *cache, const void *type, struct leak_group *g,
			   size_t *ng, size_t cap, uint64_t *bytes)
{
	uint64_t count = 0;
	for (unsigned b = 0; b < TRACK_BUCKETS; b++) {
		if (!sk_load(&buckets[b]))
			continue;
		struct track_stripe *s = stripe_of(b);
		pthread_mutex_lock(&s->lock);
		for (struct track_node *n = buckets[b]; n; n = n->next) {
			if (!matches(&n->rec, cache, type) || (g && count >= cap))
				continue;
			if (g) {
				group_add(g, ng, cap, &n->rec);
				*bytes += n->rec.size;
			}
			count++;
		}
		pthread_mutex_unlock(&s->lock);
	}
	return count;
}

uint64_t sk_track_report(const char *what, const struct sk_cache *cache, const void *type)
{
	if (!sk_load_acquire(&buckets) || !sk_load(&live_records))
		return 0;
	/* Pass 1: how many.  Pass 2: group them (new records beyond the
	 * count are left for the next report). */
	uint64_t total = each_match(cache, type, NULL, NULL, 0, NULL);
	if (!total)
		return 0;
	size_t cap = (size_t)total, ng = 0, bytes = cap * sizeof(struct leak_group);
	struct leak_group *g = sk_meta_zalloc(bytes);
	if (!g) {
		sk_errorf("slabkit: leak report for %s: %llu objects; no memory to group them", what,
			  (unsigned long long)total);
		return total;
	}
	uint64_t sum = 0, count = each_match(cache, type, g, &ng, cap, &sum);
	qsort(g, ng, sizeof(*g), by_bytes_desc);

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	sk_errorf("slabkit: leaks in %s: %llu objects, %llu bytes, from %zu call sites", what,
		  (unsigned long long)count, (unsigned long long)sum, ng);
	for (size_t i = 0; i < ng; i++) {
		char sym[256];
		const struct sk_track_rec *r = &g[i].first;
		sk_track_symbolize(r->site[0], sym, sizeof(sym));
		sk_errorf("slabkit:   %llu objects, %llu bytes allocated at %s [%p] "
			  "(oldest: %p, thread %d, %.3f s ago)",
			  (unsigned long long)g[i].count, (unsigned long long)g[i].bytes, sym, r->site[0],
			  r->obj, (int)r->tid, (double)(now - r->time_ns) / 1e9);
		for (unsigned f = 1; f < r->nframes; f++) {
			sk_track_symbolize(r->site[f], sym, sizeof(sym));
			sk_errorf("slabkit:       #%u %s", f, sym);
		}
	}
	sk_meta_free(g, bytes);
	return count;
}

void sk_track_report_at_exit(void)
{
	if (sk_track_mode != SK_TRACK_OFF && sk_load_acquire(&sk_state.ready))
		sk_track_report("the process at exit", SK_TRACK_ANY, SK_TRACK_ANY);
}
