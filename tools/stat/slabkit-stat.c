/*
 * slabkit-stat: look at a running slabkit process, as slabtop and
 * `vmstat -z` look at a kernel.
 *
 *   slabkit-stat [-d seconds] [-n count] <pid>   top-like view, refreshed
 *   slabkit-stat -o <format> <pid>                one report and exit
 *                (slabinfo, vmstat-z, vmstat-m, json)
 *
 * It reads the snapshot the process's maintenance thread publishes
 * (core/publish.c): $SLABKIT_PUBLISH_DIR (default /dev/shm)/slabkit.<pid>,
 * readable by the process's owner only.  It never touches the process
 * itself, and needs nothing of the library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct row {
	char name[64], backend[16];
	uint64_t held, in_use, object_size, allocs, frees;
	double alloc_rate, free_rate;
};

struct snapshot {
	char *text;
	uint64_t seq;
	double time;
	char backend[16];
	struct row *rows;
	size_t nrows;
};

static void usage(void)
{
	fprintf(stderr, "usage: slabkit-stat [-d seconds] [-n refreshes] [-o slabinfo|vmstat-z|vmstat-m|json] <pid>\n"
			"  Without -o: a top-like view sorted by memory held, with allocation and free\n"
			"  rates since the previous refresh; -n stops after that many refreshes.\n"
			"  The process publishes its snapshot from its maintenance thread (see\n"
			"  SLABKIT_PUBLISH, SLABKIT_PUBLISH_MS, SLABKIT_PUBLISH_DIR in docs/stats.md).\n");
	exit(2);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096) {
			char *bigger = realloc(buf, cap *= 2);
			if (!bigger) {
				free(buf);
				buf = NULL;
			}
			buf = bigger;
		}
	}
	fclose(f);
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The body of section `name` (a pointer into text, up to the next "--- "
 * line), its length in *len; NULL if absent. */
static const char *section(const char *text, const char *name, size_t *len)
{
	char head[64];
	snprintf(head, sizeof(head), "\n--- %s\n", name);
	const char *s = strstr(text, head);
	if (!s)
		return NULL;
	s += strlen(head);
	const char *e = strstr(s, "\n--- ");
	*len = e ? (size_t)(e - s) + 1 : strlen(s);
	return s;
}

static int load(const char *path, long pid, struct snapshot *out)
{
	memset(out, 0, sizeof(*out));
	if (!(out->text = read_file(path)))
		return -errno;
	if (strncmp(out->text, "SLABKIT-SNAPSHOT 1\n", 19) ||
	    sscanf(out->text + 19, "pid %*d seq %lu time %lf backend %15s", &out->seq, &out->time,
		   out->backend) != 3) {
		free(out->text);
		out->text = NULL;
		return -EPROTO;
	}
	size_t len;
	const char *top = section(out->text, "top", &len);
	if (!top)
		return 0;
	size_t cap = 64;
	out->rows = calloc(cap, sizeof(*out->rows));
	for (const char *l = top; out->rows && l < top + len;) {
		struct row r = { 0 };
		char front[16];
		if (sscanf(l, "%63[^\t]\t%15[^\t]\t%15[^\t]\t%lu\t%lu\t%lu\t%lu\t%lu", r.name, r.backend, front, &r.held,
			   &r.in_use, &r.object_size, &r.allocs, &r.frees) == 8) {
			if (out->nrows == cap) {
				struct row *bigger = realloc(out->rows, (cap *= 2) * sizeof(*out->rows));
				if (!bigger)
					break;
				out->rows = bigger;
			}
			out->rows[out->nrows++] = r;
		}
		const char *nl = strchr(l, '\n');
		if (!nl)
			break;
		l = nl + 1;
	}
	(void)pid;
	return 0;
}

static void release(struct snapshot *s)
{
	free(s->text);
	free(s->rows);
	memset(s, 0, sizeof(*s));
}

static int by_held_desc(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->held != y->held)
		return x->held < y->held ? 1 : -1;
	return strcmp(x->name, y->name);
}

/* Rates against the previous snapshot (same cache name). */
static void rates(struct snapshot *now, const struct snapshot *prev)
{
	double dt = prev->text ? now->time - prev->time : 0;
	bool same = prev->text && now->seq == prev->seq; /* not republished yet */
	for (size_t i = 0; i < now->nrows; i++) {
		struct row *r = &now->rows[i];
		for (size_t k = 0; (dt > 0 || same) && k < prev->nrows; k++)
			if (!strcmp(prev->rows[k].name, r->name)) {
				if (same) {
					r->alloc_rate = prev->rows[k].alloc_rate;
					r->free_rate = prev->rows[k].free_rate;
					break;
				}
				r->alloc_rate = (double)(r->allocs - prev->rows[k].allocs) / dt;
				r->free_rate = (double)(r->frees - prev->rows[k].frees) / dt;
				break;
			}
	}
}

static void show(const struct snapshot *s, long pid, unsigned refresh, bool tty)
{
	uint64_t held = 0, live = 0;
	for (size_t i = 0; i < s->nrows; i++) {
		held += s->rows[i].held;
		live += s->rows[i].in_use * s->rows[i].object_size;
	}
	if (tty)
		fputs("\033[H\033[2J", stdout);
	else
		printf("--- refresh %u\n", refresh);
	printf("slabkit-stat: pid %ld, default backend %s, snapshot %lu, %zu caches, %.1f KiB held, %.1f KiB live (%.1f%%)\n",
	       pid, s->backend, s->seq, s->nrows, held / 1024.0, live / 1024.0,
	       held ? 100.0 * (double)live / (double)held : 0.0);
	printf("%-24s %-7s %12s %10s %8s %12s %12s %6s\n", "NAME", "BACKEND", "HELD(KiB)", "LIVE", "OBJSIZE",
	       "ALLOCS/s", "FREES/s", "EFF%");
	for (size_t i = 0; i < s->nrows; i++) {
		const struct row *r = &s->rows[i];
		if (!r->held && !r->in_use && !r->alloc_rate)
			continue; /* idle and empty: as slabtop's default */
		printf("%-24s %-7s %12.1f %10lu %8lu %12.0f %12.0f %6.1f\n", r->name, r->backend, r->held / 1024.0,
		       r->in_use, r->object_size, r->alloc_rate, r->free_rate,
		       r->held ? 100.0 * (double)(r->in_use * r->object_size) / (double)r->held : 0.0);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	double delay = 2.0;
	long count = -1;
	const char *format = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "d:n:o:h")) != -1) {
		switch (opt) {
		case 'd': delay = strtod(optarg, NULL); break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'o': format = optarg; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || delay < 0)
		usage();
	long pid = strtol(argv[optind], NULL, 10);
	const char *dir = getenv("SLABKIT_PUBLISH_DIR");
	char path[512];
	snprintf(path, sizeof(path), "%s/slabkit.%ld", dir && *dir ? dir : "/dev/shm", pid);

	struct snapshot prev = { 0 }, now;
	for (unsigned refresh = 1;; refresh++) {
		int err = load(path, pid, &now);
		if (err) {
			if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
				fprintf(stderr, "slabkit-stat: no process %ld\n", pid);
				if (err != -ENOENT && unlink(path) == 0)
					fprintf(stderr, "slabkit-stat: removed its stale snapshot %s\n", path);
			} else {
				fprintf(stderr, "slabkit-stat: cannot read %s (%s): process %ld publishes no snapshot "
						"yet (it needs its maintenance thread: SLABKIT_TICK_MS > 0, and SLABKIT_PUBLISH "
						"not 0)\n",
					path, strerror(-err), pid);
			}
			release(&prev);
			return 1;
		}
		if (format) {
			size_t len;
			const char *body = section(now.text, format, &len);
			if (!body) {
				fprintf(stderr, "slabkit-stat: unknown format '%s' (slabinfo, vmstat-z, vmstat-m, json)\n",
					format);
				release(&now);
				return 2;
			}
			fwrite(body, 1, len, stdout);
			release(&now);
			return 0;
		}
		rates(&now, &prev);
		qsort(now.rows, now.nrows, sizeof(*now.rows), by_held_desc);
		show(&now, pid, refresh, isatty(STDOUT_FILENO));
		release(&prev);
		prev = now;
		if (count > 0 && refresh >= (unsigned long)count)
			break;
		struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };
		nanosleep(&ts, NULL);
	}
	release(&prev);
	return 0;
}
