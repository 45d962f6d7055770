/*
 * The fuzz harnesses without libFuzzer: random inputs from a seed, so the
 * model checks run in every build (gcc, ASan, TSan) on every backend.
 * It understands the libFuzzer flags a short run uses, and replays files:
 *
 *   fuzz_kmalloc [-runs=N] [-seed=S] [-max_len=L] [FILE...]
 *
 * -runs: inputs to run (default 1000); -seed: the generator's seed
 * (default 1); -max_len: the longest input (default 4096).  Files given
 * are run once each instead (a crash input libFuzzer saved).  The inputs
 * are random bytes of random length: short ones end early, long ones hold
 * hundreds of operations.
 */
#include "fuzz.h"

static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long runs = 1000, max_len = 4096;
	uint64_t seed = 1;
	int files = 0;
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "-runs=", 6))
			runs = strtoul(argv[i] + 6, NULL, 0);
		else if (!strncmp(argv[i], "-seed=", 6))
			seed = strtoull(argv[i] + 6, NULL, 0);
		else if (!strncmp(argv[i], "-max_len=", 9))
			max_len = strtoul(argv[i] + 9, NULL, 0);
		else if (argv[i][0] == '-')
			fprintf(stderr, "%s: ignoring %s\n", fz_name, argv[i]);
		else
			files++;
	}
	if (files) {
		for (int i = 1; i < argc; i++)
			if (argv[i][0] != '-' && run_file(argv[i]))
				return 1;
		return 0;
	}
	if (max_len == 0)
		max_len = 1;
	uint8_t *buf = malloc(max_len);
	if (!buf)
		return 1;
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
	for (unsigned long r = 0; r < runs; r++) {
		size_t n = (size_t)(next_random(&s) % (max_len + 1));
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)(next_random(&s) >> 56);
		LLVMFuzzerTestOneInput(buf, n);
	}
	free(buf);
	fprintf(stderr, "%s: %lu inputs (seed %llu, up to %lu bytes)\n", fz_name, runs,
		(unsigned long long)seed, max_len);
	return 0;
}
