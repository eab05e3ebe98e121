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

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mind_edge import __version__
from mind_edge.fileio import atomic_write, atomic_write_json, fsync_dir, sha256_file
from mind_edge.runtime.errors import BundleError
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


def resolve_version(root: Path) -> tuple[Path, str | None]:
    """The folder holding the live ``bundle.json`` of ``root`` and its version name.

    A plain bundle (as written by ``mind-edge export``) is its own folder (version ``None``);
    a versioned one follows ``root/CURRENT`` to ``root/versions/<name>``. ``CURRENT`` wins over
    stray plain files, so replacing it is the single commit point of a patch.
    """
    pointer = root / POINTER_FILE
    if not pointer.is_file():
        return root, None
    try:
        name = pointer.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{pointer} cannot be read ({exc}); the versioned bundle {root} is corrupt — re-copy it") from exc
    if not VERSION_RE.match(name):
        raise BundleError(f"{pointer} holds {name[:40]!r}, not a version name like v0002; the bundle {root} is corrupt — re-copy it")
    folder = root / VERSIONS_DIR / name
    if not folder.is_dir():
        raise BundleError(
            f"{pointer} points to version {name} but {folder} does not exist (versions kept: "
            f"{_listing(root / VERSIONS_DIR)}); re-copy the bundle"
        )
    return folder, name


def _listing(folder: Path) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return "nothing readable"
    return ", ".join(names) if names else "nothing"


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
        path, live = resolve_version(root)
        meta_path = path / BUNDLE_JSON
        if not meta_path.is_file():
            raise BundleError(
                f"bundle {path} has no {BUNDLE_JSON} (the folder holds: {_listing(path)}); is it a mind-edge bundle? "
                "Re-export it with 'mind-edge export'"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{meta_path} is not valid JSON ({exc}); the bundle is corrupt — re-export or re-copy it") from exc
        if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise BundleError(
                f"{meta_path} is not a mind-edge bundle file: expected \"format\": \"{BUNDLE_FORMAT}\", found {found!r}"
            )
        version = meta.get("schema_version")
        if version != BUNDLE_SCHEMA:
            raise BundleError(
                f"{meta_path} has bundle schema version {version!r}; this mind-edge ({__version__}) reads schema version "
                f"{BUNDLE_SCHEMA} only. Re-export the bundle with this mind-edge, or upgrade mind-edge on this machine"
            )
        missing_keys = [k for k in REQUIRED_KEYS if k not in meta]
        if missing_keys:
            raise BundleError(f"{meta_path} lacks the keys {missing_keys}; the bundle is incomplete — re-export it")
        files = meta["files"]
        if not isinstance(files, dict) or MODEL_FILE not in files:
            raise BundleError(f"{meta_path} does not list {MODEL_FILE} under \"files\"; the bundle is incomplete — re-export it")
        missing = [name for name in files if not (path / name).is_file()]
        if missing:
            raise BundleError(
                f"bundle {path} is missing {', '.join(missing)} listed in {BUNDLE_JSON} (the folder holds: "
                f"{_listing(path)}); copy the whole bundle folder again or re-export it"
            )
        if verify:
            for name, rec in files.items():
                f = path / name
                want = str(rec.get("sha256", "")) if isinstance(rec, dict) else ""
                size = f.stat().st_size
                if isinstance(rec, dict) and "bytes" in rec and size != rec["bytes"]:
                    raise BundleError(
                        f"{name} in bundle {path} has {size} bytes but {BUNDLE_JSON} records {rec['bytes']} (sha256 "
                        f"{want[:12]}…); the file was modified or truncated — re-export or re-copy the bundle"
                    )
                got = sha256_file(f)
                if got != want:
                    raise BundleError(
                        f"{name} in bundle {path} does not match {BUNDLE_JSON}: sha256 {got[:12]}… on disk vs "
                        f"{want[:12]}… recorded; the file was modified or corrupted — re-export or re-copy the bundle"
                    )
        return cls._from_meta(path, meta, root=root, version=live)

    @classmethod
    def _from_meta(cls, path: Path, meta: dict, *, root: Path | None = None, version: str | None = None) -> "Bundle":
        where = path / BUNDLE_JSON
        try:
            spec = meta["input"]
            shape = [int(v) for v in spec["shape"]]
            if len(shape) != 4:
                raise ValueError(f"input shape {shape} is not [B, C, H, W]")
            inp = InputSpec(
                name=str(spec["name"]), channels=shape[1], height=shape[2], width=shape[3], dtype=str(spec["dtype"]),
                channel_order=str(spec["channel_order"]), mean=tuple(float(v) for v in spec["mean"]),
                std=tuple(float(v) for v in spec["std"]), resize=str(spec.get("resize", "bilinear")),
            )
            tasks = sorted(meta["tasks"], key=lambda t: int(t["index"]))
            task_classes = tuple(tuple(int(c) for c in t["classes"]) for t in tasks)
            names: dict[int, str] = {}
            for t in tasks:
                for c, n in zip(t["classes"], t["class_names"]):
                    names[int(c)] = str(n)
            float(meta["temperature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where} is malformed ({type(exc).__name__}: {exc}); re-export the bundle") from exc
        if not task_classes:
            raise BundleError(f"{where} lists no tasks; re-export the bundle from a run with at least one learned task")
        return cls(path=path, meta=meta, input=inp, task_classes=task_classes, class_names=names,
                   root=root if root is not None else path, version=version)

    # -- accessors ------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

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
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def validation(self) -> dict | None:
        path = self.path / VALIDATION_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        records = {}
        for name, content in files.items():
            if name == BUNDLE_JSON or "/" in name or name.startswith("."):
                raise BundleError(f"invalid bundle file name {name!r}")
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
    from mind_edge.errors import require

    ort = require("onnxruntime", "ort", "computing a bundle's probe outputs")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def assemble_bundle(
    out_dir: str | os.PathLike,
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
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete bundle for the network ``arrays`` (torch-free; used by export and patches).

    ``model_bytes`` is the serialized graph (built here from ``arrays`` when omitted);
    ``probe_inputs`` a small float32 NCHW batch stored with the outputs the graph gives for it
    (computed here with ONNX Runtime when ``probe_outputs`` is omitted; 4 seeded random inputs
    when both are omitted); ``report`` the validation report saved as ``validation.json``;
    ``extra`` more top-level ``bundle.json`` keys (e.g. the patch history of a patched version).
    """
    from datetime import datetime, timezone

    from mind_edge.runtime.graph import CONTRACT, build_graph, expected_bytes, naive_sizes
    from mind_edge.runtime.routing import POLICY

    from mind_edge.errors import require

    onnx = require("onnx", "export", "building a bundle's ONNX graph")
    opset = int(opset or CONTRACT.opset)
    c_in = int(arrays.net["in_channels"])
    h, w = (int(v) for v in arrays.net["input_size"])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != c_in or len(std) != c_in or min(std) <= 0:
        raise BundleError(f"mean and std need {c_in} value(s) (one per input channel, std > 0); got mean={mean} std={std}")
    names = names_by_id(class_names, arrays.task_classes)
    if model_bytes is None:
        model_bytes = build_graph(arrays, layout=layout, temperature=temperature, opset=opset).SerializeToString()
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
        "routing": {"policy": POLICY, "pad_logit": CONTRACT.pad_logit, "ties": "first index",
                    "rule": "task = argmax_t max softmax(task_logits[t] / T); label = global id of that head's argmax"},
        "outputs": CONTRACT.to_json(n, cmax),
        "exporter": {"mind_edge": __version__, "onnx": onnx.__version__, "opset": opset, "graph": "task-stacked"},
        "source": dict(source or {}),
        "sizes": {"model_bytes": len(model_bytes), "expected_bytes": expected_bytes(arrays, layout),
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
    return write_bundle(out_dir, files, meta, overwrite=overwrite)
