#!/usr/bin/env bash
# A zone with a limit (issue 8, target 4: "zones with a limit must not take
# a mutex on every allocation"): uma_zalloc+uma_zfree pairs on a zone
# limited far above its live set (uma_zone_set_max 2^20, 64 B items),
# against glibc's malloc(64)+free and the same zone without a limit, in one
# process (tools/ab/pair_ratios.sh).
#   tools/ab/limit_ratios.sh ROUNDS BACKEND BUILD_DIR...   (AB_BATCH=1: one object at a time)
set -euo pipefail
rounds=$1; backend=$2; shift 2
exec "$(dirname "$0")/pair_ratios.sh" "$rounds" "$backend" "uma64_limit/glibc64 uma64_limit/uma64" "$@"
