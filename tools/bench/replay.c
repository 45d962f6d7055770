/*
 * slabkit-bench --replay FILE: allocation traces (docs/trace-format.md).
 *
 * A trace names objects by address; a replay names them by slot.  The
 * plan turns the records into operations on slots: an id gets a free slot
 * when it is allocated and gives it back when it is freed, so the replay
 * holds at most as many objects as the trace had live at its peak, and
 * frees each one exactly where the trace did.  Frees of ids the trace never
 * allocated (objects from before recording started) are dropped and
 * counted; an allocation of an id still live (a realloc racing with
 * another thread's malloc of the address it freed) frees the held one
 * first.
 *
 * All of the plan's memory is mapped before the allocator under test is
 * set up, so it is the harness's, not the allocator's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "bench.h"

/* The file layout (core/sk_trace.h is the recorder's own copy). */
struct trace_header {
	char magic[8];
	uint32_t version, record_size;
	uint64_t start_realtime_ns;
	uint32_t pid, reserved;
};
struct trace_record {
	uint64_t id, size;
	uint32_t time_ms;
	uint16_t thread;
	uint8_t op, align_log2;
};
_Static_assert(sizeof(struct trace_header) == 32, "header layout");
_Static_assert(sizeof(struct trace_record) == 24, "record layout");

enum { T_ALLOC = 1, T_FREE = 2, T_REALLOC = 3, T_REALLOC_TO = 4 };
enum { API_KMEM_CACHE_REC = 2, API_UMA_REC = 4 };

enum { OP_ALLOC, OP_FREE, OP_REALLOC };
#define NO_CACHE 0xffff
#define MAX_CACHES 256

struct rop {
	uint64_t size;
	uint32_t slot, slot2;  /* slot2: REALLOC's result */
	uint16_t cache;        /* index in plan.caches, or NO_CACHE */
	uint8_t kind, align_log2;
};

struct plan {
	struct rop *ops;
	uint64_t nops;
	uint32_t nslots;       /* the peak of live objects */
	uint64_t peak_live_bytes;
	uint64_t threads, dropped_frees, reused_ids;
	double duration_ms;
	unsigned ncaches;
	struct { uint64_t size; uint8_t align_log2; } caches[MAX_CACHES];
};

/* id -> slot, linear probing with backward-shift deletion. */
struct map {
	uint64_t mask;
	uint64_t *ids;      /* 0: empty (no object lives at address 0) */
	uint32_t *slots;
};

static void *map_anon(size_t bytes)
{
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap %zu bytes: %s", bytes, strerror(errno));
	return p;
}

static uint64_t hash_id(uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	id ^= id >> 33;
	return id;
}

static int64_t map_find(const struct map *m, uint64_t id)
{
	for (uint64_t i = hash_id(id) & m->mask;; i = (i + 1) & m->mask) {
		if (m->ids[i] == id)
			return (int64_t)i;
		if (!m->ids[i])
			return -1;
	}
}

static void map_put(struct map *m, uint64_t id, uint32_t slot)
{
	uint64_t i = hash_id(id) & m->mask;

	while (m->ids[i])
		i = (i + 1) & m->mask;
	m->ids[i] = id;
	m->slots[i] = slot;
}

static void map_remove_at(struct map *m, uint64_t i)
{
	uint64_t j = i;

	for (;;) {
		j = (j + 1) & m->mask;
		if (!m->ids[j])
			break;
		uint64_t home = hash_id(m->ids[j]) & m->mask;
		/* Move j back to i if its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->ids[i] = m->ids[j];
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->ids[i] = 0;
}

/* Reads and plans the trace.  With ops == false only the summary is made. */
static int plan_build(const char *path, struct plan *pl, bool ops, char *err, size_t errlen)
{
	struct trace_header h;
	struct stat st;
	const struct trace_record *rec;
	uint64_t nrec, live_bytes = 0, live_objects = 0;
	uint32_t *free_slots, nfree = 0, next_slot = 0;
	uint64_t *slot_size;
	uint16_t *slot_cache;
	uint16_t max_thread = 0;
	struct map m;
	void *file;
	int fd;

	memset(pl, 0, sizeof(*pl));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((size_t)st.st_size < sizeof(h) || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, "SKTRACE1", 8) != 0 || h.version != 1 || h.record_size != sizeof(struct trace_record)) {
		snprintf(err, errlen, "not a slabkit trace (version 1, 24-byte records)");
		close(fd);
		return -1;
	}
	nrec = ((uint64_t)st.st_size - sizeof(h)) / sizeof(struct trace_record);
	if (nrec == 0 || nrec >= UINT32_MAX) {
		snprintf(err, errlen, nrec ? "too many records" : "the trace has no records");
		close(fd);
		return -1;
	}
	file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (file == MAP_FAILED) {
		snprintf(err, errlen, "mmap: %s", strerror(errno));
		return -1;
	}
	rec = (const struct trace_record *)((const char *)file + sizeof(h));

	m.mask = 1;
	while (m.mask < 2 * nrec)
		m.mask <<= 1;
	m.mask -= 1;
	m.ids = map_anon((m.mask + 1) * sizeof(uint64_t));
	m.slots = map_anon((m.mask + 1) * sizeof(uint32_t));
	free_slots = map_anon(nrec * sizeof(uint32_t));
	slot_size = map_anon(nrec * sizeof(uint64_t));
	slot_cache = map_anon(nrec * sizeof(uint16_t));
	if (ops)
		pl->ops = map_anon(nrec * sizeof(struct rop));

#define TAKE_SLOT() (nfree ? free_slots[--nfree] : next_slot++)
/* The object of map entry `at` is freed: an OP_FREE of its slot, which
 * goes back to the free list. */
#define FREE_AT(at)                                                                                    \
	do {                                                                                           \
		uint32_t s_ = m.slots[at];                                                             \
		if (ops)                                                                               \
			pl->ops[pl->nops++] = (struct rop){ .slot = s_, .cache = slot_cache[s_], .kind = OP_FREE }; \
		live_bytes -= slot_size[s_];                                                           \
		live_objects--;                                                                        \
		free_slots[nfree++] = s_;                                                              \
		map_remove_at(&m, (uint64_t)(at));                                                    \
	} while (0)
	for (uint64_t r = 0; r < nrec; r++) {
		const struct trace_record *t = &rec[r];
		unsigned kind = t->op & 15, api = t->op >> 4;
		int64_t at;

		max_thread = BENCH_MAX(max_thread, t->thread);
		pl->peak_live_bytes = BENCH_MAX(pl->peak_live_bytes, live_bytes);
		if (kind == T_ALLOC) {
			uint16_t cache = NO_CACHE;

			if ((at = map_find(&m, t->id)) >= 0) { /* still live: free it first */
				FREE_AT(at);
				pl->reused_ids++;
			}
			if (api == API_KMEM_CACHE_REC || api == API_UMA_REC) {
				unsigned k;

				for (k = 0; k < pl->ncaches; k++)
					if (pl->caches[k].size == t->size && pl->caches[k].align_log2 == t->align_log2)
						break;
				if (k == pl->ncaches && k < MAX_CACHES) {
					pl->caches[k].size = t->size;
					pl->caches[k].align_log2 = t->align_log2;
					pl->ncaches++;
				}
				if (k < pl->ncaches)
					cache = (uint16_t)k;
			}
			uint32_t s = TAKE_SLOT();
			map_put(&m, t->id, s);
			slot_size[s] = t->size;
			slot_cache[s] = cache;
			live_bytes += t->size;
			live_objects++;
			if (ops)
				pl->ops[pl->nops++] = (struct rop){ .size = t->size, .slot = s, .cache = cache,
								    .kind = OP_ALLOC, .align_log2 = t->align_log2 };
		} else if (kind == T_FREE) {
			if ((at = map_find(&m, t->id)) < 0) {
				pl->dropped_frees++;
				continue;
			}
			FREE_AT(at);
		} else if (kind == T_REALLOC && r + 1 < nrec && (rec[r + 1].op & 15) == T_REALLOC_TO) {
			const struct trace_record *to = &rec[++r];
			int64_t old_at = map_find(&m, t->id);
			uint32_t old_slot, new_slot;

			if (old_at < 0) { /* unknown old block: an allocation of the result */
				if ((at = map_find(&m, to->id)) >= 0) {
					pl->reused_ids++;
					continue;
				}
				new_slot = TAKE_SLOT();
				map_put(&m, to->id, new_slot);
				slot_size[new_slot] = to->size;
				slot_cache[new_slot] = NO_CACHE;
				live_bytes += to->size;
				live_objects++;
				if (ops)
					pl->ops[pl->nops++] = (struct rop){ .size = to->size, .slot = new_slot,
									    .cache = NO_CACHE, .kind = OP_ALLOC };
				continue;
			}
			old_slot = m.slots[old_at];
			live_bytes -= slot_size[old_slot];
			if (to->id == t->id) {
				new_slot = old_slot;
			} else {
				map_remove_at(&m, (uint64_t)old_at);
				if ((at = map_find(&m, to->id)) >= 0) { /* still live: free it first */
					FREE_AT(at);
					pl->reused_ids++;
				}
				/* the old slot is reused only after the realloc ran */
				new_slot = TAKE_SLOT();
				free_slots[nfree++] = old_slot;
				map_put(&m, to->id, new_slot);
			}
			slot_size[new_slot] = to->size;
			slot_cache[new_slot] = NO_CACHE;
			live_bytes += to->size;
			if (ops)
				pl->ops[pl->nops++] = (struct rop){ .size = to->size, .slot = old_slot, .slot2 = new_slot,
								    .cache = NO_CACHE, .kind = OP_REALLOC };
		} else {
			pl->dropped_frees++; /* an unpaired realloc record: a truncated trace */
		}
	}
#undef TAKE_SLOT
#undef FREE_AT
	(void)live_objects;
	pl->peak_live_bytes = BENCH_MAX(pl->peak_live_bytes, live_bytes);
	pl->nslots = next_slot;
	pl->threads = max_thread;
	pl->duration_ms = rec[nrec - 1].time_ms;
	if (!ops)
		pl->nops = nrec;
	munmap(m.ids, (m.mask + 1) * sizeof(uint64_t));
	munmap(m.slots, (m.mask + 1) * sizeof(uint32_t));
	munmap(free_slots, nrec * sizeof(uint32_t));
	munmap(slot_size, nrec * sizeof(uint64_t));
	munmap(slot_cache, nrec * sizeof(uint16_t));
	munmap(file, (size_t)st.st_size);
	return 0;
}

int trace_summarize(const char *path, struct trace_summary *out, char *err, size_t errlen)
{
	struct plan pl;

	if (plan_build(path, &pl, false, err, errlen) != 0)
		return -1;
	memset(out, 0, sizeof(*out));
	out->records = pl.nops;
	out->threads = pl.threads;
	out->peak_live_objects = pl.nslots;
	out->peak_live_bytes = pl.peak_live_bytes;
	out->duration_ms = pl.duration_ms;
	return 0;
}

/* --- the child side -------------------------------------------------------------- */

static struct plan plan;
static void **slots;
static uint64_t *slot_bytes;
/* The largest live bytes at a memory sample: held/live compares the two at
 * the same instants (the trace's own peak may fall between samples). */
static double sampled_live_max;
static struct kmem_cache *caches[MAX_CACHES];

void replay_prepare(const struct child_params *p)
{
	char err[256];

	if (plan_build(p->trace, &plan, true, err, sizeof(err)) != 0)
		bench_die("--replay %s: %s", p->trace, err);
	slots = map_anon((size_t)plan.nslots * sizeof(void *) + 8);
	slot_bytes = map_anon((size_t)plan.nslots * sizeof(uint64_t) + 8);
	memset(slots, 0, (size_t)plan.nslots * sizeof(void *));
	memset(slot_bytes, 0, (size_t)plan.nslots * sizeof(uint64_t));
}

/* kmalloc aligns a power-of-two size to itself (up to the largest class),
 * so an alignment above 8 is honoured by asking for that power of two. */
static size_t kmalloc_size_for(uint64_t size, unsigned align_log2)
{
	size_t align = (size_t)1 << align_log2, s = (size_t)size;

	if (align_log2 <= 3)
		return s;
	if (s < align)
		s = align;
	if (s <= 8192 && (s & (s - 1)))
		s = (size_t)1 << (64 - __builtin_clzl(s - 1));
	return s;
}

static void *do_alloc(bool sk, const struct rop *o)
{
	if (sk) {
		if (o->cache != NO_CACHE && caches[o->cache])
			return kmem_cache_alloc(caches[o->cache], GFP_KERNEL);
		return kmalloc(kmalloc_size_for(o->size, o->align_log2), GFP_KERNEL);
	}
	if (o->align_log2 > 4) {
		size_t align = (size_t)1 << o->align_log2;

		return aligned_alloc(align, (o->size + align - 1) & ~(align - 1));
	}
	return malloc(o->size);
}

static void do_free(bool sk, const struct rop *o, void *ptr)
{
	if (!sk)
		free(ptr);
	else if (o->cache != NO_CACHE && caches[o->cache])
		kmem_cache_free(caches[o->cache], ptr);
	else
		kfree(ptr);
}

/* One pass over the plan; returns ns.  With sample_every, memory points are
 * printed and the largest resident growth kept (not a timed pass). */
static uint64_t replay_pass(bool sk, uint64_t sample_every, uint64_t rss_before, double *max_held)
{
	uint64_t start = bench_now_ns();
	double live = 0;

	for (uint64_t i = 0; i < plan.nops; i++) {
		const struct rop *o = &plan.ops[i];
		void *p;

		switch (o->kind) {
		case OP_ALLOC:
			p = do_alloc(sk, o);
			if (bench_unlikely(!p))
				bench_die("replay: allocation of %llu bytes failed", (unsigned long long)o->size);
			if (sample_every) /* the memory pass writes every byte, as a program would */
				memset(p, 0x5a, (size_t)o->size);
			else if (o->size >= sizeof(uintptr_t))
				*(uintptr_t *)p = i;
			slots[o->slot] = p;
			slot_bytes[o->slot] = o->size;
			if (sample_every)
				live += (double)o->size;
			break;
		case OP_FREE:
			do_free(sk, o, slots[o->slot]);
			slots[o->slot] = NULL;
			if (sample_every)
				live -= (double)slot_bytes[o->slot];
			break;
		case OP_REALLOC:
			p = sk ? krealloc(slots[o->slot], (size_t)o->size, GFP_KERNEL) : realloc(slots[o->slot], o->size);
			if (bench_unlikely(!p))
				bench_die("replay: realloc to %llu bytes failed", (unsigned long long)o->size);
			slots[o->slot] = NULL;
			slots[o->slot2] = p;
			if (sample_every) {
				if (o->size > slot_bytes[o->slot])
					memset((char *)p + slot_bytes[o->slot], 0x5a, (size_t)(o->size - slot_bytes[o->slot]));
				live += (double)o->size - (double)slot_bytes[o->slot];
			}
			slot_bytes[o->slot2] = o->size;
			break;
		}
		if (sample_every && (i + 1) % sample_every == 0) {
			uint64_t rss = bench_rss_anon();
			double held = (double)(rss > rss_before ? rss - rss_before : 0);

			*max_held = BENCH_MAX(*max_held, held);
			sampled_live_max = BENCH_MAX(sampled_live_max, live);
			printf("point %.3f %.0f %.0f\n", (double)(bench_now_ns() - start) / 1e6, held, live);
		}
	}
	return bench_now_ns() - start;
}

/* Free what the trace left live (untimed), so the next pass starts empty. */
static void release_all(bool sk)
{
	for (uint32_t s = 0; s < plan.nslots; s++) {
		if (!slots[s])
			continue;
		if (sk)
			kfree(slots[s]);
		else
			free(slots[s]);
		slots[s] = NULL;
	}
}

int replay_run(const struct child_params *p, uint64_t rss_before)
{
	bool sk = p->alloc->kind == ALLOC_SLABKIT;
	double max_held = 0, samples[BENCH_MAX_SAMPLES];
	int disturbed[BENCH_MAX_SAMPLES], reps = BENCH_MIN(p->reps, BENCH_MAX_SAMPLES), reruns = 0;
	uint64_t first, passes;
	struct slabkit_stats st;

	if (sk) {
		for (unsigned k = 0; k < plan.ncaches; k++) {
			char name[48];

			snprintf(name, sizeof(name), "replay-%llu-%u", (unsigned long long)plan.caches[k].size,
				 1u << plan.caches[k].align_log2);
			if (plan.caches[k].size && plan.caches[k].size <= (64u << 20) && plan.caches[k].align_log2 <= 12)
				caches[k] = kmem_cache_create(name, (unsigned)plan.caches[k].size,
							      plan.caches[k].align_log2 ? 1u << plan.caches[k].align_log2 : 0,
							      0, NULL);
		}
	}
	printf("replay ops=%llu peak_objects=%u dropped_frees=%llu reused_ids=%llu caches=%u\n",
	       (unsigned long long)plan.nops, plan.nslots, (unsigned long long)plan.dropped_frees,
	       (unsigned long long)plan.reused_ids, plan.ncaches);

	/* The memory pass: sampled, untimed. */
	first = replay_pass(sk, BENCH_MAX(plan.nops / (BENCH_MAX_POINTS - 4), 1), rss_before, &max_held);
	if (sk) {
		slabkit_stats(&st);
		printf("mem %.0f %.0f %.0f %llu %llu\n", (double)bench_peak_rss(), max_held,
		       sampled_live_max, (unsigned long long)st.slabs,
		       (unsigned long long)(st.slab_pages + st.large_pages));
	} else {
		printf("mem %.0f %.0f %.0f -1 -1\n", (double)bench_peak_rss(), max_held, sampled_live_max);
	}
	release_all(sk);

	/* Timed passes: enough of them per repetition to last about rep_ms. */
	passes = (uint64_t)(p->rep_ms * 1e6 / (double)(first ? first : 1));
	passes = BENCH_MAX(passes, 1);
	printf("calib %llu\n", (unsigned long long)(passes * plan.nops));
	for (int r = 0; r < reps; r++) {
		for (int attempt = 0;; attempt++) {
			struct sched_mark from, to;
			uint64_t took = 0;
			double lost;

			struct sched_mark a, b;

			bench_sched_mark(&from);
			for (uint64_t k = 0; k < passes; k++) {
				bench_sched_mark(&a);
				replay_pass(sk, 0, 0, NULL);
				bench_sched_mark(&b);
				took += b.cpu_ns - a.cpu_ns; /* CPU time, as every single-threaded cell */
				release_all(sk);
			}
			bench_sched_mark(&to);
			lost = bench_lost_share(&from, &to);
			samples[r] = (double)took / (double)(passes * plan.nops);
			disturbed[r] = lost > 0.05;
			if (!disturbed[r] || attempt >= p->max_retries)
				break;
			reruns++;
		}
	}
	for (int r = 0; r < reps; r++)
		printf("sample %.4f %d\n", samples[r], disturbed[r]);
	printf("reruns %d\n", reruns);
	return 0;
}
