"""What the tests share, written once: paths, the CLI runners, the one-line refusal check, tiny models.

- ``support.paths``: the project root, ``tests/golden`` and the real material beside the checkout;
- ``support.cli``: ``invoke`` (the CLI in-process, through Click's runner) and ``run_cli`` (a subprocess);
- ``support.refusals``: ``assert_refused`` (exit code, one stderr line, no traceback);
- ``support.models``: tiny random models, CIFAR pickles, normalized batches, the golden-bytes check.

Fixtures (session-scoped tiny runs and artifact sets, real data) live in ``tests/conftest.py``.
"""
