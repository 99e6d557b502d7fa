"""Exact-zero latent weights (FORMAT.md section 4.2): their positions survive .bwn, and every forward honours them.

The training forward (PyTorch port, pytorchcv) multiplies sign(w) by the scale, and sign(0) = 0: such a weight
is 0, not +scale. The oracle here is that rule written with numpy (``np.sign``), independent of binexport.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from support import bwn_spec_reader as spec
from support.bwn_spec_reader import relay
from support.cli import invoke
from support.models import normalized_batch

from binexport.data.synth import make_arch, random_state
from binexport.errors import FormatError
from binexport.formats import bwn
from binexport.formats.bwn.metadata import MAX_ZERO_POSITIONS
from binexport.model import Arch, Model, binarize

#: (tensor, flat index) of the planted zeros: block convs, and conv0/conv_last where they are 1-bit (pytorchcv).
PLANTED = [("group0.block0.conv0", 0), ("group0.block0.conv0", 7), ("group2.block0.conv1", 100)]
CV_PLANTED = [*PLANTED, ("conv0", 5), ("conv_last", 3)]


def _latent(family: str = "pytorch", planted: list[tuple[str, int]] = PLANTED) -> Model:
    base = make_arch(8, 0.5, 10)
    arch = base if family == "pytorch" else Arch.of(base.depth, base.widths, base.num_classes, family)
    floats = random_state(arch, 3)
    for name, i in planted:
        floats[name] = np.array(floats[name], copy=True)
        floats[name].reshape(-1)[i] = 0.0
    return Model(arch, False, floats)


def _sign_oracle(latent: Model, name: str) -> np.ndarray:
    w = np.asarray(latent.floats[name], np.float64)
    return (np.sign(w) * np.sqrt(2.0 / np.prod(w.shape[1:]))).astype(np.float32)


@pytest.mark.parametrize("family,planted", [("pytorch", PLANTED), ("pytorchcv", CV_PLANTED)])
def test_zero_positions_round_trip_and_dense_is_the_training_forward(
    tmp_path: Path, family: str, planted: list
) -> None:
    latent = _latent(family, planted)
    model = binarize(latent)
    assert model.zero_weights == len(planted)
    path = tmp_path / "z.bwn"
    path.write_bytes(bwn.write(model))
    back = bwn.read(path)
    assert back.compare(model) == []
    for name in model.binary:
        np.testing.assert_array_equal(back.dense(name), _sign_oracle(latent, name))
    data = path.read_bytes()
    meta = json.loads(data[32 : 32 + struct.unpack_from("<Q", data, 16)[0]])["metadata"]
    want: dict[str, list[int]] = {}
    for name, i in planted:
        want.setdefault(name, []).append(i)
    assert meta["zero_positions"] == {k: sorted(v) for k, v in want.items()}
    spec.model(data)  # the independent reader takes it


def test_no_zeros_no_key(tmp_path: Path) -> None:
    """Files without exact zeros keep their bytes: the key is written only where there is something to say."""
    model = binarize(_latent(planted=[]))
    data = bwn.write(model)
    assert b"zero_positions" not in data[:4096]


def test_reference_and_onnx_honour_zero_positions(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from binexport.formats import onnx as onnx_format
    from binexport.runtimes.torch_ref import reference_logits

    latent = _latent()
    model = binarize(latent)
    x = normalized_batch(4)
    ref = reference_logits(model, x)
    # the training forward, from the latent weights with torch.sign (sign(0) = 0)
    dense = {k: torch.sign(torch.from_numpy(np.asarray(v, np.float32))) for k, v in latent.floats.items()}
    signed = Model(latent.arch, False, {k: _scaled(k, v.numpy(), latent) for k, v in dense.items()})
    np.testing.assert_allclose(ref, reference_logits(signed, x), rtol=0, atol=1e-4)
    ones = Model(model.arch, True, model.floats, {k: type(b)(b.signs) for k, b in model.binary.items()})
    assert np.abs(reference_logits(ones, x) - ref).max() > 1e-4, "the planted zeros must matter"
    for weights in ("1-bit", "float32"):
        blob = onnx_format.write(model, weights=weights)
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def _scaled(name: str, signs: np.ndarray, latent: Model) -> np.ndarray:
    kinds = latent.arch.kinds
    if kinds[name] != "binary":
        return np.asarray(latent.floats[name])
    return (signs * np.float32(np.sqrt(2.0 / np.prod(signs.shape[1:])))).astype(np.float32)


def _edit_zeros(value: object, zero_weights: int | None = None):
    def edit(doc: dict) -> None:
        doc["metadata"]["zero_positions"] = value
        if zero_weights is not None:
            doc["metadata"]["zero_weights"] = zero_weights

    return edit


BAD = [
    ("not an object", [0, 7], None, "must be an object"),
    ("a float tensor", {"bn.running_var": [0]}, 1, "no 1-bit tensor"),
    ("an unknown tensor", {"nope": [0]}, 1, "no 1-bit tensor"),
    ("empty list", {"group0.block0.conv0": []}, 0, "strictly increasing"),
    ("not increasing", {"group0.block0.conv0": [7, 0]}, 2, "strictly increasing"),
    ("repeated", {"group0.block0.conv0": [7, 7]}, 2, "strictly increasing"),
    ("out of range", {"group0.block0.conv0": [10**9]}, 1, "strictly increasing"),
    ("negative", {"group0.block0.conv0": [-1]}, 1, "strictly increasing"),
    ("a float index", {"group0.block0.conv0": [1.0]}, 1, "strictly increasing"),
    ("count differs from zero_weights", {"group0.block0.conv0": [0, 7]}, 3, "lists 2 positions"),
]


@pytest.mark.parametrize("value,zero_weights,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_zero_positions_are_refused_by_both_readers(
    tmp_path: Path, value: object, zero_weights: int | None, message: str
) -> None:
    base = bwn.write(binarize(_latent()))
    data = relay(base, _edit_zeros(value, zero_weights))
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    bwn.read_tensors(path)  # a valid container: the rule is a model rule
    with pytest.raises(FormatError, match=message):
        bwn.read(path)
    with pytest.raises(AssertionError):
        spec.model(data)


def test_zero_positions_in_a_full_precision_model_are_refused(tmp_path: Path) -> None:
    latent = _latent()
    data = relay(bwn.write(latent), _edit_zeros({"group0.block0.conv0": [0]}, 1))
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="binarised model only"):
        bwn.read(path)
    with pytest.raises(AssertionError):
        spec.model(data)


def test_more_positions_than_the_limit_are_refused(tmp_path: Path) -> None:
    """At most MAX_ZERO_POSITIONS in all: one more (in a WRN-8-4, whose last conv has 589,824 weights) is refused."""
    arch = make_arch(8, 4, 10)
    model = binarize(Model(arch, False, random_state(arch, 1)))
    n = MAX_ZERO_POSITIONS + 1
    data = relay(bwn.write(model, encoding="packed"), _edit_zeros({"group2.block0.conv1": list(range(n))}, n))
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="strictly increasing"):
        bwn.read(path)
    with pytest.raises(AssertionError):
        spec.model(data)


def test_pytorchcv_with_exact_zeros_is_exact_through_bwn_and_onnx(tmp_path: Path) -> None:
    """pytorchcv's own 1-bit forward (sign(0) = 0) is the oracle: its state_dict with planted exact zeros, read,
    written as .bwn and read back, gives its logits in the reference and in a 1-bit ONNX on ONNX Runtime."""
    wrn1bit = pytest.importorskip("pytorchcv.models.wrn1bit_cifar", reason="pytorchcv is not installed")
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import binexport
    from binexport.formats import onnx as onnx_format
    from binexport.runtimes.torch_ref import reference_logits

    torch.manual_seed(0)
    net = wrn1bit.CIFARWRN1bit([[8, 8], [16, 16], [32, 32]], 8, binarized=True, num_classes=10).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("conv.weight") or name == "features.init_block.weight":
                p.view(-1)[: 7 * 30 : 7] = 0.0  # 30 exact zeros in every conv, stem and head included
    src = tmp_path / "wrn14_1bit_cifar10-0000-00000000.pth"
    torch.save(net.state_dict(), src)
    model = binexport.load(src, binarized=True)
    assert model.zero_weights == 30 * sum(1 for n in model.binary)
    path = tmp_path / "z.bwn"
    path.write_bytes(bwn.write(model))
    back = bwn.read(path)
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2023, 0.1994, 0.2010], np.float32).reshape(1, 3, 1, 1)
    pixels = np.random.default_rng(2).integers(0, 256, (4, 3, 32, 32)).astype(np.float32)
    x = ((pixels / 255 - mean) / std).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = reference_logits(back, x)
    assert np.abs(got - want).max() <= 1e-4
    sess = ort.InferenceSession(onnx_format.write(back, weights="1-bit"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(onnx_out - want).max() <= 1e-4
    ones = Model(back.arch, True, back.floats, {k: type(b)(b.signs) for k, b in back.binary.items()})
    assert np.abs(reference_logits(ones, x) - want).max() > 1e-3, "without the positions the logits are off"


def test_pack_to_bwn_keeps_the_positions_of_a_training_run(make_run, tmp_path: Path) -> None:
    """binexport pack --format bwn of a run with exact zeros: re-read and checked by pack, positions in the file."""
    import binexport

    run = make_run(zeros=5)
    out = tmp_path / "z.bwn"
    r = invoke("pack", str(run), "--format", "bwn", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "5 weights were exactly zero" in r.output and "the .bwn records where" in r.output
    src = binexport.load(run)
    back = bwn.read(out)
    assert back.zero_weights == 5
    np.testing.assert_array_equal(back.binary["group0.block0.conv0"].zeros, src.binary["group0.block0.conv0"].zeros)
    assert back.dense("group0.block0.conv0").reshape(-1)[back.binary["group0.block0.conv0"].zeros].tolist() == [0] * 5


@pytest.mark.parametrize("zero_point", [0, 1])
def test_int8_onnx_honours_zero_positions_and_still_fuses(zero_point: int) -> None:
    """The int8 graph puts the weight zero point at the exact zeros (0 after DequantizeLinear): its logits
    follow the zeros, and ONNX Runtime still folds the chain and fuses every block conv into QLinearConv."""
    pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from binexport.formats.onnx import build_model, int8
    from binexport.runtimes.ort_kernels import optimized_ops
    from binexport.runtimes.torch_ref import TorchRuntime, reference_logits

    latent = _latent()
    for name in latent.arch.kinds:
        if latent.arch.kinds[name] == "binary":
            latent.floats[name] = np.array(latent.floats[name], copy=True)
            latent.floats[name].reshape(-1)[: 7 * 30 : 7] = 0.0
    model = binarize(latent)
    ones = Model(model.arch, True, model.floats, {k: type(b)(b.signs) for k, b in model.binary.items()})
    x = normalized_batch(8)
    ranges = TorchRuntime(model).activation_ranges(x, percentile=100)
    need = int8.required_ranges(model)
    blob = build_model(
        model, weights="int8", int8_ranges={k: ranges[k] for k in need}, int8_weight_zero_point=zero_point
    ).SerializeToString()
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    exact, wrong = reference_logits(model, x), reference_logits(ones, x)
    assert np.abs(got - exact).max() < 0.25 * np.abs(wrong - exact).max()
    ops = optimized_ops(blob)
    assert ops.count("QLinearConv") == len([n for n in model.binary if n.startswith("group")])
    assert ops.count("ScatterND") == 0, "folded at session start"
