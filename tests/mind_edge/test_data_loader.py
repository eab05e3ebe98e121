"""mind_edge.data.loader: the BatchLoader (vectorised crop/flip and normalisation, CPU or CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mind_edge import imageio
from mind_edge.data import BatchLoader, DatasetSpec
from mind_edge.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ BatchLoader


def _spec(augment="crop_flip", padding=2, channels=3, size=(6, 5)):
    return DatasetSpec(
        "toy",
        channels,
        size,
        (0.4914, 0.4822, 0.4465)[:channels],
        (0.2470, 0.2435, 0.2616)[:channels],
        augment,
        padding,
    )


def _toy(n=23, size=(6, 5), channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, (n, *size, channels), dtype=np.uint8), np.arange(n) % 4


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batchloader_deterministic_and_shapes():
    images, labels = _toy()
    spec = _spec()
    a = _epoch(
        BatchLoader(images, labels, spec=spec, batch_size=5, train=True, generator=torch.Generator().manual_seed(3))
    )
    b = _epoch(
        BatchLoader(images, labels, spec=spec, batch_size=5, train=True, generator=torch.Generator().manual_seed(3))
    )
    c = _epoch(
        BatchLoader(images, labels, spec=spec, batch_size=5, train=True, generator=torch.Generator().manual_seed(4))
    )
    assert len(a) == 5 and [x.shape[0] for x, _ in a] == [5, 5, 5, 5, 3]
    assert all(x.shape[1:] == (3, 6, 5) and x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in a)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    ys = torch.cat([y for _, y in a])
    assert sorted(ys.tolist()) == sorted(labels.tolist())  # an epoch visits each sample once
    dl = BatchLoader(
        images, labels, spec=spec, batch_size=5, train=True, drop_last=True, generator=torch.Generator().manual_seed(0)
    )
    assert len(dl) == 4 and len(_epoch(dl)) == 4


def test_batchloader_eval_is_plain_normalize():
    images, labels = _toy()
    spec = _spec()
    batches = _epoch(BatchLoader(images, labels, spec=spec, batch_size=7, train=False))
    x = torch.cat([b[0] for b in batches]).numpy()
    y = torch.cat([b[1] for b in batches]).numpy()
    ref = imageio.normalize(images, spec.mean, spec.std)
    assert np.abs(x - ref).max() <= 1e-6
    np.testing.assert_array_equal(x, ref)  # bit-identical in fact
    np.testing.assert_array_equal(y, labels)


def _padded(img: np.ndarray, p: int) -> np.ndarray:
    return np.pad(img, ((p, p), (p, p), (0, 0)))


def _find_window(out_hwc: np.ndarray, src_hwc: np.ndarray, p: int, flips=(False,)):
    h, w, _ = src_hwc.shape
    padded = _padded(src_hwc, p)
    for flip in flips:
        for i in range(2 * p + 1):
            for j in range(2 * p + 1):
                win = padded[i : i + h, j : j + w]
                if flip:
                    win = win[:, ::-1]
                if np.array_equal(win, out_hwc):
                    return i, j, flip
    return None


def _denormalize_to_uint8(x: torch.Tensor, spec: DatasetSpec) -> np.ndarray:
    """Invert the lookup: each float maps back to exactly one uint8 per channel."""
    c = spec.in_channels
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], c, axis=2)
    lut = imageio.normalize(ramp, spec.mean, spec.std)[0, :, 0, :]  # (C, 256)
    xn = x.numpy()
    out = np.empty(xn.shape, np.uint8)
    for ch in range(c):
        out[:, ch] = np.searchsorted(lut[ch], xn[:, ch])
        assert np.array_equal(lut[ch][out[:, ch]], xn[:, ch])
    return out.transpose(0, 2, 3, 1)


def test_batchloader_crop_is_shifted_copy_with_zero_padding():
    images, labels = _toy(n=30)
    spec = _spec(augment="crop", padding=2)
    loader = BatchLoader(
        images, np.arange(30), spec=spec, batch_size=30, train=True, generator=torch.Generator().manual_seed(0)
    )
    x, y = next(iter(loader))
    assert x.shape == (30, 3, 6, 5)
    out = _denormalize_to_uint8(x, spec)
    offsets = set()
    for k in range(30):
        hit = _find_window(out[k], images[int(y[k])], 2)
        assert hit is not None, f"sample {k} is not a zero-padded shifted copy"
        offsets.add(hit[:2])
    assert len(offsets) > 3  # offsets vary
    assert (out == 0).any()  # the zero padding shows up as black pixels (the toy images have none)


def test_batchloader_crop_flip_flips_some():
    images, _ = _toy(n=40)
    spec = _spec(augment="crop_flip", padding=1)
    loader = BatchLoader(
        images, np.arange(40), spec=spec, batch_size=40, train=True, generator=torch.Generator().manual_seed(1)
    )
    x, y = next(iter(loader))
    out = _denormalize_to_uint8(x, spec)
    flips = []
    for k in range(40):
        src = images[int(y[k])]
        hit = _find_window(out[k], src, 1, flips=(False, True))
        assert hit is not None
        flips.append(hit[2] and _find_window(out[k], src, 1) is None)
    assert 5 < sum(flips) < 35


def test_batchloader_no_augment_when_none_and_grayscale():
    images, _ = _toy(channels=1)
    spec = _spec(augment="none", padding=0, channels=1)
    x, y = next(
        iter(
            BatchLoader(
                images,
                np.arange(len(images)),
                spec=spec,
                batch_size=100,
                train=True,
                generator=torch.Generator().manual_seed(0),
            )
        )
    )
    assert sorted(y.tolist()) == list(range(len(images))) and y.tolist() != sorted(y.tolist())  # shuffled
    ref = imageio.normalize(images[y.numpy()], spec.mean, spec.std)
    np.testing.assert_array_equal(x.numpy(), ref)  # but not augmented


def test_batchloader_validation():
    images, labels = _toy()
    with pytest.raises(DataError, match="expects 6x5x1"):
        BatchLoader(images, labels, spec=_spec(channels=1), batch_size=4, train=False)
    with pytest.raises(DataError):
        BatchLoader(images, labels[:-1], spec=_spec(), batch_size=4, train=False)
    with pytest.raises(ConfigError):
        BatchLoader(images, labels, spec=_spec(), batch_size=0, train=False)
    with pytest.raises(DataError):
        BatchLoader(images.astype(np.float32), labels, spec=_spec(), batch_size=4, train=False)


@pytest.mark.needs_cuda
def test_batchloader_cuda_matches_cpu():
    images, labels = _toy()
    spec = _spec()
    cpu = _epoch(
        BatchLoader(images, labels, spec=spec, batch_size=6, train=True, generator=torch.Generator().manual_seed(5))
    )
    gpu = _epoch(
        BatchLoader(
            images,
            labels,
            spec=spec,
            batch_size=6,
            train=True,
            generator=torch.Generator().manual_seed(5),
            device="cuda",
        )
    )
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
