"""Where things are, found from the project root (the folder holding pyproject.toml), not from a test's depth.

A test file may move between ``tests/`` folders without a ``parents[N]`` to fix.
"""

from __future__ import annotations

from pathlib import Path


def _root() -> Path:
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "binexport").is_dir():
            return folder
    raise RuntimeError(f"no project root (pyproject.toml beside binexport/) above {here}")


ROOT = _root()
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"
GOLDEN = TESTS / "golden"
DEMO_DATA = ROOT / "binexport" / "data" / "demo"

# the real material lives beside the checkout (../shared/realdata); tests that need it skip where it is absent
REALDATA = ROOT.parent / "shared" / "realdata"
REAL_PACKED = REALDATA / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
NOT_A_WRN = REALDATA / "not-a-wrn" / "resnet20-12fca82f.th"
CIFAR100_SAMPLES = REALDATA / "cifar100-samples"
CIFAR10_SAMPLES = REALDATA / "cifar10-samples"


def pythonpath(*extra: Path) -> str:
    """A PYTHONPATH for a child process: ``extra``, the project root and ``tests/`` (for ``support``), then the
    parent's own entries, so the child imports this checkout's binexport and the test helpers."""
    import os

    parts = [*map(str, extra), str(ROOT), str(TESTS)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)
