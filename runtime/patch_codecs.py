"""The task patch's codecs (torch-free): fingerprints, position encodings, routing values, the payload.

What :mod:`mind_edge.runtime.patch_format` (the file: frame, header schema, reader, writer,
signatures) encodes and decodes, with no knowledge of the file around it:

* :func:`arrays_fingerprint` — sha256 over a network's arrays (config, every weight and owner
  map, BN set, head and routing statistics); independent of the ONNX serialisation.
* :func:`encode_positions` / :func:`decode_positions` — a task's claimed flat indices of one
  layer as a bitmap over the base's free positions or as ``delta8/16/32`` gaps (the smaller).
* :func:`routing_values` / :func:`routing_from_values` — a task's routing statistics as one
  float32 vector and back.
* :func:`npz_bytes` / :func:`decode_npz` — the compressed ``.npz`` payload, decoded within the
  sizes the caller declares (bounded before inflating, ``.npy`` headers parsed by hand).

:class:`PatchError` is defined here, the lowest patch module, so every layer above raises the
same class.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from mind_edge.core.routing import RoutingStats
from mind_edge.errors import MindEdgeError
from mind_edge.runtime.graph import NetArrays

ENCODINGS = ("bitmap", "delta8", "delta16", "delta32")
_DELTA_TYPES = {"delta8": np.uint8, "delta16": np.uint16, "delta32": np.uint32}
#: The payload may inflate to at most this many bytes, and to at most MAX_INFLATE_RATIO x its size + 1 MiB
#: (float32 weights barely compress; a zip bomb inflates 1000x).
MAX_INFLATED_BYTES = 1 << 30
MAX_INFLATE_RATIO = 32
_NPY_HEADER_MAX = 4096
_FIX = "re-create it with 'mind-edge patch create'"


class PatchError(MindEdgeError):
    """A patch file is malformed, tampered with, unsigned, for another bundle or already applied."""


class AlreadyAppliedError(PatchError):
    """The patch is already part of the bundle: nothing to do (exit code 3, the bundle is unchanged)."""

    exit_code = 3
    label = "nothing to do"


# ----------------------------------------------------------------------------- fingerprints


def arrays_fingerprint(arrays: NetArrays) -> str:
    """sha256 over every array, class id and config value of a network (order-independent names)."""
    h = hashlib.sha256()

    def put(data: bytes) -> None:
        h.update(struct.pack("<Q", len(data)))
        h.update(data)

    def arr(a: np.ndarray, dtype: str) -> None:
        a = np.ascontiguousarray(a, dtype=np.dtype(dtype))
        put(json.dumps(list(a.shape)).encode())
        put(a.tobytes())

    put(b"mind-edge-arrays-v1")
    put(json.dumps(dict(arrays.net), sort_keys=True).encode())
    for layer in sorted(arrays.layers, key=lambda x: x.name):
        put(json.dumps([layer.name, layer.stride, layer.padding]).encode())
        arr(layer.weight, "<f4")
        arr(layer.owner, "i1")
    for norm in sorted(arrays.norms, key=lambda x: x.name):
        put(norm.name.encode())
        put(struct.pack("<Q", len(norm.sets)))
        for s in norm.sets:
            put(repr(float(s.eps)).encode())
            for k in ("gamma", "beta", "mean", "var"):
                arr(getattr(s, k), "<f4")
    for head in arrays.heads:
        put(json.dumps([int(c) for c in head.classes]).encode())
        arr(head.weight, "<f4")
        arr(head.bias, "<f4")
        if head.stats is not None:  # routing statistics (networks without them hash as before)
            layout = head.stats.layout
            put(f"routing-stats-v{layout}".encode())  # layouts 1 and 2 hash as before
            if layout >= 2:
                put(struct.pack("<Q", int(head.stats.shared_taps)))
            put(struct.pack("<Q", int(head.stats.count)))
            for a in (*head.stats.whiten, *head.stats.means, head.stats.score_mean, head.stats.score_std):
                arr(a, "<f4")
            for a in head.stats.pool_arrays:
                arr(a, "<f4")
    return h.hexdigest()


def routing_values(stats) -> np.ndarray:
    """A task's routing statistics as one float32 vector (per tap whitening then means; score mean, spread;
    layout 3: the pooled-metric class means, packed covariance and fourth moment)."""
    arrays = (*stats.whiten, *stats.means, stats.score_mean, stats.score_std, *stats.pool_arrays)
    return np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float32)


def _pool_dim(tap_dims: Sequence[int], shared_taps: int, pool: bool) -> int:
    """Channels of the pooled metric (the network's taps once), 0 without it."""
    return int(sum(tap_dims[: len(tap_dims) - shared_taps])) if pool else 0


def routing_size(tap_dims: Sequence[int], num_classes: int, shared_taps: int = 0, pool: bool = False) -> int:
    """Length of :func:`routing_values` for ``tap_dims`` and ``num_classes`` (``pool``: layout 3)."""
    d = _pool_dim(tap_dims, shared_taps, pool)
    pooled = num_classes * d + d * (d + 1) // 2 + 1 if pool else 0
    return int(sum(f * f + num_classes * f for f in tap_dims) + 2 * (len(tap_dims) + 2) + pooled)


def routing_from_values(
    values: np.ndarray,
    tap_dims: Sequence[int],
    num_classes: int,
    count: int,
    shared_taps: int = 0,
    pool: bool = False,
):
    """The inverse of :func:`routing_values`."""
    dims = [int(f) for f in tap_dims]
    off, whiten, means = 0, [], []
    for f in dims:
        whiten.append(np.ascontiguousarray(values[off : off + f * f].reshape(f, f)))
        off += f * f
    for f in dims:
        means.append(np.ascontiguousarray(values[off : off + num_classes * f].reshape(num_classes, f)))
        off += num_classes * f
    k = len(dims) + 2
    score_mean = np.ascontiguousarray(values[off : off + k])
    score_std = np.ascontiguousarray(values[off + k : off + 2 * k])
    off += 2 * k
    pooled: list[np.ndarray | None] = [None, None, None]
    if pool:
        d = _pool_dim(dims, shared_taps, pool)
        for j, shape in enumerate(((num_classes, d), (d * (d + 1) // 2,), (1,))):
            size = int(np.prod(shape))
            pooled[j] = np.ascontiguousarray(values[off : off + size].reshape(shape))
            off += size
    return RoutingStats(
        whiten=tuple(whiten),
        means=tuple(means),
        score_mean=score_mean,
        score_std=score_std,
        count=int(count),
        shared_taps=int(shared_taps),
        pool_means=pooled[0],
        pool_cov=pooled[1],
        pool_m4=pooled[2],
    )


# ----------------------------------------------------------------------------- positions


def encode_positions(base_owner: np.ndarray, claimed: np.ndarray) -> tuple[str, np.ndarray]:
    """``(encoding, data)``: the smaller of a bitmap over the base's free positions and deltas."""
    flat = base_owner.reshape(-1)
    free = np.flatnonzero(flat == -1)
    claimed = np.sort(np.asarray(claimed, dtype=np.int64))
    bitmap = np.packbits(np.isin(free, claimed, assume_unique=True))
    gaps = np.diff(claimed, prepend=np.int64(-1))
    top = int(gaps.max()) if gaps.size else 0
    name = "delta8" if top < 2**8 else "delta16" if top < 2**16 else "delta32"
    deltas = gaps.astype(_DELTA_TYPES[name])
    if bitmap.nbytes <= deltas.nbytes:
        return "bitmap", bitmap
    return name, deltas


def decode_positions(encoding: str, data: np.ndarray, base_owner: np.ndarray, count: int, where: str) -> np.ndarray:
    """Sorted flat indices of the claimed positions; every one must be free in the base."""
    flat = base_owner.reshape(-1)
    if encoding == "bitmap":
        free = np.flatnonzero(flat == -1)
        if data.dtype != np.uint8 or data.ndim != 1 or data.size != -(-free.size // 8):
            raise PatchError(
                f"{where}: the position bitmap has {data.size} bytes, the base has {free.size} free weights "
                f"({-(-free.size // 8)} bytes); the patch was made for another network"
            )
        bits = np.unpackbits(data, count=free.size).astype(bool)
        if np.unpackbits(data)[free.size :].any():
            raise PatchError(f"{where}: the position bitmap has bits set beyond the {free.size} free weights")
        idx = free[bits]
    elif encoding in _DELTA_TYPES:
        if data.dtype != _DELTA_TYPES[encoding] or data.ndim != 1:
            raise PatchError(f"{where}: {encoding} positions stored as {data.dtype}")
        gaps = data.astype(np.int64)
        if gaps.size and gaps.min() < 1:
            raise PatchError(f"{where}: claimed positions are not strictly increasing")
        idx = np.cumsum(gaps) - 1
        if idx.size and idx[-1] >= flat.size:
            raise PatchError(f"{where}: a claimed position {int(idx[-1])} lies beyond the layer's {flat.size} weights")
        if idx.size and (flat[idx] != -1).any():
            raise PatchError(
                f"{where}: the patch claims weights already owned by an earlier task; it was made for another base"
            )
    else:
        raise PatchError(
            f"{where}: unknown position encoding {encoding!r}; this mind-edge reads {', '.join(ENCODINGS)}"
        )
    if idx.size != count:
        raise PatchError(f"{where}: the patch claims {idx.size} weights, its header says {count}")
    return idx


# ----------------------------------------------------------------------------- payload


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def layer_bytes(data: np.ndarray) -> bytes:
    return np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()


def decode_npz(
    body: bytes, members: Mapping[str, tuple[np.dtype, tuple[int, ...]]], where: str
) -> dict[str, np.ndarray]:
    """Exactly the arrays ``members`` (``{name: (dtype, shape)}``) from an ``.npz`` payload, bounded.

    The declared sizes are checked against :data:`MAX_INFLATED_BYTES` and the payload's size
    before anything is inflated, each member's inflated size (zip directory) before it is
    inflated, and its ``.npy`` header is parsed by hand: no pickles, no object arrays.
    """
    total = sum(int(np.prod(shape)) * dt.itemsize for dt, shape in members.values())
    if total > MAX_INFLATED_BYTES or total > MAX_INFLATE_RATIO * len(body) + (1 << 20):
        raise PatchError(
            f"{where} declares {total:,} bytes of arrays in a {len(body):,}-byte payload; that is not a "
            f"patch mind-edge wrote (refused before decoding)"
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise PatchError(f"{where}: the payload is not a valid .npz archive; {_FIX}") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        want = sorted(f"{k}.npy" for k in members)
        if sorted(names) != want:
            unknown = sorted(set(names) - set(want))
            raise PatchError(
                f"{where}: the payload holds {len(names)} members "
                f"({'unknown ones' if unknown else 'some missing'}); a patch holds exactly "
                f"{', '.join(want)}; {_FIX}"
            )
        out: dict[str, np.ndarray] = {}
        for info in infos:
            key = info.filename[:-4]
            dt, shape = members[key]
            nbytes = int(np.prod(shape)) * dt.itemsize
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise PatchError(
                    f"{where}: payload member {key} is encrypted or uses an unsupported compression; {_FIX}"
                )
            if info.file_size > nbytes + _NPY_HEADER_MAX or info.file_size < nbytes:
                raise PatchError(
                    f"{where}: payload member {key} inflates to {info.file_size:,} bytes but the header "
                    f"declares {nbytes:,} bytes of data; refused before inflating it"
                )
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        got_shape, fortran, got_dt = np.lib.format.read_array_header_1_0(
                            fh, max_header_size=_NPY_HEADER_MAX
                        )
                    elif version == (2, 0):
                        got_shape, fortran, got_dt = np.lib.format.read_array_header_2_0(
                            fh, max_header_size=_NPY_HEADER_MAX
                        )
                    else:
                        raise ValueError("npy version")
                    if got_dt.hasobject or got_dt != dt or tuple(got_shape) != shape or (fortran and len(shape) > 1):
                        raise PatchError(
                            f"{where}: payload member {key} is not a {dt.name} array of shape "
                            f"{list(shape)} as the header declares; {_FIX}"
                        )
                    data = fh.read(nbytes + 1)
                    if len(data) != nbytes:
                        raise ValueError("size")
            except PatchError:
                raise
            except (
                zipfile.BadZipFile,
                zlib.error,
                OSError,
                ValueError,
                EOFError,
                struct.error,
                SyntaxError,
                TypeError,
                NotImplementedError,
                RuntimeError,
            ):
                raise PatchError(f"{where}: payload member {key} is corrupt; {_FIX}") from None
            out[key] = np.frombuffer(data, dtype=dt).reshape(shape)
    return out
