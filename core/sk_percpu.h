/*
 * The per-CPU layer, shared by every backend that caches per CPU.
 *
 * Each cache has one slot per possible CPU id.  A slot holds either a free
 * list threaded through free objects (SK_PCPU_LIST, SLUB) or a stack of
 * object pointers (SK_PCPU_ARRAY, SLAB's array_cache, UMA's bucket).  The
 * fast paths pop and push one object on the slot of the CPU the caller runs
 * on, and count the operation, with no atomic instruction:
 *
 *  - "rseq" mode (x86-64, kernel rseq registered by glibc): the pop or push
 *    is a restartable sequence.  The kernel restarts it if the thread is
 *    preempted, migrated or signalled before its single commit instruction,
 *    an 8-byte store of the slot's word `top`.
 *  - "lock" mode (anything else, valgrind, TSan): the slot of sched_getcpu()
 *    is taken with a test-and-set lock for the few instructions of the op.
 *
 * The word `top` carries the operation counts next to the state, so that
 * an operation and its count commit together (exact statistics for free):
 *   LIST:  bits 0-47 the first free object, 48-55 frees, 56-63 allocations
 *   ARRAY: bits 0-15 entries in use, 16-31 frees, 32-63 allocations
 * (allocations in the top bits: the pop's add overflows into the carry flag)
 * A fast path whose count field is full misses (an ARRAY pop also misses
 * once frees pass half their field, so that pushes, at most `limit` of them
 * before the next pop, never need to check); core then folds the counts
 * into `allocs` and `frees` under the slot lock (at worst every 255
 * operations of a LIST slot, about 0.05 ns an operation).  Backends read and
 * write the state half only through the accessors below.
 *
 * Why rseq is safe against slow paths and drainers: every fast path checks
 * `lock == 0` inside its sequence.  A slow path takes the lock of the slot of
 * the CPU it runs on and then confirms it is still on that CPU (if not, it
 * lets go and the caller bypasses the slot); being on CPU n after the lock
 * store means any sequence that was running on n has committed or will
 * restart and see the lock.  A drainer working on another CPU's slot takes
 * its lock and then calls membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)
 * on that CPU, which restarts any sequence in flight there.
 *
 * Synchronization, per slot field:
 *   top: fast-path commits on the slot's CPU, or the lock holder.
 *   allocs, frees, fold_seq: the lock holder (folds); readers use fold_seq.
 *   tag, entries, limit, extra area: the lock holder only.
 *   bytes_slack: sk_pcpu_add_slack() (rseq add, or an atomic add).
 *   lock: CAS to take, release store to drop.
 */
#ifndef SLABKIT_PERCPU_H
#define SLABKIT_PERCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/sk_compiler.h"
#include "sk_stack.h"

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

struct sk_cache;

enum sk_pcpu_kind {
	SK_PCPU_NONE = 0,  /* no per-CPU layer (SLOB): every call goes to the backend */
	SK_PCPU_LIST,      /* top is the first free object; next pointer at cache->free_offset */
	SK_PCPU_ARRAY,     /* top counts entries[0 .. top-1]; limit bounds it */
};

struct sk_pcpu_slot {
	uint64_t allocs;          /* +0  allocations folded out of top */
	uintptr_t top;            /* +8  state and counts, committed by the fast paths */
	uint64_t frees;           /* +16 frees folded out of top */
	uintptr_t tag;            /* +24 a freed object enters only if its tag equals this */
	void **entries;           /* +32 ARRAY: the stack */
	uint32_t limit;           /* +40 ARRAY: capacity (0: accept no free; <= SK_PCPU_ARRAY_MAX) */
	uint32_t lock;            /* +44 0: free */
	uint64_t bytes_slack;     /* +48 size classes: object_size - size asked for, summed */
	uint32_t fold_seq;        /* +56 odd while a fold moves counts out of top */
	uint32_t reserved;        /* +60 */
	/* The backend's extra per-CPU area (cache->pcpu_extra bytes) follows. */
} __attribute__((aligned(64)));

#define SK_PCPU_LIST_PTR_MASK ((UINT64_C(1) << 48) - 1)
#define SK_PCPU_ARRAY_COUNT_MASK UINT64_C(0xffff)
#define SK_PCPU_ARRAY_MAX 32767u /* pushes between pops stay below the frees field's half */

_Static_assert(sizeof(struct sk_pcpu_slot) == 64, "slot header is one cache line");

/* Chosen once at init: true when the fast paths are restartable sequences. */
extern bool sk_pcpu_use_rseq;
/* Number of slots per cache: every CPU id the kernel can report is below it. */
extern unsigned sk_pcpu_nr;
/* The smallest power of two >= sk_pcpu_nr, minus one: work proportional to
 * the number of CPUs done once every (mask + 1) events costs O(1) each. */
extern uint64_t sk_pcpu_sample_mask;

/* Set the mode up ("auto", "rseq", "lock"); 0 or -errno with a message. */
int sk_pcpu_init(const char *mode);
const char *sk_pcpu_mode_name(void);

/* The CPU the caller runs on now (it may migrate right after). */
unsigned sk_pcpu_current_cpu(void);

/* Allocate and zero the slots of a cache (core calls it at cache creation):
 * in the provider's per-CPU area when there is room (each CPU's slot on
 * its node; pcpu_stride is then the area's unit), else one array from the
 * metadata pools (pcpu_stride is the slot size). */
int sk_pcpu_create(struct sk_cache *c);
void sk_pcpu_destroy(struct sk_cache *c);
/* Does c's slot array live in the per-CPU area? */
bool sk_pcpu_in_area(const struct sk_cache *c);
/* Bytes of the per-CPU area holding live caches' slots (all CPUs). */
size_t sk_pcpu_area_bytes(void);
/* At most this many bytes per CPU are used of each unit (the bitmap's size). */
#define SK_PCPU_UNIT_BYTES (4u << 20)
/* Forget every offset (slabkit_fini, before the area is unmapped). */
void sk_pcpu_area_reset(void);
/* fork(): hold the area's lock across it. */
void sk_pcpu_area_fork_lock(bool lock);

/* The slot of a CPU, without locking (reading counters, initialisation). */
struct sk_pcpu_slot *sk_pcpu_slot(const struct sk_cache *c, unsigned cpu);
/* The CPU id a slot belongs to. */
unsigned sk_pcpu_slot_cpu(const struct sk_cache *c, const struct sk_pcpu_slot *slot);
/* The backend's extra area of a slot. */
static inline void *sk_pcpu_extra(struct sk_pcpu_slot *slot)
{
	return slot + 1;
}

/*
 * Slow paths: lock the slot of the CPU the caller runs on.  Never waits:
 * returns NULL if the slot is held by someone else (the caller then works
 * on the node-level structures directly, bypassing per-CPU caching).
 * On success the caller owns every field of the slot until sk_pcpu_unlock.
 */
struct sk_pcpu_slot *sk_pcpu_trylock_local(struct sk_cache *c);

/*
 * Drainers: lock CPU `cpu`'s slot, waiting for the holder if any, and make
 * sure no fast path is in flight on it.  Costs a syscall in rseq mode: for
 * shrink, destroy, reclaim and reaping only.
 */
struct sk_pcpu_slot *sk_pcpu_lock_cpu(struct sk_cache *c, unsigned cpu);
/* How many times sk_pcpu_lock_cpu was called (tests check that reports
 * never call it).  Synchronization: ck_pr atomics. */
extern uint64_t sk_pcpu_drain_locks;

void sk_pcpu_unlock(struct sk_pcpu_slot *slot);

/* Does the calling thread hold a slot lock now?  (Drains must then skip:
 * sk_pcpu_lock_cpu would wait for the caller itself.) */
bool sk_pcpu_caller_holds_slot(void);

/* fork(): take (waiting for holders) or release every slot lock of c.
 * rseq fast paths commit with one store, so a slot is consistent at any
 * instant once no lock holder is inside it. */
void sk_pcpu_fork_lock(struct sk_cache *c, bool lock);

/* --- the state half of `top` (any reader; setters for the lock holder) --- */

/* LIST: the first object of the slot's free list (NULL: empty). */
static inline void *sk_pcpu_list_head(const struct sk_pcpu_slot *slot)
{
	return (void *)(uintptr_t)(sk_load(&slot->top) & SK_PCPU_LIST_PTR_MASK);
}

/* ARRAY: how many entries are in use. */
static inline unsigned sk_pcpu_array_count(const struct sk_pcpu_slot *slot)
{
	return (unsigned)(sk_load(&slot->top) & SK_PCPU_ARRAY_COUNT_MASK);
}

/* Lock holder: replace the state (the counts are folded, not lost). */
void sk_pcpu_set_list_head(struct sk_pcpu_slot *slot, void *head);
void sk_pcpu_set_array_count(struct sk_pcpu_slot *slot, unsigned count);

/*
 * ARRAY, lock holder: the slot is a pointer stack (core/sk_stack.h) whose
 * count is the state half of `top`; these are the stack's moves on it for
 * the slow paths of every array backend (SLAB's array cache, SLUB's sheaf,
 * UMA's alloc bucket).  The fast paths do the same pop and push inside
 * their restartable sequences (sk_fastpath.h) or under the lock in lock
 * mode (percpu.c).
 */

/* Take the top entry; the caller has checked the slot is not empty. */
static inline void *sk_pcpu_array_pop(struct sk_pcpu_slot *slot)
{
	uint32_t n = sk_pcpu_array_count(slot);
	void *obj = sk_stack_pop(slot->entries, &n);

	sk_pcpu_set_array_count(slot, n);
	return obj;
}

/* Put obj on top; the caller has checked the count is below limit. */
static inline void sk_pcpu_array_push(struct sk_pcpu_slot *slot, void *obj)
{
	uint32_t n = sk_pcpu_array_count(slot);

	sk_stack_push(slot->entries, &n, obj);
	sk_pcpu_set_array_count(slot, n);
}

/* Forget the n oldest entries (the caller has moved them elsewhere). */
static inline void sk_pcpu_array_drop_oldest(struct sk_pcpu_slot *slot, uint32_t n)
{
	uint32_t count = sk_pcpu_array_count(slot);

	sk_stack_drop_oldest(slot->entries, count, n);
	sk_pcpu_set_array_count(slot, count - n);
}

/* Allocations this slot has served so far (racy; for idleness heuristics). */
uint64_t sk_pcpu_slot_allocs(const struct sk_cache *c, const struct sk_pcpu_slot *slot);

/* A fast path missed: if this CPU's slot missed because a count field is
 * full, fold it and return true (the caller retries the fast path). */
bool sk_pcpu_fold_if_full(struct sk_cache *c);

/* Is obj the first free object of this CPU's slot (the LIST head, the top
 * ARRAY entry)?  Then freeing it again is a double free.  Slow paths only;
 * false when the slot is busy. */
bool sk_pcpu_is_first_free(struct sk_cache *c, const void *obj);

/* Sum of the counters over all slots (racy reads of exact counters). */
struct sk_pcpu_sums {
	uint64_t allocs, frees, bytes_slack;
};
void sk_pcpu_sum(const struct sk_cache *c, struct sk_pcpu_sums *out);
/* How many sums were taken (tests check that slow paths take few).
 * Synchronization: ck_pr atomics. */
extern uint64_t sk_pcpu_sums_taken;

/* An asymmetric full barrier: on return, every other thread of the process
 * has executed a full memory barrier (or been off its CPU) since the call
 * began, so a thread that stored X and then loaded Y with only a compiler
 * barrier between either had its store seen by the caller's loads after
 * this call, or saw the caller's stores before it.  membarrier; false when
 * the kernel offers none (valgrind, old kernels): no such guarantee then. */
bool sk_fence_other_threads(void);

#pragma GCC visibility pop

#endif /* SLABKIT_PERCPU_H */
