#!/usr/bin/env bash
# herald on Redis (`--redis`) beside herald alone, in one run:
#
#  1. CPU per push and per delivery on one node, alone and with --redis, for the scenarios of
#     benches/compare.sh (sync1: one synchronous caller broadcasting; unicast32: 32 synchronous
#     callers, unicast; a: broadcast at a steady rate), and Redis's own CPU per push from
#     `INFO cpu` over each run (`INFO commandstats` counts the pushes: one XADD each).
#  2. What pushes for users a node does not hold cost it (benches/cluster/targeted.mjs): three
#     nodes, one user on the first, pushes to that user through the second; each node's bytes
#     read from Redis and CPU over the pushes, beside the same time idle.
#
#   benches/cluster/run.sh                 # build, then run (about three minutes)
#   benches/cluster/run.sh --no-build
#
# Results go to benches/results/<date>-cluster/: table.md (also printed), environment.md, and
# each compare.sh run's own directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCENARIOS=${SCENARIOS:-sync1,unicast32,a}
BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
OUT=${OUT:-benches/results/$(date +%F)-cluster}
mkdir -p "$OUT"
if [[ $BUILD == 1 ]]; then
  cargo build --release -p herald -p herald-bench
fi
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)"; exit 1; }
(cd benches/cluster && npm ci --no-audit --no-fund >/dev/null)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Redis on the load generator's core: herald's core stays its own.
taskset -c 1 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
URL="redis://127.0.0.1:$PORT"

# Redis's CPU seconds (user + sys) and XADDs so far.
redis_cpu() { redis-cli -p "$PORT" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {printf "%.6f", s}'; }
redis_xadds() { redis-cli -p "$PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_xadd:/ {print $3} END {}' | head -n1; }

ROWS=()
for scenario in ${SCENARIOS//,/ }; do
  for mode in alone redis; do
    extra=""
    [[ $mode == redis ]] && extra="--redis $URL"
    cpu0=$(redis_cpu); x0=$(redis_xadds); x0=${x0:-0}
    HERALD_EXTRA_ARGS="$extra" benches/compare.sh --no-build --only herald \
      --scenarios "$scenario" --out "$OUT/$scenario-$mode" >"$OUT/$scenario-$mode.log" 2>&1 || true
    cpu1=$(redis_cpu); x1=$(redis_xadds); x1=${x1:-0}
    json="$OUT/$scenario-$mode/$scenario-herald.json"
    ROWS+=("$scenario $mode $json $cpu0 $cpu1 $x0 $x1")
  done
done

node benches/cluster/targeted.mjs --redis "$URL" --out "$OUT/targeted.json" >"$OUT/targeted.log" 2>&1
node benches/cluster/targeted.mjs --redis "$URL" --user-rate 1000000 \
  --out "$OUT/targeted-rate.json" >"$OUT/targeted-rate.log" 2>&1

python3 - "$OUT" "${ROWS[@]}" <<'PY'
import json, sys
out = sys.argv[1]
rows = [r.split() for r in sys.argv[2:]]
lines = ["### One node, alone and with --redis (Redis on the generator's core)", "",
         "| scenario | herald | pushes answered | pushes/s | CPU ns/push | CPU ns/delivery | p50 µs | p99 µs | Redis CPU µs/push | lost |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
def fmt(v, d=0):
    if v is None: return "n/a"
    return f"{v:,.{d}f}"
for scenario, mode, path, c0, c1, x0, x1 in rows:
    try:
        j = json.load(open(path))
    except Exception:
        lines.append(f"| {scenario} | {mode} | run failed | | | | | | | |")
        continue
    pushes = int(x1) - int(x0)
    redis_us = (float(c1) - float(c0)) * 1e6 / pushes if mode == "redis" and pushes > 0 else None
    lat = j.get("latency_us") or {}
    answered = j.get("pushes_answered", j.get("pushes"))
    lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        scenario, "alone" if mode == "alone" else "--redis",
        fmt(answered), fmt(j.get("pushes_per_sec")), fmt(j.get("cpu_ns_per_push")),
        fmt(j.get("cpu_ns_per_delivery")), fmt(lat.get("p50")), fmt(lat.get("p99")),
        fmt(redis_us, 1), fmt(j.get("deliveries_lost"))))
t = json.load(open(f"{out}/targeted.json"))
lines += ["", f"### Pushes for a user on one node of three ({t['pushes']} pushes through node 1, user on node 0)", "",
          "| node | holds the user | bytes read from Redis (pushes) | pushes read | CPU ms during pushes | CPU ms same time idle |",
          "|---|---|---:|---:|---:|---:|"]
for n in t["nodes"]:
    lines.append(f"| {n['node']} | {'yes' if n['holds'] else 'no'} | {n['bytes']:,} | {n['pushes']:,} | {n['cpu_ms']:.1f} | {n['idle_cpu_ms']:.1f} |")
lines += ["", f"Redis CPU over those pushes: {t['redis_cpu_us_per_push']:.1f} µs/push; pushes took {t['seconds']:.2f} s ({t['pushes']/t['seconds']:,.0f}/s, one synchronous caller)."]
r = json.load(open(f"{out}/targeted-rate.json"))
lines += [f"The same with `--user-rate` on (each push checks the user's bucket in Redis, never refused): Redis {r['redis_cpu_us_per_push']:.1f} µs/push, {r['pushes']/r['seconds']:,.0f} pushes/s; the holder read {r['nodes'][0]['pushes']:,} pushes, the others {r['nodes'][1]['pushes'] + r['nodes'][2]['pushes']:,}."]
text = "\n".join(lines) + "\n"
open(f"{out}/table.md", "w").write(text)
print(text)
PY
{
  echo "- date: $(date +%F)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores); herald on core 0, herald-bench and redis-server on core 1"
  echo "- kernel: $(uname -sr)"
  echo "- $(rustc --version)"
  echo "- $(redis-server --version | cut -d' ' -f1-3)"
  echo "- herald $(git rev-parse --short HEAD)"
} >"$OUT/environment.md"
