"""``python -m binexport``: the same as the ``binexport`` command."""

from binexport.cli import main

main()
