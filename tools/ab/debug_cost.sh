#!/usr/bin/env bash
# What each debug letter (and guard pages, and the sanitizer mode) costs on
# kmem_cache_alloc + kmem_cache_free of a 64-byte object, against debug off
# in the same run, through one build's libslabkit.so:
#   tools/ab/debug_cost.sh BUILD_DIR [backends] [pairs]
# Instruction counts are exact (valgrind callgrind, (Ir at 2N - Ir at N) /
# N, per-CPU slots in lock mode); wall-clock figures are the median of 5
# interleaved rounds, each the best of pairs.c's 5 repetitions, so they
# carry the machine's noise: read them as ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
B=$(cd "$1" && pwd); backends=${2:-slub}; PAIRS=${3:-20000}
exe=$(mktemp -d)/pairs
cc -O2 -o "$exe" "$here/pairs.c" -I"$root/include" -L"$B" -lslabkit -lpthread
variants=("off" "F" "Z" "P" "U" "T" "A" "FZPU" "guard" "guard1/100" "sanitize")
envof() { # variant -> environment assignments
  case $1 in
    off) echo "SLABKIT_DEBUG=" ;;
    guard) echo "SLABKIT_GUARD=ab64" ;;
    guard1/100) echo "SLABKIT_GUARD=sample=100" ;;
    sanitize) echo "SLABKIT_SANITIZE=on" ;;
    *) echo "SLABKIT_DEBUG=$1,ab64" ;;
  esac
}
run() { # backend variant pairs [valgrind...]
  local b=$1 v=$2 n=$3; shift 3
  env SLABKIT_SANITIZE=off $(envof "$v") SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$b LD_LIBRARY_PATH=$B \
    "$@" "$exe" "$n" cache64 2>/dev/null
}
ir() { # backend variant pairs
  env SLABKIT_SANITIZE=off $(envof "$2") SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$1 LD_LIBRARY_PATH=$B \
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$3" cache64 2>&1 >/dev/null |
    awk '/Collected/ {print $4}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for b in ${backends//,/ }; do
  declare -A ins ns
  N=3200
  for v in "${variants[@]}"; do
    a1=$(ir "$b" "$v" $N); a2=$(ir "$b" "$v" $((2 * N)))
    ins[$v]=$(echo "($a2 - $a1) / (5 * $N)" | bc -l)
  done
  declare -A samples
  for round in 1 2 3 4 5; do
    for v in "${variants[@]}"; do
      samples[$v]+="$(run "$b" "$v" "$PAIRS" | awk '{print $2}') "
    done
  done
  printf "%-8s %-11s %10s %7s %10s %7s\n" backend variant "ins/pair" ratio "ns/pair" ratio
  for v in "${variants[@]}"; do
    ns[$v]=$(echo ${samples[$v]} | tr ' ' '\n' | median)
    printf "%-8s %-11s %10.1f %7.2f %10.1f %7.2f\n" "$b" "$v" "${ins[$v]}" \
      "$(echo "${ins[$v]} / ${ins[off]}" | bc -l)" "${ns[$v]}" "$(echo "${ns[$v]} / ${ns[off]}" | bc -l)"
  done
  unset ins ns samples
done
