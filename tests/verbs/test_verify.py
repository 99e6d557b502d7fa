"""verify: exact accuracy on a known test set, perturbed artifacts fail, devices, downloads, real samples, JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.models import cifar_pickle, tiny_model
from support.paths import CIFAR100_SAMPLES, REAL_PACKED
from support.refusals import assert_refused

from binexport import formats, verify
from binexport.data import cifar as data
from binexport.data import normalize
from binexport.data.synth import write_cifar_testset
from binexport.errors import InputError
from binexport.model import BinaryWeight, Model

N = 300  # images in the synthetic test set: a third right, a third right in top-5 only, a third wrong


@pytest.fixture(scope="module")
def model100() -> Model:
    return tiny_model(depth=8, width=1, num_classes=100, seed=5)


@pytest.fixture(scope="module")
def known(model100: Model) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels chosen from the reference's own logits, so accuracy is known exactly."""
    from binexport.runtimes.torch_ref import reference_logits

    images = np.random.default_rng(7).integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    order = np.argsort(-reference_logits(model100, normalize(images)), axis=1)
    third = N // 3
    labels = np.concatenate([order[:third, 0], order[third : 2 * third, 1], order[2 * third :, -1]])
    return images, labels


@pytest.fixture
def setup(tmp_path: Path, model100: Model, known: tuple[np.ndarray, np.ndarray]) -> dict[str, Path]:
    """A data root in torchvision's layout, the packed reference and a packed file with one layer's signs flipped."""
    images, labels = known
    write_cifar_testset(tmp_path / "data", images, labels)
    ref = tmp_path / "model.packed.pth.tar"
    ref.write_bytes(formats.get("packed").write(model100))
    bad = tmp_path / "flipped.packed.pth.tar"
    binary = dict(model100.binary)
    name = "group2.block0.conv1"
    binary[name] = BinaryWeight(~binary[name].signs)
    bad.write_bytes(formats.get("packed").write(dataclasses.replace(model100, binary=binary)))
    return {"root": tmp_path / "data", "ref": ref, "bad": bad, "tmp": tmp_path}


def onnx_bytes(model: Model, **options: object) -> bytes:
    return formats.get("onnx").write(model, **options)


def test_accuracy_is_exact_on_a_known_test_set(setup: dict[str, Path]) -> None:
    r = verify([setup["ref"]], dataset="CIFAR100", data_root=setup["root"], device="cpu")
    row = r.artifacts[0]
    assert (r.data, r.num_images, r.num_classes, r.device) == ("CIFAR100", N, 100, "cpu")
    assert (row.top1_correct, row.top5_correct) == (N // 3, 2 * N // 3)
    assert row.top1 == pytest.approx(1 / 3) and row.top5 == pytest.approx(2 / 3)
    assert (row.agreement, row.disagreements, row.max_abs_logit_diff) == (1.0, 0, 0.0)
    assert (row.weights, row.runtime, row.provider, row.role) == ("1-bit", "torch", "torch:cpu", "artifact")
    assert r.reference.role == "reference" and r.reference.top1_correct == N // 3
    assert r.passed and r.failures == [] and row.images_per_s > 0
    r.raise_for_failures()  # nothing to raise


def test_limit_batches_and_progress(setup: dict[str, Path]) -> None:
    calls: list[tuple[str, int, int]] = []
    r = verify(
        [setup["ref"]],
        dataset="cifar100",
        data_root=setup["root"],
        device="cpu",
        batch_size=64,
        limit=150,
        progress=lambda label, done, total: calls.append((label, done, total)),
    )
    assert r.num_images == 150 and r.batch_size == 64
    assert r.artifacts[0].top1_correct == 100 and r.artifacts[0].top5_correct == 150
    assert calls == [("model.packed.pth.tar (reference)", d, 150) for d in (64, 128, 150)]


def test_flipped_sign_bits_fail_with_exit_1_and_are_marked(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "report.json"
    res = invoke(
        "verify",
        setup["bad"],
        setup["ref"],
        "--reference",
        setup["ref"],
        "--dataset",
        "CIFAR100",
        "--data-root",
        setup["root"],
        "--json-out",
        out,
    )
    assert_refused(res, code=1)
    assert "FAIL" in res.stdout and "PASS" in res.stdout
    assert "1 of 2 artifacts do not classify like the reference" in res.stderr
    assert "flipped.packed.pth.tar: top-1 agreement" in res.stderr and "max |logit diff|" in res.stderr
    rep = json.loads(out.read_text())
    bad, good = rep["artifacts"]
    assert rep["passed"] is False and len(rep["failures"]) == 2
    assert bad["passed"] is False and bad["disagreements"] > 0 and bad["agreement"] < 1.0
    assert bad["max_abs_logit_diff"] > 1e-4 and bad["tolerance"] == {"max_abs_logit_diff": 1e-4, "min_agreement": 1.0}
    assert good["passed"] is True and good["max_abs_logit_diff"] == 0.0


def test_training_checkpoint_and_each_export_pass(make_run, tmp_path: Path) -> None:
    from binexport import load, pack

    ckpt = make_run(depth=8, width=1, num_classes=10)
    images = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    write_cifar_testset(tmp_path / "d", images, np.arange(64) % 10, dataset="CIFAR10")
    packed = pack(ckpt, tmp_path / "m.packed.pth.tar").output
    model = load(ckpt)
    arts = [packed]
    for name, opts in (("m.onnx", {}), ("m16.onnx", {"weights": "float16"}), ("mu8.onnx", {"normalize_inside": True})):
        (tmp_path / name).write_bytes(onnx_bytes(model, **opts))
        arts.append(tmp_path / name)
    out = tmp_path / "r.json"
    res = invoke(
        "verify",
        *arts,
        "--reference",
        ckpt,
        "--dataset",
        "cifar10",
        "--data-root",
        tmp_path / "d",
        "--batch-size",
        16,
        "--json-out",
        out,
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["reference"]["format"] == "checkpoint" and rep["reference"]["weights"] == "1-bit"
    rows = {Path(a["path"]).name: a for a in rep["artifacts"]}
    assert rows["m.packed.pth.tar"]["runtime"] == "torch" and rows["m.packed.pth.tar"]["max_abs_logit_diff"] == 0.0
    for name, weights, inp in (
        ("m.onnx", "1-bit", "float32-nchw-normalized"),
        ("mu8.onnx", "1-bit", "uint8-nhwc"),
        ("m16.onnx", "float16", "float16-nchw-normalized"),
    ):
        row = rows[name]
        assert (row["runtime"], row["provider"], row["weights"], row["input"]) == (
            "onnxruntime",
            "CPUExecutionProvider",
            weights,
            inp,
        )
        assert row["passed"] and row["agreement"] >= (0.99 if weights == "float16" else 1.0)
    assert rows["m.onnx"]["max_abs_logit_diff"] < 1e-4 < rows["m16.onnx"]["max_abs_logit_diff"]


def test_json_report_schema(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "r.json"
    res = invoke(
        "verify", setup["ref"], "--dataset", "CIFAR100", "--data-root", setup["root"], "--limit", 20, "--json-out", out
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    top = {
        "data": str,
        "data_source": str,
        "num_images": int,
        "num_classes": int,
        "device": str,
        "batch_size": int,
        "reference": dict,
        "artifacts": list,
        "failures": list,
        "version": str,
        "passed": bool,
        "schema_version": int,
        "runtimes": list,
        "precision": str,
        "notes": list,
    }
    assert {k: type(v) for k, v in rep.items()} == top
    row_types = {
        "path": str,
        "role": str,
        "format": str,
        "weights": str,
        "runtime": str,
        "device": str,
        "provider": str,
        "input": str,
        "images": int,
        "top1": float,
        "top5": float,
        "top1_correct": int,
        "top5_correct": int,
        "agreement": float,
        "disagreements": int,
        "max_abs_logit_diff": float,
        "mean_abs_logit_diff": float,
        "images_per_s": float,
        "seconds": float,
        "tolerance": dict,
        "passed": bool,
        "problems": list,
        "notes": list,
        "precision": str,
        "kernels": str,
    }
    for row in [rep["reference"], *rep["artifacts"]]:
        assert {k: type(v) for k, v in row.items()} == row_types
        assert set(row["tolerance"]) == {"max_abs_logit_diff", "min_agreement"}


def test_device_without_cuda(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = invoke("verify", setup["ref"], "--dataset", "CIFAR100", "--data-root", setup["root"], "--device", "cuda")
    assert_refused(res, match=("no CUDA device", "--device cpu"))
    r = verify([setup["ref"]], dataset="CIFAR100", data_root=setup["root"], device="auto", limit=8)
    assert r.device == "cpu" and r.artifacts[0].provider == "torch:cpu"


def test_onnx_falling_back_to_cpu_under_cuda_is_refused(
    setup: dict[str, Path], model100: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu on a machine without CUDA (its provider can't load)")
    onnx_path = setup["tmp"] / "m.onnx"
    onnx_path.write_bytes(onnx_bytes(model100))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as if torch saw a GPU
    with pytest.raises(InputError, match="fell back to CPUExecutionProvider"):
        verify([onnx_path], reference=setup["ref"], dataset="CIFAR100", data_root=setup["root"], device="cuda")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "CIFAR100", "--images", "."], "exactly one of --dataset"),
        ([], "exactly one of --dataset"),
        (["--dataset", "CIFAR10"], "CIFAR10 has 10 classes but the reference"),
        (["--dataset", "CIFAR100", "--reference", "{onnx}"], "not an ONNX file"),
        (["--dataset", "CIFAR100", "--json-out", "/nonexistent-folder/r.json"], "output folder does not exist"),
    ],
)
def test_bad_input_exits_2(setup: dict[str, Path], model100: Model, args: list[str], message: str) -> None:
    onnx_path = setup["tmp"] / "m.onnx"
    if "{onnx}" in args:
        onnx_path.write_bytes(onnx_bytes(model100))
    write_cifar_testset(setup["root"], np.zeros((4, 32, 32, 3), np.uint8), np.arange(4), dataset="CIFAR10")
    args = [str(onnx_path) if a == "{onnx}" else a for a in args]
    res = invoke("verify", setup["ref"], "--data-root", setup["root"], *args)
    assert_refused(res, match=message)


def test_onnx_only_needs_a_reference(setup: dict[str, Path], model100: Model) -> None:
    onnx_path = setup["tmp"] / "m.onnx"
    onnx_path.write_bytes(onnx_bytes(model100))
    res = invoke("verify", onnx_path, "--dataset", "CIFAR100", "--data-root", setup["root"])
    assert_refused(res, match="pass --reference CKPT")
    other = setup["tmp"] / "other.packed.pth.tar"
    other.write_bytes(formats.get("packed").write(tiny_model(depth=14, width=1, num_classes=100)))
    res = invoke("verify", onnx_path, other, "--dataset", "CIFAR100", "--data-root", setup["root"])
    assert_refused(res, match=("export of WRN-8-1 with 100 classes", "WRN-14-1"))


def test_refuses_images_that_are_not_32x32(setup: dict[str, Path]) -> None:
    folder = setup["tmp"] / "imgs"
    folder.mkdir()
    raw = zlib.compress(b"".join(b"\x00" + bytes(16 * 3) for _ in range(16)))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )
    (folder / "small_3.png").write_bytes(png)
    res = invoke("verify", setup["ref"], "--images", folder)
    assert_refused(res, match="expected 32x32")


def test_download_through_the_cli(
    server,
    setup: dict[str, Path],
    known,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    url, www = server
    images, labels = known
    (www / "kriz").mkdir()
    archive = www / "kriz" / "cifar-100-python.tar.gz"
    payload = cifar_pickle(images, [int(v) for v in labels])
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/test")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setenv("BINEXPORT_DATA_URL", url)
    monkeypatch.setenv("BINEXPORT_DATA", str(setup["tmp"] / "cache"))
    res = invoke("verify", setup["ref"], "--dataset", "CIFAR100", "--download")  # official md5: refused
    assert_refused(res, match="does not match the published")
    assert list((setup["tmp"] / "cache").rglob("*")) == []
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(data.DATASETS, "CIFAR100", dataclasses.replace(data.DATASETS["CIFAR100"], md5=md5))
    out = setup["tmp"] / "r.json"
    res = invoke("verify", setup["ref"], "--dataset", "CIFAR100", "--download", "--json-out", out)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["artifacts"][0]["top1_correct"] == N // 3
    assert (setup["tmp"] / "cache" / "cifar-100-python" / "test").is_file()


@pytest.mark.slow  # the real WRN-20-10 and its exports (~30 s loaded); the known test set above covers verify exactly
def test_real_checkpoint_and_its_exports_on_the_20_real_samples(real_packed: Path, tmp_path: Path) -> None:
    """The published checkpoint classifies 16 of the 20 real CIFAR-100 samples; so must every export of it."""
    from binexport import load

    model = load(REAL_PACKED)
    arts: list[Path] = [real_packed]
    for name, opts in (("real.onnx", {}), ("real16.onnx", {"weights": "float16"})):
        (tmp_path / name).write_bytes(onnx_bytes(model, **opts))
        arts.append(tmp_path / name)
    (tmp_path / "real.bwn").write_bytes(formats.get("bwn").write(model))
    arts.append(tmp_path / "real.bwn")
    r = verify(arts, images=CIFAR100_SAMPLES, device="cpu", batch_size=20)
    assert r.reference.path == str(real_packed) and r.num_images == 20
    for row in r.artifacts:
        assert row.top1_correct == 16, row.path
        assert row.agreement == 1.0 and row.passed, row.problems
