"""The one base of every verb's report: its schema version, ``to_dict()`` and its one JSON write path.

Every report (``inspect``, ``pack``, ``to-onnx``, ``verify``, ``bench``, ``demo``) is a dataclass that
inherits :class:`Report`, so a JSON document of any verb carries the same ``schema_version``, is made by the
same ``to_json()`` (what ``--json`` prints) and is written by the same ``write_json()`` (what ``--json-out``
writes: through the atomic writer, never half-written, never onto a FIFO or a device).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from binexport.fileio import check_output, write_atomic

#: Version of every report's JSON layout; bumped when a key changes meaning or goes away.
SCHEMA_VERSION = 1


@dataclass
class Report:
    """Base of the verbs' report dataclasses.

    ``schema_version`` is a class constant (not a field), so subclasses declare their own fields freely and
    every report's JSON carries it as its last key but the ones a report adds in :meth:`to_dict`.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Sizes(Report):
        ...     bytes: int
        >>> Sizes(3).to_dict()
        {'bytes': 3, 'schema_version': 1}
    """

    schema_version: ClassVar[int] = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values: every field (nested dataclasses as dicts), then the version."""
        return {**asdict(self), "schema_version": self.schema_version}

    def to_json(self) -> str:
        """The report as indented JSON text, ending in a newline: what ``--json`` prints and ``--json-out`` writes."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically, replacing a regular file there.

        Args:
            path: the JSON file to write; its folder must exist.

        Returns:
            The path written.

        Raises:
            InputError: ``path`` is empty, a folder, a FIFO or a device (or links to one), or its folder is missing.
        """
        return write_atomic(check_output(path, force=True), self.to_json().encode())
