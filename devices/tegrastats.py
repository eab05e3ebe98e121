"""Jetson telemetry from ``tegrastats``: a line parser and a background monitor.

One :class:`TegrastatsSample` describes every module generation: Orin (``VDD_IN 5012mW/5012mW``,
``cpu@45.5C``), Xavier on JetPack 4 (``VDD_IN 4413/4413``, ``CPU@44.5C``), AGX Orin
(``VDD_GPU_SOC``, ``VIN_SYS_5V0`` ...), Nano (``POM_5V_IN``). Rails are read as
``current/average`` in mW, whether or not the ``mW`` suffix is printed.

Total power rule (``TegrastatsSample.total_power_mw``), first that applies:

1. ``VDD_IN`` - the module input rail (Orin Nano, Orin NX, Xavier NX, TX2).
2. ``POM_5V_IN`` - the module 5 V input (Jetson Nano).
3. ``VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0`` - AGX Orin has no input rail; these are the three
   channels of its module power monitor (0x40). ``VDDQ_VDD2_1V8AO`` (second monitor) is left out
   because it is powered from ``VIN_SYS_5V0`` and would be counted twice. ``VIN_SYS_5V0`` alone
   is *not* the total (it is the 5 V system rail; GPU and CPU are fed from the other input).
4. ``VIN_SYS_5V0`` alone, when it is the only rail listed.
5. Otherwise the sum of every rail printed, ``NC`` (not connected) channels excluded.

The rule is a lower bound of what a wall meter sees: carrier board, fan and USB loads are
outside the module rails.

Temperatures are keyed in lower case (``cpu``, ``gpu``, ``tj``, ``soc0``, ``ao`` ...); tegrastats
prints ``-256C`` for a sensor that is switched off (``CV0@-256C`` on an idle AGX Orin): those
are dropped.
"""
# Over 600 lines: one tool's contract — the tegrastats line format of every Jetson generation, its summary, its monitor

from __future__ import annotations

import collections
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mind_edge.devices.errors import DeviceError, TegrastatsParseError

log = logging.getLogger(__name__)

__all__ = [
    "EngineStat",
    "Rail",
    "TegrastatsMonitor",
    "TegrastatsSample",
    "TelemetryResult",
    "find_tegrastats",
    "parse_line",
    "parse_lines",
    "total_power",
]

OFF_SENSOR_C = -256.0  # tegrastats' value for a powered-down thermal zone
JETSON_TEGRASTATS = "/usr/bin/tegrastats"  # where Jetson Linux installs it
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC"}


@dataclass(frozen=True)
class Rail:
    """One power rail: instantaneous and running-average power in mW."""

    current_mw: float
    average_mw: float


@dataclass(frozen=True)
class EngineStat:
    """A hardware engine entry such as ``GR3D2_FREQ 0%@114``, ``NVDLA0_FREQ @1600``, ``NVDEC off``."""

    load_pct: float | None = None
    freq_mhz: tuple[int, ...] = ()
    on: bool = True


@dataclass(frozen=True)
class TegrastatsSample:
    timestamp: datetime | None
    ram_used_mb: int | None
    ram_total_mb: int | None
    swap_used_mb: int | None
    swap_total_mb: int | None
    swap_cached_mb: int | None
    cpu_load_pct: tuple[float | None, ...]  # None: core is off
    cpu_freq_mhz: tuple[int | None, ...]
    gpu_load_pct: float | None  # GR3D_FREQ
    gpu_freq_mhz: tuple[int, ...]
    emc_load_pct: float | None
    emc_freq_mhz: int | None
    temperatures_c: Mapping[str, float]
    rails: Mapping[str, Rail]
    engines: Mapping[str, EngineStat]
    total_power_mw: float | None
    total_power_source: str | None
    raw: str = field(default="", compare=False, repr=False)
    unparsed: tuple[str, ...] = field(default=(), compare=False)
    received_s: float | None = field(default=None, compare=False)  # time.monotonic() at arrival

    @property
    def cpu_load_mean_pct(self) -> float | None:
        vals = [v for v in self.cpu_load_pct if v is not None]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict:
        return {
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "ram_used_mb": self.ram_used_mb,
            "ram_total_mb": self.ram_total_mb,
            "swap_used_mb": self.swap_used_mb,
            "swap_total_mb": self.swap_total_mb,
            "swap_cached_mb": self.swap_cached_mb,
            "cpu_load_pct": list(self.cpu_load_pct),
            "cpu_freq_mhz": list(self.cpu_freq_mhz),
            "gpu_load_pct": self.gpu_load_pct,
            "gpu_freq_mhz": list(self.gpu_freq_mhz),
            "emc_load_pct": self.emc_load_pct,
            "emc_freq_mhz": self.emc_freq_mhz,
            "temperatures_c": dict(self.temperatures_c),
            "rails_mw": {k: {"current": r.current_mw, "average": r.average_mw} for k, r in self.rails.items()},
            "total_power_mw": self.total_power_mw,
            "total_power_source": self.total_power_source,
        }


# --------------------------------------------------------------------------- parsing

_NAME = r"[A-Z][A-Z0-9_]*"
_END = r"(?=\s|$)"
_TOKENS: list[tuple[str, re.Pattern[str]]] = [
    ("ts", re.compile(r"(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})" + _END)),
    ("ram", re.compile(r"RAM (\d+)/(\d+)MB(?: ?\(lfb [^)]*\))?")),
    ("swap", re.compile(r"SWAP (\d+)/(\d+)MB(?: ?\((?:cached (\d+)MB|[^)]*)\))?")),
    ("iram", re.compile(r"IRAM (\d+)/(\d+)kB(?: ?\(lfb [^)]*\))?")),
    ("cpu", re.compile(r"(?i:cpu) \[([^\]]*)\](?:@(\d+))?")),
    ("mts", re.compile(r"MTS fg (\d+)% bg (\d+)%")),
    ("temp", re.compile(r"([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C" + _END)),
    ("rail", re.compile(rf"({_NAME}) (-?\d+(?:\.\d+)?)(?:mW)?/(-?\d+(?:\.\d+)?)(?:mW)?" + _END)),
    ("eng_list", re.compile(rf"({_NAME}) (\d+)%@\[([\d,]*)\]" + _END)),
    ("eng_pf", re.compile(rf"({_NAME}) (\d+)%@(\d+)" + _END)),
    ("eng_p", re.compile(rf"({_NAME}) (\d+)%" + _END)),
    ("eng_af", re.compile(rf"({_NAME}) @(\d+)" + _END)),
    ("eng_off", re.compile(rf"({_NAME}) off" + _END)),
    ("eng_f", re.compile(rf"({_NAME}) (\d+)" + _END)),
]


def _cpu_entries(body: str, common_freq: str | None) -> tuple[tuple[float | None, ...], tuple[int | None, ...]]:
    loads: list[float | None] = []
    freqs: list[int | None] = []
    for entry in (e.strip() for e in body.split(",")):
        if not entry:
            continue
        if entry.lower() == "off":
            loads.append(None)
            freqs.append(None)
            continue
        m = re.fullmatch(r"(\d+(?:\.\d+)?)%(?:@(\d+))?", entry)
        if not m:
            loads.append(None)
            freqs.append(None)
            continue
        loads.append(float(m.group(1)))
        f = m.group(2) or common_freq
        freqs.append(int(f) if f else None)
    return tuple(loads), tuple(freqs)


def total_power(rails: Mapping[str, Rail]) -> tuple[float | None, str | None]:
    """Apply the module's total-power rule (see the module docstring) to parsed rails."""
    if "VDD_IN" in rails:
        return rails["VDD_IN"].current_mw, "VDD_IN"
    if "POM_5V_IN" in rails:
        return rails["POM_5V_IN"].current_mw, "POM_5V_IN"
    agx = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
    if all(k in rails for k in agx):
        return sum(rails[k].current_mw for k in agx), "+".join(agx)
    usable = {k: r for k, r in rails.items() if k not in _NOT_RAILS}
    if set(usable) == {"VIN_SYS_5V0"}:
        return usable["VIN_SYS_5V0"].current_mw, "VIN_SYS_5V0"
    if usable:
        return sum(r.current_mw for r in usable.values()), "sum(" + "+".join(usable) + ")"
    return None, None


def parse_line(line: str, *, received_s: float | None = None) -> TegrastatsSample:
    """Parse one line of ``tegrastats`` output; raises :class:`TegrastatsParseError` if it is not one."""
    text = line.strip()
    ts = None
    ram = (None, None)
    swap: tuple[int | None, int | None, int | None] = (None, None, None)
    cpu_loads: tuple[float | None, ...] = ()
    cpu_freqs: tuple[int | None, ...] = ()
    temps: dict[str, float] = {}
    rails: dict[str, Rail] = {}
    engines: dict[str, EngineStat] = {}
    unparsed: list[str] = []
    recognised = 0
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        for kind, rx in _TOKENS:
            if kind == "ts" and pos != 0:
                continue
            m = rx.match(text, pos)
            if m:
                break
        else:
            end = pos
            while end < n and not text[end].isspace():
                end += 1
            unparsed.append(text[pos:end])
            pos = end
            continue
        pos = m.end()
        recognised += kind != "ts"
        g = m.groups()
        if kind == "ts":
            try:
                ts = datetime.strptime(g[0], "%m-%d-%Y %H:%M:%S")
            except ValueError:
                unparsed.append(g[0])
        elif kind == "ram":
            ram = (int(g[0]), int(g[1]))
        elif kind == "swap":
            swap = (int(g[0]), int(g[1]), int(g[2]) if g[2] else None)
        elif kind == "cpu":
            cpu_loads, cpu_freqs = _cpu_entries(g[0], g[1])
        elif kind == "mts" or kind == "iram":
            pass  # recognised, not reported
        elif kind == "temp":
            value = float(g[1])
            if value > OFF_SENSOR_C:
                temps[g[0].lower()] = value
        elif kind == "rail":
            if g[0] in _NOT_RAILS:
                continue
            rails[g[0]] = Rail(float(g[1]), float(g[2]))
        elif kind == "eng_list":
            freqs = tuple(int(x) for x in g[2].split(",") if x)
            engines[g[0]] = EngineStat(load_pct=float(g[1]), freq_mhz=freqs)
        elif kind == "eng_pf":
            engines[g[0]] = EngineStat(load_pct=float(g[1]), freq_mhz=(int(g[2]),))
        elif kind == "eng_p":
            engines[g[0]] = EngineStat(load_pct=float(g[1]))
        elif kind == "eng_af":
            engines[g[0]] = EngineStat(freq_mhz=(int(g[1]),))
        elif kind == "eng_off":
            engines[g[0]] = EngineStat(on=False)
        elif kind == "eng_f":
            engines[g[0]] = EngineStat(freq_mhz=(int(g[1]),))
    if not recognised or (ram == (None, None) and not rails and not cpu_loads and "GR3D_FREQ" not in engines):
        raise TegrastatsParseError(
            f"not a tegrastats line: {text[:120]!r}; expected fields like 'RAM 2461/7620MB', "
            "'GR3D_FREQ 0%', 'VDD_IN 5704mW/5704mW'"
        )
    gpu = engines.get("GR3D_FREQ")
    emc = engines.get("EMC_FREQ")
    total, source = total_power(rails)
    return TegrastatsSample(
        timestamp=ts,
        ram_used_mb=ram[0],
        ram_total_mb=ram[1],
        swap_used_mb=swap[0],
        swap_total_mb=swap[1],
        swap_cached_mb=swap[2],
        cpu_load_pct=cpu_loads,
        cpu_freq_mhz=cpu_freqs,
        gpu_load_pct=gpu.load_pct if gpu else None,
        gpu_freq_mhz=gpu.freq_mhz if gpu else (),
        emc_load_pct=emc.load_pct if emc else None,
        emc_freq_mhz=emc.freq_mhz[0] if emc and emc.freq_mhz else None,
        temperatures_c=temps,
        rails=rails,
        engines=engines,
        total_power_mw=total,
        total_power_source=source,
        raw=text,
        unparsed=tuple(unparsed),
        received_s=received_s,
    )


def parse_lines(lines: Iterable[str] | str) -> list[TegrastatsSample]:
    """Parse many lines, skipping blank ones and lines that are not tegrastats output."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    out: list[TegrastatsSample] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            out.append(parse_line(line))
        except TegrastatsParseError as exc:
            log.debug("skipping line: %s", exc)
    return out


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class TelemetryResult:
    """Samples of one monitored window and their summary.

    ``mean_power_mw`` is the mean of the samples' ``total_power_mw``; the window's energy is
    ``mean_power_mw * duration_s`` (mW x s = mJ), where ``duration_s`` is the wall time from
    :meth:`TegrastatsMonitor.start` to :meth:`TegrastatsMonitor.stop`.
    """

    samples: tuple[TegrastatsSample, ...]
    duration_s: float
    interval_ms: int
    mean_power_mw: float | None
    peak_power_mw: float | None
    power_source: str | None
    rail_mean_mw: Mapping[str, float]
    mean_gpu_load_pct: float | None
    max_temperatures_c: Mapping[str, float]

    @classmethod
    def from_samples(
        cls, samples: Sequence[TegrastatsSample], duration_s: float, interval_ms: int = 0
    ) -> TelemetryResult:
        powers = [s.total_power_mw for s in samples if s.total_power_mw is not None]
        sources = collections.Counter(s.total_power_source for s in samples if s.total_power_source)
        rails: dict[str, list[float]] = {}
        temps: dict[str, float] = {}
        for s in samples:
            for name, rail in s.rails.items():
                rails.setdefault(name, []).append(rail.current_mw)
            for name, value in s.temperatures_c.items():
                temps[name] = max(value, temps.get(name, -math.inf))
        gpu = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
        return cls(
            samples=tuple(samples),
            duration_s=float(duration_s),
            interval_ms=int(interval_ms),
            mean_power_mw=sum(powers) / len(powers) if powers else None,
            peak_power_mw=max(powers) if powers else None,
            power_source=sources.most_common(1)[0][0] if sources else None,
            rail_mean_mw={k: sum(v) / len(v) for k, v in rails.items()},
            mean_gpu_load_pct=sum(gpu) / len(gpu) if gpu else None,
            max_temperatures_c=temps,
        )

    @classmethod
    def window(
        cls,
        samples: Sequence[TegrastatsSample],
        start_s: float,
        end_s: float,
        *,
        duration_s: float | None = None,
        interval_ms: int = 0,
    ) -> TelemetryResult:
        """The samples that arrived (``received_s``, a ``time.monotonic()`` value) in ``[start_s, end_s]``.

        ``duration_s`` (default ``end_s - start_s``) is the window's length used for energy: pass the
        timed loop's own wall time to get ``energy_mj(n) = mean power x that time / n``.
        """
        inside = [s for s in samples if s.received_s is not None and start_s <= s.received_s <= end_s]
        return cls.from_samples(inside, end_s - start_s if duration_s is None else duration_s, interval_ms)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def max_temperature(self) -> tuple[str, float] | None:
        """``(sensor, °C)``: the junction temperature ``tj`` when reported, else the hottest sensor.

        ``pmic`` is left out of "the hottest": Xavier and Nano print a constant ``PMIC@100C``
        placeholder, not a measurement (it is still in :attr:`max_temperatures_c`)."""
        temps = self.max_temperatures_c
        if "tj" in temps:
            return "tj", temps["tj"]
        real = {k: v for k, v in temps.items() if k != "pmic"}
        if not real:
            return None
        name = max(real, key=lambda k: real[k])
        return name, real[name]

    @property
    def energy_total_mj(self) -> float:
        if self.mean_power_mw is None:
            raise DeviceError(
                f"no power reading in {self.n_samples} tegrastats samples, so no energy can be computed; "
                "run tegrastats with sudo (some images hide the INA3221 rails from normal users)"
            )
        return self.mean_power_mw * self.duration_s

    def energy_mj(self, n_images: int) -> float:
        """Energy per image in mJ over the monitored window: ``mean power x duration / n_images``."""
        if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images <= 0:
            raise DeviceError(
                f"energy per image needs a positive image count, got {n_images!r}; "
                "pass the number of images processed while the monitor ran"
            )
        return self.energy_total_mj / n_images

    def to_dict(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "duration_s": self.duration_s,
            "interval_ms": self.interval_ms,
            "mean_power_mw": self.mean_power_mw,
            "peak_power_mw": self.peak_power_mw,
            "power_source": self.power_source,
            "rail_mean_mw": dict(self.rail_mean_mw),
            "mean_gpu_load_pct": self.mean_gpu_load_pct,
            "max_temperatures_c": dict(self.max_temperatures_c),
        }


# --------------------------------------------------------------------------- monitor


def find_tegrastats(path: str | os.PathLike | None = None, *, fix: str = "") -> str:
    """The tegrastats executable to run: ``path`` when given, else ``tegrastats`` on ``PATH``, else
    ``/usr/bin/tegrastats``. Raises a one-line :class:`DeviceError` naming what was looked for;
    ``fix`` is appended as the caller's advice (e.g. which command-line option to use)."""
    advice = f"; {fix}" if fix else ""
    if path is not None:
        p = os.fspath(path)
        found = shutil.which(p) if os.sep not in p else (p if Path(p).is_file() else None)
        if not found:
            raise DeviceError(
                f"tegrastats not found at {p!r}: give the path of tegrastats (Jetson Linux installs it as "
                f"{JETSON_TEGRASTATS}) or of a tegrastats-compatible program{advice}"
            )
    else:
        found = shutil.which("tegrastats") or (JETSON_TEGRASTATS if Path(JETSON_TEGRASTATS).is_file() else None)
        if not found:
            raise DeviceError(
                f"tegrastats not found: looked for 'tegrastats' on PATH and at {JETSON_TEGRASTATS}; it only exists "
                f"on NVIDIA Jetson (Jetson Linux){advice}"
            )
    if not os.access(found, os.X_OK):
        raise DeviceError(f"tegrastats at {found!r} is not executable; fix its permissions (chmod +x)")
    return found


class TegrastatsMonitor:
    """Run ``tegrastats --interval MS`` in the background and collect its samples.

    >>> with TegrastatsMonitor(interval_ms=100) as mon:   # doctest: +SKIP
    ...     run_benchmark()
    >>> mon.result.energy_mj(n_images=1000)                 # doctest: +SKIP
    """

    def __init__(
        self,
        interval_ms: int = 100,
        tegrastats_path: str | os.PathLike = "tegrastats",
        extra_args: Sequence[str] = (),
        max_samples: int = 1_000_000,
    ) -> None:
        if not isinstance(interval_ms, int) or isinstance(interval_ms, bool) or interval_ms < 1:
            raise DeviceError(f"tegrastats interval must be a positive number of milliseconds, got {interval_ms!r}")
        self.interval_ms = interval_ms
        self.tegrastats_path = os.fspath(tegrastats_path)
        self.extra_args = tuple(extra_args)
        self._samples: collections.deque[TegrastatsSample] = collections.deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._t0: float | None = None
        self.result: TelemetryResult | None = None

    # -- lifecycle
    def _resolve(self) -> str:
        path = self.tegrastats_path
        found = shutil.which(path) if os.sep not in path else (path if Path(path).is_file() else None)
        if not found:
            raise DeviceError(
                f"tegrastats not found at {path!r}: it only exists on NVIDIA Jetson (Jetson Linux puts it in "
                "/usr/bin/tegrastats); on other machines run without power telemetry, or pass "
                "tegrastats_path= to a tegrastats-compatible program"
            )
        if not os.access(found, os.X_OK):
            raise DeviceError(f"tegrastats at {found!r} is not executable; fix its permissions (chmod +x)")
        return found

    def start(self) -> TegrastatsMonitor:
        if self._proc is not None:
            raise DeviceError("this TegrastatsMonitor is already running; call stop() before starting it again")
        exe = self._resolve()
        cmd = [exe, "--interval", str(self.interval_ms), *self.extra_args]
        log.debug("starting %s", " ".join(cmd))
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            raise DeviceError(f"cannot start {exe!r}: {exc.strerror or exc}; check the path and permissions") from exc
        self._samples.clear()
        self._stderr.clear()
        self.result = None
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._read_stdout, name="tegrastats-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="tegrastats-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            if not line.strip():
                continue
            try:
                sample = parse_line(line, received_s=time.monotonic())
            except TegrastatsParseError as exc:
                log.debug("ignoring tegrastats output: %s", exc)
                continue
            with self._cond:
                self._samples.append(sample)
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def samples(self) -> list[TegrastatsSample]:
        with self._lock:
            return list(self._samples)

    def wait_for_samples(self, n: int, timeout_s: float = 5.0) -> bool:
        """Block until ``n`` samples arrived (True) or the timeout passed / the process died (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._samples) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._proc is not None and self._proc.poll() is not None):
                    return len(self._samples) >= n
                self._cond.wait(min(remaining, 0.05))
        return True

    def stop(self) -> TelemetryResult:
        """Stop tegrastats and return the samples with their summary."""
        proc = self._proc
        if proc is None or self._t0 is None:
            raise DeviceError("this TegrastatsMonitor was not started; call start() (or use it as a context manager)")
        t1 = time.monotonic()
        rc = proc.poll()
        if rc is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        for t in self._threads:
            t.join(timeout=3)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self._proc = None
        samples = self.samples
        if rc not in (None, 0) and not samples:
            tail = " | ".join(self._stderr) or "no error output"
            raise DeviceError(
                f"tegrastats ({self.tegrastats_path}) exited with status {rc} before printing a sample: {tail}; "
                "on Jetson, try running with sudo"
            )
        if rc is not None:
            log.warning("tegrastats exited on its own with status %s; the window may be incomplete", rc)
        self.result = TelemetryResult.from_samples(samples, duration_s=t1 - self._t0, interval_ms=self.interval_ms)
        return self.result

    def __enter__(self) -> TegrastatsMonitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is not None:
            self.stop()
