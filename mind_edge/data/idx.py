"""MNIST-format idx files (MNIST, Fashion-MNIST): :func:`read_idx` and the folder reader.

:func:`read_idx` reads plain and gzip-compressed files (detected by content), so Debian's flat
``dataset-fashion-mnist`` folder (``/usr/share/datasets/fashion-mnist/*.gz``), torchvision's
``<root>/MNIST/raw/`` and Kaggle-style dotted names all work.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mind_edge.data.base import ImageArrays, default_data_dir, describe_dir
from mind_edge.errors import DataError, require

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (plain or gzip-compressed, detected by content) into a numpy array.

    Format: 2 zero bytes, a type byte (0x08 = uint8 ...), a byte with the number of dims, the
    dims as big-endian uint32, then the data, big-endian, C order. Bad magic, truncation and
    trailing bytes raise :class:`DataError`.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read idx file {str(p)!r}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"idx file {str(p)!r} is a corrupt or truncated gzip file ({exc}); download or copy it again."
            ) from exc
    if len(raw) < 4:
        raise DataError(f"idx file {str(p)!r} is truncated: {len(raw)} bytes, not even a header.")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{str(p)!r} is not an idx file: magic number 0x{raw[:4].hex()} (expected 0x0000TTDD "
            "with type TT in 08/09/0b/0c/0d/0e, e.g. 0x00000803 for images, 0x00000801 for "
            "labels). Check that the file is an MNIST-format idx file."
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"idx file {str(p)!r} is truncated inside its header ({len(raw)} bytes).")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(
            f"idx file {str(p)!r} is {what}: dims {list(dims)} need {expected} data bytes, "
            f"found {got}. Download or copy the file again."
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _idx_candidates(split: str, kind: str) -> list[str]:
    base = f"{split}-{kind}"  # e.g. train-images-idx3
    dotted = base.replace("-idx", ".idx")  # train-images.idx3 (as some mirrors/Kaggle name them)
    names = []
    for b in (base, dotted):
        names += [f"{b}-ubyte", f"{b}-ubyte.gz"]
    return names


_IDX_FILES = {
    ("train", "images"): "train-images-idx3",
    ("train", "labels"): "train-labels-idx1",
    ("test", "images"): "t10k-images-idx3",
    ("test", "labels"): "t10k-labels-idx1",
}


def _find_idx_folder(root: Path, tv_name: str) -> tuple[Path | None, dict[tuple[str, str], Path]]:
    """Look for the 4 idx files in root, root/raw, root/<TorchvisionName>/raw."""
    best: tuple[Path | None, dict] = (None, {})
    for folder in (root, root / "raw", root / tv_name / "raw"):
        if not folder.is_dir():
            continue
        found: dict[tuple[str, str], Path] = {}
        for key, stem in _IDX_FILES.items():
            split, kind = stem.split("-", 1)
            for cand in _idx_candidates(split, kind):
                if (folder / cand).is_file():
                    found[key] = folder / cand
                    break
        if len(found) == 4:
            return folder, found
        if len(found) > len(best[1]):
            best = (folder, found)
    return best


def load_idx_dataset(name: str, root: str | Path | None, download: bool) -> tuple[ImageArrays, ImageArrays]:
    tv_name, classes = ("MNIST", MNIST_CLASSES) if name == "mnist" else ("FashionMNIST", FASHION_MNIST_CLASSES)
    if root is None:
        if name == "fashion-mnist" and len(_find_idx_folder(DEBIAN_FASHION_MNIST, tv_name)[1]) == 4:
            root_p = DEBIAN_FASHION_MNIST
        else:
            root_p = default_data_dir()
    else:
        root_p = Path(root).expanduser()
    folder, found = _find_idx_folder(root_p, tv_name)
    if len(found) < 4 and download:
        tv = require("torchvision.datasets", "train", f"downloading {name}")
        log.info("downloading %s into %s with torchvision", name, root_p)
        try:
            for train in (True, False):
                getattr(tv, tv_name)(str(root_p), train=train, download=True)
        except Exception as exc:  # network errors come in many types (re-raised as DataError)
            raise DataError(
                f"downloading {name} into {str(root_p)!r} failed: {type(exc).__name__}: {exc}. "
                f"Without internet, copy the four idx files (train-images-idx3-ubyte.gz, ...) "
                f"into {str(root_p)!r}"
                + (" or install Debian's dataset-fashion-mnist package." if name == "fashion-mnist" else ".")
            ) from exc
        folder, found = _find_idx_folder(root_p, tv_name)
    if len(found) < 4:
        wanted = [f"{stem}-ubyte[.gz]" for stem in _IDX_FILES.values()]
        missing = [f"{_IDX_FILES[k]}-ubyte[.gz]" for k in _IDX_FILES if k not in found]
        fix = f"pass download=True (CLI: --download) to fetch it into {str(root_p)!r}"
        if name == "fashion-mnist":
            fix += (
                ", or install Debian's package (apt-get install dataset-fashion-mnist), which "
                f"puts the files in {str(DEBIAN_FASHION_MNIST)!r}"
            )
        raise DataError(
            f"{name}: expected the idx files {wanted} in {str(root_p)!r} (or its raw/ or "
            f"{tv_name}/raw/ subfolder); missing {missing}. {str(root_p)!r} {describe_dir(root_p)}"
            + (f"; {str(folder)!r} {describe_dir(folder)}" if folder is not None and folder != root_p else "")
            + f". Fix: {fix}."
        )
    log.info("reading %s idx files from %s", name, folder)
    splits = []
    for split in ("train", "test"):
        images = read_idx(found[(split, "images")])
        labels = read_idx(found[(split, "labels")])
        ipath, lpath = found[(split, "images")], found[(split, "labels")]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{str(ipath)!r}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}.")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{str(lpath)!r} has {labels.shape} labels but {str(ipath)!r} has "
                f"{images.shape[0]} images; the files do not belong together."
            )
        if labels.size and int(labels.max()) >= len(classes):
            raise DataError(f"{str(lpath)!r}: label {int(labels.max())} out of range 0..{len(classes) - 1}.")
        splits.append(ImageArrays(np.ascontiguousarray(images[..., None]), labels.astype(np.int64), classes))
    return splits[0], splits[1]


__all__ = ["DEBIAN_FASHION_MNIST", "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "read_idx", "load_idx_dataset"]
