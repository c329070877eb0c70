#!/usr/bin/env bash
# A first load test of reco on this machine: 20,000 clustered 128-d entities on the embedded
# database, imported through the API, then wrk on loopback for 10 s per case, 100 connections.
# Bounded in time and count; traffic goes to 127.0.0.1 only. The full comparison against the
# reference design (PostgreSQL ranking, 1,000 connections, 1k/10k/20k) is issue 5's `perf/`.
#
#   perf/smoke.sh            (builds the release binary; installs wrk from Debian if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
port="${RECO_SMOKE_PORT:-18080}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p reco-server --manifest-path "$root/Cargo.toml"
reco="$root/target/release/reco"

python3 - "$work/entities.jsonl" <<'PY'
import json, random, sys
random.seed(7)
dim, n = 128, 20000
centres = [[random.uniform(-1, 1) for _ in range(dim)] for _ in range(50)]
with open(sys.argv[1], "w") as f:
    for i in range(n):
        v = [round(x + random.uniform(-0.35, 0.35), 5) for x in centres[i % 50]]
        f.write(json.dumps({"id": f"e{i}", "vector": v, "category": f"c{i % 10}"}) + "\n")
PY

# A budget far above what two cores can serve, so the limiter does not shape the figures.
RUST_LOG=warn RECO_RATE_LIMIT=10000000 "$reco" serve --bind "127.0.0.1:$port" --data-dir "$work/data" \
    > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
export RECO_URL="http://127.0.0.1:$port"
"$reco" tenant create bench --dimension 128 --metric cosine >/dev/null
start=$(date +%s%N)
"$reco" import "$work/entities.jsonl" --tenant bench --kind entities --batch-size 2000 >/dev/null
echo "import of 20,000 entities through the API: $(( ($(date +%s%N) - start) / 1000000 )) ms"

cat > "$work/random.lua" <<'LUA'
math.randomseed(42)
local exact = os.getenv("EXACT") == "1" and "&exact=true" or ""
request = function()
  return wrk.format("GET", "/v1/tenants/bench/entities/e" .. math.random(0, 19999) .. "/similar?k=10" .. exact)
end
LUA
run() {
    local name="$1"; shift
    local out
    out="$(wrk -t2 -c100 -d10s --latency "$@")"
    printf '| %s | %s | %s | %s | %s |\n' "$name" \
        "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
        "$(echo "$out" | awk '$1 == "50%" {print $2}')" \
        "$(echo "$out" | awk '$1 == "99%" {print $2}')" \
        "$(echo "$out" | awk '/Non-2xx/ {print $5; f=1} END {if (!f) print 0}')"
}
echo "| case | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
run "similar, random ids (cache on)" -s "$work/random.lua" "http://127.0.0.1:$port"
EXACT=1 run "similar, random ids, exact=true" -s "$work/random.lua" "http://127.0.0.1:$port"
run "similar, one id (cache hits)" "http://127.0.0.1:$port/v1/tenants/bench/entities/e1/similar?k=10"
run "/health/live (ceiling)" "http://127.0.0.1:$port/health/live"
echo "server RSS: $(( $(ps -o rss= -p $server) / 1024 )) MiB for 20,000 x 128"
