#!/usr/bin/env bash
# kill9: herald without --state-dir under a soak; at a third of the churn it is killed with
# SIGKILL (a crash, a lost machine) and started again on the same ports. What it held is gone:
# its log starts in a new epoch, and every client that comes back with an offset of the old one
# must be told recovered: false (and reload from its backend), never handed a notification twice.
#
# Checks: the epoch changed; the soak (with --allow-unrecovered) passes: nothing owed lost,
# duplicated or out of order, every client back; its summary counts returns answered
# recovered: false in a new epoch (the crash was noticed) and none in the same epoch.
#
#   tests/chaos/kill9.sh
#   CHAOS_DURATION=30m CHAOS_CLIENTS=10000 tests/chaos/kill9.sh
set -euo pipefail
SCENARIO=kill9
# shellcheck source=tests/chaos/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
chaos_init

CLIENTS=${CHAOS_CLIENTS:-2000}
PUBLIC=$(free_port)
CONTROL=$(free_port)
herald_start herald "$PUBLIC" "$CONTROL"

soak_start --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" --pid-file "$OUT/herald.pid" \
  --clients "$CLIENTS" --allow-unrecovered
wait_ramp "$CLIENTS" 300 "$CONTROL"

at $((CHURN / 3))
EPOCH_BEFORE=$(log_epoch "$CONTROL")
chaos_log "SIGKILL to herald (epoch $EPOCH_BEFORE)"
herald_stop herald KILL 10
sleep 1
herald_start herald "$PUBLIC" "$CONTROL"
EPOCH_AFTER=$(log_epoch "$CONTROL")
chaos_log "herald started again (epoch $EPOCH_AFTER)"

soak_wait 120
soak_verdict "the soak's checks"
[[ -n $EPOCH_BEFORE && -n $EPOCH_AFTER && $EPOCH_BEFORE != "$EPOCH_AFTER" ]] ||
  chaos_fail "the log's epoch did not change across the crash ($EPOCH_BEFORE, then $EPOCH_AFTER)"
soak_expect returns.new_epoch '>' 0
soak_expect returns.refused == 0
