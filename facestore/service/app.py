"""The routes of `facestore serve`, as a Starlette application. Every answer is JSON
(or Prometheus text): a bad request gets a 4xx that says what is wrong, a failure of
the service itself a 500 with a line in the log, never a traceback. With a token every
route but /healthz asks for it (Authorization: Bearer TOKEN)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from facestore.predict import Prediction
from facestore.service.batcher import Batcher, NotReady, Options
from facestore.service.follower import ModelFollower
from facestore.service.inputs import (
    BadRequest,
    Crop,
    Limits,
    check_count,
    decode,
    media_type,
    raw_crops,
    read_body,
)
from facestore.service.openapi import schema
from facestore.service.telemetry import ServiceTelemetry
from facestore.settings import DEFAULT_TOP_K

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Service:
    follower: ModelFollower
    batcher: Batcher
    telemetry: ServiceTelemetry
    limits: Limits
    token: str | None = None
    # decoding and quality signals beside the model: a thread per core (a thread per
    # request would grow memory with the number of clients, not the work)
    decoders: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(os.cpu_count() or 1, "facestore-decode")
    )


def answer(prediction: Prediction) -> dict[str, Any]:
    """`facestore predict --json`'s answer for a face, with the verdict spelled out."""
    data = prediction.as_json()
    named = next((g for g in prediction.top_k if g["person_id"] == prediction.person_id), None)
    best = named if prediction.person_id is not None else next(iter(prediction.top_k), None)
    unknown = prediction.person_id is None
    why = None if not unknown else ("low quality" if prediction.gated else "open-set")
    distance = best.get("distance") if best else None
    return {**data, "distance": distance, "unknown": unknown, "why": why}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(service: Service) -> Starlette:
    def route(name: str, handler: Handler, methods: list[str], open_route: bool = False) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            response = await _answered(request, handler, open_route)
            service.telemetry.answered(name, response.status_code, time.perf_counter() - started)
            return response

        return Route(name, endpoint, methods=methods)

    async def _answered(request: Request, handler: Handler, open_route: bool) -> Response:
        if service.token is not None and not open_route and not _authorized(request):
            return error(401, "A token is required: send 'Authorization: Bearer TOKEN'.")
        try:
            return await asyncio.wait_for(handler(request), service.limits.timeout)
        except BadRequest as exc:
            return error(exc.status, exc.message)
        except NotReady:
            return error(503, "Not ready: no model is loaded yet (see /readyz and the log).")
        except TimeoutError:
            return error(504, f"The request took longer than {service.limits.timeout:g} s.")
        except Exception:  # noqa: BLE001 - a failure of the service, not of the request
            log.exception("Answering %s %s failed", request.method, request.url.path)
            return error(500, "The service failed on this request; its log says why.")

    def _authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        expected = service.token or ""
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), expected)

    async def predict(request: Request) -> Response:
        options = _options(request)
        crops = check_count(await _crops(request), service.limits)
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(service.decoders, decode, c, service.limits) for c in crops)
        )
        version, predictions = await service.batcher.predict(decoded, options)
        return JSONResponse({"model_version": version, "faces": [answer(p) for p in predictions]})

    async def _crops(request: Request) -> list[Crop]:
        declared = request.headers.get("content-length")
        body = await read_body(request.stream(), declared, service.limits)
        if media_type(request.headers.get("content-type")) != "multipart/form-data":
            return raw_crops(body, request.headers.get("content-type"))
        request._body = body  # noqa: SLF001 - what form() parses: the body read in the limit
        try:
            # the count is check_count's to refuse (413); the body's size bounds the parts
            form = await request.form(max_files=service.limits.max_body)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body
            raise BadRequest(400, f"The multipart body cannot be read: {exc}") from None
        crops = []
        for name, value in form.multi_items():
            if not isinstance(value, str):
                crops.append(Crop(value.filename or name, await value.read()))
        return crops

    async def model(request: Request) -> Response:
        predictor = service.follower.current
        if predictor is None:
            raise NotReady
        bundle = predictor.bundle
        return JSONResponse(
            {
                "version": bundle.version,
                "backbone": bundle.embedding_config.get("backbone"),
                "space": predictor.space_hash,
                "open_set": bundle.open_set.describe() if bundle.open_set else None,
                "quality_gate": bundle.quality_gate.describe() if bundle.quality_gate else None,
                "people": len(bundle.person_ids),
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        predictor = service.follower.current
        if predictor is None:
            return error(503, "Not ready: no model is loaded yet.")
        return JSONResponse({"status": "ready", "model_version": predictor.version})

    async def metrics(request: Request) -> Response:
        return Response(service.telemetry.text(), media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> Response:
        return JSONResponse(schema())

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        what = "Not found" if status == 404 else f"Method {request.method} not allowed"
        return error(status, f"{what}: {request.url.path}. The routes are in /openapi.json.")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.batcher.start()
        service.follower.start()
        try:
            yield
        finally:
            service.follower.close()
            await service.batcher.close()
            service.decoders.shutdown(wait=False, cancel_futures=True)

    routes = [
        route("/v1/predict", predict, ["POST"]),
        route("/v1/model", model, ["GET"]),
        route("/healthz", healthz, ["GET"], open_route=True),
        route("/readyz", readyz, ["GET"]),
        route("/metrics", metrics, ["GET"]),
        route("/openapi.json", openapi, ["GET"]),
    ]
    handlers = {404: not_found, 405: not_found}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _options(request: Request) -> Options:
    query = request.query_params
    try:
        top_k = int(query.get("top_k", DEFAULT_TOP_K))
        min_confidence = query.get("min_confidence")
        min_quality = query.get("min_quality")
        options = Options(
            top_k,
            None if min_confidence is None else float(min_confidence),
            None if min_quality is None else float(min_quality),
        )
    except ValueError:
        raise BadRequest(400, "top_k must be a whole number, min_* numbers.") from None
    if options.top_k < 1:
        raise BadRequest(400, "top_k must be 1 or more.")
    return options
