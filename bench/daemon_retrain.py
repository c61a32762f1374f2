"""The daemon's own retrain on a kept library: its time and the daemon's peak RSS.

`facestore retrain` is measured by bench/scale.py as a process of its own. The daemon
retrains in-process, beside what it serves: the loaded model, the training pairs its
retrain policy follows, and (with its defaults) suggestions and clusters. This starts
`facestore watch` against a library that bench/scale.py kept, relabels a few faces
so that the policy fires at once, and reads the daemon's peak RSS (VmHWM) once the
new model is published.

    python bench/scale.py --faces 1000000 --people 10000 --keep DIR
    python bench/daemon_retrain.py DIR [--relabel 20] [--no-clusters] [--cap 1200]

It prints one JSON object (rss_before_retrain_mib, retrain_s, peak_rss_mib, ...). The
daemon serves /metrics on 127.0.0.1:9469 meanwhile: that tells when its passes end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

PUBLISHED = re.compile(r"Retrain published model (\S+) .*?([\d.]+)s\)")
PORT = 9469


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def rss_mib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{field} missing for pid {pid}")


def metric(name: str) -> float:
    """A gauge from the daemon's /metrics (0 while it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_until(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, cap: float, what: str
) -> None:
    deadline = time.monotonic() + cap
    while not condition():
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} within {cap:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description="the daemon's retrain at scale")
    parser.add_argument("keep", type=Path, help="a directory bench/scale.py --keep made")
    parser.add_argument("--relabel", type=int, default=20, help="faces moved to another person")
    parser.add_argument("--no-clusters", action="store_true")
    parser.add_argument("--cap", type=float, default=1200, help="seconds to wait per step")
    args = parser.parse_args()

    env = {**os.environ, **read_env(args.keep / "facestore.env")}
    engine = sa.create_engine(env["FACESTORE_DB"])
    log = args.keep / "daemon-retrain.log"
    command = [sys.executable, "-m", "facestore", "watch", "--metrics-addr", f"127.0.0.1:{PORT}"]
    command += ["--retrain-min-changes", "1", "--retrain-delay", "0", "--retrain-cooldown", "0"]
    command += ["--interval", "3600"] + (["--no-clusters"] if args.no_clusters else [])
    reconciled = "facestore_last_reconcile_timestamp_seconds"
    retrained = "facestore_last_retrain_timestamp_seconds"
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    result: dict[str, object] = {"clusters": not args.no_clusters}
    try:
        # the start: model loaded, every pair read once, suggestions (and clusters) written
        wait_until(lambda: metric(reconciled) > 0, proc, log, args.cap, "first reconcile")
        result["start_s"] = round(time.perf_counter() - started, 1)
        result["rss_before_retrain_mib"] = rss_mib(proc.pid, "VmRSS")
        result["peak_before_retrain_mib"] = rss_mib(proc.pid, "VmHWM")
        with engine.begin() as conn:  # the app relabels a few verified faces
            ids = list(
                conn.execute(
                    sa.text("SELECT id FROM face WHERE verified ORDER BY id LIMIT :n"),
                    {"n": args.relabel},
                ).scalars()
            )
            conn.execute(
                sa.text("UPDATE face SET person_id = person_id + 1 WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        relabelled = time.time()
        wait_until(lambda: metric(retrained) > relabelled, proc, log, args.cap, "retrain")
        result["woken_to_published_s"] = round(metric(retrained) - relabelled, 1)
        found = PUBLISHED.findall(log.read_text())  # the last: the start may retrain too
        result["retrains"] = len(found)
        result["retrain_s"] = float(found[-1][1]) if found else None
        # the pass goes on with the new model's suggestions; it ends with a reconcile mark
        wait_until(
            lambda: metric(reconciled) > metric(retrained), proc, log, args.cap, "the pass end"
        )
        result["rss_after_mib"] = rss_mib(proc.pid, "VmRSS")
        result["peak_rss_mib"] = rss_mib(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(json.dumps(result))
    for key, value in result.items():
        print(f"{key:26s} {value}")


if __name__ == "__main__":
    main()
