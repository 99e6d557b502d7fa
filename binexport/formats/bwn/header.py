"""The ``.bwn`` JSON header: strict parsing and the string rules of FORMAT.md section 3.

Python's ``json`` accepts more than the format does (duplicate keys, NaN,
``-0`` as an integer, lone surrogates, any depth up to the interpreter's
recursion limit); each of those is refused here with the field named, so
binexport refuses exactly the headers a reader written from the page must.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from binexport.errors import FormatError

#: Nesting levels: the top-level object is level 1, each object or array inside another one more.
MAX_DEPTH = 64
#: Digits of the largest integer any field of the format takes (2^64 - 1 has 20). A longer integer can only sit
#: in metadata a reader ignores, where FORMAT.md section 3 makes it valid: it is kept as its binary64 value
#: (a float, often inf), which every integer field's type check refuses, instead of an int that Python caps
#: at 4,300 digits ("Exceeds the limit") and that costs quadratic time to build.
MAX_INT_DIGITS = 20


def parse(header: bytes, p: Path) -> dict[str, Any]:
    """The header object, or a FormatError naming what breaks section 3."""

    def no_dupes(pairs: list[tuple[str, object]]) -> dict[str, object]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise FormatError(f"{p}: the JSON header repeats a key in one object (field 'header')")
        return d

    def no_constants(name: str) -> object:
        raise FormatError(f"{p}: the JSON header holds {name}, which strict JSON does not allow (field 'header')")

    def integer(text: str) -> object:
        # "-0" is no integer of the format: as the float -0.0 it fails every integer field's type check;
        # neither is one of more than 20 digits (over 2^64 - 1), valid in ignored metadata (section 3)
        if text == "-0" or len(text.lstrip("-")) > MAX_INT_DIGITS:
            return float(text)
        return int(text)

    try:
        text = header.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=no_dupes, parse_constant=no_constants, parse_int=integer)
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: the header is not valid UTF-8 at byte {32 + e.start} (field 'header')") from None
    except RecursionError:
        raise FormatError(f"{p}: the JSON header nests deeper than {MAX_DEPTH} levels (field 'header')") from None
    except ValueError as e:
        raise FormatError(f"{p}: the header is not valid JSON: {e} (field 'header')") from None
    if text.startswith("\ufeff"):
        raise FormatError(f"{p}: the header starts with a byte-order mark (field 'header')")
    if depth(doc) > MAX_DEPTH:
        raise FormatError(f"{p}: the JSON header nests deeper than {MAX_DEPTH} levels (field 'header')")
    _check_strings(doc, p)
    if not isinstance(doc, dict) or set(doc) != {"metadata", "tensors"}:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(f"{p}: the header must be an object with keys 'metadata' and 'tensors', found {found}")
    if not isinstance(doc["metadata"], dict) or not isinstance(doc["tensors"], list):
        raise FormatError(f"{p}: 'metadata' must be an object and 'tensors' an array (field 'header')")
    return doc


def depth(obj: object) -> int:
    """Nesting levels of containers (a scalar is 0, ``{}`` and ``[]`` are 1), counted up to MAX_DEPTH + 1."""
    levels, level = 0, list[Any]([obj])
    while True:
        level = [o for o in level if isinstance(o, (dict, list))]
        if not level or levels > MAX_DEPTH:
            return levels
        levels += 1
        level = [v for o in level for v in (o.values() if isinstance(o, dict) else o)]


def _check_strings(doc: object, p: Path) -> None:
    """Every string and key is Unicode text: no lone surrogate (from a \\uD800-\\uDFFF escape), no U+0000."""
    todo = [doc]
    while todo:
        o = todo.pop()
        items = list(o.items()) if isinstance(o, dict) else o if isinstance(o, list) else ()
        for item in items:
            for s in item if isinstance(o, dict) else (item,):
                if isinstance(s, str):
                    _check_text(s, p)
                elif isinstance(s, (dict, list)):
                    todo.append(s)


def _check_text(s: str, p: Path) -> None:
    if "\0" in s:
        raise FormatError(f"{p}: a header string contains U+0000 (field 'header'): {s[:40]!r}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(
            f"{p}: a header string contains a lone surrogate escape (field 'header'): {s[:40]!r}"
        ) from None


def check_name(name: object, where: str) -> str:
    """A tensor name: 1 to 256 UTF-8 bytes, no control character (C0, DEL, C1)."""
    if not isinstance(name, str) or not 1 <= len(name.encode("utf-8")) <= 256:
        raise FormatError(f"{where}: 'name' must be a string of 1 to 256 UTF-8 bytes (field 'name')")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name):
        raise FormatError(f"{where}: 'name' {name!r} contains a control character (field 'name')")
    return name
