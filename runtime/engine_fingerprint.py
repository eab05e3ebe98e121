"""TensorRT engine fingerprints, the ``engine.json`` index and the TensorRT version logic.

Torch-free and TensorRT-free: everything here runs (and is tested) on any machine. The
TensorRT module and the GPU query are *passed in* (dependency injection), so tests hand a
fake module object to the same functions the builder and the runner call.

An engine (``engine-<key>.plan``) is a TensorRT plan built on one machine for one model;
it is never portable (README "Artifacts"). Each one is recorded in ``engine.json`` beside the
bundle's ``model.onnx`` with its **fingerprint**:

* the machine: TensorRT version (exact ``tensorrt.__version__``), GPU name, compute capability;
* the build: precision (``fp32``/``fp16``), typing (``weak``: TensorRT 10 builder flags,
  ``strong``: precision from the graph), DLA core (or none), workspace MB, batch profile;
* the model: sha256 of the bundle's ``model.onnx`` (a patched bundle invalidates its engines).

``<key>`` is the first 16 hex digits of the sha256 of the canonical JSON of the fingerprint.
:func:`select_engine` refuses an engine recorded for another machine or model with a message
naming both sides.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mind_edge.errors import MindEdgeError
from mind_edge.fileio import atomic_write_json, sha256_file
from mind_edge.runtime.errors import BackendError
from mind_edge.schema import read_regular_file

log = logging.getLogger(__name__)

ENGINE_JSON = "engine.json"
ENGINE_FORMAT = "mind-edge-engines"
ENGINE_SCHEMA = 1
PRECISIONS = ("fp32", "fp16", "int8")  # int8: an INT8 bundle's QDQ graph (issue 14)
TYPINGS = ("weak", "strong")
MIN_TRT_MAJOR = 10  # the I/O tensor API (num_io_tensors, set_tensor_address, execute_async_v3)
STRONG_ONLY_MAJOR = 11  # TensorRT 11 removed weak typing (BuilderFlag.FP16, OBEY_PRECISION_CONSTRAINTS)
DEFAULT_WORKSPACE_MB = 256
MACHINE_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")
#: TensorRT's timing cache inside a bundle (version) folder: per machine, but valid for any model.
TIMING_CACHE = "trt-cache/timing.cache"
#: Files a deploy never copies to another machine: engines and TensorRT caches are per machine.
MACHINE_LOCAL_PATTERNS = ("engine-*.plan", ENGINE_JSON, "trt-cache/", "*.timing-cache")
#: ``engine.json`` holds a few hundred bytes per engine (one per precision/batch profile/machine):
#: 1 MiB is thousands of records, and anything larger is not an index mind-edge wrote.
MAX_ENGINE_JSON_BYTES = 1 << 20


class EngineError(MindEdgeError):
    """An engine cannot be built, found, or used on this machine."""


class EngineMismatchError(EngineError):
    """The engines recorded for a bundle were built for another machine, model or setting."""


class NoEngineError(EngineError):
    """A bundle has no TensorRT engine yet."""


TENSORRT_HINT = (
    "on a Jetson it comes with JetPack (python3-libnvinfer; create the venv with --system-site-packages so it stays "
    "importable); on an x86-64 machine with an NVIDIA GPU: pip install tensorrt"
)


def import_tensorrt(purpose: str = "building a TensorRT engine"):
    """``import tensorrt`` or an :class:`EngineError` saying how to get it (never at import time of mind-edge)."""
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: PLC0415 - JetPack's, no extra: own hint below
    except ImportError as exc:
        raise EngineError(
            f"{purpose} needs the 'tensorrt' Python package, which is not importable here ({exc}); "
            f"{TENSORRT_HINT}. Without it, run the bundle with ONNX Runtime (--backend ort)"
        ) from exc
    return tensorrt


_LOGGERS: dict[tuple[int, bool], Any] = {}


def trt_logger(trt: Any, verbose: bool = False):
    """One ``trt.Logger`` per module and verbosity (TensorRT expects a single logger per process)."""
    key = (id(trt), bool(verbose))
    if key not in _LOGGERS:
        _LOGGERS[key] = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    return _LOGGERS[key]


# ----------------------------------------------------------------------------- versions


def parse_trt_version(version: str) -> tuple[int, int, int]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``; raises EngineError for an unreadable version string."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(version))
    if not m:
        raise EngineError(f"cannot read the TensorRT version {version!r}; expected something like '10.3.0'")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def choose_typing(trt_version: str, *, fp16: bool, strongly_typed: bool | None = None) -> str:
    """Which build path a TensorRT version takes: ``"weak"`` or ``"strong"``.

    * TensorRT < 10: refused (mind-edge uses the TensorRT 10 I/O tensor API; JetPack 6 ships 10.3).
    * TensorRT 10.x: ``weak`` (builder flags: ``BuilderFlag.FP16`` with the routing head pinned to
      FP32 through layer precisions + ``OBEY_PRECISION_CONSTRAINTS``) unless ``strongly_typed``
      asks for a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``).
    * TensorRT >= 11: always ``strong`` (weak typing was removed): precision comes from the
      graph, so ``--fp16`` builds from a graph with explicit FP16 casts around the backbone.
    """
    major, minor, _ = parse_trt_version(trt_version)
    if major < MIN_TRT_MAJOR:
        raise EngineError(
            f"TensorRT {trt_version} is too old: mind-edge builds and runs engines with the TensorRT "
            f"{MIN_TRT_MAJOR} I/O tensor API (JetPack 6 ships TensorRT 10.3); upgrade TensorRT or run the bundle "
            "with ONNX Runtime (--backend ort)"
        )
    if major >= STRONG_ONLY_MAJOR:
        if strongly_typed is False:
            raise EngineError(
                f"TensorRT {trt_version} builds strongly typed networks only (weak typing and BuilderFlag.FP16 were "
                "removed in TensorRT 11); drop the request for weak typing"
            )
        return "strong"
    return "strong" if strongly_typed else "weak"


# ----------------------------------------------------------------------------- machine


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


@dataclass(frozen=True)
class MachineInfo:
    """What makes an engine usable on a machine: the exact TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name!r} (compute capability {self.compute_capability})"


def _cudart():
    """cuda-python's runtime bindings (``cuda.bindings.runtime`` >= 12.6, ``cuda.cudart`` before)."""
    # NVIDIA's optional wheel (no mind-edge extra), named by version; query_gpu uses libcuda without it
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]  # noqa: PLC0415 - see above
    except ImportError:
        from cuda import cudart  # type: ignore[import-not-found,no-redef]  # noqa: PLC0415 - see above
    return cudart


def _gpu_from_cuda_python(device: int) -> GpuInfo:
    cudart = _cudart()
    err, props = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"cudaGetDeviceProperties({device}) failed with {err}: no usable CUDA GPU")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return GpuInfo(str(name).strip(), f"{int(props.major)}.{int(props.minor)}")


def _gpu_from_libcuda(device: int) -> GpuInfo:
    """The CUDA driver API through ctypes (no Python package needed; libcuda ships with the driver/JetPack)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        raise BackendError(f"no CUDA driver library (libcuda.so.1) on this machine: {exc}") from exc
    dev = ctypes.c_int()
    for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(dev), device))):
        rc = getattr(lib, call)(*args)
        if rc != 0:
            raise BackendError(f"{call} failed with CUDA driver error {rc}: no usable CUDA GPU {device}")
    buf = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if lib.cuDeviceGetName(buf, 256, dev) != 0:
        raise BackendError(f"cuDeviceGetName failed for CUDA GPU {device}")
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    return GpuInfo(buf.value.decode("utf-8", "replace").strip(), f"{major.value}.{minor.value}")


def query_gpu(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA GPU ``device`` (cuda-python if installed, else libcuda via ctypes)."""
    try:
        return _gpu_from_cuda_python(device)
    except ImportError:
        return _gpu_from_libcuda(device)


def machine_info(trt: Any, gpu: GpuInfo | Callable[[], GpuInfo] | None = None) -> MachineInfo:
    """The :class:`MachineInfo` of this machine for the TensorRT module ``trt`` (injected)."""
    info = gpu() if callable(gpu) else (gpu if gpu is not None else query_gpu())
    version = str(getattr(trt, "__version__", "") or "")
    if not version:
        raise EngineError("the tensorrt module has no __version__; cannot fingerprint engines built with it")
    return MachineInfo(tensorrt_version=version, gpu_name=info.name, compute_capability=info.compute_capability)


# ----------------------------------------------------------------------------- fingerprint


@dataclass(frozen=True)
class EngineFingerprint:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # fp32 | fp16
    typing: str  # weak | strong
    dla_core: int | None
    workspace_mb: int
    model_sha256: str
    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"unknown engine precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.typing not in TYPINGS:
            raise EngineError(f"unknown network typing {self.typing!r}; expected one of {', '.join(TYPINGS)}")
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise EngineError(
                f"the batch profile must satisfy 1 <= min <= opt <= max, got min {self.min_batch}, opt "
                f"{self.opt_batch}, max {self.max_batch}"
            )

    @property
    def machine(self) -> MachineInfo:
        return MachineInfo(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = ENGINE_JSON) -> EngineFingerprint:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise EngineError(
                f"{where}: an engine fingerprint lacks {missing}; rebuild the engine with 'mind-edge engine build'"
            )
        try:
            dla = data["dla_core"]
            return cls(
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=str(data["compute_capability"]),
                precision=str(data["precision"]),
                typing=str(data["typing"]),
                dla_core=None if dla is None else int(dla),
                workspace_mb=int(data["workspace_mb"]),
                model_sha256=str(data["model_sha256"]),
                min_batch=int(data["min_batch"]),
                opt_batch=int(data["opt_batch"]),
                max_batch=int(data["max_batch"]),
            )
        except (TypeError, ValueError) as exc:
            raise EngineError(f"{where}: malformed engine fingerprint ({exc}); rebuild the engine") from exc

    def key(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def plan_name(self) -> str:
        return f"engine-{self.key()}.plan"

    def describe(self) -> str:
        dla = f", DLA core {self.dla_core}" if self.dla_core is not None else ""
        return (
            f"{self.precision} ({self.typing} typing{dla}, batch {self.min_batch}..{self.max_batch}, workspace "
            f"{self.workspace_mb} MB) for {self.machine.describe()}"
        )


def machine_differences(recorded: MachineInfo, current: MachineInfo) -> list[str]:
    out = []
    for name in MACHINE_FIELDS:
        a, b = getattr(recorded, name), getattr(current, name)
        if a != b:
            out.append(f"{name.replace('_', ' ')} {a!r} vs {b!r} here")
    return out


# ----------------------------------------------------------------------------- engine.json


@dataclass(frozen=True)
class EngineRecord:
    file: str
    sha256: str
    bytes: int
    fingerprint: EngineFingerprint
    created: str
    info: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "fingerprint": self.fingerprint.to_json(),
            "created": self.created,
            **({"info": dict(self.info)} if self.info else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> EngineRecord:
        if not isinstance(data, Mapping):
            raise EngineError(f"{where}: an engine entry is a {type(data).__name__}, expected an object")
        try:
            fp = EngineFingerprint.from_json(data["fingerprint"], where)
            rec = cls(
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
                fingerprint=fp,
                created=str(data.get("created", "")),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                f"{where}: malformed engine entry ({type(exc).__name__}: {exc}); rebuild the engine"
            ) from exc
        if "/" in rec.file or rec.file.startswith(".") or rec.file != fp.plan_name:
            raise EngineError(
                f"{where}: engine file {rec.file!r} does not match its fingerprint key (expected {fp.plan_name}); the "
                "index was edited by hand — rebuild the engine"
            )
        return rec


def empty_index() -> dict[str, Any]:
    return {"format": ENGINE_FORMAT, "schema_version": ENGINE_SCHEMA, "engines": []}


def read_index(bundle_dir: str | os.PathLike) -> list[EngineRecord]:
    """The engines recorded in ``<bundle_dir>/engine.json`` (empty list when there is none)."""
    path = Path(bundle_dir) / ENGINE_JSON
    if not os.path.lexists(path):
        return []
    raw = read_regular_file(
        path,
        max_bytes=MAX_ENGINE_JSON_BYTES,
        error=EngineError,
        what="engine index",
        fix=f"delete {ENGINE_JSON} and rebuild the engine",
    )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = "too deeply nested" if isinstance(exc, RecursionError) else str(exc)
        raise EngineError(f"{path} is not readable JSON ({why}); delete it and rebuild the engine") from None
    if not isinstance(data, dict) or data.get("format") != ENGINE_FORMAT:
        raise EngineError(f'{path} is not a mind-edge engine index (expected "format": "{ENGINE_FORMAT}")')
    if data.get("schema_version") != ENGINE_SCHEMA:
        raise EngineError(
            f"{path} has engine index schema {data.get('schema_version')!r}; "
            f"this mind-edge reads schema {ENGINE_SCHEMA}. "
            "Rebuild the engine with this mind-edge"
        )
    engines = data.get("engines")
    if not isinstance(engines, list):
        raise EngineError(f'{path}: "engines" must be a list')
    return [EngineRecord.from_json(e, str(path)) for e in engines]


def write_index(bundle_dir: str | os.PathLike, records: Sequence[EngineRecord]) -> Path:
    index = empty_index()
    index["engines"] = [r.to_json() for r in records]
    return atomic_write_json(Path(bundle_dir) / ENGINE_JSON, index)


def add_record(bundle_dir: str | os.PathLike, record: EngineRecord) -> Path:
    """Add (or replace, same file) ``record`` in the index; entries whose plan file is gone are dropped."""
    bundle_dir = Path(bundle_dir)
    kept = [r for r in read_index(bundle_dir) if r.file != record.file and (bundle_dir / r.file).is_file()]
    return write_index(bundle_dir, kept + [record])


def prune_stale(bundle_dir: str | os.PathLike, machine: MachineInfo, model_sha256: str) -> list[str]:
    """Delete the engines built on ``machine`` for another model than ``model_sha256``.

    A redeploy or a task patch of the bundle leaves them behind; they can never be used again on
    this machine (engines of other machines are left alone). Returns the deleted file names.
    """
    bundle_dir = Path(bundle_dir)
    keep, gone = [], []
    for rec in read_index(bundle_dir):
        if rec.fingerprint.machine == machine and rec.fingerprint.model_sha256 != model_sha256:
            (bundle_dir / rec.file).unlink(missing_ok=True)
            gone.append(rec.file)
        else:
            keep.append(rec)
    if gone:
        write_index(bundle_dir, keep)
    return gone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def select_engine(
    bundle_dir: str | os.PathLike,
    machine: MachineInfo,
    model_sha256: str,
    *,
    precision: str | None = None,
    dla_core: int | None | str = "any",
    verify: bool = True,
) -> EngineRecord:
    """The engine of ``bundle_dir`` usable on ``machine`` for the model ``model_sha256``.

    ``precision`` / ``dla_core`` narrow the choice (``dla_core="any"``: GPU or DLA). Among several
    matches the most recently built wins. Raises :class:`NoEngineError` when the bundle has no
    engine and :class:`EngineMismatchError` naming the recorded and the current fingerprints
    when none fits.
    """
    bundle_dir = Path(bundle_dir)
    records = read_index(bundle_dir)
    build_hint = f"build one here with: mind-edge engine build {bundle_dir}" + (
        " --fp16" if precision == "fp16" else ""
    )
    if not records:
        raise NoEngineError(
            f"bundle {bundle_dir} has no TensorRT engine ({ENGINE_JSON} is missing or empty); {build_hint}"
        )
    problems: list[str] = []
    candidates: list[EngineRecord] = []
    for rec in records:
        fp = rec.fingerprint
        diffs = machine_differences(fp.machine, machine)
        if fp.model_sha256 != model_sha256:
            diffs.append(
                f"model sha256 {fp.model_sha256[:12]}… vs {model_sha256[:12]}… of the bundle's model.onnx "
                "(the bundle changed since the build)"
            )
        if precision is not None and fp.precision != precision:
            diffs.append(f"precision {fp.precision} vs {precision} asked for")
        if dla_core != "any" and fp.dla_core != dla_core:
            diffs.append(f"DLA core {fp.dla_core} vs {dla_core} asked for")
        if diffs:
            problems.append(f"{rec.file} ({fp.describe()}): " + ", ".join(diffs))
            continue
        if not (bundle_dir / rec.file).is_file():
            problems.append(f"{rec.file}: listed in {ENGINE_JSON} but the file is missing")
            continue
        candidates.append(rec)
    if not candidates:
        raise EngineMismatchError(
            f"no engine of bundle {bundle_dir} fits this machine ({machine.describe()}): "
            + "; ".join(problems)
            + f". TensorRT engines are not portable between GPUs, TensorRT versions or models — {build_hint}"
        )
    rec = sorted(candidates, key=lambda r: r.created)[-1]
    if verify:
        path = bundle_dir / rec.file
        size = path.stat().st_size
        got = sha256_file(path) if size == rec.bytes else None
        if size != rec.bytes or got != rec.sha256:
            raise EngineError(
                f"engine {path} does not match {ENGINE_JSON} ({size} bytes, sha256 {(got or '?')[:12]}… on disk vs "
                f"{rec.bytes} bytes, {rec.sha256[:12]}… recorded); it was modified or truncated — rebuild it with "
                f"mind-edge engine build {bundle_dir} --force"
            )
    return rec


__all__ = [
    "ENGINE_JSON",
    "TIMING_CACHE",
    "ENGINE_FORMAT",
    "ENGINE_SCHEMA",
    "PRECISIONS",
    "DEFAULT_WORKSPACE_MB",
    "MACHINE_LOCAL_PATTERNS",
    "EngineError",
    "EngineMismatchError",
    "NoEngineError",
    "GpuInfo",
    "MachineInfo",
    "EngineFingerprint",
    "EngineRecord",
    "parse_trt_version",
    "import_tensorrt",
    "trt_logger",
    "choose_typing",
    "query_gpu",
    "machine_info",
    "machine_differences",
    "read_index",
    "write_index",
    "add_record",
    "prune_stale",
    "select_engine",
    "now_iso",
]
