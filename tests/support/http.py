"""Reading a running daemon's endpoints (watch --metrics-addr) from a test."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Watcher, patient, wait_for


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name and labels -> value, parsed by prometheus_client's own parser."""
    _, text = get(base + "/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def queued(sample: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(
        v
        for (name, labels), v in sample.items()
        if name == "facestore_queue_depth" and ("state", "queued") in labels
    )


def served_at(watcher: Watcher) -> str:
    found: list[str] = []

    def listening() -> bool:
        found[:] = re.findall(r"on (http://127\.0\.0\.1:\d+)", watcher.output())
        return bool(found)

    wait_for(listening, patient(15), "the metrics server to start")
    return found[0]
