"""Dataset sources: :func:`load_dataset` reads a dataset fully into memory (train, test, spec).

============== ======= ======= =================================== =========== =====================
name           size    ch      mean / std                          augment     source
============== ======= ======= =================================== =========== =====================
digits         8x8     1       0.3053 / 0.3759 (all 1,797 images)  none        scikit-learn (offline)
cifar10        32x32   3       (0.4914,0.4822,0.4465)/(0.2470,...) crop_flip 4 python pickles
cifar100       32x32   3       (0.5071,0.4866,0.4409)/(0.2673,...) crop_flip 4 python pickles
mnist          28x28   1       0.1307 / 0.3081                     crop 2      idx files
fashion-mnist  28x28   1       0.2860 / 0.3530                     crop_flip 2 idx files
imagefolder    any     1 or 3  computed from the train split       crop_flip   train/ + test/ (val/)
============== ======= ======= =================================== =========== =====================

* ``digits`` uses fixed constants (the statistics of all 1,797 images, so they do not depend on
  the split seed) and no augmentation (a shifted 8x8 digit is a different picture). The
  train/test split is stratified, 25 % test, seeded by ``seed``.
* MNIST gets a small random crop and no flip (a mirrored digit is not that digit); Fashion-MNIST
  gets crop and flip (a mirrored garment is still the same garment). Padding 2 is the
  FACIL/MNIST convention (28 -> 32).
* ``imagefolder`` mean/std are computed over every pixel of the train split (population std,
  float64, rounded to 6 decimals) and recorded in the returned :class:`DatasetSpec`; the crop
  padding is ``min(H, W) // 8`` (4 for 32x32, as for CIFAR). Class ids are the sorted class
  folder names (torchvision's ``ImageFolder`` rule) and files are taken in sorted order;
  folders and files whose name starts with "." (``.DS_Store``, ``._x.jpg``, checkpoints) are
  ignored, as are files without an image extension (jpg, jpeg, png, bmp, webp, any case).
* CIFAR pickles: the official files (md5 equal to torchvision's list) are read by torchvision's
  CIFAR reader; any other file by a restricted unpickler that only resolves the numpy array
  globals the official files contain (nothing user-supplied is ever executed); see
  :mod:`mind_edge.data.cifar`. ``download=True`` uses torchvision's downloader (which verifies
  the archive's md5) for users with internet.
* ``image_size``/``channels`` for a built-in dataset convert every image through the same Pillow
  steps as ``imageio.load_image`` (e.g. MNIST at 32x32x3 for a CIFAR-sized network); mean/std
  are replicated from 1 to 3 channels (or recomputed for 3 -> 1) and the crop padding scales
  with the size.

Default roots: ``$MIND_EDGE_DATA`` or ``~/.cache/mind-edge/datasets`` (torchvision's layout below
it: ``cifar-10-batches-py/``, ``cifar-100-python/``, ``MNIST/raw/``, ``FashionMNIST/raw/``);
Fashion-MNIST defaults to ``/usr/share/datasets/fashion-mnist/`` when Debian's
``dataset-fashion-mnist`` package is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import imageio
from mind_edge.data.base import DatasetSpec, ImageArrays, compute_mean_std
from mind_edge.data.cifar import CIFAR_NAMES, load_cifar
from mind_edge.data.folder import load_imagefolder
from mind_edge.data.idx import load_idx_dataset
from mind_edge.errors import ConfigError, require

log = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder")

REFERENCE_SPECS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", 1, (8, 8), (0.3053,), (0.3759,), "none", 0),
    "cifar10": DatasetSpec("cifar10", 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip", 4),
    "cifar100": DatasetSpec(
        "cifar100", 3, (32, 32), (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip", 4
    ),
    "mnist": DatasetSpec("mnist", 1, (28, 28), (0.1307,), (0.3081,), "crop", 2),
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, (28, 28), (0.2860,), (0.3530,), "crop_flip", 2),
}


def canonical_name(name: str) -> str:
    n = str(name).strip().lower().replace("_", "-")
    n = {
        "fashionmnist": "fashion-mnist",
        "image-folder": "imagefolder",
        "cifar-10": "cifar10",
        "cifar-100": "cifar100",
    }.get(n, n)
    if n not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return n


def convert_split(arrays: ImageArrays, size: tuple[int, int], channels: int) -> ImageArrays:
    n = len(arrays)
    out = np.empty((n, size[0], size[1], channels), dtype=np.uint8)
    for i in range(n):
        out[i] = imageio.convert_array(arrays.images[i], size, channels)
    return ImageArrays(out, arrays.labels, arrays.class_names)


def load_digits(seed: int) -> tuple[ImageArrays, ImageArrays]:
    datasets = require("sklearn.datasets", "train", "the digits dataset")
    model_selection = require("sklearn.model_selection", "train", "the digits dataset")
    d = datasets.load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    idx = np.arange(labels.shape[0])
    tr, te = model_selection.train_test_split(idx, test_size=0.25, stratify=labels, random_state=seed)
    classes = tuple(str(i) for i in range(10))
    return (
        ImageArrays(np.ascontiguousarray(images[tr]), labels[tr], classes),
        ImageArrays(np.ascontiguousarray(images[te]), labels[te], classes),
    )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[ImageArrays, ImageArrays, DatasetSpec]:
    """Load a dataset fully into memory: ``(train, test, spec)``.

    ``name`` is one of :data:`DATASETS`. ``root`` is the dataset folder (defaults in the module
    docstring; required for ``imagefolder``). ``download`` lets torchvision fetch CIFAR/MNIST
    when the files are missing. ``image_size`` ``(H, W)`` and ``channels`` (1 or 3) convert the
    images (default: the dataset's own; for ``imagefolder`` the first image's size and 3
    channels). ``seed`` only affects the digits train/test split. ``progress`` shows a progress
    bar while decoding image folders (default: only for >= 2,000 images on a terminal).
    """
    n = canonical_name(name)
    if image_size is not None:
        image_size = imageio.check_size(image_size, "image_size")
    if channels is not None:
        channels = imageio.check_channels(channels)
    if n == "imagefolder":
        train, test, size, ch = load_imagefolder(root, image_size, channels, progress)
        mean, std = compute_mean_std(train.images)
        spec = DatasetSpec("imagefolder", ch, size, mean, std, "crop_flip", min(size) // 8)
        log.info(
            "imagefolder: %d train / %d test images, %d classes, mean=%s std=%s",
            len(train),
            len(test),
            train.num_classes,
            mean,
            std,
        )
        return train, test, spec
    if n == "digits":
        if root is not None:
            log.info("digits is bundled with scikit-learn; ignoring root=%s", root)
        train, test = load_digits(seed)
    elif n in CIFAR_NAMES:
        train, test = load_cifar(n, root, download)
    else:
        train, test = load_idx_dataset(n, root, download)
    spec = REFERENCE_SPECS[n]
    size = image_size or spec.input_size
    ch = channels or spec.in_channels
    if size != spec.input_size or ch != spec.in_channels:
        log.info("%s: converting %dx%dx%d images to %dx%dx%d", n, *spec.input_size, spec.in_channels, *size, ch)
        train, test = convert_split(train, size, ch), convert_split(test, size, ch)
        if ch == spec.in_channels:
            mean, std = spec.mean, spec.std
        elif ch == 3:  # grayscale replicated to RGB: same statistics in every channel
            mean, std = spec.mean * 3, spec.std * 3
        else:
            mean, std = compute_mean_std(train.images)
        ratio = min(size[0] / spec.input_size[0], size[1] / spec.input_size[1])
        padding = max(1, round(spec.padding * ratio)) if spec.padding else 0
        spec = DatasetSpec(n, ch, size, mean, std, spec.augment, padding)
    log.info("%s: %d train / %d test images, %d classes", n, len(train), len(test), train.num_classes)
    return train, test, spec


def load_run_dataset(record: Any, root: str | Path | None = None) -> tuple[ImageArrays, ImageArrays, DatasetSpec]:
    """The dataset a run was trained on, as its ``run.json`` records it: same name, input size,
    channels and split seed; ``root`` overrides the recorded folder (e.g. the data moved).

    ``record``: the run's :class:`~mind_edge.run_record.RunRecord` (not imported here: the record
    builds on this package); a run without ``data`` raises ``KeyError('data')``.
    """
    data = record.data
    if data is None:
        raise KeyError("data")
    return load_dataset(
        record.scenario.dataset,
        root if root is not None else data.root,
        image_size=data.input_size,
        channels=data.in_channels,
        seed=record.seed,
    )


__all__ = [
    "DATASETS",
    "REFERENCE_SPECS",
    "canonical_name",
    "convert_split",
    "load_digits",
    "load_dataset",
    "load_run_dataset",
]
