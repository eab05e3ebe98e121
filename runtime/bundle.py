"""Bundles: the folder that ships to a device (``model.onnx`` + ``bundle.json`` + probe + report).

``bundle.json`` itself — its constants, the typed :class:`BundleRecord` and its one validating
loader — is :mod:`mind_edge.runtime.bundle_record` (names re-exported here). This module loads a
bundle folder (:meth:`Bundle.load`: plain or versioned, every file's sha256 checked) and writes
one (:func:`prepare_bundle`, :func:`write_bundle`, :func:`assemble_bundle`).

A bundle is written into a temporary sibling folder and renamed into place
(:func:`write_bundle`), so a failed export or patch never leaves a half-written bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import __version__
from mind_edge.core.plan import plan_net
from mind_edge.core.routing import plan_taps
from mind_edge.errors import require
from mind_edge.fileio import atomic_write, atomic_write_json, fsync_dir, make_temp_dir, sha256_file
from mind_edge.runtime.bundle_record import (  # noqa: F401  (the bundle.json names are re-exported)
    _FIX,
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    BUNDLE_SCHEMA,
    LAYOUTS,
    MAX_BUNDLE_JSON_BYTES,
    MAX_CLASS_ID,
    MAX_CLASSES,
    MAX_INPUT_PIXELS,
    MAX_POINTER_BYTES,
    MAX_SIDE,
    MAX_TASKS,
    MODEL_FILE,
    POINTER_FILE,
    PROBE_FILE,
    REQUIRED_KEYS,
    RESERVED_NAMES,
    VALIDATION_FILE,
    VERSION_RE,
    VERSIONS_DIR,
    BundleRecord,
    FileRecord,
    InputSpec,
    PatchRecord,
    check_meta,
    read_meta,
    read_record,
)
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.graph import CONTRACT, build_graph, expected_bytes, naive_sizes, resolve_policy
from mind_edge.runtime.routing import class_table, get_policy
from mind_edge.runtime.sessions import cpu_session
from mind_edge.schema import plain_name, read_json_file, read_regular_file
from mind_edge.textsafe import clean

log = logging.getLogger(__name__)


def _regular(path: Path) -> bool:
    """A regular file, not a symlink (a bundle holds plain files only)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
        raise BundleError(
            f"{pointer} cannot be read ({exc.strerror}); the versioned bundle {root} is corrupt — re-copy it"
        ) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise BundleError(
            f"{pointer} is {kind}; mind-edge writes {POINTER_FILE} as a small plain file, so the bundle "
            f"{root} was tampered with or damaged — re-copy it"
        )
    data = read_regular_file(
        pointer, max_bytes=MAX_POINTER_BYTES, error=BundleError, what="the version pointer", follow_symlinks=False
    )
    try:
        name = data.decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if not VERSION_RE.match(name):
        raise BundleError(
            f"{pointer} ({len(data)} bytes) is not a version name like v0002; the bundle {root} is corrupt — re-copy it"
        )
    vdir = root / VERSIONS_DIR
    if vdir.is_symlink():
        raise BundleError(
            f"{vdir} is a symbolic link; mind-edge keeps a bundle's versions inside the bundle folder — "
            "re-copy the bundle"
        )
    folder = vdir / name
    if folder.is_symlink():
        raise BundleError(
            f"{folder} is a symbolic link; mind-edge writes versions as plain folders — re-copy the bundle"
        )
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


@dataclass(frozen=True)
class Bundle:
    """A loaded (and verified) bundle directory: where it is and its checked ``bundle.json``."""

    path: Path
    record: BundleRecord
    root: Path | None = None  # the bundle folder the user named (differs from ``path`` for versioned bundles)
    version: str | None = None  # the live version of a versioned bundle, None for a plain one

    # -- loading --------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> Bundle:
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
    def _load_folder(cls, path: Path, root: Path, live: str | None, verify: bool) -> Bundle:
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
        record = check_meta(meta, str(meta_path))
        missing = [name for name in record.files if not _regular(path / name)]
        if missing:
            err = _Vanished if live is None and os.path.lexists(root / POINTER_FILE) else BundleError
            raise err(
                f"bundle {path} is missing {', '.join(missing)} listed in {BUNDLE_JSON} (the folder holds: "
                f"{_listing(path)}); copy the whole bundle folder again or re-export it"
            )
        if verify:
            for name, rec in record.files.items():
                want, want_bytes = rec.sha256, rec.bytes
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
                    raise _Vanished(
                        f"{name} in bundle {path} disappeared while it was read; read the bundle again"
                    ) from None
                except OSError as exc:
                    raise BundleError(
                        f"{name} in bundle {path} cannot be read ({exc.strerror}); re-copy the bundle"
                    ) from None
                if got != want:
                    raise BundleError(
                        f"{name} in bundle {path} does not match {BUNDLE_JSON}: sha256 {got[:12]}… on disk vs "
                        f"{want[:12]}… recorded; the file was modified or corrupted — re-export or re-copy the bundle"
                    )
        return cls(path=path, record=record, root=root, version=live)

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
    def input(self) -> InputSpec:
        return self.record.input

    @property
    def task_classes(self) -> tuple[tuple[int, ...], ...]:
        return self.record.task_classes

    @property
    def class_names(self) -> Mapping[int, str]:
        return self.record.class_names

    @property
    def layout(self) -> str:
        return self.record.layout

    @property
    def opset(self) -> int:
        return self.record.opset

    @property
    def temperature(self) -> float:
        return self.record.temperature

    @property
    def policy(self) -> str:
        """The routing policy the bundle's graph computes (``maxprob`` for bundles older than policies)."""
        return get_policy(self.record.routing_policy or "maxprob").name

    @property
    def model_sha256(self) -> str:
        """sha256 of ``model.onnx`` as ``bundle.json`` records it (verified by :meth:`load` unless ``verify=False``)."""
        return self.record.model_sha256

    @property
    def num_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def cmax(self) -> int:
        return max(len(c) for c in self.task_classes)

    @property
    def output_names(self) -> list[str]:
        return list(self.record.outputs)

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
            raise BundleError(
                f"{path} cannot be read as a probe batch ({type(exc).__name__}); re-export the bundle"
            ) from None

    def validation(self) -> dict | None:
        path = self.path / VALIDATION_FILE
        if not path.is_file():
            return None
        return read_json_file(
            path, max_bytes=MAX_BUNDLE_JSON_BYTES, error=BundleError, what="validation report", fix=_FIX
        )


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
        out.append(
            {"index": t, "classes": [int(c) for c in classes], "class_names": [str(names[int(c)]) for c in classes]}
        )
    return out


Writer = Callable[[Path], None]


def write_bundle(
    out_dir: str | os.PathLike, files: Mapping[str, bytes | Writer], meta: dict, *, overwrite: bool = False
) -> Path:
    """Write ``files`` and ``bundle.json`` (``meta`` + ``files`` hashes) as one atomic folder swap.

    Everything goes into a temporary sibling folder first; only when every file is written and
    fsync'ed is it renamed to ``out_dir`` (replacing an existing bundle only with ``overwrite``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BundleError(f"bundle output {out} exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BundleError(
            f"bundle output folder {out} exists and is not empty; choose another --out or pass --overwrite"
        )
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
        full = {
            "format": BUNDLE_FORMAT,
            "schema_version": BUNDLE_SCHEMA,
            **{k: v for k, v in meta.items() if k not in ("format", "schema_version", "files")},
            "files": records,
        }
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
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _ort_outputs(model_bytes: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
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
    onnx = require("onnx", "export", "building a bundle's ONNX graph")
    opset = int(opset or CONTRACT.opset)
    c_in = int(arrays.net["in_channels"])
    h, w = (int(v) for v in arrays.net["input_size"])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != c_in or len(std) != c_in or min(std) <= 0:
        raise BundleError(
            f"mean and std need {c_in} value(s) (one per input channel, std > 0); got mean={mean} std={std}"
        )
    names = names_by_id(class_names, arrays.task_classes)
    policy = resolve_policy(policy, arrays)
    if model_bytes is None:
        model_bytes = build_graph(
            arrays, layout=layout, temperature=temperature, opset=opset, policy=policy
        ).SerializeToString()
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
        "input": {
            "name": CONTRACT.input_name,
            "shape": [-1, c_in, h, w],
            "dtype": CONTRACT.input_dtype,
            "layout": "NCHW",
            "channel_order": channel_order or ("RGB" if c_in == 3 else "L"),
            "mean": mean,
            "std": std,
            "resize": "bilinear",
            "normalize": "(x / 255 - mean[c]) / std[c] in float32 (mind_edge.imageio.normalize)",
        },
        "tasks": task_records(arrays.task_classes, names),
        "num_classes": sum(len(c) for c in arrays.task_classes),
        "temperature": float(temperature),
        "routing": {
            "policy": policy,
            "version": get_policy(policy).version,
            "pad_logit": CONTRACT.pad_logit,
            "ties": "first index",
            "stats": get_policy(policy).needs_stats,
            "rule": f"task = argmax_t score_t ({get_policy(policy).summary}); "
            "label = global id of that head's argmax (mind_edge.core.routing)",
        },
        "outputs": CONTRACT.to_json(n, cmax, _feature_dim(arrays)),
        "exporter": {"mind_edge": __version__, "onnx": onnx.__version__, "opset": opset, "graph": "task-stacked"},
        "source": dict(source or {}),
        "sizes": {
            "model_bytes": len(model_bytes),
            "expected_bytes": expected_bytes(arrays, layout, policy),
            "dense_fp32_bytes": dense,
            "naive_bytes": naive,
            "dense_weights": arrays.dense_weight_count(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "probe": {"file": PROBE_FILE, "count": int(probe_inputs.shape[0]), "outputs_from": probe_from},
        "validation": {
            "file": VALIDATION_FILE,
            **{k: report.get(k) for k in ("passed", "atol", "rtol", "max_abs_diff", "max_rel_diff", "agreement")},
        },
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
    check_meta(
        {
            "format": BUNDLE_FORMAT,
            "schema_version": BUNDLE_SCHEMA,
            **meta,
            "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in files.items()},
        },
        "the new bundle.json",
    )
    return files, meta


def _feature_dim(arrays) -> int:
    """Channels of ``task_features`` (all routing taps) of a network."""
    return int(sum(plan_taps(plan_net(arrays.net))[1]))


def assemble_bundle(out_dir: str | os.PathLike, arrays, *, overwrite: bool = False, **kw) -> Path:
    """Write a complete bundle for the network ``arrays`` (torch-free; used by export and patches).

    Keyword arguments as for :func:`prepare_bundle`; ``overwrite`` replaces an existing bundle.
    """
    files, meta = prepare_bundle(arrays, **kw)
    return write_bundle(out_dir, files, meta, overwrite=overwrite)
