#!/usr/bin/env bash
# Real programs, unchanged, under libslabkit-preload.so: each runs once
# under glibc's malloc and once per backend, and must give glibc's output
# and exit code.  Run by ctest as "programs" (normal build only):
#
#   tests/programs.sh <path/to/libslabkit-preload.so> <backends, comma-separated>
#
# python3 (PYTHONMALLOC=malloc), sqlite3, gcc -O2 (the object file is
# compared), git (init/add/commit/log with fixed dates: same hashes), perl,
# redis-server driven by redis-benchmark over a Unix socket (bounded counts)
# then checked with redis-cli.  A program that is not installed is reported
# as skipped (make deps installs them all).  Any slabkit message on stderr
# is a failure too.
set -u
preload=$1
IFS=, read -r -a backends <<<"${2:-slab,slub,slob,uma}"
work=$(mktemp -d /tmp/slabkit-programs.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
failures=0

# run <label> <allocator> <cmd...>: output in $work/<label>.<allocator>.{out,rc,err}
run() {
	local label=$1 alloc=$2
	shift 2
	local out=$work/$label.$alloc
	if [ "$alloc" = glibc ]; then
		"$@" >"$out.out" 2>"$out.err"
	else
		env LD_PRELOAD="$preload" SLABKIT_BACKEND="$alloc" "$@" >"$out.out" 2>"$out.err"
	fi
	echo $? >"$out.rc"
}

# check <label> [files to compare besides stdout...]
check() {
	local label=$1 b ok
	for b in "${backends[@]}"; do
		ok=1
		cmp -s "$work/$label.glibc.out" "$work/$label.$b.out" || ok=0
		cmp -s "$work/$label.glibc.rc" "$work/$label.$b.rc" || ok=0
		grep -q "^slabkit:" "$work/$label.$b.err" && ok=0
		if [ $ok = 1 ]; then
			echo "ok   $label on $b (exit $(cat "$work/$label.$b.rc"))"
		else
			echo "FAIL $label on $b: output or exit code differs from glibc's"
			diff <(head -c 2000 "$work/$label.glibc.out") <(head -c 2000 "$work/$label.$b.out") | head -10
			echo "  exit: glibc $(cat "$work/$label.glibc.rc"), $b $(cat "$work/$label.$b.rc")"
			head -5 "$work/$label.$b.err"
			failures=$((failures + 1))
		fi
	done
}

have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "skipped: $1 is not installed"
	return 1
}

each() { # each <label> <cmd...>: run under glibc and every backend, then check
	local label=$1 a
	shift
	for a in glibc "${backends[@]}"; do run "$label" "$a" "$@"; done
	check "$label"
}

# --- python3 ---
if have python3; then
	cat >"$work/alloc.py" <<'EOF'
import json, random
random.seed(12345)
objs = {}
for i in range(30000):
    k = "k%d" % random.randrange(20000)
    objs[k] = [str(j) * (j % 7) for j in range(i % 23)] + [{"n": i, "s": "x" * (i % 300)}]
    if i % 5 == 0:
        objs.pop("k%d" % random.randrange(20000), None)
blob = json.dumps(objs, sort_keys=True)
back = json.loads(blob)
words = sorted(set(blob.split('"')))[:2000]
print(len(objs), len(blob), len(back), sum(map(len, words)), hash(tuple(sorted(back)[:50])) != 0)
EOF
	PYTHONMALLOC=malloc PYTHONHASHSEED=0 each python3 python3 "$work/alloc.py"
fi

# --- sqlite3 ---
if have sqlite3; then
	cat >"$work/q.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, i % 997, printf('name-%d-%s', i, substr('abcdefghij', 1 + i % 10)), (i * 7919) % 10007 FROM n;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT grp, count(*), sum(val), max(name) FROM t GROUP BY grp ORDER BY sum(val) DESC LIMIT 5;
DELETE FROM t WHERE val < 3000;
SELECT count(*), sum(val), min(name) FROM t;
SELECT grp, count(*) FROM t WHERE name LIKE 'name-1%' GROUP BY grp ORDER BY 2 DESC, 1 LIMIT 3;
EOF
	each sqlite3 sh -c "sqlite3 :memory: < '$work/q.sql'"
fi

# --- gcc -O2: the object file must be the same ---
if have gcc; then
	{
		echo '#include <stdio.h>'
		for i in $(seq 1 150); do
			echo "static int f$i(int x) { int s = 0; for (int i = 0; i < x; i++) s += (i * $i) ^ (s >> 3); return s; }"
			echo "struct s$i { int a[$((i % 9 + 1))]; double d; };"
		done
		echo 'int main(void) { int t = 0;'
		for i in $(seq 1 150); do echo "  t += f$i($i);"; done
		echo '  printf("%d\n", t); return 0; }'
	} >"$work/prog.c"
	for a in glibc "${backends[@]}"; do
		run gcc "$a" sh -c "gcc -O2 -c -o '$work/prog.$a.o' '$work/prog.c' && sha256sum < '$work/prog.$a.o'"
	done
	check gcc
fi

# --- git: fixed names and dates give the same hashes ---
if have git; then
	gitrun() {
		local dir=$work/repo.$1
		mkdir -p "$dir" && cd "$dir" || return 1
		export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org GIT_COMMITTER_NAME=t \
			GIT_COMMITTER_EMAIL=t@example.org GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' \
			GIT_COMMITTER_DATE='2020-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=$dir
		git -c init.defaultBranch=main init -q . || return 1
		for c in 1 2; do
			for i in $(seq 1 60); do
				printf 'file %d commit %d\n%s\n' "$i" "$c" "$(seq -s, 1 $((i * c % 97)))" >"f$i.txt"
			done
			git add -A && git commit -q -m "commit $c" || return 1
		done
		git log --stat --format='%H %s' && git gc -q && git fsck -q && git count-objects -v | grep -v size
	}
	for a in glibc "${backends[@]}"; do
		if [ "$a" = glibc ]; then
			(gitrun "$a") >"$work/git.$a.out" 2>"$work/git.$a.err"
		else
			(export LD_PRELOAD="$preload" SLABKIT_BACKEND="$a"; gitrun "$a") >"$work/git.$a.out" 2>"$work/git.$a.err"
		fi
		echo $? >"$work/git.$a.rc"
	done
	check git
fi

# --- perl ---
if have perl; then
	cat >"$work/h.pl" <<'EOF'
my %h; my @keep;
for my $i (1 .. 200000) {
    my $k = join '-', 'key', $i % 50021, reverse(split //, $i);
    $h{$k} .= chr(65 + $i % 26) x ($i % 13);
    delete $h{'key-' . ($i % 7919)} if $i % 3 == 0;
    push @keep, substr($k, 0, 10) if $i % 100 == 0;
}
my $total = 0; $total += length($h{$_}) for keys %h;
my $s = join ',', sort @keep;
print scalar(keys %h), " $total ", length($s), " ", substr($s, 0, 60), "\n";
EOF
	each perl perl "$work/h.pl"
fi

# --- redis: server on a Unix socket, bounded benchmark, then redis-cli ---
if have redis-server && have redis-benchmark && have redis-cli; then
	redisrun() { # redisrun <allocator>
		# A Unix socket, not a TCP port: a port picked at random can be
		# taken (another server, or a client's ephemeral port), and the
		# benchmark then talks to whatever holds it.
		local dir=$work/redis.$1
		mkdir -p "$dir"
		local sock=$dir/redis.sock
		local server=(redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save ''
			      --appendonly no --dir "$dir" --daemonize no)
		if [ "$1" = glibc ]; then
			"${server[@]}" >"$dir/server.log" 2>&1 &
		else
			LD_PRELOAD="$preload" SLABKIT_BACKEND="$1" "${server[@]}" >"$dir/server.log" 2>&1 &
		fi
		local pid=$!
		for _ in $(seq 50); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
		# Bounded: a server that died must fail the check, not hang it.
		timeout 300 redis-benchmark -s "$sock" -n 20000 -c 8 -P 8 -r 5000 -d 200 -q \
			-t set,get,lpush,lpop,sadd,hset,mset >/dev/null 2>&1
		echo "benchmark exit $?"
		local cli=(timeout 60 redis-cli -s "$sock")
		"${cli[@]}" flushall
		for i in $(seq 1 300); do echo "SET k$i $(printf 'v%.0s' $(seq 1 $((i % 40 + 1))))"; done | "${cli[@]}" >/dev/null
		for i in $(seq 1 200); do echo "RPUSH l $i"; done | "${cli[@]}" >/dev/null
		"${cli[@]}" dbsize
		"${cli[@]}" get k123
		"${cli[@]}" llen l
		"${cli[@]}" lrange l 100 105
		"${cli[@]}" shutdown nosave >/dev/null 2>&1
		wait "$pid"
		echo "server exit $?"
		grep -h slabkit "$dir/server.log" >&2 || true
	}
	for a in glibc "${backends[@]}"; do
		redisrun "$a" >"$work/redis.$a.out" 2>"$work/redis.$a.err"
		echo $? >"$work/redis.$a.rc"
	done
	check redis
fi

if [ $failures -ne 0 ]; then
	echo "programs: $failures mismatches"
	exit 1
fi
echo "programs: every program gave glibc's output on every backend"
