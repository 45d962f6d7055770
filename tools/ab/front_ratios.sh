#!/usr/bin/env bash
# The front ends' step (issue 8, target 4) of one or more builds, as ratios
# measured inside each process: malloc(9) pair / kmalloc pair and
# uma_zalloc pair / kmem_cache pair, 64 B (tools/ab/pair_ratios.sh).
#   tools/ab/front_ratios.sh ROUNDS BACKEND BUILD_DIR...   (AB_BATCH=1: one object at a time)
set -euo pipefail
rounds=$1; backend=$2; shift 2
exec "$(dirname "$0")/pair_ratios.sh" "$rounds" "$backend" "malloc9_64/kmalloc64 uma64/cache64" "$@"
