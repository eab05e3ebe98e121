"""Device profiles (data files) and device detection.

Profiles live as JSON files in ``devices/profiles/*.json`` (installed as package data of
``mind_edge.devices``). Each file is checked against a small schema on load, so a broken
profile fails with the file and the key named, never with a ``KeyError`` deep inside a
benchmark.

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
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from mind_edge.devices.errors import DeviceError, ProfileError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KINDS = ("jetson", "cpu")

__all__ = [
    "Defaults",
    "Detection",
    "DetectRules",
    "DeviceProfile",
    "GpuSpec",
    "PowerMode",
    "SCHEMA_VERSION",
    "detect",
    "get_profile",
    "list_profiles",
    "load_profile_file",
    "load_profiles",
    "parse_nv_tegra_release",
]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class GpuSpec:
    arch: str
    cuda_cores: int
    tensor_cores: int
    compute_capability: str


@dataclass(frozen=True)
class PowerMode:
    """One ``nvpmodel`` mode: ``sudo nvpmodel -m <id>``."""

    id: int
    name: str
    watts: float | None  # None: no fixed budget (MAXN-style modes)
    note: str | None = None

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class DetectRules:
    device_tree_model: tuple[str, ...] = ()
    device_tree_compatible: tuple[str, ...] = ()
    machines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Defaults:
    """Safe starting settings for a runtime/engine builder on this device."""

    workspace_mb: int  # TensorRT builder workspace; small on shared-memory boards
    fp16: bool
    int8: bool
    batch: int
    threads: int  # 0: decide at run time (one per physical core)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    display_name: str
    kind: str  # "jetson" | "cpu"
    arch: str
    module: str
    soc: str | None
    cpu_model: str | None
    cpu_cores: int | None
    jetpack: str | None
    l4t: str | None
    tensorrt: str | None
    cuda: str | None
    python: str | None
    memory_gb: float | None
    memory_shared: bool
    gpu: GpuSpec | None
    dla_cores: int
    power_modes: tuple[PowerMode, ...]
    detect: DetectRules
    defaults: Defaults
    notes: str
    sources: tuple[str, ...]
    #: False for a device whose stock software is below what mind-edge needs (``support_note`` says why).
    supported: bool = True
    support_note: str = ""
    path: str = field(default="", compare=False)

    @property
    def is_jetson(self) -> bool:
        return self.kind == "jetson"

    @property
    def l4t_major(self) -> int | None:
        if not self.l4t:
            return None
        head = self.l4t.split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def power_mode(self, key: int | str) -> PowerMode:
        """Look up a power mode by nvpmodel id or name (case-insensitive)."""
        for mode in self.power_modes:
            if (isinstance(key, int) and mode.id == key) or (
                isinstance(key, str) and mode.name.lower() == key.strip().lower()
            ):
                return mode
        known = ", ".join(f"{m.id}={m.name}" for m in self.power_modes) or "none"
        raise DeviceError(
            f"device profile '{self.name}' has no power mode {key!r}; known modes: {known}; "
            "list them on the device with: sudo nvpmodel -p --verbose"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path", None)
        return out


# --------------------------------------------------------------------------- schema check

# key -> (expected types, nullable). Nested dicts have their own specs below.
_NUM = (int, float)
_TOP: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema_version": ((int,), False),
    "name": ((str,), False),
    "display_name": ((str,), False),
    "kind": ((str,), False),
    "arch": ((str,), False),
    "module": ((str,), False),
    "soc": ((str,), True),
    "cpu": ((dict,), False),
    "software": ((dict,), False),
    "memory_gb": (_NUM, True),
    "memory_shared": ((bool,), False),
    "gpu": ((dict,), True),
    "dla_cores": ((int,), False),
    "power_modes": ((list,), False),
    "detect": ((dict,), False),
    "defaults": ((dict,), False),
    "notes": ((str,), False),
    "sources": ((list,), False),
}
# Optional top-level keys: "supported": false marks a profile whose stock software mind-edge
# does not support (its "support_note" says why and what would work).
_TOP_OPTIONAL: dict[str, tuple[tuple[type, ...], bool]] = {
    "supported": ((bool,), False),
    "support_note": ((str,), False),
}
_CPU = {"model": ((str,), True), "cores": ((int,), True)}
_SOFTWARE = {
    "jetpack": ((str,), True),
    "l4t": ((str,), True),
    "tensorrt": ((str,), True),
    "cuda": ((str,), True),
    "python": ((str,), True),
}
_GPU = {
    "arch": ((str,), False),
    "cuda_cores": ((int,), False),
    "tensor_cores": ((int,), False),
    "compute_capability": ((str,), False),
}
_POWER_MODE = {"id": ((int,), False), "name": ((str,), False), "watts": (_NUM, True)}
_POWER_MODE_OPTIONAL = {"note": ((str,), True)}
_DETECT = {
    "device_tree_model": ((list,), False),
    "machines": ((list,), False),
}
_DETECT_OPTIONAL = {"device_tree_compatible": ((list,), False)}
_DEFAULTS = {
    "workspace_mb": ((int,), False),
    "fp16": ((bool,), False),
    "int8": ((bool,), False),
    "batch": ((int,), False),
    "threads": ((int,), False),
}
# Fields a Jetson profile must fill (they may be null only on CPU profiles).
_JETSON_REQUIRED = (
    "soc",
    "cpu.model",
    "cpu.cores",
    "software.jetpack",
    "software.l4t",
    "software.tensorrt",
    "software.cuda",
    "software.python",
    "memory_gb",
    "gpu",
)


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", dict: "object", list: "list"}
    if types == _NUM:
        return "number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python; never accept it for a number
    return isinstance(value, types)


def _check_obj(
    obj: Mapping[str, Any],
    spec: Mapping[str, tuple[tuple[type, ...], bool]],
    prefix: str,
    errors: list[str],
    optional: Mapping[str, tuple[tuple[type, ...], bool]] | None = None,
) -> None:
    optional = optional or {}
    for key, (types, nullable) in spec.items():
        dotted = f"{prefix}{key}"
        if key not in obj:
            errors.append(f"missing key '{dotted}' ({_type_name(types)})")
            continue
        value = obj[key]
        if value is None:
            if not nullable:
                errors.append(f"key '{dotted}' is null but must be a {_type_name(types)}")
            continue
        if not _check_type(value, types):
            errors.append(
                f"key '{dotted}' is {type(value).__name__} {value!r} but must be a {_type_name(types)}"
            )
    for key, (types, nullable) in optional.items():
        if key in obj and obj[key] is not None and not _check_type(obj[key], types):
            errors.append(f"key '{prefix}{key}' must be a {_type_name(types)}")
        elif key in obj and obj[key] is None and not nullable:
            errors.append(f"key '{prefix}{key}' is null but must be a {_type_name(types)}")
    unknown = sorted(set(obj) - set(spec) - set(optional))
    for key in unknown:
        errors.append(f"unknown key '{prefix}{key}'")


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _validate(data: Any, path: Path) -> list[str]:
    """Return every schema problem of a parsed profile (empty list: valid)."""
    if not isinstance(data, dict):
        return [f"top level is {type(data).__name__}, must be a JSON object"]
    errors: list[str] = []
    _check_obj(data, _TOP, "", errors, _TOP_OPTIONAL)
    if data.get("supported") is False and not str(data.get("support_note") or "").strip():
        errors.append("key 'support_note' must say why a profile with \"supported\": false is unsupported")
    if isinstance(data.get("schema_version"), int) and data["schema_version"] != SCHEMA_VERSION:
        errors.append(
            f"key 'schema_version' is {data['schema_version']}, this mind-edge reads version {SCHEMA_VERSION}"
        )
    if isinstance(data.get("kind"), str) and data["kind"] not in KINDS:
        errors.append(f"key 'kind' is {data['kind']!r}, must be one of {', '.join(KINDS)}")
    if isinstance(data.get("name"), str):
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", data["name"]):
            errors.append(f"key 'name' {data['name']!r} must be a lowercase slug like 'orin-nano-8gb'")
        elif path.suffix == ".json" and path.stem != data["name"]:
            errors.append(f"key 'name' is {data['name']!r} but the file is named {path.name!r}; they must match")
    if isinstance(data.get("cpu"), dict):
        _check_obj(data["cpu"], _CPU, "cpu.", errors)
    if isinstance(data.get("software"), dict):
        _check_obj(data["software"], _SOFTWARE, "software.", errors)
    if isinstance(data.get("gpu"), dict):
        _check_obj(data["gpu"], _GPU, "gpu.", errors)
    if isinstance(data.get("detect"), dict):
        det = data["detect"]
        _check_obj(det, _DETECT, "detect.", errors, _DETECT_OPTIONAL)
        for key in ("device_tree_model", "device_tree_compatible", "machines"):
            items = det.get(key)
            if isinstance(items, list):
                for i, item in enumerate(items):
                    if not isinstance(item, str) or not item.strip():
                        errors.append(f"key 'detect.{key}[{i}]' must be a non-empty string")
    if isinstance(data.get("defaults"), dict):
        _check_obj(data["defaults"], _DEFAULTS, "defaults.", errors)
        for key in ("workspace_mb", "batch", "threads"):
            value = data["defaults"].get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value < (1 if key == "batch" else 0):
                errors.append(f"key 'defaults.{key}' is {value}, must be >= {1 if key == 'batch' else 0}")
    if isinstance(data.get("power_modes"), list):
        seen: set[int] = set()
        for i, mode in enumerate(data["power_modes"]):
            if not isinstance(mode, dict):
                errors.append(f"key 'power_modes[{i}]' must be an object")
                continue
            _check_obj(mode, _POWER_MODE, f"power_modes[{i}].", errors, _POWER_MODE_OPTIONAL)
            mid = mode.get("id")
            if isinstance(mid, int):
                if mid in seen:
                    errors.append(f"key 'power_modes[{i}].id' repeats nvpmodel id {mid}")
                seen.add(mid)
    if isinstance(data.get("sources"), list):
        if not data["sources"]:
            errors.append("key 'sources' is empty; say where the numbers come from")
        for i, item in enumerate(data["sources"]):
            if not isinstance(item, str) or not item.strip():
                errors.append(f"key 'sources[{i}]' must be a non-empty string")
    if isinstance(data.get("dla_cores"), int) and data["dla_cores"] < 0:
        errors.append("key 'dla_cores' must be >= 0")
    if data.get("kind") == "jetson":
        for dotted in _JETSON_REQUIRED:
            parent = dotted.rpartition(".")[0]
            if parent and not isinstance(data.get(parent), dict):
                continue  # already reported as a missing or mistyped object
            if _get(data, dotted) is None and not any(f"'{dotted}'" in e for e in errors):
                errors.append(f"key '{dotted}' must be set on a jetson profile")
        det = data.get("detect")
        if isinstance(det, dict) and isinstance(det.get("device_tree_model"), list) and not det["device_tree_model"]:
            errors.append("key 'detect.device_tree_model' is empty; a jetson profile needs at least one substring")
        if isinstance(data.get("power_modes"), list) and not data["power_modes"]:
            errors.append("key 'power_modes' is empty; a jetson profile lists its nvpmodel modes")
    elif data.get("kind") == "cpu":
        det = data.get("detect")
        if isinstance(det, dict) and isinstance(det.get("machines"), list) and not det["machines"]:
            errors.append("key 'detect.machines' is empty; a cpu profile names the platform.machine() values it covers")
    return errors


def _build(data: Mapping[str, Any], path: Path) -> DeviceProfile:
    cpu = data["cpu"]
    sw = data["software"]
    gpu = data.get("gpu")
    det = data["detect"]
    d = data["defaults"]
    return DeviceProfile(
        name=data["name"],
        display_name=data["display_name"],
        kind=data["kind"],
        arch=data["arch"],
        module=data["module"],
        soc=data.get("soc"),
        cpu_model=cpu.get("model"),
        cpu_cores=cpu.get("cores"),
        jetpack=sw.get("jetpack"),
        l4t=sw.get("l4t"),
        tensorrt=sw.get("tensorrt"),
        cuda=sw.get("cuda"),
        python=sw.get("python"),
        memory_gb=data.get("memory_gb"),
        memory_shared=data["memory_shared"],
        gpu=GpuSpec(**gpu) if gpu else None,
        dla_cores=data["dla_cores"],
        power_modes=tuple(
            PowerMode(id=m["id"], name=m["name"], watts=m["watts"], note=m.get("note"))
            for m in data["power_modes"]
        ),
        detect=DetectRules(
            device_tree_model=tuple(det["device_tree_model"]),
            device_tree_compatible=tuple(det.get("device_tree_compatible", ())),
            machines=tuple(det["machines"]),
        ),
        defaults=Defaults(**d),
        notes=data["notes"],
        sources=tuple(data["sources"]),
        supported=bool(data.get("supported", True)),
        support_note=str(data.get("support_note", "")),
        path=str(path),
    )


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
    errors = _validate(data, path)
    if errors:
        raise ProfileError(f"device profile {path} is invalid: {'; '.join(errors)}; {fix}")
    return _build(data, path)


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
                    f"{mem_mb / 1024:.1f} GiB; it is probably another memory variant, size workspaces from the measured memory"
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
