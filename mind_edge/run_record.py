"""``run.json`` as a typed record (torch-free): what :func:`mind_edge.checkpoint.read_run_json` returns.

The checks live in :func:`mind_edge.checkpoint.check_run_meta` (one place); :class:`RunRecord`
is built from the object they accepted. Readers use its attributes:

* ``net`` (:class:`~mind_edge.core.plan.NetConfig`), ``scenario``
  (:class:`~mind_edge.data.Scenario`) and ``train`` (:class:`~mind_edge.train_config.TrainConfig`,
  routing policy and temperature included) are built on first use, so a run whose settings this
  mind-edge cannot use (an unknown policy, say) can still be shown by ``info``;
* ``data`` (:class:`DataRecord`: the normalisation and the dataset the run was trained on),
  ``seed``, ``learned_tasks``, ``steps`` (:class:`StepRecord`), ``checkpoint_sha256``,
  ``spec_key`` and ``routing_stats`` are plain values.

``final`` (the metrics after the last step) and each step's ``tag_matrix``/``taw_matrix`` are
what the run tables show. Writers start from :meth:`RunRecord.to_json` (a deep copy: extra keys
of newer writers kept).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mind_edge.core.plan import NetConfig
from mind_edge.data import DatasetSpec, Scenario
from mind_edge.train_config import TrainConfig


@dataclass(frozen=True)
class DataRecord:
    """``data`` of ``run.json``: the dataset a run was trained on and its input normalisation."""

    dataset: str | None
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    padding: int = 0
    channel_order: str | None = None
    root: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DataRecord:
        return cls(
            dataset=d.get("dataset"),
            in_channels=int(d["in_channels"]),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            augment=str(d.get("augment", "none")),
            padding=int(d.get("padding", 0)),
            channel_order=d.get("channel_order"),
            root=d.get("root"),
        )


@dataclass(frozen=True)
class StepRecord:
    """One entry of ``steps``: a task learned by ``train`` or (with a ``source``) by ``learn``."""

    step: int
    source: Mapping[str, Any] | None = None  # the folder 'mind-edge learn' read the task from
    tag_matrix: tuple[tuple[float | None, ...], ...] = ()  # R[k, j] after this step (None: not measured)
    taw_matrix: tuple[tuple[float | None, ...], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # rows, losses, ...

    @property
    def learned_from_folder(self) -> bool:
        return bool(self.source)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StepRecord:
        source = d.get("source")
        return cls(
            step=int(d.get("step", -1)),
            source=source if isinstance(source, dict) and source else None,
            tag_matrix=_matrix(d.get("tag_matrix", [])),
            taw_matrix=_matrix(d.get("taw_matrix", [])),
            raw=d,
        )


def _matrix(rows: Any) -> tuple[tuple[float | None, ...], ...]:
    return tuple(tuple(None if v is None else float(v) for v in row) for row in rows)


@dataclass(frozen=True, eq=False)
class RunRecord:
    """``run.json`` of a run directory, checked (see the module docstring)."""

    raw: Mapping[str, Any] = field(repr=False)
    data: DataRecord | None = None
    seed: int = 0
    learned_tasks: tuple[tuple[int, ...], ...] = ()
    steps: tuple[StepRecord, ...] = ()
    checkpoint_sha256: str | None = None
    spec_key: Mapping[str, Any] | None = None  # written by 'mind-edge train' (resume checks it)
    routing_stats: Mapping[str, Any] = field(default_factory=dict, repr=False)
    final: Mapping[str, float | None] | None = None  # the metrics after the last step (None: a number not measurable)
    path: Path | None = None

    @classmethod
    def from_json(cls, meta: Mapping[str, Any], path: Path | None = None) -> RunRecord:
        """The record of a ``run.json`` object that :func:`~mind_edge.checkpoint.check_run_meta` accepted."""
        data = meta.get("data")
        stats = meta.get("routing_stats")
        final = meta.get("final")
        return cls(
            raw=meta,
            data=DataRecord.from_json(data) if isinstance(data, dict) else None,
            seed=int(meta.get("seed", 0)),
            learned_tasks=tuple(tuple(int(c) for c in cl) for cl in meta.get("learned_tasks", [])),
            steps=tuple(StepRecord.from_json(s) for s in meta.get("steps", [])),
            checkpoint_sha256=meta.get("checkpoint_sha256"),
            spec_key=meta.get("spec_key"),
            routing_stats=stats if isinstance(stats, dict) else {},
            final=dict(final) if isinstance(final, dict) else None,
            path=path,
        )

    # -- typed parts, built on first use (their constructors have their own rules) ----------
    @cached_property
    def net(self) -> NetConfig:
        return NetConfig.from_json(self.raw["net"])

    @cached_property
    def scenario(self) -> Scenario:
        return Scenario.from_json(self.raw["scenario"])

    @cached_property
    def train(self) -> TrainConfig:
        """The training settings, routing policy and temperature included."""
        return TrainConfig.from_json(self.raw["train"])

    @property
    def num_learned(self) -> int:
        return len(self.learned_tasks)

    @property
    def dataset(self) -> str:
        """The dataset's name (``data.dataset``, else the scenario's)."""
        if self.data is not None and self.data.dataset:
            return str(self.data.dataset)
        return str(self.raw["scenario"]["dataset"])

    def dataset_spec(self) -> DatasetSpec:
        """The input contract the run was trained with (size and channels of its network)."""
        d = self.data
        if d is None:
            raise KeyError("data")
        return DatasetSpec(
            name=self.dataset,
            in_channels=self.net.in_channels,
            input_size=self.net.input_size,
            mean=d.mean,
            std=d.std,
            augment=d.augment,
            padding=d.padding,
        )

    def has_folder_tasks(self) -> bool:
        """A task was added by ``mind-edge learn`` from a folder (the scenario alone no longer describes the run)."""
        return any(s.learned_from_folder for s in self.steps)

    def summary_json(self) -> dict:
        """The sections ``mind-edge info --json`` prints, as run.json holds them (absent ones ``None``)."""
        keys = ("net", "scenario", "train", "seed", "final", "learned_tasks", "versions")
        return {k: copy.deepcopy(self.raw.get(k)) for k in keys}

    def to_json(self) -> dict:
        """A deep copy of the ``run.json`` object, for writers of a new or updated run."""
        return copy.deepcopy(dict(self.raw))
