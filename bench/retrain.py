"""Retrain fit time, peak RSS and validation accuracy per classifier, side by side.

Synthetic 512-d face-like embeddings: unit-norm vectors around per-person
centres, with per-sample noise and a shared low-rank "nuisance" (pose, light)
component (mean cosine to the own centre about 0.3: a hard set, so the
classifiers differ), 20 faces per person (so 100k vectors = 5k people). Each
(size, classifier) runs `facestore.training.fit` (stratified split, validation,
refit on all) in its own process, so the peak RSS is that fit's alone; a fit over
the time cap is stopped and reported as such.

    python bench/retrain.py [--sizes 10000 50000 100000] [--classifiers svc logreg centroid]
                            [--per-person 20] [--cap 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, warnings
import numpy as np
from facestore.classifiers import classifier_factory  # noqa: E402
from facestore.training import build_dataset, fit
warnings.simplefilter("ignore")
n, per_person, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
people = n // per_person
centres = rng.normal(0, 1, (people, 512)).astype(np.float32)
centres /= np.linalg.norm(centres, axis=1, keepdims=True)
nuisance = rng.normal(0, 1, (16, 512)).astype(np.float32) / np.sqrt(512)
labels = np.repeat(np.arange(people), per_person)
X = centres[labels] + 0.1 * rng.normal(0, 1, (n, 512)).astype(np.float32)
X += rng.normal(0, 0.6, (n, 16)).astype(np.float32) @ nuisance
X /= np.linalg.norm(X, axis=1, keepdims=True)
dataset = build_dataset(list(range(n)), labels.tolist(), X)
started = time.perf_counter()
result = fit(dataset, classifier_factory(name), val_fraction=0.2, seed=42)
print(json.dumps({"seconds": time.perf_counter() - started, "accuracy": result.accuracy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="retrain fit time / RSS / accuracy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--classifiers", nargs="+", default=["svc", "lda", "centroid", "logreg"])
    parser.add_argument("--per-person", type=int, default=20)
    parser.add_argument("--cap", type=float, default=300, help="seconds before a fit is stopped")
    args = parser.parse_args()
    print("vectors  people  classifier  fit_s    peak_rss_mib  val_accuracy")
    for n in args.sizes:
        for name in args.classifiers:
            result = measure(n, args.per_person, name, args.cap)
            if result.get("stopped"):
                cap = f"stopped at the {args.cap:.0f}s cap"
                print(f"{n:7d}  {n // args.per_person:6d}  {name:10s}  {cap}")
                continue
            if "failed" in result:
                print(
                    f"{n:7d}  {n // args.per_person:6d}  {name:10s}  failed "
                    f"(exit {result['failed']}, peak RSS {result['rss_mib']} MiB)"
                )
                continue
            print(
                f"{n:7d}  {n // args.per_person:6d}  {name:10s}  {result['seconds']:7.1f}  "
                f"{result['rss_mib']:12d}  {result['accuracy']:.4f}"
            )
            sys.stdout.flush()


def measure(n: int, per_person: int, name: str, cap: float) -> dict:
    """One fit in a child process; its own peak RSS comes from wait4."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(n), str(per_person), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            out = proc.stdout.read()
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            rss = usage.ru_maxrss // 1024
            if code != 0:
                return {"failed": code, "rss_mib": rss}
            return {**json.loads(out), "rss_mib": rss}
        time.sleep(0.2)
    proc.kill()
    os.wait4(proc.pid, 0)
    proc.returncode = -9
    return {"stopped": True}


if __name__ == "__main__":
    main()
