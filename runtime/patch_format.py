"""The task patch file: binary format, header schema, bounded reader, writer, signatures (torch-free).

The codecs it frames (fingerprints, position encodings, routing values, the bounded ``.npz``
payload decoder) are :mod:`mind_edge.runtime.patch_codecs`; their public names are re-exported.

A MIND task only claims free weights, so an update never changes what the device already
knows: the patch carries task ``T``'s claimed positions (per layer, compactly encoded), their
float32 values, its BatchNorm sets and head, its classes and names, and the fingerprint of
the exact network it applies to. Applying it is :mod:`mind_edge.runtime.patch`.

**File format** (``.mepatch``, schema :data:`PATCH_SCHEMA`), little-endian, no pickle::

    MAGIC (8 bytes, b"MEPATCH\\0")
    u32 header length  | header: UTF-8 JSON (format, schema_version, task, classes, class_names,
                       |   net, base {fingerprint, num_tasks, classes}, result_fingerprint, layers
                       |   [{name, shape, free, claimed, encoding, position_bytes}], norms [{name,
                       |   channels, eps}], head {classes, features, routing {tap_dims, count}?},
                       |   payload {bytes, sha256, kind},
                       |   signature {algorithm, key_id} | null, created, creator, source)
    u64 payload length | payload: a compressed .npz of exactly the arrays the header declares: positions
                       |   (uint8: every layer's encoded positions, concatenated), values (float32:
                       |   the claimed weights, layer by layer), bn (float32: gamma, beta, mean, var
                       |   per BatchNorm), head_w, head_b, and routing (float32: the task's routing
                       |   statistics) when the header's head has "routing"
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

**Reading is bounded and trust comes before work** (:func:`read_patch`): the file must be a
regular file of at most :data:`MAX_PATCH_BYTES`; the header at most :data:`MAX_HEADER_BYTES`;
the digest is computed while the file is streamed; the header is checked field by field
(:func:`check_header`: types, ranges, consistent sizes); the signature is checked over the
digest (:func:`check_signature`) before anything is decoded; the payload is decoded only when
asked (:meth:`Patch.decoded`), and then only exactly the five members the header declares,
each one's inflated size taken from the zip directory and compared with the size the header's
layer records imply *before* it is inflated, its ``.npy`` header parsed by hand (dtype and
shape must be the declared ones; no pickles, no object arrays).
"""
# Over 600 lines: one contract — the file frame, header schema, reader, signatures, writer; codecs: patch_codecs.py

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import __version__
from mind_edge.fileio import sha256_bytes
from mind_edge.runtime import signing
from mind_edge.runtime.graph import NetArrays
from mind_edge.runtime.patch_codecs import (  # the codecs' public names are re-exported (__all__)
    _DELTA_TYPES,
    ENCODINGS,
    AlreadyAppliedError,
    PatchError,
    arrays_fingerprint,
    decode_npz,
    decode_positions,
    encode_positions,
    layer_bytes,
    npz_bytes,
    routing_from_values,
    routing_size,
    routing_values,
)
from mind_edge.schema import Fields, json_type, open_regular_file, strict_json_loads

log = logging.getLogger(__name__)

__all__ = [
    "DIGEST_BYTES",
    "ENCODINGS",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_PATCH_BYTES",
    "PATCH_FORMAT",
    "PATCH_SCHEMA",
    "AlreadyAppliedError",
    "Patch",
    "PatchError",
    "arrays_fingerprint",
    "build_patch",
    "check_header",
    "check_signature",
    "declared_members",
    "decode_payload",
    "decode_positions",
    "diff_arrays",
    "encode_positions",
    "parse_patch",
    "read_patch",
    "routing_from_values",
    "routing_size",
    "routing_values",
    "verify_signature",
]

MAGIC = b"MEPATCH\x00"
PATCH_FORMAT = "mind-edge-patch"
PATCH_SCHEMA = 1
DIGEST_BYTES = 32
#: Largest patch file read (a capacity-2 ResNet-18 patch is ~25 MB).
MAX_PATCH_BYTES = 256 << 20
MAX_HEADER_BYTES = 8 << 20
MAX_LAYERS = 4096
MAX_WEIGHTS_PER_LAYER = 1 << 31
MAX_TASKS = 127
MAX_CLASSES = 100_000
MAX_CLASS_ID = 10_000_000
PAYLOAD_MEMBERS = ("positions", "values", "bn", "head_w", "head_b", "routing")  # routing: optional
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_FIX = "re-create it with 'mind-edge patch create'"


# ----------------------------------------------------------------------------- header schema


def check_header(header: Any, where: str) -> dict:
    """Typed check of a patch header: every field mind-edge reads, with consistent sizes.

    Returns the header; raises :class:`PatchError` naming the field (never echoing its value).
    """
    if not isinstance(header, dict) or header.get("format") != PATCH_FORMAT:
        raise PatchError(f'{where} is not a mind-edge task patch (its header has no "format": "{PATCH_FORMAT}")')
    version = header.get("schema_version")
    if version != PATCH_SCHEMA:
        shown = version if isinstance(version, int) and not isinstance(version, bool) else json_type(version)
        raise PatchError(
            f"{where} has patch schema {shown}; this mind-edge ({__version__}) reads "
            f"schema {PATCH_SCHEMA}. Upgrade mind-edge on this device or re-create the patch"
        )
    f = Fields(header, f"{where} has a malformed header", PatchError, hint=_FIX)
    task = f.int("task", lo=1, hi=MAX_TASKS - 1)
    classes = f.ints("classes", lo=0, hi=MAX_CLASS_ID, min_len=1, max_len=MAX_CLASSES, unique=True)
    f.strs("class_names", min_len=len(classes), max_len=len(classes), max_str=1024)
    net = f.sub("net")
    net.str("arch", max_len=64)
    net.int("in_channels", lo=1, hi=3)
    net.ints("input_size", lo=1, hi=1 << 16, min_len=2, max_len=2)
    net.float("width", positive=True)
    capacity = net.int("capacity", lo=1, hi=MAX_TASKS)
    if task >= capacity:
        raise PatchError(f"{where} adds task {task} to a network of capacity {capacity}; {_FIX}")
    base = f.sub("base")
    base.str("fingerprint", pattern=_HEX64, max_len=64)
    if base.int("num_tasks", lo=1, hi=MAX_TASKS) != task:
        raise PatchError(
            f"{where} has a malformed header: its base holds {base.obj['num_tasks']} tasks but it adds "
            f"task {task}; {_FIX}"
        )
    for i, cl in enumerate(base.list("classes", max_len=MAX_TASKS)):
        if not isinstance(cl, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in cl):
            raise PatchError(f'{where} has a malformed header: "base.classes[{i}]" must be a list of integers; {_FIX}')
    f.str("result_fingerprint", pattern=_HEX64, max_len=64)
    layers = f.list("layers", min_len=1, max_len=MAX_LAYERS)
    names = set()
    for i, rec in enumerate(layers):
        lf = f.item(rec, f"layers[{i}]")
        name = lf.str("name", max_len=256)
        if name in names:
            raise PatchError(f"{where} has a malformed header: layer {i} repeats an earlier layer's name; {_FIX}")
        names.add(name)
        shape = lf.ints("shape", lo=1, hi=MAX_WEIGHTS_PER_LAYER, min_len=1, max_len=8)
        numel = math.prod(shape)
        if numel > MAX_WEIGHTS_PER_LAYER:
            raise PatchError(f"{where} has a malformed header: layer {i} has {numel} weights; {_FIX}")
        free = lf.int("free", lo=0, hi=numel)
        claimed = lf.int("claimed", lo=0, hi=free)
        enc = lf.str("encoding", choices=ENCODINGS)
        nbytes = lf.int("position_bytes", lo=0)
        want = -(-free // 8) if enc == "bitmap" else claimed * np.dtype(_DELTA_TYPES[enc]).itemsize
        if nbytes != want:
            raise PatchError(
                f"{where} has a malformed header: layer {i} declares {nbytes} position bytes, its "
                f"{enc} encoding of {claimed} of {free} free weights takes {want}; {_FIX}"
            )
    for i, rec in enumerate(f.list("norms", max_len=MAX_LAYERS)):
        nf = f.item(rec, f"norms[{i}]")
        nf.str("name", max_len=256)
        nf.int("channels", lo=1, hi=1 << 16)
        nf.float("eps", positive=True)
    head = f.sub("head")
    if head.int("classes", lo=1, hi=MAX_CLASSES) != len(classes):
        raise PatchError(
            f"{where} has a malformed header: its head has {head.obj['classes']} classes, it lists "
            f"{len(classes)}; {_FIX}"
        )
    head.int("features", lo=1, hi=1 << 20)
    if head.has("routing"):  # the new task's routing statistics (mind_edge.core.routing)
        routing = head.sub("routing")
        routing.ints("tap_dims", lo=1, hi=1 << 12, min_len=1, max_len=32)
        routing.int("count", lo=1, hi=1 << 40)
        # statistics layout 2: the last shared_taps taps are measured in sub-network 0 (absent: layout 1)
        shared = routing.int("shared_taps", lo=0, hi=16, default=0)
        dims = routing.obj["tap_dims"]
        if shared and (2 * shared != len(dims) or dims[:shared] != dims[shared:]):
            raise PatchError(
                f"{where} has a malformed header: {shared} shared-space taps do not fit the taps {dims}; {_FIX}"
            )
        # statistics layout 3: the pooled-metric summaries follow (absent: layout 1 or 2)
        if routing.int("pool", lo=0, hi=1, default=0) and not shared:
            raise PatchError(f"{where} has a malformed header: pooled-metric statistics need shared-space taps; {_FIX}")
    payload = f.sub("payload")
    payload.int("bytes", lo=0)
    payload.str("sha256", pattern=_HEX64, max_len=64)
    payload.str("kind", choices=("npz",), default="npz")
    sig = f.obj_or_none("signature")
    if sig is not None:
        sig.str("algorithm", choices=("ed25519",))
        sig.str("key_id", pattern=_KEY_ID, max_len=16)
    for key in ("created", "creator"):
        if f.has(key):
            f.str(key, max_len=256)
    if f.has("source"):
        f.sub("source")
    return header


def declared_members(header: Mapping[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """``{member: (dtype, shape)}`` of the payload arrays, as the (checked) header implies them."""
    f32, u8 = np.dtype("<f4"), np.dtype("|u1")
    layers, norms, head = header["layers"], header["norms"], header["head"]
    members = {
        "positions": (u8, (sum(int(x["position_bytes"]) for x in layers),)),
        "values": (f32, (sum(int(x["claimed"]) for x in layers),)),
        "bn": (f32, (sum(4 * int(x["channels"]) for x in norms),)),
        "head_w": (f32, (int(head["classes"]), int(head["features"]))),
        "head_b": (f32, (int(head["classes"]),)),
    }
    if head.get("routing"):
        rec = head["routing"]
        size = routing_size(rec["tap_dims"], int(head["classes"]), rec.get("shared_taps", 0), bool(rec.get("pool", 0)))
        members["routing"] = (f32, (size,))
    return members


# ----------------------------------------------------------------------------- the patch file


@dataclass(frozen=True, eq=False)
class Patch:
    """A patch whose frame, digest and header are checked; ``arrays`` once :meth:`decoded`.

    The signature is checked by :func:`check_signature` / :func:`verify_signature`.
    """

    path: Path | None
    header: dict
    arrays: Mapping[str, np.ndarray] = field(repr=False)
    digest: bytes
    signature: bytes
    size: int
    payload: bytes = field(default=b"", repr=False)

    @property
    def where(self) -> str:
        return f"patch {self.path}" if self.path else "the patch"

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

    @property
    def key_id(self) -> str | None:
        sig = self.header.get("signature")
        return sig.get("key_id") if isinstance(sig, dict) else None

    def decoded(self) -> Patch:
        """This patch with its payload arrays decoded (bounded; see the module docstring)."""
        if self.arrays:
            return self
        return replace(self, arrays=decode_payload(self.payload, self.header, self.where))

    def summary(self) -> dict:
        h = self.header
        sizes = {"total_bytes": self.size, "payload_bytes": int(h["payload"]["bytes"])}
        return {
            "file": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "format": h["format"],
            "schema_version": h["schema_version"],
            "task": self.task,
            "classes": self.classes,
            "class_names": self.class_names,
            "net": h["net"],
            "base": h["base"],
            "result_fingerprint": h["result_fingerprint"],
            "claimed_weights": int(sum(x["claimed"] for x in h["layers"])),
            "encodings": {
                e: sum(1 for x in h["layers"] if x["encoding"] == e)
                for e in ENCODINGS
                if any(x["encoding"] == e for x in h["layers"])
            },
            "signed": self.signed,
            "signature": h.get("signature"),
            "created": h.get("created"),
            "creator": h.get("creator"),
            "source": h.get("source"),
            **sizes,
        }


class _Reader:
    """Sequential reads from bytes or a file, feeding every byte into the digest."""

    def __init__(self, data: bytes | None, fd: int | None, size: int, where: str) -> None:
        self.view = memoryview(data) if data is not None else None
        self.fd, self.size, self.where, self.off = fd, size, where, 0
        self.h = hashlib.sha256()

    def truncated(self, what: str) -> PatchError:
        return PatchError(
            f"{self.where} is truncated ({self.size} bytes, cut inside the {what}); copy the whole file again"
        )

    def read(self, n: int, what: str, *, digest: bool = True) -> bytes:
        if self.off + n > self.size:
            raise self.truncated(what)
        if self.view is not None:
            out = bytes(self.view[self.off : self.off + n])
        else:
            parts, left = [], n
            while left:
                block = os.read(self.fd, min(left, 1 << 20))
                if not block:
                    raise self.truncated(what)
                parts.append(block)
                left -= len(block)
            out = b"".join(parts)
        self.off += n
        if digest:
            self.h.update(out)
        return out


def _parse(r: _Reader, path: Path | None) -> Patch:
    where = r.where
    if r.size < len(MAGIC) + 4 or r.read(len(MAGIC), "magic") != MAGIC:
        raise PatchError(
            f"{where} is not a mind-edge task patch (no {MAGIC[:7].decode()} header); "
            "make one with 'mind-edge patch create'"
        )
    (hlen,) = struct.unpack("<I", r.read(4, "header"))
    if hlen > MAX_HEADER_BYTES:
        raise PatchError(
            f"{where} declares a {hlen:,}-byte header, more than the {MAX_HEADER_BYTES:,} this mind-edge "
            f"reads; it is not a patch mind-edge wrote"
        )
    if r.off + hlen + 8 > r.size:
        raise r.truncated("header")
    head_bytes = r.read(hlen, "header")
    (plen,) = struct.unpack("<Q", r.read(8, "header"))
    if r.off + plen + DIGEST_BYTES + 2 > r.size:
        raise r.truncated("payload" if r.off + plen > r.size else "digest")
    ph = hashlib.sha256()
    body = r.read(plen, "payload")
    ph.update(body)
    digest = r.read(DIGEST_BYTES, "digest", digest=False)
    if r.h.digest() != digest:
        raise PatchError(
            f"{where} is corrupt or was tampered with: its content does not match its sha256 "
            f"({digest.hex()[:12]}… recorded); get the original file again"
        )
    (slen,) = struct.unpack("<H", r.read(2, "signature", digest=False))
    if r.off + slen > r.size:
        raise r.truncated("signature")
    sig = r.read(slen, "signature", digest=False)
    if r.off != r.size:
        raise PatchError(
            f"{where} has {r.size - r.off} unexpected bytes after its end; the file was modified — get the original"
        )
    try:
        header = strict_json_loads(head_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PatchError(f"{where} has a malformed header (not UTF-8 JSON); {_FIX}") from None
    check_header(header, where)
    if header["payload"]["bytes"] != plen or header["payload"]["sha256"] != ph.hexdigest():
        raise PatchError(f"{where}: the payload does not match the header's size/sha256; {_FIX}")
    if slen not in (0, 64):
        raise PatchError(f"{where} has a {slen}-byte signature; Ed25519 signatures have 64 bytes")
    return Patch(path=path, header=header, arrays={}, digest=digest, signature=sig, size=r.size, payload=body)


def parse_patch(data: bytes, path: Path | None = None, *, decode: bool = True) -> Patch:
    """Parse and integrity-check patch bytes (magic, lengths, digest, typed header; the payload if ``decode``)."""
    where = f"patch {path}" if path else "the patch"
    if len(data) > MAX_PATCH_BYTES:
        raise PatchError(f"{where} has {len(data):,} bytes, more than the {MAX_PATCH_BYTES:,} this mind-edge reads")
    p = _parse(_Reader(bytes(data), None, len(data), where), path)
    return p.decoded() if decode else p


def read_patch(path: str | os.PathLike, *, decode: bool = True) -> Patch:
    """:func:`parse_patch` of a file, streamed: a regular file of at most :data:`MAX_PATCH_BYTES`."""
    path = Path(path)
    with open_regular_file(
        path, max_bytes=MAX_PATCH_BYTES, error=PatchError, what="patch file", hint="pass the .mepatch file"
    ) as (fd, size):
        p = _parse(_Reader(None, fd, size, f"patch {path}"), path)
    return p.decoded() if decode else p


def decode_payload(body: bytes, header: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """The payload arrays, exactly as declared by the (checked) header; bounded before inflating."""
    return decode_npz(body, declared_members(header), where)


# ----------------------------------------------------------------------------- signatures


def check_signature(patch: Patch, trusted: Sequence[tuple[str, bytes, str]]) -> str | None:
    """Require a valid signature by one of ``trusted`` (``(key_id, public key, where it came from)``).

    No trusted keys: the signature is not checked (returns None). Otherwise returns the key id
    that verified; raises :class:`PatchError` before anything of the patch is decoded.
    """
    if not trusted:
        if patch.signed:
            log.info(
                "%s is signed (key %s) but no key is trusted here; signature not checked", patch.where, patch.key_id
            )
        return None
    sources = " and ".join(sorted({src for _, _, src in trusted}))
    if not patch.signed:
        raise PatchError(
            f"{patch.where} is not signed but a signature is required ({sources}); "
            "sign it with 'mind-edge patch create --sign-key KEY'"
        )
    for kid, pub, _ in trusted:
        if signing.verify_digest(pub, patch.digest, patch.signature):
            return kid
    claimed = patch.key_id
    ids = ", ".join(k for k, _, _ in trusted)
    if claimed and claimed not in {k for k, _, _ in trusted}:
        raise PatchError(
            f"{patch.where} is signed with key {claimed}, not with the key {ids} of {sources}; "
            "verify with the matching public key or re-sign the patch"
        )
    raise PatchError(
        f"the signature of {patch.where} does not verify with {sources} (key {ids}); "
        "the patch or its signature was tampered with"
    )


def verify_signature(patch: Patch, public_key_path: str | os.PathLike | None) -> str | None:
    """Check the signature against ``public_key_path`` (required when given); returns the key id used."""
    if public_key_path is None:
        return check_signature(patch, ())
    pub = signing.load_public_key(public_key_path)
    return check_signature(patch, [(signing.key_id(pub), pub, f"--verify-key {public_key_path}")])


# ----------------------------------------------------------------------------- writing


def diff_arrays(
    base: NetArrays, new: NetArrays, task: int
) -> tuple[list[dict], list[dict], dict, dict[str, np.ndarray]]:
    """What task ``task`` adds to ``base`` in ``new``: layer/norm/head records and payload arrays.

    The payload holds five arrays whatever the depth (an .npz member costs ~250 bytes of
    headers): ``positions`` (every layer's encoded positions, concatenated bytes; each layer's
    byte count is in its record), ``values`` (every claimed weight, layer by layer, in
    increasing flat index), ``bn`` (per BatchNorm gamma, beta, mean, var), ``head_w``, ``head_b``,
    and ``routing`` (the new task's routing statistics, :func:`routing_values`) when it has them.
    """
    if base.num_tasks != task or new.num_tasks != task + 1:
        raise PatchError(
            f"a patch for task {task} needs a base of {task} tasks and a network of {task + 1}; got "
            f"{base.num_tasks} and {new.num_tasks}"
        )
    pos_parts, val_parts, bn_parts = [], [], []
    layers = []
    for la in new.layers:
        lb = base.layer(la.name)
        claimed = np.flatnonzero(la.owner.reshape(-1) == task)
        if not np.array_equal(np.where(la.owner == task, np.int8(-1), la.owner), lb.owner):
            raise PatchError(
                f"layer {la.name}: the owner maps of earlier tasks differ between the base and the new network"
            )
        enc, data = encode_positions(lb.owner, claimed)
        blob = layer_bytes(data)
        pos_parts.append(blob)
        val_parts.append(np.ascontiguousarray(la.weight.reshape(-1)[claimed], dtype=np.float32))
        layers.append(
            {
                "name": la.name,
                "shape": list(la.weight.shape),
                "free": int((lb.owner == -1).sum()),
                "claimed": int(claimed.size),
                "encoding": enc,
                "position_bytes": len(blob),
            }
        )
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
    head_rec = {"classes": len(head.classes), "features": int(head.weight.shape[1])}
    if head.stats is not None:
        payload["routing"] = routing_values(head.stats)
        head_rec["routing"] = {
            "tap_dims": list(head.stats.tap_dims),
            "count": int(head.stats.count),
            "shared_taps": int(head.stats.shared_taps),
            "pool": int(head.stats.layout >= 3),
        }
    return layers, norms, head_rec, payload


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
    if dict(base.net) != dict(new.net):
        raise PatchError(
            f"the base network {dict(base.net)} and the new one {dict(new.net)} have different architectures"
        )
    classes = list(new.heads[task].classes)
    if len(class_names) != len(classes):
        raise PatchError(f"task {task} has {len(classes)} classes but {len(class_names)} class names were given")
    layers, norms, head, payload = diff_arrays(base, new, task)
    body = npz_bytes(payload)
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
        sig, kid = signing.sign_digest(sign_key, digest)
        if kid != signer["key_id"]:
            raise PatchError(f"the secret key {sign_key} changed while the patch was signed; sign again")
    return out + digest + struct.pack("<H", len(sig)) + sig


def _secret_key_id(path) -> str:
    nacl = signing._nacl()
    seed = signing._read_key(path, signing.SECRET_TAG, "secret key")
    return signing.key_id(bytes(nacl.SigningKey(seed).verify_key))
