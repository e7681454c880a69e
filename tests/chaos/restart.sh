#!/usr/bin/env bash
# restart: herald with --state-dir under a soak; at a third of the churn it gets SIGTERM, as an
# operator's restart would send, and is started again on the same ports with the same state
# directory once it exited. Its clients are closed over --drain-time (1012, or a transport close
# for Socket.IO), reconnect while it is down until it answers again, and must recover everything.
#
# Checks: herald exits 0 on SIGTERM and leaves its state; the log's epoch is the same before and
# after (a push's offset names it); the soak passes without --allow-unrecovered (every return
# answered recovered: true, nothing owed lost, duplicated or out of order; every client back) and
# its summary counts no return refused at all, in a new epoch either.
#
#   tests/chaos/restart.sh
#   CHAOS_DURATION=30m CHAOS_CLIENTS=10000 tests/chaos/restart.sh
set -euo pipefail
SCENARIO=restart
# shellcheck source=tests/chaos/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
chaos_init

CLIENTS=${CHAOS_CLIENTS:-2000}
PUBLIC=$(free_port)
CONTROL=$(free_port)
ARGS=(--state-dir "$OUT/state")
herald_start herald "$PUBLIC" "$CONTROL" "${ARGS[@]}"

soak_start --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" --pid-file "$OUT/herald.pid" \
  --clients "$CLIENTS"
wait_ramp "$CLIENTS" 300 "$CONTROL"

at $((CHURN / 3))
EPOCH_BEFORE=$(log_epoch "$CONTROL")
chaos_log "SIGTERM to herald (epoch $EPOCH_BEFORE)"
# --drain-time and --shutdown-timeout, 5 s each, and the state written.
herald_stop herald TERM 30
((REAPED == 0)) || chaos_fail "herald exited $REAPED on SIGTERM"
[[ -n $(ls -A "$OUT/state" 2>/dev/null) ]] || chaos_fail "herald left nothing in --state-dir"
herald_start herald "$PUBLIC" "$CONTROL" "${ARGS[@]}"
EPOCH_AFTER=$(log_epoch "$CONTROL")
chaos_log "herald started again (epoch $EPOCH_AFTER)"

soak_wait 120
soak_verdict "the soak's checks"
[[ -n $EPOCH_BEFORE && $EPOCH_BEFORE == "$EPOCH_AFTER" ]] ||
  chaos_fail "the log's epoch changed across the restart ($EPOCH_BEFORE, then $EPOCH_AFTER)"
soak_expect returns.new_epoch == 0
soak_expect returns.refused == 0
soak_expect returns.recovered '>' 0
