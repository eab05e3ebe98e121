"""Fidelity validation of an exported graph against the PyTorch model.

Checks, all of them run and every failure collected:

1. ``onnx.checker.check_model(full_check=True)`` (structure, types, shape inference);
2. ONNX Runtime (CPU) vs ``MindNet.forward_all`` + ``mind_edge.routing.route`` on every input
   set (the run's test data, seeded random inputs): every element of ``task_logits``,
   ``task_confidence`` and ``confidence`` within ``|Δ| <= atol`` or ``|Δ| <= rtol * |ref|``
   (Polygraphy's rule; ``rtol=0`` makes it a pure absolute check — two float32
   implementations of a deep network differ by ~1e-6 of the logits' magnitude, so logits of
   ~100 differ by ~1e-4 even when both are equally close to float64), 100 % agreement on
   ``label`` and ``task``; max |Δ| and max relative Δ are reported either way;
3. the file size against what the layout should store (:func:`expected_bytes`).

A failing check raises :class:`~mind_edge.export.errors.ExportValidationError` listing all of
them; the report (a JSON-ready dict) is saved in the bundle as ``validation.json``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Mapping

import numpy as np

from mind_edge import __version__
from mind_edge.core.routing import get_policy
from mind_edge.errors import MindEdgeError, require
from mind_edge.export.errors import ExportValidationError
from mind_edge.runtime.graph import CONTRACT, NetArrays, expected_bytes, resolve_policy
from mind_edge.runtime.sessions import cpu_session

log = logging.getLogger(__name__)

FLOAT_OUTPUTS = ("task_logits", "task_features", "task_confidence", "confidence")
INT_OUTPUTS = ("label", "task")
SIZE_SLACK_RATIO = 0.02  # graph structure on top of the initializers: a few KB ...
SIZE_SLACK_BYTES = 256 * 1024  # ... whatever the width


def torch_outputs(
    model, x: np.ndarray, temperature: float, batch_size: int = 128, policy: str | None = "auto"
) -> dict[str, np.ndarray]:
    """What the graph must compute, from the PyTorch model (eval mode, its own device), routing
    with ``policy`` (``auto``: :func:`mind_edge.routing.resolve_model_policy`).

    Runs on a copy of the model in channels-last memory format (oneDNN's fast path on CPUs,
    ~1.6x faster for ResNet-32; the user's model is left untouched).
    """
    torch = require("torch", "train", "comparing an export with its PyTorch model")
    # the torch side of the routing, here so that importing this module (quantize does) needs no torch
    from mind_edge.routing import model_outputs, resolve_model_policy, torch_stats  # noqa: PLC0415 - torch side

    ref = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    device = next(ref.parameters()).device
    policy = resolve_model_policy(ref, policy)
    stats = torch_stats(ref.routing_stats(), device) if all(h.routing.ready for h in ref.heads) else None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in CONTRACT.output_names}
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)
            out = model_outputs(ref, xb.contiguous(memory_format=torch.channels_last), temperature, policy, stats)
            for k in parts:
                parts[k].append(out[k].detach().cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def ort_session(model_bytes: bytes):
    return cpu_session(model_bytes, what="validating an export with ONNX Runtime")


def ort_outputs(session, x: np.ndarray, batch_size: int = 128) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for i in range(0, x.shape[0], batch_size):
        for k, v in zip(names, session.run(names, {CONTRACT.input_name: x[i : i + batch_size]})):
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def compare(
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    atol: float = CONTRACT.atol,
    rtol: float = CONTRACT.rtol,
    scores: bool = False,
) -> dict:
    """Per output: max |Δ|, max relative Δ and out-of-tolerance count (float outputs), or
    agreement and mismatch count (int outputs).

    ``scores``: the graph routes with a score policy; its ``task_confidence`` (sums of z-normalised
    squared distances, whose float32 rounding grows with the distance) passes where |Δ| is within
    ``CONTRACT.score_rtol`` of the row's largest |score| (at least 10 z-units), and ``confidence``
    (derived from them) within ``CONTRACT.score_rtol``. Label and task must still agree 100 %."""
    out: dict[str, dict] = {}
    for k in FLOAT_OUTPUTS:
        a, b = np.asarray(ref[k], np.float64), np.asarray(got[k], np.float64)
        if a.shape != b.shape:
            out[k] = {"shape_mismatch": [list(a.shape), list(b.shape)]}
            continue
        d = np.abs(a - b)
        rel = d / np.maximum(np.abs(a), np.finfo(np.float32).tiny)
        bad = ~((d <= atol) | (d <= rtol * np.abs(a)))
        if scores and k == "task_confidence" and a.size:
            # z-units: a row's scale is its largest |score|, at least 10 (|Δ| <= 0.1 always passes)
            bad &= ~(d <= CONTRACT.score_rtol * np.maximum(np.abs(a).max(axis=1, keepdims=True), 10.0))
        elif scores and k == "confidence":
            bad &= ~(d <= CONTRACT.score_rtol)
        out[k] = {
            "max_abs_diff": float(d.max()) if d.size else 0.0,
            "max_rel_diff": float(rel.max()) if d.size else 0.0,
            "out_of_tolerance": int(bad.sum()),
            "max_abs_ref": float(np.abs(a).max()) if d.size else 0.0,
            "nonfinite": int((~np.isfinite(b)).sum()),
        }
    for k in INT_OUTPUTS:
        a, b = np.asarray(ref[k]), np.asarray(got[k])
        if a.shape != b.shape:
            out[k] = {"shape_mismatch": [list(a.shape), list(b.shape)]}
            continue
        bad = np.flatnonzero(a != b)
        out[k] = {
            "agreement": float(1.0 - bad.size / max(a.size, 1)),
            "mismatches": int(bad.size),
            "first_mismatches": [int(i) for i in bad[:5]],
        }
    return out


def validate_export(
    model,
    model_bytes: bytes,
    arrays: NetArrays,
    *,
    layout: str,
    temperature: float,
    atol: float,
    rtol: float = CONTRACT.rtol,
    input_sets: Mapping[str, np.ndarray],
    input_notes: Mapping[str, str] | None = None,
    raise_on_failure: bool = True,
    policy: str = "auto",
) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Run every check; returns ``(report, ort outputs per input set)`` or raises on failure.

    ``policy`` is the routing policy the graph was built with; the PyTorch reference routes with it."""
    onnx = require("onnx", "export", "validating an ONNX export")
    t0 = time.perf_counter()
    failures: list[str] = []
    report: dict = {
        "passed": False,
        "atol": atol,
        "rtol": rtol,
        "layout": layout,
        "temperature": temperature,
        "routing": resolve_policy(policy, arrays),
        "contract": {"input": CONTRACT.input_name, "outputs": list(CONTRACT.output_names), "opset": None},
    }
    # 1. checker
    try:
        proto = onnx.load_from_string(model_bytes)
        report["contract"]["opset"] = int(proto.opset_import[0].version)
        onnx.checker.check_model(proto, full_check=True)
        report["checker"] = {"ok": True, "full_check": True}
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError, shape inference and decode errors: reported
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report["checker"] = {"ok": False, "error": msg}
        failures.append(f"onnx.checker: {msg}")
    # 2. ORT vs PyTorch
    outputs: dict[str, dict[str, np.ndarray]] = {}
    try:
        session = ort_session(model_bytes)
    except MindEdgeError:  # onnxruntime missing: name the extra
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind errors share no base class: any is a failed check
        session = None
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        failures.append(f"onnxruntime could not load the graph: {msg}")
        report["onnxruntime"] = {"error": msg}
    per_output: dict[str, dict] = {k: {} for k in FLOAT_OUTPUTS + INT_OUTPUTS}
    report["inputs"] = {}
    if session is not None:
        report["providers"] = session.get_providers()
        for set_name, x in input_sets.items():
            report["inputs"][set_name] = {
                "count": int(x.shape[0]),
                "shape": list(x.shape[1:]),
                **({"source": input_notes[set_name]} if input_notes and set_name in input_notes else {}),
            }
            if x.shape[0] == 0:
                continue
            got = ort_outputs(session, x)
            outputs[set_name] = got
            ref = torch_outputs(model, x, temperature, policy=policy)
            for k, v in compare(ref, got, atol, rtol, scores=get_policy(report["routing"]).needs_stats).items():
                per_output[k][set_name] = v
        for k in FLOAT_OUTPUTS:
            for set_name, v in per_output[k].items():
                if "shape_mismatch" in v:
                    failures.append(
                        f"{k}: shape {v['shape_mismatch'][1]} instead of {v['shape_mismatch'][0]} on {set_name} inputs"
                    )
                elif v["nonfinite"]:
                    failures.append(f"{k}: {v['nonfinite']} non-finite values on {set_name} inputs")
                elif v["out_of_tolerance"]:
                    failures.append(
                        f"{k}: {v['out_of_tolerance']} values outside atol {atol:g} / rtol {rtol:g} on {set_name} "
                        f"inputs (max |Δ| {v['max_abs_diff']:.3g}, max relative Δ {v['max_rel_diff']:.3g}, "
                        f"max |reference| {v['max_abs_ref']:.3g})"
                    )
        for k in INT_OUTPUTS:
            for set_name, v in per_output[k].items():
                if "shape_mismatch" in v:
                    failures.append(
                        f"{k}: shape {v['shape_mismatch'][1]} instead of {v['shape_mismatch'][0]} on {set_name} inputs"
                    )
                elif v["mismatches"]:
                    n = report["inputs"][set_name]["count"]
                    failures.append(
                        f"{k}: {v['mismatches']} of {n} {set_name} inputs disagree "
                        f"({100 * v['agreement']:.2f}% agreement, e.g. index {v['first_mismatches'][0]})"
                    )
    report["outputs"] = per_output
    report["max_abs_diff"] = {
        k: max((v.get("max_abs_diff", float("inf")) for v in per_output[k].values()), default=None)
        for k in FLOAT_OUTPUTS
    }
    report["max_rel_diff"] = {
        k: max((v.get("max_rel_diff", float("inf")) for v in per_output[k].values()), default=None)
        for k in FLOAT_OUTPUTS
    }
    report["agreement"] = {
        k: min((v.get("agreement", 0.0) for v in per_output[k].values()), default=None) for k in INT_OUTPUTS
    }
    # 3. size
    want = expected_bytes(arrays, layout, policy)
    hi = int(want * (1 + SIZE_SLACK_RATIO) + SIZE_SLACK_BYTES)
    size_ok = want <= len(model_bytes) <= hi
    report["size"] = {"bytes": len(model_bytes), "expected_min": want, "expected_max": hi, "ok": size_ok}
    if not size_ok:
        failures.append(
            f"file size: {len(model_bytes)} bytes, expected {want}..{hi} for the {layout} layout of "
            f"{arrays.num_tasks} tasks"
        )
    report["versions"] = _versions()
    report["failures"] = failures
    report["passed"] = not failures
    report["seconds"] = round(time.perf_counter() - t0, 3)
    if failures and raise_on_failure:
        raise ExportValidationError(failures, report)
    return report, outputs


def _versions() -> dict:
    v = {"mind_edge": __version__}
    for mod in ("onnx", "onnxruntime", "torch", "numpy"):
        with contextlib.suppress(ImportError):  # pragma: no cover
            v[mod] = __import__(mod).__version__
    return v
