/*
 * kmem_cache_create in every form the kernel has: the legacy five
 * arguments, struct kmem_cache_args (6.12+; the header's _Generic picks
 * the form from the third argument, as the kernel's does),
 * kmem_cache_create_usercopy, and the KMEM_CACHE macros, which all end in
 * __kmem_cache_create_args here.
 *
 * No lock of its own (sk_cache_create takes the registry lock).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <slabkit/linux/slab.h>

#include "sk_core.h"

/* Why the arguments cannot make a cache, or NULL.  Mirrors the kernel's
 * checks in __kmem_cache_create_args (usercopy windows are checked, then
 * have no further meaning: user space has no copy_to_user hardening). */
static const char *bad_args(unsigned int size, const struct kmem_cache_args *a, slab_flags_t flags,
			    char *why, size_t whylen)
{
	if (a->align > SK_PAGE_SIZE || (a->align & (a->align - 1))) {
		snprintf(why, whylen, "alignment %u is not a power of two <= %zu", a->align, SK_PAGE_SIZE);
		return why;
	}
	if ((!a->usersize && a->useroffset) || size < a->usersize || size - a->usersize < a->useroffset) {
		snprintf(why, whylen, "usercopy window [%u, +%u) does not fit in %u bytes", a->useroffset,
			 a->usersize, size);
		return why;
	}
	if (a->use_freeptr_offset &&
	    (a->freeptr_offset >= size || !(flags & SLAB_TYPESAFE_BY_RCU) ||
	     a->freeptr_offset % sizeof(void *))) {
		snprintf(why, whylen,
			 "freeptr_offset %u needs SLAB_TYPESAFE_BY_RCU and a pointer-aligned offset inside the object",
			 a->freeptr_offset);
		return why;
	}
	return NULL;
}

SK_EXPORT struct kmem_cache *__kmem_cache_create_args(const char *name, unsigned int object_size,
						      struct kmem_cache_args *args, slab_flags_t flags)
{
	static const struct kmem_cache_args defaults;
	struct sk_cache *c = NULL;
	char why[160];
	const char *bad;

	sk_ensure_init();
	if (!args)
		args = (struct kmem_cache_args *)&defaults;
	if (!name) {
		sk_errorf("slabkit: kmem_cache_create: a cache needs a name");
	} else if ((bad = bad_args(object_size, args, flags, why, sizeof(why)))) {
		sk_errorf("slabkit: kmem_cache_create(%s): %s", name, bad);
	} else {
		struct sk_cache_params p = {
			.name = name, .object_size = object_size, .align = args->align,
			.front = SK_FRONT_KMEM_CACHE, .ctor = args->ctor,
			.flags = ((flags & SLAB_HWCACHE_ALIGN) ? SK_CACHE_HWCACHE_ALIGN : 0) |
				 ((flags & SLAB_POISON) ? SK_CACHE_POISON : 0) |
				 ((flags & SLAB_RED_ZONE) ? SK_CACHE_RED_ZONE : 0) |
				 ((flags & SLAB_STORE_USER) ? SK_CACHE_STORE_USER : 0) |
				 ((flags & SLAB_CONSISTENCY_CHECKS) ? SK_CACHE_CONSISTENCY : 0) |
				 ((flags & SLAB_TRACE) ? SK_CACHE_TRACE : 0) |
				 ((flags & SLAB_PANIC) ? SK_CACHE_PANIC : 0) |
				 ((flags & SLAB_TYPESAFE_BY_RCU) ? SK_CACHE_TYPESAFE_BY_RCU : 0),
			.use_freeptr_offset = args->use_freeptr_offset,
			.freeptr_offset = args->freeptr_offset,
		};
		c = sk_cache_create(&p);
	}
	if (!c && (flags & SLAB_PANIC))
		sk_fatal("kmem_cache_create: cannot create cache %s (SLAB_PANIC)", name ? name : "(null)");
	return (struct kmem_cache *)c;
}

/* The legacy form; the header's kmem_cache_create macro reaches it for a
 * third argument that is not a pointer. */
SK_EXPORT struct kmem_cache *(kmem_cache_create)(const char *name, unsigned int size, unsigned int align,
						 slab_flags_t flags, void (*ctor)(void *))
{
	struct kmem_cache_args args = { .align = align, .ctor = ctor };
	return __kmem_cache_create_args(name, size, &args, flags);
}

SK_EXPORT struct kmem_cache *kmem_cache_create_usercopy(const char *name, unsigned int size,
							unsigned int align, slab_flags_t flags,
							unsigned int useroffset, unsigned int usersize,
							void (*ctor)(void *))
{
	struct kmem_cache_args args = {
		.align = align, .ctor = ctor, .useroffset = useroffset, .usersize = usersize,
	};
	return __kmem_cache_create_args(name, size, &args, flags);
}
