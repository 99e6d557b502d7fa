"""bench: each artifact in its own process, interleaved timing, a JSON report (no timings are asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_model

from binexport import bench, formats
from binexport.cli import main
from binexport.errors import InputError


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("bench")
    model = tiny_model(depth=8, width=0.5)
    packed, onnx = d / "m.packed.pth.tar", d / "m.onnx"
    packed.write_bytes(formats.get("packed").write(model))
    onnx.write_bytes(formats.get("onnx").write(model))
    return [packed, onnx]


def test_cli_bench_two_artifacts_writes_valid_json(two: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        main, ["bench", *map(str, two), "--seconds", "0.5", "--batch-size", "4", "--threads", "1", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["schema_version"] == 1 and rep["batch_size"] == 4 and rep["threads"] == 1
    a, b = rep["rows"]
    assert (a["format"], a["weights"], a["runtime"]) == ("packed", "1-bit", "torch")
    assert (b["format"], b["weights"], b["runtime"], b["provider"]) == (
        "onnx",
        "1-bit",
        "onnxruntime",
        "CPUExecutionProvider",
    )
    for row in (a, b):
        assert row["file_bytes"] == Path(row["path"]).stat().st_size
        assert row["images_per_s"] > 0 and row["peak_rss_bytes"] > 0 and row["load_s"] > 0
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"]
    assert a["speed_ratio"] == 1.0
    assert b["speed_ratio"] == pytest.approx(b["images_per_s"] / a["images_per_s"])
    assert b["size_ratio"] == pytest.approx(b["file_bytes"] / a["file_bytes"])
    assert "m.onnx" in res.stdout and "speed" in res.stdout


def test_onnx_worker_does_not_import_torch(two: list[Path]) -> None:
    import subprocess
    import sys

    code = (
        "import sys, binexport.runtimes as r; rt, info = r.open_runtime(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(info['weights'])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(two[1])], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1-bit"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "--batch-size must be 1..4096"),
        ({"seconds": float("nan")}, "--seconds must be"),
        ({"seconds": 0.0}, "--seconds must be"),
        ({"threads": -1}, "--threads must be"),
    ],
)
def test_bad_options_are_refused(two: list[Path], kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        bench(two, **kwargs)


def test_foreign_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model at all")
    res = CliRunner().invoke(main, ["bench", str(bad), "--seconds", "0.5"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "unrecognised file" in res.stderr


def test_no_artifact_is_refused() -> None:
    with pytest.raises(InputError, match="at least one"):
        bench([])
