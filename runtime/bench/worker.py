"""One benchmark job — a backend on one model source, every batch size — in this process or in a fresh one.

:func:`spawn_worker` runs :func:`worker_main` through :func:`mind_edge.core.proc.spawn_call`
(``multiprocessing`` spawn, the BLAS/OpenMP thread variables set before the interpreter starts),
so the job's peak RSS holds only what its backend loads — never PyTorch for ``ort``. A job is a
JSON-ready dict: ``backend``, ``source`` (:meth:`ModelSource.to_json`), ``batches``, ``threads``,
``timing``, ``providers``, ``precision``, ``chunk``, ``sub_batch``, ``ov_hint`` and ``plugins``
(modules that register the openers of plugin backends, imported here before the backend opens).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mind_edge.core.proc import WorkerError, peak_rss_mb, spawn_call, thread_env
from mind_edge.errors import MindEdgeError
from mind_edge.runtime.backends import BackendUnavailable, ModelSource, check_available, load_plugins, open_backend
from mind_edge.runtime.bench.stats import TimingConfig, cv_warning, summarize, time_loop

log = logging.getLogger(__name__)

INPUT_NAME = "image"
PROBE_BATCH = 8


def probe_input(shape: Sequence[int], batch: int = PROBE_BATCH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def run_worker(spec: Mapping[str, Any]) -> dict:
    """Open one backend on one model and time every batch size (in this process)."""
    src = ModelSource.from_json(spec["source"])
    name = spec["backend"]
    timing = TimingConfig(**spec["timing"])
    threads = spec.get("threads")
    rss0 = peak_rss_mb()
    out: dict[str, Any] = {
        "backend": name,
        "variant": src.variant,
        "tasks": src.num_tasks,
        "status": "ok",
        "rss_before_open_mb": rss0,
    }
    try:
        check_available(name, src)  # before a plugin is imported: a missing PyTorch gives its own reason
        load_plugins(spec.get("plugins") or ())
        opened = open_backend(
            name,
            src,
            threads=threads,
            providers=spec.get("providers"),
            precision=spec.get("precision"),
            sub_batch=spec.get("sub_batch"),
            ov_hint=spec.get("ov_hint"),
        )
    except BackendUnavailable as exc:
        return {**out, "status": "unavailable", "reason": str(exc), "rows": []}
    runner = opened.runner
    out["variant"] = opened.variant or src.variant
    out.update(
        start_s=opened.start_s,
        model_bytes=opened.model_bytes,
        providers=opened.providers,
        precision=opened.precision,
        notes=opened.notes,
        rss_after_open_mb=peak_rss_mb(),
        compute_precision=opened.compute_precision or opened.precision,
    )
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
            feeds = [{INPUT_NAME: x[i : i + chunk]} for i in range(0, batch, chunk)]
            fn = lambda feeds=feeds: [runner.infer(f) for f in feeds]
        else:
            feed = {INPUT_NAME: x}
            fn = lambda feed=feed: runner.infer(feed)
        t = time_loop(fn, timing)
        stats = summarize(t.latencies_s, batch, t.wall_s)
        row = {
            **stats.to_json(),
            "warmup_iterations": t.warmup_iters,
            "warmup_s": t.warmup_s,
            "peak_rss_mb": peak_rss_mb(),
            "chunk": chunk or None,
            "window_monotonic": list(t.window_monotonic) if t.window_monotonic else None,
        }
        if hasattr(runner, "variant_for"):  # the form the runner chose for this batch (torch auto, ort sub-batches)
            mode = runner.variant_for(min(batch, chunk) if chunk else batch)
            row["mode"] = mode + (f", chunks of {chunk}" if chunk else "")
        rows.append(row)
        msg = cv_warning(stats, f"{name} tasks={src.num_tasks} batch={batch}")
        if msg:
            log.warning("%s", msg)
    runner.deactivate()
    out["rows"] = rows
    return out


def failed(spec: Mapping[str, Any], reason: str) -> dict:
    """The result of a job that could not run."""
    return {
        "backend": spec["backend"],
        "variant": spec["source"].get("variant"),
        "tasks": spec["source"]["num_tasks"],
        "status": "failed",
        "reason": reason,
        "rows": [],
    }


def worker_main(spec: Mapping[str, Any]) -> dict:
    """:func:`run_worker` with mind-edge's own errors as a failed result (the spawned worker's target)."""
    try:
        return run_worker(spec)
    except MindEdgeError as exc:
        return failed(spec, str(exc))


def spawn_worker(spec: Mapping[str, Any], *, timeout: float | None = None) -> dict:
    """Run :func:`run_worker` in a fresh ``spawn`` interpreter (clean peak RSS, no torch leaking into ORT)."""
    try:
        return spawn_call(worker_main, dict(spec), timeout=timeout, env=thread_env(spec.get("threads")), fast_exit=True)
    except WorkerError as exc:
        log.debug("worker %s failed:\n%s", spec["backend"], exc.detail)
        return failed(spec, f"the worker process failed: {exc}")
