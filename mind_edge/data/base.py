"""The in-memory dataset contract (torch-free): :class:`DatasetSpec`, :class:`ImageArrays`, and the
helpers every reader shares (default data folder, folder descriptions for errors, mean/std).

Every dataset is held fully in memory as one uint8 array ``(N, H, W, C)`` plus an int64 label
array; a :class:`DatasetSpec` records its input size, channels, normalisation (mean/std, applied
as in :mod:`mind_edge.imageio`) and augmentation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import imageio
from mind_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

AUGMENTS = ("none", "crop", "crop_flip")


def is_int(v: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class DatasetSpec:
    """Input and augmentation contract of a dataset (the reference MIND/FACIL choices)."""

    name: str
    in_channels: int
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # "none" | "crop" | "crop_flip"
    padding: int  # random-crop zero padding in pixels

    def __post_init__(self) -> None:
        imageio.check_channels(self.in_channels)
        object.__setattr__(self, "input_size", imageio.check_size(self.input_size, "input_size"))
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != self.in_channels or len(std) != self.in_channels:
            raise ConfigError(
                f"DatasetSpec {self.name!r}: mean and std need {self.in_channels} value(s) "
                f"(one per channel); got mean={mean} std={std}."
            )
        if not all(math.isfinite(s) and s > 0 for s in std) or not all(math.isfinite(m) for m in mean):
            raise ConfigError(f"DatasetSpec {self.name!r}: std must be > 0 and finite; got std={std}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.augment not in AUGMENTS:
            raise ConfigError(f"DatasetSpec {self.name!r}: augment must be one of {AUGMENTS}; got {self.augment!r}.")
        if isinstance(self.padding, bool) or not isinstance(self.padding, (int, np.integer)) or self.padding < 0:
            raise ConfigError(f"DatasetSpec {self.name!r}: padding must be an int >= 0; got {self.padding!r}.")
        object.__setattr__(self, "padding", int(self.padding))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "augment": self.augment,
            "padding": self.padding,
        }

    @classmethod
    def from_json(cls, d: Any) -> DatasetSpec:
        keys = ("name", "in_channels", "input_size", "mean", "std", "augment", "padding")
        if not isinstance(d, dict) or any(k not in d for k in keys):
            raise DataError(
                f"malformed dataset spec: expected an object with keys {list(keys)}; got "
                f"{sorted(d) if isinstance(d, dict) else type(d).__name__}."
            )
        try:
            return cls(
                name=str(d["name"]),
                in_channels=d["in_channels"],
                input_size=tuple(d["input_size"]),
                mean=tuple(d["mean"]),
                std=tuple(d["std"]),
                augment=d["augment"],
                padding=d["padding"],
            )
        except (TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"malformed dataset spec {d!r}: {exc}") from exc


@dataclass(frozen=True, eq=False)  # arrays: identity equality, no field hashing
class ImageArrays:
    """One split of a dataset, in memory."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,), original dataset class ids 0..K-1
    class_names: tuple[str, ...]  # indexed by class id

    def __post_init__(self) -> None:
        images, labels = self.images, np.asarray(self.labels)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                "ImageArrays.images must be a uint8 array (N, H, W, C); got "
                f"{type(images).__name__} dtype={getattr(images, 'dtype', None)} "
                f"shape={getattr(images, 'shape', None)}."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"ImageArrays.labels must be N={images.shape[0]} integers; got dtype={labels.dtype} "
                f"shape={labels.shape}."
            )
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        names = tuple(str(n) for n in self.class_names)
        object.__setattr__(self, "class_names", names)
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise DataError(
                f"ImageArrays: labels range {int(labels.min())}..{int(labels.max())} but only {len(names)} class names."
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def default_data_dir() -> Path:
    """``$MIND_EDGE_DATA`` or ``~/.cache/mind-edge/datasets``."""
    env = os.environ.get("MIND_EDGE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mind-edge" / "datasets"


def describe_dir(path: Path, limit: int = 12) -> str:
    """'does not exist' / 'is empty' / 'contains: a, b/, ...' for error messages."""
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return f"does not exist (nearest existing folder: {str(parent)!r})"
    if not path.is_dir():
        return "is a file, not a folder"
    try:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(path))
    except OSError as exc:
        return f"cannot be listed ({exc})"
    if not entries:
        return "is empty"
    more = f" (+{len(entries) - limit} more)" if len(entries) > limit else ""
    return "contains: " + ", ".join(entries[:limit]) + more


def compute_mean_std(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 NHWC images, in [0, 1] units.

    Exact integer sums (int64) in chunks, so it is deterministic and needs little memory;
    rounded to 6 decimals.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"cannot compute mean/std of an empty image array (shape {images.shape}).")
    c = images.shape[3]
    s = np.zeros(c, dtype=np.int64)
    sq = np.zeros(c, dtype=np.int64)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].astype(np.int64).reshape(-1, c)
        s += x.sum(axis=0)
        sq += (x * x).sum(axis=0)
    n = images.shape[0] * images.shape[1] * images.shape[2]
    mean = s / (n * 255.0)
    var = np.maximum(sq / (n * 255.0 * 255.0) - mean * mean, 0.0)
    std = np.sqrt(var)
    if np.any(std <= 0):
        log.warning("some channel has zero variance (constant images); using std = 1 for it")
        std = np.where(std > 0, std, 1.0)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


__all__ = ["AUGMENTS", "DatasetSpec", "ImageArrays", "compute_mean_std", "default_data_dir", "describe_dir", "is_int"]
