/*
 * The live view's source: the maintenance thread publishes a snapshot of
 * every report into a file only the process's owner can read, which
 * `slabkit-stat <pid>` reads (tools/slabkit-stat.c; docs/stats.md).
 *
 *   path:   $SLABKIT_PUBLISH_DIR (default /dev/shm) / slabkit.<pid>
 *   when:   after a maintenance pass, at most every $SLABKIT_PUBLISH_MS
 *           (default 1000) milliseconds; SLABKIT_PUBLISH=0 turns it off.
 *   how:    written to a hidden temporary file (mode 0600, O_NOFOLLOW) and
 *           renamed over the path, so a reader always sees a whole snapshot.
 *   gone:   removed by slabkit_fini and at exit.
 *
 * The allocation paths never see any of this: the snapshot is made with
 * the same racy, lock-free reads as every report.
 *
 * Lock order: init_lock (slabkit_fini) -> publish_lock -> registry_lock,
 * zones_lock, types_lock (the reports).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"

/* Synchronization: publish_lock guards everything below. */
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static bool configured, disabled, stopped;
static char path[512], tmp_path[512];
static long period_ms;
static uint64_t last_ns, seq;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void configure_locked(void)
{
	const char *on = getenv("SLABKIT_PUBLISH"), *dir = getenv("SLABKIT_PUBLISH_DIR");
	const char *ms = getenv("SLABKIT_PUBLISH_MS");

	configured = true;
	disabled = on && !strcmp(on, "0");
	period_ms = ms && *ms ? strtol(ms, NULL, 10) : 1000;
	if (!dir || !*dir)
		dir = "/dev/shm";
	snprintf(path, sizeof(path), "%s/slabkit.%ld", dir, (long)getpid());
	snprintf(tmp_path, sizeof(tmp_path), "%s/.slabkit.%ld.tmp", dir, (long)getpid());
}

static int top_line(const struct slabkit_cache_info *i, void *arg)
{
	/* name backend front_end bytes_held in_use object_size allocs frees slabs pages */
	fprintf(arg, "%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%zu\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
		i->name, i->backend, i->front_end, i->pages * SK_PAGE_SIZE, i->in_use, i->object_size,
		i->allocs, i->frees, i->slabs, i->pages);
	return 0;
}

static void write_snapshot(FILE *f)
{
	static const char *const formats[] = { "slabinfo", "vmstat-z", "vmstat-m", "json" };
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(f, "SLABKIT-SNAPSHOT 1\npid %ld seq %" PRIu64 " time %.3f backend %s\n", (long)getpid(), seq,
		(double)ts.tv_sec + (double)ts.tv_nsec / 1e9, sk_state.ops->name);
	fprintf(f, "--- top\n");
	slabkit_foreach_cache(top_line, f);
	for (size_t k = 0; k < SK_ARRAY_SIZE(formats); k++) {
		fprintf(f, "--- %s\n", formats[k]);
		slabkit_report(f, formats[k]);
	}
	fprintf(f, "--- end\n");
}

void sk_publish_tick(void)
{
	pthread_mutex_lock(&publish_lock);
	if (!configured)
		configure_locked();
	uint64_t now = now_ns();
	if (disabled || stopped || !sk_load_acquire(&sk_state.ready) ||
	    (last_ns && now - last_ns < (uint64_t)period_ms * 1000000u))
		goto out;
	last_ns = now;
	seq++;
	int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		sk_errorf("slabkit: cannot publish statistics to %s (%s); the live view is off", tmp_path,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		disabled = true;
		goto out;
	}
	fchmod(fd, 0600); /* a file left by an earlier process of this pid */
	write_snapshot(f);
	if (fclose(f) != 0 || rename(tmp_path, path) != 0) {
		sk_errorf("slabkit: cannot publish statistics to %s (%s); the live view is off", path,
			  strerror(errno));
		unlink(tmp_path);
		disabled = true;
	}
out:
	pthread_mutex_unlock(&publish_lock);
}

void sk_publish_fork(bool lock, bool child)
{
	if (lock) {
		pthread_mutex_lock(&publish_lock);
		return;
	}
	if (child) { /* its own pid, its own file: configure again */
		configured = false;
		last_ns = 0;
	}
	pthread_mutex_unlock(&publish_lock);
}

void sk_publish_stop(bool for_good)
{
	pthread_mutex_lock(&publish_lock);
	if (configured) {
		unlink(path);
		unlink(tmp_path);
	}
	/* slabkit_fini: a later slabkit_init publishes again (and re-reads
	 * the environment); exit: nothing more, even from a running tick. */
	configured = false;
	last_ns = 0;
	stopped = for_good;
	pthread_mutex_unlock(&publish_lock);
}
