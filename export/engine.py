"""TensorRT engines built on the machine that runs them (``mind-edge engine build``).

The engine is built from the bundle's **folded** graph (per-task weights with BN folded in,
the TensorRT input of the graph contract, README "Artifacts"): a ``folded`` bundle's
``model.onnx`` is used as it is; for a
``shared`` bundle the folded graph is rebuilt from the arrays stored in ``model.onnx``
(:func:`~mind_edge.runtime.graph.read_arrays` + ``build_graph(layout="folded")``).

Precision and TensorRT versions (:func:`~mind_edge.runtime.engine_fingerprint.choose_typing`):

* **TensorRT 10, weak typing** (default on 10.x): ``--fp16`` sets ``BuilderFlag.FP16``; every
  layer of the routing head (global pooling, the batched task heads, softmax over
  temperature-scaled logits, max/argmax, class gather) is pinned to FP32 with
  ``layer.precision = trt.float32`` + ``set_output_type`` and
  ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` (:func:`pin_fp32_layers`).
* **TensorRT >= 11** (or ``strongly_typed=True`` on 10.x): strongly typed network
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``), precision comes from the graph; ``--fp16``
  builds from :func:`fp16_graph`: the backbone's weights in FP16 with a ``Cast`` after the
  ``image`` input and a ``Cast`` back to FP32 before the global pooling, so the routing head
  stays FP32 and the engine's inputs/outputs keep the bundle's dtypes.

**INT8** (issue 14): explicit quantization only — TensorRT 11 removed the calibrator, and TensorRT
10 keeps Q/DQ as the INT8 path. An engine of an INT8 bundle (``mind-edge export --precision
int8``) is built from its QDQ ``model.onnx`` as it is: ``BuilderFlag.INT8`` on TensorRT 10 (weak
typing, the routing head pinned to FP32 as for FP16, and with it sub-network 0's chain when the
bundle keeps it FP32 for the routing head: :func:`fp32_chain`), the graph's own Q/DQ precision on a
strongly typed network. An FP16 bundle's engine is built from its (FP16-exact) weights read
back into the folded FP32 graph, with ``--fp16`` implied. **None of this has run on a GPU**:
it is tested with the fake tensorrt of ``tests/trt_fakes.py`` only.

``tensorrt`` is imported lazily and can be injected (``trt=``), as can the GPU query
(``gpu=``) and the device detection (``detect=``): tests drive the whole builder with a fake
module. The plan is written as ``engine-<fingerprint key>.plan`` beside ``model.onnx`` and
recorded in ``engine.json`` (:mod:`mind_edge.runtime.engine_fingerprint`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mind_edge import __version__
from mind_edge.devices.profiles import detect as detect_device
from mind_edge.errors import ConfigError, require
from mind_edge.fileio import atomic_write_bytes, sha256_bytes, sha256_file
from mind_edge.runtime import precision as prec  # its fp32_boundary/backbone_nodes, wrapped below
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.engine_fingerprint import (
    DEFAULT_WORKSPACE_MB,
    TIMING_CACHE,
    EngineError,
    EngineFingerprint,
    EngineRecord,
    GpuInfo,
    MachineInfo,
    add_record,
    choose_typing,
    import_tensorrt,
    machine_differences,
    machine_info,
    now_iso,
    prune_stale,
    read_index,
    trt_logger,
)
from mind_edge.runtime.graph import CONTRACT, build_graph, graph_meta, read_arrays
from mind_edge.runtime.precision import PrecisionError, bundle_arrays, bundle_precision, sub_network_0, to_fp16

log = logging.getLogger(__name__)

POOL_NODE = "pool"  # the GlobalAveragePool that ends the backbone (runtime/graph.py)
ENGINE_GRAPH_KEY = "mind_edge.engine_graph"
CACHE_DIR = "trt-cache"
DEFAULT_TIMING_CACHE = TIMING_CACHE
DEFAULT_OPT_BATCH = 8
DEFAULT_MAX_BATCH = 32
# ----------------------------------------------------------------------------- graphs


def _onnx():
    return require("onnx", "export", "building the TensorRT input graph")


def engine_graph(bundle: Bundle):
    """The ONNX graph (``onnx.ModelProto``) an engine of ``bundle`` is built from: the folded graph
    (an INT8 bundle: its QDQ graph as it is; an FP16 bundle: the folded graph of its weights)."""
    onnx = _onnx()
    model = onnx.load(str(bundle.model_path))
    meta = graph_meta(model)
    precision = bundle_precision(bundle)
    if precision == "int8" or (meta["layout"] == "folded" and precision == "fp32"):
        return model
    arrays = bundle_arrays(bundle) if precision != "fp32" else read_arrays(model)
    log.info("building the folded graph of %s from its shared-layout arrays (%d tasks)", bundle.path, arrays.num_tasks)
    return build_graph(
        arrays,
        layout="folded",
        temperature=float(meta["temperature"]),
        opset=bundle.opset,
        doc=f"folded for TensorRT from {bundle.model_path.name}",
    )


def fp32_boundary(model) -> str:
    """The tensor where the FP32 part (global pooling, task heads, routing head) begins."""
    try:
        return prec.fp32_boundary(model)
    except PrecisionError as exc:
        raise EngineError(str(exc)) from None


def backbone_nodes(model) -> set[str]:
    """Names of the nodes that compute the FP32 boundary tensor (everything before the pooling; the
    one definition is :func:`mind_edge.runtime.precision.backbone_nodes`)."""
    fp32_boundary(model)  # a foreign graph is an EngineError here
    return prec.backbone_nodes(model)


def fp16_graph(model):
    """A copy of the folded ``model`` whose backbone computes in FP16 (for strongly typed networks).

    :func:`mind_edge.runtime.precision.to_fp16` over the backbone: the float32 initializers only
    the backbone reads become float16; ``Cast(image -> float16)`` feeds the backbone and
    ``Cast(-> float32)`` ends it before the global pooling (and before every ``route.*`` tap that
    reads a backbone tensor), so pooling, the task heads and the routing head stay FP32, and the
    graph's inputs and outputs keep their dtypes. Integer constants (shapes, slices, pads) are
    untouched.
    """
    _onnx()
    fp32_boundary(model)  # a graph of this builder
    try:
        out = to_fp16(model)
    except PrecisionError as exc:
        raise EngineError(f"{exc} (build this bundle in fp32)") from None
    casts = sum(1 for n in out.graph.node if n.op_type == "Cast" and n.name.endswith((".to_fp16", ".to_fp32")))
    props = {p.key: p.value for p in model.metadata_props}
    props[ENGINE_GRAPH_KEY] = f'{{"precision":"fp16","fp32_from":"{POOL_NODE}","casts":{casts}}}'
    _onnx().helper.set_model_props(out, props)
    return out


# ----------------------------------------------------------------------------- TensorRT network


def _float_types(trt) -> tuple:
    return tuple(t for t in (getattr(trt, "float32", None), getattr(trt, "float16", None)) if t is not None)


def pin_fp32_layers(trt, network, boundary: str, also: Collection[str] = ()) -> list[str]:
    """Pin every layer downstream of the tensor ``boundary`` and every ``route.*`` layer (the routing
    head, wherever its taps read from) to FP32; likewise the layers named in ``also`` (an INT8
    bundle's sub-network 0, whose pooled features the routing head reads: :func:`fp32_chain`) and
    everything downstream of them.

    For TensorRT 10 weak typing: ``layer.precision = trt.float32`` and
    ``layer.set_output_type(i, trt.float32)`` on every float output, for the layers that read
    ``boundary`` and everything after them, plus the constant layers that feed only those (head
    weights, the temperature). Layers without a float output (argmax, class-table gathers, shape
    computations) are left alone. Needs ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` to be binding.
    Returns the names of the pinned layers.
    """
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    consumers: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        for j in range(layer.num_inputs):
            t = layer.get_input(j)
            if t is not None:
                consumers.setdefault(t.name, []).append(i)
    region: set[int] = set()
    # the layers reading the boundary, and every route.* layer wherever it reads from (routing taps
    # pool intermediate backbone tensors), with everything downstream of them
    also = set(also)
    stack = list(consumers.get(boundary, [])) + [
        i for i, layer in enumerate(layers) if layer.name.startswith("route.") or layer.name in also
    ]
    while stack:
        i = stack.pop()
        if i in region:
            continue
        region.add(i)
        for k in range(layers[i].num_outputs):
            stack.extend(consumers.get(layers[i].get_output(k).name, []))
    if not region:
        raise EngineError(
            f"no TensorRT layer reads the tensor {boundary!r} where the routing head begins; cannot keep the routing "
            "head in FP32 — build without --fp16, or report this with the bundle"
        )
    constant = getattr(trt.LayerType, "CONSTANT", None)
    for i, layer in enumerate(layers):
        if i in region or layer.type != constant:
            continue
        users = [u for k in range(layer.num_outputs) for u in consumers.get(layer.get_output(k).name, [])]
        if users and all(u in region for u in users):
            region.add(i)
    floats = _float_types(trt)
    pinned = []
    for i in sorted(region):
        layer = layers[i]
        outs = [k for k in range(layer.num_outputs) if layer.get_output(k).dtype in floats]
        if not outs:  # integer results (argmax indices, gathers, shape tensors): no float precision to pin
            continue
        layer.precision = trt.float32
        for k in outs:
            layer.set_output_type(k, trt.float32)
        pinned.append(layer.name)
    return pinned


def fp32_chain(bundle: Bundle, model) -> list[str]:
    """The backbone nodes an INT8 bundle keeps FP32 because the routing head reads their features
    (``precision.int8.fp32_features``: sub-network 0's chain, nodes named ``*.t0``); [] otherwise.
    Pinned with the routing head, so ``--fp16`` on such a bundle leaves them FP32 as well."""
    if bundle_precision(bundle) != "int8" or not bundle.record.precision.int8.fp32_features:
        return []
    fp32_boundary(model)  # a foreign graph is an EngineError here
    return sorted(sub_network_0(model, bundle.num_tasks))


# ----------------------------------------------------------------------------- options and result


@dataclass(frozen=True)
class EngineBuildOptions:
    """How to build: precision, memory, DLA, caches, batch profile."""

    fp16: bool = False
    int8: bool = False  # an INT8 bundle's QDQ graph (implied by the bundle's precision; issue 14)
    workspace_mb: int | None = None  # None: the detected Jetson profile's default, else DEFAULT_WORKSPACE_MB
    dla_core: int | None = None
    timing_cache: Path | None = None  # None: <bundle>/trt-cache/timing.cache
    use_timing_cache: bool = True
    strongly_typed: bool | None = None  # None: by TensorRT version (10: weak, >= 11: strong)
    min_batch: int = 1
    opt_batch: int | None = None  # None: the device profile's default batch, else DEFAULT_OPT_BATCH
    max_batch: int | None = None  # None: max(DEFAULT_MAX_BATCH, opt)
    force: bool = False  # rebuild even when an engine with the same fingerprint exists
    verbose: bool = False

    def check(self) -> None:
        for name in ("workspace_mb", "opt_batch", "max_batch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {v!r}")
        if isinstance(self.min_batch, bool) or not isinstance(self.min_batch, int) or self.min_batch < 1:
            raise ConfigError(f"min batch must be a positive integer, got {self.min_batch!r}")
        if self.dla_core is not None and (
            isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int) or self.dla_core < 0
        ):
            raise ConfigError(f"--dla must be a DLA core number >= 0, got {self.dla_core!r}")


@dataclass(frozen=True)
class EngineBuildResult:
    path: Path  # the plan file
    record: EngineRecord
    reused: bool  # an engine with the same fingerprint existed and was kept
    seconds: float
    pinned_fp32_layers: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def fingerprint(self) -> EngineFingerprint:
        return self.record.fingerprint

    def summary(self) -> dict[str, Any]:
        return {
            "engine": str(self.path),
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "bytes": self.record.bytes,
            "sha256": self.record.sha256,
            "fingerprint": self.fingerprint.to_json(),
            "key": self.fingerprint.key(),
            "pinned_fp32_layers": len(self.pinned_fp32_layers),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- defaults


def device_defaults(detect: Callable[[], Any] | None = None) -> tuple[int | None, int | None, str | None]:
    """``(workspace_mb, batch, profile name)`` of the detected Jetson, or ``(None, None, None)``."""
    try:
        detection = (detect or detect_device)()
    except Exception as exc:  # noqa: BLE001 - detection is advisory: never fail a build on it, whatever it raises
        log.debug("device detection failed: %s", exc)
        return None, None, None
    profile = getattr(detection, "profile", None)
    if profile is None or getattr(profile, "kind", None) != "jetson":
        return None, None, None
    d = profile.defaults
    return (int(d.workspace_mb) if d.workspace_mb else None, int(d.batch) if d.batch else None, profile.name)


def resolve_options(
    options: EngineBuildOptions, detect: Callable[[], Any] | None = None
) -> tuple[EngineBuildOptions, list[str]]:
    """Fill in the workspace and the batch profile (device profile defaults on a Jetson)."""
    options.check()
    notes = []
    ws, batch, profile = (
        device_defaults(detect) if (options.workspace_mb is None or options.opt_batch is None) else (None, None, None)
    )
    workspace = options.workspace_mb or ws or DEFAULT_WORKSPACE_MB
    if options.workspace_mb is None:
        notes.append(f"workspace {workspace} MB ({'device profile ' + profile if ws else 'default'})")
    opt = options.opt_batch or max(batch or DEFAULT_OPT_BATCH, options.min_batch)
    mx = options.max_batch or max(DEFAULT_MAX_BATCH, opt)
    lo = options.min_batch
    if options.dla_core is not None:
        if (lo, opt, mx) != (opt, opt, opt):
            notes.append(f"DLA engines use a static batch: profile fixed at {opt} (inputs are padded/split)")
        lo = mx = opt
    if not lo <= opt <= mx:
        raise ConfigError(f"the batch profile needs min <= opt <= max, got {lo} <= {opt} <= {mx}")
    return replace(options, workspace_mb=workspace, opt_batch=opt, max_batch=mx, min_batch=lo), notes


# ----------------------------------------------------------------------------- build


def _parse_errors(parser) -> str:
    errs = []
    for i in range(int(getattr(parser, "num_errors", 0))):
        e = parser.get_error(i)
        errs.append(" ".join(str(e).split()))
    return "; ".join(errs) or "no details from the parser"


def _host_bytes(mem) -> bytes:
    return bytes(memoryview(mem))


def build_engine(
    bundle: Bundle | str | Path,
    options: EngineBuildOptions = EngineBuildOptions(),
    *,
    trt: Any = None,
    gpu: GpuInfo | Callable[[], GpuInfo] | None = None,
    detect: Callable[[], Any] | None = None,
) -> EngineBuildResult:
    """Build (or reuse) the TensorRT engine of ``bundle`` on this machine; see the module docstring."""
    t0 = time.perf_counter()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    trt = trt if trt is not None else import_tensorrt()
    machine: MachineInfo = machine_info(trt, gpu)
    opts, notes = resolve_options(options, detect)
    fp16 = opts.fp16
    bundle_prec = bundle_precision(bundle)
    int8 = opts.int8 or bundle_prec == "int8"
    if int8 and bundle_prec != "int8":
        raise EngineError(
            f"bundle {bundle.path} is {bundle_prec}; INT8 engines are built from an INT8 bundle's QDQ graph "
            "(explicit quantization, TensorRT has no calibrator path here): export it with "
            "'mind-edge export RUN --precision int8' and build from that bundle"
        )
    if bundle_prec == "int8":
        notes.append("INT8 bundle: QDQ graph (explicit quantization)")
    if bundle_prec == "fp16" and not fp16:
        fp16 = True
        notes.append("FP16 bundle: --fp16 implied")
    if opts.dla_core is not None and not fp16 and not int8:
        fp16 = True
        notes.append("DLA runs FP16 (or INT8) only: --dla implies --fp16")
    typing = choose_typing(machine.tensorrt_version, fp16=fp16 or int8, strongly_typed=opts.strongly_typed)
    if opts.dla_core is not None and typing == "strong":
        raise EngineError(
            f"DLA engines are built with TensorRT 10's builder flags (FP16 + GPU fallback); TensorRT "
            f"{machine.tensorrt_version} with a strongly typed network is not supported for DLA by this mind-edge — "
            "drop --dla (GPU engine) or --strongly-typed"
        )
    fp = EngineFingerprint(
        tensorrt_version=machine.tensorrt_version,
        gpu_name=machine.gpu_name,
        compute_capability=machine.compute_capability,
        precision="int8" if int8 else "fp16" if fp16 else "fp32",
        typing=typing,
        dla_core=opts.dla_core,
        workspace_mb=int(opts.workspace_mb),
        model_sha256=bundle.model_sha256,
        min_batch=opts.min_batch,
        opt_batch=int(opts.opt_batch),
        max_batch=int(opts.max_batch),
    )
    plan_path = bundle.path / fp.plan_name
    if not opts.force:
        for rec in read_index(bundle.path):
            if rec.file == fp.plan_name and plan_path.is_file() and sha256_file(plan_path) == rec.sha256:
                log.info("engine %s already built for this fingerprint; reusing it (--force rebuilds)", plan_path)
                return EngineBuildResult(plan_path, rec, True, time.perf_counter() - t0, (), tuple(notes + ["reused"]))

    model = engine_graph(bundle)
    boundary = fp32_boundary(model)
    graph_note = "folded model.onnx" if bundle.layout == "folded" else "folded graph rebuilt from the shared model.onnx"
    if int8:
        graph_note = "QDQ model.onnx of the INT8 bundle (routing head FP32)"
    elif bundle_prec == "fp16":
        graph_note = "folded graph of the FP16 bundle's weights"
    if fp16 and typing == "strong" and not int8:
        model = fp16_graph(model)
        graph_note += ", FP16 backbone casts (routing head FP32)"
    model_bytes = model.SerializeToString()
    c, h, w = bundle.input.shape
    name = bundle.input.name

    logger = trt_logger(trt, opts.verbose)
    builder = trt.Builder(logger)
    flags = 0
    if typing == "strong":
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:  # TensorRT 11 is always strongly typed; the flag is accepted there too
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        raise EngineError(
            f"TensorRT {machine.tensorrt_version}'s ONNX parser rejected the graph of {bundle.path}: "
            f"{_parse_errors(parser)}"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(name, (opts.min_batch, c, h, w), (int(opts.opt_batch), c, h, w), (int(opts.max_batch), c, h, w))
    config.add_optimization_profile(profile)
    pinned: list[str] = []
    if (fp16 or int8) and typing == "weak":
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)  # TensorRT 10: Q/DQ layers need the INT8 flag
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        chain = fp32_chain(bundle, model)
        pinned = pin_fp32_layers(trt, network, boundary, also=chain)
        notes.append(
            f"{len(pinned)} routing-head layers pinned to FP32"
            + (f" (with sub-network 0's {len(chain)} layers: the routing head reads its features)" if chain else "")
        )
    if opts.dla_core is not None:
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if opts.dla_core >= cores:
            raise EngineError(
                f"--dla {opts.dla_core} asked for, but this device has {cores} DLA core(s)"
                + (f" (0..{cores - 1})" if cores else " (Orin Nano has none)")
                + "; drop --dla or pick another core"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_path = None
    if opts.use_timing_cache:
        cache_path = Path(opts.timing_cache) if opts.timing_cache is not None else bundle.path / DEFAULT_TIMING_CACHE
        previous = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(previous)
        if cache is None or config.set_timing_cache(cache, ignore_mismatch=False) is False:
            log.warning(
                "TensorRT did not accept the timing cache %s (another device or version?); starting a new one",
                cache_path,
            )
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    log.info(
        "building a %s engine of %s with TensorRT %s (%s typing, workspace %d MB) — this can take minutes",
        fp.precision,
        bundle.path,
        machine.tensorrt_version,
        typing,
        opts.workspace_mb,
    )
    t_build = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_seconds = time.perf_counter() - t_build
    if plan is None:
        raise EngineError(
            f"TensorRT {machine.tensorrt_version} could not build the {fp.precision} engine of {bundle.path} "
            f"(the builder returned nothing; run with --verbose for its log). If it ran out of memory, try another "
            f"--workspace (now {opts.workspace_mb} MB) or a smaller --max-batch (now {opts.max_batch})"
        )
    data = _host_bytes(plan)
    if cache_path is not None:
        try:
            atomic_write_bytes(cache_path, _host_bytes(config.get_timing_cache().serialize()))
        except OSError as exc:
            log.warning("could not save the timing cache to %s: %s", cache_path, exc)
    atomic_write_bytes(plan_path, data)
    rec = EngineRecord(
        file=fp.plan_name,
        sha256=sha256_bytes(data),
        bytes=len(data),
        fingerprint=fp,
        created=now_iso(),
        info={
            "mind_edge": __version__,
            "graph": graph_note,
            "input": name,
            "profile": {
                "min": [opts.min_batch, c, h, w],
                "opt": [opts.opt_batch, c, h, w],
                "max": [opts.max_batch, c, h, w],
            },
            "timing_cache": str(cache_path) if cache_path else None,
            "build_seconds": round(build_seconds, 3),
            "pinned_fp32_layers": len(pinned),
            "graph_sha256": sha256_bytes(model_bytes),
            "outputs": list(CONTRACT.output_names),
        },
    )
    add_record(bundle.path, rec)
    stale = prune_stale(bundle.path, machine, fp.model_sha256)
    if stale:
        notes.append(f"removed {len(stale)} engine(s) built here for an earlier model: {', '.join(stale)}")
    log.info("wrote %s (%d bytes) in %.1f s", plan_path, len(data), build_seconds)
    return EngineBuildResult(plan_path, rec, False, time.perf_counter() - t0, tuple(pinned), tuple(notes))


def engine_table_rows(bundle_dir: str | Path, machine: MachineInfo | None) -> list[dict[str, Any]]:
    """One row per recorded engine with whether it fits ``machine`` (None: unknown here)."""
    bundle = Bundle.load(bundle_dir, verify=False)
    sha = bundle.model_sha256
    rows = []
    for rec in read_index(bundle.path):
        fp = rec.fingerprint
        why = []
        if machine is not None:
            why += machine_differences(fp.machine, machine)
        if fp.model_sha256 != sha:
            why.append("model changed since the build")
        if not (bundle.path / rec.file).is_file():
            why.append("plan file missing")
        usable = None if machine is None and not why else not why
        rows.append(
            {
                "file": rec.file,
                "precision": fp.precision,
                "typing": fp.typing,
                "dla_core": fp.dla_core,
                "batch": f"{fp.min_batch}/{fp.opt_batch}/{fp.max_batch}",
                "workspace_mb": fp.workspace_mb,
                "tensorrt": fp.tensorrt_version,
                "gpu": fp.gpu_name,
                "compute": fp.compute_capability,
                "bytes": rec.bytes,
                "created": rec.created,
                "usable": usable,
                "why": why,
            }
        )
    return rows


__all__ = [
    "EngineBuildOptions",
    "EngineBuildResult",
    "build_engine",
    "engine_graph",
    "fp16_graph",
    "fp32_boundary",
    "backbone_nodes",
    "pin_fp32_layers",
    "fp32_chain",
    "resolve_options",
    "device_defaults",
    "import_tensorrt",
    "engine_table_rows",
    "DEFAULT_TIMING_CACHE",
]
