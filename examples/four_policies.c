/*
 * Four allocation policies in one process: the same workload on four
 * kmem_caches, one per backend, side by side.
 *
 * The workload is a window of live objects of one size where a random one
 * is freed and a new one allocated, the pattern of a cache of connections,
 * dentries or requests.  For every backend it prints the time of one
 * free+alloc pair and what the cache holds for its live objects (pages
 * held against the bytes the live objects need), after an identical warm
 * run.  The backends take turns in rounds so that a noisy machine affects
 * them alike; the figure is the median round.
 *
 *   four_policies [live-objects] [object-size] [rounds]
 *
 * Links libslabkit.so as any program would (docs/policies.md explains the
 * output).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <slabkit/linux/slab.h>
#include <slabkit/slabkit.h>

#define MAX_BACKENDS 4
#define MAX_ROUNDS 15

struct policy {
	char backend[24];
	char cache_name[48];
	struct kmem_cache *cache;
	void **live;                  /* the window of live objects */
	double ns_per_pair[MAX_ROUNDS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a cheap, reproducible sequence of window slots. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Free a random live object and allocate another in its place, `pairs` times. */
static double churn(struct policy *p, size_t live, size_t pairs, uint64_t seed)
{
	uint64_t s = seed;
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < pairs; i++) {
		size_t slot = (size_t)(next_random(&s) % live);
		kmem_cache_free(p->cache, p->live[slot]);
		p->live[slot] = kmem_cache_alloc(p->cache, GFP_KERNEL);
		if (!p->live[slot]) {
			fprintf(stderr, "four_policies: %s: allocation failed\n", p->backend);
			exit(1);
		}
		*(volatile char *)p->live[slot] = (char)i; /* touch it, as a user would */
	}
	return (double)(now_ns() - t0) / (double)pairs;
}

int main(int argc, char **argv)
{
	size_t live = argc > 1 ? strtoul(argv[1], NULL, 0) : 100000;
	unsigned size = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 192;
	unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 7;
	struct policy pol[MAX_BACKENDS];
	unsigned n = 0;

	if (!live || !size || !rounds || rounds > MAX_ROUNDS) {
		fprintf(stderr, "usage: four_policies [live-objects>0] [object-size>0] [rounds 1..%d]\n",
			MAX_ROUNDS);
		return 2;
	}
	if (slabkit_init(&(struct slabkit_config){ .tick_ms = -1 }) != 0)
		return 1;

	/* One cache per compiled backend, each made on its own backend. */
	for (const char *s = slabkit_backends_compiled(); *s && n < MAX_BACKENDS; n++) {
		struct policy *p = &pol[n];
		size_t len = strcspn(s, ",");
		snprintf(p->backend, sizeof(p->backend), "%.*s", (int)(len < 16 ? len : 16), s);
		snprintf(p->cache_name, sizeof(p->cache_name), "demo-%.15s", p->backend);
		s += len + (s[len] == ',');
		if (slabkit_create_backend(p->backend) != 0)
			return 1;
		p->cache = kmem_cache_create(p->cache_name, size, 0, 0, NULL);
		if (!p->cache || !(p->live = calloc(live, sizeof(void *))))
			return 1;
		for (size_t i = 0; i < live; i++)
			if (!(p->live[i] = kmem_cache_alloc(p->cache, GFP_KERNEL)))
				return 1;
	}
	slabkit_create_backend(NULL);

	size_t pairs = live * 4 < 400000 ? 400000 : live * 4;
	for (unsigned b = 0; b < n; b++)
		churn(&pol[b], live, pairs / 4, 1); /* warm-up: every policy alike */
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned b = 0; b < n; b++)
			pol[b].ns_per_pair[r] = churn(&pol[b], live, pairs, 7 + r);

	printf("%zu live objects of %u bytes, a random one freed and reallocated; median of %u rounds\n",
	       live, size, rounds);
	printf("%-8s %12s %10s %12s %12s %10s\n", "backend", "ns/pair", "spread", "live KiB",
	       "held KiB", "held/live");
	for (unsigned b = 0; b < n; b++) {
		struct policy *p = &pol[b];
		struct slabkit_cache_info info;
		qsort(p->ns_per_pair, rounds, sizeof(double), cmp_double);
		double median = p->ns_per_pair[rounds / 2];
		double spread = (p->ns_per_pair[rounds - 1] - p->ns_per_pair[0]) / median;
		if (slabkit_cache_info_by_name(p->cache_name, &info) != 0 || strcmp(info.backend, p->backend))
			return 1;
		double live_kib = (double)info.in_use * size / 1024.0;
		double held_kib = (double)info.pages * 4096.0 / 1024.0;
		printf("%-8s %12.1f %9.0f%% %12.0f %12.0f %9.2fx\n", p->backend, median, spread * 100.0,
		       live_kib, held_kib, held_kib / live_kib);
	}

	for (unsigned b = 0; b < n; b++) {
		for (size_t i = 0; i < live; i++)
			kmem_cache_free(pol[b].cache, pol[b].live[i]);
		kmem_cache_destroy(pol[b].cache);
		free(pol[b].live);
	}
	slabkit_fini();
	return 0;
}
