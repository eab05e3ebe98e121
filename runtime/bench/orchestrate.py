"""What to benchmark (:class:`BenchSpec`), the jobs it makes and :func:`run_benchmark`, which runs them
(each in a fresh worker process by default) between two GEMM peak measurements and assembles the report."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mind_edge.errors import ConfigError, MindEdgeError
from mind_edge.runtime.backends import ModelSource, backend_names, plugins_for
from mind_edge.runtime.bench import machine, peaks, worker
from mind_edge.runtime.bench.power import IDLE_SECONDS, PowerMonitor, start_idle, stop_quietly, telemetry_section
from mind_edge.runtime.bench.report import linearity, result_rows
from mind_edge.runtime.bench.sources import BENCH_PRECISIONS
from mind_edge.runtime.bench.stats import TimingConfig

log = logging.getLogger(__name__)

RESULTS_SCHEMA = 1

Progress = Callable[[str], None]


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


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
        known = backend_names()
        unknown = [b for b in self.backends if b not in known]
        if unknown:
            raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"batch sizes must be integers >= 1, got {list(self.batches)}")
        if self.threads is not None and not _is_int(self.threads, 1):
            raise ConfigError(f"--threads must be an integer >= 1, got {self.threads!r}")
        if self.chunk is not None and not _is_int(self.chunk, 1):
            raise ConfigError(f"--chunk must be an integer >= 1, got {self.chunk!r}")
        if self.sub_batch is not None and not _is_int(self.sub_batch, 0):
            raise ConfigError(f"--sub-batch must be an integer >= 0 (0 = whole batch), got {self.sub_batch!r}")
        bad = [p for p in self.precisions if p not in BENCH_PRECISIONS]
        if bad or not self.precisions:
            raise ConfigError(
                f"unknown precision(s) {', '.join(bad) or '(none)'}; choose from {', '.join(BENCH_PRECISIONS)}"
            )

    @property
    def n_threads(self) -> int:
        return int(self.threads or machine.available_cpus())


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


def peak_precisions(jobs: Sequence[tuple]) -> list[str]:
    """The non-FP32 peaks the rows need: int8 for INT8 graphs, bf16 for OpenVINO (its default is BF16
    on CPUs with AVX-512 BF16 / AMX)."""
    need = []
    if any(j[1].precision == "int8" for j in jobs):
        need.append("int8")
    if any(j[0] == "openvino" for j in jobs) and machine.cpu_has_bf16():
        need.append("bf16")
    return need


def _job(spec: BenchSpec, name: str, src: ModelSource, opts: Mapping[str, Any], threads: int) -> dict:
    return {
        "backend": name,
        "source": src.to_json(),
        "batches": list(spec.batches),
        "threads": threads,
        "providers": list(spec.providers) if spec.providers else None,
        "precision": opts.get("precision", spec.precision),
        "timing": asdict(spec.timing),
        "chunk": opts.get("chunk", spec.chunk),
        "sub_batch": opts.get("sub_batch", spec.sub_batch),
        "ov_hint": opts.get("ov_hint"),
        "plugins": plugins_for([name]),
    }


def _measure_peaks(threads: int, gemm: list[dict], others: Mapping[str, list[dict]], say: Progress | None) -> None:
    if say:
        say(f"GEMM peak with {threads} thread(s) …")
    gemm.append(peaks.gemm_peak(threads))
    for p, runs in others.items():
        if say:
            say(f"{p} GEMM peak …")
        r = peaks.precision_peak(threads, p)
        if r is not None:
            runs.append(r)


def run_benchmark(
    spec: BenchSpec,
    sources: Sequence[ModelSource],
    *,
    workdir: Path,
    model_info: Mapping[str, Any],
    progress: Progress | None = None,
    jobs: Sequence[tuple] | None = None,
    monitor: PowerMonitor | None = None,
    idle_seconds: float = IDLE_SECONDS,
) -> dict:
    """Benchmark every backend on every source (or exactly ``jobs``: ``(backend, source)`` or
    ``(backend, source, {"chunk": n})``); returns the report (JSON-ready).

    ``monitor``: a power monitor that is not started (:mod:`mind_edge.runtime.bench.power`; the
    CLI passes a :class:`mind_edge.devices.tegrastats.TegrastatsMonitor`). It runs from before the
    first row to after the last: ``idle_seconds`` of idle baseline first, then every row's power
    and energy come from the samples inside that row's timed loop. ``workdir`` holds the sources'
    graphs (written by :mod:`mind_edge.runtime.bench.sources`)."""
    if monitor is not None and not (
        isinstance(idle_seconds, (int, float)) and math.isfinite(idle_seconds) and idle_seconds >= 0
    ):
        raise ConfigError(f"the idle baseline must be a number of seconds >= 0, got {idle_seconds!r}")
    say = progress or (lambda msg: log.info("%s", msg))
    threads = spec.n_threads
    context = machine.machine_context(threads)
    context["isolated_processes"] = spec.isolate
    gemm: list[dict] = []
    workers = []
    if jobs is None:
        jobs = default_jobs(spec, sources)
    idle_window = None
    if monitor is not None:
        say(f"idle power baseline ({idle_seconds:g} s of tegrastats) …")
        idle_window = start_idle(monitor, idle_seconds)
    try:
        others: dict[str, list[dict]] = {p: [] for p in peak_precisions(jobs)}
        if spec.gemm:
            _measure_peaks(threads, gemm, others, say)
        for name, src, *extra in jobs:
            job = _job(spec, name, src, extra[0] if extra else {}, threads)
            say(
                f"{name} · {src.num_tasks} task(s){' · ' + src.variant if name == 'ort' else ''}"
                f"{' · chunks of ' + str(job['chunk']) if job['chunk'] else ''} …"
            )
            if spec.isolate:
                res = worker.spawn_worker(job)
            else:
                try:
                    res = worker.run_worker(job)
                except MindEdgeError as exc:
                    res = worker.failed(job, str(exc))
            res["source"] = src
            workers.append(res)
        if spec.gemm:
            _measure_peaks(threads, gemm, others, None)
    except BaseException:
        if monitor is not None:
            stop_quietly(monitor)
        raise
    telemetry = monitor.stop() if monitor is not None else None
    peak = max(g["gflops"] for g in gemm) if gemm else None
    context["load_average_end"] = machine.load_average()
    peak_by = {"fp32": peak, **{p: max((r["gflops"] for r in runs), default=None) for p, runs in others.items()}}
    results, warnings = result_rows(workers, spec.batches, threads, peak, peak_by)
    telemetry_json = None
    if telemetry is not None:
        telemetry_json = telemetry_section(results, telemetry, idle_window, monitor, warnings)
    for r in results:
        r.pop("_window", None)
    return {
        "format": "mind-edge-bench",
        "schema_version": RESULTS_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": dict(model_info),
        "settings": {
            "backends": sorted({j[0] for j in jobs}),
            "batches": list(spec.batches),
            "chunk": spec.chunk,
            "sub_batch": spec.sub_batch,
            "tasks": sorted({s.num_tasks for s in sources}),
            "threads": threads,
            "timing": asdict(spec.timing),
            "providers": list(spec.providers) if spec.providers else None,
            "precision": spec.precision,
            "precisions": list(spec.precisions),
            "monitor": monitor is not None,
            "latency": "one Runner.infer call on a preprocessed float32 batch in host memory (host latency)",
        },
        "context": context,
        "gemm": {
            "peak_gflops": peak,
            "runs": gemm,
            "peaks": {p: {"peak_gflops": peak_by.get(p), "runs": runs} for p, runs in others.items()},
            "note": "peak = best of the runs before and after the backends (the machine's ceiling in this run); "
            "each row's roofline uses the peak of the precision it computes in (fp32 for FP16 graphs on "
            "ONNX Runtime's CPU provider)",
        },
        "flops": {str(s.num_tasks): dict(s.flops) for s in sources},
        "results": results,
        "linearity": linearity(results),
        "telemetry": telemetry_json,
        "warnings": warnings,
    }
