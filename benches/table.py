#!/usr/bin/env python3
"""Prints the criterion results under target/criterion as a markdown table.

Run after `cargo bench -p reco-benches`:

    python3 benches/table.py > benches/RESULTS.md
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for bench in root.glob("**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    estimates = json.loads((bench.parent / "estimates.json").read_text())
    rows[meta["full_id"]] = estimates["median"]["point_estimate"]  # nanoseconds


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


print("| benchmark | median | per second (one core) |")
print("|---|---|---|")
order = ["similar/", "similar_filtered/", "recommend/", "user/", "trending/", "cached/", "read/", "ann/"]
for prefix in order:
    for full_id in sorted((i for i in rows if i.startswith(prefix)), key=lambda i: (i.split("/")[1].replace("k", "").zfill(8), i)):
        ns = rows[full_id]
        if full_id.endswith("/exact-batched"):
            ns /= 64  # an iteration answers 64 questions in one pass
            full_id += " (per question)"
        print(f"| `{full_id}` | {fmt(ns)} | {1e9 / ns:,.0f} |")
