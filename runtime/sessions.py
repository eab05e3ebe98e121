"""The one ONNX Runtime session factory: every ``onnxruntime.InferenceSession`` of mind-edge is made here.

:func:`ort_session` takes the model as serialized bytes, a path or a ``ModelProto`` and the
options the callers need: intra-/inter-op threads, execution providers (with their provider
options; default the CPU EP), the graph optimisation level, per-operator profiling, and further
``SessionOptions`` attributes by name (e.g. ``enable_mem_pattern=False``). ``what`` names the
operation in the error a missing onnxruntime gives (``pip install 'mind-edge[ort]'``). ONNX
Runtime's own warnings are silenced (``log_severity_level=3``): mind-edge reports what matters
itself. :func:`cpu_session` is the CPU-only shorthand (validation, probes, patches, GEMM peaks).
Runners with execution providers live in :mod:`mind_edge.runtime.runners`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mind_edge.errors import ConfigError, require

CPU = "CPUExecutionProvider"
#: graph optimisation levels by their short name (``SessionOptions.graph_optimization_level``)
OPTIMIZATION_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "none": "ORT_DISABLE_ALL",
}


def onnxruntime(what: str = "running an ONNX graph"):
    """The ``onnxruntime`` module, or :class:`~mind_edge.errors.MissingExtraError` naming the ``ort`` extra."""
    return require("onnxruntime", "ort", what)


def ort_session(
    model: Any,
    *,
    what: str = "running an ONNX graph",
    providers: Sequence[Any] | None = None,
    threads: int | None = None,
    inter_threads: int | None = None,
    optimization: str | None = None,
    profile_prefix: str | Path | None = None,
    **options: Any,
):
    """An ``onnxruntime.InferenceSession`` for ``model`` (bytes, path or ``ModelProto``).

    ``providers``: ONNX Runtime's ``providers`` list (names or ``(name, options)`` pairs; default
    the CPU EP). ``optimization``: ``all``, ``extended``, ``basic`` or ``none`` (default: ONNX
    Runtime's, ``all``). ``profile_prefix`` turns on per-operator profiling
    (``enable_profiling``, ``profile_file_prefix``; ``session.end_profiling()`` writes the file).
    ``options`` set further ``SessionOptions`` attributes."""
    ort = onnxruntime(what)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if optimization is not None:
        if optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization must be {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    if inter_threads is not None:
        opts.inter_op_num_threads = int(inter_threads)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    for key, value in options.items():
        setattr(opts, key, value)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=opts, providers=list(providers) if providers else [CPU])


def cpu_session(
    model: Any,
    *,
    what: str = "running an ONNX graph",
    threads: int | None = None,
    inter_threads: int | None = None,
    **options: Any,
):
    """:func:`ort_session` on the CPU execution provider."""
    return ort_session(model, what=what, providers=[CPU], threads=threads, inter_threads=inter_threads, **options)


__all__ = ["cpu_session", "ort_session", "onnxruntime", "OPTIMIZATION_LEVELS", "CPU"]
