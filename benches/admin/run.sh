#!/usr/bin/env bash
# The admin page's cost on herald while it is open: herald's CPU time (utime + stime from
# /proc/<pid>/stat) over DURATION seconds with CONNECTIONS idle subscribed raw WebSockets, first
# with no page open, then with /admin open in headless Chromium (which polls GET /metrics every
# second). Prints both in CPU milliseconds per second and the difference per poll, and the CPU of
# one GET /metrics measured directly.
#
# Build first (a release build; this is the figure to report, debug is not representative):
#   CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
#     cargo build --release --bin herald --bin herald-bench
# then: benches/admin/run.sh   (HERALD, BENCH, CHROMIUM, CONNECTIONS, DURATION override)
#
# The page is opened without --api-key (loopback, so the page is open): a login would add one
# HMAC check per poll, well under a microsecond.
set -euo pipefail
cd "$(dirname "$0")/../.."

HERALD=${HERALD:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CONNECTIONS=${CONNECTIONS:-10000}
DURATION=${DURATION:-60}

ulimit -n 20000
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$HERALD" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
  --max-connections-per-ip 0 --connection-rate-per-ip 0 2>"$work/herald.log" &
herald=$!
pids+=("$herald")
for _ in $(seq 100); do
  grep -q 'herald listening' "$work/herald.log" && break
  sleep 0.1
done
line=$(grep 'herald listening' "$work/herald.log")
ws=$(sed -E 's/.*websocket=([^ ]+).*/\1/' <<<"$line")
control=$(sed -E 's/.*control=([^ ]+).*/\1/' <<<"$line")

metric() {
  curl -s "http://$control/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# Connections held long enough for both windows.
"$BENCH" --url "$ws" --control "$control" --connections "$CONNECTIONS" --idle-only \
  --idle "$((2 * DURATION + 120))s" >"$work/bench.log" 2>&1 &
pids+=("$!")
for _ in $(seq 600); do
  [ "$(metric herald_subscriptions)" = "$CONNECTIONS" ] && break
  sleep 0.5
done
[ "$(metric herald_subscriptions)" = "$CONNECTIONS" ] || {
  echo "the connections did not all subscribe: $(metric herald_subscriptions)" >&2
  cat "$work/bench.log" >&2
  exit 1
}
sleep 5

ticks=$(getconf CLK_TCK)
cpu_ms() {
  # utime and stime are the 14th and 15th fields; the 2nd, the command, holds no space here.
  awk -v t="$ticks" '{ print ($14 + $15) * 1000 / t }' "/proc/$herald/stat"
}
window() {
  local before after
  before=$(cpu_ms)
  sleep "$DURATION"
  after=$(cpu_ms)
  echo "$before $after" | awk -v d="$DURATION" '{ printf "%.2f", ($2 - $1) / d }'
}

idle=$(window)

profile="$work/chromium"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
  --disable-background-networking --disable-component-update --disable-sync --no-first-run \
  --user-data-dir="$profile" --window-size=1280,900 "http://$control/admin" \
  >/dev/null 2>&1 &
pids+=("$!")
# The page loads and begins polling.
sleep 5
open=$(window)

# The page's own cost is one GET /metrics a second, small beside what an idle window varies by
# (pings to every connection): measured directly, as herald's CPU over 1,000 of them back to back
# on one keep-alive connection.
before=$(cpu_ms)
curl -s -o /dev/null "http://$control/metrics?[1-1000]"
after=$(cpu_ms)
direct=$(echo "$before $after" | awk '{ printf "%.3f", ($2 - $1) / 1000 }')

echo "$HERALD: $CONNECTIONS idle subscribed connections, $DURATION s each"
echo "no page open:        $idle ms CPU per second"
echo "admin page open:     $open ms CPU per second"
awk -v a="$idle" -v b="$open" \
  'BEGIN { printf "difference:          %.2f ms CPU per second, about %.2f ms per poll (one GET /metrics a second)\n", b - a, b - a }'
echo "one GET /metrics:    $direct ms CPU (1,000 back to back)"
