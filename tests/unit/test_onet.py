"""facestore.onet: MTCNN's ONet in numpy, against facenet-pytorch's own (torch) network."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from facenet_pytorch.models.mtcnn import ONet
from PIL import Image

from facestore import onet
from facestore.quality import thumbnail_of
from tests.support.helpers import drawn_face


def thumbnails() -> np.ndarray:
    """Drawn faces, their halves and corners, and random walls: high and low scores."""
    rng = np.random.default_rng(0)
    crops = []
    for person in range(6):
        face = drawn_face(person, person).convert("RGB")
        crops += [face, face.crop((0, 0, 92, 56)), face.crop((40, 50, 92, 112))]
    crops += [Image.fromarray(rng.integers(0, 256, (112, 92, 3), np.uint8)) for _ in range(6)]
    return np.stack([thumbnail_of(c) for c in crops])


def test_the_weights_read_without_torch_are_torchs() -> None:
    ours = onet.onet_weights()
    theirs = torch.load(onet.weights_path())
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)


def facenet_pytorchs(crops: np.ndarray) -> np.ndarray:
    net = ONet(pretrained=True).eval()
    with torch.inference_mode():
        pixels = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125
        return net(pixels)[2][:, 1].numpy()


def test_both_engines_give_facenet_pytorchs_face_probabilities() -> None:
    crops = thumbnails()
    theirs = facenet_pytorchs(crops)
    ours = onet.face_probability(crops)
    assert ours.max() > 0.8 and ours.min() < 0.2  # faces and non-faces both present
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(onet.torch_face_probability(crops), theirs, atol=1e-6)
    big = np.concatenate([crops] * 6)  # more than one chunk
    np.testing.assert_allclose(onet.face_probability(big), np.tile(ours, 6), atol=1e-6)
    assert len(onet.face_probability(crops[:0])) == 0


def test_the_pickle_may_name_nothing_but_a_state_dicts_parts() -> None:
    evil = io.BytesIO()
    for header in (onet.LEGACY_MAGIC, onet.LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(header, evil)
    evil.write(b"cos\nsystem\n(S'true'\ntR.")  # os.system("true")
    evil.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="os.system is not allowed"):
        onet.read_legacy_state_dict(evil)
    with pytest.raises(ValueError, match="not a legacy torch file"):
        onet.read_legacy_state_dict(io.BytesIO(pickle.dumps(1) * 3))


def test_a_process_without_torch_scores_faces_without_importing_it() -> None:
    probe = (
        "import json, sys, numpy as np; from facestore.faceness import face_scores; "
        "s = face_scores([np.full((48, 48, 3), 128, np.uint8)]); "
        "print(json.dumps(['torch' in sys.modules, float(s[0])]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded, score = json.loads(out.stdout)
    assert loaded is False and 0 <= score <= 1
