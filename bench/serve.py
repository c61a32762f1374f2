"""`facestore serve` under load, over loopback only, bounded in time and requests.

For each backbone: imports the ORL crops into a scratch SQLite file, embeds them
(`facestore embed --json`: the end-to-end faces/s the service is held to), trains,
starts `facestore serve` on a free loopback port, then measures

1. one client, one face per request, one after the other: p50 latency, against the
   backbone's own time for one face (timed in this process, median of 20);
2. --clients concurrent clients for --seconds: faces/s (against the embed rate),
   p50 / p99 latency, errors, the service's RSS after warm-up and at the end;
3. the same load while `facestore retrain` publishes a new model half-way: failed
   requests, and how long after the publish the answers carry the new version.

    python bench/serve.py --orl ../shared/datasets/att_faces [--casia-weights casia.pt]
        [--clients 16] [--seconds 60] [--max-requests 200000] [--busy N] [--json out.json]

With --library DIR (a library kept by `bench/scale.py --keep DIR`: its model of 100k or
1M faces, random vggface2 weights) instead: the time from start to ready, the memory,
the answers under load, and the time to follow a new version of that size.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import busy_loops, scratch  # noqa: E402
from bench.startup import facestore  # noqa: E402

WARM_UP = 10.0  # seconds of load before the RSS that must stay flat is read
RSS_EVERY = 5.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def crops(orl: Path) -> list[bytes]:
    """Every ORL image as PNG bytes (the service reads JPEG, PNG and WebP)."""
    from PIL import Image

    out = []
    for path in sorted(orl.glob("s*/*.pgm")):
        buffer = io.BytesIO()
        Image.open(path).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def backbone_ms(name: str, weights: Path | None, images: list[bytes]) -> float:
    """The backbone's own time for one face, loaded, median of 20."""
    from facestore.backbones import build_backbone
    from facestore.config import BackboneSettings
    from facestore.images import decode_crop

    backbone = build_backbone(BackboneSettings(name, weights))
    image = decode_crop(images[0])
    backbone.embed_images([image])
    times = []
    for _ in range(20):
        started = time.perf_counter()
        backbone.embed_images([image])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


class Client:
    """One keep-alive connection asking /v1/predict."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        self.connection.request("POST", "/v1/predict", body, {"Content-Type": "image/png"})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())


def load(
    port: int,
    images: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    during: Any = None,
    until_refused: bool = False,
) -> dict[str, Any]:
    """clients threads asking for `seconds` (or max_requests in all); during(), if
    given, runs in this thread meanwhile and its result is returned too."""
    latencies: list[float] = []
    errors: list[str] = []  # answers other than 200
    unanswered: list[tuple[float, str]] = []  # (sent at, why): refused, reset
    versions: list[tuple[float, str]] = []  # (answered at, model version)
    deadline = time.monotonic() + seconds
    count = iter(range(max_requests))
    lock = threading.Lock()

    def ask(n: int) -> None:
        client = Client(port)
        for i in count:
            if time.monotonic() >= deadline:
                return
            started, sent = time.perf_counter(), time.monotonic()
            try:
                status, answer = client.predict(images[(n * 37 + i) % len(images)])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    unanswered.append((sent, repr(exc)))
                if until_refused:  # the service stopped: this client is done
                    return
                client = Client(port)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"{status}: {answer}")
                else:
                    versions.append((time.time(), answer["model_version"]))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    extra = during() if during else None
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "faces_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * ordered[len(ordered) // 2] if ordered else None,
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)] if ordered else None,
        "errors": len(errors),
        "first_errors": errors[:3],
        "unanswered": len(unanswered),
        "first_unanswered": [why for _, why in unanswered[:3]],
        "unanswered_sent_at": [at for at, _ in unanswered],
        "versions": versions,
        "during": extra,
    }


def measure(name: str, orl: Path, work: Path, weights: Path | None, args: Any) -> dict[str, Any]:
    options = ["--weights", str(weights)] if weights else []
    db, model_dir = work / f"{name}.db", work / f"model-{name}"
    for step in (["import", str(orl)], ["db", "upgrade"]):
        _, code, err = facestore("--db", db, *step)
        assert code == 0, err
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facestore",
            "--db",
            db,
            "embed",
            "--json",
            "--backbone",
            name,
            *options,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    embedded = json.loads(done.stdout)
    embed_rate = embedded["embedded"] / embedded["seconds"]
    _, code, err = facestore(
        "--db", db, "--model-dir", model_dir, "train", "--backbone", name, *options
    )
    assert code == 0, err
    images = crops(orl)
    own_ms = backbone_ms(name, weights, images)

    port, server = start_server(model_dir, options, work / f"serve-{name}.log")
    try:
        wait_ready(port, server)
        one = load(port, images, 1, min(20.0, args.seconds), 200)
        rss: list[float] = []  # every RSS_EVERY seconds once warmed up

        def watch_rss() -> list[float]:
            time.sleep(WARM_UP)
            while time.monotonic() < started + args.seconds - 1:
                rss.append(round(rss_mib(server.pid), 1))
                time.sleep(RSS_EVERY)
            return rss

        started = time.monotonic()
        many = load(port, images, args.clients, args.seconds, args.max_requests, watch_rss)
        rss.append(round(rss_mib(server.pid), 1))

        def publish() -> dict[str, Any]:
            time.sleep(args.seconds / 4)
            before = time.time()
            _, code, err = facestore("--db", db, "--model-dir", model_dir, "retrain")
            assert code == 0, err
            current = (model_dir / "current").readlink().name
            published = (model_dir / "current").lstat().st_mtime
            return {"started": before, "published": published, "version": current}

        during = load(port, images, args.clients, args.seconds / 2, args.max_requests, publish)

        # SIGTERM with requests in flight: they are answered, then it exits
        def stop() -> tuple[float, float]:
            time.sleep(2.0)
            stopping = time.monotonic()
            server.terminate()
            server.wait(timeout=30)
            return stopping, time.monotonic() - stopping

        stopped = load(port, images, args.clients, 30.0, args.max_requests, stop, True)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    new = during["during"]
    first_new = min((t for t, v in during["versions"] if v == new["version"]), default=None)
    stopping, exit_s = stopped["during"]
    sent_at = stopped["unanswered_sent_at"]
    for result in (one, many, during, stopped):
        result.pop("versions")
        result.pop("unanswered_sent_at")
    return {
        "backbone": name,
        "embed_faces_per_s": embed_rate,
        "backbone_one_face_ms": own_ms,
        "one_client": one,
        "clients": args.clients,
        "load": {**many, "during": None, "rss_mib_after_warm_up": rss},
        "throughput_vs_embed": many["faces_per_s"] / embed_rate,
        "publish": {
            "failed_requests": during["errors"] + during["unanswered"],
            "new_version_after_s": None if first_new is None else first_new - new["published"],
            "requests": during["requests"],
        },
        "sigterm": {
            "exit_s": exit_s,
            "exit_code": server.returncode,
            "answered": stopped["requests"],
            "errors": stopped["errors"],
            # sent before SIGTERM and never answered: in flight, dropped (should be 0)
            "in_flight_dropped": sum(at < stopping for at in sent_at),
            # sent after it, on a connection the stopping service had closed
            "refused_after_stop": sum(at >= stopping for at in sent_at),
        },
    }


def start_server(
    model_dir: Path, options: list[str], log: Path
) -> tuple[int, subprocess.Popen[bytes]]:
    """`facestore serve` on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facestore",
            "--model-dir",
            str(model_dir),
            "serve",
            "--addr",
            f"127.0.0.1:{port}",
            *options,
        ],
        stderr=log.open("w"),
        stdout=subprocess.DEVNULL,
    )
    return port, server


def measure_library(model_dir: Path, weights: Path, work: Path, args: Any) -> dict[str, Any]:
    """A large library's model (bench/scale.py --keep DIR): how long the service takes to
    load it, its memory, its answers under load, and how long it takes to follow a new
    version of that size (the current one copied under a new name)."""
    from bench.common import synthetic_crop

    images = [synthetic_crop(p, s) for p in range(20) for s in range(10)]
    started = time.monotonic()
    port, server = start_server(model_dir, ["--weights", str(weights)], work / "serve-lib.log")
    try:
        wait_ready(port, server, timeout=1800)
        ready_s = time.monotonic() - started
        rss_ready = rss_mib(server.pid)
        one = load(port, images, 1, min(20.0, args.seconds), 200)
        many = load(port, images, args.clients, args.seconds, args.max_requests)
        rss_loaded = rss_mib(server.pid)
        current = (model_dir / "current").readlink()
        copy = model_dir / current.parent / (current.name[:-8] + "copy0000")
        shutil.copytree(model_dir / current, copy)
        link = model_dir / "current.bench"
        link.symlink_to(current.parent / copy.name)
        peak = [0.0]
        moved = time.monotonic()
        os.replace(link, model_dir / "current")
        while True:
            peak[0] = max(peak[0], rss_mib(server.pid))
            status = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status.request("GET", "/readyz")
            if json.loads(status.getresponse().read()).get("model_version") == copy.name:
                break
            time.sleep(0.1)
        follow_s = time.monotonic() - moved
    finally:
        server.terminate()
        server.wait(timeout=60)
    for result in (one, many):
        result.pop("versions")
        result.pop("unanswered_sent_at")
    return {
        "model_dir": str(model_dir),
        "ready_s": ready_s,
        "rss_ready_mib": rss_ready,
        "one_client": one,
        "clients": args.clients,
        "load": {**many, "during": None},
        "rss_after_load_mib": rss_loaded,
        "follow_s": follow_s,
        "rss_peak_while_following_mib": peak[0],
    }


def wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "serve exited"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orl", type=Path, help="the att_faces folder")
    parser.add_argument(
        "--library", type=Path, help="instead: a kept bench/scale.py library (--keep DIR)"
    )
    parser.add_argument("--casia-weights", type=Path, help="casia-webface weights (optional)")
    parser.add_argument("--backbone", action="append", dest="backbones", help="dlib, casia-webface")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if not args.orl and not args.library:
        parser.error("give --orl (ORL, dlib and casia-webface) or --library (a kept scale library)")
    names = args.backbones or ["dlib", *(["casia-webface"] if args.casia_weights else [])]
    work = scratch("facestore-serve-")
    results = []
    with busy_loops(args.busy):
        if args.library:
            env = dict(
                line.split("=", 1) for line in (args.library / "facestore.env").read_text().split()
            )
            results.append(
                measure_library(
                    Path(env["FACESTORE_MODEL_DIR"]), Path(env["FACESTORE_WEIGHTS"]), work, args
                )
            )
            print(json.dumps(results[-1], indent=2), flush=True)
            names = []
        for name in names:
            weights = args.casia_weights if name == "casia-webface" else None
            results.append(measure(name, args.orl, work, weights, args))
            print(json.dumps(results[-1], indent=2), flush=True)
    if args.json:
        machine = {"cores": os.cpu_count(), "busy": args.busy}
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
