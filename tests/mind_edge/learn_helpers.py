"""Helpers of the learn / patch-create tests: MIND-structured run directories without training,
and ImageFolder trees of digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mind_edge.train_config import TrainConfig

TINY = {
    "epochs": 1,
    "distill_epochs": 1,
    "lr": 0.005,
    "distill_lr": 0.01,
    "milestones": [],
    "distill_milestones": [],
    "batch_size": 64,
    "temperature": 1.0,
}


#: the training tests' tiny schedule: two epochs with a milestone, one of distillation
TRAIN_TINY = TrainConfig(
    epochs=2,
    distill_epochs=1,
    lr=0.005,
    distill_lr=0.01,
    milestones=(1,),
    distill_milestones=(1,),
    batch_size=64,
    temperature=1.0,
)


def make_run(out: Path, *, learned: int = 4, capacity: int = 10, width: float = 0.25, seed: int = 0) -> Path:
    """A digits run (5-task scenario) that has 'learned' ``learned`` tasks: a random network with
    MIND's structure (exact claims of numel // capacity, free weights 0), saved like a trained run."""
    from mind_edge.calibrate import calibrate_run
    from mind_edge.checkpoint import save_checkpoint, write_run_json
    from mind_edge.data import REFERENCE_SPECS, make_scenario
    from mind_edge.export.arrays import model_from_arrays
    from mind_edge.runtime.graph import random_arrays
    from mind_edge.train import TrainConfig

    spec = REFERENCE_SPECS["digits"]
    scenario = make_scenario("digits", tuple(str(i) for i in range(10)), 5, order="seed", seed=0)
    classes = [list(t) for t in scenario.tasks[:learned]]
    net = {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": width, "capacity": capacity}
    model = model_from_arrays(random_arrays(net, classes, seed=seed, owners="mind"))
    meta = {
        "net": net,
        "scenario": scenario.to_json(),
        "data": {
            "dataset": "digits",
            "in_channels": 1,
            "input_size": [8, 8],
            "mean": list(spec.mean),
            "std": list(spec.std),
            "augment": spec.augment,
            "padding": spec.padding,
            "channel_order": "L",
            "root": None,
        },
        "train": TrainConfig(**TINY).to_json(),
        "seed": 0,
        "learned_tasks": classes,
        "steps": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    meta["checkpoint_sha256"] = save_checkpoint(out, model)
    write_run_json(out, meta)
    calibrate_run(out)  # routing statistics from each task's own training images, as training gathers them
    return out


def digits_folder(
    out: Path,
    classes: list[int],
    names: list[str] | None = None,
    *,
    test_split: bool = True,
    per_class: int | None = None,
) -> Path:
    """PNG files of the given digits classes: ``out/train/<name>/`` (+ ``out/test/<name>/``)."""
    from mind_edge.data import load_dataset

    train, test, _ = load_dataset("digits", seed=0)
    names = names or [str(c) for c in classes]
    splits = (("train", train), ("test", test)) if test_split else (("train", train),)
    for split, arrays in splits:
        for c, name in zip(classes, names):
            d = out / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(arrays.labels == c)[:per_class]:
                Image.fromarray(arrays.images[i][..., 0], mode="L").save(d / f"{i:04d}.png")
    return out
