"""The models a benchmark runs: :class:`~mind_edge.runtime.backends.ModelSource` records of graphs written
into a work folder, for a random network (:func:`synthetic_sources`) or a bundle (:func:`bundle_sources`), per
task count, graph variant and precision. Torch-free: a random network is
:func:`mind_edge.runtime.graph.random_arrays` (latency does not depend on the weight values)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.core.flops import arrays_flops, network_flops
from mind_edge.core.plan import plan_net
from mind_edge.errors import ConfigError, require
from mind_edge.runtime import precision as prec
from mind_edge.runtime.backends import ModelSource, get_backend
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.graph import (
    CONTRACT,
    LAYOUTS,
    SHORTCUTS,
    NetArrays,
    build_graph,
    graph_meta,
    random_arrays,
    read_arrays,
    subnetwork_arrays,
)

#: --precision values: the graph (ort, openvino) or engine (trt) precision of a row; bf16 is a
#: compute precision only (OpenVINO's hint on the FP32 graph; ONNX Runtime's CPU EP has no BF16 convolution)
BENCH_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class GraphVariant:
    """How the ``ort`` graph of a synthetic model is built: layout and DownsampleA form."""

    layout: str = "shared"
    shortcut: str = "conv"

    @property
    def name(self) -> str:
        return self.layout if self.shortcut == "conv" else f"{self.layout}/{self.shortcut}-shortcut"

    @classmethod
    def parse(cls, text: str) -> GraphVariant:
        """``shared``, ``folded``, ``shared/pad`` or ``folded/pad``."""
        layout, _, shortcut = text.strip().partition("/")
        shortcut = (shortcut or "conv").replace("-shortcut", "")
        if layout not in LAYOUTS or shortcut not in SHORTCUTS:
            raise ConfigError(
                f"unknown graph variant {text!r}; use one of {', '.join(LAYOUTS)}, optionally with /pad "
                "(Slice+Pad shortcuts instead of the default 1x1 selection convs)"
            )
        return cls(layout, shortcut)


def synthetic_arrays(
    net: Mapping[str, Any], num_tasks: int, classes_per_task: int, *, seed: int = 0
) -> tuple[NetArrays, str]:
    """A randomly initialised network of ``num_tasks`` tasks (torch-free; latency does not depend on the
    weight values): :func:`mind_edge.runtime.graph.random_arrays`. Returns ``(arrays, how)``."""
    classes = [list(range(classes_per_task * t, classes_per_task * (t + 1))) for t in range(num_tasks)]
    return random_arrays(net, classes, seed=seed), "mind_edge.runtime.graph.random_arrays"


def _write(path: Path, model) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return str(path)


def _needed(backends: Sequence[str]) -> set[str]:
    """The optional :class:`ModelSource` fields the backends read (``arrays_onnx``, ``split_dir``, …)."""
    return {f for b in backends for f in get_backend(b).needs}


def prepare_sources(
    workdir: Path,
    arrays: NetArrays,
    *,
    tasks: Sequence[int],
    variants: Sequence[GraphVariant],
    temperature: float,
    opset: int | None = None,
    backends: Sequence[str] = ("ort",),
    bundle: Path | None = None,
    bundle_layout: str | None = None,
) -> list[ModelSource]:
    """Write the graphs the workers need into ``workdir``: for every task count and variant
    the ``ort`` graph (the bundle's own ``model.onnx`` at its full task count), a shared graph for
    the backends that rebuild the network (``arrays_onnx``: the torch baselines) and the
    single-task graphs of ``ort-split`` (``split_dir``) when those are asked for."""
    opset = int(opset or CONTRACT.opset)
    c, h, w = int(arrays.net["in_channels"]), *(int(v) for v in arrays.net["input_size"])
    needed = _needed(backends)
    out: list[ModelSource] = []
    for k in tasks:
        sub = arrays.first_tasks(int(k))
        folder = workdir / f"tasks-{k}"
        flops = arrays_flops(sub).to_json()
        shared_path: str | None = None
        if "arrays_onnx" in needed:
            if bundle is not None and k == arrays.num_tasks and bundle_layout == "shared":
                shared_path = str(bundle / "model.onnx")
            else:
                graph = build_graph(sub, layout="shared", temperature=temperature, opset=opset)
                shared_path = _write(folder / "arrays-shared.onnx", graph)
        split_dir = None
        if "split_dir" in needed:
            split = folder / "split"
            for t in range(k):
                graph = build_graph(subnetwork_arrays(sub, t), layout="folded", temperature=temperature, opset=opset)
                _write(split / f"task-{t}.onnx", graph)
            split_dir = str(split)
        for v in variants:
            if bundle is not None and k == arrays.num_tasks and v.layout == bundle_layout and v.shortcut == "conv":
                path, bdir = str(bundle / "model.onnx"), str(bundle)
            else:
                graph = build_graph(sub, layout=v.layout, temperature=temperature, opset=opset, shortcut=v.shortcut)
                path = _write(folder / f"{v.name.replace('/', '-')}.onnx", graph)
                bdir = str(bundle) if bundle is not None and k == arrays.num_tasks else None
            out.append(
                ModelSource(
                    num_tasks=int(k),
                    onnx=path,
                    layout=v.layout,
                    variant=v.name,
                    input_shape=(c, h, w),
                    temperature=float(temperature),
                    arrays_onnx=shared_path,
                    bundle=bdir,
                    split_dir=split_dir,
                    flops=flops,
                )
            )
    return out


def synthetic_sources(
    workdir: Path,
    *,
    arch: str,
    input_shape: Sequence[int],
    tasks: Sequence[int],
    width: float = 1.0,
    classes_per_task: int = 10,
    variants: Sequence[GraphVariant] = (GraphVariant(),),
    backends: Sequence[str] = ("ort",),
    temperature: float = 1.0,
    seed: int = 0,
    precisions: Sequence[str] = ("fp32",),
    calibration_images: int = 64,
) -> tuple[list[ModelSource], dict]:
    """Sources of a randomly initialised ``arch`` network (the largest task count, subsets for the
    smaller ones: the sweep adds tasks to one network) and the model description.

    ``precisions`` adds FP16/BF16/INT8 rows (:func:`precision_sources`); the INT8 graph of a random
    network is calibrated on ``calibration_images`` seeded standard-normal inputs (the same
    distribution the timing inputs come from)."""
    if len(input_shape) != 3 or min(int(v) for v in input_shape) < 1:
        raise ConfigError(f"--input-shape must be C,H,W (e.g. 3,32,32), got {list(input_shape)}")
    if not tasks or min(tasks) < 1:
        raise ConfigError(f"--tasks must be integers >= 1, got {list(tasks)}")
    if classes_per_task < 1:
        raise ConfigError(f"--classes-per-task must be >= 1, got {classes_per_task}")
    c, h, w = (int(v) for v in input_shape)
    n = max(int(t) for t in tasks)
    net = {"arch": arch, "in_channels": c, "input_size": [h, w], "width": float(width), "capacity": max(n, 1)}
    if c not in (1, 3):
        raise ConfigError(f"--input-shape: MIND networks take 1 or 3 input channels, got {c}")
    plan_net(net)  # raises for an unknown architecture
    arrays, how = synthetic_arrays(net, n, int(classes_per_task), seed=seed)
    task_counts = sorted({int(t) for t in tasks})
    sources = prepare_sources(
        workdir, arrays, tasks=task_counts, variants=variants, temperature=temperature, backends=backends
    )
    extra = [p for p in precisions if p != "fp32"]
    if extra:
        calib = np.random.default_rng(seed + 7).standard_normal((int(calibration_images), c, h, w)).astype(np.float32)
        sources += precision_sources(
            workdir, sources, arrays, precisions=extra, calibration=calib, temperature=temperature
        )
    info = {
        "source": "synthetic",
        "weights": f"random ({how}, seed {seed})",
        "net": net,
        "precisions": list(precisions),
        "calibration": (f"{calibration_images} standard-normal inputs (seed {seed + 7})" if "int8" in extra else None),
        "classes_per_task": int(classes_per_task),
        "tasks": task_counts,
        "variants": [v.name for v in variants],
        "temperature": temperature,
        "description": f"{arch} width {width:g}, {c}x{h}x{w}, {n} tasks x {classes_per_task} classes (random weights)",
    }
    return sources, info


def _describe(b: Bundle, net: Mapping[str, Any], n: int, what: str) -> str:
    size = f"{net['in_channels']}x{net['input_size'][0]}x{net['input_size'][1]}"
    return f"bundle {b.path.name}: {net['arch']} width {net['width']:g}, {size}, {n} tasks ({what})"


def bundle_sources(
    workdir: Path,
    bundle_dir: str | os.PathLike,
    *,
    tasks: Sequence[int] | None = None,
    variants: Sequence[GraphVariant] | None = None,
    backends: Sequence[str] = ("ort",),
    precisions: Sequence[str] = ("fp32",),
) -> tuple[list[ModelSource], dict]:
    """Sources of a bundle: its own ``model.onnx`` at its task count; other task counts (the first
    k tasks) and other graph variants are rebuilt from a shared-layout bundle's arrays.

    An FP16/INT8 bundle is read through its weights (FP16 graph, INT8 master); its FP32 graph
    is rebuilt, its own ``model.onnx`` is the row of its precision. ``precisions`` adds the
    FP16/INT8 graphs of the same network (INT8 calibrated on the bundle's ``calibration.npz``,
    else on its probe batch) — :func:`precision_sources`."""
    b = Bundle.load(bundle_dir)
    n = len(b.task_classes)
    layout = b.layout
    temperature = b.temperature
    tasks = sorted({int(t) for t in (tasks or [n])})
    own = prec.bundle_precision(b)
    variants = list(variants or [GraphVariant(layout if own == "fp32" else "shared")])
    if min(tasks) < 1 or max(tasks) > n:
        raise ConfigError(f"bundle {b.path} holds {n} tasks; --tasks must lie in 1..{n}, got {tasks}")
    info = {
        "source": "bundle",
        "bundle": str(b.path),
        "layout": layout,
        "tasks": tasks,
        "temperature": temperature,
        "variants": [v.name for v in variants],
        "opset": b.opset,
        "precision": own,
        "description": f"bundle {b.path.name} ({layout} layout, {n} tasks)",
    }
    probe = b.probe().get("image")
    probe_path = None
    calib_images = prec.bundle_calibration(b)
    if calib_images is not None:  # real images of the run (the probe batch is half random-normal inputs)
        probe_path = str(workdir / "probe.npy")
        np.save(probe_path, np.ascontiguousarray(calib_images[:32], dtype=np.float32))
        info["probe"] = f"the first {min(32, calib_images.shape[0])} of the bundle's calibration images"
    elif probe is not None:
        probe_path = str(workdir / "probe.npy")
        np.save(probe_path, np.ascontiguousarray(probe, dtype=np.float32))
        info["probe"] = f"the bundle's probe batch ({probe.shape[0]} images)"
    if own != "fp32" or any(p != "fp32" for p in precisions):
        arrays = prec.bundle_arrays(b)
        info["net"] = dict(arrays.net)
        info["description"] = _describe(b, arrays.net, n, f"{own} bundle")
        reuse = own == "fp32" and layout == "shared"
        srcs = prepare_sources(
            workdir,
            arrays,
            tasks=tasks,
            variants=variants,
            temperature=temperature,
            opset=b.opset,
            backends=backends,
            bundle=b.path,
            bundle_layout=layout if reuse else None,
        )
        calib, note = calib_images, "the bundle's calibration.npz"
        if calib is None:
            calib, note = probe, "the bundle's probe batch (the bundle has no calibration.npz)"
        srcs = [replace(sr, probe=probe_path) for sr in srcs]
        srcs += precision_sources(
            workdir,
            srcs,
            arrays,
            precisions=[p for p in precisions if p != "fp32"],
            calibration=calib,
            temperature=temperature,
            opset=b.opset,
            own={own: str(b.model_path)} if own != "fp32" else None,
        )
        info["precisions"] = list(precisions)
        info["calibration"] = note if "int8" in precisions else None
        return srcs, info
    if layout == "shared":
        arrays = read_arrays(b.model_path)
        info["net"] = dict(arrays.net)
        info["description"] = _describe(b, arrays.net, n, f"{layout} layout")
        srcs = prepare_sources(
            workdir,
            arrays,
            tasks=tasks,
            variants=variants,
            temperature=temperature,
            opset=b.opset,
            backends=backends,
            bundle=b.path,
            bundle_layout=layout,
        )
        return [replace(sr, probe=probe_path) for sr in srcs], info
    # a folded bundle cannot be read back into arrays: only its own graph at its own task count
    if tasks != [n] or any(v.layout != layout or v.shortcut != "conv" for v in variants):
        raise ConfigError(
            f"bundle {b.path} has the {layout} layout, which cannot be rebuilt for other task counts or "
            f"layouts; benchmark it as it is (--tasks {n}) or export it with --layout shared"
        )
    onnx = require("onnx", "ort", "reading a bundle's graph metadata")
    meta = graph_meta(onnx.load(str(b.model_path), load_external_data=False))
    info["net"] = meta["net"]
    flops = network_flops(meta["net"], [len(c) for c in b.task_classes]).to_json()
    src = ModelSource(
        num_tasks=n,
        onnx=str(b.model_path),
        layout=layout,
        variant=layout,
        input_shape=tuple(b.input.shape),
        temperature=temperature,
        arrays_onnx=None,
        bundle=str(b.path),
        split_dir=None,
        flops=flops,
        probe=probe_path,
    )
    return [src], info


def precision_sources(
    workdir: Path,
    base: Sequence[ModelSource],
    arrays: NetArrays,
    *,
    precisions: Sequence[str],
    calibration: np.ndarray | None,
    temperature: float,
    opset: int | None = None,
    own: Mapping[str, str] | None = None,
) -> list[ModelSource]:
    """FP16 / BF16 / INT8 rows of the same network, one per task count of ``base`` (its first
    variant): ``fp16`` the FP16 graph, ``int8`` the INT8 QDQ graph calibrated on ``calibration``
    (normalised float32 NCHW), ``bf16`` the FP32 graph (a compute precision: OpenVINO's hint).
    ``own`` maps a precision to a graph that already exists (a precision bundle's model.onnx)."""
    out: list[ModelSource] = []
    for k in sorted({s.num_tasks for s in base}):
        first = next(s for s in base if s.num_tasks == k)
        sub = arrays.first_tasks(k)
        for p in precisions:
            if p not in BENCH_PRECISIONS:
                raise ConfigError(f"unknown precision {p!r}; choose from {', '.join(BENCH_PRECISIONS)}")
            if p == "bf16":
                out.append(replace(first, precision="bf16", variant=f"{first.variant}"))
                continue
            if own and p in own and k == arrays.num_tasks:
                path = own[p]
            elif p == "fp16":
                path = _write(
                    workdir / f"tasks-{k}" / "fp16.onnx", prec.fp16_model(sub, temperature=temperature, opset=opset)
                )
            else:
                if calibration is None:
                    raise ConfigError("the INT8 rows need calibration images; none are available for this model")
                path = _write(
                    workdir / f"tasks-{k}" / "int8.onnx",
                    prec.int8_model(sub, calibration, temperature=temperature, opset=opset),
                )
            variant = "shared fp16" if p == "fp16" else "int8 per-task QDQ"
            out.append(
                replace(first, onnx=path, precision=p, variant=variant, layout="shared" if p == "fp16" else "folded")
            )
    return out
