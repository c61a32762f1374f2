"""`facestore embed` as a real process with its decode worker processes: SIGTERM to the
whole process group (what systemd and Ctrl-C do) and kill -9 leave no worker, no
shared memory and no lease behind, and a second run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import sqlite_rows
from tests.support.processes import app_db, patient, wait_for


def start_embed(db: Path, workdir: Path, weights: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / "embed.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "facestore", "--db", str(db), "embed", "--batch-size", "8", "-v"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        # One model thread: these tests are about processes and signals, and two OpenMP
        # threads beside busy cores can run 300x slower (see the issue 15 note).
        env={**os.environ, "FACESTORE_WEIGHTS": str(weights), "OMP_NUM_THREADS": "1"},
        cwd=workdir,
        start_new_session=True,  # its own process group, as under systemd
    )
    return proc, log


def children(pid: int) -> set[int]:
    """Live processes whose parent is pid (zombies count as gone)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def segments(pid: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"facestore-{pid}-*"))


def started_embedding(log: Path, pid: int) -> bool:
    return "Embedded 8 faces" in log.read_text() and len(children(pid)) >= 2


def test_sigterm_to_the_group_stops_workers_and_frees_everything(
    tmp_path: Path, weights_file: Path
) -> None:
    db = app_db(tmp_path / "app.db", people=4, per_person=24)
    proc, log = start_embed(db, tmp_path, weights_file)
    wait_for(lambda: started_embedding(log, proc.pid), patient(15), "the first batch")
    workers = children(proc.pid)
    assert segments(proc.pid)

    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=patient(5)) == 128 + signal.SIGTERM, log.read_text()
    assert "Stopped by SIGTERM" in log.read_text()
    assert "Traceback" not in log.read_text()
    wait_for(lambda: not any(alive(p) for p in workers), patient(2), "the workers to exit")
    assert not segments(proc.pid)
    assert sqlite_rows(db, "SELECT count(*) FROM embedding_job WHERE lease_owner IS NOT NULL") == [
        (0,)
    ]
    done = sqlite_rows(db, "SELECT count(*) FROM embedding")[0][0]
    assert 0 < done < 96

    again, log = start_embed(db, tmp_path, weights_file)
    assert again.wait(timeout=patient(30)) == 0, log.read_text()
    assert sqlite_rows(db, "SELECT count(*) FROM embedding") == [(96,)]


def test_kill_9_leaves_no_worker_and_no_shared_memory(tmp_path: Path, weights_file: Path) -> None:
    db = app_db(tmp_path / "app.db", people=4, per_person=24)
    proc, log = start_embed(db, tmp_path, weights_file)
    wait_for(lambda: started_embedding(log, proc.pid), patient(15), "the first batch")
    helpers = children(proc.pid)  # decode workers and multiprocessing's resource tracker

    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in helpers), patient(3), "the workers to exit")
    wait_for(lambda: not segments(proc.pid), patient(2), "the shared memory to be unlinked")

    again, log = start_embed(db, tmp_path, weights_file)  # the dead run's leases are freed
    assert again.wait(timeout=patient(30)) == 0, log.read_text()
    assert sqlite_rows(db, "SELECT count(*) FROM embedding") == [(96,)]
