"""MIND training: learn one task at a time into free weights, freezing earlier tasks exactly.

Self-distillation (default, memory-constrained), for task ``t``:

1. *Train*: copy the model (the copy is the teacher); train its **free** weights plus task
   ``t``'s BN set and head with cross-entropy on task ``t``'s classes. Owned weights take
   part in the forward pass but stay bit-identical.
2. *Prune (MIP)*: in every layer task ``t`` claims the ``numel // capacity`` free weights of
   largest magnitude **in the trained teacher**, copies their values (and the teacher's BN
   set and head) into the model and zeroes the remaining free weights.
3. *Distill*: train only task ``t``'s weights (+ BN set, head) with
   ``CE + beta * 0.5 * (KL(p_T || p_S) + KL(p_S || p_T))``.

Teacher distillation (the paper's headline variant): step 1 trains a freshly initialised
dense network instead and step 2 claims a random subset of the free weights.

Exact freezing under AdamW: gradients of non-trainable entries are zeroed before the step
(so no moments build up) and, after every step, every non-trainable entry is restored from
a snapshot (so decoupled weight decay cannot move it). Only task ``t``'s BN set and head are
given to the optimizer, so earlier BN sets and heads are never touched.

Every random draw of task ``t`` comes from generators seeded with ``(seed, t)``, so a run
resumed at task ``t`` equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mind_edge.core.routing import expected_calibration_error, get_policy
from mind_edge.data import BatchLoader
from mind_edge.errors import ConfigError
from mind_edge.nets import FREE, MindNet, reinit_free_weights
from mind_edge.routing import gather_routing_stats, route, torch_stats
from mind_edge.train_config import METHODS, PRESETS, TrainConfig, preset  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
        torch.backends.cudnn.benchmark = True  # fixed shapes per stage: let cuDNN pick its fastest kernels
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r}; choose auto, cpu or cuda[:N]")


def task_generator(seed: int, task: int, stream: int) -> torch.Generator:
    """A CPU generator for one (seed, task, stream) triple; streams keep draws independent."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(task) * 101 + int(stream))


# ----------------------------------------------------------------------------- progress


class Reporter(Protocol):
    """Progress of a training stage: ``start(label, total)`` with one step per batch of every
    epoch, ``advance(info)`` after each batch (``info``: epoch and running loss), ``finish()``."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self, info: str = "") -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, info: str = "") -> None:
        pass

    def finish(self) -> None:
        pass


# ----------------------------------------------------------------------------- freezing


class FreezeGuard:
    """Keeps every non-trainable entry of the masked weights bit-identical across steps."""

    def __init__(self, model: MindNet, trainable: Callable[[torch.Tensor], torch.Tensor]):
        self.items = []
        for layer in model.masked_layers():
            mask = trainable(layer.owner)
            self.items.append((layer, mask, layer.weight.detach().clone()))

    def mask_grads(self) -> None:
        for layer, mask, _ in self.items:
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(mask.to(layer.weight.grad.dtype))

    @torch.no_grad()
    def restore(self) -> None:
        for layer, mask, snap in self.items:
            layer.weight.copy_(torch.where(mask, layer.weight, snap))


def _task_params(model: MindNet, task: int) -> list[torch.nn.Parameter]:
    params = [layer.weight for layer in model.masked_layers()]
    for bn in model.task_batchnorms():
        params += list(bn.sets[task].parameters())
    params += list(model.heads[task].parameters())
    return params


# ----------------------------------------------------------------------------- loops


@dataclass
class StageStats:
    epochs: int = 0
    last_loss: float = float("nan")
    seconds: float = 0.0


def _make_loader(images, labels, spec, batch_size, generator, device, train=True):
    return BatchLoader(
        images, labels, spec=spec, batch_size=batch_size, train=train, generator=generator, device=device
    )


def _run_stage(
    model: MindNet,
    task: int,
    loader,
    *,
    epochs: int,
    lr: float,
    milestones: tuple[int, ...],
    config: TrainConfig,
    include_free: bool,
    trainable: Callable[[torch.Tensor], torch.Tensor],
    teacher: MindNet | None,
    teacher_task: int,
    reporter: Reporter,
    label: str,
) -> StageStats:
    stats = StageStats()
    if epochs == 0:
        return stats
    t0 = time.perf_counter()
    guard = FreezeGuard(model, trainable)
    opt = torch.optim.AdamW(_task_params(model, task), lr=lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=config.gamma)
    model.train()
    if teacher is not None:
        teacher.eval()
    # one progress step per batch (a stage of 50 epochs on CIFAR moves within seconds, not per epoch)
    reporter.start(label, epochs * max(len(loader), 1))
    for epoch in range(epochs):
        total, count = 0.0, 0
        for x, y in loader:
            logits = model(x, task, include_free)
            loss = F.cross_entropy(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(x, teacher_task, include_free=True)
                log_s = F.log_softmax(logits, dim=1)
                log_t = F.log_softmax(t_logits, dim=1)
                kl_ts = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
                kl_st = F.kl_div(log_t, log_s, reduction="batchmean", log_target=True)
                loss = loss + config.beta * 0.5 * (kl_ts + kl_st)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            guard.mask_grads()
            opt.step()
            guard.restore()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            reporter.advance(f"epoch {epoch + 1}/{epochs} loss {total / count:.3f}")
        sched.step()
        stats.epochs += 1
        stats.last_loss = total / max(count, 1)
    reporter.finish()
    stats.seconds = time.perf_counter() - t0
    return stats


@torch.no_grad()
def _claim(model: MindNet, task: int, scores: dict[int, torch.Tensor], values: dict[int, torch.Tensor] | None) -> None:
    """Task ``task`` claims the top-``numel // capacity`` free weights by ``scores`` per layer."""
    for i, layer in enumerate(model.masked_layers()):
        k = model.claim_size(layer)
        owner = layer.owner.view(-1)
        free_idx = torch.nonzero(owner == FREE, as_tuple=False).squeeze(1)
        if k > free_idx.numel():
            raise ConfigError(f"layer {i} has {free_idx.numel()} free weights, task {task} needs {k}")
        s = scores[i].to(owner.device).reshape(-1)[free_idx]  # random scores are drawn on the CPU
        order = torch.argsort(s, descending=True, stable=True)
        chosen = free_idx[order[:k]]
        owner[chosen] = task
        w = layer.weight.data.view(-1)
        if values is not None:
            w[chosen] = values[i].to(w.device).reshape(-1)[chosen]
        w[owner == FREE] = 0.0


def mip_scores(teacher: MindNet) -> dict[int, torch.Tensor]:
    """Magnitude of the trained teacher's weights (MIP: most important = largest |w|)."""
    return {i: layer.weight.detach().abs() for i, layer in enumerate(teacher.masked_layers())}


def random_scores(model: MindNet, generator: torch.Generator) -> dict[int, torch.Tensor]:
    return {i: torch.rand(layer.weight.shape, generator=generator) for i, layer in enumerate(model.masked_layers())}


@dataclass
class TaskReport:
    task: int
    classes: list[int]
    train_seconds: float = 0.0
    distill_seconds: float = 0.0
    train_loss: float = float("nan")
    distill_loss: float = float("nan")
    claimed: int = 0
    extra: dict = field(default_factory=dict)


def learn_task(
    model: MindNet,
    classes: list[int],
    images: np.ndarray,
    local_labels: np.ndarray,
    spec,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    reporter: Reporter | None = None,
    on_teacher: Callable[[MindNet], None] | None = None,
) -> TaskReport:
    """Add one task to ``model`` (in place) with the configured MIND variant.

    ``on_teacher`` (for inspection and tests) is called with the trained teacher before the
    prune step.
    """
    reporter = reporter or NullReporter()
    device = torch.device(device)
    task = model.num_tasks
    torch.manual_seed(int(seed) * 1_000_003 + task)  # head / BN init of this task
    model.add_task(list(classes))
    model.to(device)
    reinit_free_weights(model, task_generator(seed, task, 1))
    report = TaskReport(task=task, classes=list(classes))

    def loader(stream: int):
        # built once per stage (one upload to the device); each pass reshuffles from `gen`
        gen = task_generator(seed, task, stream)
        return _make_loader(images, local_labels, spec, config.batch_size, gen, device)

    if config.method == "self":
        teacher = copy.deepcopy(model)
        st = _run_stage(
            teacher,
            task,
            loader(2),
            epochs=config.epochs,
            lr=config.lr,
            milestones=config.milestones,
            config=config,
            include_free=True,
            trainable=lambda o: o == FREE,
            teacher=None,
            teacher_task=task,
            reporter=reporter,
            label=f"task {task} train",
        )
        if on_teacher is not None:
            on_teacher(teacher)
        teacher_weights = {i: layer.weight.data for i, layer in enumerate(teacher.masked_layers())}
        _claim(model, task, mip_scores(teacher), teacher_weights)
        with torch.no_grad():
            for bn_s, bn_t in zip(model.task_batchnorms(), teacher.task_batchnorms()):
                bn_s.sets[task].load_state_dict(bn_t.sets[task].state_dict())
            model.heads[task].load_state_dict(teacher.heads[task].state_dict())
        teacher_task = task
    else:
        fresh = MindNet(model.config)
        torch.manual_seed(int(seed) * 1_000_003 + task + 500_000)
        fresh.add_task(list(classes))
        fresh.to(device)
        st = _run_stage(
            fresh,
            0,
            loader(2),
            epochs=config.epochs,
            lr=config.lr,
            milestones=config.milestones,
            config=config,
            include_free=True,
            trainable=lambda o: o == FREE,
            teacher=None,
            teacher_task=0,
            reporter=reporter,
            label=f"task {task} teacher",
        )
        if on_teacher is not None:
            on_teacher(fresh)
        _claim(model, task, random_scores(model, task_generator(seed, task, 3)), None)
        teacher, teacher_task = fresh, 0
    report.train_seconds, report.train_loss = st.seconds, st.last_loss
    report.claimed = sum(model.claim_size(layer) for layer in model.masked_layers())
    sd = _run_stage(
        model,
        task,
        loader(4),
        epochs=config.distill_epochs,
        lr=config.distill_lr,
        milestones=config.distill_milestones,
        config=config,
        include_free=False,
        trainable=lambda o: o == task,
        teacher=teacher,
        teacher_task=teacher_task,
        reporter=reporter,
        label=f"task {task} distill",
    )
    report.distill_seconds, report.distill_loss = sd.seconds, sd.last_loss
    model.eval()
    # routing statistics from this task's own training images (frozen with the task from now on)
    t0 = time.perf_counter()
    gather_routing_stats(model, task, images, local_labels, spec, device=device)
    report.extra["routing_stats_seconds"] = round(time.perf_counter() - t0, 3)
    return report


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    tag: list[float]  # per task accuracy, task-agnostic
    taw: list[float]  # per task accuracy, task-aware
    routing: list[float]  # per task fraction routed to the true task
    counts: list[int]
    ece: float = float("nan")  # expected calibration error of the routed confidence (all test images)

    @property
    def routing_overall(self) -> float:
        n = sum(self.counts)
        return float(sum(r * c for r, c in zip(self.routing, self.counts)) / max(n, 1))


@torch.no_grad()
def evaluate_policies(
    model: MindNet,
    test_sets: list[tuple[np.ndarray, np.ndarray]],
    spec,
    *,
    temperature: float,
    policies: list[str] | tuple[str, ...],
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> dict[str, EvalResult]:
    """TAG, TAW, routing accuracy and ECE of every policy on ``test_sets[j] = (images, local labels)``
    of task j, from one forward pass of every sub-network."""
    model.eval()
    device = torch.device(device)
    policies = [get_policy(p).name for p in policies]
    features = any(get_policy(p).uses_features for p in policies)
    stats = None
    if any(get_policy(p).needs_stats for p in policies):
        stats = torch_stats(model.routing_stats(), device)
    classes = [model.heads[t].classes for t in range(model.num_tasks)]
    acc = {p: ([], [], [], [], [], []) for p in policies}  # tag, taw, routing, counts, confidences, correct
    for j, (images, local) in enumerate(test_sets):
        hits = {p: [0, 0, 0] for p in policies}
        n = 0
        gl = model.heads[j].classes.cpu()
        for x, y in _make_loader(images, local, spec, batch_size, None, device, train=False):
            if features:
                logits, taps = model.forward_all_taps(x)
            else:
                logits, taps = model.forward_all(x), None
            y_cpu = y.cpu()
            taw_hits = int((logits[j].argmax(1).cpu() == y_cpu).sum())
            for p in policies:
                r = route(logits, classes, temperature, p, taps=taps, stats=stats)
                ok = r.label.cpu() == gl[y_cpu]
                hits[p][0] += int(ok.sum())
                hits[p][1] += taw_hits
                hits[p][2] += int((r.task.cpu() == j).sum())
                acc[p][4].append(r.confidence.float().cpu().numpy())
                acc[p][5].append(ok.numpy())
            n += x.shape[0]
        for p in policies:
            for i in range(3):
                acc[p][i].append(hits[p][i] / max(n, 1))
            acc[p][3].append(n)
    out = {}
    for p, (tag, taw, rout, counts, conf, correct) in acc.items():
        ece = expected_calibration_error(np.concatenate(conf), np.concatenate(correct)) if conf else float("nan")
        out[p] = EvalResult(tag, taw, rout, counts, ece)
    return out


def evaluate(
    model: MindNet,
    test_sets: list[tuple[np.ndarray, np.ndarray]],
    spec,
    *,
    temperature: float,
    policy: str = "maxprob",
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> EvalResult:
    """TAG, TAW and routing accuracy of one policy (see :func:`evaluate_policies`)."""
    return evaluate_policies(
        model, test_sets, spec, temperature=temperature, policies=[policy], device=device, batch_size=batch_size
    )[get_policy(policy).name]
