"""Export a MIND run (or a ``MindNet``) as a bundle: one ONNX graph + ``bundle.json``.

The model is converted to torch-free :class:`~mind_edge.runtime.graph.NetArrays`, the graph
is built from those arrays by :func:`~mind_edge.runtime.graph.build_graph` (the same builder a
device uses to add a task later), validated against the PyTorch model and written with
:func:`~mind_edge.runtime.bundle.write_bundle` (temporary sibling folder, then one rename).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import imageio
from mind_edge.checkpoint import CHECKPOINT, load_run
from mind_edge.core.routing import check_temperature, get_policy
from mind_edge.data import load_run_dataset
from mind_edge.errors import ConfigError, MindEdgeError, require
from mind_edge.export.arrays import arrays_from_model
from mind_edge.export.errors import ExportError
from mind_edge.export.quantize import (
    PrecisionThresholds,
    check_thresholds,
    precision_report,
    run_test_set,
)
from mind_edge.export.quantize import calibration_images as run_calibration_images
from mind_edge.export.validate import torch_outputs, validate_export
from mind_edge.fileio import sha256_file
from mind_edge.run_record import RunRecord
from mind_edge.runtime import precision as prec
from mind_edge.runtime.bundle import Bundle, names_by_id, prepare_bundle, write_bundle
from mind_edge.runtime.graph import CONTRACT, LAYOUTS, NetArrays, build_graph, resolve_policy
from mind_edge.runtime.precision import DEFAULT_CALIBRATION, check_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    bundle: Path
    layout: str
    opset: int
    num_tasks: int
    temperature: float
    model_bytes: int  # model.onnx
    expected_bytes: int  # initializer bytes the layout stores
    dense_bytes: int  # one dense fp32 sub-network (BN folded, one head) as an ONNX file
    naive_bytes: int  # N separate dense sub-networks (the alternative to one shared graph)
    report: dict = field(repr=False)  # validation report (validation.json)
    seconds: float = 0.0
    precision: str = "fp32"  # fp32 | fp16 | int8 (model.onnx's precision; issue 14)
    fp32_model_bytes: int | None = None  # the FP32 shared graph of the same network, for the size ratio

    @property
    def ratio_to_dense(self) -> float:
        return self.model_bytes / self.dense_bytes

    @property
    def passed(self) -> bool:
        return bool(self.report.get("passed"))

    def summary(self) -> dict:
        return {
            "bundle": str(self.bundle),
            "layout": self.layout,
            "opset": self.opset,
            "num_tasks": self.num_tasks,
            "temperature": self.temperature,
            "model_bytes": self.model_bytes,
            "dense_bytes": self.dense_bytes,
            "naive_bytes": self.naive_bytes,
            "ratio_to_dense": round(self.ratio_to_dense, 4),
            "validation": {
                k: self.report.get(k) for k in ("passed", "atol", "rtol", "max_abs_diff", "max_rel_diff", "agreement")
            },
            "precision": self.precision,
            **(
                {
                    "precision_validation": _precision_summary(self.report.get("precision")),
                    "fp32_model_bytes": self.fp32_model_bytes,
                }
                if self.precision != "fp32"
                else {}
            ),
            "seconds": round(self.seconds, 3),
        }


def _precision_summary(rep: dict | None) -> dict | None:
    if not rep:
        return None
    keys = (
        "label_agreement",
        "routing_agreement",
        "tag_fp32",
        "tag",
        "taw_fp32",
        "taw",
        "tag_drop_points",
        "max_abs_task_logits",
        "measured_on",
        "thresholds",
        "passed",
    )
    return {k: rep.get(k) for k in keys}


def _names_by_id(class_names: Sequence[str] | Mapping[int, str], arrays: NetArrays) -> dict[int, str]:
    return names_by_id(class_names, arrays.task_classes, ExportError)


def export_model(
    model,
    out_dir: str | Path,
    *,
    class_names: Sequence[str] | Mapping[int, str],
    mean: Sequence[float],
    std: Sequence[float],
    temperature: float,
    layout: str = "shared",
    opset: int = CONTRACT.opset,
    atol: float = CONTRACT.atol,
    rtol: float = CONTRACT.rtol,
    validation_inputs: np.ndarray | None = None,
    validation_note: str = "test data",
    random_inputs: int = 32,
    probe_size: int = 8,
    channel_order: str | None = None,
    validate: bool = True,
    source: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    seed: int = 0,
    warnings: Sequence[str] = (),
    validation_labels: np.ndarray | None = None,
    precision: str = "fp32",
    calibration_images: np.ndarray | None = None,
    calibration_note: str = "",
    thresholds: Any = None,
    routing: str = "auto",
    int8_keep_fp32: Sequence[str] = (),
    int8_method: str = "minmax",
    int8_fp32_features: bool | None = None,
) -> ExportResult:
    """Export a ``MindNet`` to a bundle in ``out_dir``; validates against the model first.

    ``validation_inputs`` (float32 NCHW, normalised) are the real inputs to compare on
    (e.g. the run's test data); ``random_inputs`` seeded standard-normal inputs are added.

    ``precision`` (issue 14): ``fp16`` or ``int8`` writes that graph as ``model.onnx`` (the FP32
    graph is validated first as always), validated against the FP32 model on the same inputs
    (``validation_labels``, the global labels of ``validation_inputs``, give TAG/TAW) and refused
    below ``thresholds`` (:class:`mind_edge.export.quantize.PrecisionThresholds`). ``int8`` needs
    ``calibration_images`` (uint8 NHWC, e.g. the run's training images) and keeps ``master.onnx``
    (the FP32 shared graph) and ``calibration.npz`` in the bundle for task patches.
    """
    precision = check_precision(precision)
    if precision == "int8" and (calibration_images is None or len(calibration_images) == 0):
        raise ConfigError("an INT8 export needs calibration images (the run's training images); none were given")
    t0 = time.perf_counter()
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not (isinstance(atol, (int, float)) and atol > 0 and math.isfinite(atol)):
        raise ConfigError(f"atol must be a finite number > 0, got {atol!r}")
    if not (isinstance(rtol, (int, float)) and rtol >= 0 and math.isfinite(rtol)):
        raise ConfigError(f"rtol must be a finite number >= 0 (0 = absolute check only), got {rtol!r}")
    temperature = check_temperature(temperature)
    require("onnx", "export", "exporting to ONNX")
    arrays = arrays_from_model(model)
    c_in = int(arrays.net["in_channels"])
    h, w = (int(v) for v in arrays.net["input_size"])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != c_in or len(std) != c_in or min(std) <= 0:
        raise ConfigError(
            f"mean and std need {c_in} value(s) (one per input channel, std > 0); got mean={mean} std={std}"
        )
    channel_order = channel_order or ("RGB" if c_in == 3 else "L")
    names = _names_by_id(class_names, arrays)

    routing = resolve_policy(routing, arrays)
    proto = build_graph(arrays, layout=layout, temperature=float(temperature), opset=opset, policy=routing)
    model_bytes = proto.SerializeToString()
    del proto

    rng = np.random.default_rng(seed)
    sets: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    if validation_inputs is not None:
        x = np.ascontiguousarray(validation_inputs, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != (c_in, h, w):
            raise ConfigError(f"validation_inputs must be [B, {c_in}, {h}, {w}] float32, got {list(x.shape)}")
        sets["test"] = x
        notes["test"] = validation_note
    sets["random"] = rng.standard_normal((int(random_inputs), c_in, h, w)).astype(np.float32)
    notes["random"] = f"standard normal, seed {seed}"

    if validate:
        report, _ = validate_export(
            model,
            model_bytes,
            arrays,
            layout=layout,
            temperature=float(temperature),
            atol=float(atol),
            rtol=float(rtol),
            input_sets=sets,
            input_notes=notes,
            policy=routing,
        )
    else:
        report = {"passed": None, "skipped": True, "reason": "exported with validate=False"}
        log.warning("export validation skipped: the bundle's agreement with the PyTorch model is unchecked")
    if warnings:
        report["warnings"] = list(warnings)

    fp32_bytes = len(model_bytes)
    bundle_layout, extra_files, extra_meta = layout, {}, {}
    if precision != "fp32":  # -- precision plumbing (issue 14): model.onnx becomes the FP16/INT8 graph
        model_bytes, bundle_layout, extra_files, extra_meta = _precision_parts(
            model,
            arrays,
            precision,
            model_bytes,
            temperature=float(temperature),
            opset=opset,
            sets=sets,
            notes=notes,
            labels=validation_labels,
            calibration_images=calibration_images,
            calibration_note=calibration_note,
            mean=mean,
            std=std,
            thresholds=thresholds,
            int8=prec.Int8Options(
                keep_fp32=tuple(int8_keep_fp32), method=int8_method, fp32_features=int8_fp32_features
            ),
            report=report,
            policy=routing,
        )

    # probe: a few real inputs (when given) and a few random ones, with the graph's outputs
    half = probe_size // 2 if "test" in sets else 0
    picks = [("test", i) for i in range(min(half, sets["test"].shape[0] if "test" in sets else 0))]
    picks += [("random", i) for i in range(min(probe_size - len(picks), sets["random"].shape[0]))]
    probe_x = np.stack([sets[s][i] for s, i in picks]) if picks else None
    probe_out = None  # prepare_bundle runs the graph on the probe with ONNX Runtime ...
    if probe_x is not None and importlib.util.find_spec("onnxruntime") is None:  # ... or, without it, PyTorch
        probe_out = torch_outputs(model, probe_x, float(temperature), policy=routing)
    # a precision bundle adds files (master graph, calibration images) beside what every bundle holds
    files, bmeta = prepare_bundle(
        arrays,
        layout=bundle_layout,
        temperature=float(temperature),
        class_names=names,
        mean=mean,
        std=std,
        opset=opset,
        channel_order=channel_order,
        model_bytes=model_bytes,
        probe_inputs=probe_x,
        probe_outputs=probe_out,
        report=report,
        source=source,
        extra=extra_meta,
        policy=routing,
    )
    path = write_bundle(out_dir, {**files, **extra_files}, bmeta, overwrite=overwrite)
    sizes = Bundle.load(path, verify=False).record.sizes
    seconds = time.perf_counter() - t0
    log.info(
        "exported %d tasks (%s layout) to %s in %.1f s: %d bytes",
        arrays.num_tasks,
        layout,
        path,
        seconds,
        len(model_bytes),
    )
    return ExportResult(
        bundle=path,
        layout=bundle_layout,
        opset=int(opset),
        num_tasks=arrays.num_tasks,
        temperature=float(temperature),
        model_bytes=len(model_bytes),
        expected_bytes=sizes["expected_bytes"],
        dense_bytes=sizes["dense_fp32_bytes"],
        naive_bytes=sizes["naive_bytes"],
        report=report,
        seconds=seconds,
        precision=precision,
        fp32_model_bytes=fp32_bytes if layout == "shared" else None,
    )


def _precision_parts(
    model,
    arrays: NetArrays,
    precision: str,
    fp32_bytes: bytes,
    *,
    temperature: float,
    opset: int,
    sets: Mapping[str, np.ndarray],
    notes: Mapping[str, str],
    labels: np.ndarray | None,
    calibration_images: np.ndarray | None,
    calibration_note: str,
    mean,
    std,
    thresholds,
    report: dict,
    policy: str = "auto",
    int8: Any = None,
) -> tuple[bytes, str, dict[str, bytes], dict]:
    """The FP16/INT8 graph, validated against the FP32 model and checked against the thresholds
    (issue 14): ``(model bytes, bundle layout, extra files, extra bundle.json keys)``."""
    t0 = time.perf_counter()
    calib = None
    if precision == "int8":
        calib = prec.calibration_inputs(calibration_images, mean, std)
    shared_fp32 = fp32_bytes
    if shared_fp32 is None or arrays is None:  # pragma: no cover
        raise ExportError("internal: no FP32 graph to derive the precision graph from")
    opts = (int8 if int8 is not None else prec.Int8Options()).resolve(arrays, policy)
    proto = prec.precision_model(
        arrays, precision, temperature=temperature, opset=opset, calibration=calib, policy=policy, int8=opts
    )
    model_bytes = proto.SerializeToString()
    build_s = time.perf_counter() - t0
    rep = precision_report(
        model,
        model_bytes,
        precision,
        temperature=temperature,
        task_classes=arrays.task_classes,
        test_x=sets.get("test"),
        test_y=labels,
        random_x=sets.get("random"),
        notes=notes,
        policy=policy,
    )
    master = build_graph(
        arrays, layout="shared", temperature=temperature, opset=opset, policy=policy
    ).SerializeToString()
    fp32_shared_len = len(master)
    rep["sizes"] = {
        "model_bytes": len(model_bytes),
        "fp32_shared_bytes": fp32_shared_len,
        "ratio_to_fp32_shared": len(model_bytes) / fp32_shared_len,
    }
    rep["build_seconds"] = round(build_s, 3)
    report["precision"] = rep
    check_thresholds(rep, thresholds if thresholds is not None else PrecisionThresholds())
    record: dict[str, Any] = {
        "precision": precision,
        "fp32": prec.fp32_note(opts if precision == "int8" else None),
        "model_bytes": len(model_bytes),
        "fp32_shared_bytes": fp32_shared_len,
        "validation": {
            k: rep.get(k)
            for k in ("label_agreement", "routing_agreement", "tag_fp32", "tag", "max_abs_task_logits", "measured_on")
        },
    }
    files: dict[str, bytes] = {}
    if precision == "fp16":
        record["graph"] = "shared layout, float16 backbone (weights, BN), owner maps 4-bit packed; FP32 routing"
        return model_bytes, "shared", files, {"precision": record}
    record["graph"] = "folded per-task chains, QDQ (per-channel int8 weights, uint8 activations); FP32 routing"
    record["int8"] = opts.to_json()
    record["calibration"] = {
        "images": int(calibration_images.shape[0]),
        "source": calibration_note,
        "file": prec.CALIBRATION_FILE,
        "method": opts.method,
    }
    record["master"] = prec.MASTER_FILE
    files[prec.MASTER_FILE] = master
    files[prec.CALIBRATION_FILE] = prec.npz_bytes({"images": np.ascontiguousarray(calibration_images, dtype=np.uint8)})
    return model_bytes, "folded", files, {"precision": record}


def run_test_inputs(record: RunRecord, num_tasks: int, max_samples: int) -> tuple[np.ndarray | None, str]:
    """Normalised test images of the run's learned tasks (evenly subsampled), or ``(None, why)``."""
    try:
        scenario = record.scenario
        _, test, _ = load_run_dataset(record)
        if record.data is None:
            raise KeyError("data")
    except (MindEdgeError, ImportError, KeyError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if max_samples == 0:
        return None, "no test samples asked for (--samples 0)"
    learned = {c for t in range(num_tasks) for c in scenario.tasks[t]}
    idx = np.flatnonzero(np.isin(test.labels, sorted(learned)))
    if idx.size == 0:
        return None, "the test split holds no image of the learned tasks"
    if idx.size > max_samples:
        idx = idx[np.linspace(0, idx.size - 1, max_samples).round().astype(np.int64)]
    x = imageio.normalize(test.images[idx], record.data.mean, record.data.std)
    return x, f"{scenario.dataset} test split, {idx.size} images of {num_tasks} learned tasks"


def export_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    layout: str = "shared",
    opset: int = CONTRACT.opset,
    atol: float = CONTRACT.atol,
    rtol: float = CONTRACT.rtol,
    temperature: float | None = None,
    validate: bool = True,
    max_test_samples: int = 256,
    random_inputs: int = 32,
    overwrite: bool = False,
    precision: str = "fp32",
    calibration: int | None = None,
    thresholds: Any = None,
    routing: str | None = None,
    int8_keep_fp32: Sequence[str] = (),
    int8_method: str = "minmax",
    int8_fp32_features: bool | None = None,
) -> ExportResult:
    """Export the run directory ``run_dir`` (checkpoint + run.json) as a bundle in ``out_dir``.

    ``temperature`` and ``routing`` (a policy of :mod:`mind_edge.core.routing`) default to the run's.

    ``precision`` ``fp16``/``int8`` (issue 14): see :func:`export_model`; ``calibration`` INT8
    calibration images drawn from the run's training split (default
    :data:`mind_edge.runtime.precision.DEFAULT_CALIBRATION`)."""
    precision = check_precision(precision)
    if calibration is not None and precision != "int8":
        raise ConfigError(f"--calibration applies to --precision int8 only (this export is {precision})")
    if int8_keep_fp32 and precision != "int8":
        raise ConfigError(f"--int8-keep-fp32 applies to --precision int8 only (this export is {precision})")
    prec.check_int8_method(int8_method)
    if int8_method != "minmax" and precision != "int8":
        raise ConfigError(f"--int8-method applies to --precision int8 only (this export is {precision})")
    if int8_fp32_features is not None and precision != "int8":
        raise ConfigError(f"--int8-quantize-features applies to --precision int8 only (this export is {precision})")
    run_dir = Path(run_dir)
    if isinstance(max_test_samples, bool) or not isinstance(max_test_samples, int) or max_test_samples < 0:
        raise ConfigError(f"the number of test samples must be an integer >= 0, got {max_test_samples!r}")
    model, record = load_run(run_dir)
    if model.num_tasks == 0:
        raise ExportError(f"run {run_dir} has no learned task yet; train at least one task before exporting")
    # the run's own temperature and policy unless asked otherwise (TrainConfig validates both)
    run_cfg = record.train
    T = check_temperature(temperature) if temperature is not None else run_cfg.temperature
    policy = get_policy(routing).name if routing not in (None, "auto") else run_cfg.routing
    if get_policy(policy).needs_stats and not all(h.routing.ready for h in model.heads):
        raise ConfigError(
            f"run {run_dir} has no routing statistics for policy {policy!r} (it was trained before they "
            f"existed); run 'mind-edge calibrate {run_dir}' first, or export with --routing maxprob"
        )
    x, note = (None, "validation disabled")
    y = calib_images = None
    calib_note = ""
    if precision == "int8":
        calib_images, calib_note = run_calibration_images(
            record, model.num_tasks, int(calibration or DEFAULT_CALIBRATION)
        )
    if validate and precision != "fp32":
        x, y, note = run_test_set(record, model.num_tasks, max_test_samples)
        if x is None:
            log.warning("cannot load the run's test data (%s); validating on random inputs only", note)
    elif validate:
        x, note = run_test_inputs(record, model.num_tasks, max_test_samples)
        if x is None:
            log.warning("cannot load the run's test data (%s); validating on random inputs only", note)
    data = record.data
    if data is None:
        raise ExportError(f'{run_dir}/run.json records no input normalisation ("data"); re-train the run')
    source = {
        "run_dir": str(run_dir),
        "run_fingerprint": sha256_file(run_dir / CHECKPOINT),
        "net": record.net.to_json(),
        "dataset": record.scenario.dataset,
        "learned_tasks": model.num_tasks,
        "run_temperature": run_cfg.temperature,
        "run_routing": policy,
    }
    result = export_model(
        model,
        out_dir,
        class_names=list(record.scenario.class_names),
        mean=list(data.mean),
        std=list(data.std),
        temperature=T,
        layout=layout,
        opset=opset,
        atol=atol,
        rtol=rtol,
        validation_inputs=x,
        validation_note=note,
        random_inputs=random_inputs,
        channel_order=data.channel_order,
        validate=validate,
        source=source,
        overwrite=overwrite,
        warnings=[f"run test data unavailable: {note}"] if validate and x is None else [],
        validation_labels=y,
        precision=precision,
        calibration_images=calib_images,
        calibration_note=calib_note,
        thresholds=thresholds,
        routing=policy,
        int8_keep_fp32=int8_keep_fp32,
        int8_method=int8_method,
        int8_fp32_features=int8_fp32_features,
    )
    return result
