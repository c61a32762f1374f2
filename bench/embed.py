"""End-to-end `embed` throughput against the raw model throughput, on one device.

Builds a synthetic app database of N realistic 160x160 JPEG crops, runs the real
incremental pipeline (read batch -> parallel decode -> model -> guarded write),
then times the bare model on already-preprocessed tensors of the same batch size
on the same device, and prints both and their ratio.

The raw model's speed drifts on a shared machine (95-119 faces/s within minutes
here), so each round times the raw model just before and just after one
end-to-end run on a fresh copy of the database, and its ratio is end-to-end over
the mean of those two; the median of the rounds is the figure.

    python bench/embed.py 2000 [--rounds 3] [--batch-size 32] [--device auto] [--weights PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import app_database, random_weights, scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.images import decode_crop  # noqa: E402
from facestore.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore embed throughput")
    parser.add_argument("faces", type=int, nargs="?", default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default=os.environ.get("FACESTORE_WEIGHTS"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()

    work = scratch("facestore-bench-", keep=args.keep)
    started = time.perf_counter()
    db = app_database(work / "app.db", args.faces)
    print(f"built {args.faces} JPEG crops in {time.perf_counter() - started:.1f}s ({db})")
    weights = Path(args.weights) if args.weights else random_weights(work / "w.pt")
    backbone = build_backbone(BackboneSettings(weights=weights, device=args.device))
    print(f"device: {backbone.device_info}")  # type: ignore[attr-defined]
    store = Store(database.create_engine(f"sqlite:///{db}"))

    # warm-up outside the timings (first calls allocate and pick kernels)
    warm = np.zeros((args.batch_size, 3, 160, 160), dtype=np.float32)
    backbone.embed_prepared(warm)  # type: ignore[attr-defined]

    batches = max(1, args.faces // args.batch_size)
    # the same kind of input as the pipeline: real crops, decoded and preprocessed
    first = store.library.crops_of(list(range(1, args.batch_size + 1))).values()
    tensor = np.stack([backbone.prepare(decode_crop(blob)) for blob in first])  # type: ignore[attr-defined]

    def raw_model() -> float:
        started = time.perf_counter()
        for _ in range(batches):
            backbone.embed_prepared(tensor)  # type: ignore[attr-defined]
        return batches * args.batch_size / (time.perf_counter() - started)

    ratios = []
    for round_number in range(1, args.rounds + 1):
        fresh = work / f"round-{round_number}.db"
        shutil.copy(db, fresh)
        store = Store(database.create_engine(f"sqlite:///{fresh}"))
        raw_before = raw_model()
        report = embed_pending(store, backbone, batch_size=args.batch_size)
        raw_after = raw_model()
        store.engine.dispose()
        assert report.embedded == args.faces and report.pending == 0, report
        end_to_end = report.embedded / report.seconds
        raw = (raw_before + raw_after) / 2
        ratios.append(end_to_end / raw)
        print(
            f"round {round_number}: end-to-end {end_to_end:.1f} faces/s "
            f"({report.embedded} in {report.seconds:.1f}s), raw model {raw:.1f} faces/s "
            f"(before {raw_before:.1f}, after {raw_after:.1f}; batch {args.batch_size}), "
            f"ratio {end_to_end / raw:.3f}"
        )
    print(f"median ratio: {statistics.median(ratios):.3f} over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
