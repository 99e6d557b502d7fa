"""pytorchcv's WRN-1bit state_dicts (family ``pytorchcv``): read, run, and carried through .bwn and every ONNX mode.

The oracle is pytorchcv's own ``CIFARWRN1bit`` (``pip install --no-deps pytorchcv==0.0.74``), built small, with
random latent weights and random BN statistics, saved as a state_dict the way pytorchcv stores its downloads.
Its inputs are normalised here with the constants written out (imgclsmob's CIFAR10MetaInfo mean_rgb/std_rgb),
so binexport's copy of them is checked too. No real pytorchcv weights are available here (no internet).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.refusals import assert_refused

import binexport
from binexport.check import TOLERANCES, compare
from binexport.data import normalize
from binexport.data.synth import write_cifar_testset
from binexport.errors import InputError
from binexport.formats import pytorchcv
from binexport.runtimes import select_input

wrn1bit = pytest.importorskip(
    "pytorchcv.models.wrn1bit_cifar", reason="pytorchcv is absent: pip install --no-deps pytorchcv==0.0.74"
)
import torch  # noqa: E402 (after the skip: pytorchcv needs torch, so without pytorchcv it may be absent)

from binexport.runtimes.torch_ref import TorchRuntime  # noqa: E402 (imports torch: after the skip, as above)

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
PIXELS = np.random.default_rng(5).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
MODES = {"1bit": True, "32bit": False}


def _net(binarized: bool, seed: int = 0, classes: int = 10) -> torch.nn.Module:
    """pytorchcv's CIFARWRN1bit as WRN-14 with widths 8/16/32, random latent weights and BN statistics."""
    torch.manual_seed(seed)
    net = wrn1bit.CIFARWRN1bit([[8, 8], [16, 16], [32, 32]], 8, binarized=binarized, num_classes=classes)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in net.named_parameters():
            if ".bn." in name:
                p.normal_(0, 1)
    return net.eval()


def _oracle(net: torch.nn.Module, pixels: np.ndarray = PIXELS) -> np.ndarray:
    x = (pixels.astype(np.float32) / 255 - MEAN) / STD
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


@pytest.fixture(scope="module", params=list(MODES))
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, torch.nn.Module, Path]:
    net = _net(MODES[request.param])
    path = tmp_path_factory.mktemp("ptcv") / f"wrn14_1_{request.param}_cifar10-0000-00000000.pth"
    torch.save(net.state_dict(), path)
    return request.param, net, path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(3)
    write_cifar_testset(
        d, rng.integers(0, 256, (160, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 160), "CIFAR10", split="train"
    )
    write_cifar_testset(d, PIXELS, rng.integers(0, 10, len(PIXELS)), "CIFAR10")
    return d


def _flag(mode: str) -> str:
    return "--binarized" if MODES[mode] else "--full-precision"


def test_the_state_dict_reads_as_the_pytorchcv_family(saved: tuple[str, torch.nn.Module, Path]) -> None:
    mode, net, path = saved
    m = binexport.load(path, binarized=MODES[mode])
    assert (m.arch.name, m.arch.family, m.source.format, m.source.layout) == (
        "WRN-14-0.5",
        "pytorchcv",
        "pytorchcv",
        "pytorchcv-state-dict",
    )
    assert m.arch.first_conv_binary and m.arch.head == "binary-affine" and not m.arch.input_bn
    assert m.arch.pool_count_include_pad and m.binarized is MODES[mode]
    sd = net.state_dict()
    assert np.array_equal(m.floats["bn_last.weight"], sd["output.final_conv.bn.weight"].numpy())
    assert np.array_equal(
        m.floats["group1.block0.bn0.running_var"], sd["features.stage2.unit1.body.conv1.bn.running_var"].numpy()
    )
    if MODES[mode]:  # every conv, stem and head included, is sign bits (1 = +1)
        assert set(m.binary) == {k for k, kind in m.arch.kinds.items() if kind == "binary"} >= {"conv0", "conv_last"}
        assert np.array_equal(m.binary["conv_last"].signs, sd["output.final_conv.conv.weight"].numpy() >= 0)
        assert np.array_equal(
            m.binary["group2.block1.conv1"].signs, sd["features.stage3.unit2.body.conv2.conv.weight"].numpy() >= 0
        )
    else:
        assert not m.binary and np.array_equal(m.floats["conv0"], sd["features.init_block.weight"].numpy())


def test_torch_reference_matches_pytorchcv(saved: tuple[str, torch.nn.Module, Path]) -> None:
    mode, net, path = saved
    rt = TorchRuntime(binexport.load(path, binarized=MODES[mode]))
    assert rt.input_kind == "float32-nchw-normalized-pytorchcv"
    want = _oracle(net)
    got = rt.logits(select_input(rt.input_kind, PIXELS, np.empty(0)))
    assert np.abs(got - want).max() <= TOLERANCES["float32"].max_abs_logit_diff
    # the normalisation is visible: the SPEC's CIFAR one gives other logits
    other = TorchRuntime(binexport.load(path, binarized=MODES[mode])).logits(normalize(PIXELS))
    assert np.abs(other - want).max() > 1e-3


def test_wrong_mode_changes_the_logits(saved: tuple[str, torch.nn.Module, Path]) -> None:
    """Why the flag is required: the other forward of the same file gives other outputs."""
    mode, net, path = saved
    rt = TorchRuntime(binexport.load(path, binarized=not MODES[mode]))
    got = rt.logits(select_input(rt.input_kind, PIXELS, np.empty(0)))
    assert np.abs(got - _oracle(net)).max() > 1e-2


def test_bwn_round_trips_bit_for_bit_and_flags_the_variant(
    saved: tuple[str, torch.nn.Module, Path], tmp_path: Path
) -> None:
    mode, net, path = saved
    r = binexport.pack(path, tmp_path / "m.bwn", format="bwn", binarized=MODES[mode])
    back = binexport.load(r.output)
    binexport.load(path, binarized=MODES[mode]).check_equal(back, "the .bwn")
    assert back.arch.family == "pytorchcv" and back.binarized is MODES[mode]
    raw = Path(r.output).read_bytes()
    assert int.from_bytes(raw[12:16], "little") == 1  # flags bit 0: an architecture variant
    meta = json.loads(raw[32 : 32 + int.from_bytes(raw[16:24], "little")])["metadata"]
    assert meta["variant"] == {
        "family": "pytorchcv",
        "input_bn": False,
        "input_relu": False,
        "first_conv_binary": True,
        "head": "binary-affine",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": True,
        "bn_eps": 1e-05,
    }
    assert meta["normalization"] == {
        "input": "pixel / 255",
        "mean": MEAN.astype(float).round(4).tolist(),
        "std": STD.astype(float).round(4).tolist(),
    }
    rt = TorchRuntime(back)
    got = rt.logits(select_input(rt.input_kind, PIXELS, np.empty(0)))
    assert np.abs(got - _oracle(net)).max() <= TOLERANCES["1-bit" if MODES[mode] else "float32"].max_abs_logit_diff
    import support.bwn_spec_reader as bwn_spec_reader  # the independent reader of docs/FORMAT.md

    assert bwn_spec_reader.model(raw) == {
        "family": "pytorchcv",
        "depth": 14,
        "widths": [8, 16, 32],
        "num_classes": 10,
        "binarized": MODES[mode],
    }


@pytest.mark.parametrize(
    "weights,inside", [("1-bit", False), ("1-bit", True), ("float32", False), ("float32", True), ("float16", False)]
)
def test_onnx_matches_pytorchcv(
    saved: tuple[str, torch.nn.Module, Path], tmp_path: Path, weights: str, inside: bool
) -> None:
    import onnxruntime as ort

    mode, net, path = saved
    if weights == "1-bit" and not MODES[mode]:
        pytest.skip("a full-precision model has no 1-bit export (refused: test_full_precision_refuses_1bit_onnx)")
    out = tmp_path / "m.onnx"
    r = binexport.export_onnx(path, out, weights=weights, normalize_inside=inside, binarized=MODES[mode])
    kind = "uint8-nhwc" if inside else f"{'float16' if weights == 'float16' else 'float32'}-nchw-normalized-pytorchcv"
    assert r.input_kind == kind
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["binexport.family"] == "pytorchcv" and meta["binexport.input"] == kind
    assert json.loads(meta["binexport.normalization"])["mean"] == pytest.approx(MEAN.tolist())
    if inside:
        x = PIXELS
    else:
        x = ((PIXELS.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, np.float16 if weights == "float16" else np.float32)
    got = sess.run(None, {"input": x})[0].astype(np.float32)
    c = compare(got, _oracle(net), weights)
    assert c.passed, c.problems


def test_full_precision_refuses_1bit_onnx(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(_net(False).state_dict(), path)
    r = invoke("to-onnx", str(path), "--full-precision", "--weights", "1-bit", "-o", str(tmp_path / "m.onnx"))
    assert_refused(r, match="full-precision model")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_1bit_keeps_stem_and_head_at_one_bit(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "m.pth"
    torch.save(_net(True).state_dict(), path)
    binexport.export_onnx(path, tmp_path / "m.onnx", weights="1-bit", binarized=True)
    inits = {i.name: i for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    assert inits["conv0"].data_type == onnx.TensorProto.UINT8 and inits["conv_last"].data_type == onnx.TensorProto.UINT8


def test_onnx_int8_within_the_int8_tolerance(
    saved: tuple[str, torch.nn.Module, Path], cifar: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    mode, net, path = saved
    out = tmp_path / "m-int8.onnx"
    r = binexport.export_onnx(
        path, out, weights="int8", calibrate="CIFAR10", data_root=cifar, calibration_size=96, binarized=MODES[mode]
    )
    assert r.input_kind == "float32-nchw-normalized-pytorchcv"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(((PIXELS.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2))
    got = sess.run(None, {"input": x})[0]
    c = compare(got, _oracle(net), "int8")
    assert c.passed, c.problems


def test_verify_runs_every_artifact_on_pytorchcv_normalisation(
    saved: tuple[str, torch.nn.Module, Path], cifar: Path, tmp_path: Path
) -> None:
    mode, _, path = saved
    flag = MODES[mode]
    bwn_path = binexport.pack(path, tmp_path / "m.bwn", format="bwn", binarized=flag).output
    onnx_path = binexport.export_onnx(path, tmp_path / "m.onnx", binarized=flag).output
    u8 = binexport.export_onnx(path, tmp_path / "u8.onnx", normalize_inside=True, binarized=flag).output
    r = binexport.verify(
        [path, bwn_path, onnx_path, u8], dataset="CIFAR10", data_root=cifar, binarized=flag, device="cpu"
    )
    assert r.passed, [a.to_dict() for a in r.artifacts]
    kinds = {Path(a.path).name: a.input for a in r.artifacts}
    assert kinds[path.name] == kinds["m.bwn"] == kinds["m.onnx"] == "float32-nchw-normalized-pytorchcv"
    assert kinds["u8.onnx"] == "uint8-nhwc"


@pytest.mark.slow  # two bench workers (~13 s loaded); the files are a .bwn and an ONNX like any other, and tests/verbs/test_bench.py covers bench
def test_bench_runs_the_exports(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(_net(True).state_dict(), path)
    a = binexport.pack(path, tmp_path / "m.bwn", format="bwn", binarized=True).output
    b = binexport.export_onnx(path, tmp_path / "m.onnx", binarized=True).output
    r = binexport.bench([a, b], batch_size=4, seconds=0.5, device="cpu")
    assert [row.format for row in r.rows] == ["bwn", "onnx"]


def test_inspect_names_the_family_and_sizes(saved: tuple[str, torch.nn.Module, Path]) -> None:
    mode, _, path = saved
    rep = binexport.inspect(path, binarized=MODES[mode])
    assert rep.format == "pytorchcv" and rep.architecture["family"] == "pytorchcv"
    assert rep.architecture["variant"] == "pytorchcv WRN-1bit variant"
    assert isinstance(rep.output_sizes["bwn"], int) and rep.output_sizes["bwn"] < rep.file_bytes
    assert str(rep.output_sizes["packed"]).startswith("n/a")
    r = invoke("inspect", str(path), _flag(mode))
    assert r.exit_code == 0 and "pytorchcv" in r.stdout, r.output


def test_inspect_without_the_flag_shows_the_mode_as_unknown(saved: tuple[str, torch.nn.Module, Path]) -> None:
    _, _, path = saved
    rep = binexport.inspect(path)
    assert rep.binarized is None and rep.architecture["family"] == "pytorchcv"
    assert "--binarized" in str(rep.architecture["mode"]) and "log.txt" not in str(rep.architecture["mode"])


def test_pack_packed_refuses_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(_net(True).state_dict(), path)
    r = invoke("pack", str(path), "--binarized", "--format", "packed", "-o", str(tmp_path / "o.packed.pth.tar"))
    assert_refused(r)
    assert "pytorchcv WRN-1bit variant" in r.stderr and "--format bwn" in r.stderr
    assert "input BN" not in r.stderr and not (tmp_path / "o.packed.pth.tar").exists()


@pytest.mark.parametrize("verb", ["inspect", "pack", "to-onnx", "verify"])
def test_missing_mode_flag_is_refused_with_how_to_tell(tmp_path: Path, cifar: Path, verb: str) -> None:
    path = tmp_path / "m.pth"
    torch.save(_net(True).state_dict(), path)
    (tmp_path / "log.txt").write_text('{"binarize": true}\n')  # a log beside it is not pytorchcv's: not read
    args = {
        "inspect": ["inspect", str(path), "--json"],
        "pack": ["pack", str(path), "--format", "bwn"],
        "to-onnx": ["to-onnx", str(path)],
        "verify": ["verify", str(path), "--dataset", "CIFAR10", "--data-root", str(cifar)],
    }[verb]
    r = invoke(*args)
    if verb == "inspect":  # inspect shows what it can, with the mode unknown
        assert r.exit_code == 0 and json.loads(r.stdout)["binarized"] is None, r.output
        return
    assert_refused(r)
    assert "--binarized" in r.stderr and "wrn20_10_32bit_" in r.stderr and "--full-precision" in r.stderr


def _hostile(tmp_path: Path, edit) -> Path:
    sd = _net(True).state_dict()
    edit(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize(
    "edit,msg",
    [
        (
            lambda sd: sd.pop("features.stage2.unit1.body.conv1.bn.running_var"),
            "missing tensor 'features.stage2.unit1.body.conv1.bn.running_var'",
        ),
        (
            lambda sd: sd.__setitem__("output.final_conv.conv.weight", torch.zeros(10, 16, 1, 1)),
            "output.final_conv.conv.weight",
        ),
        (
            lambda sd: sd.__setitem__("features.stage1.unit1.body.conv2.conv.weight", torch.zeros(8, 8, 1, 1)),
            "'features.stage1.unit1.body.conv2.conv.weight' has shape (8, 8, 1, 1)",
        ),
        (lambda sd: sd.__setitem__("output.weight", torch.zeros(10, 32)), "unexpected key(s) 'output.weight'"),
        (
            lambda sd: sd.__setitem__("features.stage0.unit1.body.conv1.conv.weight", torch.zeros(8, 8, 3, 3)),
            "'features.stage0.unit1",
        ),
        (
            lambda sd: sd.__setitem__("features.stage1.unit1.body.conv1.bn.weight", torch.ones(8)),
            "unexpected tensor 'features.stage1.unit1.body.conv1.bn.weight'",
        ),
    ],
)
def test_hostile_state_dicts_are_refused_in_one_line(tmp_path: Path, edit, msg: str) -> None:
    path = _hostile(tmp_path, edit)
    with pytest.raises(InputError, match="pytorchcv") as e:
        binexport.load(path, binarized=True)
    assert msg in str(e.value)
    r = invoke("inspect", str(path), "--binarized")
    assert_refused(r, match=msg)


def test_key_names_map_both_ways() -> None:
    for key in _net(True).state_dict():
        name = pytorchcv.canonical_name(key)
        assert name is not None and pytorchcv.pytorchcv_key(name) == key
    assert pytorchcv.canonical_name("features.stage0.unit1.body.conv1.conv.weight") is None


def test_full_size_state_dict_matches_the_issue(tmp_path: Path) -> None:
    """pytorchcv's own wrn20_10_1bit_cifar100 (random weights, not saved): 82 keys, every one mapped, WRN-20-10."""
    keys = {k: tuple(v.shape) for k, v in wrn1bit.wrn20_10_1bit_cifar100().state_dict().items()}
    assert len(keys) == 82
    from binexport.arch import Arch

    arch = Arch.infer({pytorchcv.canonical_name(k): s for k, s in keys.items()}, "pytorchcv")  # type: ignore[misc]
    assert (arch.name, arch.num_classes, arch.widths) == ("WRN-20-10", 100, (160, 320, 640))


def _zip(path: Path, members: dict[str, bytes], method: int = 8) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize("method", [0, 8])  # stored, deflated
def test_the_zip_pytorchcv_publishes_reads_as_the_pth_inside(tmp_path: Path, method: int) -> None:
    pth = tmp_path / "wrn20_10_1bit_cifar10-0326-e6140f8a.pth"
    net = _net(True)
    torch.save(net.state_dict(), pth)
    z = _zip(tmp_path / (pth.name + ".zip"), {pth.name: pth.read_bytes()}, method)
    m = binexport.load(z, binarized=True)
    binexport.load(pth, binarized=True).check_equal(m, "the zipped state_dict")
    assert m.source.format == "pytorchcv" and m.source.size == z.stat().st_size
    r = invoke("to-onnx", str(z), "--binarized", "-o", str(tmp_path / "m.onnx"))
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "members,method,msg",
    [
        ({"w.pth": bytes(32 * 2**20)}, 8, "at most"),  # a zip bomb: 32 MiB of zeros deflate to ~32 KB
        ({"w.pth": b"not a torch file at all"}, 8, "not a readable PyTorch checkpoint"),
        ({"a.pth": b"x", "b.pth": b"y"}, 8, "compressed"),  # two members: not a wrapper, and not torch.save's zip
        ({"w.pth": b"x" * 100}, 12, "method 12"),  # bzip2
    ],
)
def test_hostile_zips_are_refused_in_one_line(tmp_path: Path, members: dict[str, bytes], method: int, msg: str) -> None:
    try:
        z = _zip(tmp_path / "w.pth.zip", members, method)
    except RuntimeError:
        pytest.skip("this Python's zipfile can't write that compression method")
    r = invoke("inspect", str(z), "--binarized")
    assert_refused(r, match=msg)


def test_a_zip_whose_member_lies_about_its_crc_is_refused(tmp_path: Path) -> None:
    pth = tmp_path / "w.pth"
    torch.save(_net(True).state_dict(), pth)
    raw = bytearray(_zip(tmp_path / "w.pth.zip", {pth.name: pth.read_bytes()}, 0).read_bytes())
    raw[200] ^= 0xFF  # one byte of the stored member
    (tmp_path / "bad.pth.zip").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="can't be extracted"):
        binexport.load(tmp_path / "bad.pth.zip", binarized=True)


def test_real_cifar10_images_run_through_every_artifact(tmp_path: Path) -> None:
    """Real CIFAR-10 PNGs (../shared/realdata) through .pth, .bwn and ONNX, against pytorchcv's module on them."""
    from support.paths import CIFAR10_SAMPLES

    if not CIFAR10_SAMPLES.is_dir():
        pytest.skip(f"real material absent: {CIFAR10_SAMPLES} (it lives in ../shared/realdata beside the checkout)")
    from binexport.data.png import load_labelled_folder

    net = _net(True, seed=1)
    path = tmp_path / "m.pth"
    torch.save(net.state_dict(), path)
    bwn_path = binexport.pack(path, tmp_path / "m.bwn", format="bwn", binarized=True).output
    onnx_path = binexport.export_onnx(path, tmp_path / "m.onnx", binarized=True).output
    r = binexport.verify([path, bwn_path, onnx_path], images=CIFAR10_SAMPLES, binarized=True, device="cpu")
    assert r.passed and r.artifacts, [a.to_dict() for a in r.artifacts]
    pixels, _, _ = load_labelled_folder(CIFAR10_SAMPLES)
    rt = TorchRuntime(binexport.load(bwn_path))
    got = rt.logits(select_input(rt.input_kind, pixels, np.empty(0)))
    assert np.abs(got - _oracle(net, pixels)).max() <= TOLERANCES["1-bit"].max_abs_logit_diff


def test_the_registry_reader_reads_pytorchcv_only(tmp_path: Path) -> None:
    from support.models import tiny_model

    from binexport import formats

    path = tmp_path / "m.pth"
    torch.save(_net(False).state_dict(), path)
    m = formats.get("pytorchcv").read(path, binarized=False)
    assert m.arch.family == "pytorchcv" and not m.binarized
    port = tmp_path / "port.pth"
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in tiny_model(binarized=False).floats.items()}, port)
    with pytest.raises(InputError, match="expected one of pytorchcv's"):
        formats.get("pytorchcv").read(port, binarized=False)
