"""Task-agnostic routing: the one contract (policies, constants, statistics) and its numpy form.

A MIND model holds N sub-networks and, at test time, does not know the task. Every policy
computes one **score per task** ``s[b, t]`` (``task_confidence``); the task is
``argmax_t s[b, t]`` (the first index on exact ties, as ONNX ArgMax does) and the label is
the argmax of that task's head, mapped to its global class id. The policies:

=============== ======= ============ =============================================================
policy          version statistics   score of task t for an input x
=============== ======= ============ =============================================================
``maxprob``     1       no           ``max softmax(z_t / T)`` — MIND's rule (the paper's)
``entropy``     1       no           maxprob, then of the two most confident tasks the one with
                                     the lower normalised entropy (``H / log C_t``) wins
``maxlogit``    1       yes          ``(max z_t - mu) / sd`` (mu, sd of task t's own training data)
``energy``      1       yes          ``(logsumexp z_t - mu) / sd``
``mahalanobis`` 1       yes          ``-sum_k (d_tk - mu_k) / sd_k`` where ``d_tk`` is the squared
                                     Mahalanobis distance of sub-network t's pooled, L2-normalised
                                     features at tap k to the nearest class mean of task t
``shared``      1       yes          the same sum over the taps of sub-network **0** (the shared
                                     space): ``d_tk`` from sub-network 0's features to task t's
                                     class means measured in that space
``lda``         1       yes (v3)     ``-(d_t - D) / sqrt(2 D)``: ``d_t`` the squared distance, in one
                                     metric pooled over every task (a linear discriminant), of
                                     sub-network 0's concatenated unit tap features (D channels)
                                     to task t's nearest class mean
``combined``    3       yes (v3)     ``5 * lda + maxlogit`` (version 2 was ``mahalanobis + shared +
                                     maxlogit``, version 1 ``mahalanobis + maxlogit``)
=============== ======= ============ =============================================================

**The shared space.** Every sub-network's statistics say how far an input is from *its* task in
*its own* feature space, and spaces trained on different classes are only comparable through
those z-scores. Sub-network 0 is frozen after task 0 and runs for every input anyway, so it is
one feature space every task can be measured in: at the end of its training each task also
passes its own training images through sub-network 0 and keeps its class means and covariance
there (still its own data only; earlier tasks' statistics never change). On weak sub-networks
this is what keeps routing from collapsing onto a few tasks (``benchmarks/routing.py``; README
"Routing").

**One metric for every task (``lda``).** Per-task whitening makes each task's distances
comparable only through z-scores, and z-scores of a weak task are noisy. Pooled over all tasks,
the class-centred covariance of sub-network 0's features is one metric in which every task's
class means can be compared directly (a linear discriminant: Mahalanobis distance under a shared
covariance, as streaming LDA does on a frozen feature extractor). Each task keeps only its own
summaries: its class means, its within-class covariance (packed upper triangle) and the mean
fourth power of its residual norms (for Ledoit-Wolf shrinkage of the pool). The pooled metric is
derived from them by :func:`pooled_space` wherever a graph is built or a batch routed, so adding a
task never changes an earlier task's statistics. The squared distance is standardised as a
chi-square with D degrees of freedom, ``(d - D) / sqrt(2 D)``: data-free, so it keeps the tasks'
relative offsets that a per-task z-score would remove.

**Routing statistics** (:class:`RoutingStats`) are what a task gathers from *its own* training
data at the end of its training (never images or features of it afterwards, never another
task's data): per feature tap k the whitening matrix ``L_k`` (lower Cholesky factor of the
precision of a Ledoit-Wolf shrunk covariance of the class-centred features, so
``d = ||(f - m_c) L_k||^2``), the whitened class means ``m_c L_k``, and the mean and spread of
every score on the task's own training images. Statistics of layout 2 hold the taps twice: first
measured in the task's own sub-network, then (``shared_taps``) in sub-network 0's; layout 3 adds
the pooled-metric summaries above. They are frozen with the task like its weights.

**Feature taps** are the global-average-pooled outputs of the first residual block and of the
last block of every stage (:func:`tap_blocks`); for the CIFAR ResNet-32 at width 1 that is
16 + 16 + 32 + 64 channels, i.e. about 81 kB of statistics per task (both spaces and the pooled
summaries). Distances at several depths tell in-distribution from foreign inputs far better than the last layer alone
(``benchmarks/routing.py``; Lee et al. 2018 use the same ensemble for out-of-distribution detection).

Every backend computes the distance in the same difference form, in float32::

    g = normalise(f) @ L_k                      # [F_k]
    d = sum((g - means_k[c]) ** 2) over F_k     # per class c (padding classes: + PAD_DISTANCE)
    d_k = min over classes of d

so the torch evaluation (:mod:`mind_edge.routing`), this numpy version and the ONNX routing
head (:mod:`mind_edge.runtime.graph_routing`) agree to float32 rounding (a test holds them equal).

**Routed confidence.** ``maxprob``/``entropy``: the chosen task's max-probability. Score
policies: ``softmax_t(s)[task] * max softmax(z_task / T)``, the probability of the chosen task
among the tasks times that of the class within it (what the ECE of ``benchmarks/routing.py``
measures).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mind_edge.errors import ConfigError, InputError

#: ``task_logits`` padding beyond a head's classes: exp((PAD - max) / T) underflows to 0 for any T < 1e3.
PAD_LOGIT = -1.0e4
#: Squared-distance padding beyond a head's classes (never the minimum; finite in float32).
PAD_DISTANCE = 1.0e30
#: Lower bound of a score's spread (a constant score on the training data must not divide by 0).
MIN_SPREAD = 1e-6
#: Score columns of :attr:`RoutingStats.score_mean` after the K tap distances.
EXTRA_SCORES = ("maxlogit", "energy")
#: Layout of the routing statistics (graph initializers, checkpoint buffers, patches): 2 adds the
#: shared-space taps (measured in sub-network 0) after the task's own, 3 the pooled-metric summaries.
STATS_VERSION = 3


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    needs_stats: bool  # uses statistics gathered from each task's training data
    uses_features: bool  # needs the pooled features of the taps (not only the logits)
    summary: str
    #: score policies: weights of (own tap distances, max-logit, energy, shared-space tap distances,
    #: pooled-metric distance) in the score (see policy_scores)
    weights: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def needs_shared(self) -> bool:
        """Uses the shared-space taps (statistics of layout 2)."""
        return bool(self.weights[3])

    @property
    def needs_pool(self) -> bool:
        """Uses the pooled metric (statistics of layout 3)."""
        return bool(self.weights[4])

    @property
    def min_layout(self) -> int:
        """The oldest statistics layout the policy can route with."""
        return 3 if self.needs_pool else 2 if self.needs_shared else 1


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy("maxprob", 1, False, False, "MIND's rule: the sub-network with the highest max softmax(z/T)"),
        Policy("entropy", 1, False, False, "maxprob, then the lower normalised entropy of the top two tasks"),
        Policy(
            "maxlogit",
            1,
            True,
            False,
            "max-logit, z-normalised by each task's own training data",
            (0.0, 1.0, 0.0, 0.0, 0.0),
        ),
        Policy(
            "energy",
            1,
            True,
            False,
            "energy (logsumexp of the logits), z-normalised likewise",
            (0.0, 0.0, 1.0, 0.0, 0.0),
        ),
        Policy(
            "mahalanobis",
            1,
            True,
            True,
            "multi-depth Mahalanobis distance to the task's class means, z-normalised",
            (1.0, 0.0, 0.0, 0.0, 0.0),
        ),
        Policy(
            "shared",
            1,
            True,
            True,
            "mahalanobis measured in sub-network 0's feature space (shared by all tasks)",
            (0.0, 0.0, 0.0, 1.0, 0.0),
        ),
        Policy(
            "lda",
            1,
            True,
            True,
            "distance in sub-network 0's features under one covariance pooled over all tasks",
            (0.0, 0.0, 0.0, 0.0, 1.0),
        ),
        Policy("combined", 3, True, True, "5 x lda + maxlogit", (0.0, 1.0, 0.0, 0.0, 5.0)),
    )
}

#: The policy new runs, exports and the demo use (chosen by benchmarks/routing.py; README "Routing").
DEFAULT_POLICY = "combined"


def get_policy(name: str) -> Policy:
    """The policy called ``name`` (one error line listing the choices otherwise)."""
    policy = POLICIES.get(str(name))
    if policy is None:
        raise ConfigError(f"unknown routing policy {name!r}; choose one of {', '.join(POLICIES)}")
    return policy


def auto_policy(stats: Sequence[RoutingStats | None]) -> str:
    """What ``auto`` routes by: the default policy when every task has statistics it can use, else ``maxprob``."""
    try:
        check_stats_for(POLICIES[DEFAULT_POLICY], stats, len(stats))
    except ConfigError:
        return "maxprob"
    return DEFAULT_POLICY


def check_temperature(value, what: str = "temperature") -> float:
    """The one rule for a routing temperature: a finite number > 0."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r}")
    return t


def tap_blocks(block_strides: Sequence[int]) -> list[int]:
    """Indices of the residual blocks whose pooled outputs are routing taps.

    ``block_strides[i]`` is the stride of block i's first conv: the first block and the last
    block of every stage (the block before a strided one, and the last block) are taps.
    """
    n = len(block_strides)
    if n == 0:
        raise ConfigError("a network without residual blocks has no routing taps")
    ends = {i for i in range(n) if i == n - 1 or int(block_strides[i + 1]) != 1}
    return sorted({0} | ends)


def plan_taps(plan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(block indices, channel counts)`` of the routing taps of a :class:`mind_edge.core.plan.NetPlan`."""
    blocks = tuple(tap_blocks([b.conv1.stride for b in plan.blocks]))
    return blocks, tuple(int(plan.blocks[i].conv2.out_ch) for i in blocks)


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True, eq=False)
class RoutingStats:
    """One task's routing statistics (float32 numpy arrays)."""

    whiten: tuple[np.ndarray, ...]  # per tap [F_k, F_k]: P_k = L L^T, lower-triangular L
    means: tuple[np.ndarray, ...]  # per tap [C, F_k]: class means times L
    score_mean: np.ndarray  # [K + 2]: tap distances, then EXTRA_SCORES
    score_std: np.ndarray  # [K + 2]
    count: int  # training images the statistics were gathered from
    #: the last ``shared_taps`` taps are measured in sub-network 0's features (layout 2); 0: layout 1
    shared_taps: int = 0
    #: layout 3, the pooled-metric summaries in sub-network 0's concatenated unit tap features (D channels):
    pool_means: np.ndarray | None = None  # [C, D] class means
    pool_cov: np.ndarray | None = None  # [D (D + 1) / 2] within-class covariance, packed upper triangle
    pool_m4: np.ndarray | None = None  # [1] mean of ||f - m_c||^4 (Ledoit-Wolf shrinkage of the pool)

    @property
    def layout(self) -> int:
        return 3 if self.pool_means is not None else 2 if self.shared_taps else 1

    @property
    def pool_arrays(self) -> tuple[np.ndarray, ...]:
        """The layout-3 arrays (``()`` before layout 3)."""
        return () if self.pool_means is None else (self.pool_means, self.pool_cov, self.pool_m4)

    @property
    def num_taps(self) -> int:
        return len(self.whiten)

    @property
    def own_taps(self) -> int:
        """Taps measured in the task's own sub-network (the first ``own_taps``)."""
        return self.num_taps - self.shared_taps

    @property
    def tap_dims(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.whiten)

    @property
    def num_classes(self) -> int:
        return int(self.means[0].shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (*self.whiten, *self.means, self.score_mean, self.score_std, *self.pool_arrays)
        return int(sum(a.nbytes for a in arrays) + 8)

    def same_as(self, other: RoutingStats | None) -> bool:
        if other is None or self.count != other.count or self.num_taps != other.num_taps:
            return False
        if self.shared_taps != other.shared_taps or self.layout != other.layout:
            return False
        pairs = list(zip(self.whiten, other.whiten)) + list(zip(self.means, other.means))
        pairs += [(self.score_mean, other.score_mean), (self.score_std, other.score_std)]
        pairs += list(zip(self.pool_arrays, other.pool_arrays))
        return all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in pairs)

    def check(self, tap_dims: Sequence[int] | None = None, num_classes: int | None = None, where: str = "") -> None:
        """Shapes, dtypes and finiteness (raises ConfigError naming what is wrong); ``tap_dims`` are
        the network's taps (layout 2 holds them twice)."""
        at = f" of {where}" if where else ""
        if len(self.means) != len(self.whiten) or self.num_taps == 0:
            raise ConfigError(
                f"routing statistics{at}: {len(self.whiten)} whitening matrices but {len(self.means)} mean sets"
            )
        own = self.own_taps
        if self.shared_taps not in (0, own) or own < 1:
            raise ConfigError(f"routing statistics{at}: {self.shared_taps} shared-space taps for {own} own taps")
        if self.shared_taps and self.tap_dims[own:] != self.tap_dims[:own]:
            raise ConfigError(
                f"routing statistics{at}: shared-space taps {list(self.tap_dims[own:])} differ from "
                f"the own taps {list(self.tap_dims[:own])}"
            )
        if tap_dims is not None and tuple(tap_dims) != self.tap_dims[:own]:
            raise ConfigError(
                f"routing statistics{at} have taps of {list(self.tap_dims[:own])} channels; "
                f"the network has {list(tap_dims)}"
            )
        c = self.num_classes
        if num_classes is not None and c != num_classes:
            raise ConfigError(f"routing statistics{at} hold {c} class means; the head has {num_classes} classes")
        k = self.num_taps
        for w, m in zip(self.whiten, self.means):
            f = w.shape[0]
            if w.shape != (f, f) or m.shape != (c, f):
                raise ConfigError(
                    f"routing statistics{at}: whitening {list(w.shape)} / means {list(m.shape)} do not fit"
                )
        if self.score_mean.shape != (k + len(EXTRA_SCORES),) or self.score_std.shape != self.score_mean.shape:
            raise ConfigError(
                f"routing statistics{at}: score statistics {list(self.score_mean.shape)}, expected [{k + 2}]"
            )
        if self.pool_means is not None:
            d = sum(self.tap_dims[:own])
            if not self.shared_taps:
                raise ConfigError(f"routing statistics{at}: pooled-metric summaries without shared-space taps")
            shapes = [getattr(a, "shape", None) for a in (self.pool_means, self.pool_cov, self.pool_m4)]
            if shapes != [(c, d), (d * (d + 1) // 2,), (1,)]:
                raise ConfigError(
                    f"routing statistics{at}: pooled-metric summaries of shapes {[list(x or ()) for x in shapes]}, "
                    f"expected [[{c}, {d}], [{d * (d + 1) // 2}], [1]]"
                )
        elif self.pool_cov is not None or self.pool_m4 is not None:
            raise ConfigError(f"routing statistics{at}: incomplete pooled-metric summaries")
        arrays = (*self.whiten, *self.means, self.score_mean, self.score_std, *self.pool_arrays)
        if any(a.dtype != np.float32 or not np.all(np.isfinite(a)) for a in arrays):
            raise ConfigError(f"routing statistics{at} are not finite float32 arrays")
        if not np.all(self.score_std > 0) or self.count < 1:
            raise ConfigError(f"routing statistics{at}: spreads must be > 0 and the image count >= 1")


def l2_normalise(f: np.ndarray) -> np.ndarray:
    """``f / max(||f||, 1e-12)`` along the last axis, float32."""
    f = np.asarray(f, dtype=np.float32)
    norm = np.sqrt(np.sum(f * f, axis=-1, keepdims=True, dtype=np.float32))
    return f / np.maximum(norm, np.float32(1e-12))


def tap_distance(f: np.ndarray, whiten: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of features ``f`` ``[B, F]`` to the nearest class mean: ``[B]``."""
    return nearest_distance(l2_normalise(f) @ whiten, means)


def nearest_distance(g: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Squared distance of whitened rows ``g`` ``[B, F]`` to the nearest of ``means`` ``[C, F]``: ``[B]``."""
    diff = g[:, None, :] - means[None, :, :]  # [B, C, F]: the difference form (no cancellation)
    return np.sum(diff * diff, axis=2, dtype=np.float32).min(axis=1)


def unit_concat(taps: Sequence[np.ndarray]) -> np.ndarray:
    """The pooled metric's input: every tap ``[..., F_k]`` L2-normalised, then concatenated: ``[..., D]``."""
    return np.concatenate([l2_normalise(f) for f in taps], axis=-1)


def pack_symmetric(m: np.ndarray) -> np.ndarray:
    """The upper triangle of a symmetric ``[D, D]`` matrix, row by row: ``[D (D + 1) / 2]``."""
    return m[np.triu_indices(m.shape[0])]


def unpack_symmetric(v: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack_symmetric` (float64)."""
    d = int(round((math.sqrt(8 * v.shape[0] + 1) - 1) / 2))
    if d * (d + 1) // 2 != v.shape[0]:
        raise ConfigError(f"{v.shape[0]} values are not the upper triangle of a square matrix")
    m = np.zeros((d, d))
    iu = np.triu_indices(d)
    m[iu] = v
    m.T[iu] = v
    return m


def pool_chi_square(d: np.ndarray, dim: int) -> np.ndarray:
    """The pooled distance standardised as a chi-square of ``dim`` degrees of freedom: ``(d - D) / sqrt(2 D)``."""
    return (d - np.float32(dim)) / np.float32(math.sqrt(2.0 * dim))


#: the pooled metrics derived last (digest of the summaries -> result): routing a stream batch by batch
#: re-derives nothing (an eigendecomposition of D x D per call otherwise)
_POOLED_CACHE: dict[bytes, tuple[np.ndarray, list[np.ndarray]]] = {}
_POOLED_CACHE_SIZE = 4


def pooled_space(stats: Sequence[RoutingStats]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The pooled metric of tasks ``stats`` (layout 3): ``(whitening L [D, D], each task's whitened class means
    [C_t, D])``, float32 (read-only arrays; cached by the content of the summaries).

    The within-class covariances are pooled weighted by the tasks' image counts and shrunk
    (Ledoit-Wolf) as the covariance of all their residuals would be; derived, never stored, so a new
    task changes no earlier task's statistics. Deterministic.
    """
    h = hashlib.blake2b(digest_size=16)
    for s in stats:
        h.update(np.int64(s.count).tobytes())
        for a in s.pool_arrays:
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(str(a.shape).encode())
    key = h.digest()
    hit = _POOLED_CACHE.get(key)
    if hit is None:
        hit = _pooled_space(stats)
        for a in (hit[0], *hit[1]):
            a.flags.writeable = False
        if len(_POOLED_CACHE) >= _POOLED_CACHE_SIZE:
            _POOLED_CACHE.pop(next(iter(_POOLED_CACHE)))
        _POOLED_CACHE[key] = hit
    return hit[0], list(hit[1])


def _pooled_space(stats: Sequence[RoutingStats]) -> tuple[np.ndarray, list[np.ndarray]]:
    counts = np.array([s.count for s in stats], dtype=np.float64)
    n = float(counts.sum())
    cov = sum(c * unpack_symmetric(s.pool_cov.astype(np.float64)) for c, s in zip(counts, stats)) / n
    m4 = float(sum(c * float(s.pool_m4[0]) for c, s in zip(counts, stats)) / n)
    lw = _whitening(_ledoit_wolf(cov, m4, n))
    return lw.astype(np.float32), [(s.pool_means.astype(np.float64) @ lw).astype(np.float32) for s in stats]


def _class_centers(x: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, F]`` class means of rows ``x`` (float64); a class without images (cannot happen for a learned
    task) keeps the task's mean."""
    present = np.bincount(labels, minlength=num_classes)
    return np.stack([x[labels == c].mean(axis=0) if present[c] else x.mean(axis=0) for c in range(num_classes)])


def _pool_summaries(shared: Sequence[np.ndarray], labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """``(class means [C, D], packed within-class covariance, [mean ||residual||^4])`` of one task, float32."""
    x = unit_concat(shared).astype(np.float64)
    centers = _class_centers(x, labels, num_classes)
    r = x - centers[labels]
    m4 = np.mean(np.sum(r * r, axis=1) ** 2)
    return (
        centers.astype(np.float32),
        pack_symmetric(r.T @ r / r.shape[0]).astype(np.float32),
        np.array([m4], dtype=np.float32),
    )


def _shrunk_covariance(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage of the covariance of centred rows ``x`` towards ``mu * I`` (float64)."""
    n = x.shape[0]
    x2 = x * x
    return _ledoit_wolf(x.T @ x / n, np.sum(x2.T @ x2) / n, n)


def _ledoit_wolf(s: np.ndarray, m4: float, n: float) -> np.ndarray:
    """Ledoit-Wolf shrinkage towards ``mu * I`` of the covariance ``s`` of ``n`` centred rows whose mean
    fourth power of the norm is ``m4`` (all it needs of the rows; float64)."""
    p = s.shape[0]
    mu = np.trace(s) / p
    d2 = float(np.sum((s - mu * np.eye(p)) ** 2))
    b2 = float((m4 - np.sum(s * s)) / n)
    alpha = 1.0 if d2 <= 0 else min(max(b2, 0.0), d2) / d2
    return (1.0 - alpha) * s + alpha * mu * np.eye(p)


#: Eigenvalue floor of a covariance, relative to its mean eigenvalue: bounds the condition number of
#: the whitening (a dead channel has zero variance) so float32 distances stay well-conditioned.
EIGEN_FLOOR = 1e-3
#: Absolute eigenvalue floor per dimension (features are unit vectors, so the total variance is <= 1):
#: spreads far below float32's resolution of the features are not measured (a degenerate, e.g.
#: untrained, network would otherwise amplify rounding into the scores). Trained networks' smallest
#: eigenvalues are ~10x above it (benchmarks/routing.py runs), so it changes nothing there.
ABS_EIGEN_FLOOR = 1e-5


def _whitening(cov: np.ndarray) -> np.ndarray:
    """Lower-triangular L with ``L @ L.T == inv(cov)`` (float64), robust to near-singular covariances."""
    vals, vecs = np.linalg.eigh(cov)
    floor = max(float(np.mean(vals)) * EIGEN_FLOOR, ABS_EIGEN_FLOOR / cov.shape[0])
    precision = (vecs / np.maximum(vals, floor)) @ vecs.T
    return np.linalg.cholesky((precision + precision.T) / 2)


def logit_scores(logits: np.ndarray) -> np.ndarray:
    """``[B, 2]``: max-logit and energy (logsumexp) of one head's logits ``[B, C]`` (float32)."""
    z = np.asarray(logits, dtype=np.float32)
    m = z.max(axis=1)
    energy = m + np.log(np.sum(np.exp(z - m[:, None]), axis=1, dtype=np.float32))
    return np.stack([m, energy], axis=1)


def fit_routing_stats(
    taps: Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    logits: np.ndarray,
    shared: Sequence[np.ndarray] | None = None,
) -> RoutingStats:
    """Routing statistics of one task from its own training images.

    ``taps[k]``: ``[n, F_k]`` pooled features of the task's sub-network at tap k, ``labels``:
    ``[n]`` local class ids, ``logits``: ``[n, C]`` of the task's head; ``shared[k]``: the same
    images' features in sub-network 0 (with the pooled-metric summaries: layout 3; ``None`` gives
    layout 1). Deterministic (a run calibrated later equals the statistics gathered during training).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if n < 2:
        raise ConfigError(f"routing statistics need at least 2 training images of the task, got {n}")
    if shared is not None and len(shared) != len(taps):
        raise ConfigError(f"{len(shared)} shared-space taps for {len(taps)} own taps")
    whiten, means, dists = [], [], []
    for f in (*taps, *(shared or ())):
        f = np.asarray(f)
        if f.shape[0] != n:
            raise ConfigError(f"{f.shape[0]} feature rows for {n} labels")
        x = l2_normalise(f).astype(np.float64)
        centers = _class_centers(x, labels, num_classes)
        lw = _whitening(_shrunk_covariance(x - centers[labels]))
        w32 = lw.astype(np.float32)
        m32 = (centers @ lw).astype(np.float32)
        whiten.append(w32)
        means.append(m32)
        dists.append(tap_distance(f, w32, m32).astype(np.float64))
    scores = np.concatenate([np.stack(dists, axis=1), logit_scores(logits).astype(np.float64)], axis=1)
    pool = _pool_summaries(shared, labels, num_classes) if shared is not None else (None, None, None)
    return RoutingStats(
        whiten=tuple(whiten),
        means=tuple(means),
        score_mean=scores.mean(axis=0).astype(np.float32),
        score_std=np.maximum(scores.std(axis=0), MIN_SPREAD).astype(np.float32),
        count=int(n),
        shared_taps=len(shared) if shared is not None else 0,
        pool_means=pool[0],
        pool_cov=pool[1],
        pool_m4=pool[2],
    )


def check_stats_for(policy: Policy, stats: Sequence[RoutingStats | None] | None, num_tasks: int) -> list[RoutingStats]:
    """``stats`` when they let ``policy`` route ``num_tasks`` tasks; one ConfigError line naming the fix otherwise."""
    if stats is None or any(s is None for s in stats):
        missing = [t for t, s in enumerate(stats or [None] * num_tasks) if s is None]
        raise ConfigError(
            f"routing policy {policy.name!r} needs routing statistics, which task(s) {missing} do not have; "
            "run 'mind-edge calibrate RUN' on the training run (then export again)"
        )
    layouts = {(s.num_taps, s.shared_taps, s.layout) for s in stats}
    if len(layouts) > 1:
        raise ConfigError(
            f"the tasks' routing statistics have different layouts {sorted(layouts)}; "
            "run 'mind-edge calibrate RUN' on the training run (then export again)"
        )
    if stats[0].layout < policy.min_layout:
        what = "pooled-metric" if policy.needs_pool else "shared-space"
        raise ConfigError(
            f"routing policy {policy.name!r} (version {policy.version}) needs {what} statistics (layout "
            f"{policy.min_layout}), which these statistics (layout {stats[0].layout}) lack; run "
            "'mind-edge calibrate RUN' on the training run (then export again)"
        )
    return list(stats)


# ----------------------------------------------------------------------------- numpy routing


@dataclass(frozen=True)
class RoutedArrays:
    label: np.ndarray  # [B] int64 global class id
    task: np.ndarray  # [B] int64
    confidence: np.ndarray  # [B] float32
    task_confidence: np.ndarray  # [B, N] float32: the policy's per-task score


def class_table(task_classes: Sequence[Sequence[int]], cmax: int | None = None) -> np.ndarray:
    """``[N, Cmax]`` int64 table of every head's global class ids, padded with ``-1``."""
    if not task_classes:
        raise ConfigError("a class table needs at least one task")
    width = max(len(c) for c in task_classes) if cmax is None else int(cmax)
    table = np.full((len(task_classes), width), -1, dtype=np.int64)
    for t, classes in enumerate(task_classes):
        if not 0 < len(classes) <= width:
            raise ConfigError(f"task {t} has {len(classes)} classes; expected 1..{width}")
        table[t, : len(classes)] = np.asarray(classes, dtype=np.int64)
    return table


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e * (np.float32(1.0) / e.sum(axis=axis, keepdims=True, dtype=np.float32))


def softmax_max(task_logits: np.ndarray, temperature: float) -> np.ndarray:
    """``max(softmax(task_logits / T, axis=2), axis=2)`` in float32: ``[B, N]``."""
    z = np.asarray(task_logits, dtype=np.float32) / np.float32(temperature)
    return _softmax(z, 2).max(axis=2)


def split_taps(task_features: np.ndarray, tap_dims: Sequence[int]) -> list[np.ndarray]:
    """``task_features`` ``[B, N, sum F_k]`` (the graph output) → per tap ``[B, N, F_k]``."""
    bounds = np.cumsum([0, *tap_dims])
    if task_features.shape[-1] != bounds[-1]:
        raise InputError(f"task_features has {task_features.shape[-1]} channels; the taps have {int(bounds[-1])}")
    return [task_features[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def policy_scores(
    policy: str,
    task_logits: np.ndarray,
    temperature: float,
    *,
    num_classes: Sequence[int],
    stats: Sequence[RoutingStats | None] | None = None,
    taps: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores [B, N], maxprob [B, N])`` of ``policy``; ``taps[k]`` is ``[B, N, F_k]``."""
    p = get_policy(policy)
    z = np.asarray(task_logits, dtype=np.float32)
    maxprob = softmax_max(z, temperature)
    if not p.needs_stats:
        return maxprob, maxprob
    n = z.shape[1]
    stats = check_stats_for(p, stats, n)
    k, own = stats[0].num_taps, stats[0].own_taps
    w_tap, w_ml, w_en, w_shared, w_pool = (np.float32(w) for w in p.weights)
    extra = np.stack([logit_scores(z[:, t, : num_classes[t]]) for t in range(n)], axis=1)  # [B, N, 2]
    mean = np.stack([s.score_mean for s in stats])  # [N, K+2]
    std = np.stack([s.score_std for s in stats])
    z_ml = (extra[:, :, 0] - mean[:, k]) / std[:, k]
    z_en = (extra[:, :, 1] - mean[:, k + 1]) / std[:, k + 1]
    score = z_ml * w_ml + z_en * w_en
    if (w_tap or w_shared or w_pool) and (taps is None or len(taps) != own):
        raise ConfigError(
            f"routing policy {policy!r} needs the pooled features of {own} taps (graph output task_features)"
        )
    for j in range(k):
        w = w_tap if j < own else w_shared
        if not w:
            continue
        # own taps: sub-network t's features; shared-space taps: sub-network 0's, for every task
        feats = [taps[j][:, t] for t in range(n)] if j < own else [taps[j - own][:, 0]] * n
        d = np.stack([tap_distance(feats[t], stats[t].whiten[j], stats[t].means[j]) for t in range(n)], axis=1)
        score = score - ((d - mean[:, j]) / std[:, j]) * w
    if w_pool:  # one metric pooled over the tasks, in sub-network 0's features
        whiten, means = pooled_space(stats)
        g = unit_concat([f[:, 0] for f in taps]) @ whiten
        d = np.stack([nearest_distance(g, m) for m in means], axis=1)
        score = score - pool_chi_square(d, whiten.shape[0]) * w_pool
    return score.astype(np.float32), maxprob


def route_numpy(
    task_logits: np.ndarray,
    table: np.ndarray,
    temperature: float,
    policy: str = "maxprob",
    *,
    stats: Sequence[RoutingStats | None] | None = None,
    task_features: np.ndarray | None = None,
) -> RoutedArrays:
    """Route a batch from the graph's ``task_logits`` ``[B, N, Cmax]`` (and ``task_features``
    ``[B, N, sum F_k]`` for feature policies) with the class ``table`` ``[N, Cmax]``."""
    temperature = check_temperature(temperature)
    z = np.asarray(task_logits, dtype=np.float32)
    table = np.asarray(table)
    if z.ndim != 3 or table.ndim != 2 or z.shape[1:] != table.shape:
        raise InputError(
            f"routing needs task_logits [B, N, Cmax] and a class table [N, Cmax]; got "
            f"{list(z.shape)} and {list(table.shape)}"
        )
    sizes = [int(np.sum(row >= 0)) for row in table]
    taps = None
    if get_policy(policy).uses_features and stats is not None and all(s is not None for s in stats):
        if task_features is None:
            raise ConfigError(f"routing policy {policy!r} needs the graph output task_features; re-export the bundle")
        taps = split_taps(np.asarray(task_features, dtype=np.float32), stats[0].tap_dims[: stats[0].own_taps])
    score, maxprob = policy_scores(policy, z, temperature, num_classes=sizes, stats=stats, taps=taps)
    rows = np.arange(z.shape[0])
    task = np.argmax(score, axis=1).astype(np.int64)
    if policy == "entropy" and z.shape[1] > 1:
        probs = _softmax(z / np.float32(temperature), 2)
        ent = -np.sum(probs * np.log(np.maximum(probs, np.float32(1e-30))), axis=2, dtype=np.float32)
        ent = ent / np.log(np.maximum(np.asarray(sizes, dtype=np.float32), np.float32(2.0)))
        order = np.argsort(-score, axis=1, kind="stable")[:, :2]
        pick = np.argmin(np.take_along_axis(ent, order, axis=1), axis=1)
        task = order[rows, pick].astype(np.int64)
    local = np.argmax(z[rows, task], axis=1)
    label = table[task, local].astype(np.int64)
    if get_policy(policy).needs_stats:
        confidence = _softmax(score, 1)[rows, task] * maxprob[rows, task]
    else:
        confidence = maxprob[rows, task]
    return RoutedArrays(label=label, task=task, confidence=confidence.astype(np.float32), task_confidence=score)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width confidence bins (Guo et al. 2017)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(confidence[sel].mean() - correct[sel].mean())
    return float(ece)
