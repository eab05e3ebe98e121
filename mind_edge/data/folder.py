"""``ImageFolder`` trees (``train/<class>/*``, ``test/<class>/*`` or ``val/``), decoded with
:func:`mind_edge.imageio.load_image` exactly as on the device.

Class ids are the sorted class folder names (torchvision's ``ImageFolder`` rule); files are taken
in sorted order; names starting with "." and files without an image extension are ignored.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mind_edge import imageio
from mind_edge.data.base import ImageArrays, describe_dir
from mind_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def scan_split(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    out: dict[str, list[Path]] = {}
    for c in classes:
        files: list[Path] = []
        for dirpath, dirnames, fnames in sorted(os.walk(split_dir / c, followlinks=True)):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            files += [
                Path(dirpath) / f
                for f in sorted(fnames)
                if not f.startswith(".") and f.lower().endswith(imageio.IMAGE_EXTENSIONS)
            ]
        out[c] = files
    return out


def decode_images(
    paths: list[Path], size: tuple[int, int], channels: int, progress: bool | None, what: str
) -> np.ndarray:
    n = len(paths)
    out = np.empty((n, size[0], size[1], channels), dtype=np.uint8)
    show = progress if progress is not None else (n >= 2000 and sys.stderr.isatty())
    if not show:
        for i, p in enumerate(paths):
            out[i] = imageio.load_image(p, size, channels)
        return out
    # rich.progress only for a bar (>= 2000 images on a terminal): importing mind_edge.data loads no rich
    from rich.progress import (  # noqa: PLC0415 - see above
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(f"decoding {what}", total=n)
        for i, p in enumerate(paths):
            out[i] = imageio.load_image(p, size, channels)
            if i % 256 == 255 or i == n - 1:
                bar.update(task, completed=i + 1)
    return out


def load_imagefolder(
    root: str | Path | None, image_size: tuple[int, int] | None, channels: int | None, progress: bool | None
) -> tuple[ImageArrays, ImageArrays, tuple[int, int], int]:
    if root is None:
        raise ConfigError(
            "the imagefolder dataset needs root=<folder with train/<class>/ and test/<class>/> (CLI: --data-root)."
        )
    root_p = Path(root).expanduser()
    train_dir = root_p / "train"
    hint = ""
    if root_p.is_dir():
        subs = [e for e in os.scandir(root_p) if e.is_dir() and (Path(e.path) / "train").is_dir()]
        if len(subs) == 1:
            hint = f" It looks like the dataset is in {subs[0].path!r}: pass that folder as root."
        elif root_p.name in ("train", "test", "val"):
            hint = f" {str(root_p)!r} looks like a split folder: pass its parent {str(root_p.parent)!r} as root."
    if not train_dir.is_dir():
        raise DataError(
            f"imagefolder: expected the train split folder {str(train_dir)!r} (train/<class>/*.jpg); "
            f"{str(root_p)!r} {describe_dir(root_p)}.{hint}"
        )
    test_dir = root_p / "test"
    if not test_dir.is_dir():
        if (root_p / "val").is_dir():
            test_dir = root_p / "val"
        else:
            raise DataError(
                f"imagefolder: expected the test split folder {str(test_dir)!r} (or "
                f"{str(root_p / 'val')!r}); {str(root_p)!r} {describe_dir(root_p)}. Fix: put the "
                "held-out images in test/<class>/ with the same class folders as train/."
            )
    train_files, test_files = scan_split(train_dir), scan_split(test_dir)
    if not train_files:
        raise DataError(
            f"imagefolder: {str(train_dir)!r} has no class folders; {describe_dir(train_dir)}. "
            "Expected train/<class>/<image>."
        )
    only_train = sorted(set(train_files) - set(test_files))
    only_test = sorted(set(test_files) - set(train_files))
    if only_train or only_test:
        raise DataError(
            f"imagefolder: the class folders of {str(train_dir)!r} and {str(test_dir)!r} differ: "
            f"only in {train_dir.name}/: {only_train}; only in {test_dir.name}/: {only_test}. "
            "Both splits need the same class folders."
        )
    empty = [
        f"{d.name}/{c}"
        for d, files in ((train_dir, train_files), (test_dir, test_files))
        for c, fs in files.items()
        if not fs
    ]
    if empty:
        raise DataError(
            f"imagefolder in {str(root_p)!r}: no images with extensions {imageio.IMAGE_EXTENSIONS} "
            f"in the class folders {empty}. Add images or remove the empty folders."
        )
    classes = tuple(train_files)  # sorted, as torchvision.datasets.ImageFolder
    if channels is None:
        channels = 3
    channels = imageio.check_channels(channels)
    if image_size is None:
        first = train_files[classes[0]][0]
        try:
            with Image.open(first) as im:
                w, h = im.size
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read the image size of {str(first)!r}: {exc}") from exc
        image_size = (h, w)
        log.info("imagefolder: using the size of the first image, %dx%d (H x W)", h, w)
    image_size = imageio.check_size(image_size)
    out = []
    for split_dir, files in ((train_dir, train_files), (test_dir, test_files)):
        paths = [p for c in classes for p in files[c]]
        labels = np.concatenate([np.full(len(files[c]), i, dtype=np.int64) for i, c in enumerate(classes)])
        log.info("imagefolder: decoding %d images from %s", len(paths), split_dir)
        images = decode_images(paths, image_size, channels, progress, f"{split_dir.name}/")
        out.append(ImageArrays(images, labels, classes))
    return out[0], out[1], image_size, channels


__all__ = ["scan_split", "decode_images", "load_imagefolder"]
