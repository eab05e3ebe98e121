"""Statistics and the timing loop of the latency harness (trtexec-style; see :mod:`mind_edge.runtime.bench`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mind_edge.errors import ConfigError

CV_WARN = 0.05
PERCENTILES = (50, 90, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between order statistics (numpy's default):
    with the values sorted as ``v[0] <= ... <= v[n-1]``, the position is ``(n - 1) * q / 100``."""
    if not 0 <= q <= 100:
        raise ConfigError(f"a percentile must be between 0 and 100, got {q}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ConfigError("a percentile of no values is undefined; time at least one iteration")
    return float(np.percentile(v, q))


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
    p50, p90, p95, p99 = (float(p) for p in np.percentile(ms, PERCENTILES))
    return LatencyStats(
        batch=int(batch),
        iterations=int(lat.size),
        wall_s=wall,
        mean_ms=mean,
        std_ms=std,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        cv=std / mean if mean > 0 else 0.0,
        throughput_ips=lat.size * batch / wall,
    )


def summarize_from_row(r: Mapping[str, Any]) -> LatencyStats:
    """The :class:`LatencyStats` fields of a report row."""
    return LatencyStats(**{k: r[k] for k in LatencyStats.__dataclass_fields__})


def cv_warning(stats: LatencyStats, what: str = "", threshold: float = CV_WARN) -> str | None:
    """A one-line warning when the run was noisy (CV above ``threshold``), else None."""
    if stats.cv <= threshold:
        return None
    where = f"{what}: " if what else ""
    return (
        f"{where}noisy timing, coefficient of variation {stats.cv:.1%} > {threshold:.0%} over {stats.iterations} "
        f"iterations (min {stats.min_ms:.3g} ms, p50 {stats.p50_ms:.3g} ms, max {stats.max_ms:.3g} ms); other "
        "processes were probably running — check `uptime`, quote the p50 and repeat on a quiet machine"
    )


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
    return Timing(
        latencies_s=tuple(lat), wall_s=now - start, warmup_iters=warm, warmup_s=warmup_s, window_monotonic=(m0, m1)
    )
