"""Tiny models and data for tests: random WRNs, normalized batches, CIFAR pickles, the golden-bytes check."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np


def tiny_model(depth: int = 8, width: float = 1, num_classes: int = 10, seed: int = 0, binarized: bool = True):
    """A random in-memory model of the given shape."""
    from binexport.data.synth import make_arch, random_state
    from binexport.model import Model, binarize

    arch = make_arch(depth, width, num_classes)
    m = Model(arch, False, random_state(arch, seed))
    return binarize(m) if binarized else m


def normalized_batch(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 32, 32)).astype(np.float32)


def planar(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> the (N, 3072) R-plane, G-plane, B-plane rows of the real files."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def cifar_pickle(images: np.ndarray, labels: list[int], label_key: bytes = b"fine_labels") -> bytes:
    """A batch as Python 3 users re-save it: bytes keys, numpy data, list labels."""
    return pickle.dumps(
        {
            b"batch_label": b"testing batch 1 of 1",
            label_key: labels,
            b"data": planar(images),
            b"filenames": [b"x.png"] * len(labels),
        }
    )


def check_golden(path: Path, data: bytes, sha256: str) -> None:
    """``data`` (what the writer makes now) must be the committed golden file, whose hash is pinned.

    With ``BWN_REGENERATE_GOLDEN=1`` the file is rewritten instead, its new hash printed and the test skipped.
    """
    import pytest

    if os.environ.get("BWN_REGENERATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        print(f'\n    "{path.name}": "{hashlib.sha256(data).hexdigest()}",')
        pytest.skip("golden file regenerated: paste the hash above into GOLDEN_SHA256")
    assert path.is_file(), f"{path} missing: regenerate it deliberately (see GOLDEN_SHA256)"
    committed = path.read_bytes()
    assert hashlib.sha256(committed).hexdigest() == sha256, "golden file changed on disk"
    assert data == committed, "the writer no longer produces the committed bytes: a format change needs a new version"
