"""What the daemon tells its operators: Prometheus metrics (their own registry) and the
state behind /healthz and /readyz. The loop reports; nothing here reads the database
but the queue collector, at scrape time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The loop beats at least every 5 s while idle, between slices and after each batch; one
# that has not for this long (outside a step it announced, such as a retrain) hangs.
STALL_SECONDS = 60.0


class Telemetry:
    """The daemon's counters, gauges and health. Thread-safe: the loop writes, the HTTP
    server and the systemd watchdog read."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.embedded = Counter("facestore_faces_embedded", "Faces embedded.", registry=r)
        self.failed = Counter("facestore_faces_failed", "Faces that failed to embed.", registry=r)
        self.batch_seconds = Histogram(
            "facestore_batch_seconds",
            "Seconds from a batch entering the model to its results being written.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.faces_per_second = Gauge(
            "facestore_faces_per_second",
            "Faces embedded per second in the latest reconcile that embedded any.",
            registry=r,
        )
        self.last_reconcile = Gauge(
            "facestore_last_reconcile_timestamp_seconds",
            "Unix time the latest successful reconcile ended.",
            registry=r,
        )
        self.last_retrain = Gauge(
            "facestore_last_retrain_timestamp_seconds",
            "Unix time the latest retrain of this daemon published a model.",
            registry=r,
        )
        self.retrain_duration = Gauge(
            "facestore_last_retrain_duration_seconds",
            "Seconds the latest published retrain of this daemon took.",
            registry=r,
        )
        self.retrain_failures = Counter(
            "facestore_retrain_failures", "Retrains that failed.", registry=r
        )
        self.model = Info("facestore_model", "The model the daemon serves.", registry=r)
        self.model_accuracy = Gauge(
            "facestore_model_validation_accuracy",
            "The served model's accuracy on its validation split (NaN: no split).",
            registry=r,
        )
        self.low_quality = Gauge(
            "facestore_low_quality_faces",
            "Unverified faces the model's quality gate found low quality (no name, no group).",
            registry=r,
        )
        self.suggestions = Counter(
            "facestore_suggestions_written", "face_suggestion rows written.", registry=r
        )
        self.database_errors = Counter(
            "facestore_database_errors",
            "Database errors that failed a reconcile, by the driver's exception class.",
            ["kind"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._beat = clock()
        self._busy_until = 0.0
        self._busy_with = ""
        self._loaded: dict[str, bool] = {"backbone": False, "model": False}
        self._last_attempt: tuple[float, bool, str] | None = None  # (time, ok, error)
        self._stopped = False

    # -- what the loop reports ----------------------------------------------------------

    def beat(self) -> None:
        with self._lock:
            self._beat = self.clock()

    def busy(self, what: str, seconds: float) -> _Busy:
        """A step that may take up to `seconds` without a beat (a retrain)."""
        return _Busy(self, what, seconds)

    def loaded(self, what: str, done: bool = True) -> None:
        with self._lock:
            self._loaded[what] = done

    def batch(self, embedded: int, failed: int, seconds: float) -> None:
        self.embedded.inc(embedded)
        self.failed.inc(failed)
        self.batch_seconds.observe(seconds)
        self.beat()

    def reconciled(self, embedded: int, seconds: float) -> None:
        now = self.clock()
        if embedded and seconds > 0:
            self.faces_per_second.set(embedded / seconds)
        self.last_reconcile.set(now)
        with self._lock:
            self._last_attempt = (now, True, "")
            self._beat = now

    def reconcile_failed(self, kind: str, error: str) -> None:
        self.database_errors.labels(kind=kind).inc()
        with self._lock:
            self._last_attempt = (self.clock(), False, error)

    def retrained(self, seconds: float) -> None:
        self.last_retrain.set(self.clock())
        self.retrain_duration.set(seconds)

    def model_served(self, version: str, accuracy: float | None, space: str) -> None:
        self.model.info({"version": version, "space": space})
        self.model_accuracy.set(float("nan") if accuracy is None else accuracy)
        self.loaded("model")

    def stopped(self) -> None:
        with self._lock:
            self._stopped = True

    # -- what the endpoints and the watchdog read ---------------------------------------

    def alive(self) -> tuple[bool, str]:
        """Is the loop running (beating, or inside a step it announced)?"""
        with self._lock:
            now = self.clock()
            if self._stopped:
                return False, "the loop has stopped"
            if now < self._busy_until:
                return True, f"busy: {self._busy_with}"
            age = now - self._beat
            if age > STALL_SECONDS:
                return (
                    False,
                    f"the loop has not moved for {age:.0f} s (limit {STALL_SECONDS:.0f} s)",
                )
            return True, "the loop is running"

    def health(self) -> tuple[int, dict[str, Any]]:
        alive, why = self.alive()
        return (200 if alive else 503), {"alive": alive, "reason": why}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        alive, why = self.alive()
        reasons = [] if alive else [why]
        with self._lock:
            reasons += [f"no {what} loaded yet" for what, done in self._loaded.items() if not done]
            attempt = self._last_attempt
        now = self.clock()
        if attempt is None:
            reasons.append("no reconcile has finished yet")
        else:
            when, ok, error = attempt
            if not ok:
                reasons.append(f"the last reconcile failed: {error}")
            elif now - when > 2 * self.interval:
                reasons.append(
                    f"the last reconcile ended {now - when:.0f} s ago (more than 2 x "
                    f"--interval = {2 * self.interval:.0f} s)"
                )
        return (503 if reasons else 200), {"ready": not reasons, "reasons": reasons}


@dataclass
class _Busy:
    telemetry: Telemetry
    what: str
    seconds: float

    def __enter__(self) -> None:
        t = self.telemetry
        with t._lock:
            t._busy_until = t.clock() + self.seconds
            t._busy_with = self.what

    def __exit__(self, *exc: object) -> None:
        t = self.telemetry
        with t._lock:
            t._busy_until = 0.0
            t._beat = t.clock()


class QueueCollector(Collector):
    """facestore_queue_depth{space, state}: queued and leased jobs, read at scrape time."""

    def __init__(self, count: Callable[[], Iterator[tuple[str, int, int]]]) -> None:
        self.count = count  # yields (space label, queued, leased)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "facestore_queue_depth",
            "Faces queued for embedding, per space: all queued, and under a live lease.",
            labels=["space", "state"],
        )
        try:
            for space, queued, leased in self.count():
                family.add_metric([space, "queued"], queued)
                family.add_metric([space, "leased"], leased)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on a busy database
            log.warning("Queue depth not read for /metrics: %s", exc)
            return
        yield family


class FullPassCollector(Collector):
    """facestore_cluster_pass_progress{stage}: the share done of the running full
    re-cluster's stage (read, neighbours, micro-clusters, linkage, write), read at scrape
    time; no sample while none runs."""

    def __init__(self, stage: Callable[[], tuple[str, int, int] | None]) -> None:
        self.stage = stage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "facestore_cluster_pass_progress",
            "Share done of the running full re-cluster's stage (none running: no sample).",
            labels=["stage"],
        )
        current = self.stage()
        if current is not None:
            name, done, total = current
            family.add_metric([name], done / total if total else 1.0)
        yield family
