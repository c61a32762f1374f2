"""The `service` check: a running `facestore serve`, asked over HTTP (doctor --service):
up (/healthz), ready (/readyz, with the token when it has one), and serving the model
that model/current names."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from facestore.artifacts import current_version
from facestore.doctor.checks import FAIL, OK, WARN, Check

TIMEOUT = 5.0


def _get(url: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}


def check_service(host: str, port: int, token: str | None, model_dir: Path) -> Check:
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    try:
        status, _ = _get(base + "/healthz", None)
    except (OSError, ValueError) as exc:
        return Check(
            "service",
            FAIL,
            f"no answer from {base}: {getattr(exc, 'reason', exc)}",
            "start it ('facestore serve', or systemctl start facestore-serve) or check --service",
        )
    if status != 200:
        return Check("service", FAIL, f"{base}/healthz answered {status}", "see its log")
    status, ready = _get(base + "/readyz", token)
    if status == 401:
        return Check("service", FAIL, f"{base} asks for a token", "pass the service's --token-file")
    if status != 200:
        return Check(
            "service",
            FAIL,
            f"{base} is up but not ready: {ready.get('error', status)}",
            "publish a model ('facestore train') or see its log for why it loads none",
        )
    served, current = ready.get("model_version"), current_version(model_dir)
    if current is not None and served != current:
        return Check(
            "service",
            WARN,
            f"{base} serves model {served}, but {model_dir}/current is {current}",
            "it follows within seconds; if it stays behind, its log says why (a model "
            "that fails its checks is not served), or it reads another --model-dir",
        )
    return Check("service", OK, f"{base} ready, serving model {served}")
