/*
 * Guard-page mode (core/guard.c): objects on pages of their own with an
 * inaccessible page after them, inaccessible again once freed.  Chosen at
 * init by SLABKIT_GUARD; a guarded cache runs the debug layer's slow path,
 * which calls these.
 */
#ifndef SLABKIT_GUARD_H
#define SLABKIT_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "sk_cache.h"

#pragma GCC visibility push(hidden)

/* Some cache may be guarded (set at init, read-only afterwards). */
extern bool sk_guard_on;

/* SLABKIT_GUARD: "name,prefix*,sample=N".  0 or -EINVAL (reported). */
int sk_guard_configure(const char *spec);
/* How a cache's allocations are chosen for guard pages (a mask). */
#define SK_GUARD_ALL 0x1u    /* named: every allocation */
#define SK_GUARD_SAMPLE 0x2u /* sample=N: every Nth allocation of any cache */
#define SK_GUARD_TYPES 0x4u  /* a malloc-N class: the allocations of a named type= */
/* The mask for a cache of this name and flags (0: not guarded). */
unsigned sk_guard_mode_for(const char *name, uint32_t flags);
/* SK_CACHE_GUARD when a cache of this name (and flags) is guarded. */
uint32_t sk_guard_flags_for(const char *name, uint32_t flags);
/* Does this allocation of a guarded cache (its mode) get guard pages? */
bool sk_guard_pick(const struct sk_cache *c, unsigned mode);
/* The malloc(9) type (const struct malloc_type *) allocating from a
 * malloc-N class right now: set by malloc(9) around its class allocation,
 * read by sk_guard_pick for SK_GUARD_TYPES. */
extern __thread const void *sk_guard_alloc_type;
/* A guarded object of c (constructed), or NULL. */
void *sk_guard_alloc(struct sk_cache *c, int node, unsigned flags);
/* The program freed it: its pages become inaccessible, and go back to the
 * provider only after GUARD_FIFO more guarded frees. */
void sk_guard_free(struct sk_cache *c, void *obj);
/* Is obj a guarded object freed recently (still inaccessible)? */
bool sk_guard_recently_freed(const void *obj);
/* Give back the kept pages of c's freed objects (NULL: every cache's). */
void sk_guard_forget(struct sk_cache *c);
/* Forget everything (slabkit_fini, after every cache is gone). */
void sk_guard_reset(void);
/* Guarded allocations since init (tests, reports). */
uint64_t sk_guard_allocations(void);

#pragma GCC visibility pop

#endif /* SLABKIT_GUARD_H */
