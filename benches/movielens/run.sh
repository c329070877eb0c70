#!/usr/bin/env bash
# MovieLens-100K by the protocol of issue 13: the baselines (most-popular, item-kNN, EASE) and
# reco's learner, side by side in one run. The data comes from the recbole wheel on PyPI into
# .state/movielens, never into the repository; numpy is installed if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=.state/movielens
inter="$data/recbole/dataset_example/ml-100k/ml-100k.inter"
if [ ! -f "$inter" ]; then
    mkdir -p "$data"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check recbole -d "$data"
    (cd "$data" && python3 -m zipfile -e recbole-*.whl . >/dev/null)
fi
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy
python3 benches/movielens/baselines.py "$inter"
cargo run --release --quiet -p reco-learn --example movielens -- "$inter"
