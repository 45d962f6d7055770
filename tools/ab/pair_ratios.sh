#!/usr/bin/env bash
# Ratios between tools/ab/pairs.c's workloads, each taken inside one
# process, through each build's libslabkit.so.  The builds run alternately
# `rounds` times; each run is pairs.c with the best of AB_REPS (default 300)
# repetitions of 8,192 pairs, which keeps a loaded machine's preemptions
# out; medians of the per-run ratios (and of each side's ns) are printed.
#   tools/ab/pair_ratios.sh ROUNDS BACKEND "NUM/DEN ..." BUILD_DIR...
#   (AB_BATCH=1: one object at a time; pairs.c lists the workload names)
# front_ratios.sh and limit_ratios.sh are this with their ratios named.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
rounds=$1; backend=$2; ratios=$3; shift 3
first=$(cd "$1" && pwd)
exe=$(mktemp -d)/pairs
cc -O2 -o "$exe" "$here/pairs.c" -I"$root/include" -L"$first" -lslabkit -lpthread
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
out=$(mktemp)
for i in $(seq "$rounds"); do
  for lib in "$@"; do
    AB_REPS=${AB_REPS:-300} SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$backend LD_LIBRARY_PATH=$lib "$exe" 8192 |
      awk -v L="$lib" -v R="$i" '{print R, L, $1, $2}' >> "$out"
  done
done
for lib in "$@"; do
  line=$(printf "%-30s" "$lib")
  for r in $ratios; do
    num=${r%/*}; den=${r#*/}
    # One line per run: num/den, num ns, den ns.
    awk -v L="$lib" -v N="$num" -v D="$den" '$2==L && $3==N {n[$1]=$4} $2==L && $3==D {d[$1]=$4}
      END {for (k in n) if (k in d) print n[k]/d[k], n[k], d[k]}' "$out" > "$out.l"
    line+=$(printf "  %s %.3f (%.2f/%.2f ns)" "$r" "$(cut -d' ' -f1 "$out.l" | med)" \
      "$(cut -d' ' -f2 "$out.l" | med)" "$(cut -d' ' -f3 "$out.l" | med)")
  done
  echo "$line"
done
rm -f "$out" "$out.l"
