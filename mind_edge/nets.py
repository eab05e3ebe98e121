"""MIND networks: one set of weights shared by every task through int8 owner maps.

Every conv / linear weight of the backbone has an ``owner`` buffer of the same shape:
``-1`` means free, ``t`` means owned by task ``t``. Sub-network ``t`` computes with
``W * (0 <= owner <= t)``; while task ``t`` is being trained its still-free weights are
used too (``owner <= t``, which includes ``-1``).

Per-task state lives inside the module (timm's split-BN style): every
:class:`TaskBatchNorm2d` holds one ``BatchNorm2d`` per task and :class:`MindNet` holds one
:class:`TaskHead` per task (a linear layer plus the global class ids it predicts), so a
single ``state_dict`` carries owner maps, BN sets and heads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mind_edge.core.plan import ARCHS, FREE, BlockPlan, ConvPlan, NetConfig, plan_net
from mind_edge.core.routing import EXTRA_SCORES, STATS_VERSION, RoutingStats, plan_taps
from mind_edge.errors import CapacityError, ConfigError

__all__ = [
    "ARCHS",
    "FREE",
    "NetConfig",
    "MaskedConv2d",
    "TaskBatchNorm2d",
    "TaskHead",
    "DownsampleA",
    "BasicBlock",
    "MindNet",
    "build_model",
    "count_flops",
    "reinit_free_weights",
]

# ----------------------------------------------------------------------------- layers


class MaskedConv2d(nn.Conv2d):
    """A bias-free conv whose weight is shared among tasks through an int8 owner map."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.register_buffer("owner", torch.full_like(self.weight, FREE, dtype=torch.int8))

    def task_mask(self, task: int, include_free: bool = False) -> torch.Tensor:
        if include_free:
            return self.owner <= task
        return (self.owner >= 0) & (self.owner <= task)

    def task_weight(self, task: int, include_free: bool = False) -> torch.Tensor:
        # A multiplication (not `where`) so the ONNX graph's Mul(W, Cast(mask)) is bit-identical.
        return self.weight * self.task_mask(task, include_free).to(self.weight.dtype)

    def forward(self, x: torch.Tensor, task: int, include_free: bool = False) -> torch.Tensor:  # type: ignore[override]
        return self._conv_forward(x, self.task_weight(task, include_free), None)


class TaskBatchNorm2d(nn.Module):
    """One BatchNorm2d per task; task ``t`` normalises with set ``t`` only."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.sets = nn.ModuleList()

    def add_task(self) -> None:
        self.sets.append(nn.BatchNorm2d(self.num_features))

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.sets[task](x)


class RoutingStatsBuffers(nn.Module):
    """One task's routing statistics as buffers (:class:`mind_edge.core.routing.RoutingStats`, layout 3:
    the network's taps measured in the task's own sub-network, then in sub-network 0's, then the
    pooled-metric summaries in sub-network 0's concatenated taps).

    ``count`` is the number of training images they were gathered from; 0 means not gathered
    yet (a run trained before routing statistics existed, or with an older layout:
    ``mind-edge calibrate`` fills them).
    """

    def __init__(self, tap_dims: tuple[int, ...], num_classes: int):
        super().__init__()
        self.shared_taps = len(tap_dims)
        self.tap_dims = tuple(tap_dims) * 2
        for k, f in enumerate(self.tap_dims):
            self.register_buffer(f"whiten{k}", torch.zeros(f, f))
            self.register_buffer(f"means{k}", torch.zeros(num_classes, f))
        n_scores = len(self.tap_dims) + len(EXTRA_SCORES)
        self.register_buffer("score_mean", torch.zeros(n_scores))
        self.register_buffer("score_std", torch.ones(n_scores))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        d = sum(tap_dims)
        self.register_buffer("pool_means", torch.zeros(num_classes, d))
        self.register_buffer("pool_cov", torch.zeros(d * (d + 1) // 2))
        self.register_buffer("pool_m4", torch.zeros(1))

    @property
    def ready(self) -> bool:
        return int(self.count) > 0

    def whiten(self, k: int) -> torch.Tensor:
        return getattr(self, f"whiten{k}")

    def means(self, k: int) -> torch.Tensor:
        return getattr(self, f"means{k}")

    def to_arrays(self) -> RoutingStats | None:
        if not self.ready:
            return None

        def np32(t: torch.Tensor):
            return t.detach().cpu().numpy().astype("float32", copy=True)

        k = len(self.tap_dims)
        return RoutingStats(
            whiten=tuple(np32(self.whiten(j)) for j in range(k)),
            means=tuple(np32(self.means(j)) for j in range(k)),
            score_mean=np32(self.score_mean),
            score_std=np32(self.score_std),
            count=int(self.count),
            shared_taps=self.shared_taps,
            pool_means=np32(self.pool_means),
            pool_cov=np32(self.pool_cov),
            pool_m4=np32(self.pool_m4),
        )

    @torch.no_grad()
    def load_arrays(self, stats: RoutingStats) -> None:
        stats.check(self.tap_dims[: self.shared_taps], self.means(0).shape[0])
        if stats.layout != STATS_VERSION:
            raise ConfigError(
                f"routing statistics of layout {stats.layout} cannot be stored in a model of "
                f"layout {STATS_VERSION}; gather them again ('mind-edge calibrate RUN')"
            )
        for j in range(len(self.tap_dims)):
            self.whiten(j).copy_(torch.from_numpy(stats.whiten[j]))
            self.means(j).copy_(torch.from_numpy(stats.means[j]))
        self.score_mean.copy_(torch.from_numpy(stats.score_mean))
        self.score_std.copy_(torch.from_numpy(stats.score_std))
        for name, a in zip(("pool_means", "pool_cov", "pool_m4"), stats.pool_arrays):
            getattr(self, name).copy_(torch.from_numpy(a))
        self.count.fill_(int(stats.count))


class TaskHead(nn.Module):
    """A task's classifier, the global class ids its outputs stand for and its routing statistics."""

    def __init__(self, in_features: int, classes: list[int], tap_dims: tuple[int, ...] = ()):
        super().__init__()
        self.fc = nn.Linear(in_features, len(classes))
        self.register_buffer("classes", torch.tensor(classes, dtype=torch.int64))
        self.routing = RoutingStatsBuffers(tuple(tap_dims) or (in_features,), len(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _masked_conv(c: ConvPlan) -> MaskedConv2d:
    return MaskedConv2d(c.in_ch, c.out_ch, c.kernel, stride=c.stride, padding=c.padding)


class DownsampleA(nn.Module):
    """Parameter-free shortcut of the CIFAR ResNets: subsample, then zero-pad channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """A residual block built from its :class:`~mind_edge.core.plan.BlockPlan`."""

    def __init__(self, plan: BlockPlan):
        super().__init__()
        self.conv1 = _masked_conv(plan.conv1)
        self.bn1 = TaskBatchNorm2d(plan.conv1.out_ch)
        self.conv2 = _masked_conv(plan.conv2)
        self.bn2 = TaskBatchNorm2d(plan.conv2.out_ch)
        self.shortcut_kind = plan.shortcut
        if plan.shortcut == "A":
            self.down_a = DownsampleA(plan.conv1.in_ch, plan.conv1.out_ch, plan.conv1.stride)
        elif plan.shortcut == "B":
            assert plan.down is not None
            self.down_conv = _masked_conv(plan.down)
            self.down_bn = TaskBatchNorm2d(plan.down.out_ch)

    def forward(self, x: torch.Tensor, task: int, include_free: bool = False) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x, task, include_free), task))
        out = self.bn2(self.conv2(out, task, include_free), task)
        if self.shortcut_kind == "A":
            sc = self.down_a(x)
        elif self.shortcut_kind == "B":
            sc = self.down_bn(self.down_conv(x, task, include_free), task)
        else:
            sc = x
        return F.relu(out + sc)


# ----------------------------------------------------------------------------- network


class MindNet(nn.Module):
    """A ResNet backbone with owner maps, per-task BN sets and per-task heads.

    The topology (``resnet32``, ``resnet18``) is :func:`mind_edge.core.plan.plan_net` of the
    config, the same plan the ONNX graph builder and the FLOP counter read.
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.plan = plan_net(config)
        self.stem = _masked_conv(self.plan.stem)
        self.stem_bn = TaskBatchNorm2d(self.plan.stem.out_ch)
        self.blocks = nn.ModuleList(BasicBlock(b) for b in self.plan.blocks)
        self.feature_dim = self.plan.feature_dim
        #: blocks whose pooled outputs feed the routing statistics (mind_edge.core.routing.tap_blocks)
        self.tap_blocks, self.tap_dims = plan_taps(self.plan)
        self.heads = nn.ModuleList()
        self._init_weights()

    # -- construction ---------------------------------------------------------------
    def _init_weights(self) -> None:
        for layer in self.masked_layers():
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")

    def masked_layers(self) -> list[MaskedConv2d]:
        return [m for m in self.modules() if isinstance(m, MaskedConv2d)]

    def named_masked_layers(self) -> Iterator[tuple[str, MaskedConv2d]]:
        for name, m in self.named_modules():
            if isinstance(m, MaskedConv2d):
                yield name, m

    def task_batchnorms(self) -> list[TaskBatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, TaskBatchNorm2d)]

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def add_task(self, classes: list[int]) -> int:
        """Append a BN set and a head for a new task; returns its index."""
        if self.num_tasks >= self.config.capacity:
            raise CapacityError(
                f"the model has capacity for {self.config.capacity} tasks and already holds "
                f"{self.num_tasks}; train a new model with a larger --capacity"
            )
        if not classes:
            raise ConfigError("a task needs at least one class")
        device = self.stem.weight.device
        for bn in self.task_batchnorms():
            bn.add_task()
        self.heads.append(TaskHead(self.feature_dim, list(classes), self.tap_dims))
        return self.to(device).num_tasks - 1

    def claim_size(self, layer: MaskedConv2d) -> int:
        """How many weights of ``layer`` each task claims: ``numel // capacity``."""
        return layer.weight.numel() // self.config.capacity

    def task_classes(self, task: int) -> list[int]:
        return self.heads[task].classes.tolist()

    # -- forward --------------------------------------------------------------------
    def features(self, x: torch.Tensor, task: int, include_free: bool = False) -> torch.Tensor:
        return self.tap_features(x, task, include_free, taps=False)[-1]

    def tap_features(
        self, x: torch.Tensor, task: int, include_free: bool = False, taps: bool = True
    ) -> list[torch.Tensor]:
        """Pooled outputs ``[B, F_k]`` of sub-network ``task`` at every routing tap (the last one is
        the head's input); with ``taps=False`` only the head's input."""
        if not 0 <= task < self.num_tasks:
            raise ConfigError(f"task {task} does not exist; the model holds {self.num_tasks} tasks")
        out = F.relu(self.stem_bn(self.stem(x, task, include_free), task))
        pooled = []
        for i, block in enumerate(self.blocks):
            out = block(out, task, include_free)
            if taps and i in self.tap_blocks:
                pooled.append(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return pooled if taps else [torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)]

    def forward(self, x: torch.Tensor, task: int, include_free: bool = False) -> torch.Tensor:  # type: ignore[override]
        """Logits of task ``task``'s head computed by sub-network ``task``."""
        return self.heads[task](self.features(x, task, include_free))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every sub-network (its weights, BN set and head)."""
        return [self(x, t) for t in range(self.num_tasks)]

    def forward_all_taps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Every sub-network's logits and its pooled features at the routing taps."""
        logits, taps = [], []
        for t in range(self.num_tasks):
            pooled = self.tap_features(x, t)
            logits.append(self.heads[t](pooled[-1]))
            taps.append(pooled)
        return logits, taps

    def routing_stats(self) -> list[RoutingStats | None]:
        """Every task's routing statistics (``None`` where not gathered)."""
        return [h.routing.to_arrays() for h in self.heads]

    # -- bookkeeping ----------------------------------------------------------------
    def owner_counts(self) -> dict[str, list[int]]:
        """Per layer: how many weights each task owns (index ``capacity`` = free)."""
        out = {}
        for name, layer in self.named_masked_layers():
            counts = torch.bincount(layer.owner.flatten().long() + 1, minlength=self.config.capacity + 1)
            out[name] = [int(c) for c in counts[1:]] + [int(counts[0])]
        return out

    def dense_param_count(self) -> int:
        return sum(layer.weight.numel() for layer in self.masked_layers())


def build_model(config: NetConfig, task_classes: list[list[int]] | None = None) -> MindNet:
    """A network with heads for ``task_classes`` already added (e.g. before loading a checkpoint)."""
    model = MindNet(config)
    for classes in task_classes or []:
        model.add_task(classes)
    return model


def count_flops(model: MindNet, task: int = 0) -> int:
    """Multiply-accumulates x 2 of one image through sub-network ``task`` (convs + head)."""
    flops = 0
    hooks = []

    def conv_hook(mod, inp, out):
        nonlocal flops
        k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
        flops += 2 * k * out.shape[1] * out.shape[2] * out.shape[3]

    def fc_hook(mod, inp, out):
        nonlocal flops
        flops += 2 * mod.in_features * mod.out_features

    for m in model.modules():
        if isinstance(m, MaskedConv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(fc_hook))
    try:
        h, w = model.config.input_size
        with torch.no_grad():
            was = model.training
            model.eval()
            model(torch.zeros(1, model.config.in_channels, h, w), task)
            model.train(was)
    finally:
        for hk in hooks:
            hk.remove()
    return flops


def _kaiming_std(layer: MaskedConv2d) -> float:
    fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
    return math.sqrt(2.0 / fan_out)


def reinit_free_weights(model: MindNet, generator: torch.Generator) -> None:
    """Give every free weight a fresh Kaiming-normal value (drawn from ``generator``).

    Called at the start of each task: the capacity a new task trains starts from a proper
    random initialisation rather than from the zeros the previous prune left.
    """
    with torch.no_grad():
        for layer in model.masked_layers():
            fresh = torch.randn(layer.weight.shape, generator=generator) * _kaiming_std(layer)
            free = layer.owner == FREE
            layer.weight.copy_(torch.where(free, fresh.to(layer.weight.device), layer.weight))
