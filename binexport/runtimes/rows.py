"""A run plan's rows opened for ``verify``, and its reference: each OpenVINO row compiled apart first.

Apart from :mod:`.artifact` because it reaches :mod:`.openvino_apart`, whose child process caps its memory
through :mod:`.memory`, which opens an empty graph through :mod:`.artifact`: kept here, no import runs in a circle.
"""

from __future__ import annotations

from pathlib import Path

from binexport.errors import InputError
from binexport.runtimes.artifact import Artifact, open_artifact, open_run
from binexport.runtimes.plan import Run


def open_runs(runs: list[Run], binarized: bool | None) -> list[Artifact]:
    """Every row of a run plan, opened (``verify``): an OpenVINO row is compiled once in a process of its own first.

    OpenVINO 2026.4 reads no INT2: an int2 file's OpenVINO row is a note on its ONNX Runtime row (the row before
    it), not a failure.

    Raises:
        InputError: a row that can't be opened (other than that int2 case).
    """
    out: list[Artifact] = []
    for run in runs:
        try:
            out.append(_open_checked(run, binarized))
        except InputError as e:
            from binexport.runtimes.openvino import int2_refusal

            same = [a.weights for a in out if a.path == run.path]
            note = int2_refusal(run.runtime, same, e)  # raises e unless it is that int2 case
            out[-1].notes.append(note)
    return out


def _open_checked(run: Run, binarized: bool | None) -> Artifact:
    """One row of the plan, opened; an OpenVINO row is compiled once in a process of its own first."""
    if run.runtime == "openvino":
        from binexport.runtimes.openvino_apart import check_compiles

        check_compiles(run.path, run.compute)
    return open_run(run, binarized=binarized)


def open_reference(arts: list[Artifact], reference: str | Path | None, dev: str, binarized: bool | None) -> Artifact:
    """``verify``'s reference: the checkpoint ``reference`` (one of ``arts`` if it is among them, else opened on
    ``dev``), or by default the first artifact that is a model file (not ONNX).

    Raises:
        InputError: the reference is an ONNX file, or every artifact is one and no reference was given.
    """
    if reference is not None:
        same = [a for a in arts if a.path.resolve() == Path(reference).resolve()]
        ref = same[0] if same else open_artifact(Path(reference), dev, binarized=binarized)
        if ref.model is None:
            raise InputError(
                f"{reference}: the reference must be the checkpoint the artifacts were made from "
                "(training checkpoint, packed checkpoint or .bwn), not an ONNX file"
            )
        return ref
    for a in arts:
        if a.model is not None:
            return a
    raise InputError(
        "every artifact is an ONNX file, so there is no reference to compare with; pass "
        "--reference CKPT (the checkpoint they were exported from)"
    )
