"""Device profiles (data files) and device detection.

Profiles live as JSON files in ``devices/profiles/*.json`` (installed as package data of
``mind_edge.devices``). Each file is checked on load against its schema, which is written once:
the frozen dataclasses (:class:`DeviceProfile` and its nested records) *are* the schema, and the
checker, the builder and ``to_dict`` all read them, so a broken profile fails with the file and
the key named, never with a ``KeyError`` deep inside a benchmark.

Detection (:func:`detect`) reads a root filesystem (``/`` by default, a fake tree in tests):

* ``etc/nv_tegra_release``  -> Jetson Linux (L4T) version, ``# R36 (release), REVISION: 4.0`` -> ``36.4.0``
* ``proc/device-tree/model`` -> board model (NUL-terminated), matched against each Jetson
  profile's ``detect.device_tree_model`` substrings (the longest match wins)
* ``proc/device-tree/compatible`` -> module part numbers (``p3767-0005``...), the fallback
* ``proc/cpuinfo`` / ``proc/meminfo`` -> CPU model, CPU count, memory

A board that is not a known Jetson gets the generic CPU profile of its architecture.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import platform
import re
import typing
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


# --------------------------------------------------------------------------- schema
#
# The dataclasses below ARE the schema of a profile file: one field per JSON key, nested like the
# file. A field without a default is a required key; ``X | None`` may be null; the annotation is
# the JSON type (``tuple[...]`` = list, a dataclass = object, ``float`` = any number). Field
# metadata adds ``min`` (lowest allowed number) and ``jetson`` (must not be null on a jetson
# profile). :func:`_check` validates a parsed file against them, :func:`_from_json` builds them,
# ``to_dict`` writes them back in the same layout.


def _key(*, jetson: bool = False, low: int | None = None, **kw: Any) -> Any:
    meta = {k: v for k, v in (("jetson", jetson), ("min", low)) if v is not None and v is not False}
    return field(metadata=meta, **kw)


@dataclass(frozen=True)
class CpuSpec:
    model: str | None = _key(jetson=True)  # None on a generic profile: detected at run time
    cores: int | None = _key(jetson=True, low=1)


@dataclass(frozen=True)
class SoftwareSpec:
    """The stock software of the device's OS image (JetPack) this profile describes."""

    jetpack: str | None = _key(jetson=True)
    l4t: str | None = _key(jetson=True)
    tensorrt: str | None = _key(jetson=True)
    cuda: str | None = _key(jetson=True)
    python: str | None = _key(jetson=True)


@dataclass(frozen=True)
class GpuSpec:
    arch: str
    cuda_cores: int = _key(low=1)
    tensor_cores: int = _key(low=0)
    compute_capability: str = _key()


@dataclass(frozen=True)
class PowerMode:
    """One ``nvpmodel`` mode: ``sudo nvpmodel -m <id>``."""

    id: int = _key(low=0)
    name: str = _key()
    watts: float | None = _key()  # None: no fixed budget (MAXN-style modes)
    note: str | None = None

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class DetectRules:
    device_tree_model: tuple[str, ...]
    machines: tuple[str, ...]
    device_tree_compatible: tuple[str, ...] = ()


@dataclass(frozen=True)
class Defaults:
    """Safe starting settings for a runtime/engine builder on this device."""

    workspace_mb: int = _key(low=0)  # TensorRT builder workspace; small on shared-memory boards
    fp16: bool = _key()
    int8: bool = _key()
    batch: int = _key(low=1)
    threads: int = _key(low=0)  # 0: decide at run time (one per physical core)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    display_name: str
    kind: str  # "jetson" | "cpu"
    arch: str
    module: str
    soc: str | None = _key(jetson=True)
    cpu: CpuSpec = _key()
    software: SoftwareSpec = _key()
    memory_gb: float | None = _key(jetson=True)
    memory_shared: bool = _key()
    gpu: GpuSpec | None = _key(jetson=True)
    dla_cores: int = _key(low=0)
    power_modes: tuple[PowerMode, ...] = _key()
    detect: DetectRules = _key()
    defaults: Defaults = _key()
    notes: str = _key()
    sources: tuple[str, ...] = _key()
    #: False for a device whose stock software is below what mind-edge needs (``support_note`` says why).
    supported: bool = True
    support_note: str = ""
    path: str = field(default="", compare=False, metadata={"json": False})  # the file it was read from

    # flat views of the nested records
    cpu_model = property(lambda self: self.cpu.model)
    cpu_cores = property(lambda self: self.cpu.cores)
    jetpack = property(lambda self: self.software.jetpack)
    l4t = property(lambda self: self.software.l4t)
    tensorrt = property(lambda self: self.software.tensorrt)
    cuda = property(lambda self: self.software.cuda)
    python = property(lambda self: self.software.python)

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
        """The profile in its file layout (``schema_version`` first; no ``path``)."""
        out = {"schema_version": SCHEMA_VERSION, **asdict(self)}
        out.pop("path", None)
        return out


# --------------------------------------------------------------------------- schema check

_NUM = (int, float)


@dataclass(frozen=True)
class _Field:
    name: str
    types: tuple[type, ...]  # accepted JSON types of a non-null value
    nullable: bool
    required: bool
    item: Any  # element type of a list (str or a dataclass), the dataclass of an object, else None
    meta: Mapping[str, Any]


@lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[_Field, ...]:
    """The JSON keys of a schema dataclass, from its fields and annotations."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("json", True):
            continue
        tp, nullable = hints[f.name], False
        args = typing.get_args(tp)
        if type(None) in args:  # X | None
            nullable, tp = True, next(a for a in args if a is not type(None))
        item = None
        if typing.get_origin(tp) is tuple:
            types, item = (list,), typing.get_args(tp)[0]
        elif dataclasses.is_dataclass(tp):
            types, item = (dict,), tp
        else:
            types = _NUM if tp is float else (tp,)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(_Field(f.name, types, nullable, required, item, f.metadata))
    return tuple(out)


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", dict: "object", list: "list"}
    if types == _NUM:
        return "number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python; never accept it for a number
    return isinstance(value, types)


def _check(cls: type, obj: Mapping[str, Any], prefix: str, errors: list[str], extra: Iterable[str] = ()) -> None:
    """Append every problem of ``obj`` against schema dataclass ``cls`` to ``errors``."""
    fields = _fields(cls)
    for f in fields:
        dotted = f"{prefix}{f.name}"
        if f.name not in obj:
            if f.required:
                errors.append(f"missing key '{dotted}' ({_type_name(f.types)})")
            continue
        value = obj[f.name]
        if value is None:
            if not f.nullable:
                errors.append(f"key '{dotted}' is null but must be a {_type_name(f.types)}")
            continue
        if not _check_type(value, f.types):
            errors.append(f"key '{dotted}' is {type(value).__name__} {value!r} but must be a {_type_name(f.types)}")
            continue
        low = f.meta.get("min")
        if low is not None and value < low:
            errors.append(f"key '{dotted}' is {value}, must be >= {low}")
        if f.types == (dict,):
            _check(f.item, value, f"{dotted}.", errors)
        elif f.types == (list,):
            for i, it in enumerate(value):
                if f.item is str and (not isinstance(it, str) or not it.strip()):
                    errors.append(f"key '{dotted}[{i}]' must be a non-empty string")
                elif f.item is not str and not isinstance(it, dict):
                    errors.append(f"key '{dotted}[{i}]' must be an object")
                elif f.item is not str:
                    _check(f.item, it, f"{dotted}[{i}].", errors)
    known = {f.name for f in fields} | set(extra)
    errors.extend(f"unknown key '{prefix}{key}'" for key in sorted(set(obj) - known))


def _jetson_unset(cls: type, obj: Any, prefix: str) -> list[str]:
    """Dotted keys marked ``jetson`` that are null or missing (objects that are absent are reported once)."""
    out = []
    for f in _fields(cls):
        value = obj.get(f.name) if isinstance(obj, Mapping) else None
        if f.meta.get("jetson") and value is None:
            out.append(f"{prefix}{f.name}")
        elif f.types == (dict,) and isinstance(value, Mapping):
            out += _jetson_unset(f.item, value, f"{prefix}{f.name}.")
    return out


def _validate(data: Any, path: Path) -> list[str]:
    """Return every schema problem of a parsed profile (empty list: valid)."""
    if not isinstance(data, dict):
        return [f"top level is {type(data).__name__}, must be a JSON object"]
    errors: list[str] = []
    if "schema_version" not in data:
        errors.append("missing key 'schema_version' (integer)")
    elif not _check_type(data["schema_version"], (int,)):
        errors.append(f"key 'schema_version' is {data['schema_version']!r} but must be a integer")
    elif data["schema_version"] != SCHEMA_VERSION:
        errors.append(
            f"key 'schema_version' is {data['schema_version']}, this mind-edge reads version {SCHEMA_VERSION}"
        )
    _check(DeviceProfile, data, "", errors, extra=("schema_version",))
    if data.get("supported") is False and not str(data.get("support_note") or "").strip():
        errors.append("key 'support_note' must say why a profile with \"supported\": false is unsupported")
    if isinstance(data.get("kind"), str) and data["kind"] not in KINDS:
        errors.append(f"key 'kind' is {data['kind']!r}, must be one of {', '.join(KINDS)}")
    if isinstance(data.get("name"), str):
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", data["name"]):
            errors.append(f"key 'name' {data['name']!r} must be a lowercase slug like 'orin-nano-8gb'")
        elif path.suffix == ".json" and path.stem != data["name"]:
            errors.append(f"key 'name' is {data['name']!r} but the file is named {path.name!r}; they must match")
    modes = data.get("power_modes")
    if isinstance(modes, list):
        ids = [m.get("id") for m in modes if isinstance(m, dict) and _check_type(m.get("id"), (int,))]
        errors.extend(f"key 'power_modes[{i}].id' repeats nvpmodel id {mid}"
                      for i, mid in enumerate(ids) if mid in ids[:i])
    if isinstance(data.get("sources"), list) and not data["sources"]:
        errors.append("key 'sources' is empty; say where the numbers come from")
    det = data.get("detect") if isinstance(data.get("detect"), dict) else {}
    if data.get("kind") == "jetson":
        errors.extend(f"key '{k}' must be set on a jetson profile" for k in _jetson_unset(DeviceProfile, data, "")
                      if not any(f"'{k}'" in e for e in errors))
        if isinstance(det.get("device_tree_model"), list) and not det["device_tree_model"]:
            errors.append("key 'detect.device_tree_model' is empty; a jetson profile needs at least one substring")
        if isinstance(modes, list) and not modes:
            errors.append("key 'power_modes' is empty; a jetson profile lists its nvpmodel modes")
    elif data.get("kind") == "cpu":
        if isinstance(det.get("machines"), list) and not det["machines"]:
            errors.append("key 'detect.machines' is empty; a cpu profile names the platform.machine() values it covers")
    return errors


def _from_json(cls: type, obj: Mapping[str, Any]) -> Any:
    """Build schema dataclass ``cls`` from a validated object (absent optional keys keep their defaults)."""
    kw: dict[str, Any] = {}
    for f in _fields(cls):
        if f.name not in obj:
            continue
        value = obj[f.name]
        if value is not None and f.types == (dict,):
            value = _from_json(f.item, value)
        elif value is not None and f.types == (list,):
            value = tuple(it if f.item is str else _from_json(f.item, it) for it in value)
        kw[f.name] = value
    return cls(**kw)


def _build(data: Mapping[str, Any], path: Path) -> DeviceProfile:
    return dataclasses.replace(_from_json(DeviceProfile, data), path=str(path))


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
