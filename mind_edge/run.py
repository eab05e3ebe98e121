"""A whole class-incremental run: scenario, task-by-task training, metrics, run directory.

After every task the run directory is rewritten atomically (checkpoint first, then
``run.json`` which records the checkpoint's sha256), so a run interrupted anywhere can be
resumed at the next task and gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mind_edge import __version__
from mind_edge.checkpoint import load_run, read_run_json, write_outputs
from mind_edge.core.routing import POLICIES, STATS_VERSION, get_policy
from mind_edge.data import load_dataset, load_run_dataset, make_scenario, task_arrays
from mind_edge.errors import CheckpointError, ConfigError, DataError, MissingExtraError, require
from mind_edge.learn import task_test_sets
from mind_edge.metrics import DEFINITIONS, empty_matrix, matrix_from_json, matrix_to_json, summarize
from mind_edge.nets import NetConfig, build_model
from mind_edge.run_record import RunRecord
from mind_edge.train import NullReporter, Reporter, TrainConfig, evaluate, evaluate_policies, learn_task, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run (what ``mind-edge train`` parses from its options)."""

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    tasks: int = 5
    order: str = "seed"
    seed: int = 0
    arch: str = "resnet32"
    width: float = 1.0
    capacity: int | None = None  # default: the number of tasks
    image_size: tuple[int, int] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"

    def scenario_key(self) -> dict:
        return {"dataset": self.dataset, "tasks": self.tasks, "order": self.order, "seed": self.seed}


@dataclass
class RunResult:
    run_dir: Path
    record: RunRecord  # the run.json just written

    @property
    def final(self) -> dict:
        """The metrics after the last step (empty before the first task)."""
        return dict(self.record.final or {})


def _versions() -> dict:
    v = {
        "mind_edge": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    with contextlib.suppress(MissingExtraError):  # pragma: no cover
        v["torchvision"] = require("torchvision", "train", "recording the torchvision version").__version__
    return v


def _source_root(source) -> str:
    return str(source.get("root", "a folder")) if isinstance(source, dict) else str(source)


def train_run(
    spec: RunSpec,
    out: str | Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Train (or resume) a run into ``out``; ``stop_after`` ends after that many tasks (tests)."""
    reporter = reporter or NullReporter()
    run_dir = Path(out)
    device = resolve_device(spec.device)
    train_set, test_set, dspec = load_dataset(
        spec.dataset, spec.root, download=spec.download, image_size=spec.image_size, seed=spec.seed
    )
    if resume:
        record = read_run_json(run_dir)
        scenario = record.scenario
        by_learn = [step for step in record.steps if step.learned_from_folder]
        learned = [step.step for step in by_learn]
        if learned:
            raise CheckpointError(
                f"cannot resume {run_dir} with 'train': task(s) {learned} were added by 'mind-edge learn' "
                f"(from {_source_root(by_learn[0].source)}), "
                "so the run no longer follows the training scenario; resume the run it was learned from, "
                "or add further tasks with 'mind-edge learn'"
            )
        if record.spec_key is None:
            raise CheckpointError(
                f"cannot resume {run_dir}: its run.json has no spec_key (it was not written by "
                "'mind-edge train'); only training runs can be resumed"
            )
        if dict(record.spec_key) != spec.scenario_key():
            raise CheckpointError(
                f"cannot resume {run_dir}: it was trained with {dict(record.spec_key)}, "
                f"this command asks for {spec.scenario_key()}"
            )
        model, _ = load_run(run_dir)
        cfg, seed = record.train, record.seed
        meta = record.to_json()  # extended task by task below
        log.info("resuming %s at task %d of %d", run_dir, model.num_tasks, scenario.num_tasks())
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"output folder {run_dir} is not empty; choose another --out or pass --resume")
        scenario = make_scenario(spec.dataset, train_set.class_names, spec.tasks, order=spec.order, seed=spec.seed)
        capacity = spec.capacity or scenario.num_tasks()
        if capacity < scenario.num_tasks():
            raise ConfigError(f"capacity {capacity} is smaller than the {scenario.num_tasks()} tasks of the scenario")
        net = NetConfig(
            arch=spec.arch,
            in_channels=dspec.in_channels,
            input_size=dspec.input_size,
            width=spec.width,
            capacity=capacity,
        )
        torch.manual_seed(spec.seed)
        model = build_model(net)
        cfg, seed = spec.train, spec.seed
        meta = {
            "created_by": f"mind-edge {__version__}",
            "spec_key": spec.scenario_key(),
            "net": net.to_json(),
            "scenario": scenario.to_json(),
            "data": {
                "dataset": dspec.name,
                "in_channels": dspec.in_channels,
                "input_size": list(dspec.input_size),
                "mean": list(dspec.mean),
                "std": list(dspec.std),
                "augment": dspec.augment,
                "padding": dspec.padding,
                "channel_order": "RGB" if dspec.in_channels == 3 else "L",
                "root": str(spec.root) if spec.root else None,
            },
            "train": cfg.to_json(),
            "seed": seed,
            "device": str(device),
            "versions": _versions(),
            "definitions": DEFINITIONS,
            "learned_tasks": [],
            "steps": [],
        }
        run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    n = scenario.num_tasks()
    tests = []
    for t in range(n):
        x, local, _ = task_arrays(test_set, scenario, t)
        tests.append((x, local))
    R_tag = matrix_from_json(meta["steps"][-1]["tag_matrix"]) if meta["steps"] else empty_matrix(n)
    R_taw = matrix_from_json(meta["steps"][-1]["taw_matrix"]) if meta["steps"] else empty_matrix(n)
    last = n if stop_after is None else min(n, stop_after)
    for t in range(model.num_tasks, last):
        classes = list(scenario.tasks[t])
        x, local, _ = task_arrays(train_set, scenario, t)
        rep = learn_task(model, classes, x, local, dspec, cfg, seed=seed, device=device, reporter=reporter)
        ev = evaluate(model, tests[: t + 1], dspec, temperature=cfg.temperature, policy=cfg.routing, device=device)
        R_tag[t, : t + 1] = ev.tag
        R_taw[t, : t + 1] = ev.taw
        final = summarize(R_tag[: t + 1, : t + 1], R_taw[: t + 1, : t + 1], ev.routing_overall)
        meta["learned_tasks"].append(classes)
        meta["steps"].append(
            {
                "step": t,
                "classes": classes,
                "train_seconds": round(rep.train_seconds, 3),
                "distill_seconds": round(rep.distill_seconds, 3),
                "train_loss": rep.train_loss,
                "distill_loss": rep.distill_loss,
                "tag_row": ev.tag,
                "taw_row": ev.taw,
                "routing_row": ev.routing,
                "tag_matrix": matrix_to_json(R_tag),
                "taw_matrix": matrix_to_json(R_taw),
                **{k: v for k, v in final.items()},
            }
        )
        meta["final"] = final
        meta["owner_counts"] = model.owner_counts()
        meta["routing_stats"] = {"version": STATS_VERSION, "bytes_per_task": model.routing_stats()[t].nbytes}
        write_outputs(run_dir, model, meta)
        log.info("task %d: TAG %.3f TAW %.3f routing %.3f", t, final["tag"], final["taw"], final["routing"])
    return RunResult(run_dir, RunRecord.from_json(meta, run_dir))


def parse_policies(text: str | None) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]``; ``"all"`` → every policy; ``None`` → ``None`` (the run's)."""
    if text is None:
        return None
    names = list(POLICIES) if text.strip() == "all" else [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError("--routing needs a policy name, a comma-separated list or 'all'")
    return [get_policy(p).name for p in names]


def evaluate_run(
    run_dir: str | Path,
    *,
    temperature: float | None = None,
    policy: str | None = None,
    root: str | None = None,
    device: str = "auto",
    policies: list[str] | None = None,
) -> dict:
    """Re-evaluate a run directory on its test data (optionally at another temperature/policy).

    ``policies``: evaluate several policies from one forward pass; the result then has a
    ``policies`` entry (per policy: tag, taw, routing, ece and the per-task rows) besides the
    first policy's figures at the top level.
    """
    model, record = load_run(run_dir)
    scenario = record.scenario
    dev = resolve_device(device)
    if record.data is None:
        raise CheckpointError(f'{run_dir}/run.json records no dataset ("data"); it cannot be re-evaluated')
    data_root = root if root is not None else record.data.root
    _, test_set, dspec = load_run_dataset(record, root)
    if record.has_folder_tasks():  # tasks learned from folders ('mind-edge learn')
        found, notes = task_test_sets(
            record, model.num_tasks, record.data.input_size, record.data.in_channels, root=data_root
        )
        if notes:
            raise DataError("cannot evaluate every task: " + "; ".join(notes))
        tests = [x for x in found if x is not None]
    else:
        tests = [task_arrays(test_set, scenario, t)[:2] for t in range(model.num_tasks)]
    cfg = record.train
    T = temperature if temperature is not None else cfg.temperature
    names = policies or [policy or cfg.routing]
    results = evaluate_policies(model.to(dev), tests, dspec, temperature=T, policies=names, device=dev)

    def summary(name: str) -> dict:
        ev = results[name]
        return {
            "policy": name,
            "tag": ev.tag,
            "taw": ev.taw,
            "routing": ev.routing,
            "tag_mean": float(np.mean(ev.tag)),
            "taw_mean": float(np.mean(ev.taw)),
            "routing_overall": ev.routing_overall,
            "ece": ev.ece,
        }

    out = {"temperature": T, **summary(names[0])}
    if policies:
        out["policies"] = {name: summary(name) for name in names}
    return out
