#!/usr/bin/env bash
# herald beside its peers: the original NestJS gateway, the same gateway on socketioxide, and the
# floor (one mio thread writing one shared frame, nothing else). Every server runs fresh for each
# scenario, pinned to one core; herald-bench drives it from another core and measures.
#
#   benches/compare.sh                       # scenarios a-d, about ten minutes
#   benches/compare.sh --quick               # tiny counts: a smoke run of the whole pipeline
#   benches/compare.sh --only herald,floor --scenarios a,b
#   benches/compare.sh --scenarios sync1,sync8,unicast32,fanout10k
#
# Scenarios:
#   a  broadcast to BROADCAST_CONNECTIONS subscribed sockets at BROADCAST_RATE pushes/s
#   b  unicast among UNICAST_CONNECTIONS sockets/users at UNICAST_RATE pushes/s
#   c  IDLE_CONNECTIONS sockets doing nothing: memory per connection
#   d  STEADY_CONNECTIONS sockets getting a broadcast STEADY_RATE times a second: latency
# Scenarios of issue 14 (notifications of about 230 bytes, NOTIFICATION_MESSAGE bytes of text;
# "synchronous" callers wait for each answer before their next call, as a backend thread does):
#   sync1      one synchronous caller, broadcast to SYNC1_CONNECTIONS sockets at SYNC1_RATE/s for
#              SYNC1_DURATION: pushes answered, push call and delivery latency, CPU per delivery
#   sync8      SYNC8_CALLERS synchronous callers, SYNC8_RATE broadcasts/s in all to
#              SYNC8_CONNECTIONS sockets for SYNC8_DURATION
#   unicast32  UNICAST32_CALLERS synchronous callers, unicast among UNICAST32_USERS users, offered
#              UNICAST32_RATE pushes/s for UNICAST32_DURATION: pushes/s and CPU per push
#   fanout10k  FANOUT_CONNECTIONS sockets, FANOUT_PUSHES broadcasts one at a time (FANOUT_RATE/s):
#              latency of the last socket per push; herald's herald_fanout_seconds from /metrics
#
# Results (one JSON per run, server and bench logs, table.md) go to benches/results/<date>/;
# the table is also printed, and latency-<scenario>.svg plots the latency percentiles of every
# server. Only table.md, environment.md and the plots are meant to be committed.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- What to run; each can be overridden from the environment. ----
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-2000}
BROADCAST_RATE=${BROADCAST_RATE:-500}
BROADCAST_DURATION=${BROADCAST_DURATION:-10s}
UNICAST_CONNECTIONS=${UNICAST_CONNECTIONS:-2000}
UNICAST_RATE=${UNICAST_RATE:-50000}
UNICAST_DURATION=${UNICAST_DURATION:-10s}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_TIME=${IDLE_TIME:-5s}
STEADY_CONNECTIONS=${STEADY_CONNECTIONS:-10000}
STEADY_RATE=${STEADY_RATE:-2}
STEADY_DURATION=${STEADY_DURATION:-10s}
# Text of each notification in the issue-14 scenarios: with the generator's type, seq and due
# time around it, the notification is 230 bytes.
NOTIFICATION_MESSAGE=${NOTIFICATION_MESSAGE:-156}
SYNC1_CONNECTIONS=${SYNC1_CONNECTIONS:-2000}
SYNC1_RATE=${SYNC1_RATE:-100}
SYNC1_DURATION=${SYNC1_DURATION:-3s}
SYNC8_CONNECTIONS=${SYNC8_CONNECTIONS:-2000}
SYNC8_CALLERS=${SYNC8_CALLERS:-8}
SYNC8_RATE=${SYNC8_RATE:-1000}
SYNC8_DURATION=${SYNC8_DURATION:-5s}
UNICAST32_USERS=${UNICAST32_USERS:-2000}
UNICAST32_CALLERS=${UNICAST32_CALLERS:-32}
UNICAST32_RATE=${UNICAST32_RATE:-60000}
UNICAST32_DURATION=${UNICAST32_DURATION:-5s}
FANOUT_CONNECTIONS=${FANOUT_CONNECTIONS:-10000}
FANOUT_PUSHES=${FANOUT_PUSHES:-20}
FANOUT_RATE=${FANOUT_RATE:-1}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
# Each run gets its own pair of ports, so no run meets the TIME_WAIT sockets of the one before.
PORT_BASE=${PORT_BASE:-17100}
READY_TIMEOUT=${READY_TIMEOUT:-30}
# Extra herald-bench flags for every run, e.g. "--source-ips 127.0.0.1,127.0.0.2".
BENCH_EXTRA=${BENCH_EXTRA:-}
# Another load generator binary (with herald-bench's flags) instead of the one built here.
HERALD_BENCH=${HERALD_BENCH:-}
# Extra herald flags for every herald run, e.g. "--workers 1".
HERALD_EXTRA_ARGS=${HERALD_EXTRA_ARGS:-}

ALL_SERVERS="herald herald-socketio herald-w2 nestjs socketioxide floor floor16"
# What runs without --scenarios: the issue-14 scenarios are asked for by name.
DEFAULT_SCENARIOS="a b c d"
ALL_SCENARIOS="a b c d sync1 sync8 unicast32 fanout10k"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --quick             tiny counts and short runs (smoke test); results go to <date>-quick/
  --only LIST         servers, comma-separated; a name also selects the names it begins:
                      herald (herald, herald-socketio, herald-w2), herald-socketio,
                      herald-w2 (Socket.IO, --workers 2 on both cores), nestjs, socketioxide,
                      floor (floor and floor16), floor16 (16 frames per writev)
  --scenarios LIST    scenarios, comma-separated: a,b,c,d (the default),
                      sync1,sync8,unicast32,fanout10k
  --no-build          use the binaries and dist/ already built
  --out DIR           results directory (default benches/results/<date>[-quick])
EOF
}

QUICK=0
BUILD=1
ONLY=""
SCENARIOS="$DEFAULT_SCENARIOS"
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    --scenarios) SCENARIOS=${2:?--scenarios needs a list}; SCENARIOS=${SCENARIOS//,/ }; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then
  BROADCAST_CONNECTIONS=50 BROADCAST_RATE=20 BROADCAST_DURATION=2s
  UNICAST_CONNECTIONS=50 UNICAST_RATE=200 UNICAST_DURATION=2s
  IDLE_CONNECTIONS=200 IDLE_TIME=1s
  STEADY_CONNECTIONS=200 STEADY_RATE=2 STEADY_DURATION=2s
  SYNC1_CONNECTIONS=50 SYNC1_RATE=20 SYNC1_DURATION=1s
  SYNC8_CONNECTIONS=50 SYNC8_RATE=100 SYNC8_DURATION=1s
  UNICAST32_USERS=50 UNICAST32_RATE=2000 UNICAST32_DURATION=1s
  FANOUT_CONNECTIONS=200 FANOUT_PUSHES=3 FANOUT_RATE=2
fi

# Servers selected by --only: a name selects itself and its variants (herald-*, floor16).
SERVERS=""
for s in $ALL_SERVERS; do
  if [[ -z $ONLY ]]; then SERVERS+=" $s"; continue; fi
  for want in ${ONLY//,/ }; do
    if [[ $s == "$want"* ]]; then SERVERS+=" $s"; break; fi
  done
done
[[ -n $SERVERS ]] || { echo "--only $ONLY selects no server (of: $ALL_SERVERS)" >&2; exit 64; }
for sc in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $sc "* ]] || { echo "unknown scenario $sc (of: $ALL_SCENARIOS)" >&2; exit 64; }
done
selected() { [[ " $SERVERS " == *" $1"* ]]; }

# Both ends of 10,000 connections live in two processes; each needs 10,000+ descriptors.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DATE=$(date +%Y-%m-%d)
if [[ -z $OUT ]]; then
  OUT="benches/results/$DATE"
  [[ $QUICK == 1 ]] && OUT+="-quick"
fi
mkdir -p "$OUT"
MANIFEST="$OUT/runs.tsv"
: >"$MANIFEST"

# ---- Cleanup: never leave a server or a load generator behind. ----
SERVER_PID=""
BENCH_PID=""
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$BENCH_PID"
  BENCH_PID=""
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Build. ----
if [[ $BUILD == 1 ]]; then
  echo "== building herald, herald-bench and the floor"
  cargo build --release -p herald --bin herald --example floor
  if [[ -z $HERALD_BENCH ]]; then cargo build --release -p herald-bench; fi
  if selected nestjs; then
    echo "== building the NestJS peer"
    (cd benches/peers/nestjs && npm ci --no-audit --no-fund && npm run build)
  fi
  if selected socketioxide; then
    echo "== building the socketioxide peer"
    (cd benches/peers/socketioxide && cargo build --release)
  fi
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HERALD_BIN="$TARGET_DIR/release/herald"
BENCH_BIN=${HERALD_BENCH:-"$TARGET_DIR/release/herald-bench"}
FLOOR_BIN="$TARGET_DIR/release/examples/floor"
SIOX_BIN="benches/peers/socketioxide/target/release/herald-peer-socketioxide"

protocol_of() {
  case "$1" in
    herald|floor|floor16) echo raw ;;
    *) echo socketio ;;
  esac
}

# Starts server $1 on ports $2/$3 pinned to SERVER_CPU, logging to $4; sets SERVER_PID.
start_server() {
  local name=$1 port=$2 control=$3 log=$4
  # One load generator on one address pushing faster than a person reads: the per-address
  # caps and the per-user push rate would refuse it, so they are off for herald.
  local herald_args=(--listen "127.0.0.1:$port" --control "127.0.0.1:$control"
    --max-connections-per-ip 0 --connection-rate-per-ip 0 --user-rate 0)
  # shellcheck disable=SC2206 # the extra flags are meant to split
  herald_args+=($HERALD_EXTRA_ARGS)
  case "$name" in
    herald|herald-socketio)
      taskset -c "$SERVER_CPU" "$HERALD_BIN" "${herald_args[@]}" >"$log" 2>&1 &
      ;;
    herald-w2)
      # Two workers on both cores: the second shares core BENCH_CPU with the load generator, so
      # this measures what a second core buys on this machine, not a clean two-core server.
      taskset -c "$SERVER_CPU,$BENCH_CPU" "$HERALD_BIN" "${herald_args[@]}" --workers 2 >"$log" 2>&1 &
      ;;
    nestjs)
      env PORT="$port" CONTROL_PORT="$control" HOST=127.0.0.1 NODE_ENV=production \
        taskset -c "$SERVER_CPU" node benches/peers/nestjs/dist/main.js >"$log" 2>&1 &
      ;;
    socketioxide)
      env PORT="$port" CONTROL_PORT="$control" HOST=127.0.0.1 \
        taskset -c "$SERVER_CPU" "$SIOX_BIN" >"$log" 2>&1 &
      ;;
    floor)
      taskset -c "$SERVER_CPU" "$FLOOR_BIN" \
        --listen "127.0.0.1:$port" --control "127.0.0.1:$control" >"$log" 2>&1 &
      ;;
    floor16)
      # The coalesced floor: a socket's frames go out 16 per writev.
      taskset -c "$SERVER_CPU" "$FLOOR_BIN" \
        --listen "127.0.0.1:$port" --control "127.0.0.1:$control" --coalesce 16 >"$log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
}

# Waits for the "websocket=ADDR control=ADDR" line in $1; sets WS_ADDR and CONTROL_ADDR.
wait_ready() {
  local log=$1 line
  for _ in $(seq 1 $((READY_TIMEOUT * 10))); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    line=$(grep -Eo 'websocket=[^ ]+ control=[^ ]+' "$log" | head -n 1 || true)
    if [[ -n $line ]]; then
      WS_ADDR=${line#websocket=}
      WS_ADDR=${WS_ADDR%% *}
      CONTROL_ADDR=${line##*control=}
      CONTROL_ADDR=${CONTROL_ADDR%$'\r'}
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# herald-bench flags for scenario $1.
scenario_flags() {
  case "$1" in
    a) echo "--connections $BROADCAST_CONNECTIONS --users $BROADCAST_CONNECTIONS --pattern broadcast --rate $BROADCAST_RATE --duration $BROADCAST_DURATION" ;;
    b) echo "--connections $UNICAST_CONNECTIONS --users $UNICAST_CONNECTIONS --pattern unicast --rate $UNICAST_RATE --duration $UNICAST_DURATION" ;;
    c) echo "--connections $IDLE_CONNECTIONS --users $IDLE_CONNECTIONS --pattern broadcast --rate 1 --duration 1s --idle-only --idle $IDLE_TIME" ;;
    d) echo "--connections $STEADY_CONNECTIONS --users $STEADY_CONNECTIONS --pattern broadcast --rate $STEADY_RATE --duration $STEADY_DURATION" ;;
    sync1) echo "--connections $SYNC1_CONNECTIONS --users $SYNC1_CONNECTIONS --pattern broadcast --rate $SYNC1_RATE --duration $SYNC1_DURATION --synchronous --control-connections 1 --message-size $NOTIFICATION_MESSAGE" ;;
    sync8) echo "--connections $SYNC8_CONNECTIONS --users $SYNC8_CONNECTIONS --pattern broadcast --rate $SYNC8_RATE --duration $SYNC8_DURATION --synchronous --control-connections $SYNC8_CALLERS --message-size $NOTIFICATION_MESSAGE" ;;
    unicast32) echo "--connections $UNICAST32_USERS --users $UNICAST32_USERS --pattern unicast --rate $UNICAST32_RATE --duration $UNICAST32_DURATION --synchronous --control-connections $UNICAST32_CALLERS --message-size $NOTIFICATION_MESSAGE" ;;
    fanout10k) echo "--connections $FANOUT_CONNECTIONS --users $FANOUT_CONNECTIONS --pattern broadcast --rate $FANOUT_RATE --pushes $FANOUT_PUSHES --message-size $NOTIFICATION_MESSAGE" ;;
  esac
}

scenario_title() {
  case "$1" in
    a) echo "(a) broadcast: $BROADCAST_CONNECTIONS subscribed sockets, $BROADCAST_RATE pushes/s for $BROADCAST_DURATION" ;;
    b) echo "(b) unicast: $UNICAST_CONNECTIONS sockets/users, $UNICAST_RATE pushes/s for $UNICAST_DURATION" ;;
    c) echo "(c) idle: $IDLE_CONNECTIONS subscribed sockets, memory after $IDLE_TIME" ;;
    d) echo "(d) steady: $STEADY_CONNECTIONS sockets, a broadcast $STEADY_RATE times a second for $STEADY_DURATION" ;;
    sync1) echo "(sync1) one synchronous caller: broadcast to $SYNC1_CONNECTIONS sockets, offered $SYNC1_RATE/s for $SYNC1_DURATION" ;;
    sync8) echo "(sync8) $SYNC8_CALLERS synchronous callers: broadcast to $SYNC8_CONNECTIONS sockets, offered $SYNC8_RATE/s in all for $SYNC8_DURATION" ;;
    unicast32) echo "(unicast32) $UNICAST32_CALLERS synchronous callers: unicast among $UNICAST32_USERS users, offered $UNICAST32_RATE/s for $UNICAST32_DURATION" ;;
    fanout10k) echo "(fanout10k) $FANOUT_CONNECTIONS sockets: $FANOUT_PUSHES broadcasts, $FANOUT_RATE a second, one at a time" ;;
  esac
}

# Saves herald's /metrics from control address $1 into file $2 (nothing if it does not answer).
save_metrics() {
  curl -sf --max-time 5 "http://$1/metrics" >"$2" 2>/dev/null || rm -f "$2"
}

# ---- Run. ----
run=0
for sc in $SCENARIOS; do
  echo "== $(scenario_title "$sc")"
  for server in $SERVERS; do
    port=$((PORT_BASE + 2 * run))
    control=$((port + 1))
    run=$((run + 1))
    protocol=$(protocol_of "$server")
    base="$OUT/$sc-$server"
    rm -f "$base.json"
    start_server "$server" "$port" "$control" "$base.server.log"
    if ! wait_ready "$base.server.log"; then
      echo "   $server: did not announce its addresses (see $base.server.log)" >&2
      stop_pid "$SERVER_PID"
      SERVER_PID=""
      printf '%s\t%s\t%s\t%s\t%s\n' "$sc" "$server" "$protocol" "no-start" "" >>"$MANIFEST"
      continue
    fi
    rm -f "$base.metrics.txt"
    # shellcheck disable=SC2046 # the flags are meant to split
    "$BENCH_BIN" --url "$WS_ADDR" --control "$CONTROL_ADDR" --protocol "$protocol" \
      $(scenario_flags "$sc") --server-pid "$SERVER_PID" --pin-cpu "$BENCH_CPU" \
      --label "$server" --json "$base.json" --latency-csv "$base.csv" --quiet $BENCH_EXTRA \
      >"$base.bench.log" 2>&1 &
    BENCH_PID=$!
    rc=0
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    status=ok
    case "$rc" in
      0) ;;
      2) status=loss ;;
      *) status="bench-exit-$rc" ;;
    esac
    kill -0 "$SERVER_PID" 2>/dev/null || status="server-died"
    if [[ $server == herald* ]]; then save_metrics "$CONTROL_ADDR" "$base.metrics.txt"; fi
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    [[ -s $base.json ]] || status="$status,no-json"
    echo "   $server ($protocol): $status"
    printf '%s\t%s\t%s\t%s\t%s\n' "$sc" "$server" "$protocol" "$status" "$base.json" >>"$MANIFEST"
  done
done

# ---- Where the runs ran, for the record. ----
{
  echo "- date: $DATE"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores); server on core $SERVER_CPU, herald-bench on core $BENCH_CPU"
  echo "- kernel: $(uname -sr)"
  echo "- $(rustc --version)"
  if command -v node >/dev/null 2>&1; then echo "- node $(node --version)"; fi
  echo "- herald $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT/environment.md"

# ---- The table. ----
titles=()
for sc in $SCENARIOS; do titles+=("$sc=$(scenario_title "$sc")"); done
python3 - "$MANIFEST" "$OUT/environment.md" "${titles[@]}" >"$OUT/table.md" <<'PY'
import json, math, re, sys

manifest, environment = sys.argv[1], sys.argv[2]
titles = dict(arg.split("=", 1) for arg in sys.argv[3:])

# (label, how to read it from the JSON, higher is better?)
def lat(q):
    return lambda j: (j.get("latency_us") or {}).get(q)
DELIVERIES = ("deliveries/s", lambda j: j.get("deliveries_per_sec"), True)
CPU = ("CPU ns/delivery", lambda j: j.get("cpu_ns_per_delivery"), False)
RSS = ("RSS/connection", lambda j: j.get("rss_per_connection"), False)
LOST = ("lost", lambda j: j.get("deliveries_lost"), None)
def call(q):
    return lambda j: (j.get("push_call_us") or {}).get(q)
def last(q):
    return lambda j: (j.get("last_delivery_us") or {}).get(q)
def answered(j):
    return f'{j.get("pushes_answered", 0):,}/{j.get("pushes_planned", 0):,}'

def fanout_histogram(j):
    """herald_fanout_seconds from the /metrics saved beside the run: mean, p50, p99 in ms, or
    None when the server does not export it. Buckets of every label set are summed by `le`;
    quantiles interpolate within a bucket as Prometheus' histogram_quantile does."""
    text = j.get("_metrics")
    if not text or "herald_fanout_seconds" not in text:
        return None
    buckets, total, count = {}, 0.0, 0.0
    for line in text.splitlines():
        m = re.match(r'herald_fanout_seconds_(bucket|sum|count)(\{[^}]*\})? +([^ ]+)', line)
        if not m:
            continue
        kind, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if kind == "sum":
            total += value
        elif kind == "count":
            count += value
        else:
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
                buckets[bound] = buckets.get(bound, 0.0) + value
    if count == 0:
        return None
    def quantile(q):
        rank, lower, below = q * count, 0.0, 0.0
        for bound in sorted(buckets):
            if buckets[bound] >= rank:
                if math.isinf(bound):
                    return lower
                inside = buckets[bound] - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1)
            lower, below = bound, buckets[bound]
        return None
    ms = lambda v: None if v is None else v * 1e3
    return {"mean": total / count * 1e3, "p50": ms(quantile(0.5)), "p99": ms(quantile(0.99))}
def fanout(q):
    return lambda j: "n/a" if fanout_histogram(j) is None else fanout_histogram(j)[q]

CALL_P50 = ("call p50 µs", call("p50"), False)
CALL_P99 = ("call p99 µs", call("p99"), False)
FIGURES = {
    "sync1": [("answered", answered, None), ("last answer s", lambda j: j.get("last_answer_seconds"), None),
              CALL_P50, CALL_P99, ("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False), CPU, LOST],
    "unicast32": [("pushes/s", lambda j: j.get("pushes_per_sec"), True),
                  ("CPU ns/push", lambda j: j.get("cpu_ns_per_push"), False),
                  CALL_P50, CALL_P99, ("p99 µs", lat("p99"), False),
                  ("unsent", lambda j: j.get("pushes_unsent"), None), LOST],
    "fanout10k": [("last p50 µs", last("p50"), False), ("last p99 µs", last("p99"), False),
                  ("last max µs", last("max"), False), ("fanout mean ms", fanout("mean"), None),
                  ("fanout p50 ms", fanout("p50"), None), ("fanout p99 ms", fanout("p99"), None),
                  CPU, LOST],
    "a": [DELIVERIES, CPU, ("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False), LOST],
    "b": [DELIVERIES, CPU, ("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False), LOST],
    "c": [RSS],
    "d": [("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False),
          ("p99.9 µs", lat("p999"), False), CPU, LOST],
}
FIGURES["sync8"] = FIGURES["sync1"]

def fmt(label, v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if label == "RSS/connection":
        return f"{v / 1024:,.1f} KiB"
    if isinstance(v, float) and v < 100:
        return f"{v:,.1f}"
    return f"{v:,.0f}"

runs = {}
order = []
for line in open(manifest):
    sc, server, protocol, status, path = line.rstrip("\n").split("\t")
    data = None
    if path:
        try:
            data = json.load(open(path))
        except (OSError, ValueError):
            data = None
        if data is not None:
            try:
                data["_metrics"] = open(path[: -len(".json")] + ".metrics.txt").read()
            except OSError:
                pass
    runs[(sc, server)] = (protocol, status, data)
    if sc not in order:
        order.append(sc)

def herald_for(sc, protocol):
    """The herald run a peer is compared with: the one speaking the peer's protocol."""
    name = "herald" if protocol == "raw" else "herald-socketio"
    for candidate in (name, "herald", "herald-socketio"):
        r = runs.get((sc, candidate))
        if r and r[2]:
            return candidate, r[2]
    return None, None

out = []
for sc in order:
    figures = FIGURES[sc]
    out.append(f"### {titles[sc]}\n")
    out.append("| server | protocol | " + " | ".join(f[0] for f in figures) + " | run |")
    out.append("|---|---|" + "---:|" * len(figures) + "---|")
    for (rsc, server), (protocol, status, data) in runs.items():
        if rsc != sc:
            continue
        cells = []
        h_name, h_data = (None, None) if server.startswith("herald") else herald_for(sc, protocol)
        for label, get, higher in figures:
            v = get(data) if data else None
            cell = fmt(label, v)
            hv = get(h_data) if h_data else None
            if higher is not None and isinstance(v, (int, float)) and isinstance(hv, (int, float)) and v and hv:
                ratio = hv / v if higher else v / hv
                cell += f" (×{ratio:.2f})"
            cells.append(cell)
        out.append(f"| {server} | {protocol} | " + " | ".join(cells) + f" | {status} |")
    out.append("")
out.append("(×N): herald's advantage over that server on that figure, against the herald run "
           "speaking the same protocol (raw for the floor, Socket.IO for nestjs and socketioxide); "
           "above 1 herald is better, below 1 the other server is. "
           "`run`: ok, or loss (herald-bench exit 2), or what failed.")
out.append("")
out.append(open(environment).read())
print("\n".join(out))
PY
# One latency plot per scenario that pushes, from every server's percentile CSV.
for sc in $SCENARIOS; do
  csvs=()
  for f in "$OUT/$sc"-*.csv; do [[ -s $f ]] && csvs+=("$f"); done
  if [[ ${#csvs[@]} -gt 0 ]]; then
    python3 benches/plot_latency.py "$OUT/latency-$sc.svg" "push-to-receive latency, scenario ($sc)" "${csvs[@]}" \
      || echo "   no plot for ($sc)" >&2
  fi
done

cat "$OUT/table.md"
echo "results: $OUT"
