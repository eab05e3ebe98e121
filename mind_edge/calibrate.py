"""``mind-edge calibrate``: gather the routing statistics of a run trained before they existed.

Every task's statistics come from that task's own training images only (the run's dataset and
scenario, or the folder ``mind-edge learn`` took a task from), computed exactly as training
computes them at the end of each task (:func:`mind_edge.routing.gather_routing_stats`), so a
calibrated run equals one that gathered them while training. Nothing is retrained: weights, BN
sets and heads are untouched; the checkpoint and ``run.json`` are rewritten atomically.
Tasks that already have statistics keep them (frozen like their weights) unless ``force``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mind_edge.checkpoint import load_run
from mind_edge.core.routing import DEFAULT_POLICY, STATS_VERSION, get_policy
from mind_edge.data import load_run_dataset, task_arrays
from mind_edge.errors import DataError
from mind_edge.learn import load_folder
from mind_edge.routing import gather_routing_stats
from mind_edge.run import write_outputs
from mind_edge.run_record import RunRecord
from mind_edge.train import resolve_device

log = logging.getLogger(__name__)


@dataclass
class CalibrateResult:
    run_dir: Path
    gathered: list[int]  # tasks whose statistics were computed now
    kept: list[int]  # tasks that already had them
    bytes_per_task: int
    seconds: float
    policy: str  # the policy the run routes with now


def task_train_sets(record: RunRecord, tasks: list[int], *, root: str | None = None):
    """``(images, local labels)`` of the training data of each task in ``tasks``, and the dataset spec."""
    scenario = record.scenario
    if record.data is None:
        raise KeyError("data")
    size, channels = record.data.input_size, record.data.in_channels
    sources = {st.step: st.source for st in record.steps}
    train_set, _, spec = load_run_dataset(record, root)
    out = {}
    for t in tasks:
        src = sources.get(t) or {}
        if src.get("kind") == "imagefolder":
            fd = load_folder(
                str(src.get("root")), size, channels, holdout=float(src.get("holdout", 0.2)), seed=record.seed
            )
            out[t] = (fd.train_images, fd.train_labels)
        elif t < scenario.num_tasks():
            x, local, _ = task_arrays(train_set, scenario, t)
            out[t] = (x, local)
        else:
            raise DataError(
                f"task {t} of the run was learned from a source run.json does not record; "
                "cannot find its training images"
            )
    return out, spec


def calibrate_run(
    run_dir: str | Path,
    *,
    root: str | None = None,
    device: str = "cpu",
    force: bool = False,
    batch_size: int = 256,
    routing: str | None = None,
) -> CalibrateResult:
    """Gather the routing statistics of every task of ``run_dir`` that lacks them (all with ``force``).

    ``routing``: the policy the run routes with afterwards (run.json's ``train.routing``, what
    ``export`` builds); by default a run that gathered statistics now moves to :data:`DEFAULT_POLICY`
    (its previous policy is recorded), a run that already had them keeps its policy.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    model, record = load_run(run_dir)
    dev = resolve_device(device)
    todo = [t for t in range(model.num_tasks) if force or not model.heads[t].routing.ready]
    kept = [t for t in range(model.num_tasks) if t not in todo]
    if todo:
        sets, spec = task_train_sets(record, todo, root=root)
        model.to(dev)
        for t in todo:
            images, labels = sets[t]
            stats = gather_routing_stats(model, t, images, np.asarray(labels), spec, device=dev, batch_size=batch_size)
            log.info("task %d: routing statistics from %d training images", t, stats.count)
        model.cpu()
    stats = model.routing_stats()
    nbytes = max((s.nbytes for s in stats if s is not None), default=0)
    before = record.train.routing
    policy = get_policy(routing).name if routing is not None else (DEFAULT_POLICY if todo else before)
    changed = bool(todo) or policy != before
    if changed:
        meta = record.to_json()  # the rewritten run.json (keys of newer writers kept)
        meta["routing_stats"] = {
            "version": STATS_VERSION,
            "bytes_per_task": nbytes,
            "calibrated_tasks": sorted(set(record.routing_stats.get("calibrated_tasks", [])) | set(todo)),
        }
        if policy != before:
            meta["train"]["routing"] = policy
            meta["routing_stats"]["previous_policy"] = before
        write_outputs(run_dir, model, meta)
    return CalibrateResult(run_dir, todo, kept, nbytes, time.perf_counter() - t0, policy)
