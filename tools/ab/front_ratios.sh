#!/usr/bin/env bash
# The front ends' step (issue 8, target 4) of one or more builds, as ratios
# measured inside each process: malloc(9) pair / kmalloc pair and
# uma_zalloc pair / kmem_cache pair, 64 B, through each build's
# libslabkit.so.  The builds run alternately `rounds` times; each run is
# tools/ab/pairs.c with the best of AB_REPS (default 300) repetitions of
# 8,192 pairs, which keeps a loaded machine's preemptions out; medians of
# the per-run ratios are printed.
#   tools/ab/front_ratios.sh ROUNDS BACKEND BUILD_DIR...   (AB_BATCH=1: one object at a time)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
rounds=$1; backend=$2; shift 2
first=$(cd "$1" && pwd)
exe=$(mktemp -d)/pairs
cc -O2 -o "$exe" "$here/pairs.c" -I"$root/include" -L"$first" -lslabkit -lpthread
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
out=$(mktemp)
for i in $(seq "$rounds"); do
  for lib in "$@"; do
    AB_REPS=${AB_REPS:-300} SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$backend LD_LIBRARY_PATH=$lib "$exe" 8192 |
      awk -v L="$lib" '{v[$1]=$2} END {print L, v["kmalloc64"], v["cache64"], v["uma64"], v["malloc9_64"]}' >> "$out"
  done
done
for lib in "$@"; do
  awk -v L="$lib" '$1==L {print $5/$2, $4/$3, $2, $3, $4, $5}' "$out" > "$out.l"
  printf "%-30s malloc9/kmalloc %.3f  uma/cache %.3f  (ns: kmalloc %.2f cache %.2f uma %.2f malloc9 %.2f)\n" "$lib" \
    "$(cut -d' ' -f1 "$out.l" | med)" "$(cut -d' ' -f2 "$out.l" | med)" "$(cut -d' ' -f3 "$out.l" | med)" \
    "$(cut -d' ' -f4 "$out.l" | med)" "$(cut -d' ' -f5 "$out.l" | med)" "$(cut -d' ' -f6 "$out.l" | med)"
done
rm -f "$out" "$out.l"
