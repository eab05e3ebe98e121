"""PyTorch baselines of the latency benchmark (``mind-edge bench --backend torch,reference``).

They need torch, so they live in the algorithm room: the runtime's backend registry
(:mod:`mind_edge.runtime.backends`) declares their names, and importing this module registers
their openers there — which only the benchmark's worker process that runs them does (it imports
the plugins its job names; ``import mind_edge.runtime`` never imports this module). Both take the network
from a shared-layout ONNX graph (:func:`mind_edge.runtime.graph.read_arrays`), so they compute
exactly the model the ``ort`` backend runs, and both return the graph's outputs (``label``,
``task``, ``confidence``, ``task_confidence``, ``task_logits``) so the benchmark can check that
every backend agrees.

* ``torch`` (:class:`TorchRunner`, ``mode="auto"``): the best eager PyTorch we found for this
  model on CPU. Every task's masked weights with its BatchNorm folded in are precomputed once
  (``W * mask_t * gamma / sqrt(var + eps)``, bias ``beta - mean * scale``, exactly as the folded
  graph), ``torch.inference_mode``, and for every batch size the faster of two forms runs (timed
  on its first batch, like ``cudnn.benchmark``): ``loop`` — the N sub-networks one after another
  as dense convs in ``channels_last`` (fastest at batch 8 and 64 here) — and ``stacked`` — the
  graph's form: N x C stem filters, grouped convs with ``groups = N``, one batched head product
  (fastest at batch 1 here). ``torch-loop`` and ``torch-stacked`` force one form.
* ``reference`` (:class:`ReferenceRunner`): the reference implementation's test-loop semantics —
  for **every batch and every task**, the task's masks are applied to every layer (``W * (0 <=
  owner <= t)`` recomputed by ``MindNet.forward``) and the task's BatchNorm set is used, then
  the forward pass, under ``torch.no_grad`` in eval mode; softmax(z / T) per task, then routing.
  The reference additionally deep-copies the whole model for each task of each batch
  (``freeze_model(deepcopy(model))``); that copy is not reproduced, so this row is a lower
  bound of the reference code's latency.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mind_edge.core.plan import plan_net
from mind_edge.core.routing import plan_taps
from mind_edge.errors import ConfigError
from mind_edge.export.arrays import model_from_arrays
from mind_edge.routing import route, torch_stats
from mind_edge.runtime.backends import ModelSource, Opened, OpenOptions, register_backend
from mind_edge.runtime.errors import BackendError
from mind_edge.runtime.graph import _folded, check_arrays, graph_policy, read_arrays, resolve_policy
from mind_edge.runtime.routing import PAD_LOGIT, class_table
from mind_edge.runtime.runners import Runner

MODES = ("auto", "loop", "stacked")


def _set_threads(threads: int | None) -> int | None:
    """Set torch's intra-op threads; returns the count to restore on deactivate (None: unchanged)."""
    if threads is None:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran in this process
        torch.set_num_interop_threads(1)
    return before


def _restore_threads(before: int | None) -> None:
    if before is not None:
        torch.set_num_threads(before)


def _route(
    logits: torch.Tensor, taps: list[torch.Tensor], arrays, temperature: float, policy: str, stats
) -> dict[str, np.ndarray]:
    """The graph's routing head (``policy``, :mod:`mind_edge.routing`) on padded ``logits`` [B, N, Cmax] and
    the pooled tap features ``taps[k]`` [B, N, F_k]; returns the graph contract's outputs."""
    per_task = [logits[:, t, : len(h.classes)] for t, h in enumerate(arrays.heads)]
    per_task_taps = [[tap[:, t] for tap in taps] for t in range(arrays.num_tasks)]
    classes = [torch.tensor(h.classes, dtype=torch.int64) for h in arrays.heads]
    r = route(per_task, classes, temperature, policy, taps=per_task_taps, stats=stats)
    return {
        "label": r.label.numpy().astype(np.int64),
        "task": r.task.numpy().astype(np.int64),
        "confidence": r.confidence.numpy().astype(np.float32),
        "task_confidence": r.task_confidence.numpy().astype(np.float32),
        "task_logits": logits.numpy().astype(np.float32),
        "task_features": torch.cat(taps, dim=2).numpy().astype(np.float32),
    }


class TorchRunner(Runner):
    """Eager PyTorch with precomputed per-task folded weights (see the module docstring).

    ``mode``: ``loop`` (N dense sub-networks one after another, ``channels_last``), ``stacked``
    (grouped like the ONNX graph, contiguous NCHW) or ``auto`` (the default of the ``torch``
    backend): on the first batch of each size both are timed (3 calls each after one warm-up,
    like ``torch.backends.cudnn.benchmark``) and the faster one runs that batch size from then on.
    """

    name = "torch"

    def __init__(
        self,
        arrays,
        *,
        temperature: float,
        threads: int | None = None,
        mode: str = "auto",
        channels_last: bool | None = None,
        policy: str = "auto",
    ) -> None:
        super().__init__()
        self.policy = resolve_policy(policy, arrays)
        self.stats = torch_stats(arrays.routing_stats(), "cpu") if arrays.has_stats else None
        self.taps = plan_taps(plan_net(arrays.net))[0]
        if mode not in MODES:
            raise ConfigError(f"unknown torch mode {mode!r}; choose one of {', '.join(MODES)}")
        self.arrays = arrays
        self.temperature = float(temperature)
        self.threads = threads
        self.mode = mode
        # channels_last helps the per-task dense convs; oneDNN's grouped convs are slower with it
        self.loop_channels_last = True if channels_last is None else bool(channels_last)
        self.stacked_channels_last = False if channels_last is None else bool(channels_last)
        self.choice: dict[int, str] = {}  # auto: batch size -> mode
        self.variant = {
            "auto": "auto: fastest of loop/stacked per batch",
            "loop": self._name("loop"),
            "stacked": self._name("stacked"),
        }[mode]
        self.providers_used = [f"torch {torch.__version__} CPU ({self.variant})"]
        self.task_convs: list = []
        self.convs: dict = {}

    def _name(self, mode: str) -> str:
        cl = self.loop_channels_last if mode == "loop" else self.stacked_channels_last
        return f"{mode}{', channels_last' if cl else ''}"

    def variant_for(self, batch: int) -> str:
        """The mode that runs batches of ``batch`` images (after auto-tuning)."""
        if self.mode != "auto":
            return self.variant
        mode = self.choice.get(int(batch))
        return f"auto → {self._name(mode)}" if mode else self.variant

    # -- building -------------------------------------------------------------------
    def _activate(self) -> None:
        self._threads_before = _set_threads(self.threads)
        a = self.arrays
        self.plan = check_arrays(a)
        n, cmax = a.num_tasks, a.cmax
        folded = {}
        for c in self.plan.convs():
            w, b = _folded(a.layer(c.name), a.norm(c.norm), n)
            folded[c.name] = (torch.from_numpy(w), torch.from_numpy(b))
        if self.mode in ("stacked", "auto"):
            fmt = torch.channels_last if self.stacked_channels_last else torch.contiguous_format
            self.convs = {k: (w.contiguous(memory_format=fmt), b) for k, (w, b) in folded.items()}
        if self.mode in ("loop", "auto"):
            fmt = torch.channels_last if self.loop_channels_last else torch.contiguous_format
            o = {c.name: c.out_ch for c in self.plan.convs()}
            self.task_convs = [
                {
                    k: (
                        w[t * o[k] : (t + 1) * o[k]].contiguous(memory_format=fmt),
                        b[t * o[k] : (t + 1) * o[k]].contiguous(),
                    )
                    for k, (w, b) in folded.items()
                }
                for t in range(n)
            ]
        f = self.plan.feature_dim
        hw = np.zeros((n, f, cmax), dtype=np.float32)
        hb = np.full((n, cmax), PAD_LOGIT, dtype=np.float32)
        for t, h in enumerate(a.heads):
            hw[t, :, : len(h.classes)] = h.weight.T
            hb[t, : len(h.classes)] = h.bias
        self.head_w, self.head_b = torch.from_numpy(hw), torch.from_numpy(hb)
        self.heads = [(torch.from_numpy(h.weight), torch.from_numpy(h.bias)) for h in a.heads]
        self.pad = PAD_LOGIT
        self.cmax = cmax
        self.table = torch.from_numpy(class_table(a.task_classes, cmax))

    def _deactivate(self) -> None:
        self.convs, self.task_convs = {}, []
        _restore_threads(getattr(self, "_threads_before", None))

    @property
    def model_bytes(self) -> int:
        tensors = [t for pair in self.convs.values() for t in pair]
        for d in self.task_convs:
            tensors += [t for pair in d.values() for t in pair]
        tensors += [self.head_w, self.head_b]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    # -- forward --------------------------------------------------------------------
    def _features_task(self, x: torch.Tensor, convs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        def conv(y, c):
            w, b = convs[c.name]
            return F.conv2d(y, w, b, c.stride, c.padding)

        y = F.relu(conv(x, self.plan.stem))
        pooled = []
        for i, blk in enumerate(self.plan.blocks):
            z = conv(F.relu(conv(y, blk.conv1)), blk.conv2)
            if blk.shortcut == "A":
                s = blk.conv1.stride
                sc = F.pad(y[:, :, ::s, ::s], (0, 0, 0, 0, 0, blk.conv1.out_ch - blk.conv1.in_ch))
            elif blk.shortcut == "B":
                sc = conv(y, blk.down)
            else:
                sc = y
            y = F.relu(z + sc)
            if i in self.taps:
                pooled.append(y.mean(dim=(2, 3)))
        return pooled  # [B, F_k] per routing tap; the last one feeds the head

    def _features_stacked(self, x: torch.Tensor) -> torch.Tensor:
        n = self.arrays.num_tasks

        def conv(y, c, groups=n):
            w, b = self.convs[c.name]
            return F.conv2d(y, w, b, c.stride, c.padding, groups=groups)

        y = F.relu(conv(x, self.plan.stem, 1))
        pooled = []
        for i, blk in enumerate(self.plan.blocks):
            z = conv(F.relu(conv(y, blk.conv1)), blk.conv2)
            if blk.shortcut == "A":
                s = blk.conv1.stride
                sc = y[:, :, ::s, ::s]
                bsz, _, h, w = sc.shape
                extra = blk.conv1.out_ch - blk.conv1.in_ch
                sc = F.pad(sc.reshape(bsz, n, blk.conv1.in_ch, h, w), (0, 0, 0, 0, 0, extra))
                sc = sc.reshape(bsz, n * blk.conv1.out_ch, h, w)
            elif blk.shortcut == "B":
                sc = conv(y, blk.down)
            else:
                sc = y
            y = F.relu(z + sc)
            if i in self.taps:
                pooled.append(y.mean(dim=(2, 3)).reshape(x.shape[0], n, -1))
        return pooled  # [B, N, F_k] per routing tap

    def _logits(self, x: torch.Tensor, mode: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Padded logits [B, N, Cmax] and the pooled tap features [B, N, F_k] of every sub-network."""
        if mode == "loop":
            if self.loop_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = torch.full((x.shape[0], len(self.heads), self.cmax), self.pad)
            per_task = []
            for t, convs in enumerate(self.task_convs):
                hw, hb = self.heads[t]
                pooled = self._features_task(x, convs)
                logits[:, t, : hw.shape[0]] = F.linear(pooled[-1], hw, hb)
                per_task.append(pooled)
            return logits, [torch.stack([p[k] for p in per_task], dim=1) for k in range(len(self.taps))]
        if self.stacked_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        taps = self._features_stacked(x)  # [B, N, F_k] per tap
        return torch.einsum("bnf,nfc->bnc", taps[-1], self.head_w) + self.head_b, taps

    def _tune(self, x: torch.Tensor) -> str:
        best, best_t = "loop", float("inf")
        for mode in ("loop", "stacked"):
            self._logits(x, mode)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                self._logits(x, mode)
                times.append(time.perf_counter() - t0)
            t = float(np.median(times))
            if t < best_t:
                best, best_t = mode, t
        self.choice[int(x.shape[0])] = best
        return best

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(next(iter(feed.values())), dtype=np.float32))
        with torch.inference_mode():
            mode = self.mode
            if mode == "auto":
                mode = self.choice.get(int(x.shape[0])) or self._tune(x)
            logits, taps = self._logits(x, mode)
            return _route(logits, taps, self.arrays, self.temperature, self.policy, self.stats)


class ReferenceRunner(Runner):
    """The reference test loop: per batch, per task — set masks, use the task's BN, forward."""

    name = "reference"
    variant = "masks+BN per batch"

    def __init__(self, arrays, *, temperature: float, threads: int | None = None, policy: str = "auto") -> None:
        super().__init__()
        self.arrays = arrays
        self.policy = resolve_policy(policy, arrays)
        self.stats = torch_stats(arrays.routing_stats(), "cpu") if arrays.has_stats else None
        self.temperature = float(temperature)
        self.threads = threads
        self.providers_used = [f"torch {torch.__version__} CPU (MindNet, per-task loop)"]

    def _activate(self) -> None:
        self._threads_before = _set_threads(self.threads)
        self.model = model_from_arrays(self.arrays).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)  # freeze_model
        self.cmax = self.arrays.cmax
        self.pad = PAD_LOGIT
        self.table = torch.from_numpy(class_table(self.arrays.task_classes, self.cmax))

    def _deactivate(self) -> None:
        self.model = None
        _restore_threads(getattr(self, "_threads_before", None))

    @property
    def model_bytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in self.model.state_dict().values()))

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(next(iter(feed.values())), dtype=np.float32))
        model = self.model
        with torch.no_grad():
            logits = torch.full((x.shape[0], model.num_tasks, self.cmax), self.pad)
            per_task = []
            for t in range(model.num_tasks):
                pooled = model.tap_features(x, t)  # masks W * (0 <= owner <= t) in every layer, BN set t
                z = model.heads[t](pooled[-1])
                logits[:, t, : z.shape[1]] = z
                per_task.append(pooled)
            taps = [torch.stack([p[k] for p in per_task], dim=1) for k in range(len(per_task[0]))]
            return _route(logits, taps, self.arrays, self.temperature, self.policy, self.stats)


def load_arrays(onnx_path: str | Path):
    """The network arrays of a shared-layout graph (what both baselines are built from)."""
    return read_arrays(onnx_path)


def open_backend(name: str, onnx_path: str | Path, *, temperature: float, threads: int | None = None):
    """Build and activate baseline ``name`` (``torch``, ``torch-stacked`` or ``reference``) from a
    shared-layout graph; returns :class:`mind_edge.runtime.backends.Opened`."""
    modes = {"torch": "auto", "torch-loop": "loop", "torch-stacked": "stacked"}
    if name not in (*modes, "reference"):
        raise BackendError(f"unknown PyTorch baseline {name!r}; choose {', '.join(modes)} or reference")
    t0 = time.perf_counter()
    arrays = load_arrays(onnx_path)
    policy = graph_policy(onnx_path)  # route like the graph the ort backend runs
    if name in modes:
        runner: Runner = TorchRunner(arrays, temperature=temperature, threads=threads, mode=modes[name], policy=policy)
    else:
        runner = ReferenceRunner(arrays, temperature=temperature, threads=threads, policy=policy)
    runner.activate()
    start = time.perf_counter() - t0
    return Opened(
        runner,
        start,
        runner.model_bytes,
        list(runner.providers_used),
        "fp32",
        notes=str(runner.providers_used[0]),
        variant=getattr(runner, "variant", name),
    )


def _open(name: str, src: ModelSource, opts: OpenOptions) -> Opened:
    """The registry's opener: the baseline on the source's shared-layout graph (the registry checked it exists)."""
    return open_backend(name, src.arrays_onnx, temperature=src.temperature, threads=opts.threads)


for _name in ("torch", "torch-loop", "torch-stacked", "reference"):
    register_backend(_name, open=functools.partial(_open, _name))


__all__ = ["TorchRunner", "ReferenceRunner", "open_backend", "load_arrays", "MODES"]
