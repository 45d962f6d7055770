/*
 * Fuzz UMA zones against the model (tests/fuzz/fuzz.h): up to four zones
 * live at once, created and destroyed by the input with item sizes from
 * 1 byte to 32 KiB, alignment masks, flags (NOFREE, ZINIT, NOBUCKET,
 * MAXBUCKET, FIRSTTOUCH, ROUNDROBIN, CACHESPREAD), ctor/dtor with the
 * caller's argument, init/fini, and limits (uma_zone_set_max); items
 * from uma_zalloc_arg (M_WAITOK, M_NOWAIT, M_ZERO), uma_zalloc_domain,
 * a ctor that fails on request; frees, uma_zone_reclaim and uma_reclaim
 * with items live.
 *
 * Checked after every operation: contents, no overlap with any live item
 * of any zone, alignment to the mask, zeroing, the ctor's argument and the
 * init'ed state (init fills an item with its zone's pattern; the model
 * puts it back before each free, as a dtor would), a failing ctor leaves
 * nothing allocated, the limit (M_NOWAIT fails exactly when as many items
 * as the limit are out), uma_zone_get_cur/get_max/get_allocs/get_frees
 * equal to the model's, and after uma_zdestroy every init'ed item was
 * fini'ed (unless NOFREE).
 */
#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>

#include "fuzz.h"

const char *fz_name = "fuzz_uma";

#define NZONES 4
#define CTOR_FAIL ((void *)1) /* the argument that makes the ctor fail */

struct zone_model {
	uma_zone_t z;
	char name[SLABKIT_NAME_MAX];
	size_t size, align;
	int flags;
	bool ctor, init;
	uint64_t init_tag;
	int limit;                /* 0: none */
	unsigned live;
	uint64_t allocs, frees;   /* successful */
	uint64_t inits, finis;    /* init/fini calls */
	uint64_t ctor_seen_bad;   /* ctor saw an item not in init'ed state, or a wrong argument */
};

static struct fz_model m;
static struct zone_model zones[NZONES];
static unsigned long zone_serial;
static int ctor_arg_token;

/* Callbacks know their zone by slot (one set per slot). */
static int ctor_k(int k, void *mem, int size, void *arg)
{
	struct zone_model *zm = &zones[k];
	if (arg == CTOR_FAIL)
		return ENOMEM;
	if (arg != &ctor_arg_token || (size_t)size != zm->size)
		zm->ctor_seen_bad++;
	if (zm->init && fz_check(mem, zm->size, zm->init_tag) != SIZE_MAX)
		zm->ctor_seen_bad++;
	return 0;
}

static void dtor_k(int k, void *mem, int size, void *arg)
{
	if (arg != &ctor_arg_token || (size_t)size != zones[k].size)
		zones[k].ctor_seen_bad++;
}

static int init_k(int k, void *mem, int size)
{
	zones[k].inits++;
	fz_fill(mem, zones[k].size, zones[k].init_tag);
	return 0;
}

static void fini_k(int k, void *mem, int size)
{
	zones[k].finis++;
	if (fz_check(mem, zones[k].size, zones[k].init_tag) != SIZE_MAX)
		zones[k].ctor_seen_bad++;
}

#define CALLBACKS(k)                                                                      \
	static int ctor_##k(void *mem, int size, void *arg, int flags)                      \
	{                                                                                   \
		return ctor_k(k, mem, size, arg);                                           \
	}                                                                                   \
	static void dtor_##k(void *mem, int size, void *arg) { dtor_k(k, mem, size, arg); } \
	static int init_##k(void *mem, int size, int flags) { return init_k(k, mem, size); } \
	static void fini_##k(void *mem, int size) { fini_k(k, mem, size); }
CALLBACKS(0)
CALLBACKS(1)
CALLBACKS(2)
CALLBACKS(3)
static const uma_ctor ctors[NZONES] = { ctor_0, ctor_1, ctor_2, ctor_3 };
static const uma_dtor dtors[NZONES] = { dtor_0, dtor_1, dtor_2, dtor_3 };
static const uma_init inits[NZONES] = { init_0, init_1, init_2, init_3 };
static const uma_fini finis[NZONES] = { fini_0, fini_1, fini_2, fini_3 };

static void check_zone(int k)
{
	struct zone_model *zm = &zones[k];
	int cur = uma_zone_get_cur(zm->z);
	uint64_t allocs = uma_zone_get_allocs(zm->z), frees = uma_zone_get_frees(zm->z);
	fz_expect(cur == (int)zm->live && allocs - frees == zm->live,
		  "zone %s (size %zu, align %zu, flags %#x, limit %d): get_cur %d, allocs - frees "
		  "%llu; the model has %u live",
		  zm->name, zm->size, zm->align, zm->flags, zm->limit, cur,
		  (unsigned long long)(allocs - frees), zm->live);
	fz_expect(zm->ctor_seen_bad == 0, "zone %s: a ctor, dtor or fini saw a wrong argument, "
		  "size or an item not in its init'ed state", zm->name);
	fz_expect(uma_zone_get_max(zm->z) == zm->limit, "zone %s: get_max %d, limit set %d",
		  zm->name, uma_zone_get_max(zm->z), zm->limit);
}

static void free_slot(int i)
{
	struct fz_obj *o = &m.slot[i];
	struct zone_model *zm = &zones[o->owner];
	fz_expect_intact(o, "uma_zfree");
	if (zm->init) /* back to the init'ed state, as a dtor would put it */
		fz_fill(o->p, zm->size, zm->init_tag);
	uma_zfree_arg(zm->z, o->p, zm->ctor ? &ctor_arg_token : NULL);
	zm->live--;
	zm->frees++;
	fz_forget(&m, i);
}

static void destroy(int k)
{
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m.slot[i].p && m.slot[i].owner == (unsigned)k)
			free_slot(i);
	check_zone(k);
	struct zone_model *zm = &zones[k];
	uma_zdestroy(zm->z);
	fz_expect(zm->flags & UMA_ZONE_NOFREE || zm->inits == zm->finis,
		  "zone %s destroyed: %llu items init'ed, %llu fini'ed", zm->name,
		  (unsigned long long)zm->inits, (unsigned long long)zm->finis);
	fz_expect(zm->ctor_seen_bad == 0, "zone %s: fini saw an item not in its init'ed state",
		  zm->name);
	memset(zm, 0, sizeof(*zm));
}

static const struct fz_set zones_set = {
	.handle0 = &zones[0].z, .stride = sizeof(zones[0]), .n = NZONES,
	.check = check_zone, .destroy = destroy,
};

static void op_create(struct fz_in *in, int k)
{
	if (zones[k].z)
		destroy(k);
	struct zone_model *zm = &zones[k];
	unsigned b = fz_u8(in);
	size_t size = fz_object_size(in, 4096, 32768);
	static const int flag_sets[] = {
		0, UMA_ZONE_NOFREE, UMA_ZONE_ZINIT, UMA_ZONE_NOBUCKET, UMA_ZONE_MAXBUCKET,
		UMA_ZONE_FIRSTTOUCH, UMA_ZONE_ROUNDROBIN, UMA_ZONE_CACHESPREAD, 0,
	};
	int flags = flag_sets[b % (sizeof(flag_sets) / sizeof(flag_sets[0]))];
	unsigned a = fz_u8(in) % 8;
	int mask = a == 0 ? UMA_ALIGN_CACHE : a < 4 ? (int)UMA_ALIGN_PTR : (1 << (a + 1)) - 1;
	size_t line = (size_t)sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
	zm->align = mask == UMA_ALIGN_CACHE ? (line ? line : 64) : (size_t)mask + 1;
	zm->ctor = b & 0x40;
	/* ZINIT zeroes items before init; with an init the item is init's. */
	zm->init = (b & 0x80) != 0;
	snprintf(zm->name, sizeof(zm->name), "fz_zone%d_%lu", k, ++zone_serial);
	zm->size = size;
	zm->flags = flags;
	zm->init_tag = 0x1417000000ull + zone_serial;
	zm->z = uma_zcreate(zm->name, size, zm->ctor ? ctors[k] : NULL, zm->ctor ? dtors[k] : NULL,
			    zm->init ? inits[k] : NULL, zm->init ? finis[k] : NULL, mask, flags);
	fz_expect(zm->z != NULL, "uma_zcreate(%s, %zu, mask %d, flags %#x) failed", zm->name, size,
		  mask, flags);
}

static void op_alloc(struct fz_in *in, int i)
{
	int k = fz_pick(&zones_set, fz_u8(in));
	if (k < 0)
		return;
	if (m.slot[i].p)
		free_slot(i);
	struct zone_model *zm = &zones[k];
	unsigned b = fz_u8(in);
	bool at_limit = zm->limit && zm->live >= (unsigned)zm->limit;
	/* M_WAITOK at the limit would wait for a free that never comes. */
	int flags = (b & 1) || at_limit ? M_NOWAIT : M_WAITOK;
	if (b & 2)
		flags |= M_ZERO;
	bool fail_ctor = zm->ctor && (b & 0xf0) == 0xf0;
	void *arg = fail_ctor ? CTOR_FAIL : zm->ctor ? &ctor_arg_token : NULL;
	void *p = (b & 4) ? uma_zalloc_domain(zm->z, arg, (b & 8) ? 0 : UMA_ANYDOMAIN, flags)
			  : uma_zalloc_arg(zm->z, arg, flags);
	if (at_limit) {
		fz_expect(p == NULL, "zone %s: %u items out at limit %d, yet M_NOWAIT gave %p",
			  zm->name, zm->live, zm->limit, p);
		return;
	}
	if (fail_ctor) {
		fz_expect(p == NULL, "zone %s: the ctor failed, yet uma_zalloc gave %p", zm->name, p);
		return;
	}
	fz_expect(p != NULL, "uma_zalloc(%s, %#x) returned NULL (%u live, limit %d)", zm->name,
		  flags, zm->live, zm->limit);
	fz_expect_aligned(p, zm->align, "uma_zalloc");
	if (flags & M_ZERO)
		fz_expect_zero(p, zm->size, "uma_zalloc(M_ZERO)");
	else if (zm->init) {
		size_t bad = fz_check(p, zm->size, zm->init_tag);
		fz_expect(bad == SIZE_MAX, "zone %s: item %p not in its init'ed state (byte %zu)",
			  zm->name, p, bad);
	}
	fz_adopt(&m, i, p, zm->size, zm->size, (unsigned)k, 0);
	zm->live++;
	zm->allocs++;
}

static void op_limit(struct fz_in *in)
{
	int k = fz_pick(&zones_set, fz_u8(in));
	if (k < 0)
		return;
	struct zone_model *zm = &zones[k];
	int want = 1 + (int)(fz_u8(in) % 48);
	int got = uma_zone_set_max(zm->z, want);
	fz_expect(got >= want, "uma_zone_set_max(%s, %d) returned %d", zm->name, want, got);
	zm->limit = got;
}

static void step(struct fz_in *in, unsigned op, int slot)
{
	switch (op % 16) {
	case 0:
		if (op < 0x80 || !zones[(op >> 4) % NZONES].z)
			op_create(in, (int)(op >> 4) % NZONES);
		break;
	case 1: case 2: case 3: case 4: case 5: case 6:
		op_alloc(in, slot);
		break;
	case 7: case 8: case 9: case 10:
		if (m.slot[slot].p)
			free_slot(slot);
		else
			uma_zfree(zones[0].z ? zones[0].z : NULL, NULL); /* a no-op */
		break;
	case 11:
		if (op >= 0xc0)
			op_limit(in);
		break;
	case 12:
		if (m.slot[slot].p)
			fz_expect_intact(&m.slot[slot], "a check");
		break;
	case 13: {
		int k = fz_pick(&zones_set, op >> 4);
		static const int levels[] = { UMA_RECLAIM_DRAIN, UMA_RECLAIM_DRAIN_CPU,
					      UMA_RECLAIM_TRIM };
		if (k >= 0)
			uma_zone_reclaim(zones[k].z, levels[(op >> 4) % 3]);
		break;
	}
	case 14: {
		int k = op >= 0xf0 ? fz_pick(&zones_set, op) : -1;
		if (k >= 0)
			destroy(k);
		break;
	}
	default:
		if (op == 0xff)
			uma_reclaim(UMA_RECLAIM_DRAIN_CPU);
		break;
	}
}

const struct fz_harness fz_harness = {
	.model = &m,
	.set = &zones_set,
	.step = step,
};
