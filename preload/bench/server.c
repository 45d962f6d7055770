/* A server-like program: waves of short-lived worker threads serve
 * "requests" that replace entries of a shared table; the objects they
 * allocate outlive the threads and are freed by later waves (other
 * threads).  Sizes 16 B .. 4 KiB, one in 64 up to 64 KiB. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 65536
#define STRIPES 64
#define WAVES 4
#define THREADS 16
#define OPS 20000

static void *table[SLOTS];
static pthread_mutex_t stripe[STRIPES];

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
	for (int i = 0; i < OPS; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned s = (seed >> 8) % SLOTS;
		size_t n = (seed & 63) == 0 ? 4096 + (seed >> 12) % 61440 : 16 + (seed >> 12) % 4080;
		char *p = malloc(n);
		memset(p, (int)i, n < 256 ? n : 256);
		pthread_mutex_lock(&stripe[s % STRIPES]);
		void *old = table[s];
		table[s] = p;
		pthread_mutex_unlock(&stripe[s % STRIPES]);
		free(old);
	}
	return NULL;
}

int main(void)
{
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripe[i], NULL);
	for (int w = 0; w < WAVES; w++) {
		pthread_t t[THREADS];
		for (int i = 0; i < THREADS; i++)
			pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(w * THREADS + i + 1));
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
	}
	unsigned long live = 0;
	for (int s = 0; s < SLOTS; s++) {
		live += table[s] != NULL;
		free(table[s]);
	}
	printf("%lu\n", live);
	return 0;
}
