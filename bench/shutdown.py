"""SIGTERM mid-batch while other processes saturate every core: how long until exit?

Builds an app database with a backlog, starts busy-loop processes (one per core
by default), and for each run starts `facestore watch`, waits for its first
written batch, sends SIGTERM a moment later (mid-batch), and times the exit.
Afterwards `facestore embed` finishes the backlog, to show nothing was lost:
every face ends embedded, none failed, no lease left behind.

    python bench/shutdown.py [--runs 5] [--faces 600] [--batch-size 32] [--busy N]

Needs weights (FACESTORE_WEIGHTS); without them it writes a random
vggface2-format file first, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import app_database, busy_loops, random_weights, scratch, start_watch  # noqa: E402


def wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"watch never logged {text!r}:\n{log.read_text()}")
        time.sleep(0.05)


def one_run(db: Path, work: Path, weights: str, batch_size: int, run: int) -> dict[str, object]:
    log = work / f"watch-{run}.log"
    proc = start_watch(
        db,
        work,
        log,
        "--no-suggestions",
        "--no-retrain",
        "--batch-size",
        str(batch_size),
        "--weights",
        weights,
    )
    wait_for_text(log, "Embedded ", proc, timeout=600)
    time.sleep(random.uniform(0.2, 1.5))  # land inside the next batch
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    text = log.read_text()
    return {
        "run": run,
        "seconds": round(time.monotonic() - sent, 2),
        "exit": code,
        "mid_batch": "Stopping mid-batch" in text,
        "traceback": "Traceback" in text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore watch: SIGTERM under CPU load")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="busy loops")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()

    work = scratch("facestore-shutdown-", keep=args.keep)
    db = app_database(work / "app.db", args.faces)
    weights = os.environ.get("FACESTORE_WEIGHTS") or str(random_weights(work / "w.pt"))
    with busy_loops(args.busy):
        runs = [one_run(db, work, weights, args.batch_size, r) for r in range(args.runs)]
    for r in runs:
        print(json.dumps(r))
    finish = subprocess.run(
        [
            sys.executable,
            "-m",
            "facestore",
            "--db",
            str(db),
            "embed",
            "--json",
            "--weights",
            weights,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    con = sqlite3.connect(db)
    embedded, failed, leased = con.execute(
        "SELECT (SELECT count(*) FROM embedding), (SELECT count(*) FROM embedding_failure), "
        "(SELECT count(*) FROM embedding_job WHERE lease_owner IS NOT NULL)"
    ).fetchone()
    con.close()
    seconds = [float(r["seconds"]) for r in runs]  # type: ignore[arg-type]
    print(f"cpus: {os.cpu_count()}, busy loops: {args.busy}, batch size: {args.batch_size}")
    print(f"SIGTERM to exit: max {max(seconds):.2f} s, mean {sum(seconds) / len(seconds):.2f} s")
    print(
        f"exit codes: {sorted({r['exit'] for r in runs})}, mid-batch stops: "
        f"{sum(bool(r['mid_batch']) for r in runs)}/{len(runs)}, "
        f"tracebacks: {sum(bool(r['traceback']) for r in runs)}"
    )
    print(
        f"after a restart ({json.loads(finish.stdout)['embedded']} embedded by it): "
        f"{embedded}/{args.faces} faces embedded, {failed} failed, {leased} leases left"
    )


if __name__ == "__main__":
    main()
