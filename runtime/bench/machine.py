"""Where a benchmark ran: CPUs, CPU model, package versions, load average (every result records its context).

Resident-set sizes come from :mod:`mind_edge.core.proc` (``VmHWM``: the peak of this process image).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from mind_edge.core.proc import current_rss_mb, peak_rss_mb

VERSIONED = ("mind-edge", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "matplotlib")


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; on Jetsons the board model from the device tree)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
            return value.strip()
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
        if model:
            return model
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_has_bf16() -> bool:
    """The CPU computes BF16 natively (x86 AVX-512 BF16 or AMX-BF16; aarch64 bf16)."""
    flags = _cpuinfo().split()
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that matter, read from metadata (imports nothing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
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
    """Where and how a benchmark ran (every result records its context)."""
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


__all__ = [
    "available_cpus",
    "cpu_model",
    "cpu_has_bf16",
    "package_versions",
    "load_average",
    "machine_context",
    "peak_rss_mb",
    "current_rss_mb",
]
