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
        [--backbone casia-webface]
        [--engine torch --engine onnxruntime ...] [--busy N] [--json out.json]

With several --engine (default: torch and every CPU engine installed) the engines run
one after the other in each round, on fresh copies of the same database, and the
summary gives each engine's end-to-end rate against torch's. --busy N runs N busy-loop
processes beside the timings (a home server busy with other work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import app_database, busy_loops, random_weights, scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.images import decode_crop  # noqa: E402
from facestore.store import Store  # noqa: E402


def main() -> None:
    from facestore.backbones.engines import installed

    parser = argparse.ArgumentParser(description="facestore embed throughput")
    parser.add_argument("faces", type=int, nargs="?", default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="vggface2", help="vggface2 or casia-webface")
    parser.add_argument("--weights", default=os.environ.get("FACESTORE_WEIGHTS"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", action="append", dest="engines", help="repeatable")
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()
    engines = args.engines or ["torch", *(e for e in ("onnxruntime", "openvino") if installed(e))]

    work = scratch("facestore-bench-", keep=args.keep)
    started = time.perf_counter()
    db = app_database(work / "app.db", args.faces)
    print(f"built {args.faces} JPEG crops in {time.perf_counter() - started:.1f}s ({db})")
    weights = Path(args.weights) if args.weights else random_weights(work / "w.pt")
    backbones = {}
    for engine in engines:
        settings = BackboneSettings(args.backbone, weights, device=args.device, engine=engine)
        backbones[engine] = build_backbone(settings)
        print(f"{engine}: {backbones[engine].device_info}")  # type: ignore[attr-defined]
    store = Store(database.create_engine(f"sqlite:///{db}"))
    # the same kind of input as the pipeline: real crops, decoded and preprocessed
    first = store.library.crops_of(list(range(1, args.batch_size + 1))).values()
    any_backbone = next(iter(backbones.values()))
    tensor = np.stack([any_backbone.prepare(decode_crop(blob)) for blob in first])  # type: ignore[attr-defined]
    batches = max(1, args.faces // args.batch_size)
    for backbone in backbones.values():  # warm-up outside the timings
        backbone.embed_prepared(tensor)  # type: ignore[attr-defined]

    def raw_model(backbone: object) -> float:
        started = time.perf_counter()
        for _ in range(batches):
            backbone.embed_prepared(tensor)  # type: ignore[attr-defined]
        return batches * args.batch_size / (time.perf_counter() - started)

    def one_face_ms(backbone: object, times: int = 20) -> float:
        """The model's latency for a single face (what one predict waits for), median."""
        seconds = []
        for _ in range(times):
            started = time.perf_counter()
            backbone.embed_prepared(tensor[:1])  # type: ignore[attr-defined]
            seconds.append(time.perf_counter() - started)
        return 1000 * statistics.median(seconds)

    def one_round(round_number: int, engine: str, backbone: object) -> dict[str, float]:
        """One end-to-end run on a fresh copy of the database, between two raw timings."""
        fresh = work / f"round-{round_number}-{engine}.db"
        shutil.copy(db, fresh)
        store = Store(database.create_engine(f"sqlite:///{fresh}"))
        raw_before = raw_model(backbone)
        report = embed_pending(store, backbone, batch_size=args.batch_size)
        raw_after = raw_model(backbone)
        store.engine.dispose()
        assert report.embedded == args.faces and report.pending == 0, report
        end_to_end = report.embedded / report.seconds
        raw = (raw_before + raw_after) / 2
        one_face = one_face_ms(backbone)
        print(
            f"round {round_number} {engine}: end-to-end {end_to_end:.1f} faces/s "
            f"({report.embedded} in {report.seconds:.1f}s), raw model {raw:.1f} faces/s "
            f"(before {raw_before:.1f}, after {raw_after:.1f}; batch {args.batch_size}), "
            f"ratio {end_to_end / raw:.3f}; one face alone {one_face:.1f} ms"
        )
        return {"end_to_end": end_to_end, "raw": raw, "one_face_ms": one_face}

    results: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    with busy_loops(args.busy):
        for round_number in range(1, args.rounds + 1):
            for engine, backbone in backbones.items():
                results[engine].append(one_round(round_number, engine, backbone))
    summary = {}
    torch_rate = None
    for engine, rows in results.items():
        end_to_end = statistics.median(r["end_to_end"] for r in rows)
        raw = statistics.median(r["raw"] for r in rows)
        ratio = statistics.median(r["end_to_end"] / r["raw"] for r in rows)
        one_face = statistics.median(r["one_face_ms"] for r in rows)
        torch_rate = end_to_end if engine == "torch" else torch_rate
        summary[engine] = {
            "end_to_end": end_to_end,
            "raw": raw,
            "ratio": ratio,
            "one_face_ms": one_face,
        }
        print(
            f"{engine:12s} median end-to-end {end_to_end:6.1f} faces/s, raw {raw:6.1f}, "
            f"ratio {ratio:.3f}, one face {one_face:.1f} ms"
            + (f", {end_to_end / torch_rate:.2f}x torch" if torch_rate else "")
        )
    if args.json:
        args.json.write_text(
            json.dumps({"faces": args.faces, "busy": args.busy, "summary": summary}, indent=2)
        )


if __name__ == "__main__":
    main()
