"""Start the service: load the current model (if one is published), then serve on
uvicorn until SIGTERM or SIGINT, which let the requests in flight finish first."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from facestore.artifacts import current_version
from facestore.config import BackboneSettings
from facestore.service.app import Service, build_app
from facestore.service.batcher import Batcher
from facestore.service.follower import ModelFollower
from facestore.service.inputs import Limits
from facestore.service.telemetry import ServiceTelemetry

log = logging.getLogger(__name__)

DRAIN_SECONDS = 8.0  # requests in flight at SIGTERM get this long (the issue allows 10 s)


def run_service(
    model_dir: Path,
    settings: BackboneSettings,
    host: str,
    port: int,
    limits: Limits,
    token: str | None,
    max_batch: int,
) -> None:
    telemetry = ServiceTelemetry()
    follower = ModelFollower(model_dir, settings, telemetry)
    if current_version(model_dir) is not None:
        follower.check(strict=True)  # a model or backbone that cannot load is said here
    service = Service(follower, Batcher(follower, telemetry, max_batch), telemetry, limits, token)
    config = uvicorn.Config(
        build_app(service),
        host=host,
        port=port,
        log_config=None,  # facestore's logging (text or --log-format json) as set up
        access_log=False,
        timeout_graceful_shutdown=int(DRAIN_SECONDS),
        limit_concurrency=1000,
    )
    log.info("Serving on http://%s:%d (token: %s)", _shown(host), port, "yes" if token else "no")
    _Server(config).run()
    log.info("Stopped")


class _Server(uvicorn.Server):
    """uvicorn's server, ending with exit status 0 after a graceful stop (as `watch`
    does) rather than raising the caught SIGTERM again once drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
