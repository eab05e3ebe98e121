"""The machine's peak GFLOP/s (GOP/s) per precision, from square GEMM micro-benchmarks (the roofline's ceiling)."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence

import numpy as np

from mind_edge.errors import ConfigError, require
from mind_edge.runtime.bench.stats import TimingConfig, time_loop
from mind_edge.runtime.sessions import cpu_session

log = logging.getLogger(__name__)

SIZES = (256, 512, 1024, 2048)


def _onnx(purpose: str):
    return require("onnx", "export", purpose)


def gemm_model(n: int):
    """An ``[n, n] x [n, n]`` float32 MatMul graph (the GEMM peak probes of ORT and OpenVINO)."""
    onnx = _onnx("building the GEMM micro-benchmark graph")
    helper, TP = onnx.helper, onnx.TensorProto
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "gemm",
        [helper.make_tensor_value_info("A", TP.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TP.FLOAT, [n, n])],
        [onnx.numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def gemm_int8_model(n: int):
    """``MatMulInteger`` of uint8 ``[n, n]`` (zero point 128) by int8 ``[n, n]`` (MLAS's U8S8 QGEMM)."""
    onnx = _onnx("building the INT8 GEMM micro-benchmark graph")
    helper, TP = onnx.helper, onnx.TensorProto
    b = np.random.default_rng(1).integers(-127, 128, (n, n)).astype(np.int8)
    inits = [onnx.numpy_helper.from_array(b, "B"), onnx.numpy_helper.from_array(np.array(128, np.uint8), "a_zero")]
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["C"])],
        "gemm_int8",
        [helper.make_tensor_value_info("A", TP.UINT8, [n, n])],
        [helper.make_tensor_value_info("C", TP.INT32, [n, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _session(model, threads: int):
    return cpu_session(model, what="measuring the GEMM peak", threads=threads, inter_threads=1)


def _openvino_matmul(n: int, threads: int, hint: str):
    ov = require("openvino", "openvino", "measuring the BF16 GEMM peak")
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(gemm_model(n).SerializeToString(), b""),
        "CPU",
        {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": hint},
    )
    return compiled.create_infer_request()


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def gemm_peak(
    threads: int, *, sizes: Sequence[int] = SIZES, seconds_per_size: float = 0.3, engine: str = "auto"
) -> dict:
    """Peak float32 GFLOP/s of this machine from a square GEMM micro-benchmark.

    ``engine``: ``ort`` = ONNX Runtime MatMul (MLAS SGEMM) with ``threads`` intra-op threads,
    ``numpy`` = numpy's BLAS (its own thread count: set ``OPENBLAS_NUM_THREADS`` /
    ``OMP_NUM_THREADS`` before starting Python), ``auto`` = ``ort`` when ONNX Runtime and onnx
    are importable. Each size runs for ``seconds_per_size`` (at least 3 timed calls, after one
    warm-up); the peak is the best per-size median.
    """
    if engine == "auto":
        engine = "ort" if _have("onnxruntime", "onnx") else "numpy"
    if engine not in ("ort", "numpy"):
        raise ConfigError(f"unknown GEMM engine {engine!r}; use ort, numpy or auto")
    per_size = {}
    cfg = TimingConfig(warmup_seconds=0.0, min_iters=3, min_seconds=seconds_per_size)
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        if engine == "ort":
            sess = _session(gemm_model(n), threads)
            fn = lambda s=sess, a=a: s.run(None, {"A": a})
        else:
            b = rng.standard_normal((n, n)).astype(np.float32)
            fn = lambda a=a, b=b: a @ b
        timing = time_loop(fn, cfg)
        per_size[str(n)] = 2.0 * n**3 / float(np.median(timing.latencies_s)) / 1e9
    best = max(per_size, key=per_size.get)
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "BLAS default"
    return {
        "engine": "onnxruntime MatMul (MLAS SGEMM)" if engine == "ort" else "numpy matmul (BLAS)",
        "threads": int(threads) if engine == "ort" else blas_threads,
        "gflops": per_size[best],
        "size": int(best),
        "per_size_gflops": per_size,
        "note": "square float32 C = A x B, median of >= 3 calls per size; peak = best size",
    }


def precision_peak(
    threads: int, precision: str, *, sizes: Sequence[int] = SIZES, seconds_per_size: float = 0.3
) -> dict | None:
    """Peak GOP/s of one compute precision, measured like :func:`gemm_peak` (square GEMMs, best
    per-size median, same threads; 2 ops per multiply-accumulate).

    ``fp32``: :func:`gemm_peak`. ``int8``: ONNX Runtime ``MatMulInteger`` with uint8 x int8
    inputs (MLAS's U8S8 QGEMM: AVX-512 VNNI / AMX where the CPU has them — the kernels the
    INT8 convolutions use). ``bf16``: OpenVINO ``MatMul`` with ``INFERENCE_PRECISION_HINT=bf16``
    (None without OpenVINO). Returns None when the precision cannot be measured here.
    """
    if precision == "fp32":
        return gemm_peak(threads, sizes=sizes, seconds_per_size=seconds_per_size)
    rng = np.random.default_rng(0)
    if precision == "int8":
        if not _have("onnxruntime", "onnx"):
            return None
        make = lambda n: _session(gemm_int8_model(n), threads)
        feed = lambda n: {"A": rng.integers(0, 256, (n, n)).astype(np.uint8)}
        call = lambda sess, f: sess.run(None, f)
        engine = "onnxruntime MatMulInteger (MLAS U8S8 QGEMM)"
    elif precision == "bf16":
        if not _have("openvino", "onnx"):
            return None
        make = lambda n: _openvino_matmul(n, threads, "bf16")
        feed = lambda n: {"A": rng.standard_normal((n, n)).astype(np.float32)}
        call = lambda req, f: req.infer(f)
        engine = "openvino MatMul (INFERENCE_PRECISION_HINT=bf16)"
    else:
        return None
    cfg = TimingConfig(warmup_seconds=0.0, min_iters=3, min_seconds=seconds_per_size)
    per_size = {}
    try:
        for n in sizes:
            runner, f = make(n), feed(n)
            timing = time_loop(lambda r=runner, f=f: call(r, f), cfg)
            per_size[str(n)] = 2.0 * n**3 / float(np.median(timing.latencies_s)) / 1e9
    except Exception as exc:  # noqa: BLE001 - a backend that cannot run this probe: no peak, no roofline
        log.warning("the %s GEMM peak could not be measured: %s", precision, exc)
        return None
    best = max(per_size, key=per_size.get)
    return {
        "engine": engine,
        "threads": int(threads),
        "gflops": per_size[best],
        "size": int(best),
        "per_size_gflops": per_size,
        "precision": precision,
        "note": f"square {precision} GEMM, median of >= 3 calls per size; peak = best size; GOP/s (2 ops per MAC)",
    }
