/*
 * SLUB's private interface, shared by the files of backends/slub/ only.
 *
 * The backend follows Linux mm/slub.c (6.8 - 6.17), with per-CPU sheaves in
 * front of it as Linux 6.18 has them: core's per-CPU slot is an array of
 * free objects of any slab of the cache (the sheaf), so that frees in any
 * order stay on the fast path.  Behind the sheaf everything is SLUB: the
 * free list lives inside free objects, slabs own their free lists, a CPU
 * slab with its CPU freelist refills the sheaf, full sheaves flush back to
 * the slabs (the CPU slab's freelist, or __slab_free), per-CPU and node
 * partial lists, empty slabs freed eagerly.  docs/slub.md has the why and
 * the figures.
 *
 *   slub_slab.c   the slab state machine: {freelist, counters} cmpxchg
 *                 transitions (freeze, unfreeze, __slab_free), node partial
 *                 lists, per-CPU partial lists, new and discarded slabs.
 *                 The correctness argument lives at its top.
 *   slub_alloc.c  ___slab_alloc: the slow path behind core's fast path.
 *   slub_cache.c  layout and slab order, shrink, destroy, reports,
 *                 tunables, and the exported ops table.
 *   slub_validate.c  slabkit_validate: the free lists inside free objects.
 *
 * Where SLUB keeps what (all in page descriptors and core's slots; SLUB
 * adds no per-object metadata):
 *
 *   slab head descriptor  struct slub_slab (its owner words): freelist,
 *                         counters, the partial list links
 *   core's slot           entries/top: the sheaf (objects of any slab)
 *                         tag: the slot's node + 1 (frees of that node enter)
 *   slot extra area       struct slub_cpu: the CPU slab and its CPU
 *                         freelist, the per-CPU partial list, the sheaf's
 *                         storage
 *   per cache             struct slub_cache (c->backend), one struct
 *                         slub_node per NUMA node inside it
 *
 * Lock order (the same in every file of the folder):
 *   core's slot lock (sk_pcpu_trylock_local / sk_pcpu_lock_cpu)
 *     -> slub_node.list_lock (one node's at a time)
 *       -> the page provider's node lock (inside sk_slab_pages_alloc/free)
 *   The slab cmpxchg takes no lock.  Nothing here waits for a slot lock
 *   while holding a list_lock: frees only try the local slot, and only
 *   when they hold no list_lock.
 */
#ifndef SLABKIT_SLUB_H
#define SLABKIT_SLUB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>

#include "../../common/sk_list.h"
#include "../../core/sk_backend.h"

#pragma GCC visibility push(hidden)

#define SLUB_MAX_ORDER 3                 /* slub_max_order */
#define SLUB_MAX_OBJS_PER_SLAB 32767u    /* MAX_OBJS_PER_PAGE (15-bit objects) */
#define SLUB_MIN_PARTIAL 5u              /* MIN_PARTIAL */
#define SLUB_MAX_PARTIAL 10u             /* MAX_PARTIAL */
#define SLUB_BARN_SHEAVES 10u            /* MAX_FULL_SHEAVES: a barn's default depth */
#define SLUB_BARN_SHEAVES_MAX 64u        /* the tunable's bound */

/*
 * The counters word of a slab (ss_counters).  Changed only together with the
 * freelist, by slub_cmpxchg_slab().
 *   inuse:   objects not on the slab's freelist: allocated ones, plus the
 *            CPU freelist while the slab is frozen.
 *   objects: objects the slab holds (fixed at creation).
 *   frozen:  1 while the slab is some CPU's active slab.  Only that CPU
 *            (its slot-lock holder) takes objects off the freelist then.
 */
union slub_counters {
	uint64_t word;
	struct {
		uint32_t inuse;
		uint16_t objects;
		uint8_t frozen;
		uint8_t unused;
	};
};
_Static_assert(sizeof(union slub_counters) == 8, "counters fit one word");

/* The per-CPU state, in each slot's extra area.
 * Synchronization: the slot lock (reports read active and nr_partial
 * racily: both written with sk_store). */
struct slub_cpu {
	struct sk_page *active;    /* the CPU slab (frozen), NULL: none */
	void *freelist;            /* its CPU freelist */
	struct sk_list *partial;   /* unfrozen slabs with free objects: a chain (sk_chain) of ss_link */
	uint32_t nr_partial;       /* slabs on it */
	uint32_t unused;
	void *sheaf[];             /* the slot's entries: slub_cache.sheaf_capacity of them */
};

/* One NUMA node's partial slabs. */
struct slub_node {
	/* Synchronization: guards the list, nr_partial and the ss_link of
	 * every slab on the list (and so whether a slab is on it). */
	pthread_mutex_t list_lock;
	struct sk_list partial;       /* the slabs' ss_link, most recently added first */
	/* Written under list_lock; read without it where a stale value is
	 * harmless (the min_partial test, reports). */
	uint64_t nr_partial;
	/* The barn (Linux 6.18's per-node store of full sheaves): free
	 * objects of this node that a CPU's full sheaf handed over and a
	 * CPU with an empty sheaf takes back, so that objects freed on one
	 * CPU and allocated on another (producer and consumer) move in
	 * half-sheaf batches and never go back through their slabs.  One
	 * pointer stack per node, allocated at the first put; sheaves move
	 * by copying half a sheaf of pointers, not by swapping sheaf
	 * storage, because a sheaf is core's slot array.  Synchronization:
	 * list_lock, as SLAB's shared array is under its node's list_lock
	 * (barn_count is read racily as a hint). */
	void **barn;
	uint32_t barn_count;
	uint32_t barn_room;               /* entries barn has room for (0: not allocated) */
	bool barn_touched;                /* an allocation took from it since the last trim */
} __attribute__((aligned(64)));

/* c->backend.  Layout fields are written by cache_create, read-only after. */
struct slub_cache {
	uint32_t order, objects;          /* preferred slab (Linux s->oo) */
	uint32_t min_order, min_objects;  /* fallback when that order fails (s->min) */
	/* Tunables.  Synchronization: ck_pr stores by slub_tune, loads anywhere. */
	uint32_t min_partial;             /* empty slabs kept per node before discarding */
	uint32_t cpu_partial;             /* objects per CPU partial list (sysfs cpu_partial) */
	uint32_t cpu_partial_slabs;       /* the list's limit in slabs, derived from cpu_partial */
	uint32_t nr_nodes;
	uint32_t sheaf_room;              /* entries each slot's extra area has room for */
	uint32_t sheaf_capacity;          /* a sheaf's limit, <= sheaf_room (0: no sheaf); tunable */
	uint32_t barn_sheaves;            /* full sheaves a node's barn holds (0: no barn); tunable */
	size_t meta_bytes;                /* what sk_meta_zalloc gave us */
	struct slub_node node[];          /* one per NUMA node */
};

static inline struct slub_cache *slub_of(const struct sk_cache *c)
{
	return (struct slub_cache *)c->backend;
}

static inline struct slub_node *slub_node_of(struct slub_cache *s, const struct sk_page *slab)
{
	return &s->node[slab->node < s->nr_nodes ? slab->node : 0];
}

/* Core's slots exist and run the sheaf (array) fast path. */
static inline bool slub_has_pcpu(const struct sk_cache *c)
{
	return c->pcpu_base != NULL && c->pcpu_kind == SK_PCPU_ARRAY;
}

static inline struct slub_cpu *slub_cpu_of(struct sk_pcpu_slot *slot)
{
	return (struct slub_cpu *)sk_pcpu_extra(slot);
}

/* --- the free pointer inside a free object --- */

static inline void *slub_get_next(const struct sk_cache *c, void *obj)
{
	return *(void **)((char *)obj + c->free_offset);
}

static inline void slub_set_next(const struct sk_cache *c, void *obj, void *next)
{
	*(void **)((char *)obj + c->free_offset) = next;
}

/*
 * A slab's head descriptor words (sk_page_words).  ss_link is on its node's
 * partial list (common/sk_list.h), or on no list: then it may sit on a
 * chain (sk_chain_*: a CPU's partial list, or slabs waiting to be
 * discarded) through its prev word, as Linux's SLUB keeps its per-CPU
 * partial slabs in the storage of the slab's list_head.  A chain never
 * touches the link's next word, so sk_list_linked(&ss_link) is the "on the
 * node partial list" test a freer makes under list_lock, while a CPU that
 * adopted the slab (under its slot lock alone) chains it.
 */
struct slub_slab {
	union {
		struct {
			uintptr_t ss_freelist; /* first free object of the slab (void *) */
			uintptr_t ss_counters; /* union slub_counters: {inuse, objects, frozen} */
		};
		uint64_t ss_pair[2];           /* both, for the 16-byte compare-and-swap */
	};
	struct sk_list ss_link;        /* node partial list, or unlinked (and maybe chained) */
} __attribute__((may_alias));

/* The words of a slab (const dropped: the words are the owner's to change,
 * whoever holds a const descriptor pointer). */
static inline struct slub_slab *slub_words(const struct sk_page *slab)
{
	return (struct slub_slab *)sk_page_words((struct sk_page *)slab);
}

static inline struct sk_list *slub_link(const struct sk_page *slab)
{
	return &slub_words(slab)->ss_link;
}

static inline struct sk_page *slub_slab_of(struct sk_list *link)
{
	return sk_page_of_words(link, offsetof(struct slub_slab, ss_link));
}

/* Chains of slabs (a CPU's partial list, slabs to discard). */
static inline void slub_chain_push(struct sk_list **top, struct sk_page *slab)
{
	sk_chain_push(top, slub_link(slab));
}

static inline struct sk_page *slub_chain_pop(struct sk_list **top)
{
	struct sk_list *l = sk_chain_take(top);
	return l ? slub_slab_of(l) : NULL;
}

/* --- atomic access to the slab's {freelist, counters} pair ---
 *
 * The pair is read as two acquire loads (a torn pair is harmless: the
 * cmpxchg that follows compares both words and fails) and changed by one
 * 16-byte compare-and-swap.  TSan builds use the compiler's 128-bit atomics
 * so the sanitizer sees every access as atomic; ck's builtin port has no
 * cas_64_2. */
#if defined(SLABKIT_TSAN) || !defined(CK_F_PR_CAS_64_2)
#define SLUB_ATOMIC_BUILTINS 1
#else
#define SLUB_ATOMIC_BUILTINS 0
#endif

static inline uintptr_t slub_load_word(const uintptr_t *p)
{
	return sk_load_acquire(p);
}

static inline void slub_store_word(uintptr_t *p, uintptr_t v)
{
	sk_store_release(p, v);
}

static inline void *slub_freelist(const struct sk_page *slab)
{
	return (void *)slub_load_word(&slub_words(slab)->ss_freelist);
}

static inline union slub_counters slub_counters(const struct sk_page *slab)
{
	union slub_counters ctr = { .word = slub_load_word(&slub_words(slab)->ss_counters) };
	return ctr;
}

/* Replace {freelist, counters} if they still are {old_fl, old_ctr}.
 * A full barrier: stores to objects made before it (free pointers) are
 * visible to whoever reads the new freelist. */
static inline bool slub_cmpxchg_slab(struct sk_page *slab, void *old_fl, uint64_t old_ctr,
				     void *new_fl, uint64_t new_ctr)
{
#if SLUB_ATOMIC_BUILTINS
	unsigned __int128 expect = (unsigned __int128)old_ctr << 64 | (uintptr_t)old_fl;
	unsigned __int128 desire = (unsigned __int128)new_ctr << 64 | (uintptr_t)new_fl;
	return __atomic_compare_exchange_n((unsigned __int128 *)(void *)slub_words(slab)->ss_pair, &expect,
					   desire, false, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE);
#else
	uint64_t expect[2] = { (uint64_t)(uintptr_t)old_fl, old_ctr };
	uint64_t desire[2] = { (uint64_t)(uintptr_t)new_fl, new_ctr };
	return ck_pr_cas_64_2(slub_words(slab)->ss_pair, expect, desire);
#endif
}

/* --- slub_slab.c: the slab state machine --- */

/* A new slab of c on `node` (SK_NODE_ANY: the page provider's choice),
 * every object constructed, all on the returned freelist; the slab is
 * published in no state yet (the caller sets ss_freelist, ss_counters).  NULL on failure. */
struct sk_page *slub_new_slab(struct sk_cache *c, int node, unsigned flags, void **freelist);
/* Give a slab with no object in use back to the page provider (it is on
 * no list and no chain). */
void slub_discard_slab(struct sk_cache *c, struct sk_page *slab);

/* Take a slab's whole freelist for the caller's CPU: every object counts
 * in use and the slab stays (or becomes) frozen while it gave something.
 * On a slab taken off a partial list this freezes it (partial slabs have
 * free objects, so never NULL); on the CPU's own frozen slab it takes the
 * remote frees, and returns NULL and unfreezes the slab (now full, on no
 * list) when there were none. */
void *slub_take_freelist(struct sk_page *slab);
/* The slot's active slab stops being active: its CPU freelist goes back to
 * it, it is unfrozen and put on its node's partial list, or left full.
 * Caller holds the slot lock.  Returns the slab when it is empty and may be
 * discarded: the caller calls slub_discard_slab after unlocking (UMA fini
 * is user code and runs under no lock). */
struct sk_page *slub_deactivate(struct sk_cache *c, struct sk_pcpu_slot *slot);
/* Pop one object from an unfrozen slab the caller took off a partial list
 * under list_lock, still holding it.  Puts the slab back at the head of the
 * list if it still has free objects. */
void *slub_pop_unfrozen_locked(struct sk_cache *c, struct slub_node *n, struct sk_page *slab);

/* Node partial list, under n->list_lock. */
void slub_add_partial(struct slub_node *n, struct sk_page *slab, bool tail);
void slub_remove_partial(struct slub_node *n, struct sk_page *slab);
static inline bool slub_on_node_partial(const struct sk_page *slab)
{
	/* Under list_lock; the link's next word changes only under it (a
	 * chain writes the prev word alone). */
	return sk_list_linked(slub_link(slab));
}
/* The first slab of n's partial list, or NULL (list_lock held). */
static inline struct sk_page *slub_first_partial(struct slub_node *n)
{
	struct sk_list *l = sk_list_first(&n->partial);
	return l ? slub_slab_of(l) : NULL;
}

/* May an empty slab be discarded now rather than kept on node n? */
bool slub_may_discard(const struct sk_cache *c, struct slub_node *n);

/* Per-CPU partial list: link a slab the caller owns in front, ignoring
 * the limit (caller holds the slot lock). */
static inline void slub_cpu_partial_link(struct sk_pcpu_slot *slot, struct sk_page *slab)
{
	struct slub_cpu *pc = slub_cpu_of(slot);

	slub_chain_push(&pc->partial, slab);
	sk_store(&pc->nr_partial, pc->nr_partial + 1);
}
/* Push a slab the caller owns, respecting the limit (caller holds the
 * slot lock).  Returns the list the slot had to give up because it was at
 * its limit (to be flushed after unlocking), or NULL. */
struct sk_list *slub_cpu_partial_push(struct sk_cache *c, struct sk_pcpu_slot *slot,
				      struct sk_page *slab);
/* Take a slot's whole per-CPU partial list (caller holds the slot lock). */
struct sk_list *slub_cpu_partial_detach(struct sk_pcpu_slot *slot);
/* Move a chain of detached per-CPU partial slabs to their node lists,
 * discarding empty ones the nodes do not need (__put_partials).  No lock
 * held. */
void slub_flush_partials(struct sk_cache *c, struct sk_list *chain);

/* __slab_free.  held: the caller's locked slot (its per-CPU partial list
 * then adopts a slab this free makes partial), or NULL.  With a slot held,
 * a slab to discard goes on the chain *discard for the caller to discard
 * after unlocking: fini is user code. */
void slub_slab_free(struct sk_cache *c, void *obj, struct sk_page *slab, struct sk_pcpu_slot *held,
		    struct sk_list **discard);
/* slub_discard_slab every slab of a chain. */
void slub_discard_list(struct sk_cache *c, struct sk_list *chain);
/* ops->free: into this CPU's sheaf (flushing half of a full one), else
 * __slab_free. */
void slub_free(struct sk_cache *c, void *obj, struct sk_page *slab);
/* Give the `count` oldest objects of a locked slot's sheaf back to their
 * slabs; slabs to discard go on *discard (see slub_slab_free). */
void slub_sheaf_flush(struct sk_cache *c, struct sk_pcpu_slot *slot, uint32_t count, struct sk_list **discard);
/* An empty sheaf of a locked slot takes up to `want` objects from its
 * node's barn; returns how many (0: the barn had none). */
uint32_t slub_barn_take(struct sk_cache *c, struct sk_pcpu_slot *slot, uint32_t want);
/* Give the objects of node n's barn back to their slabs; idle_only: only
 * if no allocation took from it since the last call (the trim).  No lock
 * held by the caller. */
void slub_barn_flush(struct sk_cache *c, struct slub_node *n, bool idle_only);
/* ops->pcpu_init: the slot's sheaf and node tag. */
void slub_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu);

/* --- slub_alloc.c --- */

void *slub_alloc(struct sk_cache *c, int node, unsigned flags);

/* --- slub_validate.c: ops->validate --- */

uint64_t slub_validate(struct sk_cache *c);

/* --- for tests: what the structures hold right now --- */

struct slub_inspect {
	uint32_t order, objects, min_order, min_objects;
	uint32_t min_partial, cpu_partial, cpu_partial_slabs;
	uint64_t cpu_slabs;                     /* active (frozen) slabs over all CPUs */
	uint64_t cpu_partial_held;              /* slabs on per-CPU partial lists */
	uint64_t cpu_free;                      /* objects in sheaves and on CPU freelists */
	uint64_t node_partial[SK_MAX_NODES];    /* slabs on each node's partial list */
	uint64_t node_empty[SK_MAX_NODES];      /* of those, slabs with nothing in use */
	uint64_t barn_free[SK_MAX_NODES];       /* objects in each node's barn */
};
/* Takes every slot lock and list lock in turn; not for hot paths. */
void slub_inspect(struct sk_cache *c, struct slub_inspect *out);

#pragma GCC visibility pop

#endif /* SLABKIT_SLUB_H */
