"""cli/options.py: every option written once, its choices and bounds the library's, and one --json everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from support.cli import invoke

from binexport import calibrate as calibrate_mod
from binexport.cli import main
from binexport.cli import options as opt
from binexport.data import DATASET_NAMES
from binexport.data.calibration import SOURCES
from binexport.data.labels import BUILTIN_LABELS
from binexport.data.synth import write_cifar_testset
from binexport.errors import InputError
from binexport.formats import PACK_FORMATS
from binexport.formats.bwn import WEIGHTS_CHOICES
from binexport.formats.onnx import DEFAULT_OPSET, MIN_OPSET, WEIGHT_ALIASES, WEIGHTS, WEIGHTS_OPSET
from binexport.formats.onnx.int8 import WEIGHT_ZERO_POINTS
from binexport.report import SCHEMA_VERSION
from binexport.runtimes import (
    COMPUTE_PRECISIONS,
    DEFAULT_RUNTIME,
    DEVICES,
    MAX_BATCH_SIZE,
    RUNTIME_ALIASES,
    RUNTIME_CHOICES,
    RUNTIMES,
)
from binexport.verbs import bench as bench_verb
from binexport.verbs import verify as verify_verb


def _params(command: str) -> dict[str, click.Parameter]:
    return {str(p.name): p for p in main.commands[command].params}


def _choices(p: click.Parameter) -> tuple[str, ...]:
    assert isinstance(p.type, click.Choice), p.type
    return tuple(p.type.choices)


def test_choices_come_from_the_library() -> None:
    for command in ("verify", "bench"):
        ps = _params(command)
        assert _choices(ps["device"]) == DEVICES and ps["device"].default == DEVICES[0]
        assert _choices(ps["runtime"]) == RUNTIME_CHOICES and ps["runtime"].default == (DEFAULT_RUNTIME,)
        assert _choices(ps["precision"]) == COMPUTE_PRECISIONS and ps["precision"].default == COMPUTE_PRECISIONS[0]
    assert _choices(_params("verify")["dataset"]) == DATASET_NAMES
    one = _params("predict")["runtime"]
    assert _choices(one) == (*RUNTIMES, *RUNTIME_ALIASES) and one.default == DEFAULT_RUNTIME
    for command in ("predict", "bundle"):
        assert _params(command)["labels"].metavar == "|".join([*BUILTIN_LABELS, "FILE"])
    assert _choices(_params("pack")["weights"]) == WEIGHTS_CHOICES
    assert _choices(_params("to-onnx")["weights"]) == (*WEIGHTS, *WEIGHT_ALIASES)
    assert _choices(_params("to-onnx")["weight_zero_point"]) == tuple(str(z) for z in WEIGHT_ZERO_POINTS)
    pack = _params("pack")["fmt"]
    assert pack.default == PACK_FORMATS[0] and pack.metavar == "|".join(PACK_FORMATS)
    for command in ("to-onnx", "demo", "bundle"):
        assert _params(command)["calibrate"].metavar == "|".join([*SOURCES, "PATH"])


def test_bounds_and_defaults_come_from_the_library() -> None:
    for command, default in (("verify", verify_verb.DEFAULT_BATCH_SIZE), ("bench", bench_verb.DEFAULT_BATCH_SIZE)):
        p = _params(command)["batch_size"]
        assert isinstance(p.type, click.IntRange)
        assert (p.type.min, p.type.max, p.default) == (1, MAX_BATCH_SIZE, default)
    ps = _params("to-onnx")
    size = ps["calibration_size"]
    assert isinstance(size.type, click.IntRange)
    assert (size.type.max, size.default) == (calibrate_mod.MAX_CALIBRATION_SIZE, calibrate_mod.CALIBRATION_SIZE)
    assert ps["percentile"].default == calibrate_mod.PERCENTILE
    opset = str(ps["opset"].help)  # None: the writer picks DEFAULT_OPSET, or WEIGHTS_OPSET's for the weights
    assert ps["opset"].default is None and f"{MIN_OPSET} or newer" in opset and f"default: {DEFAULT_OPSET};" in opset
    assert f"{WEIGHTS_OPSET['int2']} for int2" in opset
    assert _params("bench")["seconds"].default == bench_verb.DEFAULT_SECONDS


@pytest.mark.parametrize("name", ["device", "runtime", "precision", "binarized", "force", "dataset", "json_out"])
def test_a_shared_option_is_the_same_on_every_command(name: str) -> None:
    """Written once: the same flags, help, type and default wherever a command takes it."""
    seen = [ps[name] for c in main.commands if name in (ps := _params(c))]
    if name == "runtime":  # predict runs one file on one runtime: opt.one_runtime, checked below
        seen = [p for p in seen if getattr(p, "multiple", False)]
    assert len(seen) >= 1
    first = seen[0]
    for p in seen[1:]:
        assert (p.opts, p.secondary_opts, p.help, repr(p.type), p.default) == (  # type: ignore[attr-defined]
            first.opts,
            first.secondary_opts,
            first.help,  # type: ignore[attr-defined]
            repr(first.type),
            first.default,
        )


def test_every_command_takes_json_and_json_out() -> None:
    for name, command in main.commands.items():
        opts = {o for p in command.params for o in p.opts}
        assert {"--json", "--json-out"} <= opts, name
    demo = _params("demo")["binarized"]
    assert demo.opts == ["--binarized"] and demo.secondary_opts == ["--full-precision"]  # the shared option


def test_json_outputs_old_spelling_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert opt.json_outputs(None, None) == (False, None)
    assert opt.json_outputs(opt.JSON_STDOUT, tmp_path / "a.json") == (True, tmp_path / "a.json")
    assert capsys.readouterr().err == ""
    assert opt.json_outputs(str(tmp_path / "r.json"), None) == (False, tmp_path / "r.json")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("binexport: warning: ") and "--json-out" in err
    (tmp_path / "m.onnx").write_bytes(b"model")
    with pytest.raises(InputError, match="not .json"):  # 'verify --json m.onnx' must not overwrite the model
        opt.json_outputs(str(tmp_path / "m.onnx"), None)
    with pytest.raises(InputError, match="the path is empty"):
        opt.json_outputs("", None)
    with pytest.raises(InputError, match="give --json-out only"):
        opt.json_outputs(str(tmp_path / "r.json"), tmp_path / "s.json")
    assert (tmp_path / "m.onnx").read_bytes() == b"model"


@pytest.fixture
def verify_kit(make_run, tmp_path: Path) -> dict[str, Path]:
    ckpt = make_run(depth=8, width=1, num_classes=10)
    rng = np.random.default_rng(0)
    write_cifar_testset(tmp_path / "d", rng.integers(0, 256, (8, 32, 32, 3), np.uint8), np.arange(8), dataset="CIFAR10")
    return {"ckpt": ckpt, "root": tmp_path / "d", "tmp": tmp_path}


def test_verify_old_json_path_still_writes_with_one_notice(verify_kit: dict[str, Path]) -> None:
    k = verify_kit
    out = k["tmp"] / "old.json"
    r = invoke("verify", k["ckpt"], "--dataset", "CIFAR10", "--data-root", k["root"], "--json", out)
    assert r.exit_code == 0, r.output
    assert r.stderr.count("\n") == 1 and "deprecated" in r.stderr and f"--json-out {out}" in r.stderr
    assert json.loads(out.read_text())["schema_version"] == SCHEMA_VERSION
    assert "agree" in r.stdout  # the old spelling still shows the table


def test_json_is_the_same_on_every_command(verify_kit: dict[str, Path]) -> None:
    """--json prints one JSON object with the one schema version; --json-out writes the very same text."""
    k, t = verify_kit, verify_kit["tmp"]
    runs = {
        "inspect": ["inspect", k["ckpt"]],
        "pack": ["pack", k["ckpt"], "-o", t / "m.packed.pth.tar"],
        "to-onnx": ["to-onnx", k["ckpt"], "-o", t / "m.onnx"],
        "verify": ["verify", k["ckpt"], "--dataset", "CIFAR10", "--data-root", k["root"]],
    }
    for name, args in runs.items():
        out = t / f"{name}.json"
        r = invoke(*args, "--json", "--json-out", out)
        assert r.exit_code == 0, (name, r.output)
        assert r.stderr == "", (name, r.stderr)
        data = json.loads(r.stdout)
        assert isinstance(data, dict) and data["schema_version"] == SCHEMA_VERSION, name
        assert r.stdout == out.read_text(), name  # one text: what --json prints is what --json-out writes
        assert r.stdout.startswith("{\n  ") and r.stdout.endswith("}\n"), name
