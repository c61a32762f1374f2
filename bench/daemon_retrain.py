"""The daemon's own retrains on a kept library: their time, and the memory of the
daemon and of the retrain processes it starts.

`facestore retrain` is measured by bench/scale.py as a process of its own. The daemon
retrains in a child process (facestore.daemon.child_retrain), beside what it serves:
the loaded model, the training pairs its retrain policy follows, and (with its
defaults) suggestions and clusters. This starts `facestore watch` against a library
that bench/scale.py kept, then `--retrains` times relabels a few faces so that the
trigger fires at once, and waits for the new model's pass to end. Meanwhile it samples
the RSS of the daemon and its children every 0.25 s: `peak_tree_mib` is the most the
daemon and its retrain process held together, the figure a 4 GB machine must fit.

    python bench/scale.py --faces 1000000 --people 10000 --keep DIR
    python bench/daemon_retrain.py DIR [--retrains 3] [--relabel 20] [--no-clusters]

It prints one JSON object (rss_after_mib per retrain, retrain_s, peak_tree_mib, ...).
The daemon serves /metrics on 127.0.0.1:9469 meanwhile: that tells when passes end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
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


def tree_rss_mib(pid: int) -> int:
    """VmRSS of the process and every descendant, in MiB (0 for those just gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += rss_mib(current, "VmRSS")
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except (OSError, RuntimeError, ValueError):
            continue  # the process ended meanwhile
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # this thread ended meanwhile; the others still count
    return total


class TreeSampler(threading.Thread):
    """The peak of tree_rss_mib, sampled every 0.25 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.peak = max(self.peak, tree_rss_mib(self.pid))


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


def above(name: str, value: float) -> Callable[[], bool]:
    return lambda: metric(name) > value


def relabel(engine: sa.Engine, count: int, round_: int) -> None:
    """The app moves `count` verified faces to the next person (other faces each round)."""
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                sa.text("SELECT id FROM face WHERE verified ORDER BY id LIMIT :n OFFSET :skip"),
                {"n": count, "skip": count * round_},
            ).scalars()
        )
        conn.execute(
            sa.text("UPDATE face SET person_id = person_id + 1 WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="the daemon's retrains at scale")
    parser.add_argument("keep", type=Path, help="a directory bench/scale.py --keep made")
    parser.add_argument("--retrains", type=int, default=3, help="relabel-and-retrain rounds")
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
    sampler = TreeSampler(proc.pid)
    sampler.start()
    result: dict[str, object] = {"clusters": not args.no_clusters}
    rounds: list[dict[str, object]] = []
    try:
        # the start: model loaded, every pair read once, suggestions (and clusters) written
        wait_until(lambda: metric(reconciled) > 0, proc, log, args.cap, "first reconcile")
        result["start_s"] = round(time.perf_counter() - started, 1)
        result["rss_before_retrain_mib"] = rss_mib(proc.pid, "VmRSS")
        for round_ in range(args.retrains):
            relabel(engine, args.relabel, round_)
            relabelled = time.time()
            wait_until(above(retrained, relabelled), proc, log, args.cap, "retrain")
            published = metric(retrained)
            found = PUBLISHED.findall(log.read_text())
            # the new model's suggestions (and clusters) follow; the pass ends with a mark
            wait_until(above(reconciled, published), proc, log, args.cap, "the pass end")
            rounds.append(
                {
                    "woken_to_published_s": round(published - relabelled, 1),
                    "retrain_s": float(found[-1][1]) if found else None,
                    "rss_after_mib": rss_mib(proc.pid, "VmRSS"),
                    "peak_tree_so_far_mib": sampler.peak,
                }
            )
            print(json.dumps({"round": round_ + 1, **rounds[-1]}), flush=True)
        result["rounds"] = rounds
        result["retrains_logged"] = len(PUBLISHED.findall(log.read_text()))
        result["daemon_peak_mib"] = rss_mib(proc.pid, "VmHWM")
        result["peak_tree_mib"] = sampler.peak
        if len(rounds) >= 2:
            first, last = rounds[0]["rss_after_mib"], rounds[-1]["rss_after_mib"]
            assert isinstance(first, int) and isinstance(last, int)
            result["rss_growth_first_to_last"] = round(last / first - 1, 3)
    finally:
        sampler.done.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
