"""Latency harness (torch-free): timing loop, statistics, machine context, GEMM roofline, workers.

Conventions (trtexec-style):

* **Timing loop** (:func:`time_loop`): a time-based warm-up (``warmup_seconds``, at least one
  call), then timed calls until both ``min_iters`` iterations and ``min_seconds`` seconds are
  reached. Latency = one ``Runner.infer`` call on a preprocessed float32 batch already in host
  memory, outputs back in host memory (trtexec's *host latency*; image decoding and
  normalisation are not part of it); with ``chunk`` the batch is run as consecutive sub-batches
  of ``chunk`` images inside the timed call (what ``Runtime.predict(batch_size=chunk)`` does).
  Throughput = images / wall time of the timed loop.
* **Statistics** (:func:`summarize`): p50/p90/p95/p99 by linear interpolation between order
  statistics (``np.percentile``), mean, sample standard deviation and the coefficient of variation
  ``std / mean``; a row is *noisy* when its CV exceeds :data:`CV_WARN` (5 %).
* **Peak RSS**: every backend runs in a fresh worker process (:func:`spawn_worker`:
  :func:`mind_edge.core.proc.spawn_call`, ``multiprocessing`` spawn), so its peak resident set
  (``VmHWM``, :func:`mind_edge.core.proc.peak_rss_mb`) holds only what that backend loads — never
  PyTorch for ``ort``. Batches run in ascending order and each row records the peak up to its end.
* **Roofline**: ``roofline_fraction = FLOPs per image x images/s / peak FLOP/s``, where the peak
  is measured in the same run by :func:`gemm_peak` — ONNX Runtime's MatMul (MLAS SGEMM, the
  library the ``ort`` convolutions run on) on square float32 matrices with the same intra-op
  thread count (numpy's BLAS when ONNX Runtime is absent). FLOPs per image come from
  :mod:`mind_edge.core.flops`: the model at N tasks runs **all N sub-networks**, so it counts N x
  one sub-network + routing.
* **Power** (``--monitor``, Jetson): *one* monitor passed in by the caller (the CLI's
  ``TegrastatsMonitor``; :mod:`mind_edge.runtime.bench.power` says what it must offer) runs in the
  parent from before the first row to after the last; it is not started per row and never inside
  a worker. First it samples ``idle_seconds`` (1 s) of idle baseline while the parent sleeps.
  Each timed loop records ``time.monotonic()`` just before and after itself
  (:attr:`Timing.window_monotonic`, warm-up excluded) in whichever process it runs, and the
  parent attributes to a row exactly the samples that *arrived* inside that window. This is
  correct across worker processes because ``time.monotonic()`` is ``CLOCK_MONOTONIC`` on Linux,
  one clock for the whole system; so worker start-up, session creation, warm-up and the probe
  batch never count. A row's ``power_w`` is the mean of its samples' total power,
  ``energy_mj_per_image = mean mW x timed_s / (iterations x batch)``; the ``telemetry`` section
  keeps the rail, interval, idle baseline, sample counts and the energy above idle. A window with
  no sample (shorter than the interval) has null power. Samples are tagged by arrival, so each is
  the tegrastats reading up to one pipe hop earlier.

Backends come from the runtime's one registry, :mod:`mind_edge.runtime.backends`: ``ort``,
``ort-split``, ``trt``, ``openvino`` and the PyTorch baselines (``torch``, ``torch-loop``,
``torch-stacked``, ``reference``), whose openers the plugin :mod:`mind_edge.torch_backends`
registers — imported only in the worker that runs them (a job's ``plugins``).

Modules: :mod:`~.stats` (statistics, timing loop), :mod:`~.machine` (context), :mod:`~.peaks`
(GEMM peaks), :mod:`~.sources` (the models), :mod:`~.worker` (one job), :mod:`~.power`
(telemetry), :mod:`~.report` (rows, JSON, plot), :mod:`~.orchestrate` (:func:`run_benchmark`),
:mod:`~.profile` (per-operator profile). Every public name is importable from here.
"""

from __future__ import annotations

from mind_edge.runtime.backends import BackendUnavailable, ModelSource, Opened, backend_names, open_backend
from mind_edge.runtime.bench.machine import (
    available_cpus,
    cpu_has_bf16,
    cpu_model,
    current_rss_mb,
    load_average,
    machine_context,
    package_versions,
    peak_rss_mb,
)
from mind_edge.runtime.bench.orchestrate import (
    RESULTS_SCHEMA,
    BenchSpec,
    Progress,
    default_jobs,
    peak_precisions,
    run_benchmark,
)
from mind_edge.runtime.bench.peaks import gemm_model, gemm_peak, precision_peak
from mind_edge.runtime.bench.power import (
    IDLE_SECONDS,
    MIN_WINDOW_SAMPLES,
    TELEMETRY_FIELDS,
    MonitorError,
    PowerMonitor,
)
from mind_edge.runtime.bench.profile import profile_ort
from mind_edge.runtime.bench.report import agreement, linearity, plot_report, result_rows, write_json
from mind_edge.runtime.bench.sources import (
    BENCH_PRECISIONS,
    GraphVariant,
    bundle_sources,
    precision_sources,
    prepare_sources,
    synthetic_arrays,
    synthetic_sources,
)
from mind_edge.runtime.bench.stats import (
    CV_WARN,
    PERCENTILES,
    LatencyStats,
    Timing,
    TimingConfig,
    cv_warning,
    linear_fit,
    percentile,
    summarize,
    summarize_from_row,
    time_loop,
)
from mind_edge.runtime.bench.worker import INPUT_NAME, PROBE_BATCH, probe_input, run_worker, spawn_worker

__all__ = [
    "BENCH_PRECISIONS",
    "CV_WARN",
    "IDLE_SECONDS",
    "INPUT_NAME",
    "MIN_WINDOW_SAMPLES",
    "PERCENTILES",
    "PROBE_BATCH",
    "RESULTS_SCHEMA",
    "TELEMETRY_FIELDS",
    "BackendUnavailable",
    "BenchSpec",
    "GraphVariant",
    "LatencyStats",
    "ModelSource",
    "MonitorError",
    "Opened",
    "PowerMonitor",
    "Progress",
    "Timing",
    "TimingConfig",
    "agreement",
    "available_cpus",
    "backend_names",
    "bundle_sources",
    "cpu_has_bf16",
    "cpu_model",
    "current_rss_mb",
    "cv_warning",
    "default_jobs",
    "gemm_model",
    "gemm_peak",
    "linear_fit",
    "linearity",
    "load_average",
    "machine_context",
    "open_backend",
    "package_versions",
    "peak_precisions",
    "peak_rss_mb",
    "percentile",
    "plot_report",
    "precision_peak",
    "precision_sources",
    "prepare_sources",
    "probe_input",
    "profile_ort",
    "result_rows",
    "run_benchmark",
    "run_worker",
    "spawn_worker",
    "summarize",
    "summarize_from_row",
    "synthetic_arrays",
    "synthetic_sources",
    "time_loop",
    "write_json",
]
