"""bench/gpu.py stays runnable: its smoke run on the CPU, as the issue's check runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_bench_smoke_run_on_the_cpu(weights_file: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FACESTORE_WEIGHTS": str(weights_file)},
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout[: run.stdout.index("\n}\n") + 2])
    assert report["device"] == "cpu" and report["faces"] == 96
    assert report["raw_model"]["float32"] > 0 and report["end_to_end"]["float32"] > 0
    assert report["decode"]["cpu_threads"] > 0 and report["decode"]["gpu_nvjpeg"] is None
    assert "ratio" in run.stdout
