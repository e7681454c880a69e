#!/usr/bin/env bash
# herald over TLS (--tls-cert/--tls-key) beside herald plain, in one run. herald runs one worker
# (`--workers 1`) pinned to core 0; herald-bench drives it from core 1.
#
#  1. Handshakes: herald-bench --handshakes keeps HANDSHAKE_CONCURRENCY connections in flight
#     (RESUME_CONCURRENCY when resuming) for HANDSHAKE_DURATION, each connecting, completing a
#     TLS handshake, reading the session tickets and closing. Counted by herald
#     (herald_tls_handshakes_total from /metrics), herald's CPU from utime+stime of
#     /proc/PID/stat: handshakes/s achieved, herald CPU µs per handshake, and 1 s / that =
#     handshakes/s per core. For the P-256 test certificate and an RSA-2048 certificate made
#     here with openssl (by a CA made here too), full and resumed (TLS 1.3 tickets), TLS 1.2
#     full; and a plain connect-and-close beside them.
#  2. Idle memory: IDLE_COUNTS subscribed idle WebSockets, plain, TLS 1.3 and TLS 1.2; herald's
#     VmRSS before and after, per connection.
#  3. Broadcast: compare.sh's scenario (a) (BROADCAST_CONNECTIONS sockets, broadcasts at each
#     of BROADCAST_RATES a second for BROADCAST_DURATION; compare.sh runs 500) and sync1 (one
#     synchronous caller), plain and TLS: herald's CPU ns per delivery.
#
#   benches/tls/run.sh                 # build, then run (about six minutes on a quiet machine)
#   benches/tls/run.sh --no-build
#   PARTS=idle IDLE_COUNTS=10000 benches/tls/run.sh --no-build
#
# Before each run the script waits (up to QUIET_WAIT seconds) for the machine to be quiet: its
# CPU over two seconds under QUIET_MAX (a fraction of all cores). environment.md keeps what it
# saw, and the CPU other processes than herald and herald-bench used during each run. Results
# go to benches/results/<date>-tls/: table.md (also printed), environment.md, and each run's
# JSON, logs and /metrics.
set -euo pipefail
cd "$(dirname "$0")/../.."

HANDSHAKE_DURATION=${HANDSHAKE_DURATION:-10s}
HANDSHAKE_CONCURRENCY=${HANDSHAKE_CONCURRENCY:-32}
# Resuming connections share rustls's default session store, which keeps at most 8 TLS 1.3
# tickets per server name: with more than 8 opened at once, some find no ticket and make a
# full handshake.
RESUME_CONCURRENCY=${RESUME_CONCURRENCY:-8}
IDLE_COUNTS=${IDLE_COUNTS:-10000 19000}
IDLE_TIME=${IDLE_TIME:-5s}
# compare.sh's scenario (a) and sync1, flag for flag (their defaults there).
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-2000}
# compare.sh's 500, and slower rates at which fewer frames share a write (and a TLS record):
# at 25/s herald is far from busy and each push is a write of its own to every socket.
BROADCAST_RATES=${BROADCAST_RATES:-500 100 25}
BROADCAST_DURATION=${BROADCAST_DURATION:-10s}
NOTIFICATION_MESSAGE=${NOTIFICATION_MESSAGE:-156}
SYNC1_CONNECTIONS=${SYNC1_CONNECTIONS:-2000}
SYNC1_RATE=${SYNC1_RATE:-100}
SYNC1_DURATION=${SYNC1_DURATION:-3s}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
PORT_BASE=${PORT_BASE:-17600}
READY_TIMEOUT=${READY_TIMEOUT:-30}
QUIET_MAX=${QUIET_MAX:-0.05}
QUIET_WAIT=${QUIET_WAIT:-900}
# Parts to run, of: handshakes idle broadcast.
PARTS=${PARTS:-handshakes idle broadcast}
# Handshake and broadcast runs are repeated, TLS next to plain each time (this machine's speed
# varies by a factor of two from hour to hour); the table gives the median and the range.
REPEAT=${REPEAT:-3}

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
OUT=${OUT:-benches/results/$(date +%F)-tls}
mkdir -p "$OUT"
MANIFEST="$OUT/runs.tsv"
: >"$MANIFEST"
QUIET_LOG="$OUT/quiet.tsv"
: >"$QUIET_LOG"
DURING_LOG="$OUT/during.tsv"
: >"$DURING_LOG"

if [[ $BUILD == 1 ]]; then
  cargo build --release -p herald -p herald-bench
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HERALD_BIN="$TARGET_DIR/release/herald"
BENCH_BIN="$TARGET_DIR/release/herald-bench"
command -v openssl >/dev/null || { echo "openssl is needed to make the RSA certificate"; exit 1; }
# 19,000 connections: both ends need their descriptors.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- Certificates: the P-256 test fixtures, and an RSA-2048 chain made for this run. ----
FIXTURES=tests/fixtures/tls
CERTS=$(mktemp -d)
SERVER_PID=""
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
  stop_pid "$SERVER_PID"
  rm -rf "$CERTS"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=herald bench throwaway CA" \
  -keyout "$CERTS/rsa-ca.key" -out "$CERTS/rsa-ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$CERTS/rsa.key" -out "$CERTS/rsa.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
  >"$CERTS/rsa.ext"
openssl x509 -req -in "$CERTS/rsa.csr" -CA "$CERTS/rsa-ca.pem" -CAkey "$CERTS/rsa-ca.key" \
  -CAcreateserial -days 2 -extfile "$CERTS/rsa.ext" -out "$CERTS/rsa.pem" 2>/dev/null

# cert, key, CA of each certificate kind.
cert_files() {
  case "$1" in
    p256) echo "$FIXTURES/server.pem $FIXTURES/server.key $FIXTURES/ca.pem" ;;
    rsa2048) echo "$CERTS/rsa.pem $CERTS/rsa.key $CERTS/rsa-ca.pem" ;;
  esac
}

# ---- Helpers. ----
# Busy jiffies and total jiffies of the whole machine.
machine_jiffies() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# This machine's speed varies from hour to hour; before each run, what a core does alone (herald's
# core, nothing else running there for a second): OpenSSL's ECDSA P-256 signatures a second.
reference_speed() {
  taskset -c "$SERVER_CPU" openssl speed -seconds 1 -mr ecdsap256 2>/dev/null |
    awk -F: '/^\+F4:/ {printf "%.0f", $4}'
}

# Waits until the machine's CPU over two seconds is under QUIET_MAX, at most QUIET_WAIT seconds;
# logs what it saw (and the busiest processes when it gave up waiting), and the reference
# speed, under the label $1.
wait_quiet() {
  local label=$1 waited=0 busy
  while true; do
    read -r b0 t0 < <(machine_jiffies)
    sleep 2
    read -r b1 t1 < <(machine_jiffies)
    busy=$(python3 -c "print(f'{($b1-$b0)/max($t1-$t0,1):.3f}')")
    waited=$((waited + 2))
    if python3 -c "import sys; sys.exit(0 if $busy <= $QUIET_MAX else 1)"; then
      printf '%s\t%s\t%s\tquiet\t%s\n' "$label" "$busy" "$waited" "$(reference_speed)" >>"$QUIET_LOG"
      return 0
    fi
    if ((waited >= QUIET_WAIT)); then
      local top
      top=$(ps -eo pcpu,comm --sort=-pcpu --no-headers | head -n 4 | awk '{printf "%s %s%%; ", $2, $1}')
      printf '%s\t%s\t%s\tbusy: %s\t%s\n' "$label" "$busy" "$waited" "$top" "$(reference_speed)" >>"$QUIET_LOG"
      echo "   the machine is busy ($busy of its CPU): measuring anyway ($top)" >&2
      return 0
    fi
    sleep 8
    waited=$((waited + 8))
  done
}

# Runs a command; writes its CPU seconds (user + system, its children included) to file $1.
timed() {
  local out=$1
  shift
  python3 -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime + r.ru_stime:.3f}\n")
sys.exit(rc)' "$out" "$@"
}

# Around a run: what the machine, herald and herald-bench (its CPU in file $2) used; logs the
# rest, other processes' share of the machine, and the three of them that used the most, under
# label $1.
snapshot() {
  python3 - "$CERTS/snap.json" <<'PY'
import json, os, sys
procs = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    procs[pid] = [comm, int(rest[11]) + int(rest[12])]
cpu = open("/proc/stat").readline().split()[1:]
machine = [sum(map(int, cpu[0:3])), sum(map(int, cpu[0:8]))]
json.dump({"machine": machine, "procs": procs}, open(sys.argv[1], "w"))
PY
}
during_start() {
  snapshot
  cp "$CERTS/snap.json" "$CERTS/snap0.json"
}
during_end() {
  snapshot
  python3 - "$CERTS/snap0.json" "$CERTS/snap.json" "$2" "$1" "$SERVER_PID" "$(getconf CLK_TCK)" >>"$DURING_LOG" <<'PY'
import json, sys
before, after = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bench = float(open(sys.argv[3]).read() or 0)
label, herald, hz = sys.argv[4], sys.argv[5], int(sys.argv[6])
used = lambda pid: (after["procs"][pid][1] - before["procs"].get(pid, [None, 0])[1]) / hz
machine = (after["machine"][0] - before["machine"][0]) / hz
capacity = (after["machine"][1] - before["machine"][1]) / hz
others = max(machine - used(herald) - bench, 0) if herald in after["procs"] else machine - bench
top = sorted(((used(p), after["procs"][p][0]) for p in after["procs"] if p != herald), reverse=True)[:3]
names = ", ".join(f"{name} {s:.2f} s" for s, name in top if s > 0)
print(f"{label}\t{others / capacity:.3f}\t{names or 'none'}")
PY
}

# herald's CPU seconds so far: utime + stime of /proc/PID/stat.
herald_cpu() {
  local ticks
  ticks=$(getconf CLK_TCK)
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$ticks" '{printf "%.2f", ($12 + $13) / hz}'
}

# A counter of herald's /metrics at control address $1.
metric() {
  curl -sf --max-time 5 "http://$1/metrics" | awk -v m="$2" '$1 == m {print $2}'
}

# Starts herald on a fresh pair of ports, pinned to SERVER_CPU, with the extra flags given;
# sets SERVER_PID, WS_ADDR and CONTROL_ADDR. Logs to $1.
RUN=0
start_herald() {
  local log=$1 line
  shift
  local port=$((PORT_BASE + 2 * RUN))
  RUN=$((RUN + 1))
  taskset -c "$SERVER_CPU" "$HERALD_BIN" --listen "127.0.0.1:$port" --control "127.0.0.1:$((port + 1))" \
    --workers 1 --max-connections-per-ip 0 --connection-rate-per-ip 0 --user-rate 0 "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 $((READY_TIMEOUT * 10))); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    line=$(grep -Eo 'websocket=[^ ]+ control=[^ ]+' "$log" 2>/dev/null | head -n 1 || true)
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

# herald's flags for TLS with certificate kind $1 (none: plain).
tls_server_flags() {
  [[ $1 == none ]] && return 0
  local cert key ca
  read -r cert key ca < <(cert_files "$1")
  echo "--tls-cert $cert --tls-key $key"
}
# herald-bench's flags for TLS with certificate kind $1 and versions $2 (none: plain).
tls_bench_flags() {
  [[ $1 == none ]] && return 0
  local cert key ca
  read -r cert key ca < <(cert_files "$1")
  echo "--tls-ca $ca --tls-version $2"
}

# ---- 1. Handshakes. ----
# name, certificate kind, TLS versions, connections in flight, extra herald-bench flags
HANDSHAKE_RUNS=(
  "plain none - $HANDSHAKE_CONCURRENCY"
  "p256-full p256 1.3 $HANDSHAKE_CONCURRENCY"
  "p256-resumed p256 1.3 $RESUME_CONCURRENCY --tls-resume"
  "p256-tls12-full p256 1.2 $HANDSHAKE_CONCURRENCY"
  "rsa2048-full rsa2048 1.3 $HANDSHAKE_CONCURRENCY"
  "rsa2048-resumed rsa2048 1.3 $RESUME_CONCURRENCY --tls-resume"
)
if [[ " $PARTS " == *" handshakes "* ]]; then
  for round in $(seq 1 "$REPEAT"); do
  echo "== handshakes for $HANDSHAKE_DURATION each ($round of $REPEAT)"
  for spec in "${HANDSHAKE_RUNS[@]}"; do
    read -r name kind versions inflight extra <<<"$spec"
    base="$OUT/handshakes-$name-$round"
    # shellcheck disable=SC2046 # the flags are meant to split
    if ! start_herald "$base.server.log" $(tls_server_flags "$kind"); then
      echo "   $name: herald did not start (see $base.server.log)" >&2
      stop_pid "$SERVER_PID"; SERVER_PID=""
      continue
    fi
    wait_quiet "handshakes-$name-$round"
    h0=$(metric "$CONTROL_ADDR" herald_tls_handshakes_total)
    a0=$(metric "$CONTROL_ADDR" herald_connections_accepted_total)
    c0=$(herald_cpu "$SERVER_PID")
    during_start
    rc=0
    # shellcheck disable=SC2046,SC2086 # the flags are meant to split
    timed "$base.cpu" taskset -c "$BENCH_CPU" "$BENCH_BIN" --handshakes --url "$WS_ADDR" $(tls_bench_flags "$kind" "$versions") $extra \
      --duration "$HANDSHAKE_DURATION" --concurrency "$inflight" \
      --server-pid "$SERVER_PID" --pin-cpu "$BENCH_CPU" --label "$name" --json "$base.json" \
      >"$base.bench.log" 2>&1 || rc=$?
    # The last connections' closes reach herald after the generator ends.
    sleep 0.5
    c1=$(herald_cpu "$SERVER_PID")
    during_end "handshakes-$name-$round" "$base.cpu"
    h1=$(metric "$CONTROL_ADDR" herald_tls_handshakes_total)
    a1=$(metric "$CONTROL_ADDR" herald_connections_accepted_total)
    curl -sf --max-time 5 "http://$CONTROL_ADDR/metrics" >"$base.metrics.txt" || true
    stop_pid "$SERVER_PID"; SERVER_PID=""
    printf 'handshakes\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$base.json" "$inflight" \
      "${h0:-0}" "${h1:-0}" "${a0:-0}" "${a1:-0}" "$c0" "$c1" >>"$MANIFEST"
    echo "   $name: $(tail -n 1 "$base.bench.log")"
  done
  done
fi

# ---- 2. Idle memory. ----
if [[ " $PARTS " == *" idle "* ]]; then
  for n in $IDLE_COUNTS; do
    echo "== idle: $n subscribed sockets for $IDLE_TIME"
    for spec in "plain none -" "tls13 p256 1.3" "tls12 p256 1.2"; do
      read -r name kind versions <<<"$spec"
      base="$OUT/idle-$n-$name"
      # shellcheck disable=SC2046 # the flags are meant to split
      if ! start_herald "$base.server.log" $(tls_server_flags "$kind"); then
        echo "   $name: herald did not start (see $base.server.log)" >&2
        stop_pid "$SERVER_PID"; SERVER_PID=""
        continue
      fi
      LABEL="idle-$n-$name"
      wait_quiet "$LABEL"
      during_start
      rc=0
      # shellcheck disable=SC2046 # the flags are meant to split
      timed "$base.cpu" "$BENCH_BIN" --url "$WS_ADDR" --control "$CONTROL_ADDR" $(tls_bench_flags "$kind" "$versions") \
        --connections "$n" --users "$n" --pattern broadcast --rate 1 --duration 1s --idle-only \
        --idle "$IDLE_TIME" --server-pid "$SERVER_PID" --pin-cpu "$BENCH_CPU" --label "$name" \
        --json "$base.json" --quiet >"$base.bench.log" 2>&1 || rc=$?
      during_end "$LABEL" "$base.cpu"
      curl -sf --max-time 5 "http://$CONTROL_ADDR/metrics" >"$base.metrics.txt" || true
      stop_pid "$SERVER_PID"; SERVER_PID=""
      printf 'idle\t%s\t%s\t%s\t%s\n' "$n-$name" "$rc" "$base.json" "$n" >>"$MANIFEST"
      echo "   $name: $(tail -n 1 "$base.bench.log")"
    done
  done
fi

# ---- 3. Broadcast CPU per delivery. ----
scenario_flags() {
  case "$1" in
    a@*) echo "--connections $BROADCAST_CONNECTIONS --users $BROADCAST_CONNECTIONS --pattern broadcast --rate ${1#a@} --duration $BROADCAST_DURATION" ;;
    sync1) echo "--connections $SYNC1_CONNECTIONS --users $SYNC1_CONNECTIONS --pattern broadcast --rate $SYNC1_RATE --duration $SYNC1_DURATION --synchronous --control-connections 1 --message-size $NOTIFICATION_MESSAGE" ;;
  esac
}
SCENARIOS=()
if [[ " $PARTS " == *" broadcast "* ]]; then
  for rate in $BROADCAST_RATES; do SCENARIOS+=("a@$rate"); done
  SCENARIOS+=(sync1)
  for round in $(seq 1 "$REPEAT"); do
  for sc in "${SCENARIOS[@]}"; do
    echo "== broadcast ($sc, $round of $REPEAT): $(scenario_flags "$sc")"
    for spec in "plain none -" "tls p256 any"; do
      read -r name kind versions <<<"$spec"
      base="$OUT/$sc-$name-$round"
      # shellcheck disable=SC2046 # the flags are meant to split
      if ! start_herald "$base.server.log" $(tls_server_flags "$kind"); then
        echo "   $name: herald did not start (see $base.server.log)" >&2
        stop_pid "$SERVER_PID"; SERVER_PID=""
        continue
      fi
      LABEL="$sc-$name-$round"
      wait_quiet "$LABEL"
      during_start
      rc=0
      # shellcheck disable=SC2046 # the flags are meant to split
      timed "$base.cpu" "$BENCH_BIN" --url "$WS_ADDR" --control "$CONTROL_ADDR" $(tls_bench_flags "$kind" "$versions") \
        $(scenario_flags "$sc") --server-pid "$SERVER_PID" --pin-cpu "$BENCH_CPU" --label "$name" \
        --json "$base.json" --quiet >"$base.bench.log" 2>&1 || rc=$?
      during_end "$LABEL" "$base.cpu"
      curl -sf --max-time 5 "http://$CONTROL_ADDR/metrics" >"$base.metrics.txt" || true
      stop_pid "$SERVER_PID"; SERVER_PID=""
      printf '%s\t%s\t%s\t%s\n' "$sc" "$name" "$rc" "$base.json" >>"$MANIFEST"
      echo "   $name: $(tail -n 1 "$base.bench.log")"
    done
  done
  done
fi

# ---- Where the runs ran, for the record. ----
{
  echo "- date: $(date +%F)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores); herald (--workers 1) on core $SERVER_CPU, herald-bench on core $BENCH_CPU"
  echo "- kernel: $(uname -sr)"
  echo "- $(rustc --version)"
  echo "- $(openssl version | cut -d' ' -f1-2) (the RSA-2048 certificate)"
  echo "- herald $(git rev-parse --short HEAD)"
  echo "- before each run: CPU of the machine (fraction of both cores) over 2 s (a run waits for at"
  echo "  most $QUIET_MAX), and \`openssl speed -seconds 1 ecdsap256\` signs/s on core $SERVER_CPU (this"
  echo "  machine's speed varies); during it: other processes' CPU than herald's and herald-bench's"
  echo "  (fraction of both cores) and the three that used the most:"
  awk -F'\t' 'NR == FNR {during[$1] = $2 " (most: " $3 ")"; next}
    {printf "  %s: before %s, %s signs/s; others during %s%s\n", $1, $2, $5,
      ($1 in during ? during[$1] : "n/a"),
      ($4 == "quiet" ? "" : " (waited " $3 " s, then ran anyway; " $4 ")")}' "$DURING_LOG" "$QUIET_LOG"
} >"$OUT/environment.md"

# ---- The table. ----
flags=()
for sc in "${SCENARIOS[@]}"; do flags+=("$sc=$(scenario_flags "$sc")"); done
python3 - "$MANIFEST" "$OUT" "$HANDSHAKE_DURATION" "$IDLE_TIME" "$REPEAT" "${flags[@]}" <<'PY'
import json, statistics, sys

manifest, out, duration, idle_time, repeat = sys.argv[1:6]
scenarios = [arg.split("=", 1) for arg in sys.argv[6:]]
rows = [line.rstrip("\n").split("\t") for line in open(manifest)]

def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None

def n(v, d=0):
    return "n/a" if v is None else f"{v:,.{d}f}"

def spread(values, d=0):
    """The median, and the range when there are several."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return n(med, d)
    return f"{n(med, d)} ({n(min(values), d)}–{n(max(values), d)})"

def grouped(selected, key):
    groups = {}
    for r in selected:
        groups.setdefault(key(r), []).append(r)
    return groups

lines = [f"Each handshake and broadcast run was made {repeat} times, TLS next to plain each time: "
         "the median, and (min–max).", ""]
hs = [r for r in rows if r[0] == "handshakes"]
if hs:
    lines += [f"### Handshakes: {duration} each, herald --workers 1 on one core", "",
              "| run | in flight | handshakes/s achieved | herald CPU µs/handshake | handshakes/s per core | full / resumed (client) | generator's core busy | failed |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, runs in grouped(hs, lambda r: r[1]).items():
        rates, cpus, busy, full, resumed, failed, broken = [], [], [], 0, 0, 0, 0
        for _, _, rc, path, inflight, h0, h1, a0, a1, c0, c1 in runs:
            j = load(path)
            if j is None:
                broken += 1
                continue
            # Plain runs have no TLS handshake: they count accepted connections.
            count = int(a1) - int(a0) if name == "plain" else int(h1) - int(h0)
            rates.append(count / j["seconds"])
            cpus.append((float(c1) - float(c0)) * 1e6 / count if count else None)
            client = j.get("client_cpu_ns")
            busy.append(client / 1e9 / j["seconds"] * 100 if client else None)
            full, resumed, failed = full + j["full"], resumed + j["resumed"], failed + j["failed"]
        valid = [c for c in cpus if c]
        per_core = 1e6 / statistics.median(valid) if valid else None
        kinds = "–" if name == "plain" else f"{full:,} / {resumed:,}"
        label = name + (" (connect, close)" if name == "plain" else "")
        fails = f"{failed:,}" + (f", {broken} runs failed" if broken else "")
        lines.append(f"| {label} | {runs[0][4]} | {spread(rates)} | {spread(cpus, 1)} | {n(per_core)} | {kinds} | "
                     f"{spread(busy)}% | {fails} |")
    lines += ["", "handshakes: herald_tls_handshakes_total over the run (plain: herald_connections_accepted_total); "
              "herald CPU: utime+stime of /proc/PID/stat over the run (10 ms ticks), divided by the handshakes; "
              "per core: 1 s over the median. p256: the test certificate (ECDSA P-256); rsa2048: made by openssl "
              "for this run. Key exchange X25519 (rustls's first choice). A connection: connect, handshake, read "
              "the tickets (TLS 1.3), close_notify, close; herald's accept, its connection's setup and close are "
              "in the figure. Generator's core busy: herald-bench's CPU over the run (near 100%: the generator "
              "was the limit, not herald).", ""]

idle = [r for r in rows if r[0] == "idle"]
if idle:
    lines += [f"### Idle memory: subscribed raw WebSockets, herald's VmRSS before and {idle_time} after the last subscribed", "",
              "| connections | herald | connected | RSS before | RSS idle | RSS per connection | over plain |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    plain = {}
    for _, key, rc, path, count in idle:
        j = load(path)
        name = key.split("-", 1)[1]
        if j is None:
            lines.append(f"| {int(count):,} | {name} | run failed (exit {rc}) | | | | |")
            continue
        per = j.get("rss_per_connection")
        if name == "plain":
            plain[count] = per
        extra = "" if name == "plain" or per is None or plain.get(count) is None else f"+{(per - plain[count]) / 1024:,.1f} KiB"
        mib = lambda b: "n/a" if b is None else f"{b / 2**20:,.1f} MiB"
        lines.append(f"| {int(count):,} | {name} | {j['connections_ok']:,} | {mib(j.get('rss_baseline'))} | {mib(j.get('rss_idle'))} | "
                     f"{'n/a' if per is None else f'{per / 1024:,.2f} KiB'} | {extra} |")
    lines.append("")

for sc, flags in scenarios:
    runs = [r for r in rows if r[0] == sc]
    if not runs:
        continue
    title = f"(a) broadcast, {sc[2:]}/s" if sc.startswith("a@") else f"({sc}) one synchronous caller"
    lines += [f"### {title}: `{flags}`", "",
              "| herald | answered | deliveries/s | CPU ns/delivery | TLS over plain (each pair) | delivery p50 µs | p99 µs | call p50 µs | lost |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    data = {name: [load(r[3]) for r in rs] for name, rs in grouped(runs, lambda r: r[1]).items()}
    cpu = lambda j: j.get("cpu_ns_per_delivery") if j else None
    pairs = [t / p for p, t in zip(map(cpu, data.get("plain", [])), map(cpu, data.get("tls", []))) if p and t]
    for name, js in data.items():
        ok = [j for j in js if j]
        answered = f"{sum(j.get('pushes_answered', 0) for j in ok):,}/{sum(j.get('pushes_planned', 0) for j in ok):,}"
        ratio = "" if name == "plain" else ("×" + spread(pairs, 2) if pairs else "n/a")
        lat = lambda q: spread([(j.get("latency_us") or {}).get(q) for j in ok])
        lines.append(f"| {name} | {answered} | {spread([j.get('deliveries_per_sec') for j in ok])} | "
                     f"{spread([cpu(j) for j in ok])} | {ratio} | {lat('p50')} | {lat('p99')} | "
                     f"{spread([(j.get('push_call_us') or {}).get('p50') for j in ok])} | "
                     f"{sum(j.get('deliveries_lost', 0) for j in ok):,} |")
    lines.append("")

# The machine around the runs, in short (environment.md has every run).
quiet = [l.rstrip("\n").split("\t") for l in open(f"{out}/quiet.tsv")]
during = [l.rstrip("\n").split("\t") for l in open(f"{out}/during.tsv")]
speeds = [float(q[4]) for q in quiet if len(q) > 4 and q[4]]
others = [(float(d[1]), d[0], d[2]) for d in during]
waited_out = [q[0] for q in quiet if q[3] != "quiet"]
if speeds:
    lines.append(f"Reference speed before the runs (`openssl speed ecdsap256` signs/s on herald's core): "
                 f"{min(speeds):,.0f}–{max(speeds):,.0f}, median {statistics.median(speeds):,.0f}.")
if others:
    worst = max(others)
    lines.append(f"Other processes' CPU during the runs: at most {worst[0]:.3f} of the machine ({worst[1]}: {worst[2]}); "
                 f"{sum(1 for o in others if o[0] >= 0.05)} of {len(others)} runs at 0.05 or more.")
if waited_out:
    lines.append(f"Runs started on a busy machine after waiting the longest allowed: {', '.join(waited_out)}.")
lines += ["", open(f"{out}/environment.md").read()]
text = "\n".join(lines)
open(f"{out}/table.md", "w").write(text)
print(text)
PY
echo "results: $OUT"
