"""What the tests share, written once (``tests/conftest.py`` puts ``tests/`` on ``sys.path``: ``support.X``).

- ``paths``: the project root, ``tests/golden``, the shipped demo data, the real material beside the checkout;
- ``cli``: ``invoke`` (the CLI in-process, through Click's runner) and ``run_cli`` (a ``binexport`` subprocess);
- ``refusals``: ``assert_refused`` (exit code, exactly one ``binexport: error:`` line on stderr, no traceback);
- ``models``: tiny random models, normalized batches, CIFAR pickles, the golden-bytes check;
- ``hostile``: builders of hostile files (torch zips and pickles, PNGs, ONNX graphs);
- independent oracles written from the docs alone: ``bwn_spec_reader`` and ``bwn_spec_forward`` (docs/FORMAT.md),
  ``spec_reference`` (the network in torch), ``mcdonnell_oracle`` and ``matwriter`` (``.mat`` files);
  ``bwn_crafted``: legal ``.bwn`` files shaped to cost a decoder the most.

Fixtures (session-scoped tiny runs and artifact sets, real data, run folders, a loopback server) live in
``tests/conftest.py``. Test folders mirror the package: ``formats/``, ``runtimes/``, ``data/``, ``verbs/``,
``cli/``, plus ``hostile/`` (crafted inputs across readers) and ``e2e/`` (the demo, the docs, import costs).
"""
