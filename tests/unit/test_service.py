"""The service's pieces without a server: batching concurrent requests, reading a
request's crops within the limits, and the answer's verdict."""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facestore.predict import Prediction
from facestore.quality import ImageSignals
from facestore.service.app import answer
from facestore.service.batcher import Batcher, NotReady, Options
from facestore.service.inputs import BadRequest, Crop, Limits, decode, read_body
from facestore.service.telemetry import ServiceTelemetry
from tests.support.helpers import CORRUPT_BLOBS, encode, face_image


class SlowModel:
    """A stand-in predictor (the batching is beside the model's point): embeds each face
    to its label's number, holding the first call until released."""

    version = "v1"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.backbone = SimpleNamespace(embed_images=self.embed)

    def embed(self, images: list[Any]) -> np.ndarray:
        self.calls.append(len(images))
        if len(self.calls) == 1:
            assert self.release.wait(10)
        return np.zeros((len(images), 4), np.float32)

    def classify(self, vectors: np.ndarray, labels: list[str], top_k: int, *rest: Any) -> list:
        return [Prediction(label, label, 1.0) for label in labels]


def crops(*labels: str) -> list[Any]:
    return [SimpleNamespace(label=label, image=None, signals=None) for label in labels]


def test_requests_waiting_for_the_model_go_through_it_together() -> None:
    model = SlowModel()
    follower = SimpleNamespace(current=model)
    telemetry = ServiceTelemetry()

    async def scenario() -> list[tuple[str, list[Prediction]]]:
        batcher = Batcher(follower, telemetry, max_faces=8, wait=0.0)  # type: ignore[arg-type]
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(crops("a"), Options(3)))
        while not model.calls:  # the model is busy with the first request
            await asyncio.sleep(0.01)
        rest = [
            asyncio.ensure_future(batcher.predict(crops(*labels), Options(3)))
            for labels in (["b", "c"], ["d"], ["e", "f", "g"])
        ]
        await asyncio.sleep(0.05)
        model.release.set()
        answers = [await first, *[await r for r in rest]]
        await batcher.close()
        return answers

    answers = asyncio.run(scenario())
    assert model.calls == [1, 6]  # the three that waited: one batch of six faces
    assert [[p.input for p in predictions] for _, predictions in answers] == [
        ["a"],
        ["b", "c"],
        ["d"],
        ["e", "f", "g"],
    ]
    assert all(version == "v1" for version, _ in answers)


def test_no_model_yet_is_not_ready() -> None:
    async def scenario() -> None:
        batcher = Batcher(SimpleNamespace(current=None), ServiceTelemetry())  # type: ignore[arg-type]
        batcher.start()
        try:
            with pytest.raises(NotReady):
                await batcher.predict(crops("a"), Options(3))
        finally:
            await batcher.close()

    asyncio.run(scenario())


def test_a_body_over_the_limit_is_refused_and_held_no_further() -> None:
    read: list[int] = []

    async def chunks() -> Any:
        for n in range(100):
            read.append(n)
            yield b"x" * 1000

    with pytest.raises(BadRequest) as raised:  # read to its end, so the client gets the 413
        asyncio.run(read_body(chunks(), "100000", Limits(max_body=5000)))
    assert raised.value.status == 413 and "100000 bytes" in raised.value.message
    assert len(read) == 100
    read.clear()
    with pytest.raises(BadRequest):  # far past the limit: no more is read
        asyncio.run(read_body(chunks(), None, Limits(max_body=5000), drain=10_000))
    assert len(read) == 16
    assert asyncio.run(read_body(chunks(), None, Limits(max_body=100_000))) == b"x" * 100_000


@pytest.mark.parametrize(
    ("name", "status"),
    [("empty", 400), ("random", 415), ("text", 415), ("truncated-jpeg", 400), ("bomb", 413)],
)
def test_each_bad_crop_gets_its_status(name: str, status: int) -> None:
    with pytest.raises(BadRequest) as raised:
        decode(Crop("x.png", CORRUPT_BLOBS[name]), Limits())
    assert raised.value.status == status and "(x.png)" in raised.value.message


def test_a_good_crop_is_decoded_with_its_signals_and_the_pixel_limit_holds() -> None:
    data = encode(face_image(1, 2), "PNG")
    decoded = decode(Crop("image", data), Limits())
    assert isinstance(decoded.image, Image.Image) and isinstance(decoded.signals, ImageSignals)
    side = decoded.image.size[0]
    with pytest.raises(BadRequest) as raised:
        decode(Crop("image", data), Limits(max_pixels=side * side - 1))
    assert raised.value.status == 413 and f"{side}x" in raised.value.message


def test_the_answer_says_why_a_face_is_unknown() -> None:
    guess = {"person_id": 7, "confidence": 0.2, "probability": 0.5, "distance": 0.4}
    named = answer(Prediction("a", 7, 0.9, [{**guess, "distance": 0.1}]))
    assert (named["unknown"], named["why"], named["distance"]) == (False, None, 0.1)
    far = answer(Prediction("b", None, 0.2, [guess]))
    assert (far["unknown"], far["why"], far["distance"]) == (True, "open-set", 0.4)
    gated = answer(Prediction("c", None, 0.2, [guess], quality=0.5, gated="sharpness"))
    assert (gated["why"], gated["low_quality"]) == ("low quality", "sharpness")


class StubBatcher:
    """Answers after `delay` seconds, or fails, without a model."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def predict(self, crops: Any, options: Options) -> tuple[str, list[Prediction]]:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internals")
        return "v1", [Prediction(c.label, 1, 0.9) for c in crops]


def call(batcher: StubBatcher, method: str, path: str, body: bytes = b"", **kw: Any) -> Any:
    """One request straight through the ASGI app (no server, no HTTP client library):
    (status, JSON answer)."""
    from facestore.service.app import Service, build_app

    follower = SimpleNamespace(current=None)
    limits = Limits(timeout=kw.get("timeout", 30.0))
    app = build_app(Service(follower, batcher, ServiceTelemetry(), limits))  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"image/png")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages: list[dict[str, Any]] = []
    unread = [body]

    async def receive() -> dict[str, Any]:
        if unread:
            return {"type": "http.request", "body": unread.pop(), "more_body": False}
        await asyncio.sleep(3600)  # no disconnect: the app answers first
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    start, *parts = messages
    return start["status"], json.loads(b"".join(p.get("body", b"") for p in parts))


def test_a_slow_answer_gets_504_and_a_failure_500_without_its_insides() -> None:
    png = encode(face_image(1, 2), "PNG")
    status, body = call(StubBatcher(delay=5.0), "POST", "/v1/predict", png, timeout=0.2)
    assert status == 504 and "0.2 s" in body["error"]
    status, body = call(StubBatcher(fail=True), "POST", "/v1/predict", png)
    assert status == 500 and "secret" not in json.dumps(body) and "log" in body["error"]
    assert call(StubBatcher(), "POST", "/v1/predict", png)[0] == 200
    assert call(StubBatcher(), "GET", "/readyz")[0] == 503
    assert call(StubBatcher(), "GET", "/v1/model")[0] == 503
    assert call(StubBatcher(), "GET", "/openapi.json")[1]["openapi"].startswith("3.")
