"""Operations: `watch --metrics-addr` (Prometheus /metrics, /healthz, /readyz) and the
systemd notify protocol, on the real daemon as a subprocess (real facenet path, random
weights), with a fake $NOTIFY_SOCKET."""

from __future__ import annotations

import json
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from tests.support.helpers import encode, face_image, sqlite_exec
from tests.support.http import get, metrics, queued, served_at
from tests.support.processes import Watcher, app_db, model_version, patient, wait_for

pytestmark = pytest.mark.slow

FAST = ["--retrain-min-changes", "3", "--retrain-delay", "5", "--retrain-cooldown", "0"]


def test_metrics_show_the_queue_draining_and_readyz_follows_the_database(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    watcher = Watcher(
        db,
        tmp_path,
        weights_file,
        "--metrics-addr",
        "127.0.0.1:0",
        base=[*FAST, "--interval", "2"],
    )
    watchers.append(watcher)
    base = served_at(watcher)
    assert get(base + "/healthz")[0] == 200
    wait_for(lambda: get(base + "/readyz")[0] == 200, patient(20), "/readyz to turn 200")
    assert model_version(tmp_path) is not None

    first = metrics(base)
    assert first[("facestore_faces_embedded_total", ())] >= 9
    assert first[("facestore_last_reconcile_timestamp_seconds", ())] > 0
    [(_, labels)] = [k for k in first if k[0] == "facestore_model_info"]
    assert dict(labels)["version"] == model_version(tmp_path)
    assert (
        0 <= first[("facestore_model_validation_accuracy", ())] <= 1
        or first[("facestore_model_validation_accuracy", ())]
        != first[("facestore_model_validation_accuracy", ())]
    )  # NaN: no validation split
    assert ("facestore_batch_seconds_count", ()) in first
    depth = [v for (name, labels), v in first.items() if name == "facestore_queue_depth"]
    assert depth == [0, 0]  # queued and leased: a sample of 0, not "no data"

    for i in range(40):
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
            encode(face_image(1, 100 + i)),
        )
    seen: list[float] = []
    wait_for(
        lambda: bool(seen.append(queued(metrics(base)))) or seen[-1] > 0,
        patient(5),
        "the new faces in the queue depth",
    )
    wait_for(lambda: queued(metrics(base)) == 0, patient(20), "the queue to drain")
    after = metrics(base)
    assert (
        after[("facestore_faces_embedded_total", ())]
        >= first[("facestore_faces_embedded_total", ())] + 40
    )
    print(f"queue depth seen: {seen}")

    header = db.read_bytes()[:100]
    with db.open("r+b") as handle:  # the database can no longer be read
        handle.write(b"\0" * 100)
    wait_for(
        lambda: "the last reconcile failed" in get(base + "/readyz")[1],
        patient(5),
        "/readyz to say the reconcile failed",
    )
    code, body = get(base + "/readyz")
    assert code == 503 and "file is not a database" in " ".join(json.loads(body)["reasons"])
    assert get(base + "/healthz")[0] == 200  # the loop itself is alive
    errors = metrics(base)
    assert any(
        name == "facestore_database_errors_total" and v >= 1 for (name, _), v in errors.items()
    )
    with db.open("r+b") as handle:
        handle.write(header)
    wait_for(lambda: get(base + "/readyz")[0] == 200, patient(5), "/readyz to recover")
    assert get(base + "/nothing")[0] == 404
    assert watcher.stop() == 0


def test_systemd_gets_ready_watchdog_pings_while_alive_and_stopping(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    path = Path(tempfile.mkdtemp(prefix="fs-notify-", dir="/tmp")) / "notify"  # short: AF_UNIX
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}  # WatchdogSec=1
    watcher = Watcher(db, tmp_path, weights_file, base=FAST, env=env)
    watchers.append(watcher)

    def receive(timeout: float) -> str | None:
        sock.settimeout(timeout)
        try:
            return sock.recv(256).decode()
        except TimeoutError:
            return None

    assert receive(patient(15)) == "READY=1"
    assert receive(patient(1)) == "WATCHDOG=1"  # every half WatchdogSec
    assert receive(patient(1)) == "WATCHDOG=1"

    watcher.proc.send_signal(signal.SIGSTOP)  # a frozen daemon pings no more
    while receive(0.5) is not None:
        pass  # sent before the stop took effect
    assert receive(3.0) is None
    watcher.proc.send_signal(signal.SIGCONT)
    assert receive(patient(2)) == "WATCHDOG=1"

    watcher.proc.send_signal(signal.SIGTERM)
    messages = []
    while (message := receive(patient(2))) is not None and message != "STOPPING=1":
        messages.append(message)
    assert message == "STOPPING=1", messages
    assert watcher.proc.wait(timeout=patient(2)) == 0
    sock.close()
