"""Do the CPU engines give torch's vectors on real faces? Embeds every image of a
folder of per-person folders (ORL) with the torch engine and with each other engine
installed, the same backbone and weights, and prints the lowest and median cosine
between the two vectors of each face.

    python bench/engine_vectors.py ../shared/datasets/att_faces \\
        --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from facestore.backbones import build_backbone  # noqa: E402
from facestore.backbones.engines import installed  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="casia-webface")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = [Image.open(p).convert("RGB") for p in sorted(args.folder.glob("*/*.*"))]
    images = [i for i in images if i.width > 1]

    def vectors(engine: str) -> np.ndarray:
        settings = BackboneSettings(args.backbone, args.weights, device="cpu", engine=engine)
        backbone = build_backbone(settings)
        return np.concatenate(
            [backbone.embed_images(images[i : i + 32]) for i in range(0, len(images), 32)]
        )

    reference = vectors("torch")
    results = {}
    for engine in ("onnxruntime", "openvino"):
        if not installed(engine):
            print(f"{engine}: not installed")
            continue
        got = vectors(engine)
        cosines = (got * reference).sum(1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
        )
        results[engine] = {
            "faces": len(images),
            "min": float(cosines.min()),
            "median": float(np.median(cosines)),
        }
        print(
            f"{engine}: {len(images)} faces, cosine to torch's vectors: lowest "
            f"{cosines.min():.8f}, median {np.median(cosines):.8f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
