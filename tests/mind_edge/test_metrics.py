import math

import numpy as np
import pytest

from mind_edge import metrics

nan = math.nan


def test_hand_computed_matrix():
    R = [[0.9, nan, nan], [0.8, 0.7, nan], [0.6, 0.5, 0.4]]
    assert metrics.final_accuracy(R) == pytest.approx(0.5)
    assert metrics.average_incremental_accuracy(R) == pytest.approx((0.9 + 0.75 + 0.5) / 3)
    assert metrics.forgetting(R) == pytest.approx((0.3 + 0.2) / 2)
    assert metrics.backward_transfer(R) == pytest.approx(-(0.3 + 0.2) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    # task 0 improved after task 1 (0.5 -> 0.9), then dropped to 0.6; task 1 improved to 0.8
    R = [[0.5, nan, nan], [0.9, 0.7, nan], [0.6, 0.8, 0.4]]
    assert metrics.forgetting(R) == pytest.approx((0.3 + -0.1) / 2)
    assert metrics.backward_transfer(R) == pytest.approx((0.1 + 0.1) / 2)


def test_single_task_and_summary():
    R = [[0.75]]
    assert metrics.forgetting(R) == 0.0 and metrics.backward_transfer(R) == 0.0
    s = metrics.summarize(R, [[1.0]], 1.0)
    assert s == {
        "tag": 0.75,
        "taw": 1.0,
        "routing": 1.0,
        "avg_incremental_tag": 0.75,
        "forgetting_tag": 0.0,
        "bwt_tag": 0.0,
    }
    assert set(s) <= set(metrics.DEFINITIONS)


def test_json_round_trip_keeps_nan_as_null():
    R = np.array([[0.5, nan], [0.25, 1.0]])
    js = metrics.matrix_to_json(R)
    assert js == [[0.5, None], [0.25, 1.0]]
    np.testing.assert_array_equal(metrics.matrix_from_json(js), R)


def test_non_square_rejected():
    with pytest.raises(ValueError, match="square"):
        metrics.forgetting([[1.0, 2.0]])
