"""``python -m binexport.cli``: the same as the ``binexport`` command."""

from binexport.cli import main

main()
