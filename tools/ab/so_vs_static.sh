#!/usr/bin/env bash
# What the shared library costs against a static link (issue 8, targets 1
# and 2): tools/ab/pairs.c built three ways against one Release build dir,
#   so      libslabkit.so, called through the PLT (what pkg-config gives)
#   noplt   libslabkit.so, the caller built with -fno-plt (call *GOT)
#   static  libslabkit.a
# run alternately `rounds` times (AB_REPS=300 best-of repetitions each);
# prints the median ns of each pair and its median ratio to glibc's
# malloc(64)+free measured in the same process.  AB_BATCH=1 (the default
# here) is one object at a time, as slabkit-bench's pairs.
#   tools/ab/so_vs_static.sh BUILD_DIR [backend] [rounds]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
B=$(cd "$1" && pwd); backend=${2:-slub}; rounds=${3:-5}
[ -f "$B/libslabkit.a" ] || cmake --build "$B" --target slabkit_static >/dev/null
d=$(mktemp -d)
cc -O2 -o "$d/so" "$here/pairs.c" -I"$root/include" -L"$B" -lslabkit -lpthread
cc -O2 -fno-plt -o "$d/noplt" "$here/pairs.c" -I"$root/include" -L"$B" -lslabkit -lpthread
cc -O2 -o "$d/static" "$here/pairs.c" -I"$root/include" "$B/libslabkit.a" \
  $(pkg-config --libs ck hwloc liburcu-memb) -lpthread
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for i in $(seq "$rounds"); do
  for v in so noplt static; do
    AB_BATCH=${AB_BATCH:-1} AB_REPS=${AB_REPS:-300} SLABKIT_TICK_MS=-1 SLABKIT_BACKEND=$backend \
      LD_LIBRARY_PATH=$B "$d/$v" 8192 > "$d/$v.$i"
  done
done
printf "%-7s %-11s %8s %10s\n" build workload "ns/pair" "vs glibc"
for v in so noplt static; do
  for w in cache64 kmalloc64 uma64 malloc9_64; do
    ns=$(cat "$d/$v".* | awk -v w=$w '$1==w {print $2}' | med)
    r=$(for i in $(seq "$rounds"); do awk -v w=$w '$1=="glibc64" {g=$2} $1==w {x=$2} END {print x/g}' "$d/$v.$i"; done | med)
    printf "%-7s %-11s %8.2f %9.3fx\n" "$v" "$w" "$ns" "$r"
  done
done
rm -rf "$d"
