"""`facestore serve` as a real subprocess on a free loopback port, and a real HTTP
client for it (urllib): for the service's tests and nothing else."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.processes import patient, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of file parts (name, bytes), and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b""
    for n, (name, data) in enumerate(files):
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="f{n}"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def serve_command(model_dir: Path, port: int, *options: str) -> list[str]:
    """The `facestore serve` command line on a loopback port."""
    return [
        sys.executable, "-m", "facestore", "--model-dir", str(model_dir), "serve",
        "--addr", f"127.0.0.1:{port}", *options,
    ]  # fmt: skip


class Server:
    def __init__(self, model_dir: Path, workdir: Path, *options: str, token: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = workdir / f"serve-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            serve_command(model_dir, self.port, *options),
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            env=dict(os.environ),
            cwd=workdir,
        )

    def output(self) -> str:
        return self.log.read_text()

    def request(
        self,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        token: str | None = None,
        method: str | None = None,
    ) -> tuple[int, Any]:
        """(status, the JSON answer, or the text for /metrics)."""
        headers = {"Content-Type": content_type} if content_type else {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        request = urllib.request.Request(self.base + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=patient(30)) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return status, text if path == "/metrics" else json.loads(text)

    def predict(self, body: bytes, content_type: str = "image/png", **kw: Any) -> tuple[int, Any]:
        return self.request("/v1/predict", body, content_type, **kw)

    def wait_ready(self, version: str | None = None) -> dict[str, Any]:
        answer: list[Any] = []

        def ready() -> bool:
            assert self.proc.poll() is None, f"serve exited: {self.output()[-3000:]}"
            try:
                status, body = self.request("/readyz")
            except (urllib.error.URLError, ConnectionError):
                return False
            answer[:] = [body]
            return status == 200 and (version is None or body["model_version"] == version)

        wait_for(ready, patient(20), f"the service to serve {version or 'a model'}")
        return dict(answer[0])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=patient(10))
