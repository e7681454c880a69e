#!/usr/bin/env bash
# churn: many clients (CHAOS_CLIENTS, 15,000) come and go for CHAOS_DURATION while pushes flow.
# Each stays a random time whose mean is 5 minutes (20 % of the clients drop each minute), or
# half the churn phase when that is shorter (a 2-minute run still sees every client drop about
# once), drops in one of the soak's four ways and comes back.
#
# Checks: the soak passes (nothing owed lost, duplicated or out of order; every client back);
# herald's descriptors beyond its connections (fds - herald_connections) are the same idle before
# the run, after the ramp, at the end of the settle and idle after the run, within a handful:
# a descriptor kept for a closed connection would show as a rise; herald's RSS at the end of the
# settle is at most twice its RSS after the ramp, with the same clients connected.
#
#   tests/chaos/churn.sh
#   CHAOS_DURATION=30m tests/chaos/churn.sh
set -euo pipefail
SCENARIO=churn
# shellcheck source=tests/chaos/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
chaos_init

# herald-bench holds a descriptor per client (a polling client two while a POST is under way), and
# a few of its own: the clients are lowered to what its open-file limit holds.
CLIENTS=${CHAOS_CLIENTS:-${CHAOS_CHURN_CLIENTS:-15000}}
fit=$((($(ulimit -n) - 200) * 10 / 12))
if ((CLIENTS > fit)); then
  chaos_log "ulimit -n is $(ulimit -n): $CLIENTS clients lowered to $fit"
  CLIENTS=$fit
fi
# Mean stay: 5 minutes, or half the churn phase; the range is the mean +- half of it.
MEAN=$((CHURN / 2 < 300 ? CHURN / 2 : 300))
STAY="$((MEAN / 2))s..$((MEAN * 3 / 2))s"
# FDS_SLACK: how far the descriptors beyond connections may move between two readings: the
# control connections come and go (the soak's pushers and sampler, this script's curl).
FDS_SLACK=${CHAOS_FDS_SLACK:-8}

# The caps on, a quarter above what the clients hold (a polling client holds a second
# connection while a POST is under way): the counts behind them must follow the connections and
# sessions there are, or returns are refused.
CAP=$((CLIENTS * 5 / 4 + 100))

PUBLIC=$(free_port)
CONTROL=$(free_port)
herald_start herald "$PUBLIC" "$CONTROL" --max-connections "$CAP" --max-sessions "$CAP"
PID=$(herald_pid herald)

# fds - connections, with both readings, as "extra fds conns".
overhead() {
  local conns fds
  conns=$(metric "$CONTROL" herald_connections)
  fds=$(fds_of "$PID")
  [[ -n $conns ]] || chaos_fail "herald's /metrics did not answer"
  echo "$((fds - conns)) $fds $conns"
}
read -r EXTRA0 FDS0 _ <<<"$(overhead)"
RSS0=$(rss_kib "$PID")
chaos_log "herald idle: $FDS0 fds, RSS $((RSS0 / 1024)) MiB; $CLIENTS clients, stay $STAY, caps $CAP"

soak_start --url "127.0.0.1:$PUBLIC" --control "127.0.0.1:$CONTROL" --pid-file "$OUT/herald.pid" \
  --clients "$CLIENTS" --stay "$STAY" --client-threads 2 \
  --source-ips 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
wait_ramp "$CLIENTS" 600 "$CONTROL"
read -r EXTRA1 FDS1 CONNS1 <<<"$(overhead)"
RSS1=$(rss_kib "$PID")
chaos_log "after the ramp: $FDS1 fds for $CONNS1 connections, RSS $((RSS1 / 1024)) MiB"

# The end of the settle: no drops since it began, every client back (away at most 10 s, a
# vanished one 6 s more). The drain after it ends as soon as nothing is owed.
at $((CHURN + SETTLE - 2))
read -r EXTRA2 FDS2 CONNS2 <<<"$(overhead)"
RSS2=$(rss_kib "$PID")
chaos_log "at the end of the settle: $FDS2 fds for $CONNS2 connections, RSS $((RSS2 / 1024)) MiB"

soak_wait 120
# Every client gone: herald closes what they left.
for _ in $(seq 100); do
  [[ $(metric "$CONTROL" herald_connections) == 0 ]] && break
  sleep 0.2
done
read -r EXTRA3 FDS3 CONNS3 <<<"$(overhead)"
RSS3=$(rss_kib "$PID")
chaos_log "idle after: $FDS3 fds for $CONNS3 connections, RSS $((RSS3 / 1024)) MiB"

soak_summary
{
  echo "fds - connections: idle $EXTRA0, after ramp $EXTRA1, end of settle $EXTRA2, idle after $EXTRA3"
  echo "fds: idle $FDS0, after ramp $FDS1 ($CONNS1 connections), end of settle $FDS2 ($CONNS2), idle after $FDS3 ($CONNS3)"
  echo "RSS MiB: idle $((RSS0 / 1024)), after ramp $((RSS1 / 1024)), end of settle $((RSS2 / 1024)), idle after $((RSS3 / 1024))"
} | tee "$OUT/herald-figures.txt"

((SOAK_STATUS == 0)) || chaos_fail "the soak's checks failed (exit $SOAK_STATUS; see soak.log)"
soak_expect lost == 0
soak_expect duplicated == 0
((CONNS3 == 0)) || chaos_fail "herald still counts $CONNS3 connections after every client left"
for e in "$EXTRA1" "$EXTRA2" "$EXTRA3"; do
  d=$((e - EXTRA0))
  ((d <= FDS_SLACK && d >= -FDS_SLACK)) ||
    chaos_fail "herald's fds beyond its connections moved from $EXTRA0 to $e (idle, after ramp, end of settle, idle after: $EXTRA0 $EXTRA1 $EXTRA2 $EXTRA3)"
done
((RSS2 <= 2 * RSS1)) || chaos_fail "herald's RSS at the end of the settle ($((RSS2 / 1024)) MiB) is over twice its RSS after the ramp ($((RSS1 / 1024)) MiB)"
