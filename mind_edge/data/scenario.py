"""Class-incremental scenarios (torch-free): class orders and the split of classes into tasks.

Class order: a seeded shuffle (``seed``, default), ``natural``, or the iCaRL/FACIL order
(``numpy.random.seed(1993)`` permutation) for comparability; or an explicit permutation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mind_edge.data.base import ImageArrays, is_int
from mind_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ORDERS = ("seed", "natural", "icarl", "custom")
ICARL_SEED = 1993


@dataclass(frozen=True)
class Scenario:
    """A class-incremental split: which original class ids each task holds, in order."""

    dataset: str
    order: str  # "seed" | "natural" | "icarl" | "custom"
    seed: int
    tasks: tuple[tuple[int, ...], ...]  # original class ids of each task, in order
    class_names: tuple[str, ...]  # indexed by original class id

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"Scenario.dataset must be a non-empty string; got {self.dataset!r}.")
        if self.order not in ORDERS:
            raise ConfigError(f"Scenario.order must be one of {ORDERS}; got {self.order!r}.")
        if not is_int(self.seed):
            raise ConfigError(f"Scenario.seed must be an integer; got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))
        if isinstance(self.class_names, (str, bytes)) or not all(isinstance(n, str) for n in self.class_names):
            raise ConfigError(f"Scenario.class_names must be a list of strings; got {self.class_names!r}.")
        names = tuple(self.class_names)
        object.__setattr__(self, "class_names", names)
        if isinstance(self.tasks, (str, bytes)) or len(self.tasks) == 0:
            raise ConfigError(f"Scenario.tasks must be a non-empty list of class-id lists; got {self.tasks!r}.")
        tasks = []
        seen: dict[int, int] = {}
        for t, cls in enumerate(self.tasks):
            if isinstance(cls, (str, bytes)) or not hasattr(cls, "__iter__"):
                raise ConfigError(f"Scenario task {t} must be a list of class ids; got {cls!r}.")
            cls = tuple(cls)
            if not cls:
                raise ConfigError(f"Scenario task {t} has no classes.")
            for c in cls:
                if not is_int(c) or not 0 <= int(c) < len(names):
                    raise ConfigError(
                        f"Scenario task {t}: class id {c!r} is not an integer in 0..{len(names) - 1} "
                        f"({len(names)} class names)."
                    )
                if int(c) in seen:
                    raise ConfigError(
                        f"Scenario: class {int(c)} ({names[int(c)]!r}) is in task {seen[int(c)]} and "
                        f"task {t}; tasks must be disjoint."
                    )
                seen[int(c)] = t
            tasks.append(tuple(int(c) for c in cls))
        object.__setattr__(self, "tasks", tuple(tasks))

    def num_tasks(self) -> int:
        return len(self.tasks)

    def classes_per_task(self) -> list[int]:
        return [len(t) for t in self.tasks]

    def task_of_class(self) -> dict[int, int]:
        return {c: t for t, cls in enumerate(self.tasks) for c in cls}

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "order": self.order,
            "seed": self.seed,
            "tasks": [list(t) for t in self.tasks],
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_json(cls, d: Any) -> Scenario:
        keys = ("dataset", "order", "seed", "tasks", "class_names")
        if not isinstance(d, dict):
            raise DataError(
                f"malformed scenario: expected a JSON object with keys {list(keys)}; got {type(d).__name__}."
            )
        missing = [k for k in keys if k not in d]
        if missing:
            raise DataError(f"malformed scenario: missing keys {missing} (found {sorted(d)}).")
        if not isinstance(d["tasks"], (list, tuple)) or not all(isinstance(t, (list, tuple)) for t in d["tasks"]):
            raise DataError(f"malformed scenario: 'tasks' must be a list of lists of class ids; got {d['tasks']!r}.")
        if not isinstance(d["class_names"], (list, tuple)):
            raise DataError(f"malformed scenario: 'class_names' must be a list; got {d['class_names']!r}.")
        try:
            return cls(
                dataset=d["dataset"],
                order=d["order"],
                seed=d["seed"],
                tasks=tuple(tuple(t) for t in d["tasks"]),
                class_names=tuple(d["class_names"]),
            )
        except ConfigError as exc:
            raise DataError(f"malformed scenario: {exc}") from exc


def class_order(num_classes: int, order: str, seed: int) -> list[int]:
    """The order in which classes are presented.

    ``"natural"``: ``0..K-1``. ``"seed"``: ``np.random.default_rng(seed).permutation(K)``.
    ``"icarl"``: ``np.random.seed(1993); np.random.permutation(K)`` as in iCaRL/FACIL (``seed``
    is ignored); the global numpy RNG state is restored afterwards.
    """
    if not is_int(num_classes) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes!r}.")
    if not is_int(seed):
        raise ConfigError(f"seed must be an integer; got {seed!r}.")
    if order == "natural":
        return list(range(num_classes))
    if order == "seed":
        return [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]
    if order == "icarl":
        state = np.random.get_state()
        try:
            np.random.seed(ICARL_SEED)
            return [int(c) for c in np.random.permutation(num_classes)]
        finally:
            np.random.set_state(state)
    raise ConfigError(f"unknown class order {order!r}; choose one of seed, natural, icarl.")


def make_scenario(
    dataset: str,
    class_names: Sequence[str],
    num_tasks: int,
    order: str | Sequence[int] = "seed",
    seed: int = 0,
    first_task_classes: int | None = None,
) -> Scenario:
    """Split the ordered classes into ``num_tasks`` tasks as evenly as possible.

    Like FACIL: without ``first_task_classes`` every task gets ``K // num_tasks`` classes and the
    first ``K % num_tasks`` tasks one more; with it, the first task gets that many and the rest is
    split evenly over the other tasks (earlier ones get the remainder). ``order`` is
    ``"seed"``/``"natural"``/``"icarl"`` (see :func:`class_order`) or an explicit permutation of
    the class ids (recorded as ``"custom"``).
    """
    names = tuple(str(n) for n in class_names)
    k = len(names)
    if k == 0:
        raise ConfigError(f"dataset {dataset!r} has no classes.")
    if not is_int(num_tasks) or num_tasks < 1:
        raise ConfigError(f"num_tasks must be a positive integer; got {num_tasks!r}.")
    if num_tasks > k:
        raise ConfigError(
            f"num_tasks={num_tasks} but {dataset!r} has only {k} classes; every task needs at "
            f"least one class. Use num_tasks <= {k}."
        )
    if isinstance(order, str):
        ordered = class_order(k, order, seed)
        order_name = order
    else:
        ordered = [int(c) for c in order]
        if sorted(ordered) != list(range(k)):
            raise ConfigError(f"an explicit class order must be a permutation of 0..{k - 1}; got {list(order)}.")
        order_name = "custom"
    if first_task_classes is None:
        sizes = [k // num_tasks] * num_tasks
        for i in range(k % num_tasks):
            sizes[i] += 1
    else:
        f = first_task_classes
        if not is_int(f) or f < 1 or f > k - (num_tasks - 1):
            raise ConfigError(
                f"first_task_classes={f!r} does not fit: {k} classes in {num_tasks} tasks need "
                f"1 <= first_task_classes <= {k - (num_tasks - 1)}."
            )
        if num_tasks == 1 and f != k:
            raise ConfigError(f"first_task_classes={f} with a single task: the only task holds all {k} classes.")
        rest = k - f
        sizes = [int(f)]
        if num_tasks > 1:
            sizes += [rest // (num_tasks - 1)] * (num_tasks - 1)
            for i in range(rest % (num_tasks - 1)):
                sizes[i + 1] += 1
    tasks, start = [], 0
    for s in sizes:
        tasks.append(tuple(ordered[start : start + s]))
        start += s
    return Scenario(dataset=dataset, order=order_name, seed=int(seed), tasks=tuple(tasks), class_names=names)


def task_arrays(arrays: ImageArrays, scenario: Scenario, task: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 NHWC, local labels int64, global labels int64)`` of one task's classes.

    Local label = position of the class in ``scenario.tasks[task]``; global = original class id.
    Samples keep their order in ``arrays``.
    """
    if not is_int(task) or not 0 <= task < scenario.num_tasks():
        raise ConfigError(f"task {task!r} does not exist; the scenario has tasks 0..{scenario.num_tasks() - 1}.")
    classes = scenario.tasks[task]
    for c in classes:
        if c >= arrays.num_classes or arrays.class_names[c] != scenario.class_names[c]:
            found = arrays.class_names[c] if c < arrays.num_classes else "<none>"
            raise DataError(
                f"the scenario ({scenario.dataset!r}) names class {c} {scenario.class_names[c]!r} but the "
                f"data has {found!r} ({arrays.num_classes} classes); the scenario belongs to another "
                "dataset or class list. Build the scenario from this dataset's class names."
            )
    lut = np.full(max(arrays.num_classes, len(scenario.class_names)), -1, dtype=np.int64)
    lut[list(classes)] = np.arange(len(classes), dtype=np.int64)
    local_all = lut[arrays.labels]
    mask = local_all >= 0
    if not mask.any():
        log.warning("task %d (classes %s) has no samples in this split", task, list(classes))
    return np.ascontiguousarray(arrays.images[mask]), local_all[mask], arrays.labels[mask].copy()


__all__ = ["ORDERS", "ICARL_SEED", "Scenario", "class_order", "make_scenario", "task_arrays"]
