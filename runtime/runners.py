"""Inference backends behind one small interface (Polygraphy-style runners).

A :class:`Runner` is activated once (session / engine creation), then ``infer(feed)`` maps
input names to numpy arrays and returns every output by name, then it is deactivated. The
ONNX Runtime runner is here (with its CUDA and TensorRT execution providers), with the OpenVINO
runner and :class:`SplitOrtRunner` (N single-task graphs, the naive export, for comparison); the
native TensorRT runner (``--backend trt``) lives in :mod:`mind_edge.runtime.trt_runner`. Which
name opens which runner is the backend registry's business (:mod:`mind_edge.runtime.backends`).

ONNX Runtime's TensorRT execution provider builds its own engines: they are cached in the
bundle (``<bundle>/trt-cache/ort/``: ``trt_engine_cache_enable``/``trt_engine_cache_path``,
``trt_timing_cache_enable``/``trt_timing_cache_path``), so only the first session on a machine
pays for the build. Like native engines, these caches belong to the machine and are never
copied by ``mind-edge deploy``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mind_edge.errors import ConfigError, require
from mind_edge.runtime.errors import BackendError
from mind_edge.runtime.graph import CONTRACT, graph_meta, graph_policy, read_routing_stats
from mind_edge.runtime.routing import PAD_LOGIT, class_table, get_policy, route_numpy
from mind_edge.runtime.sessions import OPTIMIZATION_LEVELS, ort_session
from mind_edge.runtime.sessions import onnxruntime as _onnxruntime

log = logging.getLogger(__name__)

ORT_TRT_CACHE = "trt-cache/ort"  # ONNX Runtime's TensorRT engine + timing caches, inside the bundle
ORT_TRT_WORKSPACE_MB = 256  # small: Jetsons share CPU and GPU memory

#: Short names accepted for ONNX Runtime execution providers.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


class Runner:
    """Base class of inference backends: ``activate`` → ``infer`` … → ``deactivate``."""

    name: str = "runner"

    def __init__(self) -> None:
        self.is_active = False

    def activate(self) -> None:
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise BackendError(
                f"runner {self.name} is not active; call activate() (or use it as a context manager) first"
            )
        return self._infer(feed)

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- to implement ---------------------------------------------------------------
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _ort():
    return _onnxruntime("running a bundle with ONNX Runtime")


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The execution providers to ask ONNX Runtime for, in order of preference.

    ``None`` picks CUDA when it is available, then CPU (TensorRT only when asked for: it builds
    an engine on the first run). Short names (``cpu``, ``cuda``, ``tensorrt``) are accepted.
    Requested providers this ONNX Runtime lacks are dropped with a warning; CPU is always the
    last fallback.
    """
    if requested is None:
        chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    else:
        if isinstance(requested, str):
            requested = [requested]
        chosen = []
        for item in requested:
            name = PROVIDER_ALIASES.get(str(item).strip().lower(), str(item).strip())
            if not name.endswith("ExecutionProvider"):
                raise ConfigError(
                    f"unknown execution provider {item!r}; use cpu, cuda, tensorrt or a full ONNX Runtime provider "
                    f"name (this ONNX Runtime has: {', '.join(available)})"
                )
            if name not in available:
                log.warning(
                    "execution provider %s is not available in this ONNX Runtime (it has: %s); skipping it",
                    name,
                    ", ".join(available),
                )
                continue
            if name not in chosen:
                chosen.append(name)
        if name_is_trt(chosen) and "CUDAExecutionProvider" in available and "CUDAExecutionProvider" not in chosen:
            chosen.append("CUDAExecutionProvider")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def name_is_trt(providers: Sequence[str]) -> bool:
    return "TensorrtExecutionProvider" in providers


def provider_options(
    providers: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None,
    fp16: bool = False,
    workspace_mb: int = ORT_TRT_WORKSPACE_MB,
    device_id: int = 0,
    dla_core: int | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> list:
    """``providers`` with ONNX Runtime provider options attached (``(name, {option: value})``).

    TensorRT EP: ``device_id``, ``trt_max_workspace_size`` (bytes), ``trt_fp16_enable``,
    ``trt_engine_cache_enable`` + ``trt_engine_cache_path`` and ``trt_timing_cache_enable`` +
    ``trt_timing_cache_path`` (both in ``cache_dir``, when given), ``trt_dla_enable`` +
    ``trt_dla_core``. CUDA EP: ``device_id``, ``arena_extend_strategy=kSameAsRequested`` (no
    power-of-two arena growth on shared-memory Jetsons), ``cudnn_conv_algo_search=HEURISTIC``
    (no exhaustive search at session start). ``overrides`` replace or add options per provider.
    """
    out: list = []
    for name in providers:
        opts: dict[str, object] = {}
        if name == "TensorrtExecutionProvider":
            opts = {
                "device_id": int(device_id),
                "trt_max_workspace_size": int(workspace_mb) << 20,
                "trt_fp16_enable": bool(fp16),
            }
            if cache_dir is not None:
                cache = str(Path(cache_dir))
                opts.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=cache,
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=cache,
                )
            if dla_core is not None:
                opts.update(trt_dla_enable=True, trt_dla_core=int(dla_core))
        elif name == "CUDAExecutionProvider":
            opts = {
                "device_id": int(device_id),
                "arena_extend_strategy": "kSameAsRequested",
                "cudnn_conv_algo_search": "HEURISTIC",
            }
        if overrides and name in overrides:
            opts.update(overrides[name])
        out.append((name, opts) if opts else name)
    return out


CPU_SUB_BATCH = 8  # images per ONNX Runtime call on the CPU execution provider (OrtRunner "auto")


class OrtRunner(Runner):
    """ONNX Runtime ``InferenceSession`` over a model file.

    ``trt_fp16`` / ``trt_workspace_mb`` / ``trt_dla_core`` configure the TensorRT execution
    provider when it is used; its engine and timing caches go to ``cache_dir`` (default:
    ``<bundle>/trt-cache/ort`` beside ``model.onnx``; ``cache_dir=False`` disables them).

    ``sub_batch`` runs a batch larger than that many images as consecutive sub-batches and
    concatenates the outputs (identical results: every output is per image). ``"auto"`` (the
    default) is :data:`CPU_SUB_BATCH` on the CPU execution provider and the whole batch on GPU
    providers; ``None`` or ``0`` always runs the whole batch. On the CPU the N task sub-networks
    make a batch's activations N times larger than one network's, and ONNX Runtime's arena keeps
    the largest it has seen: measured on ResNet-32 with 10 tasks at batch 64 (2-core EPYC,
    ``benchmarks/latency.py``, ``benchmarks/LATENCY.md``), sub-batches of 8 peak at 151 MB instead
    of 317 MB and took 450 ms instead of 407 ms in one run, 395 ms instead of 423 ms in another:
    memory bounded whatever the batch size, for a throughput within the machine's noise (±10 %).
    """

    name = "ort"

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        optimization: str = "all",
        trt_fp16: bool = False,
        trt_workspace_mb: int = ORT_TRT_WORKSPACE_MB,
        trt_dla_core: int | None = None,
        cache_dir: str | os.PathLike | None | bool = None,
        provider_overrides: Mapping[str, Mapping[str, object]] | None = None,
        sub_batch: int | str | None = "auto",
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        if not (
            sub_batch is None
            or sub_batch == "auto"
            or (isinstance(sub_batch, int) and not isinstance(sub_batch, bool) and sub_batch >= 0)
        ):
            raise ConfigError(f"sub_batch must be 'auto', None or an integer >= 0 (0 = whole batch), got {sub_batch!r}")
        self.requested_sub_batch = sub_batch
        self.sub_batch: int | None = None  # resolved at activation (needs the providers)
        self.trt_fp16 = bool(trt_fp16)
        self.trt_workspace_mb = int(trt_workspace_mb)
        self.trt_dla_core = trt_dla_core
        self.cache_dir = (
            None
            if cache_dir is False
            else Path(cache_dir)
            if cache_dir not in (None, True)
            else self.model_path.parent / ORT_TRT_CACHE
        )
        self.provider_overrides = provider_overrides
        self.requested_providers = None if providers is None else list(providers)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None (ONNX Runtime's default), got {threads!r}")
        if optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization must be all, extended, basic or none, got {optimization!r}")
        self.threads = threads
        self.optimization = optimization
        self.session = None
        self.providers_used: list[str] = []
        self.output_names: list[str] = []

    def _activate(self) -> None:
        providers = resolve_providers(self.requested_providers, _ort().get_available_providers())
        if name_is_trt(providers) and self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        with_options = provider_options(
            providers,
            cache_dir=self.cache_dir,
            fp16=self.trt_fp16,
            workspace_mb=self.trt_workspace_mb,
            dla_core=self.trt_dla_core,
            overrides=self.provider_overrides,
        )
        try:
            self.session = ort_session(
                self.model_path,
                providers=with_options,
                threads=self.threads,
                inter_threads=None if self.threads is None else 1,
                optimization=self.optimization,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise BackendError(
                f"ONNX Runtime could not load {self.model_path} with providers {providers}: {type(exc).__name__}: "
                f"{first}; check that onnxruntime is recent enough for the bundle's opset, or re-export the bundle"
            ) from exc
        self.providers_used = list(self.session.get_providers())
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.requested_sub_batch == "auto":
            self.sub_batch = CPU_SUB_BATCH if self.providers_used[0] == "CPUExecutionProvider" else None
        else:
            self.sub_batch = self.requested_sub_batch or None
        if self.requested_providers and self.providers_used[0] != providers[0]:
            log.warning("ONNX Runtime fell back from %s to %s", providers[0], self.providers_used[0])
        log.info("ONNX Runtime session on %s (providers %s)", self.model_path, self.providers_used)

    def _deactivate(self) -> None:
        self.session = None

    def variant_for(self, batch: int) -> str:
        """How a batch of ``batch`` images runs (the benchmark's ``mode`` column)."""
        s = self.sub_batch
        return f"sub-batches of {s}" if s and batch > s else "whole batch"

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self.output_names, feed)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed to run {self.model_path}: {type(exc).__name__}: {exc}") from exc

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = dict(feed)
        n = min((int(np.shape(v)[0]) for v in feed.values() if np.ndim(v) > 0), default=0)
        s = self.sub_batch
        if not s or n <= s:
            return dict(zip(self.output_names, self._run(feed)))
        parts = [self._run({k: v[i : i + s] for k, v in feed.items()}) for i in range(0, n, s)]
        return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(self.output_names)}


OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU over an ONNX model file (the peer of ``ort`` in ``mind-edge bench``).

    ``precision_hint`` ``None`` keeps OpenVINO's default (on CPUs with AVX-512 BF16 / AMX it
    computes in BF16), ``fp32``/``bf16``/``fp16`` set ``INFERENCE_PRECISION_HINT``; a QDQ (INT8)
    graph runs in INT8 through OpenVINO's low-precision transformations. ``threads`` sets
    ``INFERENCE_NUM_THREADS``. :attr:`inference_precision` is what OpenVINO chose, read back
    after compilation. Optional: ``pip install 'mind-edge[openvino]'``.
    """

    name = "openvino"

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        threads: int | None = None,
        precision_hint: str | None = None,
        device: str = "CPU",
    ) -> None:
        super().__init__()
        if precision_hint is not None and precision_hint not in OPENVINO_HINTS:
            raise ConfigError(
                f"OpenVINO precision hint must be one of {', '.join(OPENVINO_HINTS)} or None (its "
                f"default), got {precision_hint!r}"
            )
        self.model_path = Path(model_path)
        self.threads = threads
        self.precision_hint = precision_hint
        self.device = device
        self.compiled = None
        self.request = None
        self.output_names: list[str] = []
        self.inference_precision: str | None = None
        self.providers_used = [f"openvino:{device}"]

    def _activate(self) -> None:
        ov = require("openvino", "openvino", "running a bundle with OpenVINO")
        core = ov.Core()
        config: dict[str, object] = {}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.precision_hint is not None:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[self.precision_hint]
        try:
            self.compiled = core.compile_model(str(self.model_path), self.device, config)
        except Exception as exc:  # openvino raises RuntimeError subclasses
            raise BackendError(
                f"OpenVINO could not compile {self.model_path} for {self.device}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
            ) from exc
        self.request = self.compiled.create_infer_request()
        wanted = set(CONTRACT.output_names)
        names = []
        # a tensor can carry several names (e.g. after QDQ folding): prefer the contract's
        for o in self.compiled.outputs:
            all_names = set(o.get_names())
            names.append(next(iter(sorted(all_names & wanted)), o.get_any_name()))
        self.output_names = names
        try:
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            self.inference_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        except Exception:  # noqa: BLE001  # pragma: no cover - the property is missing on other devices
            self.inference_precision = None

    def _deactivate(self) -> None:
        self.request = None
        self.compiled = None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            res = self.request.infer(dict(feed))
        except Exception as exc:
            raise BackendError(f"OpenVINO failed to run {self.model_path}: {type(exc).__name__}: {exc}") from exc
        return {name: np.array(res[out], copy=True) for name, out in zip(self.output_names, self.compiled.outputs)}


class SplitOrtRunner(Runner):
    """N single-task ONNX graphs run one after another, routed in numpy (the naive export).

    ``folder`` holds ``task-0.onnx`` … ``task-{N-1}.onnx`` (folded single-task graphs); the
    routing follows the policy of those graphs and, for score policies, their statistics, so the
    outputs are those of the shared graph."""

    name = "ort-split"

    def __init__(
        self,
        folder: str | os.PathLike,
        num_tasks: int,
        temperature: float,
        *,
        threads: int | None,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.paths = [Path(folder) / f"task-{t}.onnx" for t in range(num_tasks)]
        self.runners = [OrtRunner(p, providers=providers, threads=threads) for p in self.paths]
        self.temperature = float(temperature)
        self.table: np.ndarray | None = None
        self.providers_used: list[str] = []
        self.pad = PAD_LOGIT

    def _activate(self) -> None:
        self.policy = graph_policy(self.paths[0])
        self.stats = [read_routing_stats(p)[0] for p in self.paths] if get_policy(self.policy).needs_stats else None
        for r in self.runners:
            r.activate()
        self.providers_used = list(self.runners[0].providers_used)

    def _deactivate(self) -> None:
        for r in self.runners:
            r.deactivate()

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = [r.infer(feed) for r in self.runners]
        parts = [o["task_logits"] for o in outs]
        cmax = max(p.shape[2] for p in parts)
        b = parts[0].shape[0]
        logits = np.full((b, len(parts), cmax), self.pad, dtype=np.float32)
        for t, p in enumerate(parts):
            logits[:, t, : p.shape[2]] = p[:, 0]
        if self.table is None:
            self.table = self._table(cmax)
        features = np.concatenate([o["task_features"] for o in outs], axis=1) if "task_features" in outs[0] else None
        # route like the shared graph: the single-task graphs' policy and statistics
        r = route_numpy(logits, self.table, self.temperature, self.policy, stats=self.stats, task_features=features)
        out = {
            "label": r.label,
            "task": r.task,
            "confidence": r.confidence,
            "task_confidence": r.task_confidence,
            "task_logits": logits,
        }
        if features is not None:
            out["task_features"] = features
        return out

    def _table(self, cmax: int) -> np.ndarray:
        onnx = require("onnx", "ort", "reading the single-task graphs' classes")  # in the graphs' metadata
        classes = [graph_meta(onnx.load(str(p), load_external_data=False))["classes"][0] for p in self.paths]
        return class_table(classes, cmax)


__all__ = [
    "Runner",
    "OrtRunner",
    "OpenVinoRunner",
    "SplitOrtRunner",
    "PROVIDER_ALIASES",
    "available_providers",
    "resolve_providers",
    "provider_options",
    "ORT_TRT_CACHE",
    "CPU_SUB_BATCH",
]
