"""The ``binexport`` command: the group, its version, and the commands it holds.

Each command parses its options (written once in :mod:`binexport.cli.options`), calls one library function
and hands the report to :func:`binexport.cli.render.emit`. Only this layer imports rich. Library errors
become one line on stderr (:class:`binexport.cli.params.Group`): exit 2 for bad input, 1 for a failed
check. Heavy imports (torch, onnx) happen inside commands, so ``--help`` and ``--version`` start fast.

The commands live by job: ``convert`` (inspect, pack, to-onnx), ``run`` (verify, bench), ``ship`` (predict,
bundle) and ``demo``.
"""

from __future__ import annotations

import sys

import click

from binexport import __version__
from binexport.cli.convert import inspect, pack, to_onnx
from binexport.cli.demo import demo
from binexport.cli.params import Group
from binexport.cli.run import bench, verify
from binexport.cli.ship import bundle, predict


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="binexport")
def main() -> None:
    """Export and compress 1-bit Wide ResNets (McDonnell, ICLR 2018) for deployment."""


for _command in (inspect, pack, to_onnx, verify, bench, predict, bundle, demo):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
