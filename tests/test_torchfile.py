"""formats/torchfile.py: the one safe torch.load into a raw record, and the public byte breakdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from binexport.errors import InputError
from binexport.formats import torchfile


def test_is_torch_file_knows_zip_and_pickle_heads() -> None:
    assert torchfile.is_torch_file(b"PK\x03\x04rest") and torchfile.is_torch_file(b"\x80\x02")
    assert not torchfile.is_torch_file(b"BWN\x00") and not torchfile.is_torch_file(b"")


def test_load_a_training_checkpoint_strips_module_and_keeps_the_rest(tmp_path: Path) -> None:
    w = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2)
    opt = {"state": {0: {"momentum_buffer": torch.zeros(10)}}}
    path = tmp_path / "c.pth.tar"
    torch.save({"state_dict": {"module.conv0": w}, "optimizer": opt, "epoch": 3}, path)
    rec = torchfile.load(path)
    assert rec.layout == torchfile.LAYOUT_TRAINING and rec.path == path and rec.size == path.stat().st_size
    assert list(rec.arrays) == ["conv0"] and np.array_equal(rec.arrays["conv0"], w.numpy())
    assert rec.bit_tensors == frozenset() and rec.extra["epoch"] == 3 and "optimizer" in rec.extra


def test_load_unpacks_uint8_bits_and_names_them(tmp_path: Path) -> None:
    signs = np.random.default_rng(0).random((4, 16, 3, 3)) > 0.5
    path = tmp_path / "p.pth.tar"
    torch.save({"group0.block0.conv0": torch.from_numpy(np.packbits(signs, axis=1))}, path)
    rec = torchfile.load(path)
    assert rec.layout == torchfile.LAYOUT_PACKED and rec.bit_tensors == {"group0.block0.conv0"}
    assert rec.arrays["group0.block0.conv0"].dtype == bool
    assert np.array_equal(rec.arrays["group0.block0.conv0"], signs)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([1, 2], "expected a dict"),
        ({}, "empty dict"),
        ({"module.a": torch.zeros(1), "b": torch.zeros(1)}, "some keys start with 'module.'"),
        ({"a": torch.zeros(2, dtype=torch.complex64)}, "has dtype complex64"),
        ({"a": torch.zeros(4, 4).t()}, "non-contiguous view"),
    ],
)
def test_load_refuses_what_no_state_dict_of_ours_holds(tmp_path: Path, obj: object, why: str) -> None:
    path = tmp_path / "x.pth"
    torch.save(obj, path)
    with pytest.raises(InputError, match=why) as e:
        torchfile.load(path)
    assert "\n" not in str(e.value)


def test_load_refuses_a_file_that_is_not_torch(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(b"BWN\x00" + bytes(60))
    with pytest.raises(InputError, match="not a PyTorch checkpoint"):
        torchfile.load(path)


def test_breakdown_counts_each_role_once_and_the_rest_as_other() -> None:
    arrays = {
        "conv0": np.zeros((16, 3, 3, 3), np.float32),  # 1728 bytes
        "group0.block0.conv0": np.zeros((16, 16, 3, 3), bool),  # packed: 2304 signs -> 288 bytes
        "bn.running_mean": np.zeros(16, np.float32),  # 64 bytes
    }
    kinds = {"conv0": "float", "group0.block0.conv0": "binary", "bn.running_mean": "bn"}
    extra = {"optimizer": {"state": [torch.zeros(10), {"x": torch.zeros(5, dtype=torch.float64)}]}}
    got = torchfile.breakdown(arrays, kinds, 5000, binarized=True, bit_tensors={"group0.block0.conv0"}, extra=extra)
    assert got == {
        "binarized weights": 288,
        "float weights": 1728,
        "BN statistics": 64,
        "optimizer state": 80,
        "other": 5000 - 288 - 1728 - 64 - 80,
    }


def test_breakdown_of_a_full_precision_model_counts_latent_convs_as_floats() -> None:
    arrays = {"group0.block0.conv0": np.zeros((16, 16, 3, 3), np.float32)}
    got = torchfile.breakdown(arrays, {"group0.block0.conv0": "binary"}, 100, binarized=False)
    assert got["binarized weights"] == 0 and got["float weights"] == 16 * 16 * 9 * 4 and got["other"] == 0
