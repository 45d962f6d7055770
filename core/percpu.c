/*
 * The per-CPU layer: mode selection, slot allocation, slow-path locking and
 * the lock-mode fast paths.  The rseq fast paths are inline in
 * sk_fastpath.h; sk_percpu.h has the protocol and the argument for it.
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
long sk_rseq_offset;

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

unsigned sk_pcpu_current_cpu(void)
{
	int cpu;

	if (sk_pcpu_use_rseq)
		cpu = (int)sk_load((const uint32_t *)&rseq_area()->cpu_id);
	else
		cpu = sched_getcpu();
	if (cpu < 0)
		cpu = 0;
	return (unsigned)cpu < sk_pcpu_nr ? (unsigned)cpu : (unsigned)cpu % sk_pcpu_nr;
}

int sk_pcpu_create(struct sk_cache *c)
{
	size_t stride = sizeof(struct sk_pcpu_slot) + SK_ALIGN_UP((size_t)c->pcpu_extra, 64);
	char *base = sk_meta_zalloc(stride * sk_pcpu_nr);

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
	sk_meta_free(c->pcpu_base, (size_t)c->pcpu_stride * sk_pcpu_nr);
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
 * happens-before edges it creates. */
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
	sk_misuse("per-CPU drain: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) fails (%s); "
		  "cannot drain CPU %u safely", strerror(errno), cpu);
	abort();
}

struct sk_pcpu_slot *sk_pcpu_lock_cpu(struct sk_cache *c, unsigned cpu)
{
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);

	while (!slot_trylock(slot))
		sched_yield(); /* the holder may be preempted: never spin hard */
	if (sk_pcpu_use_rseq && sk_pcpu_current_cpu() != cpu)
		fence_cpu(cpu);
	return slot;
}

void sk_pcpu_unlock(struct sk_pcpu_slot *slot)
{
	__atomic_store_n(&slot->lock, 0, __ATOMIC_RELEASE);
}

void sk_pcpu_sum(const struct sk_cache *c, struct sk_pcpu_sums *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->pcpu_base)
		return;
	for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
		struct sk_pcpu_slot *s = sk_pcpu_slot(c, cpu);
		out->allocs += sk_load(&s->allocs);
		out->frees += sk_load(&s->frees);
		out->bytes_requested += sk_load(&s->bytes_requested);
	}
}

/* --- lock mode: the fast paths in C under the slot lock --- */

static inline void **list_next(struct sk_cache *c, void *obj)
{
	return (void **)((char *)obj + c->free_offset);
}

void *sk_pcpu_pop_locked(struct sk_cache *c)
{
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, sk_pcpu_current_cpu());
	void *obj = NULL;

	if (!slot_trylock(slot))
		return NULL;
	uintptr_t top = sk_load(&slot->top);
	if (c->pcpu_kind == SK_PCPU_LIST) {
		if (top) {
			obj = (void *)top;
			sk_store(&slot->top, (uint64_t)*list_next(c, obj));
		}
	} else if (top) {
		obj = slot->entries[top - 1];
		sk_store(&slot->top, top - 1);
	}
	if (obj)
		sk_store(&slot->allocs, slot->allocs + 1);
	sk_pcpu_unlock(slot);
	return obj;
}

bool sk_pcpu_push_locked(struct sk_cache *c, void *obj, uintptr_t tag)
{
	struct sk_pcpu_slot *slot = sk_pcpu_slot(c, sk_pcpu_current_cpu());
	bool done = false;

	if (!slot_trylock(slot))
		return false;
	if (slot->tag == tag) {
		uintptr_t top = sk_load(&slot->top);
		if (c->pcpu_kind == SK_PCPU_LIST) {
			*list_next(c, obj) = (void *)top;
			sk_store(&slot->top, (uint64_t)obj);
			done = true;
		} else if (top < slot->limit) {
			slot->entries[top] = obj;
			sk_store(&slot->top, top + 1);
			done = true;
		}
	}
	if (done)
		sk_store(&slot->frees, slot->frees + 1);
	sk_pcpu_unlock(slot);
	return done;
}

void sk_pcpu_add_locked(struct sk_cache *c, uint64_t n)
{
	ck_pr_add_64(&sk_pcpu_slot(c, sk_pcpu_current_cpu())->bytes_requested, n);
}
