/*
 * The model every fuzz harness (tests/fuzz/fuzz_<front end>.c) checks the
 * library against.
 *
 * An input is a byte stream; the harness decodes it into operations of its
 * front end (fz_in below: reading past the end gives zeros, so every input
 * is valid).  The model keeps every live object: where it is, how many
 * bytes it spans, the tag its contents were filled from, and what the
 * library must still guarantee for it.  After each operation the harness
 * checks what the model predicts:
 *   - contents preserved: a live object still holds its pattern when it is
 *     freed, reallocated or checked;
 *   - no overlap: a new object's bytes meet no live object's bytes;
 *   - alignment and zeroing as the call promises;
 *   - the library's statistics (cache info, zone counts, malloc type
 *     figures, large allocations) equal the model's counts.
 * A mismatch prints what was expected and what was seen and aborts, so
 * libFuzzer keeps the input and the standalone driver fails its test.
 *
 * Every input starts and ends with nothing live: the harness frees what the
 * model holds and destroys the caches and zones it created, so inputs are
 * independent and libFuzzer may run millions in one process.
 *
 * Single-threaded: per-CPU counter sums are exact when nothing else runs
 * (the harness runs slabkit without its maintenance thread).
 */
#ifndef SLABKIT_FUZZ_H
#define SLABKIT_FUZZ_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <slabkit/slabkit.h>

/* --- input decoding --- */

struct fz_in {
	const uint8_t *data;
	size_t size, pos;
};

static inline bool fz_more(const struct fz_in *in)
{
	return in->pos < in->size;
}

static inline unsigned fz_u8(struct fz_in *in)
{
	return in->pos < in->size ? in->data[in->pos++] : 0;
}

static inline unsigned fz_u16(struct fz_in *in)
{
	unsigned lo = fz_u8(in);
	return lo | fz_u8(in) << 8;
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint32_t lo = fz_u16(in);
	return lo | (uint32_t)fz_u16(in) << 16;
}

/*
 * A size from the input, spread over the ranges that take different paths:
 * 0..64 (tiny, including 0), up to 1 KiB, up to `mid` (the largest class),
 * just above it, and rarely up to `large`.
 */
static inline size_t fz_size(struct fz_in *in, size_t mid, size_t large)
{
	unsigned sel = fz_u8(in);
	uint32_t r = fz_u32(in);
	switch (sel % 16) {
	case 0: case 1: case 2: case 3: case 4:
		return r % 65;
	case 5: case 6: case 7: case 8:
		return 1 + r % 1024;
	case 9: case 10: case 11: case 12:
		return 1 + r % mid;
	case 13: /* around a power of two: the class edges */
		{
			size_t p = (size_t)1 << (3 + r % 14);
			return p + (r >> 16) % 3 - 1;
		}
	case 14:
		return mid + 1 + r % (4 * mid);
	default: /* one in 32: up to `large` */
		return (r >> 31) ? 1 + r % large : 1 + r % (4 * mid);
	}
}

/* The same, for an object that must have a size: a zero becomes 1..256. */
static inline size_t fz_object_size(struct fz_in *in, size_t mid, size_t large)
{
	size_t size = fz_size(in, mid, large);
	return size ? size : 1 + fz_u8(in);
}

/* --- failures --- */

/* Operations done since the process started (printed at exit). */
extern unsigned long long fz_ops;
extern const char *fz_name;
/* An operation that misuses the API on purpose sets fz_panics_expected and
 * checks fz_panics_seen; any other panic is a mismatch. */
extern unsigned fz_panics_expected, fz_panics_seen;

__attribute__((noreturn, format(printf, 1, 2))) static inline void fz_fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: MISMATCH after %llu operations: ", fz_name, fz_ops);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define fz_expect(cond, ...)                 \
	do {                                 \
		if (!(cond))                 \
			fz_fail(__VA_ARGS__); \
	} while (0)

/* --- contents --- */

/* Byte i of an object filled from tag: depends only on (tag, i), so any
 * prefix of a filled object checks. */
static inline uint8_t fz_byte(uint64_t tag, size_t i)
{
	uint64_t x = (tag + (i >> 8)) * 0x9E3779B97F4A7C15ull;
	return (uint8_t)((x >> 56) ^ i);
}

/* Objects up to FZ_FULL bytes are filled in full; larger ones in their
 * first FZ_FULL bytes, 8 bytes of every later page and their last FZ_EDGE
 * bytes: enough to see a page handed out twice, cheap for megabytes. */
#define FZ_EDGE 512
#define FZ_FULL 8192

static inline void fz_fill_range(uint8_t *p, size_t from, size_t to, uint64_t tag)
{
	/* fz_byte, one multiplication per 256 bytes */
	for (size_t i = from; i < to;) {
		uint8_t hi = (uint8_t)(((tag + (i >> 8)) * 0x9E3779B97F4A7C15ull) >> 56);
		size_t end = (i | 255) + 1 < to ? (i | 255) + 1 : to;
		for (; i < end; i++)
			p[i] = hi ^ (uint8_t)i;
	}
}

/* Bytes [from, to) of the pattern, clipped to [0, limit): first bad or SIZE_MAX. */
static inline size_t fz_check_range(const uint8_t *p, size_t from, size_t to, size_t limit,
				    uint64_t tag)
{
	if (to > limit)
		to = limit;
	for (size_t i = from; i < to;) {
		uint8_t hi = (uint8_t)(((tag + (i >> 8)) * 0x9E3779B97F4A7C15ull) >> 56);
		size_t end = (i | 255) + 1 < to ? (i | 255) + 1 : to;
		for (; i < end; i++)
			if (p[i] != (uint8_t)(hi ^ (uint8_t)i))
				return i;
	}
	return SIZE_MAX;
}

static inline void fz_fill(void *obj, size_t n, uint64_t tag)
{
	uint8_t *p = obj;
	if (n <= FZ_FULL + FZ_EDGE) {
		fz_fill_range(p, 0, n, tag);
		return;
	}
	fz_fill_range(p, 0, FZ_FULL, tag);
	for (size_t off = FZ_FULL + 4096; off + 8 <= n - FZ_EDGE; off += 4096)
		fz_fill_range(p, off, off + 8, tag);
	fz_fill_range(p, n - FZ_EDGE, n, tag);
}

/* What fz_fill(obj, n, tag) wrote, looked at in its first `limit` bytes
 * only (what a shrinking realloc keeps): the first byte that differs, or
 * SIZE_MAX. */
static inline size_t fz_check_prefix(const void *obj, size_t n, size_t limit, uint64_t tag)
{
	const uint8_t *p = obj;
	if (n <= FZ_FULL + FZ_EDGE)
		return fz_check_range(p, 0, n, limit, tag);
	size_t bad = fz_check_range(p, 0, FZ_FULL, limit, tag);
	for (size_t off = FZ_FULL + 4096; bad == SIZE_MAX && off + 8 <= n - FZ_EDGE; off += 4096)
		bad = fz_check_range(p, off, off + 8, limit, tag);
	if (bad == SIZE_MAX)
		bad = fz_check_range(p, n - FZ_EDGE, n, limit, tag);
	return bad;
}

static inline size_t fz_check(const void *obj, size_t n, uint64_t tag)
{
	return fz_check_prefix(obj, n, n, tag);
}

/* Every byte of [0, n) is zero (checked in full: zeroing is a promise about
 * every byte, and the fills above dirty what the allocator recycles). */
static inline size_t fz_first_nonzero(const void *obj, size_t n)
{
	const uint8_t *p = obj;
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return i;
	return SIZE_MAX;
}

/* --- the live set --- */

#define FZ_SLOTS 256

struct fz_obj {
	void *p;       /* NULL: the slot is empty */
	size_t size;   /* bytes the caller asked for */
	size_t span;   /* bytes the object owns (usable size): no other object may meet them */
	size_t filled; /* bytes holding the pattern (from the start) */
	uint64_t tag;
	unsigned owner; /* harness-defined: which cache, zone or type; which call made it */
	unsigned kind;  /* harness-defined */
};

struct fz_model {
	struct fz_obj slot[FZ_SLOTS];
	unsigned live;
	uint64_t next_tag;
};

/* The new object [p, p + span) meets no live object (the slot `self`
 * excluded). */
static inline void fz_expect_disjoint(const struct fz_model *m, const void *p, size_t span,
				      int self)
{
	uintptr_t a = (uintptr_t)p, b = a + (span ? span : 1);
	for (int i = 0; i < FZ_SLOTS; i++) {
		const struct fz_obj *o = &m->slot[i];
		if (!o->p || i == self)
			continue;
		uintptr_t c = (uintptr_t)o->p, d = c + (o->span ? o->span : 1);
		if (a < d && c < b)
			fz_fail("new object %p (+%zu) overlaps live object %p (+%zu) in slot %d", p,
				span, o->p, o->span, i);
	}
}

static inline void fz_expect_aligned(const void *p, size_t align, const char *what)
{
	if (align > 1 && ((uintptr_t)p & (align - 1)))
		fz_fail("%s returned %p, not aligned to %zu", what, p, align);
}

static inline void fz_expect_zero(const void *p, size_t n, const char *what)
{
	size_t bad = fz_first_nonzero(p, n);
	if (bad != SIZE_MAX)
		fz_fail("%s(%zu) returned %p with byte %zu = %#x, not zeroed", what, n, p, bad,
			((const uint8_t *)p)[bad]);
}

static inline void fz_expect_intact(const struct fz_obj *o, const char *when)
{
	size_t bad = fz_check(o->p, o->filled, o->tag);
	if (bad != SIZE_MAX)
		fz_fail("live object %p (%zu bytes, tag %llu) changed at byte %zu before %s", o->p,
			o->size, (unsigned long long)o->tag, bad, when);
}

/* Take the slot: checks disjointness, fills the object, counts it. */
static inline void fz_adopt(struct fz_model *m, int i, void *p, size_t size, size_t span,
			    unsigned owner, unsigned kind)
{
	fz_expect_disjoint(m, p, span, i);
	struct fz_obj *o = &m->slot[i];
	if (!o->p)
		m->live++;
	o->p = p;
	o->size = size;
	o->span = span;
	o->filled = span;
	o->tag = ++m->next_tag;
	o->owner = owner;
	o->kind = kind;
	fz_fill(p, span, o->tag);
}

static inline void fz_forget(struct fz_model *m, int i)
{
	if (m->slot[i].p)
		m->live--;
	memset(&m->slot[i], 0, sizeof(m->slot[i]));
}

/*
 * A harness's containers (its caches or zones): n of them, the handle of
 * container k at handle0 + k * stride (NULL: none there), and the
 * harness's check and destroy of one live container.
 */
struct fz_set {
	const void *handle0;
	size_t stride;
	int n;
	void (*check)(int k);
	void (*destroy)(int k);
};

static inline bool fz_live(const struct fz_set *s, int k)
{
	return *(void *const *)((const char *)s->handle0 + (size_t)k * s->stride) != NULL;
}

/* The first live container from b % n on, or -1 when none is. */
static inline int fz_pick(const struct fz_set *s, unsigned b)
{
	for (int j = 0; j < s->n; j++) {
		int k = (int)((b + (unsigned)j) % (unsigned)s->n);
		if (fz_live(s, k))
			return k;
	}
	return -1;
}

static inline void fz_check_each(const struct fz_set *s)
{
	for (int k = 0; k < s->n; k++)
		if (fz_live(s, k))
			s->check(k);
}

static inline void fz_destroy_each(const struct fz_set *s)
{
	for (int k = 0; k < s->n; k++)
		if (fz_live(s, k))
			s->destroy(k);
}

/* --- the harness side --- */

/*
 * What a harness adds to the input loop every harness runs
 * (LLVMFuzzerTestOneInput in fuzz_common.c): each operation is a byte `op`
 * and a slot byte (taken modulo FZ_SLOTS), then whatever `step` reads.
 */
struct fz_harness {
	struct fz_model *model; /* empty again when an input is done */
	const struct fz_set *set; /* optional: each live one is checked after every operation
				     and destroyed at the end of an input */
	void (*begin)(void);    /* optional: before the first operation */
	void (*step)(struct fz_in *in, unsigned op, int slot); /* one operation */
	void (*check)(void);    /* optional: after every operation */
	void (*end)(void);      /* optional: the input is done: free what the model holds, check */
};
extern const struct fz_harness fz_harness; /* the harness's own, one per program */

/* Once per process: set slabkit up (no maintenance thread). */
void fz_setup(void);

/* libFuzzer's entry points (the standalone driver calls them too). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* SLABKIT_FUZZ_H */
