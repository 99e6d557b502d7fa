"""data/safepickle.py: numpy arrays and plain containers come back; anything that asks for code is refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from binexport.data import safepickle
from binexport.errors import InputError


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_numpy_arrays_and_containers_come_back_equal(protocol: int) -> None:
    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3], "name": "x"}
    got = safepickle.unpickle(pickle.dumps(obj, protocol=protocol), "t")
    assert got[b"labels"] == [1, 2, 3] and got["name"] == "x"
    assert got[b"data"].dtype == np.uint8 and np.array_equal(got[b"data"], obj[b"data"])


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("ran",))


def test_a_global_other_than_numpys_is_refused_before_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"refused: the pickle asks for code.*builtins\.print") as e:
        safepickle.unpickle(pickle.dumps({"x": _RunsCode()}), "evil.pkl")
    assert capsys.readouterr().out == "" and str(e.value).startswith("evil.pkl: ") and "\n" not in str(e.value)


def test_object_arrays_and_truncated_pickles_are_refused() -> None:
    with pytest.raises(InputError, match="dtype object is not allowed|refused"):
        safepickle.unpickle(pickle.dumps(np.array([1, "a"], dtype=object)), "o.pkl")
    with pytest.raises(InputError, match="truncated or corrupt"):
        safepickle.unpickle(pickle.dumps([1, 2, 3])[:-3], "t.pkl")
