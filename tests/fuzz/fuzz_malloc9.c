/*
 * Fuzz FreeBSD malloc(9) against the model (tests/fuzz/fuzz.h): three
 * malloc types; bsd_malloc, bsd_mallocarray (with overflows),
 * bsd_malloc_domainset, bsd_malloc_aligned, bsd_realloc, bsd_reallocf,
 * bsd_free, bsd_zfree, bsd_malloc_usable_size; sizes from 0 to 1 MiB,
 * M_WAITOK and M_NOWAIT, M_ZERO, M_NODUMP, and the misuse of passing
 * neither M_WAITOK nor M_NOWAIT.
 *
 * Checked after every operation: contents (a realloc keeps the prefix),
 * no overlap with any live block, alignment (8; the power-of-two class
 * for bsd_malloc_aligned; the page for large blocks), zeroing, realloc's
 * rule (the block stays exactly while usable/2 < size <= usable), and each
 * type's statistics: allocations minus frees equal to its live blocks in
 * the model, bytes allocated minus bytes freed equal to their usable sizes.
 */
#include <slabkit/freebsd/malloc.h>

#include "fuzz.h"

const char *fz_name = "fuzz_malloc9";

MALLOC_DEFINE(M_FZ_A, "fz_a", "fuzz type a");
MALLOC_DEFINE(M_FZ_B, "fz_b", "fuzz type b");
MALLOC_DEFINE(M_FZ_C, "fz_c", "fuzz type c");
static struct malloc_type *const types[3] = { M_FZ_A, M_FZ_B, M_FZ_C };

static struct fz_model m;
static struct malloc_type_stats_sum base[3];

#define LARGE_MIN 65537 /* above the largest class: whole pages */

static void check_types(void)
{
	for (unsigned t = 0; t < 3; t++) {
		uint64_t live = 0, bytes = 0;
		for (int i = 0; i < FZ_SLOTS; i++)
			if (m.slot[i].p && m.slot[i].owner == t) {
				live++;
				bytes += m.slot[i].span;
			}
		struct malloc_type_stats_sum s;
		slabkit_malloc_type_stats(types[t], &s);
		uint64_t got_live = (s.allocs - base[t].allocs) - (s.frees - base[t].frees);
		uint64_t got_bytes = (s.memalloced - base[t].memalloced) - (s.memfreed - base[t].memfreed);
		fz_expect(got_live == live && got_bytes == bytes,
			  "type %s: %llu blocks and %llu bytes live by its statistics; the model has "
			  "%llu and %llu",
			  types[t]->ks_shortdesc, (unsigned long long)got_live,
			  (unsigned long long)got_bytes, (unsigned long long)live,
			  (unsigned long long)bytes);
	}
}

static void adopt(int i, void *p, size_t n, unsigned t, size_t align, bool zeroed,
		  const char *what)
{
	fz_expect(p != NULL, "%s(%zu) returned NULL", what, n);
	size_t span = bsd_malloc_usable_size(p);
	fz_expect(span >= n, "%s(%zu): usable size %zu", what, n, span);
	fz_expect_aligned(p, n >= LARGE_MIN ? 4096 : align, what);
	if (zeroed)
		fz_expect_zero(p, span, what);
	fz_adopt(&m, i, p, n, span, t, 0);
}

static void free_slot(int i, unsigned how)
{
	struct fz_obj *o = &m.slot[i];
	fz_expect_intact(o, "bsd_free");
	if (how & 1)
		bsd_zfree(o->p, types[o->owner]);
	else
		bsd_free(o->p, types[o->owner]);
	fz_forget(&m, i);
}

static int pick_flags(unsigned b)
{
	int f = (b & 1) ? M_NOWAIT : M_WAITOK;
	if (b & 2)
		f |= M_ZERO;
	if ((b & 0x1c) == 0x1c)
		f |= M_NODUMP;
	return f;
}

static void op_alloc(struct fz_in *in, int i)
{
	if (m.slot[i].p)
		free_slot(i, fz_u8(in));
	unsigned call = fz_u8(in) % 6, b = fz_u8(in);
	unsigned t = b % 3;
	int flags = pick_flags(b >> 2);
	size_t n = fz_size(in, 65536, 1u << 20);
	size_t align = 8;
	void *p;
	switch (call) {
	case 0: case 1:
		p = bsd_malloc(n, types[t], flags);
		break;
	case 2: {
		size_t each = 1 + fz_u8(in) % 32;
		n = n / each * each;
		p = bsd_mallocarray(n / each, each, types[t], flags);
		break;
	}
	case 3: {
		const struct domainset *ds[] = { DOMAINSET_RR(), DOMAINSET_FT(), DOMAINSET_PREF(0),
						 DOMAINSET_FIXED(0) };
		p = bsd_malloc_domainset(n, types[t], ds[fz_u8(in) % 4], flags);
		break;
	}
	case 4:
		align = (size_t)1 << (fz_u8(in) % 13); /* 1 .. 4096 */
		p = bsd_malloc_aligned(n, align, types[t], flags);
		break;
	default: {
		/* mallocarray overflowing: NULL (with a message), nothing allocated */
		size_t each = n + 2, count = SIZE_MAX / each + 1 + fz_u8(in);
		void *q = bsd_mallocarray(count, each, types[t], M_NOWAIT);
		fz_expect(q == NULL, "bsd_mallocarray(%zu, %zu) overflows but returned %p", count, each,
			  q);
		return;
	}
	}
	adopt(i, p, n, t, align, flags & M_ZERO, "bsd_malloc");
}

static void op_realloc(struct fz_in *in, int i)
{
	struct fz_obj *o = &m.slot[i];
	unsigned b = fz_u8(in);
	size_t n = fz_size(in, 65536, 1u << 20);
	int flags = (b & 1) ? M_NOWAIT : M_WAITOK;
	if (!o->p) {
		unsigned t = (b >> 1) % 3;
		void *p = (b & 2) ? bsd_reallocf(NULL, n, types[t], flags)
				  : bsd_realloc(NULL, n, types[t], flags);
		adopt(i, p, n, t, 8, false, "bsd_realloc(NULL)");
		return;
	}
	fz_expect_intact(o, "bsd_realloc");
	void *old = o->p;
	size_t filled = o->filled, span = o->span;
	uint64_t tag = o->tag;
	unsigned t = o->owner;
	void *p = (b & 2) ? bsd_reallocf(old, n, types[t], flags) : bsd_realloc(old, n, types[t], flags);
	fz_expect(p != NULL, "bsd_realloc(%p, %zu) returned NULL", old, n);
	bool keep = n <= span && n > span / 2;
	fz_expect((p == old) == keep,
		  "bsd_realloc(%p (usable %zu), %zu) %s the block: it must %s", old, span, n,
		  p == old ? "kept" : "moved", keep ? "stay" : "move");
	size_t bad = fz_check_prefix(p, filled, n, tag);
	fz_expect(bad == SIZE_MAX, "bsd_realloc(%p, %zu) = %p lost byte %zu", old, n, p, bad);
	fz_forget(&m, i);
	adopt(i, p, n, t, 8, false, "bsd_realloc");
}

/* Neither M_WAITOK nor M_NOWAIT (or both): misuse, reported, NULL. */
static void op_misuse(struct fz_in *in)
{
	int flags = (fz_u8(in) & 1) ? (M_WAITOK | M_NOWAIT) : M_ZERO;
	fz_panics_expected = 1;
	fz_panics_seen = 0;
	void *p = bsd_malloc(1 + fz_u8(in), M_FZ_A, flags);
	fz_panics_expected = 0;
	fz_expect(p == NULL && fz_panics_seen == 1,
		  "bsd_malloc with flags %#x: %p and %u panic-hook calls (misuse: NULL, one report)",
		  flags, p, fz_panics_seen);
}

static void step(struct fz_in *in, unsigned op, int slot)
{
	switch (op % 16) {
	case 0: case 1: case 2: case 3: case 4: case 5:
		op_alloc(in, slot);
		break;
	case 6: case 7: case 8: case 9:
		if (m.slot[slot].p)
			free_slot(slot, fz_u8(in));
		else
			bsd_free(NULL, M_FZ_A); /* a no-op */
		break;
	case 10: case 11: case 12:
		op_realloc(in, slot);
		break;
	case 13:
		if (m.slot[slot].p) {
			fz_expect_intact(&m.slot[slot], "a check");
			fz_expect(bsd_malloc_usable_size(m.slot[slot].p) == m.slot[slot].span,
				  "usable size of %p changed", m.slot[slot].p);
		}
		break;
	case 14:
		if (op == 0xfe)
			op_misuse(in);
		break;
	default:
		if (op == 0xff)
			slabkit_shrink_all();
		break;
	}
}

static void begin(void)
{
	for (unsigned t = 0; t < 3; t++)
		slabkit_malloc_type_stats(types[t], &base[t]);
}

static void end(void)
{
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m.slot[i].p)
			free_slot(i, 0);
	check_types();
}

const struct fz_harness fz_harness = {
	.model = &m,
	.begin = begin,
	.step = step,
	.check = check_types,
	.end = end,
};
