"""Task-agnostic routing for the torch-free runtime: the contract of :mod:`mind_edge.core.routing`.

The policies, constants and the numpy routing are defined once there; this module names them
for the runtime (``mind_edge.runtime.routing.route_numpy`` re-routes a batch from the graph's
``task_logits`` and ``task_features`` with any policy, without running the network again).
"""

from mind_edge.core.routing import (
    DEFAULT_POLICY,
    PAD_LOGIT,
    POLICIES,
    RoutedArrays,
    RoutingStats,
    check_temperature,
    class_table,
    get_policy,
    route_numpy,
    softmax_max,
)

__all__ = [
    "DEFAULT_POLICY",
    "PAD_LOGIT",
    "POLICIES",
    "RoutedArrays",
    "RoutingStats",
    "check_temperature",
    "class_table",
    "get_policy",
    "route_numpy",
    "softmax_max",
]
