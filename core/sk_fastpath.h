/*
 * The per-CPU fast paths: pop and push one object on the slot of the CPU
 * the caller runs on.  See sk_percpu.h for the protocol and why it is safe.
 *
 * rseq mode (x86-64): each op is one restartable sequence.  The critical
 * section runs from label 1 to label 2; the kernel moves the instruction
 * pointer to the abort handler (label 4, preceded by the signature glibc
 * registered) if the thread is preempted, migrated or signalled in
 * between.  Every sequence ends in exactly one commit instruction:
 *   pop, push: an 8-byte store of `top`, whose state and counts change
 *              together (layout in sk_percpu.h)
 *   add:       an add to bytes_slack
 * A count field about to overflow makes the sequence miss instead; core's
 * slow path folds the counts out (sk_pcpu_fold_if_full).  One store keeps
 * the dependency from one operation to the next a plain 8-byte store-to-load
 * forward: a 16-byte store whose upper half a later 8-byte load reads costs
 * about 0.5 ns an operation more here (measured).
 * Everything before the commit is loads and stores to memory nobody else
 * may look at (an object being freed, an entry above top), so a restart
 * simply runs the sequence again.
 *
 * lock mode: the same ops in C under the slot's test-and-set lock.
 *
 * The ARRAY pop and push here are core/sk_stack.h's pop and push on the
 * slot's entries, written out in assembly because the move and the count
 * must be inside one restartable sequence that commits once; the slow
 * paths use sk_stack.h's functions themselves (sk_pcpu_array_pop & co.).
 *
 * Why not librseq: its ready-made sequences (compare-and-store,
 * compare-and-add, a pointer load and offset) commit one field each, while
 * these commit the state and the operation counts in one packed word, check
 * the slot lock and a slab or node tag inside the same critical section,
 * and miss when a count field is full; writing them with librseq would mean
 * its raw macros around this same assembly.  It is also not packaged for
 * Debian 12, which CI installs from; glibc 2.35+ registers the rseq area,
 * and sk_rseq_offset is all these sequences need from it.
 */
#ifndef SLABKIT_FASTPATH_H
#define SLABKIT_FASTPATH_H

#include <stdbool.h>
#include <stdint.h>

#include <ck_pr.h>

#include "sk_cache.h"
#include "../common/sk_compiler.h"
#include "sk_percpu.h"
#include "../numa/sk_numa.h"
#include "sk_backend.h"

/* Internal: never exported from the shared library (and reached without
 * the GOT from inside it). */
#pragma GCC visibility push(hidden)

#if defined(__x86_64__) && !defined(SLABKIT_TSAN)
#define SK_HAVE_RSEQ_ASM 1
#else
#define SK_HAVE_RSEQ_ASM 0
#endif

/* glibc's __rseq_offset, copied once at init: the rseq area is %fs:offset. */
extern long sk_rseq_offset;

/*
 * Which fast path a cache runs, decided once when its slots are made: the
 * slot kind, the free tag and the per-CPU mode in one byte, so that the
 * fast paths test one field.
 */
enum sk_fast {
	SK_FAST_NONE = 0,          /* no per-CPU slots */
	SK_FAST_RSEQ_LIST_SLAB,    /* list slots, tag = slab descriptor (SLUB before sheaves) */
	SK_FAST_RSEQ_ARRAY_NODE,   /* SLAB, UMA: array slots, tag = node + 1 */
	SK_FAST_LOCKED,            /* lock mode, or any other combination */
	SK_FAST_TRACKED,           /* allocation tracking: every call takes the slow path (sk_track.h) */
};

/* The tag a freed object shows the fast path (see enum sk_free_tag). */
static sk_always_inline uintptr_t sk_free_tag_of(const struct sk_cache *c, const struct sk_page *pg)
{
	if (c->free_tag == SK_TAG_SLAB)
		return (uintptr_t)pg;
	if (c->free_tag == SK_TAG_NODE)
		return (uintptr_t)pg->node + 1;
	return 0;
}

/*
 * Per-CPU counters outside the caches' slots (malloc(9)'s per-type
 * statistics): CPU n's block of counters at base + n * SK_PCPU_COUNTERS_STRIDE.
 * Callers name one 8-byte counter by `base + offset in the block`, the
 * address of CPU 0's copy; the sequences add n * stride themselves.
 */
#define SK_PCPU_COUNTERS_STRIDE 256u
/* Bit 3 of a counter's address (see the counted fast paths): allocation
 * counters at 16-byte boundaries, free counters 8 bytes past them. */
#define SK_PCPU_ALLOC_PHASE 0
#define SK_PCPU_FREE_PHASE 8

/*
 * Always on: does obj, freed into a slab, pg any page descriptor of it, sit on
 * the object stride?  One load from pg (whose line the caller has read),
 * a subtraction, a multiply and a compare.  True for caches without the
 * stride (stride_magic 0).  An interior pointer fails it; core's slow path
 * then reports it (sk_cache_free_slow).
 */
static sk_always_inline bool sk_free_on_stride(const struct sk_cache *c, const struct sk_page *pg,
					       const void *obj)
{
	uint64_t off = (uint32_t)((uint32_t)(uintptr_t)obj - pg->obj_base);
	return off * c->stride_magic <= c->stride_magic - 1;
}

/* Lock-mode versions, out of line. */
void *sk_pcpu_pop_locked(struct sk_cache *c);
bool sk_pcpu_push_locked(struct sk_cache *c, void *obj, uintptr_t tag);
void sk_pcpu_add_locked(struct sk_cache *c, uint64_t n);

#if SK_HAVE_RSEQ_ASM

/*
 * struct rseq: cpu_id at +4, rseq_cs at +8.  RSEQ_SIG is x86's 0x53053053.
 * The sequence reads the cache's slot array through %[c] (pcpu_base at +0,
 * pcpu_stride at +8) and sk_rseq_offset RIP-relative, so that the fast path
 * needs few registers and its caller can stay a leaf.  The CPU id is not
 * bounds-checked: the slots cover every possible CPU (sk_numa_cpus()), and
 * the check cost 0.3 ns a pair here.
 */
#define SK_RSEQ_CS_BEGIN                                                      \
	".pushsection __rseq_cs, \"aw\"\n\t"                                  \
	".balign 32\n\t"                                                      \
	"3:\n\t"                                                              \
	".long 0x0, 0x0\n\t"                                                  \
	".quad 1f, (2f - 1f), 4f\n\t"                                         \
	".popsection\n\t"                                                     \
	"movq sk_rseq_offset(%%rip), %[rs]\n\t"                               \
	"leaq 3b(%%rip), %[cpu]\n\t"                                          \
	"movq %[cpu], %%fs:8(%[rs])\n\t"                                      \
	"1:\n\t"                                                              \
	"movl %%fs:4(%[rs]), %k[cpu]\n\t"                                     \
	"imull 8(%[c]), %k[cpu]\n\t"                                          \
	"addq (%[c]), %[cpu]\n\t"

#define SK_RSEQ_CS_END                                                        \
	"2:\n\t"                                                              \
	".pushsection __rseq_failure, \"ax\"\n\t"                             \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                          \
	".long 0x53053053\n\t"                                                \
	"4:\n\t"                                                              \
	"jmp %l[restart]\n\t"                                                 \
	".popsection\n\t"

_Static_assert(__builtin_offsetof(struct sk_cache, pcpu_base) == 0, "asm reads pcpu_base at +0");
_Static_assert(__builtin_offsetof(struct sk_cache, pcpu_stride) == 8, "asm reads pcpu_stride at +8");

/*
 * The four operations' bodies, each written once.  The plain sequences
 * commit straight after a body; the counted ones (malloc(9)'s per-type
 * counter, below) put SK_RSEQ_COUNT between body and commit.  In the list
 * bodies, `load_off` and `next` say where an object's free pointer is: the
 * plain sequences take free_offset in a register ([off]), the counted ones,
 * short of registers, load it into %rax first.
 */
#define SK_LIST_POP_BODY(load_off, next)                                      \
	"cmpl $0, 44(%[cpu])\n\t"           /* lock held: miss */             \
	"jne %l[miss]\n\t"                                                    \
	"movq 8(%[cpu]), %[w]\n\t"          /* w = top */                     \
	"movabsq $0xffffffffffff, %[tmp]\n\t"                                 \
	"movq %[w], %[obj]\n\t"             /* obj = its low 48 bits */       \
	"andq %[tmp], %[obj]\n\t"                                             \
	"jz %l[miss]\n\t"                   /* empty */                       \
	"xorq %[obj], %[w]\n\t"             /* keep the counts */             \
	"movabsq $0x100000000000000, %[tmp]\n\t"                              \
	"addq %[tmp], %[w]\n\t"             /* allocs + 1 (bits 56-63) */     \
	"jc %l[miss]\n\t"                   /* full: core folds */            \
	load_off                                                              \
	"addq " next ", %[w]\n\t"           /* new head: obj's next */

#define SK_LIST_PUSH_BODY(load_off, next)                                     \
	"cmpl $0, 44(%[cpu])\n\t"                                             \
	"jne %l[miss]\n\t"                                                    \
	"cmpq %[tag], 24(%[cpu])\n\t"       /* not this slot's slab */        \
	"jne %l[miss]\n\t"                                                    \
	"movq 8(%[cpu]), %[w]\n\t"                                            \
	"movq %[w], %[tmp]\n\t"             /* frees (bits 48-55) full: core folds */ \
	"shrq $48, %[tmp]\n\t"                                                \
	"cmpb $-1, %b[tmp]\n\t"                                               \
	"je %l[miss]\n\t"                                                     \
	"movabsq $0xffffffffffff, %[tmp]\n\t"                                 \
	"andq %[w], %[tmp]\n\t"             /* old head */                    \
	"cmpq %[tmp], %[obj]\n\t"           /* freeing the head: double free */ \
	"je %l[miss]\n\t"                                                     \
	load_off                                                              \
	"movq %[tmp], " next "\n\t"         /* obj->next = old head */        \
	"xorq %[tmp], %[w]\n\t"                                               \
	"addq %[obj], %[w]\n\t"             /* head = obj */                  \
	"movabsq $0x1000000000000, %[tmp]\n\t"                                \
	"addq %[tmp], %[w]\n\t"             /* frees + 1 */

#define SK_LIST_NEXT_IN_REG "(%[obj],%[off])"
#define SK_LIST_NEXT_IN_RAX "(%[obj],%%rax)"
#define SK_LIST_LOAD_OFF_RAX "movl %c[off](%[c]), %%eax\n\t" /* free_offset */

#define SK_ARRAY_POP_BODY                                                     \
	"cmpl $0, 44(%[cpu])\n\t"                                             \
	"jne %l[miss]\n\t"                                                    \
	"movq 8(%[cpu]), %[w]\n\t"                                            \
	"testl $0x80000000, %k[w]\n\t"      /* frees past half: core folds (see push) */ \
	"jnz %l[miss]\n\t"                                                    \
	"movzwl %w[w], %k[tmp]\n\t"         /* n = entries in use (bits 0-15) */ \
	"testl %k[tmp], %k[tmp]\n\t"                                          \
	"jz %l[miss]\n\t"                                                     \
	"movq 32(%[cpu]), %[obj]\n\t"       /* obj = entries[n - 1] */        \
	"movq -8(%[obj],%[tmp],8), %[obj]\n\t"                                \
	"decq %[w]\n\t"                                                       \
	"movabsq $0x100000000, %[tmp]\n\t"                                    \
	"addq %[tmp], %[w]\n\t"             /* allocs + 1 (bits 32-63) */     \
	"jc %l[miss]\n\t"                   /* full: core folds */

/* No check of the frees field (bits 16-31) in the push: pops keep it below
 * 0x8000, and at most `limit` (<= 32767) pushes can follow a pop. */
#define SK_ARRAY_PUSH_BODY                                                    \
	"cmpl $0, 44(%[cpu])\n\t"                                             \
	"jne %l[miss]\n\t"                                                    \
	"cmpq %[tag], 24(%[cpu])\n\t"       /* object of another node */      \
	"jne %l[miss]\n\t"                                                    \
	"movq 8(%[cpu]), %[w]\n\t"                                            \
	"movzwl %w[w], %k[n]\n\t"                                             \
	"cmpl 40(%[cpu]), %k[n]\n\t"        /* full: n >= limit */            \
	"jae %l[miss]\n\t"                                                    \
	"movq 32(%[cpu]), %[tmp]\n\t"                                         \
	"testl %k[n], %k[n]\n\t"                                              \
	"jz 5f\n\t"                                                           \
	"cmpq %[obj], -8(%[tmp],%[n],8)\n\t" /* freeing the top entry: double free */ \
	"je %l[miss]\n\t"                                                     \
	"5:\n\t"                                                              \
	"movq %[obj], (%[tmp],%[n],8)\n\t"  /* entries[n] = obj */            \
	"leaq 0x10001(%[w]), %[w]\n\t"      /* n + 1, frees + 1 */

static sk_always_inline void *sk_pcpu_list_pop_rseq(struct sk_cache *c)
{
	uintptr_t slot, w, obj, tmp, rs;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN
		 SK_LIST_POP_BODY("", SK_LIST_NEXT_IN_REG)
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [obj] "=&r"(obj), [tmp] "=&r"(tmp), [rs] "=&r"(rs)
		 : [c] "r"(c), [off] "r"((uintptr_t)c->free_offset)
		 : "memory", "cc"
		 : miss, restart);
	if (obj == 0) /* it left through `miss` if it was */
		__builtin_unreachable();
	return (void *)obj;
miss:
	return NULL;
}

static sk_always_inline bool sk_pcpu_list_push_rseq(struct sk_cache *c, void *obj, uintptr_t tag)
{
	uintptr_t slot, w, tmp, rs;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN
		 SK_LIST_PUSH_BODY("", SK_LIST_NEXT_IN_REG)
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [tmp] "=&r"(tmp), [rs] "=&r"(rs)
		 : [c] "r"(c), [off] "r"((uintptr_t)c->free_offset), [obj] "r"(obj), [tag] "r"(tag)
		 : "memory", "cc"
		 : miss, restart);
	return true;
miss:
	return false;
}

static sk_always_inline void *sk_pcpu_array_pop_rseq(struct sk_cache *c)
{
	uintptr_t slot, w, obj, tmp, rs;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN
		 SK_ARRAY_POP_BODY
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [obj] "=&r"(obj), [tmp] "=&r"(tmp), [rs] "=&r"(rs)
		 : [c] "r"(c)
		 : "memory", "cc"
		 : miss, restart);
	return (void *)obj;
miss:
	return NULL;
}

static sk_always_inline bool sk_pcpu_array_push_rseq(struct sk_cache *c, void *obj, uintptr_t tag)
{
	uintptr_t slot, w, n, tmp, rs;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN
		 SK_ARRAY_PUSH_BODY
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [n] "=&r"(n), [tmp] "=&r"(tmp), [rs] "=&r"(rs)
		 : [c] "r"(c), [obj] "r"(obj), [tag] "r"(tag)
		 : "memory", "cc"
		 : miss, restart);
	return true;
miss:
	return false;
}

static sk_always_inline void sk_pcpu_add_rseq(struct sk_cache *c, uint64_t n)
{
	uintptr_t slot, rs;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN
		 "addq %[n], 48(%[cpu])\n\t"         /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(slot), [rs] "=&r"(rs)
		 : [c] "r"(c), [n] "r"(n)
		 : "memory", "cc"
		 : miss, restart);
	return;
miss:
	/* A CPU id beyond the slots (hotplug beyond "possible"): count it anyway. */
	sk_pcpu_add_locked(c, n);
}

/* Add n to the counter `ctr0` (CPU 0's address) of this CPU: the add is
 * the commit. */
static sk_always_inline void sk_pcpu_counter_add_rseq(char *ctr0, uint64_t n)
{
	uintptr_t cpu, rs;
restart:
	asm volatile goto(".pushsection __rseq_cs, \"aw\"\n\t"
		 ".balign 32\n\t"
		 "3:\n\t"
		 ".long 0x0, 0x0\n\t"
		 ".quad 1f, (2f - 1f), 4f\n\t"
		 ".popsection\n\t"
		 "movq sk_rseq_offset(%%rip), %[rs]\n\t"
		 "leaq 3b(%%rip), %[cpu]\n\t"
		 "movq %[cpu], %%fs:8(%[rs])\n\t"
		 "1:\n\t"
		 "movl %%fs:4(%[rs]), %k[cpu]\n\t"
		 "imull %[stride], %k[cpu], %k[cpu]\n\t"
		 "addq %[n], (%[ctr0],%[cpu])\n\t"  /* commit */
		 SK_RSEQ_CS_END
		 : [cpu] "=&r"(cpu), [rs] "=&r"(rs)
		 : [ctr0] "r"(ctr0), [n] "r"(n), [stride] "i"(SK_PCPU_COUNTERS_STRIDE)
		 : "memory", "cc"
		 : restart);
}

/*
 * Counted fast paths (malloc(9)): a pop or push and one per-CPU counter
 * in ONE restartable sequence.  A sequence commits with one instruction,
 * so the counter is stored just before the commit, with stosq: the store
 * and the advance of %rdi past the counter are one instruction, so when
 * the kernel aborts the sequence, bit 3 of %rdi alone tells whether this
 * CPU's counter was already bumped.  A counter lives at an address whose
 * bit 3 is `phase` (0 or 8: allocation and free counters alternate in
 * 16-byte pairs); %rdi starts at `phase` and becomes the counter's
 * address in one instruction, so bit 3 flips exactly when the count is
 * done.  If it was, the extra count is taken back on the CPU the thread
 * then runs on (sk_pcpu_counter_uncount) and the operation retried:
 * per-CPU figures are summed by every reader, so the sums stay exact, and
 * no locked instruction runs.
 */
#define SK_RSEQ_CS_BEGIN_COUNTED                                              \
	".pushsection __rseq_cs, \"aw\"\n\t"                                  \
	".balign 32\n\t"                                                      \
	"3:\n\t"                                                              \
	".long 0x0, 0x0\n\t"                                                  \
	".quad 1f, (2f - 1f), 4f\n\t"                                         \
	".popsection\n\t"                                                     \
	"movl %[phase], %%edi\n\t"                                            \
	"movq sk_rseq_offset(%%rip), %%rax\n\t"                               \
	"leaq 3b(%%rip), %[cpu]\n\t"                                          \
	"movq %[cpu], %%fs:8(%%rax)\n\t"                                      \
	"1:\n\t"                                                              \
	"movl %%fs:4(%%rax), %k[cpu]\n\t"                                     \
	"imull %[stride], %k[cpu], %%eax\n\t"                                 \
	"leaq (%[ctr0],%%rax), %%rdi\n\t"  /* one step: bit 3 stays phase */  \
	"imull 8(%[c]), %k[cpu]\n\t"                                          \
	"addq (%[c]), %[cpu]\n\t"

/* Count: the last store before the commit (%rax is free after the CPU id;
 * the list sequences also use it for free_offset, to spare a register). */
#define SK_RSEQ_COUNT                                                         \
	"movq (%%rdi), %%rax\n\t"                                             \
	"incq %%rax\n\t"                                                      \
	"stosq\n\t"                       /* *rdi = rax, rdi += 8: bit 3 flips */ \

#define SK_RSEQ_CS_END_COUNTED                                                \
	"2:\n\t"                                                              \
	".pushsection __rseq_failure, \"ax\"\n\t"                             \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                          \
	".long 0x53053053\n\t"                                                \
	"4:\n\t"                                                              \
	"xorl %[phase], %%edi\n\t"                                            \
	"testl $8, %%edi\n\t"                                                 \
	"jnz %l[counted]\n\t"                                                 \
	"jmp %l[restart]\n\t"                                                 \
	".popsection\n\t"

#define SK_RSEQ_COUNTED_OUTPUTS [rs] "=&a"(rs), [wit] "=&D"(wit)
#define SK_RSEQ_COUNTED_INPUTS(ctr0)                                          \
	[ctr0] "r"(ctr0), [stride] "i"(SK_PCPU_COUNTERS_STRIDE), [phase] "i"(SK_PCPU_ALLOC_PHASE)
#define SK_RSEQ_COUNTED_INPUTS_FREE(ctr0)                                     \
	[ctr0] "r"(ctr0), [stride] "i"(SK_PCPU_COUNTERS_STRIDE), [phase] "i"(SK_PCPU_FREE_PHASE)

/* Take back the count an aborted sequence left in ctr0 (rare). */
static sk_cold __attribute__((unused)) void sk_pcpu_counter_uncount(char *ctr0)
{
	sk_pcpu_counter_add_rseq(ctr0, (uint64_t)-1);
}

static sk_always_inline void *sk_pcpu_list_pop_counted_rseq(struct sk_cache *c, char *ctr0)
{
	uintptr_t slot, w, obj, tmp, rs, wit;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN_COUNTED
		 SK_LIST_POP_BODY(SK_LIST_LOAD_OFF_RAX, SK_LIST_NEXT_IN_RAX)
		 SK_RSEQ_COUNT
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END_COUNTED
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [obj] "=&r"(obj), [tmp] "=&r"(tmp), SK_RSEQ_COUNTED_OUTPUTS
		 : [c] "r"(c), [off] "i"(offsetof(struct sk_cache, free_offset)), SK_RSEQ_COUNTED_INPUTS(ctr0)
		 : "memory", "cc"
		 : miss, restart, counted);
	if (obj == 0) /* it left through `miss` if it was */
		__builtin_unreachable();
	return (void *)obj;
counted:
	sk_pcpu_counter_uncount(ctr0);
	goto restart;
miss:
	return NULL;
}

static sk_always_inline bool sk_pcpu_list_push_counted_rseq(struct sk_cache *c, void *obj, uintptr_t tag,
							    char *ctr0)
{
	uintptr_t slot, w, tmp, rs, wit;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN_COUNTED
		 SK_LIST_PUSH_BODY(SK_LIST_LOAD_OFF_RAX, SK_LIST_NEXT_IN_RAX)
		 SK_RSEQ_COUNT
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END_COUNTED
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [tmp] "=&r"(tmp), SK_RSEQ_COUNTED_OUTPUTS
		 : [c] "r"(c), [off] "i"(offsetof(struct sk_cache, free_offset)), [obj] "r"(obj), [tag] "r"(tag),
		   SK_RSEQ_COUNTED_INPUTS_FREE(ctr0)
		 : "memory", "cc"
		 : miss, restart, counted);
	return true;
counted:
	sk_pcpu_counter_uncount(ctr0);
	goto restart;
miss:
	return false;
}

static sk_always_inline void *sk_pcpu_array_pop_counted_rseq(struct sk_cache *c, char *ctr0)
{
	uintptr_t slot, w, obj, tmp, rs, wit;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN_COUNTED
		 SK_ARRAY_POP_BODY
		 SK_RSEQ_COUNT
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END_COUNTED
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [obj] "=&r"(obj), [tmp] "=&r"(tmp), SK_RSEQ_COUNTED_OUTPUTS
		 : [c] "r"(c), SK_RSEQ_COUNTED_INPUTS(ctr0)
		 : "memory", "cc"
		 : miss, restart, counted);
	return (void *)obj;
counted:
	sk_pcpu_counter_uncount(ctr0);
	goto restart;
miss:
	return NULL;
}

static sk_always_inline bool sk_pcpu_array_push_counted_rseq(struct sk_cache *c, void *obj, uintptr_t tag,
							     char *ctr0)
{
	uintptr_t slot, w, n, tmp, rs, wit;
restart:
	asm volatile goto(SK_RSEQ_CS_BEGIN_COUNTED
		 SK_ARRAY_PUSH_BODY
		 SK_RSEQ_COUNT
		 "movq %[w], 8(%[cpu])\n\t"          /* commit */
		 SK_RSEQ_CS_END_COUNTED
		 : [cpu] "=&r"(slot), [w] "=&r"(w), [n] "=&r"(n), [tmp] "=&r"(tmp), SK_RSEQ_COUNTED_OUTPUTS
		 : [c] "r"(c), [obj] "r"(obj), [tag] "r"(tag), SK_RSEQ_COUNTED_INPUTS_FREE(ctr0)
		 : "memory", "cc"
		 : miss, restart, counted);
	return true;
counted:
	sk_pcpu_counter_uncount(ctr0);
	goto restart;
miss:
	return false;
}

#else /* !SK_HAVE_RSEQ_ASM */

static inline void *sk_pcpu_list_pop_rseq(struct sk_cache *c) { return sk_pcpu_pop_locked(c); }
static inline bool sk_pcpu_list_push_rseq(struct sk_cache *c, void *obj, uintptr_t tag)
{
	return sk_pcpu_push_locked(c, obj, tag);
}
static inline void *sk_pcpu_array_pop_rseq(struct sk_cache *c) { return sk_pcpu_pop_locked(c); }
static inline bool sk_pcpu_array_push_rseq(struct sk_cache *c, void *obj, uintptr_t tag)
{
	return sk_pcpu_push_locked(c, obj, tag);
}
static inline void sk_pcpu_add_rseq(struct sk_cache *c, uint64_t n) { sk_pcpu_add_locked(c, n); }
static inline void sk_pcpu_counter_add_rseq(char *ctr0, uint64_t n)
{
	ck_pr_add_64((uint64_t *)(void *)(ctr0 + (size_t)sk_pcpu_current_cpu() * SK_PCPU_COUNTERS_STRIDE), n);
}
/* Without the restartable sequences the counted fast paths always miss:
 * their callers' slow paths count under lock mode's rules. */
static inline void *sk_pcpu_list_pop_counted_rseq(struct sk_cache *c, char *ctr0)
{
	(void)c, (void)ctr0;
	return NULL;
}
static inline bool sk_pcpu_list_push_counted_rseq(struct sk_cache *c, void *obj, uintptr_t tag, char *ctr0)
{
	(void)c, (void)obj, (void)tag, (void)ctr0;
	return false;
}
static inline void *sk_pcpu_array_pop_counted_rseq(struct sk_cache *c, char *ctr0)
{
	(void)c, (void)ctr0;
	return NULL;
}
static inline bool sk_pcpu_array_push_counted_rseq(struct sk_cache *c, void *obj, uintptr_t tag, char *ctr0)
{
	(void)c, (void)obj, (void)tag, (void)ctr0;
	return false;
}

#endif /* SK_HAVE_RSEQ_ASM */

/* Pop one object from this CPU's slot; NULL on a miss (empty, locked,
 * counts full, no slots).  An if-chain, not a switch: the common case
 * stays a compare and a fall-through. */
static sk_always_inline void *sk_pcpu_pop(struct sk_cache *c)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_pop_rseq(c);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_pop_rseq(c);
	if (fast == SK_FAST_LOCKED)
		return sk_pcpu_pop_locked(c);
	return NULL;
}

/* Push obj, whose page head descriptor is pg, on this CPU's slot; false if
 * the slot refuses it (full, another slab or node, locked, counts full). */
static sk_always_inline bool sk_pcpu_push(struct sk_cache *c, void *obj, const struct sk_page *pg)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_push_rseq(c, obj, (uintptr_t)pg);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_push_rseq(c, obj, (uintptr_t)pg->node + 1);
	if (fast == SK_FAST_LOCKED)
		return sk_pcpu_push_locked(c, obj, sk_free_tag_of(c, pg));
	return false;
}

/* The restartable sequences only, for leaf entry points whose miss path
 * (a tail call) tries the lock-mode slot: keeping the locked call out of
 * the leaf keeps it free of register saves. */
static sk_always_inline void *sk_pcpu_pop_rseq(struct sk_cache *c)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_pop_rseq(c);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_pop_rseq(c);
	return NULL;
}

static sk_always_inline bool sk_pcpu_push_rseq(struct sk_cache *c, void *obj, const struct sk_page *pg)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_push_rseq(c, obj, (uintptr_t)pg);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_push_rseq(c, obj, (uintptr_t)pg->node + 1);
	return false;
}

/* The same for a free whose caller holds the object's own page descriptor
 * (any page of its slab: each names the cache and the node) rather than
 * its block's head: the head is loaded only for a list slot's slab tag. */
static sk_always_inline bool sk_pcpu_push_rseq_page(struct sk_cache *c, void *obj, const struct sk_page *raw)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_push_rseq(c, obj, (uintptr_t)(raw - raw->head_delta));
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_push_rseq(c, obj, (uintptr_t)raw->node + 1);
	return false;
}

/* Add one to a per-CPU counter (ctr0: CPU 0's copy): with no locked
 * instruction in rseq mode, an atomic add on the current CPU's line otherwise. */
static sk_always_inline void sk_pcpu_counter_inc(char *ctr0)
{
	if (sk_likely(sk_pcpu_use_rseq))
		sk_pcpu_counter_add_rseq(ctr0, 1);
	else
		ck_pr_inc_64((uint64_t *)(void *)(ctr0 + (size_t)sk_pcpu_current_cpu() * SK_PCPU_COUNTERS_STRIDE));
}

/* Pop one object from this CPU's slot and count it in ctr0 (CPU 0's
 * copy of a per-CPU counter) in the same restartable sequence; NULL (and
 * nothing counted) on a miss, and always in lock mode. */
static sk_always_inline void *sk_pcpu_pop_counted_rseq(struct sk_cache *c, char *ctr0)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_pop_counted_rseq(c, ctr0);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_pop_counted_rseq(c, ctr0);
	return NULL;
}

/* sk_pcpu_push_rseq_page, counting the free in ctr0 in the same sequence. */
static sk_always_inline bool sk_pcpu_push_counted_rseq_page(struct sk_cache *c, void *obj,
							    const struct sk_page *raw, char *ctr0)
{
	unsigned fast = c->fast;

	if (sk_likely(fast == SK_FAST_RSEQ_LIST_SLAB))
		return sk_pcpu_list_push_counted_rseq(c, obj, (uintptr_t)(raw - raw->head_delta), ctr0);
	if (sk_likely(fast == SK_FAST_RSEQ_ARRAY_NODE))
		return sk_pcpu_array_push_counted_rseq(c, obj, (uintptr_t)raw->node + 1, ctr0);
	return false;
}

/* Add n to this CPU's bytes_slack. */
static sk_always_inline void sk_pcpu_add_slack(struct sk_cache *c, uint64_t n)
{
	if (sk_likely(sk_pcpu_use_rseq))
		sk_pcpu_add_rseq(c, n);
	else
		sk_pcpu_add_locked(c, n);
}

/* Count what the caller of a size class asked for: the slack below the
 * class size (a request of exactly a class size adds nothing), kmalloc's
 * and libc's alike; a backend without per-CPU slots (SLOB) adds it to the
 * cache's shared counter. */
static sk_always_inline void sk_count_requested(struct sk_cache *c, size_t size)
{
	size_t slack = c->object_size - size;

	if (sk_likely(slack == 0))
		return;
	if (sk_likely(c->pcpu_base != NULL))
		sk_pcpu_add_slack(c, slack);
	else
		ck_pr_add_64(&c->ctr.slow_bytes_slack, slack);
}

#pragma GCC visibility pop

#endif /* SLABKIT_FASTPATH_H */
