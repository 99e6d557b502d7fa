"""One module per verb of the CLI and the public API: inspect, pack, export (to-onnx), verify, demo.

A verb reads with :mod:`binexport.formats`, runs with :mod:`binexport.runtimes`,
takes images from :mod:`binexport.data` and compares with :mod:`binexport.check`.
It never imports another verb (``demo`` calls them through the public API).
Each returns a report dataclass with ``to_dict()`` and a ``schema_version``.
"""
