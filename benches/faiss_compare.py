#!/usr/bin/env python3
"""faiss on the very data and queries of `cargo bench --bench ann`, on one core.

`benches/compare.sh` runs both in one session; this reads the dump the ann bench wrote
(`RECO_BENCH_DUMP`): `<scale>.f32` (row-major f32 vectors) and `<scale>.queries` (u32 rows).
Cosine, as in the bench: vectors are normalised and searched by inner product. A query's own
row is left out of its results, as reco's similar-by-id does. Prints a markdown table and writes
`faiss.json` beside the dump.

    python3 benches/faiss_compare.py target/ann-data
"""
import json
import pathlib
import sys
import time

import faiss
import numpy as np

# Searches run on one core, as reco's bench does; indexes are built on both, as reco's are.
BUILD_THREADS = 2
DIMENSIONS = {"20k": 128, "100k": 128, "1m": 128, "20k-384d": 384}
K = 10


def load(folder, label):
    d = DIMENSIONS[label]
    x = np.fromfile(folder / f"{label}.f32", dtype="<f4").reshape(-1, d)
    rows = np.fromfile(folder / f"{label}.queries", dtype="<u4").astype(np.int64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32), rows


def without_self(ids, rows):
    return [[i for i in found if i != row][:K] for found, row in zip(ids, rows)]


def recall(truth, found):
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth, found))
    return hits / sum(len(t) for t in truth)


def timed_one_by_one(index, q):
    started = time.perf_counter()
    ids = [index.search(q[i : i + 1], K + 1)[1][0] for i in range(len(q))]
    return (time.perf_counter() - started) / len(q), np.array(ids)


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/ann-data")
    results = []
    for label in DIMENSIONS:
        if not (folder / f"{label}.f32").exists():
            continue
        faiss.omp_set_num_threads(1)
        x, rows = load(folder, label)
        q = x[rows]
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        seconds, ids = timed_one_by_one(flat, q)
        truth = without_self(ids, rows)
        results.append((label, "flat exact, one query at a time", seconds, 1.0))
        started = time.perf_counter()
        _, batched = flat.search(q, K + 1)
        results.append(
            (label, f"flat exact, {len(q)} queries batched", (time.perf_counter() - started) / len(q),
             recall(truth, without_self(batched, rows)))
        )
        hnsw = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 200  # reco's expansion_add
        faiss.omp_set_num_threads(BUILD_THREADS)
        hnsw.add(x)
        faiss.omp_set_num_threads(1)
        for ef in (16, 32, 64, 128, 256) + ((192, 512) if len(x) >= 1_000_000 else ()):
            hnsw.hnsw.efSearch = ef
            seconds, ids = timed_one_by_one(hnsw, q)
            results.append((label, f"HNSW, M = 16, ef = {ef}", seconds, recall(truth, without_self(ids, rows))))
        sq = faiss.IndexScalarQuantizer(x.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(BUILD_THREADS)
        sq.train(x)
        sq.add(x)
        faiss.omp_set_num_threads(1)
        seconds, ids = timed_one_by_one(sq, q)
        results.append((label, "int8 scan, no rescoring", seconds, recall(truth, without_self(ids, rows))))
    print("| scale | faiss search | µs per query | queries/s | recall@10 |")
    print("|---|---|---|---|---|")
    for label, name, seconds, r in results:
        print(f"| {label} | {name} | {seconds * 1e6:.1f} | {1 / seconds:,.0f} | {r:.4f} |")
    (folder / "faiss.json").write_text(
        json.dumps([{"scale": l, "search": n, "us": s * 1e6, "recall": r} for l, n, s, r in results])
    )


if __name__ == "__main__":
    main()
