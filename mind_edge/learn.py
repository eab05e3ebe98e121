"""``mind-edge learn``: add one task to a trained run from a folder of new classes, on any device.

The new task is learned with the self-distillation variant (the memory-constrained one: no
second dense network) by :func:`mind_edge.train.learn_task`, so every earlier task stays
bit-identical. The run's input size, channels and normalisation (mean/std of the data the
model was trained on) are reused; the folder is an ``ImageFolder`` tree.

Class ids: a folder class whose name is a class the run planned but has not learned yet
(e.g. the last task of its scenario) keeps that class's id; any other class gets a new id
after every id the run knows (``len(class_names)``, ``+1``, …). A class name the run has
already learned is refused.

The result is written to a new run directory (``out``; never in place), atomically: a
temporary sibling folder renamed into place.

**Memory budget.** ``memory_budget_mb`` measures, in a fresh ``spawn`` worker
(:func:`mind_edge.core.proc.spawn_call`: the trials do not raise this process's own peak), the
peak resident set size (``VmHWM``, not ``ru_maxrss``, which a fresh child inherits from its
parent: see :mod:`mind_edge.core.proc`) of two training steps of both stages
(teacher training and distillation, with the teacher copy, AdamW state and autograd buffers)
plus the evaluation of those images at a candidate batch size; the peak of ``learn`` is
predicted as the RSS this process already has (model and data loaded) plus 1.1 x the trial's
increment (a whole learn keeps a little more than two steps: allocator reuse). The largest
batch size whose prediction fits is used (a trial at the configured batch size, one at a
small size, a linear interpolation between them, verified by a third trial); when even the
small one does not fit, learn fails before training. On CUDA the trial's peak of
``torch.cuda.max_memory_reserved`` is added (a Jetson's GPU shares its memory with the CPU).
The measured peak RSS of ``learn`` (:func:`~mind_edge.core.proc.peak_rss_mb`) is always reported.
"""
# Over 600 lines: one command — the memory plan, the folder data and the atomic learn of 'mind-edge learn'

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mind_edge import imageio
from mind_edge.checkpoint import load_run, read_run_json, write_outputs
from mind_edge.core.proc import WorkerError, current_rss_mb, peak_rss_mb, spawn_call
from mind_edge.core.routing import STATS_VERSION, get_policy
from mind_edge.data import DatasetSpec, Scenario, decode_images, load_dataset, load_run_dataset, scan_split, task_arrays
from mind_edge.errors import CapacityError, ConfigError, DataError, MindEdgeError
from mind_edge.fileio import fsync_dir, make_temp_dir
from mind_edge.metrics import empty_matrix, matrix_from_json, matrix_to_json, summarize
from mind_edge.run_record import RunRecord
from mind_edge.train import TrainConfig, evaluate, learn_task, resolve_device

log = logging.getLogger(__name__)

MIN_BATCH = 2  # BatchNorm needs more than one sample per channel in training mode
TRIAL_TIMEOUT_S = 900
#: Steps per stage in a memory trial: the first step alone under-states the peak (glibc raises its
#: mmap threshold after freeing the first large activations, so later steps keep them on the heap).
TRIAL_STEPS = 2
#: Safety factor on a trial's increment: a full learn keeps up to ~6 % more than a 2-step trial
#: (ResNet-32, 3x32x32, batch 241-256; benchmarks/learn_memory.py), so predictions add 10 %.
MARGIN = 1.10


class MemoryBudgetError(ConfigError):
    """Learning cannot fit the requested memory budget."""


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Trial:
    batch_size: int
    baseline_mb: float  # RSS of the trial process after loading the model
    peak_mb: float  # its peak RSS after one step of each stage and one evaluation batch
    cuda_mb: float  # peak CUDA memory reserved (0 on the CPU)
    seconds: float

    @property
    def increment_mb(self) -> float:
        return max(0.0, self.peak_mb - self.baseline_mb) + self.cuda_mb


@dataclass
class MemoryPlan:
    budget_mb: float
    batch_size: int
    start_rss_mb: float  # this process's RSS before training (model + data loaded)
    start_peak_mb: float  # and its peak so far
    predicted_peak_mb: float
    trials: list[Trial] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "budget_mb": self.budget_mb,
            "batch_size": self.batch_size,
            "start_rss_mb": round(self.start_rss_mb, 1),
            "start_peak_mb": round(self.start_peak_mb, 1),
            "predicted_peak_mb": round(self.predicted_peak_mb, 1),
            "trials": [
                {
                    "batch_size": t.batch_size,
                    "baseline_mb": round(t.baseline_mb, 1),
                    "peak_mb": round(t.peak_mb, 1),
                    "cuda_mb": round(t.cuda_mb, 1),
                    "increment_mb": round(t.increment_mb, 1),
                    "seconds": round(t.seconds, 2),
                }
                for t in self.trials
            ],
            "method": f"spawn-worker trial: {TRIAL_STEPS} steps of teacher training and of distillation + evaluation; "
            f"predicted peak = max(peak so far, RSS before training + {MARGIN:g} x trial increment)",
        }


def run_trial(
    run_dir: Path,
    batch_size: int,
    num_classes: int,
    spec_json: dict,
    train_json: dict,
    seed: int,
    device: str,
    steps: int = TRIAL_STEPS,
) -> Trial:
    """Measure learning steps at ``batch_size`` in a fresh ``spawn`` worker (:func:`trial_worker`)."""
    request = {
        "run_dir": str(run_dir),
        "batch_size": int(batch_size),
        "num_classes": int(num_classes),
        "spec": spec_json,
        "train": train_json,
        "seed": int(seed),
        "device": device,
        "threads": torch.get_num_threads(),
        "steps": int(steps),
    }  # the same intra-op threads as here
    t0 = time.perf_counter()
    try:
        # fast_exit: the worker's lifetime peak is then the measured one (no interpreter teardown)
        out = spawn_call(trial_worker, request, timeout=TRIAL_TIMEOUT_S, fast_exit=True)
    except WorkerError as exc:
        raise MemoryBudgetError(
            f"the memory trial at batch size {batch_size} failed ({'killed, out of memory?' if exc.killed else exc}); "
            "raise the budget or use a narrower model"
        ) from exc
    return Trial(
        batch_size=int(batch_size),
        baseline_mb=float(out["baseline_mb"]),
        peak_mb=float(out["peak_mb"]),
        cuda_mb=float(out.get("cuda_mb", 0.0)),
        seconds=time.perf_counter() - t0,
    )


def trial_worker(req: dict) -> dict:  # pragma: no cover - runs in a spawn worker (tested through run_trial)
    """One memory trial (the request of :func:`run_trial`): ``{baseline_mb, peak_mb, cuda_mb}``."""
    logging.disable(logging.WARNING)
    torch.set_num_threads(int(req.get("threads", torch.get_num_threads())))
    device = resolve_device(req["device"])
    model, _ = load_run(req["run_dir"])
    spec = DatasetSpec.from_json(req["spec"])
    cfg = TrainConfig.from_json(req["train"])
    bs, k = int(req["batch_size"]), int(req["num_classes"])
    cfg = replace(cfg, epochs=1, distill_epochs=1, batch_size=bs, milestones=(), distill_milestones=())
    h, w = spec.input_size
    rng = np.random.default_rng(0)
    steps = int(req.get("steps", TRIAL_STEPS))
    images = rng.integers(0, 256, size=(bs * steps, h, w, spec.in_channels), dtype=np.uint8)
    labels = (np.arange(bs * steps) % k).astype(np.int64)
    base = max((c for t in range(model.num_tasks) for c in model.task_classes(t)), default=-1) + 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = current_rss_mb()
    learn_task(model, list(range(base, base + k)), images, labels, spec, cfg, seed=int(req["seed"]), device=device)
    evaluate(model, [(images, labels)], spec, temperature=cfg.temperature, device=device, batch_size=bs)
    cuda = torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else 0.0
    return {"baseline_mb": baseline, "peak_mb": peak_rss_mb(), "cuda_mb": cuda}


def plan_memory(budget_mb: float, max_batch: int, trial) -> MemoryPlan:
    """Pick the largest batch size ``<= max_batch`` whose predicted peak RSS fits ``budget_mb``.

    ``trial(batch_size) -> Trial`` measures one candidate. Raises :class:`MemoryBudgetError`
    when even a small batch does not fit.
    """
    start_rss, start_peak = current_rss_mb(), peak_rss_mb()

    def predict(t: Trial) -> float:
        return max(start_peak, start_rss + MARGIN * t.increment_mb)

    if start_peak > budget_mb:
        raise MemoryBudgetError(
            f"--memory-budget {budget_mb:g} MB is below what learn already uses before training ({start_peak:.0f} MB "
            f"peak RSS with the model and data loaded); raise the budget or use fewer images"
        )
    plan = MemoryPlan(
        budget_mb=budget_mb, batch_size=0, start_rss_mb=start_rss, start_peak_mb=start_peak, predicted_peak_mb=math.nan
    )
    big = trial(max_batch)
    plan.trials.append(big)
    if predict(big) <= budget_mb:
        plan.batch_size, plan.predicted_peak_mb = max_batch, predict(big)
        return plan
    small_bs = max(MIN_BATCH, min(max_batch - 1, max_batch // 8))
    small = trial(small_bs)
    plan.trials.append(small)
    if predict(small) > budget_mb:
        raise MemoryBudgetError(
            f"--memory-budget {budget_mb:g} MB is too small: batch size {small_bs} would need about "
            f"{predict(small):.0f} MB ({start_rss:.0f} MB before training + {small.increment_mb:.0f} MB measured for "
            f"{TRIAL_STEPS} steps, +{100 * (MARGIN - 1):.0f} %; "
            f"batch {max_batch}: {predict(big):.0f} MB). Raise the budget, or use a narrower model"
        )
    best = small
    lo, hi = small, big
    for _ in range(3):  # interpolate linearly between a fitting and a failing batch size, then verify
        slope = max(MARGIN * (hi.increment_mb - lo.increment_mb) / max(hi.batch_size - lo.batch_size, 1), 1e-6)
        cand = min(hi.batch_size - 1, lo.batch_size + int((budget_mb - predict(lo)) / slope))
        if cand <= lo.batch_size:  # the line says nothing larger fits
            break
        t = trial(cand)
        plan.trials.append(t)
        if predict(t) <= budget_mb:
            best = lo = t
            if hi.batch_size - lo.batch_size <= max(1, lo.batch_size // 8):
                break
        else:
            hi = t
    plan.batch_size, plan.predicted_peak_mb = best.batch_size, predict(best)
    return plan


# ----------------------------------------------------------------------------- data


@dataclass
class FolderData:
    root: Path
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    test_split: str


def load_folder(
    data: str | Path, size: tuple[int, int], channels: int, *, holdout: float = 0.2, seed: int = 0
) -> FolderData:
    """The new classes: ``data/train/<class>/`` + ``data/test/<class>/`` (or ``val/``); without a
    test split, ``data/train/<class>/`` or ``data/<class>/`` with ``holdout`` of each class held out."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DataError(
            f"--data {root} does not exist or is not a folder; expected an ImageFolder tree "
            "(train/<class>/*.png and test/<class>/*.png)"
        )
    has_train = (root / "train").is_dir()
    if has_train and ((root / "test").is_dir() or (root / "val").is_dir()):
        train, test, _ = load_dataset("imagefolder", root, image_size=size, channels=channels)
        split = "test" if (root / "test").is_dir() else "val"
        return FolderData(root, train.class_names, train.images, train.labels, test.images, test.labels, split)
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout}")
    split_dir = root / "train" if has_train else root
    files = scan_split(split_dir)
    empty = [c for c, f in files.items() if not f]
    if not files or empty:
        raise DataError(
            f"--data {root}: expected class folders with images ({', '.join(imageio.IMAGE_EXTENSIONS)}) in "
            f"{split_dir}; found {'no class folder' if not files else 'no images in ' + ', '.join(empty)}"
        )
    names = tuple(files)
    rng = np.random.default_rng(seed)
    tr_p, tr_y, te_p, te_y = [], [], [], []
    for i, c in enumerate(names):
        paths = files[c]
        n_test = int(len(paths) * holdout)
        if len(paths) - n_test < 1:
            raise DataError(f"class {c!r} in {split_dir} has {len(paths)} image(s); it needs at least one for training")
        perm = rng.permutation(len(paths))
        te_p += [paths[j] for j in perm[:n_test]]
        te_y += [i] * n_test
        tr_p += [paths[j] for j in perm[n_test:]]
        tr_y += [i] * (len(paths) - n_test)
    size = imageio.check_size(size)
    tr = decode_images(tr_p, size, channels, None, "train")
    te = decode_images(te_p, size, channels, None, "held-out") if te_p else np.zeros((0, *size, channels), np.uint8)
    return FolderData(
        root,
        names,
        tr,
        np.array(tr_y, np.int64),
        te,
        np.array(te_y, np.int64),
        f"holdout {holdout:g} of {split_dir.name}/ (seed {seed})",
    )


def assign_class_ids(record: RunRecord, names: tuple[str, ...]) -> list[int]:
    """Global ids of the folder's classes (see the module docstring); refuses known classes."""
    all_names = [str(n) for n in record.scenario.class_names]
    learned = [c for t in record.learned_tasks for c in t]
    learned_names = {all_names[c]: (t, c) for t, cl in enumerate(record.learned_tasks) for c in cl}
    dup = [n for n in names if n in learned_names]
    if dup:
        where = ", ".join(f"{n!r} (task {learned_names[n][0]}, id {learned_names[n][1]})" for n in dup)
        raise ConfigError(
            f"the run already knows the class(es) {where}; a new task needs new classes. Remove or rename those folders"
        )
    planned = {n: i for i, n in enumerate(all_names) if i not in set(learned)}
    ids, nxt = [], len(all_names)
    for n in names:
        if n in planned:
            ids.append(planned[n])
        else:
            ids.append(nxt)
            nxt += 1
    return ids


# ----------------------------------------------------------------------------- learn


@dataclass
class LearnResult:
    out: Path
    task: int
    classes: list[int]
    class_names: list[str]
    batch_size: int
    train_images: int
    test_images: int
    test_split: str
    new_task: dict  # tag / taw / routing of the new task's test images
    final: dict  # over every task that could be evaluated
    evaluated_tasks: list[int]
    peak_rss_mb: float
    memory: MemoryPlan | None
    seconds: float
    meta: dict = field(repr=False)

    def summary(self) -> dict:
        return {
            "out": str(self.out),
            "task": self.task,
            "classes": self.classes,
            "class_names": self.class_names,
            "batch_size": self.batch_size,
            "train_images": self.train_images,
            "test_images": self.test_images,
            "test_split": self.test_split,
            "new_task": self.new_task,
            "final": self.final,
            "evaluated_tasks": self.evaluated_tasks,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "memory": self.memory.to_json() if self.memory else None,
            "seconds": round(self.seconds, 2),
        }


def _nan_summary(R_tag: np.ndarray, R_taw: np.ndarray, routing: float) -> dict:
    """``summarize`` over the entries that exist (tasks whose test data was unavailable are NaN)."""
    if not (np.isnan(np.diag(R_tag)).any() or np.isnan(R_tag[-1]).any()):
        return summarize(R_tag, R_taw, routing)
    n = R_tag.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = [np.nanmean(R_tag[k, : k + 1]) for k in range(n)]
        forget = [np.nanmax(R_tag[: n - 1, j][j:]) - R_tag[n - 1, j] for j in range(n - 1)]
        bwt = [R_tag[n - 1, j] - R_tag[j, j] for j in range(n - 1)]
        out = {
            "tag": np.nanmean(R_tag[-1]),
            "taw": np.nanmean(R_taw[-1]),
            "routing": routing,
            "avg_incremental_tag": np.nanmean(rows),
            "forgetting_tag": np.nanmean(forget) if forget else 0.0,
            "bwt_tag": np.nanmean(bwt) if bwt else 0.0,
        }
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}


def task_test_sets(
    record: RunRecord, t: int, size, channels: int, root: str | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray] | None], list[str]]:
    """Test data ``(images, local labels)`` of tasks ``0..t-1`` (``None`` where unavailable, with a note):
    the run's dataset (``root`` overrides its folder), or the folder a task was learned from."""
    scenario = record.scenario
    sources = {st.step: st.source for st in record.steps}
    names = list(scenario.class_names)
    tests: list[tuple[np.ndarray, np.ndarray] | None] = [None] * t
    notes: list[str] = []
    base_test = None
    folders: dict[str, Any] = {}
    for j in range(t):
        src = sources.get(j) or {}
        classes = list(record.learned_tasks[j])
        try:
            if src.get("kind") == "imagefolder":
                key = str(src.get("root"))
                if key not in folders:
                    folders[key] = load_folder(
                        key, size, channels, holdout=float(src.get("holdout", 0.2)), seed=record.seed
                    )
                fd = folders[key]
                lut = {n: i for i, n in enumerate(fd.class_names)}
                want = [lut[names[c]] for c in classes]
                mask = np.isin(fd.test_labels, want)
                local = np.array([want.index(v) for v in fd.test_labels[mask]], dtype=np.int64)
                tests[j] = (fd.test_images[mask], local)
            else:
                if base_test is None:
                    _, base_test, _ = load_run_dataset(record, root or None)
                x, y, _ = task_arrays(base_test, scenario, j)
                tests[j] = (x, y)
        except (MindEdgeError, KeyError, ValueError, OSError) as exc:
            notes.append(f"task {j}: test data unavailable ({type(exc).__name__}: {exc})")
    return tests, notes


def learn(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    epochs: int | None = None,
    distill_epochs: int | None = None,
    lr: float | None = None,
    distill_lr: float | None = None,
    batch_size: int | None = None,
    memory_budget_mb: float | None = None,
    device: str = "auto",
    holdout: float = 0.2,
    evaluate_earlier: bool = True,
    reporter=None,
) -> LearnResult:
    """Learn one more task of ``run_dir`` from the ImageFolder ``data``; write the new run to ``out``."""
    t0 = time.perf_counter()
    run_dir, out = Path(run_dir), Path(out)
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out must differ from the run directory; learn never rewrites a run in place")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"--out {out} exists and is not empty; learn writes a new run directory (choose another --out)"
        )
    if memory_budget_mb is not None and not (memory_budget_mb > 0 and math.isfinite(memory_budget_mb)):
        raise ConfigError(f"--memory-budget must be a positive number of MB, got {memory_budget_mb}")
    record = read_run_json(run_dir)
    net = record.net
    learned = [list(cl) for cl in record.learned_tasks]
    t = len(learned)
    if t >= net.capacity:
        raise CapacityError(
            f"run {run_dir} has capacity for {net.capacity} tasks and has learned {t}: no free weights are left "
            f"for another task. Train a new model with a larger --capacity (e.g. mind-edge train --capacity {t + 5} …) "
            "to leave room for tasks learned on the device"
        )
    if t == 0:
        raise ConfigError(f"run {run_dir} has no learned task; train it first with 'mind-edge train'")
    size, channels = net.input_size, net.in_channels
    folder = load_folder(data, size, channels, holdout=holdout, seed=record.seed)
    ids = assign_class_ids(record, folder.class_names)
    spec = record.dataset_spec()
    overrides = {
        k: v
        for k, v in {
            "epochs": epochs,
            "distill_epochs": distill_epochs,
            "lr": lr,
            "distill_lr": distill_lr,
            "batch_size": batch_size,
        }.items()
        if v is not None
    }
    cfg = replace(record.train, method="self", **overrides)
    seed = record.seed
    dev = resolve_device(device)
    model, record = load_run(run_dir)
    if get_policy(cfg.routing).needs_stats and not all(h.routing.ready for h in model.heads):
        raise ConfigError(
            f"run {run_dir} routes with {cfg.routing!r} but has no routing statistics (it was trained "
            f"before they existed); run 'mind-edge calibrate {run_dir}' first"
        )
    earlier, notes = task_test_sets(record, t, size, channels) if evaluate_earlier else ([None] * t, ["not asked for"])
    for note in notes:
        log.warning("%s", note)

    plan = None
    if memory_budget_mb is not None:
        max_bs = min(cfg.batch_size, max(MIN_BATCH, int(folder.train_images.shape[0])))

        def trial(bs: int) -> Trial:
            tr = run_trial(run_dir, bs, len(ids), spec.to_json(), cfg.to_json(), seed, str(dev))
            log.info("memory trial: batch %d -> +%.0f MB", bs, tr.increment_mb)
            return tr

        plan = plan_memory(float(memory_budget_mb), max_bs, trial)
        cfg = replace(cfg, batch_size=plan.batch_size)

    rep = learn_task(
        model, ids, folder.train_images, folder.train_labels, spec, cfg, seed=seed, device=dev, reporter=reporter
    )
    tests = [e if e is not None else (np.zeros((0, *size, channels), np.uint8), np.zeros(0, np.int64)) for e in earlier]
    tests.append((folder.test_images, folder.test_labels))
    ev = evaluate(
        model,
        tests,
        spec,
        temperature=cfg.temperature,
        policy=cfg.routing,
        device=dev,
        batch_size=cfg.batch_size if plan else 512,
    )
    have = [j for j in range(t) if earlier[j] is not None] + ([t] if folder.test_images.shape[0] else [])

    # -- the new run.json
    meta = record.to_json()  # the new run.json starts from this one (keys of newer writers kept)
    scen = meta["scenario"]
    names = list(scen["class_names"])
    for c, n in zip(ids, folder.class_names):
        if c == len(names):
            names.append(n)
    taken = set(ids)
    rest = [[c for c in cl if c not in taken] for cl in scen["tasks"][t:]]
    scen["tasks"] = [list(cl) for cl in learned] + [ids] + [cl for cl in rest if cl]
    scen["class_names"] = names
    Scenario.from_json(scen)  # validates
    n_new = len(scen["tasks"])
    steps = meta.get("steps", [])
    R_tag, R_taw = empty_matrix(n_new), empty_matrix(n_new)
    if steps:
        old_tag, old_taw = matrix_from_json(steps[-1]["tag_matrix"]), matrix_from_json(steps[-1]["taw_matrix"])
        R_tag[:t, :t], R_taw[:t, :t] = old_tag[:t, :t], old_taw[:t, :t]
    for j in range(t + 1):
        ok = j in have
        R_tag[t, j] = ev.tag[j] if ok else np.nan
        R_taw[t, j] = ev.taw[j] if ok else np.nan
    final = _nan_summary(R_tag[: t + 1, : t + 1], R_taw[: t + 1, : t + 1], ev.routing_overall)
    peak = peak_rss_mb()
    row = lambda v: [float(v[j]) if j in have else None for j in range(t + 1)]
    source = {
        "kind": "imagefolder",
        "root": str(folder.root.resolve()),
        "class_names": list(folder.class_names),
        "train_images": int(folder.train_images.shape[0]),
        "test_images": int(folder.test_images.shape[0]),
        "test_split": folder.test_split,
        "holdout": holdout,
    }
    new_meta = dict(meta)
    new_meta.update(
        scenario=scen,
        learned_tasks=learned + [ids],
        final=final,
        owner_counts=model.owner_counts(),
        routing_stats={
            **meta.get("routing_stats", {}),
            "version": STATS_VERSION,
            "bytes_per_task": model.routing_stats()[t].nbytes,
        },
    )
    new_meta["steps"] = steps + [
        {
            "step": t,
            "classes": ids,
            "train_seconds": round(rep.train_seconds, 3),
            "distill_seconds": round(rep.distill_seconds, 3),
            "train_loss": rep.train_loss,
            "distill_loss": rep.distill_loss,
            "tag_row": row(ev.tag),
            "taw_row": row(ev.taw),
            "routing_row": row(ev.routing),
            "tag_matrix": matrix_to_json(R_tag),
            "taw_matrix": matrix_to_json(R_taw),
            **final,
            "source": source,
            "learned_by": "mind-edge learn",
            "device": str(dev),
            "batch_size": cfg.batch_size,
            "train": cfg.to_json(),
            "peak_rss_mb": round(peak, 1),
            "memory_plan": plan.to_json() if plan else None,
            "evaluated_tasks": have,
            "evaluation_notes": notes,
        }
    ]
    _write_run_atomically(out, model, new_meta)
    new_task = {"tag": ev.tag[t], "taw": ev.taw[t], "routing": ev.routing[t]} if t in have else {}
    log.info(
        "learned task %d (%s) into %s: TAW %.3f, peak RSS %.0f MB",
        t,
        list(folder.class_names),
        out,
        new_task.get("taw", float("nan")),
        peak,
    )
    if plan is not None and peak > plan.budget_mb:
        log.warning(
            "peak RSS %.0f MB exceeded the budget of %.0f MB (predicted %.0f MB)",
            peak,
            plan.budget_mb,
            plan.predicted_peak_mb,
        )
    return LearnResult(
        out=out,
        task=t,
        classes=ids,
        class_names=list(folder.class_names),
        batch_size=cfg.batch_size,
        train_images=int(folder.train_images.shape[0]),
        test_images=int(folder.test_images.shape[0]),
        test_split=folder.test_split,
        new_task=new_task,
        final=final,
        evaluated_tasks=have,
        peak_rss_mb=peak,
        memory=plan,
        seconds=time.perf_counter() - t0,
        meta=new_meta,
    )


def _write_run_atomically(out: Path, model, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)  # the umask's modes, not mkdtemp's 0700
    try:
        write_outputs(tmp, model, meta)
        if out.is_dir():
            out.rmdir()  # empty (checked before training)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
