"""The demo runs every capability end to end: on the shipped McDonnell model and CIFAR-10 images by default, and
on a synthetic training checkpoint (here at a small width) with --synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import invoke
from support.refusals import assert_refused

from binexport.runtimes.openvino import available

#: Each ONNX file gets an OpenVINO row after its ONNX Runtime row where the openvino extra is installed.
RUNTIMES = ["onnxruntime", "openvino"] if available() else ["onnxruntime"]


def onnx_rows(names: list[str]) -> list[str]:
    """``names`` with every ``.onnx`` entry once per runtime, as verify and bench list them."""
    return [n for name in names for n in ([name] * len(RUNTIMES) if name.endswith(".onnx") else [name])]


@pytest.mark.slow  # the real WRN-20-10 through every step; the synthetic demo below covers the same flow fast
def test_demo_on_the_shipped_model_and_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINEXPORT_DATA", str(tmp_path / "no-data"))  # the shipped training images calibrate int8
    out = tmp_path / "demo"
    r = invoke("demo", "--out", str(out), "--json", "--limit", "8", "--bench-seconds", "0.2")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["synthetic_checkpoint"] is False and report["checkpoint"].endswith(".mat")
    assert list(report["steps"]) == ["inspect", "pack-bwn", "to-onnx", "to-onnx-int8", "verify", "bench"]
    assert "McDonnell MATLAB variant" == report["steps"]["inspect"]["architecture"]["variant"]
    assert any("192 CIFAR-10 training images shipped" in n and "other 64" in n for n in report["notes"])
    int8 = report["steps"]["to-onnx-int8"]
    assert int8["calibration"]["images"] == 192 and "demo" in int8["calibration"]["source"]
    # judged on the 64 real held-out images (agreement over >= 50 real images), not decided by random near-ties
    v = int8["validation"]
    assert v["rule"] == "real-agreement" and v["heldout_images"] == v["real_images"] == v["agreement_images"] == 64
    assert v["image_kind"] == "real and random" and v["passed"] is True
    assert int8["weight_zero_point"] == 0  # the default: int8 convolutions on ONNX Runtime and OpenVINO alike
    verify = report["steps"]["verify"]
    assert verify["passed"] is True and verify["data"] == "CIFAR10" and verify["num_images"] == 8
    assert [Path(a["path"]).name for a in verify["artifacts"]] == onnx_rows(
        ["model.bwn", "model.onnx", "model-int8.onnx"]
    )
    assert [a["runtime"] for a in verify["artifacts"]] == ["torch", *RUNTIMES, *RUNTIMES]
    assert all(a["agreement"] == 1.0 for a in verify["artifacts"][: 1 + len(RUNTIMES)])  # the exact rows
    assert verify["reference"]["top1_correct"] >= 7  # real weights on real images: 96 % over 500
    bench = report["steps"]["bench"]["rows"]
    assert [r["weights"] for r in bench] == [w for w in ("float32", "1-bit", "int8") for _ in RUNTIMES]
    assert [r["runtime"] for r in bench] == RUNTIMES * 3


def test_demo_calibration_and_validation_images_are_real_disjoint_and_not_the_test_images() -> None:
    """int8 calibrates on the first 192 shipped training images and is validated on the other 64: both real
    (the shipped data_batch_4, a training batch), disjoint from each other and from the test images verify uses."""
    from binexport.calibrate import HELDOUT_IMAGES, split_calibration
    from binexport.data.calibration import load_calibration
    from binexport.data.cifar import load_cifar, read_batch
    from binexport.verbs.demo import (
        DEMO_CALIBRATION,
        DEMO_CALIBRATION_COUNT,
        DEMO_DIR,
        DEMO_HELDOUT_COUNT,
        DEMO_TRAINING_IMAGES,
    )

    train = load_calibration("CIFAR10", DEMO_DIR, limit=DEMO_CALIBRATION_COUNT + HELDOUT_IMAGES)
    assert len(train.labels) == DEMO_TRAINING_IMAGES == 256 and train.images.shape[1:] == (32, 32, 3)
    assert train.origin.endswith("(training split)")
    assert read_batch(DEMO_CALIBRATION)["batch_label"] == "training batch 4 of 5"
    cal, held = split_calibration(train.images, DEMO_CALIBRATION_COUNT)
    assert held is not None and (len(cal), len(held)) == (192, 64) == (DEMO_CALIBRATION_COUNT, DEMO_HELDOUT_COUNT)
    cal_set, held_set = set(map(bytes, cal)), set(map(bytes, held))
    test_set = set(map(bytes, load_cifar("CIFAR10", DEMO_DIR).images))
    assert len(cal_set) == 192 and len(held_set) == 64  # no duplicate image inside either
    assert not cal_set & held_set and not cal_set & test_set and not held_set & test_set
    assert 8 <= len(set(train.labels.tolist())) <= 10  # ten classes, roughly balanced in 256 images


@pytest.mark.slow  # the shipped WRN-20-10 (~1 min loaded); the test below takes the same path on a tiny model
def test_demo_data_root_without_training_batches_leaves_int8_out(tmp_path: Path) -> None:
    r = invoke(
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--json",
        "--limit",
        "4",
        "--bench-seconds",
        "0",
        "--data-root",
        str(tmp_path / "empty"),
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert "to-onnx-int8" not in report["steps"]
    assert any("int8 left out" in n and "--data-root" in n for n in report["notes"])


def test_demo_data_root_without_training_batches_leaves_int8_out_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifacts
) -> None:
    """The same path as above with a tiny model in place of the shipped one: no int8 step, a note saying why."""
    from binexport.verbs import demo

    monkeypatch.setattr(demo, "DEMO_MODEL", artifacts(depth=8, width=0.5)["packed"])
    r = invoke(
        "demo",
        "--out",
        tmp_path / "demo",
        "--json",
        "--limit",
        "4",
        "--bench-seconds",
        "0",
        "--data-root",
        tmp_path / "empty",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert list(report["steps"]) == ["inspect", "pack", "pack-bwn", "to-onnx", "verify"]
    assert any("int8 left out" in n and "--data-root" in n for n in report["notes"])
    assert report["steps"]["verify"]["num_images"] == 4


@pytest.mark.parametrize(
    "bench_seconds",
    [
        "0",  # no closing benchmark: every other step, fast
        pytest.param("0.2", marks=pytest.mark.slow),  # with it: seven bench workers (~20 s loaded)
    ],
)
def test_demo_synthetic_makes_checks_and_verifies_every_artifact(tmp_path: Path, bench_seconds: str) -> None:
    out = tmp_path / "demo"
    r = invoke("demo", "--synthetic", "--out", out, "--width", "0.5", "--json", "--bench-seconds", bench_seconds)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["synthetic_checkpoint"] is True and report["schema_version"] == 1
    steps = ["inspect", "pack", "pack-bwn", "to-onnx", "to-onnx-int8", "verify"]
    assert list(report["steps"]) == steps + (["bench"] if bench_seconds != "0" else [])
    assert report["steps"]["inspect"]["architecture"]["name"] == "WRN-20-0.5"
    assert report["steps"]["inspect"]["binarized_from"] == "log.txt"
    for name in ("model.packed.pth.tar", "model.bwn", "model.onnx", "run/checkpoint.pth.tar", "run/log.txt"):
        assert (out / name).is_file(), name
    verify = report["steps"]["verify"]
    assert verify["passed"] is True
    arts = verify["artifacts"]
    assert [Path(a["path"]).name for a in arts] == onnx_rows(
        ["model.packed.pth.tar", "model.bwn", "model.onnx", "model-int8.onnx"]
    )
    assert all(a["agreement"] == 1.0 for a in arts if a["weights"] != "int8")
    assert [a["weights"] for a in arts] == ["1-bit", "1-bit", *["1-bit"] * len(RUNTIMES), *["int8"] * len(RUNTIMES)]
    if bench_seconds == "0":
        return
    bench = report["steps"]["bench"]
    assert [Path(r["path"]).name for r in bench["rows"]] == onnx_rows(
        ["model-float32.onnx", "model.onnx", "model-int8.onnx", "model.packed.pth.tar"]
    )
    assert [r["weights"] for r in bench["rows"]] == [
        *["float32"] * len(RUNTIMES),
        *["1-bit"] * len(RUNTIMES),
        *["int8"] * len(RUNTIMES),
        "1-bit",
    ]


@pytest.mark.slow  # the real published WRN-20-10 checkpoint through every step
def test_demo_on_the_real_checkpoint_and_samples(realdata: Path, tmp_path: Path) -> None:
    r = invoke(
        "demo",
        "--out",
        str(tmp_path / "d"),
        "--json",
        "--checkpoint",
        str(realdata / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"),
        "--images",
        str(realdata / "cifar100-samples"),
        "--bench-seconds",
        "0",
    )
    assert r.exit_code == 0, r.output
    verify = json.loads(r.stdout)["steps"]["verify"]
    rows = [verify["reference"], *verify["artifacts"]]
    assert [a["top1_correct"] for a in rows] == [16] * (4 + len(RUNTIMES) - 1)


def test_demo_synthetic_and_checkpoint_together_is_refused(tmp_path: Path) -> None:
    r = invoke("demo", "--synthetic", "--checkpoint", str(tmp_path), "--out", str(tmp_path))
    assert_refused(r, match="not both")


def test_demo_full_precision_is_the_shared_mode_option(make_run, tmp_path: Path) -> None:
    """demo --full-precision is every command's --binarized/--full-precision: on --checkpoint it reads the model
    as full precision (whatever its log.txt says) and runs the full-precision steps on it."""
    ckpt = make_run(depth=8, width=1, num_classes=100)  # trained with --binarize, says its log.txt
    args = ["demo", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--limit", "4", "--json"]
    r = invoke(*args, "--full-precision", "--bench-seconds", "0")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert list(report["steps"]) == ["inspect", "pack-bwn", "pack-bwn-float16", "to-onnx", "verify"]
    assert report["steps"]["inspect"]["binarized"] is False and report["steps"]["to-onnx"]["weights"] == "float32"
    assert report["synthetic_checkpoint"] is False and report["checkpoint"] == str(ckpt)
