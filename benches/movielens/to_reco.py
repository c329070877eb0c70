"""MovieLens-100K as reco reads it: entities (with their genres as content vectors) and
interactions, in JSON lines, for `reco import` or `reco evaluate`.

A rating of 4 or 5 is a like, 3 a view, 1 or 2 a dislike; its time is the rating's own (1997-98).
A movie's vector is its genres, one component each (MovieLens has 19, "unknown" among them),
which is the content a shop would have without any embedding model.
Usage: python3 to_reco.py PATH/ml-100k OUT_DIR
"""

import datetime
import json
import os
import sys


def main():
    source, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    movies = []
    with open(os.path.join(source, "ml-100k.item"), encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            fields = line.rstrip("\n").split("\t")
            genres = fields[3].split() if len(fields) > 3 else []
            movies.append((fields[0], genres))
    vocabulary = sorted({g for _, gs in movies for g in gs} | {"unknown"})
    with open(os.path.join(out, "entities.jsonl"), "w") as f:
        for movie, genres in movies:
            genres = genres or ["unknown"]
            vector = [1.0 if g in genres else 0.0 for g in vocabulary]
            f.write(json.dumps({"id": movie, "vector": vector, "tags": genres}) + "\n")
    with open(os.path.join(source, "ml-100k.inter")) as f, \
            open(os.path.join(out, "interactions.jsonl"), "w") as o:
        next(f)
        for line in f:
            user, movie, rating, at = line.rstrip("\n").split("\t")
            rating = float(rating)
            kind = "like" if rating >= 4 else "view" if rating >= 3 else "dislike"
            when = datetime.datetime.fromtimestamp(float(at), tz=datetime.timezone.utc)
            o.write(json.dumps({
                "user": user, "entity": movie, "kind": kind,
                "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }) + "\n")
    print(f"{len(movies)} movies with {len(vocabulary)} genres; interactions written to {out}")


if __name__ == "__main__":
    main()
