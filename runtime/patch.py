"""Task patches: apply one to a deployed bundle atomically, roll it back (torch-free).

The file format, its bounded reader and the signature check are
:mod:`mind_edge.runtime.patch_format` (its codecs :mod:`mind_edge.runtime.patch_codecs`); the
versioned bundle store (``CURRENT`` + ``versions/``, lock, clean-up) is
:mod:`mind_edge.runtime.versions`. Their public names are re-exported here.

**The apply sequence** (:func:`apply_patch`) — trust first, then work, then writes:

1. the bundle's trusted keys (``TRUSTED_KEYS``, see :mod:`mind_edge.runtime.signing`) and
   ``--verify-key``; the patch file's frame, streamed digest and typed header; the signature
   over the digest — all before anything is decoded or the bundle is read;
2. under an exclusive lock: the bundle (every hash), "already applied" (its own exit code,
   :class:`AlreadyAppliedError`), the header against the bundle's network (shapes, counts),
   then the payload decoded within the sizes that network implies, the new network built,
   its fingerprint, graph and probe-batch validation, the complete new version prepared and
   checked by the typed loader, and the free space it needs;
3. only then the writes: leftovers of an interrupted apply removed, a plain bundle's files
   copied into ``versions/v0001`` (first apply only), the new version written into a
   temporary folder and renamed into ``versions/``, and ``CURRENT`` replaced atomically — the
   one commit point. A crash before it leaves the old version live, after it the new one. A
   write error (disk full, read-only file system) before it removes what this apply wrote
   and reports one line; the bundle is as it was.

The previous version is kept for :func:`rollback`.
"""
# Over 600 lines: one transaction — fit, validate, apply atomically, roll back (format: patch_format.py)

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mind_edge.core.routing import get_policy, policy_scores, split_taps
from mind_edge.errors import ConfigError, MindEdgeError
from mind_edge.fileio import fsync_dir, sha256_file
from mind_edge.runtime.bundle import (
    BUNDLE_JSON,
    MODEL_FILE,
    POINTER_FILE,
    PROBE_FILE,
    VERSIONS_DIR,
    Bundle,
    prepare_bundle,
    resolve_version,
    write_bundle,
)
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.graph import (
    HeadArrays,
    LayerArrays,
    NetArrays,
    NormArrays,
    NormSet,
    build_graph,
    check_arrays,
    read_arrays,
)
from mind_edge.runtime.patch_codecs import (  # noqa: F401  (re-exported)
    _DELTA_TYPES,
    ENCODINGS,
    AlreadyAppliedError,
    PatchError,
    arrays_fingerprint,
    decode_positions,
    encode_positions,
    routing_from_values,
)
from mind_edge.runtime.patch_format import (  # noqa: F401  (re-exported)
    DIGEST_BYTES,
    MAGIC,
    MAX_PATCH_BYTES,
    PATCH_FORMAT,
    PATCH_SCHEMA,
    Patch,
    build_patch,
    check_header,
    check_signature,
    decode_payload,
    diff_arrays,
    parse_patch,
    read_patch,
    verify_signature,
)
from mind_edge.runtime.precision import patch_hook
from mind_edge.runtime.routing import PAD_LOGIT
from mind_edge.runtime.sessions import cpu_session
from mind_edge.runtime.signing import read_trusted_keys, trusted_keys
from mind_edge.runtime.versions import (  # noqa: F401  (re-exported)
    CRASH_ENV,
    CRASH_POINTS,
    PLAIN_FILES,
    adopt_machine_local,
    carry_timing_cache,
    check_free_space,
    cleanup,
    copy_plain_to_version,
    crash_point,
    list_versions,
    locked,
    previous_version,
    remove,
    undo_uncommitted,
    version_name,
    version_num,
    write_pointer,
)

log = logging.getLogger(__name__)

PROBE_ATOL = 1e-6  # earlier tasks' task_logits on the probe batch may move at most this much
_crash_point = crash_point  # old private names, kept for tests and tools
_locked = locked


# ----------------------------------------------------------------------------- arrays


def check_fits(base: NetArrays, patch: Patch) -> None:
    """The patch header against the base network, before the payload is decoded: same architecture,
    the same layers and BatchNorms with the same shapes, ``numel // capacity`` claimed weights per
    layer and the base's free-weight counts — so the payload's declared sizes are those of this network."""
    h, where = patch.header, patch.where
    if dict(h["net"]) != dict(base.net):
        raise PatchError(
            f"{where} is for another network architecture than the bundle's ({base.net.get('arch')}, "
            f"capacity {base.net.get('capacity')}); create the patch from the run this bundle was exported from"
        )
    if len(h["layers"]) != len(base.layers) or len(h["norms"]) != len(base.norms):
        raise PatchError(
            f"{where} has {len(h['layers'])} layers / {len(h['norms'])} BatchNorms, the bundle's network "
            f"{len(base.layers)} / {len(base.norms)}"
        )
    layers = {x.name: x for x in base.layers}
    norms = {x.name: x for x in base.norms}
    capacity = int(base.net["capacity"])
    for i, rec in enumerate(h["layers"]):
        lb = layers.get(rec["name"])
        if lb is None:
            raise PatchError(f"{where}: its layer {i} is not a layer of the bundle's network")
        if list(lb.weight.shape) != list(rec["shape"]):
            raise PatchError(
                f"{where}: layer {lb.name} is {rec['shape']} in the patch, {list(lb.weight.shape)} in the bundle"
            )
        k = lb.weight.size // capacity
        if int(rec["claimed"]) != k:
            raise PatchError(
                f"{where}: layer {lb.name} claims {rec['claimed']} weights; a task claims numel // capacity = {k}"
            )
        free = int((lb.owner == -1).sum())
        if int(rec["free"]) != free:
            raise PatchError(
                f"{where}: layer {lb.name} had {rec['free']} free weights when the patch was made, the bundle "
                f"has {free}; the patch was made for another base"
            )
    for i, rec in enumerate(h["norms"]):
        nb = norms.get(rec["name"])
        if nb is None:
            raise PatchError(f"{where}: its BatchNorm {i} is not a BatchNorm of the bundle's network")
        c = nb.sets[0].gamma.size
        if int(rec["channels"]) != c:
            raise PatchError(
                f"{where}: BatchNorm {nb.name} has {c} channels in the bundle, {rec['channels']} in the patch"
            )
    f = base.heads[0].weight.shape[1]
    if int(h["head"]["features"]) != f:
        raise PatchError(f"{where}: its head reads {h['head']['features']} features, the bundle's network {f}")


def apply_to_arrays(base: NetArrays, patch: Patch) -> NetArrays:
    """The network ``base`` plus the patch's task (checks every shape, count and position)."""
    check_fits(base, patch)
    patch = patch.decoded()
    h, a = patch.header, patch.arrays
    t = patch.task
    where = patch.where
    capacity = int(base.net["capacity"])

    def get(key: str) -> np.ndarray:
        if key not in a:
            raise PatchError(f"{where} lacks the array {key!r}; re-create it")
        return a[key]

    positions, values, bn = get("positions"), get("values"), get("bn")
    if positions.dtype != np.uint8 or positions.ndim != 1:
        raise PatchError(
            f"{where}: positions must be a uint8 byte string, got {positions.dtype} {list(positions.shape)}"
        )
    if values.dtype != np.float32 or values.ndim != 1 or not np.isfinite(values).all():
        raise PatchError(f"{where}: values must be finite float32, got {values.dtype} {list(values.shape)}")
    if bn.dtype != np.float32 or bn.ndim != 1 or not np.isfinite(bn).all():
        raise PatchError(f"{where}: BatchNorm sets must be finite float32, got {bn.dtype} {list(bn.shape)}")
    p_off = v_off = 0
    layers = []
    for rec in h["layers"]:
        lb = base.layer(rec["name"])
        if list(lb.weight.shape) != list(rec["shape"]):
            raise PatchError(
                f"{where}: layer {rec['name']} is {rec['shape']} in the patch, {list(lb.weight.shape)} in the bundle"
            )
        k = lb.weight.size // capacity
        if int(rec["claimed"]) != k:
            raise PatchError(
                f"{where}: layer {rec['name']} claims {rec['claimed']} weights; a task claims numel // capacity = {k}"
            )
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
        layers.append(
            LayerArrays(lb.name, w.reshape(lb.weight.shape), o.reshape(lb.owner.shape), lb.stride, lb.padding)
        )
    if p_off != positions.size or v_off != values.size:
        raise PatchError(
            f"{where}: the payload has {positions.size - p_off} position bytes / {values.size - v_off} values "
            "left over; it does not fit this network"
        )
    norms = []
    b_off = 0
    for rec in h["norms"]:
        nb = base.norm(rec["name"])
        c = nb.sets[0].gamma.size
        if int(rec["channels"]) != c or b_off + 4 * c > bn.size:
            raise PatchError(
                f"{where}: BatchNorm {rec['name']} has {c} channels in the bundle, {rec['channels']} in the patch"
            )
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
        raise PatchError(
            f"{where}: the head must be float32 [{len(classes)}, {f}] + [{len(classes)}], got "
            f"{list(hw.shape)} + {list(hb.shape)}"
        )
    stats = None
    if h["head"].get("routing"):
        rec = h["head"]["routing"]
        stats = routing_from_values(
            get("routing"),
            rec["tap_dims"],
            len(classes),
            int(rec["count"]),
            int(rec.get("shared_taps", 0)),
            bool(rec.get("pool", 0)),
        )
        base_stats = base.heads[0].stats
        try:
            stats.check(
                base_stats.tap_dims[: base_stats.own_taps] if base_stats is not None else None,
                len(classes),
                where=f"{where}'s task",
            )
        except ConfigError as exc:
            raise PatchError(str(exc)) from None
    heads = tuple(base.heads) + (HeadArrays(np.ascontiguousarray(hw), np.ascontiguousarray(hb), classes, stats),)
    # keep the network's layer order (that of the base)
    by_name = {x.name: x for x in layers}
    out = NetArrays(
        net=dict(base.net), layers=tuple(by_name[x.name] for x in base.layers), norms=tuple(norms), heads=heads
    )

    try:
        check_arrays(out)
    except MindEdgeError as exc:
        raise PatchError(f"{where} does not fit the bundle's network: {exc}") from exc
    return out


# ----------------------------------------------------------------------------- validation


def _ort_session(model_bytes: bytes):
    return cpu_session(model_bytes, what="validating a patched bundle")


def _run(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def _pooled_score_problems(bundle: Bundle, new: NetArrays, out: dict[str, np.ndarray]) -> list[str]:
    """A policy of the pooled metric moves every task's score when a task joins the pool (by design: the
    metric is derived from all the tasks' statistics); the patched head must compute exactly the
    contract's scores from the new statistics (:func:`mind_edge.core.routing.policy_scores`)."""
    stats = new.routing_stats()
    if "task_features" not in out:
        return ["the patched model has no task_features output"]
    taps = split_taps(out["task_features"], stats[0].tap_dims[: stats[0].own_taps])
    sizes = [len(c) for c in new.task_classes]
    want, _ = policy_scores(
        bundle.policy, out["task_logits"], bundle.temperature, num_classes=sizes, stats=stats, taps=taps
    )
    tol = 1e-4 + 1e-5 * np.abs(want).max(axis=1, keepdims=True)
    diff = np.abs(out["task_confidence"] - want)
    if not np.all(diff <= tol):
        return [f"task_confidence differs from the routing contract's scores by up to {float(diff.max()):.3g}"]
    return []


def validate_patched(
    bundle: Bundle, new: NetArrays, model_bytes: bytes
) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """ONNX Runtime smoke test of the new graph + earlier tasks unchanged on the bundle's probe batch.

    Returns ``(report, probe inputs, new probe outputs)``; raises :class:`PatchError` on failure.
    """
    probe = bundle.probe()
    x = probe.pop("image", None)
    if x is None:
        raise BundleError(f"{bundle.path / PROBE_FILE} has no 'image' batch; re-export the bundle")
    n_old, cmax_old = bundle.num_tasks, bundle.cmax
    if bundle.record.probe_outputs_from != "onnxruntime" or "task_logits" not in probe:
        probe = _run(_ort_session(bundle.model_path.read_bytes()), x)  # reference: the old graph, here
    try:
        sess = _ort_session(model_bytes)
        out = _run(sess, x)
    except MindEdgeError:
        raise
    except Exception as exc:
        raise PatchError(
            f"ONNX Runtime cannot run the patched model ({type(exc).__name__}: {exc}); the bundle is unchanged"
        ) from exc
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
            problems.append(
                f"earlier tasks' task_logits moved by up to {diff:.3g} on the probe batch (allowed {PROBE_ATOL:g})"
            )
        if cmax > cmax_old and not np.all(out["task_logits"][:, :n_old, cmax_old:] == np.float32(PAD_LOGIT)):
            problems.append("earlier tasks' padding logits changed")
        if get_policy(bundle.policy).needs_pool:
            problems += _pooled_score_problems(bundle, new, out)
        else:
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


def _bundle_root(bundle_dir: str | os.PathLike) -> Path:
    root = Path(bundle_dir)
    if root.is_file() and root.name in (BUNDLE_JSON, MODEL_FILE):
        root = root.parent
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a folder; pass the folder of 'mind-edge export'")
    _refuse_version_folder(root)
    return root


def _write_error(exc: OSError, root: Path, what: str, live: str | None) -> BundleError:
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    hint = {
        28: "free some space and try again",
        30: "the file system is read-only; remount it read-write",
        13: "check the folder's permissions",
        122: "the disk quota is exhausted",
    }.get(exc.errno or 0, "try again")
    return BundleError(
        f"{what} of bundle {root} failed: {reason}{where}; {hint}. The bundle is unchanged "
        f"(still at {'version ' + live if live else 'its exported version'})"
    )


def apply_patch(
    bundle_dir: str | os.PathLike,
    patch_path: str | os.PathLike,
    *,
    verify_key: str | os.PathLike | None = None,
    keep: int = 2,
) -> ApplyResult:
    """Verify, apply and validate ``patch_path`` on the bundle in ``bundle_dir``; switch atomically.

    Nothing is written unless every check passes (see the module docstring). A signature is
    required when ``verify_key`` is given or the bundle pins trusted keys (``TRUSTED_KEYS``).
    ``keep`` versions (the live one and its predecessors) are kept.
    """
    t0 = time.perf_counter()
    if keep < 2:
        raise PatchError(f"keep must be >= 2 (the new version and the previous one, for rollback), got {keep}")
    root = _bundle_root(bundle_dir)
    trusted = trusted_keys(root, verify_key)
    patch = read_patch(patch_path, decode=False)  # bounded, streamed digest, typed header; nothing decoded
    signer = check_signature(patch, trusted)
    with locked(root):
        bundle = Bundle.load(root)
        history = [rec.to_json() for rec in bundle.record.patches]
        if any(rec.sha256 == patch.sha256 for rec in bundle.record.patches):
            raise AlreadyAppliedError(
                f"patch {patch_path} (task {patch.task}, classes {patch.class_names}) is already "
                f"applied to bundle {root} (version {bundle.version}); nothing to do"
            )
        existing = {c for cl in bundle.task_classes for c in cl}
        dup = sorted(set(patch.classes) & existing)
        if dup:
            names = [bundle.class_name(c) for c in dup]
            raise PatchError(
                f"bundle {root} already has classes {names} (ids {dup}); patch {patch_path} would add them "
                f"again as task {patch.task}. Already applied?"
            )
        # -- precision hook (issue 14): an FP16/INT8 bundle patches its FP32 weights and rebuilds its own graph
        hook = patch_hook(bundle)  # None for FP32 bundles
        if bundle.layout != "shared" and hook is None:
            raise PatchError(
                f"bundle {root} has the {bundle.layout!r} layout; patches apply to 'shared' bundles only "
                "(they store each weight once with its owner map). Re-export with --layout shared"
            )
        if patch.task != bundle.num_tasks:
            raise PatchError(
                f"patch {patch_path} adds task {patch.task} but bundle {root} holds {bundle.num_tasks} tasks; "
                f"it needs the bundle with tasks 0..{patch.task - 1} (apply patches in order)"
            )
        base = hook.base_arrays() if hook else read_arrays(bundle.model_path)  # precision hook
        fp = arrays_fingerprint(base)
        if fp != patch.base_fingerprint:
            raise PatchError(
                f"patch {patch_path} was made for another base bundle (network fingerprint "
                f"{patch.base_fingerprint[:12]}…), bundle {root} holds {fp[:12]}…; create the patch from "
                "the run this bundle was exported from"
            )
        new = apply_to_arrays(base, patch)  # header checked against the base, then the payload decoded within it
        got = arrays_fingerprint(new)
        if got != patch.header["result_fingerprint"]:
            raise PatchError(
                f"applying patch {patch_path} gives network {got[:12]}… but the patch promises "
                f"{str(patch.header['result_fingerprint'])[:12]}…; the patch is inconsistent"
            )
        hook_files, hook_meta = {}, {}
        if hook:  # precision hook: the FP16 graph / the INT8 graph re-quantized torch-free (+ master, calibration)
            model_bytes, hook_files, hook_meta = hook.rebuild(new)
        else:
            if get_policy(bundle.policy).needs_stats and not new.has_stats:
                raise PatchError(
                    f"{bundle.root} routes with {bundle.policy!r}, which needs every task's routing statistics; "
                    f"patch {patch_path} carries none (create it with this mind-edge from a run that has them)"
                )
            model_bytes = build_graph(
                new, layout="shared", temperature=bundle.temperature, opset=bundle.opset, policy=bundle.policy
            ).SerializeToString()
        report, probe_x, probe_out = validate_patched(bundle, new, model_bytes)
        report["patch"] = {"sha256": patch.sha256, "task": patch.task, "signed_by": signer}
        names = dict(bundle.class_names)
        names.update(zip(patch.classes, patch.class_names))
        plain = bundle.version is None
        previous = version_name(1) if plain else str(bundle.version)
        record = {
            "sha256": patch.sha256,
            "task": patch.task,
            "classes": patch.classes,
            "class_names": patch.class_names,
            "signed_by": signer,
            "applied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base_fingerprint": patch.base_fingerprint,
            "result_fingerprint": got,
        }
        files, meta = prepare_bundle(  # the complete new version, checked by the typed loader; nothing written yet
            new,
            layout=hook.layout if hook else "shared",
            temperature=bundle.temperature,
            class_names=names,
            mean=list(bundle.input.mean),
            std=list(bundle.input.std),
            opset=bundle.opset,
            channel_order=bundle.input.channel_order,
            model_bytes=model_bytes,
            probe_inputs=probe_x,
            probe_outputs=probe_out,
            report=report,
            source=bundle.record.source,
            extra={"base_version": previous, "patches": history + [record], **hook_meta},  # hook_meta: precision hook
            policy=bundle.policy,
        )
        files = {**files, **hook_files}  # precision hook: master.onnx, calibration.npz of an INT8 bundle
        plain_files = list(bundle.record.files) + [BUNDLE_JSON] if plain else []
        need = sum(len(b) for b in files.values()) + len(str(meta)) + (bundle.path / BUNDLE_JSON).stat().st_size
        need += sum((root / n).stat().st_size for n in plain_files)
        check_free_space(root, need, f"applying patch {patch_path}")
        crash_point("verified")

        # -- from here on the bundle folder is written; CURRENT's rename is the commit point
        created: list[Path] = []
        vdir = root / VERSIONS_DIR
        try:
            cleaned = cleanup(root, keep=keep)
            crash_point("cleaned")
            if plain:
                if not vdir.exists():
                    created.append(vdir)
                created.append(vdir / previous)
                copy_plain_to_version(root, plain_files, previous)
                crash_point("base_copied")
            new_name = version_name(max([version_num(v) for v in list_versions(root)] + [0]) + 1)
            created.append(vdir / new_name)
            write_bundle(vdir / new_name, files, meta)
            fsync_dir(vdir)
            crash_point("version_written")
            write_pointer(root, new_name)
        except OSError as exc:
            undo_uncommitted(root, created)
            raise _write_error(exc, root, f"writing the new version for patch {patch_path}", bundle.version) from None
        except BaseException:
            undo_uncommitted(root, created)
            raise
        crash_point("committed")
        try:  # committed: what follows only tidies up; a failure is logged, the update stands
            if plain:
                for i, n in enumerate(plain_files[:-1] + [BUNDLE_JSON]):
                    (root / n).unlink(missing_ok=True)
                    if i == 0:
                        crash_point("root_cleanup")
                fsync_dir(root)
                adopt_machine_local(root, vdir / previous)
            carry_timing_cache(vdir / previous, vdir / new_name)
            cleanup(root, keep=keep)
        except OSError as exc:
            log.warning(
                "patch applied (version %s is live) but tidying up %s failed: %s; the next apply or rollback "
                "removes the leftovers",
                new_name,
                root,
                exc,
            )
        crash_point("pruned")
    log.info("applied patch %s (task %d) to %s: version %s", patch.sha256[:12], patch.task, root, new_name)
    return ApplyResult(
        bundle=root,
        version=new_name,
        previous=previous,
        task=patch.task,
        classes=patch.classes,
        class_names=patch.class_names,
        patch_sha256=patch.sha256,
        signed_by=signer,
        max_abs_diff=float(report["max_abs_diff"]["task_logits_earlier_tasks"]),
        model_bytes=len(model_bytes),
        seconds=time.perf_counter() - t0,
        cleaned=cleaned,
    )


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
    with locked(root):
        _, current = resolve_version(root)
        if current is None:
            raise PatchError(
                f"bundle {root} has never been patched (no {POINTER_FILE} file); "
                "there is no earlier version to roll back to"
            )
        prev = previous_version(root, current)
        if prev is None:
            raise PatchError(
                f"version {current} of bundle {root} is the oldest one kept; there is nothing to roll back to"
            )
        if prev not in list_versions(root):
            raise PatchError(
                f"the previous version {prev} of bundle {root} is no longer kept (versions: "
                f"{', '.join(list_versions(root))}); cannot roll back"
            )
        target = Bundle.load(root / VERSIONS_DIR / prev)  # verify every hash before switching
        try:
            write_pointer(root, prev)
        except OSError as exc:
            raise _write_error(exc, root, f"rolling back to version {prev}", current) from None
        try:
            remove(root / VERSIONS_DIR / current)
            fsync_dir(root / VERSIONS_DIR)
            cleanup(root, keep=2)
        except OSError as exc:
            log.warning("rolled back to %s but removing version %s of %s failed: %s", prev, current, root, exc)
    log.info("rolled %s back from %s to %s", root, current, prev)
    return RollbackResult(bundle=root, version=prev, removed=current, num_tasks=target.num_tasks)


def bundle_status(bundle_dir: str | os.PathLike) -> dict:
    """Live version, kept versions, trusted keys and patch history of a bundle (for inspect/CLI output)."""
    root = Path(bundle_dir)
    b = Bundle.load(root, verify=False)
    keys = read_trusted_keys(b.root or root)
    return {
        "bundle": str(root),
        "version": b.version,
        "versions": list_versions(b.root or root),
        "num_tasks": b.num_tasks,
        "trusted_keys": [k for k, _ in keys],
        "patches": [rec.to_json() for rec in b.record.patches],
        "model_sha256": sha256_file(b.model_path),
    }
