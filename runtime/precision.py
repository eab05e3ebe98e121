"""FP16 and INT8 graphs of a mind-edge network that route like the FP32 one (torch-free).

Everything here needs numpy + onnx (+ ``onnxruntime.quantization`` for INT8), never PyTorch:
the exporter calls it on a host, ``patch apply`` calls it on a device to rebuild a patched
bundle in its own precision.

**What changes precision, what never does.** The *backbone* is every node the FP32 boundary
tensor (the input of the global pooling ``pool``) depends on, except nodes whose name starts with
``route.``. Only the backbone is converted. Everything else — the global pooling, the task heads
whose output is ``task_logits``, and every node and initializer whose name starts with
``route.`` (the routing head: temperature, softmax, max, argmax, class gather, and any routing
statistics) — stays FP32 in every precision. The rule is topological plus the ``route.`` prefix,
not a list of today's ops, so routing nodes added later stay FP32 as well.

**fp16** (:func:`fp16_model`): the shared-layout graph with the backbone's float initializers
(conv weights, BN sets, the shortcut selection weights) in float16, ``Cast(image -> float16)``
at the entry, ``Cast(-> float32)`` on every backbone tensor read outside the backbone (the
pooling input), and the owner maps packed two per byte (4 bits: owners -1..14, i.e. up to 15
tasks; more tasks keep one byte per weight) and unpacked by the graph. File ≈ 2.5 bytes per
weight instead of 5 (FP32 shared). ONNX Runtime's CPU execution provider has no FP16
convolution: it inserts casts and computes in FP32 (with the FP16-rounded weights); TensorRT,
ONNX Runtime's CUDA EP and OpenVINO compute in FP16. The bundle's weights can be read back
exactly (:func:`read_model_arrays`), so a task patch rebuilds the FP16 graph on the device.

**int8** (:func:`int8_model`): QDQ (explicit quantization: ``QuantizeLinear``/``DequantizeLinear``
pairs, the form TensorRT 10/11 and ONNX Runtime consume) made by
``onnxruntime.quantization.quantize_static``: per-channel symmetric int8 weights, asymmetric
uint8 activations (ONNX Runtime's recommendation for x86 with VNNI), MinMax calibration on the
given images. The graph quantized is the *folded* graph (BN folded into each task's weights)
rewritten **per task** (:func:`unstack_tasks`): every task is its own chain of ordinary
convolutions instead of one grouped convolution over the N stacked tasks. Two reasons, both
measured (README, benchmarks/precision.py): ONNX Runtime's int8 grouped convolution runs one
small GEMM per group (16 output channels in ResNet-32's first stage) and is slower than FP32
there, while a plain int8 convolution takes MLAS's fast symmetric indirect-convolution path;
and each activation tensor belongs to exactly one task, so its calibrated scale depends on that
task's sub-network only — adding a task (a patch) leaves every earlier task's quantized chain
bit-identical.

**Sub-network 0 stays FP32 under a feature-reading policy** (:func:`features_stay_fp32`): the
shared-space and pooled-metric policies (``shared``, ``lda``, the default ``combined``) score
every task on sub-network 0's pooled tap features, so those features decide the route like the
routing statistics do, and the rule above keeps them FP32: sub-network 0's chain is left
unquantized (1/N of the backbone). On the trained CIFAR-10/5 run this lifts the INT8 routing
agreement with FP32 from 98.4 % to 99.4 %, for a batch-64 speed-up over FP32 of 1.52x instead of
1.80x (benchmarks/results/int8-variants.json).
``export --int8-quantize-features`` quantizes it anyway; bundle.json records the choice
(``precision.int8.fp32_features``; bundles without the key quantized it), so patches re-quantize
alike.

**Masters.** An INT8 bundle keeps the FP32 shared-layout graph as ``master.onnx`` (the FP32
master weights: int8 weights cannot be turned back into them) and its calibration images as
``calibration.npz``; a patch is applied to the master and the graph re-quantized on the device
with the same images (:func:`rebuild_for_patch`). bundle.json records ``precision``.

Where the pieces live: the backbone rule and the precision metadata in
:mod:`mind_edge.runtime.precision_regions`, FP16 (and its FP32 read-back) in
:mod:`mind_edge.runtime.precision_fp16`, INT8 in :mod:`mind_edge.runtime.precision_int8`. This module
keeps the one entry point (:func:`precision_model`), reading any precision's weights back, the
bundle and patch hooks, and re-exports the public names of the other three.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.errors import ConfigError
from mind_edge.imageio import normalize
from mind_edge.runtime.bundle import prepare_bundle, write_bundle
from mind_edge.runtime.graph import NormArrays, NormSet, build_graph, read_arrays
from mind_edge.runtime.precision_fp16 import PACK_MAX_OWNER, fp16_model, fp32_view, pack_owner_maps, to_fp16
from mind_edge.runtime.precision_int8 import (
    CALIBRATION_BATCH,
    INT8_METHODS,
    Int8Options,
    check_fp32_routing,
    check_int8_method,
    features_stay_fp32,
    int8_model,
    sub_network_0,
    unstack_tasks,
)
from mind_edge.runtime.precision_regions import (
    POOL_NODE,
    PRECISION_META_KEY,
    PRECISIONS,
    ROUTE_PREFIX,
    PrecisionError,
    _onnx,
    backbone_nodes,
    check_precision,
    fp32_boundary,
    fp32_nodes,
    model_precision,
)

MASTER_FILE = "master.onnx"
CALIBRATION_FILE = "calibration.npz"
DEFAULT_CALIBRATION = 256


# ----------------------------------------------------------------------------- reading weights back


def read_model_arrays(model_or_path, master: str | os.PathLike | None = None):
    """The network arrays of a graph in any precision: FP32 shared graphs directly, FP16 through
    :func:`fp32_view`, INT8 from its FP32 master (``master``, the bundle's ``master.onnx``)."""
    onnx = _onnx()

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    p = model_precision(model)
    if p == "fp32":
        return read_arrays(model)
    if p == "fp16":
        return read_arrays(fp32_view(model))
    if master is None or not Path(master).is_file():
        raise PrecisionError(
            f"an INT8 graph cannot be read back into FP32 weights; its FP32 master ({MASTER_FILE}) "
            f"is needed and {'was not given' if master is None else str(master) + ' does not exist'} "
            "— re-export the bundle with this mind-edge"
        )
    return read_arrays(onnx.load(str(master)))


# ----------------------------------------------------------------------------- one entry point


def fp32_note(int8: Int8Options | None = None) -> str:
    """``precision.fp32`` of bundle.json: what a precision bundle keeps in FP32 (``int8``: the
    resolved options of an INT8 bundle)."""
    note = "pool, heads, task_logits and every route.* node"
    if int8 is not None and int8.fp32_features:
        note += ", sub-network 0 (the routing head reads its pooled features)"
    return note


def calibration_inputs(images_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised float32 NCHW calibration inputs from stored uint8 NHWC images."""
    return normalize(np.asarray(images_uint8, dtype=np.uint8), list(mean), list(std))


def precision_model(
    arrays,
    precision: str,
    *,
    temperature: float,
    opset: int | None = None,
    calibration: np.ndarray | None = None,
    int8: Int8Options = Int8Options(),
    layout: str = "shared",
    policy: str = "auto",
):
    """The graph of ``arrays`` in ``precision`` (``fp32`` in ``layout``), routing with ``policy``."""
    precision = check_precision(precision)
    if precision == "fp32":
        return build_graph(
            arrays, layout=layout, temperature=float(temperature), policy=policy, **({"opset": opset} if opset else {})
        )
    if precision == "fp16":
        return fp16_model(arrays, temperature=temperature, opset=opset, policy=policy)
    if calibration is None:
        raise ConfigError("an INT8 graph needs calibration images")
    return int8_model(arrays, calibration, temperature=temperature, opset=opset, options=int8, policy=policy)


def bundle_policy(bundle) -> str:
    """The routing policy a bundle's graph was built with (``auto`` for bundles that do not record it)."""
    return bundle.record.routing_policy or "auto"


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def bundle_precision(bundle) -> str:
    """The precision a bundle records (``fp32`` for bundles written before precisions existed)."""
    return bundle.record.precision.precision


def bundle_arrays(bundle):
    """The FP32 network arrays of a bundle in any precision (INT8: from ``master.onnx``)."""
    return read_model_arrays(bundle.model_path, master=bundle.path / MASTER_FILE)


def bundle_calibration(bundle) -> np.ndarray | None:
    """The normalised calibration inputs an INT8 bundle stores (``calibration.npz``), or None."""
    path = bundle.path / CALIBRATION_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
    return calibration_inputs(images, bundle.input.mean, bundle.input.std)


def int8_options(bundle) -> Int8Options:
    q = bundle.record.precision.int8
    return Int8Options(
        per_task=q.per_task,
        per_channel=q.per_channel,
        activation=q.activation,
        method=q.method,
        keep_fp32=q.keep_fp32,
        fp32_features=q.fp32_features,
    )


def rebuild_for_patch(bundle, new_arrays) -> tuple[bytes, dict[str, bytes]]:
    """The model and extra files of a patched version of a precision bundle (torch-free).

    ``new_arrays`` is the patched FP32 network (earlier tasks unchanged). FP16: the FP16 graph
    of it (earlier tasks' weights were FP16 values already, so they round to themselves). INT8:
    ``master.onnx`` = the FP32 shared graph of ``new_arrays``; ``model.onnx`` = it quantized
    again with the bundle's own calibration images and options — each task's chain is
    calibrated on its own tensors, so earlier tasks' chains come out bit-identical, and the
    result equals quantizing a fresh export of the same network with the same images.
    """
    p = bundle_precision(bundle)
    policy = bundle_policy(bundle)
    if p == "fp16":
        return fp16_model(
            new_arrays, temperature=bundle.temperature, opset=bundle.opset, policy=policy
        ).SerializeToString(), {}
    if p != "int8":
        raise PrecisionError(f"bundle {bundle.path} has precision {p!r}; nothing to rebuild")
    calib = bundle_calibration(bundle)
    if calib is None:
        raise PrecisionError(
            f"INT8 bundle {bundle.path} has no {CALIBRATION_FILE}; a patch cannot be re-quantized "
            "without calibration images — re-export the bundle with this mind-edge"
        )
    master = build_graph(new_arrays, layout="shared", temperature=bundle.temperature, opset=bundle.opset, policy=policy)
    model = int8_model(
        new_arrays,
        calib,
        temperature=bundle.temperature,
        opset=bundle.opset,
        options=int8_options(bundle),
        policy=policy,
    )
    files = {MASTER_FILE: master.SerializeToString(), CALIBRATION_FILE: (bundle.path / CALIBRATION_FILE).read_bytes()}
    return model.SerializeToString(), files


def write_precision_bundle(
    out_dir,
    arrays,
    precision: str,
    *,
    temperature: float,
    class_names,
    mean,
    std,
    calibration_images: np.ndarray | None = None,
    opset: int | None = None,
    policy: str = "auto",
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
):
    """Write an FP16/INT8 bundle of ``arrays`` torch-free (no validation against PyTorch: the
    exporter does that; for tests, benchmarks and devices that hold only arrays).
    ``calibration_images``: uint8 NHWC (INT8)."""
    precision = check_precision(precision)
    files: dict[str, bytes] = {}
    opts = Int8Options().resolve(arrays, policy) if precision == "int8" else Int8Options()
    record: dict[str, Any] = {"precision": precision, "fp32": fp32_note(opts)}
    calib = None
    if precision == "int8":
        if calibration_images is None:
            raise ConfigError("an INT8 bundle needs calibration images (uint8 NHWC)")
        calib = calibration_inputs(calibration_images, mean, std)
        record.update(
            int8=opts.to_json(),
            master=MASTER_FILE,
            calibration={
                "images": int(len(calibration_images)),
                "file": CALIBRATION_FILE,
                "method": opts.method,
                "source": "given",
            },
        )
        files[MASTER_FILE] = build_graph(
            arrays,
            layout="shared",
            temperature=float(temperature),
            policy=policy,
            **({"opset": opset} if opset else {}),
        ).SerializeToString()
        files[CALIBRATION_FILE] = npz_bytes({"images": np.ascontiguousarray(calibration_images, dtype=np.uint8)})
    model = precision_model(
        arrays,
        precision,
        temperature=temperature,
        opset=opset,
        calibration=calib,
        policy=policy,
        int8=opts,
    )
    data = model.SerializeToString()
    record["model_bytes"] = len(data)
    bundle_files, meta = prepare_bundle(
        arrays,
        layout="folded" if precision == "int8" else "shared",
        temperature=float(temperature),
        class_names=class_names,
        mean=list(mean),
        std=list(std),
        opset=opset,
        model_bytes=data,
        source=source,
        extra={"precision": record} if precision != "fp32" else None,
    )
    return write_bundle(out_dir, {**bundle_files, **files}, meta, overwrite=overwrite)


def round_like_bundle(arrays, precision: str):
    """``arrays`` as a ``precision`` bundle stores them: FP16 rounds every conv weight and BN set
    to float16 values (what :func:`read_model_arrays` reads back from an FP16 graph); FP32 and
    INT8 (whose FP32 master is exact) are returned as they are. Heads and routing statistics are
    FP32 in every precision."""
    if check_precision(precision) != "fp16":
        return arrays
    r = lambda a: np.asarray(a, np.float32).astype(np.float16).astype(np.float32)
    layers = tuple(dc_replace(x, weight=r(x.weight)) for x in arrays.layers)
    norms = tuple(
        NormArrays(x.name, tuple(NormSet(r(s.gamma), r(s.beta), r(s.mean), r(s.var), eps=s.eps) for s in x.sets))
        for x in arrays.norms
    )
    return dc_replace(arrays, layers=layers, norms=norms)


@dataclass(frozen=True)
class PatchHook:
    """What ``patch apply`` does differently for an FP16/INT8 bundle (called from runtime/patch.py).

    ``base_arrays()`` — the FP32 network the patch applies to (FP16: the exact read-back of the
    FP16 weights; INT8: ``master.onnx``); ``rebuild(new)`` — ``(model bytes, extra files, extra
    bundle.json keys)`` of the patched version in the bundle's own precision (INT8 re-quantized
    torch-free with the bundle's calibration images, see :func:`rebuild_for_patch`)."""

    bundle: Any
    precision: str

    @property
    def layout(self) -> str:
        return "folded" if self.precision == "int8" else "shared"

    def base_arrays(self):
        return bundle_arrays(self.bundle)

    def rebuild(self, new_arrays) -> tuple[bytes, dict[str, bytes], dict]:
        model_bytes, files = rebuild_for_patch(self.bundle, new_arrays)
        record = self.bundle.record.precision.to_json()
        record["model_bytes"] = len(model_bytes)
        record["rebuilt_by"] = "patch apply (mind_edge.runtime.precision.rebuild_for_patch)"
        record.pop("validation", None)  # measured against the FP32 model at export; the patch has its own report
        return model_bytes, files, {"precision": record}


def patch_hook(bundle) -> PatchHook | None:
    """The :class:`PatchHook` of an FP16/INT8 bundle, None for FP32 bundles (patched as before)."""
    p = bundle_precision(bundle)
    return None if p == "fp32" else PatchHook(bundle, p)


__all__ = [
    "write_precision_bundle",
    "fp32_note",
    "round_like_bundle",
    "PatchHook",
    "patch_hook",
    "PRECISIONS",
    "MASTER_FILE",
    "CALIBRATION_FILE",
    "DEFAULT_CALIBRATION",
    "CALIBRATION_BATCH",
    "PACK_MAX_OWNER",
    "POOL_NODE",
    "PRECISION_META_KEY",
    "ROUTE_PREFIX",
    "PrecisionError",
    "INT8_METHODS",
    "Int8Options",
    "check_int8_method",
    "features_stay_fp32",
    "sub_network_0",
    "check_precision",
    "fp32_boundary",
    "backbone_nodes",
    "fp32_nodes",
    "to_fp16",
    "pack_owner_maps",
    "fp16_model",
    "fp32_view",
    "read_model_arrays",
    "unstack_tasks",
    "int8_model",
    "check_fp32_routing",
    "precision_model",
    "model_precision",
    "bundle_policy",
    "bundle_precision",
    "bundle_arrays",
    "bundle_calibration",
    "int8_options",
    "rebuild_for_patch",
    "calibration_inputs",
    "npz_bytes",
]
