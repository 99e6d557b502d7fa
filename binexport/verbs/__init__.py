"""One module per verb of the CLI and the public API: inspect, pack, export (to-onnx), verify, bench, demo.

A verb reads with :mod:`binexport.formats`, runs with :mod:`binexport.runtimes`,
takes images from :mod:`binexport.data` and compares with :mod:`binexport.check`.
It never imports another verb: ``demo`` calls the others through the public API
(``binexport.pack(...)``), as any user would. Each returns a report dataclass built on
:class:`binexport.report.Report` (``schema_version``, ``to_dict()``, ``write_json()``).
"""
