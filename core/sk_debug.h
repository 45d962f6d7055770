/*
 * The debug layer: red zones, poisoning, exact double and invalid free
 * detection, validation, failure injection.  Once, in core, for every
 * backend (docs/debug.md).
 *
 * A cache with any debug letter runs with its fast path off (c->fast is
 * SK_FAST_NONE), so every allocation and free reaches core's slow paths,
 * which hand them to this layer.  Core lays the debug object out and asks
 * the backend for a bigger stride; the backend never sees a red zone:
 *
 *   base (what the backend hands out)
 *   | left red zone | object (object_size) | right red zone, to the stride |
 *                   ^ user pointer = base + rz_left
 *
 * Object states and who owns the bytes:
 *   live        the user's object; its red zones read 0xcc; the bytes from
 *               the size asked for (kmalloc) to object_size read 0xcc too.
 *   quarantined freed by the user, held by core: red zones 0xbb, and with
 *               P the object is 0x6b ... 0xa5.  Checked when it leaves the
 *               quarantine (then goes to the backend) and on validation.
 *   in backend  free in the backend, whose own metadata may live in it
 *               (SLUB's free pointer, SLOB's block header): core does not
 *               check it; the backend's validate op does.
 *
 * Live objects are known exactly, from a table of user pointers (with the
 * size asked for), so a double free, a free of a pointer never handed out
 * or of an interior pointer is caught whatever the backend.
 *
 * Lock order: a cache's debug lock is a leaf: it is never held while
 * calling the backend or a user hook.
 */
#ifndef SLABKIT_DEBUG_H
#define SLABKIT_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_cache.h"
#include "../common/sk_compiler.h"
#include "../numa/sk_numa.h"

#pragma GCC visibility push(hidden)

/* The debug letters, as SK_CACHE_* flags (sk_cache.h spells them). */
#define SK_CACHE_DEBUG_MASK                                                                      \
	(SK_CACHE_CONSISTENCY | SK_CACHE_RED_ZONE | SK_CACHE_POISON | SK_CACHE_STORE_USER |      \
	 SK_CACHE_TRACE | SK_CACHE_FAILSLAB | SK_CACHE_SANITIZE | \
	 SK_CACHE_GUARD)

/* The letters that put a cache on the debug path.  U alone is allocation
 * tracking (sk_track.h), which has a slow path of its own; with other
 * letters the debug layer's reports name the allocating call site. */
#define SK_CACHE_DEBUG_ACTIVE                                                                    \
	(SK_CACHE_CONSISTENCY | SK_CACHE_RED_ZONE | SK_CACHE_POISON | SK_CACHE_TRACE | SK_CACHE_FAILSLAB | \
	 SK_CACHE_SANITIZE | SK_CACHE_GUARD)

/* Parse SLABKIT_DEBUG / slabkit_config.debug once at init: 0 or -EINVAL
 * (reported).  Blocks "LETTERS[,cache,...]" separated by ';'. */
int sk_debug_configure(const char *spec, bool abort_on_error);
/* Parse SLABKIT_FAIL_ALLOC / slabkit_config.fail_alloc: 0 or -EINVAL. */
int sk_fail_configure(const char *spec);
void sk_debug_reset(void);

/* The debug letters SLABKIT_DEBUG gives a cache of this name, added to the
 * creator's flags. */
uint32_t sk_debug_flags_for(const char *name, uint32_t flags);

/* Cache creation: lay the debug object out (c->flags has the letters) and
 * return the object size the backend must lay out; then, after the
 * backend's cache_create, attach the state.  0 or -ENOMEM. */
size_t sk_debug_stride_request(struct sk_cache *c);
int sk_debug_attach(struct sk_cache *c);
void sk_debug_detach(struct sk_cache *c);

/* The user pointer of a backend object and back. */
static inline void *sk_debug_user(const struct sk_cache *c, void *base);
static inline void *sk_debug_base(const struct sk_cache *c, void *user);

/* Slow paths of a debug cache (core/cache.c calls them). */
void *sk_debug_alloc(struct sk_cache *c, int node, unsigned flags);
/* false: reported and dropped (not counted as a free). */
bool sk_debug_free(struct sk_cache *c, void *obj, struct sk_page *pg);
/* Is obj a live object of c?  (UMA checks before its dtor.)  Reports if not. */
bool sk_debug_check_live(struct sk_cache *c, const void *obj);
/* Give every quarantined object back to the backend (shrink, destroy). */
void sk_debug_flush(struct sk_cache *c);
/* Report the live objects of a cache being destroyed with objects in use. */
void sk_debug_report_leaks(struct sk_cache *c);

/* kmalloc: the size asked for, and its red zone ([size, object_size) 0xcc). */
void sk_debug_set_size(struct sk_cache *c, void *obj, size_t size);
/* The size asked for of a live object; 0 if obj is not one (not reported). */
size_t sk_debug_size(struct sk_cache *c, const void *obj);
/* krealloc in place: new size, red zone moved, grown bytes zeroed if asked. */
void sk_debug_resize(struct sk_cache *c, void *obj, size_t new_size, bool zero);

/* Failure injection for an allocation of cache c (NULL: a malloc(9) or
 * page-path request) of malloc type `type_name` (or NULL), with SK_ALLOC_*
 * flags.  True: fail it. */
extern bool sk_fail_on;
/* Set (per thread) when injection made the last request fail, so that the
 * front end's retry loop (sk_wait_for_memory) gives up at once. */
extern __thread bool sk_fail_injected;
bool sk_fail_should(const struct sk_cache *c, const char *type_name, unsigned flags);
/* SK_CACHE_FAILSLAB if injection targets a cache of this name (cache=, or
 * every cache when neither cache= nor type= nor an A letter narrows it). */
uint32_t sk_fail_flags_for(const char *name);

/* slabkit_validate: the entries of every per-CPU slot of c (core/validate.c);
 * bad ones are reported and dropped.  Returns the errors. */
uint64_t sk_validate_slots(struct sk_cache *c);

/* INVARIANTS: the malloc(9) type freeing an object right now (free(9)
 * sets it around its cache free), written into the trashed item. */
extern __thread const void *sk_debug_free_type;
/* The name of a registered malloc(9) type, or NULL (core/bsd_malloc.c). */
const char *sk_bsd_type_name(const void *type);

/* Count of error reports since init (slabkit_debug_errors). */
uint64_t sk_debug_error_count(void);

/* --- inline helpers --- */

/* The head of struct sk_debug: read without its lock (written before the
 * cache is published). */
struct sk_debug_layout {
	uint32_t rz_left;   /* bytes before the object (0 without Z) */
	uint32_t stride;    /* what the backend was asked for */
};

static inline const struct sk_debug_layout *sk_debug_layout_of(const struct sk_cache *c)
{
	return (const struct sk_debug_layout *)(const void *)c->debug;
}

static inline void *sk_debug_user(const struct sk_cache *c, void *base)
{
	return (char *)base + sk_debug_layout_of(c)->rz_left;
}

static inline void *sk_debug_base(const struct sk_cache *c, void *user)
{
	return (char *)user - sk_debug_layout_of(c)->rz_left;
}

#pragma GCC visibility pop

#endif /* SLABKIT_DEBUG_H */
