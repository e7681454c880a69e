#!/usr/bin/env bash
# half-open: clients whose packets vanish, with neither FIN nor RST, must be reaped by herald at
# its ping timeout while a soak alongside loses nothing.
#
# Where a network namespace can be made (`unshare -n`, as root) and tc can drop on its loopback,
# herald and every client run in a namespace of their own: CHAOS_HALF_OPEN clients (100) of each
# kind, raw WebSocket from 127.0.0.9 and Socket.IO from 127.0.0.10 (herald-bench --idle-only,
# users user-0.., two devices each), subscribe and idle; a soak of CHAOS_CLIENTS (1000) others
# runs without drops. Then every packet from or to those two addresses is dropped on lo (an htb
# class whose queue holds nothing; u32 filters on source and destination): to herald the clients
# went silent, as behind a dead NAT or a pulled cable. Elsewhere (no namespace, no tc), the
# silent clients are a second soak's (users gone-0..) that drop with --drops vanish=1: they stop
# reading and answering but keep their sockets open. The mode that ran is printed and written to
# mode.txt; CHAOS_HALF_OPEN_MODE=vanish asks for the fallback.
#
# Checks: before the drop, the idle clients stay (ping interval + timeout + 3 s: they answer
# pings); after it, within ping interval + timeout + CHAOS_REAP_MARGIN (6 s), herald_ping_timeouts_total
# rises by exactly their number, herald_subscriptions falls by it, and GET /v1/users/{id} says
# "online": false for each of their users; the soak alongside passes.
#
#   tests/chaos/half-open.sh
#   CHAOS_DURATION=10m CHAOS_HALF_OPEN=2000 tests/chaos/half-open.sh
set -euo pipefail
# CHAOS_HALF_OPEN_MODE=vanish runs the fallback where a namespace could be made.
if [[ -z ${CHAOS_IN_NETNS:-} && ${CHAOS_HALF_OPEN_MODE:-} != vanish ]] && unshare -n true 2>/dev/null; then
  CHAOS_IN_NETNS=1 exec unshare -n -- "$0" "$@"
fi
SCENARIO=half-open
# shellcheck source=tests/chaos/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
chaos_init

SILENT=${CHAOS_HALF_OPEN:-100}
CLIENTS=${CHAOS_CLIENTS:-1000}
MARGIN=${CHAOS_REAP_MARGIN:-6}

# The drop: an htb root on lo whose class 1:20 feeds a pfifo holding no packet; filters steer the
# silenced addresses there. Only an htb and a pfifo are needed (no tc action module).
MODE=vanish
if [[ -n ${CHAOS_IN_NETNS:-} ]] && ip link set lo up 2>/dev/null &&
  tc qdisc add dev lo root handle 1: htb default 10 2>/dev/null &&
  tc class add dev lo parent 1: classid 1:10 htb rate 100gbit quantum 60000 2>/dev/null &&
  tc class add dev lo parent 1: classid 1:20 htb rate 100gbit quantum 60000 2>/dev/null &&
  tc qdisc add dev lo parent 1:20 handle 20: pfifo limit 0 2>/dev/null; then
  MODE=blackhole
elif [[ -n ${CHAOS_IN_NETNS:-} ]]; then
  ip link set lo up
fi
case $MODE in
  blackhole) chaos_log "mode: blackhole (own network namespace, tc drops 127.0.0.9 and 127.0.0.10 on lo)" ;;
  vanish) chaos_log "mode: vanish (no network namespace or no tc here: the silent clients stop reading and answering)" ;;
esac
echo "$MODE" >"$OUT/mode.txt"

PUBLIC=$(free_port)
CONTROL=$(free_port)
herald_start herald "$PUBLIC" "$CONTROL"

# online_users PREFIX COUNT: how many of users PREFIX0..PREFIX(COUNT-1) GET /v1/users/{id} says
# are online, and the first such answer.
online_users() {
  python3 - "$CONTROL" "$1" "$2" <<'PY'
import json, sys, urllib.request
port, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
online = []
for i in range(count):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/users/{prefix}{i}", timeout=5) as r:
        body = json.load(r)
    if body.get("online") is not False:
        online.append(body)
print(len(online), json.dumps(online[0]) if online else "")
PY
}

if [[ $MODE == blackhole ]]; then
  SILENT_TOTAL=$((2 * SILENT))
  SILENT_USERS=user- SILENT_USER_COUNT=$SILENT
  for kind in raw:127.0.0.9 socketio:127.0.0.10; do
    "$HERALD_BENCH_BIN" --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" \
      --protocol "${kind%%:*}" --source-ips "${kind#*:}" --connections "$SILENT" \
      --idle-only --idle 1h --quiet >"$OUT/silent-${kind%%:*}.log" 2>&1 &
    chaos_track $!
  done
  BROADCAST=()
else
  SILENT_TOTAL=$SILENT
  SILENT_USERS=gone- SILENT_USER_COUNT=$SILENT
  # Two soaks side by side: neither may see the other's broadcasts, which its accounts lack.
  BROADCAST=(--broadcast-rate 0)
  # Silent from 5 s after subscribing, the socket kept open far past herald's timeout (60 s),
  # back 10 s before the churn ends.
  "$HERALD_BENCH_BIN" soak --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" \
    --clients "$SILENT" --users "$SILENT" --user-prefix gone- --drops vanish=1 --stay 5s \
    --away "$((CHURN - 15))s" --reap-after 60s --duration "${CHURN}s" --settle "${SETTLE}s" --drain "${DRAIN}s" \
    --unicast-rate 5 --multi-rate 0 --broadcast-rate 0 --json "$OUT/silent-soak.json" \
    >"$OUT/silent-soak.log" 2>&1 &
  SILENT_SOAK_PID=$!
  SILENT_T0=$(date +%s)
  chaos_track "$SILENT_SOAK_PID"
fi
for _ in $(seq 600); do
  n=$(metric "$CONTROL" herald_subscriptions)
  [[ -n $n ]] && ((n >= SILENT_TOTAL)) && break
  sleep 0.5
done
((n >= SILENT_TOTAL)) || chaos_fail "the silent clients did not all subscribe ($n of $SILENT_TOTAL)"
[[ $MODE == vanish ]] && SILENT_AT=$(($(date +%s) + 5))

# The soak alongside: no drops, so that every ping timeout and lost subscription is the silent
# clients'.
soak_start --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" --pid-file "$OUT/herald.pid" \
  --clients "$CLIENTS" --stay 0s "${BROADCAST[@]}"
wait_ramp $((CLIENTS + SILENT_TOTAL)) 300 "$CONTROL"

TIMEOUTS0=$(metric "$CONTROL" herald_ping_timeouts_total)
SUBS0=$(metric "$CONTROL" herald_subscriptions)
if [[ $MODE == blackhole ]]; then
  # They answer pings: nothing happens to them over a whole ping cycle and more.
  sleep $((PING_INTERVAL + PING_TIMEOUT + 3))
  t=$(metric "$CONTROL" herald_ping_timeouts_total)
  s=$(metric "$CONTROL" herald_subscriptions)
  [[ $t == "$TIMEOUTS0" && $s == "$SUBS0" ]] ||
    chaos_fail "before any drop, ping timeouts went $TIMEOUTS0 -> $t and subscriptions $SUBS0 -> $s"
  for addr in 127.0.0.9 127.0.0.10; do
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip src "$addr/32" classid 1:20
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dst "$addr/32" classid 1:20
  done
  SILENT_AT=$(date +%s)
  chaos_log "packets from and to 127.0.0.9 and 127.0.0.10 dropped from now on"
fi

DEADLINE=$((SILENT_AT + PING_INTERVAL + PING_TIMEOUT + MARGIN))
while :; do
  t=$(metric "$CONTROL" herald_ping_timeouts_total)
  s=$(metric "$CONTROL" herald_subscriptions)
  if [[ -n $t && -n $s ]] && ((t - TIMEOUTS0 >= SILENT_TOTAL && SUBS0 - s >= SILENT_TOTAL)); then
    break
  fi
  (($(date +%s) <= DEADLINE)) || break
  sleep 0.2
done
REAPED_IN=$(($(date +%s) - SILENT_AT))
chaos_log "after ${REAPED_IN}s: ping timeouts +$((t - TIMEOUTS0)), subscriptions $SUBS0 -> $s"
((t - TIMEOUTS0 == SILENT_TOTAL)) ||
  chaos_fail "herald_ping_timeouts_total rose by $((t - TIMEOUTS0)), not $SILENT_TOTAL, within $((DEADLINE - SILENT_AT))s"
((SUBS0 - s == SILENT_TOTAL)) ||
  chaos_fail "herald_subscriptions fell by $((SUBS0 - s)), not $SILENT_TOTAL, within $((DEADLINE - SILENT_AT))s"
read -r online example <<<"$(online_users "$SILENT_USERS" "$SILENT_USER_COUNT")"
[[ $online == 0 ]] || chaos_fail "${online:-?} of the silent clients' users still online, e.g. $example"
chaos_log "every silent user offline"
{
  echo "mode: $MODE"
  echo "silent clients: $SILENT_TOTAL; reaped within ${REAPED_IN}s (ping interval ${PING_INTERVAL}s + timeout ${PING_TIMEOUT}s)"
} >"$OUT/half-open.txt"

soak_wait 120
soak_verdict "the soak alongside"
if [[ $MODE == vanish ]]; then
  wait_exit "$SILENT_SOAK_PID" $((SILENT_T0 + CHURN + SETTLE + DRAIN + 120 - $(date +%s))) "the silent clients' soak"
  ((REAPED == 0)) || chaos_fail "the silent clients' soak failed (exit $REAPED; see silent-soak.log)"
fi
