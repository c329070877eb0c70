#!/usr/bin/env bash
# reco's approximate search beside faiss, on the same data and queries, in one session (issue 6):
# the criterion `ann` bench (exact f32 one by one and 64 in a shared pass, the int8 scan, and the
# HNSW graph at several ef, with recall@10), then
# faiss (flat exact one by one and batched, HNSW M = 16, int8 scan) on the bench's dump, one
# core each. Set RECO_BENCH_1M=1 to add 1M × 128 (minutes more).
#
#   benches/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import faiss, numpy" 2>/dev/null || pip install -q faiss-cpu numpy
dump="$PWD/target/ann-data"
RECO_BENCH_DUMP="$dump" cargo bench -p reco-benches --bench ann
echo
echo "## reco"
python3 benches/table.py | grep -E '^\| (benchmark|---|`ann/)'
echo
echo "## recall@10 and memory (target/criterion/ann.json)"
python3 - <<'PY'
import json
print("| scale | setting | recall@10 | bytes per entity |\n|---|---|---|---|")
for r in json.load(open("target/criterion/ann.json")):
    print(f"| {r['scale']} | {r['setting']} | {r['recall']:.4f} | {r['bytes_per_entity']} |")
PY
echo
echo "## faiss"
python3 benches/faiss_compare.py "$dump"
