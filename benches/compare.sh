#!/usr/bin/env bash
# herald beside its peers: the original NestJS gateway, the same gateway on socketioxide, and the
# floor (one mio thread writing one shared frame, nothing else). Every server runs fresh for each
# scenario, pinned to one core; herald-bench drives it from another core and measures.
#
#   benches/compare.sh                       # everything, about ten minutes
#   benches/compare.sh --quick               # tiny counts: a smoke run of the whole pipeline
#   benches/compare.sh --only herald,floor --scenarios a,b
#
# Scenarios:
#   a  broadcast to BROADCAST_CONNECTIONS subscribed sockets at BROADCAST_RATE pushes/s
#   b  unicast among UNICAST_CONNECTIONS sockets/users at UNICAST_RATE pushes/s
#   c  IDLE_CONNECTIONS sockets doing nothing: memory per connection
#   d  STEADY_CONNECTIONS sockets getting a broadcast STEADY_RATE times a second: latency
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
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
# Each run gets its own pair of ports, so no run meets the TIME_WAIT sockets of the one before.
PORT_BASE=${PORT_BASE:-17100}
READY_TIMEOUT=${READY_TIMEOUT:-30}
# Extra herald-bench flags for every run, e.g. "--source-ips 127.0.0.1,127.0.0.2".
BENCH_EXTRA=${BENCH_EXTRA:-}
# Another load generator binary (with herald-bench's flags) instead of the one built here.
HERALD_BENCH=${HERALD_BENCH:-}

ALL_SERVERS="herald herald-socketio nestjs socketioxide floor"
ALL_SCENARIOS="a b c d"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --quick             tiny counts and short runs (smoke test); results go to <date>-quick/
  --only LIST         servers, comma-separated: herald (both protocols), herald-socketio,
                      nestjs, socketioxide, floor
  --scenarios LIST    scenarios, comma-separated: a,b,c,d
  --no-build          use the binaries and dist/ already built
  --out DIR           results directory (default benches/results/<date>[-quick])
EOF
}

QUICK=0
BUILD=1
ONLY=""
SCENARIOS="$ALL_SCENARIOS"
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
fi

# Servers selected by --only: a name selects itself and its protocol variants (herald-*).
SERVERS=""
for s in $ALL_SERVERS; do
  if [[ -z $ONLY ]]; then SERVERS+=" $s"; continue; fi
  for want in ${ONLY//,/ }; do
    if [[ $s == "$want" || $s == "$want"-* ]]; then SERVERS+=" $s"; break; fi
  done
done
[[ -n $SERVERS ]] || { echo "--only $ONLY selects no server (of: $ALL_SERVERS)" >&2; exit 64; }
for sc in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $sc "* ]] || { echo "unknown scenario $sc (of: $ALL_SCENARIOS)" >&2; exit 64; }
done
selected() { [[ " $SERVERS " == *" $1"[\ -]* ]]; }

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
    herald|floor) echo raw ;;
    *) echo socketio ;;
  esac
}

# Starts server $1 on ports $2/$3 pinned to SERVER_CPU, logging to $4; sets SERVER_PID.
start_server() {
  local name=$1 port=$2 control=$3 log=$4
  case "$name" in
    herald|herald-socketio)
      # One load generator on one address pushing faster than a person reads: the per-address
      # caps and the per-user push rate would refuse it, so they are off here.
      taskset -c "$SERVER_CPU" "$HERALD_BIN" \
        --listen "127.0.0.1:$port" --control "127.0.0.1:$control" \
        --max-connections-per-ip 0 --connection-rate-per-ip 0 --user-rate 0 >"$log" 2>&1 &
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
  esac
}

scenario_title() {
  case "$1" in
    a) echo "(a) broadcast: $BROADCAST_CONNECTIONS subscribed sockets, $BROADCAST_RATE pushes/s for $BROADCAST_DURATION" ;;
    b) echo "(b) unicast: $UNICAST_CONNECTIONS sockets/users, $UNICAST_RATE pushes/s for $UNICAST_DURATION" ;;
    c) echo "(c) idle: $IDLE_CONNECTIONS subscribed sockets, memory after $IDLE_TIME" ;;
    d) echo "(d) steady: $STEADY_CONNECTIONS sockets, a broadcast $STEADY_RATE times a second for $STEADY_DURATION" ;;
  esac
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
python3 - "$MANIFEST" "$OUT/environment.md" \
  "$(scenario_title a)" "$(scenario_title b)" "$(scenario_title c)" "$(scenario_title d)" \
  >"$OUT/table.md" <<'PY'
import json, sys

manifest, environment = sys.argv[1], sys.argv[2]
titles = dict(zip("abcd", sys.argv[3:7]))

# (label, how to read it from the JSON, higher is better?)
def lat(q):
    return lambda j: (j.get("latency_us") or {}).get(q)
DELIVERIES = ("deliveries/s", lambda j: j.get("deliveries_per_sec"), True)
CPU = ("CPU ns/delivery", lambda j: j.get("cpu_ns_per_delivery"), False)
RSS = ("RSS/connection", lambda j: j.get("rss_per_connection"), False)
LOST = ("lost", lambda j: j.get("deliveries_lost"), None)
FIGURES = {
    "a": [DELIVERIES, CPU, ("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False), LOST],
    "b": [DELIVERIES, CPU, ("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False), LOST],
    "c": [RSS],
    "d": [("p50 µs", lat("p50"), False), ("p99 µs", lat("p99"), False),
          ("p99.9 µs", lat("p999"), False), CPU, LOST],
}

def fmt(label, v):
    if v is None:
        return "–"
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
            if higher is not None and v and hv:
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
