"""formats/checkpoint.py: one torch file, dispatched to the training, packed or pytorchcv layout by what it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_model

from binexport import formats
from binexport.data.synth import random_state
from binexport.errors import InputError
from binexport.formats import checkpoint, packed, pytorchcv
from binexport.model import Arch


def _state(binarized: bool = False) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in tiny_model(binarized=binarized).floats.items()}


def test_a_training_checkpoint_reads_as_checkpoint_with_log_txt_saying_binarized(make_run) -> None:
    m = checkpoint.read(make_run(binarize=True))
    assert (m.source.format, m.source.layout, m.binarized) == ("checkpoint", "training-checkpoint", True)
    assert m.metadata["binarized_from"] == "log.txt" and m.source.breakdown["optimizer state"] > 0


def test_a_packed_file_dispatches_to_the_packed_layout(make_run, tmp_path: Path) -> None:
    model = formats.load(make_run())
    path = tmp_path / "m.packed.pth.tar"
    path.write_bytes(packed.write(model))
    got = checkpoint.read(path, binarized=False)  # packed bits are 1-bit whatever the caller says
    assert (got.source.format, got.source.layout, got.binarized) == ("packed", "packed-checkpoint", True)
    assert got.metadata["binarized_from"] == "packed layout"
    assert all(np.array_equal(got.binary[k].signs, model.binary[k].signs) for k in model.binary)


def test_pytorchcv_keys_dispatch_to_the_pytorchcv_layout(tmp_path: Path) -> None:
    arch = Arch.of(8, (16, 32, 64), 10, "pytorchcv")
    state = {pytorchcv.pytorchcv_key(k): torch.from_numpy(v) for k, v in random_state(arch, seed=1).items()}
    path = tmp_path / "wrn.pth"
    torch.save(state, path)
    with pytest.raises(InputError, match="wrn20_10_1bit"):
        checkpoint.read(path)  # strict: latent floats don't say which forward they belong to
    m = checkpoint.read(path, binarized=True)
    assert (m.source.format, m.source.layout, m.arch.family, m.binarized) == (
        "pytorchcv",
        "pytorchcv-state-dict",
        "pytorchcv",
        True,
    )
    assert m.metadata["binarized_from"] == "option" and set(m.binary) == {
        s.name for s in arch.specs() if s.kind == "binary"
    }


def test_a_bare_state_dict_without_a_word_on_binarize_is_refused_or_read_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "sd.pth"
    torch.save(_state(), path)
    with pytest.raises(InputError, match="can't tell whether this model was trained with --binarize"):
        checkpoint.read(path)
    m = checkpoint.read(path, strict=False)
    assert (m.source.layout, m.binarized, m.metadata["binarized_from"]) == ("state-dict", False, "unknown")
    assert checkpoint.read(path, binarized=True).metadata["binarized_from"] == "option"


def test_the_layout_readers_read_their_own_layout_only(tmp_path: Path) -> None:
    path = tmp_path / "sd.pth"
    torch.save(_state(), path)
    with pytest.raises(InputError, match="expected a packed checkpoint"):
        packed.read(path)
    with pytest.raises(InputError, match="expected one of pytorchcv's"):
        pytorchcv.read(path, binarized=False)
