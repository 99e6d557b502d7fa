"""The demo runs every capability end to end: on the shipped McDonnell model and CIFAR-10 images by default, and
on a synthetic training checkpoint (here at a small width) with --synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from binexport.cli import main
from binexport.runtimes.openvino import available

#: Each ONNX file gets an OpenVINO row after its ONNX Runtime row where the openvino extra is installed.
RUNTIMES = ["onnxruntime", "openvino"] if available() else ["onnxruntime"]


def onnx_rows(names: list[str]) -> list[str]:
    """``names`` with every ``.onnx`` entry once per runtime, as verify and bench list them."""
    return [n for name in names for n in ([name] * len(RUNTIMES) if name.endswith(".onnx") else [name])]


def test_demo_on_the_shipped_model_and_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINEXPORT_DATA", str(tmp_path / "no-data"))  # no training batches: int8 is left out
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--json", "--limit", "8", "--bench-seconds", "0.2"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["synthetic_checkpoint"] is False and report["checkpoint"].endswith(".mat")
    assert list(report["steps"]) == ["inspect", "pack-bwn", "to-onnx", "verify", "bench"]
    assert "McDonnell MATLAB variant" == report["steps"]["inspect"]["architecture"]["variant"]
    assert any("int8 left out" in n and "--data-root" in n for n in report["notes"])
    verify = report["steps"]["verify"]
    assert verify["passed"] is True and verify["data"] == "CIFAR10" and verify["num_images"] == 8
    assert [Path(a["path"]).name for a in verify["artifacts"]] == onnx_rows(["model.bwn", "model.onnx"])
    assert [a["runtime"] for a in verify["artifacts"]] == ["torch", *RUNTIMES]
    assert all(a["agreement"] == 1.0 for a in verify["artifacts"])
    assert verify["reference"]["top1_correct"] >= 7  # real weights on real images: 96 % over 500
    bench = report["steps"]["bench"]["rows"]
    assert [r["weights"] for r in bench] == [w for w in ("float32", "1-bit") for _ in RUNTIMES]
    assert [r["runtime"] for r in bench] == RUNTIMES * 2


def test_demo_synthetic_makes_checks_and_verifies_every_artifact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "--synthetic", "--out", str(out), "--width", "0.5", "--json",
                                  "--bench-seconds", "0.5"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["synthetic_checkpoint"] is True and report["schema_version"] == 1
    assert list(report["steps"]) == ["inspect", "pack", "pack-bwn", "to-onnx", "to-onnx-int8", "verify", "bench"]
    assert report["steps"]["inspect"]["architecture"]["name"] == "WRN-20-0.5"
    assert report["steps"]["inspect"]["binarized_from"] == "log.txt"
    for name in ("model.packed.pth.tar", "model.bwn", "model.onnx", "run/checkpoint.pth.tar", "run/log.txt"):
        assert (out / name).is_file(), name
    verify = report["steps"]["verify"]
    assert verify["passed"] is True
    arts = verify["artifacts"]
    assert [Path(a["path"]).name for a in arts] == onnx_rows(["model.packed.pth.tar", "model.bwn", "model.onnx",
                                                              "model-int8.onnx"])
    assert all(a["agreement"] == 1.0 for a in arts if a["weights"] != "int8")
    assert [a["weights"] for a in arts] == ["1-bit", "1-bit", *["1-bit"] * len(RUNTIMES), *["int8"] * len(RUNTIMES)]
    bench = report["steps"]["bench"]
    assert [Path(r["path"]).name for r in bench["rows"]] == onnx_rows(["model-float32.onnx", "model.onnx",
                                                                       "model-int8.onnx", "model.packed.pth.tar"])
    assert [r["weights"] for r in bench["rows"]] == [*["float32"] * len(RUNTIMES), *["1-bit"] * len(RUNTIMES),
                                                     *["int8"] * len(RUNTIMES), "1-bit"]


def test_demo_on_the_real_checkpoint_and_samples(realdata: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--json", "--checkpoint",
                                  str(realdata / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"),
                                  "--images", str(realdata / "cifar100-samples"), "--bench-seconds", "0"])
    assert r.exit_code == 0, r.output
    verify = json.loads(r.stdout)["steps"]["verify"]
    rows = [verify["reference"], *verify["artifacts"]]
    assert [a["top1_correct"] for a in rows] == [16] * (4 + len(RUNTIMES) - 1)


def test_demo_synthetic_and_checkpoint_together_is_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--synthetic", "--checkpoint", str(tmp_path), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.stderr
