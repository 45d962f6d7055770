#!/usr/bin/env bash
# Instructions per alloc+free pair of two builds, counted exactly by
# valgrind (callgrind), so that a loaded machine's noise does not matter:
#   tools/ab/ab_instructions.sh A_BUILD_DIR B_BUILD_DIR [backends]
# Under valgrind slabkit's per-CPU slots run in lock mode (no rseq), so this
# prices what a change adds to the C around the restartable sequences (and
# the lock-mode pushes), not the sequences themselves.  Each figure is
# (Ir at 2N pairs - Ir at N pairs) / N, which removes start-up costs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); backends=${3:-slab,slub,slob,uma}
exe=$(mktemp -d)/pairs
cc -O2 -o "$exe" "$here/pairs.c" -I"$root/include" -L"$A" -lslabkit -lpthread
N=6400
# Under valgrind slabkit would annotate its objects for memcheck (the debug
# path, docs/debug.md): measure the allocators themselves.
ir() { # lib backend workload pairs
  SLABKIT_SANITIZE=off SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$2 LD_LIBRARY_PATH=$1 valgrind --tool=callgrind \
    --callgrind-out-file=/dev/null "$exe" "$4" "$3" 2>&1 >/dev/null | awk '/Collected/ {print $4}'
}
printf "%-8s %-11s %9s %9s %7s\n" backend workload "A ins" "B ins" "B-A"
for b in ${backends//,/ }; do
  for w in kmalloc64 cache64 uma64 malloc9_64; do
    a1=$(ir "$A" "$b" "$w" $N); a2=$(ir "$A" "$b" "$w" $((2 * N)))
    b1=$(ir "$B" "$b" "$w" $N); b2=$(ir "$B" "$b" "$w" $((2 * N)))
    # 5 repetitions of N pairs each in pairs.c
    ia=$(echo "($a2 - $a1) / (5 * $N)" | bc -l); ib=$(echo "($b2 - $b1) / (5 * $N)" | bc -l)
    printf "%-8s %-11s %9.1f %9.1f %+7.1f\n" "$b" "$w" "$ia" "$ib" "$(echo "$ib - $ia" | bc -l)"
  done
done
