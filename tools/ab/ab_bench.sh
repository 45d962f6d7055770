#!/usr/bin/env bash
# A/B the fast paths of two builds through the shared library, in one run:
#   tools/ab/ab_bench.sh A_BUILD_DIR B_BUILD_DIR [backends] [runs] [env...]
# Each build dir must hold libslabkit.so (a Release build).  For every
# backend the two libraries run alternately `runs` times (default 7), each
# a fresh process of tools/ab/pairs.c; prints medians and B/A.  Extra
# arguments of the form VAR=value are set for the B runs only (for
# example SLABKIT_DEBUG=Z to price a debug letter against debug off).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd)
backends=${3:-slab,slub,slob,uma}; runs=${4:-7}; shift $(( $# < 4 ? $# : 4 )); benv=("$@")
exe=$(mktemp -d)/pairs
cc -O2 -o "$exe" "$here/pairs.c" -I"$root/include" -L"$A" -lslabkit -lpthread
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf "%-8s %-11s %9s %9s %7s\n" backend workload "A ns" "B ns" "B/A"
for b in ${backends//,/ }; do
  out=$(mktemp -d)
  for i in $(seq "$runs"); do
    SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$b LD_LIBRARY_PATH=$A "$exe" >> "$out/A"
    env SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$b LD_LIBRARY_PATH=$B "${benv[@]}" "$exe" >> "$out/B"
  done
  for w in $(awk '{print $1}' "$out/A" | sort -u); do
    a=$(awk -v w=$w '$1==w {print $2}' "$out/A" | med); bb=$(awk -v w=$w '$1==w {print $2}' "$out/B" | med)
    printf "%-8s %-11s %9.2f %9.2f %7.3f\n" "$b" "$w" "$a" "$bb" "$(echo "$bb / $a" | bc -l)"
  done
  rm -rf "$out"
done
