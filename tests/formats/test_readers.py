"""Reading every checkpoint layout users have into the one in-memory model."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import normalized_batch
from support.spec_reference import spec_forward

import binexport
from binexport.data.synth import make_arch, random_state, training_checkpoint
from binexport.errors import InputError
from binexport.runtimes.torch_ref import reference_logits


@pytest.mark.parametrize("depth,width", [(8, 1), (14, 0.5), (8, 0.75)])
def test_training_checkpoint_matches_spec_forward(make_run, depth: int, width: float) -> None:
    ckpt = make_run(depth=depth, width=width, num_classes=10)
    model = binexport.load(ckpt)
    assert model.binarized and model.metadata["binarized_from"] == "log.txt"
    assert model.arch == make_arch(depth, width, 10)
    state = random_state(model.arch, 0)
    x = normalized_batch(3)
    ref = spec_forward(state, x, binarize=True)
    got = reference_logits(model, x)
    assert np.abs(ref - got).max() <= 1e-5


def test_full_precision_checkpoint_matches_spec_forward(make_run) -> None:
    ckpt = make_run(binarize=False)
    model = binexport.load(ckpt)
    assert not model.binarized and not model.binary
    x = normalized_batch(2)
    assert (
        np.abs(spec_forward(random_state(model.arch, 0), x, binarize=False) - reference_logits(model, x)).max() <= 1e-5
    )


def test_legacy_and_zip_files_give_the_same_model(make_run) -> None:
    a = binexport.load(make_run(name="zip"))
    b = binexport.load(make_run(name="legacy", legacy=True))
    assert a.compare(b) == []
    assert a.source.layout == b.source.layout == "training-checkpoint" and a.source.format == "checkpoint"


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_bare_state_dict_with_and_without_module_prefix(tmp_path: Path, prefix: str) -> None:
    arch = make_arch(8, 1, 10)
    state = random_state(arch, 3)
    path = tmp_path / "sd.pth"
    torch.save({prefix + k: torch.from_numpy(v.copy()) for k, v in state.items()}, path)
    model = binexport.load(path, binarized=True)
    assert model.source.layout == "state-dict" and model.metadata["binarized_from"] == "option"
    for name, b in model.binary.items():
        assert np.array_equal(b.signs, state[name] >= 0)
    assert model.floats["conv0"].tobytes() == state["conv0"].tobytes()


def test_without_log_refuses_to_guess(tmp_path: Path, make_run) -> None:
    ckpt = make_run(with_log=False)
    with pytest.raises(InputError, match="--binarized or --full-precision"):
        binexport.load(ckpt)
    assert binexport.load(ckpt, binarized=False).binarized is False


def test_log_override_and_conflict(make_run) -> None:
    ckpt = make_run(binarize=True)
    assert binexport.load(ckpt, binarized=False).binarized is False
    log = ckpt.parent / "log.txt"
    log.write_text(log.read_text() + json.dumps({"binarize": False}) + "\n")
    with pytest.raises(InputError, match="disagree"):
        binexport.load(ckpt)


def test_exact_zero_weights_are_counted_and_mapped_to_plus_one(make_run) -> None:
    model = binexport.load(make_run(zeros=5))
    assert model.zero_weights == 5
    arch = model.arch
    state = random_state(arch, 0, zeros=5)
    zero_mask = state["group0.block0.conv0"] == 0
    assert np.all(model.binary["group0.block0.conv0"].signs[zero_mask])


def test_inferred_widths_and_classes(make_run) -> None:
    model = binexport.load(make_run(depth=26, width=0.5, num_classes=7))
    assert (model.arch.depth, model.arch.widths, model.arch.num_classes) == (26, (8, 16, 32), 7)
    assert model.arch.name == "WRN-26-0.5"


def _save_state(tmp_path: Path, state: dict[str, np.ndarray], name: str = "bad.pth") -> Path:
    path = tmp_path / name
    torch.save({"module." + k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
    return path


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path: Path) -> None:
    state = random_state(make_arch(8, 1, 10), 0)
    del state["group1.block0.bn1.running_var"]
    state["group0.block0.extra"] = np.zeros(3, np.float32)
    state["group2.block0.conv1"] = np.zeros((64, 64, 1, 1), np.float32)
    with pytest.raises(InputError) as e:
        binexport.load(_save_state(tmp_path, state), binarized=True)
    msg = str(e.value)
    assert "missing tensor 'group1.block0.bn1.running_var'" in msg
    assert "unexpected tensor 'group0.block0.extra'" in msg
    assert "'group2.block0.conv1' has shape (64, 64, 1, 1)" in msg


def test_uint8_outside_block_convs_is_refused(tmp_path: Path) -> None:
    state = random_state(make_arch(8, 1, 10), 0)
    state["conv_last"] = np.zeros((10, 64, 1, 1), np.uint8)
    with pytest.raises(InputError, match="only valid for block convs.*found conv_last"):
        binexport.load(_save_state(tmp_path, state))


class _Evil:
    def __reduce__(self):  # pragma: no cover - never called by binexport
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_code_running_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv0": _Evil()}}, path)
    with pytest.raises(InputError, match="weights_only"):
        binexport.load(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "the file is empty"),
        (b"hello world, not a checkpoint", "unrecognised file"),
        (pickle.dumps({"a": 1}, protocol=2), "not a readable PyTorch checkpoint"),
    ],
)
def test_garbage_inputs(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        binexport.load(path, binarized=True)


@pytest.mark.parametrize(
    "obj,match",
    [
        ([1, 2, 3], "expected a dict"),
        ({"a": 1}, "expected a tensor"),
        ({}, "empty dict"),
        ({"state_dict": [1]}, "expected a dict of tensors"),
        ({"conv0": torch.zeros(2, dtype=torch.int32)}, "has dtype int32"),
    ],
)
def test_torch_files_of_the_wrong_shape(tmp_path: Path, obj: object, match: str) -> None:
    path = tmp_path / "x.pth"
    torch.save(obj, path)
    with pytest.raises(InputError, match=match):
        binexport.load(path, binarized=True)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint(make_run, legacy: bool) -> None:
    ckpt = make_run(legacy=legacy)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        binexport.load(ckpt)


def test_directory_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        binexport.load(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        binexport.load(tmp_path / "nope.pth")


def test_training_checkpoint_layout_is_what_the_training_code_writes(tmp_path: Path) -> None:
    ck = training_checkpoint(random_state(make_arch(8, 1, 10), 0))
    assert set(ck) == {"state_dict", "optimizer", "scheduler", "epoch"}
    assert all(k.startswith("module.") for k in ck["state_dict"])


def test_real_published_checkpoint_is_detected(real_packed: Path) -> None:
    model = binexport.load(real_packed)
    assert model.source.format == "packed"
    assert model.arch.name == "WRN-20-10" and model.arch.num_classes == 100 and model.binarized
    assert model.param_counts()[0] == 26_726_400
    assert model.source.sha256 == "966514661f4964c166f7aff3e2b2f141260c0df8c5712b3134bd53ea884b8f28"
    assert model.source.size == 3_682_907


def test_real_not_a_wrn_is_refused(realdata: Path) -> None:
    with pytest.raises(InputError, match="not a WRN_McDonnell checkpoint"):
        binexport.load(realdata / "not-a-wrn" / "resnet20-12fca82f.th")


def test_real_checkpoint_unpacks_to_the_published_recipe(real_packed: Path) -> None:
    """The reader equals the SPEC's evaluate_packed recipe: unpackbits, +-1, times the scale."""
    raw = torch.load(real_packed, weights_only=True, map_location="cpu")
    model = binexport.load(real_packed)
    for key, t in raw.items():
        name = key[len("module.") :]
        if t.dtype == torch.uint8:
            bits = np.unpackbits(t.numpy(), axis=1).astype(np.float32) * 2 - 1
            scale = np.sqrt(2 / (t.shape[1] * 8 * 9)).astype(np.float32)
            assert np.array_equal(model.dense(name), bits * scale)
        else:
            assert model.floats[name].tobytes() == t.numpy().tobytes()
