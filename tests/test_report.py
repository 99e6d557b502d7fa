"""binexport/report.py: one schema version, one to_dict, one atomic JSON write path for every verb's report."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from binexport import report
from binexport.errors import InputError
from binexport.report import SCHEMA_VERSION, Report
from binexport.verbs.bench import BenchReport
from binexport.verbs.bundle import BundleReport
from binexport.verbs.demo import DemoReport
from binexport.verbs.export import OnnxReport
from binexport.verbs.inspect import InspectReport
from binexport.verbs.pack import PackReport
from binexport.verbs.predict import PredictReport
from binexport.verbs.verify import VerifyReport

PACKAGE = Path(report.__file__).parent


@dataclasses.dataclass
class _Nested:
    a: int
    b: list[float]


@dataclasses.dataclass
class _Sample(Report):
    name: str
    nested: _Nested
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)


def _sample() -> _Sample:
    return _Sample("x\ny", _Nested(3, [0.5, 1.0]), {"bwn": 12})


def test_every_report_is_a_report() -> None:
    for cls in (
        InspectReport,
        PackReport,
        OnnxReport,
        VerifyReport,
        BenchReport,
        DemoReport,
        PredictReport,
        BundleReport,
    ):
        assert issubclass(cls, Report) and cls.schema_version == SCHEMA_VERSION, cls
        assert "schema_version" not in {f.name for f in dataclasses.fields(cls)}, cls  # a constant, not a field


def test_schema_version_is_written_once() -> None:
    """One definition in the package: no verb writes its own number, no report a literal version key."""
    hits = []
    for py in PACKAGE.rglob("*.py"):
        text = py.read_text()
        hits += [(py.name, m) for m in re.findall(r"SCHEMA_VERSION\s*=|\"schema_version\":\s*\d", text)]
    assert hits == [("report.py", "SCHEMA_VERSION =")]


def test_to_dict_round_trips_through_json() -> None:
    r = _sample()
    d = r.to_dict()
    assert list(d) == ["name", "nested", "sizes", "schema_version"] and d["schema_version"] == SCHEMA_VERSION
    back = json.loads(r.to_json())
    assert back == d
    fields = {k: v for k, v in back.items() if k != "schema_version"}
    assert _Sample(**{**fields, "nested": _Nested(**fields["nested"])}) == r


def test_write_json_writes_to_json_text(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("old")
    assert _sample().write_json(out) == out
    assert out.read_text() == _sample().to_json() and out.read_text().endswith("}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left beside it


def test_write_json_failure_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.json"
    out.write_text("old")

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        _sample().write_json(out)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("where", ["folder", "missing-folder", "fifo"])
def test_write_json_refuses_what_is_not_a_file(tmp_path: Path, where: str) -> None:
    target = {"folder": tmp_path, "missing-folder": tmp_path / "no" / "r.json", "fifo": tmp_path / "f"}[where]
    if where == "fifo":
        os.mkfifo(target)
    with pytest.raises(InputError):
        _sample().write_json(target)
