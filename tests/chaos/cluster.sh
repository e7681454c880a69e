#!/usr/bin/env bash
# cluster: three herald nodes on one redis-server, under a soak whose clients and pushers spread
# over the three. In the churn phase:
#   1/4  node 2 is killed with SIGKILL: its clients move to the other nodes and take their
#        Socket.IO sessions back from Redis; at 3/8 it is started again and takes clients anew;
#   1/2  Redis goes away for CHAOS_REDIS_OUTAGE_SECONDS (10 s) and comes back with its data.
#        CHAOS_REDIS_OUTAGE=restart (the default): SHUTDOWN SAVE, then redis-server started again
#        on the same dump: connections refused, then a Redis holding the stream and epoch it had.
#        CHAOS_REDIS_OUTAGE=pause: SIGSTOP, then SIGCONT: Redis unreachable with its connections
#        open and silent, as behind a partition;
#   3/4  Redis restarts empty (SHUTDOWN NOSAVE, dump removed): the epoch is new, and clients that
#        come back with an offset of the old one are told recovered: false.
#
# Checks: the soak (with --allow-unrecovered, since a return while Redis is away is refused in
# the same epoch) passes: nothing owed lost, duplicated or out of order, no client stranded; the
# epoch is the same across the outage with data and new after the empty restart; returns
# answered recovered: false in a new epoch were counted.
#
#   tests/chaos/cluster.sh
#   CHAOS_DURATION=30m CHAOS_CLIENTS=10000 tests/chaos/cluster.sh
set -euo pipefail
SCENARIO=cluster
# shellcheck source=tests/chaos/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
chaos_init
command -v redis-server >/dev/null || chaos_fail "redis-server is needed (apt-get install redis-server)"

CLIENTS=${CHAOS_CLIENTS:-3000}
OUTAGE=${CHAOS_REDIS_OUTAGE_SECONDS:-10}
OUTAGE_KIND=${CHAOS_REDIS_OUTAGE:-restart}
[[ $OUTAGE_KIND == restart || $OUTAGE_KIND == pause ]] ||
  chaos_fail "CHAOS_REDIS_OUTAGE is restart or pause, not $OUTAGE_KIND"

REDIS_PORT=$(free_port)
REDIS_DIR=$OUT/redis
redis_start "$REDIS_PORT" "$REDIS_DIR"
ARGS=(--redis "redis://127.0.0.1:$REDIS_PORT")

PUBLICS=() CONTROLS=() URLS=() CTLS=() PID_FILES=()
for n in 0 1 2; do
  PUBLICS+=("$(free_port)")
  CONTROLS+=("$(free_port)")
  herald_start "node$n" "${PUBLICS[n]}" "${CONTROLS[n]}" "${ARGS[@]}"
  URLS+=("127.0.0.1:${PUBLICS[n]}")
  CTLS+=("127.0.0.1:${CONTROLS[n]}")
  PID_FILES+=(--pid-file "$OUT/node$n.pid")
done
join() {
  local IFS=,
  echo "$*"
}

soak_start --url "$(join "${URLS[@]}")" --control "$(join "${CTLS[@]}")" "${PID_FILES[@]}" \
  --clients "$CLIENTS" --allow-unrecovered
wait_ramp "$CLIENTS" 300 "${CONTROLS[@]}"

at $((CHURN / 4))
chaos_log "SIGKILL to node 2"
herald_stop node2 KILL 10

at $((CHURN * 3 / 8))
herald_start node2 "${PUBLICS[2]}" "${CONTROLS[2]}" "${ARGS[@]}"
chaos_log "node 2 started again"

at $((CHURN / 2))
EPOCH0=$(log_epoch "${CONTROLS[0]}")
chaos_log "Redis away for ${OUTAGE}s ($OUTAGE_KIND; epoch $EPOCH0)"
if [[ $OUTAGE_KIND == restart ]]; then
  redis_shutdown "$REDIS_PORT" SAVE
  sleep "$OUTAGE"
  redis_start "$REDIS_PORT" "$REDIS_DIR"
else
  kill -STOP "$REDIS_PID"
  sleep "$OUTAGE"
  kill -CONT "$REDIS_PID"
fi
# Every node back on Redis, then the epoch they log in.
for _ in $(seq 150); do
  up=$(metric_sum herald_redis_up "${CONTROLS[@]}")
  [[ $up == 3 ]] && break
  sleep 0.2
done
[[ $up == 3 ]] || chaos_fail "only ${up:-no} nodes of 3 back on Redis 30 s after it came back"
EPOCH1=$(log_epoch "${CONTROLS[1]}")
chaos_log "Redis back; epoch $EPOCH1"

at $((CHURN * 3 / 4))
chaos_log "Redis restarted empty"
redis_shutdown "$REDIS_PORT" NOSAVE
rm -f "$REDIS_DIR/dump.rdb"
redis_start "$REDIS_PORT" "$REDIS_DIR"
for _ in $(seq 150); do
  EPOCH2=$(log_epoch "${CONTROLS[2]}")
  [[ -n $EPOCH2 ]] && break
  sleep 0.2
done
chaos_log "epoch after the empty restart: ${EPOCH2:-none}"

soak_wait 180
soak_verdict "the soak's checks"
[[ -n $EPOCH0 && $EPOCH0 == "$EPOCH1" ]] ||
  chaos_fail "the epoch changed across the outage with data ($EPOCH0, then $EPOCH1)"
[[ -n $EPOCH2 && $EPOCH2 != "$EPOCH1" ]] ||
  chaos_fail "the epoch did not change when Redis came back empty ($EPOCH1, then ${EPOCH2:-none})"
soak_expect returns.new_epoch '>' 0
soak_expect stranded == 0
