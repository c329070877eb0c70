#!/usr/bin/env bash
# MovieLens-100K by the protocol of issue 13, side by side in one run: the baselines
# (most-popular, item-kNN, EASE), the learner alone (iALS and EASE without time), and
# `reco evaluate` on the raw log (its own
# 1997-98 timestamps, genres as the only content vectors): every strategy on the test split, on
# the validation split, and with a tenth of the movies made new. The data comes from the recbole
# wheel on PyPI into .state/movielens, never into the repository; numpy is installed if missing.
# Reports land in .state/movielens/report-*.{json,svg}.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=.state/movielens
source="$data/recbole/dataset_example/ml-100k"
if [ ! -f "$source/ml-100k.inter" ]; then
    mkdir -p "$data"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check recbole -d "$data"
    (cd "$data" && python3 -m zipfile -e recbole-*.whl . >/dev/null)
fi
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy
echo "== baselines (tuned on validation, scored on test)"
python3 benches/movielens/baselines.py "$source/ml-100k.inter"
echo "== the learner alone (no time decay)"
cargo run --release --quiet -p reco-learn --example movielens -- "$source/ml-100k.inter"
python3 benches/movielens/to_reco.py "$source" "$data/reco"
cargo build --release --quiet -p reco-server
evaluate() {
    target/release/reco evaluate --entities "$data/reco/entities.jsonl" \
        --interactions "$data/reco/interactions.jsonl" "$@"
}
echo "== reco evaluate: test"
evaluate --json "$data/report-test.json" --chart "$data/report-test.svg"
echo "== reco evaluate: validation (the test left out)"
evaluate --validate --json "$data/report-validation.json"
echo "== reco evaluate: a tenth of the movies new (no training interaction names them)"
evaluate --new-entities 0.1 --json "$data/report-new.json" --chart "$data/report-new.svg"
echo "== EASE's regularization on validation (the default, 8, is the baselines' λ = 500)"
for r in 2 4 8 16; do
    echo "$r: $(evaluate --validate --strategies collaborative --ease-regularization "$r" 2>/dev/null | tail -1)"
done
echo "== iALS instead of EASE (test), over five model seeds"
for seed in 1 2 3 4 5; do
    evaluate --algorithm ials --strategies collaborative --model-seed "$seed" 2>/dev/null | tail -1
done
