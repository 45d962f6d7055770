/*
 * What the files of the conformance suite share: the public headers, the
 * test helpers, the malloc types, a few small tools, and the groups each
 * file contributes (conformance.c runs them).
 *
 * Only public headers here: the suite is the contract every backend meets.
 */
#ifndef SLABKIT_CONFORMANCE_H
#define SLABKIT_CONFORMANCE_H

#include <limits.h>
#include <stdatomic.h>

#include <slabkit/freebsd/malloc.h>
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#include "sk_test.h"

#define PAGE 4096u

/* Absurd sizes go through volatiles so the compiler neither warns about
 * nor reasons from them. */
extern volatile size_t v_size_max;  /* SIZE_MAX */
extern volatile size_t v_half_plus; /* SIZE_MAX / 2 + 1 */

/* Two malloc(9) types defined with MALLOC_DEFINE (registered at load). */
MALLOC_DECLARE(M_TEST);  /* "test" */
MALLOC_DECLARE(M_TEST2); /* "test2" */

/* The Linux kmalloc class that holds n bytes (n <= 8192). */
size_t kmalloc_class_of(size_t n);
/* The malloc(9) class index that holds n bytes; 63 (the large bit) above 64 KiB. */
int bsd_class_index(size_t n);
struct slabkit_stats stats_now(void);
struct malloc_type_stats_sum type_stats(const struct malloc_type *t);

/* A cmocka group; each runs between slabkit_init(NULL) and slabkit_fini(). */
struct conformance_group {
	const char *name;
	const struct CMUnitTest *tests;
	size_t count;
};

extern const struct conformance_group conformance_kmalloc;    /* conformance_linux.c */
extern const struct conformance_group conformance_kmem_cache; /* conformance_linux.c */
extern const struct conformance_group conformance_malloc9;    /* conformance_freebsd.c */
extern const struct conformance_group conformance_uma;        /* conformance_freebsd.c */
extern const struct conformance_group conformance_misuse;     /* conformance_misuse.c */
extern const struct conformance_group conformance_threads;    /* conformance_threads.c */
extern const struct conformance_group conformance_linux_extra; /* conformance_linux_extra.c */
extern const struct conformance_group conformance_pages;       /* conformance_pages.c */
extern const struct conformance_group conformance_freebsd_extra; /* conformance_freebsd_extra.c */
extern const struct conformance_group conformance_robust;     /* conformance_robust.c */
extern const struct conformance_group conformance_fork;       /* conformance_fork.c */
extern const struct conformance_group conformance_uma_extra;   /* conformance_uma_extra.c */
extern const struct conformance_group conformance_rcu;        /* conformance_rcu.c */

#endif
