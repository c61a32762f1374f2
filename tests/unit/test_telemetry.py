"""The daemon's health and systemd watchdog logic, with a fake clock and a real socket."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from facestore.daemon.http import parse_addr
from facestore.daemon.systemd import Notifier
from facestore.daemon.telemetry import STALL_SECONDS, FullPassCollector, Telemetry
from facestore.errors import ConfigurationError
from tests.support.processes import patient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_stops_beating_is_not_alive_unless_in_an_announced_step() -> None:
    clock = Clock()
    telemetry = Telemetry(interval=10, clock=clock)
    assert telemetry.alive()[0]
    clock.now += STALL_SECONDS + 1
    alive, why = telemetry.alive()
    assert not alive and "has not moved" in why
    assert telemetry.health()[0] == 503
    telemetry.beat()
    with telemetry.busy("retrain", 600):
        clock.now += 500
        assert telemetry.alive() == (True, "busy: retrain")
    assert telemetry.alive()[0]  # leaving the step counts as a beat
    telemetry.stopped()
    assert not telemetry.alive()[0]


def test_ready_needs_backbone_model_and_a_recent_successful_reconcile() -> None:
    clock = Clock()
    telemetry = Telemetry(interval=10, clock=clock)
    code, body = telemetry.readiness()
    assert code == 503 and len(body["reasons"]) == 3
    telemetry.loaded("backbone")
    telemetry.model_served("v1", 0.9, "fake/abc")
    telemetry.reconciled(embedded=5, seconds=0.5)
    assert telemetry.readiness() == (200, {"ready": True, "reasons": []})
    clock.now += 21
    telemetry.beat()
    code, body = telemetry.readiness()
    assert code == 503 and "more than 2 x --interval" in body["reasons"][0]
    telemetry.reconciled(embedded=0, seconds=0.1)
    telemetry.reconcile_failed("OperationalError", "database is locked")
    code, body = telemetry.readiness()
    assert code == 503 and body["reasons"] == ["the last reconcile failed: database is locked"]


def test_the_watchdog_pings_only_while_the_loop_is_alive() -> None:
    path = Path(tempfile.mkdtemp(prefix="fs-notify-", dir="/tmp")) / "n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    alive = [True]
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    notifier.send("READY=1")
    notifier.start_watchdog(lambda: (alive[0], "hung"))
    sock.settimeout(patient(1))
    assert sock.recv(64) == b"READY=1"
    assert sock.recv(64) == b"WATCHDOG=1"
    alive[0] = False
    sock.settimeout(0.3)
    try:
        while True:
            sock.recv(64)  # pings sent before the loop hung
    except TimeoutError:
        pass
    with pytest.raises(TimeoutError):
        sock.recv(64)  # six intervals without a ping
    notifier.close()
    sock.close()


def test_without_notify_socket_nothing_is_sent_and_pids_must_match() -> None:
    assert not Notifier({}).enabled
    Notifier({}).send("READY=1")  # a no-op, not an error
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None  # the watchdog is another process's


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9464", ("127.0.0.1", 9464)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9", ("::1", 9))],
)
def test_metrics_addr(text: str, expected: tuple[str, int]) -> None:
    assert parse_addr(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:port", "1:99999"])
def test_bad_metrics_addr(text: str) -> None:
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        parse_addr(text)


def test_the_full_pass_progress_is_a_share_by_stage_and_absent_when_none_runs() -> None:
    from prometheus_client import generate_latest

    stage: list[tuple[str, int, int] | None] = [("neighbours", 250, 1000)]
    telemetry = Telemetry(60)
    telemetry.registry.register(FullPassCollector(lambda: stage[0]))
    text = generate_latest(telemetry.registry).decode()
    assert 'facestore_cluster_pass_progress{stage="neighbours"} 0.25' in text
    stage[0] = None
    assert "facestore_cluster_pass_progress{" not in generate_latest(telemetry.registry).decode()
