"""Continual-learning metrics over accuracy matrices (numpy only).

``R[k, j]`` is the accuracy on task ``j``'s test data after learning task ``k``
(``NaN`` for ``j > k``). Definitions, as printed in ``run.json``:

- average incremental accuracy: ``mean_k ( mean_{j<=k} R[k, j] )``
- forgetting (Chaudhry et al. 2018): ``mean_{j<N-1} ( max_{k<N-1} R[k, j] - R[N-1, j] )``
- backward transfer (Lopez-Paz & Ranzato 2017): ``mean_{j<N-1} ( R[N-1, j] - R[j, j] )``
- final accuracy: ``mean_j R[N-1, j]`` (tasks weighted equally)
"""

from __future__ import annotations

import numpy as np

DEFINITIONS = {
    "tag": (
        "task-agnostic accuracy after the last task: mean over tasks j of R_tag[N-1, j] "
        "(task unknown, routed by max-probability)"
    ),
    "taw": "task-aware accuracy after the last task: mean over tasks j of R_taw[N-1, j] (true task's head)",
    "routing": "fraction of test samples of all tasks routed to their true task after the last task",
    "avg_incremental_tag": "mean over steps k of mean_{j<=k} R_tag[k, j]",
    "forgetting_tag": "Chaudhry forgetting: mean over j<N-1 of max_{k<N-1} R_tag[k, j] - R_tag[N-1, j]",
    "bwt_tag": "backward transfer: mean over j<N-1 of R_tag[N-1, j] - R_tag[j, j]",
}


def empty_matrix(n: int) -> np.ndarray:
    return np.full((n, n), np.nan)


def _square(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"accuracy matrix must be square, got shape {R.shape}")
    return R


def final_accuracy(R) -> float:
    R = _square(R)
    return float(np.mean(R[-1, :]))


def average_incremental_accuracy(R) -> float:
    R = _square(R)
    return float(np.mean([np.mean(R[k, : k + 1]) for k in range(R.shape[0])]))


def forgetting(R) -> float:
    R = _square(R)
    n = R.shape[0]
    if n < 2:
        return 0.0
    return float(np.mean([np.max(R[: n - 1, j][j:]) - R[n - 1, j] for j in range(n - 1)]))


def backward_transfer(R) -> float:
    R = _square(R)
    n = R.shape[0]
    if n < 2:
        return 0.0
    return float(np.mean([R[n - 1, j] - R[j, j] for j in range(n - 1)]))


def matrix_to_json(R) -> list[list[float | None]]:
    """Exact floats (no rounding), so a run resumed from run.json recomputes identical metrics."""
    R = np.asarray(R, dtype=float)
    return [[None if np.isnan(v) else float(v) for v in row] for row in R]


def matrix_from_json(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=float)


def summarize(R_tag, R_taw, routing: float) -> dict[str, float]:
    """The ``final`` block of ``run.json`` for matrices over the tasks learned so far."""
    return {
        "tag": final_accuracy(R_tag),
        "taw": final_accuracy(R_taw),
        "routing": float(routing),
        "avg_incremental_tag": average_incremental_accuracy(R_tag),
        "forgetting_tag": forgetting(R_tag),
        "bwt_tag": backward_transfer(R_tag),
    }
