"""CIFAR-10 / CIFAR-100 python-pickle folders (torchvision's layout: ``cifar-10-batches-py/``,
``cifar-100-python/``).

Two locks keep a pickle from running code. Where the folder holds exactly the official files
(every md5 equals torchvision's checksum list), torchvision's own CIFAR reader reads them: the
checksums are the lock, and nothing but the official bytes is ever unpickled. Any other file (a
numpy re-pickle, a copy that was modified) is read with :class:`_RestrictedUnpickler`, which
resolves only the numpy array globals the official files reference, so a crafted file raises a
:class:`~mind_edge.errors.DataError` instead of executing anything. ``download=True`` uses
torchvision's downloader (which verifies the archive's md5).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.data.base import ImageArrays, default_data_dir, describe_dir
from mind_edge.errors import DataError, MindEdgeError, require

log = logging.getLogger(__name__)

_CIFAR = {
    "cifar10": dict(
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        names_key="label_names",
        labels_key="labels",
        tv="CIFAR10",
        title="CIFAR-10",
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": dict(
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
        tv="CIFAR100",
        title="CIFAR-100",
        archive="cifar-100-python.tar.gz",
    ),
}

CIFAR_NAMES = tuple(_CIFAR)

# The only globals the official CIFAR pickles (and numpy re-pickles of them) reference.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction globals (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR data file")
        if module.startswith("numpy.core"):
            try:  # numpy >= 2 moved numpy.core to numpy._core
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core") :]), name)
            except ImportError:  # pragma: no cover - numpy 1.x
                pass
        return getattr(importlib.import_module(module), name)


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError as exc:
        raise DataError(f"CIFAR file {str(path)!r} does not exist.") from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        OSError,
        struct.error,
    ) as exc:
        raise DataError(
            f"cannot read CIFAR file {str(path)!r}: {type(exc).__name__}: {exc}. The file is "
            "corrupt, truncated or not a CIFAR python-pickle batch; extract the official "
            "archive again (or pass download=True)."
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR file {str(path)!r} holds a {type(obj).__name__}, expected a dict.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _as_str(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _cifar_folder(root: Path, info: dict) -> Path:
    if (root / info["folder"]).is_dir():
        return root / info["folder"]
    if root.name == info["folder"] or (root / info["meta"]).is_file():
        return root
    return root / info["folder"]


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torchvision_reader(folder: Path, info: dict):
    """torchvision's CIFAR class when ``folder`` holds exactly the official files (its md5 list), else None."""
    try:
        tvc = require("torchvision.datasets.cifar", "train", "reading CIFAR with torchvision")
    except MindEdgeError:
        return None
    cls = getattr(tvc, info["tv"])
    if folder.name != cls.base_folder:
        return None
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    try:
        if all(_md5(folder / name) == md5 for name, md5 in files):
            return cls
    except OSError:
        pass
    return None


def _read_with_torchvision(cls, folder: Path, info: dict) -> tuple[ImageArrays, ImageArrays]:
    out = []
    for train in (True, False):
        try:
            ds = cls(str(folder.parent), train=train, download=False)
        except Exception as exc:  # changed on disk after the md5 check, or a torchvision error (re-raised)
            raise DataError(f"torchvision could not read {info['title']} in {str(folder)!r}: {exc}") from exc
        classes = tuple(_as_str(n) for n in ds.classes)
        out.append(ImageArrays(np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64), classes))
    log.info("%s in %s: official files (md5 verified), read with torchvision", info["title"], folder)
    return out[0], out[1]


def load_cifar(name: str, root: str | Path | None, download: bool) -> tuple[ImageArrays, ImageArrays]:
    info = _CIFAR[name]
    root_p = Path(root).expanduser() if root is not None else default_data_dir()
    folder = _cifar_folder(root_p, info)
    needed = (*info["train"], *info["test"], info["meta"])
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing and download:
        tv = require("torchvision.datasets", "train", f"downloading {info['title']}")
        log.info("downloading %s into %s with torchvision", info["title"], root_p)
        try:
            getattr(tv, info["tv"])(str(root_p), train=True, download=True)
        except Exception as exc:  # network errors come in many types (re-raised as DataError)
            raise DataError(
                f"downloading {info['title']} into {str(root_p)!r} failed: {type(exc).__name__}: "
                f"{exc}. Without internet, extract {info['archive']} into {str(root_p)!r}."
            ) from exc
        folder = _cifar_folder(root_p, info)
        missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{info['title']}: expected the folder {str(folder)!r} with files {list(needed)}; "
            f"missing {missing}. {str(folder)!r} {describe_dir(folder)}; {str(root_p)!r} "
            f"{describe_dir(root_p)}. Fix: pass download=True (CLI: --download) to fetch it, "
            f"or extract {info['archive']} into {str(root_p)!r}."
        )
    official = _torchvision_reader(folder, info)
    if official is not None:
        return _read_with_torchvision(official, folder, info)
    log.info(
        "%s in %s: not the official files (md5) or no torchvision; reading them with the restricted unpickler",
        info["title"],
        folder,
    )
    meta = _read_cifar_pickle(folder / info["meta"])
    if info["names_key"] not in meta:
        raise DataError(
            f"{str(folder / info['meta'])!r} has no {info['names_key']!r} entry (keys: {sorted(meta)}); "
            f"is this the {info['title']} meta file?"
        )
    classes = tuple(_as_str(n) for n in meta[info["names_key"]])
    out = []
    for files in (info["train"], info["test"]):
        xs, ys = [], []
        for f in files:
            d = _read_cifar_pickle(folder / f)
            if "data" not in d or info["labels_key"] not in d:
                raise DataError(
                    f"{str(folder / f)!r} lacks 'data' or {info['labels_key']!r} (keys: {sorted(d)}); "
                    f"is it a {info['title']} batch?"
                )
            x = np.asarray(d["data"])
            y = np.asarray(d[info["labels_key"]], dtype=np.int64).reshape(-1)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{str(folder / f)!r}: expected uint8 data (N, 3072) and N labels; got data "
                    f"{x.dtype} {x.shape} and {y.shape[0]} labels."
                )
            xs.append(x)
            ys.append(y)
        x = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate(ys)
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(
                f"{info['title']} in {str(folder)!r}: labels {int(y.min())}..{int(y.max())} but "
                f"{len(classes)} class names in {info['meta']}."
            )
        out.append(ImageArrays(np.ascontiguousarray(x), y, classes))
    return out[0], out[1]


__all__ = ["CIFAR_NAMES", "load_cifar"]
