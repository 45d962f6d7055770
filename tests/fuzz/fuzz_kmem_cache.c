/*
 * Fuzz kmem_cache against the model (tests/fuzz/fuzz.h): up to four caches
 * live at once, created and destroyed by the input with sizes from 1 byte
 * to 64 KiB, explicit alignments, SLAB_HWCACHE_ALIGN, debug and accounting
 * flags, and constructors; objects from kmem_cache_alloc, _zalloc,
 * _alloc_node and kmem_cache_alloc_bulk, freed one by one, in bulk, or
 * with kfree; kmem_cache_shrink with objects live.
 *
 * Checked after every operation: contents, no overlap with any live
 * object of any cache, alignment (the explicit one, the cache line for
 * SLAB_HWCACHE_ALIGN objects over half a line, 8 otherwise, and what the
 * cache reports), zeroing, constructed state (an object of a cache with a
 * constructor comes back as the constructor left it, which the model
 * restores before each free, as the kernel asks of callers), and every
 * live cache's in_use, allocs and frees equal to the model's counts.
 */
#include <slabkit/linux/slab.h>

#include "fuzz.h"

const char *fz_name = "fuzz_kmem_cache";

#define NCACHES 4

struct cache_model {
	struct kmem_cache *c;
	char name[SLABKIT_NAME_MAX];
	size_t size, align;
	unsigned flags;
	bool ctor;
	uint64_t ctor_tag;       /* the constructed state's pattern */
	uint64_t allocs, frees;  /* successful calls since creation */
	unsigned live;
};

static struct fz_model m;
static struct cache_model caches[NCACHES];
static unsigned long cache_serial;

/* One constructor per cache slot: it knows its cache's size and pattern. */
#define CTOR(k)                                                          \
	static void ctor_##k(void *obj)                                  \
	{                                                                \
		fz_fill(obj, caches[k].size, caches[k].ctor_tag);        \
	}
CTOR(0)
CTOR(1)
CTOR(2)
CTOR(3)
static void (*const ctors[NCACHES])(void *) = { ctor_0, ctor_1, ctor_2, ctor_3 };

static size_t cache_line(void)
{
	static size_t line;
	if (!line) {
		long l = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
		line = l > 0 ? (size_t)l : 64;
	}
	return line;
}

static void check_cache(int k)
{
	struct cache_model *cm = &caches[k];
	struct slabkit_cache_info info;
	fz_expect(slabkit_cache_info_by_name(cm->name, &info) == 0, "cache %s is not listed",
		  cm->name);
	fz_expect(info.in_use == cm->live && info.allocs == cm->allocs && info.frees == cm->frees,
		  "cache %s (size %zu, align %zu, flags %#x%s): in_use %llu, allocs %llu, frees "
		  "%llu; the model has %u, %llu, %llu",
		  cm->name, cm->size, cm->align, cm->flags, cm->ctor ? ", ctor" : "",
		  (unsigned long long)info.in_use, (unsigned long long)info.allocs,
		  (unsigned long long)info.frees, cm->live, (unsigned long long)cm->allocs,
		  (unsigned long long)cm->frees);
	fz_expect(info.object_size == cm->size && info.size >= cm->size,
		  "cache %s: object_size %zu, size %zu for objects of %zu", cm->name,
		  info.object_size, info.size, cm->size);
	fz_expect(info.high_water >= info.in_use, "cache %s: high_water %llu below in_use %llu",
		  cm->name, (unsigned long long)info.high_water, (unsigned long long)info.in_use);
	if (cm->align)
		fz_expect(info.align >= cm->align, "cache %s: align %zu, asked %zu", cm->name,
			  info.align, cm->align);
}

static size_t promised_align(const struct cache_model *cm)
{
	size_t a = 8;
	if (cm->align > a)
		a = cm->align;
	if ((cm->flags & SLAB_HWCACHE_ALIGN) && cm->size > cache_line() / 2 && cache_line() > a)
		a = cache_line();
	return a;
}

/* A new object p of cache k: checks and adopts it into slot i. */
static void adopt(int k, int i, void *p, bool zeroed, const char *what)
{
	struct cache_model *cm = &caches[k];
	fz_expect(p != NULL, "%s(%s) returned NULL", what, cm->name);
	fz_expect_aligned(p, promised_align(cm), what);
	if (zeroed)
		fz_expect_zero(p, cm->size, what);
	else if (cm->ctor) {
		size_t bad = fz_check(p, cm->size, cm->ctor_tag);
		fz_expect(bad == SIZE_MAX, "%s(%s) returned %p not in constructed state (byte %zu)",
			  what, cm->name, p, bad);
	}
	fz_adopt(&m, i, p, cm->size, cm->size, (unsigned)k, 0);
	cm->allocs++;
	cm->live++;
}

/* The model's side of a free: contents checked, constructed state restored. */
static void *release(int i)
{
	struct fz_obj *o = &m.slot[i];
	struct cache_model *cm = &caches[o->owner];
	fz_expect_intact(o, "free");
	if (cm->ctor)
		fz_fill(o->p, cm->size, cm->ctor_tag);
	void *p = o->p;
	cm->frees++;
	cm->live--;
	fz_forget(&m, i);
	return p;
}

static void free_slot(int i, unsigned how)
{
	struct cache_model *cm = &caches[m.slot[i].owner];
	void *p = release(i);
	/* kfree of a cache object is the kernel's (5.x+) rule on SLAB and SLUB;
	 * SLOB reports it (docs/slob.md), so it is not asked of SLOB here. */
	struct slabkit_cache_info info;
	if ((how & 3) == 3 && slabkit_cache_info_by_name(cm->name, &info) == 0 &&
	    strcmp(info.backend, "slob") != 0)
		kfree(p);
	else
		kmem_cache_free(cm->c, p);
}

static void destroy(int k)
{
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m.slot[i].p && m.slot[i].owner == (unsigned)k)
			free_slot(i, 0);
	check_cache(k);
	kmem_cache_destroy(caches[k].c);
	struct slabkit_cache_info info;
	fz_expect(slabkit_cache_info_by_name(caches[k].name, &info) == -ENOENT,
		  "cache %s still listed after kmem_cache_destroy", caches[k].name);
	memset(&caches[k], 0, sizeof(caches[k]));
}

static const struct fz_set caches_set = {
	.handle0 = &caches[0].c, .stride = sizeof(caches[0]), .n = NCACHES,
	.check = check_cache, .destroy = destroy,
};

static void op_create(struct fz_in *in, int k)
{
	if (caches[k].c)
		destroy(k);
	struct cache_model *cm = &caches[k];
	unsigned b = fz_u8(in);
	size_t size = fz_object_size(in, 4096, 65536);
	size_t align = (b & 1) ? (size_t)1 << (3 + fz_u8(in) % 10) : 0; /* 8 .. 4096 */
	static const unsigned flag_sets[] = {
		0, SLAB_HWCACHE_ALIGN, SLAB_ACCOUNT | SLAB_RECLAIM_ACCOUNT, SLAB_NO_MERGE,
		SLAB_POISON, SLAB_RED_ZONE, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER,
		SLAB_CONSISTENCY_CHECKS, SLAB_HWCACHE_ALIGN | SLAB_NOLEAKTRACE,
	};
	unsigned flags = flag_sets[(b >> 1) % (sizeof(flag_sets) / sizeof(flag_sets[0]))];
	/* A constructor with the debug flags that poison or red-zone objects
	 * is left out: the kernel refuses poisoning with a constructor. */
	bool ctor = (b & 0x80) && !(flags & (SLAB_POISON | SLAB_RED_ZONE));
	snprintf(cm->name, sizeof(cm->name), "fz_cache%d_%lu", k, ++cache_serial);
	cm->size = size;
	cm->align = align;
	cm->flags = flags;
	cm->ctor = ctor;
	cm->ctor_tag = 0xC70000000000ull + cache_serial;
	cm->c = kmem_cache_create(cm->name, (unsigned)size, (unsigned)align, flags,
				  ctor ? ctors[k] : NULL);
	fz_expect(cm->c != NULL, "kmem_cache_create(%s, %zu, %zu, %#x, %s) failed", cm->name, size,
		  align, flags, ctor ? "ctor" : "NULL");
}

static void op_alloc(struct fz_in *in, int i)
{
	int k = fz_pick(&caches_set, fz_u8(in));
	if (k < 0)
		return;
	if (m.slot[i].p)
		free_slot(i, fz_u8(in));
	struct cache_model *cm = &caches[k];
	unsigned b = fz_u8(in);
	gfp_t g = (b & 4) ? GFP_NOWAIT : (b & 8) ? GFP_ATOMIC : GFP_KERNEL;
	if (b & 16)
		g |= __GFP_NOFAIL;
	switch (b % 4) {
	case 0:
		adopt(k, i, kmem_cache_alloc(cm->c, g), false, "kmem_cache_alloc");
		break;
	case 1:
		if (!cm->ctor) { /* the kernel refuses __GFP_ZERO with a constructor */
			adopt(k, i, kmem_cache_zalloc(cm->c, g), true, "kmem_cache_zalloc");
			break;
		}
		/* fall through */
	case 2:
		adopt(k, i, kmem_cache_alloc_node(cm->c, g, (b & 32) ? 0 : NUMA_NO_NODE), false,
		      "kmem_cache_alloc_node");
		break;
	default:
		if (!cm->ctor) {
			adopt(k, i, kmem_cache_alloc(cm->c, g | __GFP_ZERO), true,
			      "kmem_cache_alloc(__GFP_ZERO)");
			break;
		}
		adopt(k, i, kmem_cache_alloc(cm->c, g), false, "kmem_cache_alloc");
		break;
	}
}

static void op_bulk_alloc(struct fz_in *in)
{
	int k = fz_pick(&caches_set, fz_u8(in));
	if (k < 0)
		return;
	int free_slots[64], n = 0, want = 1 + (int)(fz_u8(in) % 64);
	for (int i = fz_u8(in); n < want && i < FZ_SLOTS; i++)
		if (!m.slot[i].p)
			free_slots[n++] = i;
	if (!n)
		return;
	void *p[64];
	memset(p, 0, sizeof(p));
	int got = kmem_cache_alloc_bulk(caches[k].c, GFP_KERNEL, (size_t)n, p);
	fz_expect(got == n, "kmem_cache_alloc_bulk(%s, %d) returned %d", caches[k].name, n, got);
	for (int j = 0; j < n; j++)
		adopt(k, free_slots[j], p[j], false, "kmem_cache_alloc_bulk");
}

static void op_bulk_free(struct fz_in *in)
{
	int k = fz_pick(&caches_set, fz_u8(in));
	if (k < 0)
		return;
	void *p[64];
	size_t n = 0, want = 1 + fz_u8(in) % 64;
	for (int i = fz_u8(in); n < want && i < FZ_SLOTS; i++)
		if (m.slot[i].p && m.slot[i].owner == (unsigned)k)
			p[n++] = release(i);
	if (n)
		kmem_cache_free_bulk(caches[k].c, n, p);
}

static void step(struct fz_in *in, unsigned op, int slot)
{
	switch (op % 16) {
	case 0:
		if (op < 0x80 || !caches[op % NCACHES].c)
			op_create(in, (int)(op >> 4) % NCACHES);
		break;
	case 1: case 2: case 3: case 4: case 5:
		op_alloc(in, slot);
		break;
	case 6: case 7: case 8: case 9:
		if (m.slot[slot].p)
			free_slot(slot, fz_u8(in));
		break;
	case 10:
		op_bulk_alloc(in);
		break;
	case 11:
		op_bulk_free(in);
		break;
	case 12:
		if (m.slot[slot].p)
			fz_expect_intact(&m.slot[slot], "a check");
		break;
	case 13: {
		int k = fz_pick(&caches_set, op >> 4);
		if (k < 0 || !(op & 0x80))
			break;
		/* With objects live it may keep slabs (SLAB says so with
		 * 1); with none it must return 0 and keep no slab. */
		int rc = kmem_cache_shrink(caches[k].c);
		struct slabkit_cache_info info;
		if (caches[k].live == 0 &&
		    slabkit_cache_info_by_name(caches[k].name, &info) == 0)
			fz_expect(rc == 0 && info.slabs == 0,
				  "kmem_cache_shrink(%s) of an empty cache: %d, %llu slabs left",
				  caches[k].name, rc, (unsigned long long)info.slabs);
		break;
	}
	case 14: {
		int k = op >= 0xf0 ? fz_pick(&caches_set, op) : -1;
		if (k >= 0)
			destroy(k);
		break;
	}
	default:
		if (op == 0xff)
			slabkit_shrink_all();
		break;
	}
}

const struct fz_harness fz_harness = {
	.model = &m,
	.set = &caches_set,
	.step = step,
};
