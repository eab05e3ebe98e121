"""`mind-edge learn`: one more task from a folder, exact freezing, class ids, refusals, memory budget."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from cli_helpers import one_error_line
from learn_helpers import digits_folder, make_run
from typer.testing import CliRunner

from mind_edge.checkpoint import load_run, read_run_json
from mind_edge.errors import CapacityError, ConfigError, DataError
from mind_edge.learn import MemoryBudgetError, Trial, learn, plan_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def app():
    from mind_edge.cli import app

    return app


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """run4 (4 synthetic tasks, capacity 10) + the folder of the scenario's 5th task, learned into run5."""
    root = tmp_path_factory.mktemp("learn")
    run4 = make_run(root / "run4")
    scenario = read_run_json(run4).scenario
    folder = digits_folder(root / "new", list(scenario.tasks[4]))
    before = _tree(run4)
    # a generous budget: one measured trial at the configured batch size, which fits
    res = learn(run4, folder, root / "run5", device="cpu", memory_budget_mb=100_000)
    return run4, folder, res, before, scenario


def test_learn_adds_one_task_and_leaves_earlier_tasks_bit_identical(learned):
    run4, _, res, before, scenario = learned
    assert _tree(run4) == before  # the input run is never touched
    m4, _ = load_run(run4)
    m5, record = load_run(res.out)
    assert res.task == 4 and m5.num_tasks == 5
    # the folder's classes are the scenario's planned 5th task: their ids are kept (sorted by folder name)
    assert sorted(res.classes) == sorted(scenario.tasks[4])
    assert [scenario.class_names[c] for c in res.classes] == res.class_names
    sd4, sd5 = m4.state_dict(), m5.state_dict()
    for name, layer in m5.named_masked_layers():
        owned = sd4[f"{name}.owner"] >= 0
        assert torch.equal(layer.owner[owned], sd4[f"{name}.owner"][owned])
        assert torch.equal(layer.weight.detach()[owned], sd4[f"{name}.weight"][owned])
        assert int((layer.owner == 4).sum()) == layer.weight.numel() // 10  # exact claim
        assert torch.all(layer.weight[layer.owner == -1] == 0)
    for k, v in sd4.items():
        if ".sets." in k or k.startswith("heads."):
            assert torch.equal(sd5[k], v), k
    step = record.steps[-1]
    assert step.source["kind"] == "imagefolder" and step.source["test_split"] == "test"
    assert step.raw["evaluated_tasks"] == [0, 1, 2, 3, 4] and len(step.tag_matrix) == 5
    assert list(record.learned_tasks[-1]) == res.classes and list(record.scenario.tasks[4]) == res.classes
    assert 0.0 <= res.new_task["taw"] <= 1.0 and res.final["tag"] is not None
    assert res.train_images > 200 and res.test_images > 50
    # memory: a trial was measured, the batch size kept, the peak reported
    plan = step.raw["memory_plan"]
    assert plan["batch_size"] == 64 and len(plan["trials"]) == 1 and plan["trials"][0]["increment_mb"] > 0
    assert res.peak_rss_mb >= plan["start_rss_mb"] > 0 and step.raw["peak_rss_mb"] > 0


def test_learn_new_class_names_get_new_ids_and_a_holdout_split(tmp_path, app):
    run4 = make_run(tmp_path / "run4", capacity=5, seed=1)
    folder = digits_folder(tmp_path / "letters", [2, 7], ["alpha", "beta"], test_split=False, per_class=40)
    r = CliRunner().invoke(
        app,
        [
            "learn",
            str(run4),
            "--data",
            str(folder),
            "--out",
            str(tmp_path / "run5"),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--distill-epochs",
            "1",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["classes"] == [10, 11] and doc["class_names"] == ["alpha", "beta"]  # after the 10 digits
    assert doc["test_split"].startswith("holdout 0.2") and doc["train_images"] == 64 and doc["test_images"] == 16
    scenario = read_run_json(tmp_path / "run5").scenario
    assert list(scenario.class_names[10:]) == ["alpha", "beta"]
    planned = read_run_json(run4).scenario.tasks[4]
    assert [list(t) for t in scenario.tasks[4:]] == [[10, 11], list(planned)]  # the planned task stays planned
    from mind_edge.run import evaluate_run

    ev = evaluate_run(tmp_path / "run5", device="cpu")  # digits for tasks 0-3, the folder's held-out part for task 4
    assert len(ev["taw"]) == 5 and ev["taw"][4] == pytest.approx(doc["new_task"]["taw"])
    # capacity 5 is now exhausted
    line = one_error_line(
        CliRunner().invoke(
            app, ["learn", str(tmp_path / "run5"), "--data", str(folder), "--out", str(tmp_path / "run6")]
        )
    )
    assert "capacity for 5 tasks and has learned 5" in line and "--capacity" in line
    assert not (tmp_path / "run6").exists()


def test_learn_without_the_earlier_tasks_data(learned, tmp_path):
    run4, folder, _, _, _ = learned
    res = learn(run4, folder, tmp_path / "run5", device="cpu", evaluate_earlier=False)
    assert res.evaluated_tasks == [4] and res.final["tag"] == pytest.approx(res.new_task["tag"])
    text = (tmp_path / "run5" / "run.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"run.json holds {c}"))  # strict JSON: no NaN
    rows = (tmp_path / "run5" / "metrics.csv").read_text().splitlines()
    assert rows[1].startswith("4,0,,,") and rows[-1].startswith("4,4,")


def test_learn_refusals(learned, tmp_path, app):
    run4, folder, res, _, _ = learned
    with pytest.raises(ConfigError, match=r"already knows the class\(es\) '.*' \(task 4"):
        learn(res.out, folder, tmp_path / "x")  # the same classes again
    with pytest.raises(ConfigError, match="must differ from the run directory"):
        learn(run4, folder, run4.parent / "run4" / ".." / "run4")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        learn(run4, folder, tmp_path / "full")
    with pytest.raises(DataError, match="does not exist"):
        learn(run4, tmp_path / "nowhere", tmp_path / "y")
    with pytest.raises(CapacityError):
        learn(make_run(tmp_path / "fullrun", learned=3, capacity=3), folder, tmp_path / "z")
    line = one_error_line(
        CliRunner().invoke(app, ["learn", str(res.out), "--data", str(folder), "--out", str(tmp_path / "w")])
    )
    assert "already knows" in line
    with pytest.raises(MemoryBudgetError, match="below what learn already uses"):
        learn(run4, folder, tmp_path / "m", memory_budget_mb=50)  # fails before any training
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z", "w", "m"))


def _fake_trial(fixed, per_image, calls):
    def trial(bs):
        calls.append(bs)
        return Trial(batch_size=bs, baseline_mb=0.0, peak_mb=fixed + per_image * bs, cuda_mb=0.0, seconds=0.0)

    return trial


def test_plan_memory_picks_the_largest_batch_that_fits(monkeypatch):
    import mind_edge.learn as L

    monkeypatch.setattr(L, "current_rss_mb", lambda: 500.0)  # this process: 500 MB before training
    monkeypatch.setattr(L, "peak_rss_mb", lambda: 520.0)
    calls = []
    plan = plan_memory(1000, 256, _fake_trial(100, 1.0, calls))  # 500 + 1.1 * (100 + 256) = 891.6: fits
    assert (plan.batch_size, calls) == (256, [256]) and plan.predicted_peak_mb == pytest.approx(891.6)
    calls = []
    plan = plan_memory(750, 256, _fake_trial(100, 1.0, calls))  # room for 250 / 1.1 - 100 = 127 images
    assert calls[:2] == [256, 32] and plan.batch_size == 127 and plan.predicted_peak_mb <= 750
    assert len(plan.trials) == len(calls) == 3  # the interpolated size is verified by a trial
    with pytest.raises(MemoryBudgetError, match="too small: batch size 32 would need about 645 MB"):
        plan_memory(630, 256, _fake_trial(100, 1.0, []))
    with pytest.raises(MemoryBudgetError, match="below what learn already uses"):
        plan_memory(510, 256, _fake_trial(100, 1.0, []))


def test_train_resume_refuses_a_run_extended_by_learn(learned, tmp_path):
    """A run that 'learn' extended no longer follows the training scenario: 'train --resume' refuses
    it with one line naming the learned task and its folder, and writes nothing."""
    from mind_edge.cli import app as main_app

    _, folder, res, _, _ = learned
    run5 = res.out
    before = _tree(run5)
    result = CliRunner().invoke(
        main_app,
        [
            "train",
            "--dataset",
            "digits",
            "--tasks",
            "5",
            "--width",
            "0.25",
            "--capacity",
            "10",
            "--out",
            str(run5),
            "--resume",
        ],
    )
    line = one_error_line(result)
    assert "added by 'mind-edge learn'" in line and str(folder.resolve()) in line and "[4]" in line, line
    assert _tree(run5) == before
