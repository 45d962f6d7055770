/*
 * What every fuzz harness shares: slabkit set up once per process without
 * the maintenance thread (so per-CPU counter sums are exact between
 * operations), hooks that turn an unexpected panic into a mismatch, the
 * input loop (its operations are the harness's, struct fz_harness) and the
 * operation count printed at exit (the figure a long run reports).
 */
#include <errno.h>

#include "fuzz.h"

unsigned long long fz_ops;
/* Panics the running operation announced (fz_expect_panic). */
unsigned fz_panics_expected, fz_panics_seen;

static void count_ops_at_exit(void)
{
	fprintf(stderr, "%s: %llu operations checked against the model, no mismatch\n", fz_name,
		fz_ops);
}

static void on_panic(const char *message)
{
	if (!fz_panics_expected)
		fz_fail("unexpected panic: %s", message ? message : "(null)");
	fz_panics_seen++;
}

static void on_message(const char *line)
{
	if (getenv("FZ_VERBOSE"))
		fprintf(stderr, "  [slabkit] %s\n", line);
}

void fz_setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	slabkit_set_panic_hook(on_panic);
	slabkit_set_message_hook(on_message);
	/* Expected misuse is counted through the panic hook. */
	struct slabkit_config cfg = { .tick_ms = -1, .misuse = "panic" };
	int rc = slabkit_init(&cfg);
	if (rc == -EALREADY) { /* a MALLOC_DEFINE constructor initialised it lazily */
		slabkit_fini();
		rc = slabkit_init(&cfg);
	}
	if (rc != 0) {
		fprintf(stderr, "%s: slabkit_init failed (%d)\n", fz_name, rc);
		exit(2);
	}
	atexit(count_ops_at_exit);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size, 0 };
	fz_setup();
	if (fz_harness.begin)
		fz_harness.begin();
	while (fz_more(&in)) {
		unsigned op = fz_u8(&in);
		int slot = (int)(fz_u8(&in) % FZ_SLOTS);
		fz_harness.step(&in, op, slot);
		fz_ops++;
		if (fz_harness.check)
			fz_harness.check();
		if (fz_harness.set)
			fz_check_each(fz_harness.set);
	}
	if (fz_harness.end)
		fz_harness.end();
	if (fz_harness.set)
		fz_destroy_each(fz_harness.set);
	fz_expect(fz_harness.model->live == 0, "%u objects left in the model", fz_harness.model->live);
	return 0;
}
