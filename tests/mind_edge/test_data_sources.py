"""mind_edge.data sources: dataset readers on real on-disk formats (idx, CIFAR pickles, image folders, digits)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mind_edge import data, imageio
from mind_edge.data import load_dataset, read_idx
from mind_edge.errors import ConfigError, DataError, MindEdgeError

# ------------------------------------------------------------------------------ writers


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    codes = {
        np.dtype(np.uint8): 0x08,
        np.dtype(np.int8): 0x09,
        np.dtype(">i2"): 0x0B,
        np.dtype(">i4"): 0x0C,
        np.dtype(">f4"): 0x0D,
        np.dtype(">f8"): 0x0E,
    }
    be = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    raw = bytes([0, 0, codes[np.dtype(be)], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(be).tobytes()
    if gz:
        raw = gzip.compress(raw)
        path = path.with_name(path.name + ".gz")
    path.write_bytes(raw)
    return path


def make_mnist_folder(folder: Path, gz: bool, n_train=30, n_test=12, seed=0, dotted=False):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        sep = "." if dotted else "-"
        write_idx(folder / f"{split}-images{sep}idx3-ubyte", x, gz)
        write_idx(folder / f"{split}-labels{sep}idx1-ubyte", y, gz)
        out[split] = (x, y)
    return out


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), like the official files.

    The official CIFAR pickles were written by Python 2 (cPickle, protocol 2): their keys and the
    array data are py2 ``str``, which Python 3 reads as ``str`` with ``encoding="latin1"`` (what
    torchvision does) and as ``bytes`` (``b"data"``) with ``encoding="bytes"``.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _pickle_py2_style(obj, path: Path) -> None:
    """Protocol 2, py2 strings and numpy-1.x module names, like the official CIFAR files."""
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"_codecs" not in raw and b"numpy._core" not in raw
    path.write_bytes(raw)


def make_cifar(root: Path, kind: str, per_batch=6, seed=0, py2_style=True):
    """A tiny CIFAR-10/100 python-pickle folder in torchvision's layout."""
    rng = np.random.default_rng(seed)
    write = _pickle_py2_style if py2_style else (lambda o, p: p.write_bytes(pickle.dumps(o)))
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        names, k, key = [f"class{i}" for i in range(10)], 10, b"labels"
        files = {f"data_batch_{i}": True for i in range(1, 6)} | {"test_batch": False}
        meta_name, meta = (
            "batches.meta",
            {
                b"label_names": [n.encode() for n in [f"class{i}" for i in range(10)]],
                b"num_cases_per_batch": per_batch,
                b"num_vis": 3072,
            },
        )
    else:
        folder = root / "cifar-100-python"
        names, k, key = [f"fine{i:02d}" for i in range(100)], 100, b"fine_labels"
        files = {"train": True, "test": False}
        meta_name, meta = (
            "meta",
            {
                b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
            },
        )
    folder.mkdir(parents=True)
    xs = {True: [], False: []}
    ys = {True: [], False: []}
    for fname, train in files.items():
        n = per_batch if kind == "cifar10" else 2 * k
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, k, n)]
        d = {b"batch_label": fname.encode(), b"data": x, key: y, b"filenames": [f"{i}.png".encode() for i in range(n)]}
        if kind == "cifar100":
            d[b"coarse_labels"] = [v // 5 for v in y]
        write(d, folder / fname)
        xs[train].append(x)
        ys[train].append(y)
    write(meta, folder / meta_name)

    def hwc(chunks):
        return np.concatenate(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    return folder, names, (hwc(xs[True]), np.concatenate(ys[True])), (hwc(xs[False]), np.concatenate(ys[False]))


def make_imagefolder(root: Path, test_name="test", seed=0):
    """Odd-sized PNG/JPEG images (13 wide x 9 high) in train/<class>/ and test/<class>/."""
    rng = np.random.default_rng(seed)
    classes = ["zebra", "ant", "moth"]  # deliberately unsorted on disk
    for split, n in (("train", 3), (test_name, 2)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
                ext = ".PNG" if i % 2 else ".png"
                Image.fromarray(arr).save(d / f"{i:03d}{ext}", format="PNG")
            Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).save(d / "zz.jpg", quality=90)
            (d / ".DS_Store").write_bytes(b"\0junk")
            (d / "notes.txt").write_text("not an image")
    return sorted(classes)


# ------------------------------------------------------------------------------ idx


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    for name, arr in {
        "img": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        "lab": rng.integers(0, 10, (5,), dtype=np.uint8),
        "i32": rng.integers(-1000, 1000, (4, 2), dtype=np.int32),
        "f64": rng.standard_normal((3,)),
    }.items():
        p = write_idx(tmp_path / name, arr, gz)
        out = read_idx(p)
        assert out.dtype == arr.dtype.newbyteorder("=") and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_idx_matches_torchvision_reader(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    ref = make_mnist_folder(tmp_path, gz=False)
    np.testing.assert_array_equal(
        read_idx(tmp_path / "train-images-idx3-ubyte"),
        read_image_file(str(tmp_path / "train-images-idx3-ubyte")).numpy(),
    )
    np.testing.assert_array_equal(
        read_idx(tmp_path / "t10k-labels-idx1-ubyte"), read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte")).numpy()
    )
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte"), ref["train"][0])


def test_idx_errors(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 3, 3), np.uint8))
    raw = good.read_bytes()
    bad = tmp_path / "badmagic"
    bad.write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(trunc)
    head = tmp_path / "head"
    head.write_bytes(raw[:7])
    with pytest.raises(DataError, match="truncated"):
        read_idx(head)
    long = tmp_path / "long"
    long.write_bytes(raw + b"xx")
    with pytest.raises(DataError, match="longer"):
        read_idx(long)
    gz = tmp_path / "trunc.gz"
    gz.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DataError, match="gzip"):
        read_idx(gz)
    with pytest.raises(DataError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ------------------------------------------------------------------------------ mnist / fashion-mnist


@pytest.mark.parametrize("layout", ["plain", "gz", "raw", "torchvision", "dotted"])
def test_mnist_layouts(tmp_path, layout):
    folder = {"raw": tmp_path / "raw", "torchvision": tmp_path / "MNIST" / "raw"}.get(layout, tmp_path)
    ref = make_mnist_folder(folder, gz=layout in ("gz", "torchvision"), dotted=layout == "dotted")
    train, test, spec = load_dataset("mnist", tmp_path)
    assert train.images.shape == (30, 28, 28, 1) and test.images.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(train.images[..., 0], ref["train"][0])
    np.testing.assert_array_equal(test.labels, ref["t10k"][1].astype(np.int64))
    assert train.labels.dtype == np.int64
    assert train.class_names == tuple(str(i) for i in range(10))
    assert spec == data.REFERENCE_SPECS["mnist"] and spec.augment == "crop" and spec.padding == 2


def test_fashion_mnist_names_and_missing_files(tmp_path):
    make_mnist_folder(tmp_path / "fm", gz=True)
    train, _, spec = load_dataset("fashion-mnist", tmp_path / "fm")
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"
    assert spec.mean == (0.2860,) and spec.augment == "crop_flip"
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path / "fm")
    msg = str(exc.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte.gz" in msg  # missing + what exists
    assert "dataset-fashion-mnist" in msg and "download" in msg


def test_mnist_mismatched_files(tmp_path):
    make_mnist_folder(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        load_dataset("mnist", tmp_path)


@pytest.mark.skipif(
    not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_debian_fashion_mnist_default_root():
    train, test, spec = load_dataset("fashion-mnist")
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    mean, std = data.compute_mean_std(train.images)
    assert abs(mean[0] - spec.mean[0]) < 1e-3 and abs(std[0] - spec.std[0]) < 1e-3


def test_mnist_converted_to_rgb_32(tmp_path):
    make_mnist_folder(tmp_path, gz=False)
    train, _, spec = load_dataset("mnist", tmp_path, image_size=(32, 32), channels=3)
    assert train.images.shape == (30, 32, 32, 3)
    assert spec.in_channels == 3 and spec.input_size == (32, 32) and spec.mean == (0.1307,) * 3
    np.testing.assert_array_equal(
        train.images[0], imageio.convert_array(read_idx(tmp_path / "train-images-idx3-ubyte")[0], (32, 32), 3)
    )


# ------------------------------------------------------------------------------ cifar


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
@pytest.mark.parametrize("py2_style", [True, False])
def test_cifar_pickles(tmp_path, kind, py2_style):
    folder, names, (xtr, ytr), (xte, yte) = make_cifar(tmp_path, kind, py2_style=py2_style)
    train, test, spec = load_dataset(kind, tmp_path)
    np.testing.assert_array_equal(train.images, xtr)
    np.testing.assert_array_equal(train.labels, ytr)
    np.testing.assert_array_equal(test.images, xte)
    np.testing.assert_array_equal(test.labels, yte)
    assert train.class_names == tuple(names)
    assert spec.augment == "crop_flip" and spec.padding == 4 and spec.input_size == (32, 32)
    # the root may also be the batches folder itself
    again, _, _ = load_dataset(kind, folder)
    np.testing.assert_array_equal(again.images, xtr)


def test_cifar_reference_normalisation():
    assert data.REFERENCE_SPECS["cifar100"].mean == (0.5071, 0.4866, 0.4409)
    assert data.REFERENCE_SPECS["cifar100"].std == (0.2673, 0.2564, 0.2762)
    assert data.REFERENCE_SPECS["cifar10"].mean == (0.4914, 0.4822, 0.4465)
    assert data.REFERENCE_SPECS["cifar10"].std == (0.2470, 0.2435, 0.2616)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_matches_torchvision(tmp_path, kind, monkeypatch):
    """Our files are torchvision's format: its own reader (md5 check disabled) agrees with ours."""
    import torchvision.datasets.cifar as tvc

    make_cifar(tmp_path, kind)
    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    cls = tvc.CIFAR10 if kind == "cifar10" else tvc.CIFAR100
    for train_split in (True, False):
        ref = cls(str(tmp_path), train=train_split, download=False)
        ours = load_dataset(kind, tmp_path)[0 if train_split else 1]
        np.testing.assert_array_equal(ours.images, ref.data)
        np.testing.assert_array_equal(ours.labels, np.asarray(ref.targets))
        assert list(ours.class_names) == list(ref.classes)


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-py" in str(exc.value) and "download" in str(exc.value)
    folder, *_ = make_cifar(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00(")  # truncated pickle
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_refuses_arbitrary_pickles(tmp_path):
    folder, *_ = make_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(str(marker))}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


# ------------------------------------------------------------------------------ imagefolder


def test_imagefolder_reads_sorted_classes_and_resizes(tmp_path):
    classes = make_imagefolder(tmp_path)
    train, test, spec = load_dataset("imagefolder", tmp_path, image_size=(6, 8))
    assert train.class_names == tuple(classes) == ("ant", "moth", "zebra")
    assert train.images.shape == (12, 6, 8, 3) and test.images.shape == (9, 6, 8, 3)  # 4 / 3 per class
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(train.images[0], imageio.load_image(tmp_path / "train/ant/000.png", (6, 8), 3))
    # same class ids and sample order as torchvision's ImageFolder
    from torchvision.datasets import ImageFolder

    tv = ImageFolder(str(tmp_path / "train"))
    assert tv.class_to_idx == {c: i for i, c in enumerate(classes)}
    assert [t for _, t in tv.samples] == train.labels.tolist()
    assert spec.name == "imagefolder" and spec.in_channels == 3 and spec.input_size == (6, 8)
    assert (spec.mean, spec.std) == data.compute_mean_std(train.images)
    assert spec.augment == "crop_flip" and spec.padding == 0  # min(6, 8) // 8


def test_imagefolder_defaults_val_and_grayscale(tmp_path):
    make_imagefolder(tmp_path, test_name="val")
    train, test, spec = load_dataset("imagefolder", tmp_path, channels=1)
    assert train.images.shape == (12, 9, 13, 1)  # size of the first image, (H, W)
    assert test.images.shape[0] == 9 and spec.in_channels == 1 and len(spec.mean) == 1
    np.testing.assert_array_equal(train.images[1], imageio.load_image(tmp_path / "train/ant/001.PNG", (9, 13), 1))


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ConfigError):
        load_dataset("imagefolder", None)
    with pytest.raises(DataError, match="train"):
        load_dataset("imagefolder", tmp_path / "nothing")
    make_imagefolder(tmp_path / "ds")
    with pytest.raises(DataError, match="pass that folder as root"):  # the extracted-tarball mistake
        load_dataset("imagefolder", tmp_path)
    root = tmp_path / "ds"
    with pytest.raises(DataError, match="pass its parent"):
        load_dataset("imagefolder", root / "train")
    os.rename(root / "test", root / "holdout")
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", root)
    assert str(root / "test") in str(exc.value) and "holdout" in str(exc.value)
    os.rename(root / "holdout", root / "test")
    (root / "train" / "bee").mkdir()
    Image.new("RGB", (13, 9)).save(root / "train" / "bee" / "a.png")
    (root / "test" / "wasp").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", root)
    assert "bee" in str(exc.value) and "wasp" in str(exc.value)


def test_imagefolder_corrupt_image_names_file(tmp_path):
    make_imagefolder(tmp_path)
    (tmp_path / "train" / "moth" / "001.PNG").write_bytes(b"garbage")
    with pytest.raises(DataError, match="001.PNG"):
        load_dataset("imagefolder", tmp_path)


# ------------------------------------------------------------------------------ digits


def test_digits():
    train, test, spec = load_dataset("digits", seed=0)
    assert len(train) + len(test) == 1797 and len(test) == 450 and len(train) == 1347
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8, 1)
    assert train.images.max() == 255 and train.images.min() == 0
    assert set(np.unique(train.images)) <= {round(v * 255 / 16) for v in range(17)}
    assert np.bincount(test.labels).min() >= 17  # stratified: ~25 % of each class
    assert train.class_names == tuple(str(i) for i in range(10))
    again, _, _ = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(again.images, train.images)
    np.testing.assert_array_equal(again.labels, train.labels)
    other, _, spec1 = load_dataset("digits", seed=1)
    assert not np.array_equal(other.labels, train.labels) and spec1 == spec
    full = np.concatenate([train.images, test.images])
    mean, std = data.compute_mean_std(full)
    assert abs(mean[0] - spec.mean[0]) < 1e-4 and abs(std[0] - spec.std[0]) < 1e-4
    assert spec.augment == "none"


def test_unknown_dataset_and_bad_options():
    with pytest.raises(ConfigError, match="cifar100"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError):
        load_dataset("digits", channels=2)
    assert issubclass(DataError, MindEdgeError)


# ------------------------------------------------------------------------------ download fallback (no network)


def test_download_falls_back_to_torchvision(tmp_path, monkeypatch):
    """download=True with missing files asks torchvision, then reads what it left in <root>/MNIST/raw."""
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = Path(root) / "MNIST" / "raw"
            if not raw.exists():
                make_mnist_folder(raw, gz=False)

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    with pytest.raises(DataError, match="download"):
        load_dataset("mnist", tmp_path)  # download=False: no network use, a helpful error
    assert calls == []
    train, test, _ = load_dataset("mnist", tmp_path, download=True)
    assert calls and all(c[2] for c in calls) and len(train) == 30 and len(test) == 12


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **k):
            raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(tvd, "CIFAR100", Offline)
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path, download=True)


# ------------------------------------------------------------------ cifar: torchvision's reader for official files


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_official_files_are_read_by_torchvision(tmp_path, kind, monkeypatch):
    """Files whose md5 equal torchvision's checksum list are read by torchvision's reader (its checks run too)."""
    import hashlib

    import torchvision.datasets.cifar as tvc

    folder, names, (xtr, ytr), (xte, yte) = make_cifar(tmp_path, kind)
    cls = tvc.CIFAR10 if kind == "cifar10" else tvc.CIFAR100

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # our fake files become "the official ones": torchvision's own list, so both locks pass for real
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})
    calls = []
    init = cls.__init__
    monkeypatch.setattr(cls, "__init__", lambda self, *a, **k: (calls.append(k.get("train")), init(self, *a, **k))[1])
    train, test, spec = load_dataset(kind, tmp_path)
    assert calls == [True, False]  # torchvision read both splits
    np.testing.assert_array_equal(train.images, xtr)
    np.testing.assert_array_equal(train.labels, ytr)
    np.testing.assert_array_equal(test.images, xte)
    np.testing.assert_array_equal(test.labels, yte)
    assert train.class_names == tuple(names) and train.labels.dtype == np.int64
    # one changed byte: not official any more, so the restricted unpickler reads it (and refuses code)
    marker = tmp_path / "pwned"
    (folder / cls.train_list[0][0]).write_bytes(pickle.dumps({b"data": _Evil(str(marker))}, protocol=2))
    calls.clear()
    with pytest.raises(DataError, match="not allowed"):
        load_dataset(kind, tmp_path)
    assert calls == [] and not marker.exists()


def test_data_package_is_torch_free_until_the_loader():
    import subprocess
    import sys

    code = (
        "import sys; from mind_edge.data import load_dataset, make_scenario, task_arrays; "
        "tr, te, spec = load_dataset('digits'); sc = make_scenario('digits', tr.class_names, 5); "
        "task_arrays(tr, sc, 0); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[-1] == "False"
