"""`facestore serve`: the prediction service over HTTP."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from facestore import settings
from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand
from facestore.cli.options import setting_option

MAX_PIXELS = 25_000_000  # facestore.images.MAX_PIXELS, spelled here so --help loads no PIL


@click.command(cls=FacestoreCommand)
@setting_option(settings.SERVE_ADDR, metavar="HOST:PORT", show_default=True)
@setting_option(settings.TOKEN_FILE)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0.001),
    default=10.0,
    show_default=True,
    help="Largest request body, in MB; a larger one gets 413.",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Most images in one request; more get 413.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    show_default=True,
    help="Most pixels in one image, read from its header before decoding (a "
    "decompression bomb gets 413).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a request may take, waiting for the model included; then 504.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Most faces of concurrent requests run through the model together.",
)
@pass_app(backbone="model", db=False)
def serve(
    app: App,
    addr: str,
    token_file: Path | None,
    max_body_mb: float,
    max_images: int,
    max_pixels: int,
    timeout: float,
    max_batch: int,
) -> None:
    """Answer "who is this?" over HTTP with the current model in --model-dir.

    POST face crops to /v1/predict (one image as the body, or several as
    multipart/form-data parts) and get, per image, what 'facestore predict
    --json' prints, with unknown, why and the model version. GET /v1/model
    describes the model; /healthz, /readyz and /metrics (Prometheus) are for
    the operator; /openapi.json is the schema (docs/serve.md).

    It needs no database. It follows the model: when 'retrain', the daemon or
    'model rollback' moves model/current, it answers with the new version
    within seconds, and keeps the old one if the new one fails its checks.
    It listens on 127.0.0.1 unless told otherwise; any other address needs
    --token-file. SIGTERM lets requests in flight finish, then exits.
    """
    from facestore.daemon.http import parse_addr

    host, port = parse_addr(addr, settings.cite(settings.SERVE_ADDR))
    token = read_token(token_file)
    if token_file is not None and token_file.stat().st_mode & 0o077:
        click.echo(
            f"Warning: the token file {token_file} can be read by other users of this "
            f"machine: chmod 600 {token_file}",
            err=True,
        )
    if token is None and not loopback(host):
        raise click.UsageError(
            f"Listening on {host} reaches beyond this machine: give --token-file (or "
            f"{settings.TOKEN_FILE.env}) with a token the clients send, or listen on "
            "127.0.0.1."
        )
    from facestore.service.inputs import MEGABYTE, Limits
    from facestore.service.run import run_service

    limits = Limits(int(max_body_mb * MEGABYTE), max_images, max_pixels, timeout)
    run_service(app.model_dir, app.backbone_settings(), host, port, limits, token, max_batch)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    token = path.read_text().strip()
    if not token:
        raise click.UsageError(f"The token file {path} is empty: write the token into it.")
    return token
