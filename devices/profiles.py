"""Device profiles (data files) and device detection.

Profiles live as JSON files in ``devices/profiles/*.json`` (installed as package data of
``mind_edge.devices``). Each file is checked on load against its schema, which is written once,
in :mod:`mind_edge.devices.profile_schema`: the frozen dataclasses (:class:`DeviceProfile` and its
nested records) *are* the schema, and the checker, the builder and ``to_dict`` all read them, so
a broken profile fails with the file and the key named, never with a ``KeyError`` deep inside a
benchmark. This module loads the files and detects the device.

Detection (:func:`detect`) reads a root filesystem (``/`` by default, a fake tree in tests):

* ``etc/nv_tegra_release``  -> Jetson Linux (L4T) version, ``# R36 (release), REVISION: 4.0`` -> ``36.4.0``
* ``proc/device-tree/model`` -> board model (NUL-terminated), matched against each Jetson
  profile's ``detect.device_tree_model`` substrings (the longest match wins)
* ``proc/device-tree/compatible`` -> module part numbers (``p3767-0005``...), the fallback
* ``proc/cpuinfo`` / ``proc/meminfo`` -> CPU model, CPU count, memory

A board that is not a known Jetson gets the generic CPU profile of its architecture.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mind_edge.devices.errors import DeviceError, ProfileError
from mind_edge.devices.profile_schema import (  # the schema's names are re-exported (__all__)
    SCHEMA_VERSION,
    CpuSpec,
    Defaults,
    DetectRules,
    DeviceProfile,
    GpuSpec,
    PowerMode,
    SoftwareSpec,
    build_profile,
    validate_profile,
)

log = logging.getLogger(__name__)


__all__ = [
    "CpuSpec",
    "Defaults",
    "Detection",
    "DetectRules",
    "DeviceProfile",
    "GpuSpec",
    "PowerMode",
    "SCHEMA_VERSION",
    "SoftwareSpec",
    "detect",
    "get_profile",
    "list_profiles",
    "load_profile_file",
    "load_profiles",
    "parse_nv_tegra_release",
]


# --------------------------------------------------------------------------- loading


def load_profile_file(path: str | os.PathLike) -> DeviceProfile:
    """Read and validate one profile file; any problem raises :class:`ProfileError`."""
    path = Path(path)
    fix = "fix the file (compare with a shipped profile in mind_edge/devices/profiles/)"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read device profile {path}: {exc.strerror or exc}; {fix}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(
            f"device profile {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {fix}"
        ) from exc
    errors = validate_profile(data, path)
    if errors:
        raise ProfileError(f"device profile {path} is invalid: {'; '.join(errors)}; {fix}")
    return build_profile(data, path)


def _packaged_dir() -> Path:
    return Path(str(resources.files("mind_edge.devices") / "profiles"))


@lru_cache(maxsize=8)
def _load_dir(directory: str) -> tuple[DeviceProfile, ...]:
    root = Path(directory)
    if not root.is_dir():
        raise ProfileError(
            f"device profile folder {root} does not exist; reinstall mind-edge "
            "(the profiles ship as package data) or pass an existing folder"
        )
    files = sorted(root.glob("*.json"))
    if not files:
        raise ProfileError(f"device profile folder {root} holds no *.json profiles; reinstall mind-edge")
    profiles: list[DeviceProfile] = []
    seen: dict[str, Path] = {}
    for f in files:
        prof = load_profile_file(f)
        if prof.name in seen:
            raise ProfileError(
                f"device profile name '{prof.name}' is defined twice ({seen[prof.name]} and {f}); rename one"
            )
        seen[prof.name] = f
        profiles.append(prof)
    log.debug("loaded %d device profiles from %s", len(profiles), root)
    return tuple(profiles)


def load_profiles(directory: str | os.PathLike | None = None) -> tuple[DeviceProfile, ...]:
    """Load every profile of ``directory`` (default: the packaged profiles), validated."""
    root = Path(directory) if directory is not None else _packaged_dir()
    return _load_dir(str(root.resolve()))


def list_profiles(directory: str | os.PathLike | None = None) -> list[DeviceProfile]:
    """All profiles, Jetsons first, then CPUs, each group by name."""
    return sorted(load_profiles(directory), key=lambda p: (p.kind != "jetson", p.name))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def get_profile(name: str, directory: str | os.PathLike | None = None) -> DeviceProfile:
    """The profile called ``name`` (case and ``_``/``-`` insensitive)."""
    profiles = {p.name: p for p in load_profiles(directory)}
    key = _normalise(name)
    if key in profiles:
        return profiles[key]
    known = sorted(profiles)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    close += [k for k in known if key and key in k and k not in close]
    hint = f"did you mean {', '.join(repr(c) for c in close[:3])}? " if close else ""
    raise DeviceError(
        f"unknown device profile {name!r}; {hint}known profiles: {', '.join(known)} "
        "(see them with: mind-edge devices list)"
    )


# --------------------------------------------------------------------------- detection

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", re.IGNORECASE)

# Arm "CPU part" ids seen on Jetsons and common aarch64 servers/boards.
_ARM_PARTS = {
    ("0x41", "0xd03"): "Arm Cortex-A53",
    ("0x41", "0xd05"): "Arm Cortex-A55",
    ("0x41", "0xd07"): "Arm Cortex-A57",
    ("0x41", "0xd08"): "Arm Cortex-A72",
    ("0x41", "0xd0b"): "Arm Cortex-A76",
    ("0x41", "0xd0c"): "Arm Neoverse-N1",
    ("0x41", "0xd40"): "Arm Neoverse-V1",
    ("0x41", "0xd42"): "Arm Cortex-A78AE",
    ("0x41", "0xd4f"): "Arm Neoverse-V2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found, and the profile it chose."""

    profile: DeviceProfile
    l4t_version: str | None
    model: str | None  # /proc/device-tree/model
    cpu_model: str | None
    cpu_count: int | None
    memory_total_mb: int | None  # MemTotal from /proc/meminfo, MiB
    machine: str
    matched_by: str  # "device-tree model", "device-tree compatible", "machine"
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "display_name": self.profile.display_name,
            "kind": self.profile.kind,
            "matched_by": self.matched_by,
            "l4t_version": self.l4t_version,
            "model": self.model,
            "cpu_model": self.cpu_model,
            "cpu_count": self.cpu_count,
            "memory_total_mb": self.memory_total_mb,
            "machine": self.machine,
            "warnings": list(self.warnings),
        }


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.0, ...`` -> ``"36.4.0"``; None if not recognised."""
    m = _RELEASE_RE.search(text)
    if not m:
        return None
    parts = [m.group(1)] + [p for p in m.group(2).split(".") if p != ""]
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts[:3])


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo(text: str | None) -> tuple[str | None, int | None, str | None]:
    """(cpu model, processor count, machine guess) from /proc/cpuinfo text."""
    if not text:
        return None, None, None
    count = 0
    model_name = hardware = implementer = part = None
    is_x86 = is_arm = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and model_name is None:
            model_name = value
        elif key == "hardware" and hardware is None:
            hardware = value
        elif key == "cpu implementer" and implementer is None:
            implementer, is_arm = value.lower(), True
        elif key == "cpu part" and part is None:
            part = value.lower()
        elif key in ("vendor_id", "flags"):
            is_x86 = True
        elif key == "features":
            is_arm = True
    arm_name = _ARM_PARTS.get((implementer or "", part or "")) if part else None
    if model_name and not (arm_name and model_name.lower().startswith("armv")):
        cpu = model_name
    else:
        cpu = arm_name or model_name or hardware
    machine = "x86_64" if is_x86 else "aarch64" if is_arm else None
    return cpu, (count or None), machine


def _meminfo_mb(text: str | None) -> int | None:
    if not text:
        return None
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) // 1024 if m else None


def _norm_machine(machine: str) -> str:
    m = machine.strip().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _match_model(model: str, profiles: Iterable[DeviceProfile]) -> DeviceProfile | None:
    best: tuple[int, DeviceProfile] | None = None
    low = model.lower()
    for prof in profiles:
        for sub in prof.detect.device_tree_model:
            if sub.lower() in low and (best is None or len(sub) > best[0]):
                best = (len(sub), prof)
    return best[1] if best else None


def _match_compatible(compatible: str, profiles: Iterable[DeviceProfile]) -> DeviceProfile | None:
    entries = [c.strip().lower() for c in compatible.split("\0") if c.strip()]
    for prof in profiles:
        for part in prof.detect.device_tree_compatible:
            if any(part.lower() in entry for entry in entries):
                return prof
    return None


def detect(
    root: Path = Path("/"),
    *,
    machine: str | None = None,
    directory: str | os.PathLike | None = None,
) -> Detection:
    """Detect the device under ``root`` and return the matching profile plus the facts read.

    ``machine`` overrides ``platform.machine()``; when ``root`` is not ``/`` and no machine
    is given, the architecture is inferred from ``<root>/proc/cpuinfo``.
    """
    root = Path(root)
    profiles = list_profiles(directory)
    jetsons = [p for p in profiles if p.is_jetson]
    warnings: list[str] = []

    release_text = _read_text(root / "etc" / "nv_tegra_release")
    l4t = parse_nv_tegra_release(release_text) if release_text else None
    if release_text and l4t is None:
        warnings.append(
            f"{root / 'etc/nv_tegra_release'} does not look like '# R36 (release), REVISION: 4.0'; L4T version unknown"
        )
    model_text = _read_text(root / "proc" / "device-tree" / "model")
    model = (model_text.replace("\0", "").strip() or None) if model_text is not None else None
    compatible = _read_text(root / "proc" / "device-tree" / "compatible")
    cpu_model, cpu_count, machine_guess = _cpuinfo(_read_text(root / "proc" / "cpuinfo"))
    mem_mb = _meminfo_mb(_read_text(root / "proc" / "meminfo"))
    is_host = root.resolve() == Path("/").resolve()
    if cpu_count is None and is_host:
        cpu_count = os.cpu_count()
    if machine is None:
        machine = platform.machine() if is_host or machine_guess is None else machine_guess
    machine = _norm_machine(machine or "")

    profile: DeviceProfile | None = None
    matched_by = ""
    if model:
        profile = _match_model(model, jetsons)
        matched_by = "device-tree model" if profile else ""
    if profile is None and compatible:
        profile = _match_compatible(compatible, jetsons)
        matched_by = "device-tree compatible" if profile else ""
    looks_jetson = bool(l4t) or bool(model and re.search(r"jetson|nvidia", model, re.IGNORECASE))
    if profile is None and looks_jetson:
        warnings.append(
            f"this looks like an NVIDIA Jetson (model {model!r}, L4T {l4t or 'unknown'}) but no profile "
            "matches it; using the generic CPU profile, add a profile under mind_edge/devices/profiles/ for it"
        )
    if profile is None:
        for prof in profiles:
            if prof.kind == "cpu" and machine in {_norm_machine(m) for m in prof.detect.machines}:
                profile, matched_by = prof, "machine"
                break
    if profile is None:
        cpu_machines = sorted({_norm_machine(m) for p in profiles if p.kind == "cpu" for m in p.detect.machines})
        raise DeviceError(
            f"cannot detect a device profile under {root}: device-tree model {model!r}, machine {machine!r}; "
            f"profiles cover Jetson boards and the machines {', '.join(cpu_machines)}; "
            "pick one explicitly (mind-edge devices list) or add a profile file"
        )

    if not profile.supported:
        warnings.append(f"profile '{profile.name}' is not supported by mind-edge: {profile.support_note}")
    if profile.is_jetson:
        if l4t and profile.l4t_major is not None and int(l4t.split(".")[0]) != profile.l4t_major:
            warnings.append(
                f"profile '{profile.name}' describes JetPack {profile.jetpack} (L4T {profile.l4t}) but this "
                f"device runs L4T {l4t}; its TensorRT/CUDA versions differ from the profile's"
            )
        if mem_mb and profile.memory_gb:
            ratio = (mem_mb / 1024) / profile.memory_gb
            if ratio < 0.8 or ratio > 1.25:
                warnings.append(
                    f"profile '{profile.name}' expects {profile.memory_gb:g} GB but the device reports "
                    f"{mem_mb / 1024:.1f} GiB; it is probably another memory variant, size workspaces from the "
                    "measured memory"
                )
    for w in warnings:
        log.warning("%s", w)
    return Detection(
        profile=profile,
        l4t_version=l4t,
        model=model,
        cpu_model=cpu_model,
        cpu_count=cpu_count,
        memory_total_mb=mem_mb,
        machine=machine,
        matched_by=matched_by,
        warnings=tuple(warnings),
    )
