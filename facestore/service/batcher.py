"""Concurrent requests' faces through the model together. Requests queue their decoded
crops; one task takes every request waiting (up to max_faces, after at most `wait`
seconds for more) and runs them as one batch in the model's own thread, while the
next requests decode beside it. Each request gets its own answers back, from one model
version: the batch reads the follower's current model once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from facestore.faceness import scored
from facestore.predict import Prediction
from facestore.service.follower import ModelFollower
from facestore.service.inputs import DecodedCrop
from facestore.service.telemetry import ServiceTelemetry

MAX_FACES = 32  # faces in one model batch (a request with more runs alone)
WAIT_SECONDS = 0.002  # how long a batch waits for more requests once one is there


class NotReady(Exception):
    """No model is loaded yet."""


@dataclass(frozen=True)
class Options:
    top_k: int
    min_confidence: float | None = None
    min_quality: float | None = None


@dataclass
class Job:
    crops: Sequence[DecodedCrop]
    options: Options
    done: asyncio.Future[tuple[str, list[Prediction]]] = field(repr=False)


class Batcher:
    def __init__(
        self,
        follower: ModelFollower,
        telemetry: ServiceTelemetry,
        max_faces: int = MAX_FACES,
        wait: float = WAIT_SECONDS,
    ) -> None:
        self.follower = follower
        self.telemetry = telemetry
        self.max_faces = max_faces
        self.wait = wait
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="facestore-model-run")

    def start(self) -> None:
        """Call from the event loop that will submit."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._model_thread.shutdown(wait=True, cancel_futures=True)

    async def predict(
        self, crops: Sequence[DecodedCrop], options: Options
    ) -> tuple[str, list[Prediction]]:
        """(model version, one prediction per crop)."""
        assert self._queue is not None, "start() first"
        job = Job(crops, options, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.done

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            faces = len(jobs[0].crops)
            deadline = loop.time() + self.wait
            while faces < self.max_faces:
                try:
                    if self._queue.empty():
                        job = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                    else:
                        job = self._queue.get_nowait()
                except TimeoutError:
                    break
                jobs.append(job)
                faces += len(job.crops)
            jobs = [j for j in jobs if not j.done.done()]  # a request that timed out meanwhile
            if not jobs:
                continue
            try:
                answers = await loop.run_in_executor(self._model_thread, self._model, jobs)
            except Exception as exc:  # noqa: BLE001 - each request answers with it
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            for job, answer in zip(jobs, answers, strict=True):
                if not job.done.done():
                    job.done.set_result(answer)

    def _model(self, jobs: list[Job]) -> list[tuple[str, list[Prediction]]]:
        """The model's thread: every job's faces embedded at once, then classified per
        job with its own options."""
        predictor = self.follower.current
        if predictor is None:
            raise NotReady
        crops = [c for job in jobs for c in job.crops]
        self.telemetry.batch_faces.observe(len(crops))
        vectors = np.asarray(predictor.backbone.embed_images([c.image for c in crops]))
        signals = scored([c.signals for c in crops])
        answers, start = [], 0
        for job in jobs:
            end = start + len(job.crops)
            o = job.options
            predictions = predictor.classify(
                vectors[start:end],
                [c.label for c in job.crops],
                o.top_k,
                o.min_confidence,
                None,
                signals[start:end],
                o.min_quality,
            )
            answers.append((predictor.version, predictions))
            start = end
        return answers
