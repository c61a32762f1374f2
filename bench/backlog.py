"""The daemon beside an app that adds faces faster than it embeds them.

Starts `facestore watch` on a SQLite app database, then inserts faces at --rate
per second from this process (plain sqlite3, one commit each; one in four
unverified) for --seconds. Every second it samples the work queue, the current
model and the suggestion rows. It reports whether the queue stayed non-empty
(a backlog throughout), when each retrain published a model, and how the
suggestions grew meanwhile.

    python bench/backlog.py [--seconds 120] [--rate 80] [--slice 10] [--cooldown 20]

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

from bench.common import app_database, random_weights, scratch, start_watch, synthetic_crop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore watch under a backlog")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--rate", type=float, default=80, help="faces the app adds per second")
    parser.add_argument("--faces", type=int, default=200, help="faces before the daemon starts")
    parser.add_argument("--slice", type=float, default=10)
    parser.add_argument("--cooldown", type=float, default=20)
    parser.add_argument("--min-changes", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()

    work = scratch("facestore-backlog-", keep=args.keep)
    db = app_database(work / "app.db", args.faces)
    weights = os.environ.get("FACESTORE_WEIGHTS") or str(random_weights(work / "w.pt"))
    log = work / "watch.log"
    model_link = work / "model" / "current"
    proc = start_watch(
        db,
        work,
        log,
        "--weights",
        weights,
        "--slice",
        str(args.slice),
        "--retrain-min-changes",
        str(args.min_changes),
        "--retrain-cooldown",
        str(args.cooldown),
    )
    while "Watching" not in log.read_text():
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.1)
    app = sqlite3.connect(db)
    started = time.monotonic()
    added = 0
    samples = []
    next_sample = started
    try:
        while (now := time.monotonic()) - started < args.seconds:
            due = int((now - started) * args.rate)
            while added < due:
                n = args.faces + added
                verified = added % 4 != 3
                app.execute(
                    "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, ?)",
                    (synthetic_crop(n % 10, n), n % 10 if verified else None, int(verified)),
                )
                app.commit()
                added += 1
            if now >= next_sample:
                queued, embedded, suggestions = app.execute(
                    "SELECT (SELECT count(*) FROM embedding_job), "
                    "(SELECT count(*) FROM embedding), (SELECT count(*) FROM face_suggestion)"
                ).fetchone()
                model = os.readlink(model_link).split("/")[-1] if model_link.is_symlink() else None
                samples.append((now - started, queued, embedded, suggestions, model))
                next_sample += 1.0
            time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        app.close()
    first_seen: dict[str, tuple[float, int]] = {}
    for t, queued, _, _, model in samples:
        if model and model not in first_seen:
            first_seen[model] = (t, queued)
    print(f"app: {added} faces added in {args.seconds:.0f} s ({added / args.seconds:.0f}/s)")
    t_end, queued_end, embedded_end, suggestions_end, _ = samples[-1]
    print(
        f"daemon: {embedded_end} faces embedded; queue at the end {queued_end}; "
        f"smallest queue after the first 10 s: {min(s[1] for s in samples if s[0] > 10)}"
    )
    print(f"models published during the run: {len(first_seen)}")
    for model, (t, queued) in first_seen.items():
        print(f"  {model} first seen at {t:5.1f} s with {queued} faces queued")
    times = [t for t, _ in first_seen.values()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    if gaps:
        print(f"  gaps between models: max {max(gaps):.1f} s, mean {sum(gaps) / len(gaps):.1f} s")
    grew = [s for s in samples if s[3] > 0]
    if grew:
        print(
            f"suggestions: first rows at {grew[0][0]:.1f} s, {suggestions_end} rows at the end "
            f"(with {queued_end} faces still queued)"
        )
    else:
        print("suggestions: none")
    print(f"log: {log}")


if __name__ == "__main__":
    main()
