"""The network plan: the one definition of a MIND network's topology (torch-free, numpy-free).

``mind_edge.nets.MindNet`` builds its modules from :func:`plan_net`, the graph builder
(``mind_edge.runtime.graph``) emits its ONNX nodes from it and the FLOP counter
(``mind_edge.flops``) counts it, so the three cannot drift apart.

* ``resnet32``: the CIFAR ResNet-32 of the MIND reference (16/32/64 channels x width,
  3 stages x 5 blocks, DownsampleA shortcuts = strided subsample + zero channels).
* ``resnet18``: a ResNet-18 for 64x64 inputs (3x3 stem, no max-pool, 64/128/256/512 x width,
  4 stages x 2 blocks, 1x1 conv + BN shortcuts).

Both take any input size (global average pooling) and 1 or 3 channels. Conv and norm names are
the ``state_dict`` prefixes of ``MindNet`` (``stem``/``stem_bn``, ``blocks.{i}.conv1``/``bn1``,
``conv2``/``bn2``, ``down_conv``/``down_bn``); the graph and task patches use the same names.

:class:`NetConfig` is the architecture record (the ``net`` object of ``run.json`` and of the
graph metadata); every owner map uses :data:`FREE` for a weight no task owns yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mind_edge.errors import ConfigError, GraphError

ARCHS = ("resnet32", "resnet18")
FREE = -1  # owner-map value of a weight that no task owns yet
IN_CHANNELS = (1, 3)
MAX_WIDTH = 8.0
MAX_CAPACITY = 127  # owner maps are int8


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a MIND network (everything needed to rebuild it before loading)."""

    arch: str = "resnet32"
    in_channels: int = 3
    input_size: tuple[int, int] = (32, 32)
    width: float = 1.0
    capacity: int = 10

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.in_channels not in IN_CHANNELS:
            raise ConfigError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if not (0 < self.width <= MAX_WIDTH):
            raise ConfigError(f"width multiplier must be in (0, {MAX_WIDTH:g}], got {self.width}")
        if not (1 <= self.capacity <= MAX_CAPACITY):
            raise ConfigError(
                f"capacity must be between 1 and {MAX_CAPACITY} (owner maps are int8), got {self.capacity}"
            )
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> NetConfig:
        try:
            return cls(
                arch=str(d["arch"]),
                in_channels=int(d["in_channels"]),
                input_size=tuple(d["input_size"]),
                width=float(d["width"]),
                capacity=int(d["capacity"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed architecture config {d!r}: {exc}") from exc


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ConvPlan:
    """One masked conv (bias-free, square kernel) and the per-task BatchNorm that follows it."""

    name: str
    norm: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    padding: int

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_ch, self.in_ch, self.kernel, self.kernel)

    def out_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial output size for an input of ``hw``."""
        return (
            conv_out(hw[0], self.kernel, self.stride, self.padding),
            conv_out(hw[1], self.kernel, self.stride, self.padding),
        )


@dataclass(frozen=True)
class BlockPlan:
    """A basic residual block: conv1 (carries the stride) -> conv2, plus its shortcut."""

    conv1: ConvPlan
    conv2: ConvPlan
    shortcut: str  # "identity" | "A" (subsample + zero channels) | "B" (1x1 conv + BN)
    down: ConvPlan | None = None  # the shortcut conv of "B"


@dataclass(frozen=True)
class NetPlan:
    arch: str
    in_channels: int
    input_size: tuple[int, int]
    stem: ConvPlan
    blocks: tuple[BlockPlan, ...]
    feature_dim: int

    def convs(self) -> list[ConvPlan]:
        """Every masked conv in ``state_dict`` order."""
        out = [self.stem]
        for b in self.blocks:
            out += [b.conv1, b.conv2] + ([b.down] if b.down is not None else [])
        return out


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def scaled_channels(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _stages(arch: str, width: float) -> tuple[list[int], list[int], list[int], str]:
    """Per stage: channels, blocks, first stride; and the shortcut kind of the architecture."""
    if arch == "resnet32":
        base = scaled_channels(16, width)
        return [base, 2 * base, 4 * base], [5, 5, 5], [1, 2, 2], "A"
    return [scaled_channels(c, width) for c in (64, 128, 256, 512)], [2, 2, 2, 2], [1, 2, 2, 2], "B"


def plan_net(net: NetConfig | Mapping[str, Any]) -> NetPlan:
    """The layer plan of ``net``: a :class:`NetConfig` or its ``to_json()`` dict (``capacity`` optional).

    A malformed dict or an unknown architecture raises :class:`~mind_edge.errors.GraphError`.
    """
    if isinstance(net, NetConfig):
        net = net.to_json()
    try:
        arch = str(net["arch"])
        in_channels = int(net["in_channels"])
        h, w = (int(v) for v in net["input_size"])
        width = float(net["width"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GraphError(f"malformed architecture config {dict(net)!r}: {exc}; expected NetConfig.to_json()") from exc
    if arch not in ARCHS:
        raise GraphError(f"unknown architecture {arch!r}; this mind-edge builds graphs for {', '.join(ARCHS)}")
    widths, blocks, strides, shortcut = _stages(arch, width)
    stem = ConvPlan("stem", "stem_bn", in_channels, widths[0], 3, 1, 1)
    plans: list[BlockPlan] = []
    in_ch = widths[0]
    for out_ch, n, stride in zip(widths, blocks, strides):
        for j in range(n):
            s = stride if j == 0 else 1
            p = f"blocks.{len(plans)}"
            conv1 = ConvPlan(f"{p}.conv1", f"{p}.bn1", in_ch, out_ch, 3, s, 1)
            conv2 = ConvPlan(f"{p}.conv2", f"{p}.bn2", out_ch, out_ch, 3, 1, 1)
            if s == 1 and in_ch == out_ch:
                plans.append(BlockPlan(conv1, conv2, "identity"))
            elif shortcut == "A":
                plans.append(BlockPlan(conv1, conv2, "A"))
            else:
                down = ConvPlan(f"{p}.down_conv", f"{p}.down_bn", in_ch, out_ch, 1, s, 0)
                plans.append(BlockPlan(conv1, conv2, "B", down))
            in_ch = out_ch
    return NetPlan(arch, in_channels, (h, w), stem, tuple(plans), in_ch)


__all__ = [
    "ARCHS",
    "FREE",
    "NetConfig",
    "ConvPlan",
    "BlockPlan",
    "NetPlan",
    "conv_out",
    "scaled_channels",
    "plan_net",
]
