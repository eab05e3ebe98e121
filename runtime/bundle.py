"""Bundles: the folder that ships to a device (``model.onnx`` + ``bundle.json`` + probe + report).

``bundle.json`` (schema version :data:`BUNDLE_SCHEMA`) records the input spec (shape with a
dynamic batch, dtype, channel order, mean/std, resize), the tasks with their global class ids
and names, the routing temperature and policy, the output names/shapes/dtypes, the sha256 and
size of every other file, the exporter and opset versions, the source run's fingerprint, the
creation time, the probe batch and a summary of the validation report.

A bundle is written into a temporary sibling folder and renamed into place
(:func:`write_bundle`), so a failed export or patch never leaves a half-written bundle.
:meth:`Bundle.load` checks the format, the schema version and every file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mind_edge import __version__
from mind_edge.fileio import atomic_write, atomic_write_json, fsync_dir, make_temp_dir, sha256_file
from mind_edge.schema import Fields, check_int, json_type, plain_name, read_json_file, read_regular_file
from mind_edge.textsafe import clean
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.signing import TRUSTED_KEYS_FILE
from mind_edge.runtime.routing import class_table

log = logging.getLogger(__name__)

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


def _regular(path: Path) -> bool:
    """A regular file, not a symlink (a bundle holds plain files only)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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


MAX_BUNDLE_JSON_BYTES = 16 << 20  # bundle.json of 10,000 classes with long names is < 2 MB
MAX_POINTER_BYTES = 64
LAYOUTS = ("shared", "folded")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FIX = "re-export the bundle or re-copy it"


class _Vanished(BundleError):
    """A file of the bundle disappeared while it was read (a patch apply may have just committed)."""


def resolve_version(root: Path) -> tuple[Path, str | None]:
    """The folder holding the live ``bundle.json`` of ``root`` and its version name.

    A plain bundle (as written by ``mind-edge export``) is its own folder (version ``None``);
    a versioned one follows ``root/CURRENT`` to ``root/versions/<name>``. ``CURRENT`` wins over
    stray plain files, so replacing it is the single commit point of a patch. ``CURRENT`` is a
    small regular file written by mind-edge: a symlink, a FIFO, a large file or anything but a
    version name is refused without echoing what it holds (it may point at a secret).
    """
    pointer = root / POINTER_FILE
    try:
        st = os.lstat(pointer)
    except FileNotFoundError:
        return root, None
    except OSError as exc:
        raise BundleError(f"{pointer} cannot be read ({exc.strerror}); the versioned bundle {root} is corrupt — re-copy it") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise BundleError(f"{pointer} is {kind}; mind-edge writes {POINTER_FILE} as a small plain file, so the bundle {root} "
                          "was tampered with or damaged — re-copy it")
    data = read_regular_file(pointer, max_bytes=MAX_POINTER_BYTES, error=BundleError, what="the version pointer",
                             follow_symlinks=False)
    try:
        name = data.decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if not VERSION_RE.match(name):
        raise BundleError(f"{pointer} ({len(data)} bytes) is not a version name like v0002; the bundle {root} is corrupt "
                          "— re-copy it")
    vdir = root / VERSIONS_DIR
    if vdir.is_symlink():
        raise BundleError(f"{vdir} is a symbolic link; mind-edge keeps a bundle's versions inside the bundle folder — "
                          "re-copy the bundle")
    folder = vdir / name
    if folder.is_symlink():
        raise BundleError(f"{folder} is a symbolic link; mind-edge writes versions as plain folders — re-copy the bundle")
    if not folder.is_dir():
        raise BundleError(
            f"{pointer} points to version {name} but {folder} does not exist (versions kept: "
            f"{_listing(vdir)}); re-copy the bundle"
        )
    return folder, name


def _listing(folder: Path) -> str:
    try:
        names = sorted(clean(p.name, limit=80) for p in folder.iterdir())
    except OSError:
        return "nothing readable"
    if len(names) > 20:
        names = names[:20] + [f"… {len(names) - 20} more"]
    return ", ".join(names) if names else "nothing"


def read_meta(path: Path) -> dict:
    """``path/bundle.json`` read and checked by the typed loader (:func:`check_meta`)."""
    meta_path = path / BUNDLE_JSON
    meta = read_json_file(meta_path, max_bytes=MAX_BUNDLE_JSON_BYTES, error=BundleError, what="bundle file",
                          fix=_FIX)
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path} is not a mind-edge bundle file: expected \"format\": \"{BUNDLE_FORMAT}\"")
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


@dataclass(frozen=True)
class _Parsed:
    input: InputSpec
    task_classes: tuple[tuple[int, ...], ...]
    names: dict[int, str]
    files: dict[str, tuple[str, int]]


def check_meta(meta: dict, where: str) -> _Parsed:
    """Typed check of every ``bundle.json`` field mind-edge reads (types, ranges, plain file names)."""
    f = Fields(meta, f"{where} is malformed", BundleError, hint=_FIX)
    f.str("layout", choices=LAYOUTS)
    f.int("opset", lo=1, hi=1000)
    f.float("temperature", positive=True)
    inp = f.sub("input")
    shape = inp.list("shape", min_len=4, max_len=4)
    b0 = shape[0]
    if isinstance(b0, bool) or not isinstance(b0, int) or not (b0 == -1 or b0 >= 1):
        raise BundleError(f"{where} is malformed: \"input.shape[0]\" must be -1 (dynamic batch) or a batch size; {_FIX}")
    c, h, w = (check_int(v, f"input.shape[{i + 1}]", inp, lo=1, hi=MAX_SIDE) for i, v in enumerate(shape[1:]))
    if c not in (1, 3):
        raise BundleError(f"{where} is malformed: the input has {c} channels, mind-edge bundles have 1 or 3; {_FIX}")
    if h * w > MAX_INPUT_PIXELS:
        raise BundleError(f"{where} is malformed: the input is {h}x{w} pixels, more than the {MAX_INPUT_PIXELS:,} this "
                          f"mind-edge runs; {_FIX}")
    mean, std = inp.floats("mean", min_len=c, max_len=c), inp.floats("std", positive=True, min_len=c, max_len=c)
    spec = InputSpec(name=inp.str("name", max_len=256), channels=c, height=h, width=w, dtype=inp.str("dtype", max_len=32),
                     channel_order=inp.str("channel_order", max_len=16), mean=tuple(mean), std=tuple(std),
                     resize=inp.str("resize", choices=("bilinear",), default="bilinear"))
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
    for i, o in enumerate(f.list("outputs", min_len=1, max_len=64)):
        f.item(o, f"outputs[{i}]").str("name", max_len=256)
    files_obj = f.sub("files")
    files: dict[str, tuple[str, int]] = {}
    for name in files_obj.obj:
        plain_name(name, f"{where} (\"files\")", BundleError)
        if name in RESERVED_NAMES:
            raise BundleError(f"{where} lists {name} under \"files\", a name mind-edge reserves; {_FIX}")
        rec = files_obj.sub(name)
        files[name] = (rec.str("sha256", pattern=_SHA256_RE, max_len=64), rec.int("bytes", lo=0))
    if MODEL_FILE not in files:
        raise BundleError(f"{where} does not list {MODEL_FILE} under \"files\"; the bundle is incomplete — re-export it")
    for key in ("probe", "validation"):
        sub = f.obj_or_none(key)
        if sub is not None and "file" in sub.obj:
            plain_name(sub.obj["file"], f"{where} (\"{key}.file\")", BundleError)
    if "patches" in meta:
        for i, rec in enumerate(f.list("patches", max_len=MAX_TASKS)):
            pf = f.item(rec, f"patches[{i}]")
            pf.str("sha256", pattern=_SHA256_RE, max_len=64)
            pf.int("task", lo=0, hi=MAX_TASKS)
            pf.ints("classes", lo=0, hi=MAX_CLASS_ID, max_len=MAX_CLASSES)
            pf.strs("class_names", max_len=MAX_CLASSES, max_str=1024)
            pf.str("applied", max_len=64, default="")
            if pf.has("signed_by"):
                pf.str("signed_by", max_len=64)
    if meta.get("base_version") is not None:
        f.str("base_version", pattern=VERSION_RE, max_len=16)
    task_classes = tuple(tuple(c) for _, c, _ in parsed_tasks)
    return _Parsed(spec, task_classes, seen, files)


@dataclass(frozen=True)
class Bundle:
    """A loaded (and verified) bundle directory."""

    path: Path
    meta: Mapping[str, Any]
    input: InputSpec
    task_classes: tuple[tuple[int, ...], ...]
    class_names: Mapping[int, str] = field(repr=False)
    root: Path | None = None  # the bundle folder the user named (differs from ``path`` for versioned bundles)
    version: str | None = None  # the live version of a versioned bundle, None for a plain one

    # -- loading --------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> "Bundle":
        """Read ``bundle.json``, check its schema version and (``verify``) every file's sha256.

        ``path`` is a plain bundle folder or a versioned one (``CURRENT`` + ``versions/``),
        whose live version is loaded.
        """
        path = Path(path)
        if path.is_file() and path.name in (BUNDLE_JSON, MODEL_FILE):
            path = path.parent
        if not path.is_dir():
            raise BundleError(
                f"bundle {path} does not exist or is not a folder; pass the --out folder of 'mind-edge export'"
            )
        root = path
        for attempt in (0, 1):
            folder, live = resolve_version(root)
            try:
                return cls._load_folder(folder, root, live, verify)
            except _Vanished:
                # a reader that resolved the plain layout just before the first 'patch apply' committed and removed
                # the plain files: the bundle is now versioned, read its live version instead
                if attempt or live is not None or not os.path.lexists(root / POINTER_FILE):
                    raise
                log.info("bundle %s was updated while it was read; loading its live version", root)
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _load_folder(cls, path: Path, root: Path, live: str | None, verify: bool) -> "Bundle":
        meta_path = path / BUNDLE_JSON
        if not os.path.lexists(meta_path):
            err = _Vanished if live is None and os.path.lexists(root / POINTER_FILE) else BundleError
            raise err(
                f"bundle {path} has no {BUNDLE_JSON} (the folder holds: {_listing(path)}); is it a mind-edge bundle? "
                "Re-export it with 'mind-edge export'"
            )
        try:
            meta = read_meta(path)
        except BundleError as exc:
            if live is None and not os.path.lexists(meta_path):
                raise _Vanished(str(exc)) from None
            raise
        parsed = check_meta(meta, str(meta_path))
        missing = [name for name in parsed.files if not _regular(path / name)]
        if missing:
            err = _Vanished if live is None and os.path.lexists(root / POINTER_FILE) else BundleError
            raise err(
                f"bundle {path} is missing {', '.join(missing)} listed in {BUNDLE_JSON} (the folder holds: "
                f"{_listing(path)}); copy the whole bundle folder again or re-export it"
            )
        if verify:
            for name, (want, want_bytes) in parsed.files.items():
                f = path / name
                try:
                    size = f.stat().st_size
                    if size != want_bytes:
                        raise BundleError(
                            f"{name} in bundle {path} has {size} bytes but {BUNDLE_JSON} records {want_bytes} (sha256 "
                            f"{want[:12]}…); the file was modified or truncated — re-export or re-copy the bundle"
                        )
                    got = sha256_file(f)
                except FileNotFoundError:
                    raise _Vanished(f"{name} in bundle {path} disappeared while it was read; read the bundle again") from None
                except OSError as exc:
                    raise BundleError(f"{name} in bundle {path} cannot be read ({exc.strerror}); re-copy the bundle") from None
                if got != want:
                    raise BundleError(
                        f"{name} in bundle {path} does not match {BUNDLE_JSON}: sha256 {got[:12]}… on disk vs "
                        f"{want[:12]}… recorded; the file was modified or corrupted — re-export or re-copy the bundle"
                    )
        return cls(path=path, meta=meta, input=parsed.input, task_classes=parsed.task_classes,
                   class_names=parsed.names, root=root, version=live)

    # -- accessors ------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def superseded(self) -> bool:
        """A plain bundle that the first ``patch apply`` turned into a versioned one since it was loaded
        (its files moved into ``versions/``): load ``root`` again to read the live version."""
        root = self.root or self.path
        return self.version is None and not os.path.lexists(self.model_path) and os.path.lexists(root / POINTER_FILE)

    @property
    def layout(self) -> str:
        return str(self.meta["layout"])

    @property
    def opset(self) -> int:
        return int(self.meta["opset"])

    @property
    def temperature(self) -> float:
        return float(self.meta["temperature"])

    @property
    def policy(self) -> str:
        """The routing policy the bundle's graph computes (``maxprob`` for bundles older than policies)."""
        routing = self.meta.get("routing")
        name = routing.get("policy", "maxprob") if isinstance(routing, dict) else "maxprob"
        from mind_edge.runtime.routing import get_policy

        return get_policy(name).name

    @property
    def num_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def cmax(self) -> int:
        return max(len(c) for c in self.task_classes)

    @property
    def output_names(self) -> list[str]:
        return [str(o["name"]) for o in self.meta["outputs"]]

    def class_table(self) -> np.ndarray:
        """``[N, Cmax]`` int64 global class ids per task, padded with ``-1``."""
        return class_table([list(c) for c in self.task_classes], self.cmax)

    def class_name(self, label: int) -> str:
        return self.class_names.get(int(label), str(int(label)))

    def probe(self) -> dict[str, np.ndarray]:
        """The probe batch: ``image`` plus the outputs the bundle produced for it at export."""
        path = self.path / PROBE_FILE
        if not path.is_file():
            raise BundleError(f"bundle {self.path} has no {PROBE_FILE} (the folder holds: {_listing(self.path)})")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path} cannot be read as a probe batch ({type(exc).__name__}); re-export the bundle") from None

    def validation(self) -> dict | None:
        path = self.path / VALIDATION_FILE
        if not path.is_file():
            return None
        return read_json_file(path, max_bytes=MAX_BUNDLE_JSON_BYTES, error=BundleError, what="validation report", fix=_FIX)


def names_by_id(class_names, task_classes, error: type[Exception] = BundleError) -> dict[int, str]:
    """``{global class id: name}`` for every class the tasks predict; ``error`` names a missing one."""
    names: dict[int, str] = {}
    for t, classes in enumerate(task_classes):
        for c in classes:
            try:
                names[c] = str(class_names[c])
            except (KeyError, IndexError):
                raise error(
                    f"task {t} predicts global class {c} but the class names have no entry for it "
                    f"({len(class_names)} names given); pass the scenario's class names"
                ) from None
    return names


def task_records(task_classes, names: Mapping[int, str] | list[str]) -> list[dict]:
    """``bundle.json``'s ``tasks`` list from per-task global class ids and the class names."""
    out = []
    for t, classes in enumerate(task_classes):
        out.append({"index": t, "classes": [int(c) for c in classes], "class_names": [str(names[int(c)]) for c in classes]})
    return out


Writer = Callable[[Path], None]


def write_bundle(out_dir: str | os.PathLike, files: Mapping[str, bytes | Writer], meta: dict, *, overwrite: bool = False) -> Path:
    """Write ``files`` and ``bundle.json`` (``meta`` + ``files`` hashes) as one atomic folder swap.

    Everything goes into a temporary sibling folder first; only when every file is written and
    fsync'ed is it renamed to ``out_dir`` (replacing an existing bundle only with ``overwrite``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BundleError(f"bundle output {out} exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"bundle output folder {out} exists and is not empty; choose another --out or pass --overwrite")
    for name in files:
        plain_name(name, "the bundle writer", BundleError)
        if name in RESERVED_NAMES:
            raise BundleError(f"invalid bundle file name {name!r}: reserved by mind-edge")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    old: Path | None = None
    try:
        records = {}
        for name, content in files.items():
            target = tmp / name
            if isinstance(content, (bytes, bytearray, memoryview)):
                data = bytes(content)
                atomic_write(target, lambda p, d=data: p.write_bytes(d))
            else:
                atomic_write(target, content)
            records[name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
        full = {"format": BUNDLE_FORMAT, "schema_version": BUNDLE_SCHEMA,
                **{k: v for k, v in meta.items() if k not in ("format", "schema_version", "files")}, "files": records}
        atomic_write_json(tmp / BUNDLE_JSON, full)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("wrote bundle %s (%s)", out, ", ".join(records))
    return out


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _ort_outputs(model_bytes: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    from mind_edge.runtime.sessions import cpu_session

    sess = cpu_session(model_bytes, what="computing a bundle's probe outputs")
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def prepare_bundle(
    arrays,
    *,
    layout: str,
    temperature: float,
    class_names: Mapping[int, str] | list[str],
    mean: list[float] | tuple[float, ...],
    std: list[float] | tuple[float, ...],
    opset: int | None = None,
    channel_order: str | None = None,
    model_bytes: bytes | None = None,
    probe_inputs: np.ndarray | None = None,
    probe_outputs: Mapping[str, np.ndarray] | None = None,
    report: dict | None = None,
    source: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    policy: str = "auto",
) -> tuple[dict[str, bytes], dict]:
    """The files and ``bundle.json`` of a bundle for the network ``arrays``, checked, nothing written.

    :func:`assemble_bundle` writes them; ``patch apply`` prepares a new version completely (and
    checks it with the typed loader) before it writes anything.

    ``model_bytes`` is the serialized graph (built here from ``arrays`` when omitted);
    ``probe_inputs`` a small float32 NCHW batch stored with the outputs the graph gives for it
    (computed here with ONNX Runtime when ``probe_outputs`` is omitted; 4 seeded random inputs
    when both are omitted); ``report`` the validation report saved as ``validation.json``;
    ``extra`` more top-level ``bundle.json`` keys (e.g. the patch history of a patched version).
    """
    from datetime import datetime, timezone

    from mind_edge.runtime.graph import CONTRACT, build_graph, expected_bytes, naive_sizes, resolve_policy
    from mind_edge.runtime.routing import get_policy

    from mind_edge.errors import require

    onnx = require("onnx", "export", "building a bundle's ONNX graph")
    opset = int(opset or CONTRACT.opset)
    c_in = int(arrays.net["in_channels"])
    h, w = (int(v) for v in arrays.net["input_size"])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != c_in or len(std) != c_in or min(std) <= 0:
        raise BundleError(f"mean and std need {c_in} value(s) (one per input channel, std > 0); got mean={mean} std={std}")
    names = names_by_id(class_names, arrays.task_classes)
    policy = resolve_policy(policy, arrays)
    if model_bytes is None:
        model_bytes = build_graph(arrays, layout=layout, temperature=temperature, opset=opset,
                                  policy=policy).SerializeToString()
    if probe_inputs is None:
        probe_inputs = np.random.default_rng(0).standard_normal((4, c_in, h, w)).astype(np.float32)
        probe_outputs = None
    probe_inputs = np.ascontiguousarray(probe_inputs, dtype=np.float32)
    probe_from = "onnxruntime" if probe_outputs is None else "given"
    if probe_outputs is None:
        probe_outputs = _ort_outputs(model_bytes, probe_inputs)
    report = report if report is not None else {"passed": None, "skipped": True, "reason": "not validated"}
    dense, naive = naive_sizes(arrays, opset)
    n, cmax = arrays.num_tasks, arrays.cmax
    meta = {
        "layout": layout,
        "opset": opset,
        "input": {"name": CONTRACT.input_name, "shape": [-1, c_in, h, w], "dtype": CONTRACT.input_dtype,
                  "layout": "NCHW", "channel_order": channel_order or ("RGB" if c_in == 3 else "L"),
                  "mean": mean, "std": std, "resize": "bilinear",
                  "normalize": "(x / 255 - mean[c]) / std[c] in float32 (mind_edge.imageio.normalize)"},
        "tasks": task_records(arrays.task_classes, names),
        "num_classes": sum(len(c) for c in arrays.task_classes),
        "temperature": float(temperature),
        "routing": {"policy": policy, "version": get_policy(policy).version, "pad_logit": CONTRACT.pad_logit,
                    "ties": "first index", "stats": get_policy(policy).needs_stats,
                    "rule": f"task = argmax_t score_t ({get_policy(policy).summary}); "
                            "label = global id of that head's argmax (mind_edge.core.routing)"},
        "outputs": CONTRACT.to_json(n, cmax, _feature_dim(arrays)),
        "exporter": {"mind_edge": __version__, "onnx": onnx.__version__, "opset": opset, "graph": "task-stacked"},
        "source": dict(source or {}),
        "sizes": {"model_bytes": len(model_bytes), "expected_bytes": expected_bytes(arrays, layout, policy),
                  "dense_fp32_bytes": dense, "naive_bytes": naive, "dense_weights": arrays.dense_weight_count()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "probe": {"file": PROBE_FILE, "count": int(probe_inputs.shape[0]), "outputs_from": probe_from},
        "validation": {"file": VALIDATION_FILE, **{k: report.get(k) for k in ("passed", "atol", "rtol", "max_abs_diff",
                                                                                "max_rel_diff", "agreement")}},
    }
    for k, v in (extra or {}).items():
        if k in meta or k in ("format", "schema_version", "files"):
            raise BundleError(f"extra bundle.json key {k!r} would replace a standard key")
        meta[k] = v
    files = {
        MODEL_FILE: model_bytes,
        PROBE_FILE: _npz_bytes({CONTRACT.input_name: probe_inputs, **probe_outputs}),
        VALIDATION_FILE: (json.dumps(report, indent=2) + "\n").encode("utf-8"),
    }
    check_meta({"format": BUNDLE_FORMAT, "schema_version": BUNDLE_SCHEMA, **meta,
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in files.items()}},
               "the new bundle.json")
    return files, meta


def _feature_dim(arrays) -> int:
    """Channels of ``task_features`` (all routing taps) of a network."""
    from mind_edge.core.plan import plan_net
    from mind_edge.core.routing import plan_taps

    return int(sum(plan_taps(plan_net(arrays.net))[1]))


def assemble_bundle(out_dir: str | os.PathLike, arrays, *, overwrite: bool = False, **kw) -> Path:
    """Write a complete bundle for the network ``arrays`` (torch-free; used by export and patches).

    Keyword arguments as for :func:`prepare_bundle`; ``overwrite`` replaces an existing bundle.
    """
    files, meta = prepare_bundle(arrays, **kw)
    return write_bundle(out_dir, files, meta, overwrite=overwrite)
