"""A training run folder (the training code's ``--save`` folder) stands for its one checkpoint in pack, inspect,
to-onnx and verify: the training code's own ``checkpoint.pth.tar`` first, the ``log.txt`` beside it
says whether it is binarised; zero or several candidates is one line naming them, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.refusals import assert_refused

from binexport import formats
from binexport.data.synth import write_cifar_testset
from binexport.errors import InputError


def test_resolve_takes_the_training_codes_checkpoint_first(make_run) -> None:
    ckpt = make_run()
    (ckpt.parent / "model.bwn").write_bytes(b"BWN\x00" + bytes(60))  # another model file: the own name wins
    assert formats.resolve(ckpt.parent) == ckpt
    assert formats.resolve(ckpt) == ckpt  # a file is left as it is


def test_resolve_takes_the_one_model_file_of_another_name(make_run) -> None:
    ckpt = make_run()
    other = ckpt.with_name("epoch_160.pth")
    ckpt.rename(other)
    (ckpt.parent / ".epoch_160.pth.123.tmp").write_bytes(other.read_bytes()[:64])  # hidden: not a candidate
    (ckpt.parent / "events.out").write_bytes(b"not a model")
    assert formats.resolve(ckpt.parent) == other


def test_resolve_refuses_an_empty_folder_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_text("{}\n")
    with pytest.raises(InputError, match="no model file") as e:
        formats.resolve(tmp_path)
    assert "checkpoint.pth.tar" in str(e.value) and "\n" not in str(e.value)


def test_resolve_names_several_candidates(make_run) -> None:
    ckpt = make_run()
    shutil.copy(ckpt, ckpt.with_name("a.pth"))
    ckpt.rename(ckpt.with_name("b.pth.tar"))
    with pytest.raises(InputError, match=r"2 model files \(a\.pth, b\.pth\.tar\)"):
        formats.resolve(ckpt.parent)


@pytest.mark.parametrize("verb", ["inspect", "pack", "to-onnx", "verify"])
def test_every_verb_refuses_an_ambiguous_folder_with_exit_2(make_run, verb: str) -> None:
    ckpt = make_run()
    shutil.copy(ckpt, ckpt.with_name("a.pth"))
    ckpt.rename(ckpt.with_name("b.pth"))
    extra = ["--images", str(ckpt.parent)] if verb == "verify" else []
    err = assert_refused(invoke(verb, ckpt.parent, *extra))
    assert "a.pth, b.pth" in err


def test_pack_a_run_folder_uses_its_checkpoint_and_log(make_run) -> None:
    ckpt = make_run(binarize=True)
    r = invoke("pack", ckpt.parent, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["input"] == str(ckpt) and report["input_layout"] == "training-checkpoint"
    assert Path(report["output"]) == ckpt.with_name("checkpoint.packed.pth.tar")  # beside the checkpoint
    assert "a training run folder; using checkpoint.pth.tar and the log.txt beside it" in r.stderr


def test_inspect_a_run_folder_reads_binarised_from_its_log(make_run) -> None:
    ckpt = make_run(binarize=False)
    r = invoke("inspect", ckpt.parent, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["path"] == str(ckpt)
    assert report["binarized"] is False and report["binarized_from"] == "log.txt"


def test_to_onnx_and_verify_take_a_run_folder(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    out = tmp_path / "m.onnx"
    r = invoke("to-onnx", ckpt.parent, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["input"] == str(ckpt)
    rng = np.random.default_rng(0)
    write_cifar_testset(
        tmp_path / "data",
        rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, 4),
        dataset="CIFAR10",
    )
    r = invoke(
        "verify",
        ckpt.parent,
        out,
        "--dataset",
        "CIFAR10",
        "--data-root",
        tmp_path / "data",
        "--json-out",
        tmp_path / "v.json",
    )
    assert r.exit_code == 0, r.output
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["reference"]["path"] == str(ckpt) and v["passed"] is True


def test_a_real_packed_checkpoint_in_a_folder_is_taken(real_packed: Path, tmp_path: Path) -> None:
    run = tmp_path / "published"
    run.mkdir()
    shutil.copy(real_packed, run / real_packed.name)
    r = invoke("inspect", run, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["path"] == str(run / real_packed.name) and report["architecture"]["name"] == "WRN-20-10"
    assert f"using {real_packed.name}" in r.stderr
