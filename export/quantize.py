"""Precision exports (``mind-edge export --precision fp16|int8``): calibration data, the precision
graph, and its validation against the FP32 PyTorch model.

The graph transforms themselves are torch-free and live in :mod:`mind_edge.runtime.precision`
(a device re-quantizes a patched INT8 bundle with them). Here:

* :func:`calibration_images` — N training images of the run's learned tasks (evenly drawn over
  the training split, uint8 NHWC, the same pixels the run trained on);
* :func:`precision_report` — the precision graph on ONNX Runtime against the FP32 PyTorch model
  (``forward_all`` + ``route``) on the run's test split: label agreement, task (routing)
  agreement, TAG and TAW of both, max |Δ task_logits|, plus agreement on seeded random inputs;
* :func:`check_thresholds` — refuse a bundle whose routing agreement or TAG falls below the
  thresholds (:class:`PrecisionRefused`, one line naming the numbers; nothing is written).

Definitions (README "The algorithm, as implemented"): TAG = fraction of test images whose predicted
global label is right
(task-agnostic); TAW = fraction whose true task's head predicts the right class (task-aware);
routing agreement = fraction of images routed to the same task as the FP32 model; label
agreement = fraction with the same predicted label as the FP32 model. TAG drop is in points
(percentage points: 100 x (TAG_fp32 - TAG_precision)).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mind_edge import imageio
from mind_edge.data import load_run_dataset
from mind_edge.errors import ConfigError, MindEdgeError
from mind_edge.export.errors import ExportError
from mind_edge.export.validate import ort_outputs, ort_session, torch_outputs
from mind_edge.run_record import RunRecord
from mind_edge.runtime.routing import PAD_LOGIT

log = logging.getLogger(__name__)

DEFAULT_MIN_ROUTING_AGREEMENT = 0.99
DEFAULT_MAX_TAG_DROP = 1.0  # points


class PrecisionRefused(ExportError):
    """The FP16/INT8 graph routes too differently from the FP32 model; nothing was written."""

    def __init__(self, message: str, report: dict) -> None:
        self.report = report
        super().__init__(message)


@dataclass(frozen=True)
class PrecisionThresholds:
    """When a precision export is refused (``--min-routing-agreement``, ``--max-tag-drop``)."""

    min_routing_agreement: float = DEFAULT_MIN_ROUTING_AGREEMENT
    max_tag_drop: float = DEFAULT_MAX_TAG_DROP  # percentage points

    def __post_init__(self) -> None:
        a, d = self.min_routing_agreement, self.max_tag_drop
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
            raise ConfigError(f"--min-routing-agreement must be a fraction in 0..1 (e.g. 0.99), got {a!r}")
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 100.0:
            raise ConfigError(f"--max-tag-drop must be a number of percentage points in 0..100 (e.g. 1.0), got {d!r}")


# ----------------------------------------------------------------------------- data


def calibration_images(record: RunRecord, num_tasks: int, count: int) -> tuple[np.ndarray, str]:
    """``count`` training images (uint8 NHWC) of the run's first ``num_tasks`` tasks, evenly drawn."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"--calibration must be a number of images >= 1, got {count!r}")
    try:
        scenario = record.scenario
        train, _, _ = load_run_dataset(record)
    except (MindEdgeError, ImportError, KeyError, OSError) as exc:
        raise ExportError(
            f"INT8 calibration needs the run's training data, which cannot be loaded ({type(exc).__name__}: "
            f"{exc}); make the dataset available where run.json says, or export --precision fp16/fp32"
        ) from None
    learned = sorted({c for t in range(num_tasks) for c in scenario.tasks[t]})
    idx = np.flatnonzero(np.isin(train.labels, learned))
    if idx.size == 0:
        raise ExportError("the run's training split holds no image of its learned tasks; cannot calibrate INT8")
    if idx.size > count:
        idx = idx[np.linspace(0, idx.size - 1, count).round().astype(np.int64)]
    return (
        np.ascontiguousarray(train.images[idx], dtype=np.uint8),
        f"{scenario.dataset} training split, {idx.size} images of {num_tasks} learned tasks (evenly drawn)",
    )


def run_test_set(
    record: RunRecord, num_tasks: int, max_samples: int
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Normalised test images of the run's learned tasks (evenly drawn), their global labels and a note."""
    if max_samples == 0:
        return None, None, "no test samples asked for (--samples 0)"
    try:
        scenario = record.scenario
        _, test, _ = load_run_dataset(record)
        data = record.data
        if data is None:
            raise KeyError("data")
    except (MindEdgeError, ImportError, KeyError, OSError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    learned = {c for t in range(num_tasks) for c in scenario.tasks[t]}
    idx = np.flatnonzero(np.isin(test.labels, sorted(learned)))
    if idx.size == 0:
        return None, None, "the test split holds no image of the learned tasks"
    if idx.size > max_samples:
        idx = idx[np.linspace(0, idx.size - 1, max_samples).round().astype(np.int64)]
    x = imageio.normalize(test.images[idx], data.mean, data.std)
    return (
        x,
        np.asarray(test.labels[idx], np.int64),
        (f"{scenario.dataset} test split, {idx.size} images of {num_tasks} learned tasks"),
    )


# ----------------------------------------------------------------------------- metrics


def accuracies(out: Mapping[str, np.ndarray], labels: np.ndarray, task_classes: Sequence[Sequence[int]]) -> dict:
    """TAG, TAW and routing accuracy of graph outputs (``label``, ``task``, ``task_logits``) against true labels."""
    labels = np.asarray(labels, np.int64)
    owner = {int(c): t for t, cl in enumerate(task_classes) for c in cl}
    true_task = np.array([owner.get(int(y), -1) for y in labels], np.int64)
    logits = np.asarray(out["task_logits"], np.float32)
    taw_hits = 0
    for i, (y, t) in enumerate(zip(labels, true_task)):
        if t < 0:
            continue
        cl = task_classes[t]
        taw_hits += int(cl[int(np.argmax(logits[i, t, : len(cl)]))] == y)
    n = max(labels.size, 1)
    return {
        "tag": float(np.mean(np.asarray(out["label"]) == labels)) if labels.size else None,
        "taw": taw_hits / n if labels.size else None,
        "routing": float(np.mean(np.asarray(out["task"]) == true_task)) if labels.size else None,
    }


def routing_margins(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], floor: float = 0.01) -> dict:
    """Where routing flips: the reference's margin between its two most confident tasks
    (``task_confidence``, top-1 minus top-2) on the images routed differently, and the agreement
    on the images whose margin is at least ``floor`` (near-ties excluded)."""
    tc = np.asarray(ref["task_confidence"], np.float64)
    if tc.ndim != 2 or tc.shape[1] < 2:
        return {"floor": floor, "agreement_above_floor": None, "max_flip_margin": None, "flips": 0}
    top = np.sort(tc, axis=1)
    margin = top[:, -1] - top[:, -2]
    flip = np.asarray(ref["task"]) != np.asarray(got["task"])
    keep = margin >= floor
    return {
        "floor": floor,
        "images_above_floor": int(keep.sum()),
        "agreement_above_floor": float(1.0 - flip[keep].mean()) if keep.any() else None,
        "max_flip_margin": float(margin[flip].max()) if flip.any() else None,
        "flips": int(flip.sum()),
    }


def agreement(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict:
    """Label and task agreement and max |Δ task_logits| (padding entries excluded) of two output sets."""
    a, b = np.asarray(ref["task_logits"], np.float64), np.asarray(got["task_logits"], np.float64)

    real = a > PAD_LOGIT / 2
    d = np.abs(a - b)[real]
    n = max(int(np.asarray(ref["label"]).size), 1)
    return {
        "label": float(np.sum(np.asarray(ref["label"]) == np.asarray(got["label"])) / n),
        "task": float(np.sum(np.asarray(ref["task"]) == np.asarray(got["task"])) / n),
        "max_abs_task_logits": float(d.max()) if d.size else 0.0,
        "mean_abs_task_logits": float(d.mean()) if d.size else 0.0,
        "count": int(np.asarray(ref["label"]).size),
    }


def precision_report(
    model,
    model_bytes: bytes,
    precision: str,
    *,
    temperature: float,
    task_classes: Sequence[Sequence[int]],
    test_x: np.ndarray | None,
    test_y: np.ndarray | None,
    random_x: np.ndarray | None,
    notes: Mapping[str, str] | None = None,
    torch_ref: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    policy: str = "auto",
) -> dict:
    """The ``precision`` graph (``model_bytes``, on ONNX Runtime) against the FP32 PyTorch ``model``."""
    t0 = time.perf_counter()
    sess = ort_session(model_bytes)
    rep: dict = {"precision": precision, "reference": "FP32 PyTorch model (forward_all + route)", "inputs": {}}
    for name, x in (("test", test_x), ("random", random_x)):
        if x is None or x.shape[0] == 0:
            continue
        ref = (torch_ref or {}).get(name) or torch_outputs(model, x, float(temperature), policy=policy)
        got = ort_outputs(sess, x)
        entry = {
            "count": int(x.shape[0]),
            **({"source": notes[name]} if notes and name in notes else {}),
            "agreement": agreement(ref, got),
            "routing_margins": routing_margins(ref, got),
        }
        if name == "test" and test_y is not None:
            entry["fp32"] = accuracies(ref, test_y, task_classes)
            entry[precision] = accuracies(got, test_y, task_classes)
        rep["inputs"][name] = entry
    main = rep["inputs"].get("test") or rep["inputs"].get("random") or {}
    ag = main.get("agreement", {})
    rep["label_agreement"] = ag.get("label")
    rep["routing_agreement"] = ag.get("task")
    rep["max_abs_task_logits"] = ag.get("max_abs_task_logits")  # on the main set (random inputs: in "inputs")
    rep["routing_margins"] = main.get("routing_margins")
    test = rep["inputs"].get("test", {})
    if "fp32" in test:
        rep["tag_fp32"], rep["tag"] = test["fp32"]["tag"], test[precision]["tag"]
        rep["taw_fp32"], rep["taw"] = test["fp32"]["taw"], test[precision]["taw"]
        rep["tag_drop_points"] = 100.0 * (rep["tag_fp32"] - rep["tag"])
    rep["measured_on"] = "test" if "test" in rep["inputs"] else "random"
    rep["seconds"] = round(time.perf_counter() - t0, 3)
    return rep


def check_thresholds(rep: dict, thresholds: PrecisionThresholds) -> None:
    """Record the thresholds in ``rep``; raise :class:`PrecisionRefused` (one line) when one fails."""
    rep["thresholds"] = {
        "min_routing_agreement": thresholds.min_routing_agreement,
        "max_tag_drop_points": thresholds.max_tag_drop,
    }
    bad = []
    ra = rep.get("routing_agreement")
    if ra is not None and ra < thresholds.min_routing_agreement:
        bad.append(
            f"routing agreement {100 * ra:.2f}% < {100 * thresholds.min_routing_agreement:.2f}% "
            f"(--min-routing-agreement)"
        )
    drop = rep.get("tag_drop_points")
    if drop is not None and drop > thresholds.max_tag_drop:
        bad.append(
            f"TAG {rep['tag']:.4f} vs FP32 {rep['tag_fp32']:.4f} (-{drop:.2f} points > --max-tag-drop "
            f"{thresholds.max_tag_drop:g})"
        )
    rep["passed"] = not bad
    if bad:
        where = rep.get("measured_on", "test")
        n = rep.get("inputs", {}).get(where, {}).get("count", 0)
        rm = rep.get("routing_margins") or {}
        flips = (
            f", the flipped images' FP32 top-2 task-confidence margins are <= {rm['max_flip_margin']:.2g}"
            if rm.get("max_flip_margin") is not None
            else ""
        )
        raise PrecisionRefused(
            f"{rep['precision']} bundle refused: {'; '.join(bad)} on {n} {where} images "
            f"(label agreement {100 * (rep.get('label_agreement') or 0):.2f}%, max |Δ task_logits| "
            f"{rep.get('max_abs_task_logits') or 0:.3g}{flips}); nothing was written",
            rep,
        )
