"""Power and energy per row (``--monitor``): a telemetry monitor passed in by the caller.

The runtime does not know where power comes from: the caller (the CLI) passes a monitor object,
not started, such as :class:`mind_edge.devices.tegrastats.TegrastatsMonitor`. It must offer what
:class:`PowerMonitor` lists; its ``stop()`` returns a telemetry result with ``samples``,
``interval_ms``, ``power_source``, ``n_samples`` and a ``window(samples, start_s, end_s, *,
duration_s, interval_ms)`` constructor of the same type for the samples that *arrived* (a
``time.monotonic()`` stamp) inside a window, with ``mean_power_mw``, ``peak_power_mw``,
``mean_gpu_load_pct``, ``max_temperature``, ``max_temperatures_c``, ``rail_mean_mw``,
``duration_s``, ``n_samples`` and ``energy_mj(images)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Protocol

from mind_edge.errors import MindEdgeError

IDLE_SECONDS = 1.0  # --monitor: idle power baseline before the first row
MIN_WINDOW_SAMPLES = 5  # --monitor: fewer samples in a timed loop give a warning
TELEMETRY_FIELDS = ("power_w", "energy_mj_per_image", "gpu_load_pct", "max_temp_c")


class MonitorError(MindEdgeError):
    """The power monitor gave no sample to measure with."""


class PowerMonitor(Protocol):
    """What :func:`mind_edge.runtime.bench.run_benchmark` needs of ``monitor``."""

    interval_ms: int
    tegrastats_path: str

    @property
    def running(self) -> bool: ...

    def start(self) -> Any: ...

    def stop(self) -> Any: ...

    def wait_for_samples(self, n: int, timeout_s: float = 5.0) -> bool: ...


def stop_quietly(monitor: PowerMonitor) -> None:
    """Stop ``monitor`` after another error (that error is the one to report)."""
    with contextlib.suppress(MindEdgeError):
        monitor.stop()


def start_idle(monitor: PowerMonitor, seconds: float) -> tuple[float, float]:
    """Start ``monitor`` and sample an idle window of ``seconds`` (longer until one sample arrived);
    returns the window ``(t0, t1)`` (``time.monotonic()``).

    Fails (stopping the monitor) before any benchmarking when the monitor dies or gives nothing
    it can parse."""
    monitor.start()
    try:
        t0 = time.monotonic()
        time.sleep(seconds)
        patience = max(5.0, 20 * monitor.interval_ms / 1000)
        if not monitor.wait_for_samples(1, timeout_s=patience):
            if not monitor.running:
                monitor.stop()  # raises with tegrastats' own error output when it printed nothing
            raise MonitorError(
                f"{monitor.tegrastats_path} printed no tegrastats sample in {seconds + patience:.0f} s "
                f"(--interval {monitor.interval_ms}); check that it is tegrastats and that it runs "
                f"on its own: {monitor.tegrastats_path} --interval {monitor.interval_ms}"
            )
        t1 = time.monotonic()
    except BaseException:
        if monitor.running:
            stop_quietly(monitor)
        raise
    return t0, t1


def _watts(mw: float | None) -> float | None:
    return None if mw is None else mw / 1000.0


def telemetry_section(
    results: list[dict],
    telemetry: Any,
    idle_window: tuple[float, float] | None,
    monitor: PowerMonitor,
    warnings: list[str],
) -> dict:
    """Fill every ok row's power fields from the samples inside its timed window; the report's
    ``telemetry`` section (idle baseline, per-row sample counts, energy above idle)."""
    samples = telemetry.samples
    window = telemetry.window  # the telemetry type's constructor of a window's summary
    idle = None
    if idle_window is not None:  # every sample up to t1: the monitor started just before t0
        t0, t1 = idle_window
        idle = window(samples, -math.inf, t1, duration_s=t1 - t0, interval_ms=telemetry.interval_ms)
    idle_mw = idle.mean_power_mw if idle is not None else None
    rows, few = [], []
    for r in results:
        span = r.get("_window")
        if r.get("status") != "ok" or not span:
            continue
        images = int(r["iterations"]) * int(r["batch"])
        w = window(samples, span[0], span[1], duration_s=r["timed_s"], interval_ms=telemetry.interval_ms)
        label = f"{r['backend']} {r['variant']} t={r['tasks']} b={r['batch']}"
        energy = above = None
        if w.mean_power_mw is not None:
            energy = w.energy_mj(images)  # mean power (mW) x timed seconds / images = mJ per image
            if idle_mw is not None:
                above = (w.mean_power_mw - idle_mw) * r["timed_s"] / images
        hot = w.max_temperature
        r.update(
            power_w=_watts(w.mean_power_mw),
            energy_mj_per_image=energy,
            gpu_load_pct=w.mean_gpu_load_pct,
            max_temp_c=hot[1] if hot else None,
        )
        if w.n_samples < MIN_WINDOW_SAMPLES:
            few.append(f"{label} ({w.n_samples})")
        rows.append(
            {
                "backend": r["backend"],
                "variant": r["variant"],
                "tasks": r["tasks"],
                "batch": r["batch"],
                "mode": r.get("mode"),
                "n_samples": w.n_samples,
                "timed_s": r["timed_s"],
                "images": images,
                "window_monotonic": list(span),
                "power_w": r["power_w"],
                "peak_power_w": _watts(w.peak_power_mw),
                "energy_mj_per_image": energy,
                "energy_mj_per_image_above_idle": above,
                "gpu_load_pct": w.mean_gpu_load_pct,
                "max_temp_c": r["max_temp_c"],
                "max_temp_sensor": hot[0] if hot else None,
                "max_temperatures_c": dict(w.max_temperatures_c),
                "rail_mean_mw": dict(w.rail_mean_mw),
            }
        )
    if few:
        warnings.append(
            f"power from fewer than {MIN_WINDOW_SAMPLES} tegrastats samples (interval "
            f"{telemetry.interval_ms} ms) in {len(few)} row(s): {'; '.join(few)}; rows without a sample "
            "have no power. Raise --min-seconds or lower --monitor-interval-ms"
        )
    if telemetry.power_source is None and samples:
        warnings.append(
            f"tegrastats printed {len(samples)} samples but no power rail; some images hide the INA3221 "
            "rails from normal users: run with sudo"
        )
    hot = idle.max_temperature if idle is not None else None
    return {
        "source": "tegrastats",
        "tegrastats": str(monitor.tegrastats_path),
        "interval_ms": telemetry.interval_ms,
        "power_rail": telemetry.power_source,
        "n_samples": telemetry.n_samples,
        "idle": None
        if idle is None
        else {
            "seconds": idle.duration_s,
            "n_samples": idle.n_samples,
            "power_w": _watts(idle_mw),
            "gpu_load_pct": idle.mean_gpu_load_pct,
            "max_temp_c": hot[1] if hot else None,
            "rail_mean_mw": dict(idle.rail_mean_mw),
        },
        "rows": rows,
        "note": (
            "module power from tegrastats (a lower bound of wall power: carrier board, fan and USB are outside "
            "the rails). A row's power_w is the mean of the samples that arrived inside its timed loop (warm-up, "
            "process start-up and session creation excluded); energy_mj_per_image = power x the loop's timed_s / "
            "(iterations x batch); _above_idle subtracts the idle baseline sampled before the first row"
        ),
    }
