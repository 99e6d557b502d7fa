"""Packing to the published layout: bit-exact, atomic, honest about sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import normalized_batch, tiny_model
from support.spec_reference import spec_forward

import binexport
from binexport import formats
from binexport.data.synth import make_arch, random_state
from binexport.errors import CheckError, InputError
from binexport.model import Model
from binexport.runtimes.torch_ref import reference_logits


@pytest.mark.parametrize("depth", [8, 14, 20, 26])
def test_pack_round_trip_is_bit_exact(make_run, tmp_path: Path, depth: int) -> None:
    ckpt = make_run(depth=depth, width=0.5, num_classes=10)
    report = binexport.pack(ckpt, tmp_path / "out.pth.tar")
    src = binexport.load(ckpt)
    back = binexport.load(tmp_path / "out.pth.tar")
    assert src.compare(back) == []
    assert back.source.format == "packed"
    assert report.tensors_checked == len(src.arch.specs())


def test_packed_file_follows_the_published_layout(make_run, tmp_path: Path) -> None:
    ckpt = make_run(depth=8, width=1)
    out = tmp_path / "p.pth.tar"
    binexport.pack(ckpt, out)
    raw = torch.load(out, weights_only=True)
    state = random_state(make_arch(8, 1, 10), 0)
    assert list(raw) == ["module." + s.name for s in make_arch(8, 1, 10).specs()]
    w = state["group1.block0.conv0"]
    assert raw["module.group1.block0.conv0"].dtype == torch.uint8
    assert np.array_equal(raw["module.group1.block0.conv0"].numpy(), np.packbits(w >= 0, axis=1))
    assert raw["module.conv0"].numpy().tobytes() == state["conv0"].tobytes()
    assert raw["module.bn.num_batches_tracked"].dtype == torch.int64


def test_published_evaluation_recipe_gives_the_trained_logits(make_run, tmp_path: Path) -> None:
    """Load the packed file exactly as the SPEC's recipe does and run the SPEC's forward."""
    ckpt = make_run(depth=8, width=1)
    out = tmp_path / "p.pth.tar"
    binexport.pack(ckpt, out)
    params = {}
    for k, v in torch.load(out, weights_only=True).items():
        if v.dtype == torch.uint8:
            v = torch.from_numpy(np.unpackbits(v.numpy(), axis=1)).float() * 2 - 1
            v = v * np.sqrt(2 / (v.shape[1] * 9))
        params[k[len("module.") :]] = v.numpy()
    x = normalized_batch(3)
    trained = spec_forward(random_state(make_arch(8, 1, 10), 0), x, binarize=True)
    assert np.abs(spec_forward(params, x, binarize=False) - trained).max() <= 1e-5
    assert np.abs(reference_logits(binexport.load(out), x) - trained).max() <= 1e-5


def test_in_channels_not_multiple_of_8_is_held_but_refused_by_packed(make_run, tmp_path: Path) -> None:
    ckpt = make_run(width=0.75)  # 12, 24, 48 channels
    model = binexport.load(ckpt)
    assert model.binary["group0.block0.conv0"].shape == (12, 12, 3, 3)
    with pytest.raises(InputError, match="in_channels % 8 == 0.*--format bwn"):
        binexport.pack(ckpt, tmp_path / "x.pth.tar")
    assert not (tmp_path / "x.pth.tar").exists()


def test_full_precision_needs_binarize_anyway(make_run, tmp_path: Path) -> None:
    ckpt = make_run(binarize=False)
    with pytest.raises(InputError, match="--binarize-anyway"):
        binexport.pack(ckpt, tmp_path / "x.pth.tar")
    assert not (tmp_path / "x.pth.tar").exists()
    report = binexport.pack(ckpt, tmp_path / "x.pth.tar", binarize_anyway=True)
    assert report.binarized_anyway
    assert binexport.load(tmp_path / "x.pth.tar").binarized


def test_existing_output_is_kept_unless_forced(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    out = tmp_path / "o.pth.tar"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="--force"):
        binexport.pack(ckpt, out)
    assert out.read_bytes() == b"keep me"
    binexport.pack(ckpt, out, force=True)
    assert binexport.load(out).binarized


def test_failed_round_trip_leaves_no_output_and_keeps_the_old(
    make_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = make_run()
    out = tmp_path / "o.pth.tar"
    out.write_bytes(b"old")
    real_read = formats.packed.read

    def flipped(path: Path) -> Model:
        m = real_read(path)
        b = m.binary["group0.block0.conv1"]
        b.signs[0, 0, 0, 0] = ~b.signs[0, 0, 0, 0]
        return m

    monkeypatch.setattr(
        formats,
        "REGISTRY",
        tuple(dataclasses.replace(f, read=flipped) if f.name == "packed" else f for f in formats.REGISTRY),
    )
    with pytest.raises(CheckError, match="group0.block0.conv1: 1 sign bits differ"):
        binexport.pack(ckpt, out, force=True)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.pth.tar")] == []


def test_size_report_says_what_it_compares(make_run, tmp_path: Path) -> None:
    ckpt = make_run(depth=8, width=2)
    r = binexport.pack(ckpt, tmp_path / "o.pth.tar")
    assert r.input_bytes == ckpt.stat().st_size
    assert r.output_bytes == (tmp_path / "o.pth.tar").stat().st_size
    assert r.file_ratio == pytest.approx(r.input_bytes / r.output_bytes)
    assert r.weights_ratio == pytest.approx(r.float32_bytes / r.output_bytes)
    assert r.file_ratio > r.weights_ratio > 1  # the training file also holds optimizer state


def test_default_output_is_beside_the_input(make_run) -> None:
    ckpt = make_run()
    r = binexport.pack(ckpt)
    assert Path(r.output) == ckpt.parent / "checkpoint.packed.pth.tar"


def test_unknown_format_lists_valid_ones(make_run, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="valid formats: checkpoint, packed, bwn, mat, onnx"):
        formats.get("zip")
    for bad in ("zip", "onnx", "checkpoint"):
        with pytest.raises(InputError, match="pack writes 'packed' or 'bwn'"):
            binexport.pack(make_run(name=bad), tmp_path / "x", format=bad)
    assert not (tmp_path / "x").exists()


def test_existing_output_is_refused_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "o.pth.tar"
    out.write_bytes(b"x")
    with pytest.raises(InputError, match="--force"):
        binexport.pack(tmp_path / "not-even-there.pth", out)


def test_packed_bits_wrapped_in_a_state_dict_key_stay_packed(tmp_path: Path) -> None:
    m = tiny_model()
    raw = torch.load(__import__("io").BytesIO(formats.get("packed").write(m)), weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": raw, "epoch": 3}, path)
    back = binexport.load(path)
    assert back.source.format == "packed" and back.zero_weights == 0
    assert m.compare(back) == []


def test_non_string_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pth"
    torch.save({1: torch.zeros(3)}, path)
    with pytest.raises(InputError, match="key 1 is a int"):
        binexport.load(path, binarized=True)


def test_in_memory_model_round_trips_through_packed_writer(tmp_path: Path) -> None:
    m = tiny_model(depth=14, width=0.5)
    path = tmp_path / "m.pth"
    path.write_bytes(formats.get("packed").write(m))
    assert m.compare(formats.get("packed").read(path)) == []


def test_real_checkpoint_pack_reproduces_every_tensor(real_packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.pth.tar"
    r = binexport.pack(real_packed, out)
    a = torch.load(real_packed, weights_only=True, map_location="cpu")
    b = torch.load(out, weights_only=True)
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k
    assert abs(r.output_bytes - 3_682_907) / 3_682_907 < 0.01
