#!/usr/bin/env bash
# The main job, from a fresh machine: installs dependencies, builds, starts
# a local cluster (1 controller + 3 nodes, 24 partitions, 8 per node) on
# loopback with embedded defaults, loads sample data, takes a cluster
# snapshot through the admin API with visible progress and prints the
# result. With a terminal it keeps the cluster running until Ctrl-C, then
# stops it cleanly; without one (or with DEMO_EXIT=1) it stops at once.
#
# Knobs (environment): DEMO_DIR (default ./.demo), DEMO_KEYS (keys per
# partition, default 10000), DEMO_VALUE_SIZE (bytes, default 1024),
# DEMO_CAPACITY (checkpoints per node at once, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/build.sh build

DEMO_DIR=${DEMO_DIR:-$ROOT/.demo}
KEYS=${DEMO_KEYS:-10000}
VALUE_SIZE=${DEMO_VALUE_SIZE:-1024}
CAPACITY=${DEMO_CAPACITY:-2}
BIN=$ROOT/build/src
CTL=$BIN/cli/shutterctl
NODES=3
PER_NODE=8

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
pids=()
cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    echo "demo: stopping the cluster (SIGTERM)..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  echo "demo: stopped. State, logs and the repository are in $DEMO_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_file() {  # path, seconds
  local deadline=$((SECONDS + $2))
  until [[ -s $1 ]]; do
    if ((SECONDS > deadline)); then echo "demo: timed out waiting for $1" >&2; exit 1; fi
    sleep 0.1
  done
}

# --insecure: a local demo on loopback (see docs/operations.md for TLS).
"$BIN/controller/shutter-controller" --insecure --listen 127.0.0.1:0 \
  --data-dir "$DEMO_DIR/controller" --repository "$DEMO_DIR/repository" \
  --console-listen 127.0.0.1:0 \
  --port-file "$DEMO_DIR/controller.port" >"$DEMO_DIR/controller.log" 2>&1 &
pids+=($!)
wait_for_file "$DEMO_DIR/controller.port" 30
export SHUTTER_CONTROLLER=127.0.0.1:$(cat "$DEMO_DIR/controller.port")
echo "demo: controller at $SHUTTER_CONTROLLER"
# The console logs its address before the port file is written.
CONSOLE_URL=$(grep -o 'console on http[^ ]*' "$DEMO_DIR/controller.log" | head -1 | cut -d' ' -f3)
echo "demo: operator console at $CONSOLE_URL (open it to watch the snapshots)"

for i in $(seq 1 $NODES); do
  first=$(( (i - 1) * PER_NODE )); last=$(( first + PER_NODE - 1 ))
  "$BIN/node/shutter-node" --insecure --enable-data-plane \
    --node-id "n$i" --listen 127.0.0.1:0 \
    --controller "$SHUTTER_CONTROLLER" --data-dir "$DEMO_DIR/n$i" \
    --repository "$DEMO_DIR/repository" --partitions "$first-$last" \
    --checkpoint-capacity "$CAPACITY" --heartbeat-interval-ms 200 \
    --port-file "$DEMO_DIR/n$i.port" >"$DEMO_DIR/n$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 $NODES); do wait_for_file "$DEMO_DIR/n$i.port" 30; done

total=$((NODES * PER_NODE))
deadline=$((SECONDS + 30))
until [[ $("$CTL" partitions list 2>/dev/null | grep -c ' ok$') == "$total" ]]; do
  if ((SECONDS > deadline)); then echo "demo: partitions did not get leaders" >&2; exit 1; fi
  sleep 0.2
done

echo; echo "\$ shutterctl nodes list"; "$CTL" nodes list
echo; echo "\$ shutterctl data load --keys-per-partition $KEYS --value-size $VALUE_SIZE"
"$CTL" --timeout-ms 120000 data load --keys-per-partition "$KEYS" --value-size "$VALUE_SIZE"
echo; echo "\$ shutterctl partitions list"; "$CTL" partitions list
echo; echo "\$ shutterctl snapshots create --label demo --wait"
"$CTL" snapshots create --label demo --wait
echo; echo "\$ shutterctl snapshots list"; "$CTL" snapshots list
id=$("$CTL" snapshots list --limit 1 | awk 'NR==2 {print $1}')
echo; echo "\$ shutterctl snapshots show $id --timeline   # where the time went"
"$CTL" snapshots show "$id" --timeline
echo; echo "\$ shutterctl snapshots verify $id"; "$CTL" snapshots verify "$id"
# An incremental snapshot: rewrite 1% of the keys; the next snapshot
# stores only the new SSTs and shares the rest with the first.
few=$(( KEYS / 100 > 0 ? KEYS / 100 : 1 ))
echo; echo "\$ shutterctl data load --keys-per-partition $few   # 1% of the keys again"
"$CTL" --timeout-ms 120000 data load --keys-per-partition "$few" --value-size "$VALUE_SIZE"
echo; echo "\$ shutterctl snapshots create --label demo-incremental --wait"
"$CTL" snapshots create --label demo-incremental --wait >/dev/null
"$CTL" snapshots list
echo; echo "\$ shutterctl repository stats"; "$CTL" repository stats
# Restore: bring every partition back to the first snapshot (undoing the
# 1% rewrite) on the running cluster, in parallel through the same
# scheduler; each partition's epoch rises.
echo; echo "\$ shutterctl snapshots restore $id --dry-run"
"$CTL" snapshots restore "$id" --dry-run
echo; echo "\$ shutterctl snapshots restore $id --wait"
"$CTL" snapshots restore "$id" --wait >/dev/null
"$CTL" restores list
echo
echo "demo: cluster manifest: $DEMO_DIR/repository/snapshots/$id/CLUSTER_MANIFEST.json"
echo "demo: repository size: $(du -sh "$DEMO_DIR/repository" | cut -f1)"

if [[ -t 0 && "${DEMO_EXIT:-0}" != 1 ]]; then
  echo
  echo "demo: the cluster keeps running. In another shell:"
  echo "  export SHUTTER_CONTROLLER=$SHUTTER_CONTROLLER"
  echo "  $CTL snapshots create --wait"
  echo "demo: the console is at $CONSOLE_URL"
  echo "demo: press Ctrl-C to stop it."
  wait -n "${pids[@]}" || true
fi
