"""mind_edge.data scenarios: class orders, task splits, the scenario record, and the dataclass checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mind_edge import data
from mind_edge.data import DatasetSpec, ImageArrays, Scenario, class_order, make_scenario, task_arrays
from mind_edge.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ scenarios


def test_class_orders():
    assert class_order(5, "natural", 3) == [0, 1, 2, 3, 4]
    assert class_order(10, "seed", 7) == np.random.default_rng(7).permutation(10).tolist()
    assert class_order(10, "seed", 7) != class_order(10, "seed", 8)
    np.random.seed(123)
    before = np.random.get_state()
    icarl = class_order(100, "icarl", 0)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    np.random.seed(1993)
    assert icarl == np.random.permutation(100).tolist()
    assert icarl == class_order(100, "icarl", 5)  # the seed does not matter for icarl
    with pytest.raises(ConfigError):
        class_order(10, "random", 0)
    with pytest.raises(ConfigError):
        class_order(0, "natural", 0)


def test_make_scenario_partitions():
    names = [f"c{i}" for i in range(10)]
    sc = make_scenario("x", names, 3, order="seed", seed=4)
    assert sc.classes_per_task() == [4, 3, 3]
    flat = [c for t in sc.tasks for c in t]
    assert sorted(flat) == list(range(10)) and flat == class_order(10, "seed", 4)
    assert sc.num_tasks() == 3 and sc.task_of_class()[flat[5]] == 1
    sc2 = make_scenario("x", names, 4, order="natural", first_task_classes=5)
    assert sc2.tasks == ((0, 1, 2, 3, 4), (5, 6), (7, 8), (9,))
    sc3 = make_scenario("x", names, 2, order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert sc3.order == "custom" and sc3.tasks[0] == (9, 8, 7, 6, 5)
    assert make_scenario("x", names, 10).classes_per_task() == [1] * 10
    for bad in [
        dict(num_tasks=11),
        dict(num_tasks=0),
        dict(num_tasks=3, first_task_classes=9),
        dict(num_tasks=1, first_task_classes=4),
        dict(num_tasks=2, order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ]:
        with pytest.raises(ConfigError):
            make_scenario("x", names, **bad)


def test_scenario_json_round_trip():
    sc = make_scenario("cifar100", [f"n{i}" for i in range(100)], 10, order="icarl", first_task_classes=50)
    d = json.loads(json.dumps(sc.to_json()))
    assert Scenario.from_json(d) == sc
    assert Scenario.from_json(d).classes_per_task() == [50] + [6] * 5 + [5] * 4


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("tasks"),
        lambda d: d.__setitem__("tasks", [[0, 1], [1, 2]]),
        lambda d: d.__setitem__("tasks", [[0, 99]]),
        lambda d: d.__setitem__("tasks", [[]]),
        lambda d: d.__setitem__("tasks", "0,1"),
        lambda d: d.__setitem__("tasks", [[0, True]]),
        lambda d: d.__setitem__("order", "sorted"),
        lambda d: d.__setitem__("seed", "7"),
        lambda d: d.__setitem__("class_names", "abc"),
    ],
)
def test_scenario_malformed_json(mutate):
    d = make_scenario("x", ["a", "b", "c", "d"], 2).to_json()
    mutate(d)
    with pytest.raises(DataError):
        Scenario.from_json(d)


def test_scenario_from_json_not_a_dict():
    with pytest.raises(DataError):
        Scenario.from_json([1, 2])


def test_task_arrays():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
    labels = np.arange(40) % 5
    arrays = ImageArrays(images, labels, ("a", "b", "c", "d", "e"))
    sc = Scenario("toy", "custom", 0, ((3, 1), (0, 4, 2)), ("a", "b", "c", "d", "e"))
    x, local, glob = task_arrays(arrays, sc, 0)
    mask = np.isin(labels, [3, 1])
    np.testing.assert_array_equal(x, images[mask])
    np.testing.assert_array_equal(glob, labels[mask])
    np.testing.assert_array_equal(local, np.where(labels[mask] == 3, 0, 1))
    _, local1, glob1 = task_arrays(arrays, sc, 1)
    assert {(int(g), int(loc)) for g, loc in zip(glob1, local1)} == {(0, 0), (4, 1), (2, 2)}
    with pytest.raises(ConfigError):
        task_arrays(arrays, sc, 2)
    other = Scenario("toy", "custom", 0, ((3, 1),), ("a", "b", "c", "X", "e"))
    with pytest.raises(DataError, match="'X'"):
        task_arrays(arrays, other, 0)


def test_dataclass_validation():
    with pytest.raises(DataError):
        ImageArrays(np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int64), ("a",))
    with pytest.raises(DataError):
        ImageArrays(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 3]), ("a", "b"))
    with pytest.raises(ConfigError):
        DatasetSpec("x", 3, (8, 8), (0.5,), (0.5,), "none", 0)
    with pytest.raises(ConfigError):
        DatasetSpec("x", 1, (8, 8), (0.5,), (0.5,), "rotate", 0)
    spec = data.REFERENCE_SPECS["cifar100"]
    assert DatasetSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    with pytest.raises(DataError):
        DatasetSpec.from_json({"name": "x"})
