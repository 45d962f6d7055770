#!/usr/bin/env python3
"""Time and peak RSS of real programs and allocation-heavy workloads under
glibc's malloc, every slabkit backend (libslabkit-preload.so) and jemalloc,
tcmalloc and mimalloc (their Debian packages), each run in a fresh process
through LD_PRELOAD, interleaved (every round runs every allocator once per
workload, in a rotating order), the median of --runs rounds.

Prints time and peak RSS as ratios to glibc's (measured in the same run),
a geometric mean per allocator, and writes the table (markdown) to --out.

    make bench-preload            # or:
    python3 preload/bench/run.py --preload build-release/libslabkit-preload.so
"""
import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = {
    "jemalloc": (LIBDIR + "/libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": (LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "mimalloc": (LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0"),
}

PY_SCRIPT = r'''
import json, random
random.seed(7)
d = {}
for i in range(150000):
    k = "k%d" % random.randrange(50000)
    d[k] = [str(j) * (j % 5) for j in range(i % 17)] + [{"n": i, "s": "y" * (i % 200)}]
    if i % 4 == 0:
        d.pop("k%d" % random.randrange(50000), None)
s = json.dumps(d, sort_keys=True)
print(len(json.loads(s)), len(s))
'''

SQL = r'''
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
INSERT INTO t SELECT i, i % 997, printf('name-%d-%s', i, substr('abcdefghij', 1 + i % 10)), (i * 7919) % 10007 FROM n;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT grp, count(*), sum(val) FROM t GROUP BY grp ORDER BY 3 DESC LIMIT 3;
DELETE FROM t WHERE val < 3000;
SELECT count(*), sum(val) FROM t;
'''

PERL = r'''
my %h;
for my $i (1 .. 400000) {
    my $k = join '-', 'key', $i % 70001, reverse(split //, $i);
    $h{$k} .= chr(65 + $i % 26) x ($i % 13);
    delete $h{'key-' . ($i % 7919)} if $i % 3 == 0;
}
my $t = 0; $t += length($h{$_}) for keys %h;
print scalar(keys %h), " $t\n";
'''


def c_source():
    lines = ["#include <stdio.h>"]
    for i in range(1, 301):
        lines.append("static int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += (i * %d) ^ (s >> 3); return s; }" % (i, i))
        lines.append("struct s%d { int a[%d]; double d; };" % (i, i % 9 + 1))
    lines.append("int main(void) { int t = 0;")
    lines += ["  t += f%d(%d);" % (i, i) for i in range(1, 301)]
    lines.append('  printf("%d\\n", t); return 0; }')
    return "\n".join(lines) + "\n"


def git_script(work):
    return r'''set -e
d=$(mktemp -d %s/git.XXXXXX); cd "$d"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e HOME="$d" GIT_CONFIG_NOSYSTEM=1
git -c init.defaultBranch=main init -q .
python3 - <<'EOF'
for i in range(800):
    open("f%%d.txt" %% i, "w").write(("line %%d of file %%d\n" %% (0, i)) * (i %% 50 + 1))
EOF
git add -A && git commit -q -m one
python3 - <<'EOF'
for i in range(0, 800, 3):
    open("f%%d.txt" %% i, "a").write("changed\n" * (i %% 7 + 1))
EOF
git add -A && git commit -q -m two
git log --stat >/dev/null
git gc -q
rm -rf "$d"
''' % work


class Workload:
    def __init__(self, name, argv, env=None, server=None):
        self.name, self.argv, self.env, self.server = name, argv, env or {}, server


def build_workloads(work):
    progs = {}
    for src in ("prodcons", "server", "large"):
        exe = os.path.join(work, src)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, os.path.join(HERE, src + ".c")], check=True)
        progs[src] = exe
    with open(os.path.join(work, "alloc.py"), "w") as f:
        f.write(PY_SCRIPT)
    with open(os.path.join(work, "q.sql"), "w") as f:
        f.write(SQL)
    with open(os.path.join(work, "h.pl"), "w") as f:
        f.write(PERL)
    with open(os.path.join(work, "prog.c"), "w") as f:
        f.write(c_source())
    with open(os.path.join(work, "git.sh"), "w") as f:
        f.write(git_script(work))
    py = shutil.which("python3")
    w = [
        Workload("python3", [py, os.path.join(work, "alloc.py")], {"PYTHONMALLOC": "malloc"}),
        Workload("sqlite3", ["sh", "-c", "sqlite3 :memory: < %s/q.sql" % work]),
        Workload("gcc -O2", ["gcc", "-O2", "-c", "-o", os.path.join(work, "prog.o"), os.path.join(work, "prog.c")]),
        Workload("git", ["bash", os.path.join(work, "git.sh")]),
        Workload("perl", ["perl", os.path.join(work, "h.pl")]),
        Workload("redis", None, server="redis"),
        Workload("producer/consumer", [progs["prodcons"]]),
        Workload("server threads", [progs["server"]]),
        Workload("large blocks", [progs["large"]]),
    ]
    return [x for x in w if x.server or shutil.which(x.argv[0]) or os.path.exists(x.argv[0])]


def alloc_env(alloc, preload):
    if alloc == "glibc":
        return {}
    if alloc in PEERS:
        return {"LD_PRELOAD": PEERS[alloc][0]}
    return {"LD_PRELOAD": preload, "SLABKIT_BACKEND": alloc}


def run_once(wl, alloc, preload, work):
    """(seconds, peak RSS KiB, ok) of one fresh process tree."""
    env = dict(os.environ)
    env.update(wl.env)
    env.update(alloc_env(alloc, preload))
    if wl.server == "redis":
        return run_redis(env, work)
    t0 = time.monotonic()
    p = subprocess.Popen(wl.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    return dt, ru.ru_maxrss, p.returncode == 0 and "slabkit:" not in err


def run_redis(env, work):
    """redis-server (under the allocator) on a Unix socket (a TCP port
    picked at random can be taken, and the benchmark would then talk to
    whatever holds it), driven by redis-benchmark (glibc) with bounded
    counts and a timeout; time of the benchmark, peak RSS of the server."""
    d = tempfile.mkdtemp(dir=work)
    sock = os.path.join(d, "redis.sock")
    srv = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                            "--save", "", "--appendonly", "no", "--dir", d], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-s", sock, "ping"], capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    t0 = time.monotonic()
    try:
        b = subprocess.run(["redis-benchmark", "-s", sock, "-n", "100000", "-c", "16", "-P", "16",
                            "-r", "100000", "-d", "256", "-q", "-t", "set,get,lpush,lpop,sadd,hset"],
                           capture_output=True, timeout=600)
        ok = b.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    dt = time.monotonic() - t0
    subprocess.run(["redis-cli", "-s", sock, "shutdown", "nosave"], capture_output=True, timeout=60)
    # Reaped with wait4 for its rusage (peak RSS); killed if it is still
    # up 30 s after the shutdown.
    for _ in range(300):
        pid, status, ru = os.wait4(srv.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
    else:
        srv.kill()
        _, status, ru = os.wait4(srv.pid, 0)
    srv.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(d, ignore_errors=True)
    return dt, ru.ru_maxrss, ok and srv.returncode == 0


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preload", required=True, help="path to libslabkit-preload.so")
    ap.add_argument("--backends", default="slab,slub,slob,uma")
    ap.add_argument("--runs", type=int, default=3, help="rounds (median of them; at least 3)")
    ap.add_argument("--out", default="preload-bench.md", help="where the markdown table goes")
    ap.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    args = ap.parse_args()
    if args.runs < 3:
        sys.exit("--runs must be at least 3 (medians)")
    allocs = ["glibc"] + args.backends.split(",")
    for name, (path, pkg) in PEERS.items():
        if os.path.exists(path):
            allocs.append(name)
        else:
            print("skipped: %s (%s is not installed: apt-get install %s)" % (name, path, pkg))
    work = tempfile.mkdtemp(prefix="slabkit-pbench.")
    try:
        wls = build_workloads(work)
        if args.only:
            keep = set(args.only.split(","))
            wls = [w for w in wls if w.name in keep]
        res = {(w.name, a): [] for w in wls for a in allocs}
        failed = set()
        for r in range(args.runs):
            for w in wls:
                order = allocs[r % len(allocs):] + allocs[:r % len(allocs)]
                for a in order:
                    dt, rss, ok = run_once(w, a, args.preload, work)
                    if not ok:
                        failed.add((w.name, a))
                    res[(w.name, a)].append((dt, rss))
            print("round %d/%d done" % (r + 1, args.runs), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
    lines = []
    lines.append("Time and peak RSS as ratios to glibc's (same run, median of %d interleaved rounds, "
                 "each run a fresh process; time ratio / RSS ratio; < 1 is better)." % args.runs)
    lines.append("")
    lines.append("| workload | glibc (s, MiB) | " + " | ".join(allocs[1:]) + " |")
    lines.append("|---|---|" + "---|" * (len(allocs) - 1))
    tr = {a: [] for a in allocs}
    rr = {a: [] for a in allocs}
    for w in wls:
        g_t, g_r = med[(w.name, "glibc")]
        cells = ["%.2f s, %.0f MiB" % (g_t, g_r / 1024)]
        for a in allocs[1:]:
            t, rs = med[(w.name, a)]
            tr[a].append(t / g_t)
            rr[a].append(rs / g_r)
            mark = " FAILED" if (w.name, a) in failed else ""
            cells.append("%.2f / %.2f%s" % (t / g_t, rs / g_r, mark))
        lines.append("| %s | %s |" % (w.name, " | ".join(cells)))
    lines.append("| **geometric mean** | 1 / 1 | " +
                 " | ".join("**%.2f / %.2f**" % (geomean(tr[a]), geomean(rr[a])) for a in allocs[1:]) + " |")
    if failed:
        lines.append("")
        lines.append("FAILED runs (non-zero exit or a slabkit message): " +
                     ", ".join("%s on %s" % f for f in sorted(failed)))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    print("table written to %s" % args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
