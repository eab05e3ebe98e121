"""Fixtures of the export tests (helpers live in export_helpers.py: conftest modules share one name)."""

from __future__ import annotations

import pytest
from export_helpers import make_model

from mind_edge.train import TrainConfig


@pytest.fixture(scope="session")
def fake_run_dir(tmp_path_factory):
    """A digits run directory (5 tasks of 2 classes) holding a random, BN-calibrated model."""
    from mind_edge.checkpoint import save_checkpoint, write_run_json
    from mind_edge.data import REFERENCE_SPECS, make_scenario

    run_dir = tmp_path_factory.mktemp("fake_run")
    spec = REFERENCE_SPECS["digits"]
    scenario = make_scenario("digits", tuple(str(i) for i in range(10)), 5, order="seed", seed=0)
    classes = [list(t) for t in scenario.tasks]
    model = make_model(len(classes), in_channels=1, size=spec.input_size, width=0.25, seed=3, classes=classes)
    meta = {
        "net": model.config.to_json(),
        "scenario": scenario.to_json(),
        "data": {
            "dataset": "digits",
            "in_channels": 1,
            "input_size": list(spec.input_size),
            "mean": list(spec.mean),
            "std": list(spec.std),
            "augment": spec.augment,
            "padding": spec.padding,
            "channel_order": "L",
            "root": None,
        },
        "train": {**TrainConfig(temperature=2.0, routing="maxprob").to_json()},
        "seed": 0,
        "learned_tasks": classes,
        "steps": [],
    }
    meta["checkpoint_sha256"] = save_checkpoint(run_dir, model)
    write_run_json(run_dir, meta)
    return run_dir
