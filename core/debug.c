/*
 * The debug layer (core/sk_debug.h has the object layout and the states).
 *
 * Per debug cache: a table of live objects (open addressing, keyed by the
 * user pointer, with the size asked for), a FIFO quarantine of freed
 * objects, the error count.
 *
 * Lock order: d->lock is a leaf.  It guards the table and the quarantine;
 * red zones and poison of an object are checked and painted by whoever
 * owns the object (the allocating or freeing thread, or validation under
 * the lock while the object is in the table or the quarantine).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"
#include "sk_debug.h"
#include "sk_sanitize.h"
#include "sk_guard.h"
#include "sk_track.h"

#define RED_ACTIVE 0xcc   /* red zones of a live object (SLUB_RED_ACTIVE) */
#define RED_INACTIVE 0xbb /* red zones of a free object (SLUB_RED_INACTIVE) */
#define POISON_FREE 0x6b
#define POISON_END 0xa5

/* The quarantine holds at most this many objects, and about this many
 * bytes (at least one object). */
#define QUARANTINE_MAX 256u
#define QUARANTINE_BYTES ((size_t)1 << 20)

/* The table keeps each user pointer XORed with this, so that it does not
 * look like a pointer to valgrind's leak check (a live object only the
 * table knows is a leak) and never reads 0. */
#define LIVE_HIDE UINT64_C(0xa5a5000000000000)
#define HIDE(p) ((uintptr_t)(p) ^ (uintptr_t)LIVE_HIDE)
#define UNHIDE(k) ((void *)((uintptr_t)(k) ^ (uintptr_t)LIVE_HIDE))

struct live_entry {
	uintptr_t obj;   /* HIDE(user pointer); 0: empty */
	size_t size;     /* bytes asked for (object_size unless kmalloc said less) */
	bool guarded;    /* on guard pages (sk_guard.h): no red zones, no quarantine */
};

struct sk_debug {
	struct sk_debug_layout layout; /* first: sk_debug_layout_of() */
	uint32_t flags;                /* the cache's debug letters */
	bool poison;                   /* P, and no ctor or init owns the free object */
	bool red_zone;                 /* Z */
	bool san;                      /* tell ASan / valgrind (sk_sanitize.h) */
	bool san_defined;              /* a new object's bytes hold values (ctor, init, zeroed slab) */
	bool guard;                    /* some objects get guard pages (SLABKIT_GUARD) */
	unsigned guard_mode;           /* which ones: SK_GUARD_* (sk_guard.h) */

	pthread_mutex_t lock;
	/* Synchronization: lock. */
	struct live_entry *live;
	size_t live_cap, live_count;   /* cap a power of two; count <= cap / 2 */
	void **quarantine;             /* ring of user pointers */
	unsigned q_cap, q_head, q_count;
	uint64_t errors;               /* reports about this cache (atomic) */
};

/* --- configuration --- */

#define MAX_BLOCKS 16
#define MAX_NAMES 32

struct debug_block {
	uint32_t flags;
	unsigned first_name, nr_names;  /* 0 names: every cache */
};

/* Written by sk_debug_configure at init, read-only afterwards. */
static struct {
	struct debug_block blocks[MAX_BLOCKS];
	unsigned nr_blocks;
	char names[MAX_NAMES][SLABKIT_NAME_MAX];
	unsigned nr_names;
	bool abort_on_error;
	bool any_failslab;          /* some block has the A letter */
} cfg;

static uint64_t total_errors; /* atomic */

static int letter_flag(char ch, uint32_t *flags)
{
	switch (ch) {
	case 'F': case 'f': *flags |= SK_CACHE_CONSISTENCY; return 0;
	case 'Z': case 'z': *flags |= SK_CACHE_RED_ZONE; return 0;
	case 'P': case 'p': *flags |= SK_CACHE_POISON; return 0;
	case 'U': case 'u': *flags |= SK_CACHE_STORE_USER; return 0;
	case 'T': case 't': *flags |= SK_CACHE_TRACE; return 0;
	case 'A': case 'a': *flags |= SK_CACHE_FAILSLAB; return 0;
	case '-': *flags = 0; return 0;
	default: return -EINVAL;
	}
}

int sk_debug_configure(const char *spec, bool abort_on_error)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.abort_on_error = abort_on_error;
	if (!spec || !*spec)
		return 0;
	const char *s = spec;
	while (*s) {
		const char *end = strchr(s, ';');
		if (!end)
			end = s + strlen(s);
		if (cfg.nr_blocks == MAX_BLOCKS) {
			sk_errorf("slabkit: SLABKIT_DEBUG '%s': more than %d blocks", spec, MAX_BLOCKS);
			return -EINVAL;
		}
		struct debug_block *b = &cfg.blocks[cfg.nr_blocks++];
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *letters_end = comma ? comma : end;
		if (letters_end == s) /* ",cache": slub_debug's default letters */
			b->flags = SK_CACHE_CONSISTENCY | SK_CACHE_RED_ZONE | SK_CACHE_POISON |
				   SK_CACHE_STORE_USER;
		for (const char *l = s; l < letters_end; l++)
			if (letter_flag(*l, &b->flags) != 0) {
				sk_errorf("slabkit: SLABKIT_DEBUG '%s': unknown letter '%c' (F Z P U T A -)",
					  spec, *l);
				return -EINVAL;
			}
		if (b->flags & SK_CACHE_FAILSLAB)
			cfg.any_failslab = true;
		b->first_name = cfg.nr_names;
		for (const char *n = comma; n && n < end;) {
			const char *ne = memchr(n + 1, ',', (size_t)(end - n - 1));
			if (!ne)
				ne = end;
			size_t len = (size_t)(ne - n - 1);
			if (len) {
				if (cfg.nr_names == MAX_NAMES || len >= SLABKIT_NAME_MAX) {
					sk_errorf("slabkit: SLABKIT_DEBUG '%s': too many or too long cache names", spec);
					return -EINVAL;
				}
				memcpy(cfg.names[cfg.nr_names], n + 1, len);
				cfg.names[cfg.nr_names++][len] = 0;
				b->nr_names++;
			}
			n = ne < end ? ne : NULL;
		}
		s = *end ? end + 1 : end;
	}
	return 0;
}

/* "name" matches exactly; "pre*" matches a prefix. */
static bool name_matches(const char *pattern, const char *name)
{
	size_t n = strlen(pattern);
	if (n && pattern[n - 1] == '*')
		return !strncmp(pattern, name, n - 1);
	return !strcmp(pattern, name);
}

uint32_t sk_debug_flags_for(const char *name, uint32_t flags)
{
	uint32_t letters = 0;

	for (unsigned i = 0; i < cfg.nr_blocks; i++) {
		const struct debug_block *b = &cfg.blocks[i];
		bool match = b->nr_names == 0;
		for (unsigned k = 0; k < b->nr_names && !match; k++)
			match = name_matches(cfg.names[b->first_name + k], name);
		if (match)
			letters = b->flags; /* the last block naming the cache wins */
	}
	/* The user's sanitizers see every cache through the debug layer, with
	 * red zones, except where freed objects must stay readable (RCU). */
	if (sk_san_on && !(flags & (SK_CACHE_TYPESAFE_BY_RCU | SK_CACHE_SMR)))
		letters |= SK_CACHE_SANITIZE | SK_CACHE_RED_ZONE;
	return flags | letters;
}

void sk_debug_reset(void)
{
	sk_guard_reset();
	memset(&cfg, 0, sizeof(cfg));
	sk_fail_configure(NULL);
	ck_pr_store_64(&total_errors, 0);
}

uint64_t sk_debug_error_count(void)
{
	return ck_pr_load_64(&total_errors);
}

SK_EXPORT uint64_t slabkit_debug_errors(void)
{
	return sk_debug_error_count();
}

int sk_fail_configure(const char *spec);

/* --- layout --- */

static struct sk_debug *dbg(const struct sk_cache *c)
{
	return c->debug;
}

size_t sk_debug_stride_request(struct sk_cache *c)
{
	size_t size = c->object_size;
	if (!(c->flags & SK_CACHE_RED_ZONE))
		return size;
	/* Left: one alignment unit (at least a word) keeps the user pointer
	 * aligned.  Right: at least a word past the object's word end. */
	size_t left = SK_MAX((size_t)c->align, (size_t)8);
	return left + SK_ALIGN_UP(size, 8) + 8;
}

int sk_debug_attach(struct sk_cache *c)
{
	struct sk_debug *d = sk_meta_zalloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->flags = c->flags & SK_CACHE_DEBUG_MASK;
	d->red_zone = (c->flags & SK_CACHE_RED_ZONE) != 0;
	d->san = (c->flags & SK_CACHE_SANITIZE) != 0;
	d->guard = (c->flags & SK_CACHE_GUARD) != 0;
	d->guard_mode = d->guard ? sk_guard_mode_for(c->name, c->flags) : 0;
	d->san_defined = c->ctor || c->init || (c->flags & SK_CACHE_ZINIT);
	/* A ctor or UMA init builds state that must survive free: no poison,
	 * as Linux does (SLAB_POISON is ignored for caches with a ctor). */
	d->poison = (c->flags & SK_CACHE_POISON) && !c->ctor && !c->init;
	d->layout.rz_left = d->red_zone ? (uint32_t)SK_MAX((size_t)c->align, (size_t)8) : 0;
	d->layout.stride = c->size;
	pthread_mutex_init(&d->lock, NULL);
	d->live_cap = 64;
	d->live = sk_meta_zalloc(d->live_cap * sizeof(*d->live));
	size_t per = SK_MAX((size_t)c->size, (size_t)1);
	d->q_cap = (unsigned)SK_MAX((size_t)1, SK_MIN((size_t)QUARANTINE_MAX, QUARANTINE_BYTES / per));
	d->quarantine = sk_meta_zalloc(d->q_cap * sizeof(void *));
	if (!d->live || !d->quarantine) {
		if (d->live)
			sk_meta_free(d->live, d->live_cap * sizeof(*d->live));
		sk_meta_free(d, sizeof(*d));
		return -ENOMEM;
	}
	c->debug = d;
	return 0;
}

void sk_debug_detach(struct sk_cache *c)
{
	struct sk_debug *d = dbg(c);
	if (!d)
		return;
	if (d->guard)
		sk_guard_forget(c);
	sk_meta_free(d->live, d->live_cap * sizeof(*d->live));
	sk_meta_free(d->quarantine, d->q_cap * sizeof(void *));
	pthread_mutex_destroy(&d->lock);
	sk_meta_free(d, sizeof(*d));
	c->debug = NULL;
}

/* Bytes from the user pointer to the end of the right red zone. */
static size_t right_end(const struct sk_cache *c)
{
	return dbg(c)->layout.stride - dbg(c)->layout.rz_left;
}

/* --- the live table (lock held) --- */

static size_t slot_of(uintptr_t obj, size_t cap)
{
	return (size_t)(((obj >> 3) * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & (cap - 1);
}

static struct live_entry *live_find(struct sk_debug *d, uintptr_t obj)
{
	for (size_t i = slot_of(obj, d->live_cap);; i = (i + 1) & (d->live_cap - 1)) {
		if (d->live[i].obj == obj)
			return &d->live[i];
		if (!d->live[i].obj)
			return NULL;
	}
}

static struct live_entry *live_put(struct live_entry *tab, size_t cap, struct live_entry e)
{
	size_t i = slot_of(e.obj, cap);
	while (tab[i].obj)
		i = (i + 1) & (cap - 1);
	tab[i] = e;
	return &tab[i];
}

/* false when the table cannot grow (metadata exhausted). */
static bool live_insert(struct sk_debug *d, uintptr_t obj, size_t size, bool guarded)
{
	if ((d->live_count + 1) * 2 > d->live_cap) {
		size_t cap = d->live_cap * 2;
		struct live_entry *tab = sk_meta_zalloc(cap * sizeof(*tab));
		if (!tab)
			return false;
		for (size_t i = 0; i < d->live_cap; i++)
			if (d->live[i].obj)
				live_put(tab, cap, d->live[i]);
		sk_meta_free(d->live, d->live_cap * sizeof(*d->live));
		d->live = tab;
		d->live_cap = cap;
	}
	live_put(d->live, d->live_cap, (struct live_entry){ .obj = obj, .size = size, .guarded = guarded });
	d->live_count++;
	return true;
}

/* Linear probing deletion: shift the following run back. */
static void live_remove(struct sk_debug *d, struct live_entry *e)
{
	size_t mask = d->live_cap - 1, i = (size_t)(e - d->live), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!d->live[j].obj)
			break;
		size_t home = slot_of(d->live[j].obj, d->live_cap);
		/* Move j into the hole at i if its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			d->live[i] = d->live[j];
			i = j;
		}
	}
	d->live[i] = (struct live_entry){ 0 };
	d->live_count--;
}

static bool in_quarantine(struct sk_debug *d, const void *obj)
{
	for (unsigned k = 0; k < d->q_count; k++)
		if (d->quarantine[(d->q_head + k) % d->q_cap] == obj)
			return true;
	return false;
}

/* --- reports --- */

static void count_error(struct sk_cache *c)
{
	if (c && dbg(c))
		ck_pr_inc_64(&dbg(c)->errors);
	ck_pr_inc_64(&total_errors);
}

/* With U (SLAB_STORE_USER), where a live object was allocated. */
static void report_site(struct sk_cache *c, const void *obj)
{
	struct sk_track_rec rec;
	char site[160];
	if (!sk_track_cache(c) || !sk_track_lookup(obj, &rec))
		return;
	sk_track_symbolize(rec.site[0], site, sizeof(site));
	sk_errorf("Allocated in %s tid=%d", site, (int)rec.tid);
}

static void end_report(const char *what)
{
	if (cfg.abort_on_error)
		sk_fatal("debug: %s (SLABKIT_DEBUG_ABORT is set)", what);
}

/* One block: what, where, the first bad byte, what was done. */
static void report_bytes(struct sk_cache *c, const char *what, const unsigned char *user, const unsigned char *from,
			 size_t len, unsigned char expected, const char *fix)
{
	size_t first = SIZE_MAX, bad = 0;
	for (size_t i = 0; i < len; i++)
		if (from[i] != expected) {
			if (first == SIZE_MAX)
				first = i;
			bad++;
		}
	const unsigned char *at = from + first;
	count_error(c);
	sk_errorf("=============================================================================");
	sk_errorf("BUG %s: %s", c->name, what);
	sk_errorf("Object %p (%u bytes): first bad byte at offset %td (%p): expected 0x%02x, found 0x%02x; %zu of %zu bytes differ",
		  (const void *)user, c->object_size, at - user, (const void *)at, expected, *at, bad, len);
	report_site(c, user);
	sk_errorf("FIX %s: %s", c->name, fix);
	end_report(what);
}

static void report_line(struct sk_cache *c, const char *what, const void *obj, const char *detail)
{
	count_error(c);
	sk_errorf("=============================================================================");
	sk_errorf("BUG %s: %s", c->name, what);
	sk_errorf("Object %p: %s", obj, detail);
	report_site(c, obj);
	end_report(what);
}

/* Check that [from, from+len) reads `expected`; report and restore if not.
 * Returns 1 if it was bad. */
static int check_fill_open(struct sk_cache *c, const char *what, unsigned char *user, unsigned char *from, size_t len,
		      unsigned char expected)
{
	for (size_t i = 0; i < len; i++)
		if (from[i] != expected) {
			char fix[96];
			snprintf(fix, sizeof(fix), "Restoring %s %p-%p=0x%02x", what, (void *)from,
				 (void *)(from + len - 1), expected);
			char title[64];
			snprintf(title, sizeof(title), "%s overwritten", what);
			report_bytes(c, title, user, from, len, expected, fix);
			memset(from, expected, len);
			return 1;
		}
	return 0;
}

/* The same for bytes the program may not touch (sk_sanitize.h): core
 * opens them around its own look. */
static int check_fill(struct sk_cache *c, const char *what, unsigned char *user, unsigned char *from, size_t len,
		      unsigned char expected)
{
	if (!dbg(c)->san)
		return check_fill_open(c, what, user, from, len, expected);
	sk_san_open(from, len);
	int bad = check_fill_open(c, what, user, from, len, expected);
	sk_san_close(from, len);
	return bad;
}

static void fill_zone(struct sk_cache *c, unsigned char *from, size_t len, unsigned char value)
{
	if (dbg(c)->san)
		sk_san_open(from, len);
	memset(from, value, len);
	if (dbg(c)->san)
		sk_san_close(from, len);
}

/* The red zones of obj (live: 0xcc and the kmalloc zone from `size`;
 * free: 0xbb). */
static int check_red_zones(struct sk_cache *c, unsigned char *obj, size_t size, unsigned char value)
{
	struct sk_debug *d = dbg(c);
	int bad = 0;
	if (!d->red_zone)
		return 0;
	bad += check_fill(c, "Left Redzone", obj, obj - d->layout.rz_left, d->layout.rz_left, value);
	if (value == RED_ACTIVE && size < c->object_size)
		bad += check_fill(c, "kmalloc Redzone", obj, obj + size, c->object_size - size, value);
	bad += check_fill(c, "Right Redzone", obj, obj + c->object_size, right_end(c) - c->object_size, value);
	return bad;
}

static void paint_red_zones(struct sk_cache *c, unsigned char *obj, size_t size, unsigned char value)
{
	struct sk_debug *d = dbg(c);
	if (!d->red_zone)
		return;
	fill_zone(c, obj - d->layout.rz_left, d->layout.rz_left, value);
	if (value == RED_ACTIVE && size < c->object_size)
		fill_zone(c, obj + size, c->object_size - size, value);
	fill_zone(c, obj + c->object_size, right_end(c) - c->object_size, value);
}

/*
 * FreeBSD's INVARIANTS (uma_dbg.c trash_*, malloc's mtrash_*) for malloc(9)
 * classes and UMA zones: free items are filled with the word 0xdeadc0de,
 * and a malloc(9) item keeps the type that freed it in its last word, for
 * the report ("Most recently used by").  Linux caches get slub's 0x6b ...
 * 0xa5.
 */
#define TRASH_WORD 0xdeadc0deu

__thread const void *sk_debug_free_type __attribute__((tls_model("initial-exec")));

static bool trash_style(const struct sk_cache *c)
{
	return c->front == SK_FRONT_MALLOC || c->front == SK_FRONT_UMA;
}

/* The trashed bytes: all, less the type word of a malloc(9) item. */
static size_t trash_end(const struct sk_cache *c)
{
	size_t n = c->object_size;
	return c->front == SK_FRONT_MALLOC && n >= 2 * sizeof(void *) ? n - sizeof(void *) : n;
}

static unsigned char trash_byte(size_t i)
{
	uint32_t w = TRASH_WORD;
	return ((const unsigned char *)&w)[i % 4];
}

static void poison_as(struct sk_cache *c, unsigned char *obj, const void *freer)
{
	if (!trash_style(c)) {
		memset(obj, POISON_FREE, c->object_size - 1);
		obj[c->object_size - 1] = POISON_END;
		return;
	}
	size_t end = trash_end(c);
	for (size_t i = 0; i < end; i++)
		obj[i] = trash_byte(i);
	if (end < c->object_size)
		memcpy(obj + end, &freer, sizeof(freer));
}

static void poison(struct sk_cache *c, unsigned char *obj)
{
	poison_as(c, obj, sk_debug_free_type);
}

static int check_trash(struct sk_cache *c, unsigned char *obj)
{
	size_t end = trash_end(c), first = SIZE_MAX, bad = 0;
	for (size_t i = 0; i < end; i++)
		if (obj[i] != trash_byte(i)) {
			first = first == SIZE_MAX ? i : first;
			bad++;
		}
	if (!bad)
		return 0;
	const void *freer = NULL;
	if (end < c->object_size)
		memcpy(&freer, obj + end, sizeof(freer));
	size_t word = first & ~(size_t)3;
	uint32_t val;
	memcpy(&val, obj + word, 4);
	count_error(c);
	sk_errorf("=============================================================================");
	sk_errorf("BUG %s: Memory modified after free (use after free)", c->name);
	sk_errorf("Object %p (%u bytes): first bad byte at offset %zu (%p): expected 0x%02x, found 0x%02x; "
		  "%zu of %zu bytes differ; val=%x @ %p",
		  (void *)obj, c->object_size, first, (void *)(obj + first), trash_byte(first), obj[first], bad, end,
		  val, (void *)(obj + word));
	if (c->front == SK_FRONT_MALLOC) {
		const char *name = sk_bsd_type_name(freer);
		sk_errorf("Most recently used by %s", name ? name : "(an unknown type)");
	}
	report_site(c, obj);
	sk_errorf("FIX %s: Restoring the trash pattern", c->name);
	end_report("Memory modified after free");
	poison_as(c, obj, freer);
	return 1;
}

static int check_poison(struct sk_cache *c, unsigned char *obj)
{
	if (trash_style(c))
		return check_trash(c, obj);
	size_t n = c->object_size - 1;
	for (size_t i = 0; i < n; i++)
		if (obj[i] != POISON_FREE) {
			report_bytes(c, "Poison overwritten (use after free)", obj, obj, n, POISON_FREE,
				     "Restoring Poison");
			poison(c, obj);
			return 1;
		}
	if (obj[n] != POISON_END) {
		report_bytes(c, "End Poison overwritten (use after free)", obj, obj + n, 1, POISON_END,
			     "Restoring End Poison");
		obj[n] = POISON_END;
		return 1;
	}
	return 0;
}

/* A quarantined object: red zones inactive, poison intact.  With a
 * sanitizer, `release`: the object then goes back to the backend and stays
 * open to slabkit; else (validation) it is closed again. */
static int check_free_object(struct sk_cache *c, unsigned char *obj, bool release)
{
	struct sk_debug *d = dbg(c);
	int bad = check_red_zones(c, obj, c->object_size, RED_INACTIVE);
	if (d->san)
		sk_san_open(obj, c->object_size);
	if (d->poison)
		bad += check_poison(c, obj);
	if (d->san && release)
		sk_san_open(obj - d->layout.rz_left, d->layout.stride);
	else if (d->san)
		sk_san_close(obj, c->object_size);
	return bad;
}

/* --- failure injection --- */

bool sk_fail_on;
__thread bool sk_fail_injected __attribute__((tls_model("initial-exec")));

/* Written by sk_fail_configure at init, read-only afterwards; the counter
 * is atomic. */
static struct {
	unsigned every;          /* every Nth eligible request fails (0: off) */
	unsigned percent;        /* or with this probability, in percent */
	bool wait;               /* blocking requests fail too (never NOFAIL) */
	char cache[SLABKIT_NAME_MAX]; /* "" : any cache (with A, or all if none has A) */
	char type[SLABKIT_NAME_MAX];  /* "" : any malloc type */
	uint64_t count;
	uint64_t seed;
} fail;

int sk_fail_configure(const char *spec)
{
	memset(&fail, 0, sizeof(fail));
	sk_fail_on = false;
	if (!spec || !*spec)
		return 0;
	const char *s = spec;
	while (*s) {
		const char *end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		size_t len = (size_t)(end - s);
		char item[80];
		if (len >= sizeof(item))
			goto bad;
		memcpy(item, s, len);
		item[len] = 0;
		char *eq = strchr(item, '=');
		char *val = eq ? eq + 1 : NULL;
		if (eq)
			*eq = 0;
		char *e = NULL;
		if (!strcmp(item, "every") && val) {
			fail.every = (unsigned)strtoul(val, &e, 10);
			if (*e || !fail.every)
				goto bad;
		} else if (!strcmp(item, "probability") && val) {
			fail.percent = (unsigned)strtoul(val, &e, 10);
			if (*e || !fail.percent || fail.percent > 100)
				goto bad;
		} else if (!strcmp(item, "wait") && !val) {
			fail.wait = true;
		} else if (!strcmp(item, "cache") && val && strlen(val) < SLABKIT_NAME_MAX) {
			strcpy(fail.cache, val);
		} else if (!strcmp(item, "type") && val && strlen(val) < SLABKIT_NAME_MAX) {
			strcpy(fail.type, val);
		} else {
			goto bad;
		}
		s = *end ? end + 1 : end;
	}
	if (!fail.every && !fail.percent)
		goto bad;
	fail.seed = UINT64_C(0x2545F4914F6CDD1D);
	sk_fail_on = true;
	return 0;
bad:
	sk_errorf("slabkit: SLABKIT_FAIL_ALLOC '%s': expected every=N or probability=PERCENT, "
		  "optionally wait, cache=NAME, type=NAME", spec);
	memset(&fail, 0, sizeof(fail));
	return -EINVAL;
}

bool sk_fail_should(const struct sk_cache *c, const char *type_name, unsigned flags)
{
	if (flags & SK_ALLOC_NOFAIL)
		return false;
	if ((flags & SK_ALLOC_WAIT) && !fail.wait)
		return false;
	if (fail.type[0] && (!type_name || !name_matches(fail.type, type_name)))
		return false;
	if (fail.cache[0] && (!c || !name_matches(fail.cache, c->name)))
		return false;
	if (!c && !fail.type[0])
		return false; /* malloc(9) requests fail only when a type is named */
	if (c && !(c->flags & SK_CACHE_FAILSLAB))
		return false;
	uint64_t n = ck_pr_faa_64(&fail.count, 1) + 1;
	if (fail.every)
		return n % fail.every == 0;
	/* A splitmix step of the request number: reproducible per run. */
	uint64_t z = n * UINT64_C(0x9E3779B97F4A7C15) + fail.seed;
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	z ^= z >> 31;
	return z % 100 < fail.percent;
}

uint32_t sk_fail_flags_for(const char *name)
{
	if (!sk_fail_on)
		return 0;
	if (fail.cache[0])
		return name_matches(fail.cache, name) ? SK_CACHE_FAILSLAB : 0;
	if (fail.type[0]) /* the malloc(9) classes leave their fast paths to malloc_common's check */
		return !strncmp(name, "malloc-", 7) ? SK_CACHE_FAILSLAB : 0;
	return cfg.any_failslab ? 0 : SK_CACHE_FAILSLAB;
}

/* --- slow paths --- */

void *sk_debug_alloc(struct sk_cache *c, int node, unsigned flags)
{
	struct sk_debug *d = dbg(c);

	if (sk_fail_on && sk_fail_should(c, NULL, flags)) {
		/* Only a blocking request is retried by its front end. */
		sk_fail_injected = (flags & SK_ALLOC_WAIT) != 0;
		return NULL;
	}
	if (d->guard && sk_guard_pick(c, d->guard_mode)) {
		unsigned char *g = sk_guard_alloc(c, node, flags);
		if (g) { /* else: an ordinary object */
			pthread_mutex_lock(&d->lock);
			bool ok = live_insert(d, HIDE(g), c->object_size, true);
			pthread_mutex_unlock(&d->lock);
			if (!ok) {
				sk_guard_free(c, g);
				return NULL;
			}
			if (d->san)
				sk_san_alloc(g, c->object_size, true);
			if (d->flags & SK_CACHE_TRACE)
				sk_errorf("TRACE %s alloc %p (guarded) inuse=%zu", c->name, (void *)g, d->live_count);
			return g;
		}
	}
	void *base = c->ops->alloc(c, node, flags);
	if (!base)
		return NULL;
	unsigned char *obj = sk_debug_user(c, base);

	pthread_mutex_lock(&d->lock);
	struct live_entry *e = live_find(d, HIDE(obj));
	bool fresh = !e;
	bool ok = fresh && live_insert(d, HIDE(obj), c->object_size, false);
	pthread_mutex_unlock(&d->lock);
	if (!fresh) {
		/* The backend handed out a live object: its metadata is
		 * corrupt.  Keep the object out of circulation. */
		report_line(c, "Object allocated twice (the cache's free list is corrupt)", obj,
			    "still in use; this allocation takes another object");
		return sk_debug_alloc(c, node, flags);
	}
	if (!ok) {
		c->ops->free(c, base, sk_page_of(base));
		return NULL;
	}
	paint_red_zones(c, obj, c->object_size, RED_ACTIVE);
	if (d->san)
		sk_san_alloc(obj, c->object_size, d->san_defined);
	if (d->flags & SK_CACHE_TRACE)
		sk_errorf("TRACE %s alloc %p inuse=%zu", c->name, (void *)obj, d->live_count);
	return obj;
}

bool sk_debug_check_live(struct sk_cache *c, const void *obj)
{
	struct sk_debug *d = dbg(c);
	pthread_mutex_lock(&d->lock);
	bool live = live_find(d, HIDE(obj)) != NULL;
	bool freed = !live && (in_quarantine(d, obj) || (d->guard && sk_guard_recently_freed(obj)));
	pthread_mutex_unlock(&d->lock);
	if (live)
		return true;
	if (freed)
		report_line(c, "Object already free (double free)", obj, "free ignored");
	else
		report_line(c, "Invalid free: not an object of this cache in use", obj,
			    "free ignored (never allocated, interior pointer, or freed long ago)");
	return false;
}

bool sk_debug_free(struct sk_cache *c, void *ptr, struct sk_page *pg)
{
	struct sk_debug *d = dbg(c);
	unsigned char *obj = ptr;
	(void)pg;

	pthread_mutex_lock(&d->lock);
	struct live_entry *e = live_find(d, HIDE(obj));
	size_t size = e ? e->size : 0;
	bool guarded = e && e->guarded;
	if (e)
		live_remove(d, e);
	pthread_mutex_unlock(&d->lock);
	if (!e)
		return sk_debug_check_live(c, obj); /* reports; false */
	if (guarded) { /* the guard pages take the red zones' and the quarantine's part */
		if (d->flags & SK_CACHE_TRACE)
			sk_errorf("TRACE %s free %p (guarded) inuse=%zu", c->name, (void *)obj, d->live_count);
		if (d->san)
			sk_san_free(obj, c->object_size);
		sk_guard_free(c, obj);
		return true;
	}

	check_red_zones(c, obj, size, RED_ACTIVE);
	if (d->flags & SK_CACHE_TRACE)
		sk_errorf("TRACE %s free %p inuse=%zu", c->name, (void *)obj, d->live_count);
	if (d->san && size < c->object_size)
		sk_san_open(obj + size, c->object_size - size); /* the kmalloc tail */
	paint_red_zones(c, obj, c->object_size, RED_INACTIVE);
	if (d->poison)
		poison(c, obj);
	if (d->san)
		sk_san_free(obj, c->object_size);

	void *victim = NULL;
	pthread_mutex_lock(&d->lock);
	if (d->q_count == d->q_cap) {
		victim = d->quarantine[d->q_head];
		d->q_head = (d->q_head + 1) % d->q_cap;
		d->q_count--;
	}
	d->quarantine[(d->q_head + d->q_count) % d->q_cap] = obj;
	d->q_count++;
	pthread_mutex_unlock(&d->lock);
	if (victim) {
		check_free_object(c, victim, true);
		void *base = sk_debug_base(c, victim);
		c->ops->free(c, base, sk_page_of(base));
	}
	return true;
}

void sk_debug_flush(struct sk_cache *c)
{
	struct sk_debug *d = dbg(c);
	for (;;) {
		void *victim = NULL;
		pthread_mutex_lock(&d->lock);
		if (d->q_count) {
			victim = d->quarantine[d->q_head];
			d->q_head = (d->q_head + 1) % d->q_cap;
			d->q_count--;
		}
		pthread_mutex_unlock(&d->lock);
		if (!victim)
			return;
		check_free_object(c, victim, true);
		void *base = sk_debug_base(c, victim);
		c->ops->free(c, base, sk_page_of(base));
	}
}

void sk_debug_report_leaks(struct sk_cache *c)
{
	struct sk_debug *d = dbg(c);
	unsigned shown = 0;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->live_cap && shown < 16; i++)
		if (d->live[i].obj) {
			void *obj = UNHIDE(d->live[i].obj);
			sk_errorf("Object %p @offset=%zu size %zu", obj,
				  (size_t)((char *)obj - (char *)sk_page_addr(sk_page_of(obj))), d->live[i].size);
			shown++;
		}
	if (d->live_count > shown)
		sk_errorf("... and %zu more", d->live_count - shown);
	pthread_mutex_unlock(&d->lock);
}

/* --- kmalloc sizes --- */

void sk_debug_set_size(struct sk_cache *c, void *obj, size_t size)
{
	struct sk_debug *d = dbg(c);
	pthread_mutex_lock(&d->lock);
	struct live_entry *e = live_find(d, HIDE(obj));
	size_t old = e ? e->size : 0;
	if (e)
		e->size = size;
	pthread_mutex_unlock(&d->lock);
	if (!e)
		return;
	if (d->san && size > old)
		sk_san_open((char *)obj + old, size - old);
	if (d->red_zone && size < c->object_size)
		fill_zone(c, (unsigned char *)obj + size, c->object_size - size, RED_ACTIVE);
	else if (d->san && size < c->object_size)
		sk_san_close((char *)obj + size, c->object_size - size);
}

size_t sk_debug_size(struct sk_cache *c, const void *obj)
{
	struct sk_debug *d = dbg(c);
	pthread_mutex_lock(&d->lock);
	struct live_entry *e = live_find(d, HIDE(obj));
	size_t size = e ? e->size : 0;
	pthread_mutex_unlock(&d->lock);
	return size;
}

void sk_debug_resize(struct sk_cache *c, void *obj, size_t new_size, bool zero)
{
	size_t old = sk_debug_size(c, obj);
	if (!old)
		return;
	sk_debug_set_size(c, obj, new_size); /* first: it opens grown bytes to a sanitizer */
	if (new_size > old && zero)
		memset((char *)obj + old, 0, new_size - old);
}

/* --- validation --- */

void sk_validate_report(struct sk_cache *c, const char *what, const void *where, const char *fix,
			const char *fmt, ...)
{
	char detail[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	const char *name = c ? c->name : "kmalloc heap";
	count_error(c);
	sk_errorf("=============================================================================");
	sk_errorf("BUG %s: %s", name, what);
	sk_errorf("At %p: %s", where, detail);
	sk_errorf("FIX %s: %s", name, fix);
	end_report(what);
}

/* Every error found is reported once, and counted by whoever reports it. */
static uint64_t validate_cache(struct sk_cache *c)
{
	struct sk_debug *d = dbg(c);
	uint64_t errors = 0;

	if (d) {
		pthread_mutex_lock(&d->lock);
		for (size_t i = 0; i < d->live_cap; i++)
			if (d->live[i].obj && !d->live[i].guarded)
				errors += (uint64_t)check_red_zones(c, (unsigned char *)UNHIDE(d->live[i].obj),
								    d->live[i].size, RED_ACTIVE);
		for (unsigned k = 0; k < d->q_count; k++)
			errors += (uint64_t)check_free_object(c, d->quarantine[(d->q_head + k) % d->q_cap], false);
		pthread_mutex_unlock(&d->lock);
	}
	errors += sk_validate_slots(c);
	if (c->ops->validate)
		errors += c->ops->validate(c);
	return errors;
}

SK_EXPORT int slabkit_validate(const char *cache_or_null)
{
	uint64_t errors = 0;
	bool found = false;

	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	for (struct sk_cache *c = sk_state.first; c; c = c->next) {
		if (cache_or_null && strcmp(c->name, cache_or_null))
			continue;
		found = true;
		errors += validate_cache(c);
	}
	/* A backend's own kmalloc heap belongs to no cache (SLOB). */
	if (!cache_or_null && sk_state.heap_ops && sk_state.heap_ops->validate)
		errors += sk_state.heap_ops->validate(NULL);
	pthread_mutex_unlock(&sk_state.registry_lock);
	if (!found && cache_or_null)
		return -ENOENT;
	return errors > INT32_MAX ? INT32_MAX : (int)errors;
}
