/*
 * slabkit-bench: one child process runs one cell (workload x allocator).
 *
 *   slabkit-bench --child ALLOC KIND WORKLOAD OPS REPS RETRIES REP_MS CALIB_MS MODE THREADS TRACE
 *   (TRACE is - when not replaying)
 *
 * The orchestrator (main.c) starts it with the allocator already chosen by
 * the environment (SLABKIT_BACKEND, SLABKIT_PERCPU, LD_PRELOAD).  It
 * prints what it measured, one fact a line, on stdout:
 *
 *   percpu MODE              slabkit's per-CPU mode (slabkit only)
 *   usable N64 N4096         malloc(9) usable sizes of 64 and 4096 B requests
 *   calib OPS                ops per repetition (what the next rounds reuse)
 *   sample NS DISTURBED      ns per op of one repetition; 1 if disturbed
 *   reruns N                 repetitions run again because disturbed
 *   mem PEAK HELD LIVE SLABS PAGES
 *                            peak RSS, resident growth since before init,
 *                            live bytes then, slabkit slabs and pages (-1: n/a)
 *   point T_MS RSS LIVE      memory over time (steady, replay)
 *   error TEXT               the cell failed
 *
 * and leaves with _exit (no destructors, no leak reports: the objects a
 * workload keeps live are the point of the memory figures).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

int child_main(int argc, char **argv)
{
	static struct run run; /* only its options and workloads are used */
	struct allocator alloc;
	struct child_params p;
	int wi, rc;

	if (argc != 13) {
		fprintf(stderr, "slabkit-bench --child: expected 11 arguments, got %d\n", argc - 2);
		return 2;
	}
	memset(&alloc, 0, sizeof(alloc));
	snprintf(alloc.name, sizeof(alloc.name), "%s", argv[2]);
	alloc.kind = !strcmp(argv[3], "slabkit") ? ALLOC_SLABKIT : !strcmp(argv[3], "peer") ? ALLOC_PEER : ALLOC_GLIBC;

	run.opt.tiny = !strcmp(argv[10], "tiny");
	run.opt.quick = run.opt.tiny || !strcmp(argv[10], "quick");
	run.opt.threads = argv[11];
	run.opt.replay = strcmp(argv[12], "-") ? argv[12] : NULL;
	workload_define_all(&run);
	wi = bench_index_of_workload(&run, argv[4]);
	if (wi < 0) {
		printf("error unknown workload %s\n", argv[4]);
		fflush(stdout);
		_exit(1);
	}
	memset(&p, 0, sizeof(p));
	p.alloc = &alloc;
	p.wl = run.workloads[wi];
	p.ops_per_rep = strtoull(argv[5], NULL, 10);
	p.reps = atoi(argv[6]);
	p.max_retries = atoi(argv[7]);
	p.rep_ms = atof(argv[8]);
	p.calib_ms = atof(argv[9]);
	p.trace = run.opt.replay;
	rc = workload_run(&p);
	fflush(stdout);
	_exit(rc);
}

int bench_index_of_workload(const struct run *run, const char *name)
{
	for (int i = 0; i < run->nworkloads; i++)
		if (!strcmp(run->workloads[i].name, name))
			return i;
	return -1;
}
