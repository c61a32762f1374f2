"""`facestore serve`: the real service as a subprocess on a loopback port, a real HTTP
client, the real facenet path (random weights in the official format)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from facestore.service.openapi import END, START, reference
from tests.support.helpers import CORRUPT_BLOBS, encode, face_image, make_app_db, sqlite_exec
from tests.support.processes import patient, wait_for
from tests.support.serving import Server, free_port, multipart, serve_command
from tests.support.types import Cli


@pytest.fixture
def trained(tmp_path: Path, cli: Cli, weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An app database with a model of 3 people in tmp_path/model; the weights in the
    environment, so the service started from the test finds them too."""
    monkeypatch.setenv("FACESTORE_WEIGHTS", str(weights_file))
    db = make_app_db(tmp_path / "app.db", people=3, per_person=5)
    result = cli("--db", db, "train", "--upgrade")
    assert result.exit_code == 0, result.output
    return db


def crop(tmp_path: Path, person: int, sample: int, fmt: str = "PNG") -> Path:
    path = tmp_path / f"p{person}-{sample}.{fmt.lower()}"
    path.write_bytes(encode(face_image(person, sample), fmt))
    return path


def metric(server: Server, name: str, **labels: str) -> float:
    _, text = server.request("/metrics")
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_serve_answers_as_predict_does_and_follows_each_new_model(
    tmp_path: Path, cli: Cli, trained: Path
) -> None:
    files = [crop(tmp_path, 1, 30), crop(tmp_path, 2, 31, "JPEG")]
    expected = json.loads(cli("predict", *files, "--json").stdout)
    server = Server(tmp_path / "model", tmp_path)
    try:
        first = server.wait_ready()["model_version"]
        status, raw = server.predict(files[0].read_bytes())
        assert status == 200 and raw["model_version"] == first
        body, kind = multipart([(f.name, f.read_bytes()) for f in files])
        status, parts = server.predict(body, kind)
        assert status == 200
        for answer, want, path in zip(parts["faces"], expected, files, strict=True):
            assert answer["input"] == path.name
            assert answer["person_id"] == want["person_id"]
            assert answer["confidence"] == pytest.approx(want["confidence"], abs=1e-4)
            assert [g["person_id"] for g in answer["top_k"]] == [
                g["person_id"] for g in want["top_k"]
            ]
            assert (answer["quality"], answer["gated"]) == (want["quality"], want["gated"])
            assert answer["unknown"] == (want["person_id"] is None)
            assert answer["distance"] == pytest.approx(want["top_k"][0]["distance"], abs=1e-4)
        assert raw["faces"][0]["person_id"] == parts["faces"][0]["person_id"]
        status, model = server.request("/v1/model")
        assert status == 200 and model["version"] == first and model["people"] == 3
        assert model["open_set"]["threshold"] > 0 and model["backbone"] == "vggface2"

        # a retrain while requests keep coming: none fails, the new version is served
        failures: list[object] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                code, answer = server.predict(files[0].read_bytes())
                if code != 200:
                    failures.append(answer)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            sqlite_exec(
                trained,
                "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)",
                encode(face_image(1, 40)),
                1,
            )
            assert cli("--db", trained, "train").exit_code == 0
            second = (tmp_path / "model" / "current").readlink().name
            assert second != first
            server.wait_ready(second)
        finally:
            stop.set()
            asker.join()
        assert failures == []
        assert server.predict(files[0].read_bytes())[1]["model_version"] == second

        # a new version that fails its checks is not served: the old one stays
        broken = tmp_path / "model" / "history" / "20991231T000000000000Z-broken00"
        shutil.copytree(tmp_path / "model" / "history" / second, broken)
        pickle = broken / "classifier.pkl"
        pickle.write_bytes(pickle.read_bytes()[:-1] + b"\0")
        link = tmp_path / "model" / "current.tmp"
        link.symlink_to(Path("history") / broken.name)
        os.replace(link, tmp_path / "model" / "current")
        wait_for(
            lambda: metric(server, "facestore_serve_model_refused_total") == 1,
            patient(5),
            "the broken model to be refused",
        )
        assert server.request("/readyz")[1]["model_version"] == second
        assert server.predict(files[0].read_bytes())[0] == 200
        assert f"Not serving model {broken.name}, still {second}" in server.output()
        assert metric(server, "facestore_serve_requests_total", route="/v1/predict") > 3
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def test_bad_requests_get_a_4xx_that_says_what_and_the_service_stays_up(
    tmp_path: Path, trained: Path
) -> None:
    good = crop(tmp_path, 1, 30).read_bytes()
    server = Server(
        tmp_path / "model",
        tmp_path,
        "--max-images",
        "2",
        "--max-body-mb",
        "0.5",
        "--max-pixels",
        "40000",
    )
    try:
        server.wait_ready()
        cases = {
            "empty": (400, "No image"),
            "random": (415, "not a JPEG, PNG or WebP"),
            "text": (415, "not a JPEG, PNG or WebP"),
            "truncated-jpeg": (400, "corrupt or truncated JPEG"),
            "bomb": (413, "Image too large"),
        }
        for name, (code, says) in cases.items():
            status, answer = server.predict(CORRUPT_BLOBS[name], "application/octet-stream")
            assert (status, says in answer["error"]) == (code, True), (name, answer)
        big = encode(face_image(1, 3).resize((300, 300)), "PNG")  # 90,000 pixels
        assert server.predict(big)[0] == 413
        status, answer = server.predict(good, "text/plain")
        assert status == 415 and "Content-Type" in answer["error"]
        three, kind = multipart([("a.png", good)] * 3)
        status, answer = server.predict(three, kind)
        assert status == 413 and "3 images" in answer["error"]
        status, answer = server.predict(b"\xff\xd8\xff" + bytes(600_000), "image/jpeg")
        assert status == 413 and "limit of 524288" in answer["error"]
        none, kind = multipart([])
        assert server.predict(none, kind)[0] == 400
        assert server.predict(good + b"", "image/png", method="GET")[0] == 405
        assert server.request("/v2/who")[0] == 404
        status, answer = server.request("/v1/predict?top_k=0", good, "image/png")
        assert status == 400 and "top_k" in answer["error"]
        status, answer = server.predict(good)
        assert status == 200 and answer["faces"][0]["person_id"] is not None
        assert "Traceback" not in server.output()
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def test_a_token_guards_every_route_but_healthz_and_is_required_beyond_loopback(
    tmp_path: Path, cli: Cli, trained: Path
) -> None:
    refused = cli("--model-dir", tmp_path / "model", "serve", "--addr", "0.0.0.0:8765")
    assert refused.exit_code == 2 and "--token-file" in refused.output
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    token_file.chmod(0o644)
    server = Server(tmp_path / "model", tmp_path, "--token-file", str(token_file))
    try:
        server.token = "s3cret"
        server.wait_ready()
        server.token = None
        assert f"can be read by other users of this machine: chmod 600 {token_file}" in (
            server.output()
        )
        assert server.request("/healthz") == (200, {"status": "ok"})
        for path in ("/readyz", "/v1/model", "/metrics", "/openapi.json"):
            assert server.request(path)[0] == 401, path
            assert server.request(path, token="wrong")[0] == 401, path
        status, answer = server.predict(crop(tmp_path, 1, 30).read_bytes())
        assert status == 401 and "Bearer" in answer["error"]
        assert server.predict(crop(tmp_path, 1, 30).read_bytes(), token="s3cret")[0] == 200

        # doctor asks the running service: with its token, without, and where none runs
        def service_check(*options: object) -> dict[str, str]:
            result = cli("--db", trained, "doctor", "--json", *options)
            return next(c for c in json.loads(result.stdout) if c["check"] == "service")

        addr = f"127.0.0.1:{server.port}"
        healthy = service_check("--service", addr, "--token-file", token_file)
        assert healthy["status"] == "ok" and "ready, serving model" in healthy["detail"]
        assert "token" in service_check("--service", addr)["fix"]
        nobody = service_check("--service", f"127.0.0.1:{free_port()}")
        assert nobody["status"] == "fail" and "no answer" in nobody["detail"]
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def test_sigterm_lets_the_requests_in_flight_finish_then_exits(
    tmp_path: Path, trained: Path
) -> None:
    server = Server(tmp_path / "model", tmp_path, "--max-images", "32")
    server.wait_ready()
    body, kind = multipart([(f"{n}.png", crop(tmp_path, 1, n).read_bytes()) for n in range(24)])
    answers: list[tuple[int, object]] = []
    asking = threading.Thread(target=lambda: answers.append(server.predict(body, kind)))
    asking.start()
    wait_for(
        lambda: metric(server, "facestore_serve_batch_faces_count") >= 1 or bool(answers),
        patient(10),
        "the request to reach the model",
    )
    assert server.stop() == 0, server.output()[-3000:]
    asking.join()
    assert answers and answers[0][0] == 200, answers
    assert "Stopped" in server.output()


def test_docs_serve_md_holds_the_current_reference() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "serve.md"
    text = docs.read_text()
    generated = text.split(START, 1)[1].split(END, 1)[0]
    assert generated == "\n" + reference(), (
        "docs/serve.md is out of date: run python -m facestore.service.openapi --write"
    )


def test_a_model_it_cannot_load_or_an_address_in_use_is_said_and_it_exits(
    tmp_path: Path, trained: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run(
            serve_command(tmp_path / "model", taken.getsockname()[1]),
            capture_output=True,
            text=True,
            timeout=patient(30),
        )
    assert busy.returncode == 2 and "Cannot listen on 127.0.0.1:" in busy.stderr, busy.stderr
    assert "--addr" in busy.stderr and "Traceback" not in busy.stderr
    done = subprocess.run(
        serve_command(tmp_path / "model", free_port(), "--weights", str(tmp_path / "gone.pt")),
        capture_output=True,
        text=True,
        timeout=patient(30),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "gone.pt" in done.stderr and "Traceback" not in done.stderr
