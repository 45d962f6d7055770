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

/* Alignment masks: the alignment minus one. */
#define UMA_ALIGN_PTR    (sizeof(void *) - 1)
#define UMA_ALIGN_LONG   (sizeof(long) - 1)
#define UMA_ALIGN_INT    (sizeof(int) - 1)
#define UMA_ALIGN_SHORT  (sizeof(short) - 1)
#define UMA_ALIGN_CHAR   (sizeof(char) - 1)
#define UMA_ALIGN_CACHE  (0 - 1)   /* the cache line size slabkit detected */
#define UMA_ALIGNOF(type) (_Alignof(type) - 1)

/* Zone flags (values as in FreeBSD).  docs/api.md lists which each backend
 * honours; the rest are accepted as no-ops because they describe kernel
 * memory (CONTIG, VM, NODUMP, NOKASAN, MTXCLASS). */
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

/* Reclaim applies to every cache of every front end. */
void uma_reclaim(int req);
void uma_zone_reclaim(uma_zone_t zone, int req);

#ifdef __cplusplus
}
#endif
#endif /* SLABKIT_FREEBSD_UMA_H */
