"""Task patches: one file that adds a task to a deployed bundle, applied atomically (torch-free).

A MIND task only claims free weights, so an update never changes what the device already
knows: the patch carries task ``T``'s claimed positions (per layer, compactly encoded), their
float32 values, its BatchNorm sets and head, its classes and names, and the fingerprint of
the exact network it applies to.

**File format** (``.mepatch``, schema :data:`PATCH_SCHEMA`), little-endian, no pickle::

    MAGIC (8 bytes, b"MEPATCH\\0")
    u32 header length  | header: UTF-8 JSON (format, schema_version, task, classes, class_names,
                       |   net, base {fingerprint, num_tasks, classes}, result_fingerprint, layers
                       |   [{name, shape, free, claimed, encoding}], norms [{name, channels, eps}],
                       |   head {classes, features}, payload {bytes, sha256}, signature {algorithm,
                       |   key_id} | null, created, creator, source)
    u64 payload length | payload: a compressed .npz (read with allow_pickle=False) of five arrays:
                       |   positions (uint8: every layer's encoded positions, concatenated), values
                       |   (float32: the claimed weights, layer by layer), bn (float32: gamma, beta,
                       |   mean, var per BatchNorm), head_w, head_b
    32 bytes           | digest = sha256 of everything above (the patch's id)
    u16 signature length (0 or 64) | Ed25519 signature of b"mind-edge-patch-v1\\0" + digest
    end of file (trailing bytes are an error)

Positions: layer ``i``'s claimed positions are a subset of the base network's free positions
``F`` (sorted flat indices). ``bitmap`` = ``np.packbits`` of the membership mask over ``F``
(``ceil(|F| / 8)`` bytes); ``delta8/16/32`` = the gaps between the sorted flat indices in the
smallest unsigned type that holds them. The smaller of the two is written per layer
(bitmap wins while a task claims more than ~1/8 of the free weights, i.e. for every capacity
up to ~8 tasks left; deltas win for very large capacities).

**Fingerprints** (:func:`arrays_fingerprint`): sha256 over the network's arrays (config,
every weight and owner map, BN set and head) — independent of the ONNX serialisation, the
temperature and the opset, so a patch made on the host matches the bundle exported there.

**Versioned bundles** and the apply sequence (:func:`apply_patch`): the bundle folder becomes
``BUNDLE/CURRENT`` (one line naming the live version) + ``BUNDLE/versions/vNNNN/`` (complete
bundles). Everything is verified and the new graph built and validated *before* anything is
written; then leftovers of an interrupted apply are removed, a plain bundle's files are copied
into ``versions/v0001`` (first apply only), the new version is written into a temporary folder
and renamed into ``versions/``, and ``CURRENT`` is replaced atomically (tmp + fsync + rename +
fsync of the folder): that rename is the one commit point. A crash before it leaves the old
version live, after it the new one; :meth:`Bundle.load` only ever sees a complete version.
The previous version is kept for :func:`rollback`.

``MIND_EDGE_CRASH_AT=<point>`` (tests only) SIGKILLs the process at the named point of the
sequence (:data:`CRASH_POINTS`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from mind_edge import __version__
from mind_edge.errors import MindEdgeError
from mind_edge.fileio import fsync_dir, sha256_bytes, sha256_file
from mind_edge.runtime.bundle import (
    BUNDLE_JSON,
    MODEL_FILE,
    POINTER_FILE,
    PROBE_FILE,
    VALIDATION_FILE,
    VERSION_RE,
    VERSIONS_DIR,
    Bundle,
    resolve_version,
)
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.graph import HeadArrays, LayerArrays, NetArrays, NormArrays, NormSet

log = logging.getLogger(__name__)

MAGIC = b"MEPATCH\x00"
PATCH_FORMAT = "mind-edge-patch"
PATCH_SCHEMA = 1
DIGEST_BYTES = 32
PROBE_ATOL = 1e-6  # earlier tasks' task_logits on the probe batch may move at most this much
ENCODINGS = ("bitmap", "delta8", "delta16", "delta32")
_DELTA_TYPES = {"delta8": np.uint8, "delta16": np.uint16, "delta32": np.uint32}
CRASH_ENV = "MIND_EDGE_CRASH_AT"
CRASH_POINTS = (
    "verified",          # patch and bundle verified, new graph built and validated; nothing written
    "cleaned",           # leftovers of an interrupted apply removed
    "base_copied",       # first apply: the plain bundle copied into versions/v0001
    "version_written",   # the new version renamed into versions/
    "pointer_tmp",       # the new CURRENT written to a temporary file, not yet renamed
    "pointer_replaced",  # CURRENT replaced (committed), folder not yet fsync'ed
    "committed",         # CURRENT durable
    "root_cleanup",      # first apply: some of the plain bundle's old top-level files removed
    "pruned",            # versions older than the previous one removed
)
PLAIN_FILES = (MODEL_FILE, PROBE_FILE, VALIDATION_FILE, BUNDLE_JSON)  # BUNDLE_JSON last


class PatchError(MindEdgeError):
    """A patch file is malformed, tampered with, unsigned, for another bundle or already applied."""


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing the process (crash-safety test)", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


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
    return h.hexdigest()


def truncate_arrays(arrays: NetArrays, num_tasks: int) -> NetArrays:
    """The network as it was before task ``num_tasks`` was learned: later tasks' weights freed.

    Exact for MIND runs: every prune zeroes the remaining free weights, so before task ``T``
    every weight not owned by tasks ``< T`` was 0.
    """
    if not 1 <= num_tasks <= arrays.num_tasks:
        raise PatchError(f"cannot keep {num_tasks} tasks of a network holding {arrays.num_tasks}")
    layers = []
    for la in arrays.layers:
        later = la.owner >= num_tasks
        layers.append(LayerArrays(la.name, np.where(later, np.float32(0), la.weight).astype(np.float32),
                                  np.where(later, np.int8(-1), la.owner).astype(np.int8), la.stride, la.padding))
    norms = tuple(NormArrays(n.name, tuple(n.sets[:num_tasks])) for n in arrays.norms)
    return NetArrays(net=dict(arrays.net), layers=tuple(layers), norms=norms, heads=tuple(arrays.heads[:num_tasks]))


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
            raise PatchError(f"{where}: the position bitmap has {data.size} bytes, the base has {free.size} free weights "
                             f"({-(-free.size // 8)} bytes); the patch was made for another network")
        bits = np.unpackbits(data, count=free.size).astype(bool)
        if np.unpackbits(data)[free.size:].any():
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
            raise PatchError(f"{where}: the patch claims weights already owned by an earlier task; it was made for another base")
    else:
        raise PatchError(f"{where}: unknown position encoding {encoding!r}; this mind-edge reads {', '.join(ENCODINGS)}")
    if idx.size != count:
        raise PatchError(f"{where}: the patch claims {idx.size} weights, its header says {count}")
    return idx


# ----------------------------------------------------------------------------- the patch file


@dataclass(frozen=True, eq=False)
class Patch:
    """A parsed, integrity-checked patch file (the signature is checked by :func:`verify_signature`)."""

    path: Path | None
    header: dict
    arrays: Mapping[str, np.ndarray] = field(repr=False)
    digest: bytes
    signature: bytes
    size: int

    @property
    def sha256(self) -> str:
        return self.digest.hex()

    @property
    def task(self) -> int:
        return int(self.header["task"])

    @property
    def classes(self) -> list[int]:
        return [int(c) for c in self.header["classes"]]

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in self.header["class_names"]]

    @property
    def base_fingerprint(self) -> str:
        return str(self.header["base"]["fingerprint"])

    @property
    def signed(self) -> bool:
        return bool(self.signature)

    def summary(self) -> dict:
        h = self.header
        sizes = {"total_bytes": self.size, "payload_bytes": int(h["payload"]["bytes"])}
        return {
            "file": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "format": h["format"], "schema_version": h["schema_version"],
            "task": self.task, "classes": self.classes, "class_names": self.class_names,
            "net": h["net"], "base": h["base"], "result_fingerprint": h["result_fingerprint"],
            "claimed_weights": int(sum(x["claimed"] for x in h["layers"])),
            "encodings": {e: sum(1 for x in h["layers"] if x["encoding"] == e) for e in ENCODINGS
                          if any(x["encoding"] == e for x in h["layers"])},
            "signed": self.signed, "signature": h.get("signature"),
            "created": h.get("created"), "creator": h.get("creator"), "source": h.get("source"),
            **sizes,
        }


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _layer_bytes(data: np.ndarray) -> bytes:
    return np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()


def diff_arrays(base: NetArrays, new: NetArrays, task: int) -> tuple[list[dict], list[dict], dict, dict[str, np.ndarray]]:
    """What task ``task`` adds to ``base`` in ``new``: layer/norm/head records and payload arrays.

    The payload holds five arrays whatever the depth (an .npz member costs ~250 bytes of
    headers): ``positions`` (every layer's encoded positions, concatenated bytes; each layer's
    byte count is in its record), ``values`` (every claimed weight, layer by layer, in
    increasing flat index), ``bn`` (per BatchNorm gamma, beta, mean, var), ``head_w``, ``head_b``.
    """
    if base.num_tasks != task or new.num_tasks != task + 1:
        raise PatchError(f"a patch for task {task} needs a base of {task} tasks and a network of {task + 1}; got "
                         f"{base.num_tasks} and {new.num_tasks}")
    pos_parts, val_parts, bn_parts = [], [], []
    layers = []
    for la in new.layers:
        lb = base.layer(la.name)
        claimed = np.flatnonzero(la.owner.reshape(-1) == task)
        if not np.array_equal(np.where(la.owner == task, np.int8(-1), la.owner), lb.owner):
            raise PatchError(f"layer {la.name}: the owner maps of earlier tasks differ between the base and the new network")
        enc, data = encode_positions(lb.owner, claimed)
        blob = _layer_bytes(data)
        pos_parts.append(blob)
        val_parts.append(np.ascontiguousarray(la.weight.reshape(-1)[claimed], dtype=np.float32))
        layers.append({"name": la.name, "shape": list(la.weight.shape), "free": int((lb.owner == -1).sum()),
                       "claimed": int(claimed.size), "encoding": enc, "position_bytes": len(blob)})
    norms = []
    for na in new.norms:
        s = na.sets[task]
        bn_parts.append(np.stack([s.gamma, s.beta, s.mean, s.var]).astype(np.float32).reshape(-1))
        norms.append({"name": na.name, "channels": int(s.gamma.size), "eps": float(s.eps)})
    head = new.heads[task]
    payload = {
        "positions": np.frombuffer(b"".join(pos_parts), dtype=np.uint8),
        "values": np.concatenate(val_parts).astype(np.float32),
        "bn": np.concatenate(bn_parts).astype(np.float32),
        "head_w": np.ascontiguousarray(head.weight, dtype=np.float32),
        "head_b": np.ascontiguousarray(head.bias, dtype=np.float32),
    }
    return layers, norms, {"classes": len(head.classes), "features": int(head.weight.shape[1])}, payload


def build_patch(
    base: NetArrays,
    new: NetArrays,
    task: int,
    class_names: Sequence[str],
    *,
    sign_key: str | os.PathLike | None = None,
    source: Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes of the patch that turns ``base`` (tasks ``< task``) into ``new`` (task ``task`` added)."""
    from datetime import datetime, timezone

    if dict(base.net) != dict(new.net):
        raise PatchError(f"the base network {dict(base.net)} and the new one {dict(new.net)} have different architectures")
    classes = list(new.heads[task].classes)
    if len(class_names) != len(classes):
        raise PatchError(f"task {task} has {len(classes)} classes but {len(class_names)} class names were given")
    layers, norms, head, payload = diff_arrays(base, new, task)
    body = _npz_bytes(payload)
    signer = {"algorithm": "ed25519", "key_id": _secret_key_id(sign_key)} if sign_key is not None else None
    header = {
        "format": PATCH_FORMAT,
        "schema_version": PATCH_SCHEMA,
        "task": int(task),
        "classes": [int(c) for c in classes],
        "class_names": [str(n) for n in class_names],
        "net": dict(new.net),
        "base": {"fingerprint": arrays_fingerprint(base), "num_tasks": base.num_tasks, "classes": base.task_classes},
        "result_fingerprint": arrays_fingerprint(new),
        "layers": layers,
        "norms": norms,
        "head": head,
        "payload": {"bytes": len(body), "sha256": sha256_bytes(body), "kind": "npz"},
        "signature": signer,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "creator": f"mind-edge {__version__}",
        "source": dict(source or {}),
    }
    head_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    out = MAGIC + struct.pack("<I", len(head_bytes)) + head_bytes + struct.pack("<Q", len(body)) + body
    digest = hashlib.sha256(out).digest()
    sig = b""
    if sign_key is not None:
        from mind_edge.runtime import signing

        sig, kid = signing.sign_digest(sign_key, digest)
        assert kid == signer["key_id"]  # same key file read twice
    return out + digest + struct.pack("<H", len(sig)) + sig


def _secret_key_id(path) -> str:
    from mind_edge.runtime import signing

    nacl = signing._nacl()
    seed = signing._read_key(path, signing.SECRET_TAG, "secret key")
    return signing.key_id(bytes(nacl.SigningKey(seed).verify_key))


def parse_patch(data: bytes, path: Path | None = None) -> Patch:
    """Parse and integrity-check patch bytes (magic, lengths, digest, header, payload)."""
    where = f"patch {path}" if path else "the patch"
    n = len(data)
    if n < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise PatchError(f"{where} is not a mind-edge task patch (no {MAGIC[:7].decode()} header); "
                         "make one with 'mind-edge patch create'")

    def truncated(what: str) -> PatchError:
        return PatchError(f"{where} is truncated ({n} bytes, cut inside the {what}); copy the whole file again")

    off = len(MAGIC)
    (hlen,) = struct.unpack_from("<I", data, off)
    off += 4
    if off + hlen + 8 > n:
        raise truncated("header")
    head_bytes = data[off : off + hlen]
    off += hlen
    (plen,) = struct.unpack_from("<Q", data, off)
    off += 8
    if off + plen + DIGEST_BYTES + 2 > n:
        raise truncated("payload" if off + plen > n else "digest")
    body = data[off : off + plen]
    off += plen
    digest = data[off : off + DIGEST_BYTES]
    if hashlib.sha256(data[:off]).digest() != digest:
        raise PatchError(f"{where} is corrupt or was tampered with: its content does not match its sha256 "
                         f"({digest.hex()[:12]}… recorded); get the original file again")
    off += DIGEST_BYTES
    (slen,) = struct.unpack_from("<H", data, off)
    off += 2
    if off + slen > n:
        raise truncated("signature")
    sig = data[off : off + slen]
    off += slen
    if off != n:
        raise PatchError(f"{where} has {n - off} unexpected bytes after its end; the file was modified — get the original")
    try:
        header = json.loads(head_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatchError(f"{where} has a malformed header ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != PATCH_FORMAT:
        raise PatchError(f"{where} is not a mind-edge task patch (format {header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("schema_version") != PATCH_SCHEMA:
        raise PatchError(f"{where} has patch schema {header.get('schema_version')!r}; this mind-edge ({__version__}) reads "
                         f"schema {PATCH_SCHEMA}. Upgrade mind-edge on this device or re-create the patch")
    try:
        if header["payload"]["bytes"] != plen or header["payload"]["sha256"] != sha256_bytes(body):
            raise PatchError(f"{where}: the payload does not match the header's size/sha256")
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        int(header["task"])
        for key in ("classes", "class_names", "net", "base", "result_fingerprint", "layers", "norms", "head"):
            header[key]
    except PatchError:
        raise
    except Exception as exc:  # malformed npz / missing keys
        raise PatchError(f"{where} is malformed ({type(exc).__name__}: {exc}); re-create it with 'mind-edge patch create'") from exc
    return Patch(path=path, header=header, arrays=arrays, digest=digest, signature=sig, size=n)


def read_patch(path: str | os.PathLike) -> Patch:
    path = Path(path)
    if not path.is_file():
        raise PatchError(f"patch file {path} does not exist")
    return parse_patch(path.read_bytes(), path)


def verify_signature(patch: Patch, public_key_path: str | os.PathLike | None) -> str | None:
    """Check the signature against ``public_key_path`` (required when given); returns the key id used."""
    if public_key_path is None:
        if patch.signed:
            log.info("patch %s is signed (key %s) but no --verify-key was given; signature not checked",
                     patch.path, (patch.header.get("signature") or {}).get("key_id"))
        return None
    from mind_edge.runtime import signing

    pub = signing.load_public_key(public_key_path)
    kid = signing.key_id(pub)
    if not patch.signed:
        raise PatchError(f"patch {patch.path} is not signed but a signature is required (--verify-key {public_key_path}); "
                         "sign it with 'mind-edge patch create --sign-key KEY'")
    claimed = (patch.header.get("signature") or {}).get("key_id")
    if not signing.verify_digest(pub, patch.digest, patch.signature):
        if claimed and claimed != kid:
            raise PatchError(f"patch {patch.path} is signed with key {claimed}, not with the key {kid} of {public_key_path}; "
                             "verify with the matching public key or re-sign the patch")
        raise PatchError(f"the signature of patch {patch.path} does not verify with {public_key_path} (key {kid}); "
                         "the patch or its signature was tampered with")
    return kid


# ----------------------------------------------------------------------------- applying to arrays


def apply_to_arrays(base: NetArrays, patch: Patch) -> NetArrays:
    """The network ``base`` plus the patch's task (checks every shape, count and position)."""
    h, a = patch.header, patch.arrays
    t = patch.task
    where = f"patch {patch.path}" if patch.path else "the patch"
    if dict(h["net"]) != dict(base.net):
        raise PatchError(f"{where} is for a {h['net']} network but the bundle holds a {dict(base.net)} one")
    if len(h["layers"]) != len(base.layers) or len(h["norms"]) != len(base.norms):
        raise PatchError(f"{where} has {len(h['layers'])} layers / {len(h['norms'])} BatchNorms, the bundle's network "
                         f"{len(base.layers)} / {len(base.norms)}")
    capacity = int(base.net["capacity"])

    def get(key: str) -> np.ndarray:
        if key not in a:
            raise PatchError(f"{where} lacks the array {key!r}; re-create it")
        return a[key]

    positions, values, bn = get("positions"), get("values"), get("bn")
    if positions.dtype != np.uint8 or positions.ndim != 1:
        raise PatchError(f"{where}: positions must be a uint8 byte string, got {positions.dtype} {list(positions.shape)}")
    if values.dtype != np.float32 or values.ndim != 1 or not np.isfinite(values).all():
        raise PatchError(f"{where}: values must be finite float32, got {values.dtype} {list(values.shape)}")
    if bn.dtype != np.float32 or bn.ndim != 1 or not np.isfinite(bn).all():
        raise PatchError(f"{where}: BatchNorm sets must be finite float32, got {bn.dtype} {list(bn.shape)}")
    p_off = v_off = 0
    layers = []
    for rec in h["layers"]:
        lb = base.layer(rec["name"])
        if list(lb.weight.shape) != list(rec["shape"]):
            raise PatchError(f"{where}: layer {rec['name']} is {rec['shape']} in the patch, {list(lb.weight.shape)} in the bundle")
        k = lb.weight.size // capacity
        if int(rec["claimed"]) != k:
            raise PatchError(f"{where}: layer {rec['name']} claims {rec['claimed']} weights; a task claims numel // capacity = {k}")
        enc, nbytes = str(rec["encoding"]), int(rec["position_bytes"])
        if nbytes < 0 or p_off + nbytes > positions.size:
            raise PatchError(f"{where}: layer {rec['name']}'s positions run past the end of the payload")
        blob = positions[p_off : p_off + nbytes]
        p_off += nbytes
        if enc in _DELTA_TYPES:
            dt = np.dtype(_DELTA_TYPES[enc]).newbyteorder("<")
            if nbytes % dt.itemsize:
                raise PatchError(f"{where}: layer {rec['name']}'s {enc} positions have {nbytes} bytes")
            blob = np.frombuffer(blob.tobytes(), dtype=dt).astype(_DELTA_TYPES[enc])
        idx = decode_positions(enc, blob, lb.owner, k, f"{where}, layer {rec['name']}")
        if v_off + k > values.size:
            raise PatchError(f"{where}: the payload holds {values.size} values, too few for layer {rec['name']}")
        w = lb.weight.copy().reshape(-1)
        o = lb.owner.copy().reshape(-1)
        w[idx] = values[v_off : v_off + k]
        o[idx] = t
        v_off += k
        layers.append(LayerArrays(lb.name, w.reshape(lb.weight.shape), o.reshape(lb.owner.shape), lb.stride, lb.padding))
    if p_off != positions.size or v_off != values.size:
        raise PatchError(f"{where}: the payload has {positions.size - p_off} position bytes / {values.size - v_off} values "
                         "left over; it does not fit this network")
    norms = []
    b_off = 0
    for rec in h["norms"]:
        nb = base.norm(rec["name"])
        c = nb.sets[0].gamma.size
        if int(rec["channels"]) != c or b_off + 4 * c > bn.size:
            raise PatchError(f"{where}: BatchNorm {rec['name']} has {c} channels in the bundle, {rec['channels']} in the patch")
        part = bn[b_off : b_off + 4 * c].reshape(4, c)
        b_off += 4 * c
        s = NormSet(*(np.ascontiguousarray(part[r]) for r in range(4)), eps=float(rec["eps"]))
        norms.append(NormArrays(nb.name, tuple(nb.sets) + (s,)))
    if b_off != bn.size:
        raise PatchError(f"{where}: the payload has {bn.size - b_off} BatchNorm values left over")
    hw, hb = get("head_w"), get("head_b")
    classes = tuple(int(c) for c in h["classes"])
    f = base.heads[0].weight.shape[1]
    if hw.dtype != np.float32 or hw.shape != (len(classes), f) or hb.dtype != np.float32 or hb.shape != (len(classes),):
        raise PatchError(f"{where}: the head must be float32 [{len(classes)}, {f}] + [{len(classes)}], got "
                         f"{list(hw.shape)} + {list(hb.shape)}")
    heads = tuple(base.heads) + (HeadArrays(np.ascontiguousarray(hw), np.ascontiguousarray(hb), classes),)
    # keep the network's layer order (that of the base)
    by_name = {x.name: x for x in layers}
    out = NetArrays(net=dict(base.net), layers=tuple(by_name[x.name] for x in base.layers),
                    norms=tuple(norms), heads=heads)
    from mind_edge.runtime.graph import check_arrays

    try:
        check_arrays(out)
    except MindEdgeError as exc:
        raise PatchError(f"{where} does not fit the bundle's network: {exc}") from exc
    return out


# ----------------------------------------------------------------------------- versioned bundles


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive flock on the bundle folder itself (no lock file: a failed apply changes nothing)."""
    import fcntl

    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(f"bundle {root} is being updated by another process (patch apply/rollback); try again when it finishes") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _version_num(name: str) -> int:
    return int(name[1:])


def _version_name(num: int) -> str:
    return f"v{num:04d}"


def list_versions(root: Path) -> list[str]:
    """Complete version folders under ``root/versions`` (sorted oldest first)."""
    vdir = root / VERSIONS_DIR
    if not vdir.is_dir():
        return []
    return sorted((p.name for p in vdir.iterdir() if p.is_dir() and VERSION_RE.match(p.name)), key=_version_num)


def previous_version(root: Path, version: str) -> str | None:
    """The version ``version`` was patched from (``base_version`` in its bundle.json)."""
    try:
        meta = json.loads((root / VERSIONS_DIR / version / BUNDLE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prev = meta.get("base_version")
    return str(prev) if isinstance(prev, str) and VERSION_RE.match(prev) else None


def _write_pointer(root: Path, name: str) -> None:
    """Replace ``root/CURRENT`` atomically (tmp + fsync + rename + fsync of the folder)."""
    tmp = root / f".{POINTER_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _crash_point("pointer_tmp")
    os.replace(tmp, root / POINTER_FILE)
    _crash_point("pointer_replaced")
    fsync_dir(root)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def cleanup(root: Path, keep: int = 2) -> list[str]:
    """Remove what an interrupted apply/rollback left behind; keep the live version and ``keep - 1`` ancestors.

    Returns the removed paths (relative to ``root``). Without ``CURRENT`` the bundle is plain
    and everything under ``versions/`` is a leftover of a first apply that never committed.
    """
    removed = []
    for p in root.iterdir():
        if p.name.startswith(f".{POINTER_FILE}.") and p.name.endswith(".tmp"):
            _remove(p)
            removed.append(p.name)
    vdir = root / VERSIONS_DIR
    _, current = resolve_version(root)
    if current is None:
        if vdir.exists():
            _remove(vdir)
            removed.append(VERSIONS_DIR)
        return removed
    wanted = [current]
    while len(wanted) < keep:
        prev = previous_version(root, wanted[-1])
        if prev is None or not (vdir / prev).is_dir():
            break
        wanted.append(prev)
    for p in vdir.iterdir():
        if p.name not in wanted:
            _remove(p)
            removed.append(f"{VERSIONS_DIR}/{p.name}")
    # a first apply that committed but died before removing the plain bundle's files
    plain = root / BUNDLE_JSON
    names = list(PLAIN_FILES)
    if plain.is_file():
        try:
            names = [n for n in json.loads(plain.read_text(encoding="utf-8")).get("files", {}) if "/" not in n] + names
        except (OSError, ValueError, AttributeError):
            pass
    for n in dict.fromkeys(names):
        if (root / n).is_file():
            (root / n).unlink()
            removed.append(n)
    if removed:
        fsync_dir(vdir)
        fsync_dir(root)
        log.info("removed leftovers of an earlier update in %s: %s", root, ", ".join(removed))
    return removed


def _copy_plain_to_version(root: Path, files: Sequence[str], name: str) -> Path:
    """Copy a plain bundle's files into ``versions/<name>`` (temporary folder, fsync, rename)."""
    vdir = root / VERSIONS_DIR
    vdir.mkdir(exist_ok=True)
    tmp = vdir / f".{name}.convert.tmp"
    _remove(tmp)
    tmp.mkdir()
    for n in files:
        shutil.copyfile(root / n, tmp / n)
        with open(tmp / n, "rb+") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    os.replace(tmp, vdir / name)
    fsync_dir(vdir)
    fsync_dir(root)
    return vdir / name


def _adopt_machine_local(root: Path, version_dir: Path) -> list[str]:
    """Move the engines and caches built on this machine for the plain bundle (``engine-*.plan``,
    ``engine.json``, ``trt-cache/``, timing caches) into its version folder: they belong to that
    model, so a rollback to it reuses them, and no stale engine stays beside ``CURRENT``. One
    rename each; after a crash half-way the rest stays at the top, where nothing reads it, and
    each moved engine is still checked against its fingerprint before use."""
    import fnmatch

    from mind_edge.runtime.engine_fingerprint import MACHINE_LOCAL_PATTERNS

    moved = []
    for p in sorted(root.iterdir()):
        name = p.name + ("/" if p.is_dir() else "")
        if any(fnmatch.fnmatch(name, pat) for pat in MACHINE_LOCAL_PATTERNS) and not (version_dir / p.name).exists():
            os.replace(p, version_dir / p.name)
            moved.append(p.name)
    if moved:
        fsync_dir(version_dir)
        fsync_dir(root)
        log.info("moved %s into %s (built for that version)", ", ".join(moved), version_dir)
    return moved


def _carry_timing_cache(old: Path, new: Path) -> None:
    """Copy TensorRT's timing cache of the previous version into the new one: it is per machine but
    valid for any model, so the new version's ``engine build`` starts warm. Best effort: the
    cache is an optimisation, a failed copy only logs."""
    from mind_edge.fileio import atomic_write_bytes
    from mind_edge.runtime.engine_fingerprint import TIMING_CACHE

    src, dst = old / TIMING_CACHE, new / TIMING_CACHE
    if not src.is_file() or dst.exists():
        return
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dst, src.read_bytes())
    except OSError as exc:
        log.warning("could not copy the TensorRT timing cache %s to %s: %s", src, dst, exc)


# ----------------------------------------------------------------------------- validation


def _ort_session(model_bytes: bytes):
    from mind_edge.errors import require

    ort = require("onnxruntime", "ort", "validating a patched bundle")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def _run(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def validate_patched(bundle: Bundle, new: NetArrays, model_bytes: bytes) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """ONNX Runtime smoke test of the new graph + earlier tasks unchanged on the bundle's probe batch.

    Returns ``(report, probe inputs, new probe outputs)``; raises :class:`PatchError` on failure.
    """
    from mind_edge.runtime.routing import PAD_LOGIT

    probe = bundle.probe()
    x = probe.pop("image", None)
    if x is None:
        raise BundleError(f"{bundle.path / PROBE_FILE} has no 'image' batch; re-export the bundle")
    n_old, cmax_old = bundle.num_tasks, bundle.cmax
    if bundle.meta.get("probe", {}).get("outputs_from") != "onnxruntime" or "task_logits" not in probe:
        probe = _run(_ort_session(bundle.model_path.read_bytes()), x)  # reference: the old graph, here
    try:
        sess = _ort_session(model_bytes)
        out = _run(sess, x)
    except MindEdgeError:
        raise
    except Exception as exc:
        raise PatchError(f"ONNX Runtime cannot run the patched model ({type(exc).__name__}: {exc}); the bundle is unchanged") from exc
    n, cmax = new.num_tasks, new.cmax
    b = x.shape[0]
    problems = []
    shapes = {"label": (b,), "task": (b,), "confidence": (b,), "task_confidence": (b, n), "task_logits": (b, n, cmax)}
    for k, shape in shapes.items():
        if k not in out or out[k].shape != shape:
            problems.append(f"{k} has shape {None if k not in out else list(out[k].shape)}, expected {list(shape)}")
    if not problems:
        if not all(np.isfinite(out[k]).all() for k in ("confidence", "task_confidence")):
            problems.append("non-finite confidences")
        known = {c for cl in new.task_classes for c in cl}
        if not set(int(v) for v in out["label"]) <= known:
            problems.append(f"labels {sorted(set(int(v) for v in out['label']) - known)} are no class of the bundle")
    diff = float("nan")
    if not problems:
        old_logits = np.asarray(probe["task_logits"], dtype=np.float32)
        new_logits = out["task_logits"][:, :n_old, :cmax_old]
        diff = float(np.max(np.abs(new_logits - old_logits))) if old_logits.size else 0.0
        if not diff <= PROBE_ATOL:
            problems.append(f"earlier tasks' task_logits moved by up to {diff:.3g} on the probe batch (allowed {PROBE_ATOL:g})")
        if cmax > cmax_old and not np.all(out["task_logits"][:, :n_old, cmax_old:] == np.float32(PAD_LOGIT)):
            problems.append("earlier tasks' padding logits changed")
        cdiff = float(np.max(np.abs(out["task_confidence"][:, :n_old] - probe["task_confidence"])))
        if not cdiff <= PROBE_ATOL:
            problems.append(f"earlier tasks' task_confidence moved by up to {cdiff:.3g} (allowed {PROBE_ATOL:g})")
    if problems:
        raise PatchError("the patched model failed validation, the bundle is unchanged: " + "; ".join(problems))
    report = {
        "passed": True,
        "kind": "patch",
        "atol": PROBE_ATOL,
        "rtol": 0.0,
        "max_abs_diff": {"task_logits_earlier_tasks": diff},
        "max_rel_diff": None,
        "agreement": None,
        "inputs": {"probe": {"count": int(b), "note": f"the base bundle's probe batch; tasks 0..{n_old - 1} compared"}},
        "smoke": {"backend": "onnxruntime CPUExecutionProvider", "outputs": {k: list(v.shape) for k, v in out.items()}},
    }
    return report, x, out


# ----------------------------------------------------------------------------- apply / rollback


@dataclass(frozen=True)
class ApplyResult:
    bundle: Path
    version: str
    previous: str
    task: int
    classes: list[int]
    class_names: list[str]
    patch_sha256: str
    signed_by: str | None
    max_abs_diff: float
    model_bytes: int
    seconds: float
    cleaned: list[str]

    def summary(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def apply_patch(bundle_dir: str | os.PathLike, patch_path: str | os.PathLike, *,
                verify_key: str | os.PathLike | None = None, keep: int = 2) -> ApplyResult:
    """Verify, apply and validate ``patch_path`` on the bundle in ``bundle_dir``; switch atomically.

    Nothing is written unless every check passes (hash, signature when ``verify_key`` is
    given, base fingerprint, duplicate task, shapes, ONNX Runtime smoke test, earlier tasks'
    outputs on the probe batch). ``keep`` versions (the live one and its predecessors) are kept.
    """
    from mind_edge.runtime.graph import build_graph, read_arrays
    from mind_edge.runtime.bundle import assemble_bundle

    t0 = time.perf_counter()
    if keep < 2:
        raise PatchError(f"keep must be >= 2 (the new version and the previous one, for rollback), got {keep}")
    root = Path(bundle_dir)
    if root.is_file() and root.name in (BUNDLE_JSON, MODEL_FILE):
        root = root.parent
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a folder; pass the folder of 'mind-edge export'")
    _refuse_version_folder(root)
    patch = read_patch(patch_path)
    with _locked(root):
        bundle = Bundle.load(root)
        signer = verify_signature(patch, verify_key)
        history = list(bundle.meta.get("patches", []))
        if any(rec.get("sha256") == patch.sha256 for rec in history):
            raise PatchError(f"patch {patch_path} (task {patch.task}, classes {patch.class_names}) is already applied to "
                             f"bundle {root} (version {bundle.version}); nothing to do")
        existing = {c for cl in bundle.task_classes for c in cl}
        dup = sorted(set(patch.classes) & existing)
        if dup:
            names = [bundle.class_name(c) for c in dup]
            raise PatchError(f"bundle {root} already has classes {names} (ids {dup}); patch {patch_path} would add them "
                             f"again as task {patch.task}. Already applied?")
        if bundle.layout != "shared":
            raise PatchError(f"bundle {root} has the {bundle.layout!r} layout; patches apply to 'shared' bundles only "
                             "(they store each weight once with its owner map). Re-export with --layout shared")
        if patch.task != bundle.num_tasks:
            raise PatchError(f"patch {patch_path} adds task {patch.task} but bundle {root} holds {bundle.num_tasks} tasks; "
                             f"it needs the bundle with tasks 0..{patch.task - 1} (apply patches in order)")
        base = read_arrays(bundle.model_path)
        fp = arrays_fingerprint(base)
        if fp != patch.base_fingerprint:
            raise PatchError(f"patch {patch_path} was made for another base bundle (network fingerprint "
                             f"{patch.base_fingerprint[:12]}…), bundle {root} holds {fp[:12]}…; create the patch from "
                             "the run this bundle was exported from")
        new = apply_to_arrays(base, patch)
        got = arrays_fingerprint(new)
        if got != patch.header["result_fingerprint"]:
            raise PatchError(f"applying patch {patch_path} gives network {got[:12]}… but the patch promises "
                             f"{str(patch.header['result_fingerprint'])[:12]}…; the patch is inconsistent")
        model_bytes = build_graph(new, layout="shared", temperature=bundle.temperature, opset=bundle.opset).SerializeToString()
        report, probe_x, probe_out = validate_patched(bundle, new, model_bytes)
        report["patch"] = {"sha256": patch.sha256, "task": patch.task, "signed_by": signer}
        names = dict(bundle.class_names)
        names.update(zip(patch.classes, patch.class_names))
        _crash_point("verified")

        # -- from here on the bundle folder is written; CURRENT's rename is the commit point
        cleaned = cleanup(root, keep=keep)
        _crash_point("cleaned")
        bundle = Bundle.load(root, verify=False)  # unchanged by cleanup (it only removes leftovers)
        plain = bundle.version is None
        if plain:
            files = [n for n in bundle.meta["files"]] + [BUNDLE_JSON]
            previous = _version_name(1)
            _copy_plain_to_version(root, files, previous)
            _crash_point("base_copied")
        else:
            previous = str(bundle.version)
        existing_versions = list_versions(root)
        new_name = _version_name(max([_version_num(v) for v in existing_versions] + [0]) + 1)
        record = {"sha256": patch.sha256, "task": patch.task, "classes": patch.classes, "class_names": patch.class_names,
                  "signed_by": signer, "applied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "base_fingerprint": patch.base_fingerprint, "result_fingerprint": got}
        assemble_bundle(
            root / VERSIONS_DIR / new_name, new, layout="shared", temperature=bundle.temperature, class_names=names,
            mean=list(bundle.input.mean), std=list(bundle.input.std), opset=bundle.opset,
            channel_order=bundle.input.channel_order, model_bytes=model_bytes, probe_inputs=probe_x,
            probe_outputs=probe_out, report=report, source=bundle.meta.get("source"),
            extra={"base_version": previous, "patches": history + [record]},
        )
        fsync_dir(root / VERSIONS_DIR)
        _crash_point("version_written")
        _write_pointer(root, new_name)
        _crash_point("committed")
        if plain:
            for i, n in enumerate(files[:-1] + [BUNDLE_JSON]):
                (root / n).unlink(missing_ok=True)
                if i == 0:
                    _crash_point("root_cleanup")
            fsync_dir(root)
            _adopt_machine_local(root, root / VERSIONS_DIR / previous)
        _carry_timing_cache(root / VERSIONS_DIR / previous, root / VERSIONS_DIR / new_name)
        cleanup(root, keep=keep)
        _crash_point("pruned")
    log.info("applied patch %s (task %d) to %s: version %s", patch.sha256[:12], patch.task, root, new_name)
    return ApplyResult(bundle=root, version=new_name, previous=previous, task=patch.task, classes=patch.classes,
                       class_names=patch.class_names, patch_sha256=patch.sha256, signed_by=signer,
                       max_abs_diff=float(report["max_abs_diff"]["task_logits_earlier_tasks"]),
                       model_bytes=len(model_bytes), seconds=time.perf_counter() - t0, cleaned=cleaned)


def _refuse_version_folder(root: Path) -> None:
    if root.parent.name == VERSIONS_DIR and (root.parent.parent / POINTER_FILE).is_file():
        raise BundleError(f"{root} is one version of the bundle {root.parent.parent}; pass the bundle folder itself")


@dataclass(frozen=True)
class RollbackResult:
    bundle: Path
    version: str
    removed: str
    num_tasks: int


def rollback(bundle_dir: str | os.PathLike) -> RollbackResult:
    """Make the previous version live again (atomic switch of ``CURRENT``); drops the newer one."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a folder")
    _refuse_version_folder(root)
    with _locked(root):
        _, current = resolve_version(root)
        if current is None:
            raise PatchError(f"bundle {root} has never been patched (no {POINTER_FILE} file); there is no earlier version to roll back to")
        prev = previous_version(root, current)
        if prev is None:
            raise PatchError(f"version {current} of bundle {root} is the oldest one kept; there is nothing to roll back to")
        if not (root / VERSIONS_DIR / prev).is_dir():
            raise PatchError(f"the previous version {prev} of bundle {root} is no longer kept (versions: "
                             f"{', '.join(list_versions(root))}); cannot roll back")
        target = Bundle.load(root / VERSIONS_DIR / prev)  # verify every hash before switching
        _write_pointer(root, prev)
        _remove(root / VERSIONS_DIR / current)
        fsync_dir(root / VERSIONS_DIR)
        cleanup(root, keep=2)
    log.info("rolled %s back from %s to %s", root, current, prev)
    return RollbackResult(bundle=root, version=prev, removed=current, num_tasks=target.num_tasks)


def bundle_status(bundle_dir: str | os.PathLike) -> dict:
    """Live version, kept versions and patch history of a bundle (for inspect/CLI output)."""
    root = Path(bundle_dir)
    b = Bundle.load(root, verify=False)
    return {"bundle": str(root), "version": b.version, "versions": list_versions(root), "num_tasks": b.num_tasks,
            "patches": list(b.meta.get("patches", [])), "model_sha256": sha256_file(b.model_path)}


# ----------------------------------------------------------------------------- synthetic


def random_mind_arrays(net: Mapping[str, Any], task_classes: Sequence[Sequence[int]], *, seed: int = 0) -> NetArrays:
    """A random network with MIND's structure (torch-free; tests and benchmarks).

    Unlike :func:`mind_edge.runtime.graph.random_arrays` (uniformly random owners), every task
    claims exactly ``numel // capacity`` of the still-free weights of every layer, and the free
    weights are 0 — as after a real MIND run, so :func:`truncate_arrays` gives the exact
    network before any task.
    """
    from mind_edge.runtime.graph import random_arrays

    arrays = random_arrays(net, task_classes, seed=seed, free_fraction=0.0)
    rng = np.random.default_rng(seed + 1)
    capacity = int(net["capacity"])
    if len(task_classes) > capacity:
        raise PatchError(f"{len(task_classes)} tasks do not fit capacity {capacity}")
    layers = []
    for la in arrays.layers:
        owner = np.full(la.owner.size, -1, dtype=np.int8)
        k = la.owner.size // capacity
        for t in range(len(task_classes)):
            free = np.flatnonzero(owner == -1)
            owner[rng.choice(free, size=k, replace=False)] = t
        owner = owner.reshape(la.owner.shape)
        layers.append(LayerArrays(la.name, np.where(owner >= 0, la.weight, np.float32(0)).astype(np.float32), owner,
                                  la.stride, la.padding))
    return NetArrays(net=dict(net), layers=tuple(layers), norms=arrays.norms, heads=arrays.heads)
