"""Throughput of the embedding pipeline on a device, in one self-contained run.

Builds its own SQLite database of N synthetic 160x160 JPEG crops and random
vggface2-format weights, then measures:

- the raw model per precision (and compiled, with --compile), on prepared batches;
- decoding alone: the CPU route in worker processes (shared-memory slots, as `embed`
  does) and in threads, and on a CUDA device the GPU route (batched nvjpeg decode,
  letterbox and normalisation on the GPU: facestore.backbones.tensor_preprocess);
- end-to-end `embed` (claim, decode, model, guarded write, overlapped) per precision,
  on the CPU route and, on a CUDA device, on the GPU route too;
- peak host RSS of this process and of its decode workers.

Prints one JSON object, then a table of faces/s and end-to-end/raw ratios.

    python bench/gpu.py --device cuda --faces 20000 --batch-size 1024 --compile
    python bench/gpu.py --device cpu --smoke        # under a minute; the tests run it
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import app_database, random_weights, scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone  # noqa: E402
from facestore.backbones.preprocess import prepare  # noqa: E402
from facestore.backbones.tensor_preprocess import decode_batch  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.decoding import DecodePool, ThreadDecoding, decoder  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.images import decode_crop  # noqa: E402
from facestore.process_decoding import ProcessDecoding  # noqa: E402
from facestore.store import Crop, Store  # noqa: E402


def crops_of(db: Path, limit: int) -> list[bytes]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT face_crop_blob FROM face LIMIT ?", (limit,))]
    finally:
        con.close()


def timed(run: Any, repeat: int) -> float:
    """Best seconds of `repeat` runs (the first, warm-up, run is not counted)."""
    run()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def raw_model(settings: BackboneSettings, batch: np.ndarray, repeat: int) -> float:
    backbone: Any = build_backbone(settings)
    seconds = timed(lambda: backbone.embed_prepared(batch), repeat)
    return len(batch) / seconds


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process (Linux), shared-memory pages it touched included."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


WORKER_PEAKS: list[float] = []


def pool_decode(pool: DecodePool, crops: list[bytes], batch_size: int) -> float:
    """Faces/s of a decode pool alone, batches in flight two at a time as in `embed`."""
    batches = [
        [Crop(i, blob) for i, blob in enumerate(crops[at : at + batch_size], start=at)]
        for at in range(0, len(crops), batch_size)
    ]

    def run() -> None:
        pending = []
        for batch in batches:
            pending.append(pool.submit(batch))
            if len(pending) == 2:
                done = pending.pop(0)
                done.result()
                done.release()
        for done in pending:
            done.result()
            done.release()

    try:
        rate = len(crops) / timed(run, 1)
        if isinstance(pool, ProcessDecoding):
            WORKER_PEAKS.extend(peak_rss_mib(pid) for pid in pool.worker_pids())
        return rate
    finally:
        pool.close()


def gpu_decode(crops: list[bytes], device: str) -> float | None:
    """The GPU route's decode + letterbox + normalisation (backbones.tensor_preprocess)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None

    def run() -> None:
        decode_batch(crops, device)
        torch.cuda.synchronize()

    return len(crops) / timed(run, 2)


def end_to_end(db: Path, settings: BackboneSettings) -> tuple[float, int]:
    fresh = db.with_name(f"e2e-{settings.precision}-{settings.device_decode}.db")
    fresh.write_bytes(db.read_bytes())
    store = Store(database.create_engine(f"sqlite:///{fresh}"))
    backbone = build_backbone(settings)
    report = embed_pending(store, backbone, batch_size=settings.batch_size)
    store.engine.dispose()
    return report.embedded / report.seconds, report.embedded


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore pipeline throughput on a device")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--faces", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=None, help="[cpu: 32, cuda: 1024]")
    parser.add_argument("--precisions", nargs="+", default=None, help="[cpu: float32 bfloat16]")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")
    batch_size = args.batch_size or (1024 if cuda else 32)
    faces = 96 if args.smoke else args.faces
    precisions = args.precisions or (
        ["float32", "float16", "bfloat16"] if cuda else ["float32", "bfloat16"]
    )
    if args.smoke:
        batch_size, precisions = min(batch_size, 32), precisions[:1]
    work = scratch("facestore-gpu-", keep=args.keep)
    db = app_database(work / "app.db", faces)
    weights = Path(os.environ.get("FACESTORE_WEIGHTS") or random_weights(work / "w.pt"))
    crops = crops_of(db, min(faces, batch_size * 4))
    batch = np.stack([prepare(decode_crop(c)) for c in crops[:batch_size]])
    repeat = 1 if args.smoke else 3

    def settings(
        precision: str, compile_model: bool = False, device_decode: str = "off"
    ) -> BackboneSettings:
        return BackboneSettings(
            weights=weights,
            device=args.device,
            batch_size=batch_size,
            precision=precision,
            channels_last=cuda and precision != "float32",
            compile=compile_model,
            device_decode=device_decode,
        )

    result: dict[str, Any] = {
        "device": args.device,
        "faces": faces,
        "batch_size": batch_size,
        "cpus": os.cpu_count(),
        "raw_model": {},
        "end_to_end": {},
    }
    if cuda:
        import torch

        result["gpu"] = torch.cuda.get_device_name(args.device)
    for precision in precisions:
        result["raw_model"][precision] = raw_model(settings(precision), batch, repeat)
        if args.compile:
            result["raw_model"][f"{precision}+compile"] = raw_model(
                settings(precision, compile_model=True), batch, repeat
            )
    backbone: Any = build_backbone(settings(precisions[0]))
    processes = ProcessDecoding(backbone, batch_size)
    result["decode_workers"] = processes.workers
    result["decode"] = {
        "cpu_processes": pool_decode(processes, crops, batch_size),
        "cpu_threads": pool_decode(ThreadDecoding(decoder(backbone)), crops, batch_size),
        "gpu_nvjpeg": gpu_decode(crops, args.device),
    }
    del backbone
    routes = ["off", "on"] if cuda else ["off"]  # device decode: the GPU route
    for precision in precisions:
        for route in routes:
            rate, embedded = end_to_end(db, settings(precision, device_decode=route))
            assert embedded == faces, f"embedded {embedded} of {faces}"
            name = precision if route == "off" else f"{precision}+gpu-decode"
            result["end_to_end"][name] = rate
    result["peak_rss_mib"] = {
        "this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_worker": max(WORKER_PEAKS, default=float("nan")),  # in the decode-alone run
    }
    print(json.dumps(result, indent=2))
    print(f"\n{'precision':<18}{'raw faces/s':>14}{'end-to-end':>14}{'ratio':>8}")
    for precision, rate in result["end_to_end"].items():
        raw = result["raw_model"][precision.split("+gpu-decode")[0]]
        print(f"{precision:<18}{raw:>14.1f}{rate:>14.1f}{rate / raw:>8.3f}")
    for name, rate in result["decode"].items():
        shown = "n/a (no CUDA device)" if rate is None else f"{rate:.1f} faces/s"
        print(f"decode {name:<14}{shown}")
    rss = result["peak_rss_mib"]
    print(
        f"peak RSS: {rss['this_process']:.0f} MiB, largest worker {rss['largest_worker']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
