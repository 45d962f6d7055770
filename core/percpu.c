/*
 * The per-CPU layer: mode selection, slot allocation, slow-path locking,
 * counter folds and the lock-mode fast paths.  The rseq fast paths are
 * inline in sk_fastpath.h; sk_percpu.h has the protocol and the argument
 * for it.
 *
 * Lock order: a thread holds at most one slot lock at a time (drainers walk
 * the CPUs one by one); backends take their own locks after it, never
 * before (sk_core.h has the whole order).  area_lock is a leaf: nothing
 * else is taken while it is held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ck_pr.h>

#include "../numa/sk_numa.h"
#include "sk_backend.h"
#include "sk_core.h"
#include "sk_fastpath.h"

bool sk_pcpu_use_rseq;
unsigned sk_pcpu_nr;
uint64_t sk_pcpu_sample_mask;
uint64_t sk_pcpu_sums_taken;
long sk_rseq_offset;

/* Slot locks the calling thread holds through sk_pcpu_trylock_local or
 * sk_pcpu_lock_cpu (not the lock-mode fast paths, which call nothing).
 * The wait-for-memory path reads it: a thread must never drain while it
 * holds a slot, or it would wait for itself. */
static __thread unsigned slots_held __attribute__((tls_model("initial-exec")));

bool sk_pcpu_caller_holds_slot(void)
{
	return slots_held != 0;
}

#ifndef MEMBARRIER_CMD_FLAG_CPU
#define MEMBARRIER_CMD_FLAG_CPU (1 << 0)
#endif

static int sys_membarrier(int cmd, unsigned flags, int cpu)
{
	return (int)syscall(__NR_membarrier, cmd, flags, cpu);
}

static const struct rseq *rseq_area(void)
{
	return (const struct rseq *)((char *)__builtin_thread_pointer() + sk_rseq_offset);
}

/* glibc registered rseq for its threads (whatever the per-CPU mode): the
 * kernel then keeps each thread's cpu_id current, and lock mode reads its
 * CPU from there instead of calling sched_getcpu (a PLT call that spilled
 * four registers in every lock-mode op; under valgrind registration fails
 * and cpu_id stays negative, which falls back to sched_getcpu). */
static bool rseq_cpu_id_known;

/* Can this process run the rseq fast paths?  glibc must have registered
 * rseq for the thread, and membarrier must be able to restart sequences
 * on other CPUs (drainers need it). */
static bool rseq_usable(void)
{
	if (!SK_HAVE_RSEQ_ASM || __rseq_size < 20)
		return false;
	sk_rseq_offset = __rseq_offset;
	if ((int32_t)rseq_area()->cpu_id < 0)
		return false;
	int cmds = sys_membarrier(MEMBARRIER_CMD_QUERY, 0, 0);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ))
		return false;
	return sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
}

int sk_pcpu_init(const char *mode)
{
	sk_pcpu_nr = sk_numa_cpus();
	rseq_cpu_id_known = __rseq_size >= 20;
	if (rseq_cpu_id_known)
		sk_rseq_offset = __rseq_offset;
	sk_pcpu_sample_mask = sk_pcpu_nr > 1 ? (UINT64_C(1) << (64 - __builtin_clzll(sk_pcpu_nr - 1))) - 1 : 0;
	if (!mode || !*mode || !strcmp(mode, "auto")) {
		sk_pcpu_use_rseq = rseq_usable();
	} else if (!strcmp(mode, "rseq")) {
		if (!rseq_usable()) {
			sk_errorf("slabkit: per-CPU mode 'rseq' requested but this process cannot use "
				  "restartable sequences (no x86-64 rseq, glibc did not register it, or "
				  "membarrier lacks RSEQ support)");
			return -ENOTSUP;
		}
		sk_pcpu_use_rseq = true;
	} else if (!strcmp(mode, "lock")) {
		sk_pcpu_use_rseq = false;
	} else {
		sk_errorf("slabkit: unknown per-CPU mode '%s' (expected auto, rseq or lock)", mode);
		return -EINVAL;
	}
	return 0;
}

const char *sk_pcpu_mode_name(void)
{
	return sk_pcpu_use_rseq ? "rseq" : "lock";
}

/* No rseq area for this thread (valgrind, glibc.pthread.rseq=0, an old
 * kernel): ask the kernel (vDSO getcpu). */
__attribute__((noinline, cold)) static unsigned current_cpu_slow(void)
{
	int cpu = sched_getcpu();

	if (cpu < 0)
		cpu = 0;
	return (unsigned)cpu < sk_pcpu_nr ? (unsigned)cpu : (unsigned)cpu % sk_pcpu_nr;
}

/* Any CPU number is correct in lock mode (the slot lock, not the number,
 * makes an op safe; a stale one after a migration only costs locality), so
 * the rseq area's cpu_id is read with a plain atomic load in both modes. */
static inline unsigned current_cpu(void)
{
	if (sk_likely(rseq_cpu_id_known)) {
		unsigned cpu = sk_load((const uint32_t *)&rseq_area()->cpu_id);

		if (sk_likely(cpu < sk_pcpu_nr))
			return cpu;
	}
	return current_cpu_slow();
}

unsigned sk_pcpu_current_cpu(void)
{
	return current_cpu();
}

/*
 * Where the slots live.  The page provider reserves a per-CPU area of one
 * unit per CPU, unit c bound to CPU c's node (sk_numa_pcpu_area).  A
 * cache's slots take the same offset in every unit: slot(cpu) is
 * pcpu_base + cpu * unit, so the fast paths' arithmetic (base + cpu *
 * stride, sk_fastpath.h) is unchanged and each CPU's slot is in its own
 * node's memory.  The offsets are handed out in 64-byte granules, first
 * fit, from a bitmap.  When the area is missing or full, the slots are
 * one array carved from the metadata pools on the creating CPU's node, as
 * before (stride = the slot size).
 * Synchronization: area_lock for the bitmap; init/fini reset it.
 */
#define AREA_GRANULE 64
#define AREA_MAX_GRANULES ((SK_PCPU_UNIT_BYTES) / AREA_GRANULE)
static pthread_mutex_t area_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t area_used[AREA_MAX_GRANULES / 64]; /* bit g: granule g taken */
static uint64_t area_granules_taken;              /* Synchronization: area_lock */

static bool granule_used(size_t g)
{
	return area_used[g / 64] >> (g % 64) & 1;
}

static void granules_mark(size_t first, size_t n, bool used)
{
	for (size_t g = first; g < first + n; g++) {
		if (used)
			area_used[g / 64] |= UINT64_C(1) << (g % 64);
		else
			area_used[g / 64] &= ~(UINT64_C(1) << (g % 64));
	}
	area_granules_taken = used ? area_granules_taken + n : area_granules_taken - n;
}

/* The offset of `n` free granules in every unit (first fit), or -1. */
static long area_take(size_t n, size_t granules)
{
	for (size_t g = 0, run = 0; g < granules; g++) {
		if (g % 64 == 0 && area_used[g / 64] == UINT64_MAX && g + 64 <= granules) {
			run = 0;
			g += 63; /* a full word: skip it */
			continue;
		}
		run = granule_used(g) ? 0 : run + 1;
		if (run == n) {
			granules_mark(g + 1 - n, n, true);
			return (long)((g + 1 - n) * AREA_GRANULE);
		}
	}
	return -1;
}

/* Slots of size `stride` for every CPU in the area (zeroed), or NULL. */
static char *area_alloc(size_t stride)
{
	size_t unit;
	char *area = sk_numa_pcpu_area(&unit);
	if (!area)
		return NULL;
	size_t granules = SK_MIN(unit, (size_t)SK_PCPU_UNIT_BYTES) / AREA_GRANULE;
	pthread_mutex_lock(&area_lock);
	long off = area_take(stride / AREA_GRANULE, granules);
	pthread_mutex_unlock(&area_lock);
	if (off < 0)
		return NULL;
	/* Zeroed here: a freed offset keeps its last cache's slots.  With
	 * the units bound, the pages land on each unit's node whoever
	 * touches them. */
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++)
		memset(area + (size_t)cpu * unit + (size_t)off, 0, stride);
	return area + off;
}

/* Is p inside the per-CPU area?  Then *offset is its offset in unit 0. */
static bool in_area(const char *p, size_t *offset)
{
	size_t unit;
	const char *area = sk_numa_pcpu_area(&unit);
	if (!area || p < area || p >= area + unit)
		return false;
	*offset = (size_t)(p - area);
	return true;
}

void sk_pcpu_area_reset(void)
{
	pthread_mutex_lock(&area_lock);
	memset(area_used, 0, sizeof(area_used));
	area_granules_taken = 0;
	pthread_mutex_unlock(&area_lock);
}

void sk_pcpu_area_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&area_lock);
}

size_t sk_pcpu_area_bytes(void)
{
	pthread_mutex_lock(&area_lock);
	size_t bytes = (size_t)area_granules_taken * AREA_GRANULE * sk_pcpu_nr;
	pthread_mutex_unlock(&area_lock);
	return bytes;
}

bool sk_pcpu_in_area(const struct sk_cache *c)
{
	size_t off;
	return c->pcpu_base && in_area(c->pcpu_base, &off);
}

int sk_pcpu_create(struct sk_cache *c)
{
	size_t stride = sizeof(struct sk_pcpu_slot) + SK_ALIGN_UP((size_t)c->pcpu_extra, 64);
	size_t unit;
	char *base = area_alloc(stride);

	if (base) {
		sk_numa_pcpu_area(&unit);
		c->pcpu_base = base;
		c->pcpu_stride = (uint32_t)unit;
		return 0;
	}
	base = sk_meta_zalloc(stride * sk_pcpu_nr);
	if (!base)
		return -ENOMEM;
	c->pcpu_base = base;
	c->pcpu_stride = (uint32_t)stride;
	return 0;
}

void sk_pcpu_destroy(struct sk_cache *c)
{
	if (!c->pcpu_base)
		return;
	size_t stride = sizeof(struct sk_pcpu_slot) + SK_ALIGN_UP((size_t)c->pcpu_extra, 64);
	size_t off;
	if (in_area(c->pcpu_base, &off)) {
		pthread_mutex_lock(&area_lock);
		granules_mark(off / AREA_GRANULE, stride / AREA_GRANULE, false);
		pthread_mutex_unlock(&area_lock);
	} else {
		sk_meta_free(c->pcpu_base, (size_t)c->pcpu_stride * sk_pcpu_nr);
	}
	c->fast = SK_FAST_NONE;
	c->pcpu_base = NULL;
	c->pcpu_kind = SK_PCPU_NONE;
}

struct sk_pcpu_slot *sk_pcpu_slot(const struct sk_cache *c, unsigned cpu)
{
	return (struct sk_pcpu_slot *)(c->pcpu_base + (size_t)cpu * c->pcpu_stride);
}

unsigned sk_pcpu_slot_cpu(const struct sk_cache *c, const struct sk_pcpu_slot *slot)
{
	return (unsigned)(((const char *)slot - c->pcpu_base) / c->pcpu_stride);
}

/* The slot lock uses the compiler's atomics with acquire/release order
 * (what ck_pr compiles to on x86 anyway) so that ThreadSanitizer sees the
 * happens-before edges it creates.  Not ck_spinlock: the lock word sits at
 * a fixed offset the rseq sequences read (sk_fastpath.h checks it before
 * committing), slow paths only ever try it (never spin: a drainer or the
 * holder's migration would stall them), and TSan does not see the release
 * in ck_spinlock_unlock under ck's builtin port, so every slot a drainer
 * locks would be reported as a race. */
static bool slot_trylock(struct sk_pcpu_slot *slot)
{
	uint32_t unlocked = 0;
	return __atomic_load_n(&slot->lock, __ATOMIC_RELAXED) == 0 &&
	       __atomic_compare_exchange_n(&slot->lock, &unlocked, 1, false, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

struct sk_pcpu_slot *sk_pcpu_trylock_local(struct sk_cache *c)
{
	unsigned cpu = sk_pcpu_current_cpu();
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);

	if (!slot_trylock(slot))
		return NULL;
	slots_held++;
	/* Still on `cpu` after taking the lock: any sequence that was running
	 * there has committed or will restart and see the lock (sk_percpu.h).
	 * Migrated: let go; the caller bypasses the slot this once. */
	if (sk_pcpu_use_rseq && sk_pcpu_current_cpu() != cpu) {
		sk_pcpu_unlock(slot);
		return NULL;
	}
	return slot;
}

/* Restart any sequence in flight on `cpu`; afterwards every new one sees
 * the lock the caller holds.  A child of fork() has lost the registration:
 * register again.  Without a fence the drain would not be safe, so a
 * membarrier that keeps failing is fatal. */
static void fence_cpu(unsigned cpu)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU,
				   (int)cpu) == 0 ||
		    sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0)
			return;
		sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
	}
	sk_fatal("per-CPU drain: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) fails (%s); "
		 "cannot drain CPU %u safely", strerror(errno), cpu);
	abort();
}

bool sk_fence_other_threads(void)
{
	/* The process-private command, registered once (again in a child of
	 * fork, which loses the registration); else the global one, which
	 * needs no registration but waits for a scheduler grace period. */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
			return true;
		if (sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
			break;
	}
	return sys_membarrier(MEMBARRIER_CMD_GLOBAL, 0, 0) == 0;
}

uint64_t sk_pcpu_drain_locks;

struct sk_pcpu_slot *sk_pcpu_lock_cpu(struct sk_cache *c, unsigned cpu)
{
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);

	ck_pr_inc_64(&sk_pcpu_drain_locks);
	while (!slot_trylock(slot))
		sched_yield(); /* the holder may be preempted: never spin hard */
	slots_held++;
	if (sk_pcpu_use_rseq && sk_pcpu_current_cpu() != cpu)
		fence_cpu(cpu);
	return slot;
}

static void slot_unlock(struct sk_pcpu_slot *slot)
{
	__atomic_store_n(&slot->lock, 0, __ATOMIC_RELEASE);
}

void sk_pcpu_unlock(struct sk_pcpu_slot *slot)
{
	slots_held--;
	slot_unlock(slot);
}

void sk_pcpu_fork_lock(struct sk_cache *c, bool lock)
{
	if (!c->pcpu_base)
		return;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
		if (!lock)
			slot_unlock(slot);
		else
			while (!slot_trylock(slot))
				sched_yield();
	}
}

/* --- the counts kept in `top` (see sk_percpu.h) --- */

static inline uint64_t top_state(enum sk_pcpu_kind kind, uint64_t w)
{
	return w & (kind == SK_PCPU_LIST ? SK_PCPU_LIST_PTR_MASK : SK_PCPU_ARRAY_COUNT_MASK);
}

static inline uint64_t top_allocs(enum sk_pcpu_kind kind, uint64_t w)
{
	return kind == SK_PCPU_LIST ? w >> 56 : w >> 32;
}

static inline uint64_t top_frees(enum sk_pcpu_kind kind, uint64_t w)
{
	return kind == SK_PCPU_LIST ? (w >> 48) & 0xff : (w >> 16) & 0xffff;
}

static inline uint64_t one_alloc(enum sk_pcpu_kind kind)
{
	return kind == SK_PCPU_LIST ? UINT64_C(1) << 56 : UINT64_C(1) << 32;
}

static inline uint64_t one_free(enum sk_pcpu_kind kind)
{
	return kind == SK_PCPU_LIST ? UINT64_C(1) << 48 : UINT64_C(1) << 16;
}

static inline bool allocs_full(enum sk_pcpu_kind kind, uint64_t w)
{
	return top_allocs(kind, w) == (kind == SK_PCPU_LIST ? 0xff : 0xffffffffu);
}

static inline bool frees_full(enum sk_pcpu_kind kind, uint64_t w)
{
	return kind == SK_PCPU_LIST ? top_frees(kind, w) == 0xff : top_frees(kind, w) >= 0x8000;
}

/* Lock holder: move the counts out of `top` into allocs/frees and set the
 * state to `state`.  fold_seq is odd meanwhile, so that sk_pcpu_sum never
 * sees a count in both places or in neither.
 *
 * This is ck_sequence's protocol (write_begin/end, read_begin/retry), kept
 * hand-written on purpose: ck_sequence's loads and stores are volatile
 * accesses under ck's builtin port, which TSan builds use, so TSan would
 * report every report-reader against every fold; and ck_sequence_read_begin
 * spins on an odd count while a fold's holder may be preempted, where
 * slot_counts yields.  sk_load/sk_store and sk_fence_* are the same
 * instructions on x86 and visible to TSan. */
static void fold_and_set(struct sk_pcpu_slot *slot, enum sk_pcpu_kind kind, uint64_t state)
{
	uint64_t w = sk_load(&slot->top);
	uint32_t seq = slot->fold_seq;

	/* A seqcount write: odd, the moves, even (backends set the state on
	 * every refill, so this stays a handful of plain stores on x86). */
	sk_store(&slot->fold_seq, seq + 1);
	sk_fence_release();
	sk_store(&slot->allocs, slot->allocs + top_allocs(kind, w));
	sk_store(&slot->frees, slot->frees + top_frees(kind, w));
	sk_store(&slot->top, state);
	sk_store_release(&slot->fold_seq, seq + 2);
}

void sk_pcpu_set_list_head(struct sk_pcpu_slot *slot, void *head)
{
	fold_and_set(slot, SK_PCPU_LIST, (uint64_t)(uintptr_t)head);
}

void sk_pcpu_set_array_count(struct sk_pcpu_slot *slot, unsigned count)
{
	fold_and_set(slot, SK_PCPU_ARRAY, count);
}

bool sk_pcpu_fold_if_full(struct sk_cache *c)
{
	enum sk_pcpu_kind kind = c->pcpu_kind;

	if (kind == SK_PCPU_NONE)
		return false;
	uint64_t w = sk_load(&sk_pcpu_slot(c, sk_pcpu_current_cpu())->top);
	if (!allocs_full(kind, w) && !frees_full(kind, w))
		return false;
	struct sk_pcpu_slot *slot = sk_pcpu_trylock_local(c);
	if (!slot)
		return false;
	fold_and_set(slot, kind, top_state(kind, sk_load(&slot->top)));
	sk_pcpu_unlock(slot);
	return true;
}

/* One slot's counts at one instant. */
static void slot_counts(enum sk_pcpu_kind kind, const struct sk_pcpu_slot *slot, uint64_t *allocs,
			uint64_t *frees)
{
	uint32_t seq;
	uint64_t a, f, w;

	do {
		while ((seq = sk_load_acquire(&slot->fold_seq)) & 1)
			sched_yield();
		a = sk_load(&slot->allocs);
		f = sk_load(&slot->frees);
		w = sk_load(&slot->top);
		sk_fence_acquire(); /* the reads above before the re-check */
	} while (sk_load(&slot->fold_seq) != seq);
	*allocs = a + top_allocs(kind, w);
	*frees = f + top_frees(kind, w);
}

uint64_t sk_pcpu_slot_allocs(const struct sk_cache *c, const struct sk_pcpu_slot *slot)
{
	uint64_t allocs, frees;
	slot_counts(c->pcpu_kind, slot, &allocs, &frees);
	return allocs;
}

void sk_pcpu_sum(const struct sk_cache *c, struct sk_pcpu_sums *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->pcpu_base || c->pcpu_kind == SK_PCPU_NONE)
		return;
	ck_pr_inc_64(&sk_pcpu_sums_taken);
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *s = sk_pcpu_slot(c, cpu);
		uint64_t allocs, frees;
		slot_counts(c->pcpu_kind, s, &allocs, &frees);
		out->allocs += allocs;
		out->frees += frees;
		out->bytes_slack += sk_load(&s->bytes_slack);
	}
}

/* --- lock mode: the fast paths in C under the slot lock --- */

static inline void **list_next(struct sk_cache *c, void *obj)
{
	return (void **)((char *)obj + c->free_offset);
}

/* The ops on a given slot: the rseq sequences' pop and push, in C under
 * the slot lock.  The ARRAY moves index the stack with the 64-bit state
 * rather than through sk_stack.h's 32-bit count, which costs one more
 * instruction per op here (objdump); the slow paths use sk_stack.h's moves
 * (sk_pcpu_array_pop/push/drop_oldest in sk_percpu.h).  Each entry point below reads the CPU from the
 * rseq area and runs its op as a leaf; a thread with no rseq area takes a
 * tail call to a copy that asks sched_getcpu, so that the common entry
 * saves no register for a call it does not make. */
static sk_always_inline void *pop_on(struct sk_cache *c, struct sk_pcpu_slot *slot)
{
	enum sk_pcpu_kind kind = c->pcpu_kind;
	void *obj = NULL;

	if (!slot_trylock(slot))
		return NULL;
	uint64_t w = sk_load(&slot->top), state = top_state(kind, w);
	if (state && !allocs_full(kind, w) && (kind == SK_PCPU_LIST || !frees_full(kind, w))) {
		if (kind == SK_PCPU_LIST) {
			obj = (void *)(uintptr_t)state;
			sk_store(&slot->top, w - state + (uint64_t)(uintptr_t)*list_next(c, obj) + one_alloc(kind));
		} else {
			obj = slot->entries[state - 1];
			sk_store(&slot->top, w - 1 + one_alloc(kind));
		}
	}
	slot_unlock(slot);
	return obj;
}

static sk_always_inline bool push_on(struct sk_cache *c, struct sk_pcpu_slot *slot, void *obj, uintptr_t tag)
{
	enum sk_pcpu_kind kind = c->pcpu_kind;
	bool done = false;

	if (!slot_trylock(slot))
		return false;
	uint64_t w = sk_load(&slot->top), state = top_state(kind, w);
	if (slot->tag == tag && (kind == SK_PCPU_ARRAY || !frees_full(kind, w))) {
		/* Freeing the object at the top is a double free: miss, and
		 * the slow path reports it (sk_pcpu_is_first_free). */
		if (kind == SK_PCPU_LIST && (uintptr_t)obj != state) {
			*list_next(c, obj) = (void *)(uintptr_t)state;
			sk_store(&slot->top, w - state + (uint64_t)(uintptr_t)obj + one_free(kind));
			done = true;
		} else if (kind == SK_PCPU_ARRAY && state < slot->limit &&
			   (!state || slot->entries[state - 1] != obj)) {
			slot->entries[state] = obj;
			sk_store(&slot->top, w + 1 + one_free(kind));
			done = true;
		}
	}
	slot_unlock(slot);
	return done;
}

/* The rseq area's cpu_id, if this thread has one and it names a slot. */
static sk_always_inline bool rseq_cpu(unsigned *cpu)
{
	if (sk_likely(rseq_cpu_id_known)) {
		*cpu = sk_load((const uint32_t *)&rseq_area()->cpu_id);
		return sk_likely(*cpu < sk_pcpu_nr);
	}
	return false;
}

__attribute__((noinline)) static void *pop_locked_getcpu(struct sk_cache *c)
{
	return pop_on(c, sk_pcpu_slot(c, current_cpu_slow()));
}

__attribute__((noinline)) static bool push_locked_getcpu(struct sk_cache *c, void *obj, uintptr_t tag)
{
	return push_on(c, sk_pcpu_slot(c, current_cpu_slow()), obj, tag);
}

void *sk_pcpu_pop_locked(struct sk_cache *c)
{
	unsigned cpu;

	if (sk_unlikely(!rseq_cpu(&cpu)))
		return pop_locked_getcpu(c);
	return pop_on(c, (struct sk_pcpu_slot *)(c->pcpu_base + (size_t)cpu * c->pcpu_stride));
}

bool sk_pcpu_push_locked(struct sk_cache *c, void *obj, uintptr_t tag)
{
	unsigned cpu;

	if (sk_unlikely(!rseq_cpu(&cpu)))
		return push_locked_getcpu(c, obj, tag);
	return push_on(c, (struct sk_pcpu_slot *)(c->pcpu_base + (size_t)cpu * c->pcpu_stride), obj, tag);
}

void sk_pcpu_add_locked(struct sk_cache *c, uint64_t n)
{
	ck_pr_add_64(&sk_pcpu_slot(c, current_cpu())->bytes_slack, n);
}

bool sk_pcpu_is_first_free(struct sk_cache *c, const void *obj)
{
	enum sk_pcpu_kind kind = c->pcpu_kind;
	bool first = false;

	if (kind == SK_PCPU_LIST) {
		/* No lock: if the head read is obj, obj was free at that instant,
		 * so the caller, who frees it, did not own it. */
		uint64_t w = sk_load(&sk_pcpu_slot(c, sk_pcpu_current_cpu())->top);
		return top_state(kind, w) == (uint64_t)(uintptr_t)obj;
	}
	if (kind != SK_PCPU_ARRAY)
		return false;
	/* ARRAY: entries and the count must be read together. */
	struct sk_pcpu_slot *slot = sk_pcpu_trylock_local(c);
	if (!slot)
		return false;
	first = sk_stack_is_top(slot->entries, (uint32_t)top_state(kind, sk_load(&slot->top)), obj);
	sk_pcpu_unlock(slot);
	return first;
}
