"""FORMAT.md section 4.2 defines the network: a forward written from the page alone (tests/bwn_spec_forward.py,
numpy float64, fed by the independent reader) gives binexport's reference logits, for every family and variant."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from support import bwn_spec_forward as net
from support import bwn_spec_reader as spec

from binexport.data.synth import random_state
from binexport.formats import bwn
from binexport.model import Arch, Model, binarize, input_normalization

#: (family, binarised, planted exact zeros)
CASES = [
    ("pytorch", True, True),
    ("pytorch", False, False),
    ("mcdonnell-matlab", True, False),
    ("mcdonnell-keras", True, False),
    ("pytorchcv", True, True),
    ("pytorchcv", False, False),
]


def _file(family: str, binarized: bool, zeros: bool) -> bytes:
    arch = Arch.of(8, (8, 16, 32), 10, family)
    floats = random_state(arch, 5)
    if zeros:
        for name in ("group1.block0.conv0", "group2.block0.conv1", "conv_last"):
            if arch.kinds[name] == "binary":  # 40 zeros each, spread out: enough to move the logits
                floats[name] = np.array(floats[name], copy=True)
                floats[name].reshape(-1)[: 7 * 40 : 7] = 0.0
    model = Model(arch, False, floats)
    return bwn.write(binarize(model) if binarized else model, encoding="packed")  # raw floats: a fast spec read


@pytest.mark.parametrize("family,binarized,zeros", CASES, ids=[f"{c[0]}-{'1bit' if c[1] else 'fp'}" for c in CASES])
def test_the_page_forward_is_the_reference(tmp_path: Path, family: str, binarized: bool, zeros: bool) -> None:
    torch = pytest.importorskip("torch")  # noqa: F841 (the reference runtime needs it)
    from binexport.runtimes.torch_ref import reference_logits

    data = _file(family, binarized, zeros)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    meta = json.loads(data[32 : 32 + struct.unpack_from("<Q", data, 16)[0]])["metadata"]
    assert spec.model(data)["family"] == family
    assert ("zero_positions" in meta) == zeros
    pixels = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32)).astype(np.float64)
    x = net.normalise(pixels, family)
    want = net.forward(spec.read(data), meta, x)
    got = reference_logits(bwn.read(path), x.astype(np.float32))
    assert got.shape == want.shape == (2, 10)
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tol
    if zeros:  # the comparison can tell: the same forward with the zeros read as +1 is off
        ones = net.forward(spec.read(data), {k: v for k, v in meta.items() if k != "zero_positions"}, x)
        assert np.abs(got - ones).max() > 100 * tol


@pytest.mark.parametrize("family", ["pytorch", "pytorchcv"])
def test_the_page_normalisation_is_binexports(family: str) -> None:
    arch = Arch.of(8, (8, 16, 32), 10, family)
    mean, std = input_normalization(arch)
    np.testing.assert_allclose(mean, net.NORMALISATION[family][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, net.NORMALISATION[family][1], rtol=0, atol=1e-12)
