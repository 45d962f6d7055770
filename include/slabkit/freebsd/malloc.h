/*
 * FreeBSD malloc(9) over slabkit (sys/sys/malloc.h, kern_malloc.c).
 *
 * The calls are named bsd_malloc(), bsd_free(), ... so they never collide
 * with libc.  Define SLABKIT_FREEBSD_NAMES before including this header and
 * the kernel's own spellings are available too: malloc(size, type, flags),
 * free(addr, type), realloc(addr, size, type, flags), ...  Those are
 * function-like macros with the kernel's arity, so a file that also wants
 * libc's one-argument malloc cannot define SLABKIT_FREEBSD_NAMES.
 */
#ifndef SLABKIT_FREEBSD_MALLOC_H
#define SLABKIT_FREEBSD_MALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <slabkit/slabkit.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags (values as in FreeBSD).  Exactly one of M_NOWAIT and M_WAITOK. */
#define M_NOWAIT      0x0001
#define M_WAITOK      0x0002
#define M_NORECLAIM   0x0080
#define M_ZERO        0x0100
#define M_NOVM        0x0200
#define M_USE_RESERVE 0x0400
#define M_NODUMP      0x0800  /* whole pages, left out of core dumps (MADV_DONTDUMP) */
#define M_FIRSTFIT    0x1000
#define M_BESTFIT     0x2000
#define M_EXEC        0x4000  /* whole pages, executable (PROT_EXEC); refused if the system forbids it */
#define M_NEXTFIT     0x8000

#define M_VERSION 2030211

/* A malloc type.  Statistics are per CPU and live in slabkit; ks_handle
 * points at them once the type has been used. */
struct malloc_type {
	struct malloc_type *ks_next;  /* slabkit's list of registered types */
	unsigned long ks_version;     /* M_VERSION */
	const char *ks_shortdesc;     /* the name vmstat -m prints */
	void *ks_handle;              /* slabkit's per-CPU stats; NULL until used */
};

/* Registration happens when the program (or the shared object defining the
 * type) loads; unregistration, with the leak warning, when it unloads. */
void slabkit_malloc_type_register(struct malloc_type *type);
void slabkit_malloc_type_unregister(struct malloc_type *type);

#define MALLOC_DECLARE(type) extern struct malloc_type type[1]

#define MALLOC_DEFINE(type, shortdesc, longdesc)                                    \
	struct malloc_type type[1] = { { NULL, M_VERSION, shortdesc, NULL } };      \
	__attribute__((constructor)) static void slabkit_mtreg_##type(void)          \
	{                                                                           \
		slabkit_malloc_type_register(type);                                 \
	}                                                                           \
	__attribute__((destructor)) static void slabkit_mtunreg_##type(void)         \
	{                                                                           \
		slabkit_malloc_type_unregister(type);                               \
	}

/* Statistics of one type, summed over CPUs. */
struct malloc_type_stats_sum {
	uint64_t allocs, frees;       /* mts_numallocs, mts_numfrees */
	uint64_t memalloced, memfreed;/* bytes (of the class sizes handed out) */
	uint64_t size_mask;           /* bit i: class i was used (bit 63: large) */
	uint64_t memhigh;             /* HighUse: highest memalloced - memfreed seen at reads */
};
void slabkit_malloc_type_stats(const struct malloc_type *type, struct malloc_type_stats_sum *out);

/* domainset(9) policies for bsd_malloc_domainset(). */
struct domainset;
const struct domainset *slabkit_domainset_rr(void);          /* round-robin over nodes */
const struct domainset *slabkit_domainset_ft(void);          /* first touch: this CPU's node */
const struct domainset *slabkit_domainset_prefer(int domain);/* that node first, others after */
const struct domainset *slabkit_domainset_fixed(int domain); /* that node only */
#define DOMAINSET_RR()       slabkit_domainset_rr()
#define DOMAINSET_FT()       slabkit_domainset_ft()
#define DOMAINSET_PREF(d)    slabkit_domainset_prefer(d)
#define DOMAINSET_FIXED(d)   slabkit_domainset_fixed(d)

void *bsd_malloc(size_t size, struct malloc_type *type, int flags) __attribute__((malloc, alloc_size(1)));
void *bsd_mallocarray(size_t nmemb, size_t size, struct malloc_type *type, int flags)
	__attribute__((malloc, alloc_size(1, 2)));
void *bsd_malloc_domainset(size_t size, struct malloc_type *type, const struct domainset *ds,
			   int flags) __attribute__((malloc, alloc_size(1)));
void bsd_free(void *addr, struct malloc_type *type);
void bsd_zfree(void *addr, struct malloc_type *type);
void *bsd_realloc(void *addr, size_t size, struct malloc_type *type, int flags) __attribute__((alloc_size(2)));
void *bsd_reallocf(void *addr, size_t size, struct malloc_type *type, int flags) __attribute__((alloc_size(2)));
size_t bsd_malloc_usable_size(const void *addr);

/* Aligned blocks (FreeBSD 13+): align is a power of two up to PAGE_SIZE.
 * Free with bsd_free. */
void *bsd_malloc_aligned(size_t size, size_t align, struct malloc_type *type, int flags)
	__attribute__((malloc, alloc_size(1)));
void *bsd_malloc_domainset_aligned(size_t size, size_t align, struct malloc_type *type,
				   const struct domainset *ds, int flags) __attribute__((malloc, alloc_size(1)));

/* contigmalloc(9): whole pages, virtually contiguous, aligned to alignment
 * (a power of two) and not crossing a multiple of boundary (0: none).
 * User space has no physical addresses: physical contiguity means nothing
 * here and low/high are not looked at.  Free with bsd_contigfree (size as
 * allocated) or bsd_free. */
void *bsd_contigmalloc(unsigned long size, struct malloc_type *type, int flags, uint64_t low,
		       uint64_t high, unsigned long alignment, uint64_t boundary) __attribute__((malloc));
void bsd_contigfree(void *addr, unsigned long size, struct malloc_type *type);

#ifdef SLABKIT_FREEBSD_NAMES
#define malloc(size, type, flags)              bsd_malloc((size), (type), (flags))
#define mallocarray(n, size, type, flags)      bsd_mallocarray((n), (size), (type), (flags))
#define malloc_domainset(size, type, ds, flags) bsd_malloc_domainset((size), (type), (ds), (flags))
#define free(addr, type)                       bsd_free((addr), (type))
#define zfree(addr, type)                      bsd_zfree((addr), (type))
#define realloc(addr, size, type, flags)       bsd_realloc((addr), (size), (type), (flags))
#define reallocf(addr, size, type, flags)      bsd_reallocf((addr), (size), (type), (flags))
#define malloc_usable_size(addr)               bsd_malloc_usable_size(addr)
#define malloc_aligned(size, align, type, flags) bsd_malloc_aligned((size), (align), (type), (flags))
#define malloc_domainset_aligned(size, align, type, ds, flags) \
	bsd_malloc_domainset_aligned((size), (align), (type), (ds), (flags))
#define contigmalloc(size, type, flags, low, high, alignment, boundary) \
	bsd_contigmalloc((size), (type), (flags), (low), (high), (alignment), (boundary))
#define contigfree(addr, size, type)           bsd_contigfree((addr), (size), (type))
#endif

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_FREEBSD_MALLOC_H */
