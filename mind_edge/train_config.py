"""Training settings (torch-free): :class:`TrainConfig`, the ``train`` object of ``run.json``, and its presets.

Read by the trainer (:mod:`mind_edge.train`, which re-exports these names) and by the typed
``run.json`` record (:mod:`mind_edge.run_record`) without importing torch. The routing policy
and temperature are checked by :mod:`mind_edge.core.routing` (one rule for both).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from mind_edge.core.routing import DEFAULT_POLICY, check_temperature, get_policy
from mind_edge.errors import ConfigError

METHODS = ("self", "teacher")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one MIND run (the reference's names and defaults)."""

    method: str = "self"
    epochs: int = 50
    distill_epochs: int = 50
    lr: float = 0.005
    distill_lr: float = 0.035
    milestones: tuple[int, ...] = (35,)
    distill_milestones: tuple[int, ...] = (40,)
    gamma: float = 0.5
    batch_size: int = 256
    weight_decay: float = 0.01
    beta: float = 5.0
    temperature: float = 6.5
    routing: str = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.epochs < 1 or self.distill_epochs < 0:
            raise ConfigError(f"epochs must be >= 1 and distill epochs >= 0, got {self.epochs}/{self.distill_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        get_policy(self.routing)
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "distill_milestones", tuple(int(m) for m in self.distill_milestones))

    def to_json(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["distill_milestones"] = list(self.distill_milestones)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"malformed training config {d!r}: {exc}") from exc


# The reference's presets (AdamW, MultiStepLR gamma 0.5, batch 256, beta 5) plus CPU presets.
PRESETS: dict[str, TrainConfig] = {
    "cifar100": TrainConfig(epochs=50, distill_epochs=50, milestones=(35,), distill_milestones=(40,), temperature=6.5),
    "tinyimagenet": TrainConfig(
        epochs=100, distill_epochs=120, milestones=(70, 90), distill_milestones=(80, 110), temperature=12.0
    ),
    "core50": TrainConfig(epochs=20, distill_epochs=20, milestones=(15,), distill_milestones=(15,), temperature=3.0),
    "synbols": TrainConfig(
        epochs=25, distill_epochs=25, milestones=(10, 20), distill_milestones=(15,), temperature=4.0
    ),
    # Small data on a 2-core CPU (digits, quick Fashion-MNIST / CIFAR-10 checks). A low learning
    # rate and few epochs keep the sub-networks from saturating their softmax on 270 images per
    # task, which is what max-probability routing needs (README: digits temperature/lr sweep).
    "fast": TrainConfig(
        epochs=10,
        distill_epochs=10,
        lr=0.001,
        distill_lr=0.001,
        milestones=(),
        distill_milestones=(),
        batch_size=64,
        temperature=1.0,
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **overrides)
