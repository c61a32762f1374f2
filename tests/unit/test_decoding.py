"""Decode pools (facestore.decoding): worker processes writing into shared memory, a
worker that dies, the GPU route run on CPU tensors with its per-crop fallback, and the
embed pipeline giving the same vectors on every route."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestore import db as database
from facestore.backbones import build_backbone, space_of
from facestore.backbones.preprocess import prepare
from facestore.config import BackboneSettings
from facestore.decode_pools import make_decode_pool
from facestore.decoding import decoder
from facestore.embedding import Embedder
from facestore.errors import ImageDecodeError
from facestore.images import decode_crop
from facestore.process_decoding import WORKER_DIED, ProcessDecoding
from facestore.store import Crop, Store, crop_sha256
from tests.support.crashing_prepare import CRASH_SIZE, CrashingInput, FacenetInput
from tests.support.helpers import (
    CORRUPT_BLOBS,
    encode,
    face_image,
    make_app_db,
    sqlite_rows,
)
from tests.support.processes import patient


def jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


GOOD = [Crop(i, encode(face_image(i % 3, i), "JPEG" if i % 2 else "PNG")) for i in range(1, 7)]
BAD = [
    Crop(20, CORRUPT_BLOBS["random"]),
    Crop(21, b"", "face_crop_blob is NULL: the app stored no crop for this face"),
]


def expected(crop: Crop) -> tuple[np.ndarray | None, str | None]:
    if crop.error is not None:
        return None, crop.error
    try:
        return prepare(decode_crop(crop.blob)), None
    except ImageDecodeError as exc:
        return None, str(exc)


def check_decoded(crops: list[Crop], decoded: list) -> None:  # type: ignore[type-arg]
    assert [d.face_id for d in decoded] == [c.face_id for c in crops]
    for crop, got in zip(crops, decoded, strict=True):
        pixels, error = expected(crop)
        assert got.crop_sha256 == crop_sha256(crop.blob)
        assert got.error == error
        if pixels is None:
            assert got.pixels is None
        else:
            np.testing.assert_array_equal(np.asarray(got.pixels), pixels)


def test_worker_processes_prepare_what_this_process_prepares() -> None:
    pool = ProcessDecoding(FacenetInput(), batch_size=8, workers=2)
    segment = Path("/dev/shm", pool.memory_name)
    try:
        crops = GOOD + BAD
        batch = pool.submit(crops)
        decoded = batch.result()
        check_decoded(crops, decoded)
        assert decoded[0].pixels.strides[0] == 4  # channels last in memory, like PIL's
        batch.release()
        assert segment.exists()
        with pytest.raises(ValueError, match="do not fit"):
            pool.submit(GOOD + GOOD)
    finally:
        pool.close()
    assert not segment.exists()  # the shared memory is unlinked


def test_a_crop_that_kills_its_worker_fails_alone() -> None:
    pool = ProcessDecoding(CrashingInput(), batch_size=8, workers=2)
    crash = Crop(99, encode(face_image(0, 0, size=CRASH_SIZE)))
    try:
        crops = [*GOOD[:4], crash, GOOD[4]]
        batch = pool.submit(crops)
        decoded = batch.result()
        batch.release()
        assert decoded[4].error == WORKER_DIED and decoded[4].pixels is None
        check_decoded([c for c in crops if c is not crash], decoded[:4] + decoded[5:])
        again = pool.submit(GOOD)  # new workers took over
        check_decoded(GOOD, again.result())
        again.release()
    finally:
        pool.close()


def test_a_killed_worker_is_replaced_and_its_batch_redone() -> None:
    pool = ProcessDecoding(FacenetInput(), batch_size=8, workers=2)
    try:
        first = pool.submit(GOOD)
        first.result()
        first.release()
        killed = pool.worker_pids()
        assert killed
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        second = pool.submit(GOOD)
        check_decoded(GOOD, second.result())
        second.release()
        assert pool.worker_pids() and set(pool.worker_pids()).isdisjoint(killed)
    finally:
        pool.close()


def test_the_device_route_takes_baseline_jpegs_and_leaves_the_rest_to_the_cpu(
    weights_file: Path,
) -> None:
    backbone = build_backbone(
        BackboneSettings(weights=weights_file, device="cpu", device_decode="on")
    )
    assert backbone.decode_device == torch.device("cpu")  # type: ignore[attr-defined]
    face = face_image(1, 2).convert("RGB")
    crops = [
        Crop(1, jpeg(face)),  # device
        Crop(2, jpeg(face.convert("L"))),  # device
        Crop(3, jpeg(face, progressive=True)),
        Crop(4, encode(face, "PNG")),
        Crop(5, jpeg(face.convert("CMYK"))),
        Crop(6, jpeg(face.resize((700, 700)))),  # decoded at a reduced scale by PIL
        Crop(7, CORRUPT_BLOBS["truncated-jpeg"]),  # refused by the device decoder
        BAD[1],
    ]
    pool = make_decode_pool(backbone, 16, mode="threads", device_decode=backbone.decode_device)  # type: ignore[attr-defined]
    try:
        batch = pool.submit(crops)
        decoded = batch.result()
        batch.release()
    finally:
        pool.close()
    assert [isinstance(d.pixels, torch.Tensor) for d in decoded] == [True, True] + [False] * 6
    assert [d.face_id for d in decoded] == [c.face_id for c in crops]
    for crop, got in zip(crops[2:], decoded[2:], strict=True):  # the CPU route's answers
        reference = decoder(backbone)(crop)
        assert got.error == reference.error
        if reference.pixels is not None:
            np.testing.assert_array_equal(got.pixels, reference.pixels)
    assert decoded[6].error and "truncated" in decoded[6].error
    for got, crop in zip(decoded[:2], crops[:2], strict=True):  # within a grey level
        pil = decoder(backbone)(crop).pixels
        assert np.abs(got.pixels.numpy() - pil).max() <= 1 / 128 + 1e-6


def embed_copy(
    source: Path, target: Path, settings: BackboneSettings, decode: str, kind: str
) -> Store:
    shutil.copy(source, target)
    store = Store(database.create_engine(f"sqlite:///{target}"))
    with Embedder(store, build_backbone(settings), batch_size=8, decode=decode) as embedder:
        assert embedder.pool.kind == kind
        report = embedder.run_pass()
    assert report.pending == 0 and report.failed == 1
    return store


def vectors(path: Path) -> dict[int, np.ndarray]:
    rows = sqlite_rows(path, "SELECT face_id, vector FROM embedding")
    return {face_id: np.frombuffer(blob, dtype="<f4") for face_id, blob in rows}


def test_every_route_embeds_into_the_same_space(tmp_path: Path, weights_file: Path) -> None:
    source = make_app_db(tmp_path / "app.db", people=3, per_person=6, corrupt=["random"])
    database.upgrade(database.create_engine(f"sqlite:///{source}"))
    cpu = BackboneSettings(weights=weights_file, device="cpu", device_decode="off")
    on_device = BackboneSettings(weights=weights_file, device="cpu", device_decode="on")
    processes = embed_copy(source, tmp_path / "p.db", cpu, "auto", "processes")
    embed_copy(source, tmp_path / "t.db", cpu, "threads", "threads")
    device = embed_copy(source, tmp_path / "d.db", on_device, "auto", "device")

    by_processes, by_threads = vectors(tmp_path / "p.db"), vectors(tmp_path / "t.db")
    by_device = vectors(tmp_path / "d.db")
    assert len(by_processes) == 18 and by_processes.keys() == by_threads.keys() == by_device.keys()
    for face_id, vector in by_processes.items():
        np.testing.assert_allclose(by_threads[face_id], vector, atol=1e-5)  # same input
        cosine = float(by_device[face_id] @ vector) / float(
            np.linalg.norm(by_device[face_id]) * np.linalg.norm(vector)
        )
        assert cosine > 0.9999, (face_id, cosine)
    # one space: the route is where the pixels were decoded, recorded as device info
    space = space_of(build_backbone(on_device))
    assert space.config_hash == space_of(build_backbone(cpu)).config_hash
    assert device.spaces.device_info(space.config_hash)["device_decode"] is True
    assert processes.spaces.device_info(space.config_hash)["device_decode"] is False
    # every route measures the crops' quality signals, and they agree
    signals = {
        name: dict(
            (face_id, (side, sharpness))
            for face_id, side, sharpness in sqlite_rows(
                tmp_path / name, "SELECT face_id, crop_side, sharpness FROM embedding"
            )
        )
        for name in ("p.db", "t.db", "d.db")
    }
    assert signals["p.db"] == signals["t.db"]  # the same code on the same image
    for face_id, (side, sharpness) in signals["p.db"].items():
        assert side == 92 and sharpness > 0
        device_side, device_sharpness = signals["d.db"][face_id]
        assert device_side == side and device_sharpness == pytest.approx(sharpness, rel=0.1)


UNGUARDED_SCRIPT = """
import io
from PIL import Image
from facestore.backbones.preprocess import IMAGE_SIZE, prepare
from facestore.process_decoding import ProcessDecoding
from facestore.store import Crop

print("script ran")


class Input:
    prepared_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    prepare_function = staticmethod(prepare)


crop = io.BytesIO()
Image.new("RGB", (50, 60), (90, 90, 90)).save(crop, "JPEG")
pool = ProcessDecoding(Input(), 4, workers=2)
batch = pool.submit([Crop(1, crop.getvalue())])
print("decoded", batch.result()[0].error is None)
batch.release()
pool.close()
"""


def test_workers_do_not_run_a_script_without_a_main_guard(tmp_path: Path) -> None:
    """multiprocessing's spawn would import the main script again in each worker."""
    script = tmp_path / "script.py"
    script.write_text(UNGUARDED_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=patient(20),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "script ran\ndecoded True\n"
