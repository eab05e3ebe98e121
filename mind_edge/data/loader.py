"""The batch loader (torch): normalised, augmented mini-batches from an in-memory uint8 array.

Instead of per-sample PIL transforms in DataLoader worker processes (slow on a 2-core host, and a
second, slightly different preprocessing path), :class:`BatchLoader` gathers a batch of indices
and applies the augmentation (zero-padded random crop, horizontal flip) as a few vectorised
tensor ops — on the CPU or, with ``device="cuda"``, on the GPU with the whole dataset resident
there. Randomness comes from one ``torch.Generator``, so an epoch is fully determined by the
generator's seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mind_edge import imageio
from mind_edge.data.base import DatasetSpec, is_int
from mind_edge.errors import ConfigError, DataError


class BatchLoader:
    """Mini-batches of normalised float32 NCHW tensors from an in-memory uint8 NHWC array.

    With ``train=True`` every epoch (``iter``) draws, from ``generator`` and in this order: a
    permutation of the samples (``torch.randperm``), then per batch the crop offsets when
    ``padding > 0`` (``randint(0, 2*padding+1, (B, 2))``: top, left) and, for ``crop_flip``, the flips
    (``rand(B) < 0.5``). The crop is torchvision's ``RandomCrop(size, padding)`` on the raw
    image: zero (black) padding *before* normalisation, then a window of the original size; the
    flip is applied after the crop. With ``train=False`` the order is kept and nothing is
    augmented. The same generator seed gives the same batches, on any device.

    Normalisation equals :func:`mind_edge.imageio.normalize` bit for bit (it is a lookup table
    that function computed).
    """

    def __init__(
        self,
        images_uint8_nhwc: np.ndarray,
        labels: np.ndarray,
        *,
        spec: DatasetSpec,
        batch_size: int,
        train: bool,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> None:
        images = images_uint8_nhwc
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                "BatchLoader needs uint8 images (N, H, W, C); got "
                f"{type(images).__name__} dtype={getattr(images, 'dtype', None)} "
                f"shape={getattr(images, 'shape', None)}."
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"BatchLoader: {images.shape[0]} images but labels have dtype {labels.dtype} shape {labels.shape}."
            )
        if images.shape[3] != spec.in_channels or tuple(images.shape[1:3]) != spec.input_size:
            raise DataError(
                f"BatchLoader: images are {images.shape[1]}x{images.shape[2]}x{images.shape[3]} (HxWxC) "
                f"but spec {spec.name!r} expects {spec.input_size[0]}x{spec.input_size[1]}x{spec.in_channels}; "
                "load the dataset with matching image_size/channels."
            )
        if not is_int(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}.")
        self.spec = spec
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.generator = generator
        self.drop_last = bool(drop_last)
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"invalid device {device!r}: {exc}") from exc
        if not images.flags.c_contiguous or not images.flags.writeable:
            images = np.array(images, order="C", copy=True)
        self._images = torch.from_numpy(images).to(self.device)  # zero-copy on the CPU
        self._labels = torch.from_numpy(labels.astype(np.int64, copy=True)).to(self.device)
        c = spec.in_channels
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], c, axis=2)  # (1, 256, C) = HWC
        lut = imageio.normalize(ramp, spec.mean, spec.std)  # (1, C, 1, 256)
        self._lut = torch.from_numpy(np.ascontiguousarray(lut.reshape(c * 256))).to(self.device)
        self._lut_offset = (torch.arange(c, dtype=torch.int64) * 256).to(self.device)

    @property
    def num_samples(self) -> int:
        return int(self._images.shape[0])

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _rng_device(self) -> torch.device:
        return self.generator.device if self.generator is not None else torch.device("cpu")

    def normalize(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC tensor -> float32 NCHW, identical to ``imageio.normalize``."""
        idx = x_uint8_nhwc.to(torch.int64) + self._lut_offset
        return self._lut[idx].permute(0, 3, 1, 2).contiguous()

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        spec, g = self.spec, self.generator
        p = spec.padding if spec.augment in ("crop", "crop_flip") else 0
        flip_too = spec.augment == "crop_flip"
        if p == 0 and not flip_too:
            return x
        b, h, w, _ = x.shape
        dev = self._rng_device()
        if p > 0:
            off = torch.randint(0, 2 * p + 1, (b, 2), generator=g, device=dev).to(self.device)
        else:
            off = torch.zeros((b, 2), dtype=torch.int64, device=self.device)
        rows = off[:, :1] + torch.arange(h, device=self.device)  # (B, H), padded coordinates
        cols = off[:, 1:] + torch.arange(w, device=self.device)  # (B, W)
        if flip_too:  # flipping the cropped window = reading its columns backwards
            flip = (torch.rand(b, generator=g, device=dev) < 0.5).to(self.device)
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        xp = F.pad(x, (0, 0, p, p, p, p)) if p > 0 else x  # zero (black) padding of H and W, NHWC
        bi = torch.arange(b, device=self.device)[:, None, None]
        return xp[bi, rows[:, :, None], cols[:, None, :]]  # one gather: crop + flip

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = self.num_samples, self.batch_size
        if self.train:
            order = torch.randperm(n, generator=self.generator, device=self._rng_device()).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            if self.drop_last and idx.shape[0] < bs:
                break
            x = self._images[idx]
            if self.train and self.spec.augment != "none":
                x = self._augment(x)
            yield self.normalize(x), self._labels[idx]


__all__ = ["BatchLoader"]
