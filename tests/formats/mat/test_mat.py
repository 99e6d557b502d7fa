"""McDonnell's .mat models: both readers, the variant through torch / ONNX / .bwn, and malformed files refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.mcdonnell_oracle import forward, tiny_net, write_keras, write_matlab
from support.paths import REALDATA
from support.refusals import assert_refused

import binexport
from binexport.errors import FormatError, InputError
from binexport.formats import bwn
from binexport.runtimes import select_input
from binexport.runtimes.torch_ref import TorchRuntime

MODELS = REALDATA / "mcdonnell-1-bit-per-weight" / "TrainedModels"
REAL = {
    ("mcdonnell-matlab", 10): MODELS / "Matlab" / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat",
    ("mcdonnell-matlab", 100): MODELS / "Matlab" / "TrainedWideResNet20-10_CIFAR100_1-bit-per-weight-4MB.mat",
    ("mcdonnell-keras", 10): MODELS / "Tensorflow.keras" / "CIFAR10_allparams.mat",
    ("mcdonnell-keras", 100): MODELS / "Tensorflow.keras" / "CIFAR100_allparams.mat",
}
PIXELS = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real material absent: {path} (it lives in ../shared/realdata beside the checkout)")
    return path


def _torch(model: binexport.Model, pixels: np.ndarray) -> np.ndarray:
    rt = TorchRuntime(model)
    return rt.logits(select_input(rt.input_kind, pixels, np.empty(0)))


@pytest.fixture(params=["matlab", "keras"])
def tiny(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict, Path]:
    net = tiny_net()
    write = write_matlab if request.param == "matlab" else write_keras
    return request.param, net, write(tmp_path / f"tiny-{request.param}.mat", net)


def test_tiny_mat_reads_as_its_variant(tiny: tuple[str, dict, Path]) -> None:
    layout, net, path = tiny
    m = binexport.load(path)
    assert (m.arch.name, m.arch.family, m.source.format) == ("WRN-8-0.25", f"mcdonnell-{layout}", "mat")
    assert m.arch.input_bn and m.arch.first_conv_binary and m.arch.head == "binary"
    # bits carried over exactly: (kh, kw, in, out) -> (out, in, kh, kw), 1 = +1
    assert np.array_equal(m.binary["conv0"].signs, net["bits"][0].transpose(3, 2, 0, 1))
    assert np.array_equal(m.binary["conv_last"].signs, net["bits"][-1].transpose(3, 2, 0, 1))
    assert np.array_equal(m.binary["group1.block0.conv0"].signs, net["bits"][3].transpose(3, 2, 0, 1))
    assert np.array_equal(m.floats["input_bn.bias"], net["bns"][0][1])


def test_torch_reference_matches_the_independent_forward(tiny: tuple[str, dict, Path]) -> None:
    layout, net, path = tiny
    want = forward(net, PIXELS, layout)
    got = _torch(binexport.load(path), PIXELS)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    other = forward(net, PIXELS, "keras" if layout == "matlab" else "matlab")
    assert np.abs(other - want).max() > 1e-3  # the padding convention is visible on these nets


@pytest.mark.parametrize("weights,inside", [("1-bit", False), ("1-bit", True), ("float16", False)])
def test_onnx_matches_the_independent_forward(
    tiny: tuple[str, dict, Path], tmp_path: Path, weights: str, inside: bool
) -> None:
    import onnxruntime as ort

    layout, net, path = tiny
    out = tmp_path / "m.onnx"
    r = binexport.export_onnx(path, out, weights=weights, normalize_inside=inside)
    assert r.input_kind == (
        "uint8-nhwc" if inside else f"{'float16' if weights == 'float16' else 'float32'}-nchw-pixels"
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["binexport.family"] == f"mcdonnell-{layout}" and meta["binexport.input"] == r.input_kind
    x = PIXELS if inside else PIXELS.transpose(0, 3, 1, 2).astype(np.float16 if weights == "float16" else np.float32)
    got = sess.run(None, {"input": x})[0].astype(np.float64)
    want = forward(net, PIXELS, layout)
    tol = 2e-2 if weights == "float16" else 1e-4
    assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max())


def test_bwn_round_trips_the_variant_and_flags_it(tiny: tuple[str, dict, Path], tmp_path: Path) -> None:
    layout, _, path = tiny
    r = binexport.pack(path, tmp_path / "m.bwn", format="bwn")
    back = binexport.load(r.output)
    assert back.arch == binexport.load(path).arch
    binexport.load(path).check_equal(back, "the .bwn")
    raw = Path(r.output).read_bytes()
    assert int.from_bytes(raw[12:16], "little") == 1  # flags bit 0: an architecture variant
    meta = json.loads(raw[32 : 32 + int.from_bytes(raw[16:24], "little")])["metadata"]
    assert meta["variant"]["family"] == f"mcdonnell-{layout}"


def _rewrite_header(src: Path, dst: Path, edit, flags: int | None = None) -> Path:
    """A copy of ``src`` whose JSON metadata went through ``edit`` (same data start, so offsets hold)."""
    import zlib

    raw = bytearray(src.read_bytes())
    hlen = int.from_bytes(raw[16:24], "little")
    doc = json.loads(raw[32 : 32 + hlen])
    start = doc["tensors"][0]["offset"]
    edit(doc["metadata"])
    new = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert 32 + len(new) <= start
    new = new + b" " * (start - 32 - len(new))  # whitespace after the object is allowed (FORMAT.md section 3)
    raw[32:start] = new
    raw[16:24] = len(new).to_bytes(8, "little")
    if flags is not None:
        raw[12:16] = flags.to_bytes(4, "little")
    raw[28:32] = zlib.crc32(new, zlib.crc32(bytes(raw[:28]))).to_bytes(4, "little")
    dst.write_bytes(bytes(raw))
    return dst


def test_bwn_variant_header_is_checked(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "k.mat", tiny_net())
    good = Path(binexport.pack(path, tmp_path / "k.bwn", format="bwn").output)
    cases = [
        (lambda m: m["variant"].__setitem__("downsample_padding", "symmetric"), None, "metadata.variant"),
        (lambda m: m["variant"].__setitem__("family", "resnet"), None, "no known family"),
        (lambda m: m.pop("variant"), None, "names no known family"),
        (lambda m: None, 0, "flags bit 0 is not set"),
        (lambda m: None, 2, "field 'flags'"),
    ]
    for i, (edit, flags, msg) in enumerate(cases):
        bad = _rewrite_header(good, tmp_path / f"bad{i}.bwn", edit, flags)
        with pytest.raises(FormatError, match=msg):
            bwn.read(bad)


def test_packed_refuses_a_variant_and_points_to_bwn(tmp_path: Path) -> None:
    path = write_matlab(tmp_path / "m.mat", tiny_net(widths=(8, 16, 32)))
    r = invoke("pack", str(path), "--format", "packed", "-o", str(tmp_path / "o.pth.tar"))
    assert_refused(r)
    assert "McDonnell MATLAB variant" in r.stderr and "--format bwn" in r.stderr


def test_inspect_names_the_variant(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "k.mat", tiny_net())
    r = invoke("inspect", str(path))
    assert r.exit_code == 0, r.output
    assert "WRN-8-0.25, 10 classes, 1-bit, McDonnell Keras variant" in r.stdout.replace("\n", " ")
    info = binexport.inspect(path)
    assert info.architecture["family"] == "mcdonnell-keras" and info.output_sizes["bwn"] < info.file_bytes * 4


# --- malformed files: one line, exit 2 ---


def _refused(path: Path, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        binexport.load(path)
    assert_refused(invoke("inspect", path), match=msg)


def test_neither_layout(tmp_path: Path) -> None:
    import scipy.io

    scipy.io.savemat(tmp_path / "x.mat", {"weights": np.ones((3, 3)), "bias": np.zeros(3)})
    _refused(tmp_path / "x.mat", "neither McDonnell layout")


def test_v73_hdf5_file(tmp_path: Path) -> None:
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    p = tmp_path / "v73.mat"
    p.write_bytes(head.ljust(116, b" ") + bytes(8) + b"\x00\x02IM" + bytes(384) + b"\x89HDF\r\n\x1a\n" + bytes(64))
    _refused(p, "v7.3")


def test_truncated_file(tmp_path: Path) -> None:
    full = write_keras(tmp_path / "k.mat", tiny_net()).read_bytes()
    for cut in (100, len(full) // 2):
        p = tmp_path / f"cut{cut}.mat"
        p.write_bytes(full[:cut])
        _refused(p, "truncated")


def test_huge_file_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "huge.mat"
    with open(p, "wb") as f:
        f.write(b"MATLAB 5.0 MAT-file".ljust(124, b" ") + b"\x00\x01IM")
        f.truncate(65 << 20)  # sparse: nothing is read
    _refused(p, "at most 64 MiB")


def test_wrong_shapes_and_values(tmp_path: Path) -> None:
    import scipy.io

    net = tiny_net()
    p = write_keras(tmp_path / "k.mat", net)
    d = {k: v for k, v in scipy.io.loadmat(p).items() if not k.startswith("__")}
    d["conv2d_7"] = d["conv2d_7"][0]  # 4-D instead of (1, kh, kw, in, out)
    scipy.io.savemat(tmp_path / "shape.mat", d)
    _refused(tmp_path / "shape.mat", "wrong shapes")
    _refused(write_matlab(tmp_path / "lw.mat", net, LayerWeights=np.ones((8, 1), np.float32)), "LayerWeights")
    _refused(write_matlab(tmp_path / "st.mat", net, Stride=np.ones((1, 8))), "Stride")
    wrong = tiny_net()
    wrong["bns"][3] = (wrong["bns"][3][0] * 2, *wrong["bns"][3][1:])
    _refused(write_matlab(tmp_path / "gamma.mat", wrong), "learned gamma")
    odd = tiny_net()
    odd["bits"][2] = odd["bits"][2][:, :, :3]  # a conv whose input channels do not chain
    _refused(write_keras(tmp_path / "odd.mat", odd), "not a valid WRN-8")


# --- the real models (skipped where ../shared is absent) ---


@pytest.mark.parametrize("key", list(REAL), ids=[f"{f}-{c}" for f, c in REAL])
def test_real_models_read(key: tuple[str, int]) -> None:
    m = binexport.load(_need(REAL[key]))
    assert (m.arch.name, m.arch.family, m.arch.num_classes) == ("WRN-20-10", *key)
    assert m.param_counts()[0] == (26_737_120 if key[1] == 10 else 26_794_720)
    assert m.binary["conv0"].scale == pytest.approx(np.sqrt(2 / 27))


@pytest.mark.slow  # McDonnell's real WRN-20-10 on 50 images (~12 s loaded); the tiny .mat files cover the reader
def test_real_matlab_cifar10_accuracy_on_50_images() -> None:
    from binexport.data import load_test_set

    path = _need(REAL[("mcdonnell-matlab", 10)])
    root = _need(REALDATA / "cifar10-partial" / "cifar-10-batches-py" / "test_batch").parents[1]
    ds = load_test_set(dataset="CIFAR10", data_root=root)
    logits = _torch(binexport.load(path), ds.images[:50])
    assert int((logits.argmax(1) == ds.labels[:50]).sum()) >= 47  # 96 % on the first 100 (research, table 3b)


@pytest.mark.parametrize("key", list(REAL), ids=[f"{f}-{c}" for f, c in REAL])
def test_own_reader_matches_scipy_on_the_real_files(key: tuple[str, int]) -> None:
    """formats/mat/mat5.py against scipy.io.loadmat (the independent parser) on every variable binexport reads."""
    import scipy.io

    from binexport.formats import mat
    from binexport.formats.mat import mat5
    from binexport.formats.mat.source import Budget

    path = _need(REAL[key])
    data = path.read_bytes()
    f = mat5.MatFile(data, str(path), Budget(str(path), mat.decode_limit(len(data))))
    names = [n for n in f.vars if n in mat._MATLAB_VARS or mat._KERAS_CONV.match(n) or mat._KERAS_BN.match(n)]
    assert len(names) in (8, 41)
    ref = scipy.io.loadmat(path, variable_names=names)
    for n in names:
        ours, theirs = f.load(f.vars[n]), ref[n]
        if theirs.dtype == object:
            theirs = list(theirs.ravel(order="F"))
            assert isinstance(ours, list) and len(ours) == len(theirs), n
        else:
            ours, theirs = [ours], [theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.shape == b.shape and np.array_equal(a, b), n
    assert f.budget.used < 8 * len(data)  # what decode_limit's 16 x leaves room for
