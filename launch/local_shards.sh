#!/usr/bin/env bash
# Runs a sweep as N parallel local processes (one shard each), then writes its report.
#
#   launch/local_shards.sh CONFIG WORKDIR N [REPORT_PREFIX]
#   launch/local_shards.sh configs/ablations/transfer_basics.py workdirs/tb 2 results/transfer_basics
#
# Each process takes every N-th group of runs (--shard=i/N); they share WORKDIR, and a source
# model needed by several shards is pretrained once under a file lock. Re-running the script
# skips finished runs and resumes interrupted ones from their checkpoints.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG WORKDIR N [REPORT_PREFIX]" >&2
  exit 2
fi
config=$1 workdir=$2 shards=$3 report=${4:-}
mkdir -p "$workdir"
pids=()
for ((i = 0; i < shards; i++)); do
  python -m lowres_jax.sweep --config="$config" --workdir="$workdir" --shard="$i/$shards" \
      --progress=false > "$workdir/shard$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "shard $i/$shards failed; see $workdir/shard$i.log" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] || exit "$status"
if [ -n "$report" ]; then
  python -m lowres_jax.report "$workdir" "$report"
else
  python -m lowres_jax.report "$workdir"
fi
