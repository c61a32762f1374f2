"""What the service counts, for /metrics (Prometheus text, written by prometheus_client):
requests and their latency by route and status, the faces per model batch, the model
served, and the models it refused."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceTelemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "facestore_serve_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facestore_serve_request_seconds",
            "Seconds from a request's arrival to its answer, by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_faces = Histogram(
            "facestore_serve_batch_faces",
            "Faces run through the model together (concurrent requests batched).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model = Gauge(
            "facestore_serve_model_info",
            "The model version served (value 1).",
            ["version", "backbone"],
            registry=self.registry,
        )
        self.refused = Counter(
            "facestore_serve_model_refused",
            "New model versions not served because they failed their checks.",
            registry=self.registry,
        )

    def answered(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def serving(self, version: str, backbone: str) -> None:
        self.model.clear()
        self.model.labels(version, backbone).set(1)

    def text(self) -> bytes:
        return generate_latest(self.registry)
