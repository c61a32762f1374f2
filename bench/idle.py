"""The daemon's CPU use while idle.

Builds a small app database, starts `facestore watch` as a subprocess, lets it
finish its first reconcile, then measures its CPU time (user + system, from
/proc) over an idle window. Optionally another process opens and closes read
connections every second meanwhile (--readers), which must not wake it.

    python bench/idle.py [--seconds 60] [--faces 200] [--readers]

Needs weights (FACESTORE_WEIGHTS); without them it writes a random
vggface2-format file first, as the tests do.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import app_database, random_weights, scratch, start_watch  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore watch idle CPU")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--readers", action="store_true", help="open/close a reader every second")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()

    work = scratch("facestore-idle-", keep=args.keep)
    db = app_database(work / "app.db", args.faces)
    weights = os.environ.get("FACESTORE_WEIGHTS") or str(random_weights(work / "w.pt"))
    log = work / "watch.log"
    proc = start_watch(
        db,
        work,
        log,
        "--interval",
        "60",
        "--weights",
        weights,
    )
    try:
        while "Watching" not in log.read_text() or "Embedded" not in log.read_text():
            time.sleep(0.5)
        time.sleep(5)  # let the first reconcile and retrain settle
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - start < args.seconds:
            if args.readers:
                con = sqlite3.connect(db)
                con.execute("SELECT count(*) FROM face").fetchall()
                con.close()
            time.sleep(1)
        used = cpu_seconds(proc.pid) - start_cpu
        wall = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"idle window: {wall:.1f} s, readers: {'yes' if args.readers else 'no'}")
    print(f"daemon cpu: {used:.3f} s = {100 * used / wall:.3f}% of one core")
    print(f"embedded batches logged (first reconcile only): {log.read_text().count('Embedded ')}")


if __name__ == "__main__":
    main()
