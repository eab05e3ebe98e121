"""Latency harness (torch-free): timing loop, statistics, machine context, GEMM roofline, workers.

Conventions (trtexec-style, DESIGN §5):

* **Timing loop** (:func:`time_loop`): a time-based warm-up (``warmup_seconds``, at least one
  call), then timed calls until both ``min_iters`` iterations and ``min_seconds`` seconds are
  reached. Latency = one ``Runner.infer`` call on a preprocessed float32 batch already in host
  memory, outputs back in host memory (trtexec's *host latency*; image decoding and
  normalisation are not part of it); with ``chunk`` the batch is run as consecutive sub-batches
  of ``chunk`` images inside the timed call (what ``Runtime.predict(batch_size=chunk)`` does).
  Throughput = images / wall time of the timed loop.
* **Statistics** (:func:`summarize`): p50/p90/p95/p99 by linear interpolation between order
  statistics (numpy's default), mean, sample standard deviation and the coefficient of variation
  ``std / mean``; a row is *noisy* when its CV exceeds :data:`CV_WARN` (5 %).
* **Peak RSS**: every backend runs in a fresh worker process (``python -m
  mind_edge.runtime.bench worker SPEC OUT``), so its peak resident set (``ru_maxrss``) holds only
  what that backend loads — never PyTorch for ``ort``. Batches run in ascending order and each
  row records the peak up to its end.
* **Roofline**: ``roofline_fraction = FLOPs per image x images/s / peak FLOP/s``, where the peak
  is measured in the same run by :func:`gemm_peak` — ONNX Runtime's MatMul (MLAS SGEMM, the
  library the ``ort`` convolutions run on) on square float32 matrices with the same intra-op
  thread count (numpy's BLAS when ONNX Runtime is absent). FLOPs per image come from
  :mod:`mind_edge.flops`: the model at N tasks runs **all N sub-networks**, so it counts N x one
  sub-network + routing.
* **Power** (``--monitor``, Jetson): *one* ``tegrastats`` process
  (:class:`mind_edge.devices.tegrastats.TegrastatsMonitor`) runs in the parent from before the
  first row to after the last; it is not started per row and never inside a worker. First it
  samples ``idle_seconds`` (1 s) of idle baseline while the parent sleeps. Each timed loop
  records ``time.monotonic()`` just before and after itself (:attr:`Timing.window_monotonic`,
  warm-up excluded) in whichever process it runs, and the parent attributes to a row exactly the
  samples that *arrived* inside that window. This is correct across worker processes because
  ``time.monotonic()`` is ``CLOCK_MONOTONIC`` on Linux, one clock for the whole system; so
  worker start-up, session creation, warm-up and the probe batch never count. A row's
  ``power_w`` is the mean of its samples' total power (the rail rule of
  :mod:`mind_edge.devices.tegrastats`), ``energy_mj_per_image = mean mW x timed_s / (iterations
  x batch)``; the ``telemetry`` section keeps the rail, interval, idle baseline, sample counts
  and the energy above idle. A window with no sample (shorter than the interval) has null power.
  Samples are tagged by arrival, so each is the tegrastats reading up to one pipe hop earlier.

Backends: ``ort`` (the exported graph on ONNX Runtime), ``ort-split`` (N separate single-task
graphs run one after another + numpy routing: the naive export, for comparison), ``trt``
(native TensorRT engine of a bundle, :mod:`mind_edge.runtime.trt_runner`; reported as
unavailable where TensorRT is absent), and the PyTorch baselines ``torch`` (the faster of
``torch-loop`` and ``torch-stacked`` per batch size) and ``reference`` from :mod:`mind_edge.torch_backends` (imported lazily, only in their own
worker processes).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mind_edge.errors import ConfigError, MindEdgeError

log = logging.getLogger(__name__)

RESULTS_SCHEMA = 1
CV_WARN = 0.05
BACKENDS = ("ort", "ort-split", "trt", "openvino", "torch", "torch-loop", "torch-stacked", "reference")
#: --precision values: the graph (ort, openvino) or engine (trt) precision of a row; bf16 is a
#: compute precision only (OpenVINO's hint on the FP32 graph; ONNX Runtime's CPU EP has no BF16 convolution)
BENCH_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TORCH_BACKENDS = ("torch", "torch-loop", "torch-stacked", "reference")
PERCENTILES = (50, 90, 95, 99)
INPUT_NAME = "image"
PROBE_BATCH = 8
IDLE_SECONDS = 1.0  # --monitor: idle power baseline before the first row
MIN_WINDOW_SAMPLES = 5  # --monitor: fewer tegrastats samples in a timed loop give a warning
TELEMETRY_FIELDS = ("power_w", "energy_mj_per_image", "gpu_load_pct", "max_temp_c")


class BackendUnavailable(MindEdgeError):
    """A backend cannot run here (package missing, no engine, unsupported bundle layout)."""


# ----------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between order statistics.

    With the values sorted as ``v[0] <= ... <= v[n-1]``, the position is ``(n - 1) * q / 100``
    and the result interpolates the two neighbours (numpy's default ``linear`` method).
    """
    if not 0 <= q <= 100:
        raise ConfigError(f"a percentile must be between 0 and 100, got {q}")
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size == 0:
        raise ConfigError("a percentile of no values is undefined; time at least one iteration")
    pos = (v.size - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, v.size - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one timed loop (milliseconds per batch)."""

    batch: int
    iterations: int
    wall_s: float  # wall time of the timed loop
    mean_ms: float
    std_ms: float  # sample standard deviation (ddof=1; 0 for one iteration)
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    cv: float  # std / mean
    throughput_ips: float  # images per second = iterations * batch / wall_s

    @property
    def noisy(self) -> bool:
        return self.cv > CV_WARN

    def to_json(self) -> dict:
        d = asdict(self)
        d["noisy"] = self.noisy
        return d


def summarize(latencies_s: Sequence[float], batch: int, wall_s: float | None = None) -> LatencyStats:
    """Statistics of per-iteration latencies (seconds) of batches of ``batch`` images.

    ``wall_s`` is the wall time of the whole timed loop (default: the sum of the latencies);
    throughput is ``len(latencies) * batch / wall_s``.
    """
    lat = np.asarray(latencies_s, dtype=np.float64)
    if lat.size == 0:
        raise ConfigError("no timed iteration to summarise; raise --min-iters or --min-seconds")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    wall = float(lat.sum() if wall_s is None else wall_s)
    if not wall > 0:
        raise ConfigError(f"the timed loop's wall time must be > 0, got {wall}")
    ms = lat * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p95, p99 = (percentile(ms, q) for q in PERCENTILES)
    return LatencyStats(
        batch=int(batch), iterations=int(lat.size), wall_s=wall, mean_ms=mean, std_ms=std, min_ms=float(ms.min()),
        max_ms=float(ms.max()), p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99, cv=std / mean if mean > 0 else 0.0,
        throughput_ips=lat.size * batch / wall,
    )


def cv_warning(stats: LatencyStats, what: str = "", threshold: float = CV_WARN) -> str | None:
    """A one-line warning when the run was noisy (CV above ``threshold``), else None."""
    if stats.cv <= threshold:
        return None
    where = f"{what}: " if what else ""
    return (f"{where}noisy timing, coefficient of variation {stats.cv:.1%} > {threshold:.0%} over {stats.iterations} "
            f"iterations (min {stats.min_ms:.3g} ms, p50 {stats.p50_ms:.3g} ms, max {stats.max_ms:.3g} ms); other "
            "processes were probably running — check `uptime`, quote the p50 and repeat on a quiet machine")


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict:
    """Least-squares ``y = intercept + slope * x`` with R² (for latency vs number of tasks)."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        raise ConfigError("a linear fit needs at least two different x values")
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2}


# ----------------------------------------------------------------------------- timing loop


@dataclass(frozen=True)
class TimingConfig:
    """trtexec-style timing: ``--warmUp`` (seconds here), ``--iterations`` and ``--duration``."""

    warmup_seconds: float = 0.2
    min_iters: int = 10
    min_seconds: float = 3.0

    def __post_init__(self) -> None:
        if not (isinstance(self.min_iters, int) and not isinstance(self.min_iters, bool) and self.min_iters >= 1):
            raise ConfigError(f"--min-iters must be an integer >= 1, got {self.min_iters!r}")
        for name in ("warmup_seconds", "min_seconds"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number of seconds >= 0, got {v!r}")


@dataclass(frozen=True)
class Timing:
    latencies_s: tuple[float, ...]
    wall_s: float
    warmup_iters: int
    warmup_s: float
    # time.monotonic() just before and just after the timed loop (warm-up excluded): the window
    # in which --monitor's tegrastats samples are attributed to this loop
    window_monotonic: tuple[float, float] | None = None


def time_loop(fn: Callable[[], Any], config: TimingConfig, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Warm up for ``config.warmup_seconds`` (at least one call), then time calls of ``fn`` until
    at least ``config.min_iters`` iterations and ``config.min_seconds`` seconds have passed."""
    t0 = clock()
    warm = 0
    while True:
        fn()
        warm += 1
        if clock() - t0 >= config.warmup_seconds:
            break
    warmup_s = clock() - t0
    lat: list[float] = []
    m0 = time.monotonic()
    start = clock()
    now = start
    while len(lat) < config.min_iters or now - start < config.min_seconds:
        a = clock()
        fn()
        now = clock()
        lat.append(now - a)
    m1 = time.monotonic()
    return Timing(latencies_s=tuple(lat), wall_s=now - start, warmup_iters=warm, warmup_s=warmup_s,
                  window_monotonic=(m0, m1))


# ----------------------------------------------------------------------------- machine context


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; on Jetsons the board model from the device tree)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
        if model:
            return model
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status`` — the high-water mark of this process image.
    (``getrusage``'s ``ru_maxrss`` is *not* used there: Linux carries it over ``fork`` + ``exec``,
    so a worker started by a parent that had loaded PyTorch would report the parent's peak.)
    Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """Current resident set size in MiB (``/proc/self/statm``; the peak where that is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return peak_rss_mb()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that matter, read from metadata (imports nothing)."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("mind-edge", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover
        return None


def machine_context(threads: int) -> dict:
    """Where and how a benchmark ran (DESIGN §5: every result records its context)."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        mem = None
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "logical_cpus": os.cpu_count(),
        "available_cpus": available_cpus(),
        "memory_gib": None if mem is None else round(mem, 1),
        "threads": int(threads),
        "versions": package_versions(),
        "load_average_start": load_average(),
    }


# ----------------------------------------------------------------------------- GEMM peak


def _gemm_model(n: int):
    """An ``[n, n] x [n, n]`` float32 MatMul graph (the GEMM peak probes of ORT and OpenVINO)."""
    from mind_edge.errors import require

    onnx = require("onnx", "export", "building the GEMM micro-benchmark graph")
    helper, TP = onnx.helper, onnx.TensorProto
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info("A", TP.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("C", TP.FLOAT, [n, n])],
                              [onnx.numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ort_matmul_session(n: int, threads: int):
    import onnxruntime as ort

    model = _gemm_model(n)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def gemm_peak(threads: int, *, sizes: Sequence[int] = (256, 512, 1024, 2048), seconds_per_size: float = 0.3,
              engine: str = "auto") -> dict:
    """Peak float32 GFLOP/s of this machine from a square GEMM micro-benchmark.

    ``engine``: ``ort`` = ONNX Runtime MatMul (MLAS SGEMM) with ``threads`` intra-op threads,
    ``numpy`` = numpy's BLAS (its own thread count: set ``OPENBLAS_NUM_THREADS`` /
    ``OMP_NUM_THREADS`` before starting Python), ``auto`` = ``ort`` when ONNX Runtime and onnx
    are importable. Each size runs for ``seconds_per_size`` (at least 3 timed calls, after one
    warm-up); the peak is the best per-size median.
    """
    if engine == "auto":
        engine = "ort" if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx") else "numpy"
    if engine not in ("ort", "numpy"):
        raise ConfigError(f"unknown GEMM engine {engine!r}; use ort, numpy or auto")
    per_size = {}
    cfg = TimingConfig(warmup_seconds=0.0, min_iters=3, min_seconds=seconds_per_size)
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        if engine == "ort":
            sess = _ort_matmul_session(n, threads)
            fn = lambda s=sess, a=a: s.run(None, {"A": a})  # noqa: E731
        else:
            b = rng.standard_normal((n, n)).astype(np.float32)
            fn = lambda a=a, b=b: a @ b  # noqa: E731
        timing = time_loop(fn, cfg)
        per_size[str(n)] = 2.0 * n**3 / float(np.median(timing.latencies_s)) / 1e9
    best = max(per_size, key=per_size.get)
    return {
        "engine": "onnxruntime MatMul (MLAS SGEMM)" if engine == "ort" else "numpy matmul (BLAS)",
        "threads": int(threads) if engine == "ort" else os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "BLAS default",
        "gflops": per_size[best], "size": int(best), "per_size_gflops": per_size,
        "note": "square float32 C = A x B, median of >= 3 calls per size; peak = best size",
    }


def _ort_int8_matmul_session(n: int, threads: int):
    import onnxruntime as ort

    from mind_edge.errors import require

    onnx = require("onnx", "export", "building the INT8 GEMM micro-benchmark graph")
    helper, TP = onnx.helper, onnx.TensorProto
    b = np.random.default_rng(1).integers(-127, 128, (n, n)).astype(np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["C"])], "gemm_int8",
                              [helper.make_tensor_value_info("A", TP.UINT8, [n, n])],
                              [helper.make_tensor_value_info("C", TP.INT32, [n, n])],
                              [onnx.numpy_helper.from_array(b, "B"), onnx.numpy_helper.from_array(np.array(128, np.uint8), "a_zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _openvino_matmul(n: int, threads: int, hint: str):
    import openvino as ov

    model = _gemm_model(n)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": hint})
    return compiled.create_infer_request()


def precision_peak(threads: int, precision: str, *, sizes: Sequence[int] = (256, 512, 1024, 2048),
                   seconds_per_size: float = 0.3) -> dict | None:
    """Peak GOP/s of one compute precision, measured like :func:`gemm_peak` (square GEMMs, best
    per-size median, same threads; 2 ops per multiply-accumulate).

    ``fp32``: :func:`gemm_peak`. ``int8``: ONNX Runtime ``MatMulInteger`` with uint8 x int8
    inputs (MLAS's U8S8 QGEMM: AVX-512 VNNI / AMX where the CPU has them — the kernels the
    INT8 convolutions use). ``bf16``: OpenVINO ``MatMul`` with ``INFERENCE_PRECISION_HINT=bf16``
    (None without OpenVINO). Returns None when the precision cannot be measured here.
    """
    if precision == "fp32":
        return gemm_peak(threads, sizes=sizes, seconds_per_size=seconds_per_size)
    if precision == "int8":
        if not (importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx")):
            return None
        make = lambda n: _ort_int8_matmul_session(n, threads)  # noqa: E731
        rng = np.random.default_rng(0)
        feed = lambda n: {"A": rng.integers(0, 256, (n, n)).astype(np.uint8)}  # noqa: E731
        call = lambda sess, f: sess.run(None, f)  # noqa: E731
        engine = "onnxruntime MatMulInteger (MLAS U8S8 QGEMM)"
    elif precision == "bf16":
        if not (importlib.util.find_spec("openvino") and importlib.util.find_spec("onnx")):
            return None
        make = lambda n: _openvino_matmul(n, threads, "bf16")  # noqa: E731
        rng = np.random.default_rng(0)
        feed = lambda n: {"A": rng.standard_normal((n, n)).astype(np.float32)}  # noqa: E731
        call = lambda req, f: req.infer(f)  # noqa: E731
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
    except Exception as exc:  # a backend that cannot run this probe: no peak, the row's roofline stays empty
        log.warning("the %s GEMM peak could not be measured: %s", precision, exc)
        return None
    best = max(per_size, key=per_size.get)
    return {"engine": engine, "threads": int(threads), "gflops": per_size[best], "size": int(best),
            "per_size_gflops": per_size, "precision": precision,
            "note": f"square {precision} GEMM, median of >= 3 calls per size; peak = best size; GOP/s (2 ops per MAC)"}


# ----------------------------------------------------------------------------- model sources


@dataclass(frozen=True)
class ModelSource:
    """Files a worker loads for one task count (written by the parent, read by the workers)."""

    num_tasks: int
    onnx: str  # the graph the ``ort`` backend runs (bundle model.onnx or a built variant)
    layout: str
    variant: str  # label of this graph variant (layout, e.g. "shared"; "shared/pad-shortcut")
    input_shape: tuple[int, int, int]
    temperature: float
    arrays_onnx: str | None = None  # a shared-layout graph the torch backends rebuild the network from
    bundle: str | None = None  # bundle folder (trt engines live there)
    split_dir: str | None = None  # N single-task graphs for ort-split
    flops: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # the graph's precision (fp32 | fp16 | int8; bf16 rows run the fp32 graph)
    probe: str | None = None  # .npy of probe inputs (default: seeded random inputs)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["flops"] = dict(self.flops)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ModelSource":
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "flops": dict(d.get("flops", {}))})


def subset_tasks(arrays, k: int):
    """The network of the first ``k`` tasks of ``arrays`` (their BN sets and heads; all weights)."""
    from mind_edge.runtime.graph import NetArrays, NormArrays

    if not 1 <= k <= arrays.num_tasks:
        raise ConfigError(f"cannot take {k} tasks of a network with {arrays.num_tasks}; use 1..{arrays.num_tasks}")
    if k == arrays.num_tasks:
        return arrays
    norms = tuple(NormArrays(x.name, x.sets[:k]) for x in arrays.norms)
    return NetArrays(net=dict(arrays.net), layers=arrays.layers, norms=norms, heads=arrays.heads[:k])


def synthetic_arrays(net: Mapping[str, Any], num_tasks: int, classes_per_task: int, *, seed: int = 0,
                     use_torch: bool | None = None):
    """A randomly initialised network (latency does not depend on the weight values).

    With PyTorch: :func:`mind_edge.export.synthetic.random_model` (random owners, BN sets
    calibrated on random inputs, standardised heads: activations at a trained network's scale).
    Without it: the torch-free :func:`mind_edge.runtime.graph.random_arrays`. Returns
    ``(arrays, how)``.
    """
    from mind_edge.runtime.graph import random_arrays

    classes = [list(range(classes_per_task * t, classes_per_task * (t + 1))) for t in range(num_tasks)]
    if use_torch is None:
        use_torch = importlib.util.find_spec("torch") is not None
    if use_torch:
        from mind_edge.export.arrays import arrays_from_model
        from mind_edge.export.synthetic import random_model
        from mind_edge.nets import NetConfig

        cfg = NetConfig.from_json({**dict(net), "capacity": max(int(net.get("capacity", num_tasks)), num_tasks)})
        return arrays_from_model(random_model(cfg, classes, seed=seed)), "mind_edge.export.synthetic.random_model"
    return random_arrays(net, classes, seed=seed), "mind_edge.runtime.graph.random_arrays"


@dataclass(frozen=True)
class GraphVariant:
    """How the ``ort`` graph of a synthetic model is built: layout and DownsampleA form."""

    layout: str = "shared"
    shortcut: str = "conv"

    @property
    def name(self) -> str:
        return self.layout if self.shortcut == "conv" else f"{self.layout}/{self.shortcut}-shortcut"

    @classmethod
    def parse(cls, text: str) -> "GraphVariant":
        """``shared``, ``folded``, ``shared/pad`` or ``folded/pad``."""
        from mind_edge.runtime.graph import LAYOUTS, SHORTCUTS

        layout, _, shortcut = text.strip().partition("/")
        shortcut = (shortcut or "conv").replace("-shortcut", "")
        if layout not in LAYOUTS or shortcut not in SHORTCUTS:
            raise ConfigError(f"unknown graph variant {text!r}; use one of {', '.join(LAYOUTS)}, optionally with /pad "
                              "(Slice+Pad shortcuts instead of the default 1x1 selection convs)")
        return cls(layout, shortcut)


def _write(path: Path, model) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return str(path)


def prepare_sources(workdir: Path, arrays, *, tasks: Sequence[int], variants: Sequence[GraphVariant],
                    temperature: float, opset: int | None = None, backends: Sequence[str] = ("ort",),
                    bundle: Path | None = None, bundle_layout: str | None = None) -> list[ModelSource]:
    """Write the graphs the workers need into ``workdir``: for every task count and variant
    the ``ort`` graph (the bundle's own ``model.onnx`` at its full task count), a shared graph for
    the torch backends and the single-task graphs of ``ort-split`` when those are asked for."""
    from mind_edge.flops import arrays_flops
    from mind_edge.runtime.graph import CONTRACT, build_graph, subnetwork_arrays

    opset = int(opset or CONTRACT.opset)
    c, h, w = int(arrays.net["in_channels"]), *(int(v) for v in arrays.net["input_size"])
    need_arrays = any(b in TORCH_BACKENDS for b in backends)
    out: list[ModelSource] = []
    for k in tasks:
        sub = subset_tasks(arrays, int(k))
        folder = workdir / f"tasks-{k}"
        flops = arrays_flops(sub).to_json()
        shared_path: str | None = None
        if need_arrays:
            if bundle is not None and k == arrays.num_tasks and bundle_layout == "shared":
                shared_path = str(bundle / "model.onnx")
            else:
                shared_path = _write(folder / "arrays-shared.onnx", build_graph(sub, layout="shared", temperature=temperature, opset=opset))
        split_dir = None
        if "ort-split" in backends:
            split = folder / "split"
            for t in range(k):
                single = subnetwork_arrays(sub, t)
                _write(split / f"task-{t}.onnx", build_graph(single, layout="folded", temperature=temperature, opset=opset))
            split_dir = str(split)
        for v in variants:
            if bundle is not None and k == arrays.num_tasks and v.layout == bundle_layout and v.shortcut == "conv":
                path, bdir = str(bundle / "model.onnx"), str(bundle)
            else:
                path = _write(folder / f"{v.name.replace('/', '-')}.onnx",
                              build_graph(sub, layout=v.layout, temperature=temperature, opset=opset, shortcut=v.shortcut))
                bdir = str(bundle) if bundle is not None and k == arrays.num_tasks else None
            out.append(ModelSource(num_tasks=int(k), onnx=path, layout=v.layout, variant=v.name, input_shape=(c, h, w),
                                   temperature=float(temperature), arrays_onnx=shared_path, bundle=bdir,
                                   split_dir=split_dir, flops=flops))
    return out


def synthetic_sources(workdir: Path, *, arch: str, input_shape: Sequence[int], tasks: Sequence[int], width: float = 1.0,
                      classes_per_task: int = 10, variants: Sequence[GraphVariant] = (GraphVariant(),),
                      backends: Sequence[str] = ("ort",), temperature: float = 1.0, seed: int = 0,
                      use_torch: bool | None = None, precisions: Sequence[str] = ("fp32",),
                      calibration_images: int = 64) -> tuple[list[ModelSource], dict]:
    """Sources of a randomly initialised ``arch`` network (the largest task count, subsets for the
    smaller ones: the sweep adds tasks to one network) and the model description.

    ``precisions`` adds FP16/BF16/INT8 rows (:func:`precision_sources`); the INT8 graph of a random
    network is calibrated on ``calibration_images`` seeded standard-normal inputs (the same
    distribution the timing inputs come from)."""
    if len(input_shape) != 3 or min(int(v) for v in input_shape) < 1:
        raise ConfigError(f"--input-shape must be C,H,W (e.g. 3,32,32), got {list(input_shape)}")
    if not tasks or min(tasks) < 1:
        raise ConfigError(f"--tasks must be integers >= 1, got {list(tasks)}")
    if classes_per_task < 1:
        raise ConfigError(f"--classes-per-task must be >= 1, got {classes_per_task}")
    c, h, w = (int(v) for v in input_shape)
    n = max(int(t) for t in tasks)
    net = {"arch": arch, "in_channels": c, "input_size": [h, w], "width": float(width), "capacity": max(n, 1)}
    if c not in (1, 3):
        raise ConfigError(f"--input-shape: MIND networks take 1 or 3 input channels, got {c}")
    from mind_edge.runtime.graph import plan_net

    plan_net(net)  # raises for an unknown architecture
    arrays, how = synthetic_arrays(net, n, int(classes_per_task), seed=seed, use_torch=use_torch)
    sources = prepare_sources(workdir, arrays, tasks=sorted(set(int(t) for t in tasks)), variants=variants,
                              temperature=temperature, backends=backends)
    extra = [p for p in precisions if p != "fp32"]
    if extra:
        calib = np.random.default_rng(seed + 7).standard_normal((int(calibration_images), c, h, w)).astype(np.float32)
        sources += precision_sources(workdir, sources, arrays, precisions=extra, calibration=calib,
                                     temperature=temperature)
    info = {"source": "synthetic", "weights": f"random ({how}, seed {seed})", "net": net,
            "precisions": list(precisions),
            "calibration": f"{calibration_images} standard-normal inputs (seed {seed + 7})" if "int8" in extra else None,
            "classes_per_task": int(classes_per_task), "tasks": sorted(set(int(t) for t in tasks)),
            "variants": [v.name for v in variants], "temperature": temperature,
            "description": f"{arch} width {width:g}, {c}x{h}x{w}, {n} tasks x {classes_per_task} classes (random weights)"}
    return sources, info


def bundle_sources(workdir: Path, bundle_dir: str | os.PathLike, *, tasks: Sequence[int] | None = None,
                   variants: Sequence[GraphVariant] | None = None,
                   backends: Sequence[str] = ("ort",),
                   precisions: Sequence[str] = ("fp32",)) -> tuple[list[ModelSource], dict]:
    """Sources of a bundle: its own ``model.onnx`` at its task count; other task counts (the first
    k tasks) and other graph variants are rebuilt from a shared-layout bundle's arrays.

    An FP16/INT8 bundle is read through its weights (FP16 graph, INT8 master); its FP32 graph
    is rebuilt, its own ``model.onnx`` is the row of its precision. ``precisions`` adds the
    FP16/INT8 graphs of the same network (INT8 calibrated on the bundle's ``calibration.npz``,
    else on its probe batch) — :func:`precision_sources`."""
    from mind_edge.flops import network_flops
    from mind_edge.runtime.bundle import Bundle
    from mind_edge.runtime.graph import read_arrays
    from mind_edge.runtime import precision as prec

    b = Bundle.load(bundle_dir)
    n = len(b.task_classes)
    layout = str(b.meta["layout"])
    temperature = float(b.meta["temperature"])
    tasks = sorted(set(int(t) for t in (tasks or [n])))
    own = prec.bundle_precision(b)
    variants = list(variants or [GraphVariant(layout if own == "fp32" else "shared")])
    if min(tasks) < 1 or max(tasks) > n:
        raise ConfigError(f"bundle {b.path} holds {n} tasks; --tasks must lie in 1..{n}, got {tasks}")
    info = {"source": "bundle", "bundle": str(b.path), "layout": layout, "tasks": tasks, "temperature": temperature,
            "variants": [v.name for v in variants], "opset": b.meta.get("opset"), "precision": own,
            "description": f"bundle {b.path.name} ({layout} layout, {n} tasks)"}
    probe = b.probe().get("image")
    probe_path = None
    calib_images = prec.bundle_calibration(b)
    if calib_images is not None:  # real images of the run (the probe batch is half random-normal inputs)
        probe_path = str(workdir / "probe.npy")
        np.save(probe_path, np.ascontiguousarray(calib_images[:32], dtype=np.float32))
        info["probe"] = f"the first {min(32, calib_images.shape[0])} of the bundle's calibration images"
    elif probe is not None:
        probe_path = str(workdir / "probe.npy")
        np.save(probe_path, np.ascontiguousarray(probe, dtype=np.float32))
        info["probe"] = f"the bundle's probe batch ({probe.shape[0]} images)"
    if own != "fp32" or any(p != "fp32" for p in precisions):
        arrays = prec.bundle_arrays(b)
        info["net"] = dict(arrays.net)
        info["description"] = (f"bundle {b.path.name}: {arrays.net['arch']} width {arrays.net['width']:g}, "
                               f"{arrays.net['in_channels']}x{arrays.net['input_size'][0]}x{arrays.net['input_size'][1]}, "
                               f"{n} tasks ({own} bundle)")
        reuse = own == "fp32" and layout == "shared"
        srcs = prepare_sources(workdir, arrays, tasks=tasks, variants=variants, temperature=temperature,
                               opset=b.meta.get("opset"), backends=backends, bundle=b.path,
                               bundle_layout=layout if reuse else None)
        calib, note = prec.bundle_calibration(b), "the bundle's calibration.npz"
        if calib is None:
            calib, note = probe, "the bundle's probe batch (the bundle has no calibration.npz)"
        srcs = [replace(sr, probe=probe_path) for sr in srcs]
        srcs += precision_sources(workdir, srcs, arrays, precisions=[p for p in precisions if p != "fp32"],
                                  calibration=calib, temperature=temperature, opset=b.meta.get("opset"),
                                  own={own: str(b.model_path)} if own != "fp32" else None)
        info["precisions"] = list(precisions)
        info["calibration"] = note if "int8" in precisions else None
        return srcs, info
    if layout == "shared":
        arrays = read_arrays(b.model_path)
        info["net"] = dict(arrays.net)
        info["description"] = (f"bundle {b.path.name}: {arrays.net['arch']} width {arrays.net['width']:g}, "
                               f"{arrays.net['in_channels']}x{arrays.net['input_size'][0]}x{arrays.net['input_size'][1]}, "
                               f"{n} tasks ({layout} layout)")
        srcs = prepare_sources(workdir, arrays, tasks=tasks, variants=variants, temperature=temperature,
                               opset=b.meta.get("opset"), backends=backends, bundle=b.path, bundle_layout=layout)
        return [replace(sr, probe=probe_path) for sr in srcs], info
    # a folded bundle cannot be read back into arrays: only its own graph at its own task count
    if tasks != [n] or any(v.layout != layout or v.shortcut != "conv" for v in variants):
        raise ConfigError(f"bundle {b.path} has the {layout} layout, which cannot be rebuilt for other task counts or "
                          f"layouts; benchmark it as it is (--tasks {n}) or export it with --layout shared")
    import onnx

    from mind_edge.runtime.graph import graph_meta

    meta = graph_meta(onnx.load(str(b.model_path), load_external_data=False))
    info["net"] = meta["net"]
    flops = network_flops(meta["net"], [len(c) for c in b.task_classes]).to_json()
    src = ModelSource(num_tasks=n, onnx=str(b.model_path), layout=layout, variant=layout,
                      input_shape=tuple(b.input.shape), temperature=temperature, arrays_onnx=None,
                      bundle=str(b.path), split_dir=None, flops=flops, probe=probe_path)
    return [src], info


def precision_sources(workdir: Path, base: Sequence[ModelSource], arrays, *, precisions: Sequence[str],
                      calibration: np.ndarray | None, temperature: float, opset: int | None = None,
                      own: Mapping[str, str] | None = None) -> list[ModelSource]:
    """FP16 / BF16 / INT8 rows of the same network, one per task count of ``base`` (its first
    variant): ``fp16`` the FP16 graph, ``int8`` the INT8 QDQ graph calibrated on ``calibration``
    (normalised float32 NCHW), ``bf16`` the FP32 graph (a compute precision: OpenVINO's hint).
    ``own`` maps a precision to a graph that already exists (a precision bundle's model.onnx)."""
    from mind_edge.runtime import precision as prec

    out: list[ModelSource] = []
    for k in sorted({s.num_tasks for s in base}):
        first = next(s for s in base if s.num_tasks == k)
        sub = subset_tasks(arrays, k)
        for p in precisions:
            if p not in BENCH_PRECISIONS:
                raise ConfigError(f"unknown precision {p!r}; choose from {', '.join(BENCH_PRECISIONS)}")
            if p == "bf16":
                out.append(replace(first, precision="bf16", variant=f"{first.variant}"))
                continue
            if own and p in own and k == arrays.num_tasks:
                path = own[p]
            elif p == "fp16":
                path = _write(workdir / f"tasks-{k}" / "fp16.onnx", prec.fp16_model(sub, temperature=temperature, opset=opset))
            else:
                if calibration is None:
                    raise ConfigError("the INT8 rows need calibration images; none are available for this model")
                path = _write(workdir / f"tasks-{k}" / "int8.onnx",
                              prec.int8_model(sub, calibration, temperature=temperature, opset=opset))
            variant = "shared fp16" if p == "fp16" else "int8 per-task QDQ"
            out.append(replace(first, onnx=path, precision=p, variant=variant,
                               layout="shared" if p == "fp16" else "folded"))
    return out


# ----------------------------------------------------------------------------- backends


@dataclass
class Opened:
    """An activated runner plus what opening it cost."""

    runner: Any  # a mind_edge.runtime.runners.Runner
    start_s: float
    model_bytes: int
    providers: list[str]
    precision: str = "fp32"
    notes: str = ""
    variant: str = ""
    compute_precision: str | None = None  # what the backend computes in (None: = precision)


class SplitOrtRunner:
    """N single-task ONNX graphs run one after another, routed in numpy (the naive export)."""

    name = "ort-split"

    def __init__(self, folder: str | os.PathLike, num_tasks: int, temperature: float, *, threads: int | None,
                 providers: Sequence[str] | None = None) -> None:
        from mind_edge.runtime.runners import OrtRunner

        self.paths = [Path(folder) / f"task-{t}.onnx" for t in range(num_tasks)]
        self.runners = [OrtRunner(p, providers=providers, threads=threads) for p in self.paths]
        self.temperature = float(temperature)
        self.table = None
        self.providers_used: list[str] = []

    def activate(self) -> None:
        from mind_edge.runtime.routing import PAD_LOGIT

        self.pad = PAD_LOGIT
        self._routing()
        for r in self.runners:
            r.activate()
        self.providers_used = list(self.runners[0].providers_used)

    def deactivate(self) -> None:
        for r in self.runners:
            r.deactivate()

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mind_edge.runtime.routing import route_numpy

        outs = [r.infer(feed) for r in self.runners]
        parts = [o["task_logits"] for o in outs]
        cmax = max(p.shape[2] for p in parts)
        b = parts[0].shape[0]
        logits = np.full((b, len(parts), cmax), self.pad, dtype=np.float32)
        for t, p in enumerate(parts):
            logits[:, t, : p.shape[2]] = p[:, 0]
        if self.table is None:
            self.table = self._table(cmax)
        features = np.concatenate([o["task_features"] for o in outs], axis=1) if "task_features" in outs[0] else None
        # route like the shared graph: the single-task graphs' policy and statistics
        r = route_numpy(logits, self.table, self.temperature, self.policy, stats=self.stats, task_features=features)
        out = {"label": r.label, "task": r.task, "confidence": r.confidence, "task_confidence": r.task_confidence,
               "task_logits": logits}
        if features is not None:
            out["task_features"] = features
        return out

    def _table(self, cmax: int) -> np.ndarray:
        import onnx  # the graphs' metadata holds each task's global classes

        from mind_edge.runtime.graph import graph_meta
        from mind_edge.runtime.routing import class_table

        classes = [graph_meta(onnx.load(str(p), load_external_data=False))["classes"][0] for p in self.paths]
        return class_table(classes, cmax)

    def _routing(self) -> None:
        """The policy of the single-task graphs and, for score policies, each task's statistics."""
        from mind_edge.runtime.graph import graph_policy, read_routing_stats
        from mind_edge.runtime.routing import get_policy

        self.policy = graph_policy(self.paths[0])
        self.stats = None
        if get_policy(self.policy).needs_stats:
            self.stats = [read_routing_stats(p)[0] for p in self.paths]


def _ort_open(src: ModelSource, threads: int | None, providers: Sequence[str] | None,
              sub_batch: int | None = None) -> Opened:
    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailable("onnxruntime is not installed: pip install 'mind-edge[ort]'")
    from mind_edge.runtime.runners import OrtRunner

    if src.precision == "bf16":
        raise BackendUnavailable("ONNX Runtime's CPU execution provider has no BF16 convolution kernels (bf16 is a "
                                 "compute precision here: --backend openvino runs it)")
    t0 = time.perf_counter()
    runner = OrtRunner(src.onnx, providers=providers, threads=threads, sub_batch="auto" if sub_batch is None else sub_batch)
    runner.activate()
    variant = src.variant if sub_batch is None else f"{src.variant}, {'whole batch' if sub_batch == 0 else f'sub-batch {sub_batch}'}"
    compute = src.precision
    notes = f"{src.variant} graph, {runner.sub_batch or 'whole'} image(s) per ONNX Runtime call"
    if src.precision == "fp16" and runner.providers_used[0] == "CPUExecutionProvider":
        compute = "fp32"
        notes += "; the CPU execution provider has no FP16 convolution: it casts to FP32 (FP16-rounded weights)"
    return Opened(runner, time.perf_counter() - t0, Path(src.onnx).stat().st_size, list(runner.providers_used),
                  precision=src.precision, notes=notes, variant=variant, compute_precision=compute)


def _openvino_open(src: ModelSource, threads: int | None, hint: str | None) -> Opened:
    """OpenVINO on the CPU: ``hint`` ``default`` keeps its default precision (BF16 on CPUs with
    AVX-512 BF16/AMX), else the row's precision as ``INFERENCE_PRECISION_HINT`` (an INT8 graph
    runs with the default: its QDQ nodes make OpenVINO compute in INT8)."""
    if importlib.util.find_spec("openvino") is None:
        raise BackendUnavailable("openvino is not installed: pip install 'mind-edge[openvino]'")
    from mind_edge.runtime.runners import OpenVinoRunner

    if hint in (None, "default") or src.precision == "int8":
        ov_hint = None
    else:
        ov_hint = src.precision
    t0 = time.perf_counter()
    runner = OpenVinoRunner(src.onnx, threads=threads, precision_hint=ov_hint)
    try:
        runner.activate()
    except MindEdgeError as exc:
        raise BackendUnavailable(str(exc)) from None
    actual = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(str(runner.inference_precision), runner.inference_precision)
    compute = "int8" if src.precision == "int8" else actual
    label = "default" if ov_hint is None else f"hint {ov_hint}"
    variant = f"{src.variant}, {label} → {compute}"
    return Opened(runner, time.perf_counter() - t0, Path(src.onnx).stat().st_size, list(runner.providers_used),
                  precision=src.precision if ov_hint is not None or src.precision == "int8" else "default",
                  notes=f"OpenVINO CPU plugin, {label}, inference precision {runner.inference_precision}",
                  variant=variant, compute_precision=compute)


def _ort_split_open(src: ModelSource, threads: int | None, providers: Sequence[str] | None) -> Opened:
    if src.split_dir is None:
        raise BackendUnavailable("ort-split needs the single-task graphs; the parent did not write them")
    t0 = time.perf_counter()
    runner = SplitOrtRunner(src.split_dir, src.num_tasks, src.temperature, threads=threads, providers=providers)
    runner.activate()
    size = sum(p.stat().st_size for p in runner.paths)
    return Opened(runner, time.perf_counter() - t0, size, runner.providers_used,
                  notes=f"{src.num_tasks} single-task folded graphs, sequential, numpy routing", variant="1 graph per task")


def _trt_open(src: ModelSource, threads: int | None, providers: Sequence[str] | None, precision: str | None) -> Opened:
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable("the tensorrt Python package is not installed here (JetPack ships it; on x86 "
                                 "pip install tensorrt); the graph runs on ONNX Runtime instead (--backend ort)")
    try:
        trt_runner = importlib.import_module("mind_edge.runtime.trt_runner")
        runner_cls = trt_runner.TrtRunner
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"mind_edge.runtime.trt_runner is not available in this mind-edge ({exc})") from None
    if src.bundle is None:
        raise BackendUnavailable("the trt backend runs a bundle's TensorRT engine: benchmark a bundle (mind-edge bench "
                                 "BUNDLE) after 'mind-edge engine build BUNDLE' on this machine")
    t0 = time.perf_counter()
    runner = runner_cls(src.bundle, precision=precision)
    try:
        runner.activate()
    except MindEdgeError as exc:
        raise BackendUnavailable(str(exc)) from None
    rec = getattr(runner, "record", None)
    size = (Path(src.bundle) / rec.file).stat().st_size if rec is not None and getattr(rec, "file", None) else 0
    prec = getattr(getattr(rec, "fingerprint", None), "precision", None) or precision or "fp32"
    return Opened(runner, time.perf_counter() - t0, size, list(getattr(runner, "providers_used", ["tensorrt"])), prec,
                  variant=f"engine {prec}")


def _torch_open(name: str, src: ModelSource, threads: int | None) -> Opened:
    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailable("PyTorch is not installed here (pip install 'mind-edge[train]'); the torch baselines "
                                 "run on a host")
    if src.arrays_onnx is None:
        raise BackendUnavailable("the torch baselines rebuild the network from a shared-layout graph; this bundle has the "
                                 "folded layout (re-export with --layout shared to compare)")
    mod = importlib.import_module("mind_edge.torch_backends")
    return mod.open_backend(name, src.arrays_onnx, temperature=src.temperature, threads=threads)


def open_backend(name: str, src: ModelSource, *, threads: int | None = None, providers: Sequence[str] | None = None,
                 precision: str | None = None, sub_batch: int | None = None, ov_hint: str | None = None) -> Opened:
    """Open (activate) backend ``name`` on ``src``; raises :class:`BackendUnavailable` with the reason.

    ``sub_batch`` (ort only): images per ONNX Runtime call, ``0`` the whole batch, ``None`` the
    runner's default (``"auto"``: 8 on the CPU execution provider)."""
    if name == "ort":
        return _ort_open(src, threads, providers, sub_batch)
    if name == "ort-split":
        return _ort_split_open(src, threads, providers)
    if name == "trt":
        return _trt_open(src, threads, providers, precision)
    if name == "openvino":
        return _openvino_open(src, threads, ov_hint)
    if name in TORCH_BACKENDS:
        return _torch_open(name, src, threads)
    raise ConfigError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------- worker


def probe_input(shape: Sequence[int], batch: int = PROBE_BATCH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def run_worker(spec: Mapping[str, Any]) -> dict:
    """Open one backend on one model and time every batch size (in this process)."""
    src = ModelSource.from_json(spec["source"])
    name = spec["backend"]
    timing = TimingConfig(**spec["timing"])
    threads = spec.get("threads")
    rss0 = peak_rss_mb()
    out: dict[str, Any] = {"backend": name, "variant": src.variant, "tasks": src.num_tasks, "status": "ok",
                           "rss_before_open_mb": rss0}
    try:
        opened = open_backend(name, src, threads=threads, providers=spec.get("providers"), precision=spec.get("precision"),
                              sub_batch=spec.get("sub_batch"), ov_hint=spec.get("ov_hint"))
    except BackendUnavailable as exc:
        return {**out, "status": "unavailable", "reason": str(exc), "rows": []}
    runner = opened.runner
    out["variant"] = opened.variant or src.variant
    out.update(start_s=opened.start_s, model_bytes=opened.model_bytes, providers=opened.providers,
               precision=opened.precision, notes=opened.notes, rss_after_open_mb=peak_rss_mb(),
               compute_precision=opened.compute_precision or opened.precision)
    px = np.load(src.probe).astype(np.float32) if src.probe else probe_input(src.input_shape)
    probe = runner.infer({INPUT_NAME: px})
    out["probe"] = {k: np.asarray(probe[k]).tolist() for k in ("label", "task", "task_logits")}
    rows = []
    chunk = int(spec.get("chunk") or 0)
    if chunk:
        out["variant"] = f"{out['variant']}, chunks of {chunk}"
    for batch in sorted(int(b) for b in spec["batches"]):
        x = np.random.default_rng(batch).standard_normal((batch, *src.input_shape)).astype(np.float32)
        if chunk and chunk < batch:
            feeds = [{INPUT_NAME: x[i:i + chunk]} for i in range(0, batch, chunk)]
            fn = lambda feeds=feeds: [runner.infer(f) for f in feeds]  # noqa: E731
        else:
            feed = {INPUT_NAME: x}
            fn = lambda feed=feed: runner.infer(feed)  # noqa: E731
        t = time_loop(fn, timing)
        stats = summarize(t.latencies_s, batch, t.wall_s)
        row = {**stats.to_json(), "warmup_iterations": t.warmup_iters, "warmup_s": t.warmup_s,
               "peak_rss_mb": peak_rss_mb(), "chunk": chunk or None,
               "window_monotonic": list(t.window_monotonic) if t.window_monotonic else None}
        if hasattr(runner, "variant_for"):  # torch auto: the form it chose for this batch size
            row["mode"] = runner.variant_for(min(batch, chunk) if chunk else batch) + (f", chunks of {chunk}" if chunk else "")
        rows.append(row)
        msg = cv_warning(stats, f"{name} tasks={src.num_tasks} batch={batch}")
        if msg:
            log.warning("%s", msg)
    runner.deactivate()
    out["rows"] = rows
    return out


def _worker_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


def spawn_worker(spec: Mapping[str, Any], workdir: Path) -> dict:
    """Run :func:`run_worker` in a fresh Python process (clean peak RSS, no torch leaking into ORT)."""
    fd, spec_path = tempfile.mkstemp(prefix="spec-", suffix=".json", dir=workdir)
    os.close(fd)
    out_path = spec_path[:-5] + "-out.json"
    Path(spec_path).write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, "-m", "mind_edge.runtime.bench", "worker", spec_path, out_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_worker_env(spec.get("threads")))
    if proc.returncode != 0 or not Path(out_path).is_file():
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        log.debug("worker %s failed:\n%s", spec["backend"], proc.stderr)
        return {"backend": spec["backend"], "variant": spec["source"].get("variant"), "tasks": spec["source"]["num_tasks"],
                "status": "failed", "reason": f"the worker process failed: {why}", "rows": []}
    return json.loads(Path(out_path).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class BenchSpec:
    """What to benchmark (typed; the CLI parses user input into this)."""

    backends: tuple[str, ...] = ("ort",)
    batches: tuple[int, ...] = (1, 8, 64)
    threads: int | None = None  # None: every available CPU
    timing: TimingConfig = TimingConfig()
    providers: tuple[str, ...] | None = None
    precision: str | None = None
    isolate: bool = True  # every backend in a fresh process
    gemm: bool = True  # measure the GEMM peak for the roofline column
    chunk: int | None = None  # run each batch as sub-batches of this many images
    sub_batch: int | None = None  # ort only: OrtRunner's sub_batch (None = its "auto", 0 = whole batch)
    precisions: tuple[str, ...] = ("fp32",)  # rows per precision (sources from precision_sources)

    def __post_init__(self) -> None:
        if not self.backends:
            raise ConfigError("no backend to benchmark; pass --backend ort (or ort,torch,reference,trt)")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"batch sizes must be integers >= 1, got {list(self.batches)}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"--threads must be an integer >= 1, got {self.threads!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1):
            raise ConfigError(f"--chunk must be an integer >= 1, got {self.chunk!r}")
        if self.sub_batch is not None and (isinstance(self.sub_batch, bool) or not isinstance(self.sub_batch, int)
                                           or self.sub_batch < 0):
            raise ConfigError(f"--sub-batch must be an integer >= 0 (0 = whole batch), got {self.sub_batch!r}")
        bad = [p for p in self.precisions if p not in BENCH_PRECISIONS]
        if bad or not self.precisions:
            raise ConfigError(f"unknown precision(s) {', '.join(bad) or '(none)'}; choose from {', '.join(BENCH_PRECISIONS)}")

    @property
    def n_threads(self) -> int:
        return int(self.threads or available_cpus())


Progress = Callable[[str], None]


def default_jobs(spec: BenchSpec, sources: Sequence[ModelSource]) -> list[tuple]:
    """``(backend, source[, options])`` per task count: ``ort`` runs every graph variant and every
    precision's graph; ``openvino`` runs its default (the FP32 graph, no hint: the peer as users
    get it) and every precision; every other backend runs the first FP32 graph once."""
    jobs: list[tuple] = []
    for k in sorted({s.num_tasks for s in sources}):
        same = [s for s in sources if s.num_tasks == k]
        base = [s for s in same if s.precision == "fp32"] or same[:1]
        precs = [s for s in same if s.precision != "fp32"]
        for name in spec.backends:
            if name == "ort":
                jobs += [(name, s) for s in base] + [(name, s) for s in precs]
            elif name == "openvino":
                jobs.append((name, base[0], {"ov_hint": "default"}))
                if "fp32" in spec.precisions:
                    jobs.append((name, base[0], {"ov_hint": "fp32"}))
                jobs += [(name, s, {"ov_hint": s.precision}) for s in precs]
            elif name == "trt" and len(spec.precisions) > 1:
                jobs += [(name, base[0], {"precision": p}) for p in spec.precisions if p in ("fp32", "fp16", "int8")]
            else:
                jobs.append((name, base[0]))
    return jobs


def _peak_precisions(jobs: Sequence[tuple]) -> list[str]:
    """The non-FP32 peaks the rows need: int8 for INT8 graphs, bf16 for OpenVINO (its default is BF16
    on CPUs with AVX-512 BF16 / AMX)."""
    need = []
    if any(j[1].precision == "int8" for j in jobs):
        need.append("int8")
    if any(j[0] == "openvino" for j in jobs) and cpu_has_bf16():
        need.append("bf16")
    return need


def cpu_has_bf16() -> bool:
    """The CPU computes BF16 natively (x86 AVX-512 BF16 or AMX-BF16; aarch64 bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16", "bf16"))


def run_benchmark(spec: BenchSpec, sources: Sequence[ModelSource], *, workdir: Path, model_info: Mapping[str, Any],
                  progress: Progress | None = None, jobs: Sequence[tuple] | None = None,
                  monitor: Any | None = None, idle_seconds: float = IDLE_SECONDS) -> dict:
    """Benchmark every backend on every source (or exactly ``jobs``: ``(backend, source)`` or
    ``(backend, source, {"chunk": n})``); returns the report (JSON-ready).

    ``monitor``: a :class:`mind_edge.devices.tegrastats.TegrastatsMonitor` that is not started.
    It runs from before the first row to after the last (see the module docstring, *Power*):
    ``idle_seconds`` of idle baseline first, then every row's power and energy come from the
    samples inside that row's timed loop."""
    if monitor is not None and not (isinstance(idle_seconds, (int, float)) and math.isfinite(idle_seconds)
                                    and idle_seconds >= 0):
        raise ConfigError(f"the idle baseline must be a number of seconds >= 0, got {idle_seconds!r}")
    say = progress or (lambda msg: log.info("%s", msg))
    threads = spec.n_threads
    context = machine_context(threads)
    context["isolated_processes"] = spec.isolate
    gemm: list[dict] = []
    workers = []
    if jobs is None:
        jobs = default_jobs(spec, sources)
    idle = None
    if monitor is not None:
        say(f"idle power baseline ({idle_seconds:g} s of tegrastats) …")
        idle = _idle_baseline(monitor, idle_seconds)
    try:
        others = _peak_precisions(jobs)
        peaks: dict[str, list[dict]] = {p: [] for p in others}
        if spec.gemm:
            say(f"GEMM peak with {threads} thread(s) …")
            gemm.append(gemm_peak(threads))
            for p in others:
                say(f"{p} GEMM peak …")
                r = precision_peak(threads, p)
                if r is not None:
                    peaks[p].append(r)
        for name, src, *extra in jobs:
            opts = extra[0] if extra else {}
            job = {"backend": name, "source": src.to_json(), "batches": list(spec.batches), "threads": threads,
                   "providers": list(spec.providers) if spec.providers else None,
                   "precision": opts.get("precision", spec.precision),
                   "timing": asdict(spec.timing), "chunk": opts.get("chunk", spec.chunk),
                   "sub_batch": opts.get("sub_batch", spec.sub_batch), "ov_hint": opts.get("ov_hint")}
            say(f"{name} · {src.num_tasks} task(s){' · ' + src.variant if name == 'ort' else ''}"
                f"{' · chunks of ' + str(job['chunk']) if job['chunk'] else ''} …")
            if spec.isolate:
                res = spawn_worker(job, workdir)
            else:
                try:
                    res = run_worker(job)
                except MindEdgeError as exc:
                    res = {"backend": name, "variant": src.variant, "tasks": src.num_tasks, "status": "failed",
                           "reason": str(exc), "rows": []}
            res["source"] = src
            workers.append(res)
        if spec.gemm:
            gemm.append(gemm_peak(threads))
            for p in others:
                r = precision_peak(threads, p)
                if r is not None:
                    peaks[p].append(r)
    except BaseException:
        if monitor is not None:
            try:
                monitor.stop()
            except MindEdgeError:  # the benchmark's own error is the one to report
                pass
        raise
    telemetry = monitor.stop() if monitor is not None else None
    peak = max(g["gflops"] for g in gemm) if gemm else None
    context["load_average_end"] = load_average()
    peak_by = {"fp32": peak, **{p: max((r["gflops"] for r in runs), default=None) for p, runs in peaks.items()}}
    results, warnings = _rows(workers, spec, peak, peak_by)
    telemetry_section = None
    if telemetry is not None:
        telemetry_section = _telemetry(results, telemetry, idle, monitor, warnings)
    for r in results:
        r.pop("_window", None)
    report = {
        "format": "mind-edge-bench", "schema_version": RESULTS_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": dict(model_info),
        "settings": {"backends": sorted({j[0] for j in jobs}), "batches": list(spec.batches), "chunk": spec.chunk,
                     "sub_batch": spec.sub_batch,
                     "tasks": sorted({s.num_tasks for s in sources}), "threads": threads,
                     "timing": asdict(spec.timing), "providers": list(spec.providers) if spec.providers else None,
                     "precision": spec.precision, "precisions": list(spec.precisions), "monitor": monitor is not None,
                     "latency": "one Runner.infer call on a preprocessed float32 batch in host memory (host latency)"},
        "context": context,
        "gemm": {"peak_gflops": peak, "runs": gemm,
                 "peaks": {p: {"peak_gflops": peak_by.get(p), "runs": runs} for p, runs in peaks.items()},
                 "note": "peak = best of the runs before and after the backends (the machine's ceiling in this run); "
                         "each row's roofline uses the peak of the precision it computes in (fp32 for FP16 graphs on "
                         "ONNX Runtime's CPU provider)"},
        "flops": {str(s.num_tasks): dict(s.flops) for s in sources},
        "results": results,
        "linearity": _linearity(results),
        "telemetry": telemetry_section,
        "warnings": warnings,
    }
    return report


# ----------------------------------------------------------------------------- power (--monitor)


def _idle_baseline(monitor: Any, seconds: float) -> Any:
    """Start ``monitor`` and sample an idle window of ``seconds`` (longer until one sample arrived).

    Fails (stopping the monitor) before any benchmarking when tegrastats dies or prints nothing
    it can parse."""
    from mind_edge.devices.errors import DeviceError
    from mind_edge.devices.tegrastats import TelemetryResult

    monitor.start()
    try:
        t0 = time.monotonic()
        time.sleep(seconds)
        patience = max(5.0, 20 * monitor.interval_ms / 1000)
        if not monitor.wait_for_samples(1, timeout_s=patience):
            if not monitor.running:
                monitor.stop()  # raises with tegrastats' own error output when it printed nothing
            raise DeviceError(
                f"{monitor.tegrastats_path} printed no tegrastats sample in {seconds + patience:.0f} s "
                f"(--interval {monitor.interval_ms}); check that it is tegrastats and that it runs "
                f"on its own: {monitor.tegrastats_path} --interval {monitor.interval_ms}")
        t1 = time.monotonic()
    except BaseException:
        if monitor.running:
            try:
                monitor.stop()
            except MindEdgeError:
                pass
        raise
    # every sample so far: the monitor started just before t0, the benchmark starts after t1
    return TelemetryResult.window(monitor.samples, -math.inf, t1, duration_s=t1 - t0, interval_ms=monitor.interval_ms)


def _watts(mw: float | None) -> float | None:
    return None if mw is None else mw / 1000.0


def _telemetry(results: list[dict], telemetry: Any, idle: Any, monitor: Any, warnings: list[str]) -> dict:
    """Fill every ok row's power fields from the samples inside its timed window; the report's
    ``telemetry`` section (idle baseline, per-row sample counts, energy above idle)."""
    from mind_edge.devices.tegrastats import TelemetryResult

    samples = telemetry.samples
    idle_mw = idle.mean_power_mw if idle is not None else None
    rows, few = [], []
    for r in results:
        window = r.get("_window")
        if r.get("status") != "ok" or not window:
            continue
        images = int(r["iterations"]) * int(r["batch"])
        w = TelemetryResult.window(samples, window[0], window[1], duration_s=r["timed_s"],
                                   interval_ms=telemetry.interval_ms)
        label = f"{r['backend']} {r['variant']} t={r['tasks']} b={r['batch']}"
        energy = above = None
        if w.mean_power_mw is not None:
            energy = w.energy_mj(images)  # mean power (mW) x timed seconds / images = mJ per image
            if idle_mw is not None:
                above = (w.mean_power_mw - idle_mw) * r["timed_s"] / images
        hot = w.max_temperature
        r.update(power_w=_watts(w.mean_power_mw), energy_mj_per_image=energy, gpu_load_pct=w.mean_gpu_load_pct,
                 max_temp_c=hot[1] if hot else None)
        if w.n_samples < MIN_WINDOW_SAMPLES:
            few.append(f"{label} ({w.n_samples})")
        rows.append({"backend": r["backend"], "variant": r["variant"], "tasks": r["tasks"], "batch": r["batch"],
                     "mode": r.get("mode"), "n_samples": w.n_samples, "timed_s": r["timed_s"], "images": images,
                     "window_monotonic": list(window), "power_w": r["power_w"], "peak_power_w": _watts(w.peak_power_mw),
                     "energy_mj_per_image": energy, "energy_mj_per_image_above_idle": above,
                     "gpu_load_pct": w.mean_gpu_load_pct, "max_temp_c": r["max_temp_c"],
                     "max_temp_sensor": hot[0] if hot else None, "max_temperatures_c": dict(w.max_temperatures_c),
                     "rail_mean_mw": dict(w.rail_mean_mw)})
    if few:
        warnings.append(f"power from fewer than {MIN_WINDOW_SAMPLES} tegrastats samples (interval {telemetry.interval_ms} ms) "
                        f"in {len(few)} row(s): {'; '.join(few)}; rows without a sample have no power. Raise "
                        "--min-seconds or lower --monitor-interval-ms")
    if telemetry.power_source is None and samples:
        warnings.append(f"tegrastats printed {len(samples)} samples but no power rail; some images hide the INA3221 "
                        "rails from normal users: run with sudo")
    hot = idle.max_temperature if idle is not None else None
    return {
        "source": "tegrastats", "tegrastats": str(monitor.tegrastats_path), "interval_ms": telemetry.interval_ms,
        "power_rail": telemetry.power_source, "n_samples": telemetry.n_samples,
        "idle": None if idle is None else {
            "seconds": idle.duration_s, "n_samples": idle.n_samples, "power_w": _watts(idle_mw),
            "gpu_load_pct": idle.mean_gpu_load_pct, "max_temp_c": hot[1] if hot else None,
            "rail_mean_mw": dict(idle.rail_mean_mw)},
        "rows": rows,
        "note": ("module power from tegrastats (a lower bound of wall power: carrier board, fan and USB are outside "
                 "the rails). A row's power_w is the mean of the samples that arrived inside its timed loop (warm-up, "
                 "process start-up and session creation excluded); energy_mj_per_image = power x the loop's timed_s / "
                 "(iterations x batch); _above_idle subtracts the idle baseline sampled before the first row"),
    }


def _agreement(probe: Mapping[str, Any] | None, ref: Mapping[str, Any] | None) -> dict | None:
    if not probe or not ref:
        return None
    a, b = np.asarray(probe["task_logits"], np.float32), np.asarray(ref["task_logits"], np.float32)
    if a.shape != b.shape:
        return None
    return {"label": float(np.mean(np.asarray(probe["label"]) == np.asarray(ref["label"]))),
            "task": float(np.mean(np.asarray(probe["task"]) == np.asarray(ref["task"]))),
            "max_abs_task_logits": float(np.abs(a - b).max()), "count": int(a.shape[0])}


def _rows(workers: Sequence[dict], spec: BenchSpec, peak_gflops: float | None,
          peaks: Mapping[str, float | None] | None = None) -> tuple[list[dict], list[str]]:
    results, warnings, noisy = [], [], []
    peaks = dict(peaks or {"fp32": peak_gflops})
    ort_probe: dict[int, Any] = {}
    reference: dict[int, int] = {}
    for i, w in enumerate(workers):
        if w["backend"] == "ort" and w.get("status") == "ok" and getattr(w["source"], "precision", "fp32") == "fp32":
            if w["source"].num_tasks not in ort_probe:  # the first (default) FP32 graph variant is the reference
                ort_probe[w["source"].num_tasks] = w.get("probe")
                reference[w["source"].num_tasks] = i
    for w in workers:
        src: ModelSource = w["source"]
        base = {"backend": w["backend"], "variant": w.get("variant") or src.variant, "tasks": src.num_tasks,
                "status": w["status"], "precision": w.get("precision") or getattr(src, "precision", "fp32")}
        if w["status"] != "ok":
            what = w["backend"] if getattr(src, "precision", "fp32") == "fp32" else f"{w['backend']} {src.precision}"
            warnings.append(f"{what} ({src.num_tasks} tasks) {w['status']}: {w.get('reason')}")
            for b in sorted(spec.batches):
                results.append({**base, "batch": b, "reason": w.get("reason"), **{k: None for k in (
                    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput_ips", "peak_rss_mb", "roofline_fraction",
                    *TELEMETRY_FIELDS)}})
            continue
        flops = int(src.flops.get("per_image", 0)) or None
        is_ref = reference.get(src.num_tasks) == workers.index(w)
        agree = None if is_ref else _agreement(w.get("probe"), ort_probe.get(src.num_tasks))
        compute = w.get("compute_precision") or w.get("precision") or "fp32"
        # the peak of the precision the row computes in; no FP16 GEMM peak is measured (FP16 graphs compute
        # in FP32 on ONNX Runtime's CPU provider), so FP16 compute is set against the FP32 peak
        peak_row = peaks.get(compute) if compute in ("bf16", "int8") else peaks.get("fp32", peak_gflops)
        for r in w["rows"]:
            achieved = flops * r["throughput_ips"] / 1e9 if flops else None
            row = {
                **base, "mode": r.get("mode"), "batch": r["batch"], "chunk": r.get("chunk"),
                "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "p95_ms": r["p95_ms"],
                "p99_ms": r["p99_ms"], "mean_ms": r["mean_ms"], "std_ms": r["std_ms"], "min_ms": r["min_ms"],
                "max_ms": r["max_ms"], "cv": r["cv"], "noisy": r["noisy"], "iterations": r["iterations"],
                "timed_s": r["wall_s"], "warmup_iterations": r["warmup_iterations"],
                "throughput_ips": r["throughput_ips"], "ms_per_image": r["p50_ms"] / r["batch"],
                "peak_rss_mb": r["peak_rss_mb"], "rss_before_open_mb": w.get("rss_before_open_mb"),
                "start_ms": w["start_s"] * 1e3, "model_bytes": w["model_bytes"], "providers": w.get("providers"),
                "precision": w.get("precision"), "compute_precision": compute, "threads": spec.n_threads,
                "notes": w.get("notes", ""), "flops_per_image": flops, "achieved_gflops": achieved,
                "roofline_peak_gflops": peak_row,
                "roofline_fraction": achieved / peak_row if achieved and peak_row else None,
                "agreement_with_ort": agree, "agreement_reference": is_ref,
                **{k: None for k in TELEMETRY_FIELDS},  # filled by --monitor
                "_window": r.get("window_monotonic"),  # dropped from the report
            }
            results.append(row)
            if r["noisy"]:
                noisy.append(f"{w['backend']} {row['variant']} t={src.num_tasks} b={r['batch']} ({r['cv']:.0%})")
        if agree is not None and (agree["label"] < 1.0 or agree["task"] < 1.0):
            warnings.append(f"{w['backend']} {w.get('variant') or src.variant} ({src.num_tasks} tasks) disagrees with ort "
                            f"fp32 on the probe batch: label "
                            f"{agree['label']:.0%}, task {agree['task']:.0%}, max |Δ task_logits| {agree['max_abs_task_logits']:.2e}")
    if noisy:
        warnings.append(f"noisy timing (coefficient of variation > {CV_WARN:.0%}) in {len(noisy)} of {len(results)} rows: "
                        f"{'; '.join(noisy[:6])}{f'; +{len(noisy) - 6} more (each row has cv and noisy in the JSON)' if len(noisy) > 6 else ''}. "
                        "Other processes were probably running: check `uptime`, quote p50 "
                        "and repeat on a quiet machine")
    return results, warnings


def summarize_from_row(r: Mapping[str, Any]) -> LatencyStats:
    keys = LatencyStats.__dataclass_fields__.keys()
    return LatencyStats(**{k: r[k] for k in keys})


def _linearity(results: Sequence[dict]) -> list[dict]:
    """Per backend, variant and batch: p50 latency vs number of tasks, least-squares line."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for r in results:
        if r.get("status") == "ok":
            groups.setdefault((r["backend"], r["variant"], r["batch"]), []).append((r["tasks"], r["p50_ms"]))
    out = []
    for (backend, variant, batch), pts in sorted(groups.items()):
        xs = sorted({t for t, _ in pts})
        if len(xs) < 2:
            continue
        fit = linear_fit([t for t, _ in pts], [v for _, v in pts])
        # two task counts determine a line exactly: R² is 1 by construction, not evidence of linearity
        out.append({"backend": backend, "variant": variant, "batch": batch, "tasks": [t for t, _ in sorted(pts)],
                    "p50_ms": [v for _, v in sorted(pts)], "ms_per_task": fit["slope"], "intercept_ms": fit["intercept"],
                    "r2": fit["r2"] if len(xs) >= 3 else None, "is_fit": len(xs) >= 3})
    return out


# ----------------------------------------------------------------------------- ORT profile


def _stage(node: str) -> str:
    if node.startswith("stem"):
        return "stem"
    if "down_a" in node:
        return "shortcut convs"
    parts = node.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return f"blocks {parts[1]}"
    return "other"


def profile_ort(onnx_path: str | os.PathLike, batch: int, *, threads: int, input_shape: Sequence[int],
                runs: int = 20, stages: Mapping[str, Sequence[int]] | None = None) -> dict:
    """Per-operator profile of one ONNX Runtime session (``SessionOptions.enable_profiling``).

    Runs ``runs`` profiled calls after 3 warm-up calls and reports, per op type and per group of
    nodes, the sum of **per-node median** kernel times (robust to preemption by other processes)
    and, for convolutions, FLOPs from the kernels' own input/output shapes and the GFLOP/s they
    reach. ``stages`` maps a label to block indices (e.g. ResNet-32's three stages).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="mind-edge-profile-") as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
        for _ in range(3 + int(runs)):
            sess.run(None, {INPUT_NAME: x})
        events = json.loads(Path(sess.end_profiling()).read_text(encoding="utf-8"))
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    flops: dict[str, int] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        times.setdefault(node, []).append(float(e["dur"]))  # microseconds
        args = e.get("args", {})
        ops[node] = args.get("op_name", "?")
        if ops[node] in ("Conv", "FusedConv") and node not in flops:
            try:
                w = next(iter(args["input_type_shape"][1].values()))
                y = next(iter(args["output_type_shape"][0].values()))
                flops[node] = int(2 * np.prod(w) * np.prod(y[2:]) * y[0])
            except (KeyError, IndexError, StopIteration, TypeError):
                pass
    # the first 3 runs are warm-up: keep the last `runs` samples of every node
    med = {n: float(np.median(v[-int(runs):])) for n, v in times.items()}
    total = sum(med.values())
    by_op: dict[str, float] = {}
    for n, us in med.items():
        by_op[ops[n]] = by_op.get(ops[n], 0.0) + us
    block_stage = {}
    for label, blocks in (stages or {}).items():
        for i in blocks:
            block_stage[f"blocks {i}"] = label
    groups: dict[str, dict[str, float]] = {}
    for n, f in flops.items():
        g = _stage(n)
        g = block_stage.get(g, g)
        d = groups.setdefault(g, {"flops": 0, "us": 0.0, "convs": 0})
        d["flops"] += f
        d["us"] += med[n]
        d["convs"] += 1
    conv_us = sum(med[n] for n in flops)
    return {
        "batch": int(batch), "threads": int(threads), "runs": int(runs),
        "sum_of_node_medians_ms": total / 1e3,
        "ops_ms": {k: v / 1e3 for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "ops_share": {k: v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])} if total else {},
        "conv_gflops": sum(flops.values()) / conv_us / 1e3 if conv_us else None,
        "conv_groups": {g: {"convs": d["convs"], "mflops": d["flops"] / 1e6, "ms": d["us"] / 1e3,
                            "gflops": d["flops"] / d["us"] / 1e3 if d["us"] else None} for g, d in groups.items()},
        "nodes": len(med),
        "note": "sum of per-node median kernel times over the profiled runs; FLOPs of each Conv from its kernel's "
                "weight and output shapes as executed (ORT's fused NCHWc convs include BN, bias, ReLU and the residual "
                "Add; channel counts may be padded to ORT's block size)",
    }


# ----------------------------------------------------------------------------- output


def write_json(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    from mind_edge.fileio import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, report)
    return path


def _label(backend: str, variant: str) -> str:
    if backend == "ort":
        return f"ort {variant}"
    return f"{backend}, {variant.split(', ', 1)[1]}" if ", chunks of" in variant else backend


def plot_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """PNG with three panels: ``ort`` p50 latency vs number of tasks (linear axes: the growth is
    linear), every backend's p50 vs tasks (log scale) and p50 per image vs batch size."""
    from mind_edge.errors import require

    require("matplotlib", "train", "plotting benchmark results (--plot)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if r.get("status") == "ok"]
    if not ok:
        raise ConfigError("no successful benchmark row to plot")
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4.8))
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in ok:
        series.setdefault((r["backend"], r["variant"], r["batch"]), []).append((r["tasks"], r["p50_ms"]))
    swept = {k: v for k, v in series.items() if len(v) > 1}  # variants measured at one task count only go to panel 3
    for (backend, variant, batch), pts in sorted((swept or series).items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax1.plot(xs, ys, marker="o", label=f"{_label(backend, variant)} b={batch}")
        if backend == "ort":
            ax0.plot(xs, ys, marker="o", label=f"{_label(backend, variant)} b={batch}")
    ax0.set_title("ort: latency vs tasks (linear axes)")
    ax0.set_ylim(bottom=0)
    ax1.set_yscale("log")
    ax1.set_title("every backend: latency vs tasks")
    for ax in (ax0, ax1):
        ax.set_xlabel("tasks (sub-networks run per image)")
        ax.set_ylabel("p50 latency per batch (ms)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    top = max(r["tasks"] for r in ok)
    by_backend: dict[tuple, list[tuple[int, float]]] = {}
    for r in ok:
        if r["tasks"] == top:
            by_backend.setdefault((r["backend"], r["variant"]), []).append((r["batch"], r["p50_ms"] / r["batch"]))
    for (backend, variant), pts in sorted(by_backend.items()):
        pts.sort()
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_label(backend, variant))
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("p50 latency per image (ms)")
    ax2.set_title(f"latency per image vs batch ({top} tasks)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    ctx = report.get("context", {})
    fig.suptitle(f"{report.get('model', {}).get('description', 'model')} — {ctx.get('cpu_model', '')}, "
                 f"{ctx.get('threads')} thread(s)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry point (worker)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mind_edge.runtime.bench worker SPEC.json OUT.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "worker":
        print("usage: python -m mind_edge.runtime.bench worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[1]).read_text(encoding="utf-8"))
    try:
        res = run_worker(spec)
    except MindEdgeError as exc:
        res = {"backend": spec["backend"], "variant": spec["source"].get("variant"), "tasks": spec["source"]["num_tasks"],
               "status": "failed", "reason": str(exc), "rows": []}
    Path(args[2]).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through spawn_worker
    sys.exit(main())
