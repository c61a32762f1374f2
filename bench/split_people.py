"""The "two people under one name" hint of `facestore evaluate`, on real faces.

Embeds a folder of per-person folders (ORL) with a real backbone (default dlib), then
runs facestore.evaluate.split_people:
- on the library as it is: how many single people it lists (false hints);
- for --pairs random pairs of people merged under one name (with the other people
  as they are): whether the merged name is listed, and how many single people with it.
For factors around the default, so the choice can be seen.

    python bench/split_people.py ../shared/datasets/att_faces [--backbone dlib] [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.cluster import embed_folder  # noqa: E402
from facestore.evaluate import SPLIT_FACTOR, split_people  # noqa: E402
from facestore.training import build_dataset  # noqa: E402

FACTORS = (1.25, SPLIT_FACTOR, 1.75, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description="the split-people hint on real faces")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    vectors, people = embed_folder(args.folder, args.backbone)
    names = sorted(set(people.tolist()))
    ids = list(range(len(people)))
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.choice(names, 2, replace=False)) for _ in range(args.pairs)]
    results = []
    for factor in FACTORS:
        single = split_people(build_dataset(ids, people.tolist(), vectors), factor, top=len(names))
        caught = false_hints = 0
        for a, b in pairs:
            merged = ["merged" if p in (a, b) else p for p in people.tolist()]
            listed = {
                s.person_id
                for s in split_people(build_dataset(ids, merged, vectors), factor, top=len(names))
            }
            caught += "merged" in listed
            false_hints += len(listed - {"merged"})
        results.append(
            {
                "factor": factor,
                "people": len(names),
                "single_people_listed": len(single),
                "merged_pairs_listed": round(caught / len(pairs), 3),
                "single_people_listed_beside_a_merge": round(false_hints / len(pairs), 2),
            }
        )
    print(json.dumps(results))
    print("factor  single listed (of people)  merged pairs listed  singles listed beside a merge")
    for r in results:
        print(
            f"{r['factor']:6.2f}  {r['single_people_listed']:6d} of {r['people']:<14d}  "
            f"{r['merged_pairs_listed']:19.3f}  {r['single_people_listed_beside_a_merge']:29.2f}"
        )


if __name__ == "__main__":
    main()
