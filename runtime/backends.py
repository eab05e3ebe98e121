"""The one backend registry: a backend name → how to open it (torch-free).

A :class:`Backend` is registered once under its name and serves both users of backends:

* the **bundle runtime** (:func:`make_runner`, used by :class:`mind_edge.runtime.predict.Runtime`):
  ``create(model_path, ...)`` gives a not yet activated :class:`~mind_edge.runtime.runners.Runner`
  over a bundle's ``model.onnx`` — ``ort`` and ``trt`` have one (:func:`bundle_backends`);
* the **latency benchmark** (:func:`open_backend`, used by ``mind_edge.runtime.bench``):
  ``open(source, options)`` activates a runner on the files of a :class:`ModelSource` and returns
  an :class:`Opened` (the runner, what opening it cost, what it computes in).

Built in: ``ort`` (the exported graph on ONNX Runtime), ``ort-split`` (N single-task graphs +
numpy routing: the naive export), ``trt`` (a bundle's native TensorRT engine), ``openvino``
(OpenVINO's CPU plugin). The PyTorch baselines ``torch``, ``torch-loop``, ``torch-stacked`` and
``reference`` are *declared* here — so their names are valid everywhere and a machine without
PyTorch gets one clear reason — but their openers live on the torch side, in the plugin
module :data:`TORCH_PLUGIN`, which registers them when it is imported (the runtime never
imports it: the benchmark's worker imports the plugins its job names, :func:`load_plugins`).

Before a backend opens, :func:`open_backend` checks what it ``requires`` (an importable module:
:class:`BackendUnavailable` with the backend's own hint when it is missing) and the
:class:`ModelSource` fields it ``needs`` (e.g. ``ort-split`` the single-task graphs).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mind_edge.errors import ConfigError, MindEdgeError
from mind_edge.runtime.runners import OpenVinoRunner, OrtRunner, Runner, SplitOrtRunner
from mind_edge.runtime.trt_runner import TrtRunner

log = logging.getLogger(__name__)

#: the torch-side module that registers the PyTorch baselines' openers
TORCH_PLUGIN = "mind_edge.torch_backends"


class BackendUnavailable(MindEdgeError):
    """A backend cannot run here (package missing, no engine, unsupported bundle layout)."""


@dataclass(frozen=True)
class ModelSource:
    """The files a backend opens for one task count (written by the benchmark's parent, read by its workers)."""

    num_tasks: int
    onnx: str  # the graph the ``ort`` backend runs (bundle model.onnx or a built variant)
    layout: str
    variant: str  # label of this graph variant (layout, e.g. "shared"; "shared/pad-shortcut")
    input_shape: tuple[int, int, int]
    temperature: float
    arrays_onnx: str | None = None  # a shared-layout graph the torch backends rebuild the network from
    bundle: str | None = None  # bundle folder (trt engines live there)
    split_dir: str | None = None  # N single-task graphs for ort-split
    flops: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # the graph's precision (fp32 | fp16 | int8; bf16 rows run the fp32 graph)
    probe: str | None = None  # .npy of probe inputs (default: seeded random inputs)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["flops"] = dict(self.flops)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSource:
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "flops": dict(d.get("flops", {}))})


@dataclass(frozen=True)
class OpenOptions:
    """How to open a backend: intra-op threads, ONNX Runtime providers, the engine precision (trt),
    images per ONNX Runtime call (ort: ``None`` its default, ``0`` the whole batch) and the OpenVINO
    precision hint (``default`` = OpenVINO's own)."""

    threads: int | None = None
    providers: Sequence[str] | None = None
    precision: str | None = None
    sub_batch: int | None = None
    ov_hint: str | None = None


@dataclass
class Opened:
    """An activated runner plus what opening it cost."""

    runner: Any  # a mind_edge.runtime.runners.Runner
    start_s: float
    model_bytes: int
    providers: list[str]
    precision: str = "fp32"
    notes: str = ""
    variant: str = ""
    compute_precision: str | None = None  # what the backend computes in (None: = precision)


Opener = Callable[[ModelSource, OpenOptions], Opened]


@dataclass(frozen=True)
class Backend:
    """One registry entry (see the module docstring)."""

    name: str
    summary: str
    open: Opener | None = None  # None: declared, its plugin registers the opener
    create: Callable[..., Runner] | None = None  # runs a bundle in Runtime (make_runner)
    requires: str | None = None  # a module that must be importable
    missing: str = ""  # the reason given when ``requires`` is missing
    needs: Mapping[str, str] = field(default_factory=dict)  # ModelSource field -> reason when it is None
    plugin: str | None = None  # the module that registers ``open``


_REGISTRY: dict[str, Backend] = {}


def register_backend(name: str, **fields: Any) -> Backend:
    """Register backend ``name``, or update the fields of an existing entry (a plugin adding its opener)."""
    old = _REGISTRY.get(name)
    entry = replace(old, **fields) if old is not None else Backend(name=name, **fields)
    _REGISTRY[name] = entry
    return entry


def backend_names() -> tuple[str, ...]:
    """Every registered backend, in registration order."""
    return tuple(_REGISTRY)


def bundle_backends() -> tuple[str, ...]:
    """The backends :func:`make_runner` can run a bundle with."""
    return tuple(n for n, b in _REGISTRY.items() if b.create is not None)


def get_backend(name: str) -> Backend:
    b = _REGISTRY.get(name)
    if b is None:
        raise ConfigError(f"unknown backend {name!r}; choose from {', '.join(_REGISTRY)}")
    return b


def plugins_for(names: Sequence[str]) -> list[str]:
    """The plugin modules that provide the openers of ``names`` (for a worker to import)."""
    out: list[str] = []
    for n in names:
        plugin = get_backend(n).plugin
        if plugin and plugin not in out:
            out.append(plugin)
    return out


def load_plugins(modules: Sequence[str]) -> None:
    """Import plugin modules (they register their openers); one whose dependencies are missing is skipped:
    its backends then say why they are unavailable (:attr:`Backend.missing`)."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            log.debug("backend plugin %s not loaded: %s", mod, exc)


def check_available(name: str, src: ModelSource | None = None) -> Backend:
    """The entry of ``name``; :class:`BackendUnavailable` when what it requires or needs is missing."""
    b = get_backend(name)
    if b.requires and importlib.util.find_spec(b.requires) is None:
        raise BackendUnavailable(b.missing or f"{b.requires} is not installed; the {name} backend needs it")
    if src is not None:
        for attr, why in b.needs.items():
            if getattr(src, attr) is None:
                raise BackendUnavailable(why)
    return b


def open_backend(
    name: str,
    src: ModelSource,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    precision: str | None = None,
    sub_batch: int | None = None,
    ov_hint: str | None = None,
) -> Opened:
    """Open (activate) backend ``name`` on ``src``; raises :class:`BackendUnavailable` with the reason.

    ``sub_batch`` (ort only): images per ONNX Runtime call, ``0`` the whole batch, ``None`` the
    runner's default (``"auto"``: 8 on the CPU execution provider)."""
    b = check_available(name, src)
    if b.open is None:
        raise BackendUnavailable(
            f"the {name} backend is provided by the plugin {b.plugin}, which is not loaded in "
            "this process (a benchmark worker imports the plugins its job lists)"
        )
    return b.open(
        src,
        OpenOptions(threads=threads, providers=providers, precision=precision, sub_batch=sub_batch, ov_hint=ov_hint),
    )


def make_runner(
    backend: str,
    model_path: str | os.PathLike,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    precision: str | None = None,
    **options: Any,
) -> Runner:
    """A (not activated) runner of ``backend`` over the bundle's ``model_path``.

    ``ort``: ONNX Runtime (``options`` go to :class:`OrtRunner`, e.g. ``trt_fp16``; ``precision="fp16"``
    is the same as ``trt_fp16=True``). ``trt``: the native TensorRT engine built for this machine
    beside ``model_path`` (``precision`` picks among several engines; ``options`` go to
    :class:`~mind_edge.runtime.trt_runner.TrtRunner`).
    """
    b = _REGISTRY.get(backend)
    if b is None or b.create is None:
        raise ConfigError(
            f"unknown backend {backend!r}; this mind-edge runs bundles with: {', '.join(bundle_backends())} "
            "(ort = ONNX Runtime with CPU/CUDA/TensorRT providers, trt = a TensorRT engine built with "
            "'mind-edge engine build')"
        )
    return b.create(model_path, providers=providers, threads=threads, precision=precision, **options)


# ----------------------------------------------------------------------------- built-in backends


def _ort_create(
    model_path: str | os.PathLike,
    *,
    providers: Sequence[str] | None,
    threads: int | None,
    precision: str | None,
    **options: Any,
) -> OrtRunner:
    if precision is not None:
        options.setdefault("trt_fp16", precision == "fp16")
    return OrtRunner(model_path, providers=providers, threads=threads, **options)


def _trt_create(
    model_path: str | os.PathLike,
    *,
    providers: Sequence[str] | None,
    threads: int | None,
    precision: str | None,
    **options: Any,
) -> TrtRunner:
    if providers:
        log.warning("--providers applies to ONNX Runtime only; the trt backend runs the TensorRT engine directly")
    return TrtRunner(Path(model_path).parent, precision=precision, **options)


def _ort_open(src: ModelSource, opts: OpenOptions) -> Opened:
    if src.precision == "bf16":
        raise BackendUnavailable(
            "ONNX Runtime's CPU execution provider has no BF16 convolution kernels (bf16 is a "
            "compute precision here: --backend openvino runs it)"
        )
    sub_batch = opts.sub_batch
    t0 = time.perf_counter()
    runner = OrtRunner(
        src.onnx, providers=opts.providers, threads=opts.threads, sub_batch="auto" if sub_batch is None else sub_batch
    )
    runner.activate()
    if sub_batch is None:
        variant = src.variant
    else:
        variant = f"{src.variant}, {'whole batch' if sub_batch == 0 else f'sub-batch {sub_batch}'}"
    compute = src.precision
    notes = f"{src.variant} graph, {runner.sub_batch or 'whole'} image(s) per ONNX Runtime call"
    if src.precision == "fp16" and runner.providers_used[0] == "CPUExecutionProvider":
        compute = "fp32"
        notes += "; the CPU execution provider has no FP16 convolution: it casts to FP32 (FP16-rounded weights)"
    return Opened(
        runner,
        time.perf_counter() - t0,
        Path(src.onnx).stat().st_size,
        list(runner.providers_used),
        precision=src.precision,
        notes=notes,
        variant=variant,
        compute_precision=compute,
    )


def _openvino_open(src: ModelSource, opts: OpenOptions) -> Opened:
    """OpenVINO on the CPU: hint ``default`` keeps its default precision (BF16 on CPUs with
    AVX-512 BF16/AMX), else the row's precision as ``INFERENCE_PRECISION_HINT`` (an INT8 graph
    runs with the default: its QDQ nodes make OpenVINO compute in INT8)."""
    ov_hint = None if opts.ov_hint in (None, "default") or src.precision == "int8" else src.precision
    t0 = time.perf_counter()
    runner = OpenVinoRunner(src.onnx, threads=opts.threads, precision_hint=ov_hint)
    try:
        runner.activate()
    except MindEdgeError as exc:
        raise BackendUnavailable(str(exc)) from None
    names = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
    actual = names.get(str(runner.inference_precision), runner.inference_precision)
    compute = "int8" if src.precision == "int8" else actual
    label = "default" if ov_hint is None else f"hint {ov_hint}"
    return Opened(
        runner,
        time.perf_counter() - t0,
        Path(src.onnx).stat().st_size,
        list(runner.providers_used),
        precision=src.precision if ov_hint is not None or src.precision == "int8" else "default",
        notes=f"OpenVINO CPU plugin, {label}, inference precision {runner.inference_precision}",
        variant=f"{src.variant}, {label} → {compute}",
        compute_precision=compute,
    )


def _ort_split_open(src: ModelSource, opts: OpenOptions) -> Opened:
    t0 = time.perf_counter()
    runner = SplitOrtRunner(
        src.split_dir, src.num_tasks, src.temperature, threads=opts.threads, providers=opts.providers
    )
    runner.activate()
    size = sum(p.stat().st_size for p in runner.paths)
    return Opened(
        runner,
        time.perf_counter() - t0,
        size,
        runner.providers_used,
        notes=f"{src.num_tasks} single-task folded graphs, sequential, numpy routing",
        variant="1 graph per task",
    )


def _trt_open(src: ModelSource, opts: OpenOptions) -> Opened:
    t0 = time.perf_counter()
    runner = TrtRunner(src.bundle, precision=opts.precision)
    try:
        runner.activate()
    except MindEdgeError as exc:
        raise BackendUnavailable(str(exc)) from None
    rec = runner.record
    size = (Path(src.bundle) / rec.file).stat().st_size if rec is not None and getattr(rec, "file", None) else 0
    prec = getattr(getattr(rec, "fingerprint", None), "precision", None) or opts.precision or "fp32"
    return Opened(runner, time.perf_counter() - t0, size, list(runner.providers_used), prec, variant=f"engine {prec}")


ORT_MISSING = "onnxruntime is not installed: pip install 'mind-edge[ort]'"
TORCH_MISSING = "PyTorch is not installed here (pip install 'mind-edge[train]'); the torch baselines run on a host"
TORCH_NEEDS = {
    "arrays_onnx": "the torch baselines rebuild the network from a shared-layout graph; this bundle has the "
    "folded layout (re-export with --layout shared to compare)"
}

register_backend(
    "ort",
    summary="the exported graph on ONNX Runtime (CPU/CUDA/TensorRT execution providers)",
    open=_ort_open,
    create=_ort_create,
    requires="onnxruntime",
    missing=ORT_MISSING,
)
register_backend(
    "ort-split",
    summary="N single-task graphs one after another + numpy routing (the naive export)",
    open=_ort_split_open,
    requires="onnxruntime",
    missing=ORT_MISSING,
    needs={"split_dir": "ort-split needs the single-task graphs; the parent did not write them"},
)
register_backend(
    "trt",
    summary="the bundle's native TensorRT engine built on this machine",
    open=_trt_open,
    create=_trt_create,
    requires="tensorrt",
    missing="the tensorrt Python package is not installed here (JetPack ships it; on x86 pip install "
    "tensorrt); the graph runs on ONNX Runtime instead (--backend ort)",
    needs={
        "bundle": "the trt backend runs a bundle's TensorRT engine: benchmark a bundle (mind-edge "
        "bench BUNDLE) after 'mind-edge engine build BUNDLE' on this machine"
    },
)
register_backend(
    "openvino",
    summary="OpenVINO's CPU plugin on the ONNX graph",
    open=_openvino_open,
    requires="openvino",
    missing="openvino is not installed: pip install 'mind-edge[openvino]'",
)
for _name, _summary in (
    ("torch", "eager PyTorch, the faster of torch-loop and torch-stacked per batch size"),
    ("torch-loop", "eager PyTorch, the N sub-networks one after another"),
    ("torch-stacked", "eager PyTorch, the N sub-networks stacked like the graph"),
    ("reference", "the reference implementation's per-task test loop"),
):
    register_backend(
        _name, summary=_summary, plugin=TORCH_PLUGIN, requires="torch", missing=TORCH_MISSING, needs=TORCH_NEEDS
    )


__all__ = [
    "Backend",
    "BackendUnavailable",
    "ModelSource",
    "OpenOptions",
    "Opened",
    "register_backend",
    "get_backend",
    "backend_names",
    "bundle_backends",
    "plugins_for",
    "load_plugins",
    "check_available",
    "open_backend",
    "make_runner",
    "TORCH_PLUGIN",
]
