"""How fast each command starts: every `--help`, one `predict` of one image, and the
error paths a new operator meets first (a missing folder, missing weights, a bad
--db). Each is a fresh `python -m facestore` process, timed from start to exit, the
median of --runs.

    python bench/startup.py --orl ../shared/datasets/att_faces \\
        [--casia-weights casia.pt] [--engine torch --engine onnxruntime ...] [--runs 5]
        [--busy N] [--json out.json]

It imports the ORL crops into a scratch SQLite file and trains a model with dlib
(and with casia-webface when --casia-weights is given) first; that setup is not
timed. --busy N starts N busy-loop processes beside it (a loaded machine).
Targets (issue 37, quiet machine): every --help <= 0.3 s, error paths <= 0.5 s,
one predict <= 2 s with dlib and <= 3 s with a facenet backbone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import busy_loops, scratch  # noqa: E402

TARGETS = {"help": 0.3, "error": 0.5, "predict dlib": 2.0, "predict casia-webface": 3.0}


def facestore(*args: str | Path, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """One run of the CLI: (seconds, exit status, stderr)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "facestore", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - started, done.returncode, done.stderr


def setup(orl: Path, work: Path, casia: Path | None) -> dict[str, tuple[Path, dict[str, str]]]:
    """An imported database and a model per backbone: name -> (model dir, env)."""
    imported = work / "orl.db"
    seconds, code, err = facestore("--db", imported, "import", orl)
    assert code == 0, err
    models: dict[str, tuple[Path, dict[str, str]]] = {}
    backbones: list[tuple[str, list[str], dict[str, str]]] = [("dlib", [], {})]
    if casia is not None:
        backbones.append(
            ("casia-webface", ["--weights", str(casia)], {"FACESTORE_WEIGHTS": str(casia)})
        )
    for name, options, env in backbones:
        db = work / f"{name}.db"
        shutil.copy(imported, db)
        model_dir = work / f"model-{name}"
        print(f"setup: training a {name} model on ORL ...", file=sys.stderr)
        _, code, err = facestore(
            "--db", db, "--model-dir", model_dir, "train", "--upgrade", "--backbone", name, *options
        )
        assert code == 0, err
        models[name] = (model_dir, env)
    return models


def command_lines() -> list[list[str]]:
    """Each command line with a --help: the bare command, and every command of
    docs/cli.md (the same walk)."""
    from facestore.cli.main import main
    from facestore.cli.reference import commands

    root = main.make_context("facestore", [], resilient_parsing=True)
    return [[], *(name.split() for name, _, _ in commands(main, root))]


def median_run(
    runs: int, *args: str | Path, env: dict[str, str] | None = None, expect_error: bool = False
) -> float:
    times = []
    for _ in range(runs):
        seconds, code, err = facestore(*args, env=env)
        assert (code != 0) == expect_error, f"{args}: exit {code}: {err[-500:]}"
        times.append(seconds)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orl", type=Path, required=True, help="the att_faces folder")
    parser.add_argument("--casia-weights", type=Path, help="casia-webface weights (optional)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    parser.add_argument(
        "--engine",
        action="append",
        dest="engines",
        help="time the casia-webface predict on this engine (repeatable; default: the setting)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    work = scratch("startup")
    models = setup(args.orl, work, args.casia_weights)
    image = sorted(args.orl.glob("s1/*.pgm"))[0]
    not_a_db = work / "notes.txt"
    not_a_db.write_text("not a database\n")

    rows: list[tuple[str, str, float]] = []  # (kind, what, seconds)
    with busy_loops(args.busy):
        for line in command_lines():
            rows.append(
                (
                    "help",
                    " ".join(["facestore", *line, "--help"]),
                    median_run(args.runs, *line, "--help"),
                )
            )
        dlib_db = work / "dlib.db"
        rows += [
            (
                "error",
                "import of a missing folder",
                median_run(
                    args.runs,
                    "--db",
                    work / "new.db",
                    "import",
                    work / "missing",
                    expect_error=True,
                ),
            ),
            (
                "error",
                "embed --weights /nonexistent.pt",
                median_run(
                    args.runs,
                    "--db",
                    dlib_db,
                    "embed",
                    "--backbone",
                    "casia-webface",
                    "--weights",
                    "/nonexistent.pt",
                    expect_error=True,
                ),
            ),
            (
                "error",
                "status --db on a file that is not a database",
                median_run(args.runs, "--db", not_a_db, "status", expect_error=True),
            ),
        ]
        for name, (model_dir, env) in models.items():
            engines = [None] if name == "dlib" else (args.engines or [None])
            for engine in engines:
                on = {**env, "FACESTORE_ENGINE": engine} if engine else env
                label = f"{name}, engine {engine}" if engine else name
                rows.append(
                    (
                        f"predict {name}",
                        f"predict of one ORL image ({label})",
                        median_run(args.runs, "--model-dir", model_dir, "predict", image, env=on),
                    )
                )

    print(
        f"# {platform.node()}: {os.cpu_count()} cores, {args.busy} busy processes beside, "
        f"median of {args.runs}"
    )
    print(f"{'seconds':>8}  {'target':>6}  what")
    for kind, what, seconds in rows:
        target = TARGETS["help" if kind == "help" else kind]
        mark = "" if seconds <= target else "  (over)"
        print(f"{seconds:8.3f}  {target:6.1f}  {what}{mark}")
    helps = [s for kind, _, s in rows if kind == "help"]
    print(
        f"--help: slowest {max(helps):.3f} s, median {statistics.median(helps):.3f} s "
        f"over {len(helps)} commands"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "busy": args.busy,
                    "runs": args.runs,
                    "cores": os.cpu_count(),
                    "rows": [{"kind": k, "what": w, "seconds": round(s, 4)} for k, w, s in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
