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
 *    preempted, migrated or signalled before its single commit instruction.
 *    The commit is one 16-byte store that writes the new list head (or
 *    count) together with the updated allocs/frees counter, so statistics
 *    stay exact without a second instruction.
 *  - "lock" mode (anything else, valgrind, TSan): the slot of sched_getcpu()
 *    is taken with a test-and-set lock for the few instructions of the op.
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
 *   allocs, top, frees: fast-path commits on the slot's CPU, or the lock holder.
 *   tag, entries, limit, bk, extra area: the lock holder only.
 *   bytes_requested: sk_pcpu_add() (rseq add, or an atomic add in lock mode).
 *   lock: CAS to take, release store to drop.
 */
#ifndef SLABKIT_PERCPU_H
#define SLABKIT_PERCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_compiler.h"

struct sk_cache;

enum sk_pcpu_kind {
	SK_PCPU_NONE = 0,  /* no per-CPU layer (SLOB): every call goes to the backend */
	SK_PCPU_LIST,      /* top is the first free object; next pointer at cache->free_offset */
	SK_PCPU_ARRAY,     /* top counts entries[0 .. top-1]; limit bounds it */
};

struct sk_pcpu_slot {
	uint64_t allocs;          /* +0  allocations served by this slot's fast path */
	uintptr_t top;            /* +8  LIST: first free object (0: empty); ARRAY: count */
	uint64_t frees;           /* +16 frees absorbed by this slot's fast path */
	uintptr_t tag;            /* +24 a freed object enters only if its tag equals this */
	void **entries;           /* +32 ARRAY: the stack */
	uint32_t limit;           /* +40 ARRAY: capacity (0: accept no free) */
	uint32_t lock;            /* +44 0: free */
	uint64_t bytes_requested; /* +48 sum of sizes asked for (kmalloc, malloc(9)) */
	uintptr_t bk;             /* +56 one word for the backend */
	/* The backend's extra per-CPU area (cache->pcpu_extra bytes) follows. */
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct sk_pcpu_slot) == 64, "slot header is one cache line");

/* Chosen once at init: true when the fast paths are restartable sequences. */
extern bool sk_pcpu_use_rseq;
/* Number of slots per cache: every CPU id the kernel can report is below it. */
extern unsigned sk_pcpu_nr;

/* Set the mode up ("auto", "rseq", "lock"); 0 or -errno with a message. */
int sk_pcpu_init(const char *mode);
const char *sk_pcpu_mode_name(void);

/* The CPU the caller runs on now (it may migrate right after). */
unsigned sk_pcpu_current_cpu(void);

/* Allocate and zero the slots of a cache (core calls it at cache creation). */
int sk_pcpu_create(struct sk_cache *c);
void sk_pcpu_destroy(struct sk_cache *c);

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

void sk_pcpu_unlock(struct sk_pcpu_slot *slot);

/* Sum of the counters over all slots (racy reads of exact counters). */
struct sk_pcpu_sums {
	uint64_t allocs, frees, bytes_requested;
};
void sk_pcpu_sum(const struct sk_cache *c, struct sk_pcpu_sums *out);

#endif /* SLABKIT_PERCPU_H */
