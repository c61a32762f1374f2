"""The face score (facestore.faceness: MTCNN's output network) of real faces, of the
same faces degraded, and of non-faces. It reads pixels only, so one run holds for
every backbone.

From a folder of per-person folders (ORL): every image as it is, and degraded as
bench/quality.py degrades the test crops (down16, down24, blur3, blur5, jpeg10); the
four corners of each (a third of each side: hair, background), 60 random textures,
and two partial faces (the top half; the right half). Prints the time to score the
faces (their thumbnails and the network, on the CPU) and, per kind, the quantiles
of the score and the share below 0.3 of the faces' median (the gate's floor when the
faces are the verified ones; facestore.quality.FLOOR_SHARE).

    python bench/face_score.py ../shared/datasets/att_faces --json face_score.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.quality import DEGRADATIONS, corners, people, texture  # noqa: E402
from facestore.faceness import face_scores  # noqa: E402
from facestore.quality import FLOOR_SHARE, thumbnail_of  # noqa: E402


def scores(images: list[Image.Image]) -> np.ndarray:
    return face_scores([thumbnail_of(image) for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(description="the face score of faces and non-faces")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    faces = [Image.open(path).convert("RGB") for _, paths in people(args.folder) for path in paths]
    kinds: dict[str, list[Image.Image]] = {
        kind: [Image.open(io.BytesIO(degrade(face))) for face in faces]
        for kind, degrade in DEGRADATIONS.items()
    }
    kinds["corner"] = [corner for face in faces for corner in corners(face)]
    kinds["texture"] = [texture(seed, faces[0].size) for seed in range(60)]
    kinds["top half"] = [face.crop((0, 0, face.width, face.height // 2)) for face in faces]
    kinds["right half"] = [
        face.crop((face.width // 2, 0, face.width, face.height)) for face in faces
    ]
    scores(kinds["clean"][:8])  # loads the network: not part of the timing
    started = time.perf_counter()
    measured = {"clean": scores(kinds["clean"])}
    seconds = time.perf_counter() - started
    print(f"scored {len(faces)} faces in {seconds:.3f} s (thumbnail and network, one process)")
    measured.update((kind, scores(images)) for kind, images in kinds.items() if kind != "clean")
    floor = FLOOR_SHARE * float(np.median(measured["clean"]))
    report: dict[str, dict[str, float]] = {}
    print(f"floor at {FLOOR_SHARE} of the clean faces' median: {floor:.3f}")
    print(f"{'kind':12s} {'n':>5s} {'min':>6s} {'5%':>6s} {'median':>6s} {'95%':>6s} below floor")
    for kind, values in measured.items():
        q = np.quantile(values, [0.0, 0.05, 0.5, 0.95])
        below = float(np.mean(values < floor))
        report[kind] = {
            "n": len(values),
            **{
                k: round(float(v), 4)
                for k, v in zip(("min", "q05", "median", "q95"), q, strict=True)
            },
            "below_floor": round(below, 4),
        }
        print(
            f"{kind:12s} {len(values):5d} {q[0]:6.3f} {q[1]:6.3f} {q[2]:6.3f} {q[3]:6.3f} "
            f"{100 * below:6.1f}%"
        )
    if args.json:
        result = {"floor": floor, "seconds_for_faces": seconds, "kinds": report}
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
