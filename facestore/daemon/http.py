"""`watch --metrics-addr`: /metrics (Prometheus text), /healthz and /readyz, served from a
thread. prometheus_client writes the metrics format; this only routes."""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from facestore.daemon.telemetry import Telemetry
from facestore.errors import ConfigurationError
from facestore.settings import METRICS_ADDR, cite

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def parse_addr(text: str, source: str = cite(METRICS_ADDR)) -> tuple[str, int]:
    """HOST:PORT or PORT (host 127.0.0.1); [::1]:PORT for IPv6. source: where the text
    came from, for the error (a cited setting, or an option's name)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(
            f"The address {text!r} (from {source}) is not HOST:PORT (for example 127.0.0.1:9464)."
        )
    return host or "127.0.0.1", int(port)


def wsgi_app(telemetry: Telemetry) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(telemetry.registry)
    checks = {"/healthz": telemetry.health, "/readyz": telemetry.readiness}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path in checks:
            code, body = checks[path]()
            data = json.dumps(body).encode()
            status = "200 OK" if code == 200 else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [data]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found: try /metrics, /healthz or /readyz\n"]

    return app


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer:
    """The endpoints on host:port until close()."""

    def __init__(self, telemetry: Telemetry, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, wsgi_app(telemetry), server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot serve metrics on {host}:{port}: {exc.strerror}. Choose another "
                "--metrics-addr (or free the port)."
            ) from None
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="facestore-metrics", daemon=True
        )
        self._thread.start()
        log.info("Serving /metrics, /healthz and /readyz on http://%s:%d", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
