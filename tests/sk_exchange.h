/*
 * A bounded bag through which threads hand objects to each other: a thread
 * parks what it allocated, any thread takes a random one back and frees it,
 * so objects are freed by other threads (and CPUs) than the ones that made
 * them.  The stress and churn suites use it; the record they pass (where
 * the object is, its kind, its checksum) is theirs, copied in and out.
 *
 * Synchronization: lock guards n and the slots (a leaf lock: nothing is
 * called under it).
 */
#ifndef SLABKIT_SK_EXCHANGE_H
#define SLABKIT_SK_EXCHANGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sk_test.h"

struct sk_exchange {
	pthread_mutex_t lock;
	unsigned n, cap;      /* records held, room for */
	size_t size;          /* bytes of one record */
	unsigned char *slots; /* the caller's array of cap records */
};

static inline void sk_exchange_init(struct sk_exchange *x, void *slots, unsigned cap, size_t size)
{
	pthread_mutex_init(&x->lock, NULL);
	x->n = 0;
	x->cap = cap;
	x->size = size;
	x->slots = slots;
}

static inline void sk_exchange_destroy(struct sk_exchange *x)
{
	pthread_mutex_destroy(&x->lock);
}

/* Park a copy of the record; false when the bag is full. */
static inline bool sk_exchange_put(struct sk_exchange *x, const void *rec)
{
	pthread_mutex_lock(&x->lock);
	bool ok = x->n < x->cap;
	if (ok)
		memcpy(x->slots + (size_t)x->n++ * x->size, rec, x->size);
	pthread_mutex_unlock(&x->lock);
	return ok;
}

/* Take a random record out into *rec; false when the bag is empty. */
static inline bool sk_exchange_take(struct sk_exchange *x, void *rec, uint64_t *rng)
{
	pthread_mutex_lock(&x->lock);
	bool ok = x->n > 0;
	if (ok) {
		size_t i = (size_t)(sk_rand(rng) % x->n);
		memcpy(rec, x->slots + i * x->size, x->size);
		memcpy(x->slots + i * x->size, x->slots + (size_t)--x->n * x->size, x->size);
	}
	pthread_mutex_unlock(&x->lock);
	return ok;
}

#endif /* SLABKIT_SK_EXCHANGE_H */
