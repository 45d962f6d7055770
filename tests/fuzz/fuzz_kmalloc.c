/*
 * Fuzz the kmalloc family against the model (tests/fuzz/fuzz.h):
 * kmalloc, kzalloc, kmalloc_node, kcalloc, kmalloc_array, krealloc,
 * krealloc_array, kvmalloc, kvzalloc, kvrealloc, kfree, kvfree,
 * kfree_sensitive, kvfree_sensitive, kfree_bulk, ksize, kmemdup, with
 * sizes from 0 to 1 MiB and every kind of gfp mask that may not fail
 * without memory pressure.
 *
 * Checked after every operation: contents of every object touched, no
 * overlap with any live object, alignment (a power-of-two size up to 8 KiB
 * aligned to itself, others to 8, large blocks to the page), zeroing,
 * ksize (at least the size, the class size, stable), and the sum of the
 * kmalloc caches' in_use and the process's large allocations equal to the
 * model's counts.
 */
#include <slabkit/linux/slab.h>
#include <slabkit/linux/string.h>

#include "core/sk_core.h" /* the kmalloc heap's counters (SLOB) */
#include "fuzz.h"

const char *fz_name = "fuzz_kmalloc";

enum { K_KMALLOC, K_KVMALLOC }; /* which free calls the object takes */

static const gfp_t gfp_choices[] = {
	GFP_KERNEL, GFP_NOWAIT, GFP_ATOMIC, GFP_KERNEL | __GFP_NOWARN,
	GFP_KERNEL | __GFP_RETRY_MAYFAIL, GFP_KERNEL | __GFP_NORETRY, GFP_KERNEL_ACCOUNT,
	GFP_NOFS,
};

static gfp_t pick_gfp(struct fz_in *in, size_t size)
{
	unsigned b = fz_u8(in);
	gfp_t g = gfp_choices[b % (sizeof(gfp_choices) / sizeof(gfp_choices[0]))];
	if ((b & 0x80) && size <= 8192)
		g |= __GFP_NOFAIL;
	return g;
}

struct counts {
	/* live kmalloc class objects (or SLOB's heap blocks), live large blocks */
	uint64_t small, large;
};

static int sum_kmalloc(const struct slabkit_cache_info *info, void *arg)
{
	if (info->front_end && !strcmp(info->front_end, "kmalloc"))
		*(uint64_t *)arg += info->in_use;
	return 0;
}

static struct counts library_counts(void)
{
	struct counts c = { 0, 0 };
	slabkit_foreach_cache(sum_kmalloc, &c.small);
	c.small += ck_pr_load_64(&sk_state.heap.allocs) - ck_pr_load_64(&sk_state.heap.frees);
	struct slabkit_stats st;
	slabkit_stats(&st);
	c.large = st.large_allocs;
	return c;
}

static struct fz_model m;
static struct counts base;

/* Whether kmalloc serves n bytes from the page path: not from a class
 * cache (which exists for every class, except on a heap backend such as
 * SLOB where only debug or sanitized classes have one), nor from the
 * backend's heap. */
static bool served_large(size_t n)
{
	if (n >= 1 && n <= KMALLOC_MAX_CACHE_SIZE && sk_state.kmalloc_caches[slabkit_kmalloc_class(n)])
		return false;
	return !(sk_state.kmalloc_heap && n <= sk_state.kmalloc_heap->kmalloc_max);
}

/* The model's `owner` field holds it for kmalloc blocks: decided when the
 * block is made, kept by a krealloc in place. */
static bool is_large(const struct fz_obj *o)
{
	return o->owner != 0;
}

static void check_counts(void)
{
	struct counts want = base, got = library_counts();
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m.slot[i].p)
			*(is_large(&m.slot[i]) ? &want.large : &want.small) += 1;
	if (got.small != want.small || got.large != want.large)
		for (int i = 0; i < FZ_SLOTS; i++)
			if (m.slot[i].p)
				fprintf(stderr, "  live: %p size %zu ksize %zu (%s)\n", m.slot[i].p,
					m.slot[i].size, m.slot[i].span,
					is_large(&m.slot[i]) ? "large" : "small");
	fz_expect(got.small == want.small && got.large == want.large,
		  "kmalloc caches in_use %llu, large allocations %llu; the model has %llu and %llu",
		  (unsigned long long)got.small, (unsigned long long)got.large,
		  (unsigned long long)want.small, (unsigned long long)want.large);
}

/* The alignment kmalloc promises for a request of n bytes. */
static size_t promised_align(size_t n)
{
	if (n > KMALLOC_MAX_CACHE_SIZE)
		return 4096;
	if ((n & (n - 1)) == 0 && n >= 8)
		return n;
	return 8;
}

/* A new block p for a request of n bytes from `what`: checks and adopts it. */
static void adopt(int i, void *p, size_t n, unsigned kind, bool zeroed, bool in_place,
		  bool large, const char *what)
{
	fz_expect(p != NULL, "%s(%zu) returned NULL", what, n);
	fz_expect(p != ZERO_SIZE_PTR, "%s(%zu) returned ZERO_SIZE_PTR", what, n);
	if (!in_place) /* a block kept keeps its alignment */
		fz_expect_aligned(p, promised_align(n), what);
	size_t span = ksize(p);
	fz_expect(span >= n, "%s(%zu): ksize %zu is smaller", what, n, span);
	if (!in_place && n <= KMALLOC_MAX_CACHE_SIZE)
		fz_expect(span == kmalloc_size_roundup(n), "%s(%zu): ksize %zu, class size %zu",
			  what, n, span, kmalloc_size_roundup(n));
	if (zeroed)
		fz_expect_zero(p, n, what);
	fz_adopt(&m, i, p, n, span, large, kind);
}

static void free_slot(int i, unsigned how)
{
	struct fz_obj *o = &m.slot[i];
	fz_expect_intact(o, "free");
	if (o->kind == K_KVMALLOC) {
		if (how & 1)
			kvfree_sensitive(o->p, o->size);
		else
			kvfree(o->p);
	} else {
		switch (how % 3) {
		case 0: kfree(o->p); break;
		case 1: kvfree(o->p); break;
		default: kfree_sensitive(o->p); break;
		}
	}
	fz_forget(&m, i);
}

static void op_alloc(struct fz_in *in, int i)
{
	if (m.slot[i].p)
		free_slot(i, fz_u8(in));
	unsigned call = fz_u8(in) % 10;
	size_t n = fz_size(in, KMALLOC_MAX_CACHE_SIZE, 1u << 20);
	gfp_t g = pick_gfp(in, n);
	void *p;
	bool zeroed = call == 1 || call == 2 || call == 4 || call == 7;
	switch (call) {
	case 0: p = kmalloc(n, g); break;
	case 1: p = kzalloc(n, g); break;
	case 2: p = kmalloc(n, g | __GFP_ZERO); break;
	case 3: p = kmalloc_node(n, g, (fz_u8(in) & 1) ? 0 : NUMA_NO_NODE); break;
	case 4: p = kzalloc_node(n, g, NUMA_NO_NODE); break;
	case 5: {
		size_t each = 1 + fz_u8(in) % 64;
		size_t count = n / each;
		n = count * each;
		zeroed = fz_u8(in) & 1;
		p = zeroed ? kcalloc(count, each, g) : kmalloc_array(count, each, g);
		break;
	}
	case 6: p = kvmalloc(n, g & ~__GFP_NOFAIL); break;
	case 7: p = kvzalloc(n, g & ~__GFP_NOFAIL); break;
	case 8: {
		/* kmemdup of a live object's prefix, or of a pattern */
		static uint8_t src[FZ_FULL];
		if (n > sizeof(src))
			n = sizeof(src);
		fz_fill(src, n, 0xd00d);
		p = n ? kmemdup(src, n, g) : NULL;
		if (n) {
			fz_expect(p != NULL, "kmemdup(%zu) returned NULL", n);
			fz_expect(fz_check(p, n, 0xd00d) == SIZE_MAX, "kmemdup(%zu) did not copy", n);
		}
		break;
	}
	default: {
		/* An array call that overflows: NULL, nothing allocated. */
		size_t each = n + 2, count = SIZE_MAX / each + 1 + fz_u8(in);
		void *q = (fz_u8(in) & 1) ? kcalloc(count, each, g) : kmalloc_array(count, each, g);
		fz_expect(q == NULL, "kmalloc_array/kcalloc(%zu, %zu) overflows but returned %p",
			  count, each, q);
		return;
	}
	}
	if (call == 8 && n == 0)
		return;
	if (n == 0) {
		fz_expect(p == ZERO_SIZE_PTR, "allocation call %u of 0 bytes returned %p", call, p);
		kfree(p);
		return;
	}
	adopt(i, p, n, call == 6 || call == 7 ? K_KVMALLOC : K_KMALLOC, zeroed, false,
	      served_large(n), call == 6 || call == 7 ? "kvmalloc" : "kmalloc");
}

static void op_realloc(struct fz_in *in, int i)
{
	struct fz_obj *o = &m.slot[i];
	size_t n = fz_size(in, KMALLOC_MAX_CACHE_SIZE, 1u << 20);
	gfp_t g = pick_gfp(in, n) & ~__GFP_NOFAIL;
	unsigned how = fz_u8(in);
	if (!o->p) {
		void *p = (how & 1) ? krealloc(NULL, n, g) : krealloc(ZERO_SIZE_PTR, n, g);
		if (n == 0) {
			fz_expect(p == ZERO_SIZE_PTR, "krealloc(NULL/ZERO_SIZE_PTR, 0) returned %p", p);
			return;
		}
		adopt(i, p, n, K_KMALLOC, false, false, served_large(n), "krealloc");
		return;
	}
	fz_expect_intact(o, "krealloc");
	size_t filled = o->filled;
	uint64_t tag = o->tag;
	void *old = o->p;
	void *p;
	if (o->kind == K_KVMALLOC)
		p = kvrealloc(old, n, g);
	else if (how & 2)
		p = krealloc_array(old, n ? 1 : 0, n, g);
	else
		p = krealloc(old, n, g);
	if (n == 0) {
		fz_expect(p == ZERO_SIZE_PTR, "krealloc(%p, 0) returned %p", old, p);
		fz_forget(&m, i);
		return;
	}
	fz_expect(p != NULL, "krealloc(%p, %zu) returned NULL", old, n);
	size_t bad = fz_check_prefix(p, filled, n, tag);
	fz_expect(bad == SIZE_MAX, "krealloc(%p (%zu bytes), %zu) = %p lost byte %zu", old,
		  o->size, n, p, bad);
	if (p == old)
		fz_expect(n <= o->span, "krealloc(%p, %zu) kept a block of %zu bytes", old, n, o->span);
	unsigned kind = o->kind;
	bool large = p == old ? is_large(o) : served_large(n);
	fz_forget(&m, i);
	adopt(i, p, n, kind, false, p == old, large, "krealloc");
}

/* kfree_bulk of up to 16 live kmalloc objects. */
static void op_bulk_free(struct fz_in *in)
{
	void *p[16];
	size_t n = 0, want = 1 + fz_u8(in) % 16;
	for (int i = fz_u8(in); n < want && i < FZ_SLOTS; i++) {
		struct fz_obj *o = &m.slot[i];
		if (o->p && o->kind == K_KMALLOC) {
			fz_expect_intact(o, "kfree_bulk");
			p[n++] = o->p;
			fz_forget(&m, i);
		}
	}
	if (n)
		kfree_bulk(n, p);
}

static void op_examine(struct fz_in *in, int i)
{
	struct fz_obj *o = &m.slot[i];
	if (!o->p) {
		kfree(NULL);
		kfree(ZERO_SIZE_PTR);
		fz_expect(ksize(NULL) == 0 && ksize(ZERO_SIZE_PTR) == 0, "ksize(NULL) is not 0");
		return;
	}
	fz_expect_intact(o, "ksize");
	size_t span = ksize(o->p);
	fz_expect(span == o->span, "ksize(%p) was %zu, now %zu", o->p, o->span, span);
	if (fz_u8(in) & 1) { /* rewrite with a new tag: the whole ksize is usable */
		o->tag = ++m.next_tag;
		fz_fill(o->p, o->span, o->tag);
	}
}

static void step(struct fz_in *in, unsigned op, int slot)
{
	switch (op % 16) {
	case 0: case 1: case 2: case 3: case 4: case 5:
		op_alloc(in, slot);
		break;
	case 6: case 7: case 8:
		if (m.slot[slot].p)
			free_slot(slot, fz_u8(in));
		break;
	case 9: case 10: case 11:
		op_realloc(in, slot);
		break;
	case 12:
		op_bulk_free(in);
		break;
	case 13: case 14:
		op_examine(in, slot);
		break;
	default:
		if (op >= 250)
			slabkit_shrink_all(); /* live objects must survive it */
		break;
	}
}

static void begin(void)
{
	base = library_counts();
}

static void end(void)
{
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m.slot[i].p)
			free_slot(i, 0);
	check_counts();
}

const struct fz_harness fz_harness = {
	.model = &m,
	.begin = begin,
	.step = step,
	.check = check_counts,
	.end = end,
};
