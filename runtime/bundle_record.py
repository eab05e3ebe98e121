"""``bundle.json``: its constants, its typed record and its one validating loader (torch-free).

``bundle.json`` (schema version :data:`BUNDLE_SCHEMA`) records the input spec (shape with a
dynamic batch, dtype, channel order, mean/std, resize), the tasks with their global class ids
and names, the routing temperature and policy, the output names/shapes/dtypes, the sha256 and
size of every other file, the exporter and opset versions, the source run's fingerprint, the
creation time, the probe batch, a summary of the validation report and, for a patched version,
its patch history and the version it was patched from; an FP16/INT8 bundle also its ``precision``
(:class:`PrecisionRecord`: the INT8 options and calibration images it was quantized with).

:func:`read_meta` checks the frame (format, schema version, required keys), :func:`check_meta`
every field mind-edge reads, and returns a frozen :class:`BundleRecord`; readers use the record's
attributes, writers its :meth:`BundleRecord.to_json`. Loading a bundle folder (versions, file
hashes) is :mod:`mind_edge.runtime.bundle`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mind_edge import __version__
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.precision_regions import INT8_METHODS
from mind_edge.runtime.signing import TRUSTED_KEYS_FILE
from mind_edge.schema import Fields, check_int, json_type, plain_name, read_json_file

BUNDLE_FORMAT = "mind-edge-bundle"
BUNDLE_SCHEMA = 1
BUNDLE_JSON = "bundle.json"
MODEL_FILE = "model.onnx"
PROBE_FILE = "probe.npz"
VALIDATION_FILE = "validation.json"
#: A versioned bundle (after the first ``mind-edge patch apply``): ``BUNDLE/CURRENT`` names the live
#: version (one line, e.g. ``v0002``; replaced atomically) under ``BUNDLE/versions/``.
POINTER_FILE = "CURRENT"
VERSIONS_DIR = "versions"
VERSION_RE = re.compile(r"^v[0-9]{4,9}$")
REQUIRED_KEYS = ("layout", "opset", "input", "tasks", "temperature", "outputs", "files")
#: Bundle-level files mind-edge manages itself; never a name under bundle.json's "files".
RESERVED_NAMES = (BUNDLE_JSON, POINTER_FILE, VERSIONS_DIR, TRUSTED_KEYS_FILE)
MAX_TASKS = 127  # owner maps are int8
MAX_CLASSES = 100_000  # per task
MAX_CLASS_ID = 10_000_000
MAX_SIDE = 8192  # input height/width
MAX_INPUT_PIXELS = 1 << 22  # 2048 x 2048: a float32 RGB image of 48 MB
MAX_BUNDLE_JSON_BYTES = 16 << 20  # bundle.json of 10,000 classes with long names is < 2 MB
MAX_POINTER_BYTES = 64
LAYOUTS = ("shared", "folded")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FIX = "re-export the bundle or re-copy it"


@dataclass(frozen=True)
class InputSpec:
    name: str
    channels: int
    height: int
    width: int
    dtype: str
    channel_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.channels, self.height, self.width)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.height, self.width)


@dataclass(frozen=True)
class FileRecord:
    """A file of the bundle as ``bundle.json`` records it."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class PatchRecord:
    """One applied task patch in a version's history (``patches`` of ``bundle.json``)."""

    sha256: str
    task: int
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    applied: str = ""
    signed_by: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the record as written (fingerprints too)

    def to_json(self) -> dict:
        return copy.deepcopy(dict(self.raw))


@dataclass(frozen=True)
class Int8Record:
    """How an INT8 bundle was quantized (``precision.int8``; the defaults of the first INT8 exporter)."""

    per_task: bool = True
    per_channel: bool = True
    activation: str = "uint8"
    method: str = "minmax"
    keep_fp32: tuple[str, ...] = ()
    fp32_features: bool = False  # sub-network 0 left FP32 (bundles written before the key quantized it)


@dataclass(frozen=True)
class CalibrationRecord:
    """The calibration images an INT8 bundle was quantized with (``precision.calibration``)."""

    images: int | None = None
    file: str | None = None  # the stored images (calibration.npz), a plain name in the bundle
    method: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class PrecisionRecord:
    """``precision`` of ``bundle.json`` (FP32 for a bundle that records none)."""

    precision: str = "fp32"
    int8: Int8Record = field(default_factory=Int8Record)
    calibration: CalibrationRecord | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """A copy of the object as written (``{"precision": ...}`` for one written as a bare name or absent)."""
        return copy.deepcopy(dict(self.raw)) if self.raw else {"precision": self.precision}


@dataclass(frozen=True, eq=False)
class BundleRecord:
    """``bundle.json`` as checked by :func:`check_meta` (the keys mind-edge reads, typed).

    ``raw`` is the whole JSON object (newer writers may add keys); :meth:`to_json` returns a
    copy for writers that derive a new ``bundle.json`` from this one.
    """

    layout: str
    opset: int
    temperature: float
    input: InputSpec
    task_classes: tuple[tuple[int, ...], ...]
    class_names: Mapping[int, str] = field(repr=False)
    routing_policy: str | None = None  # the name as written (None: not recorded); see Bundle.policy
    outputs: tuple[str, ...] = ()
    files: Mapping[str, FileRecord] = field(default_factory=dict, repr=False)
    patches: tuple[PatchRecord, ...] = ()
    base_version: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict, repr=False)
    probe_outputs_from: str | None = None  # "onnxruntime" when the probe's outputs were computed by ORT at export
    sizes: Mapping[str, int] = field(default_factory=dict)  # model_bytes, expected_bytes, dense_fp32_bytes, ...
    precision: PrecisionRecord = field(default_factory=PrecisionRecord)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def model_sha256(self) -> str:
        return self.files[MODEL_FILE].sha256

    def to_json(self) -> dict:
        """A deep copy of the JSON object (what a writer of a derived ``bundle.json`` starts from)."""
        return copy.deepcopy(dict(self.raw))


def read_meta(path: Path) -> dict:
    """``path/bundle.json`` as a dict: its format, schema version and required keys checked (the fields
    are checked by :func:`check_meta`; :func:`read_record` does both)."""
    meta_path = path / BUNDLE_JSON
    meta = read_json_file(meta_path, max_bytes=MAX_BUNDLE_JSON_BYTES, error=BundleError, what="bundle file", fix=_FIX)
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f'{meta_path} is not a mind-edge bundle file: expected "format": "{BUNDLE_FORMAT}"')
    version = meta.get("schema_version")
    if version != BUNDLE_SCHEMA:
        shown = version if isinstance(version, int) and not isinstance(version, bool) else json_type(version)
        raise BundleError(
            f"{meta_path} has bundle schema version {shown}; this mind-edge ({__version__}) reads schema version "
            f"{BUNDLE_SCHEMA} only. Re-export the bundle with this mind-edge, or upgrade mind-edge on this machine"
        )
    missing_keys = [k for k in REQUIRED_KEYS if k not in meta]
    if missing_keys:
        raise BundleError(f"{meta_path} lacks the keys {missing_keys}; the bundle is incomplete — re-export it")
    return meta


def check_meta(meta: Mapping[str, Any], where: str) -> BundleRecord:
    """Typed check of every ``bundle.json`` field mind-edge reads (types, ranges, plain file names).

    The one validation of ``bundle.json``: returns the :class:`BundleRecord` built from what it
    checked; raises :class:`BundleError` naming the field (never echoing its value).
    """
    f = Fields(meta, f"{where} is malformed", BundleError, hint=_FIX)
    layout = f.str("layout", choices=LAYOUTS)
    opset = f.int("opset", lo=1, hi=1000)
    temperature = f.float("temperature", positive=True)
    inp = f.sub("input")
    shape = inp.list("shape", min_len=4, max_len=4)
    b0 = shape[0]
    if isinstance(b0, bool) or not isinstance(b0, int) or not (b0 == -1 or b0 >= 1):
        raise BundleError(f'{where} is malformed: "input.shape[0]" must be -1 (dynamic batch) or a batch size; {_FIX}')
    c, h, w = (check_int(v, f"input.shape[{i + 1}]", inp, lo=1, hi=MAX_SIDE) for i, v in enumerate(shape[1:]))
    if c not in (1, 3):
        raise BundleError(f"{where} is malformed: the input has {c} channels, mind-edge bundles have 1 or 3; {_FIX}")
    if h * w > MAX_INPUT_PIXELS:
        raise BundleError(
            f"{where} is malformed: the input is {h}x{w} pixels, more than the {MAX_INPUT_PIXELS:,} this "
            f"mind-edge runs; {_FIX}"
        )
    mean, std = inp.floats("mean", min_len=c, max_len=c), inp.floats("std", positive=True, min_len=c, max_len=c)
    spec = InputSpec(
        name=inp.str("name", max_len=256),
        channels=c,
        height=h,
        width=w,
        dtype=inp.str("dtype", max_len=32),
        channel_order=inp.str("channel_order", max_len=16),
        mean=tuple(mean),
        std=tuple(std),
        resize=inp.str("resize", choices=("bilinear",), default="bilinear"),
    )
    tasks = f.list("tasks", min_len=1, max_len=MAX_TASKS)
    parsed_tasks = []
    for i, t in enumerate(tasks):
        tf = f.item(t, f"tasks[{i}]")
        classes = tf.ints("classes", lo=0, hi=MAX_CLASS_ID, min_len=1, max_len=MAX_CLASSES, unique=True)
        names = tf.strs("class_names", min_len=len(classes), max_len=len(classes), max_str=1024)
        parsed_tasks.append((tf.int("index", lo=0, hi=MAX_TASKS), classes, names))
    parsed_tasks.sort(key=lambda t: t[0])
    if [t[0] for t in parsed_tasks] != list(range(len(parsed_tasks))):
        raise BundleError(f"{where} is malformed: the task indices are not 0..{len(parsed_tasks) - 1}; {_FIX}")
    seen: dict[int, str] = {}
    for _, classes, names in parsed_tasks:
        for cid, name in zip(classes, names):
            if cid in seen:
                raise BundleError(f"{where} is malformed: class id {cid} belongs to two tasks; {_FIX}")
            seen[cid] = name
    outputs = tuple(
        f.item(o, f"outputs[{i}]").str("name", max_len=256)
        for i, o in enumerate(f.list("outputs", min_len=1, max_len=64))
    )
    files_obj = f.sub("files")
    files: dict[str, FileRecord] = {}
    for name in files_obj.obj:
        plain_name(name, f'{where} ("files")', BundleError)
        if name in RESERVED_NAMES:
            raise BundleError(f'{where} lists {name} under "files", a name mind-edge reserves; {_FIX}')
        rec = files_obj.sub(name)
        files[name] = FileRecord(rec.str("sha256", pattern=_SHA256_RE, max_len=64), rec.int("bytes", lo=0))
    if MODEL_FILE not in files:
        raise BundleError(f'{where} does not list {MODEL_FILE} under "files"; the bundle is incomplete — re-export it')
    for key in ("probe", "validation"):
        sub = f.obj_or_none(key)
        if sub is not None and "file" in sub.obj:
            plain_name(sub.obj["file"], f'{where} ("{key}.file")', BundleError)
    patches = []
    if "patches" in meta:
        for i, rec in enumerate(f.list("patches", max_len=MAX_TASKS)):
            pf = f.item(rec, f"patches[{i}]")
            patches.append(
                PatchRecord(
                    sha256=pf.str("sha256", pattern=_SHA256_RE, max_len=64),
                    task=pf.int("task", lo=0, hi=MAX_TASKS),
                    classes=tuple(pf.ints("classes", lo=0, hi=MAX_CLASS_ID, max_len=MAX_CLASSES)),
                    class_names=tuple(pf.strs("class_names", max_len=MAX_CLASSES, max_str=1024)),
                    applied=pf.str("applied", max_len=64, default=""),
                    signed_by=pf.str("signed_by", max_len=64) if pf.has("signed_by") else None,
                    raw=rec,
                )
            )
    base_version = None
    if meta.get("base_version") is not None:
        base_version = f.str("base_version", pattern=VERSION_RE, max_len=16)
    sizes_obj = f.obj_or_none("sizes")
    sizes = {str(k): sizes_obj.int(k, lo=0) for k in sizes_obj.obj} if sizes_obj is not None else {}
    routing = meta.get("routing")  # the policy's name is the routing module's business (Bundle.policy)
    policy = routing.get("policy") if isinstance(routing, dict) else None
    source = meta.get("source")
    probe = meta.get("probe")
    probe_from = probe.get("outputs_from") if isinstance(probe, dict) else None
    return BundleRecord(
        layout=layout,
        opset=opset,
        temperature=temperature,
        input=spec,
        task_classes=tuple(tuple(c) for _, c, _ in parsed_tasks),
        class_names=MappingProxyType(seen),
        routing_policy=None if policy is None else policy if isinstance(policy, str) else repr(policy),
        outputs=outputs,
        files=MappingProxyType(files),
        patches=tuple(patches),
        base_version=base_version,
        source=MappingProxyType(dict(source)) if isinstance(source, dict) else MappingProxyType({}),
        probe_outputs_from=probe_from if isinstance(probe_from, str) else None,
        sizes=MappingProxyType(sizes),
        precision=_precision(f, where),
        raw=meta,
    )


def _precision(f: Fields, where: str) -> PrecisionRecord:
    """``precision``: absent (FP32), a bare name (early FP16/INT8 bundles) or the exporter's object."""
    if f.obj.get("precision") is None:
        return PrecisionRecord()
    if isinstance(f.obj["precision"], str):
        return PrecisionRecord(precision=f.str("precision", max_len=16))
    pf = f.sub("precision")
    q = pf.obj_or_none("int8")
    int8 = (
        Int8Record()
        if q is None
        else Int8Record(
            per_task=q.bool("per_task", default=True),
            per_channel=q.bool("per_channel", default=True),
            activation=q.str("activation", max_len=16, default="uint8"),
            method=q.str("method", choices=INT8_METHODS, default="minmax"),
            keep_fp32=tuple(q.strs("keep_fp32", max_len=1024, max_str=256)) if "keep_fp32" in q.obj else (),
            fp32_features=q.bool("fp32_features", default=False),
        )
    )
    c = pf.obj_or_none("calibration")
    calibration = None
    if c is not None:
        file = c.str("file", max_len=256) if c.has("file") else None
        if file is not None:
            plain_name(file, f'{where} ("precision.calibration.file")', BundleError)
        calibration = CalibrationRecord(
            images=c.int("images", lo=0) if c.has("images") else None,
            file=file,
            method=c.str("method", max_len=64) if c.has("method") else None,
            source=c.str("source", max_len=4096) if c.has("source") else None,
        )
    return PrecisionRecord(
        precision=pf.str("precision", max_len=16, default="fp32"), int8=int8, calibration=calibration, raw=pf.obj
    )


def read_record(path: Path) -> BundleRecord:
    """``path/bundle.json`` read by :func:`read_meta` and checked by :func:`check_meta`."""
    return check_meta(read_meta(path), str(path / BUNDLE_JSON))
