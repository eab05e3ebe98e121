"""Datasets, class-incremental scenarios and batching (``mind_edge.data``).

Every dataset is held **fully in memory as one uint8 array** ``(N, H, W, C)`` plus an int64
label array (:class:`ImageArrays`). CIFAR-100 is 150 MB that way, Fashion-MNIST 55 MB.
Normalisation is the one defined in :mod:`mind_edge.imageio` (``(x / 255 - mean) / std`` in
float32); :class:`BatchLoader` applies it through a per-channel 256-entry lookup table computed
*by* ``imageio.normalize``, so training inputs are bit-identical to what the device runtime
computes from the same pixels. Files decoded from image folders go through
``imageio.load_image`` exactly as on the device.

The package, by seam (only :mod:`~mind_edge.data.loader` imports torch; it is loaded on first use
of :class:`BatchLoader`, so ``import mind_edge.data`` and the readers and scenarios stay torch-free):

* :mod:`~mind_edge.data.base` — :class:`DatasetSpec`, :class:`ImageArrays`, :func:`compute_mean_std`,
  the default data folder.
* :mod:`~mind_edge.data.sources` — :func:`load_dataset`, :data:`DATASETS`, :data:`REFERENCE_SPECS`
  (the datasets table), over the readers :mod:`~mind_edge.data.idx` (MNIST-format idx files, plain
  or gzip: :func:`read_idx`), :mod:`~mind_edge.data.cifar` (python pickles) and
  :mod:`~mind_edge.data.folder` (``ImageFolder`` trees).
* :mod:`~mind_edge.data.scenario` — :class:`Scenario`, :func:`class_order`, :func:`make_scenario`,
  :func:`task_arrays`.
* :mod:`~mind_edge.data.loader` — :class:`BatchLoader` (vectorised crop/flip and normalisation,
  CPU or CUDA).
"""

from __future__ import annotations

import importlib

from mind_edge.data.base import AUGMENTS, DatasetSpec, ImageArrays, compute_mean_std, default_data_dir
from mind_edge.data.folder import decode_images, scan_split
from mind_edge.data.idx import DEBIAN_FASHION_MNIST, read_idx
from mind_edge.data.scenario import ORDERS, Scenario, class_order, make_scenario, task_arrays
from mind_edge.data.sources import DATASETS, REFERENCE_SPECS, canonical_name, load_dataset, load_run_dataset

__all__ = [
    "DATASETS",
    "AUGMENTS",
    "ORDERS",
    "REFERENCE_SPECS",
    "DEBIAN_FASHION_MNIST",
    "DatasetSpec",
    "ImageArrays",
    "Scenario",
    "BatchLoader",
    "load_dataset",
    "load_run_dataset",
    "default_data_dir",
    "read_idx",
    "compute_mean_std",
    "class_order",
    "make_scenario",
    "task_arrays",
    "canonical_name",
    "scan_split",
    "decode_images",
]


def __getattr__(name: str):
    if name == "BatchLoader":  # the one torch-dependent name: imported on first use
        value = importlib.import_module("mind_edge.data.loader").BatchLoader
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mind_edge.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"BatchLoader"})
