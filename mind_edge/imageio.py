"""Image decoding and normalisation: the one preprocessing used in training *and* on the device.

This module is torch-free on purpose (numpy + Pillow only): ``mind_edge.runtime`` imports it on
a Jetson without PyTorch, and ``mind_edge.data`` imports it on the training host, so an image
file goes through exactly the same code in both places.

Decoding (``load_image`` / ``convert_array``)
    1. Pillow decodes the file (no EXIF rotation is applied, like torchvision's ``ImageFolder``).
    2. ``Image.convert("L")`` for 1 channel or ``Image.convert("RGB")`` for 3 channels
       (palette, alpha, CMYK and 16-bit images are converted by Pillow's rules; alpha is dropped).
    3. If the decoded size differs from the requested ``(H, W)``, ``Image.resize((W, H),
       Image.BILINEAR)``; an image already at the requested size is not touched.
    4. The result is a ``uint8`` array of shape ``(H, W, C)`` (``C == 1`` for grayscale).

Normalisation (``normalize``), in float32, in exactly this order::

    x = batch.astype(float32)             # uint8 -> float32, exact
    x = x / float32(255)                  # IEEE division, correctly rounded
    x = (x - mean_f32[c]) / std_f32[c]    # subtraction, then IEEE division (never * 1/std)
    x = x.transpose(N, C, H, W)           # NHWC -> NCHW, contiguous

``mean`` and ``std`` are cast to float32 *before* the arithmetic. Every step is a single
correctly rounded float32 operation, so any implementation that follows this order (numpy here,
``mind_edge.data.BatchLoader`` in torch, a C++ runtime) produces bit-identical inputs. Do not
replace the divisions by multiplications with a reciprocal: that changes the last bit.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mind_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_image",
    "convert_array",
    "normalize",
    "check_size",
    "check_channels",
    "check_image_file",
    "MAX_PIXELS",
]

#: File name extensions accepted for image folders (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_MODES = {1: "L", 3: "RGB"}


def check_size(size: Sequence[int], what: str = "image size") -> tuple[int, int]:
    """Validate an ``(H, W)`` pair of positive integers and return it as a tuple of ints."""
    try:
        h, w = size  # type: ignore[misc]
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{what} must be a pair of positive integers (height, width); got {size!r}. Pass e.g. (32, 32)."
        )
    return int(h), int(w)


def check_channels(channels: int) -> int:
    """Validate a channel count (1 = grayscale, 3 = RGB)."""
    if isinstance(channels, bool) or channels not in _MODES:
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}.")
    return int(channels)


def _convert_pil(img: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    mode = _MODES[channels]
    if img.mode != mode:
        img = img.convert(mode)
    h, w = size
    if img.size != (w, h):  # Pillow sizes are (W, H)
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


#: Largest image decoded (pixels, from the file's header, checked before decoding): 8192 x 8192.
MAX_PIXELS = 1 << 26


def check_image_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file; a FIFO, device or folder would block or fail inside the decoder."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise DataError(
            f"image file {str(p)!r} does not exist; check the path (the folder "
            f"{str(p.parent)!r} {'exists' if p.parent.is_dir() else 'does not exist either'})."
        ) from None
    except OSError as exc:
        raise DataError(f"image file {str(p)!r} cannot be read ({exc.strerror}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{str(p)!r} is not a regular file (a folder, FIFO or device); pass image files.")
    return p


def load_image(path: str | os.PathLike, size: Sequence[int], channels: int) -> np.ndarray:
    """Decode an image file to ``uint8`` ``(H, W, C)`` at ``size = (H, W)`` with ``channels``.

    See the module docstring for the exact steps. A missing, unreadable, non-regular or corrupt
    file, or one that declares more than :data:`MAX_PIXELS` pixels, raises :class:`DataError`
    naming the file (checked from the header, before decoding).
    """
    size = check_size(size)
    channels = check_channels(channels)
    p = check_image_file(path)
    try:
        with warnings.catch_warnings():  # our own pixel limit below refuses such files with one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
        with img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise DataError(
                    f"image file {str(p)!r} declares {img.size[0]}x{img.size[1]} pixels, more than the "
                    f"{MAX_PIXELS:,} mind-edge decodes; resize it first."
                )
            img.load()  # force the full decode here, so truncated files fail inside the try
            return _convert_pil(img, size, channels)
    except FileNotFoundError as exc:
        raise DataError(
            f"image file {str(p)!r} does not exist; check the path (the folder "
            f"{str(p.parent)!r} {'exists' if p.parent.is_dir() else 'does not exist either'})."
        ) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"cannot decode image file {str(p)!r}: {type(exc).__name__}: {exc}. "
            "The file is corrupt, truncated or not an image; re-create it or delete it "
            "from the dataset folder."
        ) from exc


def convert_array(image: np.ndarray, size: Sequence[int], channels: int) -> np.ndarray:
    """Apply the decoding steps 2-4 to an in-memory ``uint8`` image (``HW``, ``HW1`` or ``HW3``).

    Used to bring arrays read from dataset files (idx, CIFAR pickles) to another size or channel
    count through the same Pillow operations that :func:`load_image` applies to a file.
    """
    size = check_size(size)
    channels = check_channels(channels)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise DataError(f"convert_array expects a uint8 image; got dtype {arr.dtype}.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise DataError(
            f"convert_array expects an image of shape (H, W), (H, W, 1) or (H, W, 3); "
            f"got shape {tuple(np.shape(image))}."
        )
    if arr.ndim == 2 and channels == 1 and arr.shape == size:
        return np.ascontiguousarray(arr[:, :, None])
    if arr.ndim == 3 and channels == 3 and arr.shape[:2] == size:
        return np.ascontiguousarray(arr)
    img = Image.fromarray(np.ascontiguousarray(arr))
    return _convert_pil(img, size, channels)


def normalize(batch_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``uint8`` NHWC (or one HWC image) -> normalised ``float32`` NCHW.

    ``(x / 255 - mean[c]) / std[c]`` in float32, in the order documented in the module
    docstring. A single ``(H, W, C)`` image gives a batch of one, ``(1, C, H, W)``.
    """
    arr = np.asarray(batch_uint8)
    if arr.dtype != np.uint8:
        raise DataError(
            f"normalize expects uint8 pixels (0..255); got dtype {arr.dtype} with shape "
            f"{arr.shape}. Decode images with load_image(), which returns uint8."
        )
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise DataError(
            f"normalize expects a batch (N, H, W, C) or one image (H, W, C); got shape "
            f"{arr.shape}. Add a channel axis to grayscale images (x[..., None])."
        )
    mean_a = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_a = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean_a.size != std_a.size or mean_a.size == 0:
        raise ConfigError(
            f"mean and std must have one value per channel and the same length; got "
            f"mean={tuple(mean)} std={tuple(std)}."
        )
    if not np.all(np.isfinite(std_a)) or np.any(std_a <= 0) or not np.all(np.isfinite(mean_a)):
        raise ConfigError(f"std must be finite and > 0 and mean finite; got mean={tuple(mean)} std={tuple(std)}.")
    c = arr.shape[3]
    if c != mean_a.size:
        raise DataError(
            f"normalize: the images have {c} channel(s) (shape {arr.shape}, NHWC) but mean/std "
            f"have {mean_a.size} value(s), i.e. expected shape (N, H, W, {mean_a.size}). Decode "
            f"the images with channels={mean_a.size}."
        )
    x = arr.astype(np.float32)
    x /= np.float32(255.0)
    x -= mean_a
    x /= std_a
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
