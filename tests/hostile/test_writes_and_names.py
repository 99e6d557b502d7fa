"""Interrupted writes leave no temp files, and file names that are not UTF-8 load and print."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import invoke
from support.paths import pythonpath
from support.refusals import assert_refused

from binexport.fileio import remove_stale_temps, write_atomic

WRITER = r"""
import sys, time
from binexport.fileio import write_atomic
def slow(tmp):
    print("writing", flush=True)
    time.sleep(30)
write_atomic(sys.argv[1], b"x" * 1000, check=slow)
"""


def _writer(out: Path, sig: int, disposition: object) -> subprocess.Popen[str]:
    """A child that writes ``out`` slowly, with ``sig`` set to ``disposition`` in the child itself: the test must
    not depend on how pytest was started (``nohup`` makes SIGHUP ignored, and children inherit that)."""
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(sig, disposition),  # type: ignore[arg-type]
        env={**os.environ, "PYTHONPATH": pythonpath()},
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_write_leaves_no_temp_file(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out.bin"
    proc = _writer(out, sig, signal.SIG_DFL)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    assert proc.wait(20) == -sig  # it dies by the signal, as the sender expects
    assert os.listdir(tmp_path) == []


def test_an_ignored_sighup_keeps_the_writer_running(tmp_path: Path) -> None:
    """Under ``nohup`` SIGHUP is ignored: the writer keeps that disposition and its temp file stays its own."""
    out = tmp_path / "out.bin"
    proc = _writer(out, signal.SIGHUP, signal.SIG_IGN)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)
        assert [p.name.endswith(".tmp") for p in tmp_path.iterdir()] == [True]
    finally:
        proc.kill()
        proc.wait(20)


def _reads_anything(tmp_path: Path) -> bool:
    """Whether this process reads a file whatever its permissions (root, or CAP_DAC_OVERRIDE)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return True
    except PermissionError:
        return False
    finally:
        probe.chmod(0o600)
        probe.unlink()


def test_an_unreadable_input_is_refused_in_one_line(make_run, tmp_path: Path) -> None:
    if _reads_anything(tmp_path):
        pytest.skip("this user reads files whatever their permissions (root): run as an unprivileged user")
    ckpt = make_run()
    ckpt.chmod(0)
    try:
        assert "not readable" in assert_refused(invoke("inspect", ckpt))  # Click or binexport says so, one line
    finally:
        ckpt.chmod(0o644)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.bin.{pid}.abcd1234.tmp"
    stale.write_bytes(b"half")
    mine = tmp_path / f".out.bin.{os.getpid()}.live.tmp"  # a live writer's: kept
    mine.write_bytes(b"busy")
    other = tmp_path / f".other.bin.{pid}.abcd.tmp"  # another output's: not ours to touch
    other.write_bytes(b"x")
    write_atomic(tmp_path / "out.bin", b"new")
    assert not stale.exists() and mine.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "other.bin") == [other]


def test_non_utf8_file_name_loads_and_prints(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffname.pth.tar"))
    odd.write_bytes(ckpt.read_bytes())
    (tmp_path / "log.txt").write_bytes((ckpt.parent / "log.txt").read_bytes())
    r = invoke("inspect", odd)
    assert r.exit_code == 0, r.output
    assert "bad\\udcffname.pth.tar" in r.stdout.replace("\n", "")
    r = invoke("pack", odd)
    assert r.exit_code == 0, r.output
    assert os.path.exists(bytes(tmp_path) + b"/bad\xffname.packed.pth.tar")


def test_usage_errors_are_one_line_and_help_still_works() -> None:
    r = invoke("pack", "--no-such-option")
    assert_refused(r)
    assert r.stderr.startswith("binexport: error: ") and "binexport pack --help" in r.stderr
    assert invoke("pack", "--help").exit_code == 0
    assert invoke("--version").exit_code == 0
