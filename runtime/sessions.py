"""The one ONNX Runtime CPU session factory (validation, probes, patches, benchmarks).

``cpu_session(model)`` takes serialized bytes, a path or a ``ModelProto``; ``what`` names the
operation in the error a missing onnxruntime gives (``pip install 'mind-edge[ort]'``). ONNX
Runtime's own warnings are silenced (``log_severity_level=3``): mind-edge reports what matters
itself. Device runners with execution providers live in :mod:`mind_edge.runtime.runners`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mind_edge.errors import require


def cpu_session(model: Any, *, what: str = "running an ONNX graph", threads: int | None = None,
                inter_threads: int | None = None, **options: Any):
    """An ``onnxruntime.InferenceSession`` on the CPU EP for ``model`` (bytes, path or ModelProto).

    ``options`` set further ``SessionOptions`` attributes (e.g. ``enable_mem_pattern=False``)."""
    ort = require("onnxruntime", "ort", what)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    if inter_threads is not None:
        opts.inter_op_num_threads = int(inter_threads)
    for key, value in options.items():
        setattr(opts, key, value)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


__all__ = ["cpu_session"]
