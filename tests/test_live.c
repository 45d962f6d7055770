/*
 * The live view, run once per backend: a child process allocates while
 * this one reads it with slabkit-stat (a fixed number of refreshes of the
 * top-like view, then one-shot reports, the JSON parsed by python3), and
 * the child's snapshot file is gone once it has exited.
 */
#define _GNU_SOURCE
#include "sk_test.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <slabkit/linux/slab.h>

static char self_path[4096], dir[64], stop_path[128];

/* The child: allocate and free in rounds until told to stop. */
static int live_child(void)
{
	struct kmem_cache *c = kmem_cache_create("live_cache", 96, 0, 0, NULL);
	void *p[512];
	struct stat st;
	for (int round = 0; round < 20000 && stat(stop_path, &st) != 0; round++) {
		for (int i = 0; i < 512; i++)
			p[i] = kmem_cache_alloc(c, GFP_KERNEL);
		for (int i = 0; i < 512; i++)
			kmem_cache_free(c, p[i]);
		p[0] = kmem_cache_alloc(c, GFP_KERNEL); /* one more live object each round */
		usleep(1000);
	}
	return 0; /* exit without slabkit_fini: the atexit hook removes the snapshot */
}

static char *run(const char *cmd)
{
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 1 << 16, len = 0, n;
	char *out = malloc(cap);
	while ((n = fread(out + len, 1, cap - len - 1, f)) > 0)
		if ((len += n) + 1 >= cap)
			out = realloc(out, cap *= 2);
	out[len] = 0;
	int rc = pclose(f);
	if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
		fail_msg("%s failed (%d):\n%s", cmd, rc, out);
	return out;
}

static void live_view_of_a_running_process(void **state)
{
	char env_dir[128], env_backend[64], snap[160];
	snprintf(dir, sizeof(dir), "/tmp/slabkit_live_%d", (int)getpid());
	mkdir(dir, 0700);
	snprintf(stop_path, sizeof(stop_path), "%s/stop", dir);
	unlink(stop_path);
	snprintf(env_dir, sizeof(env_dir), "SLABKIT_PUBLISH_DIR=%s", dir);
	snprintf(env_backend, sizeof(env_backend), "SLABKIT_BACKEND=%s", slabkit_backend());

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { self_path, "--live-child", dir, NULL };
		char *envp[] = { env_dir, env_backend, "SLABKIT_TICK_MS=20", "SLABKIT_PUBLISH_MS=0", NULL };
		execve(self_path, argv, envp);
		_exit(127);
	}
	snprintf(snap, sizeof(snap), "%s/slabkit.%d", dir, (int)pid);
	struct stat st;
	for (int i = 0; i < 1000 && stat(snap, &st) != 0; i++)
		usleep(10000);
	assert_int_equal(stat(snap, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* the owner only */

	/* The top-like view: three refreshes, the cache with its rates. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "SLABKIT_PUBLISH_DIR=%s %s -d 0.2 -n 3 %d", dir, SK_STAT_TOOL, (int)pid);
	char *out = run(cmd);
	unsigned refreshes = 0, with_rate = 0;
	for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
		if (!strncmp(l, "--- refresh ", 12))
			refreshes++;
		char name[64], backend[16];
		double held, allocs_s;
		unsigned long live, objsize;
		if (sscanf(l, "%63s %15s %lf %lu %lu %lf", name, backend, &held, &live, &objsize, &allocs_s) == 6 &&
		    !strcmp(name, "live_cache")) {
			assert_string_equal(backend, slabkit_backend());
			assert_int_equal(objsize, 96);
			assert_true(live > 0 && held > 0);
			with_rate += allocs_s > 0;
		}
	}
	free(out);
	assert_int_equal(refreshes, 3);
	assert_true(with_rate >= 1); /* rates from the second refresh on */

	/* One-shot reports. */
	snprintf(cmd, sizeof(cmd), "SLABKIT_PUBLISH_DIR=%s %s -o slabinfo %d", dir, SK_STAT_TOOL, (int)pid);
	out = run(cmd);
	assert_true(!strncmp(out, "slabinfo - version: 2.1", 23));
	char *l = strstr(out, "\nlive_cache ");
	assert_non_null(l);
	unsigned long long active, num;
	assert_int_equal(sscanf(l + 1, "live_cache %llu %llu", &active, &num), 2);
	assert_true(active > 0 && (num >= active || num == 0));
	free(out);

	if (system("python3 -c 'import json' >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof(cmd),
			 "SLABKIT_PUBLISH_DIR=%s %s -o json %d > %s/snap.json && python3 %s/tests/check_report_json.py "
			 "%s/snap.json caches:live_cache:backend=%s caches:live_cache:object_size=96",
			 dir, SK_STAT_TOOL, (int)pid, dir, SK_SOURCE_DIR, dir, slabkit_backend());
		free(run(cmd));
	} else {
		print_message("skipped: python3 not found: the JSON is not parsed back\n");
	}

	/* Exit leaves nothing behind. */
	FILE *f = fopen(stop_path, "w");
	assert_non_null(f);
	fclose(f);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_not_equal(stat(snap, &st), 0);
	snprintf(cmd, sizeof(cmd), "%s/.slabkit.%d.tmp", dir, (int)pid);
	assert_int_not_equal(stat(cmd, &st), 0);
	/* ...and the tool says so. */
	snprintf(cmd, sizeof(cmd), "SLABKIT_PUBLISH_DIR=%s %s -o slabinfo %d 2>&1", dir, SK_STAT_TOOL, (int)pid);
	f = popen(cmd, "r");
	char buf[256] = "";
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	assert_int_not_equal(pclose(f), 0);
	assert_non_null(strstr(buf, "no process"));

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--live-child")) {
		snprintf(stop_path, sizeof(stop_path), "%s/stop", argv[2]);
		return live_child();
	}
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (n > 0)
		self_path[n] = 0;
	const struct CMUnitTest tests[] = {
		SK_TEST(live_view_of_a_running_process),
	};
	sk_apply_test_filter();
	return cmocka_run_group_tests(tests, sk_group_setup, sk_group_teardown);
}
