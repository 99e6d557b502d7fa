"""Shared fixtures: real data (skipped where absent), tiny models, training-run folders."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
REAL_PACKED = REALDATA / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
NOT_A_WRN = REALDATA / "not-a-wrn" / "resnet20-12fca82f.th"
CIFAR100_SAMPLES = REALDATA / "cifar100-samples"
CIFAR10_SAMPLES = REALDATA / "cifar10-samples"


@pytest.fixture
def realdata() -> Path:
    if not REAL_PACKED.is_file():
        pytest.skip(f"real material absent: {REALDATA} (it lives in ../shared/realdata beside the checkout)")
    return REALDATA


@pytest.fixture(scope="session")
def real_packed() -> Path:
    if not REAL_PACKED.is_file():
        pytest.skip(f"real published checkpoint absent: {REAL_PACKED}")
    return REAL_PACKED


def tiny_model(depth: int = 8, width: float = 1, num_classes: int = 10, seed: int = 0, binarized: bool = True):
    """A random in-memory model of the given shape."""
    from binexport.model import Model, binarize
    from binexport.synth import make_arch, random_state

    arch = make_arch(depth, width, num_classes)
    m = Model(arch, False, random_state(arch, seed))
    return binarize(m) if binarized else m


@pytest.fixture
def make_run(tmp_path: Path):
    """Factory: a training-run folder (checkpoint.pth.tar + log.txt) under tmp_path."""
    from binexport.synth import make_arch, write_training_run

    def _make(depth: int = 8, width: float = 1, num_classes: int = 10, binarize: bool = True, name: str = "run",
              **kw) -> Path:
        return write_training_run(tmp_path / name, make_arch(depth, width, num_classes), binarize=binarize, **kw)

    return _make


def normalized_batch(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 32, 32)).astype(np.float32)
