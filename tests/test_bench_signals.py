"""``bench`` ends its workers on SIGINT, SIGTERM and SIGHUP, in every phase, with one line on stderr.

Each case starts ``binexport bench`` as a user would (a subprocess, with SIGINT and SIGHUP *ignored* on the way
in, as under ``nohup`` or in a background job, so only handlers bench sets itself can act), waits for the phase
from the process table (``/proc``: the worker exists and is loading; or it has answered and is timing), sends
the signal, and checks the process table again: no process of the worker's process group is left. Nothing
here asserts a time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc process table")

#: Starts the command with SIGINT and SIGHUP ignored (inherited through exec), as nohup and shells' & do.
IGNORING_LAUNCHER = (
    "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, process group, state) of a process, from /proc; None where it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), fields[0]


def _processes() -> dict[int, tuple[int, int, str]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def _children(pid: int) -> list[int]:
    return [p for p, (ppid, _, state) in _processes().items() if ppid == pid and state != "Z"]


def _group(pgid: int) -> list[int]:
    """Processes of a process group still running (zombies are dead)."""
    return [p for p, (_, grp, state) in _processes().items() if grp == pgid and state != "Z"]


def _written(pid: int) -> int | None:
    """Bytes a process wrote (``wchar`` of /proc/PID/io); None where the kernel does not show it.

    A worker writes nothing before its answer to the load (bytecode caches are off: PYTHONDONTWRITEBYTECODE), so
    a count above 0 means it loaded its file and bench moved on to timing it.
    """
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from helpers import tiny_model

    import binexport

    d = tmp_path_factory.mktemp("sig")
    torch.save({k: torch.from_numpy(v.copy()) for k, v in tiny_model(binarized=False).floats.items()}, d / "m.pth")
    return binexport.export_onnx(d / "m.pth", d / "m.onnx", binarized=True).output


def _worker_of(proc: subprocess.Popen[str], deadline_s: float = 120) -> int:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        for kid in _children(proc.pid):  # once exec'd (before, the fork may not have its own group yet)
            try:
                if b"binexport.runtimes.worker" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    return kid
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"bench started no worker (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("phase", ["loading", "timing"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_ends_bench_and_every_worker_with_one_line(onnx_file: Path, sig: str, phase: str) -> None:
    signum = getattr(signal, sig)
    bench = [sys.executable, "-m", "binexport", "bench", str(onnx_file), "--device", "cpu", "--seconds", "120"]
    proc = subprocess.Popen(
        [sys.executable, "-c", IGNORING_LAUNCHER, *bench[1:]],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        worker = _worker_of(proc)
        st = _stat(worker)
        assert st is not None and st[1] == worker, "the worker is not the leader of a process group of its own"
        if _written(worker) is None:
            pytest.skip("this kernel shows no /proc/PID/io")
        if phase == "loading":
            assert _written(worker) == 0  # just started: still importing its runtime
        else:
            end = time.monotonic() + 120
            while not _written(worker) and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.02)
            assert _written(worker) and proc.poll() is None, "the worker never answered its load"
            time.sleep(0.2)  # bench asks for the probe at once; the timing lasts 120 s
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"binexport: error: interrupted by {sig}; the benchmark workers were stopped"
    ), err
    assert _group(worker) == [], "a benchmark worker outlived bench"


def test_a_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL can't be caught: the worker sees it was re-parented and exits."""
    script = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
        "'from binexport.runtimes.worker import exit_with_parent; import time; exit_with_parent(0.05); "
        'print("watching", flush=True); time.sleep(120)\']); print(p.pid, flush=True); '
        "import time; time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "watching"  # the child shares the pipe
        parent.kill()
        parent.wait()
        end = time.monotonic() + 30
        while time.monotonic() < end and (st := _stat(child)) is not None and st[2] != "Z":
            time.sleep(0.05)
        st = _stat(child)
        assert st is None or st[2] == "Z", "the worker outlived the bench that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
