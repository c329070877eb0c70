"""Baselines on MovieLens-100K by the protocol of issue 13, beside which reco's models are read.

Each user's last rating in time (ties by item id, as text) is their test item when it is 4 or more;
everything else trains. Every item the user has not rated in training is ranked, and HR@10 and
NDCG@10 count the test item's place (ties in its favour, as the Rust example counts them).

- most-popular: items by how many users rated them;
- item-kNN: cosine similarity of item columns, each item's `k` nearest kept, `k` tuned;
- EASE (Steck 2019): the closed form, lambda tuned.

Tuning uses a validation split taken from training alone (each user's last training rating in
time, when it is 4 or more), then the model is fitted again on all of training and tested.
Usage: python3 baselines.py PATH/ml-100k.inter
"""

import sys

import numpy as np


def load(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            u, i, r, t = line.rstrip("\n").split("\t")
            rows.append((u, i, float(r), float(t)))
    users = {u: n for n, u in enumerate(sorted({r[0] for r in rows}, key=int))}
    items = {i: n for n, i in enumerate(sorted({r[1] for r in rows}, key=int))}
    by_user = [[] for _ in users]
    for u, i, r, t in rows:
        by_user[users[u]].append((t, items[i], r, i))
    # Ties in time go by the item's id as text, as `reco evaluate` orders them.
    for events in by_user:
        events.sort(key=lambda e: (e[0], e[3]))
    by_user = [[e[:3] for e in events] for events in by_user]
    return by_user, len(items)


def split(by_user):
    """Training events per user, and (user, item) tests: the last event when rated 4 or more."""
    train, tests = [], []
    for u, events in enumerate(by_user):
        if events and events[-1][2] >= 4:
            tests.append((u, events[-1][1]))
            train.append(events[:-1])
        else:
            train.append(list(events))
    return train, tests


def matrix(train, n_items):
    x = np.zeros((len(train), n_items), dtype=np.float64)
    for u, events in enumerate(train):
        for _, i, _ in events:
            x[u, i] = 1.0
    return x


def evaluate(scores, x, tests):
    hits, ndcg = 0.0, 0.0
    for u, test in tests:
        s = scores[u].copy()
        s[x[u] > 0] = -np.inf
        own = s[test]
        better = int(np.sum(s > own))
        if better < 10:
            hits += 1
            ndcg += 1 / np.log2(better + 2)
    return hits / len(tests), ndcg / len(tests)


def popular(x):
    return np.tile(x.sum(axis=0), (x.shape[0], 1))


def item_knn(x, k):
    norms = np.sqrt(x.sum(axis=0)) + 1e-12
    sim = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0.0)
    if k < sim.shape[0]:
        cut = np.partition(sim, -k, axis=0)[-k]
        sim[sim < cut] = 0.0
    return x @ sim


def ease(x, lam):
    g = x.T @ x
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return x @ b


def tuned(name, fit, grid, train, n_items):
    """The grid value with the best validation NDCG@10, then the test on all of training."""
    inner, validation = split(train)
    xv = matrix(inner, n_items)
    best = max(grid, key=lambda v: evaluate(fit(xv, v), xv, validation)[1])
    return best


def main():
    by_user, n_items = load(sys.argv[1])
    train, tests = split(by_user)
    x = matrix(train, n_items)
    print(f"{len(by_user)} users ({len(tests)} tested), {n_items} items, "
          f"{int(x.sum())} training ratings")
    rows = [("most-popular", "", evaluate(popular(x), x, tests))]
    k = tuned("item-kNN", item_knn, [10, 20, 50, 100, 200, 400], train, n_items)
    rows.append(("item-kNN", f"k={k}", evaluate(item_knn(x, k), x, tests)))
    lam = tuned("EASE", ease, [10, 50, 100, 200, 500, 1000, 2000], train, n_items)
    rows.append(("EASE", f"lambda={lam}", evaluate(ease(x, lam), x, tests)))
    print("| model | tuned | HR@10 | NDCG@10 |")
    print("|---|---|---|---|")
    for name, setting, (hr, ndcg) in rows:
        print(f"| {name} | {setting} | {hr:.4f} | {ndcg:.4f} |")


if __name__ == "__main__":
    main()
