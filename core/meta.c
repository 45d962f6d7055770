/*
 * Metadata memory for core and backends (cache structs, per-CPU slots,
 * per-node structs, buckets), from the page provider, never from malloc:
 * slabkit may one day be the process's malloc.
 *
 * Sizes up to 2 KiB come from power-of-two classes carved out of META
 * pages, each block aligned to its class size; larger requests take whole
 * pages.  Carved pages are kept for reuse until slabkit_fini unmaps the
 * arenas.
 *
 * Synchronization: meta_lock guards the class free lists.
 */
#include <pthread.h>
#include <string.h>

#include "sk_core.h"

#define META_MIN_SHIFT 4   /* 16 B */
#define META_MAX_SHIFT 11  /* 2 KiB */
#define META_CLASSES (META_MAX_SHIFT - META_MIN_SHIFT + 1)

struct meta_free {
	struct meta_free *next;
};

/* Metadata lives on the caller's node whatever the process's policy:
 * slabkit's own structures are read by the CPUs that use them. */
static struct sk_numa_policy meta_policy = { .kind = SK_POLICY_LOCAL };

static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;
static struct meta_free *meta_free_list[META_CLASSES];

static unsigned meta_class(size_t size)
{
	unsigned shift = META_MIN_SHIFT;
	while (((size_t)1 << shift) < size)
		shift++;
	return shift - META_MIN_SHIFT;
}

void *sk_meta_zalloc(size_t size)
{
	void *p;

	if (!size)
		size = 1;
	if (size > ((size_t)1 << META_MAX_SHIFT)) {
		size_t npages = (size + SK_PAGE_SIZE - 1) >> SK_PAGE_SHIFT;
		p = sk_pages_alloc_exact_policy(&meta_policy, SK_NODE_ANY, npages, SK_PAGE_META, NULL);
		if (p)
			memset(p, 0, npages << SK_PAGE_SHIFT);
		return p;
	}
	unsigned cls = meta_class(size);
	size_t block = (size_t)1 << (cls + META_MIN_SHIFT);

	pthread_mutex_lock(&meta_lock);
	if (!meta_free_list[cls]) {
		char *page = sk_pages_alloc_policy(&meta_policy, SK_NODE_ANY, 0, SK_PAGE_META, NULL);
		if (!page) {
			pthread_mutex_unlock(&meta_lock);
			return NULL;
		}
		for (size_t off = SK_PAGE_SIZE; off >= block; off -= block) {
			struct meta_free *f = (struct meta_free *)(page + off - block);
			f->next = meta_free_list[cls];
			meta_free_list[cls] = f;
		}
	}
	p = meta_free_list[cls];
	meta_free_list[cls] = meta_free_list[cls]->next;
	pthread_mutex_unlock(&meta_lock);
	memset(p, 0, block);
	return p;
}

void sk_meta_free(void *p, size_t size)
{
	if (!p)
		return;
	if (!size)
		size = 1;
	if (size > ((size_t)1 << META_MAX_SHIFT)) {
		sk_pages_free(p);
		return;
	}
	unsigned cls = meta_class(size);
	pthread_mutex_lock(&meta_lock);
	struct meta_free *f = p;
	f->next = meta_free_list[cls];
	meta_free_list[cls] = f;
	pthread_mutex_unlock(&meta_lock);
}

/*
 * Structs the user holds a handle to (caches, zones) are not reused at
 * once after destruction: the last META_QUARANTINE of them wait here, so
 * that a second destroy or an allocation through a stale handle finds the
 * "destroyed" mark and is reported.  Older ones are really freed (a handle
 * used long after its destruction is undefined, as in the kernel).
 */
#define META_QUARANTINE 64
static struct {
	void *p;
	size_t size;
} quarantine[META_QUARANTINE];
static unsigned quarantine_next;

void sk_meta_fork_lock(bool lock)
{
	(lock ? pthread_mutex_lock : pthread_mutex_unlock)(&meta_lock);
}

void sk_meta_free_quarantined(void *p, size_t size)
{
	void *old;
	size_t old_size;

	pthread_mutex_lock(&meta_lock);
	old = quarantine[quarantine_next].p;
	old_size = quarantine[quarantine_next].size;
	quarantine[quarantine_next].p = p;
	quarantine[quarantine_next].size = size;
	quarantine_next = (quarantine_next + 1) % META_QUARANTINE;
	pthread_mutex_unlock(&meta_lock);
	sk_meta_free(old, old_size);
}

/* Forget every carved page: slabkit_fini is about to unmap the arenas. */
void sk_meta_reset(void)
{
	pthread_mutex_lock(&meta_lock);
	memset(meta_free_list, 0, sizeof(meta_free_list));
	memset(quarantine, 0, sizeof(quarantine));
	quarantine_next = 0;
	pthread_mutex_unlock(&meta_lock);
}
