# shellcheck shell=bash
# What every scenario of tests/chaos/ shares: the binaries, the output directory, free ports,
# starting and stopping herald and redis-server, reading /metrics, running the soak and reading
# its summary, and cleaning every process up on exit. Sourced by each scenario after `set -euo
# pipefail`, with the scenario's name in SCENARIO.

CHAOS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$CHAOS_ROOT" || exit 1

HERALD_BIN=${HERALD_BIN:-target/release/herald}
HERALD_BENCH_BIN=${HERALD_BENCH_BIN:-target/release/herald-bench}
CHAOS_OUT=${CHAOS_OUT:-target/chaos}
# The whole soak: churn, then settle and drain (below). Ramp and start-up come on top.
CHAOS_DURATION=${CHAOS_DURATION:-2m}

# herald notices a silent client within PING_INTERVAL + PING_TIMEOUT; the soak's --reap-after
# adds a second for timers that fire late.
PING_INTERVAL=2
PING_TIMEOUT=2
REAP_AFTER=$((PING_INTERVAL + PING_TIMEOUT + 1))
# After the churn: clients away come back (away at most 10 s, a vanished one REAP_AFTER more);
# then the pushes stop and deliveries still owed arrive.
SETTLE=20
DRAIN=10

# Processes this scenario started and has not yet reaped: killed on exit.
CHAOS_PIDS=()

chaos_log() {
  printf '[%s %s] %s\n' "$(date +%T)" "$SCENARIO" "$*" >&2
}

# A check failed: say which, and exit 1 (the EXIT trap cleans up).
chaos_fail() {
  printf '\n%s: FAILED: %s\n(results in %s)\n' "$SCENARIO" "$*" "$OUT" >&2
  exit 1
}

# Seconds in a duration: 90, 90s, 2m, 1h, 1m30s.
seconds_of() {
  local s=$1 total=0 n unit
  [[ $s =~ ^[0-9]+$ ]] && { echo "$s"; return; }
  while [[ -n $s ]]; do
    [[ $s =~ ^([0-9]+)([smh])(.*)$ ]] || { echo "not a duration: $1 (e.g. 90s, 2m, 1h)" >&2; return 1; }
    n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]}
    case $unit in
      s) total=$((total + n)) ;;
      m) total=$((total + n * 60)) ;;
      h) total=$((total + n * 3600)) ;;
    esac
  done
  echo "$total"
}

# Sets up the scenario: its output directory (emptied), the open-file limit, the binaries
# (absolute paths, checked), the cleanup trap, and the churn phase's length in CHURN seconds.
chaos_init() {
  OUT=$CHAOS_OUT/$SCENARIO
  rm -rf "$OUT"
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local bin
  for bin in HERALD_BIN HERALD_BENCH_BIN; do
    [[ -x ${!bin} ]] || chaos_fail "${!bin} is not built ($bin; cargo build --release)"
    printf -v "$bin" '%s' "$(cd "$(dirname "${!bin}")" && pwd)/$(basename "${!bin}")"
  done
  "$HERALD_BENCH_BIN" soak --help >/dev/null 2>&1 || chaos_fail "$HERALD_BENCH_BIN has no soak command"
  trap chaos_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local total
  total=$(seconds_of "$CHAOS_DURATION")
  CHURN=$((total - SETTLE - DRAIN))
  ((CHURN >= 30)) || chaos_fail "CHAOS_DURATION=$CHAOS_DURATION leaves less than 30 s of churn (settle ${SETTLE}s and drain ${DRAIN}s come out of it)"
  chaos_log "results in $OUT; churn ${CHURN}s, settle ${SETTLE}s, drain ${DRAIN}s; ulimit -n $(ulimit -n)"
}

# Stops whatever is still running (SIGCONT first, for a stopped redis-server), SIGKILL after 5 s.
chaos_cleanup() {
  local rc=$? pid left
  trap - EXIT INT TERM
  if ((${#CHAOS_PIDS[@]} > 0)); then
    for pid in "${CHAOS_PIDS[@]}"; do
      kill -CONT "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
      left=0
      for pid in "${CHAOS_PIDS[@]}"; do
        alive "$pid" && left=1
      done
      ((left)) || break
      sleep 0.1
    done
    for pid in "${CHAOS_PIDS[@]}"; do
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  fi
  if ((rc == 0)); then
    printf '%s: passed (results in %s)\n' "$SCENARIO" "$OUT" >&2
  fi
  exit "$rc"
}

# Whether PID runs (a zombie, exited but not yet reaped, does not).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# Remembers a process for cleanup.
chaos_track() {
  CHAOS_PIDS+=("$1")
}

# Reaps a process that ended (or waits for it) and forgets it; its exit status in REAPED.
chaos_reap() {
  local pid=$1 kept=() p
  REAPED=0
  wait "$pid" 2>/dev/null || REAPED=$?
  for p in "${CHAOS_PIDS[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  CHAOS_PIDS=("${kept[@]}")
}

# Waits up to $2 seconds for process $1 to end; reaps it. Fails the scenario past that.
wait_exit() {
  local pid=$1 limit=$2 what=$3
  for _ in $(seq $((limit * 10))); do
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && chaos_fail "$what (pid $pid) still runs ${limit}s later"
  chaos_reap "$pid"
}

# A loopback port free when asked.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- herald -----------------------------------------------------------------------------------

# Flags every scenario gives herald: short pings, and the per-address limits off (every client
# comes from loopback), as the integration tests run it.
HERALD_COMMON=(
  --ping-interval "${PING_INTERVAL}s" --ping-timeout "${PING_TIMEOUT}s"
  --max-connections-per-ip 0 --connection-rate-per-ip 0 --user-rate 0 --client-rate 0
  --control-auth-failures 0
)

# herald_start NAME PUBLIC_PORT CONTROL_PORT [FLAG...]: starts herald, its log appended to
# $OUT/NAME.log and its pid written to $OUT/NAME.pid (the file the soak follows), and waits
# until its control API answers /healthz.
herald_start() {
  local name=$1 public=$2 control=$3 pid
  shift 3
  printf -- '--- %s: herald %s\n' "$(date +%T)" "$*" >>"$OUT/$name.log"
  RUST_LOG=${RUST_LOG:-info} "$HERALD_BIN" --listen "127.0.0.1:$public" --control "127.0.0.1:$control" \
    "${HERALD_COMMON[@]}" "$@" >>"$OUT/$name.log" 2>&1 &
  pid=$!
  chaos_track "$pid"
  echo "$pid" >"$OUT/$name.pid.new"
  mv "$OUT/$name.pid.new" "$OUT/$name.pid"
  for _ in $(seq 300); do
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$control/healthz" && return 0
    alive "$pid" || { tail -n 20 "$OUT/$name.log" >&2; chaos_fail "herald $name exited at start"; }
    sleep 0.1
  done
  chaos_fail "herald $name did not answer /healthz within 30 s"
}

herald_pid() {
  cat "$OUT/$1.pid"
}

# herald_stop NAME SIGNAL LIMIT: signals herald and waits up to LIMIT seconds for it to exit;
# its exit status in REAPED.
herald_stop() {
  local name=$1 sig=$2 limit=$3 pid
  pid=$(herald_pid "$name")
  kill "-$sig" "$pid"
  wait_exit "$pid" "$limit" "herald $name after SIG$sig"
}

# The value of one unlabelled series in herald's /metrics at control port $1 (empty when it
# does not answer).
metric() {
  curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v s="$2" '$1 == s { print $2; exit }' || true
}

# The sum of one series over several control ports; empty if one of them did not answer.
metric_sum() {
  local series=$1 port v sum=0
  shift
  for port in "$@"; do
    v=$(metric "$port" "$series")
    [[ -n $v ]] || return 0
    sum=$(awk -v a="$sum" -v b="$v" 'BEGIN { printf "%.0f", a + b }')
  done
  echo "$sum"
}

# Open descriptors of a process.
fds_of() {
  find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# Resident memory of a process, in KiB.
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# --- redis-server -----------------------------------------------------------------------------

# redis_start PORT DIR: starts redis-server on PORT with DIR as its working directory (its dump,
# if any, dump.rdb there, is loaded); no save points (a dump only when asked). Pid in REDIS_PID.
redis_start() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb \
    --save '' --appendonly no >>"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  chaos_track "$REDIS_PID"
  for _ in $(seq 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    alive "$REDIS_PID" || chaos_fail "redis-server exited at start (see redis.log)"
    sleep 0.1
  done
  chaos_fail "redis-server did not answer within 10 s"
}

# redis_shutdown PORT SAVE|NOSAVE: shuts redis-server down (writing its dump first with SAVE).
redis_shutdown() {
  redis-cli -p "$1" shutdown "$2" >/dev/null 2>&1 || true
  wait_exit "$REDIS_PID" 30 "redis-server after SHUTDOWN $2"
}

# --- the soak ---------------------------------------------------------------------------------

# soak_start FLAG...: runs `herald-bench soak` in the background with the scenario's phases and
# outputs (soak.json, soak.csv, soak.svg; its lines in soak.log and on the terminal). Pid in
# SOAK_PID, start time in SOAK_T0.
soak_start() {
  {
    printf -- 'herald-bench soak'
    printf ' %q' "$@"
    printf '\n'
  } >"$OUT/soak.cmd"
  "$HERALD_BENCH_BIN" soak "$@" \
    --duration "${CHURN}s" --settle "${SETTLE}s" --drain "${DRAIN}s" --reap-after "${REAP_AFTER}s" \
    --json "$OUT/soak.json" --csv "$OUT/soak.csv" --svg "$OUT/soak.svg" \
    > >(tee -a "$OUT/soak.log") 2>&1 &
  SOAK_PID=$!
  SOAK_T0=$(date +%s)
  chaos_track "$SOAK_PID"
}

# Waits until herald's subscriptions, summed over the control ports given, reach $1, or the soak says
# its ramp is done. Fails if the soak exits first or the ramp takes longer than $2 seconds. Sets RAMPED_AT
# (epoch seconds).
wait_ramp() {
  local want=$1 limit=$2 n
  shift 2
  for _ in $(seq $((limit * 2))); do
    n=$(metric_sum herald_subscriptions "$@")
    # The soak says when its ramp is done: at a large scale some clients may drop (their stay
    # counts from their own subscription) before the last one subscribed.
    if { [[ -n $n ]] && ((n >= want)); } || grep -q 'ramp done' "$OUT/soak.log" 2>/dev/null; then
      RAMPED_AT=$(date +%s)
      chaos_log "ramp over: $n subscriptions after $((RAMPED_AT - SOAK_T0))s"
      return 0
    fi
    alive "$SOAK_PID" || chaos_fail "the soak exited during the ramp (see soak.log)"
    sleep 0.5
  done
  chaos_fail "only ${n:-no} subscriptions of $want after ${limit}s of ramp"
}

# Sleeps until $1 seconds after the ramp ended; fails if the soak exited meanwhile.
at() {
  local due=$((RAMPED_AT + $1)) now
  now=$(date +%s)
  ((due > now)) && sleep $((due - now))
  alive "$SOAK_PID" || chaos_fail "the soak exited before ${1}s of churn (see soak.log)"
}

# One figure of the soak's summary (soak.json), by its dotted path: lost, returns.new_epoch.
soak_get() {
  python3 - "$OUT/soak.json" "$1" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v))
PY
}

# soak_expect PATH OP N: fails the scenario unless the summary's figure at PATH compares so
# (OP: == or >) with N.
soak_expect() {
  local v
  [[ -s $OUT/soak.json ]] || chaos_fail "the soak wrote no summary (see soak.log)"
  v=$(soak_get "$1") || chaos_fail "no $1 in the soak's summary"
  case $2 in
    '==') [[ $v == "$3" ]] ;;
    '>') [[ $v =~ ^[0-9]+$ ]] && ((v > $3)) ;;
    *) false ;;
  esac || chaos_fail "the soak's $1 is $v, expected $2 $3"
}

# The soak's verdict: its summary printed, then its exit status, lost and duplicated checked
# (WHAT names the soak in the failure, "the soak's checks" by default).
soak_verdict() {
  local what=${1:-"the soak's checks"}
  soak_summary
  ((SOAK_STATUS == 0)) || chaos_fail "$what failed (exit $SOAK_STATUS; see soak.log)"
  soak_expect lost == 0
  soak_expect duplicated == 0
}

# Prints the soak's figures from its summary, also to summary.txt.
soak_summary() {
  [[ -s $OUT/soak.json ]] || {
    chaos_log "the soak wrote no summary"
    return 0
  }
  python3 - "$OUT/soak.json" <<'PY' | tee "$OUT/summary.txt"
import json, sys
j = json.load(open(sys.argv[1]))
r, p = j.get("returns", {}), j.get("pushes", {})
print(f"clients {j.get('clients')}, connections {j.get('connections')}, "
      f"ramp {j.get('ramp_s') or 0:.1f}s, run {j.get('elapsed_s') or 0:.0f}s")
print(f"drops {j.get('drops')}; returns: {r.get('recovered')} recovered, {r.get('new_epoch')} new epoch, "
      f"{r.get('late')} late, {r.get('refused')} refused; {j.get('stranded')} stranded")
print(f"pushes {p.get('made')} made, {p.get('accepted')} accepted ({p.get('logged')} logged, "
      f"{p.get('degraded')} degraded); by status {p.get('by_status')}")
print(f"received {j.get('received')}, owed {j.get('owed')}, delivered {j.get('delivered')}, "
      f"lost {j.get('lost')}, duplicated {j.get('duplicated')}, out of order {j.get('out_of_order')}, "
      f"misrouted {j.get('misrouted')}, before their start {j.get('before_start')}, "
      f"of an epoch left {j.get('foreign_epoch')}")
mib = lambda b: "-" if b is None else f"{b / 1048576:.1f}"
for i, s in enumerate(j.get("servers", [])):
    print(f"server {i}: RSS MiB {mib(s.get('rss_start'))} / {mib(s.get('rss_peak'))} / "
          f"{mib(s.get('rss_end'))}, fds {s.get('fds_start')} / {s.get('fds_peak')} / "
          f"{s.get('fds_end')} (after ramp / peak / end)")
print("passed" if j.get("passed") else "FAILED")
PY
}

# Waits for the soak to end (at most its phases after the ramp plus $1 seconds); its status in
# SOAK_STATUS.
soak_wait() {
  local limit=$((CHURN + SETTLE + DRAIN + $1))
  local left=$((RAMPED_AT + limit - $(date +%s)))
  ((left > 0)) || left=1
  wait_exit "$SOAK_PID" "$left" "the soak"
  SOAK_STATUS=$REAPED
  chaos_log "soak exited $SOAK_STATUS"
}

# --- probes -----------------------------------------------------------------------------------

# The epoch of herald's log, as the control API at port $1 names it: the part of a push's offset
# before the dash. The push goes to a user no client of the soak is (chaos-probe), so the soak's
# accounts do not see it. Empty when the push was not logged (no offset in the answer).
log_epoch() {
  curl -sf --max-time 5 -H 'Content-Type: application/json' \
    -d '{"type":"PROBE","message":"probe"}' \
    "http://127.0.0.1:$1/v1/users/chaos-probe/notifications" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("offset", "").split("-")[0])' || true
}
