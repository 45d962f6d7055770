/*
 * slabkit_bench: the footprint workload.  Included only by
 * tools/slabkit_bench.c.
 *
 * A plan (generated once, the same for every allocator) lists object
 * sizes 8..1024, which half of the objects to free, and the sizes they are
 * reallocated with.  Each allocator runs the plan in a child process of its
 * own, so resident memory starts clean:
 *
 *   fork -> malloc_trim(0) -> RSS before -> slabkit_init (not for glibc)
 *        -> allocate all (each object fully written) -> free the chosen
 *           half -> reallocate them -> RSS after, everything still live
 *        -> result through a pipe -> _exit
 *
 * "RSS" here is resident anonymous memory (bench_rss_bytes).  The figure
 * is (RSS after - RSS before) / live bytes, live bytes being the sum of the
 * sizes asked for.  Library set-up (topology, metadata) counts: a user
 * pays for it too; the table shows it apart (RSS after init).  The parent
 * must not have slabkit initialised while it forks (the child initialises
 * its own).
 */
#ifndef SLABKIT_BENCH_FOOTPRINT_H
#define SLABKIT_BENCH_FOOTPRINT_H

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "bench_loops.h"

#define BENCH_FOOTPRINT_MIN 8
#define BENCH_FOOTPRINT_MAX 1024

struct footprint_plan {
	uint32_t objects;
	uint16_t *sizes;       /* [objects]: first sizes */
	uint32_t *victims;     /* [objects / 2]: distinct indices freed and reallocated */
	uint16_t *new_sizes;   /* [objects / 2]: their new sizes */
	unsigned timeout_s;    /* the child is killed after this long */
};

struct footprint_result {
	int ok;
	char error[160];
	uint64_t rss_before, rss_after, live_bytes;
	uint64_t rss_after_init; /* after slabkit_init (glibc: = rss_before) */
	uint64_t elapsed_ns;   /* the allocation work alone */
	char percpu_mode[16];
};

static void footprint_plan_make(struct footprint_plan *plan, uint32_t objects, uint64_t seed)
{
	struct bench_rng rng = { seed };
	uint32_t half = objects / 2, *order;

	plan->objects = objects;
	plan->sizes = malloc(objects * sizeof(*plan->sizes));
	plan->victims = malloc(half * sizeof(*plan->victims));
	plan->new_sizes = malloc(half * sizeof(*plan->new_sizes));
	order = malloc(objects * sizeof(*order));
	if (!plan->sizes || !plan->victims || !plan->new_sizes || !order)
		bench_die("out of memory making the footprint plan");
	for (uint32_t i = 0; i < objects; i++) {
		plan->sizes[i] = (uint16_t)bench_rng_range(&rng, BENCH_FOOTPRINT_MIN, BENCH_FOOTPRINT_MAX);
		order[i] = i;
	}
	/* Fisher-Yates; the first half of the shuffled order is the victims. */
	for (uint32_t i = objects - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(bench_rng_next(&rng) % (i + 1));
		uint32_t tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}
	for (uint32_t k = 0; k < half; k++) {
		plan->victims[k] = order[k];
		plan->new_sizes[k] = (uint16_t)bench_rng_range(&rng, BENCH_FOOTPRINT_MIN, BENCH_FOOTPRINT_MAX);
	}
	free(order);
}

static void footprint_plan_free(struct footprint_plan *plan)
{
	free(plan->sizes);
	free(plan->victims);
	free(plan->new_sizes);
}

static inline void *footprint_alloc(int is_glibc, size_t size)
{
	return is_glibc ? malloc(size) : kmalloc(size, GFP_KERNEL);
}

static inline void footprint_free(int is_glibc, void *obj)
{
	if (is_glibc)
		free(obj);
	else
		kfree(obj);
}

/* Runs in the child; fills *res.  Never returns an error through exit
 * status alone: res->error says what went wrong. */
static void footprint_child_work(const char *backend, const struct footprint_plan *plan,
				 struct footprint_result *res)
{
	int is_glibc = strcmp(backend, "glibc") == 0;
	size_t table_bytes = plan->objects * sizeof(void *);
	void **objs;
	uint64_t start;

	/* The pointer table is the harness's, not the allocator's: map and
	 * touch it before the first reading. */
	objs = mmap(NULL, table_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (objs == MAP_FAILED) {
		snprintf(res->error, sizeof(res->error), "mmap: %s", strerror(errno));
		return;
	}
	memset(objs, 0, table_bytes);
	malloc_trim(0); /* free memory inherited from the parent's heap is not ours */
	res->rss_before = bench_rss_bytes();

	if (!is_glibc) {
		struct slabkit_config cfg = { .backend = backend, .tick_ms = -1 };
		int rc = slabkit_init(&cfg);

		if (rc != 0) {
			snprintf(res->error, sizeof(res->error), "slabkit_init(%s): %s", backend, strerror(-rc));
			return;
		}
		snprintf(res->percpu_mode, sizeof(res->percpu_mode), "%s", slabkit_percpu_mode());
	}
	res->rss_after_init = bench_rss_bytes();

	start = bench_now_ns();
	for (uint32_t i = 0; i < plan->objects; i++) {
		objs[i] = footprint_alloc(is_glibc, plan->sizes[i]);
		if (!objs[i])
			goto failed;
		memset(objs[i], (int)(i & 0xff), plan->sizes[i]);
	}
	for (uint32_t k = 0; k < plan->objects / 2; k++)
		footprint_free(is_glibc, objs[plan->victims[k]]);
	for (uint32_t k = 0; k < plan->objects / 2; k++) {
		uint32_t i = plan->victims[k];

		objs[i] = footprint_alloc(is_glibc, plan->new_sizes[k]);
		if (!objs[i])
			goto failed;
		memset(objs[i], (int)(k & 0xff), plan->new_sizes[k]);
	}
	res->elapsed_ns = bench_now_ns() - start;
	res->rss_after = bench_rss_bytes();

	for (uint32_t i = 0; i < plan->objects; i++)
		res->live_bytes += plan->sizes[i];
	for (uint32_t k = 0; k < plan->objects / 2; k++)
		res->live_bytes += (uint64_t)plan->new_sizes[k] - plan->sizes[plan->victims[k]];
	res->ok = res->rss_before != 0 && res->rss_after != 0;
	if (!res->ok)
		snprintf(res->error, sizeof(res->error), "cannot read /proc/self/statm");
	return;
failed:
	snprintf(res->error, sizeof(res->error), "%s returned NULL", is_glibc ? "malloc" : "kmalloc");
}

/* Runs the plan for one allocator in a fresh child; 0 and *res filled, or
 * -1 with res->error saying why. */
static int footprint_measure(const char *backend, const struct footprint_plan *plan,
			     struct footprint_result *res)
{
	int fds[2], status;
	ssize_t got;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe(fds) != 0) {
		snprintf(res->error, sizeof(res->error), "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL); /* the child must not flush the parent's buffered output again */
	pid = fork();
	if (pid < 0) {
		snprintf(res->error, sizeof(res->error), "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		struct footprint_result child_res = { 0 };

		close(fds[0]);
		alarm(plan->timeout_s);
		footprint_child_work(backend, plan, &child_res);
		if (write(fds[1], &child_res, sizeof(child_res)) != (ssize_t)sizeof(child_res))
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	do
		got = read(fds[0], res, sizeof(*res));
	while (got < 0 && errno == EINTR);
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(*res)) {
		memset(res, 0, sizeof(*res));
		if (WIFSIGNALED(status))
			snprintf(res->error, sizeof(res->error), "child killed by signal %d%s",
				 WTERMSIG(status),
				 WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
		else
			snprintf(res->error, sizeof(res->error), "child exited with status %d",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -1;
	}
	return res->ok ? 0 : -1;
}

#endif /* SLABKIT_BENCH_FOOTPRINT_H */
