/* Producer/consumer with cross-thread frees: PAIRS producers allocate
 * objects of 16..512 bytes and hand them through single-producer rings to
 * PAIRS consumers, which check and free them.  Prints a checksum. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAIRS 2
#define RING 1024
#define PER_PRODUCER 300000

struct ring {
	void *slot[RING];
	unsigned long head, tail; /* head: producer, tail: consumer */
} __attribute__((aligned(64)));

static struct ring rings[PAIRS];
static unsigned long sums[PAIRS];

static void *producer(void *arg)
{
	struct ring *r = arg;
	unsigned seed = (unsigned)(r - rings) + 1;
	for (unsigned long i = 0; i < PER_PRODUCER; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 16 + (seed >> 16) % 497;
		unsigned char *p = malloc(n);
		p[0] = (unsigned char)n;
		p[n - 1] = (unsigned char)i;
		while (i - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= RING)
			sched_yield(); /* more threads than cores: never spin hard */
		r->slot[i % RING] = p;
		__atomic_store_n(&r->head, i + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct ring *r = arg;
	unsigned long sum = 0;
	for (unsigned long i = 0; i < PER_PRODUCER; i++) {
		while (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) <= i)
			sched_yield();
		unsigned char *p = r->slot[i % RING];
		sum += p[0];
		free(p);
		__atomic_store_n(&r->tail, i + 1, __ATOMIC_RELEASE);
	}
	sums[r - rings] = sum;
	return NULL;
}

int main(void)
{
	pthread_t t[2 * PAIRS];
	for (int i = 0; i < PAIRS; i++) {
		pthread_create(&t[2 * i], NULL, producer, &rings[i]);
		pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]);
	}
	for (int i = 0; i < 2 * PAIRS; i++)
		pthread_join(t[i], NULL);
	unsigned long total = 0;
	for (int i = 0; i < PAIRS; i++)
		total += sums[i];
	printf("%lu\n", total);
	return 0;
}
