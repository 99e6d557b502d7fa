"""The CLI: thin, one-line errors with the right exit codes, JSON for scripts, fast start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import invoke
from support.paths import ROOT
from support.refusals import assert_refused

from binexport import __version__


def test_inspect_training_checkpoint_json(make_run) -> None:
    ckpt = make_run(depth=8, width=1)
    r = invoke("inspect", ckpt, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert (data["format"], data["layout"], data["schema_version"]) == ("checkpoint", "training-checkpoint", 1)
    assert data["architecture"]["name"] == "WRN-8-1" and data["architecture"]["mode"] == "1-bit"
    assert data["binarized_from"] == "log.txt"
    assert (
        data["binarized_params"]
        == data["binarised_params"]
        == sum(
            int(__import__("numpy").prod(s.shape))
            for s in __import__("binexport").load(ckpt).arch.specs()
            if s.kind == "binary"
        )
    )
    b = data["breakdown"]
    assert b["optimizer state"] > 0 and sum(b.values()) == data["file_bytes"]
    assert isinstance(data["output_sizes"]["packed"], int)


def test_inspect_without_log_says_unknown(make_run) -> None:
    r = invoke("inspect", make_run(with_log=False))
    assert r.exit_code == 0, r.output
    assert "unknown (no log.txt)" in r.stdout


def test_pack_prints_both_ratios(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    r = invoke("pack", ckpt, "-o", tmp_path / "o.pth.tar")
    assert r.exit_code == 0, r.output
    assert "file to file" in r.stdout and "float32 weights to output" in r.stdout
    assert "optimizer state" in r.stdout
    assert (tmp_path / "o.pth.tar").is_file()


def test_pack_json_and_zero_warning(make_run, tmp_path: Path) -> None:
    r = invoke("pack", make_run(zeros=3), "-o", tmp_path / "o.pth.tar", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["zero_weights"] == 3
    r = invoke("pack", make_run(zeros=3, name="b"), "-o", tmp_path / "p.pth.tar")
    assert "3 weights were exactly zero" in r.stdout


def test_pack_full_precision_message(make_run, tmp_path: Path) -> None:
    ckpt = make_run(binarize=False)
    err = assert_refused(invoke("pack", ckpt, "-o", tmp_path / "o.pth.tar"))
    assert "--binarize-anyway" in err
    r = invoke("pack", ckpt, "-o", tmp_path / "o.pth.tar", "--binarize-anyway")
    assert r.exit_code == 0 and "binarised (--binarize-anyway)" in r.stdout


def test_mode_flags_override_log(make_run, tmp_path: Path) -> None:
    """--binarized / --full-precision win over what log.txt says: the model is read in the mode given."""
    fp = make_run(binarize=False)
    told = json.loads(invoke("inspect", fp, "--json").stdout)
    assert (told["binarized"], told["binarized_from"]) == (False, "log.txt")
    over = json.loads(invoke("inspect", fp, "--binarized", "--json").stdout)
    assert over["binarized"] is True and over["architecture"]["mode"] == "1-bit"
    assert over["binarized_from"] != "log.txt" and over["binarised_params"] > 0
    assert "--binarize-anyway" in assert_refused(invoke("pack", fp, "-o", tmp_path / "a.pth.tar"))
    r = invoke("pack", fp, "-o", tmp_path / "o.pth.tar", "--binarized", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["binarized_anyway"] is False  # read as 1-bit, not binarised anyway
    one_bit = make_run(name="one-bit")
    under = json.loads(invoke("inspect", one_bit, "--full-precision", "--json").stdout)
    assert under["binarized"] is False and under["binarised_params"] == 0


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04broken zip"])
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    assert_refused(invoke("pack", bad, "-o", tmp_path / "o.pth.tar"))
    assert_refused(invoke("inspect", bad))
    assert not (tmp_path / "o.pth.tar").exists()


def test_directory_and_missing(tmp_path: Path) -> None:
    assert "is a directory" in assert_refused(invoke("inspect", tmp_path))
    assert "no such file" in assert_refused(invoke("pack", tmp_path / "missing.pth"))


def test_existing_output_needs_force(make_run, tmp_path: Path) -> None:
    out = tmp_path / "o.pth.tar"
    out.write_bytes(b"x")
    assert "--force" in assert_refused(invoke("pack", make_run(), "-o", out))
    assert invoke("pack", make_run(name="r2"), "-o", out, "--force").exit_code == 0


def test_unknown_format_lists_valid(make_run, tmp_path: Path) -> None:
    err = assert_refused(invoke("pack", make_run(), "-o", tmp_path / "x", "--format", "tar"))
    assert "pack writes 'packed' or 'bwn'" in err and "to-onnx" in err


def test_not_a_wrn_real(realdata: Path, tmp_path: Path) -> None:
    src = realdata / "not-a-wrn" / "resnet20-12fca82f.th"
    err = assert_refused(invoke("pack", src, "-o", tmp_path / "o.pth.tar"))
    assert "not a WRN_McDonnell checkpoint" in err
    assert not (tmp_path / "o.pth.tar").exists()
    assert_refused(invoke("inspect", src))


def test_inspect_real_published(real_packed: Path) -> None:
    r = invoke("inspect", real_packed)
    assert r.exit_code == 0, r.output
    assert "WRN-20-10, 100 classes, 1-bit" in r.stdout and "packed-checkpoint" in r.stdout


def test_version_is_the_installed_distributions() -> None:
    """``--version`` prints the version pyproject.toml declares (installed from this source tree)."""
    import tomllib

    import binexport

    root = ROOT
    if Path(binexport.__file__).resolve().parent.parent != root.resolve():
        pytest.skip(f"binexport is imported from {binexport.__file__}, not this tree ({root})")
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout == f"binexport, version {declared}\n" and __version__ == declared
