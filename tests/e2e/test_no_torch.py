"""What must not import torch (it takes ~2 s): --help, --version, reading a .bwn, the ONNX runtimes' workers.

One child process walks the paths in that order and reports which heavy modules each step left loaded, so one
interpreter start covers every check (torch, once imported, would hide every later step: the order is fixed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from support.models import tiny_model
from support.paths import pythonpath

from binexport import __version__, formats

CHILD = r"""
import json, sys

HEAVY = ("torch", "onnx", "onnxruntime", "rich", "openvino")
steps = {}


def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)


from binexport.cli import main

for args in (["--help"], ["--version"]):
    try:
        main(args)
    except SystemExit:
        pass
steps["cli"] = loaded()

from binexport.formats import bwn

first = bwn.read(sys.argv[1])
steps["bwn.read"] = loaded()
import binexport

same = first.compare(binexport.load(sys.argv[1])) == []
steps["binexport.load"] = loaded()

import binexport.runtimes as runtimes

rt, info = runtimes.open_runtime(sys.argv[2])
steps["onnxruntime worker"] = loaded()
names = {"onnxruntime worker": [rt.name, info["weights"]]}
if sys.argv[3] == "openvino":
    rt, info = runtimes.open_runtime(sys.argv[2], runtime="openvino")
    steps["openvino worker"] = loaded()
    names["openvino worker"] = [rt.name, info["weights"]]
print("RESULT " + json.dumps({"steps": steps, "same": same, "names": names}))
"""

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    d = tmp_path_factory.mktemp("no-torch")
    model = tiny_model(8, 0.5)
    (d / "m.bwn").write_bytes(formats.get("bwn").write(model))
    (d / "m.onnx").write_bytes(formats.get("onnx").write(model))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(d / "m.bwn"), str(d / "m.onnx"), "openvino" if HAS_OPENVINO else "-"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": pythonpath()},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    line = next(x for x in child.stdout.splitlines() if x.startswith("RESULT "))
    return child.stdout, json.loads(line[len("RESULT ") :])


def test_help_and_version_import_no_heavy_module(walked: tuple[str, dict]) -> None:
    stdout, result = walked
    assert __version__ in stdout and "Usage:" in stdout  # both ran
    assert result["steps"]["cli"] == []  # not torch, onnx, onnxruntime, rich, openvino


def test_reading_a_bwn_does_not_import_torch(walked: tuple[str, dict]) -> None:
    _, result = walked
    assert "torch" not in result["steps"]["bwn.read"] and "torch" not in result["steps"]["binexport.load"]
    assert result["same"]  # the two read paths give the same model


@pytest.mark.parametrize("step", ["onnxruntime worker", "openvino worker"])
def test_an_onnx_worker_does_not_import_torch(walked: tuple[str, dict], step: str) -> None:
    if step == "openvino worker" and not HAS_OPENVINO:
        pytest.skip('OpenVINO is not installed (pip install "binexport[openvino]")')
    _, result = walked
    assert "torch" not in result["steps"][step], result["steps"]
    runtime = step.split()[0]
    assert result["names"][step] == [runtime, "1-bit"]
