"""formats/runfolder.py: a training run folder's model file (with any recogniser) and its log.txt's --binarize."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binexport.errors import InputError
from binexport.formats import runfolder


def _is_model(head: bytes) -> bool:
    return head.startswith(b"MODEL")


def test_resolve_uses_the_recogniser_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"MODEL" + bytes(10))
    (tmp_path / "b.bin").write_bytes(b"OTHER" + bytes(10))
    (tmp_path / ".c.bin").write_bytes(b"MODEL")  # hidden: never a candidate
    assert runfolder.resolve(tmp_path, _is_model) == tmp_path / "a.bin"
    assert runfolder.resolve(tmp_path / "b.bin", _is_model) == tmp_path / "b.bin"  # a file is left as it is


def test_resolve_takes_the_training_codes_file_first_whatever_it_holds(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"MODEL")
    (tmp_path / runfolder.RUN_CHECKPOINT).write_bytes(b"x")
    assert runfolder.resolve(tmp_path, _is_model) == tmp_path / runfolder.RUN_CHECKPOINT


def test_resolve_names_several_candidates(tmp_path: Path) -> None:
    for n in ("a", "b"):
        (tmp_path / f"{n}.bin").write_bytes(b"MODEL")
    with pytest.raises(InputError, match=r"2 model files \(a.bin, b.bin\)"):
        runfolder.resolve(tmp_path, _is_model)


def test_resolve_refuses_a_folder_too_large_to_be_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runfolder, "MAX_RUN_FOLDER_ENTRIES", 3)
    for i in range(4):
        (tmp_path / f"{i}").write_bytes(b"")
    with pytest.raises(InputError, match="a folder of 4 entries"):
        runfolder.resolve(tmp_path, _is_model)


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        ([{"binarize": True, "depth": 20}, {"epoch": 1, "loss": 0.5}], True),
        ([{"binarize": False}], False),
        ([{"epoch": 1}, "not json {", '{"binarize": "yes"}'], None),  # a string is not a word on --binarize
        ([], None),
    ],
)
def test_logged_binarize_reads_the_flat_json_lines(tmp_path: Path, lines: list[object], want: bool | None) -> None:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (tmp_path / "log.txt").write_text(text + "\n")
    assert runfolder.logged_binarize(tmp_path / "checkpoint.pth.tar") is want


def test_logged_binarize_without_a_log_is_none_and_disagreeing_lines_are_refused(tmp_path: Path) -> None:
    assert runfolder.logged_binarize(tmp_path / "checkpoint.pth.tar") is None
    (tmp_path / "log.txt").write_text('{"binarize": true}\n{"binarize": false}\n')
    with pytest.raises(InputError, match='disagree on "binarize"'):
        runfolder.logged_binarize(tmp_path / "checkpoint.pth.tar")


def test_logged_binarize_skips_lines_nested_deeper_than_a_log_entry(tmp_path: Path) -> None:
    deep = "[" * 100 + "]" * 100
    (tmp_path / "log.txt").write_text('{"binarize": true, "x": ' + deep + "}\n")
    assert runfolder.logged_binarize(tmp_path / "checkpoint.pth.tar") is None
