/*
 * FreeBSD UMA zones (sys/vm/uma.h) over slabkit.
 *
 * Semantics as uma(9): init/fini run once per item per slab lifetime,
 * ctor/dtor on every allocation and free; a failing ctor fails the
 * allocation; uma_zone_set_max() returns the effective limit, beyond which
 * M_NOWAIT allocations fail and M_WAITOK ones wait for a free.
 */
#ifndef SLABKIT_FREEBSD_UMA_H
#define SLABKIT_FREEBSD_UMA_H

#include <stddef.h>
#include <stdint.h>
#include <slabkit/freebsd/malloc.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uma_zone *uma_zone_t;

typedef int (*uma_ctor)(void *mem, int size, void *arg, int flags);
typedef void (*uma_dtor)(void *mem, int size, void *arg);
typedef int (*uma_init)(void *mem, int size, int flags);
typedef void (*uma_fini)(void *mem, int size);
typedef int (*uma_import)(void *arg, void **store, int count, int domain, int flags);
typedef void (*uma_release)(void *arg, void **store, int count);
/* A zone's page source (uma_zone_set_allocf/freef): allocf returns `size`
 * bytes (NULL on failure) and may set *pflag, which freef gets back;
 * `wait` is M_WAITOK or M_NOWAIT. */
typedef void *(*uma_alloc)(uma_zone_t zone, size_t size, int domain, uint8_t *pflag, int wait);
typedef void (*uma_free)(void *item, size_t size, uint8_t pflag);
typedef void (*uma_maxaction_t)(uma_zone_t zone, int pending);

/* Alignment masks: the alignment minus one. */
#define UMA_ALIGN_PTR    (sizeof(void *) - 1)
#define UMA_ALIGN_LONG   (sizeof(long) - 1)
#define UMA_ALIGN_INT    (sizeof(int) - 1)
#define UMA_ALIGN_SHORT  (sizeof(short) - 1)
#define UMA_ALIGN_CHAR   (sizeof(char) - 1)
#define UMA_ALIGN_CACHE  (0 - 1)   /* the cache line size slabkit detected */
#define UMA_ALIGNOF(type) (_Alignof(type) - 1)

/* Zone flags (values as in FreeBSD).  docs/api.md lists which each backend
 * honours; PCPU makes a per-CPU zone (below); the rest are accepted as
 * no-ops because they describe kernel memory (CONTIG, VM, NODUMP, NOKASAN,
 * MTXCLASS). */
#define UMA_ZONE_UNMANAGED   0x0001
#define UMA_ZONE_ZINIT       0x0002
#define UMA_ZONE_CONTIG      0x0004
#define UMA_ZONE_NOTOUCH     0x0008
#define UMA_ZONE_MALLOC      0x0010
#define UMA_ZONE_NOFREE      0x0020
#define UMA_ZONE_MTXCLASS    0x0040
#define UMA_ZONE_VM          0x0080
#define UMA_ZONE_NOTPAGE     0x0100
#define UMA_ZONE_SECONDARY   0x0200
#define UMA_ZONE_NOBUCKET    0x0400
#define UMA_ZONE_MAXBUCKET   0x0800
#define UMA_ZONE_CACHESPREAD 0x2000
#define UMA_ZONE_NODUMP      0x4000
#define UMA_ZONE_PCPU        0x8000
#define UMA_ZONE_FIRSTTOUCH  0x10000
#define UMA_ZONE_ROUNDROBIN  0x20000
#define UMA_ZONE_SMR         0x40000
#define UMA_ZONE_NOKASAN     0x80000

#define UMA_ANYDOMAIN (-1)

/* uma_reclaim() levels */
#define UMA_RECLAIM_DRAIN     1  /* release the bucket caches */
#define UMA_RECLAIM_DRAIN_CPU 2  /* and every CPU's cache */
#define UMA_RECLAIM_TRIM      3  /* down to the working-set estimate */

uma_zone_t uma_zcreate(const char *name, size_t size, uma_ctor ctor, uma_dtor dtor,
		       uma_init uminit, uma_fini fini, int align, uint32_t flags);
uma_zone_t uma_zsecond_create(const char *name, uma_ctor ctor, uma_dtor dtor, uma_init zinit,
			      uma_fini zfini, uma_zone_t primary);
uma_zone_t uma_zcache_create(const char *name, int size, uma_ctor ctor, uma_dtor dtor,
			     uma_init zinit, uma_fini zfini, uma_import zimport,
			     uma_release zrelease, void *arg, int flags);
void uma_zdestroy(uma_zone_t zone);

void *uma_zalloc_arg(uma_zone_t zone, void *arg, int flags);
void *uma_zalloc_domain(uma_zone_t zone, void *arg, int domain, int flags);
void uma_zfree_arg(uma_zone_t zone, void *item, void *arg);

static inline void *uma_zalloc(uma_zone_t zone, int flags)
{
	return uma_zalloc_arg(zone, NULL, flags);
}

static inline void uma_zfree(uma_zone_t zone, void *item)
{
	uma_zfree_arg(zone, item, NULL);
}

int uma_zone_set_max(uma_zone_t zone, int nitems);
int uma_zone_get_max(uma_zone_t zone);
int uma_zone_get_cur(uma_zone_t zone);
const char *uma_zone_name(uma_zone_t zone);

/* Items a zone has handed out and taken back since it was made. */
uint64_t uma_zone_get_allocs(uma_zone_t zone);
uint64_t uma_zone_get_frees(uma_zone_t zone);
/* Whether the zone is at its limit (allocations would fail or sleep). */
int uma_zone_exhausted(uma_zone_t zone);
/* Printed (at most every five minutes) when the zone's limit stops an
 * allocation; the string is copied. */
void uma_zone_set_warning(uma_zone_t zone, const char *warning);
/* Called, on the allocating thread and under no lock, when the zone's
 * limit stops an allocation (FreeBSD runs it from a task queue). */
void uma_zone_set_maxaction(uma_zone_t zone, uma_maxaction_t fn);
/* Keep nitems free items for M_USE_RESERVE allocations: other allocations
 * never take the last nitems cached items.  Fill it with uma_prealloc. */
void uma_zone_reserve(uma_zone_t zone, int nitems);
/* FreeBSD reserves kernel address space for nitems and caps the zone
 * there: here the arenas already reserve the address space, and the zone's
 * limit is set to nitems.  Returns 1. */
int uma_zone_reserve_kva(uma_zone_t zone, int nitems);
/* Allocate memory for itemcnt items now: the reserve is filled first, the
 * rest go back to the keg's slabs. */
void uma_prealloc(uma_zone_t zone, int itemcnt);
/* At most nitems free items stay cached (per-CPU and domain caches). */
void uma_zone_set_maxcache(uma_zone_t zone, int nitems);
/* Slabs from a page source of the caller's; before the zone's first
 * allocation.  Items are laid out by slabkit's core (docs/api.md). */
void uma_zone_set_allocf(uma_zone_t zone, uma_alloc allocf);
void uma_zone_set_freef(uma_zone_t zone, uma_free freef);

/*
 * Per-CPU zones (UMA_ZONE_PCPU), as counter(9) uses them: an item is one
 * copy per CPU id, UMA_PCPU_ALLOC_SIZE apart; zpcpu_get gives the calling
 * CPU's copy, zpcpu_get_cpu any CPU's.  In user space a thread can migrate
 * between zpcpu_get and its update: update a copy with an atomic operation
 * (uncontended, so cheap) where FreeBSD relies on critical sections.
 * Item size at most UMA_PCPU_ALLOC_SIZE.  M_ZERO zeroes every copy.
 */
#define UMA_PCPU_ALLOC_SIZE 4096
void *uma_zalloc_pcpu_arg(uma_zone_t zone, void *arg, int flags);
void uma_zfree_pcpu_arg(uma_zone_t zone, void *item, void *arg);
static inline void *uma_zalloc_pcpu(uma_zone_t zone, int flags)
{
	return uma_zalloc_pcpu_arg(zone, NULL, flags);
}
static inline void uma_zfree_pcpu(uma_zone_t zone, void *item)
{
	uma_zfree_pcpu_arg(zone, item, NULL);
}
/* The CPU the caller runs on now, and the number of CPU ids (every id is
 * below it): the range of zpcpu_get_cpu. */
unsigned slabkit_curcpu(void);
unsigned slabkit_cpu_ids(void);
#define zpcpu_get_cpu(base, cpu) \
	((__typeof__(base))((char *)(base) + (size_t)UMA_PCPU_ALLOC_SIZE * (size_t)(cpu)))
#define zpcpu_get(base) zpcpu_get_cpu((base), slabkit_curcpu())

/* Reclaim applies to every cache of every front end. */
void uma_reclaim(int req);
void uma_zone_reclaim(uma_zone_t zone, int req);

/* SMR zones (uma_zcreate with UMA_ZONE_SMR; docs/uma.md "SMR zones").
 * An item freed with uma_zfree_smr is not reused until every reader that
 * was inside smr_enter/smr_exit when it was freed has left.  slabkit's
 * safe memory reclamation is liburcu's urcu-memb, one domain for the whole
 * process: every zone's smr_t is the same, smr_enter/smr_exit are an RCU
 * read-side section (they nest).  SMR zones take no ctor or dtor (their
 * items are read after the free); uma_zfree on one is misuse.  Freed
 * items wait in batches of 60 for a grace period; uma_zone_reclaim,
 * uma_reclaim and uma_zdestroy hand partial batches over at once. */
typedef struct smr *smr_t;
smr_t uma_zone_get_smr(uma_zone_t zone);
void *uma_zalloc_smr(uma_zone_t zone, int flags);
void uma_zfree_smr(uma_zone_t zone, void *item);
void smr_enter(smr_t smr);
void smr_exit(smr_t smr);
/* Wait until every reader inside a section when it was called has left. */
void smr_synchronize(smr_t smr);

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_FREEBSD_UMA_H */
