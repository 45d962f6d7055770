#!/usr/bin/env bash
# A zone with a limit (issue 8, target 4: "zones with a limit must not take
# a mutex on every allocation"): uma_zalloc+uma_zfree pairs on a zone
# limited far above its live set (uma_zone_set_max 2^20, 64 B items),
# against the same zone without a limit and against glibc's malloc(64)+
# free, all in one process, through each build's libslabkit.so.  The
# builds run alternately `rounds` times; each run is tools/ab/pairs.c with
# the best of AB_REPS (default 300) repetitions of 8,192 pairs; medians of
# the per-run figures and ratios are printed.
#   tools/ab/limit_ratios.sh ROUNDS BACKEND BUILD_DIR...   (AB_BATCH=1: one object at a time)
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
      awk -v L="$lib" '{v[$1]=$2} END {print L, v["glibc64"], v["uma64"], v["uma64_limit"]}' >> "$out"
  done
done
for lib in "$@"; do
  awk -v L="$lib" '$1==L {print $4/$2, $4/$3, $2, $3, $4}' "$out" > "$out.l"
  printf "%-30s limited/glibc %.3f  limited/unlimited %.3f  (ns: glibc %.2f uma %.2f uma limited %.2f)\n" "$lib" \
    "$(cut -d' ' -f1 "$out.l" | med)" "$(cut -d' ' -f2 "$out.l" | med)" "$(cut -d' ' -f3 "$out.l" | med)" \
    "$(cut -d' ' -f4 "$out.l" | med)" "$(cut -d' ' -f5 "$out.l" | med)"
done
rm -f "$out" "$out.l"
