#!/usr/bin/env bash
# Two builds' slabkit-bench, run alternately in the same minutes, compared
# cell by cell: for each workload and backend, the median over the runs of
# each build's ratio to glibc (measured in that same run), and new/old.
#   tools/ab/bench_builds.sh OLD_BUILD NEW_BUILD RUNS [slabkit-bench options...]
# Each build dir holds tools/slabkit-bench (a Release build).  Example, the
# fast paths of the tree before the house issue against now:
#   tools/ab/bench_builds.sh /tmp/old/build build-release 3 \
#     --backend glibc,slab,slub,slob,uma --workload pairs,batches,remote --rounds 1
# Rows whose new/old is above 1.15 or below 0.87 are marked: under ~15% is a
# tie on this shared machine.
set -euo pipefail
old=$1/tools/slabkit-bench; new=$2/tools/slabkit-bench; runs=$3; shift 3
out=$(mktemp -d)
for i in $(seq "$runs"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    # Rows: workload allocator ns/op Mops/s spread ratio ... ("0.76x").
    "$bin" --no-peers --no-report "$@" | awk -v s="$side" \
      '$6 ~ /^[0-9.]+x$/ && $2 != "glibc" {sub("x", "", $6); print s, $1, $2, $6}' >> "$out/rows"
  done
done
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf "%-20s %-6s %10s %10s %8s\n" workload alloc "old/glibc" "new/glibc" "new/old"
awk '{print $2, $3}' "$out/rows" | awk '!seen[$0]++' | while read -r w a; do
  o=$(awk -v w="$w" -v a="$a" '$1=="old" && $2==w && $3==a {print $4}' "$out/rows" | med)
  n=$(awk -v w="$w" -v a="$a" '$1=="new" && $2==w && $3==a {print $4}' "$out/rows" | med)
  awk -v w="$w" -v a="$a" -v o="$o" -v n="$n" 'BEGIN {
    r = n / o; m = r > 1.15 ? "  slower" : (r < 0.87 ? "  faster" : "")
    printf "%-20s %-6s %9.2fx %9.2fx %8.2f%s\n", w, a, o, n, r, m }'
done
rm -rf "$out"
