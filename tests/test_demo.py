"""The demo runs every capability end to end on its built-in default, here at a small width."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from binexport.cli import main


def test_demo_makes_checks_and_verifies_every_artifact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--width", "0.5", "--json", "--bench-seconds", "0.5"])
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
    assert [a["agreement"] for a in verify["artifacts"]][:3] == [1.0, 1.0, 1.0]
    assert [a["weights"] for a in verify["artifacts"]] == ["1-bit", "1-bit", "1-bit", "int8"]
    bench = report["steps"]["bench"]
    assert [Path(r["path"]).name for r in bench["rows"]] == ["model-float32.onnx", "model.onnx", "model-int8.onnx",
                                                           "model.packed.pth.tar"]
    assert [r["weights"] for r in bench["rows"]] == ["float32", "1-bit", "int8", "1-bit"]


def test_demo_on_the_real_checkpoint_and_samples(realdata: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--json", "--checkpoint",
                                  str(realdata / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"),
                                  "--images", str(realdata / "cifar100-samples"), "--bench-seconds", "0"])
    assert r.exit_code == 0, r.output
    verify = json.loads(r.stdout)["steps"]["verify"]
    assert [a["top1_correct"] for a in [verify["reference"], *verify["artifacts"]]] == [16, 16, 16, 16]
