"""The device profile schema (torch-free, standard library only): the frozen dataclasses *are* the schema.

:class:`DeviceProfile` and its nested records define every key of a profile file
(``devices/profiles/*.json``); :func:`validate_profile` checks a parsed file against them (all
problems at once, each naming the key), :func:`build_profile` builds the record and ``to_dict``
writes it back in the same layout. Loading the files and detecting the device is
:mod:`mind_edge.devices.profiles`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mind_edge.devices.errors import DeviceError

SCHEMA_VERSION = 1
KINDS = ("jetson", "cpu")


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


@cache
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


def validate_profile(data: Any, path: Path) -> list[str]:
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
        errors.extend(
            f"key 'power_modes[{i}].id' repeats nvpmodel id {mid}" for i, mid in enumerate(ids) if mid in ids[:i]
        )
    if isinstance(data.get("sources"), list) and not data["sources"]:
        errors.append("key 'sources' is empty; say where the numbers come from")
    det = data.get("detect") if isinstance(data.get("detect"), dict) else {}
    if data.get("kind") == "jetson":
        errors.extend(
            f"key '{k}' must be set on a jetson profile"
            for k in _jetson_unset(DeviceProfile, data, "")
            if not any(f"'{k}'" in e for e in errors)
        )
        if isinstance(det.get("device_tree_model"), list) and not det["device_tree_model"]:
            errors.append("key 'detect.device_tree_model' is empty; a jetson profile needs at least one substring")
        if isinstance(modes, list) and not modes:
            errors.append("key 'power_modes' is empty; a jetson profile lists its nvpmodel modes")
    elif data.get("kind") == "cpu" and isinstance(det.get("machines"), list) and not det["machines"]:
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


def build_profile(data: Mapping[str, Any], path: Path) -> DeviceProfile:
    return dataclasses.replace(_from_json(DeviceProfile, data), path=str(path))
