"""Task-agnostic prediction from a bundle, torch-free.

``Runtime(bundle).predict(x)`` accepts a float32 NCHW batch (already normalised), a uint8
NHWC batch or one HWC image (normalised here with :func:`mind_edge.imageio.normalize`), or
image files, folders of images and glob patterns (:func:`collect_images`; decoded with
:func:`mind_edge.imageio.load_image`: the same Pillow + numpy steps as training). It returns
labels, tasks, confidences and class names; another temperature than the bundle's re-routes in
numpy from the graph's ``task_logits``.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from mind_edge import imageio
from mind_edge.errors import ConfigError
from mind_edge.imageio import check_image_file
from mind_edge.runtime.backends import make_runner
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.errors import InputError
from mind_edge.runtime.graph import read_routing_stats
from mind_edge.runtime.routing import check_temperature, get_policy, route_numpy
from mind_edge.runtime.runners import Runner

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
Inputs = Union[np.ndarray, PathLike, Sequence[PathLike]]


@dataclass(frozen=True)
class Prediction:
    """One batch's results (numpy arrays, batch first)."""

    label: np.ndarray  # [B] int64 global class id
    task: np.ndarray  # [B] int64
    confidence: np.ndarray  # [B] float32
    task_confidence: np.ndarray  # [B, N] float32
    task_logits: np.ndarray  # [B, N, Cmax] float32
    class_names: list[str]
    temperature: float
    sources: list[str] | None = field(default=None)
    policy: str = "maxprob"  # the routing policy that chose task and label

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def records(self) -> list[dict]:
        """One JSON-ready dict per input."""
        out = []
        for i in range(len(self)):
            rec = {
                "label": int(self.label[i]),
                "class_name": self.class_names[i],
                "task": int(self.task[i]),
                "confidence": float(self.confidence[i]),
                "task_confidence": [float(v) for v in self.task_confidence[i]],
            }
            if self.sources is not None:
                rec = {"file": self.sources[i], **rec}
            out.append(rec)
        return out


def _is_path_list(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in x)


#: File suffixes taken from a folder given to predict (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_GLOB_CHARS = ("*", "?", "[")


def collect_images(sources: Sequence[PathLike]) -> list[Path]:
    """Image files from files, folders and glob patterns, in the order given.

    A folder contributes every image file below it (:data:`IMAGE_SUFFIXES`, recursively, sorted;
    hidden files and folders are skipped), e.g. an ImageFolder ``test/`` tree; a pattern that is
    not an existing path (``'shots/*.jpg'``, ``'data/**/*.png'``) contributes its sorted matches,
    as ``yolo predict source=`` does. A folder without images or a pattern without matches is an
    :class:`InputError`; a plain file is passed on as it is (its decoding reports a bad file).
    """
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                raise InputError(
                    f"folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                    "pass image files, a folder of images or a glob pattern"
                )
            out.extend(found)
        elif not p.exists() and any(ch in str(src) for ch in _GLOB_CHARS):
            found = sorted(Path(m) for m in glob.glob(str(src), recursive=True) if Path(m).is_file())
            if not found:
                raise InputError(
                    f"no file matches the pattern {str(src)!r}; check the path (quote the pattern so "
                    "that mind-edge, not the shell, expands it)"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def _image_info(path: Path) -> tuple[tuple[int, int], int] | None:
    """``((H, W), bands)`` of an image file from its header, or None if Pillow cannot open it."""
    check_image_file(path)  # a FIFO would block Image.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            return (img.size[1], img.size[0]), len(img.getbands())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # load_image reports the decode error with its own message


class Runtime:
    """Run a bundle: ``Runtime(Bundle.load(path)).predict(images)``."""

    def __init__(
        self,
        bundle: Bundle | PathLike,
        backend: str = "ort",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        runner: Runner | None = None,
        precision: str | None = None,
    ) -> None:
        """``backend``: ``ort`` (ONNX Runtime, ``providers``) or ``trt`` (the TensorRT engine built on this
        machine with ``mind-edge engine build``); ``precision`` (``fp32``/``fp16``) picks the engine, or
        turns on FP16 in ONNX Runtime's TensorRT execution provider."""
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.backend = backend
        for attempt in (0, 1):
            try:
                self.runner = (
                    runner
                    if runner is not None
                    else make_runner(
                        backend, self.bundle.model_path, providers=providers, threads=threads, precision=precision
                    )
                )
                self.runner.activate()
                break
            except Exception:
                # the first 'patch apply' of a plain bundle committed (and removed the plain files) after the bundle
                # was loaded: open its live version instead (never a mix of the old metadata and the new model)
                if attempt or runner is not None or not self.bundle.superseded():
                    raise
                log.info("bundle %s was updated while it was opened; using its live version", self.bundle.root)
                self.bundle = Bundle.load(self.bundle.root or self.bundle.path)
        self._table = self.bundle.class_table()
        self._stats = None  # routing statistics, read from the graph when a re-route needs them

    @property
    def providers_used(self) -> list[str]:
        """Execution providers the backend actually uses (first = preferred)."""
        return list(getattr(self.runner, "providers_used", [self.runner.name]))

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- preprocessing --------------------------------------------------------------
    def _expected(self) -> str:
        c, h, w = self.bundle.input.shape
        return (
            f"[B, {c}, {h}, {w}] float32 (NCHW), [B, {h}, {w}, {c}] or [{h}, {w}, {c}] uint8 (NHWC/HWC) or image files"
        )

    def preprocess(self, inputs: Inputs, *, strict: bool = False) -> tuple[np.ndarray, list[str] | None]:
        """Turn ``inputs`` into the graph's float32 NCHW batch; also returns the file names, if any."""
        spec = self.bundle.input
        c, h, w = spec.shape
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        if _is_path_list(inputs):
            if not inputs:
                raise InputError("predict got an empty list of image files; pass at least one image")
            images, names = [], []
            for p in collect_images(inputs):
                info = _image_info(p) if strict else None
                if info is not None and (info[0] != spec.size or info[1] != c):
                    raise InputError(
                        f"image {p} is {info[0][0]}x{info[0][1]} with {info[1]} channel(s) but the bundle expects "
                        f"{h}x{w} with {c} ({spec.channel_order}); resize/convert it, or pass --resize (strict=False) "
                        "to let mind-edge resize (bilinear) and convert it like training does"
                    )
                images.append(imageio.load_image(p, spec.size, c))
                names.append(str(p))
            return imageio.normalize(np.stack(images), spec.mean, spec.std), names
        if not isinstance(inputs, np.ndarray):
            raise InputError(
                f"predict takes a numpy array or image file paths, got {type(inputs).__name__}; "
                f"expected {self._expected()}"
            )
        x = inputs
        if x.dtype == np.uint8:
            batch = x[None] if x.ndim == 3 else x
            if batch.ndim != 4 or tuple(batch.shape[1:]) != (h, w, c):
                raise InputError(
                    f"uint8 images must be [B, {h}, {w}, {c}] (NHWC) or [{h}, {w}, {c}] (HWC) for this bundle, "
                    f"got {list(x.shape)}; resize/convert the images to {h}x{w} with {c} channel(s) "
                    f"({spec.channel_order}), or pass the image files"
                )
            return imageio.normalize(batch, spec.mean, spec.std), None
        if x.dtype in (np.float32, np.float64, np.float16):
            if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
                raise InputError(
                    f"a float batch must be [B, C, H, W] = [B, {c}, {h}, {w}] (normalised NCHW) for this bundle, got "
                    f"{list(x.shape)}; resize/convert the images to {h}x{w} with {c} channel(s), or pass uint8 images "
                    "or files and let mind-edge normalise them"
                )
            return np.ascontiguousarray(x, dtype=np.float32), None
        raise InputError(f"predict got an array of dtype {x.dtype}; expected {self._expected()}")

    # -- inference ------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on a float32 NCHW batch; every output by name."""
        return self.runner.infer({self.bundle.input.name: batch})

    def routing_stats(self):
        """Every task's routing statistics, read from the graph (``None`` entries when it carries none)."""
        if self._stats is None:  # any layout: only the route.* initializers are read
            self._stats = read_routing_stats(self.bundle.model_path)
        return self._stats

    def predict(
        self,
        inputs: Inputs,
        temperature: float | None = None,
        *,
        batch_size: int | None = None,
        strict: bool = False,
        routing: str | None = None,
    ) -> Prediction:
        """Predict ``inputs`` (see the module docstring); ``temperature`` or ``routing`` (another policy of
        :mod:`mind_edge.core.routing`) re-route in numpy from the graph's ``task_logits`` and ``task_features``."""
        x, sources = self.preprocess(inputs, strict=strict)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        step = batch_size or max(1, x.shape[0])
        parts = [self.infer(x[i : i + step]) for i in range(0, x.shape[0], step)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        T, policy = self.bundle.temperature, self.bundle.policy
        want_T = T if temperature is None else check_temperature(temperature)
        want_policy = policy if routing is None else get_policy(routing).name
        if (want_T, want_policy) != (T, policy):
            stats = None
            if get_policy(want_policy).needs_stats:
                stats = self.routing_stats()
                if any(st is None for st in stats):
                    raise ConfigError(
                        f"routing policy {want_policy!r} needs routing statistics, which this bundle's graph does not "
                        f"carry (it routes with {policy!r}); export it with --routing {want_policy}"
                    )
                if "task_features" not in out:
                    raise ConfigError(
                        f"{self.bundle.root} predates task_features; re-export it to re-route with {want_policy!r}"
                    )
            r = route_numpy(
                out["task_logits"],
                self._table,
                want_T,
                want_policy,
                stats=stats,
                task_features=out.get("task_features"),
            )
            out.update(label=r.label, task=r.task, confidence=r.confidence, task_confidence=r.task_confidence)
            T, policy = want_T, want_policy
        names = [self.bundle.class_name(v) for v in out["label"]]
        return Prediction(
            label=out["label"],
            task=out["task"],
            confidence=out["confidence"],
            task_confidence=out["task_confidence"],
            task_logits=out["task_logits"],
            class_names=names,
            temperature=T,
            sources=sources,
            policy=policy,
        )
